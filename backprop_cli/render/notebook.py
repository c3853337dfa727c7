"""The reports as notebook output: small HTML tables and verdict lines for `_repr_html_`,
with every text that came from the user escaped (one function, `text`), and numbers with
the --digits setting (render/numbers)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from . import numbers

STYLE = (
    "<style>.bp-table{border-collapse:collapse;font-family:ui-monospace,monospace;"
    "font-size:12px}.bp-table th,.bp-table td{border:1px solid #ccc;padding:2px 8px;"
    "text-align:right}.bp-table th{background:#f4f4f4}.bp-table td.bp-left{text-align:left}"
    ".bp-ok{color:#1e7b34}.bp-bad{color:#b02a37}.bp-note{color:#555}</style>"
)


def text(value: Any) -> str:
    """Anything shown in a page, escaped for HTML (quotes too)."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int | None = None) -> str:
    """A number with `digits` significant digits (default: the --digits setting, 0: all);
    arrays and lists as their elements; anything else as its text."""
    if value is None:
        return "—"
    if isinstance(value, list):
        return "[" + ", ".join(number(v, digits) for v in value) + "]"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return numbers.number(float(value), digits)
    return str(value)


def table(headers: list[str], rows: Iterable[list[Any]], left: int = 1, caption: str = "") -> str:
    """An HTML <table>; the first `left` columns are text, the rest numbers."""
    out = ['<table class="bp-table">']
    if caption:
        out.append(f"<caption>{text(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{text(h)}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = [
            f'<td class="bp-left">{text(c)}</td>' if i < left else f"<td>{text(number(c))}</td>"
            for i, c in enumerate(row)
        ]
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def verdicts(lines: list[tuple[str, str]]) -> str:
    """The check lines (mark, sentence) as a list, agreement in green, the rest in red."""
    items = []
    for mark, line in lines:
        kind = "bp-ok" if mark == "✓" else ("bp-note" if mark not in ("✗", "!") else "bp-bad")
        items.append(f'<li class="{kind}">{text(mark)} {text(line)}</li>')
    return '<ul style="list-style:none;padding-left:0">' + "".join(items) + "</ul>"


def grad_html(report: dict[str, Any]) -> str:
    """The grad report: output value, the nodes table (each node by its one display name),
    the partials table, the verdicts."""
    from .gradient import _mark, check_lines, node_names, node_text, output_name

    name = output_name(report)
    names = node_names(report)
    statements = numbers.plural(report["statements"], "statement")
    head = (
        f"<p><b>{text(name)}</b> = {text(number(report['value']))}"
        f" <span class='bp-note'>({statements}, {text(report['dtype'])})</span></p>"
    )
    nodes = table(
        ["id", "node", "op", "inputs", "value", f"∂{name}/∂node"],
        (
            [
                n["id"],
                node_text(n, names[n["id"]]) + (" (output)" if n["output"] else ""),
                n["op"],
                ", ".join(names[i] for i in n["inputs"]),
                n["value"],
                n["grad"],
            ]
            for n in report["nodes"]
        ),
        left=4,
        caption="Computational graph (forward values, gradients of the output)",
    )
    partials = table(
        ["partial", "SymPy formula", "engine", "exact", "torch", "finite diff.", "agree"],
        (
            [
                f"∂{name}/∂{p['element']}",
                p.get("symbolic") or "",
                p["engine"],
                p.get("symbolic_value"),
                p.get("torch"),
                p.get("finite_difference"),
                _mark(p),
            ]
            for p in report["partials"]
        ),
        left=2,
        caption=f"Partial derivatives of {name}",
    )
    warnings = "".join(
        f"<p class='bp-note'>warning: {text(w['message'])}</p>" for w in report["warnings"]
    )
    return STYLE + head + nodes + partials + verdicts(check_lines(report)) + warnings


def rows_html(report: dict[str, Any], key: str, columns: list[str], caption: str) -> str:
    """A table of report[key]'s dict rows, the given columns in order."""
    return STYLE + table(
        columns, ([row.get(c) for c in columns] for row in report.get(key, [])), caption=caption
    )


def pre(body: str, note: str = "") -> str:
    """Preformatted text (a terminal tree, a formula), with a note above it."""
    shown = f"<p class='bp-note'>{text(note)}</p>" if note else ""
    return STYLE + shown + f"<pre>{text(body)}</pre>"


def rich_html(renderables: list[Any], width: int = 100) -> str:
    """Rich renderables (the terminal's tables) as HTML with inline styles."""
    import io

    from rich.console import Console

    console = Console(
        width=width, record=True, file=io.StringIO(), color_system="truecolor", force_jupyter=False
    )
    for item in renderables:
        console.print(item, highlight=False)
    return console.export_html(
        inline_styles=True,
        code_format='<pre style="font-family:ui-monospace,monospace;font-size:12px">{code}</pre>',
    )


def tree_text(pic: Any) -> str:
    """A picture as the terminal's tree, in plain text."""
    import io

    from rich.console import Console

    from .picture import tree

    console = Console(
        width=100, record=True, color_system=None, file=io.StringIO(), force_jupyter=False
    )
    console.print(tree(pic))
    return console.export_text()
