"""`backprop check`: the gradient checked at many points (random, or given), engine against
torch autograd, finite differences and SymPy, with the worst point reported.

Each point gets the single-point report's full comparison (every node's value and gradient
against torch, finite differences with their error estimates, kinks and conventions as
such); SymPy differentiates once, in one bounded child, and evaluates its partials exactly
at every point while the numeric checks run.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import checks, points, shapes
from .errors import BackpropError
from .parse import Program
from .report import (
    MAX_SYMBOLIC_ELEMENTS,
    Options,
    _plain,
    _Symbolic,
    check_point,
    checked_elements,
    gradient_report,
    resolve_wrt,
)
from .sandbox import Bounded

CHECKS = ("torch", "finite_difference", "symbolic")
MAX_POINTS = 100_000
SAMPLING_ROUNDS = 50  # draws of `samples` candidates to find points inside the domain
SHOWN_MISMATCHES = 20


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
    found: list[dict[str, Any]] = []
    outside = 0
    for _ in range(SAMPLING_ROUNDS):
        n = s.samples - len(found)
        draws = {name: rng.uniform(s.low, s.high, size=n) for name in varying}
        chunk = points.Chunk(list(range(n)), draws, {})
        result = points.evaluate(plan, chunk)
        with np.errstate(all="ignore"):
            good = np.isfinite(result.value.reshape(n, -1)).all(axis=1)
            for g in result.grads.values():
                good &= np.isfinite(np.asarray(g).reshape(n, -1)).all(axis=1)
        outside += int((~good).sum())
        for k in np.flatnonzero(good):
            found.append({**fixed, **{name: float(draws[name][k]) for name in varying}})
        if len(found) >= s.samples:
            break
    return found, outside


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
    from . import symbolic

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
    for row in report["partials"]:
        for check_name in CHECKS:
            status = row["status"][check_name]
            t = tallies[check_name]
            if status == "skipped":
                continue
            key = "symbolic_value" if check_name == "symbolic" else check_name
            other = row.get(key)
            if status in ("ok", "mismatch"):
                t.compared += 1
                error = checks.abs_error(row["engine"], other)
                if math.isfinite(error):
                    t.max_error = max(t.max_error, error)
                ratio = _ratio(row["engine"], other, report, check_name)
                if status == "mismatch":
                    t.mismatch += 1
                    ratio = math.inf if not math.isfinite(ratio) else ratio + 1e300
                    mismatches.append(
                        {
                            "point": {n: _plain(v) for n, v in point.items()},
                            "index": k,
                            "partial": row["element"],
                            "check": check_name,
                            "engine": row["engine"],
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
                        "partial": row["element"],
                        "engine": row["engine"],
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


def _ratio(a: Any, b: Any, report: dict[str, Any], check_name: str) -> float:
    """How close to its tolerance a comparison came: 1 is at the tolerance."""
    error = checks.abs_error(a, b)
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
) -> list[dict[str, float]]:
    """The points of a CSV/TSV/JSON-lines file (see grad --points), all of them."""
    from .inputs import open_text

    graph = program.graph
    varying = [name for name in graph.variables if name not in fixed]
    stream = open_text(path, what)
    try:
        reader = points.PointReader(stream, what, varying, fixed, allow_nonfinite)
        summary = points.Summary()
        found: list[dict[str, float]] = []
        for chunk in points.chunks(reader, 4096, "stop", summary):
            for k in range(len(chunk.lines)):
                found.append({name: float(col[k]) for name, col in chunk.columns.items()})
                if len(found) > MAX_POINTS:
                    raise BackpropError(f"{what}: more than {MAX_POINTS:,} points to check")
    finally:
        stream.close()
    if not found:
        raise BackpropError(f"{what} has a header but no points")
    return found
