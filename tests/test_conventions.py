"""Conventions, of the numbers and of the command line.

README's table of conventions at awkward points, row by row: the engine's value and
gradients are the numbers the table states, and torch autograd (called here directly, not
through the cross-check) gives the same; the report calls none of them a disagreement.

Then the command line's "did you mean": a mistyped option, command, function, model or
name gets the likely one named in its error (exit 2), and only a slip that close does."""

from __future__ import annotations

import math
import re
import shlex

import numpy as np
import pytest

from backprop_cli.core import engine
from backprop_cli.core.parse import parse
from tests.conftest import run

try:
    import torch
except ImportError:  # the command line's conventions below need no torch
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="needs torch")

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


@needs_torch
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


@needs_torch
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


@needs_torch
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


@needs_torch
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


# ---- the command line: "did you mean" ------------------------------------------------------


def _usage_error(result):
    assert result.code == 2 and result.stdout == "", (result.code, result.stdout)
    assert "Traceback" not in result.stderr
    return result.stderr.splitlines()


@pytest.mark.parametrize(
    ("args", "typed", "meant"),
    [
        (["grad", "--formt", "json", "x", "x=1"], "--formt", "--format"),
        (["grad", "x", "x=1", "--formt=json"], "--formt", "--format"),
        (["grad", "x", "x=1", "--no-torh"], "--no-torh", "--no-torch"),
        (["grad", "x", "x=1", "--Wrt", "x"], "--Wrt", "--wrt"),
        (["explain", "x*y", "x=1", "y=2", "--wtr", "x"], "--wtr", "--wrt"),
        (["train", "--epocs", "3"], "--epocs", "--epochs"),
        (["ops", "--formt", "json"], "--formt", "--format"),
        (["--verison"], "--verison", "--version"),
    ],
)
def test_a_mistyped_option_names_the_one_meant(args, typed, meant):
    lines = _usage_error(run(*args))
    assert lines == [f"error: no such option {typed}; did you mean {meant}?"]


def test_an_option_far_from_every_one_is_still_refused():
    lines = _usage_error(run("grad", "x", "x=1", "--colour"))
    assert lines[0] == "error: no such option --colour"
    assert lines[1].startswith("hint: see 'backprop grad --help'") and "'--'" in lines[1]


def test_an_expression_that_starts_with_a_minus_is_not_an_option():
    options = ["--format", "csv", "--no-torch", "--no-symbolic"]
    for args in (["-x*y", "x=1", "y=2", *options], [*options, "--", "--x", "x=1"]):
        result = run("grad", *args)
        assert result.code == 0, result.stderr


def test_a_mistyped_command_names_the_one_meant():
    lines = _usage_error(run("gard", "x", "x=1"))
    assert lines[0].startswith("error: no such command 'gard'; did you mean 'grad'?")


# (expression, the hint) for functions of other notations, slips and definitions
FUNCTIONS = [
    ("ln(x)", "hint: did you mean 'log'? (log is the natural logarithm)"),
    ("sni(x)", "hint: did you mean 'sin'?"),
    ("Sin(x)", "hint: did you mean 'sin'?"),
    ("tg(x)", "hint: did you mean 'tan'?"),
    ("sigmod(x)", "hint: did you mean 'sigmoid'?"),
    ("cot(x)", "hint: cot(x) is written 1/tan(x)"),
    ("ctg(x)", "hint: ctg is cot, and cot(x) is written 1/tan(x)"),
    ("lg(x)", "hint: lg is log10, and log10(x) is written log(x)/log(10)"),
    ("arcsin(x)", "hint: the language has no inverse trigonometric functions "
                  "(`backprop ops` lists its own)"),
    ("atan(x)", "hint: the language has no inverse trigonometric functions "
                "(`backprop ops` lists its own)"),
    ("f(x) = x**2", "hint: name the expression instead: f = x**2 (its free names are the "
                    "variables)"),
]  # fmt: skip


