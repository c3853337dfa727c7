"""Pictures of the graph: boxes per statement and layer, folded repeats, --max-nodes keeping
the output's neighbourhood, the legend, operand positions, one display name per node in
every format, --digits, and `backprop graph`'s formats chosen by --format or -o."""

from __future__ import annotations

import os
import pty
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from backprop_cli.core.parse import parse
from backprop_cli.render import picture
from tests.conftest import run

ROOT = Path(__file__).parent.parent
NEED_DOT = os.environ.get("BACKPROP_REQUIRE_DOT") == "1"
needs_dot = pytest.mark.skipif(
    shutil.which("dot") is None and not NEED_DOT, reason="Graphviz's dot is not installed"
)
MLP = ("mlp:2-8-8-1", "x1=1", "x2=0.5", "y=1")
CS231N = ("examples/cs231n_add_mul.bp", "x=-2", "y=5", "z=-4")
PNG = b"\x89PNG\r\n\x1a\n"


def dot_of(*args: str) -> str:
    r = run("graph", *args, "--format", "dot")
    assert r.code == 0, r.stderr
    return r.stdout


def attributes(text: str) -> list[tuple[str, str]]:
    """The key=value pairs of one DOT attribute list, HTML labels and quotes respected."""
    pairs, key, value, depth, quoted, in_value = [], "", "", 0, False, False
    for char in text + ",":
        if in_value:
            if quoted:
                quoted = char != '"'
            elif char == '"':
                quoted = True
            elif char == "<":
                depth += 1
            elif char == ">":
                depth -= 1
            elif char == "," and depth == 0:
                pairs.append((key.strip(), value.strip()))
                key, value, in_value = "", "", False
                continue
            value += char
        elif char == "=":
            in_value = True
        elif char != ",":
            key += char
    return pairs


def statements(dot: str) -> dict[str, list[tuple[str, str]]]:
    """Every node statement's attributes: id -> [(key, value), ...]."""
    found = {}
    for line in dot.splitlines():
        m = re.fullmatch(r"\s*(n\d+|f\d+|legend) \[(.*)\];", line)
        if m:
            found[m[1]] = attributes(m[2])
    return found


# ---- boxes -------------------------------------------------------------------------------


def test_each_statement_is_a_box_holding_its_nodes():
    dot = dot_of(*CS231N)
    boxes = re.findall(r"subgraph cluster_(\w+) \{\n\s+graph \[label=<([^>]*)>", dot)
    assert boxes == [("s0", "q = x + y"), ("s1", "f = q * z")]
    first = dot[dot.index("cluster_s0") : dot.index("cluster_s1")]
    assert "<b>+</b> q" in first and "<b>x</b>" in first and "<b>z</b>" not in first
    mermaid = run("graph", *CS231N, "--format", "mermaid").stdout
    assert '  subgraph s0["q = x + y"]\n    n0(["x' in mermaid


def test_a_models_layer_is_a_box_around_its_units():
    dot = dot_of("mlp:2-3-1")
    assert "subgraph cluster_b0 {" in dot and "label=<h11 … h13, a11 … a13>" in dot
    layer = dot[dot.index("cluster_b0") :]
    for unit in ("h11 = x1*w11 + x2*w21", "h12 = x1*w12 + x2*w22", "<b>sigmoid</b> a13"):
        assert unit in layer, unit
    assert "f0 [" not in dot  # 32 nodes: nothing folds


def test_one_expression_has_no_boxes():
    assert "subgraph" not in dot_of("(x+y)*z", "x=1", "y=2", "z=3")


# ---- folding repeated blocks ---------------------------------------------------------------


