"""Pictures of the computational graph in the CS231n style: each node shows its op and
label with its value (green) and gradient (red), each wire the value flowing forward and
the gradient flowing back along it. As DOT for Graphviz, as Mermaid, or as a tree for the
terminal; `render` runs Graphviz's dot for SVG, PNG or PDF files.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core import engine, ops
from ..core.errors import BackpropError, LimitError
from ..core.graph import Graph
from ..io.files import check_target, die_with_parent, write_atomically
from .gradient import short_any

FILE_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
GREEN, RED, KINK = "#2e7d32", "#c62828", "#e65100"
DOT_TIMEOUT = 120  # seconds for Graphviz
MAX_RENDERED = 5000  # nodes Graphviz is asked to lay out
# Graphviz routes a wire through one hidden node per rank it crosses (two with a label), and
# its time grows much faster than their number: a value that feeds many operations far
# apart (x*x*…*x) is the costly case. Measured: 1,250 ranks with labels about 3 s, 3,200
# over a minute; without labels and with a short search (see to_dot) 5,000 about 2 s and
# 11,000 about 5 s.
LABELLED_SPAN = 1_000  # ranks crossed by all wires, drawn with their labels
MAX_SPAN = 8_000  # ranks crossed by all wires, drawn without labels
MAX_TREE_DEPTH = 40  # levels of the terminal tree


@dataclass
class Picture:
    """What a picture shows: the nodes kept (at most max_nodes), with values if any."""

    graph: Graph
    keep: list[int]  # node ids shown, in evaluation order
    cut: int  # how many ancestors of the output were left out
    values: list[Any] | None  # numbers, or nested lists for arrays
    grads: list[Any | None] | None
    flows: dict[tuple[int, int], Any]  # (node, input position) -> gradient along the wire
    kinks: set[int]
    shapes: list[tuple[int, ...]] | None = None


def picture(graph: Graph, point: dict[str, Any] | None, max_nodes: int) -> Picture:
    """The nodes the output depends on (the last max_nodes of them), with values, gradients
    and per-wire gradients when a point is given. An array output has no single gradient:
    its picture shows values and shapes only."""
    reach = graph.ancestors_of_output()
    ancestors = [n.id for n in graph.nodes if reach[n.id]]
    keep = ancestors[-max_nodes:] if max_nodes and len(ancestors) > max_nodes else ancestors
    if point is None:
        return Picture(graph, keep, len(ancestors) - len(keep), None, None, {}, set())
    trace = engine.run(graph, point)
    scalar = not trace.cores[graph.output]
    flows = engine.wire_gradients(graph, trace) if scalar else {}
    return Picture(
        graph,
        keep,
        len(ancestors) - len(keep),
        [_plain(v) for v in trace.values],
        [None if g is None or not scalar else _plain(g) for g in trace.grads],
        {wire: _plain(g) for wire, g in flows.items()},
        set(trace.kinks),
        trace.cores,
    )


def _plain(x: Any) -> Any:
    value: Any = np.asarray(x, dtype=np.float64).tolist()
    return value


def _title(pic: Picture, node_id: int) -> tuple[str, str]:
    """(op symbol, label) for a node: `*` and its name, a variable, or a literal."""
    node = pic.graph.nodes[node_id]
    if node.op == "input":
        return "", node.name or ""
    if node.op == "const":
        return "", pic.graph.text(node_id)
    op = ops.OPS[node.op]
    symbol = op.symbol or op.call or op.name
    if node.op == "neg":
        symbol = "−"
    label = node.name or (pic.graph.output_name() if node_id == pic.graph.output else "")
    return symbol or node.op, label


def _num(x: Any) -> str:
    return "—" if x is None else short_any(x, digits=4, items=4)


def _shape(pic: Picture, node_id: int) -> str:
    """A node's shape for the picture, or '' for a scalar."""
    if pic.shapes is None or not pic.shapes[node_id]:
        return ""
    return str(tuple(pic.shapes[node_id]))


# ---- DOT --------------------------------------------------------------------------------


def layout_span(pic: Picture) -> int:
    """How many ranks the wires cross in all, each node one rank past its furthest input
    (a lower estimate of the hidden nodes Graphviz lays out)."""
    rank: dict[int, int] = {}
    total = 0
    for node_id in pic.keep:
        inputs = [rank.get(i, 0) for i in pic.graph.nodes[node_id].inputs]
        rank[node_id] = 1 + max(inputs) if inputs else 0
        total += sum(rank[node_id] - r for r in inputs)
    return total


def check_layout(pic: Picture) -> int:
    """The layout's span, refused when Graphviz could not lay it out in seconds (it needs
    no values, so a command can ask before any work)."""
    span = layout_span(pic)
    if span > MAX_SPAN:
        raise LimitError(
            f"the picture's wires cross {span:,} ranks in all, more than the {MAX_SPAN:,} "
            "Graphviz lays out in seconds (values used by many operations far apart)",
            hint="draw part of the graph with --max-nodes, or print it with --format dot",
        )
    return span


