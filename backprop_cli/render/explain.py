"""How `backprop explain` reads: the chain rule along every path, the staged backward pass,
forward accumulation and what each mode costs, as Rich panels, Markdown or LaTeX.
Returns strings and renderables; never prints.

Every number follows the --digits setting (render/numbers.py), the numbers inside the
formulas too; JSON keeps them in full. Every node goes by its one short name (t1, t2, … for
unnamed intermediates), and an edge into a node that takes the same input twice (x*x) says
which operand it is, so that no two paths read the same. The output's local derivative by a
variable it takes directly (f = t1 + x) is marked local, so that it never reads as the
total it adds up to. Markdown writes its mathematics as `$…$` LaTeX (Jupyter and GitHub
render it) and keeps code spans for the program's text.

The terminal's view wraps to its width between words, never inside a number, and its
tables stack a block per row where they would not fit; the LaTeX document fits its page.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from . import numbers
from .gradient import Column, Fitted, Hanging, code, md_text

if TYPE_CHECKING:
    from rich.console import RenderableType

D = "∂"
MAX_LEGEND_SHOWN = 40  # intermediates listed in the terminal and in Markdown
LATEX_LINE = 110  # a sum of terms longer than this breaks into one term per line

# A decimal or scientific number inside a formula's text: 1.3678794411714423, 1e-05.
_DECIMAL = re.compile(r"(?<![\w.])(?:\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)(?![\w.])")
# The same in LaTeX: 1.3678794411714423, 1.5 \times 10^{-5} (integers never change).
_TEX_DECIMAL = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?: \\times 10\^\{(-?\d+)\})?(?![\w.])")


def _num(x: float) -> str:
    return numbers.number(x)


def _array(x: Any, items: int = 6) -> str:
    """A number, or an array: every element when there are at most `items`, else its
    shape and a few elements ((10,) [0, 1, 2, …, 9])."""
    if not isinstance(x, list):
        return _num(x)
    array = np.asarray(x, dtype=np.float64)
    text = _compact(array, items)
    return text if array.size <= items else f"{tuple(array.shape)} {text}"


def _compact(array: np.ndarray, items: int) -> str:
    if array.ndim == 0:
        return _num(float(array))
    if array.size <= items:
        parts = [_compact(a, items) for a in array]
    elif array.ndim == 1:
        head = max(1, items // 2)
        parts = [*(_compact(a, items) for a in array[:head]), "…", _compact(array[-1], items)]
    else:
        parts = [_compact(array[0], items), *(["…"] if array.shape[0] > 1 else [])]
    return "[" + ", ".join(parts) + "]"


def _rounded(text: str) -> str:
    """A formula with the values put in (-1/1.3678794411714423**2), its numbers at the
    current --digits (-1/1.368**2); integers and names are left as they are."""
    text = _DECIMAL.sub(lambda m: _num(float(m[0])), text)
    text = re.sub(r"\(\((-[^()]*)\)\)", r"(\1)", text)  # exp((-1)) as exp(-1)
    return text.replace("(-0)", "0")


def _rounded_tex(text: str) -> str:
    """`_rounded` for the LaTeX of a formula (1.5 \\times 10^{-5} is one number)."""

    def one(m: re.Match[str]) -> str:
        if "." not in m[1] and m[2] is None:
            return m[0]
        return _tex_number(float(m[1] + (f"e{m[2]}" if m[2] is not None else "")))

    return _TEX_DECIMAL.sub(one, text).replace(r"\left(-0\right)", "0")


def _tex_number(x: float) -> str:
    if math.isnan(x):
        return r"\mathrm{nan}"
    if math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    text = _num(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


def _tex_literal(text: str) -> str:
    """A number as typed in the program, in LaTeX: 1e-7 as 1 \\times 10^{-7}."""
    match = re.fullmatch(r"(\d*\.?\d*)[eE]([-+]?\d+)", text)
    return rf"{match[1]} \times 10^{{{int(match[2])}}}" if match else text


def _point(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {_array(v)}" for k, v in report["variables"].items())


def _hop(name: str, operand: str | None) -> str:
    """A node on a path, with the operand it enters its consumer by where that is needed."""
    return f"{name} ({operand})" if operand else name


def _path_names(path: dict[str, Any]) -> list[str]:
    """The nodes along a path, output first: f → t1 → x (left)."""
    names = [path["names"][0]]
    gap = False
    for link in path["links"]:
        if "omitted" in link:
            names.append("…")
            gap = True
            continue
        if gap:
            names.append(link["from"])
            gap = False
        names.append(_hop(link["to"], link.get("operand")))
    return names


def _partial_text(node: str, operand: str, position: str | None = None) -> str:
    return f"{D}{node}/{D}{_hop(operand, position)}"


def _collides(report: dict[str, Any], node: str, operand: str, position: str | None) -> bool:
    """Whether the local derivative of the output by a variable it takes directly (f = t1 + x)
    would read as the total derivative the report states (∂f/∂x = 7 while the local factor
    is 1): then it is marked local."""
    return position is None and node == report["output"]["name"] and operand in report["variables"]


def _factor_text(report: dict[str, Any], node: str, operand: str, position: str | None) -> str:
    """A local derivative: ∂t1/∂x (left), or ∂f/∂x (local) where ∂f/∂x is also the total."""
    shown = _partial_text(node, operand, position)
    return f"{shown} (local)" if _collides(report, node, operand, position) else shown


def _is_sum(text: str) -> bool:
    """Whether a formula has a + or a binary - outside brackets (1 - h**2, x + y): as a
    factor of a product it needs parentheses. A leading sign and an exponent's sign (1e-05)
    do not count."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch in "+-" and depth == 0 and i > 0:
            before = text[:i].rstrip()
            if not before or before[-1] in "(*/^,=":
                continue  # a sign, not an operation
            if before[-1] in "eE" and len(before) > 1 and before[-2].isdigit():
                continue  # 1e-05
            return True
    return False


