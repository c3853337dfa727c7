"""How the engine's cost grows with the size of the graph: generated programs of about 10², 10³,
10⁴ and 10⁵ nodes over three variables, each statement building on the one before it
(t1 = sin(x*t0) + y; t2 = t1*x - z; t3 = tanh(t2 + z)*y; ...). Every intermediate is used
once, so the expression is a tree and SymPy has no shared subexpression to swell: the
friendliest shape for it; x, y and z each appear in two statements of every three.

For each size, at one point and in this process: parse, forward (engine.evaluate), forward
and backward (engine.evaluate + engine.backward), and engine.run (forward, backward and the
notes a report needs), with the ratio of gradient to forward time (reverse mode promises a
small constant) and the time per node (flat when the growth is linear). Then the whole
`backprop grad --file ... --no-torch --no-symbolic --format json` as a fresh process, and the
SymPy partials for the smaller sizes, each in a child process with a time limit: the
expanded formulas of a bare sympy.diff, and symbolic.partials as the CLI calls it
(unsimplified).

Last, the goals for large programs, from 10⁴ nodes on: the whole `backprop grad --file`
with its table, per node above start-up (the same command on the program `x`) with the
checks off, and per node above `python -c "import torch"` with the default checks; and the
total time of the largest size with the default checks. These machines are noisy: compare
ratios, not absolute times.

    python benchmarks/scaling.py [--max-size 100000] [--runs 5] [--cli-runs 3]
        [--symbolic-max 1000] [--timeout 60] [--json benchmarks/results/scaling.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from inprocess import median, table, time_calls, write_json
from timing import ENV, measure

from backprop_cli.core import engine
from backprop_cli.core.graph import Graph
from backprop_cli.core.parse import DEFAULT_LIMITS, Limits, parse

PY = sys.executable
POINT = {"x": 0.7, "y": -0.3, "z": 0.4}
TEMPLATES = [
    "t{k} = sin(x*t{a}) + y",
    "t{k} = t{a}*x - z",
    "t{k} = tanh(t{a} + z)*y",
]

# argv: mode, program file, point (JSON), max length. Prints one JSON line when done. "naive":
# the expanded formulas SymPy gives for our graph (built node by node, sympy.diff, printed);
# "ours": symbolic.partials as the CLI calls it, unsimplified (above a size it writes the
# partials with named intermediates and adjoints, whose definitions count as printed too).
SYMBOLIC_CHILD = """\
import json, sys, time
import sympy as sp  # imported before the clock starts, as the CLI's worker has it
from backprop_cli.checks import symbolic
from backprop_cli.core.parse import Limits, parse

mode = sys.argv[1]
graph = parse(open(sys.argv[2]).read(), limits=Limits(max_length=int(sys.argv[4])))
point = json.loads(sys.argv[3])
names = sorted(graph.variables)
form, errors = "expanded", []
start = time.perf_counter()
try:
    if mode == "naive":
        built = symbolic.to_sympy(graph, sp)
        out = built.nodes[graph.output]
        chars = sum(
            len(sp.sstr(sp.diff(out, built.nodes[graph.variables[n]]).xreplace(built.shown)))
            for n in names
        )
    else:
        messages = []
        symbolic.partials(graph, point, names, False, False, emit=messages.append)
        found = [info for m in messages for info in m.get("partials", {}).values()]
        errors = [info["error"] for info in found if "error" in info]
        chars = sum(len(info.get("formula", "")) for info in found)
        for m in messages:
            if m.get("sweep"):
                form = "named"
                for entries in m["sweep"].values():
                    chars += sum(len(name) + len(text) for name, text, *_ in entries)
