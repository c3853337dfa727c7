"""`backprop codegen`: the generated code is run (Python modules imported, C compiled and
called through ctypes) and its value and derivatives compared with the engine's, for every
op of the registry, every target and every mode, on examples, model specs and random
programs; plus the contract of the text itself (formatting, imports, names, size) and of
the command line."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import backprop_cli as bp
from backprop_cli import api
from backprop_cli.analyses import codegen as cg
from backprop_cli.checks import generated
from backprop_cli.core import engine, ops
from backprop_cli.core.parse import parse_program
from backprop_cli.render import code as printers
from tests.conftest import run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.bp"))
MODELS = ("mlp:2-3-1", "linear")

HAVE_CC = generated.compiler() is not None
HAVE_JAX = importlib.util.find_spec("jax") is not None
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler on PATH")


@pytest.fixture(autouse=True)
def _targets_installed(request: pytest.FixtureRequest) -> None:
    """A test of the jax target skips where jax is not installed, one of the c target where
    there is no C compiler; CI sets BACKPROP_REQUIRE_JAX / BACKPROP_REQUIRE_CC to make a
    missing one a failure instead."""
    spec = getattr(request.node, "callspec", None)
    target = spec.params.get("target") if spec is not None else None
    if target == "jax" and not HAVE_JAX:
        if os.environ.get("BACKPROP_REQUIRE_JAX") == "1":
            pytest.fail("BACKPROP_REQUIRE_JAX=1 but jax is not installed")
        pytest.skip("jax is not installed")
    if target == "c" and not HAVE_CC and os.environ.get("BACKPROP_REQUIRE_CC") == "1":
        pytest.fail("BACKPROP_REQUIRE_CC=1 but there is no C compiler")


TARGETS = [pytest.param(t, marks=needs_cc) if t == "c" else t for t in printers.TARGETS]
ARRAY_TARGETS = ("numpy", "torch", "jax")
PYTHON_FAMILY = ("python", "numpy", "torch", "jax")
MODES = cg.MODES
RTOL = 1e-9
ATOL = 1e-12

ELEMENTWISE = [name for name, op in ops.OPS.items() if op.elementwise]
ARRAY_OPS = [name for name, op in ops.OPS.items() if not op.elementwise]
LETTERS = "ab"


# ---- writing programs from the registry --------------------------------------------------


def index_text(index: tuple[Any, ...]) -> str:
    """A getitem node's `index` attribute as the parser reads it: 1, -1, 1:, ::-1."""
    parts = []
    for item in index:
        if isinstance(item, tuple):
            _, start, stop, step = item
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            parts.append(text if step is None else f"{text}:{step}")
        else:
            parts.append(str(item))
    return ", ".join(parts)


def spellings(op: ops.Op, args: list[str], attrs: dict[str, Any] | None = None) -> list[str]:
    """Every way the parser's tables write the op, applied to `args` (parenthesised, so
    that the text can be nested): a call, an infix or prefix symbol, a postfix attribute,
    a subscript."""
    attrs = attrs or {}
    if op.name == ops.SUBSCRIPT:
        return [f"{args[0]}[{index_text(attrs['index'])}]"]
    out = []
    if op.call is not None:
        extra = [f"axis={attrs['axis']}"] if attrs.get("axis") is not None else []
        extra += [str(d) for d in attrs.get("shape", ())]
        out.append(f"{op.call}({', '.join([*args, *extra])})")
    if op.arity == 2:
        out += [f"({args[0]} {s} {args[1]})" for s, n in ops.INFIX.items() if n == op.name]
    if op.arity == 1:
        out += [f"({s}{args[0]})" for s, n in ops.PREFIX.items() if n == op.name]
        out += [f"{args[0]}.{s}" for s, n in ops.POSTFIX.items() if n == op.name]
    assert out, f"the parser's tables do not say how to write {op.name}"
    return out


def op_programs(op: ops.Op, attrs: dict[str, Any] | None = None) -> list[str]:
    """Programs that apply the op to the variables a (and b)."""
    args = list(LETTERS[: op.arity]) if op.elementwise else ["A", "B"][: op.arity]
    if op.symbol == "=":
        return [f"q = {args[0]}"]
    return spellings(op, args, attrs)


# ---- generating, loading and calling -------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("codegen"))


def generate(
    text: str,
    target: str,
    mode: str = "reverse",
    wrt: list[str] | None = None,
    name: str | None = None,
) -> tuple[Any, str, cg.Code]:
    program = parse_program(text)
    source, code = api.generate(program, target, wrt, name, mode == "forward", mode == "hessian")
    return program.graph, source, code


@contextmanager
def quiet_numbers() -> Iterator[None]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        yield


def wrt_names(code: cg.Code) -> list[str]:
    """The user's names of the variables the code differentiates, in the code's order."""
    names = dict(zip(code.params, code.variables, strict=True))
    return [names[w] for w in code.wrt]


def call(
    function: Callable[..., Any],
    target: str,
    code: cg.Code,
    args: list[Any],
    direction: list[Any],
) -> tuple[Any, list[Any], list[list[Any]]]:
    """Run generated code: its value, its gradient (or [the tangent]) and Hessian rows."""
    n = len(code.wrt)
    mode = code.mode
    with quiet_numbers():
        if target == "c":
            if mode == "forward":
                value, t = function(*args, *direction, tangent=True)
                return value, [t], []
            if mode == "hessian":
                value, grad, hess = function(*args, out=(n, n * n))
                return value, grad[:n], [hess[i * n : (i + 1) * n] for i in range(n)]
            value, grad = function(*args, out=n)
            return value, grad[:n], []
        if target == "python":
            args = [float(a) for a in args]
            direction = [float(t) for t in direction]
        if mode == "forward":
            value, t = function(*args, *direction)
            return value, [t], []
        if mode == "hessian":
            value, grads, rows = function(*args)
            assert isinstance(grads, tuple) and len(grads) == n
            assert isinstance(rows, tuple) and len(rows) == n
            return value, list(grads), [list(r) for r in rows]
        value, grads = function(*args)
        assert isinstance(grads, tuple) and len(grads) == n, grads
        return value, list(grads), []


