"""Generated code, checked rather than trusted: load the source `backprop codegen` printed
(Python modules imported from a temporary file, C compiled by the system's cc and called
through ctypes), run it at points, and compare its value and derivatives with the engine's.
"""

from __future__ import annotations

import ctypes
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core import engine, ops
from ..core.dual import Dual, tangent_of
from ..core.errors import BackpropError
from ..core.graph import Graph

CC_SECONDS = 300
_LIBRARY = {"numpy": "numpy", "torch": "torch", "jax": "jax"}
_counter = itertools.count()


@dataclass
class Agreement:
    """How the generated code compared with the engine."""

    points: int = 0  # points compared
    skipped: int = 0  # points where the engine's numbers are not finite
    raised: int = 0  # python: points where math raised on an inf or nan inside the sweep
    worst: float = 0.0  # the largest relative difference seen
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.points > 0


def load(source: str, target: str, fn_name: str, workdir: str) -> Callable[..., Any]:
    """The generated function, ready to call with numbers (arrays for numpy/torch/jax)."""
    if target == "c":
        return _load_c(source, fn_name, workdir)
    library = _LIBRARY.get(target)
    if library is not None and importlib.util.find_spec(library) is None:
        raise BackpropError(f"cannot run the {target} code: {library} is not installed")
    if target == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # type: ignore[no-untyped-call]  # compare in float64, like the engine
    path = Path(workdir) / f"generated_{next(_counter)}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # our own output: names from the parser's whitelist
    function: Callable[..., Any] = getattr(module, fn_name)
    return function


def compiler() -> str | None:
    for name in (os.environ.get("CC") or "", "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _load_c(source: str, fn_name: str, workdir: str) -> Callable[..., Any]:
    cc = compiler()
    if cc is None:
        raise BackpropError("cannot compile the C code: no C compiler (cc) found")
    base = Path(workdir) / f"generated_{next(_counter)}"
    base.with_suffix(".c").write_text(source)
    lib = base.with_suffix(".so" if sys.platform != "darwin" else ".dylib")
    command = [cc, "-std=c99", "-O2", "-Wall", "-Werror", "-shared", "-fPIC",
               str(base.with_suffix(".c")), "-o", str(lib), "-lm"]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CC_SECONDS)
    except subprocess.TimeoutExpired:
        raise BackpropError(f"the C compiler took over {CC_SECONDS} s") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no message"]
        first = next((line for line in lines if "error" in line), lines[0]).strip()
        where, _, message = first.rpartition(": error: ")
        if message:  # "file.c:53:12: error: …" without the temporary file's name
            first = f"line {where.split(':')[-2]}: {message}" if where.count(":") >= 2 else message
        raise BackpropError(f"the generated C code did not compile: {first}")
    dll = ctypes.CDLL(str(lib))
    raw = getattr(dll, fn_name)
    raw.restype = ctypes.c_double
    return lambda *args, **kw: _call_c(raw, args, **kw)


def _call_c(
    raw: Any, args: tuple[Any, ...], out: int | tuple[int, ...] = 0, tangent: bool = False
) -> Any:
    """Call a C function of numbers with `out` doubles written back (the gradient) or one
    through a pointer (the tangent)."""
    numbers = [ctypes.c_double(float(a)) for a in args]
    if tangent:
        t = ctypes.c_double(0.0)
        value = raw(*numbers, ctypes.byref(t))
        return value, t.value
    buffers = [(ctypes.c_double * max(n, 1))() for n in (out if isinstance(out, tuple) else (out,))]
    value = raw(*numbers, *buffers)
    return value, *[list(b) for b in buffers]


def workdir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="backprop-codegen-")


