"""Pictures of the computational graph in the CS231n style: each node shows its op and
display name with its value (green) and gradient (red), each wire the value flowing forward
and the gradient flowing back along it. As DOT for Graphviz, as Mermaid, as JSON, or as a
tree for the terminal; `layout` runs Graphviz's dot for SVG, PNG or PDF.

Large graphs stay readable:

* the nodes a statement made are boxed together (a Graphviz cluster, a Mermaid subgraph),
  and a run of statements alike (the neurons of a layer: `h11 … h18`) is boxed around them,
  with the activations that follow them one for one (`a11 … a18`) in the same box;
* with collapsing on (automatically above COLLAPSE_OVER nodes), repeated blocks fold: of a
  run of at least RUN_MIN statements alike, the first and the last are drawn and the ones
  between become one dashed placeholder, which also takes what is computed from them alone
  (their activations); of a sum or product of at least TERMS_MIN alike terms, the first and
  the last term are drawn, and the partial sums of the terms between become one placeholder
  showing the partial sum's value and gradient;
* `max_nodes` keeps the nodes nearest the output (fewest wires away from it) and folds the
  rest into one placeholder that says how many nodes it holds;
* a graph of over COLLAPSE_OVER nodes is drawn top down (a laptop screen is wide, and a
  picture scrolls down), labels only the wires whose gradient its source does not show
  already, keeps variables out of the statements' boxes and puts a run's results side by
  side: otherwise Graphviz stacks the layers' boxes corner to corner, down the picture.

The DOT is written here, not through the `graphviz` package: every label is an HTML-like
label escaped with html.escape and every id is ours (n4, f0), so there is nothing left to
quote; and running dot needs what the package's `pipe` does not give: a timeout, a dot that
dies with us, and a refusal before it starts when the layout would take minutes.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import engine, ops
from ..core.errors import BackpropError, LimitError
from ..core.graph import Graph
from ..io.files import check_target, die_with_parent, write_atomically
from . import numbers

FILE_FORMATS = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
GREEN, RED, KINK, GREY = "#2e7d32", "#c62828", "#e65100", "#757575"
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
COLLAPSE_OVER = 50  # nodes above which repeated blocks fold unless told otherwise
RUN_MIN = 4  # statements alike before the ones between the first and last fold
TERMS_MIN = 4  # alike terms of a sum or product before the ones between fold
LABEL_CHARS = 48  # of a statement shown as its box's title
ARRAY_ITEMS = 4  # elements of an array shown on a node
DEFAULT_DPI = 96  # Graphviz's own for PNG
# Which operand a wire is, where the order matters (the rest of the binary ops commute).
# (By how the registry writes an op, so that op names stay in the registry.)
COMMUTATIVE = frozenset({"+", "*", "max", "min", "dot"})  # symbols and call names
ROLES = {"/": ("num", "den"), "**": ("base", "exp")}  # by symbol; other ops: 1, 2
SUMS = ("+", "*")  # the chains of alike terms that fold


@dataclass
class Fold:
    """Nodes drawn as one dashed placeholder."""

    kind: str  # "terms" (the middle of a sum), "block" (statements alike), "cut" (max_nodes)
    members: list[int]  # node ids, in evaluation order
    title: str = ""
    note: str = ""
    exit: int | None = None  # the one member used outside, whose value the placeholder shows


@dataclass
class Box:
    """A cluster: the nodes of one statement, or of a run of statements alike."""

    key: str  # s3 (a statement) or b1 (a run)
    label: str
    parent: str | None = None


@dataclass
class Picture:
    """What a picture shows: the nodes drawn as themselves (`keep`), the placeholders
    (`folds`, the max_nodes one last), the boxes around statements, and the values if any."""

    graph: Graph
    keep: list[int]  # node ids drawn as themselves, in evaluation order
    cut: int  # how many ancestors of the output max_nodes left out
    values: list[Any] | None  # numbers, or nested lists for arrays
    grads: list[Any | None] | None
    flows: dict[tuple[int, int], Any]  # (node, input position) -> gradient along the wire
    kinks: set[int]
    shapes: list[tuple[int, ...]] | None = None
    names: list[str] = field(default_factory=list)  # every node's display name
    folds: list[Fold] = field(default_factory=list)
    owner: dict[int, int] = field(default_factory=dict)  # folded node -> index in folds
    boxes: dict[str, Box] = field(default_factory=dict)
    home: dict[str, str] = field(default_factory=dict)  # unit (n4, f0) -> its box's key
    statements: list[tuple[int, str]] = field(default_factory=list)  # (result, text)
    statement_of: dict[int, int] = field(default_factory=dict)  # node -> its statement
    # A large picture labels only the wires that say more than their source node: those
    # of a node used more than once, with the part of its gradient that comes back along
    # each (a wire's value, and a lone wire's gradient, are its source's own).
    sparse: bool = False
    large: bool = False  # over COLLAPSE_OVER nodes: drawn top down, variables out of boxes
    fanout: set[int] = field(default_factory=set)  # nodes used more than once (computed)
    # Units drawn side by side: the results of a run of statements alike (h11, ⋯, h18),
    # which keeps a layer in one column instead of Graphviz's stairs of boxes.
    ranks: list[list[str]] = field(default_factory=list)

    @property
    def folded(self) -> int:
        """Nodes folded by collapsing repeated blocks (max_nodes' cut aside)."""
        return sum(len(f.members) for f in self.folds if f.kind != "cut")

    def unit(self, node_id: int) -> str:
        """The id of what draws a node: n4 itself, or its placeholder f0."""
        fold = self.owner.get(node_id)
        return f"n{node_id}" if fold is None else f"f{fold}"


def picture(
    graph: Graph, point: dict[str, Any] | None, max_nodes: int, *, collapse: bool | None = None
) -> Picture:
    """The nodes the output depends on, with values, gradients and per-wire gradients when
    a point is given (an array output has no single gradient: its picture shows values and
    shapes only). `collapse` folds repeated blocks (None: when there are more than
    COLLAPSE_OVER nodes); `max_nodes` (0: all) keeps that many of what is drawn, those
    nearest the output, and folds the rest into one placeholder."""
    reach = graph.ancestors_of_output()
    shown = [n.id for n in graph.nodes if reach[n.id]]
    names = graph.display_names()
    layout = _Layout(graph, reach, names)
    if collapse or (collapse is None and len(shown) > COLLAPSE_OVER):
        layout.fold_repeats()
    pic = Picture(graph, [], 0, None, None, {}, set(), names=names)
    pic.large = pic.sparse = len(shown) > COLLAPSE_OVER
    pic.folds, pic.owner = layout.folds, layout.owner
    pic.statements = [(s.result, s.text) for s in layout.statements]
    pic.statement_of = dict(layout.of)
    _cut(pic, max_nodes)
    pic.keep = [i for i in shown if i not in pic.owner]
    layout.place(pic)
    if point is None:
        return pic
    trace = engine.run(graph, point)
    scalar = not trace.cores[graph.output]
    flows = engine.wire_gradients(graph, trace) if scalar else {}
    pic.values = [_plain(v) for v in trace.values]
    pic.grads = [None if g is None or not scalar else _plain(g) for g in trace.grads]
    pic.flows = {wire: _plain(g) for wire, g in flows.items()}
    pic.kinks = set(trace.kinks)
    pic.shapes = trace.cores
    return pic


def _plain(x: Any) -> Any:
    value: Any = np.asarray(x, dtype=np.float64).tolist()
    return value


# ---- statements, runs of statements alike, and what folds ---------------------------------


@dataclass
class _Statement:
    result: int
    nodes: list[int]  # the operations and constants it made that the output needs
    text: str
    run: int | None = None  # the run of statements alike it belongs to


class _Layout:
    """Which statement made each node (a statement's nodes are the ones made since the
    previous statement's named result), the runs of statements alike, and the folds."""

    def __init__(self, graph: Graph, reach: list[bool], names: list[str]) -> None:
        self.graph, self.reach, self.names = graph, reach, names
        self.statements: list[_Statement] = []
        self.of: dict[int, int] = {}  # node -> its statement's index (operations, constants)
        current: list[int] = []
        for node in graph.nodes:
            if node.op != "input" and reach[node.id]:
                current.append(node.id)
            ends = node.op != "input" and (node.name is not None or node.id == graph.output)
            if ends and current:
                for i in current:
                    self.of[i] = len(self.statements)
                self.statements.append(_Statement(node.id, current, self._text(node.id)))
                current = []
        self.runs = self._runs() if len(self.statements) > 1 else []
        self.layers = self._layers()
        self.folds: list[Fold] = []
        self.owner: dict[int, int] = {}

    def _text(self, result: int) -> str:
        """The statement as written (cut to LABEL_CHARS): `h11 = x1*w11 + x2*w21`."""
        node = self.graph.nodes[result]
        text = " ".join(self.graph.text(result).split())
        if node.name is not None and not re.match(rf"{re.escape(node.name)}\s*\S?\S?=", text):
            text = f"{node.name} = {text}"
        return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"

    def _kind(self, i: int, local: set[int] | dict[int, int]) -> Any:
        if i in local:
            return local[i] if isinstance(local, dict) else 0
        return "in" if self.graph.nodes[i].op == "input" else "op"

    def _signature(self, statement: _Statement) -> tuple[Any, ...]:
        """The statement's shape: its ops and how they connect, leaves and other
        statements' results as bare kinds (h11 and h12 are alike; so are sin(x*1), sin(x*2))."""
        index = {n: k for k, n in enumerate(statement.nodes)}
        return tuple(
            (node.op, repr(node.attrs), tuple(self._kind(i, index) for i in node.inputs))
            for node in (self.graph.nodes[n] for n in statement.nodes)
        )

    def _runs(self) -> list[list[int]]:
        """Consecutive statements alike, none using another's result: at least two."""
        runs: list[list[int]] = []
        current: list[int] = []
        inside: set[int] = set()  # the current run's results
        signature: tuple[Any, ...] | None = None
        for k, statement in enumerate(self.statements):
            mine = self._signature(statement)
            uses = {i for n in statement.nodes for i in self.graph.nodes[n].inputs}
            if current and mine == signature and not uses & inside:
                current.append(k)
                inside.add(statement.result)
                continue
            if len(current) > 1:
                runs.append(current)
            current, signature, inside = [k], mine, {statement.result}
        if len(current) > 1:
            runs.append(current)
        for r, run in enumerate(runs):
            for k in run:
                self.statements[k].run = r
        return runs

    def _layers(self) -> dict[int, int]:
        """A run followed by one as long whose k-th statement uses the k-th result alone
        (the layer's activations after its sums) shares its box: run -> run it joins."""
        joins: dict[int, int] = {}
        for r, (first, then) in enumerate(zip(self.runs, self.runs[1:], strict=False)):
            if len(first) != len(then) or then[0] != first[-1] + 1:
                continue
            if all(
                {
                    i
                    for n in self.statements[b].nodes
                    for i in self.graph.nodes[n].inputs
                    if self.graph.nodes[i].op not in ops.LEAVES and self.of.get(i) != b
                }
                == {self.statements[a].result}
                for a, b in zip(first, then, strict=True)
            ):
                joins[r + 1] = joins.get(r, r)
        return joins

    # -- folding --

    def fold_repeats(self) -> None:
        for statement in self.statements:
            self._fold_terms(statement)
        self._fold_runs()
        self._fold_leaves()
        self._tidy()

    def _new(self, kind: str) -> int:
        self.folds.append(Fold(kind, []))
        return len(self.folds) - 1

    def _fold_terms(self, statement: _Statement) -> None:
        """Each sum or product of at least TERMS_MIN alike terms, ((T1 + T2) + T3) + … + Tk:
        the terms T2 … Tk-1 and the partial sums up to them fold; T1, Tk and the last sum
        stay. Terms that are other statements' results stay where they are."""
        graph, local = self.graph, set(statement.nodes)
        shape: dict[int, int] = {}  # node -> an id for its subtree's shape
        table: dict[tuple[Any, ...], int] = {}
        for n in statement.nodes:
            node = graph.nodes[n]
            key = (
                node.op,
                repr(node.attrs),
                tuple(shape.get(i, self._kind(i, local)) for i in node.inputs),
            )
            shape[n] = table.setdefault(key, len(table))
        lefts = {
            graph.nodes[n].inputs[0]
            for n in statement.nodes
            if _symbol(graph.nodes[n].op) in SUMS
            and graph.nodes[graph.nodes[n].inputs[0]].op == graph.nodes[n].op
        }
        for top in statement.nodes:
            op = graph.nodes[top].op
            if _symbol(op) not in SUMS or top in lefts:
                continue
            chain = [top]  # the partial sums, from the whole down to T1 + T2
            while True:
                left = graph.nodes[chain[-1]].inputs[0]
                if left not in local or graph.nodes[left].op != op:
                    break
                chain.append(left)
            chain.reverse()
            terms = [graph.nodes[chain[0]].inputs[0]] + [graph.nodes[s].inputs[1] for s in chain]
            # Alike terms: subtrees of the same shape (a11*w31, a12*w32, …), or results of
            # other statements (a1 + a2 + …); never variables (x*x*…*x stays whole).
            alike = all(
                t in local and graph.nodes[t].op not in ops.LEAVES and shape[t] == shape[terms[0]]
                for t in terms
            ) or all(t not in local and graph.nodes[t].op not in ops.LEAVES for t in terms)
            if len(terms) < TERMS_MIN or not alike:
                continue
            members = set(chain[:-1])
            stack = [t for t in terms[1:-1] if t in local]
            while stack:
                n = stack.pop()
                members.add(n)
                stack += [i for i in graph.nodes[n].inputs if i in local]
            fold = self._new("terms")
            for n in members:
                self.owner[n] = fold
            exit_ = chain[-2]
            symbol = ops.OPS[op].symbol or op
            self.folds[fold].exit = exit_
            self.folds[fold].title = f"{symbol} {self.names[exit_]}"
            self.folds[fold].note = f"{numbers.plural(len(terms) - 2, 'term')} folded"

    def _fold_runs(self) -> None:
        """Of each run of at least RUN_MIN statements, those between the first and the last
        fold into one placeholder; a statement computed only from one placeholder's nodes
        (the activations of folded sums) and nodes computed only from them join it."""
        middle = {
            k: r
            for r, run in enumerate(self.runs)
            if len(run) >= RUN_MIN and not any(self._holds_output(k) for k in run)
            for k in run[1:-1]
        }
        graph = self.graph
        for k, statement in enumerate(self.statements):
            if k in middle:
                sources = {
                    self.owner.get(i)
                    for n in statement.nodes
                    for i in graph.nodes[n].inputs
                    if graph.nodes[i].op not in ops.LEAVES and self.of.get(i) != k
                }
                into = sources.pop() if len(sources) == 1 else None
                if into is None or self.folds[into].kind != "block":
                    into = self._block_for(middle[k])
                for n in statement.nodes:
                    self.owner[n] = into
                continue
            for n in statement.nodes:
                node = graph.nodes[n]
                if n in self.owner or n == graph.output or node.op in ops.LEAVES:
                    continue
                sources = {
                    self.owner.get(i) for i in node.inputs if graph.nodes[i].op not in ops.LEAVES
                }
                if len(sources) == 1:
                    into = next(iter(sources))
                    if into is not None and self.folds[into].kind == "block":
                        self.owner[n] = into

    def _holds_output(self, k: int) -> bool:
        return self.graph.output in self.statements[k].nodes

    def _block_for(self, run: int) -> int:
        """The placeholder of a run's middle statements (made the first time)."""
        for f, fold in enumerate(self.folds):
            if fold.kind == "block" and fold.title == f"run{run}":
                return f
        made = self._new("block")
        self.folds[made].title = f"run{run}"
        return made

    def _fold_leaves(self) -> None:
        """Variables and constants used only inside one placeholder go in it."""
        users = self.graph.consumers()
        for node in self.graph.nodes:
            if node.op not in ops.LEAVES or not self.reach[node.id] or node.id in self.owner:
                continue
            if node.id == self.graph.output:
                continue
            folds = {self.owner.get(u) for u in users[node.id] if self.reach[u]}
            into = folds.pop() if len(folds) == 1 else None
            if into is not None:
                self.owner[node.id] = into

    def _tidy(self) -> None:
        """Members in order, empty or single folds dropped, titles and notes written."""
        members: list[list[int]] = [[] for _ in self.folds]
        for n in sorted(self.owner):
            members[self.owner[n]].append(n)
        kept = [f for f, m in enumerate(members) if len(m) > 1]
        renumber = {f: k for k, f in enumerate(kept)}
        self.owner = {n: renumber[f] for n, f in self.owner.items() if f in renumber}
        folds = []
        for f in kept:
            fold = self.folds[f]
            fold.members = members[f]
            if fold.kind == "block":
                self._describe_block(fold)
            folds.append(fold)
        self.folds = folds

    def _describe_block(self, fold: Fold) -> None:
        inside = set(fold.members)
        done = [k for k, s in enumerate(self.statements) if s.result in inside]
        folded = set(done)
        spans: list[str] = []
        for k in done:  # consecutive statements of one run: "h12 … h17"
            name = self.names[self.statements[k].result]
            if spans and k - 1 in folded and self.statements[k - 1].run == self.statements[k].run:
                spans[-1] = spans[-1].split(" … ")[0] + f" … {name}"
            else:
                spans.append(name)
        fold.title = "⋯ " + (", ".join(spans[:2]) + (", …" if len(spans) > 2 else ""))
        fold.note = f"{numbers.plural(len(done), 'statement')} folded"
        exits = self._exits(fold)
        fold.exit = exits[0] if len(exits) == 1 else None

    def _exits(self, fold: Fold) -> list[int]:
        inside = set(fold.members)
        users = self.graph.consumers()
        return [n for n in fold.members if any(self.reach[u] and u not in inside for u in users[n])]

    # -- boxes --

    def place(self, pic: Picture) -> None:
        """Each drawn unit's box: a node in its statement's, a variable used by one
        statement alone in that one, a placeholder in the box holding all it folds; a box
        with fewer than two things in it is dropped (its things go to the box around it)."""
        if len(self.statements) < 2:
            return
        boxes: dict[str, Box] = {}
        for r in range(len(self.runs)):
            if self.layers.get(r, r) != r:
                continue
            joined = [q for q in range(len(self.runs)) if self.layers.get(q, q) == r]
            label = ", ".join(self._run_label(q) for q in joined)
            boxes[f"b{r}"] = Box(f"b{r}", label)
        for k, statement in enumerate(self.statements):
            parent = (
                None
                if statement.run is None
                else f"b{self.layers.get(statement.run, statement.run)}"
            )
            boxes[f"s{k}"] = Box(f"s{k}", statement.text, parent)
        users = self.graph.consumers()
        home: dict[str, str | None] = {}
        for n in pic.keep:
            if n in self.of and not (pic.large and self.graph.nodes[n].op == "const"):
                home[f"n{n}"] = f"s{self.of[n]}"
                continue
            # A variable used by one statement alone goes in its box, except in a large
            # picture: there a box's variables (a layer's weights) would share a rank with
            # the last box's results (the activations before), and Graphviz would stack
            # the two boxes corner to corner, down the whole picture.
            where = {self.of.get(u) for u in users[n] if self.reach[u]}
            only = where.pop() if len(where) == 1 else None
            home[f"n{n}"] = f"s{only}" if only is not None and not pic.large else None
        for f, fold in enumerate(pic.folds):
            where = {self.of[n] for n in fold.members if n in self.of}
            if len(where) == 1:
                home[f"f{f}"] = f"s{where.pop()}"
            else:
                parents = {boxes[f"s{k}"].parent for k in where}
                home[f"f{f}"] = parents.pop() if len(parents) == 1 else None
        # Drop boxes holding fewer than two things, statements' first (they are inside).
        held: dict[str, list[str]] = {}
        for unit, key in home.items():
            if key is not None:
                held.setdefault(key, []).append(unit)
        for key in sorted(boxes, key=lambda k: k[0] != "s"):
            inner = [b for b in boxes.values() if b.parent == key] if key[0] == "b" else []
            if len(held.get(key, [])) + len(inner) < 2:
                parent = boxes[key].parent
                for unit in held.pop(key, []):
                    home[unit] = parent
                    if parent is not None:
                        held.setdefault(parent, []).append(unit)
                for b in inner:
                    b.parent = parent
                del boxes[key]
        pic.boxes = boxes
        pic.home = {u: b for u, b in home.items() if b is not None}
        pic.ranks = self._ranks(pic)

    def _ranks(self, pic: Picture) -> list[list[str]]:
        """Per run, the units drawing its statements' results; a placeholder goes with the
        last run it holds results of."""
        last: dict[str, int] = {}
        for r, run in enumerate(self.runs):
            for k in run:
                last[pic.unit(self.statements[k].result)] = r
        groups: list[list[str]] = [[] for _ in self.runs]
        for unit, r in last.items():
            groups[r].append(unit)
        return [g for g in groups if len(g) > 1]

    def _run_label(self, r: int) -> str:
        run = self.runs[r]
        first, last = self.statements[run[0]].result, self.statements[run[-1]].result
        return f"{self.names[first]} … {self.names[last]}"


def _cut(pic: Picture, max_nodes: int) -> None:
    """Keep the `max_nodes` drawn things nearest the output (fewest wires to it, the later
    first among equals); the others fold into one placeholder."""
    graph = pic.graph
    reach = graph.ancestors_of_output()
    units: dict[str, list[int]] = {}
    for node in graph.nodes:
        if reach[node.id]:
            units.setdefault(pic.unit(node.id), []).append(node.id)
    if not max_nodes or len(units) <= max_nodes:
        return
    inputs: dict[str, set[str]] = {u: set() for u in units}
    for u, members in units.items():
        for n in members:
            inputs[u].update(pic.unit(i) for i in graph.nodes[n].inputs)
        inputs[u].discard(u)
    start = pic.unit(graph.output)
    distance = {start: 0}
    queue = deque([start])
    while queue:
        u = queue.popleft()
        for i in inputs[u]:
            if i not in distance:
                distance[i] = distance[u] + 1
                queue.append(i)
    order = sorted(units, key=lambda u: (distance.get(u, len(units)), -max(units[u])))
    cut = [n for u in order[max_nodes:] for n in units[u]]
    index = len(pic.folds)
    for n in cut:
        pic.owner[n] = index
    pic.folds.append(Fold("cut", sorted(cut)))
    pic.cut = len(cut)
    pic.folds[index].title = f"… {numbers.plural(pic.cut, 'node')} folded"
    pic.folds[index].note = f"(--max-nodes {max_nodes})"
    # Placeholders the cut swallowed are gone: renumber what is left.
    alive = sorted({f for f in pic.owner.values()})
    renumber = {f: k for k, f in enumerate(alive)}
    pic.folds = [pic.folds[f] for f in alive]
    pic.owner = {n: renumber[f] for n, f in pic.owner.items()}


# ---- what every format shows --------------------------------------------------------------


def _title(pic: Picture, node_id: int) -> tuple[str, str]:
    """(op symbol, display name) for a node: `*` and t1, a variable, or a literal."""
    node = pic.graph.nodes[node_id]
    name = pic.names[node_id] if pic.names else pic.graph.display_names()[node_id]
    if node.op in ops.LEAVES:
        return "", name
    op = ops.OPS[node.op]
    symbol = op.symbol or op.call or op.name
    if node.op == "neg":
        symbol = "−"
    return symbol or node.op, name


def _num(x: Any) -> str:
    """A value as the --digits setting shows it; an array's first elements and its last."""
    if x is None:
        return "—"
    if not isinstance(x, list):
        return numbers.number(x)
    array = np.asarray(x, dtype=np.float64)
    text = _compact(array)
    return text if array.size <= ARRAY_ITEMS else f"{tuple(array.shape)} {text}"


def _compact(array: np.ndarray) -> str:
    if array.ndim == 0:
        return numbers.number(float(array))
    if array.size <= ARRAY_ITEMS:
        parts = [_compact(a) for a in array]
    elif array.ndim == 1:
        head = [_compact(a) for a in array[: ARRAY_ITEMS // 2]]
        parts = [*head, "…", _compact(array[-1])]
    else:
        parts = [_compact(array[0]), *(["…"] if array.shape[0] > 1 else [])]
    return "[" + ", ".join(parts) + "]"


def _shape(pic: Picture, node_id: int) -> str:
    """A node's shape for the picture, or '' for a scalar."""
    if pic.shapes is None or not pic.shapes[node_id]:
        return ""
    return str(tuple(pic.shapes[node_id]))


def _role(pic: Picture, node_id: int, k: int) -> str:
    """Which operand input k of a node is, where the order matters: '' where it does not."""
    node = pic.graph.nodes[node_id]
    if len(node.inputs) < 2 or _symbol(node.op) in COMMUTATIVE:
        return ""
    return ROLES.get(_symbol(node.op), ("1", "2", "3", "4"))[k] if k < 4 else str(k + 1)


def _symbol(op_name: str) -> str:
    """How the registry writes an op: its infix symbol, else its call name ('' for leaves)."""
    op = ops.OPS.get(op_name)
    return "" if op is None else (op.symbol or op.call or "")


@dataclass
class _Wire:
    source: str  # unit ids
    target: str
    node: int  # the consuming node, and which of its inputs this is (the first, in a bundle)
    k: int
    source_node: int
    count: int = 1
    sources: set[int] = field(default_factory=set)


def _wires(pic: Picture) -> list[_Wire]:
    """The wires as drawn: one per input of a node drawn as itself; into (or between)
    placeholders, one per pair of ends, counting the wires it stands for."""
    graph, reach = pic.graph, pic.graph.ancestors_of_output()
    wires: list[_Wire] = []
    bundles: dict[tuple[str, str], _Wire] = {}
    for node in graph.nodes:
        if not reach[node.id]:
            continue
        target = pic.unit(node.id)
        for k, i in enumerate(node.inputs):
            source = pic.unit(i)
            if source == target:
                continue
            if node.id not in pic.owner:
                wires.append(_Wire(source, target, node.id, k, i, sources={i}))
                continue
            bundle = bundles.get((source, target))
            if bundle is None:
                bundle = bundles[source, target] = _Wire(source, target, node.id, k, i, 0)
                wires.append(bundle)
            bundle.count += 1
            bundle.sources.add(i)
    return wires


def _order(pic: Picture) -> list[str]:
    """Every drawn unit, in evaluation order (a placeholder where its last member is)."""
    last: dict[str, int] = {}
    for n in pic.keep:
        last[f"n{n}"] = n
    for f, fold in enumerate(pic.folds):
        last[f"f{f}"] = fold.members[-1]
    return sorted(last, key=lambda u: last[u])


def _lines(pic: Picture, unit: str) -> list[tuple[str, str]]:
    """A unit's label as (style, text) lines: title, shape, value, gradient, notes."""
    if unit.startswith("f"):
        fold = pic.folds[int(unit[1:])]
        lines = [("title", fold.title), ("note", fold.note)]
        if fold.exit is not None:
            lines += _numbers(pic, fold.exit)
        return lines
    node_id = int(unit[1:])
    symbol, name = _title(pic, node_id)
    lines = [("title", f"{symbol}\x00{name}" if symbol else f"\x00{name}")]
    if _shape(pic, node_id):
        lines.append(("shape", _shape(pic, node_id)))
    lines += _numbers(pic, node_id)
    if node_id in pic.kinks:
        lines.append(("kink", "kink"))
    return lines


def _numbers(pic: Picture, node_id: int) -> list[tuple[str, str]]:
    if pic.values is None or pic.graph.nodes[node_id].op == "const":
        return []
    lines = [("value", _num(pic.values[node_id]))]
    if pic.grads is not None and pic.grads[node_id] is not None:
        lines.append(("grad", f"∂ {_num(pic.grads[node_id])}"))
    return lines


# ---- DOT --------------------------------------------------------------------------------


def layout_span(pic: Picture) -> int:
    """How many ranks the wires cross in all, each drawn thing one rank past its furthest
    input (a lower estimate of the hidden nodes Graphviz lays out)."""
    rank: dict[str, int] = {}
    feeds: dict[str, list[str]] = {}
    for wire in _wires(pic):
        feeds.setdefault(wire.target, []).append(wire.source)
    total = 0
    for unit in _order(pic):
        inputs = [rank.get(i, 0) for i in feeds.get(unit, [])]
        rank[unit] = 1 + max(inputs) if inputs else 0
        total += sum(rank[unit] - r for r in inputs)
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


def direction(pic: Picture, rankdir: str | None = None) -> str:
    """The layout's direction: `rankdir`, else left to right, or top down for a large
    graph (a laptop screen is wide, and a picture scrolls down more easily than across)."""
    return rankdir or ("TB" if pic.large else "LR")


def to_dot(
    pic: Picture,
    rankdir: str | None = None,
    wire_labels: bool = True,
    *,
    legend: bool = True,
    quick: bool | None = None,
) -> str:
    """The picture as Graphviz's DOT. `wire_labels` off leaves the wires bare (their
    operand positions aside); `quick` (default: when the wires are bare) asks Graphviz for
    a short search, which keeps a large layout to seconds where its default runs minutes."""
    quick = not wire_labels if quick is None else quick
    rankdir = direction(pic, rankdir)
    search = ", nslimit=1, nslimit1=1" if quick else ""
    lines = [
        "digraph backprop {",
        f'  graph [rankdir={rankdir}, fontname="Helvetica", nodesep=0.25, ranksep=0.35, '
        f"newrank=true{search}];",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, arrowsize=0.6, labelfontsize=8, '
        f'labelfontcolor="{GREY}"];',
    ]
    units = _order(pic)
    _dot_boxes(pic, units, None, "  ", lines)
    for wire in _wires(pic):
        attrs = _dot_wire(pic, wire, wire_labels)
        lines.append(
            f"  {wire.source} -> {wire.target}" + (f" [{attrs}]" if attrs else " []") + ";"
        )
    for group in pic.ranks:
        lines.append("  {rank=same; " + "; ".join(group) + "}")
    if legend:
        lines += _dot_legend(pic, wire_labels)
    lines.append("}")
    return "\n".join(lines) + "\n"


def _box_contents(
    pic: Picture, units: list[str], box: str | None
) -> Iterator[tuple[str, list[str]]]:
    """What one box holds, in evaluation order: (unit, the inner boxes that open just
    before it), for every unit; DOT and Mermaid write the same nesting from it."""
    inner = {key: b for key, b in pic.boxes.items() if b.parent == box}
    first: dict[str, int] = {}
    for position, unit in enumerate(units):
        key = pic.home.get(unit)
        while key is not None and key not in inner:
            key = pic.boxes[key].parent
        if key is not None:
            first.setdefault(key, position)
    done: set[str] = set()
    for position, unit in enumerate(units):
        opening = [k for k, p in first.items() if p == position and k not in done]
        done.update(opening)
        yield unit, opening


def _dot_boxes(pic: Picture, units: list[str], box: str | None, pad: str, lines: list[str]) -> None:
    """The units of one box, and its inner boxes, in evaluation order."""
    inner = {key: b for key, b in pic.boxes.items() if b.parent == box}
    for unit, opening in _box_contents(pic, units, box):
        for key in opening:
            lines.append(f"{pad}subgraph cluster_{key} {{")
            outer = inner[key].parent is None and key.startswith("b")
            fill = '"rounded,filled", fillcolor="#fafafa"' if outer else '"rounded"'
            label = html.escape(inner[key].label)
            lines.append(
                f'{pad}  graph [label=<{label}>, style={fill}, color="#bdbdbd", '
                f'fontcolor="{GREY}", fontsize=10, labeljust=l];'
            )
            _dot_boxes(pic, units, key, pad + "  ", lines)
            lines.append(f"{pad}}}")
        if pic.home.get(unit) == box:
            lines.append(f"{pad}{unit} [{_dot_unit(pic, unit)}];")


def _dot_unit(pic: Picture, unit: str) -> str:
    rows = []
    for style, text in _lines(pic, unit):
        if style == "title":
            symbol, _, name = text.partition("\x00")
            if not _:
                rows.append(f"<b>{html.escape(text)}</b>")
            elif symbol:
                rows.append(f"<b>{html.escape(symbol)}</b> {html.escape(name)}")
            else:
                rows.append(f"<b>{html.escape(name)}</b>")
        elif style == "shape":
            rows.append(f'<font color="#555555">{html.escape(text)}</font>')
        elif style == "note":
            rows.append(f'<font color="{GREY}"><i>{html.escape(text)}</i></font>')
        else:
            color = {"value": GREEN, "grad": RED, "kink": KINK}[style]
            rows.append(f'<font color="{color}">{html.escape(text)}</font>')
    # One table row a line: with <br/>, Graphviz draws a line's underscores (w10_1) under
    # the next line's text.
    cells = "".join(f"<tr><td>{row}</td></tr>" for row in rows)
    table = f'<table border="0" cellborder="0" cellspacing="0" cellpadding="1">{cells}</table>'
    attrs: dict[str, str] = {"label": f"<{table}>"}
    styles: list[str] = []
    if unit.startswith("f"):
        fold = pic.folds[int(unit[1:])]
        attrs["shape"] = "note" if fold.kind == "cut" else "box"
        styles += ["dashed"] if fold.kind == "cut" else ["rounded", "dashed"]
        attrs["color"] = f'"{GREY}"'
    else:
        node_id = int(unit[1:])
        node = pic.graph.nodes[node_id]
        if node.op == "input":
            attrs["shape"] = "ellipse"
            attrs["margin"] = "0.04"
            styles.append("filled")
            attrs["fillcolor"] = '"#e3f2fd"'
        elif node.op == "const":
            attrs["shape"] = "plaintext"
        else:
            attrs["shape"] = "box"
            styles.append("rounded")
        if node_id == pic.graph.output:
            attrs["penwidth"] = "2.5"
            styles += [] if "filled" in styles else ["filled"]
            attrs["fillcolor"] = '"#fff8e1"'
        if node_id in pic.kinks:
            attrs["color"] = f'"{KINK}"'
    if styles:
        attrs["style"] = '"' + ",".join(styles) + '"'
    return ", ".join(f"{key}={value}" for key, value in attrs.items())


def _dot_wire(pic: Picture, wire: _Wire, labels: bool) -> str:
    """A wire's attributes: its value and gradient, and which operand it is where the
    order matters (in the label, or as a small head label on a bare wire, which costs
    Graphviz nothing)."""
    attrs = []
    role = _role(pic, wire.node, wire.k) if wire.target.startswith("n") else ""
    if wire.source.startswith("f") or wire.target.startswith("f"):
        attrs.append(f'color="{GREY}"')
    rows = [f'<font color="{GREY}">{role}</font>'] if role else []
    if labels and pic.values is not None:
        if wire.count > 1:
            if len(wire.sources) == 1:
                value = html.escape(_num(pic.values[wire.source_node]))
                rows.append(f'<font color="{GREEN}">{value}</font>')
            rows.append(f'<font color="{GREY}">{wire.count} wires</font>')
        elif not pic.sparse or _fans_out(pic, wire.source_node):
            flow = pic.flows.get((wire.node, wire.k))
            if not pic.sparse or flow is None:
                value = html.escape(_num(pic.values[wire.source_node]))
                rows.append(f'<font color="{GREEN}">{value}</font>')
            if flow is not None:
                rows.append(f'<font color="{RED}">{html.escape(_num(flow))}</font>')
    if role and len(rows) == 1:
        return ", ".join([f'headlabel="{role}"', *attrs])
    if rows:
        attrs.insert(0, f"label=<{'<br/>'.join(rows)}>")
    return ", ".join(attrs)


def _fans_out(pic: Picture, node_id: int) -> bool:
    """Whether a node feeds more than one wire (its gradient is the sum of theirs)."""
    if not pic.fanout:
        reach = pic.graph.ancestors_of_output()
        counts = [0] * len(pic.graph.nodes)
        for node in pic.graph.nodes:
            if reach[node.id]:
                for i in node.inputs:
                    counts[i] += 1
        pic.fanout = {n for n, c in enumerate(counts) if c > 1} | {-1}
    return node_id in pic.fanout


def _dot_legend(pic: Picture, wire_labels: bool = True) -> list[str]:
    """What the colours, shapes and small labels mean; only what this picture shows (no
    wire entry when the wires are drawn bare)."""
    out = pic.names[pic.graph.output]
    rows: list[tuple[str, str]] = [
        ("<b>op</b> name", "an operation, its node's name"),
        ('<font color="#1565c0">ellipse</font>', "a variable (bare: a constant)"),
        ("<b>bold frame</b>", f"the output {out}"),
    ]
    if pic.values is not None:
        rows.append((f'<font color="{GREEN}">value</font>', "its value (forward)"))
        if pic.grads is not None and any(g is not None for g in pic.grads):
            rows.append((f'<font color="{RED}">∂ gradient</font>', f"∂{out}/∂node (backward)"))
        if not wire_labels:
            pass
        elif pic.sparse:
            rows.append((f'wire <font color="{RED}">∂</font>', "the part sent back along it"))
        elif any(w.count == 1 for w in _wires(pic)):
            rows.append(("on a wire", "value forward, gradient back"))
    drawn = [(n, k) for n in pic.keep for k in range(len(pic.graph.nodes[n].inputs))]
    roles = sorted({_role(pic, n, k) for n, k in drawn} - {""}, key=_role_order)
    if roles:
        shown = html.escape(" ".join(roles))
        rows.append((f'<font color="{GREY}">{shown}</font>', "operand positions"))
    if pic.kinks:
        rows.append((f'<font color="{KINK}">kink</font>', "no derivative: one side's used"))
    if pic.folds:
        rows.append(("<i>dashed</i>", "nodes folded into one"))
    cells = "".join(
        f'<tr><td align="left">{key}</td><td align="left">{html.escape(text)}</td></tr>'
        for key, text in rows
    )
    table = (
        '<table border="1" color="#bdbdbd" cellborder="0" cellspacing="0" cellpadding="2">'
        f'<tr><td colspan="2" align="left"><b>legend</b></td></tr>{cells}</table>'
    )
    # A node of its own, tied to nothing (an invisible wire would count as one): Graphviz
    # puts it in the first rank, beside the inputs.
    return [f"  legend [shape=plaintext, fontsize=9, label=<{table}>];"]


def _role_order(role: str) -> tuple[int, str]:
    order = ["1", "2", "num", "den", "base", "exp", "x"]
    return (order.index(role) if role in order else len(order), role)


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


def to_mermaid(pic: Picture, rankdir: str | None = None, wire_labels: bool = True) -> str:
    """The picture as a Mermaid flowchart: a subgraph per box, a dashed node per fold."""
    lines = [f"flowchart {direction(pic, rankdir)}"]
    _mermaid_boxes(pic, _order(pic), None, "  ", lines)
    for wire in _wires(pic):
        role = _role(pic, wire.node, wire.k) if wire.target.startswith("n") else ""
        label = ""
        if wire_labels and pic.values is not None:
            flow = pic.flows.get((wire.node, wire.k))
            if wire.count > 1:
                label = f"{wire.count} wires"
            elif pic.sparse and flow is not None:
                label = f"∂ {_num(flow)}" if _fans_out(pic, wire.source_node) else ""
            else:
                label = _num(pic.values[wire.source_node])
                label += "" if flow is None else f" / ∂ {_num(flow)}"
        label = f"{role}: {label}" if role and label else role or label
        arrow = f'-->|"{label}"|' if label else "-->"
        lines.append(f"  {wire.source} {arrow} {wire.target}")
    lines.append(f"  style {pic.unit(pic.graph.output)} stroke-width:3px")
    for f in range(len(pic.folds)):
        lines.append(f"  style f{f} stroke-dasharray: 4 3")
    return "\n".join(lines) + "\n"


def _mermaid_boxes(
    pic: Picture, units: list[str], box: str | None, pad: str, lines: list[str]
) -> None:
    for unit, opening in _box_contents(pic, units, box):
        for key in opening:
            lines.append(f'{pad}subgraph {key}["{_mermaid_text(pic.boxes[key].label)}"]')
            _mermaid_boxes(pic, units, key, pad + "  ", lines)
            lines.append(f"{pad}end")
        if pic.home.get(unit) == box:
            lines.append(f"{pad}{_mermaid_unit(pic, unit)}")


def _mermaid_unit(pic: Picture, unit: str) -> str:
    parts = []
    for style, text in _lines(pic, unit):
        if style == "title":
            text = " ".join(p for p in text.split("\x00") if p)
        parts.append(_mermaid_text(text))
    text = "<br/>".join(parts)
    if unit.startswith("n") and pic.graph.nodes[int(unit[1:])].op == "input":
        return f'{unit}(["{text}"])'
    return f'{unit}["{text}"]'


# ---- JSON ---------------------------------------------------------------------------------


def to_json(pic: Picture, warnings: list[str] | None = None) -> str:
    """Every node the output depends on (none folded, none cut), with its display name,
    its statement and, with a point, its value and gradient in full precision; `warnings`
    are what the command says on stderr."""
    from .gradient import to_json as strict_json

    graph = pic.graph
    reach = graph.ancestors_of_output()
    of = pic.statement_of
    nodes = []
    for node in graph.nodes:
        if not reach[node.id]:
            continue
        nodes.append(
            {
                "id": node.id,
                "name": node.name,
                "display_name": pic.names[node.id],
                "op": node.op,
                "inputs": list(node.inputs),
                "label": graph.label(node.id),
                "statement": of.get(node.id),
                "shape": list(pic.shapes[node.id]) if pic.shapes is not None else None,
                "value": None if pic.values is None else pic.values[node.id],
                "grad": None if pic.grads is None else pic.grads[node.id],
                "kink": node.id in pic.kinks,
            }
        )
    document = {
        "output": {"id": graph.output, "display_name": pic.names[graph.output]},
        "variables": list(graph.variables),
        "statements": [
            {"id": k, "result": result, "text": text}
            for k, (result, text) in enumerate(pic.statements)
        ],
        "nodes": nodes,
        "wires": [
            {"from": i, "to": node.id, "position": k, "grad": pic.flows.get((node.id, k))}
            for node in graph.nodes
            if reach[node.id]
            for k, i in enumerate(node.inputs)
        ],
        "warnings": [{"message": w} for w in warnings or []],
    }
    text: str = strict_json(document, kind="graph")
    return text + "\n"


# ---- the terminal -------------------------------------------------------------------------


def tree(pic: Picture) -> Any:
    """The graph as a tree from the output down; a node met again is shown by name only,
    a placeholder by its title."""
    from rich.text import Text
    from rich.tree import Tree

    graph = pic.graph

    def line(unit: str, again: bool) -> Text:
        text = Text()
        lines = _lines(pic, unit)
        for style, part in lines[:1] if again else lines:
            if style == "title":
                title = " ".join(p for p in part.split("\x00") if p)
                text.append(title, style="bold" if unit.startswith("n") else "dim")
                continue
            color = {"value": GREEN, "grad": RED, "kink": KINK}.get(style, "dim")
            text.append(f"  {part}", style=color)
        if again:
            text.append("  (shown above)", style="dim")
        return text

    feeds: dict[str, list[int]] = {}  # a placeholder's inputs: a node of each unit
    for wire in _wires(pic):
        if wire.target.startswith("f"):
            shown = feeds.setdefault(wire.target, [])
            if all(pic.unit(i) != wire.source for i in shown):
                shown.append(wire.source_node)

    def inputs(unit: str, node_id: int) -> list[int]:
        return feeds.get(unit, []) if unit.startswith("f") else list(graph.nodes[node_id].inputs)

    root = Tree(line(pic.unit(graph.output), False))
    seen = {pic.unit(graph.output)}
    # Depth first, in the order the tree is drawn, so "shown above" always points up.
    stack: list[tuple[int, Any, int]] = [
        (i, root, 1) for i in reversed(graph.nodes[graph.output].inputs)
    ]
    while stack:
        node_id, branch, depth = stack.pop()
        unit = pic.unit(node_id)
        if depth > MAX_TREE_DEPTH:
            branch.add(Text("… deeper (see --format dot)", style="dim"))
            continue
        leaf = unit.startswith("n") and graph.nodes[node_id].op in ops.LEAVES
        again = unit in seen and not leaf
        child = branch.add(line(unit, again))
        seen.add(unit)
        if not again:
            stack += [(i, child, depth + 1) for i in reversed(inputs(unit, node_id))]
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


def render(
    pic: Picture,
    path: str,
    rankdir: str | None = None,
    *,
    dpi: int | None = None,
    wire_labels: bool = True,
    legend: bool = True,
) -> list[str]:
    """Write the picture with Graphviz's dot program; what was left out comes back as notes.
    A layout Graphviz could not finish in seconds is refused before it starts."""
    data, notes = layout(
        pic, check_output(path), rankdir, dpi=dpi, wire_labels=wire_labels, legend=legend
    )
    write_atomically(path, data)
    return notes


def layout(
    pic: Picture,
    fmt: str = "svg",
    rankdir: str | None = None,
    *,
    dpi: int | None = None,
    wire_labels: bool = True,
    legend: bool = True,
) -> tuple[bytes, list[str]]:
    """The picture laid out by Graphviz's dot as `fmt` (svg, png, pdf) bytes, with notes on
    what was left out; an error when dot is missing or cannot finish in time. `dpi` sets a
    PNG's resolution (Graphviz's default is 96: 11-point text is about 15 pixels high)."""
    drawn = len(pic.keep) + len(pic.folds)
    if drawn > MAX_RENDERED:
        raise LimitError(
            f"{drawn:,} nodes are too many to lay out (at most {MAX_RENDERED:,})",
            hint="draw part of the graph with --max-nodes, or print it with --format dot",
        )
    span, notes = check_layout(pic), []
    labelled = wire_labels and span <= LABELLED_SPAN
    if wire_labels and not labelled and pic.values is not None:
        notes.append(
            f"wires drawn without their values and gradients: they cross {span:,} ranks, "
            f"more than the {LABELLED_SPAN:,} Graphviz lays out with labels in seconds "
            "(--format dot prints them)"
        )
    dot_text = to_dot(pic, rankdir, labelled, legend=legend, quick=span > LABELLED_SPAN)
    extra = [f"-Gdpi={dpi}"] if dpi is not None and fmt == "png" else []
    return run_dot(dot_text, fmt, extra), notes


def run_dot(
    dot_text: str, fmt: str, extra: list[str] | None = None, timeout: float = DOT_TIMEOUT
) -> bytes:
    """Graphviz's dot run on dot_text (-T`fmt`), bounded in time and dying with us; an
    error when dot is missing or fails."""
    dot = shutil.which("dot")
    if dot is None:
        raise BackpropError(
            "Graphviz's dot program is not installed, so pictures cannot be rendered",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz); "
            "--format dot prints the DOT text without it",
        )
    command = [dot, f"-T{fmt}", *(extra or [])]
    try:
        done = subprocess.run(
            command,
            input=dot_text.encode(),
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=die_with_parent(),  # dot dies with us: it never writes later
        )
    except subprocess.TimeoutExpired:
        raise LimitError(f"Graphviz took over {timeout:g} s; try a smaller --max-nodes") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise BackpropError(f"Graphviz failed: {message[-1] if message else 'no message'}")
    return done.stdout


def fold_notes(pic: Picture, max_nodes: int, command: str = "backprop graph") -> list[str]:
    """What the picture folded, to say once on stderr (the JSON holds every node);
    `command` is where the options that unfold it live."""
    from .numbers import plural

    notes = []
    if pic.folded:
        count = sum(1 for f in pic.folds if f.kind != "cut")
        flag = "--no-collapse" if command == "backprop graph" else "backprop graph --no-collapse"
        notes.append(
            f"{plural(pic.folded, 'node')} of repeated blocks folded into "
            f"{plural(count, 'placeholder')} (dashed; {flag} draws every node)"
        )
    if pic.cut:
        notes.append(
            f"{plural(pic.cut, 'node')} folded into one placeholder: --max-nodes {max_nodes} "
            f"draws the {max_nodes} nearest the output (--max-nodes 0: all)"
        )
    return notes
