"""What `backprop explain --step` shows: a line per step (a node's value, then each `+=` of
the reverse sweep), the final gradients, and the terminal's frame at a step (the node table,
the step's line, the keys). Returns strings and renderables; never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import numbers

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

D = "∂"
ITEMS = 4  # the elements an array shows in a cell or a step's line
KEYS = (  # the keys line, the first that fits the width
    "→ Enter Space n: next   ← p Backspace: back   q Esc Ctrl-C Ctrl-D: quit",
    "→ n Enter: next   ← p: back   q Esc: quit",
    "→ n: next  ← p: back  q: quit",
    "→ ← q",
)
LAST = "  · last step"
CURRENT, SOURCE = "▶", "•"  # the node the step computes or adds to; the node it comes from
COMPUTES = 12  # the fewest columns the table's `computes` keeps
NAME = 24  # the widest the node column gets (a longer name is cut with …)
NAME_FEWEST = 4  # and the fewest it gives way to on a narrow terminal
VALUE = 30  # the widest a value column gets (a longer value, an array's, is cut with …)
VALUE_FEWEST = 8  # and the fewest it gives way to before it goes
TABLE_FEWEST = 3  # a table's fewest lines: its header, the rule and the step's row
MARK, NODE, OP, FORMULA, VALUE_COLUMN, SO_FAR, FINAL = range(7)  # the table's columns


def _num(x: Any) -> str:
    return numbers.number_any(x, items=ITEMS)


def _hop(name: str, operand: str | None) -> str:
    return f"{name} ({operand})" if operand else name


def _flat(text: str) -> str:
    return " ".join(text.split())


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
    notes: list[str] = field(default_factory=list)  # the warnings, shown under the heading
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

    def warning(self) -> str:
        """`! 1 warning: node 1: log(-1) is undefined (nan) …` (empty where there is none)."""
        if not self.notes:
            return ""
        return f"! {numbers.plural(len(self.notes), 'warning')}: " + "; ".join(self.notes)

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
        if node["kind"] == "constant":  # a literal is its value; a named one (pi) is not
            literal = _flat(node["text"])
            shown = literal if _is_number(literal) else f"{node['name']} = {_num(node['value'])}"
            return f"{shown}  (a constant)"
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
        """Step `n` on a terminal of this size: the heading, the warnings, the plan, the node
        table (a window around the step's node where it would not fit), the step's line and
        the keys. What goes where the height is short: table rows, then the plan, the
        warnings, the heading, then the keys; the step's line is always there (cut with …
        only where it is taller than the terminal)."""
        from rich.console import Group
        from rich.text import Text

        width, height = max(1, width), max(1, height)
        wrapped = _wrap(self.line(n), width)
        said = wrapped[:height]
        if len(said) < len(wrapped):
            said[-1] = _cut(said[-1], width)
        room = height - len(said)
        keys = [Text(self.keys(n, width), style="dim", no_wrap=True, overflow="ellipsis")]
        keys, room = keys[:room], max(0, room - 1)
        top: list[RenderableType] = []
        for text, style in ((self.heading(), "bold"), (self.warning(), "yellow"),
                            (self.plan(), "dim")):  # fmt: skip
            if text and room:
                top.append(Text(text, style=style, no_wrap=True, overflow="ellipsis"))
                room -= 1
        middle: list[RenderableType] = []
        if room >= TABLE_FEWEST:
            gaps = min(2 if top else 1, room - TABLE_FEWEST)
            table = self._table(self.state(n), room - gaps - 2, width, n > self.forward)
            above, below = [Text("")] * (gaps - 1), [Text("")] * min(gaps, 1)
            middle = [*above, table, *below]  # blank lines: under the plan, over the step
        elif top and room:
            middle = [Text("")]
        return Group(*top, *middle, *said, *keys)

    def keys(self, n: int, width: int) -> str:
        """The keys line, as much of it as fits (and that this is the last step)."""
        from rich.cells import cell_len

        last = LAST if n == self.count else ""
        for keys in KEYS:
            if cell_len(keys + last) <= width:
                return keys + last
        return KEYS[-1]

    def _table(self, state: _State, rows: int, width: int, backward: bool) -> Table:
        """The node table in `rows` lines below its header, no wider than `width`: the
        marker and node columns always, the others as they fit (see `_fit`)."""
        from rich import box
        from rich.cells import cell_len
        from rich.table import Table

        grad = f"{D}{self.out}/{D}node"
        titles = ["", "node", "op", "computes", "value", f"{grad} so far", grad]
        order = self.data["forward"]
        at = order.index(state.current)
        start, stop = window(len(order), at, rows) if rows >= 3 else (at, at + 1)
        counted = rows >= 3 and (start, stop) != (0, len(order))
        measured = self._widths(titles)
        if counted:  # room for `… 12 more`
            measured[NODE] = max(measured[NODE], cell_len(f"… {len(order):,} more"))
        keep, widths = _fit(measured, width, backward)
        if widths[SO_FAR] < cell_len(titles[SO_FAR]):
            titles[SO_FAR] = "so far"
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
        for i in keep:
            table.add_column(titles[i], justify="right" if i > FORMULA else "left",
                             no_wrap=True, overflow="ellipsis", width=widths[i])  # fmt: skip
        if counted and start:
            table.add_row("", f"… {start:,} more", style="dim")
        for i in order[start:stop]:
            cells = self._row(self.nodes[i], state)
            table.add_row(*(cells[k] for k in keep), style=_style(i, state))
        if counted and stop < len(order):
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


def _fit(measured: list[int], width: int, backward: bool) -> tuple[list[int], list[int]]:
    """The table's columns for a terminal `width` wide, and the width each gets: every
    column where all fit (`computes` narrowed to what is left, down to COMPUTES); where they
    do not, op goes, then `computes`, then the final gradient. Narrower still, the value
    columns and then the node names give way down to their fewest, and one of the two value
    columns goes (the value in the backward sweep, the gradient so far in the forward
    pass), then the other. The marker and the node column always stay, and the table is
    never wider than `width` (so nothing else is squeezed)."""
    widths = list(measured)
    widths[NODE] = min(widths[NODE], NAME)
    for i in (VALUE_COLUMN, SO_FAR, FINAL):
        widths[i] = min(widths[i], VALUE)

    def total(keep: list[int]) -> int:  # a space either side of each rule, none at the edges
        return sum(widths[i] for i in keep) + 3 * (len(keep) - 1)

    for drop in ((), (OP,), (OP, FORMULA), (OP, FORMULA, FINAL)):
        keep = [i for i in range(len(widths)) if i not in drop]
        if FORMULA not in keep:
            if total(keep) <= width:
                return keep, widths
            continue
        spare = width - total(keep) + widths[FORMULA]
        if spare >= min(widths[FORMULA], COMPUTES):
            widths[FORMULA] = min(widths[FORMULA], spare)
            return keep, widths
    fewest = {i: min(measured[i], VALUE_FEWEST) for i in (VALUE_COLUMN, SO_FAR)}
    fewest[NODE] = min(measured[NODE], NAME_FEWEST)
    kept = SO_FAR if backward else VALUE_COLUMN
    for columns in ([VALUE_COLUMN, SO_FAR], [kept], []):
        keep = sorted([MARK, NODE, *columns])
        while total(keep) > width and any(widths[i] > fewest[i] for i in columns):
            widest = max((i for i in columns if widths[i] > fewest[i]), key=widths.__getitem__)
            widths[widest] -= 1  # the wider value column gives way first
        widths[NODE] = max(fewest[NODE], widths[NODE] - max(0, total(keep) - width))
        if total(keep) <= width:
            return keep, widths
    widths[NODE] = max(1, width - widths[MARK] - 3)
    return keep, widths


def _wrap(line: str, width: int) -> list[Text]:
    """The step's line as the terminal shows it, wrapped at `width` (Rich's own wrapping)."""
    from rich.text import Text

    return [
        Text(part.plain, style="bold", no_wrap=True, overflow="ellipsis")
        for part in Text(line).wrap(_measure(), width)
    ]


def _cut(text: Text, width: int) -> Text:
    """A line that goes on below the screen: ends in … within `width`."""
    from rich.cells import set_cell_size
    from rich.text import Text

    plain = text.plain.rstrip()
    return Text(set_cell_size(plain, max(0, width - 1)).rstrip() + "…", style=text.style,
                no_wrap=True, overflow="ellipsis")  # fmt: skip


_measurer: list[Console] = []


def _measure() -> Console:
    """A console that only measures (Text.wrap takes one); it writes nowhere."""
    if not _measurer:
        import io

        from rich.console import Console

        _measurer.append(Console(file=io.StringIO(), color_system=None, force_terminal=False))
    return _measurer[0]


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
