"""Finite differences of large graphs: passes sized by the node-elements a pass holds at once
(values dropped after their last use), held bit for bit against the straightforward
evaluation they replace (every node's value kept, branches found afterwards)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backprop_cli.checks import compare, finite
from backprop_cli.core import engine
from backprop_cli.core.graph import Graph
from backprop_cli.core.parse import Limits, parse

TOL = compare.TOLERANCES["float64"]["finite_difference"]
EXAMPLES = sorted(Path(__file__).resolve().parent.parent.glob("examples/*.bp"))
TEMPLATES = ["t{k} = sin(x*t{a}) + y", "t{k} = t{a}*x - z", "t{k} = tanh(t{a} + z)*y"]


# ---- the reference: every value kept, passes bounded by the whole graph's width ----------


def reference_table(graph: Graph, env: Any, wrt: Any, outputs: Any) -> Any:
    """finite._stencil_table as it was: engine.evaluate keeps every node's value, so a
    pass holds FD_POINTS_PER_PASS / (node-elements of the whole graph) points."""
    entries = {e: finite._element(e) for e in wrt}
    env = {name: np.asarray(value, dtype=np.float64) for name, value in env.items()}
    cores = engine.input_cores(graph, env)
    steps = {e: finite._steps(float(env[name][index])) for e, (name, index) in entries.items()}
    width = sum(max(1, int(np.prod(c))) for c in cores)
    budget = max(1, finite.FD_POINTS_PER_PASS // width)
    deps = graph.depends_on()
    stencil = len(finite._STENCIL)
    centre = np.zeros(0)
    kink = dict.fromkeys(entries, False)
    rows: dict[Any, list[np.ndarray]] = {e: [] for e in entries}
    crossings: dict[Any, list[np.ndarray]] = {e: [] for e in entries}
    for group in finite._passes(list(entries), steps, budget):
        batch, blocks = finite._stencil_batch(graph, env, group, entries, steps)
        values = engine.evaluate(graph, batch, np.float64, cores=cores)
        size = 1 + sum((hi - lo) * stencil for _, lo, hi in group)
        f = outputs(values[graph.output], cores[graph.output], size)
        branches = finite._branches(graph, values, cores, size)
        centre = np.array(f[0])
        for piece in group:
            e, lo, hi = piece
            name, n = entries[e][0], hi - lo
            mine = [b for nid, b in branches.items() if name in deps[nid]]
            kink[e] = kink[e] or any(bool((b[0] == 0).any()) for b in mine)
            crossed = np.zeros(n, dtype=bool)
            for b in mine:
                crossed |= (b[blocks[piece]] != b[0]).reshape(n, -1).any(axis=1)
            rows[e].append(f[blocks[piece]].reshape(n, stencil, -1))
            crossings[e].append(crossed)
    offsets = {}
    for e, (name, index) in entries.items():
        x = float(env[name][index])
        with np.errstate(all="ignore"):
            offsets[e] = finite._stencil_points(x, steps[e]) - x
    return finite._Table(
        entries,
        offsets,
        centre,
        {e: np.concatenate(r) for e, r in rows.items()},
        {e: np.concatenate(c) for e, c in crossings.items()},
        kink,
    )


class ReferenceScan(finite._DirectionScan):
    """finite._DirectionScan as it was: whole-graph passes, branches found afterwards."""

    def __init__(
        self,
        graph: Graph,
        env: dict[str, np.ndarray],
        wrt: list[str],
        x: np.ndarray,
        units: np.ndarray,
        exps: np.ndarray,
        seed: Any,
    ) -> None:
        self.graph, self.env, self.wrt, self.x, self.units = graph, env, wrt, x, units
        self.cores = engine.input_cores(graph, env)
        self.rounding = np.zeros_like(x)
        self.kink, self.finite = False, True
        self.centre = np.zeros(1)
        self.exps = exps
        width = sum(max(1, int(np.prod(c))) for c in self.cores)
        budget = max(1, finite.FD_POINTS_PER_PASS // width)
        steps = dict.fromkeys(range(len(units)), exps)
        rows: dict[int, list[np.ndarray]] = {d: [] for d in steps}
        crossings: dict[int, list[np.ndarray]] = {d: [] for d in steps}
        touched = finite._depending(graph, set(wrt))
        for group in finite._passes(list(steps), steps, budget):
            f, branches, blocks = self._reference_pass(group, seed)
            mine = [b for nid, b in branches.items() if touched[nid]]
            self.kink = self.kink or any(bool((b[0] == 0).any()) for b in mine)
            self.centre = np.array(f[:1])
            self.finite = bool(np.isfinite(f[0]))
            for piece, where in blocks.items():
                d, lo, hi = piece
                crossed = np.zeros(hi - lo, dtype=bool)
                for b in mine:
                    crossed |= (b[where] != b[0]).reshape(hi - lo, -1).any(axis=1)
                rows[int(d)].append(f[where].reshape(hi - lo, len(finite._STENCIL), 1))
                crossings[int(d)].append(crossed)
        self.values = {d: np.concatenate(r) for d, r in rows.items()}
        self.crossed = {d: np.concatenate(c) for d, c in crossings.items()}

    def _reference_pass(self, group: list[Any], seed: Any) -> tuple[Any, Any, Any]:
        stencil = finite._STENCIL
        size = 1 + sum((hi - lo) * len(stencil) for _, lo, hi in group)
        points = np.broadcast_to(self.x, (size, len(self.x))).copy()
        blocks = {}
        start = 1
        with np.errstate(all="ignore"):
            for piece in group:
                d, lo, hi = piece
                t = (np.ldexp(1.0, self.exps[lo:hi])[:, None] * stencil[None, :]).ravel()
                where = slice(start, start + len(t))
                step = t[:, None] * self.units[int(d)][None, :]
                points[where] = self.x + step
                moved = np.abs((points[where] - self.x) - step).max(axis=0)
                self.rounding = np.maximum(self.rounding, moved)
                blocks[piece] = where
                start += len(t)
        batch = self._batch(points, size)
        values = engine.evaluate(self.graph, batch, np.float64, cores=self.cores)
        out = values[self.graph.output]
        f = finite._scalar_output(out, self.cores[self.graph.output], seed, size)
        return f, finite._branches(self.graph, values, self.cores, size), blocks


@pytest.fixture
def reference(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Runs a call with the reference passes in place of the module's own."""

    def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        with monkeypatch.context() as m:
            m.setattr(finite, "_stencil_table", reference_table)
            m.setattr(finite, "_DirectionScan", ReferenceScan)
            return fn(*args, **kwargs)

    return call


