"""Values and gradients of the sigmoid neuron over a partitioned Parquet dataset, three ways
measured in the same run: bp.dask.gradients on a local cluster of two worker processes
(started once, not timed), bp.compile on the whole table in one process, and a plain numpy +
pyarrow script of the same maths written by hand. Two jobs: the mean of every column (the
gradient of the mean, as a full-batch step needs it) and the whole result written as Parquet.

    python benchmarks/dask_points.py [--rows 1000000] [--partitions 8] [--runs 5]
        [--json benchmarks/results/dask_points.json]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from inprocess import median, table, time_calls, write_json

import backprop_cli as bp

NEURON = "1/(1+exp(-(w0*x0+w1*x1+w2)))"
WEIGHTS = {"w0": 2.0, "w1": -3.0, "w2": -3.0}  # fixed; x0 and x1 are the columns
COLUMNS = ["x0", "x1", "w0", "w1", "w2", "value", "d_w0", "d_w1", "d_w2", "d_x0", "d_x1"]

DASK = "bp.dask.gradients, 2 workers"
COMPILE = "bp.compile, one process"
NUMPY = "numpy + pyarrow by hand"


def write_points(folder: Path, rows: int, partitions: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for k, part in enumerate(np.array_split(np.arange(rows), partitions)):
        n = len(part)
        columns = {"x0": rng.standard_normal(n), "x1": rng.standard_normal(n)}
        pq.write_table(pa.table(columns), folder / f"part-{k:03d}.parquet")


def by_hand(source: Path) -> dict[str, np.ndarray]:
    """The neuron and its gradient, written out: s = 1/(1 + e) with e = exp(-z), and
    ds/dz = e/(1 + e)² (not s(1 - s), which cancels where s is near 1)."""
    import pyarrow.parquet as pq

    data = pq.read_table(source)
    x0, x1 = (data.column(c).to_numpy() for c in ("x0", "x1"))
    w0, w1, w2 = WEIGHTS["w0"], WEIGHTS["w1"], WEIGHTS["w2"]
    e = np.exp(-(w0 * x0 + w1 * x1 + w2))
    s = 1 / (1 + e)
    ds = e * s * s
    n = len(x0)
    out = {"x0": x0, "x1": x1, **{k: np.full(n, v) for k, v in WEIGHTS.items()}, "value": s}
    out.update(d_w0=ds * x0, d_w1=ds * x1, d_w2=ds, d_x0=ds * w0, d_x1=ds * w1)
    return out


def hand_mean(source: Path, target: Path) -> Any:
    return {k: float(np.mean(v)) for k, v in by_hand(source).items()}


def hand_write(source: Path, target: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(by_hand(source)), target / "part-0.parquet")


def compiled(source: Path) -> Any:
    import pandas as pd

    data = pd.read_parquet(source)
    value, grads = bp.compile(NEURON)(x0=data["x0"], x1=data["x1"], **WEIGHTS)
    return data, value, grads


def compile_mean(source: Path, target: Path) -> Any:
    data, value, grads = compiled(source)
    means = {k: float(np.mean(data[k].to_numpy())) for k in ("x0", "x1")} | WEIGHTS
    return (
        means
        | {"value": float(np.mean(value))}
        | {f"d_{k}": float(np.mean(g)) for k, g in grads.items()}
    )


def compile_write(source: Path, target: Path) -> None:
    data, value, grads = compiled(source)
    out = data.assign(**{k: np.full(len(data), v) for k, v in WEIGHTS.items()}, value=value)
    out = out.assign(**{f"d_{k}": grads[k] for k in ("w0", "w1", "w2", "x0", "x1")})
    out.to_parquet(target / "part-0.parquet", index=False)


def on_dask(source: Path) -> Any:
    import dask.dataframe as dd

    return bp.dask.gradients(dd.read_parquet(str(source)), NEURON, WEIGHTS)


def dask_mean(source: Path, target: Path) -> Any:
    return on_dask(source).mean().compute().to_dict()


def dask_write(source: Path, target: Path) -> None:
    on_dask(source).to_parquet(str(target), write_index=False)


JOBS = {
    "mean of each column": {DASK: dask_mean, COMPILE: compile_mean, NUMPY: hand_mean},
    "written as Parquet": {DASK: dask_write, COMPILE: compile_write, NUMPY: hand_write},
}


def fresh(work: Path, job: Callable[[Path, Path], Any], source: Path) -> Callable[[], Any]:
    """A call that writes (if it writes) into an empty folder each time."""

    def call() -> Any:
        target = work / "out"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        return job(source, target)

    return call


def same_results(work: Path, source: Path) -> None:
    import pandas as pd

    means = {name: fresh(work, job, source)() for name, job in JOBS["mean of each column"].items()}
    found = {}
    for name, job in JOBS["written as Parquet"].items():
        fresh(work, job, source)()
        found[name] = pd.read_parquet(work / "out")
        assert list(found[name].columns) == COLUMNS, (name, list(found[name].columns))
    for column in COLUMNS:
        mine = found[DASK][column].to_numpy()
        np.testing.assert_array_equal(mine, found[COMPILE][column].to_numpy(), column)
        np.testing.assert_allclose(mine, found[NUMPY][column].to_numpy(), rtol=1e-12, atol=0)
        for name in (COMPILE, NUMPY):
            assert math.isclose(means[DASK][column], means[name][column], rel_tol=1e-12)
    rows = len(found[DASK])
    print(f"checked: {rows:,} rows, dask = bp.compile exactly, = by hand within rtol 1e-12")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/dask_points.json")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        source = work / "points"
        write_points(source, args.rows, args.partitions)
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            local_directory=str(work / "dask"),
        )  # fmt: skip
        with cluster, Client(cluster):
            same_results(work, source)
            samples = {
                job: time_calls({n: fresh(work, f, source) for n, f in calls.items()}, args.runs)
                for job, calls in JOBS.items()
            }
    result = {"expression": NEURON, "rows": args.rows, "partitions": args.partitions,
              "runs": args.runs, "workers": 2}  # fmt: skip
    for job, found in samples.items():
        result[job] = report(job, found, args.rows, args.partitions, args.runs)
    write_json(args.json, result)


def report(job: str, samples: dict[str, list[float]], rows: int, partitions: int, runs: int) -> Any:
    medians = {k: median(v) for k, v in samples.items()}
    print(
        f"\nthe sigmoid neuron's value and 5 gradients, {rows:,} rows in {partitions} Parquet "
        f"files, {job}; median of {runs}"
    )
    table(
        ["candidate", "median s", "Mrows/s"],
        [[k, f"{m:.3f}", f"{rows / m / 1e6:.2f}"] for k, m in medians.items()],
    )
    pairs = [(DASK, COMPILE), (DASK, NUMPY), (COMPILE, NUMPY)]
    ratios = {f"{a} / {b}": medians[a] / medians[b] for a, b in pairs}
    print()
    table(["time ratio (< 1: the first is faster)", "median"],
          [[k, f"{v:.2f}"] for k, v in ratios.items()])  # fmt: skip
    return {"median_seconds": medians, "ratios": ratios, "seconds": samples}


if __name__ == "__main__":
    main()
