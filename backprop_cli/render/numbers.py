"""How numbers read in every human-facing display: N significant digits (`--digits`), round-off
noise hidden, `-0` shown as `0`. Machine formats (JSON, JSONL, CSV, TSV) never come here: they
carry every number in full.

The setting is a context variable so that a command sets it once (`with precision(n):`) and
every table, explanation, picture and training line it prints follows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

DEFAULT_DIGITS = 4  # a student sees 0.7311 and -0.105
FULL = 0  # --digits 0: the shortest text that reads back as the same number

_digits: ContextVar[int] = ContextVar("backprop_digits", default=DEFAULT_DIGITS)


def digits() -> int:
    """The current setting: significant digits, or FULL (0)."""
    return _digits.get()


@contextmanager
def precision(n: int | None) -> Iterator[None]:
    """Displays inside this block show `n` significant digits (None: leave the setting)."""
    if n is None:
        yield
        return
    token = _digits.set(n)
    try:
        yield
    finally:
        _digits.reset(token)


def full(x: float, dtype: str = "float64") -> str:
    """The shortest text that reads back as the same number in the engine's dtype."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = str(np.float32(x)) if dtype == "float32" else repr(float(x))
    return text[:-2] if text.endswith(".0") else text  # -0 stays: a machine format keeps it


def number(x: float, n: int | None = None, dtype: str = "float64") -> str:
    """`x` with `n` significant digits (default: the current setting; 0: in full).

    Plain decimals from 1e-4 to 1e6 (0.7311, -0.105, 12346), else scientific notation
    (1.235e-07); trailing zeros dropped; an integer-valued number below 1e15 reads as an
    integer; a number that rounds to zero, and -0, read as 0.
    """
    n = digits() if n is None else n
    x = float(x)
    if x == 0:
        return "0"  # and -0
    if n <= FULL or not math.isfinite(x):
        return full(x, dtype)
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    size = abs(x)
    if 1e-4 <= size < 1e6:
        decimals = max(0, n - 1 - math.floor(math.log10(size)))
        text = f"{x:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    else:
        mantissa, _, exponent = f"{x:.{n - 1}e}".partition("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        text = f"{mantissa}e{exponent}"
    return "0" if text in ("-0", "0") else text


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 operation', '2 operations', '1,234 epochs'."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


def number_any(x: object, dtype: str = "float64", items: int = 6) -> str:
    """`number` for a number, or a compact array (nested lists): every element when there
    are at most `items`, else the shape and the first and last elements
    ((10,) [0, 1, 2, …, 9]). None reads as '—'."""
    if x is None:
        return "—"
    if not isinstance(x, list):
        return number(float(x), dtype=dtype)  # type: ignore[arg-type]
    array = np.asarray(x, dtype=np.float64)
    text = _compact(array, lambda v: number(v, dtype=dtype), items)
    return text if array.size <= items else f"{tuple(array.shape)} {text}"


def _compact(array: np.ndarray, cell: Callable[[float], str], items: int) -> str:
    if array.ndim == 0:
        return cell(float(array))
    if array.size <= items:
        parts = [_compact(a, cell, items) for a in array]
    elif array.ndim == 1:
        head = max(1, items // 2)
        parts = [*(_compact(a, cell, items) for a in array[:head]), "…"]
        parts.append(_compact(array[-1], cell, items))
    else:
        parts = [_compact(array[0], cell, items), *(["…"] if array.shape[0] > 1 else [])]
    return "[" + ", ".join(parts) + "]"
