"""`backprop diff`'s result as text, Markdown or JSON: strings only, never printed here."""

from __future__ import annotations

from typing import Any

from .gradient import code, md_math, md_text, telling, to_json
from .numbers import number, plural

__all__ = [
    "check_line",
    "disagreements",
    "json_text",
    "latex_block",
    "markdown",
    "notes",
    "text",
]


def json_text(result: dict[str, Any]) -> str:
    return to_json(result, "diff") + "\n"


def latex_block(result: dict[str, Any]) -> str:
    """The derivatives as one labelled LaTeX block, a row each (no math delimiters: a
    notebook display wraps it in $$…$$)::

        \\begin{aligned}
        \\frac{d f}{d x} &= 2 x \\\\
        …
        \\end{aligned}
    """
    rows = [f"{d['name_latex']} &= {d['latex']}" for d in result["derivatives"]]
    return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"


def _number(x: float | None, n: int | None = None) -> str:
    return "undefined" if x is None else number(x, n)


def _point(point: dict[str, float]) -> str:
    return ", ".join(f"{name}={number(value)}" for name, value in point.items())


def check_line(result: dict[str, Any]) -> tuple[str, str]:
    """(mark, sentence): ✓ agreed, ✗ disagreed, – not checked."""
    check = result["check"]
    against = "the engine's gradient" if result["order"] == 1 else "the engine's Hessian"
    n = check["compared"]
    if check["state"] == "ok":
        where = plural(n, "random point")
        return "✓", f"checked at {where}: the formulas equal {against} there"
    if check["state"] == "mismatch":
        names = list(dict.fromkeys(m["name"] for m in check["mismatches"]))
        return "✗", f"{', '.join(names)} disagree{'s' if len(names) == 1 else ''} with {against}"
    return "–", f"not checked: {check['reason']}"


def disagreements(result: dict[str, Any]) -> list[str]:
    """One line per disagreement: which derivative, where, and the two numbers."""
    lines = []
    for m in result["check"]["mismatches"]:
        n = telling((m["formula"], m["engine"]))
        lines.append(
            f"{m['name']} at {_point(m['point'])}: the formula gives {_number(m['formula'], n)}"
            + (f" ({m['undefined']})" if m.get("undefined") else "")
            + f", the engine {_number(m['engine'], n)}"
        )
    return lines


def notes(result: dict[str, Any]) -> list[str]:
    """What the budget left undone, and SymPy's own failures, one sentence each."""
    sym = result["symbolic"]
    out = []
    raw = [d["name"] for d in result["derivatives"] if not d["simplified"]]
    budget = f"the {number(sym['timeout'])} s budget (--symbolic-timeout)"
    if sym["simplified"] == "budget" and raw:
        out.append(
            f"simplification did not finish within {budget}: {', '.join(raw)} "
            f"{'is' if len(raw) == 1 else 'are'} shown as differentiated, unsimplified"
        )
    for name, why in sym["simplify_errors"].items():
        out.append(f"SymPy could not simplify {name} ({why}): shown as differentiated")
    if sym["steps"] == "budget":
        out.append(f"the steps did not finish within {budget}: some are missing")
    elif sym["steps"] == "cut":
        out.append("the graph is large: the steps shown are the first of each variable's")
    return out


def _steps_by_variable(result: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for step in result["steps"] or []:
        groups.setdefault(step["wrt"], []).append(step)
    return list(groups.items())


def _first_name(result: dict[str, Any], name: str) -> str:
    d = "∂" if len(result["variables"]) > 1 else "d"
    return f"{d}{result['output']['name']}/{d}{name}"


def _because(step: dict[str, Any]) -> str:
    return f"{step['form']} with {step['because']}" if step["form"] else step["because"]


def text(result: dict[str, Any], latex: bool = False) -> str:
    """The plain terminal view: the function, each derivative, the steps, the check."""
    key = "latex" if latex else "formula"
    out = result["output"]
    lines = [f"{out['name_latex'] if latex else out['name']} = {out[key]}", ""]
    for d in result["derivatives"]:
        lines.append(f"{d['name_latex'] if latex else d['name']} = {d[key]}")
    for name, steps in _steps_by_variable(result):
        lines += [
            "",
            f"Steps for {_first_name(result, name)}, node by node from the inputs up to "
            f"{out['name']} (forward order):",
        ]
        for i, step in enumerate(steps, 1):
            lines.append(f"  {i}. {step['rule']}: {step['latex' if latex else 'equation']}")
            lines.append(f"       {_because(step)}")
    lines.append("")
    mark, sentence = check_line(result)
    lines.append(f"{mark} {sentence}")
    lines += [f"  {line}" for line in disagreements(result)]
    lines += [f"note: {note}" for note in notes(result)]
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any], latex: bool = False) -> str:
    """A Markdown section whose math renders in Jupyter, on GitHub and in MkDocs: the
    function, a table of the derivatives as $…$ LaTeX (with their SymPy text to copy,
    unless `latex`), the steps, the check."""
    out = result["output"]
    sympy = not latex
    lines = [
        f"### {code(result['expression'], table=False)}",
        "",
        md_math(f"{out['name_latex']} = {out['latex']}"),
        "",
        "| derivative | formula |" + (" SymPy |" if sympy else "") + " simplified |",
        "| --- | --- |" + (" --- |" if sympy else "") + " --- |",
    ]
    for d in result["derivatives"]:
        lines.append(
            f"| {md_math(d['name_latex'])} | {md_math(d['latex'])} | "
            + (f"{code(d['formula'])} | " if sympy else "")
            + f"{'yes' if d['simplified'] else 'no'} |"
        )
    names = {tuple(d["wrt"]): d["name_latex"] for d in result["derivatives"]}
    for name, steps in _steps_by_variable(result):
        tex = names.get((name,))
        title = md_math(tex) if tex else md_text(_first_name(result, name))
        lines += ["", f"#### Steps for {title} (forward order)", ""]
        for i, step in enumerate(steps, 1):
            lines.append(
                f"{i}. **{md_text(step['rule'])}**: {md_math(step['latex'])}; "
                f"{md_text(_because(step))}"
            )
    mark, sentence = check_line(result)
    lines += ["", f"{mark} {md_text(sentence)}"]
    lines += [f"- {md_text(line)}" for line in disagreements(result)]
    lines += [f"> note: {md_text(note)}" for note in notes(result)]
    return "\n".join(lines) + "\n"
