"""Registry-wide: every op's forward and every VJP against torch, finite differences and SymPy
at its sample points (kinks included)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy
import torch

from backprop_cli.core import ops

CASES = [(op, point) for op in ops.OPS.values() for point in op.samples]
IDS = [f"{op.name}{point}" for op, point in CASES]
G = 1.7  # an upstream gradient that is not 1, so a rule that ignores g is caught


def _torch_grads(op: ops.Op, point: tuple[float, ...]):
    args = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in point]
    out = op.torch(torch, *args)
    out.backward(torch.tensor(G, dtype=torch.float64))
    return out.item(), [float(a.grad) if a.grad is not None else 0.0 for a in args]


@pytest.fixture(autouse=True)
def _quiet_numpy():
    # Zero bases and negative logs are sample points on purpose; the engine silences these too.
    with np.errstate(all="ignore"):
        yield


def _on_kink(op: ops.Op, point: tuple[float, ...]) -> bool:
    return op.branch is not None and float(op.branch(*point)) == 0


@pytest.mark.parametrize(("op", "point"), CASES, ids=IDS)
def test_forward_and_vjp_match_torch(op, point):
    args = [np.float64(v) for v in point]
    out = op.forward(*args)
    t_out, t_grads = _torch_grads(op, point)
    assert float(out) == pytest.approx(t_out, rel=1e-12, abs=1e-15, nan_ok=True)
    for k, rule in enumerate(op.vjp):
        ours = float(rule(np.float64(G), out, *args))
        assert ours == pytest.approx(t_grads[k], rel=1e-12, abs=1e-15, nan_ok=True), (op.name, k)


@pytest.mark.parametrize(("op", "point"), CASES, ids=IDS)
def test_vjp_matches_finite_differences(op, point):
    if _on_kink(op, point):
        pytest.skip("not differentiable on the kink")
    args = [np.float64(v) for v in point]
    out = op.forward(*args)
    for k, rule in enumerate(op.vjp):
        ours = float(rule(np.float64(1.0), out, *args))
        h = 1e-6 * max(1.0, abs(point[k]))
        plus = list(args)
        minus = list(args)
        plus[k] = args[k] + h
        minus[k] = args[k] - h
        with np.errstate(all="ignore"):
            fd = (float(op.forward(*plus)) - float(op.forward(*minus))) / (2 * h)
        if not math.isfinite(fd):
            continue  # e.g. a zero base: the stencil leaves the domain
        assert ours == pytest.approx(fd, rel=1e-6, abs=1e-6), (op.name, k)


@pytest.mark.parametrize(("op", "point"), CASES, ids=IDS)
def test_sympy_counterpart_agrees(op, point):
    symbols = sympy.symbols(f"a0:{op.arity}", real=True)
    expr = op.sympy(sympy, *symbols)
    subs = {s: sympy.Rational(v) for s, v in zip(symbols, point, strict=True)}
    value = complex(sympy.N(expr.xreplace(subs), 30))
    with np.errstate(all="ignore"):
        ours = float(op.forward(*(np.float64(v) for v in point)))
    assert value.real == pytest.approx(ours, rel=1e-14, abs=1e-15)
    if _on_kink(op, point):
        return  # SymPy's Heaviside(0) = 1/2 is a different convention, handled in reports
    for k, s in enumerate(symbols):
        d = sympy.N(sympy.diff(expr, s).xreplace(subs), 30)
        if d.has(sympy.zoo, sympy.nan, sympy.I):
            continue  # undefined there (e.g. d/db of a negative base)
        ours = float(op.vjp[k](np.float64(1.0), np.float64(value.real), *map(np.float64, point)))
        assert float(d) == pytest.approx(ours, rel=1e-12, abs=1e-14), (op.name, k)


def test_every_op_is_reachable_from_the_language():
    for op in ops.OPS.values():
        reachable = (
            op.call is not None
            or op.name in ops.INFIX.values()
            or op.name in ops.PREFIX.values()
            or op.name == "assign"
            or op.name == ops.SUBSCRIPT
        )
        assert reachable, op.name


def test_every_op_has_a_kink_sample_when_piecewise():
    for op in ops.OPS.values():
        if op.branch is not None and op.elementwise:  # array ops: their ties are tested apart
            assert any(_on_kink(op, p) for p in op.samples), op.name


def test_float32_in_float32_out():
    for op in ops.OPS.values():
        if not op.elementwise:
            continue
        args = [np.float32(v) for v in op.samples[0]]
        out = op.forward(*args)
        assert np.result_type(out) == np.float32, op.name
        for rule in op.vjp:
            assert np.result_type(rule(np.float32(1), out, *args)) == np.float32, op.name


def test_missing_rule_fails_loudly():
    with pytest.raises(KeyError, match="no rule registered for op 'nope'"):
        ops.get("nope")


# ---- array ops: every sample shape, against torch, finite differences and SymPy ----------

ARRAY_CASES = [
    (op, shapes, dict(attrs)) for op in ops.OPS.values() for shapes, attrs in op.array_samples
]
ARRAY_IDS = [f"{op.name}{shapes}{attrs or ''}" for op, shapes, attrs in ARRAY_CASES]


def _ctx(op, shapes, attrs, batch=0):
    out = tuple(op.shape(*shapes, **attrs))
    return ops.Ctx((batch,) * len(shapes), tuple(shapes), out, attrs)


def _array_args(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for shape in shapes]


def test_every_array_op_has_samples_and_a_shape_rule():
    for op in ops.OPS.values():
        if not op.elementwise:
            assert op.array_samples, op.name


@pytest.mark.parametrize(("op", "shapes", "attrs"), ARRAY_CASES, ids=ARRAY_IDS)
def test_array_op_forward_and_vjp_match_torch(op, shapes, attrs):
    ctx = _ctx(op, shapes, attrs)
    args = _array_args(shapes)
    out = op.forward(*args, ctx=ctx)
    assert np.shape(out) == ctx.out
    g = np.random.default_rng(1).normal(size=ctx.out)
    targs = [torch.tensor(a, requires_grad=True) for a in args]
    tout = op.torch(torch, *targs, ctx=ctx)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    for k, rule in enumerate(op.vjp):
        ours = rule(g, out, *args, ctx=ctx)
        assert np.shape(ours) == shapes[k], (op.name, k)
        np.testing.assert_allclose(ours, targs[k].grad.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("op", "shapes", "attrs"), ARRAY_CASES, ids=ARRAY_IDS)
def test_array_op_handles_a_batch_axis(op, shapes, attrs):
    """With a leading axis of points, each point's result is the unbatched result."""
    points = [_array_args(shapes, seed) for seed in range(3)]
    batched = [np.stack([p[k] for p in points]) for k in range(len(shapes))]
    ctx = _ctx(op, shapes, attrs, batch=1)
    out = op.forward(*batched, ctx=ctx)
    g = np.random.default_rng(5).normal(size=(3, *ctx.out))
    for n, p in enumerate(points):
        single = _ctx(op, shapes, attrs)
        np.testing.assert_allclose(out[n], op.forward(*p, ctx=single), rtol=1e-14)
        for _k, rule in enumerate(op.vjp):
            np.testing.assert_allclose(
                rule(g, out, *batched, ctx=ctx)[n],
                rule(g[n], out[n], *p, ctx=single),
                rtol=1e-14,
            )