def _factor(text: str) -> str:
    """A formula as a factor of a product: in parentheses where it is a sum."""
    return f"({text})" if _is_sum(text) else text


def _path_lines(report: dict[str, Any], path: dict[str, Any]) -> tuple[str, str, str]:
    """The chain, the product symbolically, and with the values put in."""
    chain, symbolic, numeric = [], [], []
    for link in path["links"]:
        if "omitted" in link:
            chain.append(f"… ({numbers.plural(link['omitted'], 'more factor')}) …")
            symbolic.append("…")
            numeric.append("…")
            continue
        chain.append(_factor_text(report, link["from"], link["to"], link.get("operand")))
        symbolic.append(_factor(link["formula"]["text"]))
        numeric.append(_factor(_rounded(link["formula"]["at"])))
    product = _num(path["product"])
    values = " · ".join(numeric) or "1"
    return (
        " · ".join(chain) or "1",
        " · ".join(symbolic) or "1",
        product if values in (product, f"({product})") else f"{values} = {product}",
    )


def _mark(v: dict[str, Any]) -> str:
    return {"ok": "✓", "inconclusive": "≈"}.get(v["verdict"], "✗")


def _sum_what(v: dict[str, Any]) -> str:
    return "sum over paths" if v["paths"] or not v["groups"] else "sum over groups"


def _rounding_note(v: dict[str, Any]) -> str:
    if v["verdict"] != "inconclusive":
        return ""
    return " (they differ by rounding that this point magnifies)"


def _verdict(v: dict[str, Any], out: str) -> str:
    return (
        f"{_mark(v)} {_sum_what(v)}: {_num(v['sum'])}; the reverse sweep gives "
        f"{D}{out}/{D}{v['variable']} = {_num(v['gradient'])}{_rounding_note(v)}"
    )


def _count(n: int) -> str:
    if n >= 10**15:
        return f"about 10^{len(str(n)) - 1} paths"
    return numbers.plural(n, "path")


