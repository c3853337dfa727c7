"""The command line: parse options, call the core, render. The only module that imports typer.

Every error a user can cause ends here as one line on stderr and exit code 2; a failed
cross-check is exit code 1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from . import __version__
from .errors import BackpropError
from .parse import DEFAULT_LIMITS, Limits, Program, parse_binding, parse_program

try:  # typer >= 0.25 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click.exceptions import ClickException  # type: ignore[import-not-found,no-redef]

EXIT_DISAGREE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _fail(exc: BackpropError) -> NoReturn:
    _stderr(f"error: {exc.message}")
    for line in exc.details():
        _stderr(line)
    raise typer.Exit(exc.exit_code)


class _Group(TyperGroup):
    """Turns usage errors into one line and keeps tracebacks away from users."""

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        try:
            code = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if exc.format_message():  # empty when the help was shown for missing arguments
                _stderr(f"error: {exc.format_message()}{hint}")
            code = exc.exit_code
        except typer.Abort:
            _stderr("aborted")
            code = 130
        except BackpropError as exc:
            _stderr(f"error: {exc.message}")
            for line in exc.details():
                _stderr(line)
            code = exc.exit_code
        except Exception as exc:
            if os.environ.get("BACKPROP_DEBUG"):
                raise
            _stderr(f"internal error: {type(exc).__name__}: {exc}")
            _stderr("this is a bug in backprop-cli; BACKPROP_DEBUG=1 shows the traceback")
            code = EXIT_INTERNAL
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_Group,
    name="backprop",
    help="The terminal's backpropagation workbench: computational graphs, gradients, "
    "symbolic partials, and cross-checks against PyTorch and finite differences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class OpsFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


class DType(str, Enum):
    float64 = "float64"
    float32 = "float32"


def _version(value: bool) -> None:
    if value:
        print(f"backprop-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """The terminal's backpropagation workbench."""


