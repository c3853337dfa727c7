"""The Python API (`import backprop_cli as bp`): the snippet users are promised, run as
written; one schema with the CLI; values of every kind; errors as exceptions; displays."""

from __future__ import annotations

import doctest
import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

import backprop_cli as bp
from backprop_cli import api, results
from tests.conftest import run

SIGMOID = "1/(1+exp(-(w0*x0+w1*x1+w2)))"
NEURON = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}


def cli_json(*args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args, "--format", "json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_the_promised_snippet():
    r = bp.grad("(x+y)*z", x=-2, y=5, z=-4)
    assert (r.value, r.grads) == (-12.0, {"x": -4.0, "y": -4.0, "z": 3.0})
    node = r.nodes[2]
    assert (node.id, node.label, node.op, node.inputs) == (2, "x+y", "add", (0, 1))
    assert (node.value, node.grad) == (3.0, -4.0)
    import sympy

    assert (
        r.partials["x"].formula == sympy.Symbol("z", real=True)
        or str(r.partials["x"].formula) == "z"
    )
    assert isinstance(r.partials["x"].formula, sympy.Expr)
    assert r.ok is True
    assert set(r.checks) == {"torch", "finite_difference", "symbolic"}
    assert all(c["ok"] for c in r.checks.values())
    assert r.to_dict() == cli_json("grad", "(x+y)*z", "x=-2", "y=5", "z=-4")
    assert "<table" in r._repr_html_()
    assert r.picture is not None
    d = bp.diff("x**2*sin(x)")
    x = sympy.Symbol("x")
    assert (
        sympy.simplify(sympy.sympify(d.formula) - (2 * x * sympy.sin(x) + x**2 * sympy.cos(x))) == 0
    )
    e = bp.explain("q = x + y; f = q * z", x=-2, y=5, z=-4)
    assert e.ok and "∂f/∂x" in e._repr_markdown_() and "\\frac" in e._repr_latex_()
    assert bp.jacobian("x*y", x=[1, 2], y=3).matrix.shape == (2, 3)
    assert bp.hessian("x**2*y", x=1, y=2).matrix.tolist() == [[4.0, 2.0], [2.0, 0.0]]
    assert bp.check("(x+y)*z", samples=10).ok
    t = bp.train("linear", epochs=100)
    assert len(t.history) == 100 and t.history[-1].epoch == 99
    assert set(t.history[0].params) == {"w"} and math.isclose(t.params["w"], 2.0, rel_tol=1e-5)
    assert t.plot() is not None
    f = bp.compile(SIGMOID)
    W0, X0 = np.array([2.0, 1.0]), np.array([-1.0, 0.5])
    value, grads = f(w0=W0, x0=X0, w1=-3, x1=-2, w2=-3)
    assert isinstance(value, np.ndarray) and value.shape == (2,)
    assert set(grads) == set(NEURON)
    one = bp.grad(SIGMOID, **{**NEURON, "w0": 1.0, "x0": 0.5}, torch=False, symbolic=False)
    assert value[1] == pytest.approx(one.value, rel=1e-15)
    for name in NEURON:
        assert grads[name][1] == pytest.approx(one.grads[name], rel=1e-14, abs=1e-300)


def test_docstring_examples_run():
    for module in (bp, api, results):  # bp holds the errors' examples too
        failed, attempted = doctest.testmod(
            module, extraglobs={"bp": bp},
            optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS,
        )  # fmt: skip
        assert failed == 0, module.__name__
        assert attempted > 0, module.__name__


def test_every_public_name_has_a_docstring_with_an_example():
    for name in bp.__all__:
        if name == "__version__":
            continue
        doc = getattr(bp, name).__doc__ or ""
        assert doc.strip(), name
        assert ">>>" in doc or "bp." in doc, f"{name}: no example"


def test_import_is_light_and_fast_to_reach():
    code = (
        "import sys, backprop_cli\n"
        "heavy = [m for m in ('torch', 'sympy', 'typer', 'matplotlib', 'rich', 'numpy')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "value",
    [3, 3.0, np.float64(3.0), np.array(3.0), [3.0]],
    ids=["int", "float", "np.float64", "0-d array", "list"],
)
def test_values_of_every_kind(value):
    r = bp.grad("sum(x*x)", x=value, torch=False, symbolic=False)
    assert np.ravel(r.grads["x"])[0] == 6.0


def test_torch_tensors_are_converted():
    torch = pytest.importorskip("torch")
    r = bp.grad("sum(x*y)", x=torch.tensor(3.0), y=torch.tensor([1.0, 2.0]), symbolic=False)
    assert r.grads["x"] == 3.0 and r.grads["y"].tolist() == [3.0, 3.0]


def test_values_as_a_dict_for_names_that_are_options():
    r = bp.grad("x*order + wrt", {"x": 2, "order": 3, "wrt": 1}, torch=False, symbolic=False)
    assert r.grads == {"order": 2.0, "wrt": 1.0, "x": 3.0}
    with pytest.raises(bp.InputError, match="given twice"):
        bp.grad("x", {"x": 1}, x=2)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1", "must be a number or an array"),
        (True, "must be a number or an array"),
        (None, "must be a number or an array"),
        ([[1, 2], [3]], "not a number or a rectangular array"),
        (1 + 2j, "complex"),
        (float("nan"), "nan or inf"),
        ([1, float("inf")], "nan or inf"),
    ],
)
def test_bad_values_are_input_errors(value, message, capsys):
    with pytest.raises(bp.InputError, match=message):
        bp.grad("x*x", x=value)
    assert capsys.readouterr() == ("", "")


