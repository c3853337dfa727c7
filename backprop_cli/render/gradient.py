"""Report -> text. Tables and markdown for people, JSON and CSV for scripts.

Functions here return strings or Rich renderables and never print. JSON and CSV are built
without Rich (Rich wraps long lines when output is piped).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import visible

if TYPE_CHECKING:
    from rich.console import RenderableType

MAX_CELL = 400  # characters of a formula shown in a table cell
MAX_PARTIAL_ROWS = 24  # rows of the partials table (JSON holds them all)

_MARKS = {"ok": "✓", "mismatch": "✗"}
_STATUS_TEXT = {
    "kink": "kink",
    "convention": "convention differs",
    "undefined": "undefined here",
    "inconclusive": "can't resolve",
    "skipped": "skipped",
    "budget": "skipped: budget",
    "error": "SymPy failed",
}


def fmt(x: float | None, dtype: str = "float64") -> str:
    """The shortest text that reads back as the same number in the engine's dtype."""
    if x is None:
        return "—"
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = str(np.float32(x)) if dtype == "float32" else repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def fmt_any(x: Any, dtype: str = "float64") -> str:
    """`fmt` for a number or an array (nested lists), every element in full."""
    if isinstance(x, list):
        return "[" + ", ".join(fmt_any(v, dtype) for v in x) + "]"
    return fmt(x, dtype)


def short_any(x: Any, dtype: str = "float64", digits: int = 10, items: int = 6) -> str:
    """`short` for a number, or a compact array: every element when there are at most
    `items`, else the shape and the first elements ((10,) [0, 1, 2, …, 9])."""
    if not isinstance(x, list):
        return short(x, dtype, digits)
    array = np.asarray(x, dtype=np.float64)
    text = _compact(array, lambda v: short(v, dtype, digits), items)
    return text if array.size <= items else f"{tuple(array.shape)} {text}"