def _read(path: str, what: str, limit: int) -> str:
    """Read a program from a file or stdin ('-'), refusing oversize input without reading it
    all: a UTF-8 character is at most 4 bytes, so more than 4·limit bytes is too long."""
    most = 4 * limit + 4
    chunks: list[bytes] = []
    size = 0
    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
        try:
            while size <= most:
                chunk = stream.read(min(1 << 20, most + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            if path != "-":
                stream.close()
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None
    too_long = BackpropError(
        f"{what} is longer than {limit:,} characters",
        hint="raise the limit with --max-length if you really mean it",
    )
    if size > most:
        raise too_long
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BackpropError(f"{what} is not valid UTF-8 (byte {exc.start})") from None
    if len(text) > limit:
        raise too_long
    return text


def _load_program(
    expression: str | None, values: list[str], file: str | None, limits: Limits
) -> tuple[Program, list[str]]:
    if file is not None:
        if expression is not None:
            values = [expression, *values]
        what = "stdin" if file == "-" else file
        source = _read(file, what, limits.max_length)
    elif expression is None:
        raise BackpropError("missing the expression", hint='backprop grad "(x+y)*z" x=-2 y=5 z=-4')
    elif expression == "-":
        what = "stdin"
        source = _read("-", what, limits.max_length)
    else:
        what = "expression"
        source = expression
    return parse_program(source, limits=limits, what=what), values


def _parse_values(args: list[str], limits: Limits, warnings: list[str]) -> dict[str, float]:
    point: dict[str, float] = {}
    for arg in args:
        if arg.startswith("-") and "=" not in arg:
            raise BackpropError(
                f"unexpected argument {arg!r}: not an option of this command, nor NAME=VALUE",
                hint="options go before a '--'; see 'backprop grad --help'",
            )
        name, value = parse_binding(arg, limits=limits, warnings=warnings)
        if name in point:
            raise BackpropError(f"{name} is given twice ({name}={point[name]!r} and {arg!r})")
        point[name] = value
    return point


GRAD_EXAMPLES = """\
[bold]Examples[/bold]

  backprop grad "(x+y)*z" x=-2 y=5 z=-4

  backprop grad "q = x + y; f = q * z" x=-2 y=5 z=-4 --format json

  backprop grad "1/(1+exp(-(w0*x0+w1*x1+w2)))" w0=2 x0=-1 w1=-3 x1=-2 w2=-3 --wrt w0,w1,w2

  backprop grad --file examples/seed_loss.bp x=2 w=1 y=4 --no-torch

  echo "sin(x)**2" | backprop grad - x=pi/4 --format csv

  backprop grad -- "-x*y" x=3 y=2   (an expression that starts with '-')
"""


@app.command(context_settings={"ignore_unknown_options": True}, epilog=GRAD_EXAMPLES)
def grad(
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
    wrt: Annotated[
        str | None,
        typer.Option("--wrt", metavar="X,Y", help="Only these partials (default: every variable)."),
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
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
) -> None:
    """Differentiate an expression at a point: the computational graph with every node's value
    and gradient, the SymPy partials, and checks against torch autograd and finite differences.

    Exit codes: 0 all checks agree, 1 a cross-check disagreed, 2 bad usage or bad input.
    """
    from .render import to_csv, to_json, to_markdown
    from .report import Options, gradient_report

    limits = Limits(max_length=max_length)
    try:
        program, rest = _load_program(expression, list(values or []), file, limits)
        point = _parse_values(rest, limits, program.warnings)
        options = Options(
            wrt=[w.strip() for w in wrt.split(",") if w.strip()] if wrt is not None else None,
            dtype=dtype.value,
            torch=torch_check,
            device=device,
            symbolic=symbolic,
            simplify=simplify,
            latex=latex,
            symbolic_timeout=symbolic_timeout,
        )
        if not torch_check and device != "cpu":
            raise BackpropError("--device needs the torch check; drop --no-torch")
        report = gradient_report(program, point, options)
    except BackpropError as exc:
        _fail(exc)

    for warning in report["warnings"]:
        _stderr(f"warning: {warning['message']}")
    with _output():
        if fmt is Format.json:
            sys.stdout.write(to_json(report) + "\n")
        elif fmt is Format.csv:
            sys.stdout.write(to_csv(report))
        elif fmt is Format.markdown:
            sys.stdout.write(to_markdown(report))
        else:
            _print_rich(report, max_rows)
    if not report["ok"]:
        _report_disagreement(report)
        raise typer.Exit(EXIT_DISAGREE)


@contextmanager
def _output() -> Iterator[None]:
    """Write the result; a reader that stops early (`| head`) ends us quietly, and an
    output that cannot be written is a one-line error."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads the rest: say nothing more, and keep Python from complaining at exit.
        with suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:
        raise BackpropError(f"cannot write the output: {exc.strerror or exc}") from None


def _print_rich(report: dict[str, Any], max_rows: int) -> None:
    from rich.console import Console

    from .render import tables

    console = Console(highlight=False)
    for i, renderable in enumerate(tables(report, console.width, max_rows)):
        if i:
            console.print()
        console.print(renderable)


def _report_disagreement(report: dict[str, Any]) -> None:
    from .render import check_lines

    for mark, line in check_lines(report):
        if mark == "✗":
            _stderr(f"disagreement: {line}")
    for p in report["partials"]:
        for check, status in p["status"].items():
            if status == "mismatch":
                other = p["symbolic_value"] if check == "symbolic" else p[check]
                _stderr(
                    f"disagreement: ∂/∂{p['variable']}: engine {p['engine']!r} vs "
                    f"{check.replace('_', ' ')} {other!r}"
                )


OPS_EXAMPLES = """\
[bold]Examples[/bold]

  backprop ops

  backprop ops --format json | jq '.[].op'
"""


@app.command(epilog=OPS_EXAMPLES)
def ops(
    fmt: Annotated[OpsFormat, typer.Option("--format", help="Output format.")] = OpsFormat.table,
) -> None:
    """List the operations the expression language knows, with their derivative rules."""
    import json

    from .render import ops_markdown, ops_rows, ops_table

    rows = ops_rows()
    if fmt is OpsFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    elif fmt is OpsFormat.markdown:
        sys.stdout.write(ops_markdown(rows))
    else:
        from rich.console import Console

        Console(highlight=False).print(ops_table(rows))


def main() -> None:
    app()
