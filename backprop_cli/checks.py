"""Independent checks of the engine: central finite differences (numpy, product code the tests
use too) and torch autograd built from the same graph. torch is imported only inside
`torch_run`, so nothing pays for it unless a check asks.

Tolerances live here, in one table, and README documents them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import engine, ops
from .errors import BackpropError
from .graph import Graph

# (rtol, atol) per check and engine dtype: |a - b| <= atol + rtol * max(|a|, |b|).
TOLERANCES: dict[str, dict[str, tuple[float, float]]] = {
    "float64": {"torch": (1e-7, 1e-9), "finite_difference": (1e-6, 1e-8), "symbolic": (1e-7, 1e-9)},
    "float32": {"torch": (1e-4, 1e-6), "finite_difference": (1e-3, 1e-5), "symbolic": (1e-3, 1e-5)},
}

# Step sizes tried by the finite-difference check: h = s * 2**-j, s = |x| (1 at x = 0).
FD_STEPS = tuple(range(2, 45))
_STENCIL = np.array([-2.0, -1.0, 1.0, 2.0])
FD_ROUNDING = 64  # a function value is trusted to FD_ROUNDING·ε of its size
FD_POINTS_PER_PASS = 2_000_000  # batch size × nodes per vectorised pass (bounds memory)
FD_AGREEMENT = 1e-2  # neighbouring steps must agree this well (relative) to be trusted
FD_CONSISTENCY = 1e-2  # the outer points must predict the centre value this well
FD_NEGLIGIBLE = 1e-10  # or their disagreement this small next to |f| / h


EPS = float(np.finfo(np.float64).eps)
# Two numbers may differ by this many times the engine's rounding spread (engine.spread).
SPREAD_SLACK = 4.0


def agree(a: float | None, b: float | None, rtol: float, atol: float) -> bool:
    """Agreement of two numbers.

    Two non-finite numbers agree: at a singular point (0/0, log 0, inf - inf) different but
    equivalent formulas reach nan or either infinity, and the engine's warning already names
    the node. A finite number never agrees with a non-finite one.
    """
    if a is None or b is None:
        return a is b
    if not (math.isfinite(a) and math.isfinite(b)):
        return not (math.isfinite(a) or math.isfinite(b))
    return abs(a - b) <= atol + rtol * max(abs(a), abs(b))


def abs_error(a: float | None, b: float | None) -> float:
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if agree(a, b, 0.0, 0.0) else math.inf
    return abs(a - b)


# ---- finite differences ---------------------------------------------------------------


@dataclass(frozen=True)
class FiniteDifference:
    value: float | None  # None: no step gave a finite estimate (undefined here)
    error_estimate: float | None  # the estimate's own error: step disagreement + rounding
    step: float | None
    kink: bool  # the point sits on a kink of a node this variable feeds
    reliable: bool = True  # some step's estimate was trustworthy (see _estimate); with no
    # value, True means the function is undefined around the point, False that no step
    # could resolve the derivative


def finite_differences(
    graph: Graph, env: Mapping[str, float], wrt: Iterable[str]
) -> dict[str, FiniteDifference]:
    """∂output/∂v for each v from a 5-point central stencil, evaluated in float64.

    Forty-odd step sizes, from a quarter of |v| down to 2^-44 of it, go through the graph in
    vectorised passes. Each estimate's error is judged by how far it is from its neighbours
    (a smaller and a larger step) plus the rounding the function values allow, and the
    estimate with the smallest error is kept, with that error; steps whose stencil crosses
    a kink or leaves the domain are discarded. Where no step can resolve the derivative
    (a huge output, a pole within reach) the error says so, and the caller does not compare.
    """
    wrt = list(wrt)
    per_var = len(FD_STEPS) * len(_STENCIL)
    chunk = max(1, FD_POINTS_PER_PASS // (per_var * max(1, len(graph.nodes))))
    results: dict[str, FiniteDifference] = {}
    deps: list[frozenset[str]] | None = None
    for first in range(0, len(wrt), chunk):
        names = wrt[first : first + chunk]
        offsets, batch = _stencil_batch(graph, env, names)
        values = engine.evaluate(graph, batch, np.float64)
        size = 1 + per_var * len(names)
        f = np.broadcast_to(np.asarray(values[graph.output], dtype=np.float64), (size,))
        branches = _branches(graph, values, size)
        if branches and deps is None:
            deps = graph.depends_on()
        for k, name in enumerate(names):
            block = slice(1 + k * per_var, 1 + (k + 1) * per_var)
            mine = [b for nid, b in branches.items() if deps is not None and name in deps[nid]]
            on_kink = any(b[0] == 0 for b in mine)
            crossed = np.zeros(len(FD_STEPS), dtype=bool)
            for b in mine:
                crossed |= (b[block].reshape(len(FD_STEPS), -1) != b[0]).any(axis=1)
            fv = f[block].reshape(len(FD_STEPS), -1)
            results[name] = _estimate(float(f[0]), fv, offsets[name], crossed, on_kink)
    return results


def _stencil_batch(
    graph: Graph, env: Mapping[str, float], names: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The points: the centre first, then for each variable every step's four neighbours.
    Offsets are the differences actually realised in floating point."""
    per_var = len(FD_STEPS) * len(_STENCIL)
    size = 1 + per_var * len(names)
    batch = {name: np.full(size, float(env[name])) for name in graph.variables}
    offsets = {}
    with np.errstate(all="ignore"):
        for k, name in enumerate(names):
            x = float(env[name])
            scale = abs(x) if x != 0 and math.isfinite(x) else 1.0
            h = scale * np.ldexp(1.0, -np.array(FD_STEPS))
            points = x + h[:, None] * _STENCIL[None, :]
            batch[name][1 + k * per_var : 1 + (k + 1) * per_var] = points.ravel()
            offsets[name] = points - x
    return offsets, batch


