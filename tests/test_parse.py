"""The parser: the language, its precedence rules, every error path and hostile input."""

from __future__ import annotations

import math
import os

import pytest

from backprop_cli.core import engine
from backprop_cli.core.errors import BackpropError, ParseError
from backprop_cli.core.graph import validate
from backprop_cli.core.parse import Limits, parse, parse_binding, parse_constant, parse_program


def value(source: str, **env: float) -> float:
    graph = parse(source)
    validate(graph)
    return float(engine.evaluate(graph, env)[graph.output])


@pytest.mark.parametrize(
    ("source", "env", "expected"),
    [
        ("-x**2", {"x": 3}, -9.0),
        ("2**-1", {}, 0.5),
        ("2**3**2", {}, 512.0),
        ("2^3^2", {}, 512.0),
        ("(2**3)**2", {}, 64.0),
        ("-2**2", {}, -4.0),
        ("2*-3", {}, -6.0),
        ("1 - -1", {}, 2.0),
        ("--x", {"x": 5}, 5.0),
        ("+x", {"x": 5}, 5.0),
        ("x - y - z", {"x": 10, "y": 3, "z": 2}, 5.0),
        ("x / y / z", {"x": 12, "y": 3, "z": 2}, 2.0),
        ("2**-x**2", {"x": 1}, 0.5),
        ("2 * 3 + 4 * 5", {}, 26.0),
        ("2 * (3 + 4) * 5", {}, 70.0),
        ("-x*y", {"x": 2, "y": 3}, -6.0),
        ("x*-y**2", {"x": 2, "y": 3}, -18.0),
        ("1e3 + 2.5E-1 + .5 + 5.", {}, 1005.75),
        ("pi", {}, math.pi),
        ("e", {}, math.e),
        ("log(e**2)", {}, 2.0),
        ("log(8, 2)", {}, 3.0),
        ("pow(2, 10)", {}, 1024.0),
        ("max(2, 3) + min(2, 3)", {}, 5.0),
        ("sqrt(16) + abs(-2) + relu(-1) + relu(2)", {}, 8.0),
        ("sigmoid(0) + tanh(0) + softplus(0)", {}, 0.5 + math.log(2)),
        ("sin(0) + cos(0) + tan(0) + exp(0)", {}, 2.0),
    ],
)
def test_arithmetic_follows_python_precedence(source, env, expected):
    assert value(source, **env) == pytest.approx(expected, rel=1e-15)


def test_graph_mirrors_the_sigmoid_neuron():
    graph = parse("1/(1+exp(-(w0*x0+w1*x1+w2)))")
    ops = [n.op for n in graph.nodes if n.op not in ("input", "const")]
    assert ops == ["mul", "mul", "add", "add", "neg", "exp", "add", "div"]


def test_subtraction_is_a_subtraction_node():
    graph = parse("x - y")
    assert [n.op for n in graph.nodes] == ["input", "input", "sub"]


def test_program_statements_name_their_nodes():
    graph = parse("q = x + y; f = q * z")
    labels = [graph.label(n.id) for n in graph.nodes]
    assert labels == ["x", "y", "q", "z", "f"]
    assert graph.out.name == "f"
    assert list(graph.variables) == ["x", "y", "z"]


def test_newlines_comments_and_blank_statements():
    source = "# a comment\n\nq = (x +\n     y)  # continues inside parentheses\n;;\nf = q * z\n"
    graph = parse(source)
    assert graph.out.name == "f"
    assert float(engine.evaluate(graph, {"x": -2, "y": 5, "z": -4})[graph.output]) == -12.0


def test_windows_line_endings_and_bom():
    graph = parse("\ufeffq = x + y\r\nf = q * 2\r\n")
    assert graph.out.name == "f"


def test_augmented_assignments():
    graph = parse("a = x; a += 1; a -= y; a *= 2; a /= 4; a **= 2")
    ops = [n.op for n in graph.nodes if n.name == "a"]
    assert ops == ["assign", "add", "sub", "mul", "div", "pow"]
    assert float(engine.evaluate(graph, {"x": 3, "y": 2})[graph.output]) == pytest.approx(1.0)


