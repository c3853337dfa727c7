"""The HTML pages without a browser: one self-contained file (no URL outside it, the script
allowed by its hash), the step-through's numbers exactly the engine's, every text the user
gave escaped, the layered layout without Graphviz, MathML formulas, the size budget, and the
pages of grad, explain and train through the CLI and the API. tests/test_browser.py drives
the same pages in a real browser."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import backprop_cli as bp
from backprop_cli.analyses.walk import MAX_NODES, walk
from backprop_cli.cli.app import app
from backprop_cli.core import engine
from backprop_cli.core.parse import parse
from backprop_cli.render import layout, numbers, page

ROOT = Path(__file__).resolve().parent.parent
NEURON = ("1/(1+exp(-(w0*x0+w1*x1+w2)))", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3")
runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def data_of(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" class="bp-data">(.*?)</script>', html, re.S)
    assert found, "the page carries its step data"
    loaded: dict[str, Any] = json.loads(found.group(1))
    return loaded


@pytest.fixture(scope="module")
def neuron(tmp_path_factory) -> str:
    target = tmp_path_factory.mktemp("page") / "neuron.html"
    r = invoke("grad", *NEURON, "-o", str(target))
    assert r.exit_code == 0, r.output
    return target.read_text(encoding="utf-8")


def test_the_page_is_one_file_that_loads_nothing(neuron):
    assert neuron.startswith("<!DOCTYPE html>") and neuron.rstrip().endswith("</html>")
    assert "<link" not in neuron and "@import" not in neuron and "<iframe" not in neuron
    assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:|//)""", neuron, re.I)
    assert not re.search(r"url\(\s*['\"]?(?!data:)", neuron)
    assert "fetch(" not in neuron and "XMLHttpRequest" not in neuron
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', neuron)
    assert policy and "default-src 'none'" in policy.group(1)
    # the one script runs because its hash is in the policy; nothing else could
    scripts = re.findall(r"<script>(.*?)</script>", neuron, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in policy.group(1)


def test_the_neuron_page_is_within_its_size_budget(neuron):
    assert len(neuron.encode()) <= 300_000


def test_the_partials_are_mathml_and_agree(neuron):
    table = neuron[neuron.index("Partial derivatives of f") :]
    assert table.count("<math") >= 5  # one formula per partial
    assert "✗" not in table and table.count('class="bp-ok">✓') == 5


def test_the_step_data_is_every_node_then_every_wire(neuron):
    data = data_of(neuron)
    program = parse(NEURON[0])
    trace = engine.run(program, {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0})
    forward = [s for s in data["steps"] if s["kind"] == "forward"]
    backward = [s for s in data["steps"] if s["kind"] == "backward"]
    assert data["forward_count"] == len(forward) == len(program.nodes)
    assert data["steps"][: len(forward)] == forward  # forward first
    wires = sum(len(n.inputs) for n in program.nodes if n.op not in ("const", "input"))
    assert len(backward) == wires - sum(  # every wire except those into constants
        1 for n in program.nodes for i in n.inputs if program.nodes[i].op == "const"
    )
    for node_id, info in data["nodes"].items():
        grad = trace.grads[int(node_id)]
        assert info["grad"] == (None if grad is None else numbers.number(float(grad)))


def test_the_sentences_name_the_chain_rule():
    html = bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False).to_html()
    says = [s["say"] for s in data_of(html)["steps"]]
    assert says[0] == "forward: x = -2  (a variable)"
    assert "forward: t1 = x + y = 3" in says
    assert "forward: f = t1 * z = -12" in says
    assert "backward: ∂f/∂t1 += ∂f/∂f · ∂f/∂t1 (local) = 1 · -4 = -4  (so far -4)" in says
    assert says[-1] == "backward: ∂f/∂y += ∂f/∂t1 · ∂t1/∂y = -4 · 1 = -4  (so far -4)"


