"""What `backprop explain --step` shows: a line per step (a node's value, then each `+=` of
the reverse sweep), the final gradients, and the terminal's frame at a step (the node table,
the step's line, the keys). Returns strings and renderables; never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import numbers

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

D = "∂"
ITEMS = 4  # the elements an array shows in a cell or a step's line
KEYS = "→ Enter Space n: next   ← p Backspace: back   q Esc Ctrl-C: quit"
CURRENT, SOURCE = "▶", "•"  # the node the step computes or adds to; the node it comes from
CHROME = 7  # the frame's lines besides the table's rows and the step's line
COMPUTES = 12  # the fewest columns the table's `computes` keeps


def _num(x: Any) -> str:
    return numbers.number_any(x, items=ITEMS)


def _hop(name: str, operand: str | None) -> str:
    return f"{name} ({operand})" if operand else name


def _flat(text: str) -> str:
    return " ".join(text.split())


def formula(node: dict[str, Any], nodes: dict[int, dict[str, Any]]) -> str:
    """What an operation computes, in its inputs' names: `t1 * z`, `exp(t2)`, `-t1`."""
    args = [str(nodes[i]["name"]) for i in node["inputs"]]
    label = str(node["label"])
    if node["kind"] != "operation":
        return str(node["name"])
    if label == "neg" or (label == "-" and len(args) == 1):
        return f"-{args[0]}"
    if len(args) == 2 and not label.isidentifier():
        return f"{args[0]} {label} {args[1]}"
    return f"{label}({', '.join(args)})"


@dataclass
class _State:
    """The table at one step: what is computed, each gradient so far, which are final,
    and the nodes the step is about."""

    computed: set[int]
    so_far: dict[int, Any]
    final: set[int]
    current: int
    source: int | None = None