def test_reassignment_makes_new_nodes_with_the_same_label():
    graph = parse("a = x * 2; a = a * 3; a")
    named = [n for n in graph.nodes if n.name == "a"]
    assert len(named) == 2
    assert graph.output == named[1].id


def test_constants_can_be_shadowed():
    assert value("e = 2; x * e", x=3) == 6.0
    assert value("pi = 3; pi") == 3.0


def test_reading_a_variable_then_assigning_it():
    graph = parse("x = x + 1; x * 2")
    assert list(graph.variables) == ["x"]
    assert float(engine.evaluate(graph, {"x": 1})[graph.output]) == 4.0


def test_unused_expression_statement_warns():
    program = parse_program("x + 1; x * 2")
    assert any("has no effect" in w for w in program.warnings)


def test_underflowing_literal_warns():
    program = parse_program("x + 1e-400")
    assert any("too small" in w for w in program.warnings)


ERRORS = [
    ("x +", "expected a number", 4),
    ("* x", "expected a number", 1),
    ("2x", "missing operator", 2),
    ("x y", "missing operator", 3),
    ("(x", "never closed", 1),
    ("x)", "unmatched ')'", 2),
    ("f(x)", "unknown function 'f'", 1),
    ("sinn(x)", "did you mean 'sin'", 1),
    ("exp", "is a function", 1),
    ("exp + 1", "is a function", 1),
    ("x(2)", "unknown function 'x'", 1),
    ("y = 2; y(3)", "'y' is not a function", 8),
    ("log(x, 2, 3)", "takes 1 or 2 arguments, got 3", 1),
    ("max(x, y, z)", "takes 1 or 2 arguments, got 3", 1),
    ("exp()", "takes 1 argument, got 0", 1),
    ("f(x,)", "unknown function", 1),
    ("exp(x,)", "expected a number", 7),
    ("x, y", "tuples are not supported", 2),
    ("2(x)", "missing operator before '('", 2),
    ("x[y]", "index must be an integer literal, not a variable", 3),
    ("x[1.5]", "index must be an integer literal", 3),
    ("x[0", "expected ',' or ']' in the index", 4),
    ("x[::0]", "step cannot be zero", 6),
    ("x[]", "expected an integer index or a slice", 3),
    ("x]", "unmatched ']'", 2),
    ("x:3", "':' only appears in slices", 2),
    ("x.foo", "attribute access ('.foo')", 2),
    (".T", "expected a number", 1),
    ("sum(x, axis=y)", "axis must be an integer literal", 13),
    ("sum(x, axis=0, axis=1)", "given twice", 16),
    ("sum(axis=0, x)", "positional argument after a keyword", 13),
    ("exp(x, axis=0)", "exp() takes no keyword 'axis'", 8),
    ("max(x, y, axis=0)", "max() with 2 arguments takes no keyword 'axis'", 1),
    ("reshape(x)", "needs the new shape", 1),
    ("reshape(x, y)", "dimension must be an integer literal", 12),
    ("[1, [2]]", "ragged list", 5),
    ("[[1, 2], [3]]", "ragged list", 10),
    ("[]", "empty list", 2),
    ("[1, 2", "expected ',' or ']' in the list", 6),
    ("[x, 1]", "list elements must be constants, but this one uses x", 2),
    ("[1, 2] + [1, 9**9**9]", "overflows float64", 14),
    ("zeros(x)", "arguments of zeros() must be numbers", 7),
    ("zeros(0)", "positive integers", 1),
    ("ones(2.5)", "positive integers", 1),
    ("arange(3, 1)", "the range is empty", 1),
    ("zeros(100000, 100000, 100000)", "more than 10,000,000 elements", 1),
    ("zeros", "is a function", 1),
    ("[1, 2] + [1, 2, 3]", "cannot broadcast shapes (2,) and (3,)", 1),
    ("a.b", "attribute access ('.b')", 2),
    ("'s'", "strings", 1),
    ('"s"', "strings", 1),
    ("lambda x: x", "lambda expressions", 1),
    ("[x for x in y]", "loops and comprehensions", 4),
    ("x if y else z", "conditionals", 3),
    ("x == 1", "comparisons", 3),
    ("x < 1", "comparisons", 3),
    ("x != 1", "comparisons", 3),
    ("x and y", "boolean operators", 3),
    ("not x", "boolean operators", 1),
    ("x // 2", "floor division", 3),
    ("x % 2", "modulo", 3),
    ("x & y", "bitwise", 3),
    ("x << 1", "bitwise shifts", 3),
    ("1j", "complex literals", 1),
    ("2 + 3J", "complex literals", 5),
    ("0x1F", "hexadecimal", 1),
    ("1_000", "digit separators", 2),
    ("1e", "exponent needs digits", 1),
    ("1.2.3", "malformed number", 4),
    ("import os", "import statements", 1),
    ("__import__", "may not start with '_'", 1),
    ("_x + 1", "may not start with '_'", 1),
    ("x + y = 3", "'=' can only follow a name", 7),
    ("exp = 3", "cannot assign to the function name", 1),
    ("x += ", "expected a number", 6),
    ("x + += 1", "can only follow a name", 5),
    ("True + 1", "Python booleans", 1),
    ("None", "None", 1),
    ("x; y +", "expected a number", 7),
    ("x\\\n+1", "backslashes", 2),
    ("ｘ + 1", "non-ASCII character 'ｘ'", 1),
    ("x − 1", "U+2212", 3),
    ("x\u200b", "invisible character U+200B", 2),
    ("x\x00", "NUL", 2),
    ("x\x07", "control character", 2),
    ("x ÷ 2", "non-ASCII", 3),
    ("", "empty expression", 1),
    ("   ", "empty expression", 1),
    ("# only a comment", "no statement", 1),
    (";;\n\n;", "no statement", 1),
    ("9**9**9", "overflows float64", 1),
    ("x + 9**9**9**9", "overflows float64", 8),
    ("x * log(0)", "singularity", 5),
    ("x + 1/0", "singularity", 5),
    ("x + sqrt(-1)", "undefined (nan)", 5),
    ("1e999 * x", "too large", 1),
]


