"""Self-contained HTML pages (`-o FILE.html`, `--format html`, the API's `.to_html()`): the
graph as inline SVG with a step-through of the forward and backward pass, the tables the
terminal shows with SymPy's formulas as MathML, and the training page. One file: the style
and the script inline, no network, every text the user gave escaped by `text()`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import cache
from importlib import resources
from typing import Any

from . import numbers
from .layout import Layout, lay_out

CHAR = 7.9  # width of a 13 px monospace character, in SVG units
LINE = 17.0  # height of a line of text in a box
PAD = 8.0
MARGIN = 8.0  # around the graph: a selected box's stroke and its focus outline stay in view
MAX_ELEMENTS = 6  # an array value shows this many elements


def text(value: Any) -> str:
    """The one escaping function for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def script_json(data: Any) -> str:
    """JSON that cannot end the <script> element it sits in (nor open a comment)."""
    raw = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        raw = raw.replace(char, escaped)
    return raw.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@cache
def _asset(name: str) -> str:
    return (resources.files("backprop_cli.render") / "assets" / name).read_text("utf-8")


@cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backprop-cli")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def _policy(script: str) -> str:
    """Nothing loads from anywhere; only our own script (by its hash) runs."""
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'"
    )


def document(title: str, body: str) -> str:
    """A whole page: body inside the page's root element, the style and script inline."""
    script = "\n" + _asset("page.js")  # hashed exactly as it stands between the tags
    version = _version()
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_policy(script)}">\n'
        f'<meta name="generator" content="backprop-cli {version}">\n'
        f"<title>{text(title)}</title>\n<style>\n{_asset('page.css')}</style>\n</head>\n"
        f'<body style="margin:0">\n<main class="bp-page" data-bp-root data-bp-standalone>\n'
        f"{body}\n<footer>Made with backprop-cli {version}: every number on this page "
        "was computed by its engine; the page only shows them.</footer>\n</main>\n"
        f"<script>{script}</script>\n</body>\n</html>\n"
    )


def fragment(body: str) -> str:
    """The same content for a notebook's output: one element with its style and script
    (the arrow keys work while it has the focus)."""
    return (
        f'<div class="bp-page" data-bp-root tabindex="0"><style>{_asset("page.css")}</style>'
        f"{body}<script>{_asset('page.js')}</script></div>"
    )


# ---- numbers -------------------------------------------------------------------------


def shown(value: Any) -> str:
    """A number at the current precision; an array compactly (its shape and a few elements
    when it has more than MAX_ELEMENTS); None as —."""
    return numbers.number_any(value, items=MAX_ELEMENTS)


def full(value: Any) -> str:
    """Every digit, for data attributes and tooltips."""
    if isinstance(value, list):
        return json.dumps(value, allow_nan=True)
    return numbers.full(float(value))


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="bp-num">—</td>'
    return f'<td class="bp-num" title="{text(full(value))}">{text(shown(value))}</td>'


# ---- the step-through's words ----------------------------------------------------------


def _formula(node: dict[str, Any], names: dict[int, str]) -> str:
    from .step import formula

    return formula(node, {i: {"name": name} for i, name in names.items()})


def _partial(out: str, of: str) -> str:
    return f"∂{out}/∂{of}"


def _steps(walk: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Every step's sentence (as the terminal's --step says it); and the last step that
    adds into each node."""
    from .step import Steps

    said = Steps(walk)
    steps: list[dict[str, Any]] = [
        {"kind": "forward", "node": node_id, "say": said.what(n)}
        for n, node_id in enumerate(walk["forward"], start=1)
    ]
    last: dict[int, int] = {}
    for s in walk["backward"]:
        steps.append(
            {
                "kind": "backward",
                "edge": s["edge"],
                "node": s["node"],
                "input": s["input"],
                "total": shown(s["total"]),
                "say": said.what(len(steps) + 1),
            }
        )
        last[s["input"]] = len(steps)
    return steps, last


def step_data(walk: dict[str, Any]) -> dict[str, Any]:
    """The JSON the script reads: each step's sentence and the texts it shows."""
    steps, last = _steps(walk)
    nodes = {
        str(n["id"]): {
            "value": shown(n["value"]),
            "grad": None if n["grad"] is None else shown(n["grad"]),
            "last": last.get(n["id"]),
        }
        for n in walk["nodes"]
    }
    output = next(n for n in walk["nodes"] if n["id"] == walk["output"])
    return {
        "steps": steps,
        "forward_count": len(walk["forward"]),
        "output": walk["output"],
        "seed": shown(output["grad"]),
        "nodes": nodes,
        "start": "Press Next (or →) to walk the forward pass node by node, then the backward "
        "pass wire by wire. Click a node for its paths.",
    }


