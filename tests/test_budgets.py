"""Budgets decided from shapes before any work: constant subexpressions, values, --init and
--seed-grad; --values files counted before they are parsed; Graphviz layouts sized before
dot starts; options repeated or given where they do nothing are named."""

from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest

from backprop_cli.core import engine, shapes
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import Limits, parse, parse_binding, parse_constant
from backprop_cli.render import picture
from tests.conftest import run

FAST = ("--no-torch", "--no-symbolic")
OUTER = "ones(20000,1)*ones(1,20000)"  # 400,000,000 elements from two small constants


# ---- constants, values, --init, --seed-grad -----------------------------------------------


def _peak_mb(func, *args, **kwargs):
    tracemalloc.start()
    try:
        with pytest.raises(BackpropError) as caught:
            func(*args, **kwargs)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return caught.value, peak / 1e6


@pytest.mark.parametrize(
    "text",
    [
        f"sum({OUTER}*x)",
        f"sum(({OUTER})@ones(20000))*x",
        f"x + sum(exp({OUTER}))",
        f"y = {OUTER}; sum(y)*x",
    ],
)
def test_a_constant_subexpression_is_refused_from_its_shape(text):
    error, peak = _peak_mb(parse, text)
    assert "too big to run" in error.message and "at most 30,000,000" in error.message
    assert peak < 50  # nothing of the 3.2 GB product was made


@pytest.mark.parametrize("value", [OUTER, f"[{OUTER}]", f"2*{OUTER}", f"{OUTER}+nan"])
def test_a_value_is_refused_from_its_shape(value):
    limits = Limits(allow_nonfinite=True)
    error, peak = _peak_mb(parse_binding, f"x={value}", limits=limits)
    assert "value for x is too big" in error.message
    assert peak < 50


def test_a_list_element_is_refused_from_its_shape():
    error, peak = _peak_mb(parse, f"sum(x*[{OUTER}, {OUTER}])")
    assert "too big" in error.message and peak < 50


def test_constants_within_the_budget_still_fold():
    value = parse_constant("ones(2000,1)*ones(1,2000)", what="value")
    assert value.shape == (2000, 2000) and float(value.sum()) == 4e6


def test_the_constant_budget_matches_the_graph_budget():
    graph = parse("sum(ones(3000,1)*ones(1,3000)*x)")  # 9,000,000 elements: within
    needs = engine.requires_grad(graph)
    shapes.check_constants_budget(graph, needs, "expression")
    assert shapes.MAX_TOTAL_ELEMENTS == 30_000_000


@pytest.mark.parametrize(
    "args",
    [
        ("grad", f"sum({OUTER}*x)", "x=1", *FAST),
        ("grad", "sum(x)", f"x={OUTER}", *FAST),
        ("grad", "sum(x*y)", "x=1", "y=1", "--seed-grad", OUTER, *FAST),
        ("grad", "sum(x*y)", "y=1", "--points", "-", "--seed-grad", OUTER),
        ("train", "linear", "--x", "1,2", "--y", "2,4", "--init", f"w={OUTER}"),
        ("jacobian", f"x*sum({OUTER})", "x=1"),
        ("graph", f"x*sum({OUTER})", "x=1"),
        ("check", f"x*sum({OUTER})"),
    ],
)
def test_every_command_refuses_a_huge_constant_before_making_it(args):
    r = run(*args, stdin="x\n1\n")
    assert r.code == 2, r.stderr
    assert r.stderr.startswith("error: ") and "too big to run" in r.stderr


# ---- --values files ---------------------------------------------------------------------


def test_a_values_file_with_too_many_numbers_is_refused_before_parsing(tmp_path):
    path = tmp_path / "v.json"
    path.write_text('{"x": [' + ",".join(["1"] * 10_020_000) + "]}")
    r = run("grad", "sum(x)", "--values", str(path), *FAST)
    assert r.code == 2
    assert "holds more than 10,000,000 numbers" in r.stderr


