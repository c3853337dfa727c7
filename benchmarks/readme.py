"""README's Performance section, made from the JSON the benchmarks write (run_all.py, or each
script alone, into benchmarks/results/): every goal, the figure measured against the
baseline of the same run, and the command that measures it. The section lies between two
marker comments in README.md and is replaced whole; a figure whose benchmark has not been
run reads "not measured".

    python benchmarks/readme.py [--results benchmarks/results] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

START = "<!-- performance: made by python benchmarks/readme.py -->"
END = "<!-- /performance -->"


def _points(key: str, size: str = "1000000") -> Callable[[dict[str, Any]], str]:
    def get(d: dict[str, Any]) -> str:
        return f"{d['sizes'][size]['ratios'][key]:.2f}×"

    return get


def _rate(size: str) -> Callable[[dict[str, Any]], str]:
    def get(d: dict[str, Any]) -> str:
        found = d["sizes"][size]
        csv, parquet = "ours, CSV → CSV", "ours, Parquet → Parquet"
        return (
            f"CSV {found['rows_per_second'][csv]:,.0f} rows/s ({found['peak_mib'][csv]:.0f} MiB); "
            f"Parquet {found['rows_per_second'][parquet]:,.0f} rows/s "
            f"({found['peak_mib'][parquet]:.0f} MiB)"
        )

    return get


def _startup(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda d: f"{d['paired_ratios'][key]:.2f}×"


def _large(index: int, field: str, unit: str) -> Callable[[dict[str, Any]], str]:
    def get(d: dict[str, Any]) -> str:
        row = d["large_programs"]["sizes"][index]
        return f"{row[field]:.0f} {unit} at {row['nodes']:,} nodes"

    return get


def _symbolic(d: dict[str, Any]) -> str:
    entry = next(e for e in d["sizes"] if (e["inputs"], e["hidden"]) == (10, 30))
    mine, naive = entry["ours-expanded-symengine"]["seconds"], entry["naive"]["seconds"]
    return f"{mine:.2f} s (naive SymPy {naive:.1f} s)"


def _dask(d: dict[str, Any]) -> str:
    job = next(k for k in d if isinstance(d[k], dict) and "ratios" in d[k])
    ratio = next(v for k, v in d[job]["ratios"].items() if "compile" in k.split(" / ")[1])
    return f"{ratio:.1f}× `bp.compile` in one process ({job})"


def _all(*parts: tuple[str, Callable[[dict[str, Any]], str]]) -> Callable[[dict[str, Any]], str]:
    """Several figures of one benchmark, each with its label, in one cell."""
    return lambda d: "; ".join(f"{label} {figure(d)}" for label, figure in parts)


# (what, goal, benchmark file, figure)
ROWS: list[tuple[str, str, str, Callable[[dict[str, Any]], str]]] = [
    ("`grad --points`, CSV in and out, / a numpy + pyarrow script", "≤ 1.2×", "points_io",
     _all(("10⁶ rows", _points("ours, CSV → CSV / numpy + pyarrow, CSV")),
          ("10⁷ rows", _points("ours, CSV → CSV / numpy + pyarrow, CSV", "10000000")),
          ("torch eager", _points("torch eager + pyarrow, CSV / numpy + pyarrow, CSV")),
          ("jax jit(vmap)", _points("jax jit(vmap) + pyarrow, CSV / numpy + pyarrow, CSV")),
          ("JSON lines", _points("ours, JSONL → JSONL / numpy + pyarrow, CSV")))),
    ("Parquet in and out / CSV in and out", "≤ 0.5×", "points_io",
     _points("ours Parquet / ours CSV (above python start-up)")),
    ("Rows per second, peak memory", "", "points_io",
     _all(("10⁶:", _rate("1000000")), ("10⁷:", _rate("10000000")))),
    ("Start-up / the heaviest import each needs", "≤ 1.5× (grad ≤ 1.15×)", "startup",
     _all(("`--help`", _startup("--help / python -c pass")),
          ("`ops`", _startup("ops / import numpy")),
          ("`graph`", _startup("graph --format dot / import numpy")),
          ("`explain`", _startup("explain / import sympy")),
          ("`train`", _startup("train / import numpy, plotext")),
          ("`grad`", _startup("grad / import torch")))),
    ("Large programs", "≤ 40 and ≤ 100 µs/node; < 15 s", "scaling",
     _all(("checks off", _large(0, "checks_off_us_per_node", "µs/node")),
          ("default checks", _large(0, "default_us_per_node", "µs/node")),
          ("whole command", _large(-1, "default_seconds", "s")))),
    ("10×30 MLP partials, `--expand`", "≤ 1.5 s", "symbolic_mlp", _symbolic),
    ("`bp.dask.gradients`, 2 workers, 10⁶ rows", "", "dask_points", _dask),
]  # fmt: skip


def section(results: Path) -> str:
    lines = [
        START,
        "## Performance",
        "",
        "Ratios to baselines measured in the same run by `python benchmarks/run_all.py`; "
        "[Performance](docs/performance.md) has the tables.",
        "",
        "| What | Goal | Measured | Benchmark |",
        "|---|---|---|---|",
    ]
    for what, goal, name, figure in ROWS:
        path = results / f"{name}.json"
        try:
            measured = figure(json.loads(path.read_text()))
        except (OSError, KeyError, IndexError, TypeError, ValueError, StopIteration):
            measured = "not measured"
        lines.append(f"| {what} | {goal} | {measured} | `benchmarks/{name}.py` |")
    lines.append(END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="benchmarks/results")
    parser.add_argument("--readme", default="README.md")
    args = parser.parse_args()
    readme = Path(args.readme)
    text = readme.read_text()
    made = section(Path(args.results))
    if START in text:
        head, rest = text.split(START, 1)
        text = head + made + rest.split(END, 1)[1]
    else:
        head, rest = text.split("\n## Documentation", 1)
        text = head + "\n" + made + "\n\n## Documentation" + rest
    readme.write_text(text)
    print(made)


if __name__ == "__main__":
    main()
