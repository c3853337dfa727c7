"""`backprop check`: gradients checked at many points, the worst one reported, exit 1 on a
disagreement."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backprop_cli.core import ops
from tests.conftest import cli_in_fresh_python, run


def check_json(*args, stdin=None):
    result = run("check", *args, "--format", "json", stdin=stdin)
    return result, (result.json() if result.stdout.strip() else None)


def test_random_points_agree_everywhere():
    result, data = check_json("softplus(w*x + b) - tanh(x)**2", "--samples", "60", "--seed", "0")
    assert result.code == 0, result.stderr
    assert data["points"] == 60 and data["ok"] is True
    for name in ("torch", "finite_difference", "symbolic"):
        summary = data["checks"][name]
        assert summary["ok"] is True and summary["compared"] == 180 and summary["mismatches"] == 0
    assert data["worst"]["partial"] in ("b", "w", "x")


def test_the_same_seed_gives_the_same_points():
    a = check_json("x*y", "--samples", "5", "--seed", "7", "--no-symbolic", "--no-torch")[1]
    b = check_json("x*y", "--samples", "5", "--seed", "7", "--no-symbolic", "--no-torch")[1]
    c = check_json("x*y", "--samples", "5", "--seed", "8", "--no-symbolic", "--no-torch")[1]
    assert a["worst"] == b["worst"] and a["worst"]["point"] != c["worst"]["point"]


def test_points_outside_the_domain_are_drawn_again():
    result, data = check_json("log(x) + sqrt(y)", "--samples", "40", "--no-torch")
    assert result.code == 0, result.stderr
    assert data["points"] == 40 and data["outside_domain"] > 0
    assert "outside the domain" in result.stderr


def test_range_chooses_where_to_look():
    result, data = check_json("x*x", "--samples", "20", "--range", "5,6", "--no-symbolic")
    assert result.code == 0
    assert 5 <= data["worst"]["point"]["x"] <= 6


def test_a_wrong_derivative_rule_is_caught(monkeypatch):
    wrong = dataclasses.replace(ops.OPS["sin"], vjp=(lambda g, out, a: g * np.sin(a),))
    monkeypatch.setitem(ops.OPS, "sin", wrong)
    result, data = check_json("sin(x) * y", "--samples", "10")
    assert result.code == 1
    assert data["ok"] is False
    for name in ("torch", "finite_difference", "symbolic"):
        assert data["checks"][name]["mismatches"] > 0
    assert data["mismatches"][0]["partial"] == "x"
    table = run("check", "sin(x) * y", "--samples", "10")
    assert table.code == 1 and "✗" in table.stdout


def test_points_from_a_file_and_fixed_values():
    stdin = "x\n0.5\n1.5\n-2\n"
    result, data = check_json("w*x**2", "w=3", "--points", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    assert data["points"] == 3 and data["source"] == "stdin"
    assert data["fixed"] == {"w": 3.0}
    assert data["checks"]["symbolic"]["compared"] == 6


def test_kinks_are_not_counted_as_disagreements():
    stdin = "x,y\n0,1\n1,1\n-1,2\n"
    result, data = check_json("relu(x)*y + max(x, y)", "--points", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    assert data["ok"] is True
    assert sum(data["checks"]["finite_difference"]["not_compared"].values()) > 0


def test_fixed_arrays_with_random_scalars():
    result, data = check_json(
        "sum(sigmoid(W @ v * x))", "W=[[1,2],[3,4]]", "v=[1,-1]", "--samples", "5"
    )
    assert result.code == 0, result.stderr
    assert data["checks"]["torch"]["compared"] == 5 * 7  # W (4), v (2), x (1) per point


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["x*y", "--range", "3,1"], "is not below"),
        (["x*y", "--range", "a,b"], "is not a number"),
        (["sum(W @ x)", "W=[[1,2],[3,4]]"], "drawn as numbers"),
        (["2*x", "x=[1,2]"], "scalar output"),
        (["x*y", "--no-torch", "--device", "cuda"], "--device needs the torch check"),
        (["log(x)", "--range", "-5,-1"], "no point in [-5, -1]"),
    ],
)
def test_bad_usage_is_exit_2(args, fragment):
    result = run("check", *args)
    assert result.code == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_symbolic_budget_cut_keeps_the_numeric_checks(monkeypatch):
    import time

    from backprop_cli.checks import symbolic

    def three_then_stall(graph, points, wrt, cores, *, emit):
        emit({"stage": "formulas", "partials": {"x": {"formula": "y"}, "y": {"formula": "x"}}})
        for k, p in enumerate(points[:3]):
            emit(
                {
                    "stage": "point",
                    "k": k,
                    "partials": {"x": {"value": p["y"]}, "y": {"value": p["x"]}},
                }
            )
        time.sleep(30)

    monkeypatch.setattr(symbolic, "partials_at_points", three_then_stall)
    result, data = check_json("x*y", "--samples", "20", "--symbolic-timeout", "1")
    assert result.code == 0, result.stderr
    assert data["checks"]["torch"]["compared"] == 40
    assert data["checks"]["symbolic"]["compared"] == 6
    assert data["checks"]["symbolic"]["not_compared"] == {"budget": 34}


def test_check_with_no_torch_never_imports_torch():
    cli_in_fresh_python(
        ["check", "x*y", "--samples", "3", "--no-torch", "--no-symbolic"],
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules",
    )
