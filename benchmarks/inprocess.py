"""Shared by the in-process benchmark scripts: time Python callables, interleaved round by
round so a drift in machine speed hits every candidate alike, print aligned tables, and
write the figures as JSON with a note of the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def time_calls(
    calls: dict[str, Callable[[], object]], runs: int, min_seconds: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each callable, `runs` samples each after one untimed warm-up.
    With `min_seconds`, a sample repeats a fast call until it lasts that long and gives the
    time of one call (the repeat count is fixed by the warm-up)."""
    loops: dict[str, int] = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        once = time.perf_counter() - start
        loops[name] = max(1, int(min_seconds / once) + 1) if once < min_seconds else 1
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            n = loops[name]
            start = time.perf_counter()
            for _ in range(n):
                call()
            samples[name].append((time.perf_counter() - start) / n)
    return samples


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> None:
    """Print rows under headers: the first `left` columns left-aligned, the others right."""
    text = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            f"{c:{w}}" if i < left else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print(line(headers))
    for row in text:
        print(line(row))


def write_json(out: str, result: dict[str, Any]) -> None:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    print(f"\nwritten to {path}")
