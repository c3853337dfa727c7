"""What the commands share: option types, the one-line error exit, and how a program
and its point are read. The option types are made on first use (see `__getattr__`), so
that a quick path (see entry.py) can use the rest without importing typer."""

from __future__ import annotations

from enum import Enum
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from ..core.errors import BackpropError
from ..core.parse import Limits
from ..io import inputs
from . import terminal

_stderr = terminal.stderr

_output = terminal.output

_console = terminal.console

_print_rich = terminal.print_rich

_report_disagreement = terminal.report_disagreement


def _fail(exc: BackpropError) -> NoReturn:
    _stderr(f"error: {exc.message}")
    for line in exc.details():
        _stderr(line)
    terminal.leave(exc.exit_code)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class CheckFormat(str, Enum):
    table = "table"
    json = "json"


class OnError(str, Enum):
    stop = "stop"
    skip = "skip"


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"


class Form(str, Enum):
    named = "named"
    matrix = "matrix"


def _given(ctx: Any) -> frozenset[str]:
    """The parameters the command line set (not their defaults)."""
    return frozenset(
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    )


def _names(wrt: str | None) -> list[str] | None:
    return [w.strip() for w in wrt.split(",") if w.strip()] if wrt is not None else None


def _program_and_point(
    expression: str | None,
    values: list[str] | None,
    file: str | None,
    values_file: str | None,
    limits: Limits,
    model: inputs.ModelOptions | None = None,
    command: str = "grad",
) -> tuple[Any, dict[str, float]]:
    """The program and the point, from arguments, files and --values (NAME=VALUE wins)."""
    program, point, _ = _load(expression, values, file, values_file, limits, model, command)
    return program, point


# What `backprop COMMAND` with no expression suggests: the command's own first example.
MISSING_HINTS = {
    "grad": 'backprop grad "(x+y)*z" x=-2 y=5 z=-4',
    "explain": 'backprop explain "(x+y)*z" x=-2 y=5 z=-4',
    "graph": 'backprop graph "(x+y)*z" x=-2 y=5 z=-4',
    "check": 'backprop check "sin(x)*y"',
    "jacobian": 'backprop jacobian "sin(x)*y" "x=[1,2]" y=3',
    "hessian": 'backprop hessian "x**2*y" x=1 y=2',
    "codegen": 'backprop codegen "(x+y)*z"',
}


def _load(
    expression: str | None,
    values: list[str] | None,
    file: str | None,
    values_file: str | None,
    limits: Limits,
    model: inputs.ModelOptions | None = None,
    command: str = "grad",
) -> tuple[Any, dict[str, Any], Any]:
    """_program_and_point, with a model spec's expansion (None for other programs); a
    spec's parameters without a value start from its initialisation (see ModelOptions)."""
    if expression is None and file is None:
        raise BackpropError("missing the expression", hint=MISSING_HINTS.get(command))
    model = model or inputs.ModelOptions()
    program, rest, expansion = inputs.load_model(
        expression, list(values or []), file, limits, model
    )
    point = inputs.parse_values(rest, limits, program.warnings)
    if values_file is not None:
        from ..io.data import read_values

        point = {**read_values(values_file, "--values", limits.allow_nonfinite), **point}
    if expansion is not None:
        point = inputs.spec_point(program, expansion, point, model)
    return program, point, expansion


def _show_program(
    expression: str | None, file: str | None, limits: Limits, model: inputs.ModelOptions
) -> None:
    """--show-program: print the program (a model spec's expansion) and stop."""
    import sys

    try:
        program, _, expansion = inputs.load_model(expression, [], file, limits, model)
    except BackpropError as exc:
        _fail(exc)
    with _output():
        sys.stdout.write(inputs.program_listing(program, expansion))


def _form(form: Form | None) -> str | None:
    return None if form is None else form.value


