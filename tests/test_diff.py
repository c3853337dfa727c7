"""`backprop diff`: derivatives as formulas, the rules applied node by node, second
derivatives, the output formats, the SymPy budget, bad input, and random expressions whose
formulas must equal the engine's gradient."""

from __future__ import annotations

import re
import time

import pytest
import sympy  # imported here so that the forked SymPy children start at once
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from backprop_cli.analyses import diff as diff_analysis
from backprop_cli.analyses.diff import differentiate
from backprop_cli.checks import symbolic
from backprop_cli.cli.diff import DIFF_EXAMPLES
from backprop_cli.core import ops
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import parse_program
from tests.conftest import run


def _one_error_line(result) -> str:
    assert result.code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: ")
    return first


# ---- the derivative -----------------------------------------------------------------------


def test_the_derivative_of_x_squared_sin_x():
    r = run("diff", "x**2*sin(x)")
    assert r.code == 0, r.stderr
    assert "f = x**2*sin(x)" in r.stdout
    assert "df/dx = x**2*cos(x) + 2*x*sin(x)" in r.stdout
    assert "checked at 3 random points" in r.stdout
    assert r.stderr == ""


def test_every_variable_by_default_and_wrt_picks():
    r = run("diff", "x*y**2 + z")
    assert r.code == 0, r.stderr
    assert "∂f/∂x = y**2" in r.stdout
    assert "∂f/∂y = 2*x*y" in r.stdout
    assert "∂f/∂z = 1" in r.stdout
    only = run("diff", "x*y**2 + z", "--wrt", "y")
    assert only.code == 0
    assert "∂f/∂y = 2*x*y" in only.stdout
    assert "∂f/∂x" not in only.stdout and "∂f/∂z" not in only.stdout
    bad = run("diff", "x*y", "--wrt", "q")
    assert "--wrt names q" in _one_error_line(bad)


def test_a_program_file_and_its_statements():
    r = run("diff", "--file", "examples/cs231n_add_mul.bp")
    assert r.code == 0, r.stderr
    assert "f = z*(x + y)" in r.stdout
    assert "∂f/∂x = z" in r.stdout and "∂f/∂z = x + y" in r.stdout
    inline = run("diff", "q = x + y; f = q * z", "--wrt", "z")
    assert "∂f/∂z = x + y" in inline.stdout


def test_constants_show_as_typed():
    r = run("diff", "0.1*x**2 + pi*x")
    assert r.code == 0, r.stderr
    assert "df/dx = x/5 + pi" in r.stdout


def test_order_two_one_variable_and_the_hessian():
    r = run("diff", "x**3", "--order", "2")
    assert r.code == 0, r.stderr
    assert "d²f/dx² = 6*x" in r.stdout
    assert "the engine's Hessian" in r.stdout
    h = run("diff", "x*y**2", "--order", "2", "--format", "json").json()
    entries = {tuple(d["wrt"]): d["formula"] for d in h["derivatives"]}
    assert entries == {("x", "x"): "0", ("x", "y"): "2*y", ("y", "y"): "2*x"}
    assert [d["name"] for d in h["derivatives"]] == ["∂²f/∂x²", "∂²f/∂x∂y", "∂²f/∂y²"]
    assert h["check"]["ok"] is True and h["order"] == 2
    assert run("diff", "x", "--order", "3").code == 2


def test_latex():
    r = run("diff", "x**2*sin(x)", "--latex")
    assert r.code == 0, r.stderr
    assert (
        "\\frac{d f}{d x} = x^{2} \\cos{\\left(x \\right)} + 2 x \\sin{\\left(x \\right)}"
        in r.stdout
    )


# ---- the steps ------------------------------------------------------------------------------


def _steps(expression: str, *args: str) -> list[dict]:
    r = run("diff", expression, "--steps", "--format", "json", *args)
    assert r.code == 0, r.stderr
    return r.json()["steps"]


def test_steps_power_chain_and_product_rule_in_forward_order():
    steps = _steps("x**2*sin(x)")
    assert [(s["rule"], s["equation"]) for s in steps] == [
        ("power rule", "d/dx (x**2) = 2*x"),
        ("chain rule", "d/dx sin(x) = cos(x)"),
        ("product rule", "d/dx (x**2*sin(x)) = x**2*cos(x) + 2*x*sin(x)"),
    ]
    # the outer function's derivative comes from the op registry, the inner is named
    assert ops.OPS["sin"].rule in steps[1]["because"] and "inner x" in steps[1]["because"]
    text = run("diff", "x**2*sin(x)", "--steps").stdout
    assert "1. power rule: d/dx (x**2) = 2*x" in text
    assert "3. product rule: d/dx (x**2*sin(x)) = x**2*cos(x) + 2*x*sin(x)" in text
    assert "forward order" in text