def _intermediates(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The legend's named intermediates: not the variables, not the output, and not a
    name that only repeats its own text."""
    out = report["output"]["id"]
    return [
        e
        for e in report["legend"]
        if e["op"] != "input" and e["name"] != e["text"] and e["id"] != out
    ]


def _more(count: int) -> list[str]:
    if count <= MAX_LEGEND_SHOWN:
        return []
    return [f"… and {count - MAX_LEGEND_SHOWN} more (--format json lists them)"]


def _legend_text(report: dict[str, Any]) -> list[str]:
    rows = _intermediates(report)
    lines = [f"{e['name']} = {' '.join(e['text'].split())}  ({_num(e['value'])})" for e in rows]
    return lines[:MAX_LEGEND_SHOWN] + _more(len(lines))


def _heading_text(report: dict[str, Any]) -> str:
    """`out = text = value`, without repeating the name when the text is a statement."""
    out, text = report["output"]["name"], " ".join(report["output"]["text"].split())
    return text if text.startswith(f"{out} ") else f"{out} = {text}"


def _cut_notes(report: dict[str, Any]) -> list[str]:
    notes = []
    hidden = report.get("variables_not_shown") or []
    if hidden:
        notes.append(
            f"{numbers.plural(len(hidden), 'more variable')} not explained here: choose with --wrt"
        )
    total, shown = report.get("reverse_steps_total", 0), len(report["reverse_steps"])
    if total > shown:
        notes.append(
            f"the reverse sweep has {numbers.plural(total, 'step')}; the first {shown:,} are shown"
        )
    for sweep in report["forward_sweeps"]:
        if sweep["steps_total"] > len(sweep["steps"]):
            notes.append(
                f"the forward sweep for {sweep['variable']} has "
                f"{numbers.plural(sweep['steps_total'], 'step')}; the first "
                f"{len(sweep['steps']):,} are shown"
            )
    return notes


def _cost_text(report: dict[str, Any]) -> str:
    cost = report["cost"]
    forward, reverse = cost["forward"], cost["reverse"]
    return (
        f"Cost for {numbers.plural(forward['sweeps'], 'input')} and one output over "
        f"{numbers.plural(cost['operations'], 'operation')} — forward mode: "
        f"{numbers.plural(forward['sweeps'], 'sweep')} (one per input), no intermediates "
        f"kept; reverse mode: {numbers.plural(reverse['sweeps'], 'sweep')} (forward, then "
        f"backward), {numbers.plural(reverse['stored'], 'intermediate')} kept for the "
        "backward sweep."
    )


# ---- Rich -----------------------------------------------------------------------------------


def panels(report: dict[str, Any]) -> list[RenderableType]:
    """The terminal's view, fitted to the width it is drawn at: long lines wrap between
    words (a number is never cut), and a table too wide for the terminal becomes a block
    per row."""
    from rich.text import Text
    from rich.tree import Tree

    if report.get("arrays"):
        return _array_panels(report)
    out = report["output"]["name"]
    head = Text()
    head.append(_heading_text(report)[:200])
    head.append(f" = {_num(report['output']['value'])}", style="bold green")
    if report["variables"]:
        head.append(f"  at {_point(report)}")
    items: list[RenderableType] = [head]
    legend = _legend_text(report)
    if legend:
        items.append(Hanging(Text("where ", style="dim"), Text("\n".join(legend), style="dim")))
    for v in report["partials"]:
        tree = Tree(
            Text(f"{D}{out}/{D}{v['variable']}: {_count(v['count'])} from {out} to {v['variable']}",
                 style="bold")
        )  # fmt: skip
        for n, path in enumerate(v["paths"], start=1):
            chain, symbolic, numeric = _path_lines(report, path)
            branch = tree.add(Text(f"path {n}: " + " → ".join(_path_names(path)), style="cyan"))
            branch.add(chain)
            branch.add(f"= {symbolic}")
            branch.add(Text(f"= {numeric}", style="green"))
        for group in v["groups"]:
            tree.add(
                f"via {group['via']}: {_count(group['count'])}, "
                f"{_factor_text(report, out, group['via'], None)} · "
                f"{D}{group['via']}/{D}{v['variable']} = "
                f"{_num(group['local'])} · … = {_num(group['sum'])}"
            )
        style = {"ok": "green", "inconclusive": "yellow"}.get(v["verdict"], "bold red")
        tree.add(Text(_verdict(v, out), style=style))
        items.append(tree)
    if report["reverse_steps"]:
        items.append(_reverse_table(report))
    for sweep in report["forward_sweeps"]:
        items.append(_forward_table(report, sweep))
    for note in _cut_notes(report):
        items.append(Text(f"note: {note}", style="yellow"))
    items.append(Text(_cost_text(report), style="dim"))
    return items


# A number as a cell shows it, perhaps with its brackets and comma ([0.25, or -0.75).
_SHOWN_NUMBER = re.compile(r"^[(\[]*-?(?:\d+(?:\.\d*)?(?:e[-+]?\d+)?|inf|nan)[,)\]]*$")


def _cell_text(cell: Any) -> str:
    return str(getattr(cell, "plain", cell))


class _Table(Fitted):
    """A Fitted table whose wrapping cells keep their numbers whole too (a local
    derivative's value), however many digits --digits asks for."""

    def needs(self, folded: bool = False) -> int:
        # Rich narrows the widest wrapping columns first, down to a common width: at the
        # width of the longest number in them no number is cut.
        from rich.cells import cell_len

        headers = self._headers(folded)
        cells = [[_cell_text(c) for c in row] for row in self.rows if row is not None]
        lines, longest = [], 0
        for i, column in enumerate(self.columns):
            texts = [headers[i], *(row[i] for row in cells)]
            lines.append(max(cell_len(part) for text in texts for part in text.split("\n")))
            if not column.whole:
                found = [w for text in texts[1:] for w in text.split() if _SHOWN_NUMBER.match(w)]
                longest = max([longest, *map(cell_len, found)])
        inner = sum(
            line if column.whole else min(line, longest)
            for line, column in zip(lines, self.columns, strict=True)
        )
        return max(super().needs(folded), inner + 3 * len(self.columns) + 1)


def _reverse_table(report: dict[str, Any]) -> RenderableType:
    out = report["output"]["name"]
    columns = [
        Column("#", justify="right", whole=True, head=True),
        Column("edge", head=True),
        Column(f"{D}{out}/{D}node", justify="right", whole=True),
        Column("local derivative"),
        Column("contribution", justify="right", whole=True),
        Column(f"{D}{out}/{D}input so far", justify="right", whole=True),
    ]
    rows: list[list[Any] | None] = []
    for s in report["reverse_steps"]:
        operand = s.get("operand")
        rows.append(
            [
                str(s["step"]),
                f"{s['from']} → {_hop(s['to'], operand)}",
                _num(s["upstream"]),
                _local(report, s["from"], s["to"], operand, s["local_formula"]["text"], s["local"]),
                _num(s["contribution"]),
                _num(s["total"]),
            ]
        )
    title = f"Reverse sweep: each node's upstream {D}{out}/{D}node times its local derivative"
    return _Table(title, columns, rows)


def _forward_table(report: dict[str, Any], sweep: dict[str, Any]) -> RenderableType:
    v = sweep["variable"]
    columns = [
        Column("node", head=True),
        Column("from"),
        Column(f"{D}input/{D}{v}", justify="right", whole=True),
        Column("local derivative"),
        Column(f"{D}node/{D}{v}", justify="right", whole=True),
    ]
    rows: list[list[Any] | None] = []
    for s in sweep["steps"]:
        operand = s.get("operand")
        rows.append(
            [
                s["to"],
                _hop(s["from"], operand),
                _num(s["tangent_in"]),
                _local(report, s["to"], s["from"], operand, s["local_formula"]["text"], s["local"]),
                _num(s["tangent"]),
            ]
        )
    title = (
        f"Forward sweep for {v}: each node's {D}node/{D}{v}, inputs first "
        f"(result {_num(sweep['result'])})"
    )
    return _Table(title, columns, rows)


def _local(
    report: dict[str, Any],
    node: str,
    operand: str,
    position: str | None,
    formula: str,
    value: float,
) -> str:
    shown = _num(value)
    tail = "" if formula == shown else f" = {shown}"
    return f"{_factor_text(report, node, operand, position)} = {formula}{tail}"


# ---- LaTeX pieces, shared by Markdown and the document ------------------------------------


NODE = r"\text{node}"
INPUT = r"\text{input}"


class _Tex:
    """Names as LaTeX writes them (w11 as w_{11}, yhat as \\hat{y}), and the report's
    pieces in LaTeX."""

    def __init__(self, report: dict[str, Any], overrides: dict[str, str] | None = None) -> None:
        from ..checks.symbolic import latex_names

        found = {report["output"]["name"], *report["variables"]}
        for e in report["legend"]:
            found.add(e["name"])
            found.update(e.get("inputs", ()))
        for v in report.get("partials", ()):
            for path in v["paths"]:
                found.update(path["names"])
            found.update(g["via"] for g in v["groups"])
        for s in report["reverse_steps"]:
            found.update((s["from"], s["to"]))
        ordered = sorted(found - {"…"})
        self.names = {
            name: _tex_literal(shown)
            for name, shown in zip(ordered, latex_names(ordered), strict=True)
        }
        self.names.update(overrides or {})
        self.report = report

    def local(self, node: str, operand: str, position: str | None = None) -> str:
        """A local derivative as a factor: marked local where it would read as the total
        the document states (the output's by a variable it takes directly)."""
        shown = self.partial(node, operand, position)
        if not _collides(self.report, node, operand, position):
            return shown
        return rf"\left.{shown}\right\vert_{{\text{{local}}}}"

    def local_slash(self, node: str, operand: str, position: str | None = None) -> str:
        """`local` inline, for table cells."""
        shown = self.slash(node, operand, position)
        if not _collides(self.report, node, operand, position):
            return shown
        return rf"\left.{shown}\right\vert_{{\text{{local}}}}"

    def name(self, name: str) -> str:
        if name.startswith("\\"):  # already LaTeX (\text{node})
            return name
        return self.names.get(name) or _tex_text(name)

    def operand(self, name: str, position: str | None) -> str:
        shown = self.name(name)
        return rf"{shown}\,(\text{{{position}}})" if position else shown

    def partial(self, node: str, operand: str, position: str | None = None) -> str:
        return rf"\frac{{\partial {self.name(node)}}}{{\partial {self.operand(operand, position)}}}"

    def slash(self, node: str, operand: str, position: str | None = None) -> str:
        """∂f/∂x inline, for headings and table cells."""
        return rf"\partial {self.name(node)}/\partial {self.operand(operand, position)}"

    def chain(self, path: dict[str, Any]) -> str:
        factors = []
        for link in path["links"]:
            if "omitted" in link:
                factors.append(rf"\cdots_{{\text{{{link['omitted']:,} more}}}}")
            else:
                factors.append(self.local(link["from"], link["to"], link.get("operand")))
        return r"\,".join(factors) or "1"

    def product(self, path: dict[str, Any], key: str) -> str:
        """The path's local derivatives multiplied, as formulas ("latex") or with the
        values put in ("at_latex")."""
        factors = []
        for link in path["links"]:
            if "omitted" in link:
                factors.append(r"\cdots")
                continue
            text = link["formula"][key]
            text = _rounded_tex(text) if key == "at_latex" else text
            wrap = text.startswith("-") or _is_sum(text)
            factors.append(rf"\left({text}\right)" if wrap else text)
        return r" \cdot ".join(factors) or "1"

    def definition(self, entry: dict[str, Any]) -> str:
        """What an intermediate computes, from its op and its operands' names: t3 = t1 + t2."""
        from ..core import ops

        op = ops.OPS.get(entry["op"])
        args = [self.name(a) for a in entry.get("inputs", ())]
        if op is None or len(args) != op.arity:
            return r"\texttt{" + _tex_text(" ".join(entry["text"].split())) + "}"
        if op.symbol is not None and op.arity == 2:
            a, b = args
            infix = {
                "*": rf"{a} \cdot {b}",
                "/": rf"\frac{{{a}}}{{{b}}}",
                "**": rf"{{{a}}}^{{{b}}}",
                "@": rf"{a}\,{b}",
            }
            return infix.get(op.symbol, f"{a} {op.symbol} {b}")
        if op.symbol is not None and op.arity == 1:
            return args[0] if op.symbol == "=" else f"{op.symbol}{args[0]}"
        if op.call is not None:
            return rf"\operatorname{{{op.call}}}\left({', '.join(args)}\right)"
        return r"\texttt{" + _tex_text(" ".join(entry["text"].split())) + "}"


def _terms(terms: list[str], first: str) -> str:
    """`first` = the terms added up, one per line when they would make a long line."""
    if len(terms) < 2:
        return f"{first} {terms[0] if terms else '0'}"
    wrapped = [rf"\left({t}\right)" for t in terms]
    if sum(len(t) for t in wrapped) <= LATEX_LINE:
        return f"{first} " + " + ".join(wrapped)
    return f"{first} " + " \\\\\n&\\quad + ".join(wrapped)


def _math_cell(tex: str) -> str:
    """Inline math in a Markdown table cell: a '|' (|x|) would end the cell."""
    return "$" + tex.replace("|", r"\vert ") + "$"


def _equals(parts: list[str]) -> str:
    """a = b = c, without saying the same thing twice (1 = 1)."""
    shown: list[str] = []
    for part in parts:
        if not shown or shown[-1] != part:
            shown.append(part)
    return " = ".join(shown)


# ---- Markdown ---------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    if report.get("arrays"):
        return _array_markdown(report)
    tex = _Tex(report)
    out = report["output"]["name"]
    lines = [
        f"{code(_heading_text(report), table=False)} = **{_num(report['output']['value'])}**"
        + (f" at {_md_point(report, tex)}" if report["variables"] else ""),
        "",
    ]
    rows = _intermediates(report)
    if rows:
        lines += ["where", ""]
        for e in rows[:MAX_LEGEND_SHOWN]:
            defined = f"{tex.name(e['name'])} = {tex.definition(e)} = {_tex_number(e['value'])}"
            lines.append(f"- ${defined}$ ({code(' '.join(e['text'].split()), table=False)})")
        lines += [f"- {md_text(more)}" for more in _more(len(rows))]
        lines.append("")
    for v in report["partials"]:
        heading = md_text(f"{D}{out}/{D}{v['variable']}")  # plain text: a clean anchor
        lines += [f"### {heading}: {_count(v['count'])}", ""]
        for n, path in enumerate(v["paths"], start=1):
            names = md_text(" → ".join(_path_names(path)))
            steps = [
                tex.chain(path),
                tex.product(path, "latex"),
                tex.product(path, "at_latex"),
                _tex_number(path["product"]),
            ]
            lines.append(f"{n}. {names}: ${_equals(steps)}$")
        for group in v["groups"]:
            lines.append(
                f"- via {md_text(group['via'])}: {_count(group['count'])}, sum {_num(group['sum'])}"
            )
        lines += [
            "",
            f"{_mark(v)} {_sum_what(v)}: {_num(v['sum'])}; the reverse sweep gives "
            f"${tex.partial(out, v['variable'])} = {_tex_number(v['gradient'])}$"
            f"{_rounding_note(v)}",
            "",
        ]
    if report["reverse_steps"]:
        lines += [
            "### Reverse sweep",
            "",
            f"| # | edge | ${tex.slash(out, NODE)}$ | local derivative | contribution | so far |",
            "|---:|---|---:|---|---:|---:|",
        ]
        for s in report["reverse_steps"]:
            operand = s.get("operand")
            local = _equals(
                [
                    tex.local_slash(s["from"], s["to"], operand),
                    s["local_formula"]["latex"],
                    _tex_number(s["local"]),
                ]
            )
            lines.append(
                f"| {s['step']} | {md_text(s['from'] + ' → ' + _hop(s['to'], operand))} | "
                f"{_num(s['upstream'])} | {_math_cell(local)} | {_num(s['contribution'])} | "
                f"{_num(s['total'])} |"
            )
        lines.append("")
    for sweep in report["forward_sweeps"]:
        v = sweep["variable"]
        lines += [
            f"### Forward sweep for {md_text(v)} (result {_num(sweep['result'])})",
            "",
            f"| node | from | ${tex.slash(INPUT, v)}$ | local derivative | "
            f"${tex.slash(NODE, v)}$ |",
            "|---|---|---:|---|---:|",
        ]
        for s in sweep["steps"]:
            operand = s.get("operand")
            local = _equals(
                [
                    tex.local_slash(s["to"], s["from"], operand),
                    s["local_formula"]["latex"],
                    _tex_number(s["local"]),
                ]
            )
            lines.append(
                f"| {md_text(s['to'])} | {md_text(_hop(s['from'], operand))} | "
                f"{_num(s['tangent_in'])} | {_math_cell(local)} | {_num(s['tangent'])} |"
            )
        lines.append("")
    notes = _cut_notes(report)
    lines += [f"> note: {md_text(note)}" for note in notes]
    if notes:
        lines.append("")
    lines.append(_cost_text(report))
    return "\n".join(lines) + "\n"


def _md_point(report: dict[str, Any], tex: _Tex) -> str:
    return ", ".join(
        f"${tex.name(k)} = {_tex_number(v)}$"
        if not isinstance(v, list)
        else f"${tex.name(k)}$ = {code(_array(v), table=False)}"
        for k, v in report["variables"].items()
    )


# ---- LaTeX ------------------------------------------------------------------------------


def latex(report: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """A document that pdflatex compiles: where each intermediate is defined, the chain rule
    per variable as align* blocks that can be pasted into homework, and the reverse (or
    forward) sweep as a table. `names` overrides how names are written."""
    if report.get("arrays"):
        return _array_latex(report)
    tex = _Tex(report, names)
    out = tex.name(report["output"]["name"])
    # one formula per value, so that a long point breaks between them
    where = ", ".join(f"${tex.name(k)} = {_tex_number(v)}$" for k, v in report["variables"].items())
    at = f"At {where} the" if where else "The"
    body = [rf"\section*{{The chain rule for ${out}$}}"]
    definitions = _tex_definitions(report, tex)
    if definitions:
        body += [rf"\noindent {at} program computes", *definitions]
        if report["legend"][-1]["id"] < report["output"]["id"]:  # the legend was cut
            body.append(r"\noindent and more (--format json lists them all).\par")
    else:
        value = _tex_number(report["output"]["value"])
        body.append(rf"\noindent {at} output is ${out} = {value}$.\par")
    body += _tex_chains(report, tex)
    if report["reverse_steps"]:
        body += _tex_reverse(report, tex)
    for sweep in report["forward_sweeps"]:
        body += _tex_forward(sweep, tex)
    body += [rf"\noindent Note: {_tex_text(note)}.\par" for note in _cut_notes(report)]
    body += ["", r"\noindent " + _tex_text(_cost_text(report))]
    document = [
        r"\documentclass{article}",
        r"\usepackage{amsmath}",
        r"\usepackage{array}",
        r"\usepackage{longtable}",
        r"\begin{document}",
    ]
    return "\n".join([*document, *body, r"\end{document}"]) + "\n"


def equations(report: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """The document's mathematics alone, for a notebook's MathJax: the definitions and the
    chain rule per variable, as align* blocks."""
    tex = _Tex(report, names)
    if report.get("arrays"):
        return "\n".join(_tex_definitions(report, tex))
    return "\n".join([*_tex_definitions(report, tex), *_tex_chains(report, tex)])


def _tex_definitions(report: dict[str, Any], tex: _Tex) -> list[str]:
    """Every intermediate the document names (and the output) as what it computes, with its
    value (or, over arrays, its shape), in evaluation order."""
    if report.get("arrays"):
        rows = [
            rf"{tex.name(e['name'])} &= {tex.definition(e)} && \text{{{_shape_text(e['shape'])}}}"
            for e in _array_legend(report)
        ]
    else:
        rows = [
            rf"{tex.name(e['name'])} &= {tex.definition(e)} = {_tex_number(e['value'])}"
            for e in report["legend"]
            if e["op"] != "input"
        ]
    return [r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"] if rows else []


def _tex_chains(report: dict[str, Any], tex: _Tex) -> list[str]:
    """Per variable: the sum over paths of the chain of partials, the local derivatives,
    the same with the values put in, and the result."""
    out = report["output"]["name"]
    blocks: list[str] = []
    for v in report["partials"]:
        rows: list[str] = []
        head = tex.partial(out, v["variable"])
        if v["paths"]:
            rows.append(_terms([tex.chain(p) for p in v["paths"]], f"{head} &="))
            rows.append(_terms([tex.product(p, "latex") for p in v["paths"]], "&="))
            rows.append(_terms([tex.product(p, "at_latex") for p in v["paths"]], "&="))
        else:
            groups = " + ".join(
                rf"\underbrace{{{_tex_number(g['sum'])}}}_{{\text{{via }} {tex.name(g['via'])}}}"
                for g in v["groups"]
            )
            rows.append(f"{head} &= {groups or '0'}")
        rows.append(f"&= {_tex_number(v['sum'])}")
        rows = [r for k, r in enumerate(rows) if k == 0 or r != rows[k - 1]]  # q = 3 = 3
        blocks += [r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"]
    return blocks


TEX_LOCAL = 0.27  # the sweep tables' local derivatives take this share of the text width


def _tex_wrapping(share: float) -> str:
    """A table column of this share of the text width whose text (or formula, after its =
    and ·) breaks onto more lines where it is longer."""
    return rf">{{\raggedright\arraybackslash}}p{{{share}\linewidth}}"


def _tex_table(header: list[str], spec: str, rows: list[list[str]]) -> list[str]:
    """A longtable in small type with narrower gaps, so that the sweep fits the page."""
    head = " & ".join(header) + r" \\ \hline"
    return [
        r"\begingroup\small\setlength{\tabcolsep}{4pt}",
        rf"\begin{{longtable}}{{{spec}}}",
        head,
        r"\endhead",
        *(" & ".join(row) + r" \\" for row in rows),
        r"\end{longtable}",
        r"\endgroup",
    ]


def _tex_reverse(report: dict[str, Any], tex: _Tex) -> list[str]:
    out = tex.name(report["output"]["name"])
    rows = []
    for s in report["reverse_steps"]:
        operand = s.get("operand")
        local = _equals(
            [
                tex.local(s["from"], s["to"], operand),
                s["local_formula"]["latex"],
                _tex_number(s["local"]),
            ]
        )
        rows.append(
            [
                str(s["step"]),
                rf"${tex.name(s['from'])} \to {tex.operand(s['to'], operand)}$",
                f"${_tex_number(s['upstream'])}$",
                f"${local}$",
                f"${_tex_number(s['contribution'])}$",
                f"${_tex_number(s['total'])}$",
            ]
        )
    header = [
        r"\#",
        "edge",
        rf"$\partial {out}/\partial\,\text{{node}}$",
        "local derivative",
        "contribution",
        "so far",
    ]
    title = (
        r"\subsection*{Reverse sweep}" + "\n" + r"\noindent Each node's upstream "
        rf"$\partial {out}/\partial\,\text{{node}}$ times its local derivative, added into "
        "its input's total."
    )
    return [title, *_tex_table(header, f"rlr{_tex_wrapping(TEX_LOCAL)}rr", rows)]


def _tex_forward(sweep: dict[str, Any], tex: _Tex) -> list[str]:
    v = tex.name(sweep["variable"])
    rows = []
    for s in sweep["steps"]:
        operand = s.get("operand")
        local = _equals(
            [
                tex.local(s["to"], s["from"], operand),
                s["local_formula"]["latex"],
                _tex_number(s["local"]),
            ]
        )
        rows.append(
            [
                f"${tex.name(s['to'])}$",
                f"${tex.operand(s['from'], operand)}$",
                f"${_tex_number(s['tangent_in'])}$",
                f"${local}$",
                f"${_tex_number(s['tangent'])}$",
            ]
        )
    header = [
        "node",
        "from",
        rf"$\partial\,\text{{input}}/\partial {v}$",
        "local derivative",
        rf"$\partial\,\text{{node}}/\partial {v}$",
    ]
    title = (
        rf"\subsection*{{Forward sweep for ${v}$}}" + "\n" + r"\noindent Each node's "
        rf"$\partial\,\text{{node}}/\partial {v}$, inputs first (result "
        f"${_tex_number(sweep['result'])}$)."
    )
    return [title, *_tex_table(header, f"llr{_tex_wrapping(TEX_LOCAL)}r", rows)]


# ---- arrays -------------------------------------------------------------------------------


def _shape_text(shape: list[int]) -> str:
    return "scalar" if not shape else str(tuple(shape))


def _array_notes(report: dict[str, Any]) -> list[str]:
    total, shown = report["reverse_steps_total"], len(report["reverse_steps"])
    notes = ["with arrays each step applies an op's vector-Jacobian product to the whole "
             "upstream gradient G (the rules of `backprop ops`)"]  # fmt: skip
    if total > shown:
        notes.append(
            f"{numbers.plural(total - shown, 'more step')} (--format json lists the first "
            f"{shown:,})"
        )
    return notes


def _array_legend(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in report["legend"] if e["op"] != "input" and e["name"] != e["text"]]


def _array_panels(report: dict[str, Any]) -> list[RenderableType]:
    from rich.text import Text

    out = report["output"]["name"]
    head = Text()
    head.append(_heading_text(report)[:200])
    head.append(f" = {_array(report['output']['value'])}", style="bold green")
    head.append(f"  at {_point(report)}")
    items: list[RenderableType] = [head]
    legend = [
        f"{e['name']} = {' '.join(e['text'].split())}  {_shape_text(e['shape'])}"
        for e in _array_legend(report)
    ]
    if legend:
        shown = legend[:MAX_LEGEND_SHOWN] + _more(len(legend))
        items.append(Hanging(Text("where ", style="dim"), Text("\n".join(shown), style="dim")))
    columns = [
        Column("#", justify="right", whole=True, head=True),
        Column("edge", head=True),
        Column("shapes"),
        Column("G", justify="right", words=True),
        Column("rule"),
        Column("contribution", words=True),
        Column("so far", words=True),
    ]
    rows: list[list[Any] | None] = [
        [
            str(s["step"]),
            f"{s['from']} → {_hop(s['to'], s.get('operand'))}",
            f"{_shape_text(s['shape_node'])} → {_shape_text(s['shape_input'])}",
            _array(s["upstream"], items=4),
            s["rule"],
            _array(s["contribution"], items=4),
            _array(s["total"], items=4),
        ]
        for s in report["reverse_steps"]
    ]
    title = (
        f"Reverse sweep over arrays: each op's rule applied to the upstream G = {D}{out}/{D}node"
    )
    items.append(_Table(title, columns, rows))
    result = Text()
    for i, g in enumerate(report["gradients"]):
        result.append(("\n" if i else "") + f"{D}{out}/{D}{g['variable']} = ", style="bold")
        result.append(_array(g["gradient"], items=36), style="red")
        result.append(f"   ({_shape_text(g['shape'])}, the shape of {g['variable']})", style="dim")
    items.append(result)
    items += [Text(f"note: {n}", style="dim") for n in _array_notes(report)]
    return items


def _array_markdown(report: dict[str, Any]) -> str:
    tex = _Tex(report)
    out = report["output"]["name"]
    lines = [
        f"{code(_heading_text(report), table=False)} = "
        f"**{_array(report['output']['value'])}** at {_md_point(report, tex)}",
        "",
        f"| # | edge | shapes | $G = {tex.slash(out, NODE)}$ | rule | contribution | so far |",
        "|---:|---|---|---:|---|---:|---:|",
    ]
    for s in report["reverse_steps"]:
        lines.append(
            f"| {s['step']} | {md_text(s['from'] + ' → ' + _hop(s['to'], s.get('operand')))} | "
            f"{_shape_text(s['shape_node'])} → {_shape_text(s['shape_input'])} | "
            f"{code(_array(s['upstream'], items=36))} | {md_text(s['rule'])} | "
            f"{code(_array(s['contribution'], items=36))} | "
            f"{code(_array(s['total'], items=36))} |"
        )
    lines.append("")
    for g in report["gradients"]:
        lines.append(
            f"- ${tex.slash(out, g['variable'])}$ = "
            + code(_array(g["gradient"], items=36), table=False)
        )
    lines.append("")
    lines += [f"> note: {n}" for n in _array_notes(report)]
    return "\n".join(lines) + "\n"


_TEX_TEXT = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "∂": r"$\partial$",
    "·": r"$\cdot$", "ᵀ": r"$^{\top}$", "²": r"$^2$", "½": r"$\frac12$", "…": r"\ldots{}",
    "→": r"$\to$", "—": "---", "<": r"\textless{}", ">": r"\textgreater{}",
}  # fmt: skip


def _tex_text(text: str) -> str:
    """Plain text for a LaTeX document: its special characters escaped, and a character
    the default fonts lack shown as '?'."""
    return "".join(
        _TEX_TEXT.get(ch, ch) if ord(ch) < 128 or ch in _TEX_TEXT else "?" for ch in text
    )


def _array_latex(report: dict[str, Any]) -> str:
    tex = _Tex(report)
    out = tex.name(report["output"]["name"])
    rows = [
        [
            str(s["step"]),
            rf"${tex.name(s['from'])} \to {tex.operand(s['to'], s.get('operand'))}$",
            _tex_text(f"{_shape_text(s['shape_node'])} → {_shape_text(s['shape_input'])}"),
            _tex_text(s["rule"]),
            r"\texttt{" + _tex_text(_array(s["contribution"], items=4)) + "}",
        ]
        for s in report["reverse_steps"]
    ]
    header = [r"\#", "edge", "shapes", "rule", "contribution"]
    table = _tex_table(header, f"rll{_tex_wrapping(0.28)}{_tex_wrapping(0.2)}", rows)
    grads = [
        rf"\item $\partial {out}/\partial {tex.name(g['variable'])}$ = \texttt{{"
        + _tex_text(_array(g["gradient"], items=36))
        + "}"
        for g in report["gradients"]
    ]
    definitions = _tex_definitions(report, tex)
    where = [r"\noindent where", *definitions] if definitions else []
    return (
        "\n".join(
            [
                r"\documentclass{article}",
                r"\usepackage{amsmath}",
                r"\usepackage{array}",
                r"\usepackage{longtable}",
                r"\begin{document}",
                rf"\section*{{The reverse sweep over arrays for ${out}$}}",
                *where,
                *table,
                r"\begin{itemize}",
                *grads,
                r"\end{itemize}",
                r"\end{document}",
            ]
        )
        + "\n"
    )
