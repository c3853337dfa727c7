"""`backprop jacobian` and `backprop hessian`."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from ..io.inputs import ModelOptions
from . import output as out
from .common import (
    _AllowNonfinite,
    _console,
    _Device,
    _Expression,
    _fail,
    _File,
    _Form,
    _form,
    _Init,
    _load,
    _Loss,
    _MaxLength,
    _ModelSeed,
    _names,
    _output,
    _show_program,
    _ShowProgram,
    _stderr,
    _Symbolic,
    _Timeout,
    _TorchCheck,
    _Values,
    _ValuesFile,
    _Wrt,
)
from .terminal import EXIT_DISAGREE


class HigherFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    markdown = "markdown"


FORMATS = tuple(f.value for f in HigherFormat)

_Format = Annotated[
    HigherFormat | None,
    typer.Option(
        "--format",
        help="Output format (default: table); csv and tsv hold the matrix with its row and "
        "column labels. Without it, -o's extension decides.",
        show_default=False,
        rich_help_panel=out.PANEL,
    ),
]

JACOBIAN_EXAMPLES = """\
[bold]Examples[/bold]

  Every partial of every output element:
    backprop jacobian "sigmoid(W @ x)" "W=[[1,2],[3,4]]" "x=[1,-1]"

  One variable's block, from the JSON:
    backprop jacobian "x * y" "x=[1,2]" y=2 --wrt x --format json | jq .matrix
"""

HESSIAN_EXAMPLES = """\
[bold]Examples[/bold]

  JAX's example:
    backprop hessian "x1**2*x2 + exp(x1*x2)" x1=1 x2=2

  Second derivatives over every element of two arrays:
    backprop hessian "sum(sigmoid(W @ x))" "W=[[1,2],[3,4]]" "x=[1,-1]"

  The chain-rule network's Hessian, its weights from a file:
    backprop hessian mlp:2-3-1 x1=1 x2=1 y=0 --init examples/network.json
"""


def _higher(
    kind: str,
    expression: str | None,
    values: list[str] | None,
    file: str | None,
    values_file: str | None,
    wrt: str | None,
    fmt: HigherFormat | None,
    output: str | None,
    digits: int | None,
    torch_check: bool,
    device: str,
    symbolic: bool,
    symbolic_timeout: float,
    max_length: int,
    allow_nonfinite: bool,
    model: ModelOptions,
    show_program: bool,
) -> None:
    from .. import api
    from ..io.inputs import init_is_file
    from ..render import numbers
    from ..render.gradient import higher_csv, higher_markdown, higher_tables, to_json

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        chosen = out.resolve(fmt and fmt.value, output, FORMATS, "table", kind)
        init = model.init
        reads = [("the program", expression), ("--file", file), ("--values", values_file)]
        out.refuse(output, [*reads, ("--init", init if init and init_is_file(init) else None)])
        program, point, expansion = _load(
            expression, values, file, values_file, limits, model, kind
        )
        if not torch_check and device != "cpu":
            raise BackpropError("--device needs the torch check; drop --no-torch")
        build = api.hessian if kind == "hessian" else api.jacobian
        with api.quiet():  # the warnings are printed below
            report = build(
                program, point, wrt=_names(wrt), torch=torch_check, device=device,
                symbolic=symbolic, symbolic_timeout=symbolic_timeout,
                allow_nonfinite=allow_nonfinite,
            ).report  # fmt: skip
    except BackpropError as exc:
        _fail(exc)
    for warning in [*program.warnings, *(w["message"] for w in report["warnings"])]:
        _stderr(f"warning: {warning}")
    shown = report
    if expansion is not None:  # the spec's notes (its initialisation) in the JSON too
        report["warnings"] = [{"message": w} for w in program.warnings] + report["warnings"]
        # its tables are headed by the spec (mlp:2-3-1), not its whole expansion
        shown = {**report, "expression": expansion.spec.shown}
    with numbers.precision(digits), out.into(output), _output():
        if chosen == "json":
            sys.stdout.write(to_json(report, kind) + "\n")
        elif chosen == "jsonl":
            sys.stdout.write(out.compact(to_json(report, kind)))
        elif chosen == "csv":
            sys.stdout.write(higher_csv(report, kind))
        elif chosen == "tsv":
            sys.stdout.write(out.retab(higher_csv(report, kind)))
        elif chosen == "markdown":
            sys.stdout.write(higher_markdown(shown, kind))
        else:
            console = _console()
            for i, renderable in enumerate(higher_tables(shown, kind, console.width)):
                if i:
                    console.print()
                console.print(renderable)
    if not report["ok"]:
        from ..render.gradient import higher_lines

        for mark, line in higher_lines(report, kind):
            if mark == "✗":
                _stderr(f"disagreement: {line}")
        raise typer.Exit(EXIT_DISAGREE)


def jacobian(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    wrt: _Wrt = None,
    fmt: _Format = None,
    output: out.Output = None,
    digits: out.Digits = None,
    torch_check: _TorchCheck = True,
    device: _Device = "cpu",
    symbolic: _Symbolic = True,
    symbolic_timeout: _Timeout = 5.0,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
    loss: _Loss = None,
    form: _Form = None,
    seed: _ModelSeed = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """Every partial derivative of every element of the output (an array or a number) with
    respect to every element of the variables, checked against torch.autograd.functional,
    SymPy and finite differences.

    Exit codes: 0 all checks agree, 1 a check disagreed, 2 bad usage or bad input.
    """
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init)
    _higher(
        "jacobian", expression, values, file, values_file, wrt, fmt, output, digits,
        torch_check, device, symbolic, symbolic_timeout, max_length, allow_nonfinite, model,
        show_program,
    )  # fmt: skip


def hessian(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    wrt: _Wrt = None,
    fmt: _Format = None,
    output: out.Output = None,
    digits: out.Digits = None,
    torch_check: _TorchCheck = True,
    device: _Device = "cpu",
    symbolic: _Symbolic = True,
    symbolic_timeout: _Timeout = 5.0,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
    loss: _Loss = None,
    form: _Form = None,
    seed: _ModelSeed = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """Every second derivative of a scalar output with respect to the variables' elements
    (forward over reverse: the engine's reverse sweep run on dual numbers), checked against
    torch.autograd.functional, SymPy and second differences.

    Exit codes: 0 all checks agree, 1 a check disagreed, 2 bad usage or bad input.
    """
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init)
    _higher(
        "hessian", expression, values, file, values_file, wrt, fmt, output, digits,
        torch_check, device, symbolic, symbolic_timeout, max_length, allow_nonfinite, model,
        show_program,
    )  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=JACOBIAN_EXAMPLES)(
        jacobian
    )
    app.command(context_settings={"ignore_unknown_options": True}, epilog=HESSIAN_EXAMPLES)(hessian)