def test_steps_quotient_rule_and_chain_rule_with_an_inner_function():
    steps = _steps("sin(x)/x")
    assert steps[-1]["rule"] == "quotient rule"
    assert steps[-1]["equation"] == "d/dx (sin(x)/x) = cos(x)/x - sin(x)/x**2"
    chain = _steps("exp(x**2)")
    assert [s["rule"] for s in chain] == ["power rule", "chain rule"]
    assert chain[1]["equation"] == "d/dx exp(x**2) = 2*x*exp(x**2)"
    assert "inner x**2" in chain[1]["because"]


def test_steps_name_the_special_cases_of_each_rule():
    rules = {s["equation"]: s["rule"] for s in _steps("3*x + 2**x - y**x", "--wrt", "x")}
    assert rules["∂/∂x (3*x) = 3"] == "constant multiple rule"
    assert rules["∂/∂x (2**x) = 2**x*log(2)"] == "exponential rule"
    assert rules["∂/∂x (y**x) = y**x*log(y)"] == "exponential rule"
    assert any(r == "difference rule" for r in rules.values())
    general = _steps("x**x")
    assert general[-1]["rule"] == "generalized power rule"
    none = _steps("y*2", "--wrt", "y")
    assert [s["rule"] for s in none] == ["constant multiple rule"]
    independent = run("diff", "x + y*0", "--steps", "--format", "json").json()
    assert independent["steps"][0]["rule"] == "sum rule"
    alone = _steps("x")
    assert [(s["rule"], s["derivative"]) for s in alone] == [("identity rule", "1")]


def test_steps_of_a_program_name_its_statements():
    steps = _steps("q = x + y; f = q * z", "--wrt", "x")
    assert [(s["name"], s["rule"], s["derivative"]) for s in steps] == [
        ("q", "sum rule", "1"),
        ("f", "constant multiple rule", "z"),
    ]


# ---- formats ------------------------------------------------------------------------------

TOP_KEYS = {
    "schema", "expression", "source", "statements", "output", "variables", "wrt", "order",
    "derivatives", "steps", "symbolic", "check", "warnings", "ok",
}  # fmt: skip


def test_json_keys_are_stable():
    r = run("diff", "x**2*sin(x)", "--steps", "--format", "json")
    assert r.code == 0, r.stderr
    out = r.json()
    assert set(out) == TOP_KEYS
    assert set(out["output"]) == {"name", "name_latex", "formula", "latex"}
    (d,) = out["derivatives"]
    assert set(d) == {"wrt", "name", "name_latex", "formula", "latex", "simplified"}
    assert d["wrt"] == ["x"] and d["simplified"] is True
    assert d["formula"] == "x**2*cos(x) + 2*x*sin(x)"
    assert set(out["symbolic"]) == {
        "state", "timeout", "simplified", "simplify_errors", "steps", "order",
    }  # fmt: skip
    assert out["symbolic"]["order"] == "forward"
    assert set(out["check"]) == {
        "state", "ok", "against", "seed", "points", "compared", "tolerance", "mismatches",
        "reason",
    }  # fmt: skip
    assert out["check"]["compared"] == len(out["check"]["points"]) == 3
    step_keys = {
        "wrt", "node", "name", "rule", "form", "because", "expression", "derivative",
        "equation", "latex",
    }  # fmt: skip
    assert all(set(s) == step_keys for s in out["steps"])
    plain = run("diff", "x**2", "--format", "json").json()
    assert plain["steps"] is None and set(plain) == TOP_KEYS


def test_markdown():
    r = run("diff", "x**2*sin(x)", "--steps", "--format", "markdown")
    assert r.code == 0, r.stderr
    assert "| derivative | formula | SymPy | simplified |" in r.stdout
    assert (
        "| $\\frac{d f}{d x}$ | $x^{2} \\cos{\\left(x \\right)} + 2 x \\sin{\\left(x \\right)}$ "
        "| `x**2*cos(x) + 2*x*sin(x)` | yes |"
    ) in r.stdout
    assert "1. **power rule**: $\\frac{d}{d x} \\left(x^{2}\\right) = 2 x$;" in r.stdout
    tex = run("diff", "x**2*sin(x)", "--format", "markdown", "--latex").stdout
    assert "| derivative | formula | simplified |" in tex and "$\\frac{d f}{d x}$" in tex


