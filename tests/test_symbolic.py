"""The SymPy counterpart: formulas from the graph, exact values, conventions, and the budget."""

from __future__ import annotations

import math
import time

import pytest

from backprop_cli import symbolic
from backprop_cli.parse import parse
from backprop_cli.sandbox import Bounded


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
