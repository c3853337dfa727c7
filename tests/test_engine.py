"""The engine: forward values, the reverse sweep, fan-out, deep graphs, kinks and domain notes."""

from __future__ import annotations

import numpy as np
import pytest

from backprop_cli.core import engine
from backprop_cli.core.graph import Graph, Node, validate
from backprop_cli.core.parse import Limits, parse


def grads_by_label(source: str, **env: float) -> dict[str, float]:
    graph = parse(source)
    trace = engine.run(graph, env)
    return {
        graph.label(n.id): float(trace.grads[n.id])
        for n in graph.nodes
        if trace.grads[n.id] is not None
    }


def test_cs231n_add_then_multiply():
    graph = parse("q = x + y; f = q * z")
    trace = engine.run(graph, {"x": -2, "y": 5, "z": -4})
    values = {graph.label(i): float(v) for i, v in enumerate(trace.values)}
    grads = {graph.label(i): float(g) for i, g in enumerate(trace.grads)}
    assert values == {"x": -2, "y": 5, "q": 3, "z": -4, "f": -12}
    assert grads == {"x": -4, "y": -4, "q": -4, "z": 3, "f": 1}


def test_cs231n_sigmoid_neuron_values_and_gradients():
    graph = parse("1/(1+exp(-(w0*x0+w1*x1+w2)))")
    env = {"w0": 2, "x0": -1, "w1": -3, "x1": -2, "w2": -3}
    trace = engine.run(graph, env)
    op_values = [float(trace.values[n.id]) for n in graph.nodes if n.op not in ("input", "const")]
    assert op_values == pytest.approx([-2, 6, 4, 1, -1, 0.37, 1.37, 0.73], abs=0.005)
    grad = {name: float(trace.grads[i]) for name, i in graph.variables.items()}
    # Published: dw = [-0.20, -0.39, 0.20], dx = [0.39, -0.59]; exactly (1 - s) * s * input.
    s = 1 / (1 + np.exp(-1.0))
    assert grad["w0"] == pytest.approx(-1 * s * (1 - s), rel=1e-15)
    assert grad["w1"] == pytest.approx(-2 * s * (1 - s), rel=1e-15)
    assert grad["w2"] == pytest.approx(s * (1 - s), rel=1e-15)
    assert grad["x0"] == pytest.approx(2 * s * (1 - s), rel=1e-15)
    assert grad["x1"] == pytest.approx(-3 * s * (1 - s), rel=1e-15)
    # The upstream gradient through 1/x is -1/1.37² ≈ -0.53 (seed 001).
    exp_node = next(n for n in graph.nodes if n.op == "exp")
    assert float(trace.grads[exp_node.id]) == pytest.approx(-0.53, abs=0.005)


def test_fan_out_accumulates():
    assert grads_by_label("x*x + x", x=3)["x"] == 7.0
    assert grads_by_label("b = a + a; c = b + b", a=1.5)["a"] == 4.0
    assert grads_by_label("x*x*x", x=2)["x"] == 12.0


def test_a_node_off_the_output_path_gets_zero():
    graph = parse("a = x * 2; y * 3")
    trace = engine.run(graph, {"x": 1, "y": 1})
    assert float(trace.grads[graph.variables["x"]]) == 0.0
    assert float(trace.grads[graph.variables["y"]]) == 3.0


def test_constants_have_no_gradient():
    graph = parse("2 * x")
    trace = engine.run(graph, {"x": 1})
    assert trace.grads[0] is None
    assert float(trace.grads[1]) == 2.0


def test_constant_only_expression_has_a_value_and_no_gradients():
    graph = parse("2 + 3")
    trace = engine.run(graph, {})
    assert float(trace.values[graph.output]) == 5.0
    assert all(g is None for g in trace.grads)


def test_hundred_thousand_node_chain_by_statements():
    source = "a = x\n" + "a = a*1.00001+0.5\n" * 50_000
    graph = parse(source, limits=Limits(max_length=len(source)))
    assert len(graph.nodes) > 100_000
    trace = engine.run(graph, {"x": 1.0})
    assert float(trace.grads[graph.variables["x"]]) == pytest.approx(1.00001**50_000, rel=1e-9)