def test_a_large_network_folds_its_middle_units_and_terms():
    r = run("graph", *MLP, "--format", "dot")
    assert r.code == 0, r.stderr
    dot = r.stdout
    assert "⋯ h12 … h17, a12 … a17" in dot and "⋯ h22 … h27, a22 … a27" in dot
    assert dot.count("12 statements folded") == 2 and dot.count("6 terms folded") == 3
    assert "<b>sigmoid</b> a11" in dot and "<b>sigmoid</b> a18" in dot  # first and last
    assert "<b>sigmoid</b> a12" not in dot
    assert "rankdir=TB" in dot  # large: top down
    drawn = statements(dot)
    assert 35 <= len(drawn) <= 60, len(drawn)  # of 269 nodes
    assert "234 nodes of repeated blocks folded into 5 placeholders" in r.stderr
    # a term fold shows the partial sum it ends in, with its value and gradient
    fold = next(v for k, v in drawn.items() if k.startswith("f") and "6 terms" in str(v))
    assert "∂ " in dict(fold)["label"]


def test_no_collapse_draws_every_node():
    r = run("graph", *MLP, "--format", "dot", "--no-collapse", "--max-nodes", "0")
    assert r.code == 0, r.stderr
    assert "folded" not in r.stdout and len(statements(r.stdout)) == 269 + 1  # and the legend


def test_collapse_folds_a_small_graph_when_asked():
    expr = "+".join(f"sin(x*{i})" for i in range(6))
    assert "folded" not in dot_of(expr, "x=1")
    assert "4 terms folded" in dot_of(expr, "x=1", "--collapse")


def test_the_tree_shows_placeholders_and_what_feeds_them():
    r = run("graph", *MLP)
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    fold = next(i for i, line in enumerate(lines) if "⋯ h12 … h17, a12 … a17" in line)
    assert "12 statements folded" in lines[fold] and "x1  1" in lines[fold + 1]
    assert any("6 terms folded" in line for line in lines)


# ---- --max-nodes --------------------------------------------------------------------------

# The deep chain `a` is computed first, `b` after it: the last nodes in evaluation order are
# all b's, but a's top is as near the output as b's.
DEEP = "a = " + "sin(" * 30 + "x" + ")" * 30 + "\nb = " + "cos(" * 30 + "x" + ")" * 30 + "\na + b"


def test_max_nodes_keeps_the_outputs_neighbourhood():
    graph = parse(DEEP)
    pic = picture.picture(graph, None, 9, collapse=False)
    names = [pic.names[i] for i in pic.keep]
    assert "a" in names and "b" in names and "f" in names
    ops = [graph.nodes[i].op for i in pic.keep]
    assert ops.count("sin") == ops.count("cos") == 4
    assert pic.cut == 62 - 9  # x, 30 sin, 30 cos and the sum


def test_max_nodes_says_what_it_folded():
    r = run("graph", DEEP, "x=1", "--format", "dot", "--max-nodes", "9")
    assert r.code == 0, r.stderr
    assert "… 53 nodes folded" in r.stdout
    assert "note: 53 nodes folded into one placeholder: --max-nodes 9" in r.stderr
    tree = run("graph", DEEP, "x=1", "--max-nodes", "9").stdout
    assert "… 53 nodes folded  (--max-nodes 9)" in tree


# ---- the legend, operand positions, attributes ----------------------------------------------


def test_the_legend_says_what_the_colours_and_shapes_mean():
    legend = dict(statements(dot_of(*CS231N))["legend"])["label"]
    for row in ("value", "∂ gradient", "ellipse", "bold frame", "on a wire"):
        assert row in legend, row
    bare = dict(statements(dot_of("q = x + y; f = q * z"))["legend"])["label"]
    assert "ellipse" in bare and "gradient" not in bare
    kinked = dict(statements(dot_of("relu(x) - y", "x=0", "y=1"))["legend"])["label"]
    assert "kink" in kinked and "1 2" in kinked
    assert "legend" not in dot_of(*CS231N, "--no-legend")


