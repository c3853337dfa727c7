"""The chain rule, spelled out: every path from the output down to a variable with its
product of local derivatives, the reverse sweep as numbered local steps, and forward
accumulation for comparison. Produces plain data; render/explain.py draws it.

Everything shown is bounded (paths, factors per path, variables, steps, legend); what is
cut is counted, and the sums are always over everything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import compare
from ..core import engine, ops, shapes
from ..core.errors import BackpropError
from ..core.graph import Graph
from .explain_arrays import operand_position

MAX_PATHS = 64  # listed one by one up to this many per variable; grouped beyond
MAX_FACTORS = 40  # factors shown per path: the first and last halves of a longer one
MAX_VARIABLES = 50  # variables explained when --wrt names none
MAX_STEPS = 500  # reverse or forward steps shown; the rest are counted
MAX_LEGEND = 200  # short names listed under "where"
# SymPy's local derivatives, worked out in a child: its budget (past it, the rest is done
# here), its memory and the edges it sends at a time.
FORMULA_SECONDS = 10.0
FORMULA_MEMORY_MB = 2048
FORMULA_BATCH = 32


@dataclass
class _Context:
    graph: Graph
    names: list[str]
    values: list[float]
    grads: list[float | None]
    spreads: list[float | None]
    local: list[tuple[float, ...]]
    out: str  # the output's name in ∂out/∂x


def explain(graph: Graph, point: dict[str, Any], wrt: list[str], mode: str) -> dict[str, Any]:
    """Everything `backprop explain` shows, as one plain-data report (also its JSON)."""
    if mode not in ("reverse", "forward"):
        raise BackpropError(f"unknown --mode {mode!r} (choose reverse or forward)")
    cores = shapes.infer(graph, {name: np.shape(value) for name, value in point.items()})
    if any(cores):
        from .explain_arrays import explain_arrays

        return explain_arrays(graph, point, wrt, mode, cores)
    trace = engine.run(graph, point)
    names = graph.display_names()
    ctx = _Context(
        graph,
        names,
        [float(v) for v in trace.values],
        [None if g is None else float(g) for g in trace.grads],
        engine.spread(graph, point, trace)[1],
        [tuple(float(d) for d in edge) for edge in engine.local_partials(graph, trace.values)],
        names[graph.output],
    )
    shown_wrt = wrt[:MAX_VARIABLES]
    variables = [_paths(ctx, name) for name in shown_wrt]
    steps, steps_total = _reverse_steps(ctx) if mode == "reverse" else ([], 0)
    forward = [_forward(ctx, name) for name in shown_wrt] if mode == "forward" else []
    formulas = _Formulas(ctx, _shown_edges(variables, steps, forward))
    try:  # while SymPy works in its child
        legend, cost, warnings = _legend(ctx), _cost(ctx, wrt), _warnings(graph, trace)
    except BaseException:
        formulas.stop()
        raise
    _attach_formulas(formulas.collect(), variables, steps, forward)
    return {
        "expression": graph.source,
        "output": {
            "id": graph.output,
            "name": ctx.out,
            "text": graph.text(graph.output, 200),
            "value": ctx.values[graph.output],
        },
        "mode": mode,
        "variables": dict(point),
        "variables_not_shown": wrt[MAX_VARIABLES:],
        "legend": legend,
        "partials": variables,
        "reverse_steps": steps,
        "reverse_steps_total": steps_total,
        "forward_sweeps": forward,
        "cost": cost,
        "warnings": warnings,
        "ok": all(v["verdict"] != "mismatch" for v in variables),
    }


def _warnings(graph: Graph, trace: engine.Trace) -> list[dict[str, Any]]:
    found = [{"node": i.node, "message": f"node {i.node}: {i.message}"} for i in trace.issues]
    found += [
        {"node": k, "message": f"node {k} ({graph.nodes[k].op}) is on its kink: torch's "
         "subgradient is used"}
        for k in trace.kinks
    ]  # fmt: skip
    return found


def _path_links(variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [link for v in variables for p in v["paths"] for link in p["links"] if "edge" in link]


def _shown_edges(
    variables: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    forward: list[dict[str, Any]],
) -> list[tuple[int, int]]:
    """The edges (node, input position) shown anywhere, each once, in order."""
    shown = [(link["edge"][0], link["edge"][1]) for link in _path_links(variables)]
    shown += [(s["node"], s["k"]) for s in steps]
    shown += [(s["node"], s["k"]) for f in forward for s in f["steps"]]
    return sorted(set(shown))


class _Formulas:
    """SymPy's local derivatives of the shown edges. Where a child started early waits
    (the command line starts one), the work goes to it: SymPy is imported there while
    this process starts up, and never here. Edges it did not send within its budget (or
    after an error) are worked out here, as without a child, so the output is the same."""

    def __init__(self, ctx: _Context, edges: list[tuple[int, int]]) -> None:
        from ..checks import sandbox

        self.ctx, self.edges = ctx, edges
        self.job = None
        if edges and sandbox.spare_waiting():
            self.job = sandbox.Bounded(
                _formulas_child,
                (ctx.graph, ctx.names, ctx.values, edges),
                seconds=FORMULA_SECONDS,
                memory_mb=FORMULA_MEMORY_MB,
            )

    def stop(self) -> None:
        if self.job is not None:
            self.job.deadline = 0.0
            self.job.collect()

    def collect(self) -> dict[tuple[int, int], dict[str, str]]:
        found: dict[tuple[int, int], dict[str, str]] = {}
        if self.job is not None:
            for message in self.job.collect():
                if "edge" in message:
                    node, k = message.pop("edge")
                    found[(node, k)] = message
        missing = [edge for edge in self.edges if edge not in found]
        if missing:
            from ..checks.symbolic import local_formulas

            ctx = self.ctx
            found.update(local_formulas(ctx.graph, ctx.names, ctx.values, missing))
        return found


def _formulas_child(
    graph: Graph,
    names: list[str],
    values: list[float],
    edges: list[tuple[int, int]],
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """The child's side of `_Formulas`: one message per edge, {"edge": [node, k], **formula},
    sent a batch at a time so that a budget cut keeps what was done."""
    from ..checks.symbolic import local_formulas

    for start in range(0, len(edges), FORMULA_BATCH):
        batch = [(int(node), int(k)) for node, k in edges[start : start + FORMULA_BATCH]]
        for (node, k), formula in local_formulas(graph, names, values, batch).items():
            emit({"edge": [node, k], **formula})


def _attach_formulas(
    formulas: dict[tuple[int, int], dict[str, str]],
    variables: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    forward: list[dict[str, Any]],
) -> None:
    """Put the symbolic local derivatives on every edge that is shown (and on no other)."""
    for link in _path_links(variables):
        link["formula"] = formulas[(link["edge"][0], link["edge"][1])]
    for s in steps:
        s["local_formula"] = formulas[(s["node"], s["k"])]
    for f in forward:
        for s in f["steps"]:
            s["local_formula"] = formulas[(s["node"], s["k"])]


def _legend(ctx: _Context) -> list[dict[str, Any]]:
    """Short names with what they stand for, in evaluation order (at most MAX_LEGEND)."""
    rows = [
        {
            "id": node.id,
            "name": ctx.names[node.id],
            "op": node.op,
            "text": ctx.graph.text(node.id, 200),
            "inputs": [ctx.names[i] for i in node.inputs],
            "value": ctx.values[node.id],
        }
        for node in ctx.graph.nodes
        if node.op != "const"
    ]
    return rows[:MAX_LEGEND]


def _paths(ctx: _Context, variable: str) -> dict[str, Any]:
    """Every path from the output down to `variable`, or groups of them when too many."""
    graph = ctx.graph
    target = graph.variables[variable]
    counts = _path_counts(graph, target)
    total = counts[graph.output]
    gradient = ctx.grads[target]
    entry: dict[str, Any] = {
        "variable": variable,
        "count": total,
        "gradient": gradient,
        "paths": [],
        "groups": [],
    }
    if total <= MAX_PATHS:
        entry["paths"] = [_path_entry(ctx, edges) for edges in _enumerate(graph, target, counts)]
        summed = math.fsum(p["product"] for p in entry["paths"]) if entry["paths"] else 0.0
    else:
        entry["groups"] = _groups(ctx, variable, counts)
        summed = math.fsum(g["sum"] for g in entry["groups"])
    entry["sum"] = summed
    # Sums over paths and the reverse sweep round differently; allow for the conditioning.
    rtol, atol = compare.TOLERANCES["float64"]["torch"]
    slack = compare.SPREAD_SLACK * (ctx.spreads[target] or 0.0)
    entry["verdict"] = compare.judge(summed, gradient, rtol, atol, slack)
    entry["agrees"] = entry["verdict"] != "mismatch"
    return entry


def _path_counts(graph: Graph, target: int) -> list[int]:
    """How many paths lead from each node down to the target (exact integers)."""
    counts = [0] * len(graph.nodes)
    counts[target] = 1
    for node in graph.nodes:
        if node.op not in ops.LEAVES:
            counts[node.id] = sum(counts[i] for i in node.inputs)
    return counts


def _enumerate(graph: Graph, target: int, counts: list[int]) -> list[list[tuple[int, int]]]:
    """The paths as lists of edges (node, input position), output first; iterative."""
    found: list[list[tuple[int, int]]] = []
    stack: list[tuple[int, list[tuple[int, int]]]] = [(graph.output, [])]
    while stack:
        node_id, path = stack.pop()
        if node_id == target:
            found.append(path)
            continue
        node = graph.nodes[node_id]
        for k in reversed(range(len(node.inputs))):
            child = node.inputs[k]
            if counts[child]:
                stack.append((child, [*path, (node_id, k)]))
    return found


def _path_entry(ctx: _Context, edges: list[tuple[int, int]]) -> dict[str, Any]:
    """A path's product over all its factors, with one link per edge shown: a long path
    shows its two ends and a gap link that counts the factors left out."""
    graph = ctx.graph
    factors = [ctx.local[n][k] for n, k in edges]
    product = float(np.prod(factors)) if factors else 1.0

    def link(j: int) -> dict[str, Any]:
        n, k = edges[j]
        to = graph.nodes[n].inputs[k]
        return {
            "from": ctx.names[n],
            "to": ctx.names[to],
            "operand": operand_position(graph, n, k),
            "edge": [n, k],
            "value": factors[j],
        }

    omitted = max(0, len(edges) - MAX_FACTORS)
    if omitted:
        half = MAX_FACTORS // 2
        links = [link(j) for j in range(half)] + [{"omitted": omitted}]
        links += [link(j) for j in range(len(edges) - half, len(edges))]
    else:
        links = [link(j) for j in range(len(edges))]
    nodes = [graph.output] + [graph.nodes[n].inputs[k] for n, k in edges]
    names = [ctx.names[i] for i in nodes]
    if omitted:
        names = [*names[: half + 1], "…", *names[-(half + 1) :]]
    return {
        "names": names,
        "links": links,
        "length": len(edges),
        "omitted": omitted,
        "product": product,
    }


def _groups(ctx: _Context, variable: str, counts: list[int]) -> list[dict[str, Any]]:
    """Too many paths to list: group them by the output's operand they pass through; a
    group's sum is that edge's local derivative times the operand's derivative."""
    graph = ctx.graph
    dots = engine.tangents(graph, ctx.values, ctx.local, variable)
    out = graph.nodes[graph.output]
    groups = []
    for k, child in enumerate(out.inputs):
        if counts[child]:
            groups.append(
                {
                    "via": ctx.names[child],
                    "node": child,
                    "count": counts[child],
                    "local": ctx.local[graph.output][k],
                    "sum": float(ctx.local[graph.output][k] * dots[child]),
                }
            )
    return groups