def test_errors_carry_the_cli_message_and_column(capsys):
    with pytest.raises(bp.ParseError) as info:
        bp.grad("(x+", x=1)
    cli = run("grad", "(x+", "x=1")
    assert cli.code == 2
    assert cli.stderr.splitlines()[0] == f"error: {info.value.message}"
    assert info.value.column == 4 and str(info.value) == info.value.message
    with pytest.raises(bp.InputError) as missing:
        bp.grad("x*y", x=1)
    assert run("grad", "x*y", "x=1").stderr.splitlines()[0] == f"error: {missing.value.message}"
    with pytest.raises(bp.LimitError):
        bp.grad("sum(ones(20000,1)*ones(1,20000)*x)", x=1, torch=False, symbolic=False)
    with pytest.raises(bp.InputError):
        bp.grad(42)  # type: ignore[arg-type]
    with pytest.raises(bp.InputError, match="stdin"):
        bp.grad("-")
    assert capsys.readouterr() == ("", "")  # never a print


def test_errors_are_never_system_exit():
    for call in (
        lambda: bp.train("linear", epochs=-1),
        lambda: bp.train("linear", optimizer="nope"),
        lambda: bp.check("x", samples=0),
        lambda: bp.explain("x*x", x=1, mode="sideways"),
        lambda: bp.compile("x*y")(x=1),
        lambda: bp.grad("x", x=1, order=3),
    ):
        with pytest.raises(bp.BackpropError):
            call()


def test_unused_values_warn():
    with pytest.warns(bp.BackpropWarning, match="does not use it"):
        r = bp.grad("x*x", x=1, q=2, torch=False, symbolic=False)
    assert any("does not use it" in w for w in r.warnings)


def test_reprs_are_short():
    r = bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False, symbolic=False)
    assert repr(r) == "GradResult(value=-12.0, grads={'x': -4.0, 'y': -4.0, 'z': 3.0}, ok=True)"
    big = bp.grad("sum(x*x)", x=list(range(100)), torch=False, symbolic=False)
    assert len(repr(big)) < 120 and "shape=(100,)" in repr(big)
    assert repr(r.nodes[4]).startswith("Node(id=4, label='(x+y)*z', op='mul'")


