"""Independent checks of the engine: central finite differences (numpy, product code the tests
use too) and torch autograd built from the same graph. torch is imported only inside
`torch_run`, so nothing pays for it unless a check asks.

Tolerances live here, in one table, and README documents them.
"""

from __future__ import annotations

import itertools
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

# Step sizes tried by the finite-difference check: h = s * 2**-j, s the power of two >= |x|.
FD_STEP_EXPONENTS = tuple(range(3, 21, 2))
_STENCIL = (-2.0, -1.0, 1.0, 2.0)
_WEIGHTS = np.array([1.0, -8.0, 8.0, -1.0]) / 12.0  # the 5-point central stencil, O(h^4)


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
    value: float | None  # None: undefined here (no step gave a finite estimate)
    error_estimate: float | None  # how much the best two step sizes disagree
    step: float | None
    kink: bool  # the point sits on a kink of a node this variable feeds


def finite_differences(
    graph: Graph, env: Mapping[str, float], wrt: Iterable[str]
) -> dict[str, FiniteDifference]:
    """∂output/∂v for each v by the 5-point central stencil, evaluated in float64.

    All perturbed points go through the graph in one vectorised forward pass. Several step
    sizes are tried; the estimate whose neighbour agrees best is kept (a simple form of
    Ridders' step selection), and steps whose stencil crosses a kink are discarded.
    """
    wrt = list(wrt)
    names = list(graph.variables)
    steps = np.array([2.0**-j for j in FD_STEP_EXPONENTS])
    per_var = len(steps) * len(_STENCIL)
    size = 1 + per_var * len(wrt)
    batch = {name: np.full(size, float(env[name])) for name in names}
    scales: dict[str, float] = {}
    for k, name in enumerate(wrt):
        x = float(env[name])
        scale = 2.0 ** math.ceil(math.log2(max(1.0, abs(x)))) if math.isfinite(x) else 1.0
        scales[name] = scale
        offsets = (steps[:, None] * scale) * np.array(_STENCIL)[None, :]
        batch[name][1 + k * per_var : 1 + (k + 1) * per_var] = x + offsets.ravel()
    values = engine.evaluate(graph, batch, np.float64)
    f = np.broadcast_to(np.asarray(values[graph.output], dtype=np.float64), (size,))
    branches = _branches(graph, values, size)
    deps = graph.depends_on() if branches else []

    results: dict[str, FiniteDifference] = {}
    for k, name in enumerate(wrt):
        block = slice(1 + k * per_var, 1 + (k + 1) * per_var)
        fv = f[block].reshape(len(steps), len(_STENCIL))
        on_kink = any(b[0] == 0 for nid, b in branches.items() if name in deps[nid])
        crossed = np.zeros(len(steps), dtype=bool)
        for nid, b in branches.items():
            if name in deps[nid]:
                crossed |= (b[block].reshape(len(steps), len(_STENCIL)) != b[0]).any(axis=1)
        h = steps * scales[name]
        with np.errstate(all="ignore"):
            estimates = (fv @ _WEIGHTS) / h
        usable = np.isfinite(estimates) & ~crossed
        results[name] = _pick(estimates, h, usable, on_kink)
    return results


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


def _pick(estimates: np.ndarray, h: np.ndarray, usable: np.ndarray, kink: bool) -> FiniteDifference:
    idx = np.flatnonzero(usable)
    if len(idx) == 0:
        return FiniteDifference(None, None, None, kink)
    if len(idx) == 1:
        i = int(idx[0])
        return FiniteDifference(float(estimates[i]), None, float(h[i]), kink)
    best, best_err = int(idx[0]), math.inf
    for a, b in itertools.pairwise(idx):
        err = abs(float(estimates[a]) - float(estimates[b]))
        if err < best_err:
            best, best_err = int(b), err
    return FiniteDifference(float(estimates[best]), best_err, float(h[best]), kink)


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
