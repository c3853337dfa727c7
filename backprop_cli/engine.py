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

from . import ops
from .errors import BackpropError, ParseError
from .graph import Graph

Array = Any

DTYPES: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}


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


def _finite(x: Array) -> bool:
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


Jitter = Callable[[Array], Array]


def evaluate(
    graph: Graph,
    env: Mapping[str, Array],
    dtype: type[np.floating[Any]] = np.float64,
    issues: list[Issue] | None = None,
    jitter: Jitter | None = None,
) -> list[Array]:
    """The forward pass: one value per node, in dependency order. `jitter`, when given,
    perturbs every op's result (see `spread`)."""
    values: list[Array] = []
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op == "input":
                assert node.name is not None
                value = np.asarray(env[node.name], dtype=dtype)[()]
            elif node.op == "const":
                value = dtype(node.value)
            else:
                op = ops.OPS[node.op]
                args = [values[i] for i in node.inputs]
                value = op.forward(*args)
                if issues is not None and not _finite(value) and all(map(_finite, args)):
                    issues.append(Issue(node.id, "value", _domain_message(graph, node.id, args)))
                if jitter is not None:
                    value = jitter(value)
            values.append(value)
    return values


def _domain_message(graph: Graph, node_id: int, args: list[Array]) -> str:
    node = graph.nodes[node_id]
    op = ops.OPS[node.op]
    shown = ", ".join(_describe(a) for a in args)
    word = "undefined (nan)" if _nonfinite_word(op.forward(*args)) == "nan" else "infinite"
    where = f" (defined for {op.domain})" if op.domain else " (overflow)"
    return f"{op.name}({shown}) is {word}{where}"


def requires_grad(graph: Graph) -> list[bool]:
    """A node needs a gradient when it depends on at least one variable."""
    needs: list[bool] = []
    for node in graph.nodes:
        needs.append(node.op == "input" or any(needs[i] for i in node.inputs))
    return needs


def unbroadcast(g: Array, shape: tuple[int, ...]) -> Array:
    """Sum a cotangent over the axes that broadcasting added or stretched."""
    if np.shape(g) == shape:
        return g
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
) -> list[Array | None]:
    """The reverse sweep: ∂output/∂node for every node that depends on a variable (zero
    where the output does not depend on it). `jitter`, when given, perturbs every
    contribution (see `spread`)."""
    needs = requires_grad(graph)
    grads: list[Array | None] = [None] * len(graph.nodes)
    out = graph.output
    dtype = np.result_type(values[out])
    if needs[out]:
        grads[out] = np.broadcast_to(np.asarray(seed, dtype=dtype), np.shape(values[out]))[()]
    with np.errstate(all="ignore"):
        for node in reversed(graph.nodes[: out + 1]):
            g = grads[node.id]
            if g is None or node.op in ops.LEAVES:
                continue
            op = ops.OPS[node.op]
            args = [values[i] for i in node.inputs]
            for k, i in enumerate(node.inputs):
                if not needs[i]:
                    continue
                contrib = unbroadcast(op.vjp[k](g, values[node.id], *args), np.shape(values[i]))
                if jitter is not None:
                    contrib = jitter(contrib)
                broke = not _finite(contrib) and _finite(g) and all(map(_finite, args))
                if issues is not None and broke:
                    issues.append(_gradient_issue(node.id, op, k, args, contrib))
                prev = grads[i]
                grads[i] = contrib if prev is None else prev + contrib
    for i, need in enumerate(needs):
        if need and grads[i] is None:  # depends on a variable, but the output does not
            grads[i] = np.zeros(np.shape(values[i]), dtype=dtype)[()]
    return grads


def _gradient_issue(node_id: int, op: ops.Op, k: int, args: list[Array], contrib: Array) -> Issue:
    which = "" if op.arity == 1 else f" (input {k + 1})"
    shown = ", ".join(_describe(a) for a in args)
    return Issue(
        node_id,
        "grad",
        f"the gradient through {op.name}{which} is {_nonfinite_word(contrib)} at ({shown})",
    )


def kinks(graph: Graph, values: list[Array]) -> list[int]:
    """Nodes of piecewise ops evaluated exactly where the pieces meet."""
    found = []
    for node in graph.nodes:
        if node.op in ops.LEAVES:
            continue
        branch = ops.OPS[node.op].branch
        if branch is not None:
            args = [values[i] for i in node.inputs]
            with np.errstate(all="ignore"):
                if (np.asarray(branch(*args)) == 0).any():
                    found.append(node.id)
    return found


def run(graph: Graph, env: Mapping[str, Array], dtype: str = "float64") -> Trace:
    """Forward, backward, and the notes a report needs."""
    issues: list[Issue] = []
    values = evaluate(graph, env, DTYPES[dtype], issues)
    grads = backward(graph, values, 1.0, issues)
    return Trace(values, grads, issues, kinks(graph, values))


