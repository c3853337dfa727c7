"""Many points through one graph (`grad --points`): read the points in chunks (CSV, TSV or
JSON lines), evaluate every chunk's values and gradients in one vectorised forward and
reverse sweep, and write one row per point, in input order, in bounded memory.

A row that cannot be read stops the run after the rows before it have been written, or,
with on_error="skip", is counted and skipped. Nothing here prints: rows go to `out`,
everything else to the returned Summary.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from . import checks, engine, shapes
from .data import _NUMBER, MAX_LINE_CHARS, DuplicateKey, json_int, lines, number, unique_keys
from .errors import BackpropError
from .graph import Graph

_NUMBER_TEXT = _NUMBER.pattern
CHUNK_ELEMENTS = 1 << 22  # node-value elements per chunk (bounds memory: ~32 MB a copy)
MAX_CHUNK_ROWS = 65_536
SHOWN_BAD_ROWS = 10  # skipped rows named one by one; the rest are counted


@dataclass
class Bad:
    line: int
    message: str


@dataclass
class Chunk:
    lines: list[int]  # the source line of each row
    columns: dict[str, np.ndarray]  # variable -> one value per row
    extra: dict[str, list[Any]]  # columns that are not variables, passed through
    texts: dict[str, list[str]] | None = None  # the variables' cells as written (CSV)


@dataclass
class Row:
    line: int
    values: dict[str, float]  # variable -> value
    extra: dict[str, Any]  # the other columns
    texts: dict[str, str] | None = None  # the variables' cells as written (CSV)


@dataclass
class FastBlock:
    """Consecutive rows read at once: their lines and one column per file column."""

    lines: list[int]
    array: np.ndarray
    names: list[str]
    texts: dict[str, list[str]]  # each column's cells as written


@dataclass
class Summary:
    rows: int = 0
    skipped: list[Bad] = field(default_factory=list)
    nonfinite: int = 0  # rows whose value or gradient is nan or infinite
    nonfinite_lines: list[int] = field(default_factory=list)
    check_compared: int = 0
    check_max_error: float = 0.0
    check_mismatches: list[str] = field(default_factory=list)  # the first few
    check_mismatch_count: int = 0
    check_inconclusive: int = 0
    warnings: list[str] = field(default_factory=list)


# ---- reading --------------------------------------------------------------------------------


class PointReader:
    """The rows of a CSV/TSV file with a header (or one bare column), or of JSON lines."""

    def __init__(
        self,
        stream: Any,
        what: str,
        needed: list[str],
        fixed: Mapping[str, Any],
        allow_nonfinite: bool = False,
        constants: Collection[str] = ("e", "pi"),
        dtype: str = "float64",
    ) -> None:
        self.what = what
        self.float32 = dtype == "float32"  # cells beyond float32's range are bad rows
        self.underflows = 0  # nonzero cells that become 0 in the engine's dtype
        self.first_underflow = 0
        self.constants = constants  # the constants (e, pi) the expression uses
        self.allow_nonfinite = allow_nonfinite  # nan and inf cells (--allow-nonfinite)
        self.source = lines(stream, what)
        self.needed = needed  # variables without a fixed value: the file must give them
        self.fixed = fixed
        self.kind = "csv"
        self.delimiter = ","
        self.names: list[str] = []  # the file's columns, in order
        self.notes: list[str] = []  # warnings about the file, for stderr
        self.pending: tuple[int, str] | None = None  # a first line that was already data
        self._start()

    def _start(self) -> None:
        first = next(((n, t) for n, t in self.source if t.strip()), None)
        if first is None:
            raise BackpropError(f"{self.what} is empty: expected a header row and points")
        line, text = first
        if len(text) > MAX_LINE_CHARS:
            raise BackpropError(
                f"{self.what}, line {line}: longer than {MAX_LINE_CHARS:,} characters"
            )
        if text.lstrip().startswith("{"):
            self.kind = "jsonl"
            self.pending = (line, text)
            return
        self.delimiter = "\t" if "\t" in text and "," not in text else ","
        try:
            cells = [c.strip() for c in next(_csv([text], self.delimiter))]
        except csv.Error as exc:
            raise BackpropError(f"{self.what}, line {line}: not a CSV row ({_why(exc)})") from None
        if len(cells) == 1 and len(self.needed) == 1 and _is_number(cells[0], self.allow_nonfinite):
            self.names = list(self.needed)  # one bare column of numbers, no header
            self.pending = (line, text)
        else:
            self._header(line, cells)

    def _header(self, line: int, cells: list[str]) -> None:
        from .data import _NAME

        for name in cells:
            if not _NAME.fullmatch(name):
                hint = f" (a header naming {', '.join(self.needed)})" if self.needed else ""
                raise BackpropError(
                    f"{self.what}, line {line}: {name!r} is not a column name: expected a "
                    f"header row{hint}"
                )
        if len(set(cells)) != len(cells):
            dup = next(n for n in cells if cells.count(n) > 1)
            raise BackpropError(f"{self.what}, line {line}: column {dup!r} appears twice")
        self.names = cells
        self._check_columns(cells)
        for name in cells:
            self._constant_column(line, name)

    def _in_range(self, value: float, text: str, name: str, line: int) -> float:
        """NAME=VALUE's rules for a cell: beyond float32 with --dtype float32 is an error; a
        nonzero number that becomes 0 (1e-400; 1e-46 in float32) is counted for a warning."""
        if self.float32 and math.isfinite(value) and abs(value) > FLOAT32_MAX and _overflows(value):
            raise BackpropError(
                f"column {name}: {text.strip()} overflows float32 (largest 3.4e+38; "
                "use --dtype float64)"
            )
        stored = float(np.float32(value)) if self.float32 else value
        if stored == 0 and _nonzero_text(text):
            self._underflow(line)
        return value

    def _underflow(self, line: int) -> None:
        self.underflows += 1
        if self.underflows == 1:
            self.first_underflow = line

    @property
    def warnings(self) -> list[str]:
        """The notes, and the underflow count, for stderr once the file has been read."""
        found = list(self.notes)
        if self.underflows:
            kind = "float32" if self.float32 else "float64"
            found.append(
                f"{self.what}: {self.underflows:,} nonzero cell"
                f"{'s are' if self.underflows > 1 else ' is'} too small for {kind} and "
                f"become{'' if self.underflows > 1 else 's'} 0 (the first on line "
                f"{self.first_underflow})"
            )
        return found

    def _constant_column(self, line: int, name: str) -> None:
        if name in self.constants and name not in self.needed and name not in self.fixed:
            self.notes.append(
                f"{self.what}, line {line}: column '{name}' is not a variable ('{name}' is the "
                "constant in the expression); it is passed through as data"
            )

    def _check_columns(self, names: list[str]) -> None:
        both = [n for n in names if n in self.fixed]
        if both:
            raise BackpropError(
                f"{both[0]} is given both as a column of {self.what} and as {both[0]}=VALUE: "
                "drop one"
            )
        missing = [n for n in self.needed if n not in names]
        if missing:
            raise BackpropError(
                f"{self.what} has no column for {', '.join(missing)}",
                hint=f"add the column, or give {missing[0]}=VALUE for every point",
            )

    @property
    def extras(self) -> list[str]:
        return [n for n in self.names if n not in self.needed]

    def rows(self) -> Iterator[Row | Bad]:
        """(line, variable values, extra values) per row, or Bad for a row that cannot be read."""
        first = [self.pending] if self.pending is not None else []
        for line, text in _chain(first, self.source):
            if not text.strip():
                continue
            if len(text) > MAX_LINE_CHARS:
                yield Bad(line, f"longer than {MAX_LINE_CHARS:,} characters")
                continue
            if self.kind == "jsonl":
                yield self._json_row(line, text)
            else:
                yield self._csv_row(line, text)

    def batches(self, size: int) -> Iterator[FastBlock | Row | Bad]:
        """`rows`, with runs of plain numeric CSV lines converted at once (FastBlock): the
        same strict number syntax, checked by one pattern per line instead of one per cell."""
        if self.kind != "csv" or self.extras:
            yield from self.rows()
            return
        d = re.escape(self.delimiter)
        space = "[ ]*" if self.delimiter == "\t" else "[ \t]*"
        cell = f"{space}{_NUMBER_TEXT}{space}"
        row = re.compile(f"{cell}(?:{d}{cell}){{{len(self.names) - 1}}}", re.ASCII)
        source = _chain([self.pending] if self.pending is not None else [], self.source)
        self.pending = None
        while True:
            block = list(itertools.islice(source, size))
            if not block:
                return
            start = 0
            for k, (line, text) in enumerate(block):
                if len(text) <= MAX_LINE_CHARS and row.fullmatch(text):
                    continue
                if k > start:
                    yield from self._fast(block[start:k])
                start = k + 1
                if text.strip():
                    yield (
                        Bad(line, f"longer than {MAX_LINE_CHARS:,} characters")
                        if len(text) > MAX_LINE_CHARS
                        else self._csv_row(line, text)
                    )
            if start < len(block):
                yield from self._fast(block[start:])

    def _fast(self, block: list[tuple[int, str]]) -> Iterator[FastBlock | Row | Bad]:
        text = self.delimiter.join(t for _, t in block)
        array = np.array(text.split(self.delimiter), dtype=np.float64).reshape(len(block), -1)
        limit = FLOAT32_MAX if self.float32 else math.inf
        if (np.abs(array) > limit).any() or np.isinf(array).any():  # let the strict path name it
            for line, t in block:
                yield self._csv_row(line, t)
            return
        cells = text.split(self.delimiter)
        if " " in text or ("\t" in text and self.delimiter != "\t"):
            cells = [c.strip() for c in cells]
        k = len(self.names)
        texts = {name: cells[j::k] for j, name in enumerate(self.names)}
        zero = array == 0 if not self.float32 else array.astype(np.float32) == 0
        if zero.any():
            flat = np.flatnonzero(zero)
            for index in flat:
                if _nonzero_text(cells[index]):
                    self._underflow(block[index // k][0])
        yield FastBlock([line for line, _ in block], array, list(self.names), texts)

    def _csv_row(self, line: int, text: str) -> Row | Bad:
        try:
            cells = next(_csv([text], self.delimiter))
        except csv.Error as exc:
            return Bad(line, f"not a CSV row ({_why(exc)})")
        if len(cells) != len(self.names):
            return Bad(line, f"{len(cells)} fields, but the header has {len(self.names)}")
        values, extra, texts = {}, {}, {}
        for name, cell in zip(self.names, cells, strict=True):
            if name in self.needed:
                try:
                    values[name] = self._in_range(
                        number(cell, f"column {name}", self.allow_nonfinite), cell, name, line
                    )
                except BackpropError as exc:
                    return Bad(line, exc.message)
                texts[name] = cell.strip()
            else:
                extra[name] = cell
        return Row(line, values, extra, texts)

    def _json_row(self, line: int, text: str) -> Row | Bad:
        try:
            obj = json.loads(text, parse_int=json_int, object_pairs_hook=unique_keys)
        except DuplicateKey as exc:
            return Bad(line, f"the key {exc}")
        except (ValueError, RecursionError) as exc:
            return Bad(line, f"not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})")
        if not isinstance(obj, dict):
            return Bad(line, "expected a JSON object name → number")
        if not self.names:
            self.names = list(obj)  # a missing variable is this row's problem, not the file's
            for name in self.names:
                self._constant_column(line, name)
        values, extra = {}, {}
        for name in self.needed:
            if name not in obj:
                return Bad(line, f"no value for {name}")
            v = obj[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return Bad(line, f"{name}: expected a number, got {json.dumps(v)[:40]}")
            if not math.isfinite(float(v)) and not self.allow_nonfinite:
                return Bad(
                    line, f"{name}: {v} is not a finite number (pass --allow-nonfinite to give it)"
                )
            try:
                values[name] = self._in_range(float(v), str(v), name, line)
            except BackpropError as exc:
                return Bad(line, exc.message)
        for name, v in obj.items():
            if name not in self.needed:
                if name in self.fixed:
                    return Bad(line, f"{name} is also given as {name}=VALUE")
                extra[name] = v
                if name not in self.names:
                    self.names.append(name)
                    self._constant_column(line, name)
        return Row(line, values, extra)


CONSTANTS = ("e", "pi")
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _overflows(value: float) -> bool:
    """Beyond float32: rounds to infinity (3.4028235e38 still rounds to the largest)."""
    with np.errstate(over="ignore"):
        return bool(np.isinf(np.float32(value)))


def _nonzero_text(text: str) -> bool:
    """A number written with a nonzero digit before its exponent (1e-400, not 0.0e5)."""
    return any(c in "123456789" for c in text.strip().lower().partition("e")[0])


def _csv(lines: list[str], delimiter: str) -> Iterator[list[str]]:
    """CSV rows, where a quote left open at the end of its line is an error, not a field
    silently cut (a quoted field may not span lines here); otherwise as lenient as Python's
    reader (`"x" ,"y"` is two fields)."""
    for text in lines:
        try:
            yield next(csv.reader([text], delimiter=delimiter, strict=True))
        except csv.Error as exc:
            if "unexpected end of data" in str(exc):
                raise
            yield next(csv.reader([text], delimiter=delimiter))


def _why(exc: csv.Error) -> str:
    text = str(exc)
    if "unexpected end of data" in text:
        return "a quote is not closed on this line; a quoted field may not span lines"
    return text


def _chain(
    first: list[tuple[int, str]], rest: Iterator[tuple[int, str]]
) -> Iterator[tuple[int, str]]:
    yield from first
    yield from rest


def _is_number(text: str, allow_nonfinite: bool = False) -> bool:
    try:
        number(text, "", allow_nonfinite)
    except BackpropError:
        return False
    return True


def chunks(
    reader: PointReader, rows_per_chunk: int, on_error: str, summary: Summary
) -> Iterator[Chunk]:
    """Chunks of good rows. A bad row ends the run (after the rows before it) or, with
    on_error="skip", is recorded in `summary` and skipped."""
    lines: list[int] = []
    values: dict[str, list[float]] = {name: [] for name in reader.needed}
    texts: dict[str, list[str]] | None = (
        {name: [] for name in reader.needed} if reader.kind == "csv" else None
    )
    extra: dict[str, list[Any]] = {}

    def flush() -> Chunk:
        chunk = Chunk(
            list(lines),
            {name: np.array(v, dtype=np.float64) for name, v in values.items()},
            {name: list(v) for name, v in extra.items()},
            None if texts is None else {name: list(v) for name, v in texts.items()},
        )
        lines.clear()
        for v in values.values():
            v.clear()
        for t in (texts or {}).values():
            t.clear()
        extra.clear()
        return chunk

    for row in reader.batches(rows_per_chunk):
        if isinstance(row, FastBlock):
            if not lines:  # nothing pending: the block is a chunk of its own
                yield Chunk(
                    row.lines,
                    {name: row.array[:, j] for j, name in enumerate(row.names)},
                    {},
                    row.texts,
                )
                continue
            for k, line in enumerate(row.lines):
                for j, name in enumerate(row.names):
                    values[name].append(float(row.array[k, j]))
                    if texts is not None:
                        texts[name].append(row.texts[name][k])
                lines.append(line)
                if len(lines) >= rows_per_chunk:
                    yield flush()
            continue
        if isinstance(row, Bad):
            if on_error == "skip":
                summary.skipped.append(row)
                continue
            if lines:
                yield flush()
            raise BackpropError(f"{reader.what}, line {row.line}: {row.message}")
        line, vals, ext = row.line, row.values, row.extra
        for name, v in vals.items():
            values[name].append(v)
            if texts is not None and row.texts is not None:
                texts[name].append(row.texts[name])
        for name in ext:
            if name not in extra:
                extra[name] = [None] * len(lines)
        for name, column in extra.items():
            column.append(ext.get(name))
        lines.append(line)
        if len(lines) >= rows_per_chunk:
            yield flush()
    if lines:
        yield flush()


# ---- evaluating -----------------------------------------------------------------------------


@dataclass
class Plan:
    """What stays the same for every chunk."""

    graph: Graph
    cores: list[tuple[int, ...]]
    fixed: dict[str, np.ndarray]
    wrt: list[str]
    dtype: str
    seed: Any
    rows_per_chunk: int


def plan(
    graph: Graph,
    fixed: Mapping[str, Any],
    varying: list[str],
    wrt: list[str],
    dtype: str,
    seed: Any,
    rows_per_chunk: int | None = None,
) -> Plan:
    given = {name: np.shape(v) for name, v in fixed.items() if name in graph.variables}
    given.update({name: () for name in varying})
    cores = shapes.infer(graph, given)
    per_point = sum(max(1, shapes.size(core)) for core in cores)
    rows = rows_per_chunk or max(1, min(MAX_CHUNK_ROWS, CHUNK_ELEMENTS // per_point))
    return Plan(
        graph,
        cores,
        {n: np.asarray(v, dtype=np.float64) for n, v in fixed.items() if n in graph.variables},
        wrt,
        dtype,
        seed,
        rows,
    )


@dataclass
class Result:
    value: np.ndarray  # (n, *output core)
    grads: dict[str, np.ndarray]  # variable -> (n, *its core)
    env: dict[str, np.ndarray]


def evaluate(p: Plan, chunk: Chunk) -> Result:
    """One forward and one reverse sweep over the whole chunk."""
    dt = engine.DTYPES[p.dtype]
    n = len(chunk.lines)
    graph = p.graph
    env: dict[str, np.ndarray] = {}
    for name, node_id in graph.variables.items():
        core = p.cores[node_id]
        if name in chunk.columns:
            env[name] = chunk.columns[name].astype(dt)
        else:  # every point gets its own copy, so that each gets its own gradient
            env[name] = np.broadcast_to(p.fixed[name].astype(dt), (n, *core)).copy()
    out_core = p.cores[graph.output]
    with np.errstate(all="ignore"):
        values = engine.evaluate(graph, env, dt, cores=p.cores)
        seed = np.broadcast_to(np.asarray(p.seed, dtype=dt), (n, *out_core)).copy()
        grads = engine.backward(graph, values, seed, cores=p.cores)
    value = np.broadcast_to(values[graph.output], (n, *out_core))
    found = {}
    for name in p.wrt:
        node_id = graph.variables[name]
        g = grads[node_id]
        shape = (n, *p.cores[node_id])
        found[name] = np.zeros(shape, dtype=dt) if g is None else np.broadcast_to(g, shape)
    return Result(value, found, env)


# ---- writing --------------------------------------------------------------------------------


def _flat_names(name: str, core: tuple[int, ...]) -> list[str]:
    return [name] if not core else [shapes.element_name(name, i) for i in shapes.elements(core)]


class Writer:
    """CSV/TSV columns: the file's columns in order, the fixed values, value, d_<var>; or one
    JSON object per point: line, point, extra (when the file has other columns), value and
    gradient."""

    def __init__(self, kind: str, p: Plan, reader: PointReader) -> None:
        self.kind, self.p, self.reader = kind, p, reader
        self.names: list[str] = []  # the file's columns, as of the header
        self.fixed_names = [n for n in sorted(p.fixed) if n not in reader.names]

    def header(self) -> str:
        # The columns are fixed here: a JSON key first seen later goes only to JSONL's extra.
        self.names = list(self.reader.names)
        if self.kind == "jsonl":
            return ""
        p = self.p
        cols = list(self.names)
        for name in self.fixed_names:
            cols += _flat_names(name, p.cores[p.graph.variables[name]])
        cols += _flat_names("value", p.cores[p.graph.output])
        for name in p.wrt:
            cols += _flat_names(f"d_{name}", p.cores[p.graph.variables[name]])
        if len(set(cols)) != len(cols):
            clash = next(c for c in cols if cols.count(c) > 1)
            raise BackpropError(
                f"the output would have two columns called {clash!r}: rename that column, "
                "or use --format jsonl"
            )
        return self._csv([cols])

    def _csv(self, rows: list[list[Any]]) -> str:
        buffer = io.StringIO()
        delimiter = "\t" if self.kind == "tsv" else ","
        csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
        return buffer.getvalue()

    def rows(self, chunk: Chunk, result: Result) -> str:
        n = len(chunk.lines)
        p = self.p
        if self.kind == "jsonl":
            return self._jsonl(chunk, result, n)
        numbers = _numbers(p.dtype)
        columns: list[list[str]] = []
        for name in self.names:
            if chunk.texts is not None and name in chunk.texts:
                columns.append(chunk.texts[name])  # as written: what the user gave
            elif name in chunk.columns:
                columns.append(_numbers("float64")(chunk.columns[name]))
            else:
                quote = self._quote
                columns.append([quote(_cell(v)) for v in chunk.extra.get(name, [None] * n)])
        for name in self.fixed_names:
            for v in _numbers("float64")(p.fixed[name].reshape(-1)):
                columns.append([v] * n)
        for array in (result.value, *(result.grads[name] for name in p.wrt)):
            flat = np.asarray(array).reshape(n, -1)
            columns += [numbers(flat[:, j]) for j in range(flat.shape[1])]
        sep = "\t" if self.kind == "tsv" else ","
        return "\n".join(map(sep.join, zip(*columns, strict=True))) + "\n"

    def _quote(self, text: str) -> str:
        sep = "\t" if self.kind == "tsv" else ","
        if any(c in text for c in (sep, '"', "\n", "\r")):
            return '"' + text.replace('"', '""') + '"'
        return text

    def _jsonl(self, chunk: Chunk, result: Result, n: int) -> str:
        p = self.p
        lines = []
        value = result.value.tolist()
        grads = {name: result.grads[name].tolist() for name in p.wrt}
        fixed = {name: _json_safe(p.fixed[name].tolist()) for name in self.fixed_names}
        cols = {name: chunk.columns[name].tolist() for name in chunk.columns}
        for k in range(n):
            obj: dict[str, Any] = {
                "line": chunk.lines[k],
                "point": {**{name: cols[name][k] for name in cols}, **fixed},
            }
            if chunk.extra:
                obj["extra"] = {name: vals[k] for name, vals in chunk.extra.items()}
            obj["value"] = _json_safe(value[k])
            obj["gradient"] = {name: _json_safe(grads[name][k]) for name in p.wrt}
            lines.append(json.dumps(obj, allow_nan=False))
        return "\n".join(lines) + "\n"


def _numbers(dtype: str) -> Any:
    """Column of numbers -> their shortest round-trip texts (nan, inf, -inf as such)."""
    if dtype == "float32":
        return lambda column: [str(v) for v in np.asarray(column, dtype=np.float32)]
    return lambda column: list(map(repr, np.asarray(column, dtype=np.float64).tolist()))


def _cell(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def _json_safe(x: Any) -> Any:
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


# ---- the whole run --------------------------------------------------------------------------


def run(
    p: Plan,
    reader: PointReader,
    kind: str,
    out: TextIO,
    on_error: str = "stop",
    check: Any = None,
) -> Summary:
    """Stream every point through the graph; `check(chunk, result, summary)` compares a
    chunk with an independent computation."""
    summary = Summary()
    writer = Writer(kind, p, reader)
    wrote_header = False
    for chunk in chunks(reader, p.rows_per_chunk, on_error, summary):
        if not wrote_header:
            out.write(writer.header())
            wrote_header = True
        result = evaluate(p, chunk)
        _count_nonfinite(chunk, result, summary)
        out.write(writer.rows(chunk, result))
        summary.rows += len(chunk.lines)
        if check is not None:
            check(chunk, result, summary)
    if not wrote_header:
        out.write(writer.header())
    return summary


def _count_nonfinite(chunk: Chunk, result: Result, summary: Summary) -> None:
    n = len(chunk.lines)
    with np.errstate(all="ignore"):
        bad = ~np.isfinite(result.value.reshape(n, -1)).all(axis=1)
        for g in result.grads.values():
            bad |= ~np.isfinite(np.asarray(g).reshape(n, -1)).all(axis=1)
    if bad.any():
        where = np.flatnonzero(bad)
        summary.nonfinite += int(where.size)
        room = SHOWN_BAD_ROWS - len(summary.nonfinite_lines)
        summary.nonfinite_lines += [chunk.lines[int(k)] for k in where[: max(0, room)]]


# ---- the torch check ------------------------------------------------------------------------

MAX_RECHECKS = 200  # disagreeing points re-judged one by one with their rounding spread


class TorchCheck:
    """Each chunk's gradients recomputed by torch autograd on the whole chunk at once. A
    point that disagrees beyond the tolerance is re-judged alone, allowing for how far
    rounding can move its gradient (its spread), as the single-point report does."""

    def __init__(self, p: Plan, device: str) -> None:
        self.p, self.device = p, device
        self.rtol, self.atol = checks.TOLERANCES[p.dtype]["torch"]
        self.rechecked = 0
        self.about = ""

    def __call__(self, chunk: Chunk, result: Result, summary: Summary) -> None:
        p = self.p
        _, theirs, self.about = checks.torch_batch(
            p.graph, result.env, p.cores, p.dtype, self.device, p.seed, p.wrt
        )
        n = len(chunk.lines)
        for name in p.wrt:
            mine = np.asarray(result.grads[name], dtype=np.float64).reshape(n, -1)
            other = np.asarray(theirs[name], dtype=np.float64).reshape(n, -1)
            verdict = checks.judge_many(mine, other, self.rtol, self.atol, 0.0)
            errors = checks.abs_errors(mine, other)
            summary.check_compared += mine.size
            for k in np.flatnonzero((verdict != "ok").any(axis=1)):
                state = self._alone(chunk, result, int(k), name, other[k])
                if state == "mismatch":
                    summary.check_mismatch_count += 1
                    if len(summary.check_mismatches) < SHOWN_BAD_ROWS:
                        summary.check_mismatches.append(f"line {chunk.lines[int(k)]} ({name})")
                elif state == "inconclusive":
                    summary.check_inconclusive += 1
                errors[k] = 0.0 if state != "mismatch" else errors[k]
            finite = errors[np.isfinite(errors)]
            if finite.size:
                summary.check_max_error = max(summary.check_max_error, float(finite.max()))

    def _alone(self, chunk: Chunk, result: Result, k: int, name: str, theirs: np.ndarray) -> str:
        if self.rechecked >= MAX_RECHECKS:
            return "mismatch"
        self.rechecked += 1
        p = self.p
        env = {v: np.asarray(result.env[v][k]) for v in result.env}
        trace = engine.run(p.graph, env, p.dtype, p.seed)
        _, grad_spread = engine.spread(p.graph, env, trace, p.dtype, p.seed)
        node = p.graph.variables[name]
        mine = np.asarray(trace.grads[node], dtype=np.float64).reshape(-1)
        slack = 4 * np.asarray(grad_spread[node], dtype=np.float64).reshape(-1)
        slack = np.broadcast_to(slack, mine.shape)
        verdicts = checks.judge_many(mine, theirs, self.rtol, self.atol, slack)
        if (verdicts == "mismatch").any():
            return "mismatch"
        return "inconclusive" if (verdicts == "inconclusive").any() else "ok"
