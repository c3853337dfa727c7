"""SymPy partials of a one-hidden-layer tanh network's squared loss, as `backprop grad`
computes them and as a plain SymPy script would:

    L = (sum_j v_j * tanh(sum_i w_j_i * x_i + b_j) + c - y)**2

for 10 inputs x 30 hidden units and 20 x 50, differentiated with respect to every parameter
(w, b, v and c; not x or y). (a) ours: the loss written as a program in our language and
`symbolic.partials` called as the CLI calls it, unsimplified (formulas, exact values at a
point; a large graph gets its partials written with named intermediates and adjoints, whose
definitions count as printed characters too); where the package has it, also with
expand=True, the expanded formulas; (b) naive SymPy: the same expression built from SymPy
symbols, one sympy.diff per parameter and str() of each result. Each runs once, in a child
process with a time limit; the table gives its seconds and the characters it printed.

    python benchmarks/symbolic_mlp.py [--timeout 120] [--sizes 10x30,20x50]
        [--json benchmarks/results/symbolic_mlp.json]
"""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import time
from typing import Any

from inprocess import table, write_json
from timing import ENV

PY = sys.executable

# argv: mode (ours or naive), inputs, hidden units. Prints one JSON line when done.
CHILD = """\
import json, sys, time
import numpy as np
import sympy as sp  # imported before the clock starts, as the CLI's worker has it
from backprop_cli.checks import symbolic
from backprop_cli.core.parse import parse

mode, n_in, n_hidden = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
form = "expanded"
xs = [f"x{i}" for i in range(1, n_in + 1)]
params = [f"w{j}_{i}" for j in range(1, n_hidden + 1) for i in range(1, n_in + 1)]
params += [f"b{j}" for j in range(1, n_hidden + 1)]
params += [f"v{j}" for j in range(1, n_hidden + 1)] + ["c"]

if mode == "ours":
    lines = [
        f"h{j} = tanh(" + " + ".join(f"w{j}_{i}*x{i}" for i in range(1, n_in + 1)) + f" + b{j})"
        for j in range(1, n_hidden + 1)
    ]
    lines.append(
        "L = (" + " + ".join(f"v{j}*h{j}" for j in range(1, n_hidden + 1)) + " + c - y)**2"
    )
    graph = parse("\\n".join(lines))
    rng = np.random.default_rng(0)
    point = {name: round(float(rng.standard_normal()) * 0.5, 3) for name in sorted(graph.variables)}
    options = {"expand": True} if mode == "ours-expanded" else {}
    messages = []
    start = time.perf_counter()
    symbolic.partials(graph, point, params, False, False, **options, emit=messages.append)
    seconds = time.perf_counter() - start
    found = [info for m in messages for info in m.get("partials", {}).values()]
    chars = sum(len(info.get("formula", "")) for info in found)
    errors = [info["error"] for info in found if "error" in info]
    for m in messages:  # named intermediates and adjoints: their definitions are printed too
        if m.get("sweep"):
            form = "named"
            for entries in m["sweep"].values():
                chars += sum(len(name) + len(text) for name, text, *_ in entries)
else:
    start = time.perf_counter()
    s = {name: sp.Symbol(name) for name in params + xs + ["y"]}
    hidden = [
        sp.tanh(sp.Add(*(s[f"w{j}_{i}"] * s[f"x{i}"] for i in range(1, n_in + 1))) + s[f"b{j}"])
        for j in range(1, n_hidden + 1)
    ]
    out = sp.Add(*(s[f"v{j}"] * h for j, h in enumerate(hidden, 1)))
    loss = (out + s["c"] - s["y"]) ** 2
    chars = sum(len(str(sp.diff(loss, s[name]))) for name in params)
    seconds = time.perf_counter() - start
    errors = []
print(json.dumps({"seconds": seconds, "chars": chars, "form": form, "errors": errors}))
"""

MODES = {
    "ours": "ours: symbolic.partials",
    "ours-expanded": "ours: symbolic.partials, expand",
    "naive": "naive SymPy: diff + str",
}


def modes() -> dict[str, str]:
    """Ours with its expanded form too, where this version of the package has one."""
    from backprop_cli.checks import symbolic

    expand = "expand" in inspect.signature(symbolic.partials).parameters
    return {k: v for k, v in MODES.items() if expand or k != "ours-expanded"}


def one(mode: str, n_in: int, n_hidden: int, timeout: float) -> dict[str, Any]:
    cmd = [PY, "-c", CHILD, mode, str(n_in), str(n_hidden)]
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    except subprocess.TimeoutExpired:
        return {"seconds": None, "chars": None, "note": f"over {timeout:g} s"}
    wall = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"seconds": None, "chars": None, "note": f"failed: {last[:100]}"}
    found = json.loads(done.stdout)
    errors = found.pop("errors")
    note = f"{len(errors)} partials failed: {errors[0][:60]}" if errors else ""
    return {**found, "wall_seconds": wall, "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement")
    parser.add_argument("--sizes", default="10x30,20x50", help="inputs x hidden units, ...")
    parser.add_argument("--json", default="benchmarks/results/symbolic_mlp.json")
    args = parser.parse_args()
    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]

    results: list[dict[str, Any]] = []
    rows = []
    for n_in, n_hidden in sizes:
        label = f"{n_in} x {n_hidden}"
        entry: dict[str, Any] = {"inputs": n_in, "hidden": n_hidden}
        for mode, name in modes().items():
            got = one(mode, n_in, n_hidden, args.timeout)
            entry[mode] = got
            seconds = got["note"] if got["seconds"] is None else f"{got['seconds']:.2f}"
            chars = "-" if got["chars"] is None else f"{got['chars']:,}"
            note = got["note"] if got["seconds"] is not None else ""
            partials = n_in * n_hidden + 2 * n_hidden + 1
            form = got.get("form", "-")
            rows.append([label, name, partials, seconds, chars, form, note])
            print(f"{label}, {name}: done", flush=True)
        entry["ratios"] = {}
        naive = entry["naive"]["seconds"]
        for mode in entry.keys() & MODES.keys() - {"naive"}:
            ours = entry[mode]["seconds"]
            if ours is not None and naive:
                entry["ratios"][f"{mode} / naive"] = ours / naive
            elif ours is not None:  # naive ran over: the ratio is at most this
                entry["ratios"][f"{mode} / naive"] = f"< {ours / args.timeout:.3f}"
        results.append(entry)

    print(f"\none run each, in a child process, {args.timeout:g} s limit, unsimplified")
    table(["size", "how", "partials", "seconds", "chars printed", "form", "note"], rows, left=2)
    ratios = [
        [f"{r['inputs']} x {r['hidden']}", key, value if isinstance(value, str) else f"{value:.3f}"]
        for r in results
        for key, value in sorted(r["ratios"].items())
    ]
    if ratios:
        print()
        table(["size", "time ratio", "value"], ratios, left=2)
    write_json(args.json, {"timeout": args.timeout, "sizes": results})


if __name__ == "__main__":
    main()
