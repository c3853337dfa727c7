"""The plain data of `grad --points`: rows, bad rows, chunks of rows and the run's summary,
shared by the line reader (points), the block reader (point_blocks) and the column writer
(point_rows)."""

from __future__ import annotations

import json
import math
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

CELL_BYTES = 64  # what a cell costs beyond its characters: a Python string and its slot
SHOWN_BAD_ROWS = 10  # skipped rows named one by one; the rest are counted
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Each JSON line's first key: its schema (backprop_cli/schemas/grad-point.json).
POINT_SCHEMA = '"schema": "backprop-cli/grad-point/1"'

_NO_EXTRA: Mapping[str, str] = types.MappingProxyType({})


@dataclass
class Bad:
    line: int
    message: str


@dataclass
class Chunk:
    lines: Any  # the source line (row) of each row: a list, or an array for a chunk read at once
    columns: dict[str, np.ndarray]  # variable -> one value per row
    # Per row, its columns that are not variables, as written (CSV cells, or JSON texts);
    # empty when no row of the chunk has any.
    extra: list[Mapping[str, str]] = field(default_factory=list)
    texts: dict[str, list[str]] | None = None  # the variables' cells as written (CSV)
    # Read at once (point_blocks): each row's line as written, starting with its newline
    # (a numeric CSV block; cells joined by head_sep), or every file column as an Arrow
    # array (the variables' cells as written, stripped; a Parquet file's own columns).
    head: Any = None
    head_sep: str = ","
    cells: dict[str, Any] | None = None
    cells_json: bool = False  # the cells of other columns are JSON texts as written


@dataclass
class Row:
    line: int
    values: dict[str, float]  # variable -> value
    extra: Mapping[str, str]  # the other columns, as written
    texts: dict[str, str] | None = None  # the variables' cells as written (CSV)
    size: int = 0  # about the bytes the row holds, for the chunk's bound


class BadRows:
    """The rows skipped: `len` is how many, the items are the first SHOWN_BAD_ROWS of them
    (a file of millions of bad rows is counted, not kept)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[Bad] = []

    def append(self, bad: Bad) -> None:
        self.count += 1
        if len(self.first) < SHOWN_BAD_ROWS:
            self.first.append(bad)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Bad]:
        return iter(self.first)

    @overload
    def __getitem__(self, index: int) -> Bad: ...

    @overload
    def __getitem__(self, index: slice) -> list[Bad]: ...

    def __getitem__(self, index: int | slice) -> Bad | list[Bad]:
        return self.first[index]


@dataclass
class Summary:
    rows: int = 0
    skipped: BadRows = field(default_factory=BadRows)
    nonfinite: int = 0  # rows whose value or gradient is nan or infinite
    nonfinite_lines: list[int] = field(default_factory=list)
    check_compared: int = 0
    check_max_error: float = 0.0
    check_mismatches: list[str] = field(default_factory=list)  # the first few
    check_mismatch_count: int = 0
    check_inconclusive: int = 0
    warnings: list[str] = field(default_factory=list)


class _Cells(Mapping[str, str]):
    """A CSV row's pass-through cells by column name, through one index shared by every row:
    a dict per row would cost about 100 bytes a cell on a file of 100,000 columns."""

    __slots__ = ("_index", "cells")

    def __init__(self, index: dict[str, int], cells: list[str]) -> None:
        self._index = index  # column name -> position in the row
        self.cells = cells  # every cell of the row, the variables' included

    def __getitem__(self, name: str) -> str:
        return self.cells[self._index[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def pairs(self) -> Iterator[tuple[str, str]]:
        cells = self.cells
        for name, j in self._index.items():
            yield name, cells[j]


class _Unwritten:
    """JSON keys first seen after the CSV header was written, which the CSV cannot hold: the
    first few named with their line, every value counted."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}  # key -> the line it was first left out on
        self.values = 0

    def add(self, line: int, keys: list[str]) -> None:
        self.values += len(keys)
        for key in keys:
            if key not in self.first and len(self.first) < SHOWN_BAD_ROWS:
                self.first[key] = line

    def message(self, what: str) -> str | None:
        if not self.values:
            return None
        count = f"{self.values:,} value{'s' if self.values > 1 else ''} left out"
        keep = "--format jsonl keeps every key"
        if len(self.first) == 1:
            ((key, line),) = self.first.items()
            return (
                f"{what}, line {line}: key {_shown(key)} first appears after the CSV header "
                f"was written, so it is not a column of the output ({count}); {keep}"
            )
        named = ", ".join(f"{_shown(k)} (line {n})" for k, n in self.first.items())
        return (
            f"{what}: keys first seen after the CSV header was written are not columns of "
            f"the output: {named}{', …' if len(self.first) >= SHOWN_BAD_ROWS else ''} "
            f"({count}); {keep}"
        )


def _shown(key: str) -> str:
    return repr(key) if len(key) <= 40 else repr(key[:39]) + "…"


def _json_cell(written: str | None) -> str:
    """A JSON value as a CSV cell: a string as its text, anything else as written."""
    if written is None:
        return ""
    return str(json.loads(written)) if written.startswith('"') else written


def _json_safe(x: Any) -> Any:
    """A value for json.dumps: nan and infinities as null."""
    if isinstance(x, list):
        return [_json_safe(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def nonzero_text(text: str) -> bool:
    """A number written with a nonzero digit before its exponent (1e-400, not 0.0e5)."""
    return any(c in "123456789" for c in text.strip().lower().partition("e")[0])
