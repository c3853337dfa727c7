"""Training data: comma-separated lists (--x/--y) or a CSV file or stdin with a header row.

Every bad input (a ragged row, a non-number, an empty file, a missing target column) is a
BackpropError that names the line; numbers follow the strict pattern of the expression
language (ASCII, no '_' separators, no nan/inf).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import ops
from ..core.errors import BackpropError, LimitError

# The PyTorch course's data (lesson 3 of Liu Er's course): y = 2x.
COURSE_X = (1.0, 2.0, 3.0)
COURSE_Y = (2.0, 4.0, 6.0)

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*", re.ASCII)
MAX_LINE_CHARS = 1_000_000  # one row; a longer line is a bad row, not a memory blow-up


@dataclass(frozen=True)
class Dataset:
    features: dict[str, np.ndarray]  # column name -> values, in file order
    target_name: str
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.target)

    @property
    def names(self) -> list[str]:
        return list(self.features)


_NONFINITE = {"nan": math.nan, "inf": math.inf, "infinity": math.inf}


def number(text: str, where: str, allow_nonfinite: bool | None = None) -> float:
    """One number, strictly: what a user sees is what the engine gets. nan, inf, -inf and
    infinity (any case) only where allowed (True: --allow-nonfinite was given; False: the
    command has that option; None: it has not)."""
    stripped = text.strip(" \t")  # not a no-break space or a separator control: not ours
    word = stripped[1:] if stripped[:1] in "+-" else stripped
    if word.lower() in _NONFINITE:
        if not allow_nonfinite:
            offer = " (pass --allow-nonfinite to give it)" if allow_nonfinite is False else ""
            raise BackpropError(f"{where}: {stripped} is not a finite number{offer}")
        word = word.lower()
        return -_NONFINITE[word] if stripped.startswith("-") else _NONFINITE[word]
    if not _NUMBER.fullmatch(stripped):
        shown = stripped if len(stripped) <= 40 else stripped[:39] + "…"
        raise BackpropError(f"{where}: {shown!r} is not a number")
    value = float(stripped)
    if value in (float("inf"), float("-inf")):
        raise BackpropError(f"{where}: {stripped} is too large for float64")
    return value


# Training data is held as float64 columns: the budget is in numbers (rows × columns), so
# 10,000,000 of them hold 80 MB, about twice that while the columns are put together.
MAX_DATA_VALUES = 10_000_000
DATA_OPTION = "--max-data"


def from_lists(
    x_text: str | None, y_text: str | None, *, max_values: int = MAX_DATA_VALUES
) -> Dataset:
    """--x 1,2,3 --y 2,4,6 (the course's data where both are absent)."""
    if x_text is None and y_text is None:
        return Dataset({"x": np.array(COURSE_X)}, "y", np.array(COURSE_Y))
    if x_text is None or y_text is None:
        raise BackpropError("give both --x and --y, or neither (the PyTorch course's data)")
    # Counted from the commas before any item is read: the lists are refused whole.
    rows = max(x_text.count(","), y_text.count(",")) + 1
    if 2 * rows > max_values:
        raise LimitError(
            f"--x/--y: {rows:,} rows × 2 columns is more than {max_values:,} data values; "
            f"raise the limit with {DATA_OPTION}"
        )
    xs = [number(t, f"--x item {i + 1}") for i, t in enumerate(x_text.split(","))]
    ys = [number(t, f"--y item {i + 1}") for i, t in enumerate(y_text.split(","))]
    if len(xs) != len(ys):
        raise BackpropError(f"--x has {len(xs)} values but --y has {len(ys)}")
    return Dataset({"x": np.array(xs)}, "y", np.array(ys))


def load(
    x_text: str | None,
    y_text: str | None,
    path: str | None,
    target: str,
    *,
    max_values: int = MAX_DATA_VALUES,
) -> tuple[Dataset, str]:
    """`train`'s data: --data FILE or stdin ('-'), or --x/--y, with a note for its header
    line (where the data came from)."""
    if path is None:
        if target != "y":
            raise BackpropError("--target names a column of --data")
        dataset = from_lists(x_text, y_text, max_values=max_values)
        return dataset, (" (the PyTorch course's data: y = 2x)" if x_text is None else "")
    if x_text is not None or y_text is not None:
        raise BackpropError("give --data or --x/--y, not both")
    from ..core.errors import visible
    from .files import open_text

    what = "stdin" if path == "-" else path
    stream = open_text(path, what)
    try:
        dataset = from_csv(lines(stream, what), what, target, max_values=max_values)
    finally:
        stream.close()
    return dataset, f" from {visible(what)}"


MAX_SKIPPED_CHARS = 1 << 32  # an endless line (/dev/zero) stops here, even with skip


def lines(stream: Any, what: str = "input", start: int = 1) -> Iterator[tuple[int, str]]:
    """(line number, text without its newline), a byte-order mark at the start dropped. A
    line longer than MAX_LINE_CHARS is never held whole: its first part stands for it (and
    is then refused as too long); the rest is skipped only when the next line is asked for,
    so a reader that stops at it is not kept reading an endless line (/dev/zero). Lines
    are numbered from `start`."""
    number_of_line = start - 1
    while True:
        text = _read(stream, MAX_LINE_CHARS + 1, what)
        if not text:
            return
        number_of_line += 1
        too_long = len(text) > MAX_LINE_CHARS and not text.endswith(("\n", "\r"))
        if number_of_line == start == 1 and text.startswith("\ufeff") and not too_long:
            text = text[1:]
        yield number_of_line, text.rstrip("\r\n")
        skipped = len(text)
        while too_long:  # skip the rest of the long line
            more = _read(stream, MAX_LINE_CHARS, what)
            too_long = bool(more) and not more.endswith(("\n", "\r"))
            skipped += len(more)
            if too_long and skipped > MAX_SKIPPED_CHARS:
                raise LimitError(
                    f"{what}, line {number_of_line}: more than {MAX_SKIPPED_CHARS:,} characters "
                    "without a line break: stopping"
                )


def _read(stream: Any, size: int, what: str) -> str:
    try:
        return str(stream.readline(size))
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None


def from_csv(
    source: Iterator[tuple[int, str]],
    what: str,
    target: str,
    *,
    max_values: int = MAX_DATA_VALUES,
) -> Dataset:
    """A CSV with a header naming the columns; `target` is the column to predict. `source`
    gives (line number, text) as `lines` does: a line over MAX_LINE_CHARS is refused
    without being held. Rows go into float64 blocks as they are read, and reading stops at
    the row that takes the data past `max_values` numbers (rows × columns)."""
    rows = _csv_rows(source, what)
    first = next(rows, None)
    if first is None:
        raise BackpropError(f"{what} is empty: expected a header row and data rows")
    names = _header(first[0], first[2], what, target)
    blocks, count = _read_rows(rows, names, what, max_values)
    if count == 0:
        raise BackpropError(f"{what} has a header but no data rows")
    # Column by column, so the blocks and the finished columns are held together only once.
    columns = {name: np.concatenate([b[:, j] for b in blocks]) for j, name in enumerate(names)}
    del blocks
    y = columns.pop(target)
    if not columns:
        raise BackpropError(f"{what} has only the target column {target!r}: no inputs")
    return Dataset(columns, target, y)


def _csv_rows(source: Iterator[tuple[int, str]], what: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, text, cells) of every row that is not blank."""
    for number_of_line, text in source:
        if len(text) > MAX_LINE_CHARS:
            raise LimitError(
                f"{what}, line {number_of_line}: longer than {MAX_LINE_CHARS:,} characters"
            )
        if '"' not in text:  # only quoting needs the csv module; splitting is the same otherwise
            if text.replace(",", "").strip():  # not blank: some cell holds more than spaces
                yield number_of_line, text, text.split(",")
            continue
        try:
            row = next(csv.reader([text]), [])
        except csv.Error as exc:
            raise BackpropError(f"{what}, line {number_of_line}: not a CSV row ({exc})") from None
        if row and any(cell.strip() for cell in row):
            yield number_of_line, text, row


def _header(header_line: int, header: list[str], what: str, target: str) -> list[str]:
    names = [cell.strip() for cell in header]
    for name in names:
        if not _NAME.fullmatch(name):
            raise BackpropError(
                f"{what}, line {header_line}: column name {name!r} is not a valid variable "
                "name (ASCII letters, digits and '_', starting with a letter)"
            )
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BackpropError(f"{what}, line {header_line}: column {dup!r} appears twice")
    if target not in names:
        raise BackpropError(
            f"{what} has no target column {target!r} (columns: {', '.join(names)})",
            hint="choose one with --target",
        )
    return names


BLOCK_VALUES = 1 << 16  # numbers per block of rows: small enough that a part-full one is cheap

# A row of plain numbers, none with more than two exponent digits, in at most 200 characters:
# no number in it can overflow (at most 10**200 × 10**99), so one match checks the whole
# row and numpy reads the cells (as float() does) without a check per cell.
_PLAIN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})?"
_PLAIN_ROW = re.compile(rf"{_PLAIN}(?:,{_PLAIN})*", re.ASCII)
PLAIN_ROW_CHARS = 200


def _read_rows(
    rows: Iterator[tuple[int, str, list[str]]], names: list[str], what: str, max_values: int
) -> tuple[list[np.ndarray], int]:
    """The data rows as float64 blocks (the last one cut to the rows it holds), and the
    number of rows."""
    width = len(names)
    per_block = max(1, BLOCK_VALUES // width)
    blocks: list[np.ndarray] = []
    block = np.empty((0, width))
    count = used = 0
    for line, text, row in rows:
        if len(row) != width:
            raise BackpropError(
                f"{what}, line {line}: {len(row)} fields, but the header has {width}"
            )
        if (count + 1) * width > max_values:
            raise LimitError(
                f"{what}, line {line}: more than {max_values:,} data values "
                f"({count + 1:,} rows × {width:,} columns); raise the limit with {DATA_OPTION}"
            )
        if used == len(block):
            block = np.empty((per_block, width))
            blocks.append(block)
            used = 0
        if len(text) <= PLAIN_ROW_CHARS and _PLAIN_ROW.fullmatch(text):
            block[used] = row
        else:
            block[used] = [_cell(cell, what, line, names[j]) for j, cell in enumerate(row)]
        used += 1
        count += 1
    if blocks:
        blocks[-1] = blocks[-1][:used]
    return blocks, count


def _cell(text: str, what: str, line: int, column: str) -> float:
    """One cell as `number` reads it; a plain number skips building the message that only
    an error needs."""
    if _NUMBER.fullmatch(text):
        value = float(text)
        if value not in (math.inf, -math.inf):
            return value
    return number(text, f"{what}, line {line}, column {column!r}")


MAX_VALUE_ELEMENTS = 10_000_000  # as parse.Limits.max_elements


def read_values(path: str, what: str, allow_nonfinite: bool = False) -> dict[str, Any]:
    """A JSON object name -> number or nested list of numbers (an array), as `backprop train
    --save` writes it. Every number is read as a float64 (a 5,000-digit integer is inf, not
    a Python integer); duplicate names are an error."""
    import json

    try:
        with open(path, "rb") as f:
            raw = f.read(100_000_001)
    except OSError as exc:
        raise BackpropError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > 100_000_000:
        raise BackpropError(f"{what} {path} is larger than 100 MB")
    # Every number but the last is followed by a comma: more commas than a value may hold
    # elements is refused before json builds a Python object for each number.
    if raw.count(b",") > MAX_VALUE_ELEMENTS + 10_000:
        raise LimitError(
            f"{what} {path} holds more than {MAX_VALUE_ELEMENTS:,} numbers, more than the "
            "values of one command may hold"
        )
    try:
        obj = json.loads(raw.decode("utf-8-sig"), parse_int=json_int, object_pairs_hook=unique_keys)
    except ValueError as exc:
        if isinstance(exc, DuplicateKey):
            raise BackpropError(f"{what} {path}: {exc}") from None
        if not isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError)):
            raise

        raise BackpropError(f"{what} {path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise BackpropError(f"{what} {path} nests too deeply") from None
    if isinstance(obj, dict) and isinstance(obj.get("params"), dict):
        obj = obj["params"]  # a whole result object: take its parameters
    if not isinstance(obj, dict):
        raise BackpropError(f"{what} {path} must hold a JSON object of name: number or array")
    values: dict[str, Any] = {}
    for name, value in obj.items():
        if not _NAME.fullmatch(str(name)):
            raise BackpropError(f"{what} {path}: {name!r} is not a valid variable name")
        where = f"{what} {path}: the value of {name!r}"
        values[str(name)] = json_value(value, where, allow_nonfinite)
    return values


def json_int(text: str) -> int | float:
    """A JSON integer: exact while Python converts it at once, a float64 (inf) beyond, so a
    5,000-digit number is an overflow to report, not a conversion error."""
    return int(text) if len(text) <= 300 else float(text)


class DuplicateKey(ValueError):
    pass


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKey(f"{key!r} is given twice")
        found[key] = value
    return found


def json_value(value: Any, where: str, allow_nonfinite: bool = False) -> Any:
    """A JSON number, or a rectangular nested list of numbers as a read-only array."""
    stack = [value]
    count = 0
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            if not item:
                raise BackpropError(f"{where} holds an empty list")
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, (int, float)):
            raise BackpropError(f"{where} is not a number or a nested list of numbers")
        else:
            count += 1
            if count > MAX_VALUE_ELEMENTS:
                raise LimitError(f"{where} has more than {MAX_VALUE_ELEMENTS:,} elements")
    depth, first = 0, value
    while isinstance(first, list):
        depth, first = depth + 1, first[0]
    if depth > ops.MAX_DIMS:
        raise BackpropError(f"{where} has more than {ops.MAX_DIMS} dimensions")
    try:
        array = np.array(value, dtype=np.float64)
    except OverflowError:
        raise BackpropError(f"{where} is not finite (too large for float64)") from None
    except ValueError:
        raise BackpropError(f"{where} is not a rectangular array (ragged nested lists)") from None
    if array.size > MAX_VALUE_ELEMENTS:
        raise LimitError(f"{where} has more than {MAX_VALUE_ELEMENTS:,} elements")
    if not allow_nonfinite and not np.isfinite(array).all():
        raise BackpropError(
            f"{where} is not finite (nan, or too large for float64)",
            hint="pass --allow-nonfinite to give nan or inf as a value",
        )
    if array.ndim == 0:
        return float(array)
    array.flags.writeable = False
    return array