def numbers(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def engine_tangent(graph: Any, point: dict[str, Any], wrt: list[str], direction: list[Any]) -> Any:
    """The engine's Jacobian-vector product, one reverse sweep per element of the output (so
    that an array output gets its whole tangent)."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in point.items()}
    with quiet_numbers():
        values = engine.evaluate(graph, env)
        out = np.asarray(values[graph.output], dtype=np.float64)
        tangent = np.zeros(out.shape)
        for k in np.ndindex(out.shape):
            seed = np.zeros(out.shape)
            seed[k] = 1.0
            grads = engine.backward(graph, values, seed=seed)
            total = 0.0
            for name, t in zip(wrt, direction, strict=True):
                g = grads[graph.variables[name]]
                if g is not None:  # an exact 0 is a structural zero, even against a nan
                    g = np.asarray(g)
                    total += float(np.sum(np.where(g == 0, 0.0, g * np.asarray(t))))
            tangent[k] = total
    return tangent


def engine_numbers(
    graph: Any, point: dict[str, Any], mode: str, wrt: list[str], direction: list[Any]
) -> tuple[Any, list[Any], list[list[Any]]]:
    with quiet_numbers():
        value, grads, rows = generated.reference(graph, point, mode, wrt, direction)
    if mode == "forward":
        full = engine_tangent(graph, point, wrt, direction)
        if full.ndim == 0:  # a scalar output: the check's own reference says the same
            np.testing.assert_allclose(full, numbers(grads[0]), rtol=RTOL, atol=ATOL)
        grads = [full]
    return value, grads, rows


def finite(*parts: Any) -> bool:
    flat: list[Any] = []
    for part in parts:
        stack = [part]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, tuple)):
                stack.extend(item)
            else:
                flat.append(item)
    return all(np.all(np.isfinite(numbers(x))) for x in flat)


def assert_same(got: Any, want: Any, what: str, exact: bool = False, atol: float = ATOL) -> None:
    g, w = numbers(got), numbers(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape}, the engine's {w.shape}"
    if exact:
        assert np.array_equal(g, w, equal_nan=True), f"{what}: {g!r}, the engine {w!r}"
    else:
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=atol, equal_nan=True, err_msg=what)


def check_point(
    function: Callable[..., Any],
    target: str,
    graph: Any,
    code: cg.Code,
    point: dict[str, Any],
    rng: np.random.Generator,
    exact: bool = False,
    atol: float = ATOL,
    finite_only: bool = False,
) -> bool:
    """Compare the generated function with the engine at one point; False where skipped
    (the engine's numbers are not finite and `finite_only`, or Python's math raised there)."""
    wrt = wrt_names(code)
    direction = [rng.uniform(-1, 1, np.shape(point[w])) for w in wrt]
    if target in ("python", "c"):
        direction = [float(t) for t in direction]
    want_value, want, rows = engine_numbers(graph, point, code.mode, wrt, direction)
    ok = finite(want_value, want, rows)
    if finite_only and not ok:
        return False
    args = [point[v] for v in code.variables]
    try:
        got_value, got, got_rows = call(function, target, code, args, direction)
    except (ArithmeticError, ValueError) as exc:
        # Python's math raises where numpy gives inf or nan (in the result, or in a part
        # that a kink masks afterwards); only allowed there
        allowed = not ok or not generated.intermediates_finite(graph, point)
        assert target == "python" and allowed, f"at {point}: the {target} code raised {exc!r}"
        return False
    where = f"{target} {code.mode} at {point}"
    assert_same(got_value, want_value, f"the value, {where}", exact, atol)
    assert len(got) == len(want)
    if code.mode == "forward":
        # the engine's tangent comes from reverse sweeps: an element whose row of the
        # Jacobian holds a nan (0 * nan off the diagonal) is nan there, whatever the code says
        g, w = numbers(got[0]), numbers(want[0])
        assert g.shape == w.shape, f"the tangent, {where}: shape {g.shape}, the engine's {w.shape}"
        known = np.isfinite(w) | (np.ndim(w) == 0)
        assert_same(g[known], w[known], f"the tangent, {where}", exact, atol)
    else:
        for name, g, w in zip(wrt, got, want, strict=True):
            assert_same(g, w, f"d/d{name}, {where}", exact, atol)
    if code.mode == "hessian":
        assert len(got_rows) == len(rows)
        for i, (grow, wrow) in enumerate(zip(got_rows, rows, strict=True)):
            for j, (g, w) in enumerate(zip(grow, wrow, strict=True)):
                assert_same(g, w, f"d2/d{wrt[i]}d{wrt[j]}, {where}", exact, atol)
    return True


def loaded(text: str, target: str, mode: str, workdir: str, **kw: Any) -> tuple[Any, ...]:
    graph, source, code = generate(text, target, mode, **kw)
    return graph, code, generated.load(source, target, code.name, workdir)


def is_kink(op: ops.Op, sample: tuple[float, ...]) -> bool:
    """Whether a sample sits where a piecewise op switches pieces."""
    return op.branch is not None and float(np.asarray(op.branch(*sample))) == 0


# ---- 1. every elementwise op, every target, every mode -------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("op_name", ELEMENTWISE)
def test_elementwise_op_agrees_with_engine_at_its_samples(
    op_name: str, target: str, mode: str, workdir: str
) -> None:
    op = ops.OPS[op_name]
    rng = np.random.default_rng(0)
    for text in op_programs(op):
        graph, code, function = loaded(text, target, mode, workdir)
        assert any(n.op == op_name for n in graph.nodes), text
        assert code.variables == list(LETTERS[: op.arity])
        for sample in op.samples:
            if mode == "hessian" and op.symbol == "**" and sample[0] <= 0:
                # documented: forward over reverse multiplies the exponent's zero tangent
                # by ln a (nan or -inf for a base <= 0), where the engine's duals skip zeros
                continue
            point = dict(zip(LETTERS[: op.arity], sample, strict=True))
            check_point(function, target, graph, code, point, rng, exact=is_kink(op, sample))


@pytest.mark.parametrize("mode", MODES)
def test_python_target_returns_floats(mode: str, workdir: str) -> None:
    """The math target works on floats: every number it returns is one (no int 0 for a
    zero derivative), as the engine's are."""
    for op_name in ELEMENTWISE:
        op = ops.OPS[op_name]
        for text in op_programs(op):
            _, code, function = loaded(text, "python", mode, workdir)
            for sample in op.samples:
                try:
                    ones = [1.0] * len(sample)
                    value, grads, rows = call(function, "python", code, list(sample), ones)
                except (ArithmeticError, ValueError):
                    continue
                returned = [value, *grads, *(x for row in rows for x in row)]
                kinds = {type(x).__name__ for x in returned}
                assert kinds == {"float"}, (text, mode, sample, returned)


def test_registry_samples_include_kinks() -> None:
    """The conventions at kinks are only checked if the samples sit on them."""
    kinks = {name for name, op in ops.OPS.items() for s in op.samples if is_kink(op, s)}
    piecewise = {name for name, op in ops.OPS.items() if op.elementwise and op.branch}
    assert piecewise and kinks == piecewise


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize(
    ("text", "point", "grads"),
    [
        ("relu(a)", {"a": 0.0}, [0.0]),
        ("abs(a)", {"a": 0.0}, [0.0]),
        ("max(a, b)", {"a": 1.0, "b": 1.0}, [0.5, 0.5]),
        ("min(a, b)", {"a": -2.0, "b": -2.0}, [0.5, 0.5]),
        ("max(a, b)", {"a": 3.0, "b": 1.0}, [1.0, 0.0]),
        ("min(a, b)", {"a": 3.0, "b": 1.0}, [0.0, 1.0]),
    ],
)
def test_kink_conventions(
    text: str, point: dict[str, float], grads: list[float], target: str, mode: str, workdir: str
) -> None:
    """relu'(0) = 0, abs'(0) = 0 and ties share ½, exactly, as the engine says."""
    graph, code, function = loaded(text, target, mode, workdir)
    want_value, want, _ = generated.reference(graph, point, "reverse", list(point))
    assert [float(w) for w in want] == grads  # the engine's own convention
    direction = [1.0] + [0.0] * (len(point) - 1)
    value, got, _ = call(function, target, code, list(point.values()), direction)
    assert float(numbers(value)) == float(want_value)
    if mode == "reverse":
        assert [float(numbers(g)) for g in got] == grads
    else:
        assert float(numbers(got[0])) == grads[0]


@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("op_name", ELEMENTWISE)
def test_elementwise_op_on_arrays_of_its_samples(
    op_name: str, target: str, mode: str, workdir: str
) -> None:
    """All samples at once as arrays (kinks included), then the two operands broadcast
    against each other."""
    op = ops.OPS[op_name]
    columns = np.array(op.samples, dtype=np.float64).T
    rng = np.random.default_rng(1)
    for text in op_programs(op):
        graph, code, function = loaded(text, target, mode, workdir)
        point = dict(zip(LETTERS[: op.arity], columns, strict=True))
        check_point(function, target, graph, code, point, rng)
        if op.arity == 2:
            crossed = {"a": columns[0][:, None], "b": columns[1]}
            wgraph, wcode, wfunction = loaded(f"sum({text})", target, mode, workdir)
            check_point(wfunction, target, wgraph, wcode, crossed, rng)


EDGE_PROGRAMS = [
    "x + 5e-324 * y",
    "1e16 * x + 123456789012345678 * y",
    "0.1 * x + pi * e - y / 3",
    "-x ** 2 + (-y) ** 3",
    "x ** 2 ** 3 / 100 + y",
    "x - -y",
    "2 ** x + x ** 0.5 + y ** -1",
    "max(x, x) + min(y, -y) + abs(-0.0 * x)",
    "x * 0 + 1 + y",
    "q = x; q = q * 2; q = q * q + q; q / y",
    "x = x * 2; x * y",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("text", EDGE_PROGRAMS)
def test_constants_precedence_and_reassignment(
    text: str, target: str, mode: str, workdir: str
) -> None:
    """Literals that must read back exactly, operators whose precedence the printers must
    keep, names assigned more than once."""
    graph, code, function = loaded(text, target, mode, workdir)
    rng = np.random.default_rng(16)
    for point in ({"x": 1.5, "y": 0.75}, {"x": 1.0, "y": 1.0}):
        check_point(function, target, graph, code, {v: point[v] for v in code.variables}, rng)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("text", ["q = x; 5", "2*3", "q = y*2; x*x", "x"])
def test_outputs_that_do_not_depend_on_every_variable(
    text: str, target: str, mode: str, workdir: str
) -> None:
    """A constant output, a variable the output never reaches, the output a variable
    itself: the derivatives that vanish are zeros of the right kind, and the code runs."""
    graph, code, function = loaded(text, target, mode, workdir)
    point = {v: 0.5 for v in code.variables}
    check_point(function, target, graph, code, point, np.random.default_rng(17))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_wrt_a_subset_in_every_mode(target: str, mode: str, workdir: str) -> None:
    graph, code, function = loaded("(x+y)*z + sin(y*z)", target, mode, workdir, wrt=["z", "x"])
    assert code.params == ["x", "y", "z"]
    assert code.wrt == ["x", "z"]  # in order of first appearance, whatever --wrt's order
    point = {"x": 0.5, "y": -1.0, "z": 2.0}
    check_point(function, target, graph, code, point, np.random.default_rng(18))


# ---- 2. array ops --------------------------------------------------------------------------


def array_cases() -> list[Any]:
    cases = []
    for name in ARRAY_OPS:
        op = ops.OPS[name]
        for k, (shapes, attrs) in enumerate(op.array_samples):
            cases.append(pytest.param(name, shapes, dict(attrs), id=f"{name}-{k}"))
    return cases


def negative_step(attrs: dict[str, Any]) -> bool:
    return any(
        isinstance(i, tuple) and i[3] is not None and i[3] < 0 for i in attrs.get("index", ())
    )


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize(("op_name", "shapes", "attrs"), array_cases())
def test_array_op_agrees_with_engine(
    op_name: str,
    shapes: tuple[tuple[int, ...], ...],
    attrs: dict[str, Any],
    target: str,
    mode: str,
    workdir: str,
) -> None:
    """Each array sample of the registry, alone (an array output: its whole tangent) and
    weighted by a random array w (a scalar output, an upstream gradient that is not 1)."""
    op = ops.OPS[op_name]
    rng = np.random.default_rng(2)
    point = {n: rng.normal(size=s) for n, s in zip("AB", shapes, strict=False)}
    for inner in op_programs(op, attrs):
        graph = parse_program(inner).graph
        assert any(n.op == op_name for n in graph.nodes), inner
        out = generated.reference(graph, point, "reverse", list(point))[0]
        weighted = {**point, "w": rng.normal(size=np.shape(out))}
        for text, at in ((inner, point), (f"sum(w * {inner})", weighted)):
            if target == "torch" and negative_step(attrs):
                with pytest.raises(bp.InputError, match="negative step"):
                    generate(text, target, mode)
                continue
            graph, code, function = loaded(text, target, mode, workdir)
            check_point(function, target, graph, code, at, rng)


BROADCASTS = [
    ("sum(W*b)", {"W": (2, 3), "b": (3,)}),
    ("sum(W*b)", {"W": (2, 3), "b": ()}),
    ("sum(W*b)", {"W": (2, 3), "b": (2, 1)}),
    ("sum(W*b)", {"W": (2, 3), "b": (1, 3)}),
    ("sum(W + b) + sum(W - b)", {"W": (2, 3), "b": (3,)}),
    ("sum(W / b)", {"W": (2, 3), "b": (3,)}),
    ("sum(tanh(W @ x + b))", {"W": (2, 3), "x": (3,), "b": (2,)}),
    ("sum(max(W, b) * min(W, b))", {"W": (2, 3), "b": ()}),
    ("sum(c * x) + c", {"c": (), "x": (4,)}),
    ("mean(relu(A) * B)", {"A": (3, 1), "B": (1, 4)}),
]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize(("text", "shapes"), BROADCASTS)
def test_broadcasting_programs(
    text: str, shapes: dict[str, tuple[int, ...]], target: str, mode: str, workdir: str
) -> None:
    rng = np.random.default_rng(3)
    graph, code, function = loaded(text, target, mode, workdir)
    for _ in range(2):
        point = {n: rng.uniform(0.5, 2.0, s) * rng.choice([-1, 1], s) for n, s in shapes.items()}
        point = {n: float(v) if np.ndim(v) == 0 else v for n, v in point.items()}
        check_point(function, target, graph, code, point, rng)


MATMULS = [((2, 3), (3, 4)), ((2, 3), (3,)), ((3,), (3, 2)), ((3,), (3,)), ((1, 3), (3, 1))]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize(("a", "b"), MATMULS)
def test_matmul_of_every_rank(
    a: tuple[int, ...], b: tuple[int, ...], target: str, mode: str, workdir: str
) -> None:
    rng = np.random.default_rng(4)
    point = {"A": rng.normal(size=a), "B": rng.normal(size=b)}
    out = np.matmul(point["A"], point["B"])
    for text, at in (
        ("A @ B", point),
        ("sum(w * (A @ B))", {**point, "w": rng.normal(size=np.shape(out))}),
        ("sum(sin(A @ B) * (A @ B))", point),
    ):
        graph, code, function = loaded(text, target, mode, workdir)
        check_point(function, target, graph, code, at, rng)


INDEXING = [
    ("x[1]", (4,)),
    ("x[-1]", (4,)),
    ("x[1:3]", (5,)),
    ("x[::2]", (5,)),
    ("x[::-1]", (4,)),
    ("x[3:0:-2]", (5,)),
    ("A[-1, 0]", (2, 3)),
    ("A[0]", (2, 3)),
    ("A[:, 1]", (2, 3)),
    ("A[1:, :2]", (3, 3)),
    ("A[::-1, 1]", (2, 3)),
    ("A[-1, ::-1]", (2, 3)),
    ("T(A)", (2, 3)),
    ("A.T", (3,)),
    ("reshape(A, 3, 2)", (2, 3)),
    ("reshape(A, -1)", (2, 3)),
    ("reshape(x, 2, 2)", (4,)),
]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize(("text", "shape"), INDEXING)
def test_indexing_and_rearranging(
    text: str, shape: tuple[int, ...], target: str, mode: str, workdir: str
) -> None:
    graph = parse_program(text).graph
    (name,) = graph.variables
    backwards = any(n.op == "getitem" and negative_step(n.params) for n in graph.nodes)
    rng = np.random.default_rng(5)
    point = {name: rng.normal(size=shape)}
    weighted = f"sum(exp({text}) * {text}) + sum({text})"  # a fan-out through the index
    for program in (text, weighted):
        if target == "torch" and backwards:
            with pytest.raises(bp.InputError, match="negative step"):
                generate(program, target, mode)
            continue
        graph, code, function = loaded(program, target, mode, workdir)
        check_point(function, target, graph, code, point, rng)


def test_torch_refuses_negative_steps_on_the_command_line() -> None:
    r = run("codegen", "sum(x[::-1] * x)", "--target", "torch")
    assert r.code == 2
    assert r.stdout == ""
    first, *rest = r.stderr.strip().splitlines()
    assert first.startswith("error: ") and "negative step" in first
    assert all(line.startswith("hint: ") for line in rest)
    assert "Traceback" not in r.stderr
    assert run("codegen", "sum(x[::-1] * x)", "--target", "numpy").code == 0


REDUCTIONS = [
    "sum(A)", "mean(A)", "max(A)", "min(A)",
    "sum(A, axis=0)", "sum(A, axis=1)", "mean(A, axis=0)", "mean(A, axis=-1)",
    "max(A, axis=0)", "max(A, axis=1)", "min(A, axis=0)", "min(A, axis=-1)",
    "sum(max(A, axis=1) * min(A, axis=0)[:2])",
]  # fmt: skip
TIED = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])  # ties along both axes and overall


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize("text", REDUCTIONS)
def test_reductions_with_axes_and_ties(text: str, target: str, mode: str, workdir: str) -> None:
    rng = np.random.default_rng(6)
    graph, code, function = loaded(text, target, mode, workdir)
    check_point(function, target, graph, code, {"A": TIED}, rng)
    check_point(function, target, graph, code, {"A": -TIED}, rng)
    check_point(function, target, graph, code, {"A": rng.normal(size=(2, 3))}, rng)


