"""Where a page draws each node and wire: Graphviz's dot lays the graph out when it is
installed (its plain output read back: boxes and spline points), else a layered layout of
our own (ranks by depth, each rank ordered by its inputs' positions). Left to right."""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass, field

from ..core.errors import BackpropError

POINTS = 72.0  # Graphviz's plain output is in inches; the SVG in points
RANK_GAP = 56.0  # fallback: space between ranks
NODE_GAP = 18.0  # fallback: space between boxes of one rank
MAX_DOT_NODES = 1_500  # beyond this dot takes long with labelled wires: use the fallback
MAX_DOT_SPAN = 1_000  # nor when the wires cross more ranks than this in all
DOT_SECONDS = 30  # and dot gets this long before the fallback is drawn instead


@dataclass
class Box:
    x: float  # centre
    y: float
    width: float
    height: float


@dataclass
class Wire:
    key: str  # "node-k": wire k into node
    points: list[tuple[float, float]]  # cubic Bézier control points, start first
    label: tuple[float, float] | None  # where its label goes


@dataclass
class Layout:
    width: float
    height: float
    boxes: dict[int, Box]
    wires: dict[str, Wire]
    engine: str  # "graphviz" or "layered"
    notes: list[str] = field(default_factory=list)


def lay_out(
    sizes: dict[int, tuple[float, float]],
    wires: list[tuple[str, int, int, str]],
    use_dot: bool = True,
) -> Layout:
    """Boxes of the given sizes (node id → width, height) and wires (key, from node, to node,
    label), laid out by dot when it can be, else by the layered fallback."""
    if not use_dot or shutil.which("dot") is None:
        return layered(sizes, wires)
    why = None
    span = _span(sizes, wires)
    if len(sizes) > MAX_DOT_NODES:
        why = f"{len(sizes):,} nodes are more than the {MAX_DOT_NODES:,} Graphviz lays out here"
    elif span > MAX_DOT_SPAN:
        why = (
            f"its wires cross {span:,} ranks, more than the {MAX_DOT_SPAN:,} Graphviz lays "
            "out with labels in seconds"
        )
    else:
        try:
            return _dot_layout(sizes, wires)
        except BackpropError as exc:
            why = "Graphviz took too long" if "took over" in str(exc) else f"Graphviz failed: {exc}"
    layout = layered(sizes, wires)
    layout.notes.append(f"The graph is laid out in layers, not by Graphviz: {why}.")
    return layout


def _span(sizes: dict[int, tuple[float, float]], wires: list[tuple[str, int, int, str]]) -> int:
    """How many ranks the wires cross in all (each node one rank past its deepest input):
    what makes dot slow with labelled wires."""
    inputs: dict[int, list[int]] = {}
    for _, source, target, _ in wires:
        inputs.setdefault(target, []).append(source)
    rank: dict[int, int] = {}
    total = 0
    for node in sorted(sizes):
        below = [rank[i] for i in inputs.get(node, []) if i in rank]
        rank[node] = 1 + max(below) if below else 0
        total += sum(rank[node] - r for r in below)
    return total


def _dot_text(sizes: dict[int, tuple[float, float]], wires: list[tuple[str, int, int, str]]) -> str:
    lines = [
        "digraph G {",
        "  graph [rankdir=LR, nodesep=0.25, ranksep=0.55];",
        '  node [shape=box, fixedsize=true, label=""];',
        '  edge [fontsize=10, fontname="Courier"];',
    ]
    for node, (w, h) in sizes.items():
        lines.append(f"  n{node} [width={w / POINTS:.4f}, height={h / POINTS:.4f}];")
    for _, source, target, label in wires:
        quoted = label.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'  n{source} -> n{target} [label="{quoted}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_layout(
    sizes: dict[int, tuple[float, float]], wires: list[tuple[str, int, int, str]]
) -> Layout:
    from .picture import run_dot

    plain = run_dot(_dot_text(sizes, wires), "plain", timeout=DOT_SECONDS).decode()
    height = 0.0
    width = 0.0
    boxes: dict[int, Box] = {}
    found: dict[tuple[int, int], list[Wire]] = {}
    for line in plain.splitlines():
        parts = shlex.split(line)
        if not parts:
            continue
        if parts[0] == "graph":
            width, height = float(parts[2]) * POINTS, float(parts[3]) * POINTS
        elif parts[0] == "node":
            x, y = float(parts[2]) * POINTS, height - float(parts[3]) * POINTS
            boxes[int(parts[1][1:])] = Box(x, y, float(parts[4]) * POINTS, float(parts[5]) * POINTS)
        elif parts[0] == "edge":
            count = int(parts[3])
            coords = [float(v) for v in parts[4 : 4 + 2 * count]]
            points = [
                (coords[i] * POINTS, height - coords[i + 1] * POINTS)
                for i in range(0, len(coords), 2)
            ]
            rest = parts[4 + 2 * count :]
            label = None
            if len(rest) >= 5:  # label, x, y, style, color
                label = (float(rest[1]) * POINTS, height - float(rest[2]) * POINTS)
            ends = (int(parts[1][1:]), int(parts[2][1:]))
            # the spline ends where its arrowhead starts: the page draws the head
            found.setdefault(ends, []).append(Wire("", points, label))
    placed: dict[str, Wire] = {}
    for key, source, target, _ in wires:  # dot writes parallel wires in the order given
        wire = found[(source, target)].pop(0)
        wire.key = key
        placed[key] = wire
    return Layout(width, height, boxes, placed, "graphviz")