def test_the_points_are_seeded():
    program = parse_program("x*y")
    a = differentiate(program, simplify=False)
    b = differentiate(program, simplify=False)
    assert a["check"]["points"] == b["check"]["points"]
    assert differentiate(program, simplify=False, seed=1)["check"]["points"] != a["check"]["points"]


def test_points_stay_inside_the_domain():
    r = differentiate(parse_program("log(x) + sqrt(y - 1)"), simplify=False)
    assert r["check"]["ok"] is True
    assert all(p["x"] > 0 and p["y"] > 1 for p in r["check"]["points"])


def test_no_point_in_the_domain_is_said():
    r = run("diff", "log(-x**2 - 1)", "--format", "json")
    assert r.code == 0
    check = r.json()["check"]
    assert check["state"] == "skipped" and check["ok"] is None
    assert "no random point" in check["reason"]


def test_a_disagreement_is_named_and_exits_1(monkeypatch):
    wrong = diff_analysis._grad
    monkeypatch.setattr(diff_analysis, "_grad", lambda *a: wrong(*a) + 1.0)
    r = run("diff", "x**2")
    assert r.code == 1
    assert "✗ df/dx disagrees with the engine's gradient" in r.stdout
    assert re.search(r"disagreement: df/dx at x=\S+: the formula gives", r.stderr)


# ---- the budget ---------------------------------------------------------------------------


def _sleep(*_args):
    time.sleep(60)


def test_simplification_out_of_time_shows_the_differentiated_form(monkeypatch):
    monkeypatch.setattr(symbolic, "_tidy", _sleep)  # the child inherits the patch
    r = run("diff", "x**2*sin(x)", "--symbolic-timeout", "1", "--format", "json")
    assert r.code == 0, r.stderr
    out = r.json()
    (d,) = out["derivatives"]
    assert d["simplified"] is False and d["formula"] == "x**2*cos(x) + 2*x*sin(x)"
    assert out["symbolic"]["simplified"] == "budget"
    assert out["check"]["ok"] is True  # checked on the form shown
    text = run("diff", "x**2*sin(x)", "--symbolic-timeout", "1").stdout
    assert "note: simplification did not finish within the 1 s budget" in text
    assert "df/dx = x**2*cos(x) + 2*x*sin(x)" in text


def test_differentiation_out_of_time_is_one_line_exit_2(monkeypatch):
    monkeypatch.setattr(sympy, "diff", _sleep)
    r = run("diff", "x**2*sin(x)", "--symbolic-timeout", "1")
    line = _one_error_line(r)
    assert line == "error: the symbolic differentiation did not finish within the 1 s budget"
    with pytest.raises(BackpropError, match="did not finish"):
        differentiate(parse_program("x*y"), timeout=0.5)


def test_no_simplify():
    r = run("diff", "x*exp(x) + exp(x)*2", "--no-simplify", "--format", "json").json()
    (d,) = r["derivatives"]
    assert d["simplified"] is False and r["symbolic"]["simplified"] == "off"


# ---- bad input ----------------------------------------------------------------------------


def test_a_parse_error_is_one_line_with_its_column():
    r = run("diff", "x**2*sin(x")
    line = _one_error_line(r)
    assert re.match(r"error: expression: column \d+: ", line)
    assert run("diff", "x + $").code == 2


def test_arrays_are_refused():
    for expression in ("x[0] * 2", "sum(x @ y)", "zeros(3) * x"):
        line = _one_error_line(run("diff", expression))
        assert "diff is for scalar variables" in line, expression


def test_values_and_constant_expressions_are_refused():
    assert "unexpected extra argument" in _one_error_line(run("diff", "x*2", "x=1"))
    given_too = run("diff", "--file", "examples/cs231n_add_mul.bp", "x*2")
    assert "diff takes no values" in _one_error_line(given_too)
    assert "no variables" in _one_error_line(run("diff", "2*3"))
    assert "missing the expression" in _one_error_line(run("diff"))
    assert "10" in _one_error_line(run("diff", "x+" * 20 + "x", "--max-length", "10"))


def test_the_examples_fit_80_columns():
    lines = [line for line in DIFF_EXAMPLES.splitlines() if line.strip()]
    assert all(len(line) <= 80 for line in lines)
    commands = [line.strip() for line in lines if line.strip().startswith("backprop diff")]
    assert len(commands) >= 3
    for command in commands:
        assert '"' in command or "--file" in command  # expressions quoted for bash and zsh


# ---- random expressions against the engine ------------------------------------------------


