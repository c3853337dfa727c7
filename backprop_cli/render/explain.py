"""How `backprop explain` reads: the chain rule along every path, the staged backward pass,
forward accumulation and what each mode costs, as Rich panels, markdown or LaTeX.
Returns strings and renderables; never prints."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .gradient import code, fmt, fmt_any, short, short_any

if TYPE_CHECKING:
    from rich.console import RenderableType

D = "∂"


def _point(report: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {short_any(v, 'float64', 17)}" for k, v in report["variables"].items())


def _path_lines(path: dict[str, Any]) -> tuple[str, str, str]:
    """The chain, the product symbolically, and with the values put in."""
    chain, symbolic, numeric = [], [], []
    for link in path["links"]:
        if "omitted" in link:
            chain.append(f"… ({link['omitted']:,} more factors) …")
            symbolic.append("…")
            numeric.append("…")
            continue
        chain.append(f"{D}{link['from']}/{D}{link['to']}")
        symbolic.append(link["formula"]["text"])
        numeric.append(link["formula"]["at"])
    product = fmt(path["product"])
    numbers = " · ".join(numeric) or "1"
    return (
        " · ".join(chain) or "1",
        " · ".join(symbolic) or "1",
        product if numbers == product else f"{numbers} = {product}",
    )


def _verdict(v: dict[str, Any], out: str) -> str:
    mark = {"ok": "✓", "inconclusive": "≈"}.get(v["verdict"], "✗")
    what = "sum over paths" if v["paths"] or not v["groups"] else "sum over groups"
    note = (
        " (they differ by rounding that this point magnifies)"
        if v["verdict"] == "inconclusive"
        else ""
    )
    return (
        f"{mark} {what}: {fmt(v['sum'])}; the reverse sweep gives {D}{out}/{D}{v['variable']} = "
        f"{fmt(v['gradient'])}{note}"
    )


def _count(n: int) -> str:
    if n >= 10**15:
        return f"about 10^{len(str(n)) - 1} paths"
    return f"{n:,} path" + ("" if n == 1 else "s")


def _legend_text(report: dict[str, Any]) -> list[str]:
    out = report["output"]["id"]
    rows = [
        e
        for e in report["legend"]
        if e["op"] != "input" and e["name"] != e["text"] and e["id"] != out
    ]
    lines = [f"{e['name']} = {' '.join(e['text'].split())}  ({fmt(e['value'])})" for e in rows]
    return lines[:40] + (
        [f"… and {len(lines) - 40} more (--format json lists them)"] if len(lines) > 40 else []
    )


def _heading_text(report: dict[str, Any]) -> str:
    """`out = text = value`, without repeating the name when the text is a statement."""
    out, text = report["output"]["name"], " ".join(report["output"]["text"].split())
    return text if text.startswith(f"{out} ") else f"{out} = {text}"


def _cut_notes(report: dict[str, Any]) -> list[str]:
    notes = []
    hidden = report.get("variables_not_shown") or []
    if hidden:
        notes.append(f"{len(hidden)} more variables not explained here: choose with --wrt")
    total, shown = report.get("reverse_steps_total", 0), len(report["reverse_steps"])
    if total > shown:
        notes.append(f"the reverse sweep has {total:,} steps; the first {shown:,} are shown")
    for sweep in report["forward_sweeps"]:
        if sweep["steps_total"] > len(sweep["steps"]):
            notes.append(
                f"the forward sweep for {sweep['variable']} has {sweep['steps_total']:,} steps; "
                f"the first {len(sweep['steps']):,} are shown"
            )
    return notes


# ---- Rich -----------------------------------------------------------------------------------


def panels(report: dict[str, Any]) -> list[RenderableType]:
    from rich.text import Text
    from rich.tree import Tree

    if report.get("arrays"):
        return _array_panels(report)
    out = report["output"]["name"]
    head = Text()
    head.append(_heading_text(report)[:200])
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
    n = cost["forward"]["sweeps"]
    return (
        f"Cost for {n} input{'s' if n != 1 else ''} and one output over {cost['operations']} "
        f"operations — forward mode: {cost['forward']['sweeps']} sweep"
        f"{'s' if cost['forward']['sweeps'] != 1 else ''} (one per input), no intermediates "
        f"kept; reverse mode: {cost['reverse']['sweeps']} sweeps (forward, then backward), "
        f"{cost['reverse']['stored']} intermediates kept for the backward sweep."
    )


# ---- markdown ---------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    if report.get("arrays"):
        return _array_markdown(report)
    out = report["output"]["name"]
    lines = [
        f"{code(_heading_text(report), table=False)} = **{fmt(report['output']['value'])}**"
        + (f" at {_point(report)}" if report["variables"] else ""),
        "",
    ]
    legend = _legend_text(report)
    if legend:
        lines += ["where", "", *(f"- {code(item, table=False)}" for item in legend), ""]
    for v in report["partials"]:
        lines += [f"### {D}{out}/{D}{v['variable']}: {_count(v['count'])}", ""]
        for n, path in enumerate(v["paths"], start=1):
            chain, symbolic, numeric = _path_lines(path)
            names = code(" → ".join(path["names"]), table=False)
            spans = f"{code(symbolic, table=False)} = {code(numeric, table=False)}"
            lines += [f"{n}. {names}: {chain} = {spans}"]
        for group in v["groups"]:
            lines.append(
                f"- via {code(group['via'], table=False)}: {_count(group['count'])}, "
                f"sum {fmt(group['sum'])}"
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
                f"{code(s['local_formula']['text'])} = {fmt(s['local'])} | "
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
                f"{code(s['local_formula']['text'])} = {fmt(s['local'])} | {fmt(s['tangent'])} |"
            )
        lines.append("")
    lines += [f"> note: {note}" for note in _cut_notes(report)]
    if _cut_notes(report):
        lines.append("")
    lines.append(_cost_text(report))
    return "\n".join(lines) + "\n"


# ---- LaTeX ------------------------------------------------------------------------------


def latex(report: dict[str, Any], names: dict[str, str]) -> str:
    """A compilable document whose align* blocks can be pasted into homework."""
    if report.get("arrays"):
        return _array_latex(report)

    def n(name: str) -> str:
        return names.get(name, name)

    def partial(a: str, b: str) -> str:
        return rf"\frac{{\partial {n(a)}}}{{\partial {n(b)}}}"

    def product(path: dict[str, Any], key: str) -> str:
        factors = []
        for link in path["links"]:
            if "omitted" in link:
                factors.append(rf"\cdots_{{\text{{{link['omitted']:,} more}}}}")
            elif key == "chain":
                factors.append(partial(link["from"], link["to"]))
            else:
                text = link["formula"][key]
                factors.append(rf"\left({text}\right)" if text.startswith("-") else text)
        joiner = r"\," if key == "chain" else r" \cdot "
        return joiner.join(factors) or "1"

    def summed(terms: list[str]) -> str:
        return " + ".join(rf"\left({t}\right)" if len(terms) > 1 else t for t in terms)

    out = report["output"]["name"]
    body: list[str] = []
    for v in report["partials"]:
        rows: list[str] = []
        if v["paths"]:
            rows.append(f"{partial(out, v['variable'])} &= " + " + ".join(
                product(p, "chain") for p in v["paths"]))  # fmt: skip
            rows.append("&= " + summed([product(p, "latex") for p in v["paths"]]))
            rows.append("&= " + summed([product(p, "at_latex") for p in v["paths"]]))
        else:
            groups = " + ".join(
                rf"\underbrace{{{_tex_number(g['sum'])}}}_{{\text{{via }} {n(g['via'])}}}"
                for g in v["groups"]
            )
            rows.append(f"{partial(out, v['variable'])} &= {groups or '0'}")
        rows.append(f"&= {_tex_number(v['sum'])}")
        body += [r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"]
    where = ", ".join(f"{k} = {fmt(v)}" for k, v in report["variables"].items())
    comment = f"% The chain rule for {out}" + (f" at {where}" if where else "")
    document = ["\\documentclass{article}", "\\usepackage{amsmath}", "\\begin{document}", comment]
    return "\n".join([*document, *body, "\\end{document}"]) + "\n"


def _tex_number(x: float) -> str:
    if math.isnan(x):
        return r"\mathrm{nan}"
    if math.isinf(x):
        return r"\infty" if x > 0 else r"-\infty"
    text = fmt(x)
    if "e" in text:
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \times 10^{{{int(exponent)}}}"
    return text


# ---- arrays -------------------------------------------------------------------------------


def _shape_text(shape: list[int]) -> str:
    return "scalar" if not shape else str(tuple(shape))


def _array_notes(report: dict[str, Any]) -> list[str]:
    total, shown = report["reverse_steps_total"], len(report["reverse_steps"])
    notes = ["with arrays each step applies an op's vector-Jacobian product to the whole "
             "upstream gradient G (the rules of `backprop ops`)"]  # fmt: skip
    if total > shown:
        notes.append(f"{total - shown:,} more steps (--format json lists the first {shown:,})")
    return notes


def _array_panels(report: dict[str, Any]) -> list[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    out = report["output"]["name"]
    head = Text()
    head.append(_heading_text(report)[:200])
    head.append(f" = {short_any(report['output']['value'], 'float64', 17)}", style="bold green")
    head.append(f"  at {_point(report)}")
    items: list[RenderableType] = [head]
    legend = [
        f"{e['name']} = {' '.join(e['text'].split())}  {_shape_text(e['shape'])}"
        for e in report["legend"]
        if e["op"] != "input" and e["name"] != e["text"]
    ]
    if legend:
        items.append(Text("where " + "\n      ".join(legend[:40]), style="dim"))
    table = Table(
        title="Reverse sweep over arrays: each op's rule applied to the upstream "
        f"G = {D}{out}/{D}node",
        title_justify="left",
    )
    for column in ("#", "edge", "shapes", "G", "rule", "contribution", "so far"):
        table.add_column(column, justify="right" if column in ("#", "G") else "left")
    for s in report["reverse_steps"]:
        table.add_row(
            str(s["step"]),
            f"{s['from']} → {s['to']}",
            f"{_shape_text(s['shape_node'])} → {_shape_text(s['shape_input'])}",
            short_any(s["upstream"], digits=4, items=4),
            s["rule"],
            short_any(s["contribution"], digits=4, items=4),
            short_any(s["total"], digits=4, items=4),
        )
    items.append(table)
    result = Text()
    for i, g in enumerate(report["gradients"]):
        result.append(("\n" if i else "") + f"{D}{out}/{D}{g['variable']} = ", style="bold")
        result.append(short_any(g["gradient"], "float64", 10, 36), style="red")
        result.append(f"   ({_shape_text(g['shape'])}, the shape of {g['variable']})", style="dim")
    items.append(result)
    items += [Text(f"note: {n}", style="dim") for n in _array_notes(report)]
    return items


def _array_markdown(report: dict[str, Any]) -> str:
    out = report["output"]["name"]
    lines = [
        f"{code(_heading_text(report), table=False)} = "
        f"**{fmt_any(report['output']['value'])}** at "
        f"{_point(report)}",
        "",
        f"| # | edge | shapes | G = {D}{out}/{D}node | rule | contribution | so far |",
        "|---:|---|---|---:|---|---:|---:|",
    ]
    for s in report["reverse_steps"]:
        lines.append(
            f"| {s['step']} | {s['from']} → {s['to']} | "
            f"{_shape_text(s['shape_node'])} → {_shape_text(s['shape_input'])} | "
            f"{code(short_any(s['upstream'], 'float64', 17, 36))} | {s['rule']} | "
            f"{code(short_any(s['contribution'], 'float64', 17, 36))} | "
            f"{code(short_any(s['total'], 'float64', 17, 36))} |"
        )
    lines.append("")
    for g in report["gradients"]:
        lines.append(f"- {D}{out}/{D}{g['variable']} = {code(fmt_any(g['gradient']), table=False)}")
    lines.append("")
    lines += [f"> note: {n}" for n in _array_notes(report)]
    return "\n".join(lines) + "\n"


_TEX_TEXT = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "∂": r"$\partial$",
    "·": r"$\cdot$", "ᵀ": r"$^{\top}$", "²": r"$^2$", "½": r"$\frac12$", "…": r"\ldots{}",
    "→": r"$\to$",
}  # fmt: skip


def _tex_text(text: str) -> str:
    return "".join(
        _TEX_TEXT.get(ch, ch) if ord(ch) < 128 or ch in _TEX_TEXT else "?" for ch in text
    )


def _array_latex(report: dict[str, Any]) -> str:
    out = report["output"]["name"]
    rows = [
        " & ".join(
            [
                str(s["step"]),
                _tex_text(f"{s['from']} → {s['to']}"),
                _tex_text(f"{_shape_text(s['shape_node'])} → {_shape_text(s['shape_input'])}"),
                _tex_text(s["rule"]),
                r"\texttt{" + _tex_text(short_any(s["contribution"], digits=4, items=4)) + "}",
            ]
        )
        + r" \\"
        for s in report["reverse_steps"]
    ]
    grads = [
        r"\item $\partial " + _tex_text(out).replace("$", "") + r"/\partial "
        + _tex_text(g["variable"]).replace("$", "") + r"$ = \texttt{"
        + _tex_text(short_any(g["gradient"], "float64", 17, 36)) + "}"
        for g in report["gradients"]
    ]  # fmt: skip
    return (
        "\n".join(
            [
                r"\documentclass{article}",
                r"\usepackage{amsmath}",
                r"\begin{document}",
                "% The reverse sweep over arrays for " + _tex_text(out),
                r"\begin{tabular}{rlllp{4.5cm}l}",
                r"\# & edge & shapes & rule & contribution \\ \hline",
                *rows,
                r"\end{tabular}",
                r"\begin{itemize}",
                *grads,
                r"\end{itemize}",
                r"\end{document}",
            ]
        )
        + "\n"
    )
