"""`backprop check`: the gradient checked at many points (random, or given), engine against
torch autograd, finite differences and SymPy, with the worst point reported.

Each point gets the single-point report's full comparison (every node's value and gradient
against torch, finite differences with their error estimates, kinks and conventions as
such); SymPy differentiates once, in one bounded child, and evaluates its partials exactly
at every point while the numeric checks run.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import compare
from ..checks.sandbox import Bounded
from ..core import shapes
from ..core.errors import BackpropError, LimitError
from ..core.parse import Program
from . import points
from .gradient import (
    FD_EVALUATIONS_PER_ELEMENT,
    MAX_SYMBOLIC_ELEMENTS,
    Options,
    _plain,
    _Symbolic,
    checked_elements,
    gradient_report,
)
from .point import check_point, resolve_wrt

CHECKS = ("torch", "finite_difference", "symbolic")
MAX_POINTS = 100_000
SAMPLING_ROUNDS = 50  # draws of `samples` candidates to find points inside the domain
SHOWN_MISMATCHES = 20

# A check is refused before it starts when its points would take longer than this, by the
# estimate below: each point gets the full single-point comparison, a few milliseconds for
# a small graph, so --samples 100000 would otherwise run for minutes without a word. One
# point is always allowed (it costs what `backprop grad` costs).
MAX_CHECK_SECONDS = 60.0
# What one point costs, measured on one core: fixed, per graph node, per node-element
# evaluation of finite differences, per array element held; and what torch adds.
POINT_SECONDS = 2e-3
NODE_SECONDS = 1.5e-4
FD_ELEMENT_SECONDS = 1.2e-9
ELEMENT_SECONDS = 1e-8
TORCH_POINT_SECONDS = 2.5e-3
TORCH_NODE_SECONDS = 6e-5
TORCH_ELEMENT_SECONDS = 1.2e-6


@dataclass
class Settings:
    samples: int = 100
    seed: int = 0
    low: float = -3.0
    high: float = 3.0
    given: list[dict[str, float]] | None = None  # points to check instead of random ones
    source: str = "random"
    wrt: list[str] | None = None
    dtype: str = "float64"
    torch: bool = True
    device: str = "cpu"
    symbolic: bool = True
    symbolic_timeout: float = 20.0
    max_seconds: float = MAX_CHECK_SECONDS  # the estimated time a check may take


class GivenPoints(list[dict[str, float]]):
    """The points of a file, with the reader's warnings about it (a column named like a
    constant the expression uses, cells too small for float64) for the report."""

    def __init__(self, found: list[dict[str, float]], warnings: list[str]) -> None:
        super().__init__(found)
        self.warnings = warnings


@dataclass
class _Tally:
    compared: int = 0
    agree: int = 0
    mismatch: int = 0
    other: dict[str, int] = field(default_factory=dict)  # kink, convention, inconclusive, …
    max_error: float = 0.0
    worst: dict[str, Any] | None = None
    worst_ratio: float = -1.0
    skipped: str | None = None


def sample(
    program: Program, fixed: dict[str, Any], varying: list[str], s: Settings
) -> tuple[list[dict[str, Any]], int]:
    """`s.samples` points drawn uniformly in [low, high] for each varying variable, kept
    where the value and the gradient are finite (inside the function's domain); also how
    many draws were outside it."""
    graph = program.graph
    rng = np.random.default_rng(s.seed)
    try:
        plan = points.plan(graph, fixed, varying, list(graph.variables), s.dtype, 1.0)
    except BackpropError as exc:
        if not varying:
            raise
        raise BackpropError(
            f"{exc.message.splitlines()[0]}; the variables without a value "
            f"({', '.join(varying)}) are drawn as numbers",
            hint="give array variables as NAME=VALUE (W=[[1, 2], [3, 4]])",
        ) from None
    if plan.cores[graph.output]:
        raise BackpropError(
            "backprop check needs a scalar output",
            hint="reduce it with sum(...) or mean(...)",
        )
    if not varying:
        return [dict(fixed)], 0
    refuse_long_checks(graph, plan.cores, s.samples, resolve_wrt(graph, s.wrt), s)
    found: list[dict[str, Any]] = []
    outside = 0
    for _ in range(SAMPLING_ROUNDS):
        n = s.samples - len(found)
        draws = {name: rng.uniform(s.low, s.high, size=n) for name in varying}
        good = _inside(plan, draws, n)
        outside += int((~good).sum())
        for k in np.flatnonzero(good):
            found.append({**fixed, **{name: float(draws[name][k]) for name in varying}})
        if len(found) >= s.samples:
            break
    return found, outside


def _inside(plan: points.Plan, draws: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Which draws have a finite value and gradient, evaluated a chunk of rows at a time (so
    that 100,000 draws of a large graph are not held at once)."""
    good = np.empty(n, dtype=bool)
    for start in range(0, n, plan.rows_per_chunk):
        stop = min(n, start + plan.rows_per_chunk)
        rows = {name: column[start:stop] for name, column in draws.items()}
        result = points.evaluate(plan, points.Chunk(list(range(start, stop)), rows))
        m = stop - start
        with np.errstate(all="ignore"):
            ok = np.isfinite(result.value.reshape(m, -1)).all(axis=1)
            for g in result.grads.values():
                ok &= np.isfinite(np.asarray(g).reshape(m, -1)).all(axis=1)
        good[start:stop] = ok
    return good


def point_seconds(graph: Any, cores: list[tuple[int, ...]], wrt: list[str], torch: bool) -> float:
    """About how long one point's full comparison takes (see POINT_SECONDS)."""
    total, work = shapes.cost(graph, cores)
    checked = len(checked_elements(graph, cores, wrt))
    fd = FD_EVALUATIONS_PER_ELEMENT * checked * max(total, work)
    nodes = len(graph.nodes)
    seconds = POINT_SECONDS + NODE_SECONDS * nodes + FD_ELEMENT_SECONDS * fd
    seconds += ELEMENT_SECONDS * total
    if torch:
        seconds += TORCH_POINT_SECONDS + TORCH_NODE_SECONDS * nodes + TORCH_ELEMENT_SECONDS * total
    return seconds


def refuse_long_checks(
    graph: Any, cores: list[tuple[int, ...]], n: int, wrt: list[str], s: Settings
) -> None:
    """Refuse, before any work, a check of n points whose estimate passes s.max_seconds."""
    each = point_seconds(graph, cores, wrt, s.torch)
    if n <= 1 or n * each <= s.max_seconds:
        return
    fit = max(1, int(s.max_seconds / each))
    if s.given is None:
        hint = f"use --samples {fit} or fewer"
    else:
        hint = f"check at most {fit:,} points at a time: split {s.source}"
    if s.torch:
        hint += "; --no-torch makes each point cheaper"
    raise LimitError(
        f"checking {n:,} points would take about {_duration(n * each)} (about "
        f"{_duration(each)} a point for this graph of {len(graph.nodes):,} nodes); a check may "
        f"take about {_duration(s.max_seconds)}, {fit:,} points here",
        hint=hint,
    )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.3g} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


