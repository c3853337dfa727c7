"""The chain rule for arrays: the reverse sweep at the level of whole arrays, each step one
op's vector-Jacobian product (∂/∂A = G·Bᵀ for A @ B) applied to the upstream gradient G,
with shapes and values. Produces plain data; render/explain.py draws it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import engine, ops, shapes
from ..core.errors import BackpropError
from ..core.graph import Graph

MAX_STEPS = 500  # steps shown; the rest are counted

POSITIONS = ("left", "right")  # of a binary op's operands


def operand_position(graph: Graph, node_id: int, k: int) -> str | None:
    """Which operand an edge enters its node by, where the node takes the same input more
    than once (x*x: 'left' and 'right'); None where the names alone tell the edges apart."""
    inputs = graph.nodes[node_id].inputs
    if inputs.count(inputs[k]) < 2:
        return None
    return POSITIONS[k] if len(inputs) == len(POSITIONS) else f"operand {k + 1}"


def _plain(x: Any) -> Any:
    value: Any = np.asarray(x, dtype=np.float64).tolist()
    return value


def rule_for(op: ops.Op, k: int) -> str:
    """The part of an op's rule for input k (∂/∂B = Aᵀ·G of matmul's rule)."""
    parts = op.rule.split(", ∂/∂")
    if len(parts) != op.arity:
        return op.rule
    return parts[k] if k == 0 else "∂/∂" + parts[k]


def explain_arrays(
    graph: Graph, point: dict[str, Any], wrt: list[str], mode: str, cores: list[Any]
) -> dict[str, Any]:
    """`backprop explain` for a program over arrays (a scalar output)."""
    if mode != "reverse":
        raise BackpropError(
            "--mode forward explains scalar expressions; with arrays there is one tangent "
            "sweep per element",
            hint="use --mode reverse, or backprop jacobian for every partial",
        )
    if cores[graph.output]:
        raise BackpropError(
            f"the output has shape {shapes.show(cores[graph.output])}, not a scalar, so it has "
            "no single gradient to explain",
            hint="reduce it with sum(...) or mean(...), or use backprop jacobian",
        )
    trace = engine.run(graph, point)
    names = graph.display_names()
    flows = engine.wire_gradients(graph, trace)
    reach = graph.ancestors_of_output()
    steps: list[dict[str, Any]] = []
    totals: dict[int, Any] = {}
    count = 0
    for node in reversed(graph.nodes[: graph.output + 1]):
        if not reach[node.id] or node.op in ops.LEAVES:
            continue
        op = ops.OPS[node.op]
        for k, i in enumerate(node.inputs):
            if (node.id, k) not in flows:
                continue
            contribution = flows[(node.id, k)]
            totals[i] = contribution if i not in totals else totals[i] + contribution
            count += 1
            if len(steps) < MAX_STEPS:
                steps.append(
                    {
                        "step": count,
                        "node": node.id,
                        "k": k,
                        "from": names[node.id],
                        "to": names[i],
                        "operand": operand_position(graph, node.id, k),
                        "op": node.op,
                        "rule": rule_for(op, k),
                        "shape_node": list(cores[node.id]),
                        "shape_input": list(cores[i]),
                        "upstream": _plain(trace.grads[node.id]),
                        "contribution": _plain(contribution),
                        "total": _plain(totals[i]),
                    }
                )
    return {
        "expression": graph.source,
        "arrays": True,
        "output": {
            "id": graph.output,
            "name": names[graph.output],
            "text": graph.text(graph.output, 200),
            "value": _plain(trace.values[graph.output]),
        },
        "mode": mode,
        "variables": {name: _plain(value) for name, value in point.items()},
        "shapes": {name: list(cores[i]) for name, i in graph.variables.items()},
        "legend": [
            {
                "id": node.id,
                "name": names[node.id],
                "op": node.op,
                "text": graph.text(node.id, 200),
                "inputs": [names[i] for i in node.inputs],
                "shape": list(cores[node.id]),
                "value": _plain(trace.values[node.id]),
            }
            for node in graph.nodes
            if node.op != "const"
        ][:200],
        "gradients": [
            {
                "variable": name,
                "shape": list(cores[graph.variables[name]]),
                "gradient": _plain(trace.grads[graph.variables[name]]),
            }
            for name in wrt
        ],
        "reverse_steps": steps,
        "reverse_steps_total": count,
        "warnings": [
            {"node": i.node, "message": f"node {i.node}: {i.message}"} for i in trace.issues
        ],
        "ok": True,
    }
