"""The fast path of `grad --points`: CSV read in blocks of whole lines parsed by Arrow and
checked column by column, Parquet and Arrow files read by record batch. A block the fast
path cannot vouch for goes line by line through the strict reader, which names the bad row.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import BackpropError
from ..io import arrow
from ..io.data import MAX_LINE_CHARS, lines
from .point_data import CELL_BYTES, FLOAT32_MAX, Bad, Chunk, Row, _Unwritten, nonzero_text

if TYPE_CHECKING:
    from typing import Protocol

    class PointReader(Protocol):  # points.PointReader, as read here
        what: str
        stream: Any
        next_line: int
        pending: tuple[int, str] | None
        names: list[str]
        needed: list[str]
        needed_set: set[str]
        delimiter: str
        allow_nonfinite: bool
        float32: bool

        @property
        def extras(self) -> list[str]: ...

        kind: str
        frozen: bool
        fixed: Any

        def one_row(self, line: int, text: str) -> Iterator[Row | Bad]: ...

        def known(self, name: str) -> bool: ...

        def keys_of(self, text: str) -> list[str]: ...

        def _new_key(self, line: int, name: str) -> None: ...


# The bytes of a purely numeric CSV block, besides the delimiter and the newline.
_NUMERIC = b"0123456789+-.eE"
# A nonzero number can only become 0 in float64 with an exponent of three digits or a run of
# hundreds of zeros; a block with neither is spared the cell-by-cell underflow check.
_TINY = re.compile(rb"[eE]-0*[1-9][0-9]{2}|0{200}")


FAST = True  # False: every line through the strict reader (the tests compare the two)
BLOCK_CHARS = 1 << 22  # characters read at a time (a block and its copies: ~20 MB)


def block_chars(chunk_bytes: int) -> int:
    """A block's size: BLOCK_CHARS, less where a chunk may hold less."""
    return max(64, min(BLOCK_CHARS, chunk_bytes // 4))


def text_items(reader: PointReader, size: int, chunk_bytes: int) -> Iterator[Chunk | Row | Bad]:
    """Every row after the header: whole blocks of lines as chunks (of at most `size` rows
    and about `chunk_bytes` held) where Arrow reads them and every cell passes the strict
    rules; the strict reader's rows and bad rows otherwise."""
    stream = reader.stream
    line = reader.next_line
    left = ""
    if reader.pending is not None:  # a first line that was already data (one bare column)
        line, text = reader.pending
        left = text + "\n"
        reader.pending = None
    while True:
        want = block_chars(chunk_bytes)
        got = _read(stream, want, reader.what)
        text = left + got
        if not text:
            return
        cut = text.rfind("\n") + 1
        if cut == 0 and len(got) >= want:  # no line break in a whole block: line by line
            yield from _strict_from(reader, _Prefixed(text, stream), line)
            return
        if cut == 0 or len(got) < want:  # the end: the last line may lack its newline
            left = ""
            if not text.endswith("\n"):
                text += "\n"
        else:
            left = text[cut:]
            text = text[:cut]
        count = yield from _block(reader, text, line, (size, chunk_bytes))
        line += count


def _read(stream: Any, size: int, what: str) -> str:
    try:
        return str(stream.read(size))
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None


def _block(
    reader: PointReader, text: str, line: int, size: tuple[int, int]
) -> Generator[Chunk | Row | Bad, None, int]:
    """One block of whole lines (ending in a newline) starting at `line`; returns how many
    lines it held."""
    if "\r" in text:
        if text.count("\r") != text.count("\r\n"):  # a lone CR ends a line: line by line
            return (yield from _strict_block(reader, text, line))
        text = text.replace("\r\n", "\n")
    count = text.count("\n")
    data = text.encode("utf-8")
    chunks = None
    if FAST and reader.kind == "jsonl":
        chunks = _json(reader, data, line, size)
    elif FAST:
        chunks = _numeric(reader, data, line, size) or _cells(reader, data, line, size)
    if chunks is None:
        yield from _strict_block(reader, text, line)
    else:
        yield from chunks
    return count


def _numeric(
    reader: PointReader, data: bytes, line: int, size: tuple[int, int]
) -> list[Chunk] | None:
    """A block of numbers only (no other columns, no spaces, quotes or blank lines): Arrow
    parses it straight to float64, and each row's text is its line as written."""
    if reader.extras or data.translate(None, _NUMERIC + reader.delimiter.encode() + b"\n"):
        return None
    if b"\n\n" in data or data.startswith(b"\n"):
        return None
    values = arrow.csv_numbers(data, reader.names, reader.delimiter)
    n = data.count(b"\n")
    if values is None or len(values[0]) != n:
        return None
    buffer = b"\n" + data
    ends = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
    if n and int(np.diff(ends).max()) - 1 > MAX_LINE_CHARS:
        return None
    if not _numbers_ok(reader, values, data):
        return None
    heads = arrow.lines(buffer, ends)
    at = {name: j for j, name in enumerate(reader.names)}
    columns = {name: values[at[name]] for name in reader.needed}  # the line reader's order
    return _split(reader, np.arange(line, line + n), columns, size, data, heads=heads)


def _numbers_ok(reader: PointReader, values: list[np.ndarray], data: bytes) -> bool:
    """Whether the parsed numbers keep the strict rules without a cell-by-cell look: all
    finite, within float32 with --dtype float32, and no nonzero cell that became 0."""
    zeros = False
    for v in values:
        if not np.isfinite(v).all():
            return False
        if reader.float32 and (np.abs(v) > FLOAT32_MAX).any():
            return False
        zeros = zeros or bool((v == 0).any())
        if reader.float32 and ((v != 0) & (v.astype(np.float32) == 0)).any():
            return False
    return not (zeros and _TINY.search(data))


def _cells(
    reader: PointReader, data: bytes, line: int, size: tuple[int, int]
) -> list[Chunk] | None:
    """A block without quotes: the variables' cells checked by the strict number pattern
    and converted column by column; each row's text is its line as written where nothing
    about it changes (no blank lines, no spaces around a variable's number), else every
    cell is kept as written."""
    if b'"' in data or b"\x00" in data:
        return None
    buffer = b"\n" + data
    ends = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
    length = np.diff(ends) - 1
    if len(length) and int(length.max()) > MAX_LINE_CHARS:
        return None
    kept = np.flatnonzero(length > 0)  # Arrow skips empty lines; blank ones are not rows
    variables = [n for n in reader.names if n in reader.needed_set]
    cells = arrow.csv_cells(data, reader.names, reader.delimiter, variables)
    if cells is None or len(kept) != len(cells[0]):
        return None
    columns: dict[str, np.ndarray] = {}
    stripped: dict[str, Any] = {}
    as_written = len(kept) == len(length)
    for name, column in zip(variables, cells, strict=True):
        found = arrow.strict_numbers(column, reader.allow_nonfinite)
        if found is None:
            return None
        values, texts = found
        if not _cell_numbers_ok(reader, values, texts):
            return None
        columns[name] = values
        stripped[name] = texts
        as_written = as_written and arrow.same(texts, column)
    ordered = {name: columns[name] for name in reader.needed}
    if as_written:
        heads = arrow.lines(buffer, ends)
        return _split(reader, line + kept, ordered, size, data, heads=heads)
    everything = arrow.csv_cells(data, reader.names, reader.delimiter)
    if everything is None:
        return None
    written = dict(zip(reader.names, everything, strict=True))
    written.update(stripped)
    return _split(reader, line + kept, ordered, size, data, cells=written)


# JSON lines whose members all come in one order, each value a number, a string or a literal
# (JSON's grammar; NaN and Infinity as the standard decoder reads them) are read by one
# pattern over the whole block; any other line sends its block to the line reader.
_JSON_NUMBER = r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'
_JSON_VALUE = rf"(?:{_JSON_STRING}|{_JSON_NUMBER}|true|false|null|NaN|-?Infinity)"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")
_SPACE = "[ \t]*"


def _json(reader: PointReader, data: bytes, line: int, size: tuple[int, int]) -> list[Chunk] | None:
    buffer = b"\n" + data
    ends = np.flatnonzero(np.frombuffer(buffer, dtype=np.uint8) == 10)
    length = np.diff(ends) - 1
    if not len(length) or int(length.max()) > MAX_LINE_CHARS:
        return None
    kept = np.flatnonzero(length > 0)
    if not len(kept):
        return None
    first = buffer[ends[kept[0]] + 1 : ends[kept[0] + 1]].decode("utf-8", "replace")
    try:
        keys = reader.keys_of(first)
    except Exception:  # any reason the line reader gives: it names it
        return None
    if not all(_PLAIN_KEY.fullmatch(k) for k in keys) or not reader.needed_set <= set(keys):
        return None
    if any(k in reader.fixed for k in keys if k not in reader.needed_set):
        return None
    new = [k for k in keys if not reader.known(k)]
    if new and reader.frozen:
        return None
    members = [
        f'"{k}"{_SPACE}:{_SPACE}(?P<m{j}>{_JSON_NUMBER if k in reader.needed_set else _JSON_VALUE})'
        for j, k in enumerate(keys)
    ]
    body = f"{_SPACE},{_SPACE}".join(members)
    pattern = f"^\\n{_SPACE}\\{{{_SPACE}{body}{_SPACE}\\}}{_SPACE}$"  # a line after its newline
    lines = arrow.lines(buffer, ends)
    if len(kept) != len(lines):
        lines = arrow.take(lines, kept)
    found = arrow.extract(lines, pattern, len(keys))
    if found is None:
        return None
    columns: dict[str, np.ndarray] = {}
    written: dict[str, Any] = {}
    for k, texts in zip(keys, found, strict=True):
        if k not in reader.needed_set:
            written[k] = texts
            continue
        values = arrow.numpy_of(arrow.as_number(texts))
        if not np.isfinite(values).all() or not _cell_numbers_ok(reader, values, texts):
            return None
        zero = values == 0
        if zero.any():  # a JSON integer is a Python int first: -0 is 0
            values = values.copy()
            values[zero & ~arrow.numpy_of(arrow.matches(texts, "[.eE]"))] = 0.0
        columns[k] = values
    first_line = line + int(kept[0])
    for k in new:
        reader._new_key(first_line, k)
    ordered = {name: columns[name] for name in reader.needed}
    return _split(reader, line + kept, ordered, size, data, cells=written, json=True)


def _cell_numbers_ok(reader: PointReader, values: np.ndarray, texts: Any) -> bool:
    words = ~np.isfinite(values)
    if words.any():  # nan and inf words are allowed here; 1e400 is not
        lowered = [str(t).lower().lstrip("+-") for t in arrow.where(texts, words).to_pylist()]
        if any(w not in ("nan", "inf", "infinity") for w in lowered):
            return False
    finite = values[~words]
    if reader.float32 and (np.abs(finite) > FLOAT32_MAX).any():
        return False
    zero = values == 0
    if reader.float32:
        zero |= (values != 0) & (values.astype(np.float32) == 0) & ~words
    if zero.any():
        for k in np.flatnonzero(zero):
            text = str(texts[int(k)].as_py())
            if nonzero_text(text):
                return False  # the strict reader counts it and names its line
    return True


def _split(
    reader: PointReader,
    where: np.ndarray,
    columns: dict[str, np.ndarray],
    size: tuple[int, int],
    data: bytes,
    heads: Any = None,
    cells: dict[str, Any] | None = None,
    json: bool = False,
) -> list[Chunk]:
    """The block's rows as chunks of at most `size` = (rows, bytes held) each."""
    n = len(where)
    per_row = len(data) / max(1, n) + CELL_BYTES * (len(reader.names) + 1)
    rows = max(1, min(size[0], int(size[1] // per_row)))
    found = []
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        found.append(
            Chunk(
                where[start:stop],
                {name: v[start:stop] for name, v in columns.items()},
                head=None if heads is None else heads.slice(start, stop - start),
                head_sep=reader.delimiter,
                cells=None
                if cells is None
                else {name: c.slice(start, stop - start) for name, c in cells.items()},
                cells_json=json,
            )
        )
    return found


def _strict_block(reader: PointReader, text: str, line: int) -> Generator[Row | Bad, None, int]:
    """A block's lines through the strict reader (lines end at LF, CR or CRLF, as read from
    the file); returns how many lines it held."""
    source = io.StringIO(text, newline="")
    count = 0
    for count, written in enumerate(iter(source.readline, ""), start=1):
        yield from reader.one_row(line + count - 1, written.rstrip("\r\n"))
    return count


def _strict_from(reader: PointReader, stream: Any, line: int) -> Iterator[Row | Bad]:
    for number, text in lines(stream, reader.what, start=line):
        yield from reader.one_row(number, text)


class _Prefixed:
    """Text already read, then the rest of the stream, read line by line."""

    def __init__(self, text: str, stream: Any) -> None:
        self._head = io.StringIO(text, newline="")
        self._stream = stream

    def readline(self, size: int = -1) -> str:
        part = self._head.readline(size)
        if part.endswith(("\n", "\r")) or (size >= 0 and len(part) >= size):
            return part
        return part + str(self._stream.readline(size - len(part) if size >= 0 else -1))


# ---- Parquet and Arrow files -----------------------------------------------------------------

TABLE_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow", ".feather": "arrow"}
TABLE_EXTENSIONS.update({".ipc": "arrow", ".arrows": "arrow"})


class TableReader:
    """The rows of a Parquet or Arrow IPC file: its columns are the points' columns, rows
    are numbered from 1, and a variable's column must hold numbers (or number texts)."""

    unit = "row"
    kind = "table"
    delimiter = ","
    frozen = True

    def __init__(
        self,
        stream: Any,
        format_name: str,
        what: str,
        needed: list[str],
        fixed: Any,
        allow_nonfinite: bool = False,
        constants: Any = (),
        dtype: str = "float64",
    ) -> None:
        self.what = what
        self.needed = needed
        self.needed_set = set(needed)
        self.fixed = fixed
        self.allow_nonfinite = allow_nonfinite
        self.float32 = dtype == "float32"
        self.format_name = format_name
        self._source = arrow.TableSource(stream, format_name, what, 65_536)
        self.names = self._source.names
        self.unwritten = _Unwritten()
        self.notes: list[str] = []
        self.underflows = 0
        self.first_underflow = 0
        self._check(constants)

    def _check(self, constants: Any) -> None:
        both = [n for n in self.names if n in self.fixed]
        if both:
            raise BackpropError(
                f"{both[0]} is given both as a column of {self.what} and as {both[0]}=VALUE: "
                "drop one"
            )
        missing = [n for n in self.needed if n not in self.names]
        if missing:
            raise BackpropError(
                f"{self.what} has no column for {', '.join(missing)}",
                hint=f"add the column, or give {missing[0]}=VALUE for every point",
            )
        if len(set(self.names)) != len(self.names):
            twice = next(n for n in self.names if self.names.count(n) > 1)
            raise BackpropError(f"{self.what}: column {twice!r} appears twice")
        schema = self._source.schema
        for name in self.needed:
            kind = arrow.column_kind(schema.field(name).type)
            if kind == "other":
                raise BackpropError(
                    f"{self.what}: column {name} holds {schema.field(name).type}, not numbers"
                )
        for name in self.names:
            if name in constants and name not in self.needed_set and name not in self.fixed:
                self.notes.append(
                    f"{self.what}: column '{name}' is not a variable ('{name}' is the "
                    "constant in the expression); it is passed through as data"
                )

    @property
    def extras(self) -> list[str]:
        return [n for n in self.names if n not in self.needed_set]

    def fix_columns(self) -> list[str]:
        return list(self.names)

    @property
    def warnings(self) -> list[str]:
        found = list(self.notes)
        if self.underflows:
            found.append(
                f"{self.what}: {self.underflows:,} nonzero value"
                f"{'s are' if self.underflows > 1 else ' is'} too small for "
                f"{'float32' if self.float32 else 'float64'} and "
                f"become{'' if self.underflows > 1 else 's'} 0 (the first in row "
                f"{self.first_underflow})"
            )
        return found

    def batches(self, size: int) -> Iterator[Chunk | Bad]:
        first = 1
        for batch in self._source:
            for start in range(0, batch.num_rows, size):
                part = batch.slice(start, size)
                n = part.num_rows
                where = np.arange(first, first + n)
                first += n
                cells = {name: part.column(name) for name in self.names}  # as written
                columns, problems = self._numbers(part, where, cells)
                bad = np.zeros(n, dtype=bool)
                for k in problems:
                    bad[k] = True
                if not bad.any():
                    yield Chunk(where, columns, cells=cells)
                    continue
                good = np.flatnonzero(~bad)
                head = good[good < min(problems)]
                if len(head):
                    yield self._take(Chunk, where, columns, cells, head)
                for k in sorted(problems):
                    yield Bad(int(where[k]), problems[k])
                rest = good[good > min(problems)]
                if len(rest):
                    yield self._take(Chunk, where, columns, cells, rest)

    @staticmethod
    def _take(
        make: Any,
        where: np.ndarray,
        columns: dict[str, np.ndarray],
        cells: dict[str, Any],
        rows: np.ndarray,
    ) -> Any:
        return make(
            where[rows],
            {n: v[rows] for n, v in columns.items()},
            cells={n: arrow.take(c, rows) for n, c in cells.items()},
        )

    def _numbers(
        self, part: Any, where: np.ndarray, cells: dict[str, Any]
    ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
        """Each variable's column as float64, and the problem of each bad row (a column of
        number texts is written back stripped, as a CSV cell is)."""
        problems: dict[int, str] = {}
        columns: dict[str, np.ndarray] = {}
        for name in self.needed:
            column = part.column(name)
            if arrow.column_kind(column.type) == "text":
                values, missing = self._texts(column, name, problems)
                cells[name] = arrow.stripped(column)
                for k in np.flatnonzero((values == 0) & ~missing):
                    written = str(cells[name][int(k)].as_py())
                    if int(k) not in problems and nonzero_text(written):
                        self._underflow(int(where[k]))
            else:
                values, missing = arrow.as_floats(column)
            for k in np.flatnonzero(missing):
                problems.setdefault(int(k), f"no value for {name}")
            with np.errstate(invalid="ignore"):
                nonfinite = ~np.isfinite(values) & ~missing
            if not self.allow_nonfinite:
                for k in np.flatnonzero(nonfinite):
                    problems.setdefault(
                        int(k),
                        f"{name}: {_shown(values[k])} is not a finite number "
                        "(pass --allow-nonfinite to give it)",
                    )
            if self.float32:
                with np.errstate(invalid="ignore", over="ignore"):
                    big = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)
                    big &= np.isinf(values.astype(np.float32))
                    tiny = (values != 0) & (values.astype(np.float32) == 0)
                for k in np.flatnonzero(big):
                    problems.setdefault(
                        int(k),
                        f"column {name}: {float(values[k])!r} overflows float32 (largest "
                        "3.4e+38; "
                        "use --dtype float64)",
                    )
                for k in np.flatnonzero(tiny):
                    self._underflow(int(where[k]))
            columns[name] = values
        return columns, problems

    def _underflow(self, row: int) -> None:
        self.underflows += 1
        if self.underflows == 1:
            self.first_underflow = row

    def _texts(
        self, column: Any, name: str, problems: dict[int, str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """A column of number texts, by the strict rules; a bad cell is its row's problem."""
        from ..io.data import number

        found = arrow.strict_numbers(arrow.text_column(column), self.allow_nonfinite)
        missing = arrow.numpy_of(column.is_null())
        if found is not None and not missing.any():
            values, _ = found
            if np.isfinite(values).all() or self.allow_nonfinite:
                return values, missing
        values = np.zeros(len(column), dtype=np.float64)
        for k, cell in enumerate(column.to_pylist()):
            if cell is None:
                continue
            try:
                values[k] = number(cell, f"column {name}", self.allow_nonfinite)
            except BackpropError as exc:
                problems.setdefault(k, exc.message)
        return values, missing


def _shown(value: float) -> str:
    if math.isnan(value):
        return "nan"
    return "inf" if value > 0 else "-inf"