def layered(
    sizes: dict[int, tuple[float, float]], wires: list[tuple[str, int, int, str]]
) -> Layout:
    """Ranks by depth (a node one rank right of its deepest input), each rank ordered by the
    mean position of its inputs, twice over; wires as curves between the boxes' sides."""
    inputs: dict[int, list[int]] = {n: [] for n in sizes}
    for _, source, target, _ in wires:
        inputs[target].append(source)
    rank: dict[int, int] = {}
    users: dict[int, list[int]] = {n: [] for n in sizes}
    for _, source, target, _ in wires:
        users[source].append(target)
    for node in sorted(sizes):  # ids are in dependency order
        rank[node] = 1 + max((rank[i] for i in inputs[node]), default=-1)
    for node in sizes:  # a leaf sits just before its first user, not in the first rank
        if not inputs[node] and users[node]:
            rank[node] = min(rank[u] for u in users[node]) - 1
    ranks: dict[int, list[int]] = {}
    for node in sorted(sizes):
        ranks.setdefault(rank[node], []).append(node)
    order: dict[int, float] = {}
    for _ in range(2):
        for r in sorted(ranks):
            members = ranks[r]
            for j, node in enumerate(members):
                known = [order[i] for i in inputs[node] if i in order]
                order[node] = sum(known) / len(known) if known else float(j)
            members.sort(key=lambda n: (order[n], n))
            for j, node in enumerate(members):
                order[node] = float(j)
    boxes: dict[int, Box] = {}
    x = 12.0
    tallest = 0.0
    for r in sorted(ranks):
        members = ranks[r]
        column = max(sizes[n][0] for n in members)
        total = sum(sizes[n][1] for n in members) + NODE_GAP * (len(members) - 1)
        tallest = max(tallest, total)
        y = 0.0
        for node in members:
            w, h = sizes[node]
            boxes[node] = Box(x + column / 2, y + h / 2, w, h)
            y += h + NODE_GAP
        x += column + RANK_GAP
    for r in sorted(ranks):  # centre each rank on the tallest
        members = ranks[r]
        top = min(boxes[n].y - boxes[n].height / 2 for n in members)
        bottom = max(boxes[n].y + boxes[n].height / 2 for n in members)
        shift = 12.0 + (tallest - (bottom - top)) / 2 - top
        for node in members:
            boxes[node].y += shift
    placed: dict[str, Wire] = {}
    into: dict[int, int] = {}  # wires drawn so far into each node: their ends are spread
    count = {n: len(inputs[n]) for n in sizes}
    for key, source, target, _ in wires:
        a, b = boxes[source], boxes[target]
        j = into.get(target, 0)
        into[target] = j + 1
        spread = (j - (count[target] - 1) / 2) * min(20.0, b.height / max(1, count[target]))
        start = (a.x + a.width / 2, a.y)
        end = (b.x - b.width / 2 - 10.0, b.y + spread)  # room for the arrowhead
        bend = max(20.0, (end[0] - start[0]) / 2)
        points = [start, (start[0] + bend, start[1]), (end[0] - bend, end[1]), end]
        # the label near the wire's end, where it is clear of the boxes it passes
        placed[key] = Wire(key, points, _on_curve(points, 0.8 if end[0] - start[0] > 120 else 0.7))
    return Layout(x - RANK_GAP + 12.0, tallest + 24.0, boxes, placed, "layered")


def _on_curve(points: list[tuple[float, float]], t: float) -> tuple[float, float]:
    """The point at t along a cubic Bézier, nudged up off the line for its label."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    u = 1 - t
    x = u**3 * x0 + 3 * u * u * t * x1 + 3 * u * t * t * x2 + t**3 * x3
    y = u**3 * y0 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t**3 * y3
    return x, y - 6.0
