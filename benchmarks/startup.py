"""Cold-start latency of every command against the import floor it cannot beat: the
heaviest library it must load (nothing at all for --help).

Each command runs as a fresh process, several times after a warm-up, round by round; the
table gives the median wall time and its ratio to the floors measured in the same run (the
ratio of the medians, and the median of the ratios round by round), and the figures are
written as JSON. These machines are noisy: compare ratios, not absolute times. --busy N
keeps N other processes spinning meanwhile, to see the start-up on a loaded machine.

    python benchmarks/startup.py [--runs 9] [--busy 0] [--json benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from timing import measure, report

PY = sys.executable
BACKPROP = [PY, "-m", "backprop_cli"]
GRAD = [*BACKPROP, "grad", "(x+y)*z", "x=-2", "y=5", "z=-4"]

COMMANDS = {
    "python -c pass": [PY, "-c", "pass"],
    "import typer": [PY, "-c", "import typer"],
    "import numpy": [PY, "-c", "import numpy"],
    "import numpy, plotext": [PY, "-c", "import numpy, plotext"],
    "import sympy": [PY, "-c", "import sympy"],
    "import sympy, numpy": [PY, "-c", "import sympy, numpy"],
    "import torch": [PY, "-c", "import torch"],
    "--help": [*BACKPROP, "--help"],
    "ops": [*BACKPROP, "ops"],
    "graph --format dot": [*BACKPROP, "graph", "(x+y)*z", "x=1", "y=2", "z=3", "--format", "dot"],
    "explain": [*BACKPROP, "explain", "(x*w - y)**2", "x=2", "w=1", "y=4", "--wrt", "w"],
    "train": [*BACKPROP, "train", "linear", "--epochs", "100"],
    "grad": GRAD,
    "grad --no-torch": [*GRAD, "--no-torch"],
    "grad --no-torch --no-symbolic": [*GRAD, "--no-torch", "--no-symbolic"],
}

# (command, its floor): the heaviest library the command must import
RATIOS = [
    ("--help", "python -c pass"),
    ("--help", "import typer"),
    ("ops", "import numpy"),
    ("graph --format dot", "import numpy"),
    ("explain", "import sympy"),
    ("explain", "import sympy, numpy"),
    ("train", "import numpy"),
    ("train", "import numpy, plotext"),  # its loss curve is drawn by plotext
    ("grad", "import torch"),
    ("grad --no-torch", "import sympy"),
    ("grad --no-torch", "import sympy, numpy"),
    ("grad --no-torch --no-symbolic", "import numpy"),
]

SPIN = "while True: pass"


def paired(samples: dict[str, list[float]]) -> dict[str, float]:
    """The median of the ratios round by round: each pair ran moments apart."""
    return {
        f"{a} / {b}": statistics.median(x / y for x, y in zip(samples[a], samples[b], strict=True))
        for a, b in RATIOS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--busy", type=int, default=0, help="processes kept spinning meanwhile")
    parser.add_argument("--json", default="benchmarks/results/startup.json")
    args = parser.parse_args()
    spinners = [subprocess.Popen([PY, "-c", SPIN]) for _ in range(args.busy)]
    try:
        samples = measure(COMMANDS, args.runs)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    report(samples, RATIOS, args.runs, args.json)
    round_by_round = paired(samples)
    width = max(len(k) for k in round_by_round) + 2
    print(f"\n{'ratio, round by round':{width}} {'median':>7}")
    for key, value in round_by_round.items():
        print(f"{key:{width}} {value:7.2f}")
    path = Path(args.json)
    result = json.loads(path.read_text())
    result.update(busy=args.busy, paired_ratios=round_by_round)
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
