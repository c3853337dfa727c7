"""Shared by the benchmark scripts: time whole commands as fresh processes, interleaved
round by round so a drift in machine speed hits every command alike."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

# Installed packages (numpy, sympy, torch) come with compiled bytecode; so does ours once it
# has run. The commands run with bytecode caching on, whatever the shell says, so that the
# warm-up leaves our package compiled as pip leaves the others.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def measure(commands: dict[str, list[str]], runs: int) -> dict[str, list[float]]:
    """Wall seconds per command; one untimed warm-up run of each first."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": ENV}
    for cmd in commands.values():
        subprocess.run(cmd, check=True, **quiet)  # type: ignore[call-overload]
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, **quiet)  # type: ignore[call-overload]
            samples[name].append(time.perf_counter() - start)
    return samples


def report(
    samples: dict[str, list[float]], ratios: list[tuple[str, str]], runs: int, out: str
) -> dict[str, float]:
    """Print the medians and the ratios, and write everything as JSON."""
    medians = {name: statistics.median(times) for name, times in samples.items()}
    width = max(len(name) for name in samples) + 2
    print(f"{'command':{width}} {'median s':>9} {'min s':>7} {'max s':>7}")
    for name, times in samples.items():
        print(f"{name:{width}} {medians[name]:9.3f} {min(times):7.3f} {max(times):7.3f}")
    print()
    found = {f"{a} / {b}": medians[a] / medians[b] for a, b in ratios}
    width = max(len(k) for k in found) + 2
    print(f"{'ratio':{width}} {'median':>7}")
    for key, value in found.items():
        print(f"{key:{width}} {value:7.2f}")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    result = {"machine": machine, "runs": runs, "seconds": samples, "median_seconds": medians}
    path.write_text(json.dumps({**result, "ratios": found}, indent=2) + "\n")
    print(f"\nwritten to {path}")
    return found