@pytest.mark.parametrize(("op", "shapes", "attrs"), ARRAY_CASES, ids=ARRAY_IDS)
def test_array_op_vjp_matches_finite_differences(op, shapes, attrs):
    ctx = _ctx(op, shapes, attrs)
    args = _array_args(shapes)
    g = np.random.default_rng(1).normal(size=ctx.out)
    out = op.forward(*args, ctx=ctx)
    for k, rule in enumerate(op.vjp):
        ours = rule(g, out, *args, ctx=ctx)
        for index in np.ndindex(*shapes[k]):
            h = 1e-6
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[k][index] += h
            minus[k][index] -= h
            fd = (
                np.sum(g * op.forward(*plus, ctx=ctx)) - np.sum(g * op.forward(*minus, ctx=ctx))
            ) / (2 * h)
            assert ours[index] == pytest.approx(fd, rel=1e-6, abs=1e-8), (op.name, k, index)


@pytest.mark.parametrize(("op", "shapes", "attrs"), ARRAY_CASES, ids=ARRAY_IDS)
def test_array_op_sympy_counterpart_agrees(op, shapes, attrs):
    ctx = _ctx(op, shapes, attrs)
    args = _array_args(shapes)
    symbols = [
        np.array(
            [sympy.Symbol(f"a{k}_{i}", real=True) for i in range(a.size)], dtype=object
        ).reshape(a.shape)
        for k, a in enumerate(args)
    ]
    expr = np.asarray(op.sympy(sympy, *symbols, ctx=ctx), dtype=object)
    assert expr.shape == ctx.out
    subs = {
        s: sympy.Float(v, 30)
        for sym, a in zip(symbols, args, strict=True)
        for s, v in zip(sym.ravel(), a.ravel(), strict=True)
    }
    ours = op.forward(*args, ctx=ctx)
    values = np.array([float(e.xreplace(subs)) for e in expr.ravel()]).reshape(ctx.out)
    np.testing.assert_allclose(values, ours, rtol=1e-12, atol=1e-14)
    g = np.random.default_rng(1).normal(size=ctx.out)
    total = sum(
        (sympy.Float(float(w), 30) * e for w, e in zip(g.ravel(), expr.ravel(), strict=True)),
        sympy.Integer(0),
    )
    for k, rule in enumerate(op.vjp):
        ours_k = rule(g, ours, *args, ctx=ctx)
        theirs = np.array(
            [float(sympy.diff(total, s).xreplace(subs)) for s in symbols[k].ravel()]
        ).reshape(shapes[k])
        np.testing.assert_allclose(ours_k, theirs, rtol=1e-10, atol=1e-12)