def _estimate(
    centre: float, fv: np.ndarray, offsets: np.ndarray, crossed: np.ndarray, kink: bool
) -> FiniteDifference:
    with np.errstate(all="ignore"):
        h = np.abs(offsets[:, 2])
        weights = _derivative_weights(offsets)
        estimates = (fv * weights[:, 1:]).sum(axis=1) + weights[:, 0] * centre
        # The textbook stencil, summed as differences first: exact for a linear function.
        classic = (offsets == h[:, None] * _STENCIL[None, :]).all(axis=1)
        textbook = ((fv[:, 0] - fv[:, 3]) + 8 * (fv[:, 2] - fv[:, 1])) / (12 * h)
        estimates = np.where(classic, textbook, estimates)
        magnitude = np.maximum(np.abs(fv).max(axis=1), abs(centre))
        rounding = FD_ROUNDING * EPS * magnitude * np.abs(weights).sum(axis=1)
        # A pole or jump inside the stencil shows as a centre value that the four outer
        # points do not predict; such a step says nothing about the derivative.
        predicted = (fv * _centre_weights(offsets)).sum(axis=1)
        smooth = np.abs(predicted - centre) <= FD_CONSISTENCY * magnitude + rounding * h
    usable = np.isfinite(estimates) & np.isfinite(rounding) & ~crossed & (h > 0) & smooth
    errors = np.full(len(h), np.inf)
    for i in np.flatnonzero(usable):
        # An estimate is as good as its agreement with the neighbouring step sizes.
        near = [m for m in (i - 1, i + 1) if 0 <= m < len(h) and usable[m]]
        if near:
            spread = max(abs(float(estimates[i]) - float(estimates[m])) for m in near)
            errors[i] = spread + float(rounding[i])
    if not np.isfinite(errors).any():
        # Nothing resolvable: undefined where the function is, inconclusive where it is not.
        return FiniteDifference(None, None, None, kink, not np.isfinite(estimates).any())
    # Trust an estimate when its neighbours agree to 1%, or when its error is negligible
    # next to what that step can resolve at all (|f| / h): a step far too large gives tiny,
    # mutually consistent nonsense, which neither test lets through.
    with np.errstate(all="ignore"):
        floor = FD_NEGLIGIBLE * magnitude / h
    trusted = (errors <= FD_AGREEMENT * np.abs(estimates)) | (errors <= floor)
    pool = np.flatnonzero(trusted) if trusted.any() else np.flatnonzero(np.isfinite(errors))
    best = int(pool[np.argmin(errors[pool])])
    return FiniteDifference(
        float(estimates[best]), float(errors[best]), float(h[best]), kink, bool(trusted.any())
    )


def _centre_weights(offsets: np.ndarray) -> np.ndarray:
    """Weights that predict f(x) from the four outer points (exact to degree 3)."""
    return _stencil_weights(offsets, 0, _CLASSIC_CENTRE, centre=False)


def _derivative_weights(offsets: np.ndarray) -> np.ndarray:
    """Weights w with f'(x) ≈ w0·f(x) + Σ w_i·f(x + t_i) for the realised offsets t_i:
    the derivative at 0 of the polynomial through the five points (exact to degree 4)."""
    h = np.abs(offsets[:, 2:3])
    with np.errstate(all="ignore"):
        weights: np.ndarray = _stencil_weights(offsets, 1, _CLASSIC_DERIVATIVE, centre=True) / h
    return weights


