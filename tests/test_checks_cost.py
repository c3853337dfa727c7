"""Checks whose cost used to grow faster than the input: finite differences along random
directions past a size, Jacobians and Hessians in batched sweeps, each held against the
slow path it replaces (one sweep per row, one finite-difference run per output element)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from torch.autograd.functional import hessian as torch_hessian
from torch.autograd.functional import jacobian as torch_jacobian

from backprop_cli.analyses import higher
from backprop_cli.checks import autograd, compare, finite
from backprop_cli.core import engine, shapes
from backprop_cli.core.dual import Dual, tangent_of
from backprop_cli.core.parse import parse
from tests.conftest import run

TOL = compare.TOLERANCES["float64"]["finite_difference"]


def chain(n: int) -> str:
    return "+".join(f"sin(v{i})*v{(i + 1) % n}" for i in range(n))


def point(n: int) -> dict[str, float]:
    return {f"v{i}": 0.1 * i - 3.0 for i in range(n)}


def engine_gradient(graph, env) -> dict[str, object]:
    trace = engine.run(graph, env)
    return {name: trace.grads[graph.variables[name]] for name in graph.variables}


def directional(graph, env, gradient) -> dict:
    found = finite.directional_differences(graph, env, list(graph.variables), gradient, TOL)
    return finite.directional_summary(found, TOL)


def wrong_engine(monkeypatch, variable: str, by: float) -> None:
    """The engine's reverse sweep off by `by` in one variable's gradient, everything else as
    computed: every run of it (the report's rounding spread too) sees the same error."""
    real = engine.backward

    def wrong(graph, *args, **kwargs):
        grads = real(graph, *args, **kwargs)
        node = graph.variables.get(variable)
        if node is not None:
            grads[node] = grads[node] + by
        return grads

    monkeypatch.setattr(engine, "backward", wrong)


# ---- finite differences: which mode ----------------------------------------------------


def test_directional_mode_starts_past_the_threshold():
    # a sum of n scalars has 2n - 1 nodes: 700 is below the limit, 2,000 past it
    assert not finite.directional_wanted(700, 2 * 700 - 1)
    assert finite.directional_wanted(2000, 2 * 2000 - 1)
    assert finite.directional_wanted(10_000, 101)
    # a few elements are cheaper one by one than along as many directions
    assert not finite.directional_wanted(finite.FD_DIRECTIONS, 10**9)


def test_small_graphs_stay_element_by_element():
    r = run("grad", "q = x + y; f = q * z", "x=-2", "y=5", "z=-4", "--format", "json")
    assert r.code == 0, r.stderr
    fd = r.json()["checks"]["finite_difference"]
    assert "mode" not in fd and fd["compared"] == 3
    assert [p["finite_difference"] for p in r.json()["partials"]] == [-4.0, -4.0, 3.0]


# ---- finite differences along random directions ----------------------------------------


def test_a_large_chain_agrees_along_random_directions():
    graph, env = parse(chain(1000)), point(1000)
    summary = directional(graph, env, engine_gradient(graph, env))
    assert summary["mode"] == "directional"
    assert summary["directions"] == finite.FD_DIRECTIONS == summary["compared"]
    assert summary["elements"] == 1000
    assert summary["ok"] is True and summary["mismatches"] == []
    for along in summary["along"]:
        assert along["status"] == "ok"
        assert along["finite_difference"] == pytest.approx(along["engine"], rel=1e-8)
        assert 0 < along["fd_error_estimate"] < 1e-6 * abs(along["engine"])


def test_the_directions_are_the_same_on_every_run():
    graph, env = parse(chain(50)), point(50)
    first = directional(graph, env, engine_gradient(graph, env))
    assert directional(graph, env, engine_gradient(graph, env)) == first


def test_one_wrong_partial_shows_in_every_direction(monkeypatch):
    graph, env = parse(chain(1000)), point(1000)
    wrong_engine(monkeypatch, "v7", 1e-2)  # one partial off by 0.01 of 1,000
    summary = directional(graph, env, engine_gradient(graph, env))
    assert summary["ok"] is False
    assert summary["mismatches"] == ["direction 1", "direction 2", "direction 3"]
    for along in summary["along"]:  # each sees 0.01/√1000 of it
        gap = abs(along["engine"] - along["finite_difference"])
        assert gap == pytest.approx(1e-2 / np.sqrt(1000), rel=1e-3)


def test_array_elements_are_moved_too(monkeypatch):
    rng = np.random.default_rng(3)
    graph = parse("sum(tanh(W @ x))")
    env = {"W": rng.normal(size=(30, 40)), "x": rng.normal(size=40)}
    assert directional(graph, env, engine_gradient(graph, env))["ok"] is True
    gradient = engine_gradient(graph, env)
    gradient["W"] = np.array(gradient["W"])
    gradient["W"][4, 5] += 1e-3
    assert directional(graph, env, gradient)["ok"] is False


def test_an_upstream_gradient_weights_the_output():
    graph = parse("W @ x")
    env = {"W": np.arange(12.0).reshape(3, 4) / 7, "x": np.arange(4.0) - 1}
    seed = np.array([1.0, -2.0, 0.5])
    trace = engine.run(graph, env, seed=seed)
    gradient = {name: trace.grads[graph.variables[name]] for name in graph.variables}
    found = finite.directional_differences(graph, env, ["W", "x"], gradient, TOL, seed=seed)
    assert [d.status for d in found.directions] == ["ok"] * finite.FD_DIRECTIONS


def test_a_variable_on_a_kink_stays_put():
    graph = parse("relu(x) + " + "+".join(f"v{i}" for i in range(20)))
    env = {"x": 0.0, **{f"v{i}": 1.0 for i in range(20)}}
    summary = directional(graph, env, engine_gradient(graph, env))
    assert summary["elements"] == 20
    assert summary["not_compared"] == {"x": "kink"}
    assert summary["ok"] is True


def test_undefined_along_every_direction_is_not_a_failure():
    graph = parse("log(x) + " + "+".join(f"v{i}" for i in range(20)))
    env = {"x": -1.0, **{f"v{i}": 1.0 for i in range(20)}}
    summary = directional(graph, env, engine_gradient(graph, env))
    assert summary["ok"] is None and summary["skipped"] == "nothing comparable"
    assert set(summary["not_compared"].values()) == {"undefined"}


def test_the_verdict_line_names_the_directions():
    from backprop_cli.render.gradient import check_lines

    graph, env = parse(chain(100)), point(100)
    fd = directional(graph, env, engine_gradient(graph, env))
    fake = {"checks": {"torch": {"ok": None, "skipped": "--no-torch"}, "finite_difference": fd}}
    fake["checks"]["symbolic"] = {"skipped": "--no-symbolic"}
    mark, line = check_lines(fake)[1]
    assert mark == "✓"
    assert line.startswith("finite differences (3 random directions): 3 directional derivatives")
    fd["ok"], fd["along"][1]["status"] = False, "mismatch"
    mark, line = check_lines(fake)[1]
    assert mark == "✗" and "direction 2: engine gradient · u" in line


# ---- finite differences through `grad` ---------------------------------------------------


def grad_args(n: int) -> list[str]:
    return ["grad", chain(n), *(f"{k}={v!r}" for k, v in point(n).items()), "--no-symbolic"]


def test_grad_of_many_scalars_checks_along_random_directions():
    r = run(*grad_args(1000), "--no-torch", "--format", "json")
    assert r.code == 0, r.stderr
    fd = r.json()["checks"]["finite_difference"]
    assert fd["mode"] == "directional" and fd["ok"] is True and fd["elements"] == 1000
    assert all(p["status"]["finite_difference"] == "skipped" for p in r.json()["partials"])
    r = run(*grad_args(1000), "--no-torch")
    assert "finite differences (3 random directions): 3 directional derivatives agree" in (
        " ".join(r.stdout.split())
    )


def test_grad_directions_catch_a_wrong_engine_gradient(monkeypatch):
    wrong_engine(monkeypatch, "v7", 1e-2)
    r = run(*grad_args(1000), "--no-torch")
    assert r.code == 1
    assert "disagreement: finite differences (3 random directions) disagree" in r.stderr


# ---- Jacobians and Hessians against the slow paths ----------------------------------------

JACOBIANS = [
    ("tanh(W @ x) * sum(x)", {"W": np.arange(30.0).reshape(6, 5) / 17, "x": np.linspace(-1, 1, 5)}),
    ("sin(x) * y + relu(x - 0.5)", {"x": np.linspace(-2, 2, 40), "y": 1.5}),
    ("x * ones(30) + y * x", {"x": 2.0, "y": 0.25}),  # tall: forward mode
    ("W.T @ (W @ x)", {"W": np.arange(12.0).reshape(4, 3) - 5, "x": np.array([1.0, -2.0, 0.5])}),
]
HESSIANS = [
    (
        "sum(tanh(W @ x))**2 + x[0]*W[1,2]",
        {"W": np.arange(30.0).reshape(6, 5) / 17, "x": np.ones(5)},
    ),
    (chain(40), point(40)),
    ("(" + "+".join(f"v{i}" for i in range(30)) + ")**2", {f"v{i}": 1.0 for i in range(30)}),
]


def slow_jacobian(graph, env, wrt):
    """One reverse sweep per output element, as before the batches."""
    cores = engine.input_cores(graph, env)
    values = engine.evaluate(graph, env, np.float64, cores=cores)
    out = cores[graph.output]
    result = {name: np.zeros(out + cores[graph.variables[name]]) for name in wrt}
    for k in shapes.elements(out):
        seed = np.zeros(out)
        seed[k] = 1.0
        grads = engine.backward(graph, values, seed[()], cores=cores)
        for name in wrt:
            result[name][k] = grads[graph.variables[name]]
    return result


def slow_hessian(graph, env, chosen):
    """One forward-over-reverse sweep per element, as before the batches."""
    cores = engine.input_cores(graph, env)
    result = np.zeros((len(chosen), len(chosen)))
    for j, (name, index) in enumerate(chosen):
        duals = {}
        for var, value in env.items():
            tangent = np.zeros(np.shape(value))
            if var == name:
                tangent[index] = 1.0
            duals[var] = Dual(value, tangent)
        grads = engine.backward(graph, engine.evaluate(graph, duals, cores=cores), 1.0, cores=cores)
        for i, (row, at) in enumerate(chosen):
            result[i, j] = np.asarray(tangent_of(grads[graph.variables[row]]))[at]
    return result + 0.0


@pytest.fixture(params=[higher.BATCH_ELEMENTS, 50], ids=["one batch", "many batches"])
def batch(request, monkeypatch):
    monkeypatch.setattr(higher, "BATCH_ELEMENTS", request.param)
    monkeypatch.setattr(autograd, "TORCH_BATCH_ELEMENTS", request.param)
    return request.param


@pytest.mark.parametrize(("source", "env"), JACOBIANS, ids=[s for s, _ in JACOBIANS])
def test_batched_jacobian_is_the_row_by_row_one(source, env, batch):
    graph = parse(source)
    wrt = list(graph.variables)
    fast, slow = higher.jacobian(graph, env, wrt), slow_jacobian(graph, env, wrt)
    for name in wrt:
        assert fast[name].shape == slow[name].shape
        assert_allclose(fast[name], slow[name], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("source", "env"), HESSIANS, ids=[s[:30] for s, _ in HESSIANS])
def test_batched_hessian_is_the_column_by_column_one(source, env, batch):
    graph = parse(source)
    cores = engine.input_cores(graph, env)
    chosen = higher.elements(graph, cores, list(graph.variables))
    assert_array_equal(higher.hessian(graph, env, chosen), slow_hessian(graph, env, chosen))


@pytest.mark.parametrize(("source", "env"), JACOBIANS, ids=[s for s, _ in JACOBIANS])
def test_jacobian_differences_of_all_rows_at_once_are_the_row_by_row_ones(source, env):
    graph = parse(source)
    cores = engine.input_cores(graph, env)
    chosen = higher.elements(graph, cores, list(graph.variables))
    out = cores[graph.output]
    noise = np.full(out, 1e-15)
    columns = finite.output_differences(graph, env, chosen, noise)
    for r, k in enumerate(shapes.elements(out)):
        seed = np.zeros(out)
        seed[k] = 1.0
        one = finite.finite_differences(graph, env, chosen, 1e-15, seed[()] if out else None)
        assert [columns[e][r] for e in chosen] == [one[e] for e in chosen]


def test_chunked_second_differences_are_the_whole_batch_ones(monkeypatch):
    source, env = HESSIANS[0]
    graph = parse(source)
    chosen = higher.elements(graph, engine.input_cores(graph, env), list(graph.variables))[:6]
    whole = higher.second_differences(graph, env, chosen)
    monkeypatch.setattr(higher, "BATCH_ELEMENTS", 500)
    chunked = higher.second_differences(graph, env, chosen)
    assert_allclose(chunked[0], whole[0], rtol=1e-12)


def torch_function(graph, env, wrt):
    def f(*inputs):
        leaves = dict(zip(wrt, inputs, strict=True))
        out = autograd.torch_graph(torch, graph, env, "float64", "cpu", leaves, retain=False)
        return out[graph.output]

    return f, tuple(torch.tensor(np.asarray(env[n], dtype=np.float64)) for n in wrt)


@pytest.mark.parametrize(("source", "env"), JACOBIANS, ids=[s for s, _ in JACOBIANS])
def test_torch_jacobian_in_batches_is_torch_functional(source, env, batch):
    graph = parse(source)
    wrt = list(graph.variables)
    ours, _ = autograd.torch_functional(graph, env, wrt, "jacobian", "cpu")
    f, given = torch_function(graph, env, wrt)
    m = ours.shape[0]
    theirs = np.concatenate([t.numpy().reshape(m, -1) for t in torch_jacobian(f, given)], axis=1)
    assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("source", "env"), HESSIANS, ids=[s[:30] for s, _ in HESSIANS])
