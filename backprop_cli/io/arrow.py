"""Apache Arrow for the points of `grad --points`: blocks of CSV parsed by Arrow's C++ reader,
Parquet and Arrow IPC files read and written record batch by record batch, and columns of
numbers turned into text at once. The only module that imports pyarrow (imported when used).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np

from ..core.errors import BackpropError

# The strict syntax of a number cell (as io.data.number): ASCII spaces or tabs around it.
NUMBER_CELL = r"^[ \t]*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[ \t]*$"
NONFINITE_CELL = r"(?i)^[ \t]*[+-]?(?:nan|inf|infinity)[ \t]*$"

PARQUET_MAGIC = b"PAR1"
ARROW_MAGIC = b"ARROW1"
STREAM_MAGIC = b"\xff\xff\xff\xff"  # an Arrow IPC stream's first message


def _pa() -> Any:
    import pyarrow

    return pyarrow


def _pc() -> Any:
    import pyarrow.compute

    return pyarrow.compute


# pyarrow's conversions of Python and numpy objects (pa.array, pa.scalar, to_numpy, and a
# Python str handed to a compute function) import pandas when it is installed, which costs
# more than a whole run of a small file: arrays and scalars are made from buffers instead.
_NUMPY_TYPES = {"float64": "float64", "float32": "float32", "int64": "int64", "int32": "int32"}


def arrow_of(values: np.ndarray) -> Any:
    """A numpy array of numbers or booleans as an Arrow array (zero-copy where it can)."""
    pa = _pa()
    x = np.ascontiguousarray(values).reshape(-1)
    if x.dtype == np.bool_:
        packed = np.packbits(x, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(x), [None, pa.py_buffer(packed)])
    name = _NUMPY_TYPES.get(x.dtype.name)
    if name is None:
        x, name = x.astype(np.float64), "float64"
    return pa.Array.from_buffers(getattr(pa, name)(), len(x), [None, pa.py_buffer(x)])


def numpy_of(values: Any) -> np.ndarray:
    """An Arrow array (or chunked array) without nulls as a numpy array."""
    pa = _pa()
    if hasattr(values, "combine_chunks"):
        values = values.combine_chunks()
    n, at = len(values), values.offset
    kind = values.type
    if n == 0:
        return np.zeros(0, dtype=np.bool_ if pa.types.is_boolean(kind) else np.float64)
    data = values.buffers()[1]
    if pa.types.is_boolean(kind):
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        return bits[at : at + n].astype(np.bool_)
    dtype = _PRIMITIVE.get(str(kind))
    if dtype is None:
        return numpy_of(_pc().cast(values, pa.float64()))
    return np.frombuffer(data, dtype=dtype, count=at + n)[at:]


_PRIMITIVE = {"double": np.float64, "float": np.float32, "halffloat": np.float16}
_PRIMITIVE.update({f"int{b}": getattr(np, f"int{b}") for b in (8, 16, 32, 64)})
_PRIMITIVE.update({f"uint{b}": getattr(np, f"uint{b}") for b in (8, 16, 32, 64)})


_TEXTS: dict[str, Any] = {}


def text(value: str) -> Any:
    """A string scalar for a compute function."""
    found = _TEXTS.get(value)
    if found is None:
        found = strings([value])[0]
        if len(_TEXTS) < 256:
            _TEXTS[value] = found
    return found


def strings(texts: Sequence[str | None]) -> Any:
    """Python strings (None: no value) as an Arrow string array."""
    pa = _pa()
    encoded = [b"" if t is None else t.encode("utf-8", "surrogatepass") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    validity = None
    if any(t is None for t in texts):
        valid = np.array([t is not None for t in texts], dtype=np.bool_)
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
    kind = pa.large_string() if offsets[-1] >= 1 << 31 else pa.string()
    if kind == pa.string():
        offsets = offsets.astype(np.int32)
    data = pa.py_buffer(b"".join(encoded))
    array = pa.Array.from_buffers(kind, len(encoded), [validity, pa.py_buffer(offsets), data])
    return array if kind == pa.string() else array.cast(pa.string())


def _scalars(args: Sequence[Any]) -> list[Any]:
    return [text(a) if isinstance(a, str) else a for a in args]


def sniff(head: bytes) -> str | None:
    """The binary format a file starts with (parquet or arrow), or None for text."""
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    if head.startswith(ARROW_MAGIC) or head.startswith(STREAM_MAGIC):
        return "arrow"
    return None


# ---- CSV blocks ------------------------------------------------------------------------------


def _csv_read(
    data: bytes, names: Sequence[str], delimiter: str, kind: Any, only: Sequence[str] | None = None
) -> Any:
    """A block of complete CSV lines (no header) as an Arrow table, or None where Arrow
    refuses it (a row of another width, a cell that is not of `kind`)."""
    import pyarrow.csv as pcsv

    pa = _pa()
    try:
        return pcsv.read_csv(
            pa.py_buffer(data),
            read_options=pcsv.ReadOptions(
                column_names=list(names), block_size=max(1 << 20, len(data) // 2 + 1)
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, quote_char=False, newlines_in_values=False
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={n: kind for n in names},
                include_columns=list(names if only is None else only),
                null_values=[],
                strings_can_be_null=False,
                check_utf8=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def csv_numbers(data: bytes, names: Sequence[str], delimiter: str) -> list[np.ndarray] | None:
    """A block of numeric CSV lines as one float64 array per column (Arrow's parser agrees
    with the strict number syntax on cells made of digits, signs, '.', 'e' and 'E' only,
    which the caller has made sure of), or None."""
    table = _csv_read(data, names, delimiter, _pa().float64())
    if table is None:
        return None
    return [numpy_of(table.column(j)) for j in range(len(names))]


def csv_cells(
    data: bytes, names: Sequence[str], delimiter: str, only: Sequence[str] | None = None
) -> list[Any] | None:
    """A block of CSV lines without quotes as one string array per column (or per column
    of `only`), each cell as written, or None."""
    table = _csv_read(data, names, delimiter, _pa().string(), only)
    if table is None:
        return None
    return [table.column(j).combine_chunks() for j in range(table.num_columns)]


def same(a: Any, b: Any) -> bool:
    """Whether two string arrays hold the same texts."""
    return bool(_pc().all(_pc().equal(a, b)).as_py())


def split_cells(heads: Any, sep: str, count: int) -> list[Any] | None:
    """Rows' texts (each starting with its newline) cut into `count` columns at `sep`, or
    None where some row has another number of cells."""
    pc = _pc()
    parts = pc.split_pattern(pc.utf8_slice_codeunits(heads, 1), sep)
    if not pc.all(pc.equal(pc.list_value_length(parts), _int(count))).as_py():
        return None
    return [pc.list_element(parts, _int(j)) for j in range(count)]


def _int(value: int) -> Any:
    """An int32 scalar for a compute function."""
    return arrow_of(np.array([value], dtype=np.int32))[0]


def strict_numbers(cells: Any, allow_nonfinite: bool) -> tuple[np.ndarray, Any] | None:
    """String cells as float64 under the strict number syntax, with the cells stripped of
    their spaces (as written back); None when some cell is not such a number (the strict
    reader then names it)."""
    pc = _pc()
    ok = pc.match_substring_regex(cells, NUMBER_CELL)
    words = None
    if not pc.all(ok).as_py():
        if not allow_nonfinite:
            return None
        words = pc.match_substring_regex(cells, NONFINITE_CELL)
        if not pc.all(pc.or_(ok, words)).as_py():
            return None
    texts = pc.utf8_trim(cells, characters=" \t")
    if words is None:
        return numpy_of(pc.cast(texts, _pa().float64())), texts
    lowered = pc.utf8_lower(texts)
    plain = pc.if_else(words, text("0"), texts)
    values = numpy_of(pc.cast(plain, _pa().float64())).copy()
    is_nan = numpy_of(pc.match_substring(lowered, "nan"))
    is_inf = numpy_of(words) & ~is_nan
    negative = numpy_of(pc.starts_with(texts, "-"))
    values[is_nan] = math.nan
    values[is_inf & ~negative] = math.inf
    values[is_inf & negative] = -math.inf
    return values, texts


def lines(data: bytes, ends: np.ndarray) -> Any:
    """The lines of `data` (a newline, then lines each ending in one; `ends` are the
    newlines' offsets), each as a string that starts with its newline, so that rows join
    without copying the block line by line."""
    pa = _pa()
    offsets = np.ascontiguousarray(ends, dtype=np.int32)
    return pa.StringArray.from_buffers(len(ends) - 1, pa.py_buffer(offsets), pa.py_buffer(data))


# ---- numbers as text -------------------------------------------------------------------------

_SMALL = 1e-4  # below this (and from 1e16) Python's repr writes an exponent
_LARGE = 1e16
# Arrow writes an exponent below about 1e-6 and from about 1e10: between these bounds (with
# room to spare) its text is positional, and only the numbers outside are looked at.
_POSITIONAL = (2e-6, 5e9)


def float_texts(values: np.ndarray, dtype: str = "float64") -> Any:
    """A column of numbers as Python writes them (`repr` of a float64, `str` of a float32:
    the shortest text that reads back to the same number; nan, inf, -inf), as an Arrow
    string array, made by Arrow's formatter and rewritten where its layout differs from
    Python's (exponent digits, where the exponent starts, a trailing '.0')."""
    pa, pc = _pa(), _pc()
    if dtype == "float32":  # numpy's own float32 layout: element by element
        return strings([str(v) for v in np.asarray(values, dtype=np.float32).reshape(-1)])
    x = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
    texts = pc.cast(arrow_of(x), pa.string())
    size = np.abs(x)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(x)
        want_exponent = finite & (x != 0) & ((size < _SMALL) | (size >= _LARGE))
        edge = finite & (x != 0) & ((size < _POSITIONAL[0]) | (size >= _POSITIONAL[1]))
    has_exponent = np.zeros(len(x), dtype=bool)
    if edge.any():
        has_exponent[edge] = numpy_of(pc.match_substring(texts.filter(arrow_of(edge)), "e"))
    fixes: list[tuple[np.ndarray, Any]] = []
    both = want_exponent & has_exponent  # Python writes two exponent digits: 1e-09
    if both.any():
        fixes.append((both, _two_digits(texts.filter(arrow_of(both)))))
    small = want_exponent & ~has_exponent & (size < _SMALL)  # 0.0000123 -> 1.23e-05
    if small.any():
        fixes.append((small, _to_exponent(texts.filter(arrow_of(small)))))
    other = (want_exponent != has_exponent) & ~small  # rare: element by element
    if other.any():
        fixes.append((other, strings([repr(v) for v in x[other].tolist()])))
    with np.errstate(invalid="ignore"):
        integral = finite & ~want_exponent & ~has_exponent & (x == np.trunc(x))  # 3 -> 3.0
    if integral.any():
        dotted = pc.binary_join_element_wise(texts.filter(arrow_of(integral)), text(".0"), text(""))
        fixes.append((integral, dotted))
    for mask, fixed in fixes:
        texts = pc.replace_with_mask(texts, arrow_of(mask), fixed)
    return texts


def float_texts_of(columns: Sequence[np.ndarray], dtype: str = "float64") -> list[Any]:
    """float_texts of several columns, side by side on the machine's cores (Arrow's
    formatter lets go of the interpreter while it works)."""
    if len(columns) < 2 or sum(len(c) for c in columns) < 1 << 16:
        return [float_texts(c, dtype) for c in columns]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(len(columns), _cores())) as pool:
        return list(pool.map(lambda c: float_texts(c, dtype), columns))


