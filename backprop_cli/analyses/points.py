"""Many points through one graph (`grad --points`): read the points in chunks (CSV, TSV or
JSON lines a block at a time, with this module's line reader for what the block reader in
point_blocks cannot vouch for; Parquet and Arrow files by record batch), evaluate every
chunk's values and gradients in one vectorised forward and reverse sweep, and write one row
per point, in input order, in bounded memory (point_rows for a chunk read at once).

Memory does not grow with the file: a chunk ends at MAX_CHUNK_ROWS rows, at CHUNK_ELEMENTS
node values, or at about CHUNK_BYTES of text held (a file of 100,000 pass-through columns
gets chunks of a few rows); a skipped row is counted, and only the first few are kept to be
named. Columns that are not variables pass through as written: a CSV cell as its text, a
JSON value as the text of the line it came from (never re-encoded through a float).

A row that cannot be read stops the run after the rows before it have been written, or,
with on_error="skip", is counted and skipped. Nothing here prints: rows go to `out`,
everything else to the returned Summary and the reader's `warnings`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps of a str
from typing import Any

import numpy as np

from ..checks import autograd, compare
from ..core import engine, shapes
from ..core.errors import BackpropError, LimitError
from ..core.graph import Graph
from ..io.data import MAX_LINE_CHARS, DuplicateKey, json_int, lines, number, unique_keys
from .point_data import (
    _NO_EXTRA,
    CELL_BYTES,
    FLOAT32_MAX,
    POINT_SCHEMA,
    SHOWN_BAD_ROWS,
    Bad,
    Chunk,
    Row,
    Summary,
    _Cells,
    _json_cell,
    _json_safe,
    _Unwritten,
    nonzero_text,
)

# The rows and their summary, defined with the other readers' data (point_data).
__all__ = ["SHOWN_BAD_ROWS", "Bad", "Chunk", "Row", "Summary"]
CHUNK_ELEMENTS = 1 << 22  # node-value elements per chunk (bounds memory: ~32 MB a copy)
MAX_CHUNK_ROWS = 65_536
CHUNK_BYTES = 1 << 24  # about what the rows of one chunk may hold as text (16 MB)
OUTPUT_PIECE = 1 << 20  # characters of output written at a time, however wide the rows
CONSTANTS = ("e", "pi")


# ---- reading --------------------------------------------------------------------------------


def constants_in(graph: Graph) -> set[str]:
    """The constants (e, pi) an expression uses: a file column of that name is data, not the
    constant, and the reader says so."""
    return {graph.text(n.id) for n in graph.nodes if n.op == "const"} & set(CONSTANTS)


class PointReader:
    """The rows of a CSV/TSV file with a header (or one bare column), or of JSON lines."""

    def __init__(
        self,
        stream: Any,
        what: str,
        needed: list[str],
        fixed: Mapping[str, Any],
        allow_nonfinite: bool = False,
        constants: Collection[str] = CONSTANTS,
        dtype: str = "float64",
    ) -> None:
        self.what = what
        self.float32 = dtype == "float32"  # cells beyond float32's range are bad rows
        self.underflows = 0  # nonzero cells that become 0 in the engine's dtype
        self.first_underflow = 0
        self.constants = constants  # the constants (e, pi) the expression uses
        self.allow_nonfinite = allow_nonfinite  # nan and inf cells (--allow-nonfinite)
        self.stream = stream
        self.source = lines(stream, what)
        self.next_line = 1  # the line after the header (point_blocks reads on from there)
        self.needed = needed  # variables without a fixed value: the file must give them
        self._needed = self.needed_set = set(needed)
        self.fixed = fixed
        self.kind = "csv"
        self.delimiter = ","
        self.names: list[str] = []  # the file's columns, in order
        self._known: set[str] = set()  # the same, to look up
        # Once a CSV header is written (fix_columns) JSON keys are no longer added to names:
        # they could not become columns, and a key per row would grow without end.
        self.frozen = False
        self.unwritten = _Unwritten()  # keys the CSV output had no column for
        self.notes: list[str] = []  # warnings about the file, for stderr
        self._noted: set[str] = set()  # constants already warned about
        self.pending: tuple[int, str] | None = None  # a first line that was already data
        self._start()
        self._needed_at = [(n, j) for j, n in enumerate(self.names) if n in self._needed]
        self._extra_at = {n: j for j, n in enumerate(self.names) if n not in self._needed}

    unit = "line"  # how a row is named in messages

    def _start(self) -> None:
        first = next(((n, t) for n, t in self.source if t.strip()), None)
        if first is None:
            raise BackpropError(f"{self.what} is empty: expected a header row and points")
        line, text = first
        self.next_line = line + 1
        if len(text) > MAX_LINE_CHARS:
            raise LimitError(f"{self.what}, line {line}: longer than {MAX_LINE_CHARS:,} characters")
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
            self._known = set(self.names)
            self.pending = (line, text)
        else:
            self._header(line, cells)

    def _header(self, line: int, cells: list[str]) -> None:
        from ..io.data import _NAME

        for name in cells:
            if not _NAME.fullmatch(name):
                hint = f" (a header naming {', '.join(self.needed)})" if self.needed else ""
                raise BackpropError(
                    f"{self.what}, line {line}: {name!r} is not a column name: expected a "
                    f"header row{hint}"
                )
        seen: set[str] = set()
        for name in cells:  # one pass: a header may have 100,000 columns
            if name in seen:
                raise BackpropError(f"{self.what}, line {line}: column {name!r} appears twice")
            seen.add(name)
        self.names = cells
        self._known = set(cells)
        self._check_columns(cells)
        for name in cells:
            self._constant_column(line, name)

    def fix_columns(self) -> list[str]:
        """The columns as of now, for a CSV header; JSON keys first seen later are not added
        (the writer counts them in `unwritten`). A variable no row has given yet (the first
        row was bad) is added, so that every variable has its column."""
        self.frozen = True
        missing = [n for n in self.needed if n not in self._known]
        self.names += missing
        self._known.update(missing)
        return list(self.names)

    def _in_range(self, value: float, text: str, name: str, line: int) -> float:
        """NAME=VALUE's rules for a cell: beyond float32 with --dtype float32 is an error; a
        nonzero number that becomes 0 (1e-400; 1e-46 in float32) is counted for a warning."""
        if self.float32 and math.isfinite(value) and abs(value) > FLOAT32_MAX and _overflows(value):
            raise BackpropError(
                f"column {name}: {text.strip()} overflows float32 (largest 3.4e+38; "
                "use --dtype float64)"
            )
        stored = float(np.float32(value)) if self.float32 else value
        if stored == 0 and nonzero_text(text):
            self._underflow(line)
        return value

    def _underflow(self, line: int) -> None:
        self.underflows += 1
        if self.underflows == 1:
            self.first_underflow = line

    @property
    def warnings(self) -> list[str]:
        """The notes, the underflow count and the keys left out of a CSV, for stderr once
        the file has been read."""
        found = list(self.notes)
        if self.underflows:
            kind = "float32" if self.float32 else "float64"
            found.append(
                f"{self.what}: {self.underflows:,} nonzero cell"
                f"{'s are' if self.underflows > 1 else ' is'} too small for {kind} and "
                f"become{'' if self.underflows > 1 else 's'} 0 (the first on line "
                f"{self.first_underflow})"
            )
        left_out = self.unwritten.message(self.what)
        if left_out is not None:
            found.append(left_out)
        return found

    def _constant_column(self, line: int, name: str) -> None:
        if (
            name in self.constants
            and name not in self._needed
            and name not in self.fixed
            and name not in self._noted
        ):
            self._noted.add(name)  # once per name, however many rows carry the key
            self.notes.append(
                f"{self.what}, line {line}: column '{name}' is not a variable ('{name}' is the "
                "constant in the expression); it is passed through as data"
            )

    def _new_key(self, line: int, name: str) -> None:
        self._constant_column(line, name)
        if not self.frozen:
            self.names.append(name)
            self._known.add(name)

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
        return [n for n in self.names if n not in self._needed]

    def batches(self, size: int) -> Iterator[Chunk | Row | Bad]:
        """The rows after the header, read a block of lines at a time (point_blocks):
        whole blocks become chunks where every cell keeps the strict rules, rows (or bad
        rows) read one line at a time otherwise."""
        from .point_blocks import text_items

        yield from text_items(self, size, CHUNK_BYTES)

    def one_row(self, line: int, text: str) -> Iterator[Row | Bad]:
        """One line as a row, a bad row, or nothing (a blank line)."""
        if not text.strip():
            return
        if len(text) > MAX_LINE_CHARS:
            yield Bad(line, f"longer than {MAX_LINE_CHARS:,} characters")
        elif self.kind == "jsonl":
            yield self._json_row(line, text)
        else:
            yield self._csv_row(line, text)

    def known(self, name: str) -> bool:
        return name in self._known

    def keys_of(self, text: str) -> list[str]:
        """A JSON line's keys in the order written (its errors are the line reader's)."""
        return list(_members(text))

    def _csv_row(self, line: int, text: str) -> Row | Bad:
        try:
            cells = next(_csv([text], self.delimiter))
        except csv.Error as exc:
            return Bad(line, f"not a CSV row ({_why(exc)})")
        if len(cells) != len(self.names):
            return Bad(line, f"{len(cells)} fields, but the header has {len(self.names)}")
        values, texts = {}, {}
        for name, j in self._needed_at:  # only the variables: a row may have 100,000 cells
            cell = cells[j]
            try:
                values[name] = self._in_range(
                    number(cell, f"column {name}", self.allow_nonfinite), cell, name, line
                )
            except BackpropError as exc:
                return Bad(line, exc.message)
            texts[name] = cell.strip()
        extra = _Cells(self._extra_at, cells) if self._extra_at else _NO_EXTRA
        return Row(line, values, extra, texts, len(text) + CELL_BYTES * (len(cells) + 1))

    def _json_row(self, line: int, text: str) -> Row | Bad:
        try:
            given = _members(text)  # key -> its value as written
            values = {name: _DECODER.decode(given[name]) for name in self.needed if name in given}
        except _NotAnObject:
            return Bad(line, "expected a JSON object name → number")
        except DuplicateKey as exc:
            return Bad(line, f"the key {exc}")
        except (ValueError, RecursionError) as exc:
            return Bad(line, f"not valid JSON ({getattr(exc, 'msg', 'nested too deeply')})")
        if not self._known.issuperset(given):  # the first row (even a bad one) names columns
            for name in given:
                if name not in self._known:
                    self._new_key(line, name)
        for name in self.needed:
            if name not in values:
                return Bad(line, f"no value for {name}")
            problem = self._json_number(values, name, line)
            if problem is not None:
                return Bad(line, problem)
        extra = dict(given)
        for name in self.needed:
            del extra[name]
        if self.fixed and not extra.keys().isdisjoint(self.fixed):
            name = next(n for n in extra if n in self.fixed)
            return Bad(line, f"{name} is also given as {name}=VALUE")
        size = len(text) + 2 * CELL_BYTES * len(extra)
        return Row(line, values, extra or _NO_EXTRA, None, size)

    def _json_number(self, values: dict[str, Any], name: str, line: int) -> str | None:
        """The variable's JSON value checked and made a float in `values`, or the problem."""
        v = values[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"{name}: expected a number, got {json.dumps(v)[:40]}"
        if not math.isfinite(float(v)) and not self.allow_nonfinite:
            return f"{name}: {v} is not a finite number (pass --allow-nonfinite to give it)"
        try:
            values[name] = self._in_range(float(v), str(v), name, line)
        except BackpropError as exc:
            return exc.message
        return None


# A JSON object read member by member, so that each value's text as written can be passed
# through. A member whose value is a string, a number or a literal is matched by one pattern
# (JSON's own grammar, as the standard decoder reads it, NaN and Infinity included); any
# other member (an array, an object, an error) goes through the standard decoder.
_DECODER = json.JSONDecoder(parse_int=json_int, object_pairs_hook=unique_keys)
_SPACE = re.compile(r"[ \t\n\r]*")
_WS = r"[ \t\n\r]*+"  # possessive: a long run of characters is matched at once
_STRING = r'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"'
_JSON_NUMBER = r"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][-+]?+[0-9]++)?+"
_VALUE = rf"(?:{_STRING}|{_JSON_NUMBER}|true|false|null|NaN|-?Infinity)"
_BODY = rf"{_STRING}{_WS}:{_WS}{_VALUE}{_WS}"
# A whole line of such members, checked first: anchored and possessive, so linear in the
# line; only then are the members found one after another with findall (which, on a line
# it does not tile, would retry at every position).
_SIMPLE_OBJECT = re.compile(rf"{_WS}\{{{_WS}(?:{_BODY},{_WS})*+{_BODY}\}}{_WS}")
_MEMBER = re.compile(rf"({_STRING}){_WS}:{_WS}({_VALUE}){_WS}([,}}]){_WS}")


class _NotAnObject(Exception):
    pass


def _skip(text: str, i: int) -> int:
    """Past the JSON whitespace at i."""
    found = _SPACE.match(text, i)
    return found.end() if found is not None else i


def _members(text: str) -> dict[str, str]:
    """key -> the value's text as written, for each member of the JSON object on `text`;
    invalid JSON raises as json.loads does, valid JSON that is not an object raises
    _NotAnObject."""
    i = _skip(text, 0)
    if not text.startswith("{", i):
        json.loads(text, parse_int=json_int, object_pairs_hook=unique_keys)  # its own error
        raise _NotAnObject
    found: list[tuple[str, str]] = []
    i = _skip(text, i + 1)
    if text.startswith("}", i):
        return _object_end(text, i + 1, found)
    simple = _simple_members(text, i)
    if simple is not None:
        return _object_end(text, len(text), simple)
    member = _MEMBER.match
    while True:
        m = member(text, i)
        if m is not None:
            key, written, end = m.group(1, 2, 3)
            key = _key(key)
            i = m.end()
        else:
            key, written, end, i = _member(text, i)
        found.append((key, written))
        if end == "}":
            return _object_end(text, i, found)


def _simple_members(text: str, i: int) -> list[tuple[str, str]] | None:
    """Every member at once, where each value is a string, a number or a literal (a line
    with a nested value is read member by member)."""
    if _SIMPLE_OBJECT.fullmatch(text) is None:
        return None
    found = _MEMBER.findall(text, i)
    if "\\" not in text:  # no escapes: each key is the text between its quotes
        return [(key[1:-1], written) for key, written, _ in found]
    return [(_key(key), written) for key, written, _ in found]


def _key(written: str) -> str:
    return written[1:-1] if "\\" not in written else str(json.loads(written))


def _member(text: str, i: int) -> tuple[str, str, str, int]:
    """One member the pattern does not match, through the standard decoder: (key, value as
    written, the ',' or '}' after it, where the next member starts)."""
    if not text.startswith('"', i):
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
    key, i = _DECODER.raw_decode(text, i)
    i = _skip(text, i)
    if not text.startswith(":", i):
        raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
    start = _skip(text, i + 1)
    _, i = _DECODER.raw_decode(text, start)
    written = text[start:i]
    i = _skip(text, i)
    end = text[i : i + 1]
    if end not in (",", "}"):
        raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
    return str(key), written, end, _skip(text, i + 1)


def _object_end(text: str, i: int, found: list[tuple[str, str]]) -> dict[str, str]:
    if _skip(text, i) != len(text):
        raise json.JSONDecodeError("Extra data", text, i)
    members = dict(found)
    if len(members) != len(found):
        unique_keys(found)  # a key given twice: named as before
    return members


def _overflows(value: float) -> bool:
    """Beyond float32: rounds to infinity (3.4028235e38 still rounds to the largest)."""
    with np.errstate(over="ignore"):
        return bool(np.isinf(np.float32(value)))


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


def _is_number(text: str, allow_nonfinite: bool = False) -> bool:
    try:
        number(text, "", allow_nonfinite)
    except BackpropError:
        return False
    return True


class _Pending:
    """The rows of the chunk being gathered, and about how much memory they hold."""

    def __init__(self, reader: PointReader) -> None:
        self.needed = reader.needed
        self.csv = reader.kind == "csv"
        self._reset()

    def _reset(self) -> None:
        self.lines: list[int] = []
        self.values: dict[str, list[float]] = {name: [] for name in self.needed}
        self.texts: dict[str, list[str]] | None = (
            {name: [] for name in self.needed} if self.csv else None
        )
        self.extra: list[Mapping[str, str]] = []
        self.any_extra = False
        self.size = 0

    def add(self, row: Row) -> None:
        self.lines.append(row.line)
        for name, v in row.values.items():
            self.values[name].append(v)
        if self.texts is not None and row.texts is not None:
            for name, t in row.texts.items():
                self.texts[name].append(t)
        self.extra.append(row.extra)
        self.any_extra = self.any_extra or bool(row.extra)
        self.size += row.size or CELL_BYTES * (len(row.values) + 1)

    def full(self, rows_per_chunk: int) -> bool:
        return len(self.lines) >= rows_per_chunk or self.size >= CHUNK_BYTES

    def flush(self) -> Chunk:
        chunk = Chunk(
            self.lines,
            {name: np.array(v, dtype=np.float64) for name, v in self.values.items()},
            self.extra if self.any_extra else [],
            self.texts,
        )
        self._reset()
        return chunk


def chunks(reader: Any, rows_per_chunk: int, on_error: str, summary: Summary) -> Iterator[Chunk]:
    """Chunks of good rows, each at most rows_per_chunk rows and about CHUNK_BYTES of text.
    A bad row ends the run (after the rows before it) or, with on_error="skip", is counted
    in `summary` and dropped."""
    pending = _Pending(reader)
    for row in reader.batches(rows_per_chunk):
        if isinstance(row, Bad):
            if on_error == "skip":
                summary.skipped.append(row)
                continue
            if pending.lines:
                yield pending.flush()
            raise BackpropError(f"{reader.what}, {reader.unit} {row.line}: {row.message}")
        if isinstance(row, Chunk):  # read at once: a chunk of its own
            if pending.lines:
                yield pending.flush()
            yield row
            continue
        pending.add(row)
        if pending.full(rows_per_chunk):
            yield pending.flush()
    if pending.lines:
        yield pending.flush()


def open_points(
    path: str,
    what: str,
    needed: list[str],
    fixed: Any,
    allow_nonfinite: bool = False,
    constants: Any = (),
    dtype: str = "float64",
) -> tuple[Any, Any]:
    """The reader of a points file (or stdin, '-') and the stream to close: Parquet and
    Arrow files by their first bytes, anything else as text (CSV, TSV or JSON lines)."""
    import os
    import sys

    from ..io.arrow import sniff
    from . import point_blocks

    try:
        raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        head, raw = _first_bytes(raw, 8)
        found = started = sniff(head)
        if found is not None:
            raw, whole = _footed(raw, found, head)
            found = found if whole else None
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None
    named = point_blocks.TABLE_EXTENSIONS.get(os.path.splitext(path)[1].lower())
    if found is None and named is not None and path != "-":
        raw.close()
        if started == named:
            raise BackpropError(
                f"{what}: not a readable {named} file (it starts as one but does not end as "
                "one: cut short?)"
            )
        kind = "a Parquet" if named == "parquet" else "an Arrow"
        raise BackpropError(f"{what} is not {kind} file (it does not start and end as one)")
    if found is None:  # text, read from the bytes already opened (a pipe cannot be reopened)
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        if path == "-":
            stream.close = lambda: None  # type: ignore[method-assign]  # leave stdin open
        try:
            reader = PointReader(stream, what, needed, fixed, allow_nonfinite, constants, dtype)
        except BaseException:
            stream.close()
            raise
        return reader, stream
    try:
        table = point_blocks.TableReader(
            raw, found, what, needed, fixed, allow_nonfinite, constants, dtype
        )
    except BaseException:
        if path != "-":
            raw.close()
        raise
    return table, raw if path != "-" else _Open()


def _first_bytes(raw: Any, count: int) -> tuple[bytes, Any]:
    """The first `count` bytes (fewer only at the end of the input), and a stream that still
    starts with them: the same file sought back, or the bytes put before the rest of a pipe."""
    from ..io.arrow import seekable

    if seekable(raw):
        at = raw.tell()
        head = raw.read(count)
        raw.seek(at)
        return head, raw
    head = raw.read(count)
    return head, io.BufferedReader(_Joined(head, raw))


def _footed(raw: Any, found: str, head: bytes) -> tuple[Any, bool]:
    """Whether a file that starts as Parquet or as an Arrow file also ends as one (a text
    file may start with PAR1); a pipe is held in memory to tell."""
    from ..io.arrow import ARROW_MAGIC, PARQUET_MAGIC, seekable

    magic = PARQUET_MAGIC if found == "parquet" else ARROW_MAGIC
    if found == "arrow" and not head.startswith(ARROW_MAGIC):
        return raw, True  # an Arrow stream: no text starts with its bytes
    if not seekable(raw):
        raw = io.BytesIO(raw.read())
    at = raw.tell()
    size = raw.seek(0, io.SEEK_END)
    raw.seek(max(at, size - len(magic)))
    ends = raw.read(len(magic)) == magic and size - at >= 2 * len(magic)
    raw.seek(at)
    return raw, ends


class _Joined(io.RawIOBase):
    """Bytes already read, then the rest of a stream that cannot go back."""

    def __init__(self, head: bytes, rest: Any) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(buffer)) if hasattr(self._rest, "read1") else b""
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:  # the stream underneath is its owner's to close
        super().close()