def test_a_values_file_within_the_count_is_read(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"x": [1.5, 2.5], "y": 3}))
    r = run("grad", "sum(x)*y", "--values", str(path), *FAST, "--format", "json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["gradient"]["y"] == 4.0


# ---- Graphviz layouts -------------------------------------------------------------------


def _chain(n):
    return "*".join(["x"] * n)


def test_layout_span_counts_the_ranks_wires_cross():
    pic = picture.picture(parse(_chain(4)), None, 200)  # x feeds ranks 1, 1, 2, 3
    assert picture.layout_span(pic) == 1 + 1 + 1 + 2 + 1 + 3
    pic = picture.picture(parse("exp(sin(x))"), None, 200)
    assert picture.layout_span(pic) == 2


def test_a_small_graph_keeps_its_wire_labels():
    pic = picture.picture(parse("(x+y)*z"), {"x": -2.0, "y": 5.0, "z": -4.0}, 200)
    assert picture.layout_span(pic) <= picture.LABELLED_SPAN
    assert "label=<<font" in picture.to_dot(pic)


def test_a_costly_layout_is_refused_before_dot_starts(tmp_path, monkeypatch):
    started = []
    monkeypatch.setattr(picture.subprocess, "run", lambda *a, **k: started.append(a))
    pic = picture.picture(parse(_chain(151)), {"x": 1.0}, 200)
    with pytest.raises(BackpropError, match="ranks in all, more than the 8,000"):
        picture.render(pic, str(tmp_path / "g.svg"))
    assert not started and not (tmp_path / "g.svg").exists()


def test_a_middling_layout_is_drawn_without_wire_labels(tmp_path, monkeypatch):
    sent = []

    class Done:
        returncode, stdout, stderr = 0, b"<svg/>", b""

    def fake_run(cmd, input, **kwargs):
        sent.append(input.decode())
        return Done()

    monkeypatch.setattr(picture.subprocess, "run", fake_run)
    monkeypatch.setattr(picture.shutil, "which", lambda name: "/bin/dot")
    pic = picture.picture(parse(_chain(60)), {"x": 1.0}, 200)
    notes = picture.render(pic, str(tmp_path / "g.svg"))
    assert notes and "without their values and gradients" in notes[0]
    assert "label=<<font" not in sent[0] and "nslimit=1" in sent[0]
    assert "∂ 60" in sent[0]  # the nodes keep theirs


def test_graph_and_grad_refuse_a_costly_picture_up_front(tmp_path):
    out = tmp_path / "g.svg"
    r = run("graph", _chain(151), "x=1", "-o", str(out))
    assert r.code == 2 and "Graphviz lays out in seconds" in r.stderr and not out.exists()
    r = run("grad", _chain(151), "x=1", "--graph", str(out), *FAST)
    assert r.code == 2 and "--max-nodes" in r.stderr and not out.exists()
    assert r.stdout == ""  # refused before the report was computed


def test_dot_text_is_never_cut():
    r = run("graph", _chain(151), "x=1", "--format", "dot", "--edge-labels")
    assert r.code == 0 and r.stdout.count("label=<<font") == 300  # every wire


# ---- repeated options and options that do nothing ----------------------------------------


XY = ("x*y", "x=1", "y=2")
REPEATED = [
    (("grad", *XY, "--format", "json", "--format", "csv"), "--format json, --format csv"),
    (("grad", *XY, "--torch", "--no-torch", "--format=csv"), "--torch, --no-torch"),
    (("train", "linear", "--epochs", "3", "--epochs=2"), "--epochs 3, --epochs=2"),
    (("graph", *XY, "--rankdir", "TB", "--rankdir", "LR"), "--rankdir TB, --rankdir LR"),
]


@pytest.mark.parametrize(("args", "shown"), REPEATED)
def test_a_repeated_option_is_named_and_the_last_counts(args, shown):
    r = run(*args, *([] if args[0] != "grad" else ["--no-symbolic"]))
    assert r.code == 0, r.stderr
    assert f"warning: an option is given 2 times ({shown}); the last counts" in r.stderr


def test_a_repeated_option_last_value_is_used():
    r = run("grad", "x*y", "x=1", "y=2", "--format", "json", "--format", "csv", *FAST)
    assert r.stdout.splitlines()[0] == "x,y,value,d_x,d_y"


def test_options_given_once_give_no_warning():
    r = run("grad", "x*y", "x=1", "y=2", "--format", "csv", "--no-torch", "--no-symbolic")
    assert r.code == 0 and "warning" not in r.stderr


@pytest.mark.parametrize(
    ("extra", "named"), [(("--on-error", "skip"), "--on-error"), (("--check",), "--check")]
)
def test_points_options_without_points_are_named(extra, named):
    r = run("grad", "x*y", "x=1", "y=2", *extra, *FAST)
    assert r.code == 0
    assert f"warning: {named} does nothing without --points" in r.stderr


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (("--symbolic",), "--symbolic"),
        (("--latex",), "--latex"),
        (("--symbolic-timeout", "2"), "--symbolic-timeout"),
        (("--max-rows", "5"), "--max-rows"),
        (("--torch",), "--torch"),
    ],
)
def test_one_point_options_with_points_are_named(extra, named):
    r = run("grad", "x*y", "y=2", "--points", "-", *extra, stdin="x\n1\n2\n")
    assert r.code == 0, r.stderr
    assert f"warning: {named}" in r.stderr and "does nothing with --points" in r.stderr
    assert r.stdout.splitlines()[1:] == ["1,2.0,2.0,2.0,1.0", "2,2.0,4.0,2.0,2.0"]