def test_fan_out_accumulates_in_the_sentences():
    html = bp.grad("x*x + x", x=3, torch=False).to_html()
    backward = [s for s in data_of(html)["steps"] if s["kind"] == "backward"]
    into_x = [s for s in backward if s["say"].startswith("backward: ∂f/∂x")]
    assert [s["total"] for s in into_x] == ["1", "4", "7"]
    assert "(left)" in into_x[1]["say"] or "(right)" in into_x[1]["say"]


EXPRESSIONS = [
    ("(x+y)*z", {"x": -2.0, "y": 5.0, "z": -4.0}),
    ("x*x*x + sin(x)/x", {"x": 0.7}),
    ("q = x*y; r = q + x; f = r*q/y", {"x": 1.3, "y": -0.4}),
    ("sigmoid(a*b) + relu(a - b) + a**b", {"a": 1.5, "b": 2.0}),
    ("log(exp(u) + exp(v)) - max(u, v)", {"u": 0.3, "v": 0.3}),
]


@pytest.mark.parametrize(("expression", "point"), EXPRESSIONS)
def test_the_walk_is_the_engines_own_sweep(expression, point):
    graph = parse(expression)
    walked = walk(graph, point)
    trace = engine.run(graph, point)
    final: dict[int, float] = {graph.output: 1.0}
    for step in walked["backward"]:
        final[step["input"]] = step["total"]
    for node in walked["nodes"]:
        grad = trace.grads[node["id"]]
        if grad is not None and node["id"] in final:
            assert final[node["id"]] == float(grad)  # the same floats, not close ones
    for entry in walked["paths"].values():  # the paths' products sum to the gradient
        assert len(entry["paths"]) == entry["count"] or not entry["paths"]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from(["+", "-", "*"]), min_size=1, max_size=8),
    st.lists(
        st.floats(-3, 3, allow_nan=False).filter(lambda v: abs(v) > 1e-3), min_size=3, max_size=3
    ),
)
def test_the_paths_sum_to_the_gradient(ops, values):
    names = ["a", "b", "c"]
    text = "a"
    for j, op in enumerate(ops):
        text = f"({text} {op} {names[(j + 1) % 3]})"
    text += " * a"
    point = dict(zip(names, values, strict=True))
    graph = parse(text)
    walked = walk(graph, {k: v for k, v in point.items() if k in graph.variables})
    grads = {n["id"]: n["grad"] for n in walked["nodes"]}
    for key, entry in walked["paths"].items():
        if entry["paths"] and grads[int(key)] is not None:
            total = sum(p["product"] for p in entry["paths"])
            assert total == pytest.approx(grads[int(key)], rel=1e-9, abs=1e-9)


def test_what_the_user_typed_is_escaped(tmp_path):
    program = tmp_path / "evil.bp"
    program.write_text(
        '# <img src="http://127.0.0.1:9/x.png" onerror="alert(1)"></script><script>alert(2)\n'
        "h = x * 2\nf = h + 1\n"
    )
    target = tmp_path / "evil.html"
    r = invoke("grad", "--file", str(program), "x=1", "--no-torch", "-o", str(target))
    assert r.exit_code == 0, r.output
    html = target.read_text()
    assert "alert(1)" not in html and "alert(2)" not in html  # comments are not shown
    assert len(re.findall(r"<script", html)) == 2  # ours: the data and the script
    payload = page.script_json({"say": "</script><script>alert(1)</script>"})
    assert "<" not in payload and "alert(1)" in payload
    assert page.text('<b a="1">') == "&lt;b a=&quot;1&quot;&gt;"


