"""The SymPy counterpart: formulas from the graph, exact values, conventions, and the budget."""

from __future__ import annotations

import json
import math
import time

import pytest

from backprop_cli.checks import symbolic
from backprop_cli.checks.sandbox import Bounded
from backprop_cli.core.parse import parse
from tests.conftest import run


def partials(source: str, simplify: bool = True, **point: float) -> dict:
    graph = parse(source)
    messages: list[dict] = []
    symbolic.partials(graph, point, list(graph.variables), False, simplify, emit=messages.append)
    merged: dict = {}
    for m in messages:
        for name, info in m.get("partials", {}).items():
            merged[name] = {**merged.get(name, {}), **info}
    return merged


def test_formulas_of_the_cs231n_example():
    got = partials("q = x + y; f = q * z", x=-2, y=5, z=-4)
    assert got["x"]["formula"] == "z"
    assert got["z"]["formula"] == "x + y"
    assert got["x"]["value"] == -4.0
    assert got["z"]["value"] == 3.0


def test_literals_show_as_typed_and_count_as_the_engine_used_them():
    got = partials("0.1 * x", x=1.0)
    assert got["x"]["formula"] == "1/10"
    assert got["x"]["value"] == 0.1  # the float64 0.1, exactly
    got = partials("1/(x - 0.1)", x=0.10000000001)
    # -1/(x - fl(0.1))**2, not -1/(x - 1/10)**2
    assert got["x"]["value"] == pytest.approx(-9.999998345192785e21, rel=1e-15)
    got = partials("log(x, sin(pi))", x=2.0)  # sin(fl(pi)) is 1.2e-16, not 0
    assert got["x"]["value"] == pytest.approx(1 / (2 * math.log(math.sin(math.pi))), rel=1e-12)


def test_one_failing_partial_keeps_the_others():
    got = partials("tan(exp(e) ** max(z ** x, z)) + w", x=0.0034880324791974307, z=-1.0, w=1.0)
    assert got["w"]["value"] == 1.0
    assert "error" in got["x"] or "undefined" in got["x"] or got["x"].get("value") is not None


def test_values_are_evaluated_exactly_at_the_float_point():
    got = partials("exp(x)", x=0.1)
    assert got["x"]["value"] == pytest.approx(math.exp(0.1), rel=1e-16)


def test_heaviside_convention_is_flagged():
    got = partials("relu(x)", x=0.0)
    assert got["x"]["convention"]
    assert got["x"]["value"] == 0.5


def test_abs_derivative_is_sign_and_matches_torch_at_zero():
    got = partials("abs(x)", x=0.0)
    assert got["x"]["formula"] == "sign(x)"
    assert got["x"]["value"] == 0.0


def test_undefined_points():
    got = partials("sqrt(x)", x=0.0)
    assert got["x"]["value"] is None
    assert "undefined" in got["x"]["undefined"]
    got = partials("log(x)", x=-1.0)
    assert got["x"]["value"] == -1.0  # 1/x is fine even where log is complex


def test_constants_from_the_graph():
    got = partials("x * pi + e", x=1.0)
    assert got["x"]["formula"] == "pi"


def test_budget_cuts_a_slow_child_and_keeps_what_it_sent():
    def slow(*, emit):
        emit({"stage": "raw", "partials": {"x": {"formula": "1", "value": 1.0}}})
        time.sleep(30)

    start = time.monotonic()
    job = Bounded(slow, (), seconds=0.5, memory_mb=256)
    messages = job.collect()
    assert time.monotonic() - start < 5
    assert job.status == "timeout"
    assert messages == [{"stage": "raw", "partials": {"x": {"formula": "1", "value": 1.0}}}]


def test_child_errors_are_reported():
    def broken(*, emit):
        raise RecursionError("too deep")

    job = Bounded(broken, (), seconds=5, memory_mb=256)
    messages = job.collect()
    assert messages[-1]["error"].startswith("RecursionError")
    assert job.status == "error"


def test_child_memory_is_bounded():
    def greedy(*, emit):
        blocks = []
        for _ in range(100):
            blocks.append(bytearray(64 * 1024 * 1024))
        emit({"done": True})

    job = Bounded(greedy, (), seconds=20, memory_mb=256)
    messages = job.collect()
    assert messages and "MemoryError" in messages[-1].get("error", "")


# ---- the symbolic reverse sweep: named intermediates for large graphs -----------------------


def mlp_program(inputs: int, hidden: int) -> str:
    lines = [
        f"h{j} = tanh(" + " + ".join(f"w_{j}_{i}*x{i}" for i in range(inputs)) + f" + b{j})"
        for j in range(hidden)
    ]
    lines.append("out = " + " + ".join(f"v{j}*h{j}" for j in range(hidden)) + " + c")
    lines.append("L = (out - y)**2")
    return "\n".join(lines)


