"""The chain rule, spelled out: every path from the output down to a variable with its
product of local derivatives, the reverse sweep as numbered local steps, and forward
accumulation for comparison. Produces plain data; rendering lives in render_explain.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import checks, engine, ops
from .errors import BackpropError
from .graph import Graph

MAX_PATHS = 64  # listed one by one up to this many per variable; grouped beyond
MAX_STEPS = 500  # reverse or forward steps shown; the rest are counted


@dataclass
class _Context:
    graph: Graph
    names: list[str]
    values: list[float]
    grads: list[float | None]
    local: list[tuple[float, ...]]
    out: str  # the output's name in ∂out/∂x


def explain(graph: Graph, point: dict[str, float], wrt: list[str], mode: str) -> dict[str, Any]:
    """Everything `backprop explain` shows, as one plain-data report (also its JSON)."""
    if mode not in ("reverse", "forward"):
        raise BackpropError(f"unknown --mode {mode!r} (choose reverse or forward)")
    trace = engine.run(graph, point)
    names = graph.short_names()
    if graph.out.name is None:
        names[graph.output] = graph.output_name()
    ctx = _Context(
        graph,
        names,
        [float(v) for v in trace.values],
        [None if g is None else float(g) for g in trace.grads],
        [tuple(float(d) for d in edge) for edge in engine.local_partials(graph, trace.values)],
        graph.output_name(),
    )
    variables = [_paths(ctx, name) for name in wrt]
    edges = sorted({tuple(e) for v in variables for p in v["paths"] for e in p["edges"]})
    steps = _reverse_steps(ctx) if mode == "reverse" else []
    edges = sorted(set(edges) | {(s["node"], s["k"]) for s in steps})
    forward = [_forward(ctx, name) for name in wrt] if mode == "forward" else []
    edges = sorted(set(edges) | {(s["node"], s["k"]) for f in forward for s in f["steps"]})
    formulas = _formulas(ctx, edges)
    for v in variables:
        for p in v["paths"]:
            p["factors"] = [formulas[(n, k)] for n, k in p["edges"]]
    for s in steps:
        s["local_formula"] = formulas[(s["node"], s["k"])]
    for f in forward:
        for s in f["steps"]:
            s["local_formula"] = formulas[(s["node"], s["k"])]
    warnings = [{"node": i.node, "message": f"node {i.node}: {i.message}"} for i in trace.issues]
    warnings += [
        {"node": k, "message": f"node {k} ({graph.nodes[k].op}) is on its kink: torch's "
         "subgradient is used"}
        for k in trace.kinks
    ]  # fmt: skip
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
        "legend": _legend(ctx),
        "partials": variables,
        "reverse_steps": steps,
        "forward_sweeps": forward,
        "cost": _cost(ctx, wrt),
        "warnings": warnings,
        "ok": all(v["agrees"] for v in variables),
    }


def _formulas(ctx: _Context, edges: list[tuple[int, int]]) -> dict[tuple[int, int], dict[str, str]]:
    from .symbolic import local_formulas

    return local_formulas(ctx.graph, ctx.names, ctx.values, edges)


def _legend(ctx: _Context) -> list[dict[str, Any]]:
    """Every node's short name with what it stands for, in evaluation order."""
    return [
        {
            "id": node.id,
            "name": ctx.names[node.id],
            "op": node.op,
            "text": ctx.graph.text(node.id, 200),
            "value": ctx.values[node.id],
        }
        for node in ctx.graph.nodes
        if node.op != "const"
    ]


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
    rtol, atol = checks.TOLERANCES["float64"]["torch"]
    entry["agrees"] = checks.agree(summed, gradient, rtol, atol)
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
    graph = ctx.graph
    nodes = [graph.output] + [graph.nodes[n].inputs[k] for n, k in edges]
    factors = [ctx.local[n][k] for n, k in edges]
    product = float(np.prod(factors)) if factors else 1.0
    return {
        "nodes": nodes,
        "names": [ctx.names[n] for n in nodes],
        "edges": [list(e) for e in edges],
        "values": factors,
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


def _reverse_steps(ctx: _Context) -> list[dict[str, Any]]:
    """The staged backward pass: for each node from the output back, its upstream gradient
    times each local derivative, added into the input's gradient."""
    graph = ctx.graph
    reach = graph.ancestors_of_output()
    needs = engine.requires_grad(graph)
    acc: dict[int, float] = {graph.output: 1.0}
    steps: list[dict[str, Any]] = []
    for node in reversed(graph.nodes[: graph.output + 1]):
        if node.op in ops.LEAVES or not reach[node.id] or node.id not in acc:
            continue
        upstream = acc[node.id]
        for k, i in enumerate(node.inputs):
            if not needs[i]:
                continue
            contribution = upstream * ctx.local[node.id][k]
            acc[i] = acc.get(i, 0.0) + contribution
            if len(steps) < MAX_STEPS:
                steps.append(
                    {
                        "step": len(steps) + 1,
                        "node": node.id,
                        "k": k,
                        "from": ctx.names[node.id],
                        "to": ctx.names[i],
                        "upstream": upstream,
                        "local": ctx.local[node.id][k],
                        "contribution": contribution,
                        "total": acc[i],
                    }
                )
    return steps


def _forward(ctx: _Context, variable: str) -> dict[str, Any]:
    """One tangent sweep: ∂node/∂variable for every node, in evaluation order."""
    graph = ctx.graph
    dots = engine.tangents(graph, ctx.values, ctx.local, variable)
    steps: list[dict[str, Any]] = []
    for node in graph.nodes:
        if node.op in ops.LEAVES:
            continue
        for k, i in enumerate(node.inputs):
            if float(dots[i]) != 0 and len(steps) < MAX_STEPS:
                steps.append(
                    {
                        "node": node.id,
                        "k": k,
                        "to": ctx.names[node.id],
                        "from": ctx.names[i],
                        "tangent_in": float(dots[i]),
                        "local": ctx.local[node.id][k],
                        "contribution": ctx.local[node.id][k] * float(dots[i]),
                        "tangent": float(dots[node.id]),
                    }
                )
    return {"variable": variable, "result": float(dots[graph.output]), "steps": steps}


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