def _cores() -> int:
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def _two_digits(texts: Any) -> Any:
    return _pc().replace_substring_regex(texts, pattern=r"e([+-])([0-9])$", replacement=r"e\10\2")


def _to_exponent(texts: Any) -> Any:
    """'-0.000012' -> '-1.2e-05': positional texts below 1e-4 in Python's exponent layout."""
    pc = _pc()
    parts = pc.extract_regex(
        texts, r"^(?P<sign>-?)0\.(?P<zeros>0*)(?P<first>[1-9])(?P<rest>[0-9]*)$"
    )
    sign, zeros, first, rest = (parts.field(k) for k in ("sign", "zeros", "first", "rest"))
    exponent = pc.utf8_lpad(
        pc.cast(pc.add(pc.utf8_length(zeros), _int(1)), _pa().string()),
        width=2,
        padding="0",
    )
    dot = pc.binary_join_element_wise(text("."), rest, text(""))
    fraction = pc.if_else(pc.equal(rest, text("")), text(""), dot)
    return pc.binary_join_element_wise(sign, first, fraction, text("e-"), exponent, text(""))


def json_numbers(values: np.ndarray) -> Any:
    """A column of numbers as JSON (as json.dumps writes a float; nan and infinities as
    null)."""
    pc = _pc()
    texts = float_texts(values)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(np.asarray(values, dtype=np.float64).reshape(-1))
    if bad.any():
        texts = pc.if_else(arrow_of(bad), text("null"), texts)
    return texts