def _compact(array: np.ndarray, cell: Any, items: int) -> str:
    if array.ndim == 0:
        return str(cell(float(array)))
    n = array.shape[0]
    if array.size <= items:
        parts = [_compact(a, cell, items) for a in array]
    elif array.ndim == 1:
        head = max(1, items // 2)
        parts = [*(_compact(a, cell, items) for a in array[:head]), "…"]
        parts.append(_compact(array[-1], cell, items))
    else:
        parts = [_compact(array[0], cell, items), *(["…"] if n > 1 else [])]
    return "[" + ", ".join(parts) + "]"


def output_name(report: dict[str, Any]) -> str:
    """What to call the output in ∂out/∂x: its name, else f, never a variable's name."""
    node = report["nodes"][report["output"]["id"]]
    taken = set(report["variables"])
    for name in (node["name"], "f", "out", "output"):
        if name and name not in taken:
            return str(name)
    return "output_"


def _cap(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


# ---- JSON and CSV ---------------------------------------------------------------------


def _nullify(value: Any, path: str, found: list[str], rows: dict[str, str] | None = None) -> Any:
    """The report with NaN and infinities as None (each one's path noted in `found`). With
    `rows`, every innermost list of finite numbers is swapped for a key into `rows`, which
    holds its compact JSON: one line per row of an array, written by the C encoder."""
    if isinstance(value, float) and not math.isfinite(value):
        found.append(f"{path} ({fmt(value)})")
        return None
    if isinstance(value, dict):
        return {k: _nullify(v, f"{path}.{k}" if path else k, found, rows) for k, v in value.items()}
    if isinstance(value, list):
        if (
            rows is not None
            and value
            and all(type(v) is float or type(v) is int for v in value)
            and all(map(math.isfinite, value))
        ):
            key = f"{_ROW_MARK}{len(rows)}"
            rows[key] = json.dumps(value, allow_nan=False)
            return key
        return [_nullify(v, f"{path}[{i}]", found, rows) for i, v in enumerate(value)]
    return value


_ROW_MARK = "\x00row"  # NUL never reaches a report from input: the parser refuses it


def to_json(report: dict[str, Any]) -> str:
    """Strict JSON: NaN and infinities become null, with a warning entry saying where."""
    found: list[str] = []
    rows: dict[str, str] = {}
    clean = _nullify(report, "", found, rows)
    if found:
        shown = ", ".join(found[:12]) + (f" and {len(found) - 12} more" if len(found) > 12 else "")
        clean["warnings"].append({"message": f"non-finite numbers written as null: {shown}"})
    text = json.dumps(clean, indent=2, ensure_ascii=False, allow_nan=False)
    if not rows:
        return text
    return re.sub(r'"\\u0000row(\d+)"', lambda m: rows[f"{_ROW_MARK}{m.group(1)}"], text)


def to_csv(report: dict[str, Any], delimiter: str = ",") -> str:
    """One row: the inputs, the output value and d_<var> for each partial; an array gives
    one column per element (x[0], x[1], d_x[0], …)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    dtype = report["dtype"]
    header: list[str] = []
    row: list[str] = []
    for name, value in report["variables"].items():
        for label, x in _flat(name, value):
            header.append(label)
            row.append(fmt(x))
    for label, x in _flat("value", report["value"]):
        header.append(label)
        row.append(fmt(x, dtype))
    for name in report["wrt"]:
        for label, x in _flat(f"d_{name}", report["gradient"][name]):
            header.append(label)
            row.append(fmt(x, dtype))
    for entry in report.get("second_order", {}).get("entries", []):
        header.append(f"d2_{entry['row']}_{entry['column']}")
        row.append(fmt(entry["engine"]))
    if len(set(header)) != len(header):
        from ..core.errors import BackpropError

        clash = next(h for h in header if header.count(h) > 1)
        raise BackpropError(
            f"the CSV columns would have two called {clash!r}: rename that variable, "
            "or use --format json"
        )
    writer.writerow(header)
    writer.writerow(row)
    return buffer.getvalue()


def _flat(name: str, value: Any) -> list[tuple[str, Any]]:
    """(column, number) pairs: the name for a number, name[i,j] per element of an array."""
    if not isinstance(value, list):
        return [(name, value)]
    array = np.asarray(value, dtype=np.float64)
    return [
        (f"{name}[{','.join(map(str, index))}]", float(array[index]))
        for index in np.ndindex(*array.shape)
    ]


# ---- shared pieces of the human formats ----------------------------------------------


def _mark(partial: dict[str, Any]) -> str:
    statuses = partial["status"].values()
    if any(s == "mismatch" for s in statuses):
        return "✗"
    if all(s in ("ok", "skipped") for s in statuses):
        return "✓"
    return "✓*"


def _symbolic_cell(partial: dict[str, Any]) -> str:
    """SymPy's partial as LaTeX when asked for (--latex), else in SymPy syntax."""
    if partial.get("latex"):
        return _cap(partial["latex"])
    if partial["symbolic"] is not None:
        return _cap(partial["symbolic"])
    return _STATUS_TEXT.get(partial["status"]["symbolic"], "—")


def _check_cell(partial: dict[str, Any], key: str, digits: int | None = None) -> str:
    """A check's value (every digit unless `digits`), or why it was not compared."""
    status = partial["status"][key]
    value = partial[key] if key != "symbolic" else partial["symbolic_value"]
    text = fmt(value) if digits is None else short(value, "float64", digits)
    if status in ("ok", "mismatch"):
        return text
    note = _STATUS_TEXT.get(status, status)
    return note if value is None else f"{text} ({note})"


def check_lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    """One (mark, sentence) per check, for the summary under the tables."""
    checks = report["checks"]
    return [
        _torch_line(checks["torch"]),
        _fd_line(checks["finite_difference"]),
        _symbolic_line(checks["symbolic"]),
    ]


def _torch_line(torch: dict[str, Any]) -> tuple[str, str]:
    if torch["ok"] is None:
        return "·", f"torch autograd: skipped ({torch['skipped']})"
    what = (
        f"torch autograd, {torch['device']} {torch['dtype']}: "
        f"{torch['compared']} node values and gradients"
    )
    unresolved = torch.get("inconclusive") or 0
    aside = f"; {unresolved} too ill-conditioned to compare" if unresolved else ""
    if torch["ok"]:
        return "✓", f"{what} agree, max error {error(torch['max_error'])}{aside}"
    bad = ", ".join(f"node {m['node']} {m['what']}" for m in torch["mismatches"][:5])
    return "✗", f"{what}: disagreement at {bad}"


def _partials_agree(n: int) -> str:
    return "1 partial agrees" if n == 1 else f"{n} partials agree"


def _fd_line(fd: dict[str, Any]) -> tuple[str, str]:
    not_compared = fd.get("not_compared") or {}
    aside = ", ".join(f"{v} ({_STATUS_TEXT.get(s, s)})" for v, s in not_compared.items())
    aside = f"; not compared: {aside}" if aside else ""
    if fd.get("mode") == "directional":
        return _fd_directional_line(fd, aside)
    if fd["ok"] is None:
        return "·", f"finite differences: {fd['skipped']}{aside}"
    if fd["ok"]:
        n = _partials_agree(fd["compared"])
        return (
            "✓",
            f"finite differences ({fd['method']}): {n}, max error {error(fd['max_error'])}{aside}",
        )
    return "✗", f"finite differences disagree for {', '.join(fd['mismatches'])}"


def _fd_directional_line(fd: dict[str, Any], aside: str) -> tuple[str, str]:
    """Finite differences of a large graph: the gradient along a few random directions."""
    what = f"finite differences ({fd['directions']} random directions)"
    if fd["ok"] is None:
        return "·", f"{what}: {fd['skipped']}{aside}"
    if fd["ok"]:
        n = fd["compared"]
        agree = (
            "1 directional derivative agrees" if n == 1 else f"{n} directional derivatives agree"
        )
        return (
            "✓",
            f"{what}: {agree} (gradient · u over {fd['elements']:,} elements), "
            f"max error {error(fd['max_error'])}{aside}",
        )
    shown = "; ".join(
        f"{a['direction']}: engine gradient · u {fmt(a['engine'])} vs {fmt(a['finite_difference'])}"
        for a in fd["along"]
        if a["status"] == "mismatch"
    )
    return "✗", f"{what} disagree: {shown}"


def _symbolic_line(sym: dict[str, Any]) -> tuple[str, str]:
    if sym.get("skipped"):
        return "·", f"SymPy: skipped ({sym['skipped']})"
    if sym["state"] == "error":
        return "·", f"SymPy: failed ({sym['error']}); the numeric results stand"
    if sym["state"] == "budget":
        budget = fmt(sym["budget_seconds"])
        return "·", f"SymPy: skipped: budget ({budget} s); the numeric results stand"
    note = "" if sym["simplified"] else " (not simplified within the budget)"
    if sym["ok"] is None:
        return "·", f"SymPy: nothing comparable at this point{note}"
    if sym["ok"]:
        n = _partials_agree(sym["compared"])
        return (
            "✓",
            f"SymPy, evaluated exactly: {n}, max error {error(sym['max_error'])}{note}",
        )
    return "✗", f"SymPy partials disagree for {', '.join(sym['mismatches'])}"


def _origin(report: dict[str, Any]) -> str:
    n = report["statements"]
    where = "" if report["source"] == "expression" else f" from {report['source']}"
    if n > 1:
        return f"   (the last of {n} statements{where})"
    return f"   ({where.strip()})" if where else ""


SWEEP_SHOWN = 8  # named intermediates listed in the table
POINT_SHOWN = 12  # variables named in the heading; the rest are counted (JSON has all)


def _point(report: dict[str, Any]) -> str:
    items = list(report["variables"].items())
    shown = ", ".join(f"{k} = {short_any(v, 'float64', 17)}" for k, v in items[:POINT_SHOWN])
    more = len(items) - POINT_SHOWN
    return shown + (f", … ({more:,} more values)" if more > 0 else "")


# ---- Rich tables ------------------------------------------------------------------------


def short(x: float | None, dtype: str = "float64", digits: int = 10) -> str:
    """A table cell: the exact shortest text when it is short, else `digits` significant
    digits (trailing zeros kept, so 0.10000000001 shows as 0.1000000…) and '…'. JSON and
    markdown always carry every digit."""
    text = fmt(x, dtype)
    if sum(c.isdigit() for c in text.split("e")[0].lstrip("-0.")) <= digits + 2:
        return text
    assert x is not None
    mantissa, _, exponent = format(x, f"#.{digits}g").partition("e")
    return mantissa.rstrip(".") + "…" + (f"e{exponent}" if exponent else "")


def error(x: float) -> str:
    """An error size: two significant digits are plenty."""
    return "0" if x == 0 else format(x, ".2g")


def _digits(width: int) -> int:
    return 10 if width >= 110 else 7 if width >= 80 else 4


def tables(report: dict[str, Any], width: int = 100, max_rows: int = 0) -> list[RenderableType]:
    """The human report: heading, graph table (at most `max_rows` rows, 0: all), partials,
    and the checks' verdicts."""
    out: list[RenderableType] = [
        _heading(report),
        _graph_table(report, _digits(width), max_rows, width),
    ]
    if report["partials"]:
        out += _partials(report, width)
    if "second_order" in report:
        out.append(_second_order(report, width))
    out.append(_summary(report))
    return out


def _second_order(report: dict[str, Any], width: int) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    second = report["second_order"]
    digits = _digits(width)
    inline = width >= 110
    table = Table(title=f"Second derivatives of {output_name(report)}", title_justify="left")
    table.add_column("partial", no_wrap=True)
    if inline:
        table.add_column("SymPy formula")
    table.add_column("engine", justify="right", style="bold red", no_wrap=True)
    for title in ("SymPy exact", "torch", "finite diff."):
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("agree", justify="center", no_wrap=True)
    for e in second["entries"]:
        cells = [
            short(e["engine"], "float64", digits),
            *(_entry_cell(e, key, digits) for key in ("symbolic", "torch", "finite_difference")),
        ]
        mark = _mark(e)
        table.add_row(
            _entry_name("hessian", {**second}, e["row"], e["column"]),
            *([_cap(e["symbolic"] or "—")] if inline else []),
            *cells,
            Text(mark, style="green" if mark.startswith("✓") else "bold red"),
        )
    return table


def _entry_cell(entry: dict[str, Any], key: str, digits: int) -> str:
    status = entry["status"][key]
    value = entry["symbolic_value"] if key == "symbolic" else entry[key]
    text = short(value, "float64", digits)
    if status in ("ok", "mismatch"):
        return text
    note = _STATUS_TEXT.get(status, status)
    return note if value is None else f"{text} ({note})"


def _heading(report: dict[str, Any]) -> RenderableType:
    from rich.text import Text

    dtype = report["dtype"]
    name = output_name(report)
    head = Text()
    head.append(f"{name} = ", style="bold")
    head.append(_cap(" ".join(report["output"]["text"].split())))
    head.append(_origin(report), style="dim")
    head.append("\nvalue ", style="bold")
    head.append(short_any(report["value"], dtype, 17), style="bold green")
    if report["output"].get("shape"):
        head.append(f"  (shape {tuple(report['output']['shape'])})", style="dim")
    if report["variables"]:
        head.append(f"  at {_point(report)}")
    if dtype != "float64":
        rounded = {k: v for k, v in report["variables_used"].items() if v != report["variables"][k]}
        shown = ", ".join(f"{k} = {short_any(v, 'float64', 17)}" for k, v in rounded.items())
        head.append(f"  ({dtype}" + (f": {shown})" if shown else ")"))
    if report.get("symbolic_output"):
        head.append("\nSymPy: ", style="bold")
        head.append(f"{name} = {_cap(report['symbolic_output'])}")
    return head


def _shown_nodes(nodes: list[dict[str, Any]], max_rows: int) -> list[dict[str, Any] | None]:
    """The rows to show: all, or the first and last ones around a gap (None) that keeps the
    output row and every node with a note."""
    if not max_rows or len(nodes) <= max_rows:
        return list(nodes)
    keep = {n["id"] for n in nodes if n["output"] or n["notes"]}
    head, tail = (max_rows * 3) // 4, max_rows // 4
    keep |= {n["id"] for n in nodes[:head]} | {n["id"] for n in nodes[len(nodes) - tail :]}
    rows: list[dict[str, Any] | None] = []
    for node in nodes:
        if node["id"] in keep:
            rows.append(node)
        elif rows and rows[-1] is not None:
            rows.append(None)
    return rows


def _graph_table(
    report: dict[str, Any], digits: int, max_rows: int = 0, width: int = 100
) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    dtype = report["dtype"]
    name = output_name(report)
    notes = any(node["notes"] for node in report["nodes"])
    nodes = report["nodes"]
    rows = _shown_nodes(nodes, max_rows)
    title = f"Computational graph: value and ∂{name}/∂node"
    hidden = len(nodes) - sum(r is not None for r in rows)
    caption = f"{hidden:,} of {len(nodes):,} nodes not shown (--max-rows 0 shows all)"
    table = Table(
        title=title, title_justify="left", caption=caption if hidden else None,
        caption_justify="left",
    )  # fmt: skip
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("node", min_width=8)
    table.add_column("op", no_wrap=True)
    table.add_column("inputs")
    arrays = any(node["shape"] for node in nodes)
    room = max(14, (width - 40) // 2) if arrays else None
    table.add_column(
        "value", justify="right", style="green", no_wrap=True, max_width=room,
        overflow="ellipsis",
    )  # fmt: skip
    table.add_column(
        f"∂{name}/∂node", justify="right", style="red", no_wrap=True, max_width=room,
        overflow="ellipsis",
    )  # fmt: skip
    if notes:
        table.add_column("note", style="yellow")
    cell_digits = min(digits, 4 if width < 110 else 6) if arrays else digits
    items = 4 if width < 110 else 6
    for node in rows:
        if node is None:
            table.add_row("…", "…", "", "", "", "", *([""] if notes else []))
            continue
        label = node["label"] + (" ◀ output" if node["output"] else "")
        row = [
            str(node["id"]),
            Text(label, style="bold" if node["output"] or node["op"] == "input" else ""),
            node["op"],
            ",".join(map(str, node["inputs"])),
            *(
                short_any(v, dtype, cell_digits if isinstance(v, list) else digits, items)
                for v in (node["value"], node["grad"])
            ),
        ]
        table.add_row(*row, *(["; ".join(node["notes"])] if notes else []))
    return table


def _partials(report: dict[str, Any], width: int) -> list[RenderableType]:
    """The partials table; a check skipped for every variable gets no column, and formulas
    too wide for the terminal are listed above the table instead of in it."""
    from rich.table import Table
    from rich.text import Text

    dtype = report["dtype"]
    name = output_name(report)
    digits = _digits(width)
    partials = report["partials"]
    hidden = max(0, len(partials) - MAX_PARTIAL_ROWS)
    if hidden:
        partials = partials[: MAX_PARTIAL_ROWS - 4] + partials[-4:]
    ran = {
        key: any(p["status"][key] != "skipped" for p in partials)
        for key in ("symbolic", "torch", "finite_difference")
    }
    columns = [
        ("SymPy exact", "symbolic"),
        ("torch", "torch"),
        ("finite diff.", "finite_difference"),
    ]
    columns = [(title, key) for title, key in columns if ran[key]]
    rows = [
        [
            short(p["engine"], dtype, digits),
            *(_check_cell(p, key, digits) for _, key in columns),
        ]
        for p in partials
    ]
    formulas = [_symbolic_cell(p) for p in partials] if ran["symbolic"] else []
    numbers = max(sum(len(c) + 3 for c in row) for row in rows) + 20
    inline = bool(formulas) and numbers + max(len(f) for f in formulas) <= width
    caption = f"{hidden:,} more rows in --format json" if hidden else None
    table = Table(
        title=f"Partial derivatives of {name}", title_justify="left", caption=caption,
        caption_justify="left",
    )  # fmt: skip
    table.add_column("partial", no_wrap=True)
    if inline:
        table.add_column("SymPy formula")
    table.add_column("engine", justify="right", style="bold red", no_wrap=True)
    for title, _ in columns:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("agree", justify="center", no_wrap=True)
    for i, (p, row) in enumerate(zip(partials, rows, strict=True)):
        mark = _mark(p)
        table.add_row(
            f"∂{name}/∂{p['element']}",
            *([formulas[i]] if inline else []),
            *row,
            Text(mark, style="green" if mark.startswith("✓") else "bold red"),
        )
    compact = _compact_formulas(report)
    if inline or not formulas:
        return [*compact, table]
    listing = Text("SymPy partials", style="bold")
    for p, formula in zip(partials, formulas, strict=True):
        listing.append(f"\n  ∂{name}/∂{p['element']} = ", style="bold")
        listing.append(formula)
    return [*compact, listing, table]


def _compact_formulas(report: dict[str, Any]) -> list[RenderableType]:
    """∂f/∂x = 4*x: the elementwise form of an array's partials, where SymPy found one."""
    from rich.text import Text

    name = output_name(report)
    forms = {
        v: report["symbolic"][v]
        for v in report["wrt"]
        if report["shapes"].get(v) and v in report["symbolic"]
    }
    matrix = {
        v: formula
        for v, formula in report.get("symbolic_matrix", {}).items()
        if v in report["wrt"] and v not in forms
    }
    shown: list[RenderableType] = []
    sweep = report.get("symbolic_sweep")
    if sweep and (sweep["intermediates"] or sweep["adjoints"]):
        text = Text("SymPy, reverse sweep: the partials below use these names", style="bold")
        named = [*sweep["intermediates"], *sweep["adjoints"]]
        for label, formula, _ in named[:SWEEP_SHOWN]:
            text.append(f"\n  {label} = ", style="bold")
            text.append(_cap(formula))
        if len(named) > SWEEP_SHOWN:
            text.append(f"\n  … {len(named) - SWEEP_SHOWN:,} more in --format json", style="dim")
        shown.append(text)
    if forms:
        text = Text("SymPy, elementwise", style="bold")
        for v, formula in forms.items():
            text.append(f"\n  ∂{name}/∂{v} = ", style="bold")
            text.append(_cap(formula))
            text.append(
                f"   (each element of {v}, shape {tuple(report['shapes'][v])})", style="dim"
            )
        shown.append(text)
    if matrix:
        text = Text("SymPy, matrix calculus", style="bold")
        text.append("  (a vector is a column)", style="dim")
        for v, formula in matrix.items():
            text.append(f"\n  ∂{name}/∂{v} = ", style="bold")
            text.append(_cap(formula))
            text.append(f"   (shape {tuple(report['shapes'][v])})", style="dim")
        shown.append(text)
    return shown


def _summary(report: dict[str, Any]) -> RenderableType:
    from rich.text import Text

    summary = Text()
    lines = check_lines(report)
    if "second_order" in report:
        lines += [
            (mark, "second derivatives: " + line)
            for mark, line in higher_lines(report["second_order"], "hessian")
        ]
    for i, (mark, line) in enumerate(lines):
        style = {"✓": "green", "✗": "bold red"}.get(mark, "dim")
        summary.append(("\n" if i else "") + f"{mark} ", style=style)
        summary.append(line, style="red" if mark == "✗" else "")
    if any(_mark(p) == "✓*" for p in report["partials"]):
        summary.append("\n* some checks could not compare here (kink, convention or undefined)")
    return summary


# ---- markdown -----------------------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_text(text: str) -> str:
    """Text outside code spans (a file name): no HTML, no Markdown of its own."""
    import html

    text = visible(re.sub(r"\s", " ", text))
    return re.sub(r"([\\`*_\[\]|#])", r"\\\1", html.escape(text, quote=False))


def code(text: str, table: bool = True) -> str:
    """`text` as one Markdown code span that nothing in it can end: the fence is longer than
    any run of backticks inside (a comment in an expression may hold one), line breaks and
    other whitespace become spaces (a blank line would end the table or the paragraph),
    control characters are shown escaped, and '|' is escaped in table cells (`table`).
    Inside a code span Markdown shows `<img …>` as text, never as HTML."""
    text = visible(re.sub(r"\s", " ", text))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{_md(text) if table else text}{pad}{fence}"


def _md_value(x: Any, dtype: str) -> str:
    """Every digit of a number, and of an array up to 36 elements; a compact form beyond."""
    if isinstance(x, list) and np.size(x) > 36:
        return short_any(x, dtype, 17)
    return fmt_any(x, dtype)


def to_markdown(report: dict[str, Any]) -> str:
    dtype = report["dtype"]
    name = output_name(report)
    lines = [
        f"**{name}** = {code(' '.join(report['output']['text'].split()), table=False)}"
        f"{md_text(_origin(report))}",
        "",
        f"value **{_md_value(report['value'], dtype)}**"
        + (f" at {_point(report)}" if report["variables"] else ""),
        "",
    ]
    if report.get("symbolic_output"):
        lines += [f"SymPy: {code(name + ' = ' + report['symbolic_output'], table=False)}", ""]
    for v in report["wrt"]:
        if report["shapes"].get(v) and v in report["symbolic"]:
            formula = _md(_cap(report["symbolic"][v]))
            lines += [f"SymPy, elementwise: `∂{name}/∂{v} = {formula}` (each element of {v})", ""]
        elif v in report.get("symbolic_matrix", {}):
            formula = _md(_cap(report["symbolic_matrix"][v]))
            lines += [f"SymPy, matrix calculus: `∂{name}/∂{v} = {formula}`", ""]
    lines += [
        f"| id | node | op | inputs | value | ∂{name}/∂node | note |",
        "|---:|---|---|---|---:|---:|---|",
    ]
    for node in report["nodes"]:
        label = node["label"] + (" (output)" if node["output"] else "")
        lines.append(
            f"| {node['id']} | {code(label)} | {node['op']} | "
            f"{', '.join(map(str, node['inputs']))} | {_md_value(node['value'], dtype)} | "
            f"{_md_value(node['grad'], dtype)} | {_md('; '.join(node['notes']))} |"
        )
    if report["partials"]:
        lines += [
            "",
            "| variable | SymPy formula | exact value | engine | torch | finite diff. | agree |",
            "|---|---|---:|---:|---:|---:|:---:|",
        ]
        for p in report["partials"]:
            lines.append(
                f"| ∂{name}/∂{p['element']} | {code(_symbolic_cell(p))} | "
                f"{_check_cell(p, 'symbolic')} | {fmt(p['engine'], dtype)} | "
                f"{_check_cell(p, 'torch')} | "
                f"{_check_cell(p, 'finite_difference')} | {_mark(p)} |"
            )
    if "second_order" in report:
        second = report["second_order"]
        lines += [
            "",
            "| second derivative | SymPy formula | exact value | engine | torch | finite diff. "
            "| agree |",
            "|---|---|---:|---:|---:|---:|:---:|",
        ]
        for e in second["entries"]:
            lines.append(
                f"| {_entry_name('hessian', second, e['row'], e['column'])} | "
                f"{code(e['symbolic'] or '—')} | {_entry_cell(e, 'symbolic', 17)} | "
                f"{fmt(e['engine'])} | {_entry_cell(e, 'torch', 17)} | "
                f"{_entry_cell(e, 'finite_difference', 17)} | {_mark(e)} |"
            )
    lines.append("")
    lines += [f"- {mark} {line}" for mark, line in check_lines(report)]
    if "second_order" in report:
        lines += [
            f"- {mark} second derivatives: {line}"
            for mark, line in higher_lines(report["second_order"], "hessian")
        ]
    return "\n".join(lines) + "\n"


# ---- the op registry --------------------------------------------------------------------


def ops_rows() -> list[dict[str, Any]]:
    from ..core import ops

    rows = []
    for op in ops.OPS.values():
        notes = []
        if op.branch is not None:
            notes.append("piecewise: torch's subgradient at the kink")
        if op.domain:
            notes.append(f"defined for {op.domain}")
        rows.append(
            {"op": op.name, "syntax": op.syntax, "arity": op.arity, "rule": op.rule, "notes": notes}
        )
    return rows


def ops_table(rows: list[dict[str, Any]]) -> RenderableType:
    from rich.table import Table

    table = Table(title="Operations and their derivative rules", title_justify="left")
    for column in ("op", "written as", "derivative rule", "notes"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["op"], row["syntax"], row["rule"], "; ".join(row["notes"]))
    return table


def ops_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| op | written as | derivative rule | notes |", "|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['op']} | {code(row['syntax'])} | {_md(row['rule'])} | "
            f"{_md('; '.join(row['notes']))} |"
        )
    return "\n".join(lines) + "\n"


# ---- Jacobians and Hessians ---------------------------------------------------------------

MAX_MATRIX = 12  # rows and columns of a matrix shown in the terminal (JSON holds all)

_CHECK_NAMES = {
    "torch": "torch.autograd.functional",
    "finite_difference": "finite differences",
    "symbolic": "SymPy, evaluated exactly",
}


def _entry_name(kind: str, report: dict[str, Any], row: str, column: str) -> str:
    if kind == "hessian":
        name = report["output_name"]
        return f"∂²{name}/∂{row}²" if row == column else f"∂²{name}/∂{row}∂{column}"
    return f"∂{row}/∂{column}"


def higher_lines(report: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """One (mark, sentence) per check of a Jacobian or Hessian."""
    lines = []
    for check, summary in report["checks"].items():
        what = _CHECK_NAMES[check]
        if check == "torch" and summary.get("version"):
            what += f" ({summary['version']})"
        if check == "finite_difference":
            what += (
                " (second differences, Richardson)" if kind == "hessian" else " (5-point central)"
            )
        unresolved = summary["not_compared"]
        aside = f"; {unresolved} not compared (kink, undefined or unresolved)" if unresolved else ""
        if summary["ok"] is None:
            skipped = summary.get("skipped")
            reason = f"skipped ({skipped})" if skipped else "nothing comparable"
            lines.append(("·", f"{what}: {reason}"))
        elif summary["ok"]:
            n = summary["compared"]
            plural = "entry agrees" if n == 1 else "entries agree"
            lines.append(
                ("✓", f"{what}: {n} {plural}, max error {error(summary['max_error'])}{aside}")
            )
        else:
            shown = ", ".join(summary["mismatches"][:5])
            lines.append(("✗", f"{what}: disagreement at {shown}"))
    return lines


def higher_tables(report: dict[str, Any], kind: str, width: int = 100) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    if kind == "hessian":
        rows = columns = report["elements"]
        title = f"Hessian: ∂²{report['output_name']}/∂row∂column"
    else:
        rows, columns = report["rows"], report["columns"]
        title = "Jacobian: ∂row/∂column"
    matrix = np.asarray(report["hessian" if kind == "hessian" else "matrix"], dtype=float)
    head = Text()
    head.append(f"{kind} of ", style="bold")
    head.append(_cap(" ".join(report["expression"].split())))
    if report["variables"]:
        point = ", ".join(
            f"{k} = {short_any(v, 'float64', 17)}" for k, v in report["variables"].items()
        )
        head.append(f"  at {point}")
    value = report["value"] if kind == "hessian" else report["output"]["value"]
    head.append("\nvalue ", style="bold")
    head.append(short_any(value, "float64", 17), style="bold green")
    shown_rows = rows[:MAX_MATRIX]
    shown_cols = columns[:MAX_MATRIX]
    hidden = (len(rows) - len(shown_rows), len(columns) - len(shown_cols))
    caption = (
        f"{len(rows)} × {len(columns)}: the first {len(shown_rows)} × {len(shown_cols)} shown "
        "(--format json has all)"
        if any(hidden)
        else None
    )
    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        min_width=len(title),
    )
    table.add_column("", style="bold", no_wrap=True)
    for c in shown_cols:
        table.add_column(c, justify="right", no_wrap=True)
    digits = 6 if width < 110 else 10
    for i, r in enumerate(shown_rows):
        table.add_row(
            r, *(short(float(matrix[i, j]), "float64", digits) for j in range(len(shown_cols)))
        )
    out: list[RenderableType] = [head, table]
    formulas = [e for e in report["entries"] if e["symbolic"] is not None][:24]
    if formulas:
        text = Text("SymPy", style="bold")
        for e in formulas:
            text.append(f"\n  {_entry_name(kind, report, e['row'], e['column'])} = ", style="bold")
            text.append(_cap(e["symbolic"]))
        out.append(text)
    summary = Text()
    for i, (mark, line) in enumerate(higher_lines(report, kind)):
        style = {"✓": "green", "✗": "bold red"}.get(mark, "dim")
        summary.append(("\n" if i else "") + f"{mark} ", style=style)
        summary.append(line, style="red" if mark == "✗" else "")
    out.append(summary)
    return out


def higher_markdown(report: dict[str, Any], kind: str) -> str:
    if kind == "hessian":
        rows = columns = report["elements"]
        matrix = report["hessian"]
    else:
        rows, columns, matrix = report["rows"], report["columns"], report["matrix"]
    lines = [
        f"**{kind}** of {code(' '.join(report['expression'].split()), table=False)}",
        "",
        "| | " + " | ".join(code(c) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for r, values in zip(rows, matrix, strict=True):
        lines.append(f"| {code(r)} | " + " | ".join(fmt(v) for v in values) + " |")
    lines.append("")
    for e in report["entries"]:
        if e["symbolic"] is not None:
            lines.append(
                f"- {_entry_name(kind, report, e['row'], e['column'])} = "
                f"{code(e['symbolic'], table=False)}"
            )
    lines.append("")
    lines += [f"- {mark} {line}" for mark, line in higher_lines(report, kind)]
    return "\n".join(lines) + "\n"


def higher_csv(report: dict[str, Any], kind: str) -> str:
    """The matrix with a header of column labels and the row label first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if kind == "hessian":
        rows = columns = report["elements"]
        matrix = report["hessian"]
    else:
        rows, columns, matrix = report["rows"], report["columns"], report["matrix"]
    writer.writerow(["", *columns])
    for r, values in zip(rows, matrix, strict=True):
        writer.writerow([r, *(fmt(v) for v in values)])
    return buffer.getvalue()