@pytest.mark.parametrize(
    ("expression", "values", "roles"),
    [
        ("x/y", ["x=1", "y=2"], ("num", "den")),
        ("x - y", ["x=1", "y=2"], ("1", "2")),
        ("x**y", ["x=2", "y=3"], ("base", "exp")),
        ("sum(A@B)", ["A=[[1,2],[3,4]]", "B=[[1,0],[0,1]]"], ("1", "2")),
    ],
)
def test_operand_positions_where_order_matters(expression, values, roles):
    wires = [line for line in dot_of(expression, *values).splitlines() if " -> " in line]
    first, second = (
        next(w for w in wires if w.startswith(f"  n{i} -> ")) for i in (0, 1)
    )  # the two variables, in order
    assert f'#757575">{roles[0]}</font>' in first and f'#757575">{roles[1]}</font>' in second
    bare = dot_of(expression, *values, "--no-edge-labels")
    assert f'headlabel="{roles[0]}"' in bare and f'headlabel="{roles[1]}"' in bare
    mermaid = run("graph", expression, *values, "--format", "mermaid").stdout
    assert f'|"{roles[1]}: ' in mermaid
    assert "headlabel" not in dot_of(expression.replace("/", "*").replace("-", "+"), *values)


@pytest.mark.parametrize(
    "args",
    [
        CS231N,
        ("x",),
        ("x", "x=1"),
        ("relu(x) + y", "x=0", "y=1"),
        MLP,
        (DEEP, "x=1", "--max-nodes", "9"),
        ("mlp:2-3-1",),
    ],
    ids=["statements", "bare-input", "input-output", "kink", "folds", "cut", "structure"],
)
def test_no_dot_node_sets_an_attribute_twice(args):
    found = statements(dot_of(*args))
    assert found
    for node, pairs in found.items():
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), (node, keys)
    output = next(v for v in found.values() if ("penwidth", "2.5") in v)
    assert sum(k == "style" for k, _ in output) == 1


def test_the_output_box_is_rounded_and_filled_once():
    found = statements(dot_of(*CS231N))
    assert dict(found["n4"])["style"] == '"rounded,filled"'


# ---- names and numbers -----------------------------------------------------------------


def test_every_node_has_the_same_name_in_tree_dot_mermaid_and_json():
    program = "a = x*y; a = a + sin(x); a*a + x"
    values = ["x=0.5", "y=2"]
    names = parse(program).display_names()
    assert names == ["x", "y", "a", "t1", "a'", "t2", "f"]
    tree = run("graph", program, *values).stdout
    dot = dot_of(program, *values)
    mermaid = run("graph", program, *values, "--format", "mermaid").stdout
    document = run("graph", program, *values, "--format", "json").json()
    assert [n["display_name"] for n in document["nodes"]] == names
    assert "[#" not in tree
    for name, symbol in [("a", "*"), ("t1", "sin"), ("a'", "+"), ("t2", "*"), ("f", "+")]:
        assert f"{symbol} {name}  " in tree, name
        assert f"<b>{symbol}</b> {name}<" in dot.replace("&#x27;", "'"), name
        assert f'["{symbol} {name}<br/>' in mermaid, name


def test_picture_numbers_follow_digits():
    assert ">0.3333<" in dot_of("x/3", "x=1")
    assert ">0.33<" in dot_of("x/3", "x=1", "--digits", "2")
    assert ">0.3333333333333333<" in dot_of("x/3", "x=1", "--digits", "0")
    assert "x  1  ∂ 0.33" in run("graph", "x/3", "x=1", "--digits", "2").stdout
    mermaid = run("graph", "x/3", "x=1", "--format", "mermaid", "--digits", "3").stdout
    assert "0.333<br/>" in mermaid and "0.3333" not in mermaid


