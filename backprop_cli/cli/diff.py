"""`backprop diff`: the derivative as a formula, no point needed."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from .common import _Expression, _fail, _File, _MaxLength, _names, _output, _stderr, _Timeout
from .terminal import EXIT_DISAGREE


class DiffFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


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
    fmt: Annotated[DiffFormat, typer.Option("--format", help="Output format.")] = (
        DiffFormat.table
    ),
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

    limits = Limits(max_length=max_length)
    try:
        if expression is None and file is None:
            raise BackpropError("missing the expression", hint='backprop diff "x**2*sin(x)"')
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
    with _output():
        if fmt is DiffFormat.json:
            sys.stdout.write(view.json_text(result))
        elif fmt is DiffFormat.markdown:
            sys.stdout.write(view.markdown(result, latex))
        else:
            sys.stdout.write(view.text(result, latex))
    if not result["ok"]:
        for line in view.disagreements(result):
            _stderr(f"disagreement: {line}")
        raise typer.Exit(EXIT_DISAGREE)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=DIFF_EXAMPLES)(diff)