@pytest.mark.parametrize("target", ARRAY_TARGETS)
def test_max_tie_shares_gradient_evenly(target: str, workdir: str) -> None:
    _, code, function = loaded("max(x)", target, "reverse", workdir)
    _, grads, _ = call(function, target, code, [np.array([1.0, 4.0, 4.0, 4.0])], [])
    third = 1 / 3
    np.testing.assert_allclose(numbers(grads[0]), [0.0, third, third, third], rtol=1e-15)


# ---- 3. the examples and the model specs ----------------------------------------------------


def example_values(path: Path) -> dict[str, Any]:
    """The NAME=VALUE pairs of an example's `# run:` line."""
    for line in path.read_text().splitlines():
        if line.startswith("# run:"):
            pairs = re.findall(r"(\w+)=(\S+)", line)
            return {k: float(v) if not v.startswith("[") else eval_list(v) for k, v in pairs}
    return {}


def eval_list(text: str) -> Any:
    return np.array(ast.literal_eval(text), dtype=np.float64)


def applicable(program: Any, target: str, mode: str) -> bool:
    arrays = cg.is_array_program(program.graph)
    return not (arrays and (target in ("python", "c") or mode == "hessian"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


def target_modes() -> list[Any]:
    """Every target in reverse mode; forward mode and the Hessian in the scalar targets
    and numpy (torch's and jax's are run op by op above)."""
    pairs = [(t, "reverse") for t in printers.TARGETS]
    pairs += [(t, m) for t in ("python", "numpy", "c") for m in ("forward", "hessian")]
    return [pytest.param(t, m, marks=needs_cc) if t == "c" else (t, m) for t, m in pairs]


@pytest.mark.parametrize(("target", "mode"), target_modes())
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_check(path: Path, target: str, mode: str) -> None:
    program = parse_program(path.read_text())
    if not applicable(program, target, mode):
        pytest.skip("an array program: numpy, torch and jax only")
    values = example_values(path)
    source = bp.codegen(
        path,
        target=target,
        forward_mode=mode == "forward",
        hessian=mode == "hessian",
        check=True,
        values=values,
    )
    assert cg.default_name(mode) in source


@pytest.mark.parametrize(("target", "mode"), target_modes())
@pytest.mark.parametrize("spec", MODELS)
def test_model_specs_check(spec: str, target: str, mode: str) -> None:
    source = bp.codegen(
        spec, target=target, forward_mode=mode == "forward", hessian=mode == "hessian", check=True
    )
    assert source.strip()


@pytest.mark.parametrize("target", TARGETS)
def test_examples_check_on_the_command_line(target: str) -> None:
    path = ROOT / "examples" / "chain_rule_network.bp"
    r = run("codegen", "--file", str(path), "--target", target, "--check")
    assert r.code == 0, r.stderr
    assert re.search(rf"^check: the {target} code agrees with the engine", r.stderr, re.M)


# ---- 4. random programs ----------------------------------------------------------------------

NESTABLE = [ops.OPS[n] for n in ELEMENTWISE if ops.OPS[n].symbol != "="]
CONSTANTS = ["2", "0.5", "3", "1.5", "(-1)", "(-0.5)"]


def expressions(names: list[str]) -> st.SearchStrategy[str]:
    leaves = st.one_of(st.sampled_from(names), st.sampled_from(CONSTANTS))

    def grow(kids: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        def applied(op: ops.Op) -> st.SearchStrategy[str]:
            args = st.lists(kids, min_size=op.arity, max_size=op.arity)
            return args.flatmap(lambda a: st.sampled_from(spellings(op, a)))

        return st.sampled_from(NESTABLE).flatmap(applied)

    return st.recursive(leaves, grow, max_leaves=6)


@st.composite
def programs(draw: st.DrawFn) -> str:
    """A few statements over x, y, z: assignments, copies, reassignments (a = a * 2),
    squares that reuse a name (a = a*a + a), then the output."""
    names = ["x", "y", "z"]
    lines = []
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["a", "b", "x"]))
        kind = draw(st.sampled_from(["expression", "copy", "scale", "square"]))
        if kind == "copy":
            lines.append(f"{target} = {draw(st.sampled_from(names))}")
        elif kind == "scale" and target in names:
            lines.append(f"{target} = {target} * 2")
        elif kind == "square" and target in names:
            lines.append(f"{target} = {target}*{target} + {target}")
        else:
            lines.append(f"{target} = {draw(expressions(names))}")
        if target not in names:
            names.append(target)
    out = draw(expressions(names))
    if draw(st.booleans()):
        out = f"{out} * {out} + {draw(st.sampled_from(names))}"  # fan-out of the whole
    return "\n".join([*lines, out])


COORDINATE = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, -2.0]),
    st.floats(-3, 3, allow_nan=False, allow_infinity=False),
)
POINTS = st.lists(st.tuples(COORDINATE, COORDINATE, COORDINATE), min_size=3, max_size=3)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parsed(text: str) -> Any:
    """The program, or None where the parser refuses it (a constant part that is not
    finite, such as log(-1))."""
    try:
        return parse_program(text)
    except bp.BackpropError:
        return None