def test_html_escapes_what_the_user_typed():
    r = bp.grad("q = x*x; f = q + 1", x=2, torch=False, symbolic=False)
    html = r._repr_html_()
    assert "<table" in html and "5" in html and "4" in html
    evil = bp.grad("x*x", x=2, torch=False, symbolic=False)
    evil.report["output"]["label"] = "<script>alert(1)</script>"
    assert "<script>alert(1)" not in evil._repr_html_()


def test_picture_svg_and_its_fallback(monkeypatch):
    r = bp.grad("(x+y)*z", x=-2, y=5, z=-4, torch=False, symbolic=False)
    import shutil

    if shutil.which("dot"):
        svg = r.picture._repr_svg_()
        assert svg.lstrip().startswith("<?xml") and "-12" in svg and "<svg" in svg
    monkeypatch.setattr(shutil, "which", lambda name: None)
    pic = r.picture
    assert pic._repr_svg_() is None
    fallback = pic._repr_html_()
    assert "not installed" in fallback and "-12" in fallback
    assert "digraph" in pic.dot


def test_compile_broadcasts_and_chunks(monkeypatch):
    f = bp.compile("sum(W @ x) * s", shapes={"W": (2, 3), "x": (3,)})
    rng = np.random.default_rng(0)
    W, x, s = rng.normal(size=(5, 2, 3)), rng.normal(size=(3,)), rng.normal(size=(5,))
    value, grads = f(W=W, x=x, s=s)
    assert value.shape == (5,) and grads["W"].shape == (5, 2, 3) and grads["x"].shape == (5, 3)
    for i in range(5):
        one = bp.grad("sum(W @ x) * s", W=W[i], x=x, s=s[i], torch=False, symbolic=False)
        assert value[i] == pytest.approx(one.value, rel=1e-13)
        np.testing.assert_allclose(grads["W"][i], one.grads["W"], rtol=1e-13)
        np.testing.assert_allclose(grads["x"][i], one.grads["x"], rtol=1e-13)
    big = bp.compile("x*x")
    v, g = big(x=np.arange(3_000_000.0))
    assert v[-1] == 2_999_999.0**2 and g["x"][-1] == 2 * 2_999_999.0
    with pytest.raises(bp.InputError, match="broadcast"):
        f(W=np.zeros((4, 2, 3)), x=x, s=np.zeros(5))
    with pytest.raises(bp.InputError, match="scalar output"):
        bp.compile("x*ones(3)")
    with pytest.raises(bp.InputError, match="must end in the shape"):
        f(W=np.zeros(3), x=x, s=1)


def test_train_takes_columns_and_init():
    t = bp.train("affine", x=[1, 2, 3], y=[3, 5, 7], epochs=500, lr=0.05, init={"w": 1, "b": 0})
    assert t.params["w"] == pytest.approx(2, abs=0.05) and t.ok
    t2 = bp.train("linear", data={"x": [1.0, 2.0], "y": [2.0, 4.0]}, epochs=3, log_every=2)
    assert [e.epoch for e in t2.history] == [0, 1, 2]
    assert t2.predict(x=[4.0]).shape == (1,)
    assert "<table" in t2._repr_html_() and t2.to_dict()["model"] == "linear"
    with pytest.raises(bp.InputError, match="does not have"):
        bp.train("linear", init={"nope": 1})


def test_check_at_given_points():
    c = bp.check("x*x", points=[{"x": 1}, {"x": 2}])
    assert c.ok and "<pre" in c._repr_html_()


def test_warnings_do_not_leak_when_not_asked():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bp.grad("x*x", x=1, torch=False, symbolic=False)


def test_readme_python_block_prints_what_its_comments_say():
    from tests import readme

    blocks = readme.blocks("python")
    assert blocks, "README has a python example"
    for block in blocks:
        expected = [
            line.split("  # ", 1)[1]
            for line in block.splitlines()
            if line.startswith("print(") and "  # " in line
        ]
        code = "\n".join(line.split("  # ", 1)[0] for line in block.splitlines())
        import contextlib
        import io

        out = io.StringIO()
        with contextlib.redirect_stdout(out), warnings.catch_warnings():
            warnings.simplefilter("error")
            exec(compile(code, "README.md", "exec"), {})  # our own README, not user input
        assert out.getvalue().splitlines() == expected


