"""Generated code against the engine and the usual peers, in one process, one run.

Part 1: the sigmoid neuron f = 1/(1+exp(-(w0*x0+w1*x1+w2))) at 10^6 float64 points: the
code `backprop codegen --target numpy` prints (whole arrays, and in chunks of 65,536 points
as `grad --points` streams them), the engine's own sweep in the same chunks, `bp.compile`,
and torch eager autograd. Part 2: (x+y)*z at one point, calls per second: the code
`backprop codegen` prints for Python (math), a micrograd-style evaluation (a graph of Value
objects built and swept per call, as micrograd does), `bp.compile` and, when a C compiler
is present, the C target called through ctypes. Ratios are against candidates measured in
the same run: these machines are noisy.

    python benchmarks/codegen.py [--points 1000000] [--runs 7]
        [--json benchmarks/results/codegen.json]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np
from inprocess import median, table, time_calls, write_json

import backprop_cli as bp
from backprop_cli.checks import generated
from backprop_cli.core import engine
from backprop_cli.core.parse import parse

NEURON = "1/(1+exp(-(w0*x0+w1*x1+w2)))"
ORDER = ["w0", "x0", "w1", "x1", "w2"]  # the variables in order of first appearance
CHUNK = 65_536

GEN_WHOLE = "generated numpy, one pass"
GEN_CHUNKS = "generated numpy, chunks"
ENGINE = "engine sweep, chunks"
COMPILE = "bp.compile"
TORCH = "torch eager autograd"


def neuron(n: int, runs: int, folder: str) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    data = {k: rng.standard_normal(n) for k in ORDER}
    f_and_grad = generated.load(bp.codegen(NEURON, target="numpy"), "numpy", "f_and_grad", folder)
    args = [data[k] for k in ORDER]
    graph = parse(NEURON)
    cores = engine.input_cores(graph, {k: 0.0 for k in ORDER})
    compiled = bp.compile(NEURON)

    def gen_chunks() -> None:
        for i in range(0, n, CHUNK):
            f_and_grad(*(a[i : i + CHUNK] for a in args))

    def engine_chunks() -> None:
        for i in range(0, n, CHUNK):
            env = {k: data[k][i : i + CHUNK] for k in ORDER}
            with np.errstate(all="ignore"):
                values = engine.evaluate(graph, env, np.float64, cores=cores)
                engine.backward(graph, values, np.ones(len(env["w0"])), cores=cores)

    calls: dict[str, Callable[[], Any]] = {
        GEN_WHOLE: lambda: f_and_grad(*args),
        GEN_CHUNKS: gen_chunks,
        ENGINE: engine_chunks,
        COMPILE: lambda: compiled(**data),
    }
    value, grads = f_and_grad(*args)
    want_value, want = compiled(**data)
    np.testing.assert_allclose(value, want_value, rtol=1e-12)
    for k, g in zip(ORDER, grads, strict=True):
        np.testing.assert_allclose(g, want[k], rtol=1e-12)
    print(f"checked: the generated numpy code = bp.compile within rtol 1e-12 at {n:,} points")
    torch_run = _torch(data)
    if torch_run is not None:
        calls[TORCH] = torch_run
    samples = time_calls(calls, runs)
    medians = {k: median(v) for k, v in samples.items()}
    print(f"\nthe sigmoid neuron, {n:,} float64 points, median of {runs}; chunks of {CHUNK:,}")
    table(
        ["candidate", "median s", "Mpoints/s"],
        [[k, f"{m:.4f}", f"{n / m / 1e6:.1f}"] for k, m in medians.items()],
    )
    pairs = [(GEN_CHUNKS, ENGINE), (GEN_WHOLE, COMPILE), (GEN_CHUNKS, COMPILE),
             (GEN_WHOLE, TORCH), (GEN_CHUNKS, TORCH), (ENGINE, TORCH)]  # fmt: skip
    ratios = {f"{a} / {b}": medians[a] / medians[b] for a, b in pairs if b in medians}
    print()
    table(["time ratio (< 1: the first is faster)", "median"],
          [[k, f"{v:.2f}"] for k, v in ratios.items()])  # fmt: skip
    return {"points": n, "median_seconds": medians, "ratios": ratios, "seconds": samples}


def _torch(data: dict[str, np.ndarray]) -> Callable[[], Any] | None:
    try:
        import torch
    except ImportError:
        print(f"{TORCH}: not installed, skipped")
        return None

    def run() -> Any:
        t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in data.items()}
        out = 1 / (1 + torch.exp(-(t["w0"] * t["x0"] + t["w1"] * t["x1"] + t["w2"])))
        out.backward(torch.ones_like(out))  # type: ignore[no-untyped-call]
        return out.detach().numpy(), [t[k].grad for k in ORDER]

    return run


class Value:
    """A scalar that remembers how it was made, micrograd's way: children and a closure
    that pushes its gradient to them."""

    __slots__ = ("_backward", "_prev", "data", "grad")

    def __init__(self, data: float, prev: tuple[Value, ...] = ()) -> None:
        self.data = data
        self.grad = 0.0
        self._backward: Callable[[], None] = lambda: None
        self._prev = prev

    def __add__(self, other: Value) -> Value:
        out = Value(self.data + other.data, (self, other))

        def backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = backward
        return out

    def __mul__(self, other: Value) -> Value:
        out = Value(self.data * other.data, (self, other))

        def backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = backward
        return out

    def backward(self) -> None:
        order: list[Value] = []
        seen: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:  # an iterative topological sort
            node, done = stack.pop()
            if done:
                order.append(node)
            elif id(node) not in seen:
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in node._prev)
        self.grad = 1.0
        for node in reversed(order):
            node._backward()


def scalar(runs: int, folder: str) -> dict[str, Any]:
    expr = "(x+y)*z"
    f_and_grad = generated.load(bp.codegen(expr), "python", "f_and_grad", folder)
    compiled = bp.compile(expr)

    def micrograd() -> tuple[float, tuple[float, float, float]]:
        x, y, z = Value(-2.0), Value(5.0), Value(-4.0)
        f = (x + y) * z
        f.backward()
        return f.data, (x.grad, y.grad, z.grad)

    calls: dict[str, Callable[[], Any]] = {
        "generated python": lambda: f_and_grad(-2.0, 5.0, -4.0),
        "micrograd-style Value graph": micrograd,
        "bp.compile, one point": lambda: compiled(-2.0, 5.0, -4.0),
    }
    assert f_and_grad(-2.0, 5.0, -4.0) == micrograd() == (-12.0, (-4.0, -4.0, 3.0))
    if generated.compiler() is not None:
        c_fn = generated.load(bp.codegen(expr, target="c"), "c", "f_and_grad", folder)
        assert c_fn(-2.0, 5.0, -4.0, out=3) == (-12.0, [-4.0, -4.0, 3.0])
        calls["generated C through ctypes"] = lambda: c_fn(-2.0, 5.0, -4.0, out=3)
    samples = time_calls(calls, runs, min_seconds=0.2)
    medians = {k: median(v) for k, v in samples.items()}
    print(f"\n{expr} at one point, calls per second, median of {runs}")
    table(
        ["candidate", "µs per call", "calls/s"],
        [[k, f"{m * 1e6:.2f}", f"{1 / m:,.0f}"] for k, m in medians.items()],
    )
    base = medians["generated python"]
    ratios = {f"{k} / generated python": m / base for k, m in medians.items() if m is not base}
    print()
    table(["time ratio (> 1: slower than the generated code)", "median"],
          [[k, f"{v:.1f}"] for k, v in ratios.items()])  # fmt: skip
    return {"median_seconds": medians, "ratios": ratios, "seconds": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", default="benchmarks/results/codegen.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        result = {"neuron": neuron(args.points, args.runs, folder)}
        result["scalar"] = scalar(args.runs, folder)
    assert math.isfinite(result["neuron"]["median_seconds"][GEN_WHOLE])
    write_json(args.json, result)


if __name__ == "__main__":
    main()
