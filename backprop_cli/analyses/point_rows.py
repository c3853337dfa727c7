"""The rows of `grad --points` made a column at a time: CSV/TSV and JSON lines joined by
Arrow from the chunk's cells and the numbers' texts, and Parquet/Arrow record batches. The
row-by-row writer in points.py remains for what these cannot vouch for.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..io import arrow
from .point_data import POINT_SCHEMA, Chunk, _Cells, _json_cell, _json_safe

# The writer (points.Writer) and a chunk's result (points.Result), as read here.
Writer = Any
Result = Any

# A cell that is its own JSON string body: printable ASCII but the quote and the backslash.
_PLAIN_JSON = r"^[\x20\x21\x23-\x5b\x5d-\x7e]*$"


def _flat(array: Any, n: int) -> np.ndarray:
    return np.asarray(array).reshape(n, -1)


def number_columns(w: Writer, result: Result, n: int) -> list[np.ndarray]:
    """The value's and the gradient's flat columns, in the header's order."""
    arrays = (result.value, *(result.grads[name] for name in w.p.wrt))
    return [flat[:, j] for a in arrays for flat in (_flat(a, n),) for j in range(flat.shape[1])]


def fixed_columns(w: Writer) -> list[float]:
    """The fixed values' flat elements, in the header's order."""
    return [float(v) for name in w.fixed_names for v in w.p.fixed[name].reshape(-1)]


def csv_rows(w: Writer, chunk: Chunk, result: Result) -> bytes | None:
    """The chunk's CSV/TSV rows, or None for a chunk read row by row."""
    n = len(chunk.lines)
    sep = w.sep
    if chunk.head is not None and chunk.head_sep != sep and arrow.any_match(chunk.head, sep):
        cells_of(w, chunk)  # a cell holds the new separator: cell by cell, quoted
    if chunk.head is not None:
        head = chunk.head
        if chunk.head_sep != sep:
            head = arrow.replace(head, chunk.head_sep, sep)
        first, lead = [head], False
    elif chunk.cells is not None:
        first = [_cell_text(w, chunk, name, sep) for name in w.names]
        lead = True
    else:
        return None
    fixed = [arrow.float_texts(np.array([v]))[0].as_py() for v in fixed_columns(w)]
    numbers = arrow.float_texts_of(number_columns(w, result, n), w.p.dtype)
    rows = arrow.join_rows([*first, *fixed, *numbers], sep, lead)
    return rows[1:] + b"\n" if rows else b""


def cells_of(w: Writer, chunk: Chunk) -> None:
    """A chunk kept as its lines, cut into its cells (for JSON lines, tables, and a CSV
    written with another separator)."""
    if chunk.head is None:
        return
    cut = arrow.split_cells(chunk.head, chunk.head_sep, len(w.reader.names))
    if cut is None:  # cannot happen for a block Arrow read with this many columns
        raise AssertionError("a row of another width")
    cells = dict(zip(w.reader.names, cut, strict=True))
    chunk.cells = {name: cells[name] for name in w.reader.names}
    chunk.head = None


def _cell_text(w: Writer, chunk: Chunk, name: str, sep: str) -> Any:
    cells = chunk.cells or {}
    if name in cells and chunk.cells_json and name not in chunk.columns:
        return arrow.quoted(arrow.json_cells(cells[name]), sep)
    if name in cells:
        return arrow.quoted(arrow.text_column(cells[name]), sep)
    if name in chunk.columns:
        return arrow.float_texts(chunk.columns[name])
    return ""