except RecursionError:
    chars, errors = None, ["RecursionError: too deep for SymPy"]
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "chars": chars, "form": form, "errors": errors}))
"""

SYMBOLIC_MODES = {"naive": "naive: sympy.diff", "ours": "ours: symbolic.partials"}

# Large programs: µs per node above the baseline, and seconds in all at 10⁵ nodes.
GOALS = {"checks_off_us_per_node": 40.0, "default_us_per_node": 100.0, "default_seconds": 15.0}
GOAL_FROM = 10_000  # sizes the goals are measured at
BASELINES = {
    "start-up": [PY, "-m", "backprop_cli", "grad", "x", "x=1", "--no-torch", "--no-symbolic"],
    "import torch": [PY, "-c", "import torch"],
}


def program(statements: int) -> str:
    lines = ["t0 = x*y"]
    for k in range(1, statements + 1):
        lines.append(TEMPLATES[(k - 1) % 3].format(k=k, a=k - 1))
    return "\n".join(lines) + "\n"


def sized(target: int) -> tuple[str, int]:
    """A program of about `target` nodes, and its statement count."""
    small, large = (len(parse(program(k)).nodes) for k in (30, 60))
    per = (large - small) / 30
    statements = max(1, round((target - (small - 30 * per)) / per))
    return program(statements), statements + 1


def engine_calls(
    source: str, limits: Limits, graph: Graph, env: dict[str, Any]
) -> dict[str, Callable[[], object]]:
    def forward_backward() -> object:
        return engine.backward(graph, engine.evaluate(graph, env))

    return {
        "parse": lambda: parse(source, limits=limits),
        "forward": lambda: engine.evaluate(graph, env),
        "forward+backward": forward_backward,
        "engine.run": lambda: engine.run(graph, env),
    }


def symbolic_time(mode: str, path: Path, max_length: int, timeout: float) -> dict[str, Any]:
    """Seconds and printed characters; None where it ran over or failed."""
    cmd = [PY, "-c", SYMBOLIC_CHILD, mode, str(path), json.dumps(POINT), str(max_length)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "chars": None, "note": f"over {timeout:g} s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"seconds": None, "chars": None, "note": f"failed: {last[:100]}"}
    found: dict[str, Any] = json.loads(done.stdout)
    errors = found.pop("errors")
    found["note"] = "; ".join(dict.fromkeys(e[:60] for e in errors))
    if found["chars"] is None:
        found["seconds"] = None
    return found


def goal_commands(
    path: Path, nodes: int, values: list[str], extra: list[str]
) -> dict[str, list[str]]:
    """The whole command with its table: checks off, and the default checks."""
    cmd = [PY, "-m", "backprop_cli", "grad", "--file", str(path), *values, *extra]
    return {f"{nodes} off": [*cmd, "--no-torch", "--no-symbolic"], f"{nodes} default": cmd}


def goals(samples: dict[str, list[float]], sizes: list[dict[str, Any]]) -> dict[str, Any]:
    """µs per node above each baseline, the largest size's total, and each against its goal."""
    base = {name: median(samples[name]) for name in BASELINES}
    rows = []
    for s in sizes:
        nodes = s["nodes"]
        if f"{nodes} off" not in samples:
            continue
        off, default = median(samples[f"{nodes} off"]), median(samples[f"{nodes} default"])
        rows.append(
            {
                "nodes": nodes,
                "checks_off_seconds": off,
                "default_seconds": default,
                "checks_off_us_per_node": (off - base["start-up"]) / nodes * 1e6,
                "default_us_per_node": (default - base["import torch"]) / nodes * 1e6,
            }
        )
    ratios: dict[str, float] = {}
    for row in rows:
        for key in ("checks_off_us_per_node", "default_us_per_node"):
            ratios[f"{key} at {row['nodes']}"] = row[key] / GOALS[key]
    if rows:
        ratios[f"default_seconds at {rows[-1]['nodes']}"] = (
            rows[-1]["default_seconds"] / GOALS["default_seconds"]
        )
    return {
        "seconds": samples,
        "baseline_seconds": base,
        "goals": GOALS,
        "sizes": rows,
        "ratio_to_goal": ratios,
    }


