"""The whole `grad --points` pipeline on files of the sigmoid neuron's points (5 inputs, value
and 5 gradients out) against the shortest scripts that do the same with numpy + pyarrow (the
I/O floor), torch eager and jax jit(vmap): CSV in and out, Parquet in and out, CSV in and
Parquet out, JSON lines in and out. Each command is a fresh process, the runs interleaved;
the table gives the median wall time, rows per second, the largest peak memory (RSS), and
ratios against the others measured in the same run. These machines are noisy: compare
ratios, not absolute times.

    python benchmarks/points_io.py [--rows 1000000,10000000] [--runs 3]
        [--json benchmarks/results/points_io.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from inprocess import machine, table, write_json
from timing import ENV

EXPR = "1/(1+exp(-(w0*x0+w1*x1+w2)))"
NAMES = ["w0", "w1", "w2", "x0", "x1"]

# The floor: read, value and the five gradients by hand, write; nothing checked.
NUMPY_SCRIPT = """
import sys, numpy as np, pyarrow as pa, pyarrow.csv as csv
t = csv.read_csv(sys.argv[1])
w0, w1, w2, x0, x1 = (t[c].to_numpy() for c in ["w0", "w1", "w2", "x0", "x1"])
s = 1 / (1 + np.exp(-(w0 * x0 + w1 * x1 + w2)))
g = s * (1 - s)
for name, d in [("value", s), ("d_w0", g * x0), ("d_w1", g * x1), ("d_w2", g),
                ("d_x0", g * w0), ("d_x1", g * w1)]:
    t = t.append_column(name, pa.array(d))
csv.write_csv(t, sys.argv[2])
"""

TORCH_SCRIPT = """
import sys, torch, pyarrow as pa, pyarrow.csv as csv
t = csv.read_csv(sys.argv[1])
names = ["w0", "w1", "w2", "x0", "x1"]
xs = [torch.tensor(t[c].to_numpy(), requires_grad=True) for c in names]
w0, w1, w2, x0, x1 = xs
f = torch.sigmoid(w0 * x0 + w1 * x1 + w2)
f.sum().backward()
t = t.append_column("value", pa.array(f.detach().numpy()))
for name, x in zip(names, xs):
    t = t.append_column("d_" + name, pa.array(x.grad.numpy()))
csv.write_csv(t, sys.argv[2])
"""

JAX_SCRIPT = """
import sys, jax, jax.numpy as jnp, numpy as np, pyarrow as pa, pyarrow.csv as csv
jax.config.update("jax_enable_x64", True)
t = csv.read_csv(sys.argv[1])
names = ["w0", "w1", "w2", "x0", "x1"]
def f(w0, w1, w2, x0, x1):
    return 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))
both = jax.jit(jax.vmap(jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))))
value, grads = both(*(jnp.asarray(t[c].to_numpy()) for c in names))
t = t.append_column("value", pa.array(np.asarray(value)))
for name, g in zip(names, grads):
    t = t.append_column("d_" + name, pa.array(np.asarray(g)))
csv.write_csv(t, sys.argv[2])
"""


WRITE_INPUTS = """
import sys
import numpy as np, pyarrow as pa, pyarrow.csv as csv, pyarrow.parquet as pq
folder, n = sys.argv[1], int(sys.argv[2])
names = ["w0", "w1", "w2", "x0", "x1"]
rng = np.random.default_rng(0)
t = pa.table({name: rng.normal(size=n) for name in names})
csv.write_csv(t, f"{folder}/points-{n}.csv")
pq.write_table(t, f"{folder}/points-{n}.parquet")
if n <= 1_000_000:
    columns = [t.column(name).to_pylist() for name in names]
    with open(f"{folder}/points-{n}.jsonl", "w") as f:
        for row in zip(*columns):
            f.write("{" + ", ".join(f'"{k}": {v!r}' for k, v in zip(names, row)) + "}\\n")
"""


def write_inputs(folder: Path, n: int) -> dict[str, Path]:
    """The same n points as CSV, Parquet and JSON lines (normal, seed 0; floats as Python
    writes them), written by a child process so that this one stays small: a child's peak
    memory counts what it shares of its parent's at the start."""
    subprocess.run([sys.executable, "-c", WRITE_INPUTS, str(folder), str(n)], check=True)
    paths = {k: folder / f"points-{n}.{k}" for k in ("csv", "parquet", "jsonl")}
    return {k: p for k, p in paths.items() if p.exists()}


