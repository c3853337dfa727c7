"""`backprop grad`: the typer command, whose options become a GradArgs for grad_run.run."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from ..core.parse import DEFAULT_LIMITS
from .common import (
    DType,
    OnError,
    _AllowNonfinitePoints,
    _Form,
    _form,
    _given,
    _Init,
    _Loss,
    _ModelSeed,
    _ShowProgram,
)
from .grad_run import GradArgs
from .output import Digits, Output


class GradFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    tsv = "tsv"
    jsonl = "jsonl"
    html = "html"
    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"
    png = "png"
    pdf = "pdf"
    latex = "latex"
    parquet = "parquet"
    arrow = "arrow"


GRAD_EXAMPLES = """\
[bold]Examples[/bold]

  CS231n's (x+y)*z at x=-2, y=5, z=-4:
    backprop grad "(x+y)*z" x=-2 y=5 z=-4

  A program, as JSON:
    backprop grad "q = x + y; f = q * z" x=-2 y=5 z=-4 --format json

  Only some partials:
    backprop grad "w*x + b" w=2 x=-1 b=3 --wrt w,b

  A program file, without the torch check:
    backprop grad --file examples/seed_loss.bp x=2 w=1 y=4 --no-torch

  The expression from stdin:
    echo "sin(x)**2" | backprop grad - x=pi/4 --format csv

  Values saved by `backprop train linear --save params.json`:
    backprop grad "(w*x - y)**2" --values params.json x=4 y=8

  A picture of the graph as well:
    backprop grad "(x+y)*z" x=-2 y=5 z=-4 --graph g.svg

  The result to a file, its format from its extension:
    backprop grad "(x+y)*z" x=-2 y=5 z=-4 -o g.json
    backprop grad "(x+y)*z" x=-2 y=5 z=-4 -o g.svg

  An expression that starts with '-':
    backprop grad -- "-x*y" x=3 y=2

  Arrays (quote them: the shell would expand brackets and parentheses):
    backprop grad "2*dot(x, x)" "x=[0,1,2,3]"
    backprop grad "sum(sigmoid(W @ x + b))" "W=[[1,2],[3,4]]" "x=[1,-1]" b=0
    backprop grad "2*x*x" "x=arange(4)" --seed-grad "[1,1,1,1]"

  A model spec: the first tutorial's network, its weights from a file:
    backprop grad mlp:2-3-1 x1=1 x2=1 y=0 --init examples/network.json
    backprop grad mlp:2-3-1 --show-program

  f' and f'':
    backprop grad "x**3 + 2*x**2 - 3*x + 1" x=1 --order 2

  Every point of a file, and a bare column from stdin:
    backprop grad "w0*x0 + w1*x1 + w2" --points examples/points.csv > g.csv
    seq 0 0.01 10 | backprop grad "sin(x)*exp(-x)" --points - --format jsonl