def to_dot(pic: Picture, rankdir: str = "LR", wire_labels: bool = True) -> str:
    graph = pic.graph
    shown = set(pic.keep)
    # A large layout: one network-simplex iteration a node for ranks and positions, which
    # keeps Graphviz to seconds where its default search runs for minutes.
    quick = "" if wire_labels else ", nslimit=1, nslimit1=1"
    lines = [
        "digraph backprop {",
        f'  graph [rankdir={rankdir}, fontname="Helvetica", nodesep=0.35, ranksep=0.5{quick}];',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.6];',
    ]
    if pic.cut:
        lines.append(
            f'  cut [shape=note, style=dashed, label="{pic.cut:,} more nodes\\n(--max-nodes)"];'
        )
    for node_id in pic.keep:
        lines.append(f"  n{node_id} [{_dot_node(pic, node_id)}];")
    for node_id in pic.keep:
        node = graph.nodes[node_id]
        for k, i in enumerate(node.inputs):
            source = f"n{i}" if i in shown else "cut"
            attrs = _dot_edge(pic, node_id, k, i) if wire_labels else ""
            lines.append(f"  {source} -> n{node_id} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(pic: Picture, node_id: int) -> str:
    node = pic.graph.nodes[node_id]
    symbol, label = _title(pic, node_id)
    rows = []
    if symbol:
        rows.append(f"<b>{html.escape(symbol)}</b>" + (f" {html.escape(label)}" if label else ""))
    else:
        rows.append(f"<b>{html.escape(label)}</b>")
    if _shape(pic, node_id):
        rows.append(f'<font color="#555555">{_shape(pic, node_id)}</font>')
    if pic.values is not None and node.op != "const":
        rows.append(f'<font color="{GREEN}">{html.escape(_num(pic.values[node_id]))}</font>')
        if pic.grads is not None and pic.grads[node_id] is not None:
            rows.append(f'<font color="{RED}">∂ {html.escape(_num(pic.grads[node_id]))}</font>')
    if node_id in pic.kinks:
        rows.append(f'<font color="{KINK}">kink</font>')
    attrs = [f"label=<{'<br/>'.join(rows)}>"]
    if node.op == "input":
        attrs += ["shape=ellipse", "style=filled", 'fillcolor="#e3f2fd"']
    elif node.op == "const":
        attrs += ["shape=plaintext"]
    else:
        attrs += ["shape=box", 'style="rounded"']
    if node_id == pic.graph.output:
        attrs += ["penwidth=2.5", 'style="rounded,filled"', 'fillcolor="#fff8e1"']
    if node_id in pic.kinks:
        attrs.append(f'color="{KINK}"')
    return ", ".join(attrs)


def _dot_edge(pic: Picture, node_id: int, k: int, source: int) -> str:
    if pic.values is None:
        return ""
    value = _num(pic.values[source])
    flow = pic.flows.get((node_id, k))
    label = f'<font color="{GREEN}">{html.escape(value)}</font>'
    if flow is not None:
        label += f'<br/><font color="{RED}">{html.escape(_num(flow))}</font>'
    return f"label=<{label}>"


# ---- Mermaid ----------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """A label as Mermaid shows it literally: its entity codes for the characters that
    would end the label or be read as HTML (`<img …>`, `</script>`), and one line."""
    text = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    for char, entity in MERMAID_ENTITIES:  # '#' first: the entities themselves hold one
        text = text.replace(char, entity)
    return text


MERMAID_ENTITIES = (
    ("#", "#35;"), ("&", "#38;"), ("<", "#lt;"), (">", "#gt;"), ('"', "#quot;"), ("|", "#124;"),
    ("`", "#96;"),
)  # fmt: skip


def to_mermaid(pic: Picture, rankdir: str = "LR") -> str:
    graph = pic.graph
    shown = set(pic.keep)
    lines = [f"flowchart {rankdir}"]
    if pic.cut:
        lines.append(f'  cut["{pic.cut:,} more nodes"]')
    for node_id in pic.keep:
        node = graph.nodes[node_id]
        symbol, label = _title(pic, node_id)
        text = _mermaid_text(" ".join(part for part in (symbol, label) if part))
        if _shape(pic, node_id):
            text += f"<br/>{_shape(pic, node_id)}"
        if pic.values is not None and node.op != "const":
            text += f"<br/>{_num(pic.values[node_id])}"
            if pic.grads is not None and pic.grads[node_id] is not None:
                text += f"<br/>∂ {_num(pic.grads[node_id])}"
        if node_id in pic.kinks:
            text += "<br/>kink"
        shape = ('(["', '"])') if node.op == "input" else ('["', '"]')
        lines.append(f"  n{node_id}{shape[0]}{text}{shape[1]}")
    for node_id in pic.keep:
        for k, i in enumerate(graph.nodes[node_id].inputs):
            source = f"n{i}" if i in shown else "cut"
            if pic.values is None:
                lines.append(f"  {source} --> n{node_id}")
                continue
            flow = pic.flows.get((node_id, k))
            label = _num(pic.values[i]) + ("" if flow is None else f" / ∂ {_num(flow)}")
            lines.append(f'  {source} -->|"{label}"| n{node_id}')
    lines.append(f"  style n{graph.output} stroke-width:3px")
    return "\n".join(lines) + "\n"


# ---- the terminal -------------------------------------------------------------------------


def tree(pic: Picture) -> Any:
    """The graph as a tree from the output down; a node met again is shown by name only."""
    from rich.text import Text
    from rich.tree import Tree

    graph = pic.graph
    shown = set(pic.keep)
    names = graph.short_names()

    def line(node_id: int, again: bool) -> Text:
        symbol, label = _title(pic, node_id)
        text = Text()
        text.append(" ".join(p for p in (symbol, label) if p) or names[node_id], style="bold")
        if pic.graph.nodes[node_id].op not in ops.LEAVES:
            text.append(f" [{names[node_id]}]" if not label else f" [#{node_id}]", style="dim")
        if again:
            text.append("  (shown above)", style="dim")
            return text
        if _shape(pic, node_id):
            text.append(f"  {_shape(pic, node_id)}", style="dim")
        if pic.values is not None and pic.graph.nodes[node_id].op != "const":
            text.append(f"  {_num(pic.values[node_id])}", style=GREEN)
            if pic.grads is not None and pic.grads[node_id] is not None:
                text.append(f"  ∂ {_num(pic.grads[node_id])}", style=RED)
        if node_id in pic.kinks:
            text.append("  kink", style=KINK)
        return text

    root = Tree(line(graph.output, False))
    seen = {graph.output}
    # Depth first, in the order the tree is drawn, so "shown above" always points up.
    stack: list[tuple[int, Any, int]] = [
        (i, root, 1) for i in reversed(graph.nodes[graph.output].inputs)
    ]
    cut_noted: set[int] = set()
    while stack:
        node_id, branch, depth = stack.pop()
        if node_id not in shown:
            if id(branch) not in cut_noted:
                cut_noted.add(id(branch))
                branch.add(Text(f"… {pic.cut:,} more nodes (--max-nodes)", style="dim"))
            continue
        if depth > MAX_TREE_DEPTH:
            branch.add(Text("… deeper (see --format dot)", style="dim"))
            continue
        again = node_id in seen and graph.nodes[node_id].op not in ops.LEAVES
        child = branch.add(line(node_id, again))
        if not again:
            seen.add(node_id)
            stack += [(i, child, depth + 1) for i in reversed(graph.nodes[node_id].inputs)]
    return root


# ---- files through Graphviz ------------------------------------------------------------


def check_output(path: str) -> str:
    """The Graphviz format for a file name, before any work is done."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_FORMATS:
        raise BackpropError(f"{path}: the picture must end in {', '.join(FILE_FORMATS)}")
    if not Path(path).resolve().parent.is_dir():
        raise BackpropError(f"{path}: the folder does not exist")
    check_target(path)
    return FILE_FORMATS[suffix]


def render(pic: Picture, path: str, rankdir: str = "LR") -> list[str]:
    """Write the picture with Graphviz's dot program; what was left out comes back as notes.
    A layout Graphviz could not finish in seconds is refused before it starts."""
    data, notes = layout(pic, check_output(path), rankdir)
    write_atomically(path, data)
    return notes


def layout(pic: Picture, fmt: str = "svg", rankdir: str = "LR") -> tuple[bytes, list[str]]:
    """The picture laid out by Graphviz's dot as `fmt` (svg, png, pdf) bytes, with notes on
    what was left out; an error when dot is missing or cannot finish in time."""
    if len(pic.keep) > MAX_RENDERED:
        raise LimitError(
            f"{len(pic.keep):,} nodes are too many to lay out (at most {MAX_RENDERED:,})",
            hint="draw part of the graph with --max-nodes, or print it with --format dot",
        )
    span, notes = check_layout(pic), []
    if span > LABELLED_SPAN and pic.values is not None:
        notes.append(
            f"wires drawn without their values and gradients: they cross {span:,} ranks, "
            f"more than the {LABELLED_SPAN:,} Graphviz lays out with labels in seconds "
            "(--format dot prints them)"
        )
    dot_text = to_dot(pic, rankdir, wire_labels=span <= LABELLED_SPAN)
    dot = shutil.which("dot")
    if dot is None:
        raise BackpropError(
            "Graphviz's dot program is not installed, so pictures cannot be rendered",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz); "
            "--format dot prints the DOT text without it",
        )
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"],
            input=dot_text.encode(),
            capture_output=True,
            timeout=DOT_TIMEOUT,
            check=False,
            preexec_fn=die_with_parent(),  # dot dies with us: it never writes later
        )
    except subprocess.TimeoutExpired:
        raise LimitError(f"Graphviz took over {DOT_TIMEOUT} s; try a smaller --max-nodes") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise BackpropError(f"Graphviz failed: {message[-1] if message else 'no message'}")
    return done.stdout, notes
