"""`backprop diff`: the derivative as a formula, no point needed."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from . import output as out
from .common import _Expression, _fail, _File, _MaxLength, _names, _output, _stderr, _Timeout
from .terminal import EXIT_DISAGREE


class DiffFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    markdown = "markdown"
    latex = "latex"


FORMATS = tuple(f.value for f in DiffFormat)

# csv/tsv: one row per derivative
DERIVATIVE_COLUMNS = ("wrt", "name", "formula", "latex", "simplified")


DIFF_EXAMPLES = """\
[bold]Examples[/bold]

  The derivative, simplified and checked:
    backprop diff "x**2*sin(x)"

  The rules applied, node by node:
    backprop diff "x/(1 + exp(-x))" --steps

  Second derivatives of a program (its Hessian):
    backprop diff --file examples/cs231n_add_mul.bp --order 2

  One partial, as LaTeX:
    backprop diff "(x*w - y)**2" --wrt w --latex
"""


def diff(
    expression: _Expression = None,
    file: _File = None,
    wrt: Annotated[
        str | None,
        typer.Option("--wrt", metavar="X,Y", help="Only these variables (default: every one)."),
    ] = None,
    order: Annotated[
        int,
        typer.Option(
            "--order", min=1, max=2, help="2: second derivatives (the Hessian's entries)."
        ),
    ] = 1,
    steps: Annotated[
        bool, typer.Option("--steps", help="The rules applied node by node (forward order).")
    ] = False,
    latex: Annotated[bool, typer.Option("--latex", help="Show the formulas as LaTeX.")] = False,
    fmt: Annotated[
        DiffFormat | None,
        typer.Option(
            "--format",
            help="Output format (default: table); csv and tsv have a row per derivative, "
            "latex is a document of them. Without it, -o's extension decides.",
            show_default=False,
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    output: out.Output = None,
    digits: out.Digits = None,
    simplify: Annotated[
        bool,
        typer.Option("--simplify/--no-simplify", help="Simplify the derivatives (SymPy)."),
    ] = True,
    symbolic_timeout: _Timeout = 5.0,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
) -> None:
    """The derivative of an expression or program as a formula, for every variable (or
    --wrt), simplified within the SymPy budget and checked against the engine's gradient
    at a few random points. No values needed: diff is for scalar variables.

    Exit codes: 0 the formulas agree with the engine, 1 a formula disagreed, 2 bad input.

    A differentiation that does not finish within --symbolic-timeout is exit code 2.
    """
    from .. import api
    from ..io.inputs import load_program
    from ..render import diff as view
    from ..render import numbers

    limits = Limits(max_length=max_length)
    try:
        if expression is None and file is None:
            raise BackpropError("missing the expression", hint='backprop diff "x**2*sin(x)"')
        chosen = out.resolve(fmt and fmt.value, output, FORMATS, "table", "diff")
        out.refuse(output, [("the program", expression), ("--file", file)])
        program, rest = load_program(expression, [], file, limits)
        if rest:
            raise BackpropError(
                f"diff takes no values ({rest[0]!r} given): it differentiates symbolically",
                hint="backprop grad gives the gradient at a point",
            )
        with api.quiet():  # the warnings are printed below
            result = api.diff(
                program, wrt=_names(wrt), order=order, simplify=simplify, steps=steps,
                timeout=symbolic_timeout,
            ).report  # fmt: skip
    except BackpropError as exc:
        _fail(exc)
    for warning in result["warnings"]:
        _stderr(f"warning: {warning['message']}")
    with numbers.precision(digits), out.into(output), _output():
        if chosen == "json":
            sys.stdout.write(view.json_text(result))
        elif chosen == "jsonl":
            sys.stdout.write(out.compact(view.json_text(result)))
        elif chosen in ("csv", "tsv"):
            sys.stdout.write(derivative_rows(result, out.delimiter(chosen)))
        elif chosen == "markdown":
            sys.stdout.write(view.markdown(result, latex))
        elif chosen == "latex":
            sys.stdout.write(latex_document(result))
        else:
            sys.stdout.write(view.text(result, latex))
    if not result["ok"]:
        for line in view.disagreements(result):
            _stderr(f"disagreement: {line}")
        raise typer.Exit(EXIT_DISAGREE)


def derivative_rows(result: dict[str, Any], delimiter: str = ",") -> str:
    """One row per derivative: the variables it is taken with respect to (x, or x,y for a
    second derivative), its name (df/dx), the formula as text and as LaTeX, and whether
    SymPy simplified it within the budget."""
    rows = [
        [",".join(d["wrt"]), d["name"], d["formula"], d["latex"], str(d["simplified"]).lower()]
        for d in result["derivatives"]
    ]
    return out.rows_text(DERIVATIVE_COLUMNS, rows, delimiter)


def latex_document(result: dict[str, Any]) -> str:
    """A standalone LaTeX document: the function, then its derivatives in one aligned block."""
    from ..render.diff import latex_block

    output = result["output"]
    return "\n".join(
        [
            "\\documentclass{article}",
            "\\usepackage{amsmath}",
            "\\begin{document}",
            "The derivatives of",
            f"\\[ {output['name_latex']} = {output['latex']} \\]",
            "\\[",
            latex_block(result),
            "\\]",
            "\\end{document}",
            "",
        ]
    )


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=DIFF_EXAMPLES)(diff)