def check(program: Program, fixed: dict[str, Any], s: Settings) -> dict[str, Any]:
    graph = program.graph
    warnings = list(program.warnings)
    unused = [name for name in fixed if name not in graph.variables]
    warnings += [
        f"a value was given for '{name}', but the expression does not use it" for name in unused
    ]
    fixed = {name: value for name, value in fixed.items() if name in graph.variables}
    wrt = resolve_wrt(graph, s.wrt)
    varying = [name for name in graph.variables if name not in fixed]
    outside = 0
    if s.given is not None:
        chosen = [{**fixed, **p} for p in s.given]
        for p in chosen[:1]:
            check_point(graph, p)
    else:
        if s.samples < 1:
            raise BackpropError("--samples must be at least 1")
        if not s.low < s.high:
            raise BackpropError(f"--range: {s.low!r} is not below {s.high!r}")
        chosen, outside = sample(program, fixed, varying, s)
    if not chosen:
        raise BackpropError(
            f"no point in [{s.low:g}, {s.high:g}] where the value and gradient are finite",
            hint="choose where to look with --range LOW,HIGH",
        )
    cores = shapes.infer(graph, {name: np.shape(v) for name, v in chosen[0].items()})
    if cores[graph.output]:
        raise BackpropError(
            "backprop check needs a scalar output", hint="reduce it with sum(...) or mean(...)"
        )
    if s.given is not None:
        refuse_long_checks(graph, cores, len(chosen), wrt, s)
        if isinstance(s.given, GivenPoints):
            warnings += s.given.warnings
    elements = checked_elements(graph, cores, wrt)
    source = _symbolic_source(graph, chosen, elements, cores, s)
    tallies = {c: _Tally() for c in CHECKS}
    mismatches: list[dict[str, Any]] = []
    point_warnings = 0
    try:
        for k, point in enumerate(chosen):
            options = Options(
                wrt=wrt,
                dtype=s.dtype,
                torch=s.torch,
                device=s.device,
                symbolic=s.symbolic,
                simplify=False,
                symbolic_source=(lambda: next(source)) if source is not None else None,
            )
            if source is None:
                options.symbolic = False
            report = gradient_report(program, point, options)
            point_warnings += bool(report["warnings"])
            _tally(report, point, k, tallies, mismatches)
    finally:
        if source is not None:
            source.close()
    if not s.torch:
        tallies["torch"].skipped = "--no-torch"
    if not s.symbolic:
        tallies["symbolic"].skipped = "--no-symbolic"
    elif source is None:
        tallies["symbolic"].skipped = "too many array elements for SymPy"
    if outside and s.given is None:
        warnings.append(
            f"{outside:,} random draws were outside the domain (a nan or infinite value or "
            "gradient) and were drawn again"
        )
    if len(chosen) < s.samples and s.given is None and varying:
        warnings.append(f"only {len(chosen):,} of {s.samples:,} points found inside the domain")
    summaries = {c: _summary(t) for c, t in tallies.items()}
    worst = max(
        (t.worst for t in tallies.values() if t.worst is not None),
        key=lambda w: w["ratio"],
        default=None,
    )
    return {
        "expression": graph.source,
        "source": s.source,
        "samples": s.samples if s.given is None and varying else len(chosen),
        "seed": s.seed if s.given is None else None,
        "range": [s.low, s.high] if s.given is None else None,
        "points": len(chosen),
        "outside_domain": outside,
        "variables": varying,
        "fixed": {name: _plain(v) for name, v in fixed.items()},
        "wrt": wrt,
        "dtype": s.dtype,
        "checks": summaries,
        "worst": worst,
        "mismatches": mismatches[:SHOWN_MISMATCHES],
        "points_with_warnings": point_warnings,
        "warnings": [{"message": w} for w in warnings],
        "ok": all(summary["ok"] is not False for summary in summaries.values()),
    }


