"""Narrow terminals: at 40, 60, 80 and 120 columns every table folds or stacks. No line is
longer than the terminal, no column vanishes, no number is cut in two or shortened with
'…', and every formula and every node is still there."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from rich.console import Console

import backprop_cli as bp
from backprop_cli.render import check as check_view
from backprop_cli.render import gradient as view
from backprop_cli.render import numbers

WIDTHS = [40, 60, 80, 120]
TWO_LINES = "a = w*x + b\nloss = (sigmoid(a) - y)**2"
GRAD_CASES = {
    "sigmoid": ("sigmoid(w*x+b)", {"w": 2, "x": -1, "b": 0.5}, {}),
    "two lines": (TWO_LINES, {"w": 2, "x": -1, "b": 0.5, "y": 1}, {}),
    "arrays": ("sum(W@x + b)", {"W": [[1, 2], [3, 4]], "x": [0.5, -1], "b": [0.1, 0.2]}, {}),
    "kink": ("relu(x) + abs(y)*x", {"x": 0, "y": 0}, {}),
    "second order": ("x*y**2*exp(z)", {"x": 1, "y": 2, "z": 0.5}, {"order": 2}),
    "full digits": ("sigmoid(w*x+b)/3", {"w": 2, "x": -1, "b": 0.5}, {"digits": 0}),
}


def draw(renderables: list[Any], width: int) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    for item in renderables:
        console.print(item)
    return console.export_text()


def grad_report(case: str) -> dict[str, Any]:
    expression, point, options = GRAD_CASES[case]
    options = {k: v for k, v in options.items() if k != "digits"}
    with bp.quiet():
        return bp.grad(expression, **point, **options).report


def squeezed(text: str) -> str:
    """The text with every space and line break gone: a formula folded over lines is still
    one run of characters here."""
    return re.sub(r"\s", "", text)


def whole(text: str, value: str) -> bool:
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.]|…)", text) is not None


def assert_fits(text: str, width: int) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"{len(long)} lines over {width} columns: {long[:3]}"
    assert not re.search(r"\d…", text), "a number cut with an ellipsis"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_grad_tables_fit_and_keep_everything(case, width):
    report = grad_report(case)
    digits = GRAD_CASES[case][2].get("digits")
    with numbers.precision(digits):
        text = draw(view.tables(report, width), width)
        engine = [numbers.number(p["engine"], dtype=report["dtype"]) for p in report["partials"]]
        values = [
            numbers.number(n["value"]) for n in report["nodes"] if not isinstance(n["value"], list)
        ]
    assert_fits(text, width)
    flat = squeezed(text)
    for p in report["partials"]:
        if p["symbolic"]:
            assert squeezed(p["symbolic"]) in flat, p["symbolic"]
        assert f"∂{view.output_name(report)}/∂{p['element']}" in text
    for name in view.node_names(report):  # every node, by its display name
        assert re.search(rf"(?<![\w∂/.]){re.escape(name)}(?![\w\[])", text), name
    for value in engine + values:
        assert whole(text, value), value
    if "second_order" in report:
        for e in report["second_order"]["entries"]:
            assert squeezed(e["symbolic"]) in flat


@pytest.mark.parametrize("width", WIDTHS)
def test_columns_never_collapse_to_nothing(width):
    text = draw(view.tables(grad_report("sigmoid"), width), width)
    for line in text.splitlines():
        assert "┃┃" not in line and "││" not in line and "┳┳" not in line
    headers = ("engine", "torch", "agree")
    assert all(h in text for h in headers)
    if "┃" in text:  # a bordered table: its headers are whole words, never 'en…'
        assert not re.search(r"┃ \w+… ", text)


def test_the_layout_follows_the_width():
    report = grad_report("sigmoid")
    wide, narrow = draw(view.tables(report, 120), 120), draw(view.tables(report, 40), 40)
    assert "SymPy formula" in wide and "SymPy partials" not in wide  # formulas in the table
    assert "SymPy partials" in narrow  # ... above it when they do not fit
    assert "┃ partial" in wide and "┃ partial" not in narrow  # stacked at 40 columns
    assert re.search(r"^∂f/∂w  ✓$", narrow, re.MULTILINE)
    assert re.search(r"^  engine +-0\.1491$", narrow, re.MULTILINE)


@pytest.mark.parametrize("width", WIDTHS)
def test_check_jacobian_hessian_and_ops_tables_fit(width):
    with bp.quiet():
        check = bp.check("sigmoid(w*x+b)", samples=20).report
        hessian = bp.hessian("x1**2*x2 + exp(x1*x2)", x1=1, x2=2).report
        jacobian = bp.jacobian("sigmoid(W@x)", W=[[1, 2], [3, 4]], x=[0.5, -1]).report
    pieces = [
        ([check_view.check_heading(check), check_view.check_table(check)], ["torch autograd"]),
        (view.higher_tables(hessian, "hessian", width), ["x2**2*exp(x1*x2) + 2*x2"]),
        (view.higher_tables(jacobian, "jacobian", width), ["W[1,1]", "f[1]"]),
        ([view.ops_table(view.ops_rows())], ["softplus", "sigmoid"]),
    ]
    for renderables, needed in pieces:
        text = draw(renderables, width)
        assert_fits(text, width)
        for piece in needed:
            assert squeezed(piece) in squeezed(text), piece
    lines = check_view.check_lines(check)
    assert_fits(draw(lines, width), width)


def backprop(*args: str, width: int) -> str:
    env = {**os.environ, "COLUMNS": str(width), "PYTHONIOENCODING": "utf-8"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("width", WIDTHS)
def test_the_command_line_fits_the_columns_it_is_given(width):
    out = backprop("grad", TWO_LINES, "w=2", "x=-1", "b=0.5", "y=1", width=width)
    assert_fits(out, width)
    flat = squeezed(out)
    for formula in ("2*y-2/(exp(-b-w*x)+1)", "t3=sigmoid(a)-y", "a=w*x+b", "t2=sigmoid(a)"):
        assert formula in flat
    for name in ("t1", "t2", "t3", "a", "loss", "w", "x", "b", "y"):
        assert re.search(rf"(?<![\w∂]){name}(?![\w])", out), name
    assert whole(out, "0.6684") and whole(out, "-0.4878") and whole(out, "1.635")


GRAPH_CASES = {
    "program": ("q = x + y; f = sin(q)*z + q/x", {"x": -2, "y": 5, "z": -4}),
    "constants": ("sigmoid(x)*0.7 - 0.805", {"x": 1}),
    "two lines": (TWO_LINES, {"w": 2, "x": -1, "b": 0.5, "y": 1}),
    "arrays": ("sum(W@x + b)", {"W": [[1, 2], [3, 4]], "x": [0.5, -1], "b": [0.1, 0.2]}),
}


def graph_columns(report: dict[str, Any], text: str) -> dict[int, set[str]]:
    """Per node id, the graph table's columns that its row shows: every column of a
    bordered table (whose header line must name them all), or the labels of its stacked
    block."""
    headers = ["id", "node", "op", "inputs", "value", f"∂{view.output_name(report)}/∂node"]
    ids = [n["id"] for n in report["nodes"]]
    if "┃" in text:
        head = next(line for line in text.splitlines() if line.startswith("┃"))
        assert [h.strip() for h in head.strip("┃").split("┃")] == headers, head
        rows = [line for line in text.splitlines() if re.match(r"^│ +\d+ │", line)]
        assert [int(line.split("│")[1]) for line in rows] == ids
        return {i: set(headers) for i in ids}
    shown: dict[int, set[str]] = {}
    current = None
    for line in text.splitlines():
        if start := re.match(r"^(\d+)  ", line):
            current = int(start.group(1))
            shown[current] = {"id", "node"}
        elif (label := re.match(r"^  (\S+)  ", line)) and current is not None:
            shown[current].add(label.group(1))
    return shown


@pytest.mark.parametrize("digits", [0, 4, 17])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_the_graph_table_never_drops_a_column(case, width, digits):
    expression, point = GRAPH_CASES[case]
    with bp.quiet():
        report = bp.grad(expression, **point, torch=False).report
    with numbers.precision(digits):
        text = draw([view.tables(report, width)[1]], width)
    assert_fits(text, width)
    shown = graph_columns(report, text)
    assert sorted(shown) == [n["id"] for n in report["nodes"]]
    gradient = f"∂{view.output_name(report)}/∂node"
    for node in report["nodes"]:
        needed = {"op", "value", gradient} | ({"inputs"} if node["inputs"] else set())
        assert needed <= shown[node["id"]], (node["id"], shown[node["id"]])


def test_the_layouts_go_from_the_whole_table_to_a_block_per_row():
    report = grad_report("two lines")
    wide, narrow = draw([view.tables(report, 120)[1]], 120), draw([view.tables(report, 40)[1]], 40)
    assert "┃ op " in wide and "┃ inputs " in wide
    assert "┃" not in narrow and re.search(r"^  inputs +t2, y$", narrow, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "width"),
    [
        (["q = x + y; f = sin(q)*z + q/x", "x=-2", "y=5", "z=-4"], 40),
        (["sigmoid(x)*0.7 - 0.805", "x=1", "--digits", "0"], 80),
        (["sigmoid(x)*0.7 - 0.805", "x=1", "--digits", "17"], 80),
    ],
)
def test_the_command_line_keeps_every_column_of_the_graph(args, width):
    out = backprop("grad", *args, "--no-torch", width=width)
    assert_fits(out, width)
    graph = out.split("Computational graph")[1].split("\n\n")[0]
    assert "op " in graph and "inputs " in graph and "value " in graph