def print_goals(found: dict[str, Any], runs: int) -> None:
    base = found["baseline_seconds"]
    print(
        f"\nlarge programs: backprop grad --file with its table (fresh process, median of "
        f"{runs}); above start-up ({base['start-up']:.3f} s) with the checks off, above "
        f"import torch ({base['import torch']:.3f} s) with the default checks"
    )
    rows = [
        [
            f"{row['nodes']:,}",
            f"{row['checks_off_seconds']:.3f}",
            f"{row['checks_off_us_per_node']:.1f}",
            f"{row['default_seconds']:.3f}",
            f"{row['default_us_per_node']:.1f}",
        ]
        for row in found["sizes"]
    ]
    table(["nodes", "off s", "off µs/node", "default s", "default µs/node"], rows)
    print("\nagainst the goals (measured / goal; at most 1 meets it)")
    table(["figure", "ratio"], [[k, f"{v:.2f}"] for k, v in found["ratio_to_goal"].items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", type=int, default=100_000, help="largest target (nodes)")
    parser.add_argument("--runs", type=int, default=5, help="samples of each in-process time")
    parser.add_argument("--cli-runs", type=int, default=3, help="samples of each CLI run")
    parser.add_argument("--symbolic-max", type=int, default=1000, help="largest SymPy size")
    parser.add_argument("--timeout", type=float, default=60.0, help="SymPy seconds per size")
    parser.add_argument("--json", default="benchmarks/results/scaling.json")
    args = parser.parse_args()
    targets = [10**e for e in range(2, 6) if 10**e <= args.max_size]
    env = {name: np.float64(v) for name, v in POINT.items()}
    values = [f"{name}={v}" for name, v in POINT.items()]

    sizes: list[dict[str, Any]] = []
    cli: dict[str, list[str]] = {}
    large: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            source, statements = sized(target)
            max_length = max(DEFAULT_LIMITS.max_length, len(source))
            limits = Limits(max_length=max_length)
            graph = parse(source, limits=limits)
            nodes = len(graph.nodes)
            path = Path(tmp) / f"scaling_{target}.bp"
            path.write_text(source)
            trace = engine.run(graph, env)
            out = float(trace.values[graph.output])
            assert np.isfinite(out), f"{target}: the output is {out}"

            samples = time_calls(engine_calls(source, limits, graph, env), args.runs, 0.1)
            medians = {k: median(v) for k, v in samples.items()}
            sizes.append(
                {
                    "target": target,
                    "nodes": nodes,
                    "statements": statements,
                    "chars": len(source),
                    "seconds": samples,
                    "median_seconds": medians,
                    "gradient_over_forward": medians["forward+backward"] / medians["forward"],
                    "run_over_forward": medians["engine.run"] / medians["forward"],
                    "us_per_node": {k: v / nodes * 1e6 for k, v in medians.items()},
                }
            )
            cmd = [PY, "-m", "backprop_cli", "grad", "--file", str(path), *values]
            cmd += ["--no-torch", "--no-symbolic", "--format", "json"]
            if len(source) > DEFAULT_LIMITS.max_length:
                cmd += ["--max-length", str(max_length)]
            cli[str(nodes)] = cmd
            if target >= GOAL_FROM:
                extra = cmd[cmd.index("--max-length") :] if "--max-length" in cmd else []
                large.update(goal_commands(path, nodes, values, extra))
            if target <= args.symbolic_max:
                sizes[-1]["symbolic"] = {
                    mode: symbolic_time(mode, path, max_length, args.timeout)
                    for mode in SYMBOLIC_MODES
                }
            print(f"{nodes:,} nodes: done", flush=True)
        cli_samples = measure(cli, args.cli_runs)
        large_samples = measure({**BASELINES, **large}, args.cli_runs) if large else {}

    print(f"\nin-process, median of {args.runs} (µs/node: median time / nodes)")
    rows = []
    for s in sizes:
        m, per = s["median_seconds"], s["us_per_node"]
        rows.append(
            [
                f"{s['nodes']:,}",
                f"{m['parse']:.4f}",
                f"{m['forward']:.4f}",
                f"{m['forward+backward']:.4f}",
                f"{m['engine.run']:.4f}",
                f"{s['gradient_over_forward']:.2f}",
                f"{s['run_over_forward']:.2f}",
                f"{per['parse']:.1f}",
                f"{per['forward']:.1f}",
                f"{per['forward+backward']:.1f}",
                f"{per['engine.run']:.1f}",
            ]
        )
    table(
        [
            "nodes",
            "parse s",
            "fwd s",
            "fwd+bwd s",
            "run s",
            "grad/fwd",
            "run/fwd",
            "parse µs/n",
            "fwd µs/n",
            "f+b µs/n",
            "run µs/n",
        ],
        rows,
    )

    print(f"\nbackprop grad --file (fresh process, median of {args.cli_runs} after a warm-up)")
    first = sizes[0]["nodes"]
    first_s = median(cli_samples[str(first)])
    rows = []
    for s in sizes:
        times = cli_samples[str(s["nodes"])]
        s["cli_seconds"] = times
        s["cli_median_seconds"] = median(times)
        extra = s["nodes"] - first
        marginal = (median(times) - first_s) / extra * 1e6 if extra else None
        s["cli_marginal_us_per_node"] = marginal
        rows.append(
            [
                f"{s['nodes']:,}",
                f"{median(times):.3f}",
                f"{min(times):.3f}",
                f"{max(times):.3f}",
                "-" if marginal is None else f"{marginal:.1f}",
            ]
        )
    table(["nodes", "median s", "min s", "max s", f"µs/node above {first:,}"], rows)

    with_symbolic = [s for s in sizes if "symbolic" in s]
    if with_symbolic:
        print(
            f"\nSymPy partials, unsimplified, one run each in a child process ({args.timeout:g} s "
            "limit);\nchars: the printed partials, with the definitions of any named "
            "intermediates and adjoints"
        )
        rows = []
        for s in with_symbolic:
            for mode, entry in s["symbolic"].items():
                seconds = "-" if entry["seconds"] is None else f"{entry['seconds']:.2f}"
                chars = "-" if entry["chars"] is None else f"{entry['chars']:,}"
                note = entry["note"] if entry["seconds"] is None else ""
                seconds = note if note.startswith("over") else seconds
                note = "" if note.startswith("over") else note
                form = entry.get("form", "-") if entry["seconds"] is not None else "-"
                rows.append([f"{s['nodes']:,}", SYMBOLIC_MODES[mode], seconds, chars, form, note])
        table(["nodes", "how", "seconds", "chars", "form", "note"], rows, left=2)

    found = goals(large_samples, sizes) if large else None
    if found is not None:
        print_goals(found, args.cli_runs)

    write_json(
        args.json,
        {
            "large_programs": found,
            "point": POINT,
            "templates": TEMPLATES,
            "runs": args.runs,
            "cli_runs": args.cli_runs,
            "symbolic_timeout": args.timeout,
            "sizes": sizes,
        },
    )


if __name__ == "__main__":
    main()
