"""Central finite differences, the check that needs nothing but the engine: element by element
with a step search and an error estimate, or, for a large graph, along a few random
directions. Product code that the tests use too."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import engine, ops
from ..core.graph import Graph
from .compare import EPS, SPREAD_SLACK, abs_error, judge

# Step sizes tried by the finite-difference check: powers of two from 2^-2 down to 2^-44
# times 1 (absolute) and times |x| (relative), never below 2^8 ulps of x.
FD_BAND = (2, 44)
_STENCIL = np.array([-2.0, -1.0, 1.0, 2.0])
FD_ROUNDING = 64  # a function value is trusted to FD_ROUNDING·ε of its size
FD_POINTS_PER_PASS = 2_000_000  # points × node-elements a pass holds at once (bounds memory)
FD_AGREEMENT = 1e-2  # neighbouring steps must agree this well (relative) to be trusted
FD_PLATEAU = 3  # ... along a run of at least this many step sizes
FD_CONSISTENCY = 1e-2  # the outer points must predict the centre value this well
FD_NEGLIGIBLE = 1e-10  # or their disagreement this small next to |f| / h


@dataclass(frozen=True)
class FiniteDifference:
    value: float | None  # None: no step gave a finite estimate (undefined here)
    error_estimate: float | None  # the estimate's own error: step disagreement + rounding
    step: float | None
    kink: bool  # the point sits on a kink of a node this variable feeds
    reliable: bool = True  # some step's estimate was trustworthy (see _estimate); with no
    # value, True means the function is undefined around the point, False that no step
    # could resolve the derivative


Element = str | tuple[str, tuple[int, ...]]  # a scalar variable, or (array name, index)

# SymPy's exact values mean nothing at a nan or an infinity (--allow-nonfinite)
NONFINITE_POINT = "a value is nan or infinite, where exact values are not defined"


def finite_point(point: Mapping[str, Any]) -> bool:
    return all(bool(np.isfinite(v).all()) for v in point.values())


def finite_differences(
    graph: Graph,
    env: Mapping[str, Any],
    wrt: Iterable[Element],
    noise: float = 0.0,
    seed: Any = None,
) -> dict[Element, FiniteDifference]:
    """∂output/∂v for each v (a scalar variable, or one element of an array) from a 5-point
    central stencil, evaluated in float64. An output that is not a scalar is first
    contracted with `seed` (the upstream gradient).

    Steps from a quarter down to 2^-44, both absolute and relative to |v|, go through the
    graph in vectorised passes. An estimate is trusted when it agrees with both
    neighbouring step sizes; among those the one that agrees best (after rounding) is kept,
    with that disagreement as its error. Steps whose stencil crosses a kink or a pole, or
    leaves the domain, are discarded. Where no step can resolve the derivative (a huge
    output, a pole within reach, a period the steps cannot follow) the result says so, and
    the caller does not compare. `noise` is how far rounding can move the output (its
    spread, see engine.spread): a large intermediate makes differences noisy even where the
    output itself is small.
    """

    def scalar(out: Any, core: tuple[int, ...], size: int) -> np.ndarray:
        return _scalar_output(out, core, seed, size)[:, None]

    table = _stencil_table(graph, env, wrt, scalar)
    return {e: table.estimates(e, np.array([noise]))[0] for e in table.entries}


def output_differences(
    graph: Graph, env: Mapping[str, Any], wrt: Iterable[Element], noise: Any
) -> dict[Element, list[FiniteDifference]]:
    """`finite_differences` of every output element at once (a Jacobian's columns): one
    set of stencil passes serves all of them, since each pass evaluates the whole output.
    `noise` holds each output element's rounding spread; the lists follow the output's
    elements in C order."""

    def every(out: Any, core: tuple[int, ...], size: int) -> np.ndarray:
        out = np.asarray(out, dtype=np.float64)
        return np.broadcast_to(out, (size, *core)).reshape(size, -1)

    table = _stencil_table(graph, env, wrt, every)
    spread = np.asarray(noise, dtype=np.float64).ravel()
    return {e: table.estimates(e, spread) for e in table.entries}


Outputs = Any  # (output values, output core, points) -> (points, rows) in float64


@dataclass
class _Table:
    """The function values of every element's stencils, ready to estimate from."""

    entries: dict[Element, tuple[str, tuple[int, ...]]]
    offsets: dict[Element, np.ndarray]  # (steps, 4) realised offsets from the point
    centre: np.ndarray  # (rows,) the outputs at the point itself
    values: dict[Element, np.ndarray]  # (steps, 4, rows)
    crossed: dict[Element, np.ndarray]  # (steps,) the stencil crosses a branch boundary
    kink: dict[Element, bool]

    def estimates(self, e: Element, noise: np.ndarray) -> list[FiniteDifference]:
        return _estimate_rows(
            self.centre, self.values[e], self.offsets[e], self.crossed[e], self.kink[e], noise
        )


def _stencil_table(
    graph: Graph, env: Mapping[str, Any], wrt: Iterable[Element], outputs: Outputs
) -> _Table:
    """Evaluate every element's stencils in passes of at most FD_POINTS_PER_PASS
    node-elements held at once; `outputs` turns each pass's output into rows of numbers to
    estimate."""
    entries = {e: _element(e) for e in wrt}
    env = {name: np.asarray(value, dtype=np.float64) for name, value in env.items()}
    cores = engine.input_cores(graph, env)
    steps = {e: _steps(float(env[name][index])) for e, (name, index) in entries.items()}
    lifetimes = _Lifetimes(graph, cores)
    budget = max(1, FD_POINTS_PER_PASS // lifetimes.held)
    feeds = _feeds(graph, sorted({name for name, _ in entries.values()}), lifetimes.branched)
    centre = np.zeros(0)
    kink: dict[Element, bool] = dict.fromkeys(entries, False)
    rows: dict[Element, list[np.ndarray]] = {e: [] for e in entries}
    crossings: dict[Element, list[np.ndarray]] = {e: [] for e in entries}
    for group in _passes(list(entries), steps, budget):
        batch, blocks = _stencil_batch(graph, env, group, entries, steps)
        crossing = _Crossings(blocks, lambda piece, k: entries[piece[0]][0] in feeds[k])
        size = 1 + sum((hi - lo) * len(_STENCIL) for _, lo, hi in group)
        out = _evaluate_pass(graph, batch, cores, size, lifetimes, crossing.visit)
        f = outputs(out, cores[graph.output], size)
        del out, batch
        centre = np.array(f[0])
        for piece in group:
            e, lo, hi = piece
            kink[e] = kink[e] or crossing.kink[piece]
            rows[e].append(f[blocks[piece]].reshape(hi - lo, len(_STENCIL), -1))
            crossings[e].append(crossing.crossed[piece])
    offsets = {}
    for e, (name, index) in entries.items():
        x = float(env[name][index])
        with np.errstate(all="ignore"):
            offsets[e] = _stencil_points(x, steps[e]) - x
    return _Table(
        entries,
        offsets,
        centre,
        {e: np.concatenate(r) for e, r in rows.items()},
        {e: np.concatenate(c) for e, c in crossings.items()},
        kink,
    )


class _Lifetimes:
    """When each node's value can be dropped in a pass, and the most node-elements held at
    once (per point of the pass): a value lives from its node to its last consumer, the
    variables and the output for the whole pass. A chain of 10⁵ nodes holds a handful."""

    def __init__(self, graph: Graph, cores: list[tuple[int, ...]]) -> None:
        n = len(graph.nodes)
        plan = engine.plan(graph)
        last = list(range(n))  # an unused value goes at once
        for node in graph.nodes:
            for i in node.inputs:
                last[i] = node.id  # dependency order: the final write is the last use
        for k, op in enumerate(plan):
            if op is None:
                last[k] = n  # the batch holds the variables anyway; constants are small
        last[graph.output] = n
        self.last = last
        self.branched = [op is not None and op.branch is not None for op in plan]
        widths = np.array([max(1, math.prod(c)) for c in cores] if any(cores) else [1] * n)
        # held just after node k is computed: every width so far, less those dropped before
        dropped = np.bincount(np.array(last), weights=widths, minlength=n + 1)[:n]
        before = np.concatenate([[0.0], np.cumsum(dropped)[:-1]])
        self.held = max(1, int((np.cumsum(widths) - before).max(initial=0)))


def _evaluate_pass(
    graph: Graph,
    batch: Mapping[str, np.ndarray],
    cores: list[tuple[int, ...]],
    size: int,
    lifetimes: _Lifetimes,
    visit: Callable[[int, np.ndarray], None],
) -> Any:
    """engine.evaluate over one pass (the same operations on the same arguments), each value
    dropped after its last use: the output's value. `visit(node id, piece)` sees the
    branch (piece) of every piecewise node, broadcast to (size, *core), while it lives."""
    values: list[Any] = [None] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for node, op in zip(graph.nodes, engine.plan(graph), strict=True):
            k = node.id
            if op is None:
                if node.op == "input":
                    assert node.name is not None
                    values[k] = np.asarray(batch[node.name], dtype=np.float64)[()]
                else:
                    values[k] = np.asarray(node.value, dtype=np.float64)[()]
                continue
            if op.shape is None and not cores[k]:
                values[k] = op.forward(*[values[i] for i in node.inputs])
            else:
                args, ctx = engine.op_args(node, values, cores)
                values[k] = engine.apply(op, args, ctx)
            if op.branch is not None:
                args, ctx = engine.op_args(node, values, cores)
                piece = op.branch(*args) if ctx is None else op.branch(*args, ctx=ctx)
                visit(k, np.broadcast_to(np.asarray(piece), (size, *cores[k])))
            for i in node.inputs:
                if lifetimes.last[i] == k:
                    values[i] = None
            if lifetimes.last[k] == k:
                values[k] = None
    return values[graph.output]


def _feeds(graph: Graph, names: list[str], wanted: list[bool]) -> dict[int, set[str]]:
    """Of the named variables, those each `wanted` node depends on (one pass in dependency
    order, sets of variables as bits)."""
    if not any(wanted):
        return {}
    bit = {name: 1 << k for k, name in enumerate(names)}
    masks: list[int] = []
    for node in graph.nodes:
        if node.op == "input":
            masks.append(bit.get(node.name, 0) if node.name is not None else 0)
        else:
            mask = 0
            for i in node.inputs:
                mask |= masks[i]
            masks.append(mask)
    return {
        k: {name for name in names if masks[k] & bit[name]} for k, want in enumerate(wanted) if want
    }


class _Crossings:
    """The branch nodes seen in one pass, piece by piece: whether a node that moves with the
    piece (`moves(piece, node id)`) sits on its kink at the centre, and which steps'
    stencils cross a branch boundary (some point on another piece than the centre's)."""

    def __init__(self, blocks: Mapping[Piece, slice], moves: Callable[[Piece, int], bool]):
        self.blocks, self.moves = blocks, moves
        self.kink = dict.fromkeys(blocks, False)
        self.crossed = {piece: np.zeros(piece[2] - piece[1], dtype=bool) for piece in blocks}

    def visit(self, node_id: int, b: np.ndarray) -> None:
        for piece, where in self.blocks.items():
            if not self.moves(piece, node_id):
                continue
            n = piece[2] - piece[1]
            self.kink[piece] = self.kink[piece] or bool((b[0] == 0).any())
            self.crossed[piece] |= (b[where] != b[0]).reshape(n, -1).any(axis=1)


def _element(entry: Element) -> tuple[str, tuple[int, ...]]:
    return (entry, ()) if isinstance(entry, str) else entry


def _scalar_output(out: Any, core: tuple[int, ...], seed: Any, size: int) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64)
    if seed is not None:
        axes = tuple(range(out.ndim - len(core), out.ndim))
        with np.errstate(all="ignore"):
            out = np.sum(out * np.asarray(seed, dtype=np.float64), axis=axes)
    return np.broadcast_to(out, (size,))


def _steps(x: float) -> np.ndarray:
    """Step exponents e (h = 2^e), largest first: an absolute band and one relative to |x|."""
    top, bottom = -FD_BAND[0], -FD_BAND[1]
    exps = set(range(bottom, top + 1))
    if x != 0 and math.isfinite(x):
        e = math.frexp(abs(x))[1] - 1  # 2^e <= |x| < 2^(e+1)
        exps |= set(range(e + bottom, e + top + 1))
        lowest = math.frexp(math.ulp(x))[1] - 1 + 8  # keep steps at least 2^8 ulps of x
        exps = {k for k in exps if k >= lowest}
    return np.array(sorted((k for k in exps if -1074 <= k <= 1020), reverse=True))


Piece = tuple[Any, int, int]  # an element (or a direction's number) and a range of its steps


def _stencil_points(x: float, exps: np.ndarray) -> np.ndarray:
    """Each step's four neighbours of x (h = 2^e), as floating point realises them."""
    points: np.ndarray = x + np.ldexp(1.0, exps)[:, None] * _STENCIL[None, :]
    return points


def _passes(wrt: list[Any], steps: Mapping[Any, np.ndarray], budget: int) -> list[list[Piece]]:
    """Group the elements' stencils so one pass holds at most `budget` points besides the
    centre; an element whose stencil alone is wider is split by steps over several passes
    (a graph of wide arrays is evaluated a few points at a time, never all at once)."""
    per = max(1, budget // len(_STENCIL))  # steps of one element in one pass
    groups: list[list[Piece]] = []
    size = 0
    for e in wrt:
        for lo in range(0, len(steps[e]), per):
            hi = min(len(steps[e]), lo + per)
            points = (hi - lo) * len(_STENCIL)
            if not groups or size + points > budget:
                groups.append([])
                size = 0
            groups[-1].append((e, lo, hi))
            size += points
    return groups


def _stencil_batch(
    graph: Graph,
    env: Mapping[str, np.ndarray],
    group: list[Piece],
    entries: Mapping[Element, tuple[str, tuple[int, ...]]],
    steps: Mapping[Element, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[Piece, slice]]:
    """The points of one pass: the centre first, then for each piece every step's four
    neighbours."""
    size = 1 + sum((hi - lo) * len(_STENCIL) for _, lo, hi in group)
    batch = {
        name: np.broadcast_to(env[name], (size, *np.shape(env[name]))).copy()
        for name in graph.variables
    }
    blocks = {}
    start = 1
    with np.errstate(all="ignore"):
        for piece in group:
            e, lo, hi = piece
            name, index = entries[e]
            points = _stencil_points(float(env[name][index]), steps[e][lo:hi])
            blocks[piece] = slice(start, start + points.size)
            where = (blocks[piece], *index)
            batch[name][where] = points.ravel()
            start += points.size
    return batch, blocks


def _estimate_rows(
    centre: np.ndarray,
    fv: np.ndarray,
    offsets: np.ndarray,
    crossed: np.ndarray,
    kink: bool,
    noise: np.ndarray,
) -> list[FiniteDifference]:
    """One estimate per row (output element) from its stencil values fv (steps, 4, rows):
    the weights depend on the offsets alone, so they are worked out once for every row."""
    fv = np.ascontiguousarray(np.moveaxis(fv, 2, 0))  # (rows, steps, 4)
    c = np.asarray(centre, dtype=np.float64)[:, None]
    with np.errstate(all="ignore"):
        h = np.abs(offsets[:, 2])
        weights = _derivative_weights(offsets)
        estimates = (fv * weights[:, 1:]).sum(axis=2) + weights[:, 0] * c
        # The textbook stencil, summed as differences first: exact for a linear function.
        classic = (offsets == h[:, None] * _STENCIL[None, :]).all(axis=1)
        textbook = ((fv[..., 0] - fv[..., 3]) + 8 * (fv[..., 2] - fv[..., 1])) / (12 * h)
        estimates = np.where(classic, textbook, estimates)
        magnitude = np.maximum(np.abs(fv).max(axis=2), np.abs(c))
        noise_floor = np.maximum(FD_ROUNDING * EPS * magnitude, SPREAD_SLACK * noise[:, None])
        rounding = noise_floor * np.abs(weights).sum(axis=1)
        # A pole or jump inside the stencil shows as a centre value that the four outer
        # points do not predict; such a step says nothing about the derivative.
        predicted = (fv * _centre_weights(offsets)).sum(axis=2)
        smooth = np.abs(predicted - c) <= FD_CONSISTENCY * magnitude + rounding * h
        floor = FD_NEGLIGIBLE * magnitude / h  # what a step of size h cannot resolve anyway
    usable = np.isfinite(estimates) & np.isfinite(rounding) & ~crossed & (h > 0) & smooth
    return [_choose(estimates[r], rounding[r], floor[r], h, usable[r], kink) for r in range(len(c))]


def _choose(
    estimates: np.ndarray,
    rounding: np.ndarray,
    floor: np.ndarray,
    h: np.ndarray,
    usable: np.ndarray,
    kink: bool,
) -> FiniteDifference:
    """The estimate of one row from its steps' estimates (see finite_differences)."""
    if not usable.any():
        # Nothing resolvable: undefined where the function is, inconclusive where it is not.
        return FiniteDifference(None, None, None, kink, not np.isfinite(estimates).any())
    run = _plateau(estimates, rounding, floor, h, usable)
    if len(run) < FD_PLATEAU:
        i = int(np.flatnonzero(usable)[0]) if not run else run[0]
        return FiniteDifference(float(estimates[i]), None, float(h[i]), kink, False)
    best, best_err = run[0], math.inf
    for n, i in enumerate(run):
        near = [run[m] for m in (n - 1, n + 1) if 0 <= m < len(run)]
        err = max(abs(float(estimates[i]) - float(estimates[m])) for m in near) + rounding[i]
        if err < best_err:
            best, best_err = i, float(err)
    # Steps far larger than the scale the function varies on can alias it into a plateau
    # of their own (sin at 1e16, where no step under 2^8 ulps exists). Every smaller step
    # must then agree with the plateau, or differ by no more than its rounding explains.
    value = float(estimates[best])
    for i in range(run[-1] + 1, len(h)):
        if not usable[i]:
            continue
        gap = abs(float(estimates[i]) - value)
        if gap > max(FD_AGREEMENT * abs(value), floor[i]) + 2 * rounding[i] + best_err:
            return FiniteDifference(value, None, float(h[best]), kink, False)
    return FiniteDifference(value, best_err, float(h[best]), kink, True)


def _plateau(
    estimates: np.ndarray,
    rounding: np.ndarray,
    floor: np.ndarray,
    h: np.ndarray,
    usable: np.ndarray,
) -> list[int]:
    """A run of consecutive step sizes whose estimates agree pairwise (to 1%, or within what
    the steps cannot resolve, after rounding): the true derivative shows as such a plateau
    between steps too large (truncation) and too small (rounding). Steps far too large can
    form a plateau of their own when they alias a fast oscillation, so the run of at least
    FD_PLATEAU steps with the smallest steps is taken; failing that, the longest run."""
    runs: list[list[int]] = []
    for i in range(len(h)):
        if not usable[i]:
            continue
        if runs and runs[-1][-1] == i - 1:
            j = i - 1
            diff = abs(float(estimates[i]) - float(estimates[j])) + rounding[i] + rounding[j]
            scale = FD_AGREEMENT * max(abs(float(estimates[i])), abs(float(estimates[j])))
            if abs(h[j] / h[i] - 2.0) < 0.5 and diff <= max(scale, floor[i], floor[j]):
                runs[-1].append(i)
                continue
        runs.append([i])
    long_enough = [run for run in runs if len(run) >= FD_PLATEAU]
    if long_enough:
        return long_enough[-1]  # steps are sorted largest first
    return max(runs, key=len, default=[])


def _centre_weights(offsets: np.ndarray) -> np.ndarray:
    """Weights that predict f(x) from the four outer points (exact to degree 3)."""
    return _stencil_weights(offsets, 0, _CLASSIC_CENTRE, centre=False)


def _derivative_weights(offsets: np.ndarray) -> np.ndarray:
    """Weights w with f'(x) ≈ w0·f(x) + Σ w_i·f(x + t_i) for the realised offsets t_i:
    the derivative at 0 of the polynomial through the five points (exact to degree 4)."""
    h = np.abs(offsets[:, 2:3])
    with np.errstate(all="ignore"):
        weights: np.ndarray = _stencil_weights(offsets, 1, _CLASSIC_DERIVATIVE, centre=True) / h
    return weights


# Where the offsets came out exactly -2h, -h, h, 2h, the textbook weights (in units of h).
_CLASSIC_DERIVATIVE = np.array([0.0, 1.0, -8.0, 8.0, -1.0]) / 12.0
_CLASSIC_CENTRE = np.array([-1.0, 4.0, 4.0, -1.0]) / 6.0


def _stencil_weights(
    offsets: np.ndarray, order: int, classic: np.ndarray, centre: bool
) -> np.ndarray:
    """Interpolation weights (in units of h) for the value (order 0) or the first
    derivative (order 1) at 0, from the points at `offsets` (and 0 when `centre`)."""
    h = np.abs(offsets[:, 2:3])
    with np.errstate(all="ignore"):
        tau = offsets / h
    if centre:
        tau = np.concatenate([np.zeros_like(h), tau], axis=1)
    n = tau.shape[1]
    weights = np.full((len(tau), n), np.nan)
    exact = (offsets == h * _STENCIL[None, :]).all(axis=1) & (h[:, 0] > 0)
    weights[exact] = classic
    rest = ~exact & np.isfinite(tau).all(axis=1) & (h[:, 0] > 0)
    if rest.any():
        vander = tau[rest][:, None, :] ** np.arange(n)[None, :, None]
        rhs = np.zeros((int(rest.sum()), n, 1))
        rhs[:, order, 0] = 1.0
        weights[rest] = np.linalg.solve(vander, rhs)[:, :, 0]
    return weights


def _branches(
    graph: Graph, values: list[Any], cores: list[tuple[int, ...]], size: int
) -> dict[int, np.ndarray]:
    found = {}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op in ops.LEAVES or ops.OPS[node.op].branch is None:
                continue
            branch = ops.OPS[node.op].branch
            assert branch is not None
            args, ctx = engine.op_args(node, values, cores)
            piece = branch(*args) if ctx is None else branch(*args, ctx=ctx)
            found[node.id] = np.broadcast_to(np.asarray(piece), (size, *cores[node.id]))
    return found


# ---- finite differences along random directions ----------------------------------------

# Element by element, finite differences evaluate the whole graph at 4 points × 43-90
# steps for every element checked: elements × (node-elements of one evaluation) grows as
# n² for a graph of n scalar variables. Past this product the check moves all elements at
# once along a few random directions instead (as torch's fast gradcheck and JAX's
# check_grads do), which costs what a few elements would.
FD_ELEMENTWISE_LIMIT = 1_000_000
FD_DIRECTIONS = 3
FD_DIRECTION_SEED = 0  # the directions are random, but the same on every run
FD_RESOLUTION = 1e-3  # the estimate must resolve the derivative to 0.1% to judge it
FD_STEP_ULPS = 2.0**8  # every moved coordinate moves by at least this many of its ulps


def directional_wanted(elements: int, width: int) -> bool:
    """Whether checking `elements` partials one by one, in a graph of `width`
    node-elements per evaluation, is past FD_ELEMENTWISE_LIMIT."""
    return elements > FD_DIRECTIONS and elements * width > FD_ELEMENTWISE_LIMIT


@dataclass(frozen=True)
class Direction:
    engine: float  # the engine's gradient · u
    estimate: FiniteDifference  # d/dt f(x + t·u) at t = 0
    status: str  # as a partial's finite-difference status: ok, mismatch, inconclusive, …


@dataclass(frozen=True)
class Directional:
    elements: int  # the elements every direction moves
    seed: int
    directions: list[Direction]
    kinked: list[str]  # variables left out: they feed a node evaluated on its kink


def directional_differences(
    graph: Graph,
    env: Mapping[str, Any],
    wrt: list[str],
    gradient: Mapping[str, Any],
    tolerance: tuple[float, float],
    noise: float = 0.0,
    seed: Any = None,
    spread: Mapping[str, Any] | None = None,
) -> Directional:
    """The engine's gradient checked along FD_DIRECTIONS random unit directions u over every
    element of the `wrt` variables: g·u against the derivative of t ↦ f(x + t·u) at 0, from
    the same 5-point stencil, steps and plateau as `finite_differences`. A wrong partial
    ∂f/∂x_i shifts g·u by its error times u_i = ±1/√n, so each direction sees every
    element's error (signs drawn ±1, none left near zero). A variable that feeds a node
    evaluated on its kink stays put (its one-sided derivatives differ, as element by element
    it is not compared). `spread` holds the engine gradient's rounding spread per variable;
    `tolerance` is (rtol, atol)."""
    env = {name: np.asarray(value, dtype=np.float64) for name, value in env.items()}
    kinked = _kinked_variables(graph, env, wrt)
    moved = [name for name in wrt if name not in kinked]
    if not moved:
        return Directional(0, FD_DIRECTION_SEED, [], kinked)
    x = np.concatenate([env[name].ravel() for name in moved])
    g = np.concatenate([np.asarray(gradient[name], dtype=np.float64).ravel() for name in moved])
    rng = np.random.default_rng(FD_DIRECTION_SEED)
    units = rng.choice([-1.0, 1.0], size=(FD_DIRECTIONS, len(x))) / math.sqrt(len(x))
    exps = _direction_steps(x, float(np.min(np.abs(units))))
    scan = _DirectionScan(graph, env, moved, x, units, exps, seed)
    with np.errstate(all="ignore"):
        # f is evaluated where x + t·u rounds to, not on the line itself: the first-order
        # change that rounding makes, Σ|g_i|·|rounding_i|, counts as noise in f.
        noise = noise + float(np.nansum(np.abs(g) * scan.rounding))
    nominal = np.ldexp(1.0, exps)[:, None] * _STENCIL[None, :]
    spreads = _flat_spread(spread, env, moved)
    directions = []
    for d, u in enumerate(units):
        estimate = _estimate_rows(
            scan.centre, scan.values[d], nominal, scan.crossed[d], scan.kink, np.array([noise])
        )[0]
        engine_value, slack = _along(g, u, spreads)
        status = _direction_status(engine_value, estimate, slack, tolerance, scan.finite)
        directions.append(Direction(engine_value, estimate, status))
    return Directional(len(x), FD_DIRECTION_SEED, directions, kinked)


def _kinked_variables(graph: Graph, env: Mapping[str, np.ndarray], wrt: list[str]) -> list[str]:
    cores = engine.input_cores(graph, env)
    values = engine.evaluate(graph, env, np.float64, cores=cores)
    feeds = _feeding(graph, engine.kinks(graph, values, cores))
    return [name for name in wrt if name in feeds]


# graph.depends_on holds a set per node: n² names for a chain over n variables. The
# directional check, made for such graphs, asks one question at a time in one pass instead.


def _feeding(graph: Graph, nodes: list[int]) -> set[str]:
    """The variables that the given nodes depend on (a pass over reversed ids)."""
    reach = [False] * len(graph.nodes)
    for k in nodes:
        reach[k] = True
    names = set()
    for node in reversed(graph.nodes):
        if reach[node.id]:
            for i in node.inputs:
                reach[i] = True
            if node.op == "input" and node.name is not None:
                names.add(node.name)
    return names


def _depending(graph: Graph, names: set[str]) -> list[bool]:
    """Which nodes depend on any of the named variables (a pass in dependency order)."""
    found: list[bool] = []
    for node in graph.nodes:
        found.append(
            node.name in names if node.op == "input" else any(found[i] for i in node.inputs)
        )
    return found


def _direction_steps(x: np.ndarray, smallest: float) -> np.ndarray:
    """`_steps` of the largest coordinate, without the steps that would move a coordinate
    by less than FD_STEP_ULPS of its ulps (each moves by t·|u_i| = t/√n)."""
    finite = np.abs(x[np.isfinite(x)])
    scale = float(finite.max()) if finite.size else 0.0
    exps = _steps(scale)
    ulp = math.ulp(scale) if scale else 0.0
    kept: np.ndarray = exps[np.ldexp(1.0, exps) * smallest >= FD_STEP_ULPS * ulp]
    return kept


def _along(g: np.ndarray, u: np.ndarray, spread: np.ndarray) -> tuple[float, float]:
    """g·u summed exactly (math.fsum, so only the products round), and how far the
    engine's own rounding can move it: its spread along u plus the products' rounding."""
    with np.errstate(all="ignore"):
        products = g * u
        value = math.fsum(products) if np.isfinite(products).all() else float(np.sum(products))
        slack = EPS * float(np.sum(np.abs(products)))
        slack += SPREAD_SLACK * float(np.sum(spread * np.abs(u)))
    return value, slack if math.isfinite(slack) else 0.0


def _flat_spread(
    spread: Mapping[str, Any] | None, env: Mapping[str, np.ndarray], names: list[str]
) -> np.ndarray:
    """The gradient's spread of each moved element, in the order of x (0 where unknown)."""
    parts = []
    for name in names:
        given = None if spread is None else spread.get(name)
        s = np.abs(np.asarray(0.0 if given is None else given, dtype=np.float64))
        parts.append(np.broadcast_to(s, np.shape(env[name])).ravel())
    return np.concatenate(parts)


def _direction_status(
    engine_value: float,
    estimate: FiniteDifference,
    slack: float,
    tolerance: tuple[float, float],
    output_finite: bool,
) -> str:
    """As a single partial is judged (report._fd_status), for one direction."""
    if estimate.kink:
        return "kink"
    if estimate.value is None:
        return "undefined" if estimate.reliable else "inconclusive"
    if not math.isfinite(engine_value):
        if math.isnan(engine_value) and output_finite:
            return "convention"  # autograd's nan: a non-finite local derivative times 0
        if not output_finite:
            return "undefined"
    rtol, atol = tolerance
    err = estimate.error_estimate if estimate.error_estimate is not None else math.inf
    scale = max(abs(engine_value), abs(estimate.value)) if math.isfinite(engine_value) else 0.0
    if not estimate.reliable or err > FD_RESOLUTION * scale + atol:
        return "inconclusive"
    return judge(engine_value, estimate.value, rtol, atol, 2 * err + slack)


class _DirectionScan:
    """The stencil values of every direction, in passes of at most FD_POINTS_PER_PASS
    node-elements held at once: `values[d]` is (steps, 4, 1), `crossed[d]` (steps,)."""

    def __init__(
        self,
        graph: Graph,
        env: dict[str, np.ndarray],
        wrt: list[str],
        x: np.ndarray,
        units: np.ndarray,
        exps: np.ndarray,
        seed: Any,
    ) -> None:
        self.graph, self.env, self.wrt, self.x, self.units = graph, env, wrt, x, units
        self.cores = engine.input_cores(graph, env)
        self.rounding = np.zeros_like(x)
        self.kink, self.finite = False, True
        self.centre = np.zeros(1)
        self.exps = exps
        self.lifetimes = _Lifetimes(graph, self.cores)
        budget = max(1, FD_POINTS_PER_PASS // self.lifetimes.held)
        steps = dict.fromkeys(range(len(units)), exps)
        rows: dict[int, list[np.ndarray]] = {d: [] for d in steps}
        crossings: dict[int, list[np.ndarray]] = {d: [] for d in steps}
        touched = _depending(graph, set(wrt))
        for group in _passes(list(steps), steps, budget):
            f, crossing = self._pass(group, seed, lambda piece, k: touched[k])
            self.kink = self.kink or any(crossing.kink.values())
            self.centre = np.array(f[:1])
            self.finite = bool(np.isfinite(f[0]))
            for piece, where in crossing.blocks.items():
                d, lo, hi = piece
                rows[int(d)].append(f[where].reshape(hi - lo, len(_STENCIL), 1))
                crossings[int(d)].append(crossing.crossed[piece])
        self.values = {d: np.concatenate(r) for d, r in rows.items()}
        self.crossed = {d: np.concatenate(c) for d, c in crossings.items()}

    def _pass(
        self, group: list[Piece], seed: Any, moves: Callable[[Piece, int], bool]
    ) -> tuple[np.ndarray, _Crossings]:
        """One pass: the centre, then each piece's points x + t·u (t = ±h, ±2h)."""
        size = 1 + sum((hi - lo) * len(_STENCIL) for _, lo, hi in group)
        points = np.broadcast_to(self.x, (size, len(self.x))).copy()
        blocks = {}
        start = 1
        with np.errstate(all="ignore"):
            for piece in group:
                d, lo, hi = piece
                t = (np.ldexp(1.0, self.exps[lo:hi])[:, None] * _STENCIL[None, :]).ravel()
                where = slice(start, start + len(t))
                step = t[:, None] * self.units[int(d)][None, :]
                points[where] = self.x + step
                moved = np.abs((points[where] - self.x) - step).max(axis=0)
                self.rounding = np.maximum(self.rounding, moved)
                blocks[piece] = where
                start += len(t)
        batch = self._batch(points, size)
        crossing = _Crossings(blocks, moves)
        out = _evaluate_pass(self.graph, batch, self.cores, size, self.lifetimes, crossing.visit)
        f = _scalar_output(out, self.cores[self.graph.output], seed, size)
        return f, crossing

    def _batch(self, points: np.ndarray, size: int) -> dict[str, np.ndarray]:
        """Every variable at every point: the moved ones from `points`, the rest fixed."""
        batch: dict[str, np.ndarray] = {}
        columns = np.ascontiguousarray(points.T)  # one row per element: a scalar's is a view
        offset = 0
        for name in self.wrt:
            shape = np.shape(self.env[name])
            n = math.prod(shape)
            batch[name] = columns[offset] if not shape else columns[offset : offset + n].T
            batch[name] = batch[name].reshape(size, *shape)
            offset += n
        for name in self.graph.variables:
            if name not in batch:
                batch[name] = np.broadcast_to(self.env[name], (size, *np.shape(self.env[name])))
        return batch


def directional_summary(result: Directional, tolerance: tuple[float, float]) -> dict[str, Any]:
    """The finite-difference check's summary (JSON) in directional mode: the keys of the
    element-by-element summary, with directions in place of partials, and the directions
    themselves under `along`."""
    rtol, atol = tolerance
    names = [f"direction {k + 1}" for k in range(len(result.directions))]
    judged = [(n, d) for n, d in zip(names, result.directions, strict=True)]
    compared = [(n, d) for n, d in judged if d.status in ("ok", "mismatch")]
    return {
        "rtol": rtol,
        "atol": atol,
        "method": "5-point central",
        "mode": "directional",
        "directions": len(result.directions),
        "elements": result.elements,
        "direction_seed": result.seed,
        "ok": all(d.status == "ok" for _, d in compared) if compared else None,
        "skipped": None if compared else "nothing comparable",
        "compared": len(compared),
        "max_error": max((abs_error(d.engine, d.estimate.value) for _, d in compared), default=0.0),
        "mismatches": [n for n, d in compared if d.status != "ok"],
        "not_compared": {
            **dict.fromkeys(result.kinked, "kink"),
            **{n: d.status for n, d in judged if d.status not in ("ok", "mismatch")},
        },
        "along": [
            {
                "direction": n,
                "engine": d.engine,
                "finite_difference": d.estimate.value,
                "fd_error_estimate": d.estimate.error_estimate,
                "step": d.estimate.step,
                "status": d.status,
            }
            for n, d in judged
        ],
    }
