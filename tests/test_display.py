"""How grad, check, diff, jacobian/hessian and the notebook HTML read: significant digits
(--digits) in every human display and full precision in the machine formats, one display
name per node, Markdown whose mathematics renders (Jupyter, GitHub, MkDocs) and compiles,
plurals, and golden files of the grad displays of every example."""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import backprop_cli as bp
from backprop_cli.core.parse import parse
from backprop_cli.render import check as check_view
from backprop_cli.render import diff as diff_view
from backprop_cli.render import gradient as view
from backprop_cli.render import numbers
from tests.conftest import run
from tests.transcripts import differences

ROOT = Path(__file__).parent.parent
GOLDEN = Path(__file__).parent / "golden"
EXAMPLES = sorted((ROOT / "examples").glob("*.bp"))
HAVE_LATEX = shutil.which("pdflatex") is not None
SIGMOID = ["sigmoid(w*x+b)", "w=2", "x=-1", "b=0.5"]
TWO_LINES = "a = w*x + b\nloss = (sigmoid(a) - y)**2"


def example_values(path: Path) -> list[str]:
    line = next(x for x in path.read_text().splitlines() if x.startswith("# run:"))
    return [a for a in shlex.split(line.split(":", 1)[1]) if "=" in a]


def report_of(expression: str, **point: Any) -> dict[str, Any]:
    with bp.quiet():
        result = bp.grad(expression, **point)
    return result.report


def shown(renderables: list[Any], width: int = 100) -> str:
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    for item in renderables:
        console.print(item)
    return console.export_text()


def grad_text(*args: str) -> str:
    r = run("grad", *args)
    assert r.code == 0, r.stderr
    return r.stdout


def number_in(text: str, value: str) -> bool:
    """`value` appears as a whole number (not part of a longer one)."""
    return re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.]|…)", text) is not None


# ---- significant digits -------------------------------------------------------------------