# ---- exact comparison --------------------------------------------------------------------


def same_float(a: float | None, b: float | None) -> bool:
    """Equal to the bit (a nan equals a nan; 0.0 and -0.0 differ)."""
    if a is None or b is None:
        return a is b
    return math.copysign(1.0, a) == math.copysign(1.0, b) and (
        a == b or (math.isnan(a) and math.isnan(b))
    )


def assert_same(new: finite.FiniteDifference, old: finite.FiniteDifference) -> None:
    for field in ("value", "error_estimate", "step"):
        assert same_float(getattr(new, field), getattr(old, field)), (field, new, old)
    assert (new.kink, new.reliable) == (old.kink, old.reliable), (new, old)


def assert_same_directional(new: finite.Directional, old: finite.Directional) -> None:
    assert (new.elements, new.seed, new.kinked) == (old.elements, old.seed, old.kinked)
    assert len(new.directions) == len(old.directions)
    for a, b in zip(new.directions, old.directions, strict=True):
        assert same_float(a.engine, b.engine) and a.status == b.status
        assert_same(a.estimate, b.estimate)
    assert finite.directional_summary(new, TOL) == finite.directional_summary(old, TOL)


def check_elements(reference: Any, graph: Graph, env: dict[str, Any], wrt: list[Any]) -> None:
    new = finite.finite_differences(graph, env, wrt, 1e-15)
    old = reference(finite.finite_differences, graph, env, wrt, 1e-15)
    assert list(new) == list(old)
    for e in new:
        assert_same(new[e], old[e])


def chain_program(statements: int) -> str:
    lines = ["t0 = x*y"]
    for k in range(1, statements + 1):
        lines.append(TEMPLATES[(k - 1) % 3].format(k=k, a=k - 1))
    return "\n".join(lines) + "\n"


