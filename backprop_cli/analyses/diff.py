"""The `diff` job: the derivatives of a program as formulas, no point needed, simplified
within a budget and checked against the engine at a few random points.

SymPy works in a bounded child (checks/sandbox), which streams what it has: the function,
each derivative as differentiated, its exact values at the points, the rules applied node
by node (with `steps`) and the simplified forms. A budget that runs out during
simplification leaves the differentiated forms, and the result says so; one that runs out
before every derivative is differentiated is a BackpropError. The engine's side of the
check is inside the same budget: its cost is estimated from the graph before it runs (and the
check skipped, saying why, when it would take more than its share), the search for points
stops at that share on the clock, and SymPy gets what is left. Plain data in, plain data
out (the JSON of `backprop diff`); nothing here prints.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..checks import compare
from ..checks.sandbox import Bounded, Deadline
from ..core import engine, shapes
from ..core.errors import BackpropError
from ..core.parse import Program
from .point import resolve_wrt

CHECK_POINTS = 3  # random points the formulas are checked at
MAX_TRIES = 60  # random points tried to find them
# Where the points are drawn, in turn: around 0, then positive only (log, sqrt), then wider.
RANGES = ((-2.0, 2.0), (0.1, 2.0), (-5.0, 5.0))
DIGITS = 3  # decimals of each coordinate, so the points read well in the output
# A point where the engine's gradient moves by more than this fraction under rounding
# (a cancellation) says little about the formula: another is drawn.
CONDITION = 1e-8
SECOND_ORDER_TOLERANCE = (1e-6, 1e-9)  # the Hessian's sweep on dual numbers rounds more
MEMORY_MB = 2048
# The engine's check (its gradient or Hessian at the random points) is charged to the
# command's one budget (--symbolic-timeout) and may take at most this share of it; a graph
# whose estimated check cost is more is not checked, and the result says why.
ENGINE_SHARE = 0.25
# The estimate, in seconds: a scalar graph's sweep costs about NODE_SECONDS a node (Python's
# overhead per op dominates); each try at a point is SWEEPS_PER_TRY of them (engine.run's
# forward and backward, engine.spread's on perturbed copies). The Hessian adds, per batch of
# columns (higher.hessian), a forward and a reverse sweep on duals, DUAL_FACTOR times as
# dear a node, and ELEMENT_SECONDS per element of those batched arrays.
NODE_SECONDS = 8e-6
SWEEPS_PER_TRY = 4
DUAL_FACTOR = 4
ELEMENT_SECONDS = 2e-9


def differentiate(
    program: Program,
    wrt: list[str] | None = None,
    order: int = 1,
    simplify: bool = True,
    timeout: float = 5.0,
    steps: bool = False,
    *,
    points: int = CHECK_POINTS,
    seed: int = 0,
    memory_mb: int = MEMORY_MB,
) -> dict[str, Any]:
    """The derivatives of the program's output by each variable in `wrt` (default: all),
    of first or second `order` (the Hessian's upper triangle for several variables), as a
    plain-data result (docs/diff.md shows it). User errors raise BackpropError."""
    graph = program.graph
    if order not in (1, 2):
        raise BackpropError(f"--order is 1 or 2, not {order}")
    if not graph.variables:
        raise BackpropError(
            f"{graph.label(graph.output)!r} has no variables, so there is nothing to "
            "differentiate by",
            hint='write it in a variable: backprop diff "x**2*sin(x)"',
        )
    _check_scalar(graph)
    chosen = resolve_wrt(graph, wrt)
    from ..checks import symbolic

    pairs = symbolic.derivative_pairs(chosen, order)
    # One deadline for the command: the engine's search for points is charged to it too.
    deadline = Deadline(timeout)
    started = deadline.start() - timeout
    share = ENGINE_SHARE * timeout
    skipped = _too_dear(graph, chosen, order, points, share, timeout) if points > 0 else None
    search: dict[str, Any] = {"found": [], "tries": 0, "out_of_time": False}
    if skipped is None:
        search = _sample_points(graph, chosen, pairs, order, points, seed, stop=started + share)
    found = search["found"]
    job = Bounded(
        symbolic.diff_forms,
        (graph, chosen, order, simplify, steps, [p["point"] for p in found]),
        deadline=deadline,
        memory_mb=memory_mb,
    )
    got = _collect(job)
    if got["output"] is None or len(got["raw"]) < len(pairs):
        raise _unfinished(job, got, timeout)
    names = got["output"]["latex_names"]
    out_name = graph.output_name()
    several = len(graph.variables) > 1
    derivatives = []
    for k, pair in enumerate(pairs):
        simplified = got["simplified"].get(k)
        form = simplified if simplified is not None else got["raw"][k]
        derivatives.append(
            {
                "wrt": list(pair),
                "name": derivative_name(out_name, pair, several),
                "name_latex": derivative_latex(out_name, pair, several, names),
                "formula": form["formula"],
                "latex": form["latex"],
                "simplified": simplified is not None,
            }
        )
    values = {
        k: (got["simplified"][k] if k in got["simplified"] else got["values"].get(k, {})).get(
            "values"
        )
        for k in range(len(pairs))
    }
    simplify_state = (
        "off"
        if not simplify
        else "done"
        if len(got["simplified"]) + len(got["simplify_errors"]) == len(pairs)
        else "budget"
    )
    steps_state = (
        "off"
        if not steps
        else "budget"
        if len(got["steps"]) < len(chosen)
        else "cut"
        if any(cut for _, cut in got["steps"].values())
        else "done"
    )
    unchecked = None if skipped is None else ("skipped", skipped)
    if skipped is None and not found and search["out_of_time"]:
        unchecked = (
            "budget",
            f"the engine's check ran out of its share ({share:.3g} s) of the {timeout:g} s "
            f"budget (--symbolic-timeout) before a random point was found "
            f"({search['tries']} tried)",
        )
    check = _check(pairs, derivatives, found, values, order, seed, unchecked)
    return {
        "expression": graph.source,
        "source": program.origin,
        "statements": program.statements,
        "output": {
            "name": out_name,
            "name_latex": names.get(out_name, out_name),
            "formula": got["output"]["formula"],
            "latex": got["output"]["latex"],
        },
        "variables": list(graph.variables),
        "wrt": chosen,
        "order": order,
        "derivatives": derivatives,
        "steps": (
            [s for name in chosen for s in got["steps"].get(name, ([], False))[0]]
            if steps
            else None
        ),
        "symbolic": {
            "state": "done" if job.status == "done" else "budget",
            "timeout": timeout,
            "simplified": simplify_state,
            "simplify_errors": {
                derivatives[k]["name"]: why for k, why in sorted(got["simplify_errors"].items())
            },
            "steps": steps_state,
            "order": "forward" if steps else None,
        },
        "check": check,
        "warnings": [{"message": w} for w in program.warnings],
        "ok": check["ok"] is not False,
    }


def derivative_name(out: str, pair: tuple[str, ...], several: bool) -> str:
    """df/dx, ∂f/∂x, d²f/dx², ∂²f/∂x∂y."""
    d = "∂" if several else "d"
    if len(pair) == 1:
        return f"{d}{out}/{d}{pair[0]}"
    if pair[0] == pair[1]:
        return f"{d}²{out}/{d}{pair[0]}²"
    return f"{d}²{out}/{d}{pair[0]}{d}{pair[1]}"


def derivative_latex(out: str, pair: tuple[str, ...], several: bool, names: dict[str, str]) -> str:
    d = "\\partial" if several else "d"
    f = names.get(out, out)
    x = [names.get(n, n) for n in pair]
    if len(pair) == 1:
        return f"\\frac{{{d} {f}}}{{{d} {x[0]}}}"
    if pair[0] == pair[1]:
        return f"\\frac{{{d}^{{2}} {f}}}{{{d} {x[0]}^{{2}}}}"
    return f"\\frac{{{d}^{{2}} {f}}}{{{d} {x[0]} {d} {x[1]}}}"


def _check_scalar(graph: Any) -> None:
    """diff treats every variable as a number: an array anywhere is refused."""
    try:
        cores = shapes.infer(graph, {})
    except BackpropError as exc:
        reason = getattr(exc, "reason", exc.message)
        raise BackpropError(
            f"diff is for scalar variables, and this expression needs arrays ({reason})",
            hint="backprop grad, jacobian and hessian take array values at a point",
        ) from None
    arrays = [i for i, core in enumerate(cores) if core]
    if arrays:
        raise BackpropError(
            f"diff is for scalar variables and values, but {graph.label(arrays[0])!r} is an "
            f"array of shape {shapes.show(cores[arrays[0]])}",
            hint="backprop grad, jacobian and hessian take array values at a point",
        )


def _finite(x: Any) -> bool:
    return x is not None and bool(np.all(np.isfinite(np.asarray(x, dtype=np.float64))))


def engine_seconds(graph: Any, wrt: list[str], order: int) -> float:
    """About how long the engine takes at one random point, from the graph alone: its
    nodes times the sweeps of a try, and for the Hessian the batched forward-over-reverse
    sweeps (about nodes × variables elements, in batches of higher.BATCH_ELEMENTS)."""
    nodes = len(graph.nodes)
    seconds = SWEEPS_PER_TRY * nodes * NODE_SECONDS
    if order == 2:
        from .higher import BATCH_ELEMENTS

        n = len(wrt)
        width = max(1, BATCH_ELEMENTS // (2 * max(1, nodes)))  # columns a batch holds
        batches = -(-n // width)
        seconds += 2 * nodes * (batches * DUAL_FACTOR * NODE_SECONDS + 2 * n * ELEMENT_SECONDS)
    return seconds


def _too_dear(
    graph: Any, wrt: list[str], order: int, count: int, share: float, timeout: float
) -> str | None:
    """Why the engine's check is skipped before it runs (None: it runs): `count` points'
    estimated cost is more than the engine's share of the budget."""
    estimate = count * engine_seconds(graph, wrt, order)
    if estimate <= share:
        return None
    what = (
        "gradient"
        if order == 1
        else f"Hessian in {len(wrt):,} variable{'s' if len(wrt) != 1 else ''}"
    )
    return (
        f"the engine's {what} at {count} random point{'s' if count != 1 else ''} would take "
        f"about {estimate:.2g} s (a graph of {len(graph.nodes):,} nodes), more than its share "
        f"({share:.3g} s) of the {timeout:g} s budget (--symbolic-timeout)"
    )


def _sample_points(
    graph: Any,
    wrt: list[str],
    pairs: list[tuple[str, ...]],
    order: int,
    count: int,
    seed: int,
    *,
    stop: float | None = None,
) -> dict[str, Any]:
    """Up to `count` random points (seeded) inside the domain: the function, its gradient
    and the derivatives wanted finite there, no node on a kink or outside its domain, and the
    gradient well-conditioned. Each comes with the engine's value of every derivative and
    the slack its rounding allows. No try starts after `stop` (a time.monotonic() value).
    Returns {"found": the points, "tries": how many were tried, "out_of_time": whether
    `stop` ended the search}."""
    rng = np.random.default_rng(seed)
    names = list(graph.variables)
    found: list[dict[str, Any]] = []
    tries = 0
    out_of_time = False
    for attempt in range(MAX_TRIES if count > 0 else 0):
        if stop is not None and time.monotonic() >= stop:
            out_of_time = True
            break
        tries += 1
        lo, hi = RANGES[attempt * len(RANGES) // MAX_TRIES]
        point = {n: round(float(rng.uniform(lo, hi)), DIGITS) for n in names}
        if any(v == 0 for v in point.values()):
            continue
        with np.errstate(all="ignore"):
            trace = engine.run(graph, point)
            if trace.issues or trace.kinks or not _finite(trace.values[graph.output]):
                continue
            grads = {n: _grad(trace, graph, n) for n in names}
            if not all(math.isfinite(g) for g in grads.values()):
                continue
            spread = engine.spread(graph, point, trace)[1]
            slack = {n: _grad_spread(spread, graph, n) for n in names}
            if any(slack[n] > CONDITION * abs(grads[n]) + 1e-12 for n in names):
                continue
            if order == 1:
                wanted = [grads[p[0]] for p in pairs]
                slacks = [compare.SPREAD_SLACK * slack[p[0]] for p in pairs]
            else:
                from .higher import hessian

                h = hessian(graph, point, [(n, ()) for n in wrt])
                at = {n: i for i, n in enumerate(wrt)}
                wanted = [float(h[at[a], at[b]]) for a, b in pairs]
                slacks = [0.0 for _ in pairs]
        if not all(math.isfinite(v) for v in wanted):
            continue
        found.append({"point": point, "engine": wanted, "slack": slacks})
        if len(found) == count:
            break
    return {"found": found, "tries": tries, "out_of_time": out_of_time}


def _grad(trace: engine.Trace, graph: Any, name: str) -> float:
    g = trace.grads[graph.variables[name]]
    return 0.0 if g is None else float(np.asarray(g, dtype=np.float64))


def _grad_spread(spread: list[Any], graph: Any, name: str) -> float:
    s = spread[graph.variables[name]]
    return 0.0 if s is None else float(np.max(np.asarray(s, dtype=np.float64)))


def _collect(job: Bounded) -> dict[str, Any]:
    got: dict[str, Any] = {
        "output": None,
        "raw": {},
        "values": {},
        "simplified": {},
        "simplify_errors": {},
        "steps": {},
        "error": None,
    }
    for message in job.collect():
        stage = message.get("stage")
        if stage == "output":
            got["output"] = message
        elif stage == "raw":
            got["raw"][message["index"]] = message
        elif stage == "values":
            got["values"][message["index"]] = message
        elif stage == "steps":
            got["steps"][message["wrt"]] = (message["steps"], message["cut"])
        elif stage == "simplified" and "error" in message:
            got["simplify_errors"][message["index"]] = str(message["error"])[:300]
        elif stage == "simplified":
            got["simplified"][message["index"]] = message
        elif "error" in message:
            got["error"] = str(message["error"])
    return got


def _unfinished(job: Bounded, got: dict[str, Any], timeout: float) -> BackpropError:
    if got["error"] and "MemoryError" not in got["error"]:
        if "RecursionError" in got["error"]:
            return BackpropError(
                "the expression is too deeply nested for SymPy to differentiate",
                hint="backprop grad gives the gradient at a point",
            )
        return BackpropError(f"SymPy could not differentiate the expression: {got['error']}")
    if got["error"] or job.status == "error":
        return BackpropError(
            "the symbolic differentiation ran out of its memory budget",
            hint="backprop grad gives the gradient at a point",
        )
    return BackpropError(
        f"the symbolic differentiation did not finish within the {timeout:g} s budget",
        hint="give it longer with --symbolic-timeout SECONDS",
    )


def _check(
    pairs: list[tuple[str, ...]],
    derivatives: list[dict[str, Any]],
    found: list[dict[str, Any]],
    values: dict[int, list[dict[str, Any]] | None],
    order: int,
    seed: int,
    unchecked: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Each shown formula's exact value at the random points against the engine's;
    `unchecked` is (state, reason) where the engine's side did not run."""
    rtol, atol = compare.TOLERANCES["float64"]["symbolic"] if order == 1 else SECOND_ORDER_TOLERANCE
    check: dict[str, Any] = {
        "state": "skipped",
        "ok": None,
        "against": "engine gradient" if order == 1 else "engine Hessian",
        "seed": seed,
        "points": [p["point"] for p in found],
        "compared": 0,
        "tolerance": [rtol, atol],
        "mismatches": [],
        "reason": None,
    }
    if unchecked is not None:
        check["state"], check["reason"] = unchecked
        return check
    if not found:
        check["reason"] = (
            "no random point found where the function and its derivatives are finite "
            "and well-conditioned"
        )
        return check
    if any(values.get(k) is None for k in range(len(pairs))):
        check["state"] = "budget"
        check["reason"] = "the budget ran out before the formulas were evaluated"
        return check
    mismatches, compared = [], set()
    for j, p in enumerate(found):
        for k, d in enumerate(derivatives):
            got = (values[k] or [])[j]
            mine = got.get("value")
            if mine is None and got.get("undefined"):
                # SymPy's formula is undefined where the engine follows a convention (0**|x|
                # at x < 0 has a log(0)*0 term): not comparable, as in grad's SymPy check
                continue
            compared.add(j)
            verdict = compare.judge(p["engine"][k], mine, rtol, atol, p["slack"][k])
            if verdict == "mismatch":
                mismatches.append(
                    {
                        "wrt": d["wrt"],
                        "name": d["name"],
                        "point": p["point"],
                        "formula": mine,
                        "engine": p["engine"][k],
                        "undefined": got.get("undefined") or got.get("error"),
                    }
                )
    if not compared:
        check["reason"] = "the formulas are undefined at every random point (a convention)"
        return check
    check["compared"] = len(compared)
    check["mismatches"] = mismatches[:20]
    check["ok"] = not mismatches
    check["state"] = "ok" if not mismatches else "mismatch"
    return check