def test_json_holds_every_node_in_full():
    r = run("graph", *MLP, "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["schema"] == "backprop-cli/graph/1"
    assert len(data["nodes"]) == 269 and data["output"] == {"id": 268, "display_name": "C"}
    assert data["statements"][0] == {"id": 0, "result": 6, "text": "h11 = x1*w11 + x2*w21"}
    x_over_3 = run("graph", "x/3", "x=1", "--format", "json").json()
    assert x_over_3["nodes"][-1]["value"] == pytest.approx(1 / 3, rel=1e-15)
    assert "folded" not in r.stderr


# ---- formats: --format, -o and its extension ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "start"),
    [("g.dot", "digraph backprop {"), ("g.gv", "digraph"), ("g.mmd", "flowchart LR"),
     ("g.json", '{\n  "schema": "backprop-cli/graph/1"'), ("g.txt", "* f  -12  ∂ 1")],
)  # fmt: skip
def test_o_picks_the_format_from_the_extension(tmp_path, name, start):
    out = tmp_path / name
    r = run("graph", *CS231N, "-o", str(out))
    assert r.code == 0, r.stderr
    assert out.read_text().startswith(start)
    assert r.stdout == "" and f"wrote {out}" in r.stderr


@needs_dot
@pytest.mark.parametrize(
    ("name", "magic"), [("g.svg", b"<?xml"), ("g.png", PNG), ("g.pdf", b"%PDF")]
)
def test_o_renders_pictures_by_extension(tmp_path, name, magic):
    out = tmp_path / name
    r = run("graph", *CS231N, "-o", str(out))
    assert r.code == 0, r.stderr
    assert out.read_bytes().startswith(magic)


def test_format_wins_over_the_extension(tmp_path):
    out = tmp_path / "g.txt"
    r = run("graph", *CS231N, "-o", str(out), "--format", "mermaid")
    assert r.code == 0 and out.read_text().startswith("flowchart")


def test_unknown_extensions_and_formats_are_refused():
    r = run("graph", *CS231N, "-o", "g.gif")
    assert r.code == 2 and "cannot tell the format from the extension" in r.stderr
    assert "Traceback" not in r.stderr
    r = run("graph", *CS231N, "--format", "csv")
    assert r.code == 2


def test_a_binary_picture_is_not_written_to_a_terminal():
    main, child = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "backprop_cli", "graph", "x*y", "--format", "png"],
            stdout=child,
            stderr=subprocess.PIPE,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        os.close(child)
        os.close(main)
    assert done.returncode == 2
    assert b"png is binary and stdout is a terminal" in done.stderr


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@needs_dot
def test_dpi_scales_a_png(tmp_path):
    sizes = {}
    for dpi in ("48", "192"):
        out = tmp_path / f"g{dpi}.png"
        r = run("graph", *CS231N, "-o", str(out), "--dpi", dpi)
        assert r.code == 0, r.stderr
        sizes[dpi] = _png_size(out.read_bytes())
    assert sizes["192"][0] / sizes["48"][0] == pytest.approx(4, rel=0.05)
    r = run("graph", *CS231N, "-o", str(tmp_path / "g.svg"), "--dpi", "150")
    assert r.code == 0 and "--dpi changes PNG pictures only" in r.stderr


@needs_dot
def test_a_large_network_fits_a_laptop_screen_across(tmp_path):
    """mlp:4-8-8-1 (319 nodes) drawn at 100%: as wide as a laptop screen, scrolled down;
    it was 4529 pixels across and 9084 down before folding."""
    out = tmp_path / "mlp.png"
    r = run("graph", "mlp:4-8-8-1", "x1=1", "x2=0.5", "x3=1", "x4=2", "y=1", "-o", str(out))
    assert r.code == 0, r.stderr
    width, height = _png_size(out.read_bytes())
    assert width <= 2200 and height <= 2600, (width, height)


def test_the_legend_has_no_wire_entry_when_the_wires_are_bare():
    args = ("graph", "(x+y)*z", "x=-2", "y=5", "z=-4", "--format", "dot")
    assert "on a wire" in run(*args).stdout
    assert "on a wire" not in run(*args, "--no-edge-labels").stdout
