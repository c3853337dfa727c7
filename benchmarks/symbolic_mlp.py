"""SymPy partials of a one-hidden-layer tanh network's squared loss, as `backprop grad`
computes them and as a plain SymPy or SymEngine script would:

    L = (sum_j v_j * tanh(sum_i w_j_i * x_i + b_j) + c - y)**2

for 10 inputs x 30 hidden units and 20 x 50, differentiated with respect to every parameter
(w, b, v and c; not x or y). (a) ours: the loss written as a program in our language and
`symbolic.partials` called as the CLI calls it, unsimplified (formulas, exact values at a
point; a large graph gets its partials written with named intermediates and adjoints, whose
definitions count as printed characters too); where the package has it, also with
expand=True, the expanded formulas, once differentiated by SymPy (BACKPROP_SYMBOLIC=sympy)
and once by SymEngine (BACKPROP_SYMBOLIC=symengine, where it is installed); (b) naive SymPy:
the same expression built from SymPy symbols, one sympy.diff per parameter and str() of each
result; (c) raw SymEngine: the same with symengine.diff and str() (its own text, which is
not SymPy's, and no values). Each runs once, in a child process with a time limit; the
table gives its seconds and the characters it printed, and the ratios between them.

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

if mode.startswith("ours"):
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
    options = {"expand": True} if mode.startswith("ours-expanded") else {}
    messages = []
    start = time.perf_counter()
    symbolic.partials(graph, point, params, False, False, **options, emit=messages.append)
    seconds = time.perf_counter() - start
    backend = next((m["backend"] for m in messages if "backend" in m), "sympy")
    found = [info for m in messages for info in m.get("partials", {}).values()]
    chars = sum(len(info.get("formula", "")) for info in found)
    errors = [info["error"] for info in found if "error" in info]
    for m in messages:  # named intermediates and adjoints: their definitions are printed too
        if m.get("sweep"):
            form = "named"
            for entries in m["sweep"].values():
                chars += sum(len(name) + len(text) for name, text, *_ in entries)
else:
    lib = sp
    if mode == "symengine":
        import symengine as lib
    backend = lib.__name__
    start = time.perf_counter()
    s = {name: lib.Symbol(name) for name in params + xs + ["y"]}
    hidden = [
        lib.tanh(lib.Add(*(s[f"w{j}_{i}"] * s[f"x{i}"] for i in range(1, n_in + 1))) + s[f"b{j}"])
        for j in range(1, n_hidden + 1)
    ]
    out = lib.Add(*(s[f"v{j}"] * h for j, h in enumerate(hidden, 1)))
    loss = (out + s["c"] - s["y"]) ** 2
    chars = sum(len(str(lib.diff(loss, s[name]))) for name in params)
    seconds = time.perf_counter() - start
    errors = []
print(json.dumps({"seconds": seconds, "chars": chars, "form": form, "errors": errors,
                  "backend": backend}))
"""

MODES = {
    "ours": "ours: symbolic.partials",
    "ours-expanded-sympy": "ours: symbolic.partials, expand, SymPy",
    "ours-expanded-symengine": "ours: symbolic.partials, expand, SymEngine",
    "naive": "naive SymPy: diff + str",
    "symengine": "raw SymEngine: diff + str",
}
# Which library each mode is told to differentiate with (BACKPROP_SYMBOLIC).
BACKENDS = {"ours-expanded-sympy": "sympy", "ours-expanded-symengine": "symengine"}
# The ratios printed and written: (numerator, denominator).
RATIOS = [
    ("ours", "naive"),
    ("ours-expanded-sympy", "naive"),
    ("ours-expanded-symengine", "naive"),
    ("ours-expanded-symengine", "ours-expanded-sympy"),
    ("ours-expanded-symengine", "ours"),
    ("ours-expanded-symengine", "symengine"),
    ("symengine", "naive"),
]


def modes() -> dict[str, str]:
    """Ours with its expanded forms too, where this version of the package has them, and
    raw SymEngine where it is installed."""
    import importlib.util

    from backprop_cli.checks import symbolic

    expand = "expand" in inspect.signature(symbolic.partials).parameters
    fast = importlib.util.find_spec("backprop_cli.checks.fast_symbolic") is not None
    engine = importlib.util.find_spec("symengine") is not None
    return {
        k: v
        for k, v in MODES.items()
        if (expand or not k.startswith("ours-expanded"))
        and (fast or k != "ours-expanded-symengine")
        and (engine or k not in ("symengine", "ours-expanded-symengine"))
    }


def one(mode: str, n_in: int, n_hidden: int, timeout: float) -> dict[str, Any]:
    cmd = [PY, "-c", CHILD, mode, str(n_in), str(n_hidden)]
    env = {**ENV, "BACKPROP_SYMBOLIC": BACKENDS.get(mode, "auto")}
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
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


def ratios(entry: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Each ratio of RATIOS whose two modes ran; where the denominator ran over its time
    limit, the bound the ratio stays under."""
    found: dict[str, Any] = {}
    for top, bottom in RATIOS:
        if top not in entry or bottom not in entry:
            continue
        mine, theirs = entry[top]["seconds"], entry[bottom]["seconds"]
        if mine is not None and theirs:
            found[f"{top} / {bottom}"] = mine / theirs
        elif mine is not None and entry[bottom]["note"].startswith("over"):
            found[f"{top} / {bottom}"] = f"< {mine / timeout:.3f}"
    return found


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
            rows.append([label, name, got.get("backend", "-"), partials, seconds, chars, form,
                         note])  # fmt: skip
            print(f"{label}, {name}: done", flush=True)
        entry["ratios"] = ratios(entry, args.timeout)
        results.append(entry)

    print(f"\none run each, in a child process, {args.timeout:g} s limit, unsimplified")
    table(["size", "how", "library", "partials", "seconds", "chars printed", "form", "note"],
          rows, left=3)  # fmt: skip
    lines = [
        [f"{r['inputs']} x {r['hidden']}", key, value if isinstance(value, str) else f"{value:.3f}"]
        for r in results
        for key, value in r["ratios"].items()
    ]
    if lines:
        print()
        table(["size", "time ratio", "value"], lines, left=2)
    write_json(args.json, {"timeout": args.timeout, "sizes": results})


if __name__ == "__main__":
    main()
