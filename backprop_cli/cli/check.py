"""`backprop check`: the gradient compared with the checks at many random points."""

from __future__ import annotations

import math
import sys
from typing import Annotated

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from .common import (
    CheckFormat,
    DType,
    _AllowNonfinite,
    _console,
    _Device,
    _Expression,
    _fail,
    _File,
    _Form,
    _form,
    _Init,
    _Loss,
    _MaxLength,
    _names,
    _output,
    _program_and_point,
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

CHECK_EXAMPLES = """\
[bold]Examples[/bold]

  1,000 random points:
    backprop check "softplus(w*x + b) - tanh(x)**2" --samples 1000 --seed 0

  Where to draw the points:
    backprop check "log(x)*y" --range 0.1,5

  The points of a file:
    backprop check "1/(1+exp(-(w0*x0+w1*x1+w2)))" --points examples/points.csv

  Fixed values for some variables:
    backprop check "sum(sigmoid(W @ x + b))" "W=[[1,2],[3,4]]" "x=[1,-1]"

  A model spec: its weights, inputs and target drawn at random like any variable:
    backprop check mlp:2-3-1:tanh --samples 200

  The worst point, from the JSON:
    backprop check "x**3 - x" --format json | jq .worst
"""


def check_command(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    samples: Annotated[
        int, typer.Option("--samples", min=1, max=100_000, help="Random points to check.")
    ] = 100,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            min=0,
            max=2**63 - 1,
            help="Seed of the random points (a model spec's parameters are drawn with them).",
        ),
    ] = 0,
    where: Annotated[
        str,
        typer.Option(
            "--range",
            metavar="LOW,HIGH",
            help="Draw each variable uniformly from this interval.",
        ),
    ] = "-3,3",
    points_file: Annotated[
        str | None,
        typer.Option(
            "--points", metavar="FILE|-", help="Check at the points of a file instead (as grad)."
        ),
    ] = None,
    wrt: _Wrt = None,
    dtype: Annotated[DType, typer.Option("--dtype", help="Engine precision.")] = DType.float64,
    torch_check: _TorchCheck = True,
    device: _Device = "cpu",
    symbolic: _Symbolic = True,
    symbolic_timeout: _Timeout = 20.0,
    fmt: Annotated[
        CheckFormat, typer.Option("--format", help="Output format.")
    ] = CheckFormat.table,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
    loss: _Loss = None,
    form: _Form = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """Check the gradient at many points (random, or from a file): the engine against torch
    autograd, finite differences and SymPy at each, with the worst point reported. For CI.

    A model spec (linear, mlp:2-3-1, ...) goes where the expression goes, as in grad.
    Its parameters are drawn at every point like any variable (--seed), or fixed by --init.

    Exit codes: 0 all checks agree, 1 a check disagreed somewhere, 2 bad usage or bad input.
    """
    from .. import api
    from ..analyses import check as sweep
    from ..io.inputs import ModelOptions
    from ..render.check import check_heading, check_lines, check_table

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    model = ModelOptions(loss=loss, form=_form(form), init=init, fill=False)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        if points_file == "-" and "-" in (expression, file):
            raise BackpropError("stdin can hold the program or the points, not both")
        program, fixed = _program_and_point(expression, values, file, values_file, limits, model)
        if not torch_check and device != "cpu":
            raise BackpropError("--device needs the torch check; drop --no-torch")
        low, high = _range(where)
        given, source = None, "points"
        if points_file is not None:
            source = "stdin" if points_file == "-" else points_file
            given = sweep.read_points(points_file, source, program, fixed, allow_nonfinite)
        with api.quiet():  # the warnings are printed below
            report = api.check(
                program, fixed, samples=samples, seed=seed, range=(low, high),
                points=given, points_source=source, wrt=_names(wrt), dtype=dtype.value,
                torch=torch_check, device=device, symbolic=symbolic,
                symbolic_timeout=symbolic_timeout, allow_nonfinite=allow_nonfinite,
            ).report  # fmt: skip
    except BackpropError as exc:
        _fail(exc)
    for warning in report["warnings"]:
        _stderr(f"warning: {warning['message']}")
    with _output():
        if fmt is CheckFormat.json:
            from ..render.gradient import to_json

            sys.stdout.write(to_json(report) + "\n")
        else:
            console = _console()
            console.print(check_heading(report), highlight=False, markup=False)
            console.print(check_table(report))
            for line in check_lines(report):
                console.print(line, highlight=False)
    if not report["ok"]:
        raise typer.Exit(EXIT_DISAGREE)


def _range(text: str) -> tuple[float, float]:
    from ..io.data import number

    parts = text.split(",")
    if len(parts) != 2:
        raise BackpropError(f"--range: expected LOW,HIGH, got {text!r}")
    low, high = (number(p, "--range") for p in parts)
    if not low < high:
        raise BackpropError(f"--range: {low!r} is not below {high!r}")
    if not math.isfinite(high - low):
        raise BackpropError(f"--range: {low!r} to {high!r} is wider than float64 can hold")
    return low, high


def register(app: typer.Typer) -> None:
    app.command(
        name="check", context_settings={"ignore_unknown_options": True}, epilog=CHECK_EXAMPLES
    )(check_command)