def random_program_agrees(
    text: str, points: list[tuple[float, ...]], target: str, workdir: str
) -> None:
    program = parsed(text)
    if program is None or not program.graph.variables:
        return
    graph, source, code = generate(text, target, "reverse")
    function = generated.load(source, target, code.name, workdir)
    rng = np.random.default_rng(7)
    for coords in points:
        point = {v: c for v, c in zip("xyz", coords, strict=True) if v in graph.variables}
        check_point(function, target, graph, code, point, rng, atol=1e-9, finite_only=True)


@pytest.mark.parametrize("target", [t for t in TARGETS if t in ("python", "numpy")])
@PROPERTY
@given(text=programs(), points=POINTS)
@example(text="sqrt(relu(x)) / tan(y)", points=[(-1.0, 2.0, 0.0)] * 3)
@example(text="x ** relu(x) + y", points=[(-0.5, 0.0, 0.0)] * 3)
def test_random_programs_agree_with_engine(
    target: str, text: str, points: list[tuple[float, ...]], workdir: str
) -> None:
    random_program_agrees(text, points, target, workdir)


@needs_cc
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=programs(), points=POINTS)
def test_random_programs_agree_with_engine_in_c(
    text: str, points: list[tuple[float, ...]], workdir: str
) -> None:
    random_program_agrees(text, points, "c", workdir)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("text", "x"), [("sqrt(relu(x))", -1.0), ("x ** relu(x)", -0.5), ("log(relu(x) + 1) * x", -2.0)]
)
def test_a_kink_masks_an_infinite_part_as_the_engine_does(
    text: str, x: float, target: str, workdir: str
) -> None:
    """relu'(a) = 0 for a <= 0 masks what flows into it, inf and nan included (the engine's
    and torch's threshold backward): the gradient is finite, and so must the code's be; the
    python target's math raises on the infinite part instead (documented)."""
    graph, code, function = loaded(text, target, "reverse", workdir)
    want_value, want, _ = generated.reference(graph, {"x": x}, "reverse", ["x"])
    assert finite(want_value, want)
    checked = check_point(function, target, graph, code, {"x": x}, np.random.default_rng(15))
    assert checked or target == "python"


