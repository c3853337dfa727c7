"""Properties over random inputs: random expression trees agree with torch and finite
differences; random and almost-valid text never gets past the parser's error handling."""

from __future__ import annotations

import json
import math
import os

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backprop_cli.checks import autograd, compare, finite
from backprop_cli.core import engine
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import parse
from tests.conftest import run

# BACKPROP_FUZZ_SCALE=100 turns the suite's bounded runs into a long campaign.
SCALE = int(os.environ.get("BACKPROP_FUZZ_SCALE", "1"))


def examples(n: int) -> settings:
    return settings(max_examples=n * SCALE)


VARIABLES = ("x", "y", "z")
UNARY = ("exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "relu", "abs", "softplus")
BINARY_CALLS = ("max", "min", "pow", "log")
INFIX = ("+", "-", "*", "/", "**")

leaves = st.one_of(
    st.sampled_from(VARIABLES),
    st.floats(-4, 4, allow_nan=False).map(lambda v: f"({v:.4g})"),
    st.sampled_from(("pi", "e", "2", "0.5")),
)


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from(UNARY), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, st.sampled_from(INFIX), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(BINARY_CALLS), children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        children.map(lambda c: f"-{c}"),
    )


expressions = st.recursive(leaves, _extend, max_leaves=10)
points = st.fixed_dictionaries(
    {v: st.floats(-3, 3, allow_nan=False).map(lambda f: round(f, 3)) for v in VARIABLES}
)


def _graph(source: str):
    try:
        return parse(source)
    except BackpropError:
        assume(False)  # a constant subexpression is undefined: an input error, not a case
        raise


def _traced(source: str, point: dict[str, float]):
    graph = _graph(source)
    env = {name: point[name] for name in graph.variables}
    return graph, env, engine.run(graph, env)


@examples(150)
@given(expressions, points)
def test_engine_agrees_with_torch_on_every_node(source, point):
    graph, env, trace = _traced(source, point)
    torch_run = autograd.torch_run(graph, env, "float64", "cpu")
    rtol, atol = compare.TOLERANCES["float64"]["torch"]
    for node in graph.nodes:
        ours, theirs = float(trace.values[node.id]), float(torch_run.values[node.id])
        assert compare.agree(ours, theirs, rtol, atol), (source, node.id, "value", ours, theirs)
        if trace.grads[node.id] is not None:
            ours, theirs = float(trace.grads[node.id]), float(torch_run.grads[node.id])
            assert compare.agree(ours, theirs, rtol, atol), (source, node.id, "grad", ours, theirs)


@examples(150)
@given(expressions, points)
def test_engine_agrees_with_finite_differences_where_smooth(source, point):
    graph, env, trace = _traced(source, point)
    value = float(trace.values[graph.output])
    assume(math.isfinite(value) and abs(value) < 1e6)
    noise = engine.spread(graph, env, trace)[0][graph.output]  # as the report does
    estimates = finite.finite_differences(graph, env, list(graph.variables), noise)
    rtol, atol = compare.TOLERANCES["float64"]["finite_difference"]
    for name, estimate in estimates.items():
        grad = float(trace.grads[graph.variables[name]])
        if estimate.kink or estimate.value is None or not math.isfinite(grad) or abs(grad) > 1e6:
            continue
        if estimate.error_estimate is None or estimate.error_estimate > 1e-4 * max(1, abs(grad)):
            continue  # the function is too rough here for differences to say anything
        slack = 2 * estimate.error_estimate
        assert compare.agree(grad, estimate.value, rtol, atol + slack), (
            source,
            name,
            grad,
            estimate,
        )


ALPHABET = st.sampled_from(
    [
        *"xyzw012345.e+-*/^()=,;# \n\t_[]{}'\"@%<>!&|~:\\`$?",
        *("**", "exp(", "log(", "max(", "sqrt(", "lambda", "import", "__", "1e999", "9**9**9"),
        *("ｘ", "\u200b", "\x00", "−", "²", "٣", "\ufeff"),
    ]
)
texts = st.lists(ALPHABET, max_size=30).map("".join)


@examples(400)
@given(texts)
def test_random_text_parses_or_fails_cleanly(text):
    try:
        graph = parse(text)
    except BackpropError as exc:
        assert exc.message and "\n" not in exc.message
        return
    env = {name: 0.5 for name in graph.variables}
    try:  # a shape error ('x@x' of two numbers) is found once the values are known
        engine.run(graph, env)
    except BackpropError as exc:
        assert exc.message and "\n" not in exc.message


def _mutations(source: str) -> st.SearchStrategy[str]:
    positions = st.integers(0, max(0, len(source)))
    return st.one_of(
        positions.map(lambda i: source[:i] + source[i + 1 :]),
        st.tuples(positions, ALPHABET).map(lambda t: source[: t[0]] + t[1] + source[t[0] :]),
        st.tuples(positions, positions).map(lambda t: source[: min(t)] + source[max(t) :]),
    )


almost_valid = expressions.flatmap(_mutations)


@examples(60)
@given(almost_valid)
def test_cli_on_almost_valid_input_exits_0_1_or_2(text):
    values = [f"{v}=0.7" for v in VARIABLES] + ["w=1.5"]
    before = set(os.listdir("."))
    result = run("grad", "--format", "json", "--no-torch", "--no-symbolic", "--", text, *values)
    assert set(os.listdir(".")) == before  # nothing written to disk
    assert result.code in (0, 1, 2), (text, result.stderr)
    assert "Traceback" not in result.stderr
    if result.code in (0, 1):
        json.loads(result.stdout)
    else:
        assert result.stderr.startswith("error: ")


@examples(40)
@given(expressions, points)
def test_batched_forward_equals_pointwise(source, point):
    graph = _graph(source)
    names = list(graph.variables)
    batch = {n: np.array([point[n], point[n] + 0.25]) for n in names}
    values = engine.evaluate(graph, batch)
    out = np.broadcast_to(values[graph.output], (2,))
    for k in range(2):
        single = engine.evaluate(graph, {n: float(batch[n][k]) for n in names})[graph.output]
        assert compare.agree(float(out[k]), float(single), 0.0, 0.0)


@examples(25)
@given(st.recursive(leaves, _extend, max_leaves=5), points)
def test_engine_agrees_with_sympy_where_sympy_has_a_value(source, point):
    """SymPy differentiates our graph's counterpart (in its bounded child, as the report
    does); where its partial has a real value at the point, the report does not call it a
    disagreement, and the engine's gradient equals it to the sweep's rounding spread."""
    from backprop_cli.analyses.gradient import OK_STATUSES, Options, gradient_report
    from backprop_cli.core.parse import parse_program

    try:
        program = parse_program(source)
    except BackpropError:
        assume(False)
        raise
    env = {name: point[name] for name in program.graph.variables}
    options = Options(torch=False, finite_difference=False, simplify=False, symbolic_timeout=5)
    report = gradient_report(program, env, options)
    for p in report["partials"]:
        assert p["status"]["symbolic"] in OK_STATUSES, (source, point, p)
        ours, exact = p["engine"], p["symbolic_value"]
        if p["status"]["symbolic"] != "ok" or exact is None or ours is None:
            continue
        if not (math.isfinite(ours) and math.isfinite(exact)):
            continue
        slack = 4 * (p["spread"] or 0.0) + 1e-12 * max(1.0, abs(exact))
        assert abs(ours - exact) <= slack, (source, point, p)
