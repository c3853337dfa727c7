"""Cold-start latency of `backprop grad` against the import floors it cannot beat.

Each command runs as a fresh process, several times after a warm-up; the table gives the
median wall time and its ratio to the floors measured in the same run, and the figures are
written as JSON. These machines are noisy: compare ratios, not absolute times.

    python benchmarks/startup.py [--runs 9] [--json benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PY = sys.executable
BACKPROP = [PY, "-m", "backprop_cli"]
GRAD = [*BACKPROP, "grad", "(x+y)*z", "x=-2", "y=5", "z=-4"]

COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    "import numpy": [PY, "-c", "import numpy"],
    "import sympy": [PY, "-c", "import sympy"],
    "import sympy, numpy": [PY, "-c", "import sympy, numpy"],
    "import torch": [PY, "-c", "import torch"],
    "grad": GRAD,
    "grad --no-torch": [*GRAD, "--no-torch"],
    "grad --no-torch --no-symbolic": [*GRAD, "--no-torch", "--no-symbolic"],
}

RATIOS = [
    ("grad", "import torch"),
    ("grad --no-torch", "import sympy"),
    ("grad --no-torch", "import sympy, numpy"),
    ("grad --no-torch --no-symbolic", "import numpy"),
]


def measure(cmd: list[str], runs: int) -> list[float]:
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i:  # the first run only warms the file cache
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", default="benchmarks/results/startup.json")
    args = parser.parse_args()

    # Interleave the commands round by round so drift in machine speed hits all of them.
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            samples[name] += measure(cmd, 1)
    medians = {name: statistics.median(times) for name, times in samples.items()}

    print(f"{'command':34} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, times in samples.items():
        print(f"{name:34} {medians[name]:9.3f} {min(times):7.3f} {max(times):7.3f}")
    print()
    print(f"{'ratio':58} {'median':>7}")
    ratios = {}
    for a, b in RATIOS:
        ratios[f"{a} / {b}"] = medians[a] / medians[b]
        print(f"{a + ' / ' + b:58} {medians[a] / medians[b]:7.2f}")

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "runs": args.runs,
                "seconds": samples,
                "median_seconds": medians,
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