@pytest.mark.parametrize("target", PYTHON_FAMILY)
@PROPERTY
@given(text=programs(), coords=st.tuples(COORDINATE, COORDINATE, COORDINATE))
def test_python_code_raises_only_where_engine_is_not_finite(
    target: str, text: str, coords: tuple[float, ...], workdir: str
) -> None:
    """Python's math may raise (OverflowError, ValueError, ZeroDivisionError) where the
    engine gives inf or nan, never elsewhere; the array libraries never raise."""
    program = parsed(text)
    if program is None or not program.graph.variables:
        return
    graph, source, code = generate(text, target, "reverse")
    function = generated.load(source, target, code.name, workdir)
    point = {v: c for v, c in zip("xyz", coords, strict=True) if v in graph.variables}
    want = generated.reference(graph, point, "reverse", wrt_names(code))
    try:
        call(function, target, code, [point[v] for v in code.variables], [])
    except (ArithmeticError, ValueError) as exc:
        assert target == "python", exc
        masked = not generated.intermediates_finite(graph, point)  # a kink masks an inf
        assert masked or not finite(want[0], want[1]), f"{text!r} at {point}: {exc!r}"


# ---- 5. the text: formatted, no undefined names, one library ---------------------------------

FORMAT_PROGRAMS = [
    "(x+y)*z",
    "q = x + y; f = q * z",
    "x*x + x",
    "1/(1+exp(-(w0*x0+w1*x1+w2)))",
    "relu(x) * max(x, y) + abs(y) - min(x, 2) + softplus(x*y)",
    "sigmoid(x) ** 2 + log(x, 2) + sqrt(y) + tanh(x) * tan(y) + cos(x) / sin(y)",
    "a = x; a = a * 2; a = a*a + a; pow(a, y) + (-a) + (+y)",
    "very_long_variable_name_number_one * very_long_variable_name_number_two"
    " + sin(very_long_variable_name_number_one) * exp(very_long_variable_name_number_two)",
]
ARRAY_FORMAT_PROGRAMS = [
    "sum(tanh(W @ x + b))",
    "sum(W*b)",
    "mean(max(A, axis=0) * min(A, axis=1)[0])",
    "sum(reshape(A, 3, 2).T @ A[0] + A[1, ::2][0])",
]


def all_sources() -> list[tuple[str, str, str, str]]:
    found = []
    for target in PYTHON_FAMILY:
        for text in FORMAT_PROGRAMS:
            for mode in MODES:
                found.append((target, mode, text, generate(text, target, mode)[1]))
        if target != "python":
            for text in ARRAY_FORMAT_PROGRAMS:
                for mode in ("reverse", "forward"):
                    found.append((target, mode, text, generate(text, target, mode)[1]))
    for spec in MODELS:
        found.append(("python", "reverse", spec, bp.codegen(spec)))
    return found


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    folder = tmp_path_factory.mktemp("formatted")
    found = all_sources()
    for k, (target, mode, _, source) in enumerate(found):
        (folder / f"generated_{k}_{target}_{mode}.py").write_text(source)
    return folder, found


