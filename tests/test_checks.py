"""The independent checks: finite differences, torch autograd, device handling, tolerances."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import torch

from backprop_cli.checks import autograd, compare, finite
from backprop_cli.core import engine
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import parse


def fd(source: str, **env: float) -> dict[str, finite.FiniteDifference]:
    graph = parse(source)
    return finite.finite_differences(graph, env, list(graph.variables))


@pytest.mark.parametrize(
    ("source", "env", "exact"),
    [
        ("exp(3*x)", {"x": 1.3}, {"x": 3 * math.exp(3.9)}),
        ("sin(x)*y", {"x": 0.4, "y": -2.0}, {"x": -2 * math.cos(0.4), "y": math.sin(0.4)}),
        ("x**3", {"x": 1e6}, {"x": 3e12}),
        ("log(x)", {"x": 1e-3}, {"x": 1e3}),
        ("1/(1+exp(-x))", {"x": 30.0}, {"x": math.exp(-30) / (1 + math.exp(-30)) ** 2}),
        ("tanh(x)", {"x": 0.0}, {"x": 1.0}),
    ],
)
def test_finite_differences_are_accurate(source, env, exact):
    got = fd(source, **env)
    for name, want in exact.items():
        assert got[name].value == pytest.approx(want, rel=1e-8, abs=1e-12)
        assert not got[name].kink


def test_finite_differences_flag_kinks():
    got = fd("relu(x) + y", x=0.0, y=1.0)
    assert got["x"].kink
    assert not got["y"].kink
    assert got["y"].value == pytest.approx(1.0)


def test_finite_differences_avoid_steps_that_cross_a_kink():
    got = fd("abs(x)", x=1e-4)
    assert not got["x"].kink
    assert got["x"].value == pytest.approx(1.0, rel=1e-12)


def test_finite_differences_undefined_where_the_function_is():
    got = fd("log(x)", x=-1.0)
    assert got["x"].value is None


def test_agree_semantics():
    assert compare.agree(1.0, 1.0 + 1e-12, 1e-9, 0.0)
    assert not compare.agree(1.0, 1.1, 1e-9, 0.0)
    assert compare.agree(math.nan, math.nan, 0, 0)
    assert not compare.agree(math.nan, 1.0, 0, 0)
    assert not compare.agree(1e300, math.inf, 1e-9, 0)
    assert compare.agree(math.inf, math.inf, 0, 0)
    assert compare.agree(math.inf, math.nan, 0, 0)  # both undefined at a singular point
    assert compare.agree(None, None, 0, 0)
    assert not compare.agree(None, 0.0, 0, 0)


def test_torch_run_matches_the_engine_node_by_node():
    graph = parse("a = sigmoid(w*x + b); loss = (a - y)**2 + relu(a - 0.5)")
    env = {"w": 0.3, "x": -1.2, "b": 0.1, "y": 1.0}
    trace = engine.run(graph, env)
    run = autograd.torch_run(graph, env, "float64", "cpu")
    for i in range(len(graph.nodes)):
        assert float(run.values[i]) == pytest.approx(float(trace.values[i]), rel=1e-14)
        if trace.grads[i] is None:
            assert run.grads[i] is None
        else:
            assert float(run.grads[i]) == pytest.approx(float(trace.grads[i]), rel=1e-13)


def test_torch_run_retains_gradients_of_repeated_and_copied_nodes():
    graph = parse("b = a; c = +b; d = c * c + b")
    run = autograd.torch_run(graph, {"a": 3.0}, "float64", "cpu")
    trace = engine.run(graph, {"a": 3.0})
    assert [float(g) for g in run.grads] == [float(g) for g in trace.grads]


def _fake_torch(cuda: bool, count: int = 1):
    fake = types.SimpleNamespace(**{k: getattr(torch, k) for k in ("device",)})
    fake.cuda = types.SimpleNamespace(is_available=lambda: cuda, device_count=lambda: count)
    fake.backends = types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: False))
    return fake


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackpropError, match="CUDA is not available"):
        autograd.resolve_device(torch, "cuda", "float64")


def test_cuda_index_out_of_range():
    with pytest.raises(BackpropError, match="only 1 CUDA device"):
        autograd.resolve_device(_fake_torch(True, 1), "cuda:3", "float64")


def test_cuda_available_is_accepted():
    device = autograd.resolve_device(_fake_torch(True, 2), "cuda:1", "float64")
    assert str(device) == "cuda:1"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("gpu", "unknown device"), ("mps", "MPS is not available"), ("meta", "holds no data")],
)
def test_bad_devices(name, fragment):
    with pytest.raises(BackpropError, match=fragment):
        autograd.resolve_device(_fake_torch(False), name, "float64")


def test_tolerances_cover_both_dtypes():
    for dtype in ("float64", "float32"):
        assert set(compare.TOLERANCES[dtype]) == {"torch", "finite_difference", "symbolic"}
        for rtol, atol in compare.TOLERANCES[dtype].values():
            assert 0 < rtol < 1e-2 and 0 < atol < 1e-4


def test_float32_engine_is_checked_against_float32_torch():
    graph = parse("exp(x) * sin(x)")
    env = {"x": 0.7}
    run = autograd.torch_run(graph, env, "float32", "cpu")
    assert all(np.result_type(v) == np.float32 for v in run.values)