def _calls(arity: int) -> list[str]:
    """The registry's elementwise functions of this arity, by the name a user writes."""
    return sorted(
        name
        for name, arities in ops.FUNCTIONS.items()
        if arity in arities and ops.OPS[arities[arity]].elementwise
    )


UNARY, BINARY = _calls(1), _calls(2)
LEAVES = st.sampled_from(["x", "y", "2", "0.5", "3"])


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*", "/"]), children, children).map(
            lambda t: f"({t[1]} {t[0]} {t[2]})"
        ),
        st.tuples(st.sampled_from(UNARY), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(BINARY), children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        st.tuples(children, st.sampled_from(["2", "3"])).map(lambda t: f"({t[0]})**{t[1]}"),
    )


EXPRESSIONS = st.recursive(LEAVES, _extend, max_leaves=6)


@settings(max_examples=30)
@given(EXPRESSIONS, st.booleans())
def test_random_expressions_agree_with_the_engine(expression, simplify):
    try:
        program = parse_program(expression)
    except BackpropError:  # a constant part is undefined (sqrt(cos(2))): refused as input
        assume(False)
    assume(program.graph.variables)
    result = differentiate(program, simplify=simplify, timeout=20, steps=True)
    assert result["check"]["ok"] is not False, (expression, result["check"])
    # the steps end with the derivative they build, the same as SymPy's own
    last = {s["wrt"]: s for s in result["steps"]}
    assert set(last) == set(result["wrt"])


# ---- the engine's side of the check, inside the budget ------------------------------------


def _products(n: int) -> str:
    return " + ".join(f"x{i}*x{i + 1}" for i in range(n))


def test_the_engine_check_is_estimated_from_the_graph():
    small = parse_program("x**2*sin(x)").graph
    chain = parse_program("x" + "*1" * 20_000).graph  # the review's order-1 case
    wide = parse_program(_products(2000)).graph  # and its order-2 one: 2,001 variables
    share = diff_analysis.ENGINE_SHARE * 5.0
    x, xs = ["x"], list(wide.variables)
    assert diff_analysis._too_dear(small, x, 1, 3, share, 5.0) is None
    assert diff_analysis._too_dear(small, x, 2, 3, share, 5.0) is None
    reason = diff_analysis._too_dear(chain, x, 1, 3, share, 5.0)
    assert reason is not None and "engine's gradient at 3 random points" in reason
    assert "40,001 nodes" in reason and "of the 5 s budget (--symbolic-timeout)" in reason
    # the gradient is one sweep whatever the variables; the Hessian grows with them
    assert diff_analysis._too_dear(wide, xs, 1, 3, share, 5.0) is None
    hessian = diff_analysis._too_dear(wide, xs, 2, 3, share, 5.0)
    assert hessian is not None and "Hessian in 2,001 variables" in hessian
    assert diff_analysis.engine_seconds(wide, xs, 2) > 5 * diff_analysis.engine_seconds(
        wide, xs[:10], 2
    )


def test_a_check_too_dear_for_the_budget_is_skipped_and_says_why(monkeypatch):
    monkeypatch.setattr(diff_analysis, "NODE_SECONDS", 1.0)

    def never(*_args, **_kwargs):
        raise AssertionError("the engine's check ran")

    monkeypatch.setattr(diff_analysis, "_sample_points", never)
    r = differentiate(parse_program("x**2*sin(x)"))
    check = r["check"]
    assert check["state"] == "skipped" and check["ok"] is None and check["points"] == []
    assert check["reason"].startswith("the engine's gradient at 3 random points would take")
    assert "more than its share (1.25 s) of the 5 s budget" in check["reason"]
    assert r["ok"] is True and r["derivatives"][0]["formula"] == "x**2*cos(x) + 2*x*sin(x)"
    text = run("diff", "x**2*sin(x)")
    assert text.code == 0, text.stderr
    assert "– not checked: the engine's gradient at 3 random points would take" in text.stdout
    js = run("diff", "x**2*sin(x)", "--format", "json", "--symbolic-timeout", "2").json()
    assert "of the 2 s budget (--symbolic-timeout)" in js["check"]["reason"]


def test_only_the_dear_hessian_is_skipped(monkeypatch):
    monkeypatch.setattr(diff_analysis, "DUAL_FACTOR", 10**9)
    first = differentiate(parse_program("x*y**2"), simplify=False)
    assert first["check"]["ok"] is True
    second = differentiate(parse_program("x*y**2"), order=2, simplify=False)
    assert second["check"]["state"] == "skipped"
    assert second["check"]["reason"].startswith("the engine's Hessian in 2 variables at 3")