def test_hundred_thousand_deep_unary_chain_built_directly():
    n = 100_000
    nodes = [Node(0, "input", name="x")]
    nodes += [Node(i, "neg", (i - 1,)) for i in range(1, n + 1)]
    graph = Graph(tuple(nodes), n, "", {"x": 0})
    validate(graph)
    trace = engine.run(graph, {"x": 2.0})
    assert float(trace.values[n]) == 2.0
    assert float(trace.grads[0]) == 1.0


def test_kinks_are_recorded():
    graph = parse("relu(x) + abs(y) + max(x, y) + min(x, z)")
    trace = engine.run(graph, {"x": 0.0, "y": 0.0, "z": 1.0})
    kinked = {graph.nodes[i].op for i in trace.kinks}
    assert kinked == {"relu", "abs", "max"}


def test_torch_conventions_at_kinks():
    assert grads_by_label("relu(x)", x=0.0)["x"] == 0.0
    assert grads_by_label("abs(x)", x=0.0)["x"] == 0.0
    g = grads_by_label("max(x, y)", x=1.0, y=1.0)
    assert (g["x"], g["y"]) == (0.5, 0.5)
    g = grads_by_label("min(x, y)", x=1.0, y=1.0)
    assert (g["x"], g["y"]) == (0.5, 0.5)


def test_domain_issues_name_the_origin_node_only():
    graph = parse("exp(log(x) + 1)")
    trace = engine.run(graph, {"x": -1.0})
    value_issues = [i for i in trace.issues if i.where == "value"]
    assert len(value_issues) == 1
    assert graph.nodes[value_issues[0].node].op == "log"
    assert "log(-1)" in value_issues[0].message and "a > 0" in value_issues[0].message


def test_gradient_issues_name_the_node():
    graph = parse("sqrt(x)")
    trace = engine.run(graph, {"x": 0.0})
    assert float(trace.grads[0]) == np.inf
    assert [i.where for i in trace.issues] == ["grad"]
    assert "sqrt" in trace.issues[0].message


def test_overflow_is_flagged_not_raised():
    graph = parse("exp(x)")
    trace = engine.run(graph, {"x": 1000.0})
    assert float(trace.values[1]) == np.inf
    assert "overflow" in trace.issues[0].message


def test_float32_stays_float32():
    graph = parse("sigmoid(x * w)")
    trace = engine.run(graph, {"x": 0.3, "w": 0.7}, dtype="float32")
    assert all(np.result_type(v) == np.float32 for v in trace.values)
    assert all(np.result_type(g) == np.float32 for g in trace.grads if g is not None)


def test_batched_evaluation_matches_pointwise():
    graph = parse("sin(x) * exp(-x) + x**2")
    xs = np.linspace(-2, 2, 9)
    values = engine.evaluate(graph, {"x": xs})
    grads = engine.backward(graph, values)
    for k, x in enumerate(xs):
        trace = engine.run(graph, {"x": float(x)})
        assert float(values[graph.output][k]) == float(trace.values[graph.output])
        assert float(grads[0][k]) == float(trace.grads[0])


def test_unbroadcast_sums_stretched_axes():
    g = np.ones((2, 3))
    assert engine.unbroadcast(g, (3,)).tolist() == [2.0, 2.0, 2.0]
    assert engine.unbroadcast(g, (2, 1)).tolist() == [[3.0], [3.0]]
    assert float(engine.unbroadcast(g, ())) == 6.0


def test_validate_catches_broken_graphs():
    with pytest.raises(AssertionError, match="dependency order"):
        validate(Graph((Node(0, "neg", (0,)),), 0))
    with pytest.raises(AssertionError, match="wrong arity"):
        validate(Graph((Node(0, "input", name="x"), Node(1, "add", (0,))), 1, "", {"x": 0}))
    with pytest.raises(KeyError, match="no rule registered for op 'frobnicate'"):
        validate(Graph((Node(0, "input", name="x"), Node(1, "frobnicate", (0,))), 1, "", {"x": 0}))