def test_tables_show_four_significant_digits_by_default():
    out = grad_text("examples/sigmoid_neuron.bp", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3")
    assert number_in(out, "0.7311") and number_in(out, "-0.1966") and number_in(out, "0.3932")
    assert not re.search(r"\d…", out)  # no number cut with an ellipsis
    assert "0.7310585786300049" not in out


def test_round_off_noise_and_negative_zero_are_hidden_but_json_keeps_every_digit():
    out = grad_text("x - 0.605", "x=0.5")
    assert "value -0.105" in out and "-0.10499999999999998" not in out
    data = run("grad", "x - 0.605", "x=0.5", "--format", "json").json()
    assert data["value"] == 0.5 - 0.605
    zero = grad_text("x*0", "x=-1", "--no-torch")
    assert "value 0 " in zero and not re.search(r"(?<![\w.])-0(?![\w.])", zero)


@pytest.mark.parametrize(("digits", "expected"), [(2, "0.73"), (4, "0.7311"), (0, "0.7310585")])
def test_the_digits_setting_reaches_every_human_display(digits, expected):
    report = report_of("sigmoid(x)", x=1)
    with numbers.precision(digits):
        table = shown(view.tables(report, 100))
        markdown = view.to_markdown(report)
        page = bp.grad("sigmoid(x)", x=1, torch=False)._repr_html_()
    html = re.sub(r' (title|data-final)="[^"]*"', "", page)  # tooltips hold every digit
    for text in (table, markdown, html):
        assert expected in text
    if digits:
        assert "0.7310585" not in table + markdown + html


def test_machine_formats_carry_full_precision_whatever_the_digits():
    report = report_of("sigmoid(x)", x=1)
    with numbers.precision(2):
        document = json.loads(view.to_json(report))
        row = view.to_csv(report)
    assert document["value"] == 0.7310585786300049
    assert "0.7310585786300049" in row


def test_error_figures_keep_their_short_form():
    out = grad_text(*SIGMOID)
    errors = re.findall(r"max error (\S+)", out)
    assert len(errors) == 3
    assert all(re.fullmatch(r"0|\d(\.\d)?e-\d+", e) for e in errors), errors


def test_given_values_stay_whole_so_the_arithmetic_reads_right():
    out = grad_text("1/(x - 0.1)", "x=0.10000000001")
    assert "at x = 0.10000000001" in out and number_in(out, "0.10000000001")
    assert number_in(out, "1e-11")


def test_a_disagreement_shows_the_digits_that_tell_the_numbers_apart():
    assert view.telling((0.14914645, 0.14914645)) is None
    with numbers.precision(4):
        n = view.telling((0.149146452, 0.149146459))
        assert n is not None
        assert numbers.number(0.149146452, n) != numbers.number(0.149146459, n)
        assert view.telling((0.1491, 0.2983)) is None


def test_check_reports_numbers_with_the_setting():
    with bp.quiet():
        report = bp.check("x*y", points=[{"x": 1.0 / 3, "y": 2.0}]).report
    lines = check_view.check_lines(report)
    assert lines[-1].endswith("every comparison agrees at 1 point")
    assert lines[0].startswith("worst point: x = 0.3333, y = 2: ∂/∂y engine 0.33333")
    engine, other = re.findall(r"(0\.3333\d*)", lines[0].split(": ∂/∂y ")[1])
    assert engine != other  # two numbers that differ show the digits where they part
    table = shown([check_view.check_table(report)])
    assert "1 point from" in table


def test_diff_numbers_follow_the_setting():
    report = {"check": {"mismatches": [{"name": "df/dx", "point": {"x": 1.0 / 3},
                                        "formula": 0.25, "engine": 0.2500001}]}}  # fmt: skip
    with numbers.precision(4):
        [line] = diff_view.disagreements(report)
    assert line == "df/dx at x=0.3333: the formula gives 0.25, the engine 0.2500001"


# ---- one name per node ----------------------------------------------------------------------


def test_the_graph_table_names_nodes_as_explain_does():
    out = grad_text(*SIGMOID)
    assert "t1 = w*x" in out and "t2 = w*x+b" in out and "f = sigmoid(w*x+b) ◀ output" in out
    assert re.search(r"│ t1, b\s+│", out)  # inputs by name
    explained = run("explain", *SIGMOID).stdout
    assert "t1 = w*x" in explained and "t2 = w*x+b" in explained


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_node_names_are_the_graphs_short_names(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    data = run("grad", "--file", str(path), *example_values(path), "--format", "json").json()
    graph = parse(path.read_text())
    expected = graph.short_names()
    if graph.out.name is None:
        expected[graph.output] = graph.output_name()
    assert view.node_names(data) == expected
    markdown = run("grad", "--file", str(path), *example_values(path), "--format", "markdown")
    for name in expected:
        assert f"`{name}`" in markdown.stdout


def test_display_names_come_from_the_report():
    report = report_of("x*y + x", x=1, y=2)
    named = {**report, "nodes": [{**n, "display_name": f"n{n['id']}"} for n in report["nodes"]]}
    assert view.node_names(named) == [f"n{i}" for i in range(len(report["nodes"]))]


def test_the_notebook_html_uses_the_same_names_and_digits():
    page = bp.grad("sigmoid(w*x+b)", w=2, x=-1, b=0.5, torch=False)._repr_html_()
    html = re.sub(r' (title|data-final)="[^"]*"', "", page)  # tooltips hold every digit
    assert "<code>w * x</code>" in html and "<code>t1 + b</code>" in html
    assert "<code>sigmoid(t2)</code>" in html and ">2, 3<" not in html
    assert "0.1824" in html and "0.18242552" not in html
    assert "(float64)" in html


# ---- Markdown with mathematics ------------------------------------------------------------


MARKDOWN_CASES = [
    ["grad", *SIGMOID],
    ["grad", *SIGMOID, "--latex"],
    ["grad", TWO_LINES, "w=2", "x=-1", "b=0.5", "y=1", "--latex", "--no-torch"],
    ["grad", "abs(x)*y", "x=0.5", "y=2", "--latex"],
    ["grad", "sum(W@x)", "W=[[1,2],[3,4]]", "x=[0.5,-1]", "--latex"],
    ["grad", "x*y**2", "x=1", "y=2", "--order", "2"],
    ["diff", "x**2*sin(x)*abs(y)", "--steps"],
    ["diff", "x**2*sin(x)", "--steps", "--latex"],
    ["hessian", "x1**2*x2 + exp(x1*x2)", "x1=1", "x2=2"],
    ["jacobian", "sigmoid(W@x)", "W=[[1,2],[3,4]]", "x=[0.5,-1]"],
]


def markdown_of(args: list[str]) -> str:
    r = run(*args, "--format", "markdown")
    assert r.code == 0, r.stderr
    return r.stdout


def math_spans(text: str) -> list[str]:
    """The LaTeX between $…$ and $$…$$ outside code spans, in order."""
    spans = []
    for line in text.splitlines():
        outside = re.sub(r"(`+).+?\1", "", line)
        spans += [a or b for a, b in re.findall(r"\$\$(.+?)\$\$|\$(.+?)\$", outside)]
    return spans


def to_html(text: str) -> str:
    import markdown

    return markdown.markdown(
        text,
        extensions=["tables", "pymdownx.arithmatex"],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )


@pytest.mark.parametrize("args", MARKDOWN_CASES, ids=lambda a: " ".join(a)[:40])
def test_markdown_math_renders(args):
    import html as html_module

    text = markdown_of(args)
    spans = math_spans(text)
    assert spans, text
    page = to_html(text)
    rendered = re.findall(
        r'<(?:span|div) class="arithmatex">\s*\\[(\[](.*?)\\[)\]]\s*</(?:span|div)>',
        page,
        re.DOTALL,
    )
    assert [html_module.unescape(r).strip() for r in rendered] == [s.strip() for s in spans]
    outside = re.sub(r'<(span|div) class="arithmatex">.*?</\1>', "", page, flags=re.DOTALL)
    assert "$" not in outside and "\\frac" not in outside and "\\partial" not in outside
    assert not any("∂" in c or "\\frac" in c for c in re.findall(r"<code>(.*?)</code>", page))
    for table in re.findall(r"<table>(.*?)</table>", page, re.DOTALL):
        cells = {
            len(re.findall(r"<t[hd][ >]", row))
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.DOTALL)
        }
        assert len(cells) == 1, table  # no row split by a '|' inside its math


def test_latex_formulas_are_math_not_code():
    text = markdown_of(["grad", *SIGMOID])  # Markdown is math-ready without --latex
    assert "`\\frac" not in text and "\\frac{e^{- b - w x}}" in text
    assert "$\\frac{\\partial f}{\\partial w}$" in text
    assert "$\\frac{x e^{- b - w x}}{\\left(e^{- b - w x} + 1\\right)^{2}}$" in text
    assert "`x*exp(-b - w*x)/(exp(-b - w*x) + 1)**2`" not in text
    assert markdown_of(["grad", *SIGMOID, "--latex"]) == text
    data = json.loads(grad_text(*SIGMOID, "--format", "json"))  # SymPy's text, to copy
    assert data["symbolic"]["w"] == "x*exp(-b - w*x)/(exp(-b - w*x) + 1)**2"


def test_the_markdown_heading_is_math_when_the_output_has_latex():
    report = report_of("sigmoid(w*x+b)", w=2, x=-1, b=0.5)
    assert "SymPy: `f = 1/(exp(-b - w*x) + 1)`" in view.to_markdown(report)
    report["symbolic_output_latex"] = "\\frac{1}{e^{- b - w x} + 1}"
    text = view.to_markdown(report)
    assert "SymPy: $f = \\frac{1}{e^{- b - w x} + 1}$\n" in text and "SymPy: `" not in text


def test_a_pipe_in_latex_does_not_split_a_table_cell():
    text = markdown_of(["grad", "abs(x)*y", "x=0.5", "y=2", "--latex"])
    row = next(line for line in text.splitlines() if "\\partial y}$" in line)
    assert "\\vert" in row and row.count("|") == 8


@pytest.mark.skipif(not HAVE_LATEX, reason="no LaTeX installed")
def test_the_markdown_mathematics_compiles(tmp_path):  # pragma: no cover
    pieces = [span for args in MARKDOWN_CASES for span in math_spans(markdown_of(args))]
    body = "\n\n".join(f"$\\displaystyle {piece}$" for piece in pieces)
    document = (
        "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
        f"{body}\n\\end{{document}}\n"
    )
    (tmp_path / "math.tex").write_text(document)
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "math.tex"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    log = (tmp_path / "math.log").read_text(errors="replace")
    assert done.returncode == 0 and "\n! " not in log, log[-2000:]
    assert len(pieces) > 40


# ---- grammar --------------------------------------------------------------------------------


def test_counts_read_as_english():
    out = grad_text("x*2", "x=3")
    assert "1 partial agrees" in out and "1 partials" not in out
    diff = run("diff", "x**2").stdout
    assert "checked at 3 random points" in diff
    assert numbers.plural(1, "random point") == "1 random point"
    assert numbers.plural(1, "entry", "entries") == "1 entry"


# ---- golden files ---------------------------------------------------------------------------

GOLDEN_KINDS = {
    "grad.md": ("markdown", 100),
    "grad.txt": ("table", 100),
    "grad40.txt": ("table", 40),
}
GOLDEN_CASES = [(p, kind) for p in EXAMPLES for kind in GOLDEN_KINDS]


@pytest.mark.parametrize(
    ("path", "kind"), GOLDEN_CASES, ids=[f"{p.stem}-{k}" for p, k in GOLDEN_CASES]
)
def test_golden(path, kind, monkeypatch):
    fmt, width = GOLDEN_KINDS[kind]
    monkeypatch.setenv("COLUMNS", str(width))
    monkeypatch.chdir(ROOT)
    r = run("grad", "--file", f"examples/{path.name}", *example_values(path), "--format", fmt)
    assert r.code == 0, r.stderr
    golden = GOLDEN / f"{path.stem}.{kind}"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(r.stdout)
    problems = differences(golden.read_text(), r.stdout)
    assert not problems, f"regenerate with UPDATE_GOLDEN=1 ({golden.name}): {problems}"