def test_a_refused_diff_does_no_engine_work(monkeypatch):
    monkeypatch.setattr(sympy, "diff", _sleep)
    monkeypatch.setattr(diff_analysis, "NODE_SECONDS", 1.0)
    monkeypatch.setattr(diff_analysis, "_sample_points", None)  # never called
    line = _one_error_line(run("diff", "x**2*sin(x)", "--symbolic-timeout", "1"))
    assert line == "error: the symbolic differentiation did not finish within the 1 s budget"


def test_the_search_for_points_is_charged_to_the_one_deadline(monkeypatch):
    seen = []
    search = diff_analysis._sample_points
    deadlines = []

    class Recorded(diff_analysis.Deadline):
        def __init__(self, seconds: float) -> None:
            super().__init__(seconds)
            deadlines.append(self)

    def recorded(*args, stop=None):
        (deadline,) = deadlines
        seen.append((deadline.at, stop))
        return search(*args, stop=stop)

    monkeypatch.setattr(diff_analysis, "Deadline", Recorded)
    monkeypatch.setattr(diff_analysis, "_sample_points", recorded)
    r = differentiate(parse_program("x*y"), simplify=False, timeout=4.0)
    assert r["check"]["ok"] is True
    ((at, stop),) = seen
    assert at is not None and stop is not None  # the command's clock runs during the search
    assert stop == pytest.approx(at - 4.0 + diff_analysis.ENGINE_SHARE * 4.0)


def test_the_search_stops_at_its_share_of_the_budget(monkeypatch):
    class Clock:
        now = 0.0

        @classmethod
        def monotonic(cls) -> float:
            cls.now += 1.0
            return cls.now

    graph = parse_program("x**2").graph
    pairs = symbolic.derivative_pairs(["x"], 1)
    monkeypatch.setattr(diff_analysis, "time", Clock)
    got = diff_analysis._sample_points(graph, ["x"], pairs, 1, 3, 0, stop=2.5)
    assert got["tries"] == 2 and got["out_of_time"] is True  # clock 1 and 2 try, 3 stops
    assert 1 <= len(got["found"]) <= 2
    unbounded = diff_analysis._sample_points(graph, ["x"], pairs, 1, 3, 0)
    assert len(unbounded["found"]) == 3 and unbounded["out_of_time"] is False
    assert unbounded["found"][: len(got["found"])] == got["found"]  # the same seeded points


def test_no_point_within_the_share_is_said(monkeypatch):
    monkeypatch.setattr(diff_analysis, "ENGINE_SHARE", 0.0)  # the search stops at once
    monkeypatch.setattr(diff_analysis, "_too_dear", lambda *_args: None)
    r = differentiate(parse_program("x**2"), simplify=False)
    check = r["check"]
    assert check["state"] == "budget" and check["ok"] is None and check["compared"] == 0
    assert check["reason"] == (
        "the engine's check ran out of its share (0 s) of the 5 s budget (--symbolic-timeout) "
        "before a random point was found (0 tried)"
    )
    assert r["ok"] is True


# ---- the LaTeX block ----------------------------------------------------------------------


def test_latex_block_labels_each_derivative():
    from backprop_cli.render.diff import latex_block

    one = differentiate(parse_program("x**2*sin(x)"))
    assert latex_block(one) == (
        "\\begin{aligned}\n"
        "\\frac{d f}{d x} &= x^{2} \\cos{\\left(x \\right)} + 2 x \\sin{\\left(x \\right)}\n"
        "\\end{aligned}"
    )
    h = differentiate(parse_program("x*y**2"), order=2)
    assert latex_block(h).splitlines() == [
        "\\begin{aligned}",
        "\\frac{\\partial^{2} f}{\\partial x^{2}} &= 0 \\\\",
        "\\frac{\\partial^{2} f}{\\partial x \\partial y} &= 2 y \\\\",
        "\\frac{\\partial^{2} f}{\\partial y^{2}} &= 2 x",
        "\\end{aligned}",
    ]


def test_a_formula_undefined_where_the_engine_has_a_convention_is_not_a_disagreement():
    # 0**|x| at x < 0: SymPy's derivative has a log(0)*0 term, the engine follows torch (0)
    r = run("diff", "pow(relu(x), abs(x))", "--no-simplify", "--format", "json")
    assert r.code == 0, r.stderr
    check = r.json()["check"]
    assert check["ok"] is True and check["mismatches"] == []
    assert 1 <= check["compared"] < len(check["points"])