def test_the_api_page_lists_every_public_name_and_its_examples_run():
    from pathlib import Path

    page = Path(__file__).parent.parent / "docs" / "api.md"
    text = page.read_text()
    for name in bp.__all__:
        if name != "__version__":
            assert f"bp.{name}" in text, name
    # The page's fences end an example as a blank line would.
    source = "\n".join("" if line.startswith("```") else line for line in text.splitlines())
    test = doctest.DocTestParser().get_doctest(source, {"bp": bp}, "docs/api.md", str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test)
    assert runner.tries >= 8 and runner.failures == 0


def test_a_partial_shows_its_formula_in_latex():
    r = bp.grad("q = x**2*w11; loss = q*3", x=3, w11=2, torch=False)
    assert r.partials["x"]._repr_latex_() == (
        "$\\frac{\\partial \\mathit{loss}}{\\partial x} = 6 w_{11} x$"
    )
    arr = bp.grad("sum(W @ x)", W=[[1, 2], [3, 4]], x=[1, -1], torch=False)
    assert (
        arr.partials["W[0,1]"]._repr_latex_().startswith("$\\frac{\\partial f}{\\partial W_{0,1}}")
    )
    assert str(arr.partials["W[0,1]"].formula) == "x[1]" or "x" in str(
        arr.partials["W[0,1]"].formula
    )


def _meta_tensor():
    torch = pytest.importorskip("torch")
    return torch.empty(2, device="meta")


@pytest.mark.parametrize(
    ("call", "kind", "message"),
    [
        (lambda: bp.grad("sum(x)", x=np.zeros(20_000_001)), bp.LimitError, "10,000,000"),
        (lambda: bp.grad("sum(x)", x=np.zeros(8_000_000), y=np.zeros(8_000_000),
                         z=np.zeros(8_000_000), w=np.zeros(8_000_000)), bp.LimitError, "in all"),
        (lambda: bp.grad("sum(x)", x=np.zeros((1,) * 40)), bp.InputError, "at most 32"),
        (lambda: bp.grad("sum(x)", x=[]), bp.InputError, "empty"),
        (lambda: bp.grad("x", x=10**5000), bp.InputError, "too large"),
        (lambda: bp.grad("x", x=np.ma.masked_array([1.0], mask=[True])), bp.InputError, "masked"),
        (lambda: bp.grad("x", x=_meta_tensor()), bp.InputError, "cannot be read"),
        (lambda: bp.grad("x", x=1, symbolic_timeout=float("inf")), bp.InputError, "3600"),
        (lambda: bp.diff("x", timeout=float("nan")), bp.InputError, "3600"),
        (lambda: bp.grad("mlp:2-3-1", seed=-1, x1=1, x2=1, y=0), bp.InputError, "seed"),
        (lambda: bp.grad("mlp:2-3-1", seed="a", x1=1, x2=1, y=0), bp.InputError, "seed"),
        (lambda: bp.check("x*x", points="abc"), bp.InputError, "list of dicts"),
        (lambda: bp.check("x*x", range=(1, "a")), bp.InputError, "range"),
        (lambda: bp.grad("x*x", [1]), bp.InputError, "dict"),
        (lambda: bp.compile("sum(x)", shapes={"x": 2}), bp.InputError, "tuple"),
        (lambda: bp.compile("sum(x)", shapes={"x": (2.5,)}), bp.InputError, "tuple"),
        (lambda: bp.train("linear", epochs=2).predict(z=1), bp.InputError, "inputs x"),
        (lambda: bp.train("linear", lr=float("nan")), bp.InputError, "lr"),
        (lambda: bp.train("linear", lr="0.1"), bp.InputError, "lr"),
        (lambda: bp.train("linear", batch_size=-1), bp.InputError, "batch_size"),
        (lambda: bp.train("mlp", hidden=0), bp.InputError, "hidden"),
        (lambda: bp.train("linear", data={"x": [1], "y": [2]}, x=[1]), bp.InputError, "both"),
        (lambda: bp.train(42), bp.InputError, "model must be text"),
    ],
)  # fmt: skip
def test_hostile_calls_are_clear_input_errors(call, kind, message, capsys):
    with pytest.raises(kind, match=message):
        call()
    assert capsys.readouterr() == ("", "")


