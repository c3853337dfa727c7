"""Batch gradient throughput of the sigmoid neuron f = 1/(1+exp(-(w0*x0+w1*x1+w2))) at many
points: our vectorised sweep (the one `grad --points` runs), in one pass and streamed in its
default chunks, against torch eager autograd, jax (when installed) and a memory-copy floor.

Everything runs in this process on the same float64 arrays (random normal, seed 0): the
table gives the median time of one full batch (value and all five gradients) after a
warm-up, in points per second, and time ratios against the others measured in the same run.
These machines are noisy: compare ratios, not absolute times.

    python benchmarks/throughput.py [--points 1000000] [--runs 5]
        [--json benchmarks/results/throughput.json]
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
from inprocess import median, table, time_calls, write_json

from backprop_cli.analyses import points
from backprop_cli.core.parse import parse

EXPR = "1/(1+exp(-(w0*x0+w1*x1+w2)))"
NAMES = ["w0", "w1", "w2", "x0", "x1"]

ONE_PASS = "ours, one pass"
STREAMED = "ours, streamed"
TORCH = "torch eager autograd"
JAX = "jax jit(vmap(value_and_grad))"
FLOOR = "copy floor (5 in, 6 out)"


def ours(n: int, data: dict[str, np.ndarray]) -> tuple[Callable[[], Any], ...]:
    """The one-pass call, the streamed call, and the streamed call that keeps its results."""
    graph = parse(EXPR)
    lines = list(range(n))  # built here, outside the timed region
    whole = points.plan(graph, {}, NAMES, NAMES, "float64", 1.0, rows_per_chunk=n)
    chunk = points.Chunk(lines, data, {})
    stream = points.plan(graph, {}, NAMES, NAMES, "float64", 1.0)
    size = stream.rows_per_chunk
    chunks = [
        points.Chunk(lines[i : i + size], {k: v[i : i + size] for k, v in data.items()}, {})
        for i in range(0, n, size)
    ]

    def one_pass() -> points.Result:
        return points.evaluate(whole, chunk)

    def streamed() -> None:
        # Each chunk's result is dropped before the next, as `grad --points` writes it out.
        for c in chunks:
            points.evaluate(stream, c)

    def streamed_kept() -> list[points.Result]:
        return [points.evaluate(stream, c) for c in chunks]

    return one_pass, streamed, streamed_kept


def torch_call(data: dict[str, np.ndarray]) -> Callable[[], tuple[Any, dict[str, Any]]] | None:
    try:
        import torch
    except ImportError:
        return None

    def run() -> tuple[Any, dict[str, Any]]:
        # Like ours, it starts from the numpy arrays and copies them in.
        t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in data.items()}
        out = 1 / (1 + torch.exp(-(t["w0"] * t["x0"] + t["w1"] * t["x1"] + t["w2"])))
        out.backward(torch.ones_like(out))  # type: ignore[no-untyped-call]
        return out.detach().numpy(), {k: v.grad.numpy() for k, v in t.items()}  # type: ignore[union-attr]

    return run


def jax_call(data: dict[str, np.ndarray]) -> Callable[[], Any] | None:
    try:
        jax = importlib.import_module("jax")
    except Exception:  # not installed, or broken: this candidate is skipped
        return None
    jax.config.update("jax_enable_x64", True)
    jnp = importlib.import_module("jax.numpy")

    def f(w0: Any, w1: Any, w2: Any, x0: Any, x1: Any) -> Any:
        return 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))

    fn = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))))
    args = [data[k] for k in NAMES]

    def run() -> Any:
        return jax.block_until_ready(fn(*args))

    return run


def floor_call(data: dict[str, np.ndarray]) -> Callable[[], Any]:
    """The least any implementation must move: read the 5 inputs into arrays of its own and
    write the value and 5 gradients."""
    inputs = [data[k] for k in NAMES]
    sources = inputs + inputs[:1]

    def run() -> list[np.ndarray]:
        copies = [np.copy(a) for a in inputs]
        outs = []
        for a in sources:
            out = np.empty_like(a)
            out[:] = a
            outs.append(out)
        return copies + outs

    return run


def check(got: points.Result, value: np.ndarray, grads: dict[str, np.ndarray], what: str) -> None:
    np.testing.assert_allclose(got.value, value, rtol=1e-12, err_msg=f"{what}: value")
    for k in NAMES:
        np.testing.assert_allclose(got.grads[k], grads[k], rtol=1e-12, err_msg=f"{what}: d_{k}")


def cli_points(rows: int) -> dict[str, Any]:
    """The whole pipeline as a user runs it: a CSV file of `rows` points through
    `backprop grad --points` in a fresh process, CSV out; wall time and peak memory (flat
    in the number of rows: the file is streamed in chunks)."""
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from timing import ENV

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.csv"
        with path.open("w") as f:
            f.write(",".join(NAMES) + "\n")
            for start in range(0, rows, 100_000):
                block = rng.standard_normal((min(100_000, rows - start), len(NAMES)))
                f.write("\n".join(",".join(f"{v:.6f}" for v in row) for row in block) + "\n")
        out = Path(tmp) / "grads.csv"
        # The command reports its own peak memory (VmHWM) as it exits: getrusage's figure
        # would include this process's pages, kept across the child's exec.
        run = (
            "import runpy, sys\n"
            f"sys.argv = ['backprop', 'grad', {EXPR!r}, '--points', {str(path)!r}]\n"
            "try:\n    runpy.run_module('backprop_cli', run_name='__main__')\n"
            "finally:\n"
            "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')]\n"
            "    print(hwm[0].split()[1] if hwm else 0, file=sys.stderr)\n"
        )
        begin = time.perf_counter()
        with out.open("w") as sink:
            done = subprocess.run(
                [sys.executable, "-c", run], stdout=sink, stderr=subprocess.PIPE, text=True,
                check=True, env=ENV,
            )  # fmt: skip
        seconds = time.perf_counter() - begin
        peak_mb = int(done.stderr.strip().splitlines()[-1]) / 1024
        written = sum(1 for _ in out.open()) - 1
    print(
        f"\nbackprop grad --points, {rows:,}-row CSV in, CSV out (fresh process): "
        f"{seconds:.2f} s, {rows / seconds / 1e3:.0f} k rows/s, peak memory {peak_mb:.0f} MB, "
        f"{written:,} rows written"
    )
    return {"rows": rows, "seconds": seconds, "peak_mb": peak_mb, "written": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/throughput.json")
    parser.add_argument(
        "--file-points",
        type=int,
        default=1_000_000,
        help="rows of the CSV file sent through `backprop grad --points` (0: skip)",
    )
    args = parser.parse_args()
    n = args.points

    rng = np.random.default_rng(0)
    data = {k: rng.standard_normal(n) for k in NAMES}
    one_pass, streamed, streamed_kept = ours(n, data)
    size = points.plan(parse(EXPR), {}, NAMES, NAMES, "float64", 1.0).rows_per_chunk
    calls: dict[str, Callable[[], Any]] = {ONE_PASS: one_pass, STREAMED: streamed}
    notes: dict[str, Any] = {"points": n, "dtype": "float64", "expression": EXPR}
    notes["streamed_rows_per_chunk"] = size

    torch_run = torch_call(data)
    if torch_run is None:
        print(f"{TORCH}: not installed, skipped")
        notes["torch"] = "not installed"
    else:
        import torch

        notes["torch"] = torch.__version__
        notes["torch_threads"] = torch.get_num_threads()
        value, grads = torch_run()
        check(one_pass(), value, grads, "one pass against torch")
        whole = streamed_kept()
        joined = points.Result(
            np.concatenate([r.value for r in whole]),
            {k: np.concatenate([r.grads[k] for r in whole]) for k in NAMES},
            {},
        )
        check(joined, value, grads, "streamed against torch")
        print(f"checked: ours (one pass and streamed) = torch autograd within rtol 1e-12 at {n:,}")
        calls[TORCH] = torch_run

    jax_run = jax_call(data)
    if jax_run is None:
        print(f"{JAX}: not installed, skipped")
        notes["jax"] = "not installed"
    else:
        notes["jax"] = importlib.import_module("jax").__version__
        calls[JAX] = jax_run
        value, grads = jax_run()
        try:
            check(
                one_pass(),
                np.asarray(value),
                dict(zip(NAMES, map(np.asarray, grads), strict=True)),
                "jax",
            )
            print(f"checked: ours = jax within rtol 1e-12 at {n:,}")
        except AssertionError as exc:  # reported, not fatal: jax is only a comparison
            print(f"jax differs from ours beyond rtol 1e-12: {str(exc).strip().splitlines()[0]}")
    calls[FLOOR] = floor_call(data)

    samples = time_calls(calls, args.runs)
    medians = {name: median(times) for name, times in samples.items()}
    print(
        f"\n{n:,} points, float64, median of {args.runs} after a warm-up; streamed in chunks of "
        f"{size:,} rows" + (f"; torch threads: {notes['torch_threads']}" if torch_run else "")
    )
    rows = [
        [
            name,
            f"{medians[name]:.4f}",
            f"{min(times):.4f}",
            f"{max(times):.4f}",
            f"{n / medians[name] / 1e6:.2f}",
        ]
        for name, times in samples.items()
    ]
    table(["candidate", "median s", "min s", "max s", "Mpoints/s"], rows)

    pairs = [
        (ONE_PASS, TORCH),
        (STREAMED, TORCH),
        (ONE_PASS, JAX),
        (ONE_PASS, FLOOR),
        (STREAMED, FLOOR),
        (STREAMED, ONE_PASS),
    ]
    ratios = {f"{a} / {b}": medians[a] / medians[b] for a, b in pairs if a in calls and b in calls}
    print()
    table(
        ["time ratio (> 1: the first is slower)", "median"],
        [[k, f"{v:.2f}"] for k, v in ratios.items()],
    )
    if args.file_points:
        notes["cli"] = cli_points(args.file_points)
    write_json(
        args.json,
        {
            **notes,
            "runs": args.runs,
            "seconds": samples,
            "median_seconds": medians,
            "points_per_second": {k: n / v for k, v in medians.items()},
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
