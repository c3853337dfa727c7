"""SymEngine's partials are SymPy's: the same values and formulas (as text for every op, the
examples, MLP losses, arrays, Jacobians and Hessians; equal in value for random programs);
where SymEngine would write a graph otherwise, or is missing, SymPy's path runs instead."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backprop_cli.checks import fast_symbolic, symbolic
from backprop_cli.core import ops, shapes
from backprop_cli.core.parse import parse

ROOT = Path(__file__).parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.bp"))

try:
    import symengine  # noqa: F401

    HAVE_SYMENGINE = True
except ImportError:
    HAVE_SYMENGINE = False

if not HAVE_SYMENGINE and os.environ.get("BACKPROP_REQUIRE_SYMENGINE"):
    raise RuntimeError("BACKPROP_REQUIRE_SYMENGINE is set, but symengine is not installed")

needs_symengine = pytest.mark.skipif(not HAVE_SYMENGINE, reason="symengine is not installed")

# Every elementwise op a user can write inside an expression (a named copy is a statement).
ELEMENTWISE = [op for op in ops.OPS.values() if op.elementwise and op.symbol != "="]


def program_for(op: ops.Op) -> str:
    """The op on variables (composed with a little arithmetic, so the chain rule runs)."""
    names = ["x", "y"][: op.arity]
    args = [f"(2*{n} + 0.5)" if k == 0 else n for k, n in enumerate(names)]
    if op.symbol is not None and op.arity == 2:
        inner = f"{args[0]} {op.symbol} {args[1]}"
    elif op.symbol is not None:
        inner = f"{op.symbol}{args[0]}"
    else:
        inner = f"{op.call}({', '.join(args)})"
    return f"u = {inner}\nf = u * x + u / 3"


def partials(graph, point, wrt, backend, monkeypatch, **options):
    monkeypatch.setenv(fast_symbolic.ENV, backend)
    messages: list[dict] = []
    symbolic.partials(graph, point, wrt, False, False, **options, emit=messages.append)
    raw = next(m for m in messages if m.get("stage") == "raw")
    return raw


def same(a: dict, b: dict) -> None:
    """Equal formulas, and values equal to within rounding (both exact to far past float64)."""
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].get("formula") == b[name].get("formula"), name
        va, vb = a[name].get("value"), b[name].get("value")
        if va is None or vb is None:
            assert va is vb, (name, va, vb)
            assert a[name].get("undefined") == b[name].get("undefined"), name
        else:
            assert math.isclose(va, vb, rel_tol=1e-15, abs_tol=1e-300), (name, va, vb)


def points_for(graph, seed: int, count: int = 3):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        # inside every op's domain: log and sqrt take positive values, a base of log ≠ 1
        yield {name: float(rng.uniform(0.2, 0.9)) for name in graph.variables}


def test_the_switch_says_which_library(monkeypatch):
    monkeypatch.setenv(fast_symbolic.ENV, "sympy")
    assert fast_symbolic.backend(10**6) == "sympy"
    monkeypatch.setenv(fast_symbolic.ENV, "symengine")
    assert fast_symbolic.backend(1) == ("symengine" if HAVE_SYMENGINE else "sympy")
    monkeypatch.delenv(fast_symbolic.ENV)  # auto: SymEngine where SymPy would be slow
    assert fast_symbolic.backend(fast_symbolic.LARGE) == "sympy"
    assert fast_symbolic.backend(10**6) == ("symengine" if HAVE_SYMENGINE else "sympy")


def test_small_graphs_stay_with_sympy_by_default(monkeypatch):
    graph = parse((ROOT / "examples" / "sigmoid_neuron.bp").read_text())
    point = {"w0": 2.0, "x0": -1.0, "w1": -3.0, "x1": -2.0, "w2": -3.0}
    assert partials(graph, point, sorted(point), "auto", monkeypatch)["backend"] == "sympy"


@needs_symengine
@pytest.mark.parametrize("op", ELEMENTWISE, ids=[op.name for op in ELEMENTWISE])
def test_every_op_agrees_with_sympy(op, monkeypatch):
    graph = parse(program_for(op))
    wrt = sorted(graph.variables)
    for point in points_for(graph, seed=len(op.name)):
        fast = partials(graph, point, wrt, "symengine", monkeypatch, expand=True)
        slow = partials(graph, point, wrt, "sympy", monkeypatch, expand=True)
        assert slow["backend"] == "sympy"
        same(fast["partials"], slow["partials"])
        assert fast["output"] == slow["output"]


@needs_symengine
def test_smooth_ops_take_the_fast_path(monkeypatch):
    # The ops whose derivatives SymEngine writes as SymPy does; the piecewise ones (whose
    # derivative SymEngine leaves unevaluated) and a power with a variable exponent (which
    # SymEngine writes x**(y - 1)*y) stay with SymPy.
    taken = set()
    for op in ELEMENTWISE:
        graph = parse(program_for(op))
        point = next(points_for(graph, seed=1))
        if (
            partials(graph, point, sorted(graph.variables), "symengine", monkeypatch)["backend"]
            == "symengine"
        ):
            taken.add(op.name)
    assert {"add", "mul", "div", "exp", "log", "sin", "tanh"} <= taken
    assert not {op.name for op in ELEMENTWISE if op.branch is not None} & taken
    assert "pow" not in taken


@needs_symengine
@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_agree(path, monkeypatch):
    graph = parse(path.read_text())
    wrt = sorted(graph.variables)
    for point in points_for(graph, seed=7, count=2):
        fast = partials(graph, point, wrt, "symengine", monkeypatch)
        slow = partials(graph, point, wrt, "sympy", monkeypatch)
        assert fast["backend"] == "symengine"
        same(fast["partials"], slow["partials"])


def mlp(inputs: int, hidden: int, act: str) -> str:
    lines = [
        f"h{j} = {act}(" + " + ".join(f"w{j}_{i}*x{i}" for i in range(inputs)) + f" + b{j})"
        for j in range(hidden)
    ]
    lines.append("yhat = " + " + ".join(f"v{j}*h{j}" for j in range(hidden)) + " + c")
    lines.append("L = (yhat - y)**2")
    return "\n".join(lines)


@needs_symengine
@pytest.mark.parametrize("act", [op.call for op in ELEMENTWISE if op.call and op.arity == 1
                                 and op.branch is None])  # fmt: skip
def test_mlp_losses_expanded_agree(act, monkeypatch):
    graph = parse(mlp(4, 16, act))  # past the sweep's size: --expand decides
    assert len(graph.nodes) > symbolic.SWEEP_NODES
    wrt = sorted(graph.variables)
    point = next(points_for(graph, seed=11))
    fast = partials(graph, point, wrt, "symengine", monkeypatch, expand=True)
    slow = partials(graph, point, wrt, "sympy", monkeypatch, expand=True)
    assert fast["backend"] == "symengine"
    same(fast["partials"], slow["partials"])


@needs_symengine
def test_two_hidden_layers_keep_exps_apart(monkeypatch):
    # SymEngine merges exp(a)*exp(b) into exp(a + b); our build keeps SymPy's form.
    graph = parse("a = sigmoid(w*x + b)\nf = sigmoid(v*a + c)")
    point = {"w": 0.3, "x": 0.7, "b": -0.2, "v": 0.9, "c": 0.1}
    fast = partials(graph, point, sorted(point), "symengine", monkeypatch)
    slow = partials(graph, point, sorted(point), "sympy", monkeypatch)
    assert fast["backend"] == "symengine"
    same(fast["partials"], slow["partials"])
    assert "exp(-b - w*x)" in fast["partials"]["w"]["formula"]


def random_program(rng: np.random.Generator, steps: int, piecewise: bool = True) -> str:
    """A seeded chain of registry ops over x, y, z, each step using one or two earlier
    names, so that names are used many times over."""
    names = ["x", "y", "z"]
    lines = []
    smooth = [
        op
        for op in ELEMENTWISE
        if op.name not in ("log", "sqrt", "log_base", "pow") and (piecewise or op.branch is None)
    ]
    for k in range(steps):
        op = smooth[int(rng.integers(len(smooth)))]
        args = [names[int(rng.integers(len(names)))] for _ in range(op.arity)]
        if op.symbol is not None and op.arity == 2:
            text = f"{args[0]} {op.symbol} {args[1]}"
        elif op.symbol is not None:
            text = f"{op.symbol}{args[0]}"
        else:
            text = f"{op.call}({', '.join(args)})"
        lines.append(f"t{k} = {text}")
        names.append(f"t{k}")
    lines.append(f"f = {names[-1]} + {names[-2]} * 0.25")
    return "\n".join(lines)


@needs_symengine
@pytest.mark.parametrize("seed", range(12))
def test_random_programs_agree(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    graph = parse(random_program(rng, 6))
    wrt = sorted(graph.variables)
    point = {name: float(rng.uniform(-1, 1)) for name in graph.variables}
    fast = partials(graph, point, wrt, "symengine", monkeypatch)
    slow = partials(graph, point, wrt, "sympy", monkeypatch)
    equal(fast["partials"], slow["partials"], graph, rng)


@needs_symengine
@pytest.mark.parametrize("seed", range(40))
def test_random_smooth_programs_agree(seed, monkeypatch):
    rng = np.random.default_rng(1000 + seed)
    graph = parse(random_program(rng, 8, piecewise=False))
    wrt = sorted(graph.variables)
    point = {name: float(rng.uniform(-1, 1)) for name in graph.variables}
    fast = partials(graph, point, wrt, "symengine", monkeypatch)
    slow = partials(graph, point, wrt, "sympy", monkeypatch)
    equal(fast["partials"], slow["partials"], graph, rng)


def equal(a: dict, b: dict, graph, rng: np.random.Generator) -> None:
    """The same values at the point, and formulas equal at random points (SymEngine may
    group a sign or a factor otherwise: 2*(t**2 + 1) for (2*t**2 + 2))."""
    import sympy as sp

    for name in a:
        va, vb = a[name].get("value"), b[name].get("value")
        assert (va is None) == (vb is None), name
        if va is not None:
            assert math.isclose(va, vb, rel_tol=1e-13, abs_tol=1e-13), (name, va, vb)
        if a[name]["formula"] == b[name]["formula"]:
            continue
        fa, fb = sp.sympify(a[name]["formula"]), sp.sympify(b[name]["formula"])
        for _ in range(3):
            at = {
                sp.Symbol(v): sp.Rational(int(rng.integers(-90, 90)), 100) for v in graph.variables
            }
            ya, yb = complex(fa.subs(at).evalf(30)), complex(fb.subs(at).evalf(30))
            assert abs(ya - yb) <= 1e-12 * max(1.0, abs(ya)), (name, fa, fb)


def array_run(program: str, point: dict, backend: str, monkeypatch, seed=None):
    graph = parse(program)
    env = {k: np.asarray(v, dtype=np.float64) for k, v in point.items()}
    cores = shapes.infer(graph, {k: v.shape for k, v in env.items()})
    wrt = [(name, index) for name in sorted(graph.variables)
           for index in np.ndindex(*env[name].shape)]  # fmt: skip
    out_seed = np.ones(cores[graph.output]) if seed is None else seed
    monkeypatch.setenv(fast_symbolic.ENV, backend)
    messages: list[dict] = []
    symbolic.partials(graph, env, wrt, False, False, cores, out_seed, emit=messages.append)
    return next(m for m in messages if m.get("stage") == "raw")


@needs_symengine
@pytest.mark.parametrize(
    "program, point",
    [
        ("f = sum(tanh(W @ x + b))", {"W": [[0.1, -0.2], [0.3, 0.4]], "x": [0.5, -0.6],
                                      "b": [0.2, 0.1]}),
        ("f = dot(x, x) * 2 + mean(exp(x))", {"x": [0.5, -0.25, 1.0]}),
        ("f = sigmoid(A.T @ x)", {"A": [[0.1, 0.2], [0.3, 0.4]], "x": [1.0, -1.0]}),
    ],
)  # fmt: skip
def test_array_graphs_agree(program, point, monkeypatch):
    fast = array_run(program, point, "symengine", monkeypatch)
    slow = array_run(program, point, "sympy", monkeypatch)
    assert fast["backend"] == "symengine"
    same(fast["partials"], slow["partials"])
    assert fast["compact"] == slow["compact"]


def higher(program: str, point: dict, kind: str, backend: str, monkeypatch) -> dict:
    graph = parse(program)
    env = {k: np.asarray(v, dtype=np.float64) for k, v in point.items()}
    cores = shapes.infer(graph, {k: v.shape for k, v in env.items()})
    wrt = [(name, index) for name in sorted(graph.variables)
           for index in np.ndindex(*env[name].shape)]  # fmt: skip
    monkeypatch.setenv(fast_symbolic.ENV, backend)
    entries: dict = {}
    symbolic.higher(graph, env, wrt, cores, kind, emit=lambda m: entries.update(m["entries"]))
    return entries


@needs_symengine
@pytest.mark.parametrize(
    "program, point, kind",
    [
        ("f = x**3*y + sin(x*y)", {"x": 0.5, "y": -1.5}, "hessian"),
        ("f = sigmoid(dot(w, x))", {"w": [0.1, 0.2, -0.3], "x": [1.0, 2.0, 0.5]}, "hessian"),
        ("f = tanh(W @ x)", {"W": [[0.1, 0.2], [0.3, -0.4]], "x": [1.0, 2.0]}, "jacobian"),
        ("f = exp(x) * log(y + 2)", {"x": [0.5, 1.0], "y": [0.25, 0.75]}, "jacobian"),
    ],
)
def test_jacobians_and_hessians_agree(program, point, kind, monkeypatch):
    fast = higher(program, point, kind, "symengine", monkeypatch)
    slow = higher(program, point, kind, "sympy", monkeypatch)
    same(fast, slow)


CHILD = """
import json, sys
sys.modules["symengine"] = None  # as if it were not installed: importing it fails
from backprop_cli.checks import fast_symbolic, symbolic
from backprop_cli.core.parse import parse
graph = parse(sys.argv[1])
messages = []
symbolic.partials(graph, json.loads(sys.argv[2]), sorted(graph.variables), False, False,
                  expand=True, emit=messages.append)