def commands(folder: Path, paths: dict[str, Path]) -> dict[str, list[str]]:
    py = sys.executable
    out = folder / "out"
    ours = [py, "-m", "backprop_cli", "grad", EXPR, "--points"]
    found = {
        "numpy + pyarrow, CSV": [py, "-c", NUMPY_SCRIPT, str(paths["csv"]), f"{out}.np.csv"],
        "ours, CSV → CSV": [*ours, str(paths["csv"]), "-o", f"{out}.csv"],
        "ours, Parquet → Parquet": [*ours, str(paths["parquet"]), "-o", f"{out}.parquet"],
        "ours, CSV → Parquet": [*ours, str(paths["csv"]), "-o", f"{out}.2.parquet"],
    }
    if "jsonl" in paths:
        found["ours, JSONL → JSONL"] = [*ours, str(paths["jsonl"]), "-o", f"{out}.jsonl"]
    if importlib.util.find_spec("torch") is not None:
        found["torch eager + pyarrow, CSV"] = [
            py, "-c", TORCH_SCRIPT, str(paths["csv"]), f"{out}.torch.csv"
        ]  # fmt: skip
    if importlib.util.find_spec("jax") is not None:
        found["jax jit(vmap) + pyarrow, CSV"] = [
            py, "-c", JAX_SCRIPT, str(paths["csv"]), f"{out}.jax.csv"
        ]  # fmt: skip
    found["python -c pass"] = [py, "-c", "pass"]
    return found


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of one fresh process."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        error = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"{cmd[:6]} failed: {error[-400:]}")
    if process.stderr:
        process.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", default="benchmarks/results/points_io.json")
    args = parser.parse_args()
    sizes = [int(s) for s in args.rows.split(",") if s.strip()]
    result: dict[str, Any] = {"machine": machine(), "runs": args.runs, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in sizes:
            paths = write_inputs(folder, n)
            cmds = commands(folder, paths)
            if n > 1_000_000:  # the largest size: ours and the floor only
                keep = ("numpy + pyarrow, CSV", "ours, CSV → CSV", "ours, Parquet → Parquet")
                cmds = {k: v for k, v in cmds.items() if k in keep or k == "python -c pass"}
            for cmd in cmds.values():  # warm-up: bytecode compiled, files in the page cache
                run_once(cmd)
            seconds: dict[str, list[float]] = {k: [] for k in cmds}
            peaks: dict[str, float] = dict.fromkeys(cmds, 0.0)
            for _ in range(args.runs):
                for name, cmd in cmds.items():
                    s, mib = run_once(cmd)
                    seconds[name].append(s)
                    peaks[name] = max(peaks[name], mib)
            medians = {k: statistics.median(v) for k, v in seconds.items()}
            floor = medians["numpy + pyarrow, CSV"]
            start = medians["python -c pass"]
            rows = [
                [name, f"{medians[name]:.2f}", f"{n / medians[name]:,.0f}", f"{peaks[name]:.0f}",
                 f"{medians[name] / floor:.2f}"]
                for name in cmds if name != "python -c pass"
            ]  # fmt: skip
            print(f"\n{n:,} rows ({paths['csv'].stat().st_size / 1e6:.0f} MB of CSV)")
            table(["command", "median s", "rows/s", "peak MiB", "vs numpy + pyarrow"], rows)
            ratios = {f"{k} / numpy + pyarrow, CSV": medians[k] / floor for k in medians}
            parquet = medians["ours, Parquet → Parquet"] - start
            csv_time = medians["ours, CSV → CSV"] - start
            ratios["ours Parquet / ours CSV (above python start-up)"] = parquet / csv_time
            print(
                f"Parquet in and out / CSV in and out, above Python's start-up: "
                f"{parquet / csv_time:.2f}"
            )
            result["sizes"][str(n)] = {
                "seconds": seconds,
                "median_seconds": medians,
                "rows_per_second": {k: n / v for k, v in medians.items()},
                "peak_mib": peaks,
                "ratios": ratios,
            }
            for path in paths.values():
                path.unlink()
    write_json(args.json, result)


if __name__ == "__main__":
    main()