"""


def grad(
    ctx: typer.Context,
    expression: Annotated[
        str | None,
        typer.Argument(
            help="The expression or program ('q = x + y; f = q * z'); '-' reads stdin.",
            show_default=False,
        ),
    ] = None,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME=VALUE...",
            help="A value for each variable: a number or a constant expression (x=-2, a=pi/4).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("--file", metavar="PATH", help="Read the program from a file ('-': stdin)."),
    ] = None,
    values_file: Annotated[
        str | None,
        typer.Option(
            "--values",
            metavar="FILE.json",
            help="Values from a JSON object (e.g. `train --save` output); NAME=VALUE wins.",
        ),
    ] = None,
    wrt: Annotated[
        str | None,
        typer.Option("--wrt", metavar="X,Y", help="Only these partials (default: every variable)."),
    ] = None,
    seed_grad: Annotated[
        str | None,
        typer.Option(
            "--seed-grad",
            metavar="VALUE",
            help="The upstream gradient of an array output (a number or [..] of its shape), "
            "as in y.backward(gradient=...).",
        ),
    ] = None,
    order: Annotated[
        int,
        typer.Option(
            "--order",
            min=1,
            max=2,
            help="2: second derivatives too (∂²f/∂x², ∂²f/∂x∂y; scalar inputs).",
        ),
    ] = 1,
    fmt: Annotated[
        GradFormat | None,
        typer.Option(
            "--format",
            help="Output format (default: table; with --points, csv); dot, mermaid, svg, png "
            "and pdf draw the graph with its values and gradients. Without it, -o's extension "
            "decides.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    output: Output = None,
    digits: Digits = None,
    points_file: Annotated[
        str | None,
        typer.Option(
            "--points",
            metavar="FILE|-",
            help="Value and gradient at every point of a CSV/TSV file with a header (or one "
            "bare column), or of JSON lines; '-' reads stdin. One row out per point.",
        ),
    ] = None,
    on_error: Annotated[
        OnError,
        typer.Option("--on-error", help="With --points: stop at a bad row, or skip and count it."),
    ] = OnError.stop,
    check_points: Annotated[
        bool,
        typer.Option(
            "--check", help="With --points: recompute every point's gradient with torch autograd."
        ),
    ] = False,
    dtype: Annotated[DType, typer.Option("--dtype", help="Engine precision.")] = DType.float64,
    torch_check: Annotated[
        bool,
        typer.Option(
            "--torch/--no-torch",
            help="Cross-check with torch autograd (--no-torch never imports torch).",
        ),
    ] = True,
    device: Annotated[
        str,
        typer.Option("--device", help="torch device for the cross-check: cpu, cuda, cuda:1, mps…"),
    ] = "cpu",
    symbolic: Annotated[
        bool,
        typer.Option(
            "--symbolic/--no-symbolic", help="SymPy partials (--no-symbolic skips SymPy)."
        ),
    ] = True,
    simplify: Annotated[
        bool,
        typer.Option(
            "--simplify/--no-simplify", help="Simplify the SymPy partials (within the budget)."
        ),
    ] = True,
    latex: Annotated[
        bool, typer.Option("--latex", help="Show the SymPy partials as LaTeX.")
    ] = False,
    expand: Annotated[
        bool,
        typer.Option(
            "--expand",
            help="Large graphs too: one expanded SymPy formula per partial, not the reverse "
            "sweep's named intermediates.",
        ),
    ] = False,
    symbolic_timeout: Annotated[
        float,
        typer.Option(
            "--symbolic-timeout",
            min=0.1,
            max=3600,
            metavar="SECONDS",
            help="Wall-clock budget for SymPy.",
        ),
    ] = 5.0,
    picture_file: Annotated[
        str | None,
        typer.Option(
            "--graph",
            metavar="FILE",
            help="Also draw the graph with its values and gradients (.svg .png .pdf), as "
            "well as the table; -o g.svg writes the picture alone.",
            rich_help_panel="Output",
        ),
    ] = None,
    dpi: Annotated[
        int | None,
        typer.Option(
            "--dpi",
            min=24,
            max=600,
            metavar="N",
            help="A PNG picture's resolution in dots per inch (default 96).",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    max_rows: Annotated[
        int,
        typer.Option(
            "--max-rows",
            min=0,
            metavar="N",
            help="Rows of the graph table (0: all); JSON and CSV always hold every node.",
        ),
    ] = 200,
    max_length: Annotated[
        int,
        typer.Option(
            "--max-length", min=1, max=100_000_000, metavar="CHARS", help="Refuse longer input."
        ),
    ] = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinitePoints = False,
    loss: _Loss = None,
    form: _Form = None,
    seed: _ModelSeed = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """Differentiate an expression at a point: the computational graph with every node's value
    and gradient, the SymPy partials, and checks against torch autograd and finite differences.

    A model spec may stand for the expression: linear, affine, quadratic, logistic, mlp:2-3-1.
    Its parameters without a value start from the model's initialisation (--seed, --init).
    A variable called linear is written (linear).

    Exit codes: 0 all checks agree, 1 a cross-check disagreed, 2 bad usage or bad input.
    """
    from .grad_run import run as run_grad

    code = run_grad(
        GradArgs(
            expression=expression, values=values, file=file, values_file=values_file, wrt=wrt,
            seed_grad=seed_grad, order=order, fmt=None if fmt is None else fmt.value,
            points_file=points_file, on_error=on_error.value, check_points=check_points,
            dtype=dtype.value, torch_check=torch_check, device=device, symbolic=symbolic,
            simplify=simplify, latex=latex, symbolic_timeout=symbolic_timeout, expand=expand,
            picture_file=picture_file, max_rows=max_rows, max_length=max_length,
            allow_nonfinite=allow_nonfinite, loss=loss, form=_form(form), seed=seed, init=init,
            show_program=show_program, output=output, digits=digits, dpi=dpi, given=_given(ctx),
        )
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=GRAD_EXAMPLES)(grad)
