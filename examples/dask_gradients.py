"""The squared error of the line w*x + b at every point of a partitioned Parquet dataset, with
its gradient, on a local Dask cluster of two worker processes; the means of the gradient
columns are the gradient of the mean squared error (docs/dask.md).

    python examples/dask_gradients.py [--rows 100000] [--partitions 4] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import backprop_cli as bp

LOSS = "(w*x + b - y)**2"
START = {"w": 2.0, "b": 0.0}  # the line the gradient is taken at


def write_points(folder: Path, rows: int, partitions: int) -> Path:
    """Points of y = 3x + 1 with a little noise, one Parquet file per partition."""
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, rows)
    frame = pd.DataFrame({"id": np.arange(rows), "x": x, "y": 3 * x + 1 + rng.normal(0, 0.1, rows)})
    folder.mkdir(parents=True, exist_ok=True)
    for k, part in enumerate(np.array_split(np.arange(rows), partitions)):
        frame.iloc[part].to_parquet(folder / f"part-{k:03d}.parquet", index=False)
    return folder


def run(folder: Path, rows: int, partitions: int) -> None:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    points = write_points(folder / "points", rows, partitions)
    # Everything on this machine only: the scheduler and workers on 127.0.0.1, no dashboard
    # (the scheduler's small HTTP server on any free port).
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        local_directory=str(folder / "work"),
    )  # fmt: skip
    with cluster, Client(cluster):
        data = dd.read_parquet(str(points))
        out = bp.dask.gradients(data, LOSS, START, wrt=["w", "b"])
        out.to_parquet(str(folder / "gradients"), write_index=False)
        done = dd.read_parquet(str(folder / "gradients"))
        means = done[["value", "d_w", "d_b"]].mean().compute()
    print(f"{rows:,} points in {data.npartitions} partitions, on 2 worker processes")
    print(f"loss {LOSS} at w={START['w']}, b={START['b']}")
    print(f"mean squared error  {means['value']:.4f}")
    print(f"its gradient        d_w {means['d_w']:.4f}, d_b {means['d_b']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--out", help="writes FOLDER/points and FOLDER/gradients (default: a temporary folder)"
    )
    args = parser.parse_args()
    if args.out is not None:
        run(Path(args.out), args.rows, args.partitions)
        print(f"written to {Path(args.out) / 'gradients'}")
        return
    with tempfile.TemporaryDirectory() as folder:
        run(Path(folder), args.rows, args.partitions)


if __name__ == "__main__":
    main()