def jsonl_rows(w: Writer, chunk: Chunk, result: Result) -> bytes | None:
    """The chunk's JSON lines, where every number is a scalar and every other column a plain
    ASCII cell; None otherwise (the row-by-row writer then writes them)."""
    p = w.p
    n = len(chunk.lines)
    graph = p.graph
    named = [*chunk.columns, *p.wrt]
    scalar = [p.cores[graph.output]] + [p.cores[graph.variables[v]] for v in named]
    if any(core != () for core in scalar) or chunk.extra:
        return None
    extras = [name for name in w.names if name not in chunk.columns]
    if extras:
        cells_of(w, chunk)
    extra = _json_extra(chunk, extras)
    if isinstance(extra, bool):
        return None
    lines = arrow.int_texts(np.asarray(chunk.lines))
    parts: list[Any] = ["\n{" + POINT_SCHEMA + ', "line": ', lines, ', "point": {']
    for k, name in enumerate(chunk.columns):
        parts += [
            ("" if k == 0 else ", ") + json.dumps(name) + ": ",
            arrow.json_numbers(chunk.columns[name]),
        ]
    for name in w.fixed_names:
        value = json.dumps(_json_safe(p.fixed[name].tolist()), allow_nan=False)
        parts.append(f", {json.dumps(name)}: {value}")
    parts.append("}")
    if extra is not None:
        parts += extra
    parts += [', "value": ', arrow.json_numbers(_flat(result.value, n)[:, 0]), ', "gradient": {']
    for k, name in enumerate(p.wrt):
        parts.append(("" if k == 0 else ", ") + json.dumps(name) + ": ")
        parts.append(arrow.json_numbers(_flat(result.grads[name], n)[:, 0]))
    parts.append("}}")
    rows = arrow.join_rows(parts, "", lead=False)
    return rows[1:] + b"\n" if rows else b""


def _json_extra(chunk: Chunk, extras: list[str]) -> list[Any] | bool | None:
    """The pieces of '"extra": {...}' for the chunk's other columns (None: it has none;
    False: some cell needs escaping, left to the row-by-row writer)."""
    cells = chunk.cells or {}
    given = [name for name in extras if name in cells]
    if not given:
        return None
    parts: list[Any] = [', "extra": {']
    for k, name in enumerate(given):
        column = cells[name]
        if chunk.cells_json:  # JSON values as written
            parts += [("" if k == 0 else ", ") + json.dumps(name) + ": ", column]
            continue
        plain = arrow.is_text(column) and not column.null_count
        if not plain or not arrow.all_match(column, _PLAIN_JSON):
            return False
        parts += [("" if k == 0 else ", ") + json.dumps(name) + ': "', column, '"']
    parts.append("}")
    return parts


def table_columns(w: Writer, chunk: Chunk, result: Result) -> list[Any]:
    """The chunk as Arrow columns for Parquet or an Arrow file: the file's columns (a
    Parquet file's own, a variable's numbers, other cells as text), the fixed values, value
    and gradient."""
    n = len(chunk.lines)
    typed = w.reader.kind == "table"
    if w.reader.extras:
        cells_of(w, chunk)
    columns: list[Any] = []
    cells = chunk.cells or {}
    for name in w.names:
        if typed and name in cells:
            columns.append(cells[name])
        elif name in chunk.columns:
            columns.append(arrow.floats(chunk.columns[name]))
        elif name in cells and chunk.cells_json:
            columns.append(arrow.json_cells(cells[name]))
        elif name in cells:
            columns.append(arrow.text_column(cells[name]))
        else:
            columns.append(arrow.strings([_row_text(extra, name) for extra in _extras(chunk, n)]))
    for v in fixed_columns(w):
        columns.append(arrow.floats(np.full(n, v)))
    columns += [arrow.floats(c) for c in number_columns(w, result, n)]
    return columns


def _extras(chunk: Chunk, n: int) -> list[Any]:
    return list(chunk.extra) if chunk.extra else [{}] * n


def _row_text(extra: Any, name: str) -> str | None:
    """A row-by-row chunk's other cell as text: a CSV cell as written, a JSON string as its
    text, any other JSON value as written; None where the row has no such key."""
    if isinstance(extra, _Cells):
        return extra[name]
    written = extra.get(name)
    return None if written is None else _json_cell(written)


def materialize(chunk: Chunk) -> None:
    """A chunk read at once, given the per-row form the row-by-row writer reads: its other
    columns as JSON texts (a text cell as a JSON string), the variables' cells as text."""
    cells = chunk.cells or {}
    extras = [name for name in cells if name not in chunk.columns]
    if extras:
        pylists = {name: arrow.to_pylist(cells[name]) for name in extras}
        if chunk.cells_json:  # already JSON texts, as written
            texts = pylists
        else:
            texts = {name: [_json_text(v) for v in values] for name, values in pylists.items()}
        chunk.extra = [{name: texts[name][k] for name in extras} for k in range(len(chunk.lines))]
    chunk.head = None
    chunk.cells = None


def _json_text(value: Any) -> str:
    from json.encoder import encode_basestring_ascii as _json_string

    if isinstance(value, str):
        return str(_json_string(value))
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    try:
        return json.dumps(value)
    except TypeError:
        return str(_json_string(str(value)))