def test_generated_python_is_ruff_formatted(sources: tuple[Path, list[Any]]) -> None:
    folder, _ = sources
    done = ruff("format", "--check", "--isolated", "--no-cache", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_python_has_no_undefined_names(sources: tuple[Path, list[Any]]) -> None:
    folder, _ = sources
    done = ruff(
        "check", "--isolated", "--no-cache", "--select", "F,E9", "--ignore", "F401", str(folder)
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_generated_python_imports_nothing_unused(sources: tuple[Path, list[Any]]) -> None:
    """`ruff check --select F` is clean: no import the code does not use (the python
    target of a program without a math function included)."""
    folder, _ = sources
    done = ruff("check", "--isolated", "--no-cache", "--select", "F401", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr


LIBRARIES = {"python": {"math"}, "numpy": {"numpy"}, "torch": {"torch"}, "jax": {"jax"}}


def test_each_target_imports_only_its_library(sources: tuple[Path, list[Any]]) -> None:
    _, found = sources
    for target, mode, text, source in found:
        tree = ast.parse(source)
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert imported <= LIBRARIES[target], (target, mode, text, imported)  # math only if used
        # and nothing reaches for the interpreter's machinery
        called = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        assert not called & {"eval", "exec", "open", "__import__", "compile", "getattr"}


@needs_cc
@pytest.mark.parametrize("mode", MODES)
def test_c_includes_only_math_h(mode: str) -> None:
    for text in FORMAT_PROGRAMS:
        source = generate(text, "c", mode)[1]
        directives = [ln.strip() for ln in source.splitlines() if ln.lstrip().startswith("#")]
        assert directives == ["#include <math.h>"], (text, directives)


# ---- 6. names --------------------------------------------------------------------------------

NAME_PROGRAMS = [
    "math*np + torch - jnp + float*grad",
    "jax * abs(print) + len*range - None_ * self",
    "int + double*auto - register*static + char*void",
    "hess*main + size_t*errno - NULL*signbit + fabs*fmax",
    "d_x*x + d_x*d_x + t_x",
    "f_and_grad * f + f_and_tangent * hvp",
    "q = x + y; q_2 = q * x; d_q = q_2 * q; d_q + t1",
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("text", NAME_PROGRAMS)
def test_variables_named_like_library_words_run_and_agree(
    text: str, target: str, mode: str, workdir: str
) -> None:
    graph, code, function = loaded(text, target, mode, workdir)
    assert code.variables == [n.name for n in graph.nodes if n.op == "input"]
    assert len(set(code.params)) == len(code.params)
    reserved = printers.reserved(target)
    assert not set(code.params) & reserved
    rng = np.random.default_rng(8)
    for _ in range(2):
        point = {v: float(rng.uniform(0.5, 1.5)) for v in code.variables}
        check_point(function, target, graph, code, point, rng)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("text", ["x * value * value + x", "x * h_x * h_x + x * x * h_x"])
def test_variables_named_like_the_hessian_wrappers_locals(
    text: str, target: str, mode: str, workdir: str
) -> None:
    """The Hessian's public function has locals of its own (the value, the rows h_v): a
    variable of the same name must not be overwritten before the next row is computed."""
    graph, code, function = loaded(text, target, mode, workdir)
    rng = np.random.default_rng(9)
    for _ in range(2):
        point = {v: float(rng.uniform(0.5, 1.5)) for v in code.variables}
        check_point(function, target, graph, code, point, rng)


C_MACROS = ["HUGE_VAL", "FP_NAN", "MATH_ERRNO", "NAN", "floor"]


@needs_cc
@pytest.mark.parametrize("variable", C_MACROS)
def test_c_variables_named_like_math_h_words(variable: str) -> None:
    """<math.h> defines macros (HUGE_VAL, FP_NAN, ...): a variable of that name is renamed,
    or the C code compiles to another signature; run in a fresh interpreter, since a wrong
    signature called through ctypes can take the process down."""
    program = f"{variable} * {variable} + x"
    done = subprocess.run(
        [sys.executable, "-m", "backprop_cli", "codegen", program, "--target", "c", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert "check: the c code agrees" in done.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_adjoint_name_next_to_a_variable_named_like_it(target: str, workdir: str) -> None:
    _, code, function = loaded("x*d_x + d_x*d_x", target, "reverse", workdir)
    assert code.params == ["x", "d_x"]
    assert code.grads[0].value not in ("x", "d_x") and code.grads[1].value not in ("x", "d_x")
    value, grads, _ = call(function, target, code, [2.0, 3.0], [])
    # f = x*d + d*d: df/dx = d = 3, df/dd = x + 2d = 8
    assert float(numbers(value)) == 15.0
    assert [float(numbers(g)) for g in grads] == [3.0, 8.0]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_function_name_option(target: str, mode: str, workdir: str) -> None:
    text = "q = x*y; sin(q) + q*x"
    graph, code, function = loaded(text, target, mode, workdir, name="my_fn")
    assert code.name == "my_fn"
    rng = np.random.default_rng(10)
    check_point(function, target, graph, code, {"x": 0.7, "y": -1.3}, rng)
    source = generate(text, target, mode, name="my_fn")[1]
    assert cg.default_name(mode) not in source


@pytest.mark.parametrize(
    ("target", "name"),
    [(t, n) for t in ("python", "c") for n in ("1x", "class", "x", "y", "my-fn", "", "é")]
    + [("python", "math"), ("python", "abs"), ("c", "double"), ("c", "return")],
)
def test_invalid_function_names_are_refused(target: str, name: str) -> None:
    r = run("codegen", "x*y + x", "--target", target, "--name", name)
    assert r.code == 2, (name, r.stdout[:200])
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr


HELPER_PROGRAMS = [
    ("numpy", "_unbroadcast", "sum(W*b)"),
    ("jax", "_unbroadcast", "sum(W*b)"),
    ("torch", "_unbroadcast", "sum(W*b)"),
    ("numpy", "_share", "max(W) + sum(W*b)"),
    ("torch", "_transpose", "sum(T(W) * b[0])"),
    ("numpy", "_matmul_grad_a", "sum(W @ b)"),
]


@pytest.mark.parametrize(("target", "name", "text"), HELPER_PROGRAMS)
def test_function_named_like_a_helper(target: str, name: str, text: str) -> None:
    """The code's own helpers (_unbroadcast, _share, ...) are not shadowed by --name: the
    name is refused (exit 2), or the code still agrees with the engine."""
    values = ["W=[[1,2,3],[4,5,6]]", "b=[1,2,3]"]
    r = run("codegen", text, *values, "--target", target, "--name", name, "--check")
    assert r.code in (0, 2), r.stderr
    if r.code == 0:
        assert "check: " in r.stderr
    else:
        assert r.stderr.startswith("error: ")


@needs_cc
@pytest.mark.parametrize("name", ["floor", "acos", "round", "HUGE_VAL", "FP_NAN"])
def test_c_function_named_like_a_math_h_word(name: str) -> None:
    """A --name that <math.h> declares is refused, or the code compiles and agrees."""
    r = run("codegen", "x*y + x", "--target", "c", "--name", name, "--check")
    assert r.code in (0, 2), r.stderr
    if r.code == 2:
        assert "did not compile" not in r.stderr, r.stderr
        assert r.stderr.startswith("error: ")


PAYLOAD = '# """ ; system("rm") */ </script>'


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", TARGETS)
def test_comments_of_the_program_never_reach_the_code(target: str, mode: str, workdir: str) -> None:
    text = f"q = x + y  {PAYLOAD}\n{PAYLOAD}\nf = q * z {PAYLOAD}"
    graph, source, code = generate(text, target, mode)
    for piece in ("system", '"rm"', "</script>", "script", PAYLOAD):
        assert piece not in source
    plain = generate("q = x + y\nf = q * z", target, mode)[1]
    assert source == plain
    if target == "c":
        assert source.count("*/") == 1  # the header's own
    else:
        ast.parse(source)
    function = generated.load(source, target, code.name, workdir)
    point = {"x": 1.0, "y": 2.0, "z": -3.0}
    check_point(function, target, graph, code, point, np.random.default_rng(11))


# ---- 7. readable code ----------------------------------------------------------------------


def function_body(source: str, name: str = "f_and_grad") -> list[str]:
    lines = source.splitlines()
    start = next(k for k, ln in enumerate(lines) if ln.startswith(f"def {name}("))
    end = next(k for k in range(start, len(lines)) if lines[k].strip().startswith("return "))
    return lines[start : end + 1]


def test_readable_python_for_the_textbook_example() -> None:
    source = bp.codegen("(x+y)*z")
    assert "def f_and_grad(x, y, z):" in source
    assert source.rstrip().endswith("return f, (d_x, d_y, d_z)")
    named = bp.codegen("q = x + y; f = q * z")
    body = function_body(named)
    text = "\n".join(body)
    assert re.search(r"^    q = x \+ y$", text, re.M)
    assert re.search(r"^    f = q \* z$", text, re.M)
    assert re.search(r"^    d_q = d_f \* z  # d/dq \(q\*z\) = z$", text, re.M), text
    assert re.search(r"^    d_z = d_f \* q  # d/dz \(q\*z\) = q$", text, re.M), text
    assert text.index("# forward") < text.index("q = x + y") < text.index("# backward")


def backward_statements(body: list[str]) -> list[str]:
    start = next(k for k, ln in enumerate(body) if ln.strip() == "# backward")
    return [ln for ln in body[start + 1 :] if not ln.strip().startswith(("return", "#"))]


@pytest.mark.parametrize(
    "text",
    ["q = x + y; f = q * z", "x*x + x", "1/(1+exp(-(w0*x0+w1*x1+w2)))", "relu(x)*max(x, y)"],
)
def test_every_backward_statement_has_a_rule_comment(text: str) -> None:
    source = bp.codegen(text)
    lines = function_body(source)
    statements = backward_statements(lines)
    assert statements
    for k, line in enumerate(lines):
        if line in statements:
            inline = "  # " in line
            above = lines[k - 1].strip().startswith("# d")
            assert inline or above, line
            note = line.split("  # ", 1)[1] if inline else lines[k - 1].strip()[2:]
            assert note.startswith("d/d") or re.match(r"d\w+/d\w+ = 1", note), line


def test_fan_out_accumulates_with_plus_equals() -> None:
    body = function_body(bp.codegen("x*x + x"))
    accumulated = [ln for ln in body if re.match(r"^    d_x \+= ", ln)]
    assert len(accumulated) == 2
    assert sum(1 for ln in body if re.match(r"^    d_x = ", ln)) == 1


def chain(n: int) -> str:
    return "\n".join(["a1 = sin(x)"] + [f"a{k} = sin(a{k - 1})" for k in range(2, n + 1)])


def reuse(n: int) -> str:
    """Each layer uses the one before three times: written out, its derivative doubles in
    size with every layer."""
    layers = [f"a{k} = sin(a{k - 1}*a{k - 1} + a{k - 1})" for k in range(2, n + 1)]
    return "\n".join(["a1 = x*x + x", *layers])


@pytest.mark.parametrize("target", TARGETS)
def test_code_size_is_linear_in_the_graph(target: str, workdir: str) -> None:
    for build, per_layer in ((chain, 3), (reuse, 9)):
        small = generate(build(50), target)[1].count("\n")
        big = generate(build(200), target)[1].count("\n")
        assert big <= per_layer * 200 + 60, (build.__name__, big)
        assert big - small <= per_layer * 150, (build.__name__, small, big)
    graph, code, function = loaded(reuse(60), target, "reverse", workdir)
    check_point(function, target, graph, code, {"x": 0.3}, np.random.default_rng(12))
    graph, code, function = loaded(chain(200), target, "reverse", workdir)
    check_point(function, target, graph, code, {"x": 0.9}, np.random.default_rng(12))


def test_deep_reuse_does_not_explode_in_any_mode() -> None:
    for mode in MODES:
        source = generate(reuse(80), "python", mode)[1]
        assert len(source) < 80 * 2000, (mode, len(source))
        assert max(len(ln) for ln in source.splitlines()) <= 200, mode


# ---- 8. the command line ---------------------------------------------------------------------


def assert_bad_input(r: Any, *pieces: str) -> None:
    assert r.code == 2, (r.code, r.stdout[:300], r.stderr)
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    first, *rest = r.stderr.strip().splitlines()
    assert first.startswith("error: "), r.stderr
    assert all(line.startswith("hint: ") for line in rest), r.stderr
    for piece in pieces:
        assert piece in r.stderr, (piece, r.stderr)


def test_cli_unknown_target() -> None:
    assert_bad_input(run("codegen", "x*y", "--target", "fortran"), "fortran")


def test_cli_python_target_on_an_array_program_hints_at_array_targets() -> None:
    r = run("codegen", "sum(W @ x)", "--target", "python")
    assert_bad_input(r, "arrays", "numpy")
    assert_bad_input(run("codegen", "sum(W @ x)", "--target", "c"), "arrays")


def test_cli_check_on_an_array_program_needs_values() -> None:
    assert_bad_input(run("codegen", "sum(W @ x)", "--target", "numpy", "--check"), "W")


def test_cli_forward_mode_and_hessian_together() -> None:
    assert_bad_input(run("codegen", "x*y", "--forward-mode", "--hessian"))


def test_cli_hessian_of_an_array_program() -> None:
    r = run("codegen", "sum(W*b)", "W=[[1,2],[3,4]]", "b=[1,2]", "--target", "numpy", "--hessian")
    assert_bad_input(r)


def test_cli_wrt_names_a_missing_variable() -> None:
    assert_bad_input(run("codegen", "x*y", "--wrt", "z"), "z")


def test_cli_bad_program() -> None:
    assert run("codegen", "x*(y").code == 2


@needs_cc
def test_cli_output_file_picks_the_c_target(tmp_path: Path) -> None:
    path = tmp_path / "f.c"
    r = run("codegen", "(x+y)*z", "-o", str(path))
    assert r.code == 0, r.stderr
    assert r.stdout == ""
    source = path.read_text()
    assert "#include <math.h>" in source
    assert "double f_and_grad(double x, double y, double z, double grad[3])" in source
    function = generated.load(source, "c", "f_and_grad", str(tmp_path))
    value, grad = function(-2.0, 5.0, -4.0, out=3)
    assert value == -12.0 and grad == [-4.0, -4.0, 3.0]


def test_cli_output_file_python(tmp_path: Path) -> None:
    path = tmp_path / "grad.py"
    r = run("codegen", "(x+y)*z", "--target", "numpy", "-o", str(path))
    assert r.code == 0, r.stderr
    assert r.stdout == ""
    assert "import numpy as np" in path.read_text()
    function = generated.load(path.read_text(), "numpy", "f_and_grad", str(tmp_path))
    value, grads = function(-2.0, 5.0, -4.0)
    assert float(value) == -12.0 and [float(g) for g in grads] == [-4.0, -4.0, 3.0]


def test_cli_output_file_with_an_unknown_extension(tmp_path: Path) -> None:
    assert_bad_input(run("codegen", "x*y", "-o", str(tmp_path / "f.xyz")), "--target")
    assert not (tmp_path / "f.xyz").exists()


def test_cli_prints_the_code_on_stdout() -> None:
    r = run("codegen", "(x+y)*z")
    assert r.code == 0
    assert r.stdout == bp.codegen("(x+y)*z")
    assert r.stderr == ""


@pytest.mark.parametrize("target", TARGETS)
def test_cli_check_reports_on_stderr(target: str) -> None:
    r = run("codegen", "(x+y)*z", "x=-2", "y=5", "z=-4", "--target", target, "--check")
    assert r.code == 0, r.stderr
    assert r.stdout == bp.codegen("(x+y)*z", target=target)
    assert re.fullmatch(
        rf"check: the {target} code agrees with the engine at 20 points(?: \(\d+ skipped: not "
        r"finite\))?; largest relative difference \S+\n",
        r.stderr,
    ), r.stderr


@pytest.mark.parametrize("target", ARRAY_TARGETS)
def test_cli_check_on_an_array_program_with_values(target: str) -> None:
    values = ["W=[[1,2,3],[4,5,6]]", "x=[1,-1,0.5]", "b=[0.1,-0.2]"]
    for mode in ([], ["--forward-mode"]):
        r = run("codegen", "sum(tanh(W @ x + b))", *values, "--target", target, "--check", *mode)
        assert r.code == 0, r.stderr
        assert "check: " in r.stderr


@pytest.mark.parametrize("target", ARRAY_TARGETS)
@pytest.mark.parametrize("text", ["T(W)", "W @ x", "tanh(W) * 2"])
def test_cli_forward_mode_check_with_an_array_output(text: str, target: str) -> None:
    """An output that is an array has an array tangent: the check compares it element by
    element rather than calling it a disagreement."""
    values = ["W=[[1,2],[3,4]]", "x=[1,-1]"]
    r = run("codegen", text, *values, "--target", target, "--forward-mode", "--check")
    assert r.code == 0, r.stderr


def test_cli_check_finds_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 1 when the code disagrees: simulated by a printer that seeds the backward pass
    with 2 instead of 1."""
    monkeypatch.setattr(printers.Printer, "fn_ones_like", lambda self, a: ("2.0", printers.ATOM))
    r = run("codegen", "(x+y)*z", "--check")
    assert r.code == 1, r.stderr
    assert r.stderr.startswith("check failed: ")
    with pytest.raises(bp.BackpropError, match="disagrees"):
        bp.codegen("(x+y)*z", check=True)


def test_cli_wrt_subset() -> None:
    r = run("codegen", "(x+y)*z", "--wrt", "z,x", "--check")
    assert r.code == 0, r.stderr
    assert r.stdout.rstrip().endswith("return f, (d_x, d_z)")


# ---- 9. no aliasing through += ---------------------------------------------------------------

ALIASING = [
    "q = y + z; f = q * y + z",
    "q = y + z; r = q; f = r * y + q + z",
    "a = x; b = a; c = b; c * x + b + a",
    "q = x + y; q*q + q + x",
]


@pytest.mark.parametrize("mode", ["reverse", "forward", "hessian"])
@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("text", ALIASING)
def test_no_aliasing_through_accumulation_on_scalars(
    text: str, target: str, mode: str, workdir: str
) -> None:
    graph, code, function = loaded(text, target, mode, workdir)
    rng = np.random.default_rng(13)
    for _ in range(3):
        point = {v: float(rng.uniform(-2, 2)) for v in code.variables}
        check_point(function, target, graph, code, point, rng)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("target", ["numpy", "torch", "jax"])
@pytest.mark.parametrize(
    "text",
    [
        "q = y + z; f = sum(q * y + z)",
        "q = W + b; r = q; sum(r * W) + sum(q) + sum(b)",
        "q = T(W); r = q; sum(r * T(W)) + sum(q.T * W)",
        "q = reshape(W, 6); sum(q * q) + sum(q) + sum(W)",
        "q = W[0]; sum(q * W[1]) + sum(q) + sum(W)",
        "q = sum(W, axis=0); sum(q * b) + sum(q) + sum(W * b)",
    ],
)
def test_no_aliasing_through_accumulation_on_arrays(
    text: str, target: str, mode: str, workdir: str
) -> None:
    rng = np.random.default_rng(14)
    shapes = {"y": (2, 3), "z": (3,), "W": (2, 3), "b": (3,)}
    graph, code, function = loaded(text, target, mode, workdir)
    point = {v: rng.normal(size=shapes[v]) for v in code.variables}
    before = {v: np.copy(a) for v, a in point.items()}
    check_point(function, target, graph, code, point, rng)
    for v in point:  # the caller's arrays are left as they were
        np.testing.assert_array_equal(point[v], before[v])


@pytest.mark.parametrize("target", ["numpy", "torch"])
def test_inputs_are_not_written_to(target: str, workdir: str) -> None:
    """Arrays passed in (float64 already, so not copied on the way in) stay unchanged,
    tensors included."""
    import torch

    text = "q = x; r = q; sum(r * x) + sum(q) + sum(x)"
    _, code, function = loaded(text, target, "reverse", workdir)
    x = np.array([1.0, -2.0, 3.0])
    given = torch.tensor(x) if target == "torch" else x.copy()
    value, grads, _ = call(function, target, code, [given], [])
    np.testing.assert_array_equal(numbers(given), x)
    np.testing.assert_allclose(numbers(grads[0]), 2 * x + 2)
    assert float(numbers(value)) == float(np.sum(x * x) + 2 * np.sum(x))
