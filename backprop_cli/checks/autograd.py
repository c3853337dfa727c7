"""torch autograd built from the same graph, in float64 (or the engine's dtype) on --device.
torch is imported only inside these functions, so nothing pays for it unless a check asks."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import engine, ops, shapes
from ..core.errors import BackpropError
from ..core.graph import Graph


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


def torch_graph(
    torch: Any,
    graph: Graph,
    env: Mapping[str, Any],
    dtype: str,
    device: Any,
    leaves: Mapping[str, Any] | None = None,
    retain: bool = True,
    cores: list[tuple[int, ...]] | None = None,
) -> list[Any]:
    """The graph rebuilt in torch, node for node: one tensor per node. Inputs become leaves
    that require grad (or the given `leaves`); intermediate gradients are kept when
    `retain`. Values may carry leading batch axes in front of their `cores` (one point's
    shapes; by default env holds one point)."""
    tdtype = getattr(torch, dtype)
    if cores is None:
        given = {name: tuple(t.shape) for name, t in (leaves or {}).items()}
        cores = shapes.infer(graph, {**{n: np.shape(v) for n, v in env.items()}, **given})
    tensors: list[Any] = []
    for node in graph.nodes:
        if node.op == "input":
            assert node.name is not None
            if leaves is not None and node.name in leaves:
                t = leaves[node.name]
            else:
                value = np.asarray(env[node.name], dtype=np.float64)
                # Given leaves hold the parameters: then the other inputs are data.
                t = torch.tensor(value, dtype=tdtype, device=device, requires_grad=leaves is None)
        elif node.op == "const":
            t = torch.tensor(np.asarray(node.value, dtype=np.float64), dtype=tdtype, device=device)
        else:
            op = ops.OPS[node.op]
            args = [tensors[i] for i in node.inputs]
            if op.elementwise:
                nd = len(cores[node.id])
                if nd:  # scalars (perhaps with batch axes) line up as they are
                    args = [
                        _torch_align(a, cores[i], nd)
                        for a, i in zip(args, node.inputs, strict=True)
                    ]
                t = op.torch(torch, *args)
            else:
                ctx = ops.Ctx(
                    tuple(a.dim() - len(cores[i]) for a, i in zip(args, node.inputs, strict=True)),
                    tuple(cores[i] for i in node.inputs),
                    cores[node.id],
                    node.params,
                )
                t = op.torch(torch, *args, ctx=ctx)
            if retain and t.requires_grad:
                t.retain_grad()
        tensors.append(t)
    return tensors


def _torch_align(t: Any, core: tuple[int, ...], nd: int) -> Any:
    """As engine._align, for a tensor."""
    pad = nd - len(core)
    batch = t.dim() - len(core)
    if pad == 0 or batch == 0:
        return t
    return t.reshape(tuple(t.shape[:batch]) + (1,) * pad + core)


def torch_run(
    graph: Graph, env: Mapping[str, Any], dtype: str, device_name: str, seed: Any = None
) -> TorchRun:
    """Rebuild the graph in torch and let autograd differentiate it; `seed` is the upstream
    gradient of an output that holds many points (like `y.backward(gradient=seed)`)."""
    import torch

    device = resolve_device(torch, device_name, dtype)
    tensors = torch_graph(torch, graph, env, dtype, device)
    out = tensors[graph.output]
    if out.requires_grad:
        if seed is None:
            out.backward()
        else:
            upstream = np.broadcast_to(np.asarray(seed, dtype=np.float64), tuple(out.shape))
            gradient = torch.tensor(np.array(upstream), dtype=out.dtype)
            out.backward(gradient=gradient.to(device))
    values = _to_numpy(torch, tensors)
    grads = _to_numpy(torch, [t.grad if t.requires_grad else None for t in tensors])
    for i, t in enumerate(tensors):
        if t.requires_grad and grads[i] is None:  # not on a path to the output: zero
            grads[i] = np.zeros_like(values[i])
    return TorchRun(values, grads, str(device), str(torch.__version__))


def _to_numpy(torch: Any, tensors: list[Any]) -> list[Any]:
    """Each tensor as numpy (None stays None): the one-number tensors of a long graph
    stacked and copied in one go, not one call per node."""
    found: list[Any] = [None] * len(tensors)
    scalars = [i for i, t in enumerate(tensors) if t is not None and t.dim() == 0]
    if scalars:
        with torch.no_grad():
            stacked = torch.stack([tensors[i] for i in scalars]).cpu().numpy()
        for i, value in zip(scalars, stacked, strict=True):
            found[i] = value
    for i, t in enumerate(tensors):
        if t is not None and found[i] is None:
            found[i] = t.detach().cpu().numpy()
    return found


def torch_batch(
    graph: Graph,
    env: Mapping[str, Any],
    cores: list[tuple[int, ...]],
    dtype: str,
    device_name: str,
    seed: Any,
    wrt: list[str],
) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """Many points at once (leading batch axes in env): torch autograd's output and the
    gradient of each variable, per point."""
    import torch

    device = resolve_device(torch, device_name, dtype)
    tensors = torch_graph(torch, graph, env, dtype, device, retain=False, cores=cores)
    out = tensors[graph.output]
    grads: dict[str, np.ndarray] = {}
    leaves = {name: tensors[graph.variables[name]] for name in wrt}
    if out.requires_grad:
        upstream = np.broadcast_to(np.asarray(seed, dtype=np.float64), tuple(out.shape))
        gradient = torch.tensor(np.array(upstream), dtype=out.dtype, device=device)
        found = torch.autograd.grad(
            out, list(leaves.values()), grad_outputs=gradient, allow_unused=True
        )
        for name, g in zip(leaves, found, strict=True):
            leaf = leaves[name]
            grads[name] = np.zeros(tuple(leaf.shape)) if g is None else g.detach().cpu().numpy()
    else:
        grads = {name: np.zeros(tuple(t.shape)) for name, t in leaves.items()}
    return out.detach().cpu().numpy(), grads, f"{device} {dtype}, torch {torch.__version__}"


TORCH_BATCH_ELEMENTS = 2_000_000  # node-elements of one batched torch pass (bounds memory)


def torch_functional(
    graph: Graph, env: dict[str, Any], wrt: list[str], kind: str, device: str
) -> tuple[np.ndarray, str]:
    """torch's Jacobian or Hessian of the graph rebuilt in torch, as one matrix: the chosen
    variables' elements are one flat input vector (in order, each in C order) and the
    output is flattened too, so rows are output elements and columns input elements.

    As torch.autograd.functional with vectorize=True: backward passes for a batch of
    one-hot seeds at once (is_grads_batched), a few batches of TORCH_BATCH_ELEMENTS
    node-elements each rather than all rows at once. A Jacobian with fewer columns than
    rows goes forward instead (one tangent per column); a Hessian is the Jacobian of the
    gradient (reverse over reverse)."""
    import torch

    where = resolve_device(torch, device, "float64")
    f, point, width = _torch_flat(torch, graph, env, wrt, where)
    x = torch.tensor(point, dtype=torch.float64, device=where, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes on ops it batches by looping
        if kind == "hessian":
            out = f(x)
            g = torch.autograd.grad(out, x, create_graph=True)[0] if out.requires_grad else None
            matrix = _torch_rows(torch, g, x, len(point), len(point), 3 * width)
        else:
            out = f(x).reshape(-1)
            m = int(out.numel())
            tall = _torch_columns(torch, f, point, m, where, width) if len(point) < m else None
            matrix = _torch_rows(torch, out, x, m, len(point), width) if tall is None else tall
    return matrix, f"{where} float64, torch {torch.__version__}"


def _torch_flat(
    torch: Any, graph: Graph, env: dict[str, Any], wrt: list[str], where: Any
) -> tuple[Any, np.ndarray, int]:
    """The graph in torch as a function of one flat vector of the chosen variables' elements
    (the others are data), that vector at the point, and the elements of one evaluation."""
    cores = engine.input_cores(graph, env)
    parts = [cores[graph.variables[name]] for name in wrt]
    sizes = [shapes.size(core) for core in parts]

    def f(flat: Any) -> Any:
        pieces = torch.split(flat, sizes)
        leaves = {
            name: piece.reshape(core) for name, piece, core in zip(wrt, pieces, parts, strict=True)
        }
        return torch_graph(torch, graph, env, "float64", where, leaves, retain=False)[graph.output]

    point = np.concatenate([np.asarray(env[name], dtype=np.float64).ravel() for name in wrt])
    return f, point, sum(shapes.size(core) for core in cores)


def _torch_rows(torch: Any, y: Any, x: Any, m: int, n: int, width: int) -> np.ndarray:
    """∂y/∂x (m × n) by reverse passes, each over a batch of one-hot seeds of y; one seed a
    pass where an op cannot be batched."""
    matrix = np.zeros((m, n))
    if y is None or not y.requires_grad:
        return matrix  # y does not depend on x
    size = max(1, TORCH_BATCH_ELEMENTS // max(1, width))
    for lo in range(0, m, size):
        hi = min(m, lo + size)
        seeds = torch.zeros((hi - lo, m), dtype=y.dtype, device=y.device)
        seeds[torch.arange(hi - lo), torch.arange(lo, hi)] = 1.0
        try:
            rows = _grad(torch, y, x, seeds, True)
        except RuntimeError:
            rows = torch.stack([_grad(torch, y, x, seed, False) for seed in seeds])
        matrix[lo:hi] = rows.detach().cpu().numpy().reshape(hi - lo, n)
    return matrix


def _grad(torch: Any, y: Any, x: Any, seeds: Any, batched: bool) -> Any:
    (g,) = torch.autograd.grad(
        y.reshape(-1), x, seeds, retain_graph=True, allow_unused=True, is_grads_batched=batched
    )
    return torch.zeros_like(seeds[..., :1].expand(*seeds.shape[:-1], x.numel())) if g is None else g


def _torch_columns(
    torch: Any, f: Any, point: np.ndarray, m: int, where: Any, width: int
) -> np.ndarray | None:
    """∂f/∂x (m × n) by forward passes, each over a batch of unit tangents (vmap of jvp);
    None where an op has no forward-mode rule in torch."""
    n = len(point)
    x = torch.tensor(point, dtype=torch.float64, device=where)
    size = max(1, TORCH_BATCH_ELEMENTS // max(1, 2 * width))

    def column(tangent: Any) -> Any:
        return torch.func.jvp(lambda v: f(v).reshape(-1), (x,), (tangent,))[1]

    matrix = np.zeros((m, n))
    try:
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            tangents = torch.eye(n, dtype=torch.float64, device=where)[lo:hi]
            columns = torch.func.vmap(column)(tangents)
            matrix[:, lo:hi] = columns.detach().cpu().numpy().reshape(hi - lo, m).T
    except (RuntimeError, NotImplementedError):
        return None
    return matrix
