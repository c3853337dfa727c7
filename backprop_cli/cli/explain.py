"""`backprop explain`: the chain rule path by path and the staged reverse sweep."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from .common import (
    _AllowNonfinite,
    _console,
    _fail,
    _Form,
    _form,
    _Init,
    _load,
    _Loss,
    _ModelSeed,
    _names,
    _output,
    _show_program,
    _ShowProgram,
    _stderr,
)
from .terminal import EXIT_DISAGREE


class ExplainFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    latex = "latex"
    json = "json"


class Mode(str, Enum):
    reverse = "reverse"
    forward = "forward"


EXPLAIN_EXAMPLES = """\
[bold]Examples[/bold]

  The chain rule for one partial:
    backprop explain "(x*w - y)**2" x=2 w=1 y=4 --wrt w

  CS231n's sigmoid neuron, path by path:
    backprop explain examples/sigmoid_neuron.bp w0=2 x0=-1 w1=-3 x1=-2 w2=-3

  As a LaTeX document:
    backprop explain examples/seed_loss.bp x=2 w=1 y=4 --format latex > s.tex

  The first tutorial's chain-rule network, with its weights from a file:
    backprop explain mlp:2-3-1 x1=1 x2=1 y=0 --init examples/network.json

  Forward accumulation instead:
    backprop explain "x*x + x" x=3 --mode forward
"""


def explain(
    expression: Annotated[
        str | None,
        typer.Argument(
            help="The expression, a program file (.bp) or '-' for stdin.", show_default=False
        ),
    ] = None,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME=VALUE...", help="A value for each variable.", show_default=False
        ),
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", metavar="PATH", help="Read the program from a file.")
    ] = None,
    values_file: Annotated[
        str | None, typer.Option("--values", metavar="FILE.json", help="Values from a JSON object.")
    ] = None,
    wrt: Annotated[
        str | None, typer.Option("--wrt", metavar="X,Y", help="Only these variables.")
    ] = None,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode", help="reverse: paths and the backward pass; forward: tangent sweeps."
        ),
    ] = Mode.reverse,
    fmt: Annotated[ExplainFormat, typer.Option("--format")] = ExplainFormat.table,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, max=100_000_000, metavar="CHARS")
    ] = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
    loss: _Loss = None,
    form: _Form = None,
    seed: _ModelSeed = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """The chain rule step by step: every path from the output down to each variable with
    its product of local derivatives, the reverse sweep as numbered local steps (or, with
    --mode forward, one tangent sweep per input), and what each mode costs.

    A model spec (linear, mlp:2-3-1, ...) goes where the expression goes, as in grad."""
    from .. import api
    from ..io.inputs import ModelOptions
    from ..render import explain as view
    from ..render.gradient import to_json

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        program, point, expansion = _load(expression, values, file, values_file, limits, model)
        with api.quiet():  # its warnings are printed below
            result = api.explain(
                program, point, wrt=_names(wrt), mode=mode.value, allow_nonfinite=allow_nonfinite
            )
        report = result.report
    except BackpropError as exc:
        _fail(exc)  # before any warning: the first line of bad input is the error
    for warning in result.warnings:
        _stderr(f"warning: {warning}")
    if expansion is not None:  # the spec's notes (its initialisation) in the JSON too
        report["warnings"] = [{"message": w} for w in program.warnings] + report["warnings"]
    with _output():
        if fmt is ExplainFormat.json:
            sys.stdout.write(to_json(report) + "\n")
        elif fmt is ExplainFormat.markdown:
            sys.stdout.write(view.markdown(report))
        elif fmt is ExplainFormat.latex:
            sys.stdout.write(result.latex())
        else:
            console = _console()
            for i, item in enumerate(view.panels(report)):
                if i:
                    console.print()
                console.print(item)
    if not report["ok"]:
        _stderr("disagreement: the sum over paths differs from the reverse sweep")
        raise typer.Exit(EXIT_DISAGREE)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=EXPLAIN_EXAMPLES)(explain)