def test_the_comments_of_a_file_stay_out_of_the_heading(tmp_path):
    target = tmp_path / "network.html"
    r = invoke(
        "explain", "--file", str(ROOT / "examples" / "chain_rule_network.bp"),
        "--values", str(ROOT / "examples" / "network.json"), "x1=1", "x2=1", "y=0",
        "-o", str(target),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    html = target.read_text()
    heading = html[html.index("<h1>") : html.index("</header>")]
    assert "Modern Computer Vision" not in heading and "h11 = x1*w11 + x2*w21" in heading
    assert "The chain rule, path by path" in html
    assert html.count('class="bp-path"') >= 9  # at least one path per weight
    assert len(html.encode()) < 300_000


def test_without_graphviz_the_graph_is_laid_out_in_layers(monkeypatch):
    monkeypatch.setattr(layout.shutil, "which", lambda name: None)
    html = bp.grad(NEURON[0], w0=2, x0=-1, w1=-3, x1=-2, w2=-3, torch=False).to_html()
    assert "laid out in layers by depth" in html
    data = data_of(html)
    assert html.count('class="bp-node ') == len(data["nodes"])
    wires = re.findall(r'<g class="bp-edge" data-edge="(\d+-\d+)"', html)
    assert len(wires) == len(set(wires)) and len(wires) >= len(data["nodes"]) - 1
    for box in re.findall(r'<rect x="([-\d.]+)" y="([-\d.]+)"', html):
        assert float(box[0]) >= 0 and float(box[1]) >= 0  # nothing is drawn off the page


def test_the_layered_layout_keeps_boxes_apart():
    sizes = {i: (80.0, 50.0) for i in range(6)}
    wires = [("2-0", 0, 2, ""), ("2-1", 1, 2, ""), ("4-0", 2, 4, ""), ("4-1", 3, 4, ""),
             ("5-0", 4, 5, ""), ("5-1", 2, 5, "")]  # fmt: skip
    placed = layout.layered(sizes, wires)
    boxes = list(placed.boxes.values())
    for a in boxes:
        for b in boxes:
            if a is not b:
                apart = abs(a.x - b.x) >= 80 or abs(a.y - b.y) >= 50
                assert apart
    assert placed.boxes[5].x > placed.boxes[4].x > placed.boxes[2].x > placed.boxes[0].x


def test_html_to_stdout_is_the_page(neuron):
    r = invoke("grad", *NEURON, "--format", "html")
    assert r.exit_code == 0
    assert r.stdout == neuron


def test_arrays_step_through():
    html = bp.grad("sum(W @ x)", W=[[1, 2], [3, 4]], x=[1, -1], torch=False).to_html()
    data = data_of(html)
    assert data["nodes"]["1"]["grad"] == "[4, 6]"  # ∂f/∂x = Wᵀ·1
    assert data["nodes"]["0"]["value"] == "[[1, 2], [3, 4]]"
    assert any("the share through t1 → x" in s["say"] for s in data["steps"])


def test_a_graph_past_the_limit_is_one_line(tmp_path):
    program = tmp_path / "long.bp"
    program.write_text("t = x\n" + "t = t * 1.0001\n" * (MAX_NODES // 2 + 10) + "f = t\n")
    r = invoke("explain", "--file", str(program), "x=1", "--format", "html")
    assert r.exit_code == 2
    assert r.stderr.startswith("error: a step-through walks at most 3,000 nodes")


def test_train_page(tmp_path):
    target = tmp_path / "training.html"
    r = invoke("train", "linear", "--epochs", "100", "-o", str(target))
    assert r.exit_code == 0, r.output
    html = target.read_text()
    assert html.count('<svg class="bp-chart"') == 2  # the loss, the parameter
    assert "The first epoch (0)" in html and "The last epoch (99)" in html
    assert "x = 1, y = 2" in html  # the course's first sample
    doc = json.loads(invoke("train", "linear", "--epochs", "100", "--format", "json").stdout)
    assert numbers.number(doc["params"]["w"]) in html
    assert "Predictions" in html


def test_the_api_pages_and_notebook_displays():
    r = bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False, mathml=True)
    assert r.to_html().startswith("<!DOCTYPE html>") and "<math" in r.to_html()
    inline = r._repr_html_()
    assert "<html" not in inline and "data-bp-root" in inline and "bp-data" in inline
    e = bp.explain("q = x + y; f = q * z", x=-2, y=5, z=-4)
    assert "The chain rule, path by path" in e.to_html()
    assert "data-bp-root" in e._repr_html_()
    t = bp.train("linear", epochs=5)
    assert t.to_html().count("bp-chart") >= 2
    from tests.test_schemas import validate

    assert validate(r.to_dict()) == "grad"  # the MathML key is in the schema


def test_float32_pages_show_float32_numbers():
    r = bp.grad("x/3", x=1, dtype="float32", torch=False)
    shown = data_of(r.to_html())["nodes"][str(r.nodes[-1].id)]["value"]
    assert shown == numbers.number(float(np.float32(1) / np.float32(3)))


def test_the_page_module_is_not_imported_by_plain_commands():
    code = "import backprop_cli, sys; print('backprop_cli.render.page' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_a_training_page_with_warnings_and_a_cut_history(monkeypatch):
    from backprop_cli import api

    monkeypatch.setattr(api, "HISTORY_ELEMENTS", 2)
    with pytest.warns(bp.BackpropWarning, match="first epochs only"):
        t = bp.train("linear", epochs=4)
    html = t.to_html()
    assert "warning: " in html and "first epochs only" in html
    assert html.count('<svg class="bp-chart"') == 2


def test_what_the_terminal_says_reaches_the_page(tmp_path):
    """--digits, warnings, --order 2, --mode forward, --seed-grad, a training's divergence
    and its check, --no-symbolic: each shows on the page as in the terminal."""
    r = invoke("explain", *NEURON, "--digits", "2", "--format", "html")
    assert r.exit_code == 0 and ">-0.2<" in r.stdout and ">-0.1966<" not in r.stdout
    r = invoke("explain", "x*y", "x=1", "y=2", "q=3", "--format", "html")
    assert "warning: " in r.stdout and "&#x27;q&#x27;" in r.stdout
    r = invoke("grad", "x*y", "x=1", "y=2", "--order", "2", "--no-torch", "--format", "html")
    assert "Second derivatives" in r.stdout and "∂²f/∂x∂y" in r.stdout
    r = invoke("explain", "x*x*y", "x=1", "y=2", "--mode", "forward", "--format", "html")
    assert "Forward mode: ∂f/∂x = 4" in r.stdout and "What each mode costs here" in r.stdout
    html = bp.grad("x*x", x=3, seed_grad=2, torch=False).to_html()
    assert "Their sum, 6, times the output's gradient 2 (--seed-grad): 12" in html
    r = invoke("train", "linear", "--lr", "100", "--epochs", "50", "--format", "html")
    assert r.exit_code == 1 and "diverged at epoch 2" in r.stdout
    r = invoke("train", "linear", "--epochs", "5", "--check", "--format", "html")
    assert "torch autograd: the gradients agree" in r.stdout
    r = invoke("grad", *NEURON, "--no-symbolic", "--no-torch", "--format", "html")
    assert "<math" not in r.stdout


def test_a_long_chain_gets_the_layered_layout_quickly(tmp_path):
    program = tmp_path / "chain.bp"
    program.write_text("t = x\n" + "t = t * 1.5 + y\n" * 80 + "f = t\n")
    html = bp.grad(program, x=1, y=2, torch=False, symbolic=False).to_html()
    assert "laid out in layers, not by Graphviz: its wires cross" in html
    assert len(html.encode()) < 2_000_000  # the long paths are counted, not listed


def test_a_long_epoch_says_its_table_shows_its_first_steps():
    x = [i / 80 for i in range(80)]
    t = bp.train("linear", x=x, y=[2 * v for v in x], epochs=2)
    html = t.to_html()
    assert html.count("the first 50 of the epoch&#x27;s 80 steps") == 2
    assert "the first" not in bp.train("linear", epochs=2).to_html()