def test_mlp_loss_partials_read_like_the_backprop_derivation(tmp_path):
    import numpy as np

    program = tmp_path / "mlp.bp"
    program.write_text(mlp_program(10, 30))
    rng = np.random.default_rng(3)
    names = (
        [f"w_{j}_{i}" for j in range(30) for i in range(10)]
        + [f"x{i}" for i in range(10)]
        + [f"b{j}" for j in range(30)]
        + [f"v{j}" for j in range(30)]
        + ["c", "y"]
    )
    values = tmp_path / "values.json"
    values.write_text(json.dumps({n: float(rng.normal()) for n in names}))
    result = run("grad", "--file", str(program), "--values", str(values), "--no-torch",
                 "--format", "json")  # fmt: skip
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["symbolic"]["w_3_2"] == "2*v3*x2*(1 - h3**2)*(out - y)"
    assert data["symbolic"]["v3"] == "2*h3*(out - y)"
    sweep = data["symbolic_sweep"]
    defined = {name: formula for name, formula, _ in sweep["intermediates"]}
    assert defined["h3"].startswith("tanh(b3 + w_3_0*x0")
    assert "out" in defined
    checks = data["checks"]["symbolic"]
    assert checks["ok"] is True and checks["compared"] == len(names)
    # linear in the graph: every partial is short
    assert max(len(f) for f in data["symbolic"].values()) < 2_000


def test_sweep_values_match_the_engine_on_shared_intermediates():
    from backprop_cli.checks import symbolic
    from backprop_cli.core import engine
    from backprop_cli.core.parse import parse_program

    # fan-out, reuse and long chains: adjoints are summed, named where they grow
    steps = ["a0 = x*y + sin(x)"]
    for k in range(1, 60):
        steps.append(f"a{k} = a{k - 1}*x + exp(-a{k - 1}**2) + y/({k} + a{k - 1}**2)")
    graph = parse_program("\n".join(steps)).graph
    assert len(graph.nodes) > symbolic.SWEEP_NODES
    point = {"x": 0.7, "y": -0.3}
    messages = []
    symbolic.sweep_partials(graph, point, ["x", "y"], False, emit=messages.append)
    found = messages[0]["partials"]
    trace = engine.run(graph, point)
    for name in ("x", "y"):
        ours = float(trace.grads[graph.variables[name]])
        assert found[name]["value"] == pytest.approx(ours, rel=1e-9)
        assert len(found[name]["formula"]) < 5_000
    assert messages[0]["sweep"]["adjoints"]  # deep chains need named adjoints


def test_expand_gives_one_expanded_formula_per_partial(tmp_path):
    program = tmp_path / "mlp.bp"
    program.write_text(mlp_program(2, 30))
    values = {f"w_{j}_{i}": 0.1 for j in range(30) for i in range(2)}
    values.update({f"b{j}": 0.0 for j in range(30)})
    values.update({f"v{j}": 0.2 for j in range(30)})
    values.update({"x0": 1.0, "x1": -1.0, "c": 0.0, "y": 1.0})
    path = tmp_path / "v.json"
    path.write_text(json.dumps(values))
    args = ["grad", "--file", str(program), "--values", str(path), "--no-torch", "--format", "json"]
    swept = run(*args, "--wrt", "b3").json()
    expanded = run(*args, "--wrt", "b3", "--expand", "--no-simplify").json()
    assert swept["symbolic_sweep"] is not None and expanded["symbolic_sweep"] is None
    assert "h3" in swept["symbolic"]["b3"] and "tanh(" in expanded["symbolic"]["b3"]
    assert swept["partials"][0]["symbolic_value"] == pytest.approx(
        expanded["partials"][0]["symbolic_value"], rel=1e-12
    )


def test_adjoint_names_never_take_a_name_the_program_uses():
    from backprop_cli.core import engine
    from backprop_cli.core.parse import parse_program

    lines = ["d_a = x*0 + 1", "a = x*y"]
    lines += [f"a = a*x + sin(a) + y/({k} + a**2)" for k in range(20)]
    lines.append("f = a*pi + d_a*a")
    graph = parse_program("\n".join(lines)).graph
    assert len(graph.nodes) > symbolic.SWEEP_NODES
    point = {"x": 0.3, "y": 0.7}
    messages = []
    symbolic.sweep_partials(graph, point, ["x", "y"], False, emit=messages.append)
    trace = engine.run(graph, point)
    for name in ("x", "y"):
        ours = float(trace.grads[graph.variables[name]])
        assert messages[0]["partials"][name]["value"] == pytest.approx(ours, rel=1e-9)
    names = [n for n, _, _ in messages[0]["sweep"]["adjoints"]]
    assert len(names) == len(set(names)) and "d_a" not in names
