"""Large programs: the batched rounding spread against a plain per-node reference, the
whole-array comparison with torch against a node-by-node one, the graph table's widths
against Rich's own measuring, and a program of 10⁴ nodes through the CLI."""

from __future__ import annotations

import importlib
import io
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from backprop_cli.analyses.gradient import Options, gradient_report
from backprop_cli.checks import autograd, compare
from backprop_cli.core import engine
from backprop_cli.core.parse import Limits, parse, parse_program
from backprop_cli.render import gradient as render
from tests.conftest import run

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.bp"))


def _program(target: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """A generated program of about `target` nodes (the scaling benchmark's)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    source: str = importlib.import_module("scaling").sized(target)[0]
    return source


# ---- the rounding spread -------------------------------------------------------------------


def _reference_spread(graph: Any, env: dict[str, Any], trace: engine.Trace, dtype: str) -> Any:
    """The spread computed the plain way: every op result and backward contribution is
    multiplied by 1 + δ as it is made, δ drawn for it from the Weyl sequence (twice its
    size in draws, the second half moving a subnormal by whole units of the smallest)."""
    dt = engine.DTYPES[dtype]
    info = np.finfo(dt)
    copies = engine.SPREAD_COPIES
    drawn = 0

    def draws(shape: tuple[int, ...]) -> np.ndarray:
        nonlocal drawn
        n = math.prod(shape)
        index = np.arange(drawn, drawn + n, dtype=np.float64)
        drawn += n
        return (2.0 * np.modf(0.5 + index * 0.6180339887498949)[0] - 1.0).reshape(shape)

    def jitter(x: Any, core: int) -> Any:
        shape = np.shape(x)
        if len(shape) == core:
            shape = (copies, *shape)
            x = np.broadcast_to(x, shape)
        moved = x * (1 + engine.SPREAD_ULPS * float(info.eps) * draws(shape)).astype(dt)
        steps = (engine.SPREAD_ULPS * draws(shape)).astype(dt) * dt(info.smallest_subnormal)
        subnormal = (x != 0) & (np.abs(x) < dt(info.tiny))
        return np.where(subnormal, moved + steps, moved)

    batch = {
        k: np.broadcast_to(np.asarray(v, dtype=dt), (copies, *np.shape(v))) for k, v in env.items()
    }
    with np.errstate(all="ignore"):
        values = engine.evaluate(graph, batch, dt, jitter=jitter, cores=trace.cores)
        grads = engine.backward(graph, values, 1.0, jitter=jitter, cores=trace.cores)

    def far(perturbed: Any, base: Any) -> Any:
        if perturbed is None or base is None:
            return None
        base = np.asarray(base, dtype=np.float64)
        with np.errstate(all="ignore"):
            moved = np.abs(np.asarray(perturbed, dtype=np.float64) - base)
        moved = moved.max(axis=tuple(range(moved.ndim - base.ndim)))
        return np.where(np.isfinite(base), np.where(np.isfinite(moved), moved, np.inf), 0.0)

    return (
        [far(p, b) for p, b in zip(values, trace.values, strict=True)],
        [far(p, b) for p, b in zip(grads, trace.grads, strict=True)],
    )


SPREAD_CASES = [
    ("x*y + sin(x)/y", {"x": 0.7, "y": -0.3}),
    ("(x + 1e8) - 1e8", {"x": 0.25}),  # a cancellation: a large spread
    ("exp(-x*x)*y", {"x": 26.6, "y": 3.0}),  # subnormal values and gradients
    ("x*1e-300*1e-10 + y", {"x": 2.0, "y": 1.0}),
    ("relu(x) + abs(y) + 2*3", {"x": 0.0, "y": -2.0}),  # kinks and a constant subexpression
    ("sum(W*x) + log(x[0])", {"W": np.array([[1.0, 2.0], [3.0, 4.0]]), "x": np.array([0.5, 2.0])}),
    ("sqrt(x) + 1/x", {"x": 0.0}),  # infinities
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("text", "env"), SPREAD_CASES, ids=[c[0] for c in SPREAD_CASES])
def test_batched_spread_matches_the_per_node_reference(
    text: str, env: dict[str, Any], dtype: str
) -> None:
    graph = parse(text)
    trace = engine.run(graph, env, dtype)
    values, grads = engine.spread(graph, env, trace, dtype)
    ref_values, ref_grads = _reference_spread(graph, env, trace, dtype)
    for ours, theirs in [
        *zip(values, ref_values, strict=True),
        *zip(grads, ref_grads, strict=True),
    ]:
        if theirs is None:
            assert ours is None
            continue
        np.testing.assert_allclose(np.asarray(ours), theirs, rtol=1e-12, atol=0.0)


def test_batched_spread_matches_the_reference_on_a_long_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    graph = parse(_program(1000, monkeypatch))
    env = {"x": 0.7, "y": -0.3, "z": 0.4}
    trace = engine.run(graph, env)
    values, grads = engine.spread(graph, env, trace)
    ref_values, ref_grads = _reference_spread(graph, env, trace, "float64")
    np.testing.assert_allclose(np.array(values, dtype=float), np.array(ref_values), rtol=1e-12)
    ours = np.array([np.nan if g is None else g for g in grads], dtype=float)
    theirs = np.array([np.nan if g is None else g for g in ref_grads], dtype=float)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_spread_is_a_few_ulps_where_well_conditioned_and_large_on_a_cancellation() -> None:
    graph = parse("(x + 1e8) - 1e8 + x*y")
    env = {"x": 0.25, "y": 2.0}
    trace = engine.run(graph, env)
    values, grads = engine.spread(graph, env, trace)
    eps = float(np.finfo(np.float64).eps)
    assert 0.0 < values[graph.variables["x"] + 2] <= 4 * engine.SPREAD_ULPS * eps * 1e8
    assert values[graph.output] > 1e3 * eps  # the cancellation shows
    assert engine.spread(graph, env, trace) == (values, grads)  # deterministic


# ---- torch over whole arrays ----------------------------------------------------------------


def _reference_torch_summary(text: str, point: dict[str, Any], torch_run: Any) -> dict[str, Any]:
    """The engine against torch element by element, node by node, value before gradient."""
    graph = parse(text)
    trace = engine.run(graph, point)
    value_spread, grad_spread = engine.spread(graph, point, trace)
    rtol, atol = compare.TOLERANCES["float64"]["torch"]
    compared = inconclusive = 0
    worst = 0.0
    mismatches: list[dict[str, Any]] = []
    for node in graph.nodes:
        pairs = [("value", trace.values, torch_run.values, value_spread)]
        pairs += [("grad", trace.grads, torch_run.grads, grad_spread)]
        for what, ours_all, theirs_all, spread_all in pairs:
            ours, theirs = ours_all[node.id], theirs_all[node.id]
            if ours is None:
                continue
            a = np.asarray(ours, dtype=np.float64)
            b = np.asarray(theirs, dtype=np.float64)
            slack = np.broadcast_to(compare.SPREAD_SLACK * np.asarray(spread_all[node.id]), a.shape)
            for index in np.ndindex(a.shape):
                x, y = float(a[index]), float(b[index])
                verdict = compare.judge(x, y, rtol, atol, float(slack[index]))
                if verdict == "inconclusive":
                    inconclusive += 1
                    continue
                compared += 1
                worst = max(worst, compare.abs_error(x, y))
                if verdict == "mismatch":
                    entry = {"node": node.id, "what": what, "engine": x, "torch": y}
                    if index:
                        entry["index"] = list(index)
                    mismatches.append(entry)
    return {
        "ok": not mismatches,
        "compared": compared,
        "inconclusive": inconclusive,
        "max_error": worst,
        "mismatches": mismatches[:20],
    }


def _example(path: Path) -> tuple[str, dict[str, float]]:
    for line in path.read_text().splitlines():
        if line.startswith("# run:"):
            words = shlex.split(line.split(":", 1)[1])
            point = dict(w.split("=") for w in words if "=" in w)
            return path.read_text(), {k: float(v) for k, v in point.items()}
    raise AssertionError(f"{path.name} has no run line")


TORCH_CASES = [_example(p) for p in EXAMPLES] + [
    (
        "sum(W*x) + log(x[0])*y",
        {"W": np.array([[1.0, 2.0], [3.0, 4.0]]), "x": np.array([0.5, 2.0]), "y": 1.5},
    ),
    ("(x + 1e8) - 1e8 + relu(y)", {"x": 0.25, "y": 0.0}),
]


def _check_summary(found: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in ("ok", "compared", "inconclusive"):
        assert found[key] == expected[key], key
    assert found["max_error"] == pytest.approx(expected["max_error"], rel=1e-12, abs=1e-300)
    assert len(found["mismatches"]) == len(expected["mismatches"])
    for ours, theirs in zip(found["mismatches"], expected["mismatches"], strict=True):
        assert {k: ours[k] for k in ("node", "what", "index") if k in ours} == {
            k: theirs[k] for k in ("node", "what", "index") if k in theirs
        }
        assert ours["engine"] == pytest.approx(theirs["engine"], rel=1e-15)
        assert ours["torch"] == pytest.approx(theirs["torch"], rel=1e-15)


@pytest.mark.parametrize(("text", "point"), TORCH_CASES, ids=range(len(TORCH_CASES)))
def test_whole_array_torch_summary_matches_the_node_by_node_one(
    text: str, point: dict[str, Any]
) -> None:
    program = parse_program(text)
    report = gradient_report(program, point, Options(symbolic=False))
    torch_run = autograd.torch_run(program.graph, point, "float64", "cpu")
    _check_summary(report["checks"]["torch"], _reference_torch_summary(text, point, torch_run))
    assert report["checks"]["torch"]["ok"] is True


def test_whole_array_torch_summary_reports_mismatches_in_node_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = "a = x*y; b = sin(a) + W*x; c = sum(b*b) + a"
    point: dict[str, Any] = {"x": 0.7, "y": 2.0, "W": np.array([1.0, -2.0, 3.0])}
    real = autograd.torch_run

    def wrong(*args: Any, **kwargs: Any) -> Any:
        found = real(*args, **kwargs)
        values, grads = list(found.values), list(found.grads)
        values[3] = values[3] + 1.0  # a scalar node's value
        grads[0] = np.asarray(grads[0]) * 2.0  # an array's gradient
        values[5] = np.asarray(values[5]) + np.array([0.0, 1.0, 1.0])  # two elements
        return autograd.TorchRun(values, grads, found.device, found.version)

    monkeypatch.setattr(autograd, "torch_run", wrong)
    program = parse_program(text)
    report = gradient_report(program, point, Options(symbolic=False))
    expected = _reference_torch_summary(text, point, wrong(program.graph, point, "float64", "cpu"))
    assert expected["mismatches"]  # the case does disagree
    _check_summary(report["checks"]["torch"], expected)
    assert report["ok"] is False


# ---- the graph table -------------------------------------------------------------------------


def _drawn(report: dict[str, Any], width: int, color: bool, max_rows: int) -> str:
    out = Console(
        file=io.StringIO(),
        width=width,
        highlight=False,
        force_terminal=color,
        color_system="truecolor" if color else None,
    )
    for i, renderable in enumerate(render.tables(report, out.width, max_rows)):
        if i:
            out.print()
        out.print(renderable)
    text: str = out.file.getvalue()  # type: ignore[attr-defined]
    return text


@pytest.mark.parametrize("width", [44, 60, 80, 100, 140])
def test_table_widths_settled_without_rich_measuring_draw_the_same(
    width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _program(600, monkeypatch) + "u = t10 + exp(x)*1e300*1e10\n"  # a note, long cells
    program = parse_program(source)
    report = gradient_report(program, {"x": 0.7, "y": -0.3, "z": 0.4}, Options(symbolic=False))
    fast = {
        (color, rows): _drawn(report, width, color, rows)
        for color in (False, True)
        for rows in (0, 40)
    }
    monkeypatch.setattr(render.Fitted, "_settled", lambda self, headers, width: None)
    for (color, rows), text in fast.items():
        assert text == _drawn(report, width, color, rows)


# ---- through the CLI -------------------------------------------------------------------------


def test_a_program_of_ten_thousand_nodes_with_the_default_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _program(10_000, monkeypatch)
    path = tmp_path / "big.bp"
    path.write_text(source)
    limit = str(max(Limits().max_length, len(source)))
    result = run(
        "grad",
        "--file",
        str(path),
        "x=0.7",
        "y=-0.3",
        "z=0.4",
        "--max-length",
        limit,
        "--format",
        "json",
    )
    assert result.code == 0, result.stderr
    data = result.json()
    nodes = len(data["nodes"])
    assert nodes > 9_000
    assert data["ok"] is True
    torch_check = data["checks"]["torch"]
    assert torch_check["ok"] is True
    assert torch_check["compared"] + torch_check["inconclusive"] >= 2 * nodes - 1000
    assert data["checks"]["finite_difference"]["ok"] is True
    table = run("grad", "--file", str(path), "x=0.7", "y=-0.3", "z=0.4", "--max-length", limit)
    assert table.code == 0, table.stderr
    assert "not shown (--max-rows 0 shows all)" in table.stdout