def local_partials(graph: Graph, values: list[Array]) -> list[tuple[Array, ...]]:
    """∂node/∂input_k for every edge: an elementwise op's vector-Jacobian product of 1 (so
    kinks get torch's subgradient here too). Leaves have none."""
    local: list[tuple[Array, ...]] = []
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op in ops.LEAVES:
                local.append(())
                continue
            op = ops.OPS[node.op]
            args = [values[i] for i in node.inputs]
            one = np.ones_like(np.asarray(values[node.id]))[()]
            local.append(tuple(rule(one, values[node.id], *args) for rule in op.vjp))
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
SPREAD_ULPS = 16


def spread(
    graph: Graph, env: Mapping[str, float], trace: Trace, dtype: str = "float64"
) -> tuple[list[float], list[float | None]]:
    """How far each node's value and gradient move when every operation is off by a few
    units in the last place, as two correct libraries (numpy and torch, say) can be.

    The graph is re-run on a few copies whose every op result and backward contribution is
    multiplied by 1 + δ, |δ| ≤ SPREAD_ULPS·ε, with a fixed seed (so reports are
    deterministic); the spread is the largest move from the unperturbed trace. An
    ill-conditioned number (a cancellation, a pole) gets a large spread; a number that
    turns nan under perturbation gets inf.
    """
    dt = DTYPES[dtype]
    rng = np.random.default_rng(0)
    info = np.finfo(dt)
    eps, tiny, unit = float(info.eps), dt(info.tiny), dt(info.smallest_subnormal)

    def jitter(x: Array) -> Array:
        shape = np.shape(x)
        if not shape or shape[0] != SPREAD_COPIES:
            shape = (SPREAD_COPIES, *shape)
            x = np.broadcast_to(x, shape)
        size = (SPREAD_COPIES,) + (1,) * (len(shape) - 1)
        moved = x * (1 + SPREAD_ULPS * eps * rng.uniform(-1.0, 1.0, size=size)).astype(dt)
        # A subnormal keeps only a few digits: it is off by whole units of the smallest one.
        steps = (SPREAD_ULPS * rng.uniform(-1.0, 1.0, size=size)).astype(dt) * unit
        subnormal = (x != 0) & (np.abs(x) < tiny)
        return np.where(subnormal, moved + steps, moved)[()]

    batch = {name: np.full(SPREAD_COPIES, value, dtype=dt) for name, value in env.items()}
    with np.errstate(all="ignore"):
        values = evaluate(graph, batch, dt, jitter=jitter)
        grads = backward(graph, values, 1.0, jitter=jitter)
    return (
        [_moved(v, base) for v, base in zip(values, trace.values, strict=True)],
        [
            None if g is None or base is None else _moved(g, base)
            for g, base in zip(grads, trace.grads, strict=True)
        ],
    )


def _moved(perturbed: Array, base: Array) -> float:
    with np.errstate(all="ignore"):
        moved = np.abs(np.asarray(perturbed, dtype=np.float64) - np.float64(base))
    if not np.isfinite(base):
        return 0.0
    if not np.isfinite(moved).all():
        return float("inf")
    return float(moved.max())


def check_constants(graph: Graph, *, what: str = "expression", dtype: str = "float64") -> None:
    """A constant subexpression that overflows or is undefined is an input error."""
    dt = DTYPES[dtype]
    needs = requires_grad(graph)
    values: list[Array] = [None] * len(graph.nodes)
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if needs[node.id]:
                continue
            if node.op == "const":
                value = dt(node.value)
                args: list[Array] = []
            else:
                args = [values[i] for i in node.inputs]
                value = ops.OPS[node.op].forward(*args)
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


def check_point_fits(point: Mapping[str, float], dtype: str) -> list[str]:
    """Values that the engine's dtype cannot hold: overflow is an error, underflow a warning."""
    dt = DTYPES[dtype]
    warnings = []
    for name, value in point.items():
        with np.errstate(all="ignore"):
            cast = dt(value)
        if np.isinf(cast) and math.isfinite(value):
            raise BackpropError(
                f"the value of {name} ({value!r}) overflows {dtype} "
                f"(largest {float(np.finfo(dt).max):.3g})",
                hint="use --dtype float64",
            )
        if value != 0 and cast == 0:
            warnings.append(f"the value of {name} ({value!r}) underflows to 0 in {dtype}")
        elif value != 0 and abs(float(cast)) < float(np.finfo(dt).tiny):
            warnings.append(
                f"the value of {name} ({value!r}) is subnormal in {dtype} and keeps few digits"
            )
    return warnings
