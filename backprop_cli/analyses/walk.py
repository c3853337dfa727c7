"""The step-through of one point: the forward pass node by node, then the reverse sweep one
`+=` at a time with the engine's own numbers (recorded while it runs, never recomputed), and
for every node the paths from the output down to it with their products. Plain data for the
HTML page (render/page.py) and `explain --step` (render/step.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import engine, ops, shapes
from ..core.errors import BackpropError
from ..core.graph import Graph
from .explain_arrays import _plain, operand_position

MAX_NODES = 3_000  # nodes a step-through walks (each is a step, each wire another)
MAX_PATHS = 32  # paths listed for a node; past this they are only counted
MAX_PATH_WIRES = 160  # nor are they listed when they would take more wires than this


def walk(
    graph: Graph,
    point: dict[str, Any],
    seed_grad: Any = None,
    formulas: bool = False,
    dtype: str = "float64",
    paths: bool = True,
) -> dict[str, Any]:
    """Everything a step-through shows for `graph` at `point` (values by variable name),
    the output's gradient seeded with `seed_grad` (ones by default) as grad does; with
    `formulas`, each wire of a graph of numbers also gets its local derivative from SymPy
    (text, LaTeX, MathML, and with the values put in); `paths=False` leaves out each node's
    paths (the terminal's stepper shows none)."""
    from .gradient import upstream

    if len(graph.nodes) > MAX_NODES:
        raise BackpropError(
            f"a step-through walks at most {MAX_NODES:,} nodes; this graph has "
            f"{len(graph.nodes):,}",
            hint="draw it with --format svg, or step through a smaller part",
        )
    cores = shapes.infer(graph, {name: np.shape(value) for name, value in point.items()})
    seed = upstream(graph, cores[graph.output], seed_grad)
    record: list[engine.Step] = []
    trace = engine.run(graph, point, dtype, seed, record=record)
    arrays = any(cores)
    local = None if arrays else engine.local_partials(graph, trace.values)
    names = graph.display_names()
    reach = graph.ancestors_of_output()
    nodes = [
        {
            "id": node.id,
            "name": names[node.id],
            "op": node.op,
            "label": _label(node.op),
            "text": graph.text(node.id, 120),
            "inputs": list(node.inputs),
            "kind": _kind(node.op),
            "shape": list(cores[node.id]),
            "value": _plain(trace.values[node.id]),
            "grad": None if trace.grads[node.id] is None else _plain(trace.grads[node.id]),
        }
        for node in graph.nodes
        if reach[node.id]
    ]
    needs = engine.requires_grad(graph)  # a wire into a constant carries no gradient
    edges: list[dict[str, Any]] = [
        {
            "id": f"{node.id}-{k}",
            "node": node.id,
            "k": k,
            "input": i,
            "operand": operand_position(graph, node.id, k),
            "carries_gradient": needs[i],
            "local": None if local is None or not needs[i] else _plain(local[node.id][k]),
        }
        for node in graph.nodes
        if reach[node.id] and node.op not in ops.LEAVES
        for k, i in enumerate(node.inputs)
    ]
    if formulas and local is not None and edges:
        from ..checks.symbolic import local_formulas

        values = [float(v) for v in trace.values]
        wires = [
            (node.id, k)
            for node in graph.nodes
            if reach[node.id] and node.op not in ops.LEAVES
            for k, i in enumerate(node.inputs)
            if needs[i]
        ]
        found = local_formulas(graph, names, values, wires, with_mathml=True)
        for e in edges:
            e["formula"] = found.get((e["node"], e["k"]))
    backward = [
        {
            "step": n + 1,
            "edge": f"{s.node}-{s.k}",
            "node": s.node,
            "input": graph.nodes[s.node].inputs[s.k],
            "upstream": _plain(s.upstream),
            "local": None if local is None else _plain(local[s.node][s.k]),
            "contribution": _plain(s.contribution),
            "total": _plain(s.total),
        }
        for n, s in enumerate(record)
    ]
    return {
        "expression": graph.source,
        "output": graph.output,
        "output_name": names[graph.output],
        "variables": {name: _plain(value) for name, value in point.items()},
        "seed": _plain(seed),
        "arrays": arrays,
        "nodes": nodes,
        "edges": edges,
        "forward": [n["id"] for n in nodes],
        "backward": backward,
        "paths": {} if local is None or not paths else _all_paths(graph, reach, local),
        "kinks": list(trace.kinks),
        "issues": [{"node": i.node, "message": i.message} for i in trace.issues],
    }


def _label(op: str) -> str:
    """How the op is written: `*`, `exp`, `-` (negation as a unary minus)."""
    if op in ops.LEAVES:
        return op
    found = ops.OPS[op]
    return found.symbol or found.call or found.name


def _kind(op: str) -> str:
    if op == "input":
        return "variable"
    return "constant" if op == "const" else "operation"


def _all_paths(
    graph: Graph, reach: list[bool], local: list[tuple[Any, ...]]
) -> dict[str, dict[str, Any]]:
    """For every node the output depends on: how many paths lead from the output down to it,
    and (up to MAX_PATHS of at most MAX_PATH_WIRES wires in all) each path's wires, output
    first, with its product of local derivatives. The sum of the products is the node's
    gradient. The work is bounded: a long chain's nodes are counted, not listed."""
    counts = [0] * len(graph.nodes)
    counts[graph.output] = 1
    longest = [0] * len(graph.nodes)  # the most wires on a path from the output down to it
    users: list[list[tuple[int, int]]] = [[] for _ in graph.nodes]
    for node in reversed(graph.nodes[: graph.output + 1]):
        if not reach[node.id] or node.op in ops.LEAVES:
            continue
        for k, i in enumerate(node.inputs):
            counts[i] += counts[node.id]
            longest[i] = max(longest[i], longest[node.id] + 1)
            users[i].append((node.id, k))
    found: dict[str, dict[str, Any]] = {}
    for node in graph.nodes:
        if not reach[node.id]:
            continue
        entry: dict[str, Any] = {"count": counts[node.id], "paths": []}
        if counts[node.id] <= MAX_PATHS and counts[node.id] * longest[node.id] <= MAX_PATH_WIRES:
            for wires in _paths_to(graph.output, node.id, users):
                with np.errstate(all="ignore"):  # a product may overflow: inf is its value
                    product = float(np.prod([float(local[n][k]) for n, k in wires]))
                entry["paths"].append(
                    {
                        "edges": [f"{n}-{k}" for n, k in wires],
                        "nodes": [graph.output, *(graph.nodes[n].inputs[k] for n, k in wires)],
                        "locals": [float(local[n][k]) for n, k in wires],
                        "product": product,
                    }
                )
        found[str(node.id)] = entry
    return found


def _paths_to(output: int, target: int, users: list[list[tuple[int, int]]]) -> list[Any]:
    """The paths from the output down to target, each as its wires from the output first
    (an iterative walk up from target through the nodes that use it)."""
    paths: list[list[tuple[int, int]]] = []
    stack: list[tuple[int, list[tuple[int, int]]]] = [(target, [])]
    while stack:
        at, below = stack.pop()
        if at == output:
            paths.append(below)
            continue
        for user, k in reversed(users[at]):
            stack.append((user, [(user, k), *below]))
    # explain's order: the output's first operand first, then the next, at every level
    return sorted(paths, key=lambda wires: [k for _, k in wires])
