"""Shapes: each node's core shape (the shape of its value at one point) from the variables'
shapes, by numpy's broadcasting rules for elementwise ops and each array op's own rule.

A mismatch is an input error that names the node, the op and the shapes involved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import ops
from .errors import LimitError, ParseError
from .graph import Graph

Shape = tuple[int, ...]


def show(shape: Shape) -> str:
    """(2, 3), (3,), or 'scalar' for ()."""
    return "scalar" if not shape else str(tuple(shape))


def broadcast(*shapes: Shape) -> Shape:
    """numpy's broadcasting rule, with a sentence on failure."""
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        shown = " and ".join(show(s) for s in shapes)
        raise ValueError(f"cannot broadcast shapes {shown}") from None


# What one graph may hold and do at one point, whatever its shapes: every node keeps its
# value and its gradient (and the checks keep copies), so the sum over nodes is what memory
# scales with; a matrix product costs m·k·n multiply-adds, not its output's size.
MAX_TOTAL_ELEMENTS = 30_000_000
MAX_WORK = 10_000_000_000


def infer(
    graph: Graph, inputs: Mapping[str, Shape], what: str = "expression", budget: bool = True
) -> list[Shape]:
    """The core shape of every node, in one loop over the graph, done once per graph and
    input shapes (carried as a graph fact); with `budget`, a graph whose values would not fit
    it (MAX_TOTAL_ELEMENTS, MAX_WORK) is refused before anything runs. The engine's own
    passes (training on a whole dataset, say) infer without it."""
    given = tuple((name, tuple(inputs.get(name, ()))) for name in graph.variables)
    cores = graph.fact(("shapes", given), lambda: _infer(graph, dict(given), what))
    if budget:
        check_budget(*graph.fact(("cost", given), lambda: cost(graph, cores)), what)
    return list(cores)


def _infer(graph: Graph, inputs: Mapping[str, Shape], what: str) -> list[Shape]:
    cores: list[Shape] = []
    for node in graph.nodes:
        if node.op == "input":
            assert node.name is not None
            cores.append(tuple(inputs.get(node.name, ())))
        elif node.op == "const":
            cores.append(tuple(np.shape(node.value)))
        else:
            cores.append(of_node(graph, node.id, [cores[i] for i in node.inputs], what))
    return cores


def check_budget(total: int, work: int, what: str) -> None:
    if total > MAX_TOTAL_ELEMENTS or work > MAX_WORK:
        raise LimitError(
            f"the {what} is too big to run: its nodes would hold {total:,} array elements "
            f"(at most {MAX_TOTAL_ELEMENTS:,}) and take about {work:,} operations "
            f"(at most {MAX_WORK:,})",
            hint="use smaller arrays or fewer array operations",
        )


def check_constants_budget(graph: Graph, needs: list[bool], what: str) -> list[Shape]:
    """The constant part of a graph (the nodes that do not depend on a variable, evaluated
    while reading) against the budget, from its shapes alone, before any of it is computed;
    the constant nodes' shapes come back."""
    cores: list[Shape] = []
    for node in graph.nodes:
        if needs[node.id] or node.op == "input":
            cores.append(())
        elif node.op == "const":
            cores.append(tuple(np.shape(node.value)))
        else:
            cores.append(of_node(graph, node.id, [cores[i] for i in node.inputs], what))
    kept = [not n for n in needs]
    check_budget(*cost(graph, cores, kept), what)
    return cores


def cost(graph: Graph, cores: list[Shape], kept: list[bool] | None = None) -> tuple[int, int]:
    """(elements held over all nodes, multiply-adds of one evaluation), roughly; with `kept`,
    over those nodes only."""
    if not any(cores):
        return len(cores), len(cores)
    total = work = 0
    for node, core in zip(graph.nodes, cores, strict=True):
        if kept is not None and not kept[node.id]:
            continue
        total += math.prod(core)
        if node.inputs:
            args = [cores[i] for i in node.inputs]
            if node.op == "matmul" and args[0]:
                work += math.prod(core) * args[0][-1]
            else:
                work += max([math.prod(core), *(math.prod(a) for a in args)])
    return total, work


def of_node(graph: Graph, node_id: int, args: list[Shape], what: str = "expression") -> Shape:
    """One op node's core shape from its inputs' core shapes."""
    node = graph.nodes[node_id]
    op = ops.OPS[node.op]
    try:
        if op.shape is None:
            return broadcast(*args)
        return tuple(op.shape(*args, **node.params))
    except ValueError as exc:
        raise _mismatch(graph, node_id, args, str(exc), what) from None


def _mismatch(graph: Graph, node_id: int, args: list[Shape], reason: str, what: str) -> ParseError:
    node = graph.nodes[node_id]
    shapes = ", ".join(
        f"{graph.label(i)!r} {show(s)}" for i, s in zip(node.inputs, args, strict=True)
    )
    return ParseError(
        f"shape mismatch at node {node_id} ({graph.label(node_id)!r}, {node.op}): "
        f"{reason} (inputs: {shapes})",
        source=graph.source,
        offset=node.span[0],
        what=what,
    )


def of_value(value: Any) -> Shape:
    return tuple(np.shape(value))


def size(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def element_name(name: str, index: tuple[int, ...]) -> str:
    """x, x[2], W[0,1]."""
    return name if not index else f"{name}[{','.join(str(i) for i in index)}]"


def elements(shape: Shape) -> list[tuple[int, ...]]:
    """Every index of an array of this shape, in C order (one empty index for a scalar)."""
    return [tuple(int(i) for i in idx) for idx in np.ndindex(*shape)] if shape else [()]