# ---- the graph -------------------------------------------------------------------------


def _title(node: dict[str, Any]) -> str:
    name = str(node["name"])
    return f"{name}  {node['label']}" if node["kind"] == "operation" else name


def _size(node: dict[str, Any]) -> tuple[float, float]:
    lines = [_title(node), "value " + shown(node["value"])]
    if node["grad"] is not None:
        lines.append("grad " + shown(node["grad"]))
    width = max(len(line) for line in lines) * CHAR + 2 * PAD
    return max(width, 64.0), len(lines) * LINE + PAD


def _wire_label(edge: dict[str, Any]) -> str:
    return "" if edge["local"] is None else shown(edge["local"])


def graph_svg(walk: dict[str, Any], use_dot: bool = True) -> tuple[str, Layout]:
    """The graph as SVG: a box per node (name and op, value, gradient) and an arrow per
    wire labelled with its local derivative; ids and classes the script works with."""
    nodes = {n["id"]: n for n in walk["nodes"]}
    names = {i: n["name"] for i, n in nodes.items()}
    wires = [(e["id"], e["input"], e["node"], _wire_label(e)) for e in walk["edges"]]
    layout = lay_out({i: _size(n) for i, n in nodes.items()}, wires, use_dot)
    # a margin all round for the highlights' strokes and the focus outline; a group, not an
    # image, so that assistive technology still sees the node buttons inside
    m = MARGIN
    parts = [
        f'<svg class="bp-graph" xmlns="http://www.w3.org/2000/svg" role="group" '
        f'viewBox="{-m:.1f} {-m:.1f} {layout.width + 2 * m:.1f} {layout.height + 2 * m:.1f}" '
        f'width="{layout.width + 2 * m:.0f}" aria-label="the computational graph" '
        # shrunk to fit its box, but never below 60 %: a wider graph scrolls inside the box
        f'style="min-width:{0.6 * (layout.width + 2 * m):.0f}px">'
    ]
    for edge in walk["edges"]:
        parts.append(_svg_wire(edge, layout, names))
    for node in nodes.values():
        parts.append(_svg_node(node, layout, walk["output_name"]))
    parts.append("</svg>")
    return "".join(parts), layout


def _svg_wire(edge: dict[str, Any], layout: Layout, names: dict[int, str]) -> str:
    wire = layout.wires[edge["id"]]
    p = wire.points
    d = f"M{p[0][0]:.1f},{p[0][1]:.1f}"
    for j in range(1, len(p) - 2, 3):
        d += " C" + " ".join(f"{x:.1f},{y:.1f}" for x, y in p[j : j + 3])
    (x0, y0), (x1, y1) = p[-2], p[-1]
    length = max(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5, 1e-9)
    ux, uy = (x1 - x0) / length, (y1 - y0) / length
    tip = (x1 + 10 * ux, y1 + 10 * uy)
    left = (x1 - 4 * uy, y1 + 4 * ux)
    right = (x1 + 4 * uy, y1 - 4 * ux)
    head = " ".join(f"{x:.1f},{y:.1f}" for x, y in (tip, left, right))
    frm, to = names[edge["node"]], names[edge["input"]]
    tip_text = f"∂{frm}/∂{to}"
    if edge["operand"]:
        tip_text += f" ({edge['operand']})"
    formula = edge.get("formula")
    if formula and (edge["local"] is None or formula["text"] != shown(edge["local"])):
        tip_text += f" = {formula['text']}"
    label = ""
    if edge["local"] is not None:
        tip_text += f" = {shown(edge['local'])}"
        if wire.label is not None:
            label = (
                f'<text x="{wire.label[0]:.1f}" y="{wire.label[1] + 4:.1f}" '
                f'text-anchor="middle">{text(shown(edge["local"]))}</text>'
            )
    return (
        f'<g class="bp-edge" data-edge="{text(edge["id"])}" data-from="{edge["input"]}" '
        f'data-to="{edge["node"]}"><title>{text(tip_text)}</title><path d="{d}"/>'
        f'<polygon points="{head}"/>{label}</g>'
    )