def _symbolic_source(
    graph: Any,
    chosen: list[dict[str, Any]],
    elements: list[tuple[str, tuple[int, ...]]],
    cores: list[tuple[int, ...]],
    s: Settings,
) -> Generator[_Symbolic, None, None] | None:
    """One SymPy child for all points: a _Symbolic per point, in order (empty once the
    budget is spent)."""
    if not s.symbolic or sum(shapes.size(c) for c in cores) > MAX_SYMBOLIC_ELEMENTS:
        return None
    from ..checks import symbolic

    arrays = any(cores)
    plain_points = [{n: _plain(v) for n, v in p.items()} for p in chosen]
    job = Bounded(
        symbolic.partials_at_points,
        (graph, plain_points, elements, cores if arrays else None),
        seconds=s.symbolic_timeout,
        memory_mb=2048,
    )
    return _per_point(job, len(chosen))


def _per_point(job: Bounded, n: int) -> Generator[_Symbolic, None, None]:
    messages = job.stream()
    formulas: dict[str, dict[str, Any]] = {}
    error: str | None = None
    k = 0
    for message in messages:
        if "error" in message:
            error = str(message["error"])
            break
        if message.get("stage") == "formulas":
            formulas = message["partials"]
            continue
        got = _Symbolic(state="done")
        got.partials = {
            label: {**formulas.get(label, {}), **info}
            for label, info in message.get("partials", {}).items()
        }
        yield got
        k += 1
    for _ in range(k, n):  # the budget ran out (or SymPy failed): the rest go without
        got = _Symbolic()
        if error:
            got.state, got.error = "error", error
        else:
            got.state = "budget"
        yield got


