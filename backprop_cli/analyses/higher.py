"""Jacobians and Hessians: the engine's reverse sweep once per output element (or its
forward sweep on dual numbers once per input element, where there are fewer), and forward
over reverse (the reverse sweep run on dual numbers) for second derivatives, each checked
against torch autograd, SymPy and finite differences. The sweeps run many seeds at once
along a batch axis, and the work they may take is bounded from the shapes before any runs.

Plain data in, plain data out (the JSON of `backprop jacobian` and `backprop hessian`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..checks import autograd, compare, finite
from ..checks.sandbox import Bounded
from ..core import engine, shapes
from ..core.dual import Dual, tangent_of
from ..core.errors import BackpropError, LimitError
from ..core.graph import Graph

MAX_ENTRIES = 250_000  # entries of a Jacobian or Hessian
MAX_SYMBOLIC_ENTRIES = 400  # entries SymPy works out one by one
MAX_FD_ENTRIES = 2_500  # entries finite differences estimate
# Work is counted in node-elements: one evaluation of a graph costs about the larger of its
# elements over all nodes and its multiply-adds (shapes.cost).
# Each Jacobian row (reverse) or column (forward), and each Hessian column, is one sweep of
# the graph: past this many node-elements in all the command is refused before it runs.
MAX_SWEEP_WORK = 300_000_000
FD_WORK = 300_000_000  # node-elements finite differences may evaluate, as for grad
FD_POINTS_PER_ELEMENT = 4 * 90  # a 5-point stencil's 4 outer points × at most ~90 steps
# Second differences lose about half the digits: their own tolerance.
FD2_TOLERANCE = (1e-5, 1e-7)
FD2_STEPS = (-6, -7, -8, -9, -10, -11, -12)  # h = 2^k · max(1, |x|)
FD2_RESOLUTION = 1e-3


Element = tuple[str, tuple[int, ...]]


def elements(graph: Graph, cores: list[tuple[int, ...]], wrt: list[str]) -> list[Element]:
    """Every element of the chosen variables, in order (x, then W[0,0], W[0,1], …)."""
    return [
        (name, index) for name in wrt for index in shapes.elements(cores[graph.variables[name]])
    ]


def _plain(x: Any) -> Any:
    value: Any = np.asarray(x, dtype=np.float64).tolist()
    return value


# ---- the engine -------------------------------------------------------------------------


def jacobian(graph: Graph, env: dict[str, Any], wrt: list[str]) -> dict[str, np.ndarray]:
    """∂output/∂variable for each chosen variable, of shape output + variable. Reverse mode
    takes one sweep per output element, forward mode one per input element: whichever
    needs fewer (reverse on a tie)."""
    cores = engine.input_cores(graph, env)
    rows = shapes.size(cores[graph.output])
    columns = sum(shapes.size(cores[graph.variables[name]]) for name in wrt)
    if columns < rows:
        return _jacobian_forward(graph, env, wrt, cores)
    return _jacobian_reverse(graph, env, wrt, cores)


def _jacobian_reverse(
    graph: Graph, env: dict[str, Any], wrt: list[str], cores: list[tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """One reverse sweep per output element (a one-hot upstream gradient), run as one sweep
    over a batch of such seeds (a batch axis in front of every node's value)."""
    values = engine.evaluate(graph, env, np.float64, cores=cores)
    out_core = cores[graph.output]
    rows = shapes.elements(out_core)
    result = {name: np.zeros((len(rows), *cores[graph.variables[name]])) for name in wrt}
    with np.errstate(all="ignore"):
        for lo, hi in _batches(len(rows), _width(cores)):
            seeds = np.zeros((hi - lo, *out_core))
            for b, k in enumerate(rows[lo:hi]):
                one = (b, *k)
                seeds[one] = 1.0
            # The point is the same for every seed: its values are only broadcast.
            batch = [np.broadcast_to(v, (hi - lo, *np.shape(v))) for v in values]
            grads = engine.backward(graph, batch, seeds, cores=cores)
            for name in wrt:
                g = grads[graph.variables[name]]
                result[name][lo:hi] = 0.0 if g is None else g
    return {
        name: block.reshape(out_core + cores[graph.variables[name]])
        for name, block in result.items()
    }


def _jacobian_forward(
    graph: Graph, env: dict[str, Any], wrt: list[str], cores: list[tuple[int, ...]]
) -> dict[str, np.ndarray]:
    """One forward sweep on duals per input element (its unit direction as the tangent),
    many at once along a batch axis: the output's tangent is that element's column."""
    out_core = cores[graph.output]
    m = shapes.size(out_core)
    chosen = elements(graph, cores, wrt)
    matrix = np.zeros((m, len(chosen)))
    with np.errstate(all="ignore"):
        for lo, hi in _batches(len(chosen), 2 * _width(cores)):
            values = engine.evaluate(graph, _unit_tangents(env, chosen[lo:hi]), cores=cores)
            tangent = np.broadcast_to(tangent_of(values[graph.output]), (hi - lo, *out_core))
            matrix[:, lo:hi] = np.reshape(tangent, (hi - lo, m)).T
    blocks, start = {}, 0
    for name in wrt:
        core = cores[graph.variables[name]]
        blocks[name] = matrix[:, start : start + shapes.size(core)].reshape(out_core + core)
        start += shapes.size(core)
    return blocks


def hessian(graph: Graph, env: dict[str, Any], chosen: list[Element]) -> np.ndarray:
    """∂²output/∂a∂b for every pair of chosen elements: for each element, the reverse
    sweep on duals whose tangent is that element's unit direction (forward over reverse),
    many elements at once along a batch axis (one column of the Hessian per batch entry)."""
    cores = engine.input_cores(graph, env)
    n = len(chosen)
    result = np.zeros((n, n))
    with np.errstate(all="ignore"):
        # A dual holds a value and a tangent: twice the elements of a plain sweep.
        for lo, hi in _batches(n, 2 * _width(cores)):
            duals = _unit_tangents(env, chosen[lo:hi])
            values = engine.evaluate(graph, duals, np.float64, cores=cores)
            grads = engine.backward(graph, values, 1.0, cores=cores)
            for i, (row_name, row_index) in enumerate(chosen):
                g = grads[graph.variables[row_name]]
                if g is not None:
                    core = cores[graph.variables[row_name]]
                    tangent = np.broadcast_to(tangent_of(g), (hi - lo, *core))
                    column: tuple[Any, ...] = (slice(None), *row_index)
                    result[i, lo:hi] = tangent[column]
    return result + 0.0  # no -0.0 entries


BATCH_ELEMENTS = 2_000_000  # node-elements of one batched sweep (bounds its memory)


def _width(cores: list[tuple[int, ...]]) -> int:
    """Elements over all nodes of one point: what each batch entry adds to a sweep."""
    return sum(shapes.size(core) for core in cores)


def _batches(count: int, width: int) -> list[tuple[int, int]]:
    """Ranges of at most BATCH_ELEMENTS // width entries (at least one) covering count."""
    size = max(1, BATCH_ELEMENTS // max(1, width))
    return [(lo, min(count, lo + size)) for lo in range(0, count, size)]


def _unit_tangents(env: dict[str, Any], columns: list[Element]) -> dict[str, Dual]:
    """Each variable as duals along a batch axis: batch entry b has the point as its value
    and, as its tangent, the unit direction of the b-th chosen element."""
    duals = {}
    for var, value in env.items():
        point = np.asarray(value, dtype=np.float64)
        tangent = np.zeros((len(columns), *point.shape))
        for b, (name, index) in enumerate(columns):
            if name == var:
                one = (b, *index)
                tangent[one] = 1.0
        duals[var] = Dual(np.broadcast_to(point, tangent.shape), tangent)
    return duals


# ---- finite differences of second order ------------------------------------------------


def second_differences(
    graph: Graph, env: dict[str, Any], chosen: list[Element]
) -> tuple[np.ndarray, np.ndarray]:
    """∂²output/∂a∂b from central second differences of the output alone (independent of
    the engine's derivatives), with Richardson extrapolation over halving steps; the
    estimate whose neighbours agree best is kept, and that disagreement is its error
    estimate (inf where no step was usable)."""
    n = len(chosen)
    cores = engine.input_cores(graph, env)
    base = {k: np.asarray(v, dtype=np.float64) for k, v in env.items()}
    x = np.array([float(base[name][index]) for name, index in chosen])
    scale = np.maximum(1.0, np.abs(x))
    h = np.ldexp(1.0, np.array(FD2_STEPS))[None, :] * scale[:, None]  # (n, steps)
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    signs = [(1, 1), (1, -1), (-1, 1), (-1, -1)]
    count = fd2_points(n)
    moves = np.full((count, 2), -1)  # the chosen elements each point moves (-1: none)
    to = np.zeros((count, 2))  # ... and where to
    offsets = np.zeros((count, 2))
    slot = 1
    for i, j in pairs:
        for s in range(len(FD2_STEPS)):
            for si, sj in signs:
                if i == j:  # the diagonal: x ± 2h as the corners of a square of side h
                    moved = x[i] + (si + sj) * h[i, s] / 2
                    moves[slot, 0], to[slot, 0] = i, moved
                    offsets[slot] = (moved - x[i], 0.0)
                else:
                    moves[slot], to[slot] = (i, j), (x[i] + si * h[i, s], x[j] + sj * h[j, s])
                    offsets[slot] = (to[slot, 0] - x[i], to[slot, 1] - x[j])
                slot += 1
    f, same = _fd2_values(graph, base, chosen, moves, to, cores)
    estimate = np.full((n, n), np.nan)
    error = np.full((n, n), np.inf)
    slot = 1
    eps = float(np.finfo(np.float64).eps)
    for i, j in pairs:
        d = []
        usable = []
        for _ in FD2_STEPS:
            block = slice(slot, slot + 4)
            pp, pm, mp, mm = f[block]
            with np.errstate(all="ignore"):
                if i == j:
                    step = offsets[slot, 0] / 2  # the corners (++) and (--) are x ± 2·step
                    d.append((pp - 2 * f[0] + mm) / (4 * step * step))
                else:
                    hi, hj = offsets[slot]
                    d.append((pp - pm - mp + mm) / (4 * hi * hj))
            usable.append(bool(same[block].all()) and np.isfinite(f[block]).all())
            slot += 4
        best, best_err = math.nan, math.inf
        for k in range(len(d) - 2):
            if not all(usable[k : k + 3]):
                continue
            r1 = (4 * d[k + 1] - d[k]) / 3
            r2 = (4 * d[k + 2] - d[k + 1]) / 3
            hh = h[i, k + 2] * h[j, k + 2]
            rounding = 64 * eps * max(abs(f[0]), 1e-300) / hh
            err = abs(r2 - r1) + rounding
            if np.isfinite(err) and err < best_err:
                best, best_err = float(r2), float(err)
        estimate[i, j] = estimate[j, i] = best
        error[i, j] = error[j, i] = best_err
    return estimate, error


def fd2_points(n: int) -> int:
    """Points second differences evaluate for n elements: the centre, then 4 corners per
    step size for every pair (i ≤ j)."""
    return 1 + n * (n + 1) // 2 * len(FD2_STEPS) * 4


def _fd2_values(
    graph: Graph,
    base: dict[str, np.ndarray],
    chosen: list[Element],
    moves: np.ndarray,
    to: np.ndarray,
    cores: list[tuple[int, ...]],
) -> tuple[np.ndarray, np.ndarray]:
    """The output at every point (point 0 is the centre), evaluated a batch of at most
    BATCH_ELEMENTS node-elements at a time, and whether each point's branches (the piece
    of every piecewise node) are the centre's."""
    count = len(moves)
    f = np.empty(count)
    same = np.ones(count, dtype=bool)
    centre: dict[int, np.ndarray] = {}
    with np.errstate(all="ignore"):
        for lo, hi in _batches(count, _width(cores)):
            batch = {k: np.broadcast_to(v, (hi - lo, *v.shape)).copy() for k, v in base.items()}
            for slot in range(lo, hi):
                for k in (0, 1):
                    if moves[slot, k] >= 0:
                        name, index = chosen[moves[slot, k]]
                        at = (slot - lo, *index)
                        batch[name][at] = to[slot, k]
            values = engine.evaluate(graph, batch, np.float64, cores=cores)
            out = np.asarray(values[graph.output], dtype=np.float64)
            f[lo:hi] = np.broadcast_to(out, (hi - lo,))
            branches = finite._branches(graph, values, cores, hi - lo)
            if lo == 0:
                centre = {node: b[0] for node, b in branches.items()}
            for node, b in branches.items():
                same[lo:hi] &= (b == centre[node]).reshape(hi - lo, -1).all(axis=1)
    return f, same


# ---- the reports ------------------------------------------------------------------------


def _check_sweeps(what: str, size: str, sweeps: int, along: str, cost: int, hint: str) -> None:
    """Refuse, before any work, a matrix whose sweeps (one per `along`) would cost more
    than MAX_SWEEP_WORK node-elements in all."""
    if sweeps * cost > MAX_SWEEP_WORK:
        raise LimitError(
            f"{what} of {size} entries takes {sweeps:,} sweeps (one per {along}) of a graph "
            f"of about {cost:,} operations: {sweeps * cost:,} in all, more than "
            f"{MAX_SWEEP_WORK:,}",
            hint=hint,
        )


def _fd_reason(wanted: bool, entries: int, points: int, cost: int) -> str | None:
    """Why finite differences are skipped (None: they run): too many entries, or more
    evaluations than FD_WORK allows."""
    if not wanted:
        return "disabled"
    if entries > MAX_FD_ENTRIES:
        return f"{entries:,} entries, more than the {MAX_FD_ENTRIES:,} finite differences estimate"
    if points * cost > FD_WORK:
        return (
            f"{points:,} evaluations of a graph of about {cost:,} operations, more than "
            f"{FD_WORK:,} in all"
        )
    return None


def _prepare(graph: Graph, point: dict[str, Any], wrt: list[str] | None) -> tuple[Any, ...]:
    from .point import check_point, resolve_wrt

    warnings = [{"message": w} for w in check_point(graph, point)]
    chosen = resolve_wrt(graph, wrt)
    env = {name: point[name] for name in graph.variables}
    cores = shapes.infer(graph, {name: np.shape(value) for name, value in env.items()})
    return warnings, chosen, env, cores


def _symbolic_job(
    graph: Graph,
    env: dict[str, Any],
    chosen: list[Element],
    cores: list[Any],
    kind: str,
    timeout: float,
    entries: int,
) -> tuple[Bounded | None, str | None]:
    if entries > MAX_SYMBOLIC_ENTRIES:
        return (
            None,
            f"{entries:,} entries, more than the {MAX_SYMBOLIC_ENTRIES:,} SymPy works out "
            "one by one",
        )
    if not finite.finite_point(env):
        return None, finite.NONFINITE_POINT
    from ..checks import symbolic

    job = Bounded(
        symbolic.higher, (graph, env, chosen, cores, kind), seconds=timeout, memory_mb=2048
    )
    return job, None


def _collect(job: Bounded | None) -> tuple[dict[str, Any], str]:
    if job is None:
        return {}, "skipped"
    found: dict[str, Any] = {}
    error = None
    for message in job.collect():
        if "error" in message:
            error = str(message["error"])
        found.update(message.get("entries", {}))
    if error:
        return found, f"error: {error}"
    return found, "done" if job.status == "done" else (
        "budget" if job.status == "timeout" else job.status
    )


def _judge_entry(
    engine_value: float,
    torch_value: float | None,
    fd: tuple[float, float] | None,
    sym: dict[str, Any] | None,
    slack: float,
    kink: bool,
) -> dict[str, str]:
    status: dict[str, str] = {}
    rtol, atol = compare.TOLERANCES["float64"]["torch"]
    status["torch"] = (
        "skipped"
        if torch_value is None
        else compare.judge(engine_value, torch_value, rtol, atol, slack)
    )
    if fd is None:
        status["finite_difference"] = "skipped"
    elif kink:
        status["finite_difference"] = "kink"
    else:
        value, err = fd
        scale = max(abs(engine_value), abs(value)) if math.isfinite(value) else 0.0
        if (
            not math.isfinite(value)
            or not math.isfinite(err)
            or err > FD2_RESOLUTION * scale + FD2_TOLERANCE[1]
        ):
            status["finite_difference"] = "inconclusive"
        else:
            status["finite_difference"] = compare.judge(
                engine_value, value, *FD2_TOLERANCE, 2 * err + slack
            )
    if sym is None:
        status["symbolic"] = "skipped"
    elif "error" in sym:
        status["symbolic"] = "error"
    elif sym.get("value") is None:
        status["symbolic"] = "undefined"
    else:
        rtol, atol = compare.TOLERANCES["float64"]["symbolic"]
        verdict = compare.judge(engine_value, sym["value"], rtol, atol, slack)
        status["symbolic"] = (
            "convention" if verdict != "ok" and (sym.get("convention") or kink) else verdict
        )
    return status


def _summaries(
    entries: list[dict[str, Any]],
    torch_note: str | None,
    sym_state: str,
    sym_reason: str | None,
    fd_tolerance: tuple[float, float] = FD2_TOLERANCE,
    fd_reason: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for check in ("torch", "finite_difference", "symbolic"):
        judged = [e for e in entries if e["status"][check] in ("ok", "mismatch")]
        key = "symbolic_value" if check == "symbolic" else check
        summary: dict[str, Any] = {
            "ok": all(e["status"][check] == "ok" for e in judged) if judged else None,
            "compared": len(judged),
            "max_error": max(
                (compare.abs_error(e["engine"], e[key]) for e in judged), default=None
            ),
            "mismatches": [
                f"{e['row']}|{e['column']}" for e in judged if e["status"][check] != "ok"
            ][:20],
            "not_compared": len(entries) - len(judged),
        }
        if check == "torch":
            summary["version"] = torch_note
            summary["skipped"] = None if torch_note else "--no-torch"
        if check == "symbolic":
            summary["state"] = sym_state
            summary["skipped"] = sym_reason
        if check == "finite_difference":
            summary["tolerance"] = list(fd_tolerance)
            summary["skipped"] = fd_reason
        out[check] = summary
    return out


def hessian_report(
    graph: Graph,
    point: dict[str, Any],
    wrt: list[str] | None,
    *,
    torch: bool = True,
    device: str = "cpu",
    symbolic: bool = True,
    symbolic_timeout: float = 5.0,
    finite_difference: bool = True,
) -> dict[str, Any]:
    """Every second derivative of a scalar output, with its checks (docs/jacobian-hessian.md)."""
    warnings, wrt, env, cores = _prepare(graph, point, wrt)
    if cores[graph.output]:
        raise BackpropError(
            f"the output has shape {shapes.show(cores[graph.output])}: a Hessian needs a "
            "scalar output",
            hint="reduce it with sum(...) or mean(...), or use backprop jacobian",
        )
    chosen = elements(graph, cores, wrt)
    n = len(chosen)
    if n * n > MAX_ENTRIES:
        raise LimitError(f"a Hessian of {n:,} × {n:,} entries is more than {MAX_ENTRIES:,}")
    cost = max(shapes.cost(graph, cores))
    _check_sweeps(
        "a Hessian", f"{n:,} × {n:,}", n, "input element", cost, "choose fewer variables with --wrt"
    )
    fd_reason = _fd_reason(finite_difference, n * n, fd2_points(n), cost)
    labels = [shapes.element_name(name, index) for name, index in chosen]
    job, sym_reason = (
        (None, "--no-symbolic")
        if not symbolic
        else _symbolic_job(graph, env, chosen, cores, "hessian", symbolic_timeout, n * (n + 1) // 2)
    )
    try:
        trace = engine.run(graph, env)
        matrix = hessian(graph, env, chosen)
        fd = second_differences(graph, env, chosen) if fd_reason is None else None
        theirs, torch_note = None, None
        if torch and graph.variables:
            theirs, torch_note = autograd.torch_functional(graph, env, wrt, "hessian", device)
    except BaseException:
        if job is not None:
            job.deadline = 0.0
            job.collect()
        raise
    found, state = _collect(job)
    deps = graph.depends_on()
    kinked = {name for k in trace.kinks for name in deps[k]}
    slack = 64 * float(np.finfo(np.float64).eps) * float(np.nanmax(np.abs(matrix), initial=0.0))
    with np.errstate(invalid="ignore"):
        skew = np.abs(matrix - matrix.T)
    if np.nanmax(skew, initial=0.0) > slack + 1e-7 * float(np.nanmax(np.abs(matrix), initial=0.0)):
        r, c = (int(k) for k in np.unravel_index(int(np.nanargmax(skew)), skew.shape))
        warnings.append(
            {
                "message": f"the Hessian is not symmetric: ∂²/∂{labels[r]}∂{labels[c]} = "
                f"{float(matrix[r, c])!r} but ∂²/∂{labels[c]}∂{labels[r]} = "
                f"{float(matrix[c, r])!r} "
                "(only the upper triangle is checked)"
            }
        )
    entries = []
    for i in range(n):
        for j in range(i, n):
            key = f"{labels[i]}|{labels[j]}"
            sym = found.get(key)
            entry: dict[str, Any] = {
                "row": labels[i],
                "column": labels[j],
                "engine": float(matrix[i, j]),
                "torch": None if theirs is None else float(theirs[i, j]),
                "finite_difference": None if fd is None else _finite_or_none(fd[0][i, j]),
                "fd_error_estimate": None if fd is None else _finite_or_none(fd[1][i, j]),
                "symbolic": None if sym is None else sym.get("formula"),
                "symbolic_value": None if sym is None else sym.get("value"),
            }
            kink = chosen[i][0] in kinked or chosen[j][0] in kinked
            entry["status"] = _judge_entry(
                entry["engine"], entry["torch"],
                None if fd is None else (float(fd[0][i, j]), float(fd[1][i, j])),
                sym, slack, kink,
            )  # fmt: skip
            entry["ok"] = "mismatch" not in entry["status"].values()
            entries.append(entry)
    if sym_reason is None and state != "done":
        sym_reason = state
    report = {
        "expression": graph.source,
        "dtype": "float64",
        "variables": {name: _plain(v) for name, v in env.items()},
        "wrt": wrt,
        "elements": labels,
        "output_name": graph.output_name(),
        "output": {
            "label": graph.label(graph.output),
            "shape": [],
            "value": _plain(trace.values[graph.output]),
        },
        "value": _plain(trace.values[graph.output]),
        "gradient": {name: _plain(trace.grads[graph.variables[name]]) for name in wrt},
        "hessian": _plain(matrix),
        "symbolic": [[_formula(found, labels, i, j) for j in range(n)] for i in range(n)],
        "entries": entries,
        "checks": _summaries(entries, torch_note, state, sym_reason, fd_reason=fd_reason),
        "warnings": warnings + [{"message": f"node {i.node}: {i.message}"} for i in trace.issues],
    }
    report["ok"] = all(c["ok"] is not False for c in report["checks"].values())
    return report


def _formula(found: dict[str, Any], labels: list[str], i: int, j: int) -> str | None:
    a, b = (i, j) if i <= j else (j, i)
    entry = found.get(f"{labels[a]}|{labels[b]}")
    return None if entry is None else entry.get("formula")


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def jacobian_report(
    graph: Graph,
    point: dict[str, Any],
    wrt: list[str] | None,
    *,
    torch: bool = True,
    device: str = "cpu",
    symbolic: bool = True,
    symbolic_timeout: float = 5.0,
    finite_difference: bool = True,
) -> dict[str, Any]:
    """Every partial of every output element, with its checks (docs/jacobian-hessian.md)."""
    warnings, wrt, env, cores = _prepare(graph, point, wrt)
    out_core = cores[graph.output]
    chosen = elements(graph, cores, wrt)
    out_name = graph.output_name()
    rows = [shapes.element_name(out_name, k) for k in shapes.elements(out_core)]
    columns = [shapes.element_name(name, index) for name, index in chosen]
    m, n = len(rows), len(columns)
    if m * n > MAX_ENTRIES:
        raise LimitError(f"a Jacobian of {m:,} × {n:,} entries is more than {MAX_ENTRIES:,}")
    cost = max(shapes.cost(graph, cores))
    along = "input element" if n < m else "output element"
    hint = "choose fewer variables with --wrt, or differentiate a smaller output"
    _check_sweeps("a Jacobian", f"{m:,} × {n:,}", min(m, n), along, cost, hint)
    fd_reason = _fd_reason(finite_difference, m * n, n * FD_POINTS_PER_ELEMENT, cost)
    job, sym_reason = (
        (None, "--no-symbolic")
        if not symbolic
        else _symbolic_job(graph, env, chosen, cores, "jacobian", symbolic_timeout, m * n)
    )
    try:
        trace = engine.run(graph, env, seed=np.ones(out_core)[()] if out_core else 1.0)
        blocks = jacobian(graph, env, wrt)
        matrix = (
            np.concatenate([blocks[name].reshape(m, -1) for name in wrt], axis=1)
            if wrt
            else np.zeros((m, 0))
        )
        fd = _jacobian_fd(graph, env, chosen, out_core) if fd_reason is None else None
        theirs, torch_note = None, None
        if torch and graph.variables:
            theirs, torch_note = autograd.torch_functional(graph, env, wrt, "jacobian", device)
    except BaseException:
        if job is not None:
            job.deadline = 0.0
            job.collect()
        raise
    found, state = _collect(job)
    deps = graph.depends_on()
    kinked = {name for k in trace.kinks for name in deps[k]}
    slack = 64 * float(np.finfo(np.float64).eps) * float(np.nanmax(np.abs(matrix), initial=0.0))
    entries = []
    for i in range(m):
        for j in range(n):
            sym = found.get(f"{rows[i]}|{columns[j]}")
            estimate = None if fd is None else fd[i][j]
            entry: dict[str, Any] = {
                "row": rows[i],
                "column": columns[j],
                "engine": float(matrix[i, j]),
                "torch": None if theirs is None else float(theirs[i, j]),
                "finite_difference": None if estimate is None else estimate.value,
                "fd_error_estimate": None if estimate is None else estimate.error_estimate,
                "symbolic": None if sym is None else sym.get("formula"),
                "symbolic_value": None if sym is None else sym.get("value"),
            }
            entry["status"] = _judge_entry(
                entry["engine"], entry["torch"], None, sym, slack, chosen[j][0] in kinked
            )
            entry["status"]["finite_difference"] = _fd1_status(
                entry["engine"], estimate, slack, chosen[j][0] in kinked
            )
            entry["ok"] = "mismatch" not in entry["status"].values()
            entries.append(entry)
    if sym_reason is None and state != "done":
        sym_reason = state
    report = {
        "expression": graph.source,
        "dtype": "float64",
        "variables": {name: _plain(v) for name, v in env.items()},
        "wrt": wrt,
        "output": {
            "label": graph.label(graph.output),
            "shape": list(out_core),
            "value": _plain(trace.values[graph.output]),
        },
        "value": _plain(trace.values[graph.output]),
        "rows": rows,
        "columns": columns,
        "jacobian": {name: _plain(blocks[name]) for name in wrt},
        "matrix": _plain(matrix),
        "symbolic": [[(found.get(f"{r}|{c}") or {}).get("formula") for c in columns] for r in rows],
        "entries": entries,
        "checks": _summaries(
            entries,
            torch_note,
            state,
            sym_reason,
            compare.TOLERANCES["float64"]["finite_difference"],
            fd_reason,
        ),
        "warnings": warnings + [{"message": f"node {i.node}: {i.message}"} for i in trace.issues],
    }
    report["ok"] = all(c["ok"] is not False for c in report["checks"].values())
    return report


def _jacobian_fd(
    graph: Graph, env: dict[str, Any], chosen: list[Element], out_core: tuple[int, ...]
) -> list[list[Any]]:
    # How far rounding moves each output element: the differences cannot resolve below it.
    ones = np.ones(out_core)[()]
    trace = engine.run(graph, env, "float64", ones)
    value_spread, _ = engine.spread(graph, env, trace, "float64", ones)
    noise = np.broadcast_to(np.asarray(value_spread[graph.output], dtype=np.float64), out_core)
    columns = finite.output_differences(graph, env, chosen, noise)
    return [[columns[e][k] for e in chosen] for k in range(shapes.size(out_core))]


def _fd1_status(engine_value: float, estimate: Any, slack: float, kink: bool) -> str:
    if estimate is None:
        return "skipped"
    if kink or estimate.kink:
        return "kink"
    if estimate.value is None or not estimate.reliable or estimate.error_estimate is None:
        return "inconclusive"
    rtol, atol = compare.TOLERANCES["float64"]["finite_difference"]
    scale = max(abs(engine_value), abs(estimate.value))
    if estimate.error_estimate > 1e-3 * scale + atol:
        return "inconclusive"
    return compare.judge(
        engine_value, estimate.value, rtol, atol, 2 * estimate.error_estimate + slack
    )
