"""`backprop grad --format latex`: the gradient report as a LaTeX document that compiles with
pdflatex (amsmath and longtable, both in every TeX installation): the output's formula, the
point, each partial as SymPy's formula and its value, and the graph as a table of its nodes.
Numbers follow the --digits setting, as every display does."""

from __future__ import annotations

from typing import Any

from .explain import _tex_number, _tex_text
from .gradient import given, node_names, output_name, tex_name, tex_partial
from .numbers import number_any

FORMULA_CHARS = 120  # LaTeX longer than this would run past the page: its value stays
CELL = 18  # characters of an array's value in the table (else its shape)
LABEL_CHARS = 28  # of a node's text in the table (the table fits the text width)


def _value(x: Any, dtype: str, room: int | None = None) -> str:
    """A number in math mode, or an array as text: its compact form, or its shape where
    that is longer than `room` characters (a table cell)."""
    if isinstance(x, list):
        text = number_any(x, dtype)
        if room is not None and len(text) > room:
            import numpy as np

            text = f"{np.shape(x)} array"
        return rf"\text{{{_tex_text(text)}}}"
    return r"\text{---}" if x is None else _tex_number(float(x))


def grad_document(report: dict[str, Any]) -> str:
    """The grad report as a LaTeX document; a formula too long for a line of the page is
    left out (its value stays; --format json has every formula)."""
    dtype = report["dtype"]
    name, names = output_name(report), node_names(report)
    latex = report.get("latex") or {}
    out = tex_name(name)
    formula = report.get("symbolic_output_latex")
    head = f"{out} = {formula}" if formula and len(formula) <= FORMULA_CHARS else out
    body = [r"\section*{$" + head + "$}"]
    point = ", ".join(
        f"${tex_name(k)} = {_tex_text(given(v, dtype))}$" for k, v in report["variables"].items()
    )
    value = _value(report["value"], dtype)
    # ragged: a point of long numbers has few places to break a line
    body.append(
        r"{\raggedright\noindent The value is $" + value + "$"
        + (f" at {point}." if point else ".") + r"\par}"
    )  # fmt: skip
    rows = []
    for p in report["partials"]:
        partial = tex_partial(name, p["element"])
        shown = p.get("latex") or latex.get(p["element"])
        middle = f" = {shown}" if shown and len(shown) <= FORMULA_CHARS else ""
        rows.append(f"{partial} &{middle} = {_value(p['engine'], dtype)}")
    if rows:
        body += [r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"]
    body += [
        r"\begingroup\small\setlength{\tabcolsep}{4pt}",
        r"\begin{longtable}{rllrr}",
        rf"id & node & op & value & $\partial {out}/\partial\,\text{{node}}$ \\ \hline",
        r"\endhead",
    ]
    for node in report["nodes"]:
        text = " ".join(str(node["text"]).split())
        label = names[node["id"]] + ("" if text == names[node["id"]] else f" = {text}")
        label = label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"
        body.append(
            f"{node['id']} & \\texttt{{{_tex_text(label)}}} & {_tex_text(node['op'])} & "
            f"${_value(node['value'], dtype, CELL)}$ & ${_value(node['grad'], dtype, CELL)}$ \\\\"
        )
    body += [r"\end{longtable}", r"\endgroup"]
    head_lines = [
        r"\documentclass{article}",
        r"\usepackage{amsmath}",
        r"\usepackage{longtable}",
        r"\allowdisplaybreaks",  # a long list of partials goes on over pages
        r"\begin{document}",
    ]
    return "\n".join([*head_lines, *body, r"\end{document}"]) + "\n"