@pytest.mark.parametrize(("source", "fragment", "column"), ERRORS)
def test_errors_name_the_problem_and_the_column(source, fragment, column):
    with pytest.raises(ParseError) as info:
        parse(source)
    err = info.value
    assert fragment in err.message + " " + (err.hint or "")
    assert err.column == column, err.message
    # The caret line points at the column.
    details = err.details()
    assert details[1].index("^") - 2 == column - 1 or len(details[0]) > 120


def test_error_on_a_later_line_names_the_line():
    with pytest.raises(ParseError) as info:
        parse("q = x + y\nf = q * * z")
    assert info.value.line == 2
    assert "line 2, column 9" in info.value.message


def test_lookalike_characters_get_a_hint():
    with pytest.raises(ParseError) as info:
        parse("x × y")
    assert info.value.hint == "type '*' instead of '×'"


INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "().__class__.__bases__[0].__subclasses__()",
    'exec(\'open("{marker}", "w")\')',
    "eval('1')",
    "open('{marker}', 'w')",
    "lambda: __import__('os')",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "x.__class__",
    "globals()",
    "import os; os.system('touch {marker}')",
    "exp.__globals__",
    "f'{{x}}'",
    "b'x'",
    "x if 1 else y",
    "(yield)",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_injection_attempts_are_refused_and_nothing_runs(template, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(BackpropError):
        parse(template.format(marker=marker))
    assert not marker.exists()
    assert not os.path.exists("pwned")


def test_nesting_limit():
    deep = "(" * 10_000 + "x" + ")" * 10_000
    with pytest.raises(ParseError, match="nesting deeper than 256"):
        parse(deep)
    ok = "(" * 200 + "x" + ")" * 200
    assert parse(ok).out.op == "input"


def test_nested_calls_count_towards_the_depth():
    with pytest.raises(ParseError, match="nesting deeper"):
        parse("sin(" * 300 + "x" + ")" * 300)


def test_length_limit():
    with pytest.raises(BackpropError, match="limit is 100,000"):
        parse("x+" * 5_000_000 + "x")
    with pytest.raises(BackpropError, match="limit is 10"):
        parse("x + y + z + w", limits=Limits(max_length=10))


def test_node_limit():
    with pytest.raises(ParseError, match="more than 100 graph nodes"):
        parse("+".join(["x"] * 200), limits=Limits(max_nodes=100))


def test_literal_length_limit():
    with pytest.raises(ParseError, match="number literal longer"):
        parse("1" * 101)
    with pytest.raises(ParseError, match="name longer"):
        parse("x" * 101)


def test_long_left_associative_chain_parses_without_recursion():
    graph = parse("+".join(["x"] * 100_000), limits=Limits(max_length=1_000_000))
    assert len(graph.nodes) == 100_000
    assert float(engine.evaluate(graph, {"x": 1.0})[graph.output]) == 100_000.0


def test_long_right_associative_chain_parses_without_recursion():
    graph = parse("**".join(["1"] * 5_000) + " * x")
    assert float(engine.evaluate(graph, {"x": 2.0})[graph.output]) == 2.0


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("x=-2", ("x", -2.0)),
        ("x=pi/4", ("x", math.pi / 4)),
        ("x=1e-3", ("x", 1e-3)),
        ("w_1=+3", ("w_1", 3.0)),
        ("x= 1.5 ", ("x", 1.5)),
        ("x=sqrt(2)", ("x", math.sqrt(2))),
        ("x=-e", ("x", -math.e)),
    ],
)
def test_bindings(arg, expected):
    name, number = parse_binding(arg)
    assert name == expected[0]
    assert number == pytest.approx(expected[1], rel=1e-15)