print(json.dumps([fast_symbolic.backend(), messages[0]]))
"""


def test_without_symengine_sympy_gives_the_same(monkeypatch):
    program = mlp(3, 12, "tanh")  # large: SymEngine's, by default, where it is installed
    graph = parse(program)
    point = next(points_for(graph, seed=5))
    env = {k: v for k, v in os.environ.items() if k != fast_symbolic.ENV}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, program, json.dumps(point)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    backend, child = json.loads(done.stdout)
    assert backend == "sympy" and child["backend"] == "sympy"
    here = partials(graph, point, sorted(point), "auto", monkeypatch, expand=True)
    assert here["backend"] == ("symengine" if HAVE_SYMENGINE else "sympy")
    same(child["partials"], json.loads(json.dumps(here["partials"])))
    assert child["output"] == here["output"]


@needs_symengine
def test_partials_at_many_points_agree(monkeypatch):
    graph = parse(mlp(3, 12, "tanh"))
    points = list(points_for(graph, seed=9, count=3))
    wrt = [(name, ()) for name in sorted(graph.variables)]
    found = {}
    for backend in ("symengine", "sympy"):
        monkeypatch.setenv(fast_symbolic.ENV, backend)
        messages: list[dict] = []
        symbolic.partials_at_points(graph, points, wrt, None, emit=messages.append)
        found[backend] = messages
    fast, slow = found["symengine"], found["sympy"]
    assert fast[0]["backend"] == "symengine" and slow[0]["backend"] == "sympy"
    assert fast[0]["partials"] == slow[0]["partials"]
    for a, b in zip(fast[1:], slow[1:], strict=True):
        same(a["partials"], b["partials"])