class _Open:
    """stdin: left open."""

    def close(self) -> None:
        pass


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
    JSON object per point: line, point, extra (the row's other columns, when it has any),
    value and gradient. Other columns are copied as written: a CSV cell as its text; a JSON
    value as its text in the input line (in CSV, a JSON string as the string itself)."""

    def __init__(self, kind: str, p: Plan, reader: PointReader) -> None:
        self.kind, self.p, self.reader = kind, p, reader
        self.sep = "\t" if kind == "tsv" else ","
        self.names: list[str] = []  # the file's columns, as of the header
        self.columns: list[str] = []  # the output's columns, once the header is made
        self.fixed_names = [n for n in sorted(p.fixed) if n not in reader.names]
        self._columns: set[str] = set()
        self._variables = set(reader.needed)
        self._variables_at: list[tuple[str, int]] = []
        self._special = re.compile(f'[{re.escape(self.sep)}"\\n\\r]')

    def header(self) -> str:
        # The columns are fixed here: a JSON key first seen later cannot be a CSV column, so
        # each of its values is counted and named in the reader's warnings (JSONL keeps it).
        self.names = self.reader.fix_columns()
        self._columns = set(self.names)
        self._variables_at = [(n, j) for j, n in enumerate(self.names) if n in self._variables]
        if self.kind == "jsonl":
            return ""
        p = self.p
        cols = list(self.names)
        for name in self.fixed_names:
            cols += _flat_names(name, p.cores[p.graph.variables[name]])
        cols += _flat_names("value", p.cores[p.graph.output])
        for name in p.wrt:
            cols += _flat_names(f"d_{name}", p.cores[p.graph.variables[name]])
        seen: set[str] = set()
        for col in cols:
            if col in seen:
                raise BackpropError(
                    f"the output would have two columns called {col!r}: rename that column, "
                    "or use --format jsonl"
                )
            seen.add(col)
        self.columns = cols
        if self.kind in TABLE_FORMATS:
            return ""
        return self.sep.join(map(self._quote, cols)) + "\n"

    def rows(self, chunk: Chunk, result: Result) -> Iterator[str | bytes]:
        """The chunk's rows as text, in pieces of about OUTPUT_PIECE characters (or at once
        for a chunk read at once)."""
        from . import point_rows

        n = len(chunk.lines)
        if self.kind == "jsonl":
            done = point_rows.jsonl_rows(self, chunk, result)
            if done is not None:
                yield done
                return
            if chunk.head is not None or chunk.cells is not None:
                point_rows.cells_of(self, chunk)
                point_rows.materialize(chunk)
            yield from _pieces(self._jsonl(chunk, result, n))
        else:
            done = point_rows.csv_rows(self, chunk, result)
            if done is not None:
                yield done
                return
            yield from _pieces(self._csv_rows(chunk, result, n))

    def _csv_rows(self, chunk: Chunk, result: Result, n: int) -> Iterator[str]:
        p, sep = self.p, self.sep
        numbers = _numbers(p.dtype)
        after: list[list[str]] = []  # the fixed values, value and gradient: one list a column
        for name in self.fixed_names:
            for v in _numbers("float64")(p.fixed[name].reshape(-1)):
                after.append([v] * n)
        for array in (result.value, *(result.grads[name] for name in p.wrt)):
            flat = np.asarray(array).reshape(n, -1)
            after += [numbers(flat[:, j]) for j in range(flat.shape[1])]
        tails = map(sep.join, zip(*after, strict=True))
        for head, tail in zip(self._file_cells(chunk, n), tails, strict=True):
            yield f"{head}{sep}{tail}"

    def _file_cells(self, chunk: Chunk, n: int) -> Iterator[str]:
        """Each row's cells of the file's columns, joined."""
        sep = self.sep
        variables: dict[str, list[str]] = {}
        for name in self.names:
            if chunk.texts is not None and name in chunk.texts:
                variables[name] = chunk.texts[name]  # as written: what the user gave
            elif name in chunk.columns:
                variables[name] = _numbers("float64")(chunk.columns[name])
        if not chunk.extra:  # no other cells in this chunk: the variables side by side
            empty = [""] * n
            yield from map(
                sep.join, zip(*(variables.get(c, empty) for c in self.names), strict=True)
            )
            return
        for k, extra in enumerate(chunk.extra):
            if isinstance(extra, _Cells):  # a CSV row: its own cells, in the header's order
                cells = [self._quote(c) for c in extra.cells]
                for name, j in self._variables_at:
                    cells[j] = variables[name][k]
            else:
                cells = self._json_cells(extra, variables, k, chunk.lines[k])
            yield sep.join(cells)

    def _json_cells(
        self, extra: Mapping[str, str], variables: dict[str, list[str]], k: int, line: int
    ) -> list[str]:
        late = [key for key in extra if key not in self._columns]
        if late:
            self.reader.unwritten.add(line, late)
        quote = self._quote
        return [
            variables[name][k] if name in variables else quote(_json_cell(extra.get(name)))
            for name in self.names
        ]

    def _quote(self, text: str) -> str:
        if self._special.search(text):
            return '"' + text.replace('"', '""') + '"'
        return text

    def _jsonl(self, chunk: Chunk, result: Result, n: int) -> Iterator[str]:
        p = self.p
        value = result.value.tolist()
        grads = {name: result.grads[name].tolist() for name in p.wrt}
        fixed = {name: _json_safe(p.fixed[name].tolist()) for name in self.fixed_names}
        cols = {name: chunk.columns[name].tolist() for name in chunk.columns}
        for k in range(n):
            point = {**{name: _json_safe(cols[name][k]) for name in cols}, **fixed}
            parts = [
                POINT_SCHEMA,
                f'"line": {chunk.lines[k]}',
                f'"point": {json.dumps(point, allow_nan=False)}',
            ]
            if chunk.extra and chunk.extra[k]:
                parts.append(f'"extra": {_extra_object(chunk.extra[k])}')
            parts.append(f'"value": {json.dumps(_json_safe(value[k]), allow_nan=False)}')
            gradient = {name: _json_safe(grads[name][k]) for name in p.wrt}
            parts.append(f'"gradient": {json.dumps(gradient, allow_nan=False)}')
            yield "{" + ", ".join(parts) + "}"  # as json.dumps spaces an object


TABLE_FORMATS = ("parquet", "arrow")  # written as record batches, not text


def _extra_object(extra: Mapping[str, str]) -> str:
    """A row's other columns as a JSON object: a CSV cell as a JSON string, a JSON value as
    the text it was written as (NaN, a 400-digit integer, 1.50 stay as they are)."""
    quote = _json_string
    if isinstance(extra, _Cells):
        return "{" + ", ".join(f"{quote(k)}: {quote(v)}" for k, v in extra.pairs()) + "}"
    return "{" + ", ".join(f"{quote(k)}: {v}" for k, v in extra.items()) + "}"


def _pieces(rows: Iterator[str]) -> Iterator[str]:
    """Rows joined into pieces of about OUTPUT_PIECE characters, each line ending with \\n."""
    piece: list[str] = []
    held = 0
    for row in rows:
        piece.append(row)
        held += len(row) + 1
        if held >= OUTPUT_PIECE:
            yield "\n".join(piece) + "\n"
            piece, held = [], 0
    if piece:
        yield "\n".join(piece) + "\n"


def _numbers(dtype: str) -> Any:
    """Column of numbers -> their shortest round-trip texts (nan, inf, -inf as such)."""
    if dtype == "float32":
        return lambda column: [str(v) for v in np.asarray(column, dtype=np.float32)]
    return lambda column: list(map(repr, np.asarray(column, dtype=np.float64).tolist()))


# ---- the whole run --------------------------------------------------------------------------


def run(
    p: Plan,
    reader: Any,
    kind: str,
    out: Any,
    on_error: str = "stop",
    check: Any = None,
) -> Summary:
    """Stream every point through the graph; `check(chunk, result, summary)` compares a
    chunk with an independent computation. Text goes to `out`; Parquet and Arrow files to
    its binary buffer."""
    summary = Summary()
    writer = Writer(kind, p, reader)
    table = None
    if kind in TABLE_FORMATS:
        from ..io.arrow import TableWriter
        from . import point_rows

        table = TableWriter(kind, _binary(out))
    wrote_header = False
    try:
        for chunk in chunks(reader, p.rows_per_chunk, on_error, summary):
            if not wrote_header:
                out.write(writer.header())
                wrote_header = True
            result = evaluate(p, chunk)
            _count_nonfinite(chunk, result, summary)
            if table is not None:
                table.write(writer.columns, point_rows.table_columns(writer, chunk, result))
            else:
                for piece in writer.rows(chunk, result):
                    _write(out, piece)
            summary.rows += len(chunk.lines)
            if check is not None:
                check(chunk, result, summary)
        if not wrote_header:
            out.write(writer.header())
    finally:
        if table is not None and writer.columns:  # the rows so far make a whole file
            extras = set(reader.extras)
            kinds = ["text" if n in extras else "number" for n in writer.columns]
            table.close(writer.columns, kinds)
    return summary


def _binary(out: Any) -> Any:
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        raise BackpropError("Parquet and Arrow files are written to a file or a pipe, not here")
    out.flush()
    return buffer


def _write(out: Any, piece: str | bytes) -> None:
    if isinstance(piece, str):
        out.write(piece)
        return
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(piece.decode("utf-8"))
        return
    out.flush()
    buffer.write(piece)


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
        self.rtol, self.atol = compare.TOLERANCES[p.dtype]["torch"]
        self.rechecked = 0
        self.about = ""
        self.unit = "line"  # or "row", for a Parquet or Arrow file

    def __call__(self, chunk: Chunk, result: Result, summary: Summary) -> None:
        p = self.p
        _, theirs, self.about = autograd.torch_batch(
            p.graph, result.env, p.cores, p.dtype, self.device, p.seed, p.wrt
        )
        n = len(chunk.lines)
        for name in p.wrt:
            mine = np.asarray(result.grads[name], dtype=np.float64).reshape(n, -1)
            other = np.asarray(theirs[name], dtype=np.float64).reshape(n, -1)
            verdict = compare.judge_many(mine, other, self.rtol, self.atol, 0.0)
            errors = compare.abs_errors(mine, other)
            summary.check_compared += mine.size
            for k in np.flatnonzero((verdict != "ok").any(axis=1)):
                state = self._alone(chunk, result, int(k), name, other[k])
                if state == "mismatch":
                    summary.check_mismatch_count += 1
                    if len(summary.check_mismatches) < SHOWN_BAD_ROWS:
                        where = f"{self.unit} {chunk.lines[int(k)]}"
                        summary.check_mismatches.append(f"{where} ({name})")
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
        verdicts = compare.judge_many(mine, theirs, self.rtol, self.atol, slack)
        if (verdicts == "mismatch").any():
            return "mismatch"
        return "inconclusive" if (verdicts == "inconclusive").any() else "ok"