@dataclass
class Steps:
    """The step-through of one walk (analyses/walk.py), its steps numbered from 1: first
    each node's value in evaluation order, then each `+=` of the reverse sweep."""

    data: dict[str, Any]
    nodes: dict[int, dict[str, Any]] = field(init=False)
    operands: dict[str, str | None] = field(init=False)
    last: dict[int, int] = field(init=False)  # node: the backward step that completes it
    widths: dict[int, list[int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes = {n["id"]: n for n in self.data["nodes"]}
        self.operands = {e["id"]: e["operand"] for e in self.data["edges"]}
        self.last = {s["input"]: i for i, s in enumerate(self.data["backward"], 1)}

    @property
    def forward(self) -> int:
        return len(self.data["forward"])

    @property
    def count(self) -> int:
        return self.forward + len(self.data["backward"])

    @property
    def out(self) -> str:
        name: str = self.data["output_name"]
        return name

    # ---- the lines -------------------------------------------------------------------

    def heading(self) -> str:
        """`f = (x+y)*z = -12 at x = -2, y = 5, z = -4`."""
        output = self.nodes[self.data["output"]]
        text = _flat(output["text"])
        shown = self.out if text == self.out else f"{self.out} = {text}"
        point = ", ".join(f"{k} = {_num(v)}" for k, v in self.data["variables"].items())
        return f"{shown} = {_num(output['value'])}" + (f" at {point}" if point else "")

    def plan(self) -> str:
        """`5 forward steps (a value per node), then 4 backward steps (one += each)`."""
        return (
            f"{numbers.plural(self.forward, 'forward step')} (a value per node), then "
            f"{numbers.plural(len(self.data['backward']), 'backward step')} (one += each)"
        )

    def line(self, n: int) -> str:
        """Step `n`'s line: `step 9 of 9 · backward: ∂f/∂y += … = -4  (so far -4)`."""
        return f"step {n} of {self.count} · {self.what(n)}"

    def what(self, n: int) -> str:
        """What step `n` does, in words (the terminal's line and the page's)."""
        if n <= self.forward:
            return "forward: " + self._computes(self.nodes[self.data["forward"][n - 1]])
        return "backward: " + self._adds(self.data["backward"][n - self.forward - 1])

    def _computes(self, node: dict[str, Any]) -> str:
        if node["kind"] == "variable":
            return f"{node['name']} = {_num(node['value'])}  (a variable)"
        if node["kind"] == "constant":
            return f"{node['name']}  (a constant)"
        return f"{node['name']} = {formula(node, self.nodes)} = {_num(node['value'])}"

    def _adds(self, step: dict[str, Any]) -> str:
        into, via = self.nodes[step["input"]]["name"], self.nodes[step["node"]]["name"]
        operand = self.operands.get(step["edge"])
        so_far = f"  (so far {_num(step['total'])})"
        total = f"{D}{self.out}/{D}{into}"
        if step["local"] is None:  # arrays: each op's rule, no single local derivative
            share = f"the share through {via} → {_hop(into, operand)}"
            return f"{total} += {share} = {_num(step['contribution'])}{so_far}"
        notes = (operand, "local" if step["node"] == self.data["output"] else None)
        said = ", ".join(n for n in notes if n)
        local = f"{D}{via}/{D}{into}" + (f" ({said})" if said else "")
        return (
            f"{total} += {D}{self.out}/{D}{via} · {local} = {_num(step['upstream'])} · "
            f"{_num(step['local'])} = {_num(step['contribution'])}{so_far}"
        )

    def gradients(self, wrt: list[str] | None = None) -> list[str]:
        """The final gradient of each variable (those of `wrt` only, where given)."""
        names = {n["name"]: n for n in self.data["nodes"] if n["kind"] == "variable"}
        lines = []
        for name in wrt if wrt is not None else list(self.data["variables"]):
            node = names.get(name)
            if node is None:
                lines.append(f"{D}{self.out}/{D}{name} = 0  ({self.out} does not depend on it)")
            else:
                grad = numbers.number_any(node["grad"], items=36)
                lines.append(f"{D}{self.out}/{D}{name} = {grad}")
        return lines

    def transcript(self, wrt: list[str] | None = None) -> str:
        """Every step, one line each, after the heading; then the gradients."""
        lines = [self.heading(), self.plan(), *(self.line(n) for n in range(1, self.count + 1))]
        found = self.gradients(wrt)
        lines += ["the gradients:", *(f"  {g}" for g in found)] if found else ["no variables"]
        return "\n".join(lines) + "\n"

    # ---- the terminal's frame --------------------------------------------------------

    def state(self, n: int) -> _State:
        done = self.data["backward"][: max(0, n - self.forward)]
        computed = set(self.data["forward"][: min(n, self.forward)])
        so_far: dict[int, Any] = {s["input"]: s["total"] for s in done}
        final = {i for i, last in self.last.items() if last <= len(done)}
        if n > self.forward or n == self.count:  # the sweep has started: ∂f/∂f is the seed
            output = self.data["output"]
            so_far.setdefault(output, self.nodes[output]["grad"])
            final.add(output)
        if n == self.count:
            final |= set(self.nodes)
        if not done:
            return _State(computed, so_far, final, self.data["forward"][n - 1])
        return _State(computed, so_far, final, done[-1]["input"], done[-1]["node"])

    def frame(self, n: int, width: int, height: int) -> RenderableType:
        """Step `n` on a terminal of this size: the heading, the node table (a window
        around the step's node where it would not fit), the step's line and the keys."""
        from rich.cells import cell_len
        from rich.console import Group
        from rich.text import Text

        line = self.line(n)
        wrapped = -(-cell_len(line) // max(1, width))
        rows = max(3, height - CHROME - wrapped)
        keys = KEYS + ("  · last step" if n == self.count else "")
        return Group(
            Text(self.heading(), style="bold", no_wrap=True, overflow="ellipsis"),
            Text(self.plan(), style="dim", no_wrap=True, overflow="ellipsis"),
            Text(""),
            self._table(self.state(n), rows, width),
            Text(""),
            Text(line, style="bold"),
            Text(keys, style="dim", no_wrap=True, overflow="ellipsis"),
        )

    def _table(self, state: _State, rows: int, width: int) -> Table:
        from rich import box
        from rich.table import Table

        grad = f"{D}{self.out}/{D}node"
        titles = ["", "node", "op", "computes", "value", f"{grad} so far", grad]
        order = self.data["forward"]
        start, stop = window(len(order), order.index(state.current), rows)
        widths = self._widths(titles)
        if (start, stop) != (0, len(order)):  # room for `… 12 more`
            widths[1] = max(widths[1], len(f"… {len(order):,} more"))
        keep = _columns(widths, width)
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold")
        for i in keep:
            wide = widths[i]
            table.add_column(titles[i], justify="right" if i > 3 else "left", no_wrap=True,
                             overflow="ellipsis", min_width=wide, max_width=wide)  # fmt: skip
        if start:
            table.add_row("", f"… {start:,} more", style="dim")
        for i in order[start:stop]:
            cells = self._row(self.nodes[i], state)
            table.add_row(*(cells[k] for k in keep), style=_style(i, state))
        if stop < len(order):
            table.add_row("", f"… {len(order) - stop:,} more", style="dim")
        return table

    def _widths(self, titles: list[str]) -> list[int]:
        """Each column's width: the widest thing it shows at any step, so that columns
        stay put from step to step (worked out once for each --digits)."""
        key = numbers.digits()
        if key not in self.widths:
            self.widths[key] = self._measure(titles)
        return list(self.widths[key])

    def _measure(self, titles: list[str]) -> list[int]:
        from rich.cells import cell_len

        nodes = self.data["nodes"]
        totals = [s["total"] for s in self.data["backward"]] + [n["grad"] for n in nodes]
        cells = [
            [CURRENT],
            [n["name"] for n in nodes],
            [self._op(n) for n in nodes],
            [_flat(n["text"]) for n in nodes],
            [_num(n["value"]) for n in nodes],
            [_num(t) for t in totals if t is not None],
            [_num(n["grad"]) for n in nodes if n["grad"] is not None],
        ]
        return [
            max(cell_len(title), *(cell_len(c) for c in column))
            for title, column in zip(titles, cells, strict=True)
        ]

    @staticmethod
    def _op(node: dict[str, Any]) -> str:
        return str(node["kind"] if node["kind"] != "operation" else node["label"])

    def _row(self, node: dict[str, Any], state: _State) -> list[str]:
        i = node["id"]
        mark = CURRENT if i == state.current else SOURCE if i == state.source else ""
        return [
            mark,
            node["name"],
            self._op(node),
            _flat(node["text"]),
            _num(node["value"]) if i in state.computed else "",
            _num(state.so_far[i]) if i in state.so_far else "",
            _num(node["grad"]) if i in state.final and node["grad"] is not None else "",
        ]


def _columns(widths: list[int], width: int) -> list[int]:
    """The columns that fit `width`, `computes` (3) narrowed to fit; where even that is too
    wide, op (2) goes, then `computes`. Sets widths[3] to the width `computes` gets."""
    keep = list(range(len(widths)))
    for drop in (None, 2, 3):
        if drop is not None:
            keep.remove(drop)
        rest = sum(widths[i] for i in keep if i != 3) + 3 * len(keep) - 1  # padding, rules
        if 3 not in keep or width - rest >= COMPUTES:
            break
    if 3 in keep:
        widths[3] = min(widths[3], width - rest)
    return keep


def _style(i: int, state: _State) -> str:
    if i == state.current:
        return "bold reverse"
    return "bold cyan" if i == state.source else ""


def window(size: int, at: int, rows: int) -> tuple[int, int]:
    """The rows [start, stop) of a table of `size` rows that `rows` lines show, keeping row
    `at` in view (two of the lines say how many are left out above and below)."""
    if size <= rows:
        return 0, size
    shown = max(1, rows - 2)
    start = min(max(0, at - shown // 2), size - shown)
    return start, start + shown