# The typer types of the shared options, made on first use (typer reads them when it builds
# the commands), so that a quick path never imports typer.
if TYPE_CHECKING:
    _AllowNonfinite = Annotated[bool, "_AllowNonfinite"]
    _AllowNonfinitePoints = Annotated[bool, "_AllowNonfinitePoints"]
    _Expression = Annotated[str | None, "_Expression"]
    _Values = Annotated[list[str] | None, "_Values"]
    _File = Annotated[str | None, "_File"]
    _ValuesFile = Annotated[str | None, "_ValuesFile"]
    _Wrt = Annotated[str | None, "_Wrt"]
    _TorchCheck = Annotated[bool, "_TorchCheck"]
    _Device = Annotated[str, "_Device"]
    _Symbolic = Annotated[bool, "_Symbolic"]
    _Timeout = Annotated[float, "_Timeout"]
    _MaxLength = Annotated[int, "_MaxLength"]
    _Loss = Annotated[str | None, "_Loss"]
    _Form = Annotated[Form | None, "_Form"]
    _ModelSeed = Annotated[int | None, "_ModelSeed"]
    _Init = Annotated[str | None, "_Init"]
    _ShowProgram = Annotated[bool, "_ShowProgram"]
else:

    @cache
    def _options() -> dict[str, Any]:
        import typer

        _AllowNonfinite = Annotated[
            bool,
            typer.Option(
                "--allow-nonfinite",
                help="Accept nan, inf and -inf as values (NAME=VALUE, --values).",
            ),
        ]

        # the same, for the commands that also read --points
        _AllowNonfinitePoints = Annotated[
            bool,
            typer.Option(
                "--allow-nonfinite",
                help="Accept nan, inf and -inf as values (NAME=VALUE, --values, --points cells).",
            ),
        ]

        _Expression = Annotated[
            str | None,
            typer.Argument(
                help="The expression, a program file (.bp) or '-' for stdin.", show_default=False
            ),
        ]

        _Values = Annotated[
            list[str] | None,
            typer.Argument(
                metavar="NAME=VALUE...",
                help="A value for each variable: a number or an array (x=[1,2], W=[[1,2],[3,4]]).",
                show_default=False,
            ),
        ]

        _File = Annotated[
            str | None, typer.Option("--file", metavar="PATH", help="Read the program from a file.")
        ]

        _ValuesFile = Annotated[
            str | None,
            typer.Option("--values", metavar="FILE.json", help="Values from a JSON object."),
        ]

        _Wrt = Annotated[
            str | None,
            typer.Option("--wrt", metavar="X,Y", help="Only these variables (default: all)."),
        ]

        _TorchCheck = Annotated[
            bool,
            typer.Option(
                "--torch/--no-torch",
                help="Cross-check with torch.autograd.functional (--no-torch never imports torch).",
            ),
        ]

        _Device = Annotated[str, typer.Option("--device", help="torch device for the check.")]

        _Symbolic = Annotated[
            bool,
            typer.Option(
                "--symbolic/--no-symbolic", help="SymPy entries (--no-symbolic skips SymPy)."
            ),
        ]

        _Timeout = Annotated[
            float,
            typer.Option(
                "--symbolic-timeout", min=0.1, max=3600, metavar="SECONDS", help="Budget for SymPy."
            ),
        ]

        _MaxLength = Annotated[
            int,
            typer.Option(
                "--max-length", min=1, max=100_000_000, metavar="CHARS", help="Refuse longer input."
            ),
        ]

        _Loss = Annotated[
            str | None,
            typer.Option(
                "--loss",
                metavar="LOSS",
                help="A model spec's loss: mse, mae, huber, bce or sums such as mse+mae (default: "
                "mse, bce for logistic).",
                show_default=False,
            ),
        ]

        _Form = Annotated[
            Form | None,
            typer.Option(
                "--form",
                help="An mlp spec's form: named (one node per weight, as the book "
                "PyTorch计算机视觉实战 draws it; the default) or matrix (X @ W1.T + b1, as "
                "train's mlp).",
                show_default=False,
            ),
        ]

        _ModelSeed = Annotated[
            int | None,
            typer.Option(
                "--seed",
                min=0,
                max=2**63 - 1,
                help="Seed of an mlp spec's initial weights (default 0, as train).",
                show_default=False,
            ),
        ]

        _Init = Annotated[
            str | None,
            typer.Option(
                "--init",
                metavar="w=1,b=0|FILE.json",
                help="A model spec's parameters, as train's --init (NAME=VALUE wins).",
            ),
        ]

        _ShowProgram = Annotated[
            bool,
            typer.Option(
                "--show-program", help="Print the program (a model spec's expansion) and stop."
            ),
        ]

        return {name: value for name, value in locals().items() if name != "typer"}

    def __getattr__(name: str) -> Any:
        if not name.startswith("__") and name in _options():  # not __path__ and the like
            return _options()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