def example_point(path: Path) -> dict[str, float]:
    run = re.search(r"^# run: .*$", path.read_text(), re.MULTILINE)
    assert run is not None, path
    pairs = re.findall(r"(\w+)=(-?[\d.]+(?:e-?\d+)?)\b", run.group(0))
    return {name: float(value) for name, value in pairs}


# ---- the same results ------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_give_the_same_estimates(reference: Any, path: Path) -> None:
    graph = parse(path.read_text())
    env = {k: v for k, v in example_point(path).items() if k in graph.variables}
    assert set(env) == set(graph.variables)
    check_elements(reference, graph, env, sorted(graph.variables))


PROGRAMS = [
    ("relu(x) * abs(y - 1) + max(x, z) * min(y, z)", {"x": 0.0, "y": 1.0, "z": 0.0}),
    ("relu(x) * abs(y - 1) + max(x, z) * min(y, z)", {"x": 0.3, "y": -2.0, "z": 0.3}),
    ("log(x) + sqrt(y) / (x - z)", {"x": 0.1, "y": 0.0, "z": 0.1}),
    ("sin(1e16 * x) + exp(y) ** 3", {"x": 1.0, "y": 40.0}),
    ("abs(x) * 1e300 + y", {"x": 1e-300, "y": 0.0}),
    ("relu(x - 0.1) * y + abs(y + 0.2)", {"x": 0.3, "y": 0.1}),  # only the largest steps cross
]


@pytest.mark.parametrize(("source", "env"), PROGRAMS)
def test_kinks_poles_and_edges_give_the_same_estimates(
    reference: Any, source: str, env: dict[str, float]
) -> None:
    graph = parse(source)
    check_elements(reference, graph, env, sorted(graph.variables))


def test_arrays_give_the_same_estimates_and_columns(reference: Any) -> None:
    graph = parse("a = relu(W @ v - 0.5)\nsum(tanh(a) * v[:3]) + max(v) * abs(v[1])")
    rng = np.random.default_rng(3)
    env = {"W": rng.normal(size=(3, 4)), "v": np.array([0.5, 0.0, 2.0, -0.25])}
    wrt = [("W", (1, 2)), ("W", (0, 0)), ("v", (0,)), ("v", (1,)), ("v", (3,))]
    check_elements(reference, graph, env, wrt)
    vector = parse("tanh(W @ v) * v[:3]")
    new = finite.output_differences(vector, env, wrt, np.full(3, 1e-15))
    old = reference(finite.output_differences, vector, env, wrt, np.full(3, 1e-15))
    for e in wrt:
        for a, b in zip(new[e], old[e], strict=True):
            assert_same(a, b)
    seed = np.array([1.0, -2.0, 0.5])
    new_seeded = finite.finite_differences(vector, env, wrt, 0.0, seed)
    old_seeded = reference(finite.finite_differences, vector, env, wrt, 0.0, seed)
    for e in wrt:
        assert_same(new_seeded[e], old_seeded[e])


OPS = ["sin({})", "tanh({})", "relu({})", "abs({})", "({}) * {}", "({}) - {}", "max({}, {})"]


def random_program(rng: np.random.Generator, statements: int) -> str:
    names = ["x", "y", "z"]
    lines = []
    for k in range(statements):
        op = OPS[int(rng.integers(len(OPS)))]
        args = [names[int(rng.integers(len(names)))] for _ in range(op.count("{}"))]
        lines.append(f"s{k} = " + op.format(*args))
        names.append(f"s{k}")
    lines.append(" + ".join(names[-4:]))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(8))