def _svg_node(node: dict[str, Any], layout: Layout, out: str) -> str:
    box = layout.boxes[node["id"]]
    left, top = box.x - box.width / 2, box.y - box.height / 2
    x = left + PAD
    y = top + PAD / 2 + LINE - 4
    rows = [f'<text x="{x:.1f}" y="{y:.1f}" class="bp-title">{text(node["name"])}']
    if node["kind"] == "operation":
        rows[0] += f'<tspan class="bp-op">  {text(node["label"])}</tspan>'
    rows[0] += "</text>"
    y += LINE
    rows.append(
        f'<text x="{x:.1f}" y="{y:.1f}"><tspan class="bp-k">value </tspan>'
        f'<tspan class="bp-live-value" data-final="{text(shown(node["value"]))}">'
        f"{text(shown(node['value']))}</tspan></text>"
    )
    if node["grad"] is not None:
        y += LINE
        rows.append(
            f'<text x="{x:.1f}" y="{y:.1f}"><tspan class="bp-k">grad </tspan>'
            f'<tspan class="bp-live-grad" data-final="{text(shown(node["grad"]))}">'
            f"{text(shown(node['grad']))}</tspan></text>"
        )
    described = f"{node['name']}: value {shown(node['value'])}"
    if node["grad"] is not None:
        described += f", ∂{out}/∂{node['name']} = {shown(node['grad'])}"
    return (
        f'<g class="bp-node bp-{node["kind"]}" data-node="{node["id"]}" '
        f'data-select="{node["id"]}" tabindex="0" role="button" '
        f'aria-label="{text(described)}"><title>{text(node["text"])}</title>'
        f'<rect x="{left:.1f}" y="{top:.1f}" width="{box.width:.1f}" '
        f'height="{box.height:.1f}" rx="5"/>{"".join(rows)}</g>'
    )


# ---- the sections ----------------------------------------------------------------------


def _controls() -> str:
    buttons = [("reset", "Reset"), ("prev", "◀ Prev"), ("next", "Next ▶"), ("play", "Play")]
    shown_buttons = "".join(
        f'<button type="button" data-action="{a}"'
        + (' aria-pressed="false"' if a == "play" else "")
        + f">{label}</button>"
        for a, label in buttons
    )
    return (
        f'<div class="bp-controls" role="toolbar" aria-label="step through">{shown_buttons}'
        '<span class="bp-count" aria-live="polite"></span></div>'
        '<p class="bp-now" aria-live="polite"></p>'
    )


def _details(walk: dict[str, Any]) -> str:
    """One hidden panel per node, shown when it is clicked: its numbers, its local
    derivatives, every path from the output down to it with its product."""
    names = {n["id"]: n["name"] for n in walk["nodes"]}
    wires: dict[int, list[dict[str, Any]]] = {}
    for e in walk["edges"]:
        wires.setdefault(e["node"], []).append(e)
    out = walk["output_name"]
    panels = ['<div class="bp-details"><p class="bp-detail-empty bp-muted">Click a node (or '
              "focus it and press Enter) to see its paths from the output.</p>"]  # fmt: skip
    for node in walk["nodes"]:
        panels.append(_detail(node, names, wires.get(node["id"], []), walk, out))
    panels.append("</div>")
    return "".join(panels)


def _detail(
    node: dict[str, Any],
    names: dict[int, str],
    wires: list[dict[str, Any]],
    walk: dict[str, Any],
    out: str,
) -> str:
    name = node["name"]
    head = f"{name} = {_formula(node, names)}" if node["kind"] == "operation" else name
    parts = [
        f'<section class="bp-detail" data-detail="{node["id"]}" hidden>',
        f'<h3><code>{text(head)}</code> <button type="button" data-clear>close</button></h3>',
        f"<p>value <b>{text(shown(node['value']))}</b>",
    ]
    if node["grad"] is not None:
        parts.append(
            f" · gradient {text(_partial(out, name))} = <b>{text(shown(node['grad']))}</b>"
        )
    parts.append("</p>")
    if wires:
        items = []
        for e in wires:
            where = f" ({e['operand']})" if e["operand"] else ""
            formula = e.get("formula") or {}
            math = formula.get("mathml") or (
                f"<code>{text(formula['text'])}</code>" if formula.get("text") else ""
            )
            value = "" if e["local"] is None else f" = {text(shown(e['local']))}"
            shown_formula = f" = {math}" if math else ""
            items.append(
                f"<li>{text(_partial(name, names[e['input']]))}{text(where)}{shown_formula}"
                f"{value}</li>"
            )
        parts.append("<p>Local derivatives:</p><ul>" + "".join(items) + "</ul>")
    entry = walk["paths"].get(str(node["id"]))
    if node["grad"] is None or node["id"] == walk["output"]:
        pass  # a constant has no gradient; the output's is its seed
    elif walk["arrays"]:
        parts.append(
            "<p>The paths from the output down to it are highlighted; with arrays each wire "
            "carries a vector-Jacobian product, whose shares the backward steps show.</p>"
        )
    elif entry:
        parts.append(_path_list(entry, names, name, out, walk.get("seed", 1.0)))
    parts.append("</section>")
    return "".join(parts)


