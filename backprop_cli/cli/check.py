"""`backprop check`: the gradient compared with the checks at many random points."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from typing import Annotated, Any

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from . import output as out
from .common import (
    DType,
    _AllowNonfinitePoints,
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


class CheckFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    markdown = "markdown"


FORMATS = tuple(f.value for f in CheckFormat)

# csv/tsv: one row per check, as the table shows them, every number in full
CHECK_COLUMNS = (
    "check", "compared", "agree", "disagree", "not_compared", "max_error", "skipped",
    "worst_partial", "worst_engine", "worst_other", "worst_point",
)  # fmt: skip

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

  A report for a pull request:
    backprop check "x**3 - x" -o check.md
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
        CheckFormat | None,
        typer.Option(
            "--format",
            help="Output format (default: table); csv and tsv have a row per check. Without "
            "it, -o's extension decides.",
            show_default=False,
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    output: out.Output = None,
    digits: out.Digits = None,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinitePoints = False,
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
    from ..io.inputs import ModelOptions, init_is_file
    from ..render import numbers
    from ..render.check import check_heading, check_lines, check_table

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    model = ModelOptions(loss=loss, form=_form(form), init=init, fill=False)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        if points_file == "-" and "-" in (expression, file):
            raise BackpropError("stdin can hold the program or the points, not both")
        chosen = out.resolve(fmt and fmt.value, output, FORMATS, "table", "check")
        reads = [("the program", expression), ("--file", file), ("--values", values_file)]
        reads += [("--points", points_file)]
        out.refuse(output, [*reads, ("--init", init if init and init_is_file(init) else None)])
        program, fixed = _program_and_point(
            expression, values, file, values_file, limits, model, "check"
        )
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
    with numbers.precision(digits), out.into(output), _output():
        if chosen in ("json", "jsonl"):
            from ..render.gradient import to_json

            text = to_json(report, "check")
            sys.stdout.write(out.compact(text) if chosen == "jsonl" else text + "\n")
        elif chosen in ("csv", "tsv"):
            sys.stdout.write(check_rows(report, out.delimiter(chosen)))
        elif chosen == "markdown":
            sys.stdout.write(check_markdown(report))
        else:
            console = _console()
            console.print(check_heading(report), highlight=False, markup=False)
            console.print(check_table(report))
            for line in check_lines(report):
                console.print(line, highlight=False)
    if not report["ok"]:
        raise typer.Exit(EXIT_DISAGREE)


def _where(report: dict[str, Any]) -> str:
    if report["source"] == "random":
        low, high = report["range"]
        n = report["points"]
        where = f"in [{low:g}, {high:g}] (seed {report['seed']})"
        return f"{n:,} random point{'s' if n != 1 else ''} {where}"
    return f"{report['points']:,} points from {report['source']}"


_CHECK_NAMES = {
    "torch": "torch autograd",
    "finite_difference": "finite differences",
    "symbolic": "SymPy, evaluated exactly",
}


def _not_compared(summary: dict[str, Any]) -> str:
    return ", ".join(f"{n} {status}" for status, n in summary["not_compared"].items())


def check_rows(report: dict[str, Any], delimiter: str = ",") -> str:
    """One row per check: what the table shows, every number in full, and its worst point
    (the point as a JSON object)."""
    from ..render.numbers import full

    rows = []
    for check, summary in report["checks"].items():
        worst = summary.get("worst") or {}
        error = summary.get("max_error")
        point = worst.get("point")
        rows.append(
            [
                check, summary["compared"], summary["agree"], summary["mismatches"],
                _not_compared(summary), None if error is None else full(error),
                summary["skipped"], worst.get("partial"),
                None if worst.get("engine") is None else full(worst["engine"]),
                worst.get("other") if not isinstance(worst.get("other"), float)
                else full(worst["other"]),
                None if point is None else json.dumps(point, allow_nan=False),
            ]
        )  # fmt: skip
    return out.rows_text(CHECK_COLUMNS, rows, delimiter)


def check_markdown(report: dict[str, Any]) -> str:
    """The table's story in Markdown: the heading, one row per check, the verdict lines."""
    from rich.text import Text

    from ..render.gradient import code, error

    lines = [
        f"**gradient check** of {code(report['expression'], table=False)}",
        "",
        _where(report)[0].upper() + _where(report)[1:],
        "",
        "| check | compared | agree | disagree | not compared | max error |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for check, summary in report["checks"].items():
        name = _CHECK_NAMES.get(check, check)
        if summary["skipped"]:
            lines.append(f"| {name} | | | | skipped ({summary['skipped']}) | |")
            continue
        shown = error(summary["max_error"]) if summary["max_error"] is not None else "—"
        lines.append(
            f"| {name} | {summary['compared']:,} | {summary['agree']:,} | "
            f"{summary['mismatches']:,} | {_not_compared(summary)} | {shown} |"
        )
    from ..render.check import check_lines

    lines.append("")
    lines += [f"- {Text.from_markup(line).plain}" for line in check_lines(report)]
    return "\n".join(lines) + "\n"


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
