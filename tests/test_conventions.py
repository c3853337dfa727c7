"""README's table of conventions at awkward points, row by row: the engine's value and
gradients are the numbers the table states, and torch autograd (called here directly, not
through the cross-check) gives the same; the report calls none of them a disagreement."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backprop_cli.core import engine
from backprop_cli.core.parse import parse
from tests.conftest import run

torch = pytest.importorskip("torch")

inf, nan = math.inf, math.nan

# (expression, point, torch's version of it, value, gradient per variable)
ROWS = [
    ("relu(x)", {"x": 0.0}, lambda t: torch.relu(t["x"]), 0.0, {"x": 0.0}),
    ("abs(x)", {"x": 0.0}, lambda t: torch.abs(t["x"]), 0.0, {"x": 0.0}),
    ("max(a, b)", {"a": 1.0, "b": 1.0}, lambda t: torch.maximum(t["a"], t["b"]), 1.0,
     {"a": 0.5, "b": 0.5}),
    ("min(a, b)", {"a": -2.0, "b": -2.0}, lambda t: torch.minimum(t["a"], t["b"]), -2.0,
     {"a": 0.5, "b": 0.5}),
    ("sqrt(x)", {"x": 0.0}, lambda t: torch.sqrt(t["x"]), 0.0, {"x": inf}),
    ("log(x)", {"x": 0.0}, lambda t: torch.log(t["x"]), -inf, {"x": inf}),
    ("a / b", {"a": 1.0, "b": 0.0}, lambda t: t["a"] / t["b"], inf, {"a": inf, "b": -inf}),
    ("a / b", {"a": -1.0, "b": 0.0}, lambda t: t["a"] / t["b"], -inf, {"a": inf, "b": inf}),
    ("a / b", {"a": 0.0, "b": 0.0}, lambda t: t["a"] / t["b"], nan, {"a": inf, "b": nan}),
    ("a ** b", {"a": 0.0, "b": 0.0}, lambda t: t["a"] ** t["b"], 1.0, {"a": 0.0, "b": 0.0}),
    ("a ** b", {"a": 3.0, "b": 0.0}, lambda t: t["a"] ** t["b"], 1.0,
     {"a": 0.0, "b": math.log(3.0)}),
    ("a ** b", {"a": 0.0, "b": 2.0}, lambda t: t["a"] ** t["b"], 0.0, {"a": 0.0, "b": 0.0}),
    ("a ** b", {"a": 0.0, "b": 0.5}, lambda t: t["a"] ** t["b"], 0.0, {"a": inf, "b": 0.0}),
    ("a ** b", {"a": -2.0, "b": 2.0}, lambda t: t["a"] ** t["b"], 4.0, {"a": -4.0, "b": nan}),
    # a branch that max() masks still sends 0 back through it: 0 · ∞ is nan, as in torch
    ("max(sqrt(x), 1)", {"x": 0.0}, lambda t: torch.maximum(torch.sqrt(t["x"]),
     torch.tensor(1.0, dtype=torch.float64)), 1.0, {"x": nan}),
    ("max(log(x), 0)", {"x": 0.0}, lambda t: torch.maximum(torch.log(t["x"]),
     torch.tensor(0.0, dtype=torch.float64)), 0.0, {"x": nan}),
]  # fmt: skip


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-15, abs_tol=1e-300)


def _torch(build, point):
    leaves = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in point.items()}
    out = build(leaves)
    out.backward()
    return float(out.detach()), {n: float(t.grad) for n, t in leaves.items()}


def test_array_extremes_share_the_gradient_on_a_tie_as_torch():
    graph = parse("max(x) + min(y)")
    x, y = [0.0, 2.0, 2.0], [-1.0, 3.0, -1.0]
    trace = engine.run(graph, {"x": np.array(x), "y": np.array(y)})
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = torch.tensor(y, dtype=torch.float64, requires_grad=True)
    (tx.amax() + ty.amin()).backward()
    assert float(trace.values[graph.output]) == 1.0
    for name, leaf, want in (("x", tx, [0.0, 0.5, 0.5]), ("y", ty, [0.5, 0.0, 0.5])):
        ours = trace.grads[graph.variables[name]]
        assert list(ours) == want and leaf.grad.tolist() == want


@pytest.mark.parametrize(("source", "point", "build", "value", "grads"), ROWS)
def test_engine_and_torch_give_the_table_numbers(source, point, build, value, grads):
    graph = parse(source)
    trace = engine.run(graph, point)
    ours = float(trace.values[graph.output])
    theirs, torch_grads = _torch(build, point)
    assert _same(ours, value), (source, point, ours)
    assert _same(theirs, value), (source, point, theirs)
    for name, want in grads.items():
        got = float(trace.grads[graph.variables[name]])
        assert _same(got, want), (source, point, name, got)
        assert _same(torch_grads[name], want), (source, point, name, torch_grads[name])


@pytest.mark.parametrize(("source", "point", "build", "value", "grads"), ROWS)
def test_the_report_calls_no_convention_a_disagreement(source, point, build, value, grads):
    values = [f"{name}={v}" for name, v in point.items()]
    result = run("grad", source, *values, "--format", "json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["checks"]["torch"]["ok"] is not False


# README's second table: where the engine and torch's usual spelling differ (signed zeros,
# softplus's threshold), what each gives, and that the cross-check's own torch graph agrees.
# (expression, point, engine value, engine gradient, torch as users write it, its value,
#  its gradient)
DIFFERENCES = [
    ("x**0.5", {"x": -0.0}, 0.0, {"x": inf}, lambda t: t["x"] ** 0.5, -0.0, {"x": -inf}),
    ("x**-0.5", {"x": -0.0}, inf, {"x": -inf}, lambda t: t["x"] ** -0.5, -inf, {"x": -inf}),
    ("max(x)", {"x": [-0.0, 0.0]}, 0.0, {"x": [0.5, 0.5]}, lambda t: t["x"].amax(), -0.0,
     {"x": [0.5, 0.5]}),
    ("softplus(x)", {"x": 25.0}, 25.000000000013888, {"x": 0.999999999986112},
     lambda t: torch.nn.functional.softplus(t["x"]), 25.0, {"x": 1.0}),
    ("sqrt(x)", {"x": -0.0}, -0.0, {"x": -inf}, lambda t: torch.sqrt(t["x"]), -0.0, {"x": -inf}),
    ("max(x, y)", {"x": -0.0, "y": 0.0}, -0.0, {"x": 0.5, "y": 0.5},
     lambda t: torch.maximum(t["x"], t["y"]), -0.0, {"x": 0.5, "y": 0.5}),
]  # fmt: skip


def _signed_same(a: object, b: object) -> bool:
    """Equal, with the sign of a zero or an infinity counted."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_signed_same(x, y) for x, y in zip(a, b, strict=True))
    assert isinstance(a, float) and isinstance(b, float)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@pytest.mark.parametrize(("source", "point", "value", "grads", "build", "t_value", "t_grads"),
                         DIFFERENCES)  # fmt: skip
def test_the_documented_differences_from_torch(source, point, value, grads, build, t_value,
                                               t_grads):  # fmt: skip
    graph = parse(source)
    with np.errstate(all="ignore"):
        trace = engine.run(graph, {n: np.array(v, dtype=float) for n, v in point.items()})
    assert _signed_same(trace.values[graph.output].tolist(), value), source
    for name, want in grads.items():
        assert _signed_same(trace.grads[graph.variables[name]].tolist(), want), (source, name)
    leaves = {n: torch.tensor(v, dtype=torch.float64, requires_grad=True) for n, v in point.items()}
    out = build(leaves)
    out.backward()
    assert _signed_same(out.item(), t_value), source
    for name, want in t_grads.items():
        assert _signed_same(leaves[name].grad.tolist(), want), (source, name)
    # the cross-check builds its own torch graph and agrees with the engine
    values = [f"{n}={v}" for n, v in point.items()]
    result = run("grad", source, *values, "--format", "json", "--no-symbolic",
                 "--allow-nonfinite")  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.json()["checks"]["torch"]["ok"] is True