def test_torch_hessian_in_batches_is_torch_functional(source, env, batch):
    graph = parse(source)
    wrt = list(graph.variables)
    ours, _ = autograd.torch_functional(graph, env, wrt, "hessian", "cpu")
    f, given = torch_function(graph, env, wrt)
    blocks = torch_hessian(f, given)
    sizes = [int(np.size(env[n])) for n in wrt]
    theirs = np.block(
        [
            [blocks[i][j].numpy().reshape(sizes[i], sizes[j]) for j in range(len(wrt))]
            for i in range(len(wrt))
        ]
    )
    assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)


# ---- refused or skipped from the shapes ------------------------------------------------------


def test_a_hessian_with_too_many_sweeps_is_refused_before_it_runs():
    r = run("hessian", "sum(x)*sum(y)", "x=arange(400)", "y=ones(1000000)", "--wrt", "x")
    assert r.code == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: a Hessian of 400 × 400 entries takes 400 sweeps")
    assert "more than 300,000,000" in first and "--wrt" in r.stderr


def test_a_jacobian_with_too_many_sweeps_is_refused_before_it_runs():
    r = run("jacobian", "x*sum(y)", "x=arange(500)", "y=ones(1000000)", "--wrt", "x")
    assert r.code == 2
    assert "500 sweeps (one per output element)" in r.stderr.splitlines()[0]


