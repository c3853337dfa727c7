"""When two numbers agree: the tolerance table of every check (docs/checks.md documents it), and
judgements that allow for the engine's own rounding spread (engine.spread)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# (rtol, atol) per check and engine dtype: |a - b| <= atol + rtol * max(|a|, |b|).
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "float64": {"torch": (1e-7, 1e-9), "finite_difference": (1e-6, 1e-8), "symbolic": (1e-7, 1e-9)},
    "float32": {"torch": (1e-4, 1e-6), "finite_difference": (1e-3, 1e-5), "symbolic": (1e-3, 1e-5)},
}

EPS = float(np.finfo(np.float64).eps)
# Two numbers may differ by this many times the engine's rounding spread (engine.spread)...
SPREAD_SLACK = 4.0
# ... but an agreement that needs a slack above this fraction of the numbers says nothing.
SLACK_LIMIT = 0.1


def agree(a: float | None, b: float | None, rtol: float, atol: float) -> bool:
    """Agreement of two numbers.

    Two non-finite numbers agree: at a singular point (0/0, log 0, inf - inf) different but
    equivalent formulas reach nan or either infinity, and the engine's warning already names
    the node. A finite number never agrees with a non-finite one.
    """
    if a is None or b is None:
        return a is b
    if not (math.isfinite(a) and math.isfinite(b)):
        return not (math.isfinite(a) or math.isfinite(b))
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def judge(a: float | None, b: float | None, rtol: float, atol: float, slack: float) -> str:
    """'ok', 'mismatch', or 'inconclusive' where only a slack comparable to the numbers
    themselves (an ill-conditioned point) would make them agree."""
    if agree(a, b, rtol, atol):
        return "ok"
    if agree(a, b, rtol, atol + slack):
        scale = max(abs(a or 0.0), abs(b or 0.0))
        return "ok" if slack <= SLACK_LIMIT * scale else "inconclusive"
    return "mismatch"


def judge_many(a: Any, b: Any, rtol: float, atol: float, slack: Any) -> np.ndarray:
    """`judge` for every element of two arrays of one shape (slack may be an array too)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        finite = np.isfinite(a) & np.isfinite(b)
        both_not = ~np.isfinite(a) & ~np.isfinite(b)
        diff = np.abs(a - b)
        scale = np.maximum(np.abs(a), np.abs(b))
        close = finite & (diff <= atol + rtol * scale)
        near = finite & (diff <= atol + slack + rtol * scale)
        small_slack = slack <= SLACK_LIMIT * scale
    verdict = np.full(np.broadcast_shapes(a.shape, b.shape), "mismatch", dtype=object)
    verdict[near & ~small_slack] = "inconclusive"
    verdict[close | both_not | (near & small_slack)] = "ok"
    return verdict


def abs_errors(a: Any, b: Any) -> np.ndarray:
    """`abs_error` for every element of two arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(all="ignore"):
        both_not = ~np.isfinite(a) & ~np.isfinite(b)
        diff = np.where(np.isfinite(a) & np.isfinite(b), np.abs(a - b), np.inf)
    return np.asarray(np.where(both_not, 0.0, diff))


def abs_error(a: float | None, b: float | None) -> float:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if agree(a, b, 0.0, 0.0) else math.inf
    return abs(a - b)