def test_torch_complex_and_bool_tensors_are_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(bp.InputError, match="complex"):
        bp.grad("sum(x*x)", x=torch.tensor([1 + 5j]))
    with pytest.raises(bp.InputError, match="complex"):
        bp.compile("x*x")(x=torch.tensor([1 + 5j]))
    with pytest.raises(bp.InputError, match="boolean"):
        bp.grad("sum(x)", x=torch.tensor([True]))


def test_the_callers_arrays_are_left_as_they_were():
    x = np.array([1.0, 2.0])
    bp.grad("sum(x*x)", x=x, torch=False, symbolic=False)
    bp.compile("x*x")(x=x)
    assert x.flags.writeable and x.tolist() == [1.0, 2.0]


def test_a_picture_too_big_for_graphviz_falls_back_to_text():
    import shutil

    r = bp.grad("*".join(["x"] * 200), x=1.0001, torch=False, symbolic=False)
    pic = r.picture
    if shutil.which("dot"):
        assert pic._repr_svg_() is None
        assert "ranks" in pic._repr_html_()


def test_compile_refuses_a_batch_too_large_to_hold():
    f = bp.compile("x*y")
    with pytest.raises(bp.LimitError, match="values and gradients, more than"):
        f(x=np.zeros((100_000, 1)), y=np.zeros((1, 100_000)))
    value, grads = f(x=np.zeros((0,)), y=1.0)
    assert value.shape == (0,) and grads["y"].shape == (0,)


def test_train_reports_events_and_bounds_its_history(monkeypatch):
    seen = []
    t = bp.train("linear", epochs=4, on_event=lambda kind, info: seen.append(kind))
    assert seen.count("epoch") == 4 and seen.count("tick") == 4
    monkeypatch.setattr(api, "HISTORY_ELEMENTS", 2)
    with pytest.warns(bp.BackpropWarning, match="first epochs only"):
        t = bp.train("linear", epochs=4)
    assert [e.params is None for e in t.history] == [False, False, True, True]
    assert "<table" in t._repr_html_()
    quiet = bp.train("linear", epochs=3, history=False)
    assert quiet.history == [] and quiet.loss is not None


def test_train_lr_must_be_finite_on_the_command_line():
    for lr in ("inf", "nan"):
        result = run("train", "linear", "--lr", lr)
        assert result.code == 2 and result.stdout == ""
        assert result.stderr.startswith("error:")


def test_budget_refusals_are_limit_errors_where_they_are_raised():
    from backprop_cli.core import shapes
    from backprop_cli.core.parse import parse

    with pytest.raises(bp.LimitError):  # refused from the constants' shapes while parsing
        parse("sum(ones(20000,1)*ones(1,20000)*x)")
    graph = parse("sum(x*y)")
    with pytest.raises(bp.LimitError):
        shapes.infer(graph, {"x": (20_000, 1), "y": (1, 20_000)})
    with pytest.raises(bp.LimitError, match="layer sizes"):
        bp.expand("mlp:" + "-".join(["1"] * 70))
    with pytest.raises(bp.LimitError, match="characters"):
        bp.grad("x" + "+x" * 60, x=1, max_length=50)
    with pytest.raises(bp.InputError) as plain:
        bp.grad("x*y", x=1)
    assert type(plain.value) is bp.InputError