# ---- rows ------------------------------------------------------------------------------------


def text_column(values: Any) -> Any:
    """Any Arrow column as text, a cell per row: strings as they are, numbers as Python
    writes them, nested values as JSON, bytes as UTF-8 (bad bytes replaced); no value is an
    empty cell."""
    import json

    pa, pc = _pa(), _pc()
    if hasattr(values, "combine_chunks"):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    kind = values.type
    if pa.types.is_string(kind):
        texts = values
    elif pa.types.is_large_string(kind):
        texts = pc.cast(values, pa.string())
    elif pa.types.is_floating(kind):
        filled = pc.fill_null(pc.cast(values, pa.float64()), arrow_of(np.zeros(1))[0])
        texts = float_texts(numpy_of(filled), "float64")
        if values.null_count:
            texts = pc.replace_with_mask(texts, values.is_null(), strings([""] * values.null_count))
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        cells = values.to_pylist()
        texts = strings([None if v is None else v.decode("utf-8", "replace") for v in cells])
    elif pa.types.is_nested(kind):
        cells = values.to_pylist()
        texts = strings(
            [None if v is None else json.dumps(v, default=str, ensure_ascii=False) for v in cells]
        )
    else:
        try:
            texts = pc.cast(values, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            texts = strings([None if v is None else str(v) for v in values.to_pylist()])
    if texts.null_count:
        texts = pc.fill_null(texts, text(""))
    return texts


def needs_quotes(cells: Any, sep: str) -> Any:
    """Which cells a CSV row must quote: those holding the separator or a quote."""
    pc = _pc()
    return pc.or_(
        pc.match_substring(cells, sep),
        pc.or_(pc.match_substring(cells, '"'), pc.match_substring_regex(cells, "[\r\n]")),
    )


def quoted(cells: Any, sep: str) -> Any:
    """String cells, quoted (with their quotes doubled) where CSV needs it."""
    pc = _pc()
    need = needs_quotes(cells, sep)
    if not pc.any(need).as_py():
        return cells
    doubled = pc.replace_substring(cells, '"', '""')
    wrapped = pc.binary_join_element_wise(text('"'), doubled, text('"'), text(""))
    return pc.if_else(need, wrapped, cells)


def join_rows(columns: Sequence[Any], sep: str, lead: bool = True) -> bytes:
    """The rows made of `columns` (string arrays or scalars), cells joined by `sep`, each
    row preceded by a newline unless its first column already starts with one."""
    pa, pc = _pa(), _pc()
    cols = _scalars(columns)
    if lead:
        cols[0] = pc.binary_join_element_wise(text("\n"), cols[0], text(""))
    rows = pc.binary_join_element_wise(*cols, text(sep))
    if isinstance(rows, pa.ChunkedArray):
        rows = rows.combine_chunks()
    return _value_bytes(rows)


def _value_bytes(rows: Any) -> bytes:
    """The characters of a string array, one after another."""
    if len(rows) == 0:
        return b""
    _, offsets, data = rows.buffers()[:3]
    at = np.frombuffer(offsets, dtype=np.int32, count=len(rows) + 1 + rows.offset)
    start, end = int(at[rows.offset]), int(at[-1])
    return memoryview(data)[start:end].tobytes()


def extract(texts: Any, pattern: str, count: int) -> list[Any] | None:
    """The groups m0, m1, … of `pattern` in every text, a string array each, or None where
    some text does not match."""
    pc = _pc()
    parts = pc.extract_regex(texts, pattern)
    if parts.null_count:
        return None
    return [parts.field(f"m{j}") for j in range(count)]


def as_number(texts: Any) -> Any:
    return _pc().cast(texts, _pa().float64())


def json_cells(texts: Any) -> Any:
    """JSON values as written, as CSV cells: a string as its text, anything else as is."""
    pc = _pc()
    quoted_ = pc.starts_with(texts, '"')
    if not pc.any(quoted_).as_py():
        return texts
    if pc.any(pc.match_substring(texts, "\\")).as_py():
        import json

        cells = texts.to_pylist()
        return strings([str(json.loads(v)) if v.startswith('"') else v for v in cells])
    inner = pc.utf8_slice_codeunits(texts, 1, -1)
    return pc.if_else(quoted_, inner, texts)


def take(column: Any, rows: np.ndarray) -> Any:
    return column.take(arrow_of(np.asarray(rows, dtype=np.int64)))


def where(column: Any, mask: np.ndarray) -> Any:
    """The cells of a column where `mask` holds."""
    return column.filter(arrow_of(np.asarray(mask, dtype=np.bool_)))


def replace(texts: Any, old: str, new: str) -> Any:
    return _pc().replace_substring(texts, old, new)


def int_texts(values: np.ndarray) -> Any:
    pa = _pa()
    return _pc().cast(arrow_of(np.asarray(values, dtype=np.int64)), pa.string())


def is_text(column: Any) -> bool:
    pa = _pa()
    return bool(pa.types.is_string(column.type) or pa.types.is_large_string(column.type))


def any_match(column: Any, text: str) -> bool:
    return bool(_pc().any(_pc().match_substring(column, text)).as_py())


def matches(column: Any, pattern: str) -> Any:
    return _pc().match_substring_regex(column, pattern)


def all_match(column: Any, pattern: str) -> bool:
    return bool(_pc().all(_pc().match_substring_regex(column, pattern)).as_py())


def to_pylist(column: Any) -> list[Any]:
    return list(column.to_pylist())


def floats(values: np.ndarray) -> Any:
    return arrow_of(np.asarray(values))


# ---- Parquet and Arrow IPC -------------------------------------------------------------------


class TableSource:
    """The record batches of a Parquet or Arrow IPC file (or stream), with its schema. A
    Parquet file or an Arrow file (not stream) needs to be read at any place: from a pipe
    it is held in memory whole."""

    def __init__(self, stream: BinaryIO, kind: str, what: str, rows: int) -> None:
        import io

        pa = _pa()
        self.what = what
        try:
            if seekable(stream):
                at = stream.tell()
                head = stream.read(len(ARROW_MAGIC))
                stream.seek(at)
            else:
                head = stream.peek(len(ARROW_MAGIC)) if hasattr(stream, "peek") else b""
            stream_format = kind == "arrow" and not bytes(head).startswith(ARROW_MAGIC)
            if not stream_format and not seekable(stream):
                stream = io.BytesIO(stream.read())
            if kind == "parquet":
                import pyarrow.parquet as pq

                self._file = pq.ParquetFile(stream)
                self.schema = self._file.schema_arrow
                self._batches = self._file.iter_batches(batch_size=rows)
            else:
                import pyarrow.ipc as ipc

                if stream_format:
                    reader = ipc.open_stream(stream)
                    self.schema = reader.schema
                    self._batches = iter(reader)
                else:
                    whole = ipc.open_file(stream)
                    self.schema = whole.schema
                    count = whole.num_record_batches
                    self._batches = (whole.get_batch(i) for i in range(count))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise BackpropError(f"{what}: not a readable {kind} file ({_why(exc)})") from None
        self.names = list(self.schema.names)

    def __iter__(self) -> Iterator[Any]:
        pa = _pa()
        try:
            yield from self._batches
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise BackpropError(f"{self.what}: cannot read on ({_why(exc)})") from None


def seekable(stream: Any) -> bool:
    """Whether a stream can go back (a file can, a pipe cannot)."""
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def stripped(column: Any) -> Any:
    """Text cells without the spaces and tabs around them (as `string`)."""
    return _pc().utf8_trim(text_column(column), characters=" \t")


def column_kind(kind: Any) -> str:
    """number, text, or other: what a column of a Parquet/Arrow file holds."""
    pa = _pa()
    if pa.types.is_dictionary(kind):
        return column_kind(kind.value_type)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "text"
    return "other"


def as_floats(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """A numeric column as float64 and which of its rows are null."""
    pa, pc = _pa(), _pc()
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    missing = numpy_of(pc.is_null(column))
    zero = arrow_of(np.zeros(1))[0]
    filled = pc.fill_null(pc.cast(column, pa.float64(), safe=False), zero)
    return np.asarray(numpy_of(filled), dtype=np.float64), missing


class TableWriter:
    """Rows written as Parquet or as an Arrow IPC file, one record batch per chunk."""

    def __init__(self, kind: str, sink: BinaryIO) -> None:
        self.kind, self.sink = kind, sink
        self._writer: Any = None

    def write(self, names: Sequence[str], columns: Sequence[Any]) -> None:
        pa = _pa()
        table = pa.Table.from_arrays(list(columns), names=list(names))
        if self._writer is None:
            if self.kind == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(self.sink, table.schema)
            else:
                import pyarrow.ipc as ipc

                self._writer = ipc.new_file(self.sink, table.schema)
        self._writer.write_table(table)

    def close(self, names: Sequence[str], kinds: Sequence[str]) -> None:
        """Finish the file (a file with no rows still gets its columns)."""
        if self._writer is None:
            empty = [floats(np.zeros(0)) if k == "number" else strings([]) for k in kinds]
            self.write(names, empty)
        self._writer.close()
