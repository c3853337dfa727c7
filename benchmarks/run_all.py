"""Run every benchmark in turn, each as a child process with this Python, print their tables,
and gather their JSON into one file. --quick passes smaller sizes and fewer runs to each (a
check that they work, minutes instead of a quarter of an hour; its figures are rougher). A
benchmark that fails is recorded as failed and the others still run.

    python benchmarks/run_all.py [--quick] [--only startup,throughput]
        [--json benchmarks/results/all.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from inprocess import table, write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name: (full arguments, --quick arguments)
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "startup": ([], ["--runs", "3"]),
    "train": ([], ["--runs", "2"]),
    "throughput": ([], ["--points", "100000", "--runs", "3"]),
    "scaling": ([], ["--max-size", "10000", "--runs", "3", "--cli-runs", "2", "--timeout", "10"]),
    "symbolic_mlp": ([], ["--sizes", "5x10,10x30", "--timeout", "30"]),
    "codegen": ([], ["--points", "100000", "--runs", "3"]),
    "points_io": ([], ["--rows", "100000", "--runs", "2"]),
    "dask_points": ([], ["--rows", "100000", "--runs", "2"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated names")
    parser.add_argument("--json", default="benchmarks/results/all.json")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    folder = Path(args.json).resolve().parent

    runs: dict[str, Any] = {}
    for name in chosen:
        full, quick = BENCHMARKS[name]
        out = folder / f"{name}.json"
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(quick if args.quick else full)]
        cmd += ["--json", str(out)]
        shown = " ".join(["python", f"benchmarks/{name}.py", *cmd[2:-2]])
        print(f"\n=== {name}: {shown}", flush=True)
        if out.exists():
            out.unlink()  # so that a failed run cannot pass off an old file as its own
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT)
        seconds = time.perf_counter() - start
        result = json.loads(out.read_text()) if done.returncode == 0 and out.exists() else None
        runs[name] = {
            "command": shown,
            "returncode": done.returncode,
            "seconds": seconds,
            "result": result,
        }

    print("\n=== summary")
    rows = [
        [
            name,
            "ok" if run["returncode"] == 0 else f"failed ({run['returncode']})",
            f"{run['seconds']:.0f}",
        ]
        for name, run in runs.items()
    ]
    table(["benchmark", "status", "wall s"], rows, left=2)
    write_json(args.json, {"quick": args.quick, "benchmarks": runs})
    if any(run["returncode"] != 0 for run in runs.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