def _tally(
    report: dict[str, Any],
    point: dict[str, Any],
    k: int,
    tallies: dict[str, _Tally],
    mismatches: list[dict[str, Any]],
) -> None:
    for check_name, element, engine_value, other, status in _comparisons(report):
        t = tallies[check_name]
        if status == "skipped":
            continue
        if status in ("ok", "mismatch"):
            t.compared += 1
            error = compare.abs_error(engine_value, other)
            if math.isfinite(error):
                t.max_error = max(t.max_error, error)
            ratio = _ratio(engine_value, other, report, check_name)
            if status == "mismatch":
                t.mismatch += 1
                ratio = math.inf if not math.isfinite(ratio) else ratio + 1e300
                mismatches.append(
                    {
                        "point": {n: _plain(v) for n, v in point.items()},
                        "index": k,
                        "partial": element,
                        "check": check_name,
                        "engine": engine_value,
                        "other": other,
                    }
                )
            else:
                t.agree += 1
            if ratio > t.worst_ratio:
                t.worst_ratio = ratio
                t.worst = {
                    "check": check_name,
                    "point": {n: _plain(v) for n, v in point.items()},
                    "index": k,
                    "partial": element,
                    "engine": engine_value,
                    "other": other,
                    "error": None if not math.isfinite(error) else error,
                    "ratio": ratio if math.isfinite(ratio) else 1e308,
                    "status": status,
                }
        else:
            t.other[status] = t.other.get(status, 0) + 1
    torch = report["checks"]["torch"]
    if torch.get("ok") is False and not any(
        m["check"] == "torch" and m["index"] == k for m in mismatches
    ):
        # a node's value or gradient disagreed, not a partial: still a disagreement
        tallies["torch"].mismatch += 1
        mismatches.append(
            {
                "point": {n: _plain(v) for n, v in point.items()},
                "index": k,
                "partial": None,
                "check": "torch",
                "engine": None,
                "other": torch.get("mismatches", [])[:3],
            }
        )


def _comparisons(report: dict[str, Any]) -> Iterator[tuple[str, Any, Any, Any, str]]:
    """(check, what was compared, engine, other, status) for every comparison of one point:
    each partial per check, and for finite differences of a large graph (random
    directions) each direction instead."""
    fd = report["checks"]["finite_difference"]
    directional = fd.get("mode") == "directional"
    for row in report["partials"]:
        for check_name in CHECKS:
            if directional and check_name == "finite_difference":
                continue
            key = "symbolic_value" if check_name == "symbolic" else check_name
            yield check_name, row["element"], row["engine"], row.get(key), row["status"][check_name]
    if directional:
        for along in fd.get("along", []):
            yield (
                "finite_difference",
                along["direction"].replace("direction ", "u"),  # ∂/∂u1: along direction 1
                along["engine"],
                along["finite_difference"],
                along["status"],
            )


def _ratio(a: Any, b: Any, report: dict[str, Any], check_name: str) -> float:
    """How close to its tolerance a comparison came: 1 is at the tolerance."""
    error = compare.abs_error(a, b)
    if not math.isfinite(error):
        return math.inf
    c = report["checks"][check_name]
    rtol, atol = float(c.get("rtol", 1e-7)), float(c.get("atol", 1e-9))
    scale = max(abs(float(a)), abs(float(b)))
    return error / (atol + rtol * scale)


def _summary(t: _Tally) -> dict[str, Any]:
    return {
        "ok": None if t.skipped or t.compared == 0 else t.mismatch == 0,
        "skipped": t.skipped,
        "compared": t.compared,
        "agree": t.agree,
        "mismatches": t.mismatch,
        "not_compared": dict(sorted(t.other.items())),
        "max_error": t.max_error if t.compared else None,
        "worst": t.worst,
    }


def read_points(
    path: str, what: str, program: Program, fixed: dict[str, Any], allow_nonfinite: bool = False
) -> GivenPoints:
    """The points of a CSV/TSV/JSON-lines, Parquet or Arrow file (see grad --points), all
    of them, with the reader's warnings."""
    graph = program.graph
    varying = [name for name in graph.variables if name not in fixed]
    used = points.constants_in(graph)  # a column named e or pi is data: said as grad says it
    reader, stream = points.open_points(path, what, varying, fixed, allow_nonfinite, used)
    try:
        summary = points.Summary()
        found: list[dict[str, float]] = []
        for chunk in points.chunks(reader, 4096, "stop", summary):
            for k in range(len(chunk.lines)):
                found.append({name: float(col[k]) for name, col in chunk.columns.items()})
                if len(found) > MAX_POINTS:
                    raise LimitError(f"{what}: more than {MAX_POINTS:,} points to check")
    finally:
        stream.close()
    if not found:
        raise BackpropError(f"{what} has a header but no points")
    return GivenPoints(found, reader.warnings)