def test_jacobian_finite_differences_past_their_budget_are_skipped_with_the_figure():
    r = run(
        "jacobian", "sum(x*x) + sum(y)", "x=arange(2000)", "y=ones(500000)", "--wrt", "x",
        "--no-symbolic", "--no-torch", "--format", "json",
    )  # fmt: skip
    assert r.code == 0, r.stderr
    fd = r.json()["checks"]["finite_difference"]
    assert fd["ok"] is None
    assert fd["skipped"].startswith("720,000 evaluations of a graph of about")


def test_small_jacobians_and_hessians_still_check_finite_differences():
    r = run("hessian", "x1**2*x2 + exp(x1*x2)", "x1=1", "x2=2", "--format", "json")
    assert r.code == 0, r.stderr
    fd = r.json()["checks"]["finite_difference"]
    assert fd["skipped"] is None and fd["compared"] == 3


def test_check_counts_random_directions_as_finite_difference_comparisons():
    expression = "+".join(f"sin(v{i})" for i in range(800))
    r = run(
        "check", expression, "--samples", "2", "--no-torch", "--no-symbolic", "--format", "json"
    )
    assert r.code == 0, r.stderr
    fd = json.loads(r.stdout)["checks"]["finite_difference"]
    assert fd["compared"] == 6 and fd["mismatches"] == 0  # 3 directions at 2 points
    assert fd["worst"]["partial"] in ("u1", "u2", "u3")
