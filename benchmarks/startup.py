"""Cold-start latency of `backprop grad` against the import floors it cannot beat.

Each command runs as a fresh process, several times after a warm-up; the table gives the
median wall time and its ratio to the floors measured in the same run, and the figures are
written as JSON. These machines are noisy: compare ratios, not absolute times.

    python benchmarks/startup.py [--runs 9] [--json benchmarks/results/startup.json]
"""

from __future__ import annotations

import argparse
import sys

from timing import measure, report

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", default="benchmarks/results/startup.json")
    args = parser.parse_args()
    report(measure(COMMANDS, args.runs), RATIOS, args.runs, args.json)


if __name__ == "__main__":
    main()
