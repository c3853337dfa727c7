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
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import visible
from . import numbers
from .numbers import number, number_any, plural

if TYPE_CHECKING:
    from rich.console import JustifyMethod, RenderableType

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
    """The shortest text that reads back as the same number in the engine's dtype ("—"
    for none): numbers.full, which the machine formats use."""
    return "—" if x is None else numbers.full(x, dtype)


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


SCHEMA_MAJOR = 1  # raised when a key of a JSON document is renamed, removed or retyped


def schema_id(kind: str) -> str:
    """The first key of every JSON document: "backprop-cli/<kind>/<major>", the name of the
    JSON Schema (backprop_cli/schemas/<kind>.json) that it follows."""
    return f"backprop-cli/{kind}/{SCHEMA_MAJOR}"


def with_schema(kind: str, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with its "schema" key first."""
    return {"schema": schema_id(kind), **{k: v for k, v in document.items() if k != "schema"}}


def to_json(report: dict[str, Any], kind: str | None = None) -> str:
    """Strict JSON: NaN and infinities become null, with a warning entry saying where. With
    `kind` (grad, explain, check, ...), the document starts with its "schema" key."""
    found: list[str] = []
    rows: dict[str, str] = {}
    clean = _nullify(report if kind is None else with_schema(kind, report), "", found, rows)
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


def _check_cell(partial: dict[str, Any], key: str, n: int | None = None) -> str:
    """A check's value (`n` significant digits, default the --digits setting), or why it
    was not compared."""
    status = partial["status"][key]
    value = partial[key] if key != "symbolic" else partial["symbolic_value"]
    text = "—" if value is None else number(value, n)
    if status in ("ok", "mismatch"):
        return text
    note = _STATUS_TEXT.get(status, status)
    return note if value is None else f"{text} ({note})"


def telling(values: Iterable[Any]) -> int | None:
    """Digits enough to tell apart the different numbers of a row that disagrees (0.1491 vs
    0.1491 would hide the disagreement): None (the setting) when it already does, else the
    fewest that do."""
    n = numbers.digits()
    seen = {float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)}
    if n == numbers.FULL or len({number(v) for v in seen}) == len(seen):
        return None
    for more in range(n + 1, 18):
        if len({number(v, more) for v in seen}) == len(seen):
            return more
    return numbers.FULL


def _row_digits(entry: dict[str, Any], keys: Iterable[str]) -> int | None:
    if _mark(entry) != "✗":
        return None
    return telling(entry["symbolic_value"] if k == "symbolic" else entry[k] for k in keys)


def node_names(report: dict[str, Any]) -> list[str]:
    """Every node's one display name (Graph.display_names), as explain, the tree and the
    picture call it."""
    return [str(n["display_name"]) for n in report["nodes"]]


def check_lines(report: dict[str, Any]) -> list[tuple[str, str]]:
    """One (mark, sentence) per check, for the summary under the tables."""
    checks = report["checks"]
    return [
        _torch_line(checks["torch"], report),
        _fd_line(checks["finite_difference"]),
        _symbolic_line(checks["symbolic"]),
    ]


def _torch_line(torch: dict[str, Any], report: dict[str, Any]) -> tuple[str, str]:
    if torch["ok"] is None:
        return "·", f"torch autograd: skipped ({torch['skipped']})"
    compared = plural(torch["compared"], "node value and gradient", "node values and gradients")
    what = f"torch autograd, {torch['device']} {torch['dtype']}: {compared}"
    unresolved = torch.get("inconclusive") or 0
    aside = f"; {unresolved:,} too ill-conditioned to compare" if unresolved else ""
    if torch["ok"]:
        agree = "agrees" if torch["compared"] == 1 else "agree"
        return "✓", f"{what} {agree}, max error {error(torch['max_error'])}{aside}"
    names = node_names(report) if report.get("nodes") else []
    bad = ", ".join(f"{_node_name(names, m['node'])} {m['what']}" for m in torch["mismatches"][:5])
    return "✗", f"{what}: disagreement at {bad}"


def _node_name(names: list[str], node: Any) -> str:
    """'t2 (node 4)': a node by its display name, and its id for the JSON."""
    if isinstance(node, int) and 0 <= node < len(names):
        return f"{names[node]} (node {node})"
    return f"node {node}"


def _partials_agree(n: int) -> str:
    return f"{plural(n, 'partial')} {'agrees' if n == 1 else 'agree'}"


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
    what = f"finite differences ({plural(fd['directions'], 'random direction')})"
    if fd["ok"] is None:
        return "·", f"{what}: {fd['skipped']}{aside}"
    if fd["ok"]:
        n = fd["compared"]
        agree = f"{plural(n, 'directional derivative')} {'agrees' if n == 1 else 'agree'}"
        return (
            "✓",
            f"{what}: {agree} (gradient · u over {plural(fd['elements'], 'element')}), "
            f"max error {error(fd['max_error'])}{aside}",
        )
    shown = []
    for a in fd["along"]:
        if a["status"] == "mismatch":
            n = telling((a["engine"], a["finite_difference"]))
            shown.append(
                f"{a['direction']}: engine gradient · u {number(a['engine'], n)} vs "
                f"{number(a['finite_difference'], n)}"
            )
    return "✗", f"{what} disagree: {'; '.join(shown)}"


def _symbolic_line(sym: dict[str, Any]) -> tuple[str, str]:
    if sym.get("skipped"):
        return "·", f"SymPy: skipped ({sym['skipped']})"
    if sym["state"] == "error":
        return "·", f"SymPy: failed ({sym['error']}); the numeric results stand"
    if sym["state"] == "budget":
        budget = number(sym["budget_seconds"])
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
        return f"   (the last of {n:,} statements{where})"
    return f"   ({where.strip()})" if where else ""


SWEEP_SHOWN = 8  # named intermediates listed in the table
POINT_SHOWN = 12  # variables named in the heading; the rest are counted (JSON has all)


def given(x: Any, dtype: str = "float64", items: int = 6) -> str:
    """A value the user gave (a variable, a constant) in full, whatever --digits says: at
    x = 0.10000000001, x - 0.1 is 1e-11, which x = 0.1 would not explain. -0 reads 0."""
    if isinstance(x, list):
        x = np.where(np.asarray(x, dtype=np.float64) == 0, 0.0, x).tolist()
    elif x == 0:
        x = 0.0
    return short_any(x, dtype, 17, items)


def _point_items(report: dict[str, Any]) -> list[str]:
    """'b = 0.5', 'w = 2', …: the point, each value as given, the rest counted."""
    items = list(report["variables"].items())
    shown = [f"{k} = {given(v)}" for k, v in items[:POINT_SHOWN]]
    more = len(items) - POINT_SHOWN
    return shown + ([f"… ({plural(more, 'more value')})"] if more > 0 else [])


def _point(report: dict[str, Any]) -> str:
    return ", ".join(_point_items(report))


# ---- Rich tables ------------------------------------------------------------------------


def short(x: float | None, dtype: str = "float64", digits: int = 10) -> str:
    """The exact shortest text when it is short, else `digits` significant digits and '…'
    (kept for the displays that still cut numbers; tables use numbers.number)."""
    text = fmt(x, dtype)
    if sum(c.isdigit() for c in text.split("e")[0].lstrip("-0.")) <= digits + 2:
        return text
    assert x is not None
    mantissa, _, exponent = format(x, f"#.{digits}g").partition("e")
    return mantissa.rstrip(".") + "…" + (f"e{exponent}" if exponent else "")


def error(x: float) -> str:
    """An error size: two significant digits are plenty."""
    return "0" if x == 0 else format(x, ".2g")


FLOOR = 8  # a column that wraps keeps at least this many characters (or all it holds)
WORD_ROOM = 16  # ... and room for its longest word up to this many


@dataclass(frozen=True)
class Column:
    """A column of a terminal table. A `whole` column's cells are never broken (a number
    cut in two misleads); a `words` column wraps between words only (an array's numbers);
    any other wraps at spaces and folds a word too long for it. `head`: in the stacked
    layout of a narrow terminal, the cell heads its row's block instead of getting a line.
    A column never vanishes: a table too wide for the terminal stacks, with every column."""

    header: str
    justify: JustifyMethod = "left"
    style: str = ""
    whole: bool = False
    words: bool = False
    head: bool = False


class Fitted:
    """A table that fits the width it is drawn at, decided when it is drawn: bordered
    when every number stays whole and no column gets narrower than FLOOR (the headers of
    whole columns may take two lines for it), else stacked, a block per row (`header
    cell` lines under the row's heading). Rows are lists of cells; None is a gap (…)."""

    def __init__(
        self,
        title: str,
        columns: list[Column],
        rows: list[list[Any] | None],
        caption: str | None = None,
    ) -> None:
        self.title, self.columns, self.rows, self.caption = title, columns, rows, caption

    def _widths(self, headers: list[str]) -> list[tuple[int, int]]:
        """Per column: (widest line, widest word), the header included."""
        key = tuple(headers)
        found = self.__dict__.setdefault("_measured", {})
        if key not in found:  # asked for again as the layout is decided: measured once
            found[key] = self._measure(headers)
        widths: list[tuple[int, int]] = found[key]
        return widths

    def _measure(self, headers: list[str]) -> list[tuple[int, int]]:
        from rich.cells import cell_len

        cells = [[_plain(c) for c in row] for row in self.rows if row is not None]
        out = []
        for i, header in enumerate(headers):
            lines = [line for t in (header, *(row[i] for row in cells)) for line in t.split("\n")]
            words = [w for line in lines for w in line.split()]
            out.append((max(map(cell_len, lines), default=0), max(map(cell_len, words), default=0)))
        return out

    def _settled(self, headers: list[str], width: int | None) -> list[int] | None:
        """The width of each column's text as Rich settles it at `width`, worked out from
        the measurements already made (so Rich need not measure every cell again): as
        wide as its widest line, less what Rich's own narrowing of the wrapping columns
        takes. None where only Rich can tell (cells Rich reads markup in, a column
        narrowed to nothing)."""
        if width is None or not self._as_typed(headers):
            return None
        from rich.table import Table

        padded = [line + 2 for line, _ in self._widths(headers)]  # a space either side
        room = width - len(padded) - 1  # less the borders
        if sum(padded) > room:
            wraps = [not c.whole for c in self.columns]
            padded = Table._collapse_widths(padded, wraps, room)
        if sum(padded) > room or min(padded) < 3:
            return None
        return [w - 2 for w in padded]

    def _as_typed(self, headers: list[str]) -> bool:
        """Whether every cell shows as its plain text: Rich reads markup ([b]) and emoji
        codes (:smile:) in a string cell, which a rich Text cell never has."""
        cells = [c for row in self.rows if row is not None for c in row]
        return not any(isinstance(c, str) and ("[" in c or ":" in c) for c in (*headers, *cells))

    def _headers(self, folded: bool) -> list[str]:
        """The headers, those of whole columns on two lines when `folded` (finite / diff.)."""
        if not folded:
            return [c.header for c in self.columns]
        return [c.header.replace(" ", "\n", 1) if c.whole else c.header for c in self.columns]

    def needs(self, folded: bool = False) -> int:
        """The narrowest width the bordered table can take with nothing cut."""
        widths = self._widths(self._headers(folded))
        pairs = list(zip(widths, self.columns, strict=True))
        words = [word for (_, word), c in pairs if not c.whole and not c.words]
        floor = max([FLOOR, min(WORD_ROOM, max(words, default=0))])
        floor = max([floor, *(word for (_, word), c in pairs if c.words)])
        inner = sum(line if c.whole else min(line, floor) for (line, _), c in pairs)
        return inner + 3 * len(self.columns) + 1

    def natural(self) -> int:
        """The width of the bordered table with no cell wrapped."""
        return (
            sum(line for line, _ in self._widths(self._headers(False))) + 3 * len(self.columns) + 1
        )

    def table(self, folded: bool = False, width: int | None = None) -> Any:
        """The bordered table, at least as wide as its title where `width` leaves room."""
        from rich.cells import cell_len
        from rich.table import Table

        table = Table(
            title=self.title,
            title_justify="left",
            caption=self.caption,
            caption_justify="left",
            min_width=None if width is None else min(cell_len(self.title), width),
        )
        headers = self._headers(folded)
        fixed = self._settled(headers, width)
        for k, (c, header) in enumerate(zip(self.columns, headers, strict=True)):
            table.add_column(
                header, justify=c.justify, style=c.style, no_wrap=c.whole, overflow="fold",
                width=None if fixed is None else fixed[k],
            )  # fmt: skip
        for row in self.rows:
            table.add_row(*(row if row is not None else ["…", *[""] * (len(self.columns) - 1)]))
        return table

    def stacked(self) -> Any:
        from rich.cells import cell_len
        from rich.console import Group
        from rich.text import Text

        keys = [c for c in self.columns if not c.head]
        width = max((cell_len(c.header) for c in keys), default=0)
        parts: list[Any] = [Hanging(Text(""), Text(self.title, style="table.title"))]
        for row in self.rows:
            if row is None:
                parts.append(Text("…"))
                continue
            heading = Text("  ").join(
                _styled(cell, c.style, bold=True)
                for cell, c in zip(row, self.columns, strict=True)
                if c.head and _plain(cell)
            )
            parts.append(Hanging(Text(""), heading))
            for cell, c in zip(row, self.columns, strict=True):
                if not c.head and _plain(cell):
                    lead = Text("  " + c.header.ljust(width) + "  ", style="dim")
                    parts.append(Hanging(lead, _styled(cell, c.style)))
        if self.caption:
            parts.append(Text(self.caption, style="table.caption"))
        return Group(*parts)

    def __rich_console__(self, console: Any, options: Any) -> Any:
        width = options.max_width
        for folded in (False, True):  # the whole table, or a block per row: never a column less
            if self.needs(folded) <= width:
                yield self.table(folded, width)
                return
        yield self.stacked()


def _plain(cell: Any) -> str:
    return str(getattr(cell, "plain", cell))


def _styled(cell: Any, style: str, bold: bool = False) -> Any:
    from rich.text import Text

    text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
    if style:
        text.stylize(style)
    if bold and not isinstance(cell, Text):
        text.stylize("bold")
    return text


HANG_ROOM = 16  # below this many columns beside the lead, the body starts on the next line


class Hanging:
    """`lead` (a mark, a name and '='), then `body` wrapped to the width it is drawn at,
    its later lines starting under its first character: no line passes the right edge
    and none ends in padding."""

    def __init__(self, lead: Any, body: Any) -> None:
        from rich.text import Text

        self.lead = lead if isinstance(lead, Text) else Text(str(lead))
        self.body = body if isinstance(body, Text) else Text(str(body))

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.cells import cell_len
        from rich.segment import Segment

        indent = cell_len(self.lead.plain)
        own_line = options.max_width - indent < HANG_ROOM
        if own_line:  # a long name on a narrow terminal: the formula goes under it
            lead = self.lead.copy()
            lead.rstrip()
            yield from lead.render(console, end="")
            yield Segment.line()
            indent = min(4, max(0, options.max_width - HANG_ROOM))
        room = max(1, options.max_width - indent)
        lines = self.body.wrap(console, room, overflow="fold")
        for i, line in enumerate(lines):
            line.rstrip()
            if i == 0 and not own_line:
                yield from self.lead.render(console, end="")
            else:
                yield Segment(" " * indent)
            yield from line.render(console, end="")
            yield Segment.line()


def listing(title: str, pairs: list[tuple[str, Any]], note: str | None = None) -> RenderableType:
    """A titled list of `name = formula` lines, the names right-aligned so the '=' line
    up; a formula too long for the terminal wraps under itself, never under the names."""
    from rich.cells import cell_len
    from rich.console import Group
    from rich.text import Text

    head = Text(title, style="bold")
    if note:
        head.append(note, style="dim")
    width = max((cell_len(name) for name, _ in pairs), default=0)
    lines: list[Any] = [head]
    for name, formula in pairs:
        lead = Text("  " + " " * (width - cell_len(name)) + f"{name} = ", style="bold")
        lines.append(Hanging(lead, formula))
    return Group(*lines)


def verdicts(lines: list[tuple[str, str]], footnote: str | None = None) -> RenderableType:
    """The checks' verdicts, a mark then a sentence that wraps under itself."""
    from rich.console import Group
    from rich.text import Text

    shown: list[Any] = []
    for mark, line in lines:
        style = {"✓": "green", "✗": "bold red"}.get(mark[:1], "dim")
        shown.append(
            Hanging(Text(f"{mark} ", style=style), Text(line, style="red" if mark == "✗" else ""))
        )
    if footnote:
        shown.append(Hanging(Text("* "), Text(footnote)))
    return Group(*shown)


def tables(report: dict[str, Any], width: int = 100, max_rows: int = 0) -> list[RenderableType]:
    """The human report: heading, graph table (at most `max_rows` rows, 0: all), partials,
    and the checks' verdicts; every number with the --digits setting."""
    out: list[RenderableType] = [_heading(report), _graph_table(report, max_rows, width)]
    if report["partials"]:
        out += _partials(report, width)
    if "second_order" in report:
        out += _second_order(report, width)
    out.append(_summary(report))
    return out


_CHECK_COLUMNS = (
    ("SymPy exact", "symbolic"),
    ("torch", "torch"),
    ("finite diff.", "finite_difference"),
)


def _second_order(report: dict[str, Any], width: int) -> list[RenderableType]:
    from rich.text import Text

    second = report["second_order"]
    entries = second["entries"]
    names = [_entry_name("hessian", {**second}, e["row"], e["column"]) for e in entries]
    formulas = [_cap(e["symbolic"] or "—") for e in entries]
    rows: list[list[Any] | None] = []
    for e, label in zip(entries, names, strict=True):
        n = _row_digits(e, ("engine", "symbolic", "torch", "finite_difference"))
        mark = _mark(e)
        rows.append(
            [
                label,
                number(e["engine"], n),
                *(_entry_cell(e, key, n) for _, key in _CHECK_COLUMNS),
                Text(mark, style="green" if mark.startswith("✓") else "bold red"),
            ]
        )
    title = f"Second derivatives of {output_name(report)}"
    columns = [
        Column("partial", whole=True, head=True),
        Column("engine", justify="right", style="bold red", whole=True),
        *(Column(t, justify="right", whole=True) for t, _ in _CHECK_COLUMNS),
        Column("agree", justify="center", whole=True, head=True),
    ]
    with_formulas = Fitted(
        title,
        [columns[0], Column("SymPy formula"), *columns[1:]],
        [[r[0], f, *r[1:]] for r, f in zip(rows, formulas, strict=True) if r is not None],
    )
    if any(e["symbolic"] for e in entries) and with_formulas.natural() <= width:
        return [with_formulas]
    shown: list[RenderableType] = []
    pairs = [(n, f) for n, f, e in zip(names, formulas, entries, strict=True) if e["symbolic"]]
    if pairs:
        shown.append(listing("SymPy second derivatives", pairs))
    return [*shown, Fitted(title, columns, rows)]


def _entry_cell(entry: dict[str, Any], key: str, n: int | None = None) -> str:
    status = entry["status"][key]
    value = entry["symbolic_value"] if key == "symbolic" else entry[key]
    text = "—" if value is None else number(value, n)
    if status in ("ok", "mismatch"):
        return text
    note = _STATUS_TEXT.get(status, status)
    return note if value is None else f"{text} ({note})"


def _heading(report: dict[str, Any]) -> RenderableType:
    """The output, its value and the point; on a narrow terminal a line breaks between a
    value and the next, never inside 'x = -1'."""
    from rich.console import Group
    from rich.text import Text

    dtype = report["dtype"]
    name = output_name(report)
    first = [
        Text.assemble((f"{name} = ", "bold"), _cap(" ".join(report["output"]["text"].split())))
    ]
    if _origin(report):
        first.append(Text(_origin(report).strip(), style="dim"))
    second = [Text.assemble(("value ", "bold"), (number_any(report["value"], dtype), "bold green"))]
    gaps = [""]
    if report["output"].get("shape"):
        second.append(Text(f"(shape {tuple(report['output']['shape'])})", style="dim"))
        gaps.append("  ")
    items = _point_items(report)
    for i, item in enumerate(items):
        last = i == len(items) - 1
        second.append(Text(("at " if i == 0 else "") + item + ("" if last else ",")))
        gaps.append("  " if i == 0 else " ")
    if dtype != "float64":  # what the inputs became in the engine's dtype: every digit
        rounded = {k: v for k, v in report["variables_used"].items() if v != report["variables"][k]}
        shown = ", ".join(f"{k} = {short_any(v, 'float64', 17)}" for k, v in rounded.items())
        second.append(Text(f"({dtype}" + (f": {shown})" if shown else ")")))
        gaps.append("  ")
    lines: list[Any] = [Packed(first, ["", "   "][: len(first)]), Packed(second, gaps)]
    if report.get("symbolic_output"):
        formula = Text(f"{name} = {_cap(report['symbolic_output'])}")
        lines.append(Hanging(Text("SymPy: ", style="bold"), formula))
    return Group(*lines)


class Packed:
    """Pieces of text on as few lines as the width allows, broken only between pieces (a
    'name = value' is never split), later lines indented by two; `gaps[i]` goes before
    piece i where both share a line."""

    def __init__(self, pieces: list[Any], gaps: list[str]) -> None:
        self.pieces, self.gaps = pieces, gaps

    def __rich_console__(self, console: Any, options: Any) -> Any:
        from rich.text import Text

        width = options.max_width
        line, indent = Text(), 0
        for piece, gap in zip(self.pieces, self.gaps, strict=True):
            if line.cell_len and indent + line.cell_len + len(gap) + piece.cell_len > width:
                yield Hanging(Text(" " * indent), line) if indent else line
                line, indent, gap = Text(), 2, ""
            line.append(gap)
            line.append_text(piece)
        yield Hanging(Text(" " * indent), line) if indent else line


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


LABEL_WIDTH = 32  # characters of a node's source text in the graph table (JSON has all)


def node_text(node: dict[str, Any], name: str) -> str:
    """'t1 = w*x': a node's display name and the text it came from (the name alone for a
    variable or a constant)."""
    text = " ".join(str(node["text"]).split())
    if len(text) > LABEL_WIDTH:
        text = text[: LABEL_WIDTH - 1] + "…"
    return name if node["op"] in ("input", "const") or text == name else f"{name} = {text}"


def _graph_table(report: dict[str, Any], max_rows: int = 0, width: int = 100) -> RenderableType:
    from rich.text import Text

    dtype = report["dtype"]
    name = output_name(report)
    names = node_names(report)
    nodes = report["nodes"]
    shown = _shown_nodes(nodes, max_rows)
    notes = any(node["notes"] for node in nodes)
    arrays = any(node["shape"] for node in nodes)
    hidden = len(nodes) - sum(r is not None for r in shown)
    caption = f"{hidden:,} of {plural(len(nodes), 'node')} not shown (--max-rows 0 shows all)"
    items = 4 if width < 110 else 6
    rows: list[list[Any] | None] = []
    for node in shown:
        if node is None:
            rows.append(None)
            continue
        label = node_text(node, names[node["id"]]) + (" ◀ output" if node["output"] else "")
        rows.append(
            [
                str(node["id"]),
                Text(label, style="bold" if node["output"] or node["op"] == "input" else ""),
                node["op"],
                ", ".join(names[i] for i in node["inputs"]),
                (given if node["op"] in ("input", "const") else number_any)(
                    node["value"], dtype, items
                ),
                number_any(node["grad"], dtype, items),
                *(["; ".join(node["notes"])] if notes else []),
            ]
        )
    columns = [
        Column("id", justify="right", whole=True, head=True),
        Column("node", head=True),
        Column("op", whole=True),
        Column("inputs"),
        Column("value", justify="right", style="green", whole=not arrays, words=arrays),
        Column(f"∂{name}/∂node", justify="right", style="red", whole=not arrays, words=arrays),
        *([Column("note", style="yellow")] if notes else []),
    ]
    return Fitted(
        f"Computational graph: value and ∂{name}/∂node",
        columns,
        rows,
        caption if hidden else None,
    )


def _partials(report: dict[str, Any], width: int) -> list[RenderableType]:
    """The partials table; a check skipped for every variable gets no column, and formulas
    too wide for the terminal are listed above the table instead of in it."""
    from rich.text import Text

    dtype = report["dtype"]
    name = output_name(report)
    partials = report["partials"]
    hidden = max(0, len(partials) - MAX_PARTIAL_ROWS)
    if hidden:
        partials = partials[: MAX_PARTIAL_ROWS - 4] + partials[-4:]
    ran = {key: any(p["status"][key] != "skipped" for p in partials) for _, key in _CHECK_COLUMNS}
    checks = [(title, key) for title, key in _CHECK_COLUMNS if ran[key]]
    labels = [f"∂{name}/∂{p['element']}" for p in partials]
    rows: list[list[Any] | None] = []
    for p, label in zip(partials, labels, strict=True):
        n = _row_digits(p, ("engine", *(key for _, key in checks)))
        mark = _mark(p)
        rows.append(
            [
                label,
                number(p["engine"], n, dtype),
                *(_check_cell(p, key, n) for _, key in checks),
                Text(mark, style="green" if mark.startswith("✓") else "bold red"),
            ]
        )
    formulas = [_symbolic_cell(p) for p in partials] if ran["symbolic"] else []
    caption = f"{hidden:,} more rows in --format json" if hidden else None
    title = f"Partial derivatives of {name}"
    columns = [
        Column("partial", whole=True, head=True),
        Column("engine", justify="right", style="bold red", whole=True),
        *(Column(t, justify="right", whole=True) for t, _ in checks),
        Column("agree", justify="center", whole=True, head=True),
    ]
    compact = _compact_formulas(report)
    if formulas:
        inline = Fitted(
            title,
            [columns[0], Column("SymPy formula"), *columns[1:]],
            [[r[0], f, *r[1:]] for r, f in zip(rows, formulas, strict=True) if r is not None],
            caption,
        )
        if inline.natural() <= width:
            return [*compact, inline]
    table = Fitted(title, columns, rows, caption)
    if not formulas:
        return [*compact, table]
    pairs = list(zip(labels, formulas, strict=True))
    return [*compact, listing("SymPy partials", pairs), table]


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
        named = [*sweep["intermediates"], *sweep["adjoints"]]
        pairs: list[tuple[str, Any]] = [(label, _cap(f)) for label, f, _ in named[:SWEEP_SHOWN]]
        if len(named) > SWEEP_SHOWN:
            pairs.append(("…", Text(f"{len(named) - SWEEP_SHOWN:,} more in --format json")))
        shown.append(listing("SymPy, reverse sweep: the partials below use these names", pairs))
    if forms:
        pairs = []
        for v, formula in forms.items():
            text = Text(_cap(formula))
            text.append(f"   (each element of {v}, shape {tuple(report['shapes'][v])})", "dim")
            pairs.append((f"∂{name}/∂{v}", text))
        shown.append(listing("SymPy, elementwise", pairs))
    if matrix:
        pairs = []
        for v, formula in matrix.items():
            text = Text(_cap(formula))
            text.append(f"   (shape {tuple(report['shapes'][v])})", style="dim")
            pairs.append((f"∂{name}/∂{v}", text))
        shown.append(listing("SymPy, matrix calculus", pairs, "  (a vector is a column)"))
    return shown


def _summary(report: dict[str, Any]) -> RenderableType:
    lines = check_lines(report)
    if "second_order" in report:
        lines += [
            (mark, "second derivatives: " + line)
            for mark, line in higher_lines(report["second_order"], "hessian")
        ]
    starred = any(_mark(p) == "✓*" for p in report["partials"])
    note = "some checks could not compare here (kink, convention or undefined)"
    return verdicts(lines, note if starred else None)


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


def tex_safe(latex: str) -> str:
    """LaTeX ready to sit between $ signs anywhere in Markdown, a table cell included: one
    line, and no '|' (a table would split the cell there) but the same symbols written
    as \\vert and \\Vert."""
    latex = latex.replace("\\|", "\\Vert ").replace("|", "\\vert ").replace("$", "\\$")
    return " ".join(latex.split())  # math ends at a '$' with no space before it


def md_math(latex: str) -> str:
    """Inline math: $…$, as Jupyter, GitHub and MkDocs (arithmatex) render it."""
    return f"${tex_safe(latex)}$"


def md_display_math(latex: str) -> str:
    """Display math on a line of its own: $$…$$."""
    return f"$${tex_safe(latex)}$$"


def tex_name(name: str) -> str:
    """A variable's, element's or node's name in LaTeX, as SymPy writes it (w11 as w_{11},
    W[0,1] as W_{0,1}, loss as \\mathit{loss})."""
    from ..checks.symbolic import to_latex_name

    return to_latex_name(name)


def tex_partial(out: str, of: str, order: int = 1, second: str | None = None) -> str:
    """∂out/∂of as a LaTeX fraction: first, second (∂²out/∂of²) or mixed (∂²/∂of∂second)."""
    top, name = tex_name(out), tex_name(of)
    if order == 1:
        return f"\\frac{{\\partial {top}}}{{\\partial {name}}}"
    if second is None or second == of:
        return f"\\frac{{\\partial^{{2}} {top}}}{{\\partial {name}^{{2}}}}"
    return f"\\frac{{\\partial^{{2}} {top}}}{{\\partial {name} \\partial {tex_name(second)}}}"


def _md_value(x: Any, dtype: str, items: int = 36) -> str:
    """A number with the --digits setting; an array up to 36 elements whole, compact beyond."""
    return number_any(x, dtype, items)


def _md_formula(formula: str | None, latex: str | None) -> str:
    """SymPy's formula as math when its LaTeX is at hand, else in SymPy syntax."""
    if latex and len(latex) <= MAX_CELL:  # cut LaTeX would not compile: the SymPy text is cut
        return md_math(latex)
    return code(_cap(formula)) if formula else "—"


def _md_output_formula(report: dict[str, Any], name: str) -> str:
    """'f = …' as math when SymPy's LaTeX of the output is at hand, else as SymPy's text."""
    latex = report.get("symbolic_output_latex")
    if latex and len(latex) <= MAX_CELL:
        return md_math(f"{tex_name(name)} = {latex}")
    return code(name + " = " + _cap(report["symbolic_output"]), table=False)


def to_markdown(report: dict[str, Any]) -> str:
    """The grad report as Markdown whose math renders in Jupyter, on GitHub and in MkDocs:
    partials as $\\frac{\\partial f}{\\partial x}$, SymPy's formulas as LaTeX where the report
    holds it (grad asks SymPy for it with --format markdown; else as code), numbers with the
    --digits setting."""
    dtype = report["dtype"]
    name = output_name(report)
    names = node_names(report)
    latex = report.get("latex") or {}
    lines = [
        f"**{md_text(name)}** = {code(' '.join(report['output']['text'].split()), table=False)}"
        f"{md_text(_origin(report))}",
        "",
        f"value **{_md_value(report['value'], dtype)}**"
        + (f" at {md_text(_point(report))}" if report["variables"] else ""),
        "",
    ]
    if report.get("symbolic_output"):
        lines += [f"SymPy: {_md_output_formula(report, name)}", ""]
    sweep = report.get("symbolic_sweep")
    if sweep and (sweep["intermediates"] or sweep["adjoints"]):
        lines += ["SymPy, reverse sweep: the partials below use these names", ""]
        lines += [
            f"- {code(label + ' = ' + _cap(formula), table=False)}"
            for label, formula, _ in [*sweep["intermediates"], *sweep["adjoints"]]
        ]
        lines.append("")
    for v in report["wrt"]:
        partial = md_math(tex_partial(name, v))
        if report["shapes"].get(v) and v in report["symbolic"]:
            formula = latex.get(v)
            head = f"SymPy, elementwise (each element of {md_text(v)})"
            if formula and len(formula) <= MAX_CELL:  # display math on a line of its own
                shown = md_display_math(f"{tex_partial(name, v)} = {formula}")
                lines += [f"{head}:", "", shown, ""]
            else:
                shown = code(_cap(report["symbolic"][v]), table=False)
                lines += [f"{head}: {partial} = {shown}", ""]
        elif v in report.get("symbolic_matrix", {}):
            formula = code(_cap(report["symbolic_matrix"][v]), table=False)
            lines += [f"SymPy, matrix calculus: {partial} = {formula}", ""]
    grad = f"$\\partial {tex_name(name)} / \\partial \\mathrm{{node}}$"
    lines += [
        f"| id | name | node | op | inputs | value | {grad} | note |",
        "|---:|---|---|---|---|---:|---:|---|",
    ]
    for node in report["nodes"]:
        text = " ".join(str(node["text"]).split())
        leaf = node["op"] in ("input", "const")
        lines.append(
            f"| {node['id']} | {code(names[node['id']])}"
            f"{' (output)' if node['output'] else ''} | {code(text)} | {node['op']} | "
            f"{', '.join(code(names[i]) for i in node['inputs'])} | "
            f"{(given if leaf else _md_value)(node['value'], dtype, 36)} | "
            f"{_md_value(node['grad'], dtype)} | "
            f"{_md(md_text('; '.join(node['notes'])))} |"
        )
    if report["partials"]:
        lines += [
            "",
            "| partial | SymPy formula | exact value | engine | torch | finite diff. | agree |",
            "|---|---|---:|---:|---:|---:|:---:|",
        ]
        for p in report["partials"]:
            n = _row_digits(p, ("engine", "symbolic", "torch", "finite_difference"))
            formula = (
                _md_formula(p["symbolic"], p.get("latex"))
                if p["symbolic"] is not None
                else _STATUS_TEXT.get(p["status"]["symbolic"], "—")
            )
            lines.append(
                f"| {md_math(tex_partial(name, p['element']))} | {formula} | "
                f"{_check_cell(p, 'symbolic', n)} | {number(p['engine'], n, dtype)} | "
                f"{_check_cell(p, 'torch', n)} | "
                f"{_check_cell(p, 'finite_difference', n)} | {_mark(p)} |"
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
            n = _row_digits(e, ("engine", "symbolic", "torch", "finite_difference"))
            partial = md_math(tex_partial(second["output_name"], e["row"], 2, e["column"]))
            lines.append(
                f"| {partial} | {code(e['symbolic'] or '—')} | {_entry_cell(e, 'symbolic', n)} | "
                f"{number(e['engine'], n)} | {_entry_cell(e, 'torch', n)} | "
                f"{_entry_cell(e, 'finite_difference', n)} | {_mark(e)} |"
            )
    lines.append("")
    lines += [f"- {mark} {md_text(line)}" for mark, line in check_lines(report)]
    if "second_order" in report:
        lines += [
            f"- {mark} second derivatives: {md_text(line)}"
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
    columns = [
        Column("op", whole=True, head=True),
        Column("written as"),
        Column("derivative rule"),
        Column("notes"),
    ]
    return Fitted(
        "Operations and their derivative rules",
        columns,
        [[row["op"], row["syntax"], row["rule"], "; ".join(row["notes"])] for row in rows],
    )


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


def _tex_entry(kind: str, report: dict[str, Any], row: str, column: str) -> str:
    if kind == "hessian":
        return tex_partial(report["output_name"], row, 2, column)
    return tex_partial(row, column)


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
        aside = (
            f"; {unresolved:,} not compared (kink, undefined or unresolved)" if unresolved else ""
        )
        if summary["ok"] is None:
            skipped = summary.get("skipped")
            reason = f"skipped ({skipped})" if skipped else "nothing comparable"
            lines.append(("·", f"{what}: {reason}"))
        elif summary["ok"]:
            n = summary["compared"]
            agree = f"{plural(n, 'entry', 'entries')} {'agrees' if n == 1 else 'agree'}"
            lines.append(("✓", f"{what}: {agree}, max error {error(summary['max_error'])}{aside}"))
        else:
            shown = ", ".join(summary["mismatches"][:5])
            lines.append(("✗", f"{what}: disagreement at {shown}"))
    return lines


def higher_tables(report: dict[str, Any], kind: str, width: int = 100) -> list[RenderableType]:
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
        point = ", ".join(f"{k} = {given(v)}" for k, v in report["variables"].items())
        head.append(f"  at {point}")
    value = report["value"] if kind == "hessian" else report["output"]["value"]
    head.append("\nvalue ", style="bold")
    head.append(number_any(value), style="bold green")
    shown_rows = rows[:MAX_MATRIX]
    shown_cols = columns[:MAX_MATRIX]
    hidden = (len(rows) - len(shown_rows), len(columns) - len(shown_cols))
    caption = (
        f"{len(rows)} × {len(columns)}: the first {len(shown_rows)} × {len(shown_cols)} shown "
        "(--format json has all)"
        if any(hidden)
        else None
    )
    table = Fitted(
        title,
        [
            Column("", style="bold", whole=True, head=True),
            *(Column(c, justify="right", whole=True) for c in shown_cols),
        ],
        [
            [r, *(number(float(matrix[i, j])) for j in range(len(shown_cols)))]
            for i, r in enumerate(shown_rows)
        ],
        caption,
    )
    out: list[RenderableType] = [head, table]
    formulas = [e for e in report["entries"] if e["symbolic"] is not None][:24]
    if formulas:
        pairs = [
            (_entry_name(kind, report, e["row"], e["column"]), _cap(e["symbolic"]))
            for e in formulas
        ]
        out.append(listing("SymPy", pairs))
    out.append(verdicts(higher_lines(report, kind)))
    return out


def higher_markdown(report: dict[str, Any], kind: str) -> str:
    """The matrix as a Markdown table (numbers with the --digits setting), the entries'
    formulas after it, each named as math."""
    if kind == "hessian":
        rows = columns = report["elements"]
        matrix = report["hessian"]
    else:
        rows, columns, matrix = report["rows"], report["columns"], report["matrix"]
    lines = [
        f"**{kind}** of {code(' '.join(report['expression'].split()), table=False)}",
        "",
        "| | " + " | ".join(md_math(tex_name(c)) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for r, values in zip(rows, matrix, strict=True):
        lines.append(f"| {md_math(tex_name(r))} | " + " | ".join(number(v) for v in values) + " |")
    lines.append("")
    for e in report["entries"]:
        if e["symbolic"] is not None:
            lines.append(
                f"- {md_math(_tex_entry(kind, report, e['row'], e['column']))} = "
                f"{code(e['symbolic'], table=False)}"
            )
    lines.append("")
    lines += [f"- {mark} {md_text(line)}" for mark, line in higher_lines(report, kind)]
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