def _reverse_steps(ctx: _Context) -> tuple[list[dict[str, Any]], int]:
    """The staged backward pass: for each node from the output back, its upstream gradient
    times each local derivative, added into the input's gradient. Returns the first
    MAX_STEPS steps and how many there are."""
    graph = ctx.graph
    reach = graph.ancestors_of_output()
    needs = engine.requires_grad(graph)
    acc: dict[int, float] = {graph.output: 1.0}
    steps: list[dict[str, Any]] = []
    total = 0
    for node in reversed(graph.nodes[: graph.output + 1]):
        if node.op in ops.LEAVES or not reach[node.id] or node.id not in acc:
            continue
        upstream = acc[node.id]
        for k, i in enumerate(node.inputs):
            if not needs[i]:
                continue
            contribution = upstream * ctx.local[node.id][k]
            acc[i] = acc.get(i, 0.0) + contribution
            total += 1
            if len(steps) < MAX_STEPS:
                steps.append(
                    {
                        "step": total,
                        "node": node.id,
                        "k": k,
                        "from": ctx.names[node.id],
                        "to": ctx.names[i],
                        "operand": operand_position(graph, node.id, k),
                        "upstream": upstream,
                        "local": ctx.local[node.id][k],
                        "contribution": contribution,
                        "total": acc[i],
                    }
                )
    return steps, total


