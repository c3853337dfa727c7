"""The graph IR: plain, frozen data. Nodes are listed in dependency order (every input id is
smaller than the node's own id), so each interpretation is a loop over `graph.nodes`.

`validate` checks the invariants instead of hoping for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import ops

T = TypeVar("T")
MAX_FACTS = 16  # derived facts kept per graph (shapes for a few input shapes, ...)

LABEL_WIDTH = 32


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    op: str  # "input", "const", or a registry op name
    inputs: tuple[int, ...] = ()
    name: str | None = None  # the variable's name, or the name a statement assigned
    value: Any = None  # constants only: a float, or a read-only numpy array
    span: tuple[int, int] = (0, 0)  # where the node's text lies in the graph's source
    attrs: tuple[tuple[str, Any], ...] = ()  # array ops: (("axis", 0),), (("shape", (2, 3)),)

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.attrs)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    output: int
    source: str = ""
    variables: dict[str, int] = field(default_factory=dict)  # name -> input node id, sorted
    # Facts derived from the nodes (shapes for given input shapes, which nodes need a
    # gradient, ...), computed once and carried with the graph: it never changes.
    _facts: dict[Any, Any] = field(default_factory=dict, init=False, compare=False, repr=False)

    def fact(self, key: Any, compute: Callable[[], T]) -> T:
        """The fact named `key`, computed by `compute` the first time it is asked for."""
        if key in self._facts:
            found: T = self._facts[key]
            return found
        value = compute()
        if len(self._facts) >= MAX_FACTS:  # training asks for many batch shapes
            self._facts.clear()
        self._facts[key] = value
        return value

    @property
    def out(self) -> Node:
        return self.nodes[self.output]

    def text(self, node_id: int, limit: int | None = None) -> str:
        """The source text a node came from (spans are kept, not copies of the text),
        cut to `limit` characters with '…' when asked."""
        start, end = self.nodes[node_id].span
        if limit is not None and end - start > limit:
            return self.source[start : start + limit - 1] + "…"
        return self.source[start:end]

    def label(self, node_id: int) -> str:
        """What the user calls a node: its name, else the text they typed (shortened)."""
        node = self.nodes[node_id]
        if node.name is not None:
            return node.name
        start, end = node.span
        text = " ".join(self.source[start : min(end, start + 4 * LABEL_WIDTH)].split())
        if len(text) > LABEL_WIDTH or end - start > 4 * LABEL_WIDTH:
            text = text[: LABEL_WIDTH - 1] + "…"
        return text

    def output_name(self) -> str:
        """What to call the output in ∂out/∂x: its name, else f, never a variable's name."""
        for name in (self.out.name, "f", "out", "output"):
            if name and name not in self.variables:
                return name
        return "output_"

    def short_names(self) -> list[str]:
        """A short, stable name per node for formulas: the name it was given (primed when
        reassigned: a, a', a'', a'3, …), the variable, the literal, or t1, t2, … for unnamed
        ops."""
        names: list[str] = []
        seen: dict[str, int] = {name: 1 for name in self.variables}
        unnamed = 0
        taken = set(self.variables) | {n.name for n in self.nodes if n.name}
        for node in self.nodes:
            if node.op == "input":
                assert node.name is not None
                names.append(node.name)
            elif node.op == "const":
                names.append(self.text(node.id))
            elif node.name is not None:
                count = seen.get(node.name, 0)
                seen[node.name] = count + 1
                names.append(node.name + ("'" * count if count <= 2 else f"'{count}"))
            else:
                unnamed += 1
                while f"t{unnamed}" in taken:
                    unnamed += 1
                names.append(f"t{unnamed}")
        return names

    def display_names(self) -> list[str]:
        """Every node's one name, the same in every table, explanation, tree, picture and
        JSON document: `short_names`, with an unnamed output called as in ∂f/∂x."""
        names = self.short_names()
        if self.out.name is None and self.out.op != "input":
            names[self.output] = self.output_name()
        return names

    def consumers(self) -> list[list[int]]:
        users: list[list[int]] = [[] for _ in self.nodes]
        for node in self.nodes:
            for i in node.inputs:
                users[i].append(node.id)
        return users

    def depends_on(self) -> list[frozenset[str]]:
        """For each node, the variables it depends on (a loop in dependency order)."""
        deps: list[frozenset[str]] = []
        for node in self.nodes:
            if node.op == "input":
                assert node.name is not None
                deps.append(frozenset((node.name,)))
            else:
                deps.append(frozenset().union(*(deps[i] for i in node.inputs)))
        return deps

    def ancestors_of_output(self) -> list[bool]:
        """Which nodes the output depends on (a loop over reversed ids)."""
        reach = [False] * len(self.nodes)
        reach[self.output] = True
        for node in reversed(self.nodes[: self.output + 1]):
            if reach[node.id]:
                for i in node.inputs:
                    reach[i] = True
        return reach


def validate(graph: Graph) -> None:
    """Check the IR invariants; a failure is a bug in whoever built the graph."""
    seen_vars: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        assert node.id == index, f"node ids must be 0..n-1 in order, got {node.id} at {index}"
        if node.op == "input":
            assert node.name and not node.inputs, f"input node {index} needs a name, no inputs"
            assert node.name not in seen_vars, f"variable {node.name!r} has two input nodes"
            seen_vars[node.name] = index
        elif node.op == "const":
            assert node.value is not None and not node.inputs, f"const node {index} is malformed"
        else:
            op = ops.get(node.op)
            assert len(node.inputs) == op.arity, f"node {index} ({node.op}) has wrong arity"
            unknown = set(node.params) - set(op.attrs)
            assert not unknown, f"node {index} ({node.op}) has unknown attributes {unknown}"
            for i in node.inputs:
                assert 0 <= i < index, f"node {index} uses {i}: not in dependency order"
    assert 0 <= graph.output < len(graph.nodes), "the output must be a node of the graph"
    assert graph.variables == dict(sorted(seen_vars.items())), "variables must match inputs"