def _num(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _close(got: Any, want: Any, agreement: Agreement, what: str, rtol: float) -> bool:
    g, w = _num(got), _num(want)
    if g.shape != w.shape and g.size == w.size:
        g = g.reshape(w.shape)
    if g.shape != w.shape:
        agreement.failures.append(f"{what}: shape {g.shape}, the engine's {w.shape}")
        return False
    scale = np.maximum(np.abs(w), 1.0)
    with np.errstate(all="ignore"):
        diff = np.abs(g - w) / scale
    same_nonfinite = ~np.isfinite(w) & ((g == w) | (np.isnan(g) & np.isnan(w)))
    diff = np.where(same_nonfinite, 0.0, diff)
    worst = float(np.max(diff)) if diff.size else 0.0
    if not np.isfinite(worst) or worst > rtol:
        agreement.failures.append(f"{what}: {_show(g)}, the engine {_show(w)}")
        return False
    agreement.worst = max(agreement.worst, worst)
    return True


def _show(a: np.ndarray) -> str:
    if a.ndim == 0:
        return repr(float(a))
    return np.array2string(a, precision=17, separator=", ", threshold=8)


def reference(
    graph: Graph, point: Mapping[str, Any], mode: str, wrt: list[str], direction: Any = None
) -> tuple[Any, list[Any], list[Any]]:
    """The engine's value and derivatives at a point: the gradient (reverse), the tangent
    along `direction` (forward), or the gradient and Hessian rows (hessian)."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in point.items()}
    values = engine.evaluate(graph, env)
    grads = engine.backward(graph, values)
    value = values[graph.output]

    def grad_of(name: str) -> Any:
        got = grads[graph.variables[name]]
        return np.zeros(np.shape(env[name])) if got is None else got

    if mode == "forward":
        along = dict(zip(wrt, direction, strict=True))
        return value, [forward_tangent(graph, values, env, along)], []
    rows: list[Any] = []
    if mode == "hessian":
        for j in wrt:
            dual_env = {k: Dual(v, 1.0 if k == j else 0.0) for k, v in env.items()}
            dv = engine.evaluate(graph, dual_env)
            dg = engine.backward(graph, dv)
            rows.append([_tangent(dg[graph.variables[k]]) for k in wrt])
    return value, [grad_of(name) for name in wrt], rows


def forward_tangent(
    graph: Graph, values: list[Any], env: Mapping[str, Any], along: Mapping[str, Any]
) -> Any:
    """The output's derivative along a direction, by forward accumulation over the registry:
    an elementwise op's tangent is its VJPs applied to its inputs' tangents (so kinks take
    torch's subgradient, as in the gradient), an array op's is its forward on dual numbers."""
    cores = engine.input_cores(graph, env)
    tangents: list[Any] = []
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op == "input":
                given = along.get(node.name or "")
                shape = np.shape(values[node.id])
                tangents.append(np.zeros(shape) if given is None else np.asarray(given, float))
                continue
            if node.op == "const":
                tangents.append(np.zeros(np.shape(values[node.id])))
                continue
            op = ops.OPS[node.op]
            args, ctx = engine.op_args(node, values, cores)
            if ctx is None:
                ts, _ = engine.op_args(node, tangents, cores)
                out = values[node.id]
                total: Any = np.zeros(np.shape(out))
                for k, t in enumerate(ts):
                    t = np.broadcast_to(t, np.shape(out))
                    # an exact zero tangent adds nothing, even times an infinite partial
                    total = total + np.where(t == 0, 0.0, op.vjp[k](t, out, *args))
                tangents.append(total)
            else:
                duals = [Dual(a, tangents[i]) for a, i in zip(args, node.inputs, strict=True)]
                tangents.append(_tangent(op.forward(*duals, ctx=ctx)))
    return tangents[graph.output]


def _tangent(x: Any) -> Any:
    return 0.0 if x is None else tangent_of(x)


def intermediates_finite(graph: Graph, point: Mapping[str, Any]) -> bool:
    """Whether every value and gradient of the engine's sweep is finite at the point: where
    one is not, Python's math may raise although a later kink masks it (0 · inf)."""
    env = {k: np.asarray(v, dtype=np.float64) for k, v in point.items()}
    values = engine.evaluate(graph, env)
    grads = engine.backward(graph, values)
    return finite(list(values), [g for g in grads if g is not None])


def finite(*parts: Any) -> bool:
    for part in parts:
        items = part if isinstance(part, list) else [part]
        for item in items:
            if isinstance(item, list):
                if not finite(*item):
                    return False
            elif not np.all(np.isfinite(np.asarray(item, dtype=np.float64))):
                return False
    return True


def compare(
    function: Callable[..., Any],
    target: str,
    graph: Graph,
    points: list[dict[str, Any]],
    *,
    mode: str,
    variables: list[str],
    wrt: list[str],
    rtol: float = 1e-9,
) -> Agreement:
    """Run the generated function at every point and compare it with the engine."""
    agreement = Agreement()
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the libraries' notes on inf, nan and copies
        for point in points:
            _compare_at(function, target, graph, point, mode, variables, wrt, rtol, rng, agreement)
            if len(agreement.failures) > 5:
                break
    return agreement


def _compare_at(
    function: Callable[..., Any],
    target: str,
    graph: Graph,
    point: dict[str, Any],
    mode: str,
    variables: list[str],
    wrt: list[str],
    rtol: float,
    rng: np.random.Generator,
    agreement: Agreement,
) -> None:
    direction = [rng.uniform(-1, 1, np.shape(point[w])) for w in wrt]
    want_value, want, rows = reference(graph, point, mode, wrt, direction)
    if not finite(want_value, want, rows):
        agreement.skipped += 1
        return
    args = [point[v] for v in variables]
    try:
        got = _run(function, target, args, mode, len(wrt), direction)
    except (ArithmeticError, ValueError) as exc:
        if target == "python" and not intermediates_finite(graph, point):
            agreement.raised += 1  # Python's math raises where numpy gives inf or nan
            return
        agreement.failures.append(f"at {_where(point)}: the code raised {exc!r}")
        return
    except Exception as exc:  # anything else the code does wrong is a disagreement
        agreement.failures.append(f"at {_where(point)}: the code raised {exc!r}")
        return
    before = len(agreement.failures)
    where = _where(point)
    _close(got[0], want_value, agreement, f"the value at {where}", rtol)
    for k, (g, w) in enumerate(zip(got[1], want, strict=True)):
        what = "the tangent" if mode == "forward" else f"d/d{wrt[k]}"
        _close(g, w, agreement, f"{what} at {where}", rtol)
    if mode == "hessian":
        for i, row in enumerate(rows):
            for j, w in enumerate(row):
                _close(got[2][i][j], w, agreement, f"d2/d{wrt[i]}d{wrt[j]} at {where}", rtol)
    agreement.points += len(agreement.failures) == before


def _run(
    function: Callable[..., Any], target: str, args: list[Any], mode: str, n: int, direction: Any
) -> tuple[Any, list[Any], Any]:
    if target == "c":
        if mode == "forward":
            value, t = function(*args, *direction, tangent=True)
            return value, [t], None
        if mode == "hessian":
            value, grad, hess = function(*args, out=(n, n * n))
            return value, grad[:n], [hess[i * n : (i + 1) * n] for i in range(n)]
        value, grad = function(*args, out=n)
        return value, grad[:n], None
    if target == "python":
        args = [float(a) for a in args]
        direction = [float(t) for t in direction]
    if mode == "forward":
        value, t = function(*args, *direction)
        return value, [t], None
    if mode == "hessian":
        value, grad, hess = function(*args)
        return value, list(grad), [list(row) for row in hess]
    value, grad = function(*args)
    return value, list(grad), None


def _where(point: Mapping[str, Any]) -> str:
    parts = []
    for k, v in point.items():
        arr = np.asarray(v)
        parts.append(f"{k}={float(arr)!r}" if arr.ndim == 0 else f"{k}=array{arr.shape}")
    return ", ".join(parts) or "the point"


def random_points(
    graph: Graph, given: Mapping[str, Any], count: int, seed: int = 0
) -> list[dict[str, Any]]:
    """The given values first (random ones for the variables without), then points drawn
    around them: each given value moved by up to half its size (at least ±0.5), each other
    variable uniform in [-2, 2]. Array variables take their shapes from the given values."""
    rng = np.random.default_rng(seed)
    points: list[dict[str, Any]] = []
    for k in range(count):
        point: dict[str, Any] = {}
        for v in graph.variables:
            if v in given:
                base = np.asarray(given[v], dtype=np.float64)
                spread = np.maximum(np.abs(base) / 2, 0.5)
                moved = base if k == 0 else base + spread * rng.uniform(-1, 1, base.shape)
                point[v] = float(moved) if moved.ndim == 0 else moved
            else:
                point[v] = float(rng.uniform(-2, 2))
        points.append(point)
    return points
