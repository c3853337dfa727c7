"""How `backprop explain` reads: the chain rule along every path, the staged backward pass,
forward accumulation and what each mode costs, as Rich panels, markdown or LaTeX.
Returns strings and renderables; never prints."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from .render import fmt, short

if TYPE_CHECKING:
    from rich.console import RenderableType

D = "∂"


def _point(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {fmt(v)}" for k, v in report["variables"].items())


def _chain(out: str, names: list[str]) -> str:
    """∂f/∂r · ∂r/∂yhat · ∂yhat/∂w for the path f → r → yhat → w."""
    return " · ".join(f"{D}{a}/{D}{b}" for a, b in itertools.pairwise(names)) or "1"


def _path_lines(path: dict[str, Any]) -> tuple[str, str, str]:
    """The chain, the product symbolically, and with the values put in."""
    chain = _chain(path["names"][0], path["names"])
    symbolic = " · ".join(f["text"] for f in path["factors"]) or "1"
    numeric = " · ".join(f["at"] for f in path["factors"]) or "1"
    product = fmt(path["product"])
    return chain, symbolic, product if numeric == product else f"{numeric} = {product}"


def _verdict(v: dict[str, Any], out: str) -> str:
    mark = "✓" if v["agrees"] else "✗"
    what = "sum over paths" if v["paths"] or not v["groups"] else "sum over groups"
    return (
        f"{mark} {what}: {fmt(v['sum'])}; the reverse sweep gives {D}{out}/{D}{v['variable']} = "
        f"{fmt(v['gradient'])}"
    )


def _count(n: int) -> str:
    return f"{n:,} path" + ("" if n == 1 else "s")


def _legend_text(report: dict[str, Any]) -> list[str]:
    out = report["output"]["id"]
    rows = [
        e
        for e in report["legend"]
        if e["op"] != "input" and e["name"] != e["text"] and e["id"] != out
    ]
    return [f"{e['name']} = {' '.join(e['text'].split())}  ({fmt(e['value'])})" for e in rows]


# ---- Rich -----------------------------------------------------------------------------------


def panels(report: dict[str, Any]) -> list[RenderableType]:
    from rich.text import Text
    from rich.tree import Tree

    out = report["output"]["name"]
    head = Text()
    head.append(f"{out} = ", style="bold")
    head.append(" ".join(report["output"]["text"].split())[:200])
    head.append(f" = {fmt(report['output']['value'])}", style="bold green")
    if report["variables"]:
        head.append(f"  at {_point(report)}")
    items: list[RenderableType] = [head]
    legend = _legend_text(report)
    if legend:
        items.append(Text("where " + "\n      ".join(legend), style="dim"))
    for v in report["partials"]:
        tree = Tree(
            Text(f"{D}{out}/{D}{v['variable']}: {_count(v['count'])} from {out} to {v['variable']}",
                 style="bold")
        )  # fmt: skip
        for n, path in enumerate(v["paths"], start=1):
            chain, symbolic, numeric = _path_lines(path)
            branch = tree.add(Text(f"path {n}: " + " → ".join(path["names"]), style="cyan"))
            branch.add(chain)
            branch.add(f"= {symbolic}")
            branch.add(Text(f"= {numeric}", style="green"))
        for group in v["groups"]:
            tree.add(
                f"via {group['via']}: {_count(group['count'])}, "
                f"{D}{out}/{D}{group['via']} · {D}{group['via']}/{D}{v['variable']} = "
                f"{fmt(group['local'])} · … = {fmt(group['sum'])}"
            )
        tree.add(Text(_verdict(v, out), style="green" if v["agrees"] else "bold red"))
        items.append(tree)
    if report["reverse_steps"]:
        items.append(_reverse_table(report))
    for sweep in report["forward_sweeps"]:
        items.append(_forward_table(report, sweep))
    items.append(Text(_cost_text(report), style="dim"))
    return items


def _reverse_table(report: dict[str, Any]) -> RenderableType:
    from rich.table import Table

    out = report["output"]["name"]
    table = Table(
        title=f"Reverse sweep: each node's upstream {D}{out}/{D}node times its local derivative",
        title_justify="left",
    )
    table.add_column("#", justify="right")
    table.add_column("edge")
    table.add_column(f"{D}{out}/{D}node", justify="right")
    table.add_column("local derivative")
    table.add_column("contribution", justify="right")
    table.add_column(f"{D}{out}/{D}input so far", justify="right")
    for s in report["reverse_steps"]:
        local = s["local_formula"]
        table.add_row(
            str(s["step"]),
            f"{s['from']} → {s['to']}",
            short(s["upstream"], digits=6),
            _local(s["from"], s["to"], local["text"], s["local"]),
            short(s["contribution"], digits=6),
            short(s["total"], digits=6),
        )
    return table


def _forward_table(report: dict[str, Any], sweep: dict[str, Any]) -> RenderableType:
    from rich.table import Table

    v = sweep["variable"]
    table = Table(
        title=f"Forward sweep for {v}: each node's {D}node/{D}{v}, inputs first "
        f"(result {fmt(sweep['result'])})",
        title_justify="left",
    )
    for column in ("node", "from", f"{D}input/{D}{v}", "local derivative", f"{D}node/{D}{v}"):
        table.add_column(column)
    for s in sweep["steps"]:
        table.add_row(
            s["to"],
            s["from"],
            short(s["tangent_in"], digits=6),
            _local(s["to"], s["from"], s["local_formula"]["text"], s["local"]),
            short(s["tangent"], digits=6),
        )
    return table


def _local(node: str, operand: str, formula: str, value: float) -> str:
    shown = short(value, digits=6)
    tail = "" if formula == shown else f" = {shown}"
    return f"{D}{node}/{D}{operand} = {formula}{tail}"


def _cost_text(report: dict[str, Any]) -> str:
    cost = report["cost"]
    n = len(report["partials"])
    return (
        f"Cost for {n} input{'s' if n != 1 else ''} and one output over {cost['operations']} "
        f"operations — forward mode: {cost['forward']['sweeps']} sweep"
        f"{'s' if cost['forward']['sweeps'] != 1 else ''} (one per input), no intermediates "
        f"kept; reverse mode: {cost['reverse']['sweeps']} sweeps (forward, then backward), "
        f"{cost['reverse']['stored']} intermediates kept for the backward sweep."
    )


# ---- markdown ---------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    out = report["output"]["name"]
    lines = [
        f"**{out}** = `{' '.join(report['output']['text'].split())}` = "
        f"**{fmt(report['output']['value'])}**"
        + (f" at {_point(report)}" if report["variables"] else ""),
        "",
    ]
    legend = _legend_text(report)
    if legend:
        lines += ["where", "", *(f"- `{item}`" for item in legend), ""]
    for v in report["partials"]:
        lines += [f"### {D}{out}/{D}{v['variable']}: {_count(v['count'])}", ""]
        for n, path in enumerate(v["paths"], start=1):
            chain, symbolic, numeric = _path_lines(path)
            lines += [f"{n}. `{' → '.join(path['names'])}`: {chain} = `{symbolic}` = `{numeric}`"]
        for group in v["groups"]:
            lines.append(
                f"- via `{group['via']}`: {_count(group['count'])}, sum {fmt(group['sum'])}"
            )
        lines += ["", _verdict(v, out), ""]
    if report["reverse_steps"]:
        lines += [
            "### Reverse sweep",
            "",
            f"| # | edge | {D}{out}/{D}node | local derivative | contribution | so far |",
            "|---:|---|---:|---|---:|---:|",
        ]
        for s in report["reverse_steps"]:
            lines.append(
                f"| {s['step']} | {s['from']} → {s['to']} | {fmt(s['upstream'])} | "
                f"`{s['local_formula']['text']}` = {fmt(s['local'])} | "
                f"{fmt(s['contribution'])} | {fmt(s['total'])} |"
            )
        lines.append("")
    for sweep in report["forward_sweeps"]:
        v = sweep["variable"]
        lines += [
            f"### Forward sweep for {v} (result {fmt(sweep['result'])})",
            "",
            f"| node | from | {D}input/{D}{v} | local derivative | {D}node/{D}{v} |",
            "|---|---|---:|---|---:|",
        ]
        for s in sweep["steps"]:
            lines.append(
                f"| {s['to']} | {s['from']} | {fmt(s['tangent_in'])} | "
                f"`{s['local_formula']['text']}` = {fmt(s['local'])} | {fmt(s['tangent'])} |"
            )
        lines.append("")
    lines.append(_cost_text(report))
    return "\n".join(lines) + "\n"


# ---- LaTeX ------------------------------------------------------------------------------


def latex(report: dict[str, Any], names: dict[str, str]) -> str:
    """A compilable document whose align* blocks can be pasted into homework."""

    def n(name: str) -> str:
        return names.get(name, name)

    def partial(a: str, b: str) -> str:
        return rf"\frac{{\partial {n(a)}}}{{\partial {n(b)}}}"

    out = report["output"]["name"]
    body: list[str] = []
    for v in report["partials"]:
        body.append(r"\begin{align*}")
        rows: list[str] = []
        if v["paths"]:
            chains = [
                r"\,".join(
                    partial(a, b) for a, b in zip(p["names"][:-1], p["names"][1:], strict=True)
                )
                or "1"
                for p in v["paths"]
            ]
            rows.append(f"{partial(out, v['variable'])} &= " + " + ".join(chains))
            symbolic = [
                r" \cdot ".join(f["latex"] for f in p["factors"]) or "1" for p in v["paths"]
            ]
            rows.append("&= " + " + ".join(f"\\left({s}\\right)" if len(v["paths"]) > 1 else s
                                           for s in symbolic))  # fmt: skip
            numeric = [
                r" \cdot ".join(f["at_latex"] for f in p["factors"]) or "1" for p in v["paths"]
            ]
            rows.append("&= " + " + ".join(f"\\left({s}\\right)" if len(v["paths"]) > 1 else s
                                           for s in numeric))  # fmt: skip
        else:
            groups = " + ".join(
                rf"\underbrace{{{_tex_number(g['sum'])}}}_{{\text{{via }} {n(g['via'])}}}"
                for g in v["groups"]
            )
            rows.append(f"{partial(out, v['variable'])} &= {groups or '0'}")
        rows.append(f"&= {_tex_number(v['sum'])}")
        body.append(" \\\\\n".join(rows))
        body.append(r"\end{align*}")
    where = ", ".join(f"{k} = {fmt(v)}" for k, v in report["variables"].items())
    comment = f"% The chain rule for {out}" + (f" at {where}" if where else "")
    document = ["\\documentclass{article}", "\\usepackage{amsmath}", "\\begin{document}", comment]
    return "\n".join([*document, *body, "\\end{document}"]) + "\n"


def _tex_number(x: float) -> str:
    text = fmt(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text