def test_random_programs_give_the_same_estimates(
    reference: Any, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(seed)
    graph = parse(random_program(rng, 40))
    env = {"x": 0.0 if seed % 3 == 0 else 0.7, "y": -0.3, "z": float(rng.normal())}
    env = {k: v for k, v in env.items() if k in graph.variables}
    check_elements(reference, graph, env, sorted(env))
    # and with passes of a few points each, where both split an element's steps
    monkeypatch.setattr(finite, "FD_POINTS_PER_PASS", 2_000 + 50 * seed)
    check_elements(reference, graph, env, sorted(env))


def test_a_long_chain_gives_the_same_estimates_in_fewer_passes(
    reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    graph = parse(chain_program(3_000), limits=Limits(max_length=1_000_000))
    env = {"x": 0.7, "y": -0.3, "z": 0.4}
    passes: list[int] = []
    evaluate = finite._evaluate_pass

    def counted(*args: Any) -> Any:
        passes.append(args[3])  # the pass's points
        return evaluate(*args)

    monkeypatch.setattr(finite, "_evaluate_pass", counted)
    check_elements(reference, graph, env, ["x", "y", "z"])
    assert len(passes) == 1  # every step of every variable in one pass


def test_a_branchy_chain_on_its_kinks_gives_the_same_estimates(reference: Any) -> None:
    lines = ["t0 = relu(x) * y"]
    for k in range(1, 600):
        lines.append(f"t{k} = abs(t{k - 1} - z) * x + max(t{k - 1}, y)")
    graph = parse("\n".join(lines) + "\n", limits=Limits(max_length=1_000_000))
    check_elements(reference, graph, {"x": 0.0, "y": 0.5, "z": 0.5}, ["x", "y", "z"])
    check_elements(reference, graph, {"x": 0.9, "y": -0.5, "z": 0.2}, ["x", "y", "z"])


@pytest.mark.parametrize(
    "source",
    [
        "+".join(f"sin(v{i})*v{(i + 1) % 40}" for i in range(40)),
        "+".join(f"relu(v{i})*abs(v{(i + 1) % 30})" for i in range(30)),
    ],
)
def test_random_directions_give_the_same_estimates(reference: Any, source: str) -> None:
    graph = parse(source)
    env = {name: 0.1 * i - 1.5 for i, name in enumerate(sorted(graph.variables))}
    env["v3"] = 0.0  # on a kink of relu and abs
    trace = engine.run(graph, env)
    gradient = {name: trace.grads[graph.variables[name]] for name in graph.variables}
    wrt = sorted(graph.variables)
    new = finite.directional_differences(graph, env, wrt, gradient, TOL, 1e-15)
    old = reference(finite.directional_differences, graph, env, wrt, gradient, TOL, 1e-15)
    assert_same_directional(new, old)


def test_random_directions_over_arrays_give_the_same_estimates(reference: Any) -> None:
    graph = parse("sum(tanh(W @ x) * relu(x[:3]))")
    rng = np.random.default_rng(1)
    env = {"W": rng.normal(size=(3, 5)), "x": rng.normal(size=5)}
    trace = engine.run(graph, env)
    gradient = {name: trace.grads[graph.variables[name]] for name in graph.variables}
    new = finite.directional_differences(graph, env, ["W", "x"], gradient, TOL)
    old = reference(finite.directional_differences, graph, env, ["W", "x"], gradient, TOL)
    assert_same_directional(new, old)


# ---- what a pass holds -------------------------------------------------------------------


def test_a_chain_holds_a_handful_of_values_at_once() -> None:
    graph = parse(chain_program(1_000))
    cores = engine.input_cores(graph, {"x": 0.7, "y": -0.3, "z": 0.4})
    assert finite._Lifetimes(graph, cores).held <= 8


def test_values_used_at_the_end_are_held_to_the_end() -> None:
    # every s_k feeds the final sum, so all of them live at once, as engine.evaluate has them
    graph = parse(
        "\n".join(f"s{k} = sin(x * {k + 1})" for k in range(50))
        + "\n"
        + "+".join(f"s{k}" for k in range(50))
    )
    cores = engine.input_cores(graph, {"x": 0.5})
    held = finite._Lifetimes(graph, cores).held
    assert 100 <= held <= len(graph.nodes)


def test_array_values_count_their_elements() -> None:
    graph = parse("sum(tanh(W @ x))")
    env = {"W": np.zeros((30, 40)), "x": np.zeros(40)}
    cores = engine.input_cores(graph, env)
    held = finite._Lifetimes(graph, cores).held
    assert held >= 30 * 40 + 40 + 30
    assert held <= sum(max(1, math.prod(c)) for c in cores)