# Where the offsets came out exactly -2h, -h, h, 2h, the textbook weights (in units of h).
_CLASSIC_DERIVATIVE = np.array([0.0, 1.0, -8.0, 8.0, -1.0]) / 12.0
_CLASSIC_CENTRE = np.array([-1.0, 4.0, 4.0, -1.0]) / 6.0


def _stencil_weights(
    offsets: np.ndarray, order: int, classic: np.ndarray, centre: bool
) -> np.ndarray:
    """Interpolation weights (in units of h) for the value (order 0) or the first
    derivative (order 1) at 0, from the points at `offsets` (and 0 when `centre`)."""
    h = np.abs(offsets[:, 2:3])
    with np.errstate(all="ignore"):
        tau = offsets / h
    if centre:
        tau = np.concatenate([np.zeros_like(h), tau], axis=1)
    n = tau.shape[1]
    weights = np.full((len(tau), n), np.nan)
    exact = (offsets == h * _STENCIL[None, :]).all(axis=1) & (h[:, 0] > 0)
    weights[exact] = classic
    rest = ~exact & np.isfinite(tau).all(axis=1) & (h[:, 0] > 0)
    if rest.any():
        vander = tau[rest][:, None, :] ** np.arange(n)[None, :, None]
        rhs = np.zeros((int(rest.sum()), n, 1))
        rhs[:, order, 0] = 1.0
        weights[rest] = np.linalg.solve(vander, rhs)[:, :, 0]
    return weights


def _branches(graph: Graph, values: list[Any], size: int) -> dict[int, np.ndarray]:
    found = {}
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.op in ops.LEAVES or ops.OPS[node.op].branch is None:
                continue
            branch = ops.OPS[node.op].branch
            assert branch is not None
            args = [values[i] for i in node.inputs]
            found[node.id] = np.broadcast_to(np.asarray(branch(*args)), (size,))
    return found


# ---- torch autograd ---------------------------------------------------------------------


@dataclass(frozen=True)
class TorchRun:
    values: list[Any]  # numpy arrays, one per node
    grads: list[Any | None]  # None where torch kept no gradient (constants)
    device: str
    version: str


def resolve_device(torch: Any, name: str, dtype: str) -> Any:
    """A torch.device that exists here, or a clear error."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise BackpropError(
            f"unknown device {name!r}: {str(exc).splitlines()[0]}",
            hint="use cpu, cuda, cuda:1, mps, …",
        ) from None
    kind = device.type
    if kind == "cpu":
        return device
    if kind == "meta":
        raise BackpropError("device 'meta' holds no data; use cpu or an accelerator")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise BackpropError(
                f"device {name!r} requested, but CUDA is not available here "
                "(torch.cuda.is_available() is False)",
                hint="use --device cpu, or install a CUDA build of torch on a machine with a GPU",
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise BackpropError(
                f"device {name!r} requested, but only {count} CUDA device(s) exist "
                f"(cuda:0 … cuda:{count - 1})"
            )
        return device
    if kind == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise BackpropError(f"device {name!r} requested, but MPS is not available here")
        if dtype == "float64":
            raise BackpropError("MPS has no float64 support; use --dtype float32 with --device mps")
        return device
    module = getattr(torch, kind, None)
    available = getattr(module, "is_available", None)
    if available is None or not available():
        raise BackpropError(f"device {name!r} requested, but it is not available here")
    return device


def check_device(name: str, dtype: str) -> None:
    import torch

    resolve_device(torch, name, dtype)


def torch_run(graph: Graph, env: Mapping[str, Any], dtype: str, device_name: str) -> TorchRun:
    """Rebuild the graph in torch, node for node, and let autograd differentiate it."""
    import torch

    device = resolve_device(torch, device_name, dtype)
    tdtype = getattr(torch, dtype)
    tensors: list[Any] = []
    for node in graph.nodes:
        if node.op == "input":
            assert node.name is not None
            t = torch.tensor(float(env[node.name]), dtype=tdtype, device=device, requires_grad=True)
        elif node.op == "const":
            t = torch.tensor(node.value, dtype=tdtype, device=device)
        else:
            t = ops.OPS[node.op].torch(torch, *(tensors[i] for i in node.inputs))
            if t.requires_grad:
                t.retain_grad()
        tensors.append(t)
    out = tensors[graph.output]
    if out.requires_grad:
        out.backward()
    values = [t.detach().cpu().numpy() for t in tensors]
    grads: list[Any | None] = []
    for t in tensors:
        if not t.requires_grad:
            grads.append(None)
        elif t.grad is None:  # not on a path to the output: its gradient is zero
            grads.append(np.zeros_like(t.detach().cpu().numpy()))
        else:
            grads.append(t.grad.detach().cpu().numpy())
    return TorchRun(values, grads, str(device), str(torch.__version__))