def _forward(ctx: _Context, variable: str) -> dict[str, Any]:
    """One tangent sweep: ∂node/∂variable for every node, in evaluation order."""
    graph = ctx.graph
    dots = engine.tangents(graph, ctx.values, ctx.local, variable)
    steps: list[dict[str, Any]] = []
    total = 0
    for node in graph.nodes:
        if node.op in ops.LEAVES:
            continue
        for k, i in enumerate(node.inputs):
            if float(dots[i]) == 0:
                continue
            total += 1
            if len(steps) < MAX_STEPS:
                steps.append(
                    {
                        "node": node.id,
                        "k": k,
                        "to": ctx.names[node.id],
                        "from": ctx.names[i],
                        "operand": operand_position(graph, node.id, k),
                        "tangent_in": float(dots[i]),
                        "local": ctx.local[node.id][k],
                        "contribution": ctx.local[node.id][k] * float(dots[i]),
                        "tangent": float(dots[node.id]),
                    }
                )
    return {
        "variable": variable,
        "result": float(dots[graph.output]),
        "steps": steps,
        "steps_total": total,
    }


def _cost(ctx: _Context, wrt: list[str]) -> dict[str, Any]:
    """What each mode costs here: sweeps over the graph, and values kept for later."""
    ops_count = sum(1 for n in ctx.graph.nodes if n.op not in ops.LEAVES)
    return {
        "operations": ops_count,
        "forward": {
            "sweeps": len(wrt),
            "stored": 0,
            "note": "one tangent sweep per input; each keeps only the values it is using",
        },
        "reverse": {
            "sweeps": 2,
            "stored": ops_count,
            "note": "one forward sweep that keeps every intermediate, one backward sweep",
        },
    }
