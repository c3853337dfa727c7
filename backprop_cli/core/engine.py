"""The numeric interpreter: a forward loop over the graph in numpy and a reverse sweep over
`reversed(graph.nodes)` that accumulates cotangents with += on fan-out.

Values may be scalars or arrays of points (the finite-difference check evaluates many
perturbed points in one sweep). Domain problems and kinks are recorded per node, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops, shapes
from .dual import Dual
from .errors import BackpropError, ParseError
from .graph import Graph, Node

Array = Any

DTYPES: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}


Cores = list[tuple[int, ...]]  # each node's core shape: its value's shape at one point


@dataclass(frozen=True)
class Issue:
    """A value or gradient that turned NaN/inf at a node whose inputs were finite."""

    node: int
    where: str  # "value" or "grad"
    message: str


@dataclass
class Trace:
    values: list[Array]
    grads: list[Array | None]  # None: the node depends on no variable (a constant)
    issues: list[Issue] = field(default_factory=list)
    kinks: list[int] = field(default_factory=list)  # nodes evaluated exactly on a kink
    cores: Cores = field(default_factory=list)  # each node's shape


def _finite(x: Array) -> bool:
    if isinstance(x, float):  # a scalar node's value (np.float64 is a float): no array pass
        return math.isfinite(x)
    return bool(np.isfinite(x).all())


def _describe(x: Array) -> str:
    if np.ndim(x) == 0:
        text = repr(float(x))
        return text[:-2] if text.endswith(".0") else text
    return f"array{np.shape(x)}"


def _nonfinite_word(x: Array) -> str:
    arr = np.asarray(x)
    if np.isnan(arr).any():
        return "nan"
    return "-inf" if (np.isneginf(arr)).any() and not np.isposinf(arr).any() else "inf"


@dataclass(frozen=True)
class Step:
    """One += of the reverse sweep: wire k of `node` adds `contribution` (computed from the
    node's upstream gradient `upstream`) into its input, whose gradient is then `total`."""

    node: int
    k: int
    upstream: Array
    contribution: Array
    total: Array


Jitter = Callable[[Array, int], Array]  # (value, its core's number of axes) -> value


def input_cores(graph: Graph, env: Mapping[str, Array]) -> Cores:
    """Core shapes when every value in env is one point (no batch axes)."""
    return shapes.infer(
        graph,
        {name: np.shape(env[name]) for name in graph.variables if name in env},
        budget=False,  # the reports check the budget first; training data may be large
    )


def _align(x: Array, core: tuple[int, ...], nd: int) -> Array:
    """x (batch axes, then core) with its core padded by leading 1s to nd axes, so numpy
    lines up core axes with core axes and batch axes with batch axes."""
    pad = nd - len(core)
    if pad == 0:
        return x
    shape = np.shape(x)
    batch = len(shape) - len(core)
    return x if batch == 0 else np.reshape(x, shape[:batch] + (1,) * pad + core)


def op_args(node: Node, values: list[Array], cores: Cores) -> tuple[list[Array], ops.Ctx | None]:
    """An op node's arguments as its op takes them: lined up for an elementwise op, with a
    Ctx for an array op."""
    args = [values[i] for i in node.inputs]
    op = ops.OPS[node.op]
    if op.elementwise:
        nd = len(cores[node.id])
        if nd == 0:  # scalars (perhaps with batch axes) line up as they are
            return args, None
        return [_align(a, cores[i], nd) for a, i in zip(args, node.inputs, strict=True)], None
    ctx = ops.Ctx(
        tuple(np.ndim(a) - len(cores[i]) for a, i in zip(args, node.inputs, strict=True)),
        tuple(cores[i] for i in node.inputs),
        cores[node.id],
        node.params,
    )
    return args, ctx


def plan(graph: Graph) -> list[ops.Op | None]:
    """Each node's registry op (None for an input or a constant), looked up once per graph."""

    def compute() -> list[ops.Op | None]:
        return [None if node.op in ops.LEAVES else ops.OPS[node.op] for node in graph.nodes]

    return list(graph.fact("plan", compute))


def apply(op: ops.Op, args: list[Array], ctx: ops.Ctx | None) -> Array:
    if op.branch is not None and op.elementwise and any(isinstance(a, Dual) for a in args):
        return _piecewise_on_duals(op, args)
    return op.forward(*args) if ctx is None else op.forward(*args, ctx=ctx)


def _piecewise_on_duals(op: ops.Op, args: list[Array]) -> Dual:
    """A piecewise op on dual numbers, its tangent taken by the op's own derivative rule: on a
    kink or a tie, second derivatives then use the same subgradient as the gradient (torch's),
    not whichever piece numpy's forward happens to pick."""
    values = [a.value if isinstance(a, Dual) else a for a in args]
    out = op.forward(*values)
    tangent = np.zeros(np.shape(out))
    with np.errstate(all="ignore"):
        for k, a in enumerate(args):
            if isinstance(a, Dual):
                t = np.broadcast_to(a.tangent, np.shape(out))
                # elementwise, so the rule applied to the tangent is the derivative along it
                tangent = tangent + np.where(t == 0, 0.0, op.vjp[k](t, out, *values))
    return Dual(out, tangent)


def evaluate(
    graph: Graph,
    env: Mapping[str, Array],
    dtype: type[np.floating[Any]] = np.float64,
    issues: list[Issue] | None = None,
    jitter: Jitter | None = None,
    cores: Cores | None = None,
) -> list[Array]:
    """The forward pass: one value per node, in dependency order. Values in env may carry
    leading batch axes in front of their `cores` (one point's shapes; by default env holds
    one point). `jitter`, when given, perturbs every op's result (see `spread`)."""
    if cores is None:
        cores = input_cores(graph, env)
    duals = any(isinstance(v, Dual) for v in env.values())
    values: list[Array] = []
    with np.errstate(all="ignore"):
        for node, op in zip(graph.nodes, plan(graph), strict=True):
            if op is None:
                if node.op == "input":
                    assert node.name is not None
                    given = env[node.name]
                    value = given if isinstance(given, Dual) else np.asarray(given, dtype=dtype)[()]
                else:
                    value = np.asarray(node.value, dtype=dtype)[()]
                values.append(value)
                continue
            ctx = None
            if op.shape is None and not cores[node.id] and (op.branch is None or not duals):
                # elementwise on scalars (perhaps with batch axes): arguments line up as
                # they are, and no dual number needs the piecewise rule
                args = [values[i] for i in node.inputs]
                value = op.forward(*args)
            else:
                args, ctx = op_args(node, values, cores)
                value = apply(op, args, ctx)
            if issues is not None and not _finite(value) and all(map(_finite, args)):
                issues.append(Issue(node.id, "value", _domain_message(op, args, ctx)))
            if jitter is not None:
                value = jitter(value, len(cores[node.id]))
            values.append(value)
    return values


def _domain_message(op: ops.Op, args: list[Array], ctx: ops.Ctx | None) -> str:
    shown = ", ".join(_describe(a) for a in args)
    word = "undefined (nan)" if _nonfinite_word(apply(op, args, ctx)) == "nan" else "infinite"
    where = f" (defined for {op.domain})" if op.domain else " (overflow)"
    return f"{op.name}({shown}) is {word}{where}"


def requires_grad(graph: Graph) -> list[bool]:
    """A node needs a gradient when it depends on at least one variable (a graph fact)."""

    def compute() -> list[bool]:
        needs: list[bool] = []
        for node in graph.nodes:
            needs.append(node.op == "input" or any(needs[i] for i in node.inputs))
        return needs

    return list(graph.fact("requires_grad", compute))


def unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum a cotangent over the axes that broadcasting added or stretched."""
    if np.shape(g) == shape:
        return g
    if not isinstance(g, Dual):
        g = np.asarray(g)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g[()]


def backward(
    graph: Graph,
    values: list[Array],
    seed: Array = 1.0,
    issues: list[Issue] | None = None,
    jitter: Jitter | None = None,
    cores: Cores | None = None,
    record: list[Step] | None = None,
) -> list[Array | None]:
    """The reverse sweep: ∂output/∂node for every node that depends on a variable (zero
    where the output does not depend on it), each with its node's shape. `seed` is the
    upstream gradient of the output (1 for a scalar). `jitter`, when given, perturbs every
    contribution (see `spread`). `record`, when given, receives every += as it happens."""
    if cores is None:
        cores = [np.shape(v) for v in values]
    needs = requires_grad(graph)
    grads: list[Array | None] = [None] * len(graph.nodes)
    out = graph.output
    dtype = np.result_type(values[out])
    if needs[out]:
        grads[out] = np.broadcast_to(np.asarray(seed, dtype=dtype), np.shape(values[out]))[()]
    steps = plan(graph)
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: out + 1]):
            g = grads[node.id]
            op = steps[node.id]
            if g is None or op is None:
                continue
            simple = op.shape is None and not cores[node.id]
            if simple:  # elementwise on scalars: arguments as they are (see evaluate)
                args, ctx = [values[i] for i in node.inputs], None
            else:
                args, ctx = op_args(node, values, cores)
            out_value = values[node.id]
            for k, i in enumerate(node.inputs):
                if not needs[i]:
                    continue
                if simple:
                    contrib = op.vjp[k](g, out_value, *args)
                    shape = getattr(values[i], "shape", ())  # np.shape, without its dispatch
                    if getattr(contrib, "shape", ()) != shape:
                        contrib = _fit(contrib, shape, shape)
                    elif isinstance(contrib, (np.ndarray, Dual)):
                        contrib = contrib[()]
                else:
                    contrib = _contribution(op, k, g, out_value, args, ctx, np.shape(values[i]))
                if jitter is not None:
                    contrib = jitter(contrib, len(cores[i]))
                # (only reports ask for issues: the check costs a pass over each array)
                broke = issues is not None and not _finite(contrib)
                if broke and _finite(g) and all(map(_finite, args)):
                    assert issues is not None
                    issues.append(_gradient_issue(node.id, op, k, args, contrib))
                prev = grads[i]
                grads[i] = contrib if prev is None else prev + contrib
                if record is not None:
                    record.append(Step(node.id, k, g, contrib, grads[i]))
    for i, need in enumerate(needs):
        if need and grads[i] is None:  # depends on a variable, but the output does not
            grads[i] = np.zeros(np.shape(values[i]), dtype=dtype)[()]
    return grads


def _contribution(
    op: ops.Op,
    k: int,
    g: Array,
    out: Array,
    args: list[Array],
    ctx: ops.Ctx | None,
    shape: tuple[int, ...],
) -> Array:
    """What input k receives from a node whose gradient is g: its VJP, in the input's shape."""
    contrib = op.vjp[k](g, out, *args) if ctx is None else op.vjp[k](g, out, *args, ctx=ctx)
    return _fit(contrib, np.shape(args[k]), shape)


def wire_gradients(graph: Graph, trace: Trace) -> dict[tuple[int, int], Array]:
    """The gradient flowing back along each wire (node, input position) of a trace."""
    needs = requires_grad(graph)
    flows: dict[tuple[int, int], Array] = {}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            g = trace.grads[node.id]
            if g is None or node.op in ops.LEAVES:
                continue
            op = ops.OPS[node.op]
            args, ctx = op_args(node, trace.values, trace.cores)
            for k, i in enumerate(node.inputs):
                if needs[i]:
                    shape = np.shape(trace.values[i])
                    out = trace.values[node.id]
                    flows[(node.id, k)] = _contribution(op, k, g, out, args, ctx, shape)
    return flows


def _fit(contrib: Array, aligned: tuple[int, ...], shape: tuple[int, ...]) -> Array:
    """A cotangent summed over the axes broadcasting added or stretched, in the input's
    shape."""
    contrib = unbroadcast(contrib, aligned)
    if np.shape(contrib) != aligned:
        contrib = np.broadcast_to(contrib, aligned)
    if aligned != shape:
        contrib = np.reshape(contrib, shape)
    return contrib[()] if isinstance(contrib, (np.ndarray, Dual)) else contrib


def _gradient_issue(node_id: int, op: ops.Op, k: int, args: list[Array], contrib: Array) -> Issue:
    which = "" if op.arity == 1 else f" (input {k + 1})"
    shown = ", ".join(_describe(a) for a in args)
    return Issue(
        node_id,
        "grad",
        f"the gradient through {op.name}{which} is {_nonfinite_word(contrib)} at ({shown})",
    )


def kinks(graph: Graph, values: list[Array], cores: Cores | None = None) -> list[int]:
    """Nodes of piecewise ops evaluated exactly where the pieces meet."""
    if cores is None:
        cores = [np.shape(v) for v in values]
    found = []
    for node, op in zip(graph.nodes, plan(graph), strict=True):
        branch = None if op is None else op.branch
        if branch is not None:
            args, ctx = op_args(node, values, cores)
            with np.errstate(all="ignore"):
                piece = branch(*args) if ctx is None else branch(*args, ctx=ctx)
                if (np.asarray(piece) == 0).any():
                    found.append(node.id)
    return found


def run(
    graph: Graph,
    env: Mapping[str, Array],
    dtype: str = "float64",
    seed: Array = 1.0,
    record: list[Step] | None = None,
) -> Trace:
    """Forward, backward, and the notes a report needs (`record`: as in `backward`)."""
    issues: list[Issue] = []
    cores = input_cores(graph, env)
    values = evaluate(graph, env, DTYPES[dtype], issues, cores=cores)
    grads = backward(graph, values, seed, issues, cores=cores, record=record)
    return Trace(values, grads, issues, kinks(graph, values, cores), cores)


def local_partials(graph: Graph, values: list[Array]) -> list[tuple[Array, ...]]:
    """∂node/∂input_k for every edge: an elementwise op's vector-Jacobian product of 1 (so
    kinks get torch's subgradient here too). Leaves have none."""
    local: list[tuple[Array, ...]] = []
    cores: Cores = [np.shape(v) for v in values]
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op in ops.LEAVES:
                local.append(())
                continue
            op = ops.OPS[node.op]
            args, ctx = op_args(node, values, cores)
            one = np.ones_like(np.asarray(values[node.id]))[()]
            if ctx is None:
                local.append(tuple(rule(one, values[node.id], *args) for rule in op.vjp))
            else:  # an array op on numbers (sum(x) of a scalar x): its rule takes a Ctx
                local.append(tuple(rule(one, values[node.id], *args, ctx=ctx) for rule in op.vjp))
    return local


def tangents(
    graph: Graph, values: list[Array], local: list[tuple[Array, ...]], variable: str
) -> list[Array]:
    """Forward accumulation: ∂node/∂variable for every node, in one sweep in dependency
    order (the tangent of each input is 1 for `variable` and 0 for the others)."""
    dots: list[Array] = []
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op in ops.LEAVES:
                dots.append(
                    np.float64(1.0 if node.name == variable and node.op == "input" else 0.0)
                )
                continue
            total: Array = np.float64(0.0)
            for k, i in enumerate(node.inputs):
                if dots[i] != 0:  # skip exact zeros, so 0 · inf does not turn into nan
                    total = total + local[node.id][k] * dots[i]
            dots.append(total)
    return dots


SPREAD_COPIES = 8
SPREAD_COPIES_LARGE = 2  # for graphs over SPREAD_LARGE elements: memory, not variety, binds
SPREAD_LARGE = 1_000_000
SPREAD_ULPS = 16


class _Draws:
    """Numbers spread evenly over [-1, 1) in a fixed order (a golden-ratio Weyl sequence):
    the jitter needs variety, not randomness, and this keeps numpy.random out of start-up.

    `factors` hands out the multipliers 1 + scale·u of the next n draws and sets the n
    after them aside (`second` gives those), computed a block at a time: a graph of
    scalars asks for a few draws per node."""

    BLOCK = 1 << 15

    def __init__(self, scale: float = 0.0, dtype: Any = np.float64) -> None:
        self.k = 0  # the next draw
        self.scale, self.dtype = scale, dtype
        self.start = self.end = 0  # the block holds draws start … end - 1
        self.block = self.multipliers = np.zeros(0)

    @staticmethod
    def _draws(k: int, n: int) -> np.ndarray:
        index = np.arange(k, k + n, dtype=np.float64)
        return 2.0 * np.modf(0.5 + index * 0.6180339887498949)[0] - 1.0

    def _refill(self, k: int) -> None:
        self.start, self.end = k, k + self.BLOCK
        self.block = self._draws(k, self.BLOCK)
        self.multipliers = (1 + self.scale * self.block).astype(self.dtype)

    def factors(self, shape: tuple[int, ...]) -> np.ndarray:
        n = math.prod(shape)
        k = self.k
        self.k = k + 2 * n
        if 2 * n > self.BLOCK:
            return (1 + self.scale * self._draws(k, n)).astype(self.dtype).reshape(shape)
        if k + 2 * n > self.end:
            self._refill(k)
        at = k - self.start
        found = self.multipliers[at : at + n]
        return found if len(shape) == 1 else found.reshape(shape)

    def second(self, shape: tuple[int, ...]) -> np.ndarray:
        """The draws set aside by the last `factors`."""
        n = math.prod(shape)
        k = self.k - n
        if 2 * n > self.BLOCK:
            return self._draws(k, n).reshape(shape)
        at = k - self.start
        return self.block[at : at + n].reshape(shape)


def spread(
    graph: Graph,
    env: Mapping[str, Array],
    trace: Trace,
    dtype: str = "float64",
    seed: Array = 1.0,
) -> tuple[list[Array], list[Array | None]]:
    """How far each node's value and gradient (each element of them) move when every
    operation is off by a few units in the last place, as two correct libraries (numpy and
    torch, say) can be.

    The graph is re-run on a few copies whose every op result and backward contribution is
    multiplied by 1 + δ, |δ| ≤ SPREAD_ULPS·ε, with a fixed seed (so reports are
    deterministic); the spread is the largest move from the unperturbed trace. An
    ill-conditioned number (a cancellation, a pole) gets a large spread; a number that
    turns nan under perturbation gets inf.

    The copies are one batched run: a leading axis of copies on every value, so each node
    costs one numpy call for all of them.
    """
    dt = DTYPES[dtype]
    cores = trace.cores or input_cores(graph, env)
    large = any(cores) and shapes.cost(graph, cores)[0] > SPREAD_LARGE  # wide arrays
    copies = SPREAD_COPIES_LARGE if large else SPREAD_COPIES
    batch = {
        name: np.broadcast_to(np.asarray(value, dtype=dt), (copies, *np.shape(value)))
        for name, value in env.items()
    }
    jitter = _jitter(dt, copies)
    with np.errstate(all="ignore"):
        values = evaluate(graph, batch, dt, jitter=jitter, cores=cores)
        grads = backward(graph, values, seed, jitter=jitter, cores=cores)
    return _all_moved(values, trace.values), _all_moved(grads, trace.grads)


def _jitter(dt: Any, copies: int) -> Jitter:
    """Every op result times 1 + δ, a draw apiece for every element (cancellations inside an
    array show too); a subnormal result moves by whole units of the smallest one instead.
    Each result takes twice its size in draws (the second half only for a subnormal)."""
    info = np.finfo(dt)
    rng = _Draws(SPREAD_ULPS * float(info.eps), dt)
    tiny, unit = dt(info.tiny), dt(info.smallest_subnormal)
    least, most = np.minimum.reduce, np.maximum.reduce

    def jitter(x: Array, core: int) -> Array:
        shape = np.shape(x)
        if len(shape) == core:  # a value computed from constants alone: give it copies
            shape = (copies, *shape)
            x = np.broadcast_to(x, shape)
        out = x * rng.factors(shape)  # an array: the copies are its first axis
        # Subnormals are rare: most results show at a glance that they hold none.
        if least(x, None) > tiny or most(x, None) < -tiny or not x.any():
            return out
        # A subnormal keeps only a few digits: it is off by whole units of the smallest one.
        subnormal = (x != 0) & (np.abs(x) < tiny)
        if not subnormal.any():
            return out
        steps = (SPREAD_ULPS * rng.second(shape)).astype(dt) * unit
        return np.where(subnormal, out + steps, out)

    return jitter


def _all_moved(perturbed: list[Array], base: list[Array]) -> list[Any]:
    """`_moved` for every node, the scalar ones (most nodes of a long graph) in one pass."""
    moved: list[Any] = [None] * len(base)
    scalars = []
    for i, (p, b) in enumerate(zip(perturbed, base, strict=True)):
        if p is None or b is None:
            continue
        one = isinstance(b, float) or np.ndim(b) == 0  # a scalar node, its copies a row
        if one and not isinstance(p, Dual) and len(getattr(p, "shape", ())) <= 1:
            scalars.append(i)
            continue
        moved[i] = _moved(p, b)
    if scalars:
        # A scalar's copies fill its row; one computed from constants alone fills it alike.
        copies = max(np.size(perturbed[i]) for i in scalars)
        rows = np.empty((len(scalars), copies))
        full = [k for k, i in enumerate(scalars) if getattr(perturbed[i], "shape", ()) == (copies,)]
        if full:
            rows[full] = np.array([perturbed[scalars[k]] for k in full], dtype=np.float64)
        if len(full) < len(scalars):
            rest = np.ones(len(scalars), dtype=bool)
            rest[full] = False
            for k in np.flatnonzero(rest).tolist():
                rows[k] = perturbed[scalars[k]]
        bases = np.array([base[i] for i in scalars], dtype=np.float64)
        with np.errstate(all="ignore"):
            far = np.abs(rows - bases[:, None]).max(axis=1)
        far = np.where(np.isfinite(far), far, np.inf)
        far = np.where(np.isfinite(bases), far, 0.0)
        for i, value in zip(scalars, far.tolist(), strict=True):
            moved[i] = value
    return moved


def _moved(perturbed: Array, base: Array) -> Array:
    """The largest move of each element over the copies: a float for a scalar node."""
    if np.ndim(base) == 0:
        with np.errstate(all="ignore"):
            moved = np.abs(np.asarray(perturbed, dtype=np.float64) - np.float64(base))
        if not np.isfinite(base):
            return 0.0
        return float(moved.max()) if np.isfinite(moved).all() else float("inf")
    base = np.asarray(base, dtype=np.float64)
    with np.errstate(all="ignore"):
        moved = np.abs(np.asarray(perturbed, dtype=np.float64) - base)
    if moved.ndim > base.ndim:
        moved = moved.max(axis=tuple(range(moved.ndim - base.ndim)))
    moved = np.where(np.isfinite(base), np.where(np.isfinite(moved), moved, np.inf), 0.0)
    return float(moved) if moved.ndim == 0 else moved


def check_constants(graph: Graph, *, what: str = "expression", dtype: str = "float64") -> None:
    """A constant subexpression that overflows, is undefined or has mismatched shapes is an
    input error."""
    dt = DTYPES[dtype]
    needs = requires_grad(graph)
    shapes.check_constants_budget(graph, needs, what)
    values: list[Array] = [None] * len(graph.nodes)
    cores: Cores = [()] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if needs[node.id]:
                continue
            if node.op == "const":
                value = np.asarray(node.value, dtype=dt)[()]
                args: list[Array] = []
            else:
                op = ops.OPS[node.op]
                inner = [cores[i] for i in node.inputs]
                cores[node.id] = shapes.of_node(graph, node.id, inner, what)
                args, ctx = op_args(node, values, cores)
                value = apply(op, args, ctx)
            cores[node.id] = np.shape(value)
            if not _finite(value):
                raise ParseError(
                    f"the constant {_quoted(graph, node.id)} {_why_nonfinite(value, args, dtype)}",
                    source=graph.source,
                    offset=node.span[0],
                    what=what,
                )
            values[node.id] = value


def _quoted(graph: Graph, node_id: int) -> str:
    text = " ".join(graph.text(node_id, 61).split())
    return repr(text) if graph.nodes[node_id].op == "const" else f"subexpression {text!r}"


def _why_nonfinite(value: Array, args: list[Array], dtype: str) -> str:
    word = _nonfinite_word(value)
    if word == "nan":
        return "is undefined (nan)"
    if any((np.asarray(a) == 0).any() for a in args):
        return f"is {word} (a singularity at 0)"
    return f"overflows {dtype} ({word})"


def check_point_fits(point: Mapping[str, Array], dtype: str) -> list[str]:
    """Values that the engine's dtype cannot hold: overflow is an error, underflow a warning."""
    dt = DTYPES[dtype]
    warnings = []
    for name, given in point.items():
        given = np.asarray(given, dtype=np.float64)
        with np.errstate(all="ignore"):
            cast = given.astype(dt)
        for index in _where_true(np.isinf(cast) & np.isfinite(given))[:1]:
            value = float(given[index])
            raise BackpropError(
                f"the value of {shapes.element_name(name, index)} ({value!r}) overflows "
                f"{dtype} (largest {float(np.finfo(dt).max):.3g})",
                hint="use --dtype float64",
            )
        small = (given != 0) & (np.abs(cast) < float(np.finfo(dt).tiny))
        for index in _where_true(small)[:3]:
            value, where = float(given[index]), shapes.element_name(name, index)
            if cast[index] == 0:
                warnings.append(f"the value of {where} ({value!r}) underflows to 0 in {dtype}")
            else:
                warnings.append(
                    f"the value of {where} ({value!r}) is subnormal in {dtype} and keeps few digits"
                )
    return warnings


def _where_true(mask: Array) -> list[tuple[int, ...]]:
    return [tuple(int(i) for i in row) for row in np.argwhere(mask)]
