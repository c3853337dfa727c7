"""Untrusted input, bounded: non-finite values only when asked for, graphs too big to run
refused before they run, finite differences and JSON kept within memory on wide arrays, and
the fuzzing campaign's own machinery."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backprop_cli.checks import finite
from backprop_cli.core import ops, shapes
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import Limits, parse, parse_binding
from backprop_cli.render.gradient import to_json
from tests.conftest import run

FAST = ("--no-torch", "--no-symbolic")

# ---- --allow-nonfinite ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nan", math.nan),
        ("NaN", math.nan),
        ("inf", math.inf),
        ("-inf", -math.inf),
        ("+Infinity", math.inf),
        ("-INF", -math.inf),
    ],
)
def test_nonfinite_values_when_allowed(text, expected):
    name, value = parse_binding(f"x={text}", limits=Limits(allow_nonfinite=True))
    assert name == "x"
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "Infinity", "[1, nan]", "2*inf"])
def test_nonfinite_values_are_refused_by_default_with_a_hint(text):
    with pytest.raises(BackpropError) as info:
        parse_binding(f"x={text}")
    assert "is not a finite number" in info.value.message
    assert "--allow-nonfinite" in str(info.value.hint)


def test_nonfinite_array_value_keeps_every_element():
    _, value = parse_binding("x=[[1, nan], [-inf, 2]]", limits=Limits(allow_nonfinite=True))
    assert value.shape == (2, 2)
    assert value[0, 0] == 1 and math.isnan(value[0, 1]) and value[1, 0] == -math.inf


def test_nonfinite_words_inside_names_are_names():
    with pytest.raises(BackpropError, match="constant expression, but it uses info"):
        parse_binding("x=info", limits=Limits(allow_nonfinite=True))
    with pytest.raises(BackpropError, match="constant expression, but it uses nanny"):
        parse_binding("x=nanny")


def test_the_expression_itself_has_no_nan():
    r = run("grad", "x + nan", "x=1", "--allow-nonfinite", *FAST)
    assert r.code == 2
    assert "missing value for nan" in r.stderr, r.stderr


def test_grad_with_a_nan_value_reports_and_agrees_with_torch():
    r = run("grad", "x*y", "x=nan", "y=2", "--allow-nonfinite", "--format", "json")
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["value"] is None  # strict JSON: nan is written as null
    assert report["gradient"]["x"] == pytest.approx(2.0)
    assert report["gradient"]["y"] is None
    assert any("null" in w["message"] for w in report["warnings"])


def test_grad_with_an_infinite_value_and_sympy():
    r = run("grad", "exp(-x)*y", "x=inf", "y=2", "--allow-nonfinite", "--format", "json")
    assert r.code == 0, r.stderr
    report = r.json()
    assert report["value"] == 0.0
    assert "failed" not in json.dumps(report["checks"]).lower()


def test_points_nonfinite_cells_only_when_allowed():
    stdin = "x,y\n1,nan\n-inf,2\n3,4\n"
    refused = run("grad", "x*y", "--points", "-", *FAST, stdin=stdin)
    assert refused.code == 2
    assert "line 2" in refused.stderr and "--allow-nonfinite" in refused.stderr
    allowed = run("grad", "x*y", "--points", "-", "--allow-nonfinite", "--check", stdin=stdin)
    assert allowed.code == 0, allowed.stderr
    rows = allowed.stdout.splitlines()
    assert rows[0] == "x,y,value,d_x,d_y"
    assert rows[1].split(",")[2] == "nan"
    assert rows[2].split(",")[2] == "-inf"
    assert rows[3].split(",")[2] == "12.0"
    assert "nan or infinite" in allowed.stderr


def test_points_json_lines_nan_only_when_allowed():
    stdin = '{"x": NaN, "y": 1}\n{"x": 2, "y": Infinity}\n'
    refused = run("grad", "x*y", "--points", "-", *FAST, "--on-error", "skip", stdin=stdin)
    assert refused.code == 0
    assert refused.stderr.count("not a finite number") == 2
    allowed = run("grad", "x*y", "--points", "-", "--allow-nonfinite", *FAST, stdin=stdin)
    assert allowed.code == 0, allowed.stderr
    assert len(allowed.stdout.splitlines()) == 3


def test_values_files_read_numbers_as_float64(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"x": ' + "9" * 5000 + "}")
    r = run("grad", "x*2", "--values", str(big), *FAST)
    assert r.code == 2 and "not finite" in r.stderr
    twice = tmp_path / "twice.json"
    twice.write_text('{"x": 1, "x": 2}')
    r = run("grad", "x*2", "--values", str(twice), *FAST)
    assert r.code == 2 and "'x' is given twice" in r.stderr
    nan = tmp_path / "nan.json"
    nan.write_text('{"x": [1, NaN]}')
    assert run("grad", "sum(x)", "--values", str(nan), *FAST).code == 2
    r = run("grad", "sum(x)", "--values", str(nan), "--allow-nonfinite", *FAST, "--format", "json")
    assert r.code == 0, r.stderr
    assert r.json()["variables"]["x"] == [1.0, None]


def test_values_files_hold_at_most_ten_million_elements(tmp_path):
    from backprop_cli.io.data import json_value

    with pytest.raises(BackpropError, match="more than 10,000,000 elements"):
        json_value([[0.0] * 1000] * 10_001, "x")


def test_an_endless_line_is_refused_without_reading_it_all():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    for args in (
        ["train", "linear", "--data", "/dev/zero"],
        ["grad", "x*y", "--points", "/dev/zero"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "backprop_cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert "line 1: longer than 1,000,000 characters" in done.stderr


def test_points_into_a_reader_that_stops_early(tmp_path):
    data = tmp_path / "many.txt"
    data.write_text("\n".join(str(i) for i in range(200_000)) + "\n")
    done = subprocess.run(
        f"{sys.executable} -m backprop_cli grad 'sin(x)' --points {data} | head -1",
        shell=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout == "x,value,d_x\n"
    assert "error" not in done.stderr, done.stderr


def test_finite_differences_do_not_trust_an_aliased_plateau():
    r = run("grad", "sin(x)", "x=1e16", "--no-symbolic", "--format", "json")
    assert r.code == 0, r.stderr
    assert r.json()["partials"][0]["status"]["finite_difference"] == "inconclusive"
    r = run("grad", "sin(x - y)", "x=1e17", "y=1e17", "--no-symbolic")
    assert r.code == 0, r.stderr


# ---- budgets ------------------------------------------------------------------------------


def test_a_graph_too_big_to_hold_is_refused_before_it_runs():
    graph = parse("sum(" + "+".join(["x"] * 40) + ")")
    with pytest.raises(BackpropError, match="too big to run") as info:
        shapes.infer(graph, {"x": (10_000_000,)})
    assert "400,000,001 array elements" in info.value.message


def test_a_graph_too_costly_to_run_is_refused_by_its_work():
    graph = parse("sum(x@x@x)")  # 27,000,001 elements: within that budget
    with pytest.raises(BackpropError, match="too big to run") as info:
        shapes.infer(graph, {"x": (3000, 3000)})
    assert "27,000,001 array elements" in info.value.message
    assert "54,009,000,000 operations" in info.value.message  # 2·3000³ + the sum
    assert shapes.infer(graph, {"x": (1000, 1000)})  # 2·10^9: runs


def test_training_data_is_not_held_to_the_report_budget():
    from backprop_cli.core import engine

    graph = parse("sum(sigmoid(X @ W))")
    env = {"X": np.zeros((20_000_000, 2)), "W": np.zeros(2)}
    assert engine.input_cores(graph, env)[-1] == ()


def test_cost_counts_matrix_products_by_their_multiply_adds():
    graph = parse("sum(A @ B)")
    cores = shapes.infer(graph, {"A": (20, 30), "B": (30, 40)})
    total, work = shapes.cost(graph, cores)
    assert total == 20 * 30 + 30 * 40 + 20 * 40 + 1
    assert work >= 20 * 30 * 40


def test_scalar_graphs_cost_one_per_node():
    graph = parse("x*y + sin(x)")
    assert shapes.cost(graph, shapes.infer(graph, {})) == (len(graph.nodes), len(graph.nodes))


def test_matrix_products_through_blas_equal_einsum():
    rng = np.random.default_rng(0)
    dims = {"i": 70, "j": 80, "k": 90}
    for specs in ops._EINSUM.values():
        for spec in specs:
            left, _ = spec.split("->")
            x, y = (term[3:] for term in left.split(","))
            for ba, bb in [((), ()), ((5,), ()), ((), (5,)), ((2, 5), (5,)), ((4, 1), (1, 3))]:
                a = rng.normal(size=ba + tuple(dims[c] for c in x))
                b = rng.normal(size=bb + tuple(dims[c] for c in y))
                want = np.einsum(spec, a, b)
                got = ops._contract(spec, a, b)
                assert got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_finite_differences_split_into_passes_give_the_same_estimates(monkeypatch):
    graph = parse("sum(tanh(W @ x) * x[:3])")
    env = {"W": np.arange(12.0).reshape(3, 4) / 10, "x": np.array([0.5, -1.0, 2.0, 0.25])}
    wrt = [("W", (1, 2)), ("x", (0,)), ("x", (3,))]
    whole = finite.finite_differences(graph, env, wrt)
    monkeypatch.setattr(finite, "FD_POINTS_PER_PASS", 50)  # a few points a pass
    split = finite.finite_differences(graph, env, wrt)
    for e in wrt:
        assert split[e].value == pytest.approx(whole[e].value, rel=1e-12, abs=1e-15)
        assert split[e].kink == whole[e].kink


def test_wide_arrays_skip_finite_differences_with_a_warning():
    r = run("grad", "sum(x*x)", "x=arange(1000000)", "--no-symbolic", "--format", "json")
    assert r.code == 0, r.stderr
    assert "finite differences are skipped" in r.stderr
    report = r.json()
    assert report["gradient"]["x"][:3] == [0.0, 2.0, 4.0]


# ---- JSON --------------------------------------------------------------------------------


def test_json_rows_are_compact_and_the_document_is_unchanged():
    report = {
        "warnings": [],
        "a": [[1.0, 2.5], [3.0, -4.0]],
        "b": [1, 2, 3],
        "c": {"d": [0.1, 1e300], "e": "text \\u0000row0"},
        "f": [],
        "g": [1.0, float("nan"), float("inf")],
    }
    text = to_json(report)
    back = json.loads(text)
    assert back["a"] == report["a"] and back["b"] == report["b"] and back["c"] == report["c"]
    assert back["g"] == [1.0, None, None]
    assert "[1.0, 2.5]" in text  # one line per row
    assert any("g[1]" in w["message"] for w in back["warnings"])


# ---- the fuzzing campaign --------------------------------------------------------------------

CAMPAIGN = Path(__file__).resolve().parent.parent / "fuzz" / "campaign.py"


def test_the_generator_makes_every_kind_of_case():
    sys.path.insert(0, str(CAMPAIGN.parent))
    try:
        import campaign
    finally:
        sys.path.pop(0)
    import random

    rng = random.Random(3)
    cases = [campaign.generate(rng) for _ in range(400)]
    assert {c["kind"] for c in cases} == {
        "text", "almost", "tree", "array", "values", "options", "files",
    }  # fmt: skip
    assert all(isinstance(a, str) for c in cases for a in c["args"])
    for c in cases:
        if c["kind"] in ("tree", "array"):
            try:
                parse(c["args"][c["args"].index("--") + 1], limits=Limits())
            except BackpropError as exc:  # valid syntax; only a constant may be undefined
                assert "the constant" in exc.message, exc.message


def test_a_short_campaign_runs_clean(tmp_path):
    out = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, str(CAMPAIGN), "--inputs", "12", "--jobs", "1", "--seed", "7",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    stats = json.loads(out.read_text())
    assert stats["tried"] == 12
    assert stats["failures"] == []
    assert sum(stats["codes"].values()) == 12