@pytest.mark.parametrize(("expression", "hint"), FUNCTIONS)
def test_an_unknown_function_gets_the_likely_one(expression, hint):
    lines = _usage_error(run("grad", expression, "x=1", "--no-torch"))
    assert lines[0].startswith("error: expression: column 1: ")
    assert lines[1:] == [f"  {expression}", "  ^", hint]
    assert "to multiply" not in " ".join(lines)


def test_a_definition_is_explained_whatever_its_body():
    lines = _usage_error(run("grad", "g(a, b) = a*b + 1; g", "a=1", "b=2", "--no-torch"))
    assert "function definitions are not part of the language" in lines[0]
    assert lines[-1].startswith("hint: name the expression instead: g = a*b + 1 ")


def test_a_product_without_its_star_still_gets_the_multiply_hint():
    lines = _usage_error(run("grad", "y = 2; y(x)", "x=1", "--no-torch"))
    assert lines[-1] == "hint: to multiply, write y*(...)"
    lines = _usage_error(run("grad", "q(x)", "x=1", "q=2", "--no-torch"))
    assert lines[-1] == "hint: `backprop ops` lists the functions; to multiply, write q*(...)"


def test_only_functions_that_exist_are_suggested(monkeypatch):
    """lg is log10 once the language has log10; every suggested name is in `backprop ops`."""
    from backprop_cli.core import ops
    from backprop_cli.core import parse as parsing
    from backprop_cli.core.errors import ParseError

    syntax = " ".join(row["syntax"] for row in run("ops", "--format", "json").json()["ops"])
    listed = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\(", syntax))
    for spelled, meant in parsing._ELSEWHERE.items():
        said = "(a function now)"
        try:
            parse(f"{spelled}(x)")
        except ParseError as exc:
            said = exc.hint or ""
        if "did you mean" in said:
            assert meant in ops.FUNCTIONS and meant in listed, spelled
        else:
            assert meant not in ops.FUNCTIONS, spelled
    monkeypatch.setitem(ops.FUNCTIONS, "log10", ops.FUNCTIONS["log"])
    with pytest.raises(ParseError) as caught:
        parse("lg(x)")
    assert caught.value.hint == "did you mean 'log10'?"


def test_a_value_given_in_another_case_is_named():
    lines = _usage_error(run("grad", "x**2", "X=3", "--no-torch"))
    assert lines == [
        "error: missing value for x",
        "hint: X=3 was given, but names are case-sensitive: write x=3",
    ]
    lines = _usage_error(run("grad", "x*y", "X=2.5", "--no-torch"))
    assert lines[-1] == "hint: X=2.5 was given, but names are case-sensitive: write x=2.5, " \
        "and give y=…"  # fmt: skip
    assert _usage_error(run("grad", "x", "y=3", "--no-torch"))[-1] == "hint: give it as x=…"


# a bare name this close to a built-in model is a typo of it; one further is an expression
MODEL_SLIPS = [("lnear", "linear"), ("Linear", "linear"), ("linaer", "linear"),
               ("linearr", "linear"), ("affin", "affine"), ("quadratc", "quadratic"),
               ("logistc", "logistic"), ("mpl", "mlp"), ("MLP", "mlp")]  # fmt: skip
NOT_SLIPS = ["line", "lin", "w", "ml", "bias", "(lnear)", "lnear + 0"]


@pytest.mark.parametrize(("model", "meant"), MODEL_SLIPS)
def test_a_mistyped_model_is_an_error_naming_the_model(model, meant):
    lines = _usage_error(run("train", model, "--epochs", "1"))
    assert lines[0] == f"error: unknown model '{model}'; did you mean '{meant}'?"
    assert lines[1] == (
        f"hint: `backprop train --list` lists the models; ({model}) is a model of one "
        f"parameter {model}"
    )


@pytest.mark.parametrize("model", NOT_SLIPS)
def test_a_name_far_from_every_model_is_an_expression(model):
    result = run("train", model, "--epochs", "1", "--format", "json")
    assert result.code == 0, result.stderr
    assert "unknown model" not in result.stderr


def test_the_edit_distance_counts_a_swap_as_one_and_ignores_case():
    from backprop_cli.core.suggest import closest, distance

    assert distance("sni", "sin") == 1 and distance("Linear", "linear") == 0
    assert distance("kitten", "sitting") == 3 and distance("", "abc") == 3
    assert closest("formt", ["form", "format"]) == "format"  # the more similar of a tie
    assert closest("x", ["T", "exp"]) is None  # a one-letter name is never "corrected"
    assert closest("line", ["linear"]) is None and closest("lnear", ["linear"]) == "linear"


@needs_torch
def test_one_checked_point_is_said_in_the_singular(tmp_path):
    points = tmp_path / "one.csv"
    points.write_text("x\n2\n")
    result = run("grad", "x**2", "--points", str(points), "--check")
    assert result.code == 0, result.stderr
    assert "1 gradient of 1 point agrees" in result.stderr


# ---- usage errors in the tool's own words ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (("grad", "x", "x=1", "--format", "jsno"),
         "error: --format: 'jsno' is not one of table, json, csv, markdown, tsv, jsonl, html, "
         "dot, mermaid, svg, png, pdf, latex, parquet, arrow; did you mean json?"),
        (("grad", "x", "x=1", "--dtype", "f32"),
         "error: --dtype: 'f32' is not one of float64, float32"),
        (("grad", "x", "x=1", "--digits", "abc"),
         "error: --digits: input should be a valid integer"),
        (("train", "--epochs", "-3"), "error: --epochs: input should be greater than or equal"),
        (("gard",), "error: no such command 'gard'; did you mean 'grad'?"),
        (("frobnicate",), "error: no such command 'frobnicate'"),
    ],
)  # fmt: skip
def test_usage_errors_read_as_ours(args, first):
    r = run(*args)
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.startswith(first), r.stderr
    assert "Value error" not in r.stderr and "Invalid value" not in r.stderr