@pytest.mark.parametrize(
    ("arg", "fragment"),
    [
        ("x", "expected NAME=VALUE"),
        ("=3", "missing the name"),
        ("2x=1", "not a valid name"),
        ("_x=1", "not a valid name"),
        ("exp=1", "reserved"),
        ("lambda=1", "reserved"),
        ("x=", "is empty"),
        ("x=y", "constant expression"),
        ("x=1_000", "digit separators"),
        ("x=nan", "--allow-nonfinite"),
        ("x=inf", "not a finite number"),
        ("x=1/0", "singularity"),
        ("x=1e999", "too large"),
        ("x=a=1", "not an assignment"),
        ("x=٣", "non-ASCII"),
        ("x=y=2", "not an assignment"),
        ("x=z = 2", "not an assignment"),
    ],
)
def test_binding_errors(arg, fragment):
    with pytest.raises(BackpropError) as info:
        parse_binding(arg)
    assert fragment in info.value.message + str(info.value.hint)


def test_constant_values_are_one_expression():
    with pytest.raises(BackpropError, match="not an assignment"):
        parse_constant("a = 2", what="value for x")
    with pytest.raises(BackpropError, match="one expression, not 2 statements"):
        parse_constant("a = 2; a", what="value for x")
    with pytest.raises(BackpropError, match="one expression, not 2 statements"):
        parse_constant("1\n5", what="value for x")


def test_value_warnings_are_kept():
    warnings: list[str] = []
    assert parse_binding("x=1e-400", warnings=warnings) == ("x", 0.0)
    assert warnings == ["value for x: the number 1e-400 is too small for float64 and becomes 0"]


def test_line_endings_are_normalised_for_positions():
    with pytest.raises(ParseError) as info:
        parse("q = x + y\r\nf = q * * z\r\n")
    assert info.value.line == 2 and "?" not in info.value.details()[0]
    with pytest.raises(ParseError) as info:
        parse("q = x + y\rf = q * * z")
    assert (info.value.line, info.value.column) == (2, 9)


def test_subnormal_literals_warn():
    program = parse_program("x * 1e-320")
    assert any("subnormal" in w for w in program.warnings)