def _path_list(
    entry: dict[str, Any], names: dict[int, str], name: str, out: str, seed: Any = 1.0
) -> str:
    count = entry["count"]
    if count == 0:
        return f"<p>The output does not depend on {text(name)}.</p>"
    head = f"<p>{text(numbers.plural(count, 'path'))} from {text(out)} down to {text(name)}"
    if not entry["paths"]:
        return head + " (too many or too long to list; the highlighted wires carry them).</p>"
    items = []
    for path in entry["paths"]:
        route = " → ".join(names[i] for i in path["nodes"])
        factors = " · ".join(shown(f) for f in path["locals"]) or "1"
        items.append(
            f'<li class="bp-path"><code>{text(route)}</code>: {text(factors)} = '
            f'<b class="bp-product" title="{text(full(path["product"]))}">'
            f"{text(shown(path['product']))}</b></li>"
        )
    total = sum(p["product"] for p in entry["paths"])
    said = f"<p>Their sum: {text(shown(total))}</p>"
    if isinstance(seed, float) and seed != 1.0:  # --seed-grad: the output's own gradient
        said = (
            f"<p>Their sum, {text(shown(total))}, times the output's gradient "
            f"{text(shown(seed))} (--seed-grad): {text(shown(total * seed))}</p>"
        )
    return (
        head + ", each the product of its local derivatives:</p><ol>" + "".join(items)
        + "</ol>" + said
    )  # fmt: skip


def graph_section(walk: dict[str, Any], heading: str = "The graph, step by step") -> str:
    """The step-through: controls, the current step's sentence, the SVG, the node panels,
    and the JSON the script reads."""
    svg, layout = graph_svg(walk)
    how = "laid out by Graphviz" if layout.engine == "graphviz" else "laid out in layers by depth"
    notes = "".join(f'<p class="bp-muted">{text(n)}</p>' for n in layout.notes)
    legend = (
        f'<p class="bp-legend">Each box: the node\'s name and operation, its value '
        f"(blue) and ∂{text(walk['output_name'])}/∂node (red, the gradient so far while "
        "stepping). Each arrow carries a value forward and, backward, the gradient times its "
        f"label: the local derivative ∂node/∂input. The graph is {how}.</p>"
    )
    return (
        f'<section class="bp-walk"><h2>{text(heading)}</h2>{_controls()}'
        f'<div class="bp-scroll">{svg}</div>{legend}{notes}{_details(walk)}'
        f'<script type="application/json" class="bp-data">{script_json(step_data(walk))}'
        "</script></section>"
    )


def _table(head: list[tuple[str, bool]], rows: list[str], caption: str) -> str:
    cells = "".join(f'<th scope="col"{" class=bp-num" if num else ""}>{text(h)}</th>'
                    for h, num in head)  # fmt: skip
    return (
        f'<div class="bp-scroll"><table><caption>{text(caption)}</caption>'
        f"<thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def nodes_table(walk: dict[str, Any]) -> str:
    """Every node: what it computes, its value, its gradient and (while stepping) the
    gradient so far."""
    names = {n["id"]: n["name"] for n in walk["nodes"]}
    out = walk["output_name"]
    rows = []
    for n in walk["nodes"]:
        computes = _formula(n, names) if n["kind"] == "operation" else n["kind"]
        sofar = "" if n["grad"] is None else text(shown(n["grad"]))
        rows.append(
            f'<tr data-node="{n["id"]}"><td><button type="button" data-select="{n["id"]}">'
            f"{text(n['name'])}</button></td><td><code>{text(computes)}</code></td>"
            f"<td><code>{text(n['text'])}</code></td>{_cell(n['value'])}{_cell(n['grad'])}"
            f'<td class="bp-num bp-sofar"><span class="bp-live-grad">{sofar}</span></td></tr>'
        )
    head = [("node", False), ("computes", False), ("from the text", False), ("value", True),
            (f"∂{out}/∂node", True), ("so far", True)]  # fmt: skip
    return _table(head, rows, "Every node in evaluation order")