@pytest.mark.parametrize("command", ["grad", "explain", "graph", "check", "jacobian", "hessian"])
def test_a_missing_expression_suggests_the_commands_own_example(command):
    r = run(command)
    lines = r.stderr.splitlines()
    assert r.code == 2 and lines[0] == "error: missing the expression"
    assert lines[1].startswith(f"hint: backprop {command} ")
    example = shlex.split(lines[1].removeprefix("hint: "))[1:]
    fast = ("--no-torch",) if command in ("grad", "jacobian", "hessian") else ()
    assert run(*example, *fast).code == 0


@pytest.mark.parametrize("command", ["grad", "train", "explain", "graph"])
@pytest.mark.parametrize("spec", ["mpl:2-3-1", "mlpp:2-3-1", "MLP:2-3-1"])
def test_a_mistyped_mlp_spec_names_the_spec_meant(command, spec):
    r = run(command, spec)
    assert r.code == 2 and r.stdout == ""
    assert (
        r.stderr.splitlines()[0] == f"error: unknown model spec '{spec}'; did you mean 'mlp:2-3-1'?"
    )


def test_a_colon_inside_brackets_is_still_a_slice():
    assert run("grad", "sum(x[0:2])", "x=[1,2,3]", "--no-torch", "--no-symbolic").code == 0


def test_a_mistyped_loss_gets_the_loss_meant():
    r = run("train", "linear", "--loss", "mes")
    assert (
        r.code == 2 and r.stderr.splitlines()[0] == "error: unknown loss 'mes'; did you mean 'mse'?"
    )
    assert (
        run("train", "linear", "--loss", "xyz").stderr.splitlines()[0]
        == "error: unknown loss 'xyz'"
    )