def test_turning_off_what_does_not_run_is_quiet():
    r = run("grad", "x*y", "y=2", "--points", "-", *FAST, "--no-simplify", stdin="x\n1\n")
    assert r.code == 0 and r.stderr == ""


def test_bad_input_is_still_one_error_line_first():
    r = run("grad", "x*", "x=1", "--on-error", "skip")
    assert r.code == 2 and r.stderr.startswith("error: ") and "warning" not in r.stderr


def test_graph_with_points_is_an_error_not_a_silent_nothing(tmp_path):
    out = tmp_path / "g.svg"
    r = run("grad", "x*y", "y=2", "--points", "-", "--graph", str(out), stdin="x\n1\n")
    assert r.code == 2 and r.stderr.startswith("error: --graph draws the graph at one point")
    assert r.stdout == "" and not out.exists()


def test_the_quick_path_and_typer_agree_on_the_warnings():
    import subprocess
    import sys

    args = ["grad", "x*y", "x=1", "y=2", "--on-error", "skip", *FAST]
    quick = subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args], capture_output=True, text=True
    )
    assert quick.returncode == 0
    assert quick.stderr == run(*args).stderr


def test_a_value_array_is_not_copied_per_node():
    value = parse_constant("arange(10)", what="value")
    assert isinstance(value, np.ndarray) and not value.flags.writeable


def test_hidden_for_another_model_is_named():
    r = run("train", "linear", "--hidden", "5", "--epochs", "1")
    assert r.code == 0 and "warning: --hidden does nothing here" in r.stderr
    r = run("train", "mlp", "--hidden", "2", "--epochs", "1", "--x", "1,2", "--y", "0,1")
    assert r.code == 0 and "--hidden does nothing" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("grad", "x*", "x=1", "--format", "json", "--format", "json"),
        ("grad", "x*y", "x=1", "--on-error", "skip"),
        ("grad", "x@y", "x=[1,2]", "y=[1,2,3]", "--check"),
        ("grad", "x*y", "x=1", "y=2", "--wrt", "z", "--check"),
        ("grad", "x*y", "--points", "-", "--max-rows", "5"),
        ("train", "linear", "--hidden", "3", "--init", "w=abc", "--epochs", "1"),
        ("train", "linear", "--hidden", "3", "--epochs", "1", "--max-step-elements", "1"),
    ],
)
def test_warnings_never_come_before_an_error(args):
    r = run(*args, stdin="x,y\n1,a\n")
    assert r.code == 2
    assert r.stderr.startswith("error: ") and "warning" not in r.stderr


def test_a_list_of_arrays_counts_every_element():
    items = ", ".join(["ones(1000000)"] * 11)
    with pytest.raises(BackpropError, match="more than 10,000,000 elements in one list"):
        parse(f"sum([{items}]*x)")


@pytest.mark.parametrize("value", ["ones(3400,1)*ones(1,3400)", "[ones(3400,1)*ones(1,3400)]"])
def test_one_value_holds_at_most_the_element_limit_from_its_shape(value):
    error, peak = _peak_mb(parse_binding, f"x={value}")
    assert "11,560,000 elements, more than the 10,000,000" in error.message
    assert peak < 50


def test_all_values_together_hold_at_most_the_total_budget():
    values = [f"{name}=ones(9000000)" for name in "abcd"]
    r = run("grad", "x", "x=1", *values, *FAST)
    assert r.code == 2 and "the values hold 36,000,001 elements in all" in r.stderr


def test_device_with_points_needs_check():
    r = run("grad", "x*y", "y=2", "--points", "-", "--device", "cpu", stdin="x\n1\n")
    assert r.code == 0 and "--device does nothing with --points without --check" in r.stderr
