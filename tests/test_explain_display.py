"""How `backprop explain` reads: significant digits, operand positions, one name per node,
Markdown whose mathematics renders (Jupyter, GitHub, MkDocs), and a LaTeX document with a
legend and the sweep table."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import backprop_cli as bp
from backprop_cli.core.parse import parse
from backprop_cli.render import explain as view
from backprop_cli.render import numbers
from tests.conftest import run

SIGMOID = ["examples/sigmoid_neuron.bp", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"]
ROOT = Path(__file__).parent.parent
HAVE_LATEX = shutil.which("pdflatex") is not None


def explain(*args: str) -> str:
    r = run("explain", *args)
    assert r.code == 0, r.stderr
    return r.stdout


def path_lines(text: str) -> list[str]:
    return [line.split("path ", 1)[1] for line in text.splitlines() if "path " in line]


# ---- operand positions ----------------------------------------------------------------------


def test_each_path_says_which_operand_it_goes_through():
    data = run("explain", "x*x + x", "x=3", "--format", "json").json()
    paths = data["partials"][0]["paths"]
    assert [[link["operand"] for link in p["links"]] for p in paths] == [
        [None, "left"],
        [None, "right"],
        [None],
    ]
    table = explain("x*x + x", "x=3")
    assert path_lines(table) == ["1: f → t1 → x (left)", "2: f → t1 → x (right)", "3: f → x"]
    assert "∂f/∂t1 · ∂t1/∂x (left)" in table and "∂f/∂t1 · ∂t1/∂x (right)" in table
    assert "t1 → x (left)" in table and "t1 → x (right)" in table  # the sweep's edges
    markdown = explain("x*x + x", "x=3", "--format", "markdown")
    items = [line for line in markdown.splitlines() if re.match(r"\d+\. ", line)]
    assert len(items) == len(set(items)) == 3
    assert items[0].startswith("1. f → t1 → x (left): $")
    assert r"\partial x\,(\text{right})" in items[1]
    latex = explain("x*x + x", "x=3", "--format", "latex")
    assert r"{\partial x\,(\text{left})}" in latex and r"{\partial x\,(\text{right})}" in latex


def test_operands_are_named_only_where_the_names_do_not_tell_them_apart():
    data = run("explain", "x*y - y", "x=3", "y=2", "--format", "json").json()
    links = [link for v in data["partials"] for p in v["paths"] for link in p["links"]]
    assert links and all(link["operand"] is None for link in links)
    assert "(left)" not in explain("x*y - y", "x=3", "y=2")
    # a reassigned name and an array program take the same care
    assert path_lines(explain("a = x*2; a = a*a", "x=3"))[:2] == [
        "1: a' → a (left) → x",
        "2: a' → a (right) → x",
    ]
    arrays = explain("sum(W*W)", "W=[[1,2],[3,4]]", "--format", "markdown")
    assert "| t1 → W (left) |" in arrays and "| t1 → W (right) |" in arrays


def test_forward_sweeps_say_the_operand_too():
    data = run("explain", "x*x", "x=3", "--mode", "forward", "--format", "json").json()
    steps = data["forward_sweeps"][0]["steps"]
    assert [s["operand"] for s in steps] == ["left", "right"]
    table = explain("x*x", "x=3", "--mode", "forward")
    assert "x (left)" in table and "x (right)" in table


# ---- numbers -------------------------------------------------------------------------------


def test_displays_round_to_four_significant_digits_and_json_keeps_every_digit():
    noisy = ["x*y + x", "x=0.1", "y=3"]  # x*y is 0.30000000000000004
    for fmt in ("table", "markdown", "latex"):
        text = explain(*noisy, "--format", fmt)
        assert "0.30000000000000004" not in text, fmt
        assert "0.3" in text and "0.4" in text, fmt
    data = run("explain", *noisy, "--format", "json").json()
    assert [e["value"] for e in data["legend"] if e["name"] == "t1"] == [0.30000000000000004]
    table = explain(*SIGMOID)
    assert "= 0.7311  at" in table and "∂f/∂w0 = -0.1966" in table
    assert "-1/1.368**2 · 1 · exp(-1) · -1 · 1 · 1 · (-1) = -0.1966" in table  # inside formulas
    assert "1.3678794411714423" not in table and "0.19661193324148188" not in table


def test_round_off_noise_and_negative_zero_never_show():
    text = explain("x*y", "x=0.35", "y=-0.3")  # -0.105 is -0.10499999999999998 in floats
    assert "= -0.105  at" in text and "0.10499999" not in text
    for fmt in ("table", "markdown", "latex"):
        shown = explain("-x*y", "x=0", "y=1", "--format", fmt)  # the value is -0.0
        assert not re.search(r"(?<![\w.])-0(?![\w.])", shown), (fmt, shown)


def test_digits_zero_shows_every_digit_and_other_settings_round():
    with numbers.precision(numbers.FULL):
        text = explain("x*y + x", "x=0.1", "y=3")
    assert "(0.30000000000000004)" in text
    with numbers.precision(2):
        assert "= 0.73  at" in explain(*SIGMOID)
    if "--digits" in run("explain", "--help").stdout:  # the option, where the command has it
        assert "(0.30000000000000004)" in explain("x*y + x", "x=0.1", "y=3", "--digits", "0")
        assert "= 0.731  at" in explain(*SIGMOID, "--digits", "3")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2*(-0.10500000000000004)", "2*(-0.105)"),
        ("-1/1.3678794411714423**2", "-1/1.368**2"),
        ("exp((-1))", "exp(-1)"),
        ("Heaviside((-0), 0)", "Heaviside(0, 0)"),
        ("1.2345678e-05*3", "1.235e-05*3"),
        ("log2(3.14159265)", "log2(3.142)"),
        ("10000000*x**2", "10000000*x**2"),  # integers and names stay as they are
    ],
)
def test_numbers_inside_formulas_follow_the_setting(text, expected):
    assert view._rounded(text) == expected


@pytest.mark.parametrize(
    ("tex", "expected"),
    [
        (r"2 \cdot \left(-0.10500000000000004\right)", r"2 \cdot \left(-0.105\right)"),
        (r"1.2345678 \times 10^{-5}", r"1.235 \times 10^{-5}"),
        (r"\frac{1}{t_{12}^{2}}", r"\frac{1}{t_{12}^{2}}"),
        (r"e^{\left(-0\right)}", "e^{0}"),
    ],
)
def test_numbers_inside_latex_follow_the_setting(tex, expected):
    assert view._rounded_tex(tex) == expected


# ---- one name per node ---------------------------------------------------------------------


def test_every_display_uses_the_graphs_one_name_per_node():
    program = "q = x + y; (q*z + sin(q))*w"
    names = parse(program).short_names()
    data = run("explain", program, "x=1", "y=2", "z=3", "w=4", "--format", "json").json()
    legend = {e["id"]: e["name"] for e in data["legend"]}
    output = data["output"]["id"]
    assert all(legend[i] == names[i] for i in legend if i != output)
    assert data["output"]["name"] == "f"  # the unnamed output is f, as everywhere
    intermediates = [n for n in names[:output] if re.fullmatch(r"t\d+", n)]
    assert intermediates == ["t1", "t2", "t3"]  # construction order
    table = explain(program, "x=1", "y=2", "z=3", "w=4")
    markdown = explain(program, "x=1", "y=2", "z=3", "w=4", "--format", "markdown")
    latex = explain(program, "x=1", "y=2", "z=3", "w=4", "--format", "latex")
    for t in intermediates:
        assert f"{t} = " in table and f"→ {t}" in table
        assert f"→ {t}" in markdown and "t_{" + t[1:] + "}" in markdown
        assert "t_{" + t[1:] + "} &= " in latex
    for text in (table, markdown, latex):
        assert "[#" not in text


# ---- Markdown ------------------------------------------------------------------------------


def _code_spans(text: str) -> list[str]:
    return [m[2] for m in re.finditer(r"(`+)(.+?)\1", text)]


def _markdown_cases() -> list[list[str]]:
    return [
        ["x*x + x", "x=3"],
        [*SIGMOID],
        ["yhat = x*w; r = yhat - y; loss = abs(r)**2", "x=2", "w=1", "y=4"],
        ["x*y + sin(x)", "x=0.5", "y=2", "--mode", "forward"],
        ["sum(W*W)", "W=[[1,2],[3,4]]"],
    ]


@pytest.mark.parametrize("args", _markdown_cases(), ids=lambda a: a[0][:20])
def test_markdown_keeps_its_mathematics_out_of_code_spans(args, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = explain(*args, "--format", "markdown")
    assert not any("∂" in span for span in _code_spans(text))
    assert not any("\\frac" in span or "\\partial" in span for span in _code_spans(text))
    for line in text.splitlines():
        outside = re.sub(r"(`+).+?\1", "", line)
        assert outside.count("$") % 2 == 0, line  # every $…$ is closed on its line
        if line.startswith("|"):
            math = re.findall(r"\$(.+?)\$", outside)
            assert not any("|" in m for m in math), line  # a | in math would end the cell


@pytest.mark.parametrize("args", _markdown_cases(), ids=lambda a: a[0][:20])
def test_markdown_renders_with_math(args, monkeypatch):
    import markdown

    monkeypatch.chdir(ROOT)
    text = explain(*args, "--format", "markdown")
    html = markdown.markdown(
        text,
        extensions=["tables", "pymdownx.arithmatex"],
        extension_configs={"pymdownx.arithmatex": {"generic": True}},
    )
    spans = re.findall(r'<span class="arithmatex">\\\((.*?)\\\)</span>', html, re.DOTALL)
    source_math = sum(len(re.findall(r"\$(.+?)\$", re.sub(r"(`+).+?\1", "", line)))
                      for line in text.splitlines())  # fmt: skip
    assert spans and len(spans) == source_math
    outside = re.sub(r'<span class="arithmatex">.*?</span>', "", html, flags=re.DOTALL)
    assert "$" not in outside and "\\partial" not in outside
    assert not any("∂" in code for code in re.findall(r"<code>(.*?)</code>", html))
    if "|---" in text:
        assert "<table>" in html


@pytest.mark.skipif(not HAVE_LATEX, reason="no LaTeX installed")
def test_the_mathematics_of_the_markdown_compiles(tmp_path, monkeypatch):  # pragma: no cover
    monkeypatch.chdir(ROOT)
    pieces = []
    for args in _markdown_cases():
        text = explain(*args, "--format", "markdown")
        for line in text.splitlines():
            pieces += re.findall(r"\$(.+?)\$", re.sub(r"(`+).+?\1", "", line))
    body = "\n\n".join(f"${piece}$" for piece in pieces)
    document = "\\documentclass{article}\n\\usepackage{amsmath}\n\\begin{document}\n"
    (tmp_path / "math.tex").write_text(document + body + "\n\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "math.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)  # fmt: skip
    log = (tmp_path / "math.log").read_text(errors="replace")
    assert done.returncode == 0 and "\n! " not in log, log[-2000:]


# ---- LaTeX ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [*SIGMOID],
        ["yhat = x*w; r = yhat*yhat + abs(x)*1e-7", "x=-0.5", "w=3"],
        ["x*x + sin(x)", "x=0.5", "--mode", "forward"],
        ["sum(W*W)", "W=[[1,2],[3,4]]"],
    ],
    ids=["sigmoid", "named", "forward", "arrays"],
)
def test_the_latex_legend_defines_every_intermediate_it_names(args, monkeypatch):
    monkeypatch.chdir(ROOT)
    tex = explain(*args, "--format", "latex")
    named = set(re.findall(r"t_\{\d+\}", tex))
    defined = set(re.findall(r"^(t_\{\d+\}) &= ", tex, re.MULTILINE))
    assert named and named == defined
    assert tex.count(r"\begin{longtable}") == tex.count(r"\end{longtable}") >= 1


def test_the_latex_document_holds_the_sweep_table():
    data = run("explain", *SIGMOID, "--format", "json").json()
    tex = explain(*SIGMOID, "--format", "latex")
    table = tex.split(r"\begin{longtable}", 1)[1].split(r"\end{longtable}", 1)[0]
    rows = [line for line in table.splitlines() if re.match(r"\d+ & ", line)]
    assert len(rows) == len(data["reverse_steps"]) == 12
    assert rows[0].startswith(r"1 & $f \to t_{7}$ & $1$ & $\frac{\partial f}{\partial t_{7}}")
    assert r"\section*{The chain rule for $f$}" in tex
    assert r"t_{6} &= \operatorname{exp}\left(t_{5}\right) = 0.3679" in tex
    forward = explain("x*x + sin(x)", "x=0.5", "--mode", "forward", "--format", "latex")
    assert r"\subsection*{Forward sweep for $x$}" in forward


def test_the_local_factor_never_reads_as_the_total_it_adds_up_to():
    # f = t1 + x: the local derivative of f by its operand x is 1, the total is 7
    latex = explain("x*x + x", "x=3", "--format", "latex")
    chain = latex.split(r"\frac{\partial f}{\partial x} &=", 1)[1].split(r"\end{align*}")[0]
    local = r"\left.\frac{\partial f}{\partial x}\right\vert_{\text{local}}"
    assert local in chain and r"\frac{\partial f}{\partial x}" not in chain.replace(local, "")
    assert rf"${local} = 1$" in latex
    markdown = explain("x*x + x", "x=3", "--format", "markdown")
    assert rf"3. f → x: ${local} = 1$" in markdown
    assert r"| $\left.\partial f/\partial x\right\vert_{\text{local}} = 1$ |" in markdown
    assert r"the reverse sweep gives $\frac{\partial f}{\partial x} = 7$" in markdown
    table = explain("x*x + x", "x=3")
    assert "∂f/∂x (local)" in " ".join(table.split())
    forward = explain("x*x + x", "x=3", "--mode", "forward", "--format", "markdown")
    assert r"$\left.\partial f/\partial x\right\vert_{\text{local}} = 1$" in forward
    # only where the two could be confused: ∂f/∂t1 and ∂t1/∂x (left) stay as they are
    assert r"\left.\frac{\partial f}{\partial t_{1}}" not in latex
    assert r"\text{local}" not in explain("sin(x*y)", "x=1", "y=2", "--format", "latex")


NETWORK = ["mlp:2-3-1", "x1=1", "x2=1", "y=0", "--init", "examples/network.json"]


@pytest.mark.skipif(not HAVE_LATEX, reason="no LaTeX installed")
@pytest.mark.parametrize(
    "args",
    [
        NETWORK,
        [*NETWORK, "--mode", "forward", "--wrt", "w11"],
        ["yhat = x*w; r = yhat*yhat + abs(x)*1e-7", "x=-0.5", "w=3"],
        ["sum(W*W)", "W=[[1.5,2],[3,4]]"],
    ],
    ids=["network", "network-forward", "scientific", "arrays"],
)
def test_the_latex_document_fits_its_page(args, tmp_path, monkeypatch):  # pragma: no cover
    monkeypatch.chdir(ROOT)
    (tmp_path / "doc.tex").write_text(explain(*args, "--format", "latex"))
    for _ in range(2):  # longtable settles its column widths on the second run
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "doc.tex"], cwd=tmp_path,
                              capture_output=True, timeout=120)  # fmt: skip
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert done.returncode == 0 and "\n! " not in log, log[-2000:]
    assert "Overfull \\hbox" not in log, log[log.index("Overfull") :][:600]
    if args == NETWORK:
        tex = (tmp_path / "doc.tex").read_text()
        assert r"At $w_{11} = 0.8$, $w_{12} = 0.4$, " in tex  # a point that breaks


# ---- narrow terminals ----------------------------------------------------------------------


WIDTHS = [40, 60, 80, 120]
PROGRAM = ["q = x + y; f = sin(q)*z + q/x", "x=-2", "y=5", "z=-4"]
SHOWN = {"value", "product", "sum", "gradient", "upstream", "local", "contribution", "total",
         "tangent", "tangent_in", "result"}  # fmt: skip
HEADERS = ("derivative", "contribution", "∂f/∂node", "∂f/∂input", "shapes")
DECIMAL = re.compile(r"(?<![\w.])-?(?:\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+)(?![\w])")


def _numbers(report: Any, key: str | None = None) -> set[str]:
    """Every number of the report that the terminal shows, as it shows it."""
    if isinstance(report, dict):
        found = set()
        for k, v in report.items():
            found |= _numbers(v, "value" if k == "variables" else k)
        return found
    if isinstance(report, list):
        return set().union(*(_numbers(v, key) for v in report)) if report else set()
    if isinstance(report, int | float) and not isinstance(report, bool) and key in SHOWN:
        return {numbers.number(report)}
    return set()


def _assert_drawn_whole(text: str, report: dict[str, Any], width: int) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"{len(long)} lines over {width} columns: {long[:3]}"
    shown = _numbers(report)
    for value in shown:  # every number, uncut
        assert re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", text), (width, value)
    pieces = {m[0] for m in DECIMAL.finditer(text)}
    assert pieces <= shown, (width, pieces - shown)  # and no piece of one (-0.7, then 5)
    for line in text.splitlines():  # no header cut inside a word (derivati, then ve)
        for cell in re.split(r"[┃│]", line):
            words = cell.split()
            for word in words[:1] + words[-1:]:
                cut = [h for h in HEADERS if h != word and h.startswith(word) and len(word) > 2]
                assert not cut, (width, line)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_command_line_fits_narrow_terminals(width, monkeypatch):
    monkeypatch.chdir(ROOT)
    env = {**os.environ, "COLUMNS": str(width), "PYTHONIOENCODING": "utf-8"}
    env.pop("FORCE_COLOR", None)
    backprop = Path(sys.executable).with_name("backprop")
    command = [str(backprop)] if backprop.exists() else [sys.executable, "-m", "backprop_cli"]
    done = subprocess.run([*command, "explain", *PROGRAM], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = run("explain", *PROGRAM, "--format", "json").json()
    _assert_drawn_whole(done.stdout, report, width)
    # no column vanishes: every step's local derivative and every header is there
    flat = re.sub(r"\s", "", done.stdout)
    for step in report["reverse_steps"]:
        assert f"∂{step['from']}/∂{step['to']}={step['local_formula']['text']}" in flat
    for header in ("∂f/∂node", "localderivative", "contribution", "∂f/∂inputsofar"):
        assert header in flat
    stacked = "┏" not in done.stdout
    assert stacked == (width < 80)  # the bordered table where it fits, else a block per row
    lines = done.stdout.splitlines()
    for step in report["reverse_steps"]:  # the step and its edge head its block, or its row
        edge = f"{step['from']} → {step['to']}"
        row = re.compile(
            rf"^│ +{step['step']} │ {edge} +│" if not stacked else rf"^{step['step']}  {edge}$"
        )
        assert any(row.match(line) for line in lines), (width, edge)


PANEL_CASES = {
    "program": ("q = x + y; f = sin(q)*z + q/x", {"x": -2, "y": 5, "z": -4}, {}, None),
    "operands": ("x*x + x", {"x": 3}, {}, None),
    "forward": ("x*x + sin(x)", {"x": 0.5}, {"mode": "forward"}, None),
    "arrays": ("sum(W*W)", {"W": [[1.5, 2], [3, 4]]}, {}, None),
    "long names": (
        "weight_of_first = x*w; loss_value = (weight_of_first - y)**2",
        {"x": 2, "w": 1.25, "y": 4},
        {},
        None,
    ),
    "full digits": ("sin(x)/3 + x*y", {"x": 0.7, "y": -1.3}, {}, 0),
    "eight digits": ("exp(x)*y/7", {"x": 0.3, "y": 2}, {"mode": "forward"}, 8),
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", PANEL_CASES)
def test_every_panel_fits_the_width_it_is_drawn_at(case, width):
    from rich.console import Console

    expression, point, options, digits = PANEL_CASES[case]
    with bp.quiet():
        report = bp.explain(expression, point, **options).report
    console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
    with numbers.precision(digits):
        for item in view.panels(report):
            console.print(item)
        text = console.export_text()
        if report.get("arrays"):  # arrays break between their numbers only
            assert not [line for line in text.splitlines() if len(line) > width]
            assert {m[0] for m in DECIMAL.finditer(text)} == {"1.5", "31.25"}
            assert re.sub(r"\s", "", "∂f/∂W = [[3, 4], [6, 8]]") in re.sub(r"\s", "", text)
        else:
            _assert_drawn_whole(text, report, width)


def test_a_long_number_in_a_local_derivative_stays_whole():
    # the upstream 0 keeps the number columns narrow, so the local derivative's own value
    # (17 digits at --digits 0) is the widest word the table has to keep whole
    from rich.console import Console

    with bp.quiet():
        report = bp.explain("0*sin(x)", {"x": 0.7}).report
    layouts = set()
    for width in range(64, 100, 2):
        console = Console(width=width, file=io.StringIO(), color_system=None, record=True)
        with numbers.precision(0):
            for item in view.panels(report):
                console.print(item)
            text = console.export_text()
            _assert_drawn_whole(text, report, width)
        layouts.add("┏" in text)
    assert layouts == {True, False}


# ---- grammar -------------------------------------------------------------------------------


def test_counts_agree_with_their_nouns():
    text = " ".join(explain("2*x", "x=1").split())
    assert "Cost for 1 input and one output over 1 operation" in text
    assert "forward mode: 1 sweep (one per input)" in text
    assert "1 intermediate kept" in text and "2 sweeps (forward, then backward)" in text
    assert "1 path from f to x" in text
    text = " ".join(explain("x*y + x", "x=1", "y=2").split())
    assert "over 2 operations" in text and "2 inputs" in text and "2 paths from f to x" in text


def test_a_local_derivative_that_is_a_sum_is_bracketed_in_the_product():
    # ∂h/∂t1 = 1 - h**2: as a factor of 2 · … · x it must read 2 · (1 - h**2) · x
    args = ("explain", "h = tanh(w*x); f = 2*h", "w=0.5", "x=1", "--wrt", "w")
    text = run(*args).stdout
    assert "= 2 · (1 - h**2) · x" in text and "= 2 · (1 - 0.4621**2) · 1 = 1.573" in text
    tex = run(*args, "--format", "latex").stdout
    assert r"2 \cdot \left(1 - h^{2}\right) \cdot x" in tex
    assert "(1 - h**2)" not in run("explain", "1 - x**2", "x=3").stdout  # alone: no brackets
