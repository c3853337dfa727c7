"""The command line: parse options, call the core, render. The only module that imports typer.

Every error a user can cause ends here as one line on stderr and exit code 2; a failed
cross-check is exit code 1.
"""

from __future__ import annotations

import errno
import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from . import __version__, inputs, terminal
from .errors import BackpropError
from .parse import DEFAULT_LIMITS, Limits
from .terminal import EXIT_DISAGREE, EXIT_INTERNAL

try:  # typer >= 0.25 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click.exceptions import ClickException  # type: ignore[import-not-found,no-redef]


_stderr = terminal.stderr
_output = terminal.output
_console = terminal.console
_print_rich = terminal.print_rich
_report_disagreement = terminal.report_disagreement


def _fail(exc: BackpropError) -> NoReturn:
    _stderr(f"error: {exc.message}")
    for line in exc.details():
        _stderr(line)
    raise typer.Exit(exc.exit_code)


_WRITE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF}


def _exit(code: Any, standalone_mode: bool) -> Any:
    if not standalone_mode:
        return code
    sys.exit(code if isinstance(code, int) else 0)


class _Group(TyperGroup):
    """Turns usage errors into one line and keeps tracebacks away from users."""

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        if args is None:
            args = sys.argv[1:]
        terminal.quiet_broken_pipes()  # --help into | head -c5 ends with exit 0
        self.repeated: list[str] = []
        try:
            code = super().main(
                args=self._positionals_last(list(args)),
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
        except BrokenPipeError:
            with suppress(OSError, ValueError):  # | head: end quietly
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = 0
        except SystemExit as exc:
            # click ends with exit 1 when the reader of --help or a listing went away
            # (| head -c5): that is not a failure of ours
            if exc.code != 1 or type(sys.stdout).__name__ != "PacifyFlushWrapper":
                raise
            with suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            code = 0
        except UnicodeEncodeError as exc:
            terminal.error_lines(terminal.encoding_error(exc))
            code = 2
        except Exception as exc:
            if os.environ.get("BACKPROP_DEBUG"):
                raise
            if isinstance(exc, OSError) and exc.errno in _WRITE_ERRORS:
                # help, --version or a listing that could not be written (a full disk)
                _stderr(f"error: cannot write the output: {exc.strerror or exc}")
                return _exit(2, standalone_mode)
            _stderr(f"internal error: {type(exc).__name__}: {exc}")
            _stderr("this is a bug in backprop-cli; BACKPROP_DEBUG=1 shows the traceback")
            code = EXIT_INTERNAL
        if code in (None, 0, 1, EXIT_DISAGREE):  # bad input's first line stays its error
            for warning in self.repeated:
                _stderr(warning)
        return _exit(code, standalone_mode)

    def _positionals_last(self, args: list[str]) -> list[str]:
        """The command's options first, then '--' and the positional arguments, so that an
        expression starting with '-' (-log(x), -x*y) is never read as a bundle of options."""
        i = 0
        while i < len(args) and args[i].startswith("-"):  # --version, --help
            i += 1
        if i >= len(args) or args[i] not in self.commands:
            return args
        flags: set[str] = {"--help"}
        valued: set[str] = set()
        owner: dict[str, Any] = {}
        for param in self.commands[args[i]].params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            names = [*param.opts, *param.secondary_opts]
            (flags if getattr(param, "is_flag", False) else valued).update(names)
            if not getattr(param, "multiple", False) and not getattr(param, "count", False):
                owner.update(dict.fromkeys(names, param))
        given: dict[str, list[str]] = {}  # option -> how it was written, each time
        options: list[str] = []
        positionals: list[str] = []
        rest = args[i + 1 :]
        j = 0
        while j < len(rest):
            arg = rest[j]
            name = arg.split("=", 1)[0] if arg.startswith("--") else arg
            if arg == "--":
                positionals += rest[j + 1 :]
                break
            if name in flags:
                options.append(arg)
            elif name in valued:
                options.append(arg)
                if "=" not in arg and j + 1 < len(rest):
                    options.append(rest[j + 1])
                    arg = f"{arg} {rest[j + 1]}"
                    j += 1
            else:
                positionals.append(arg)
            if name in owner:
                given.setdefault(owner[name].name, []).append(arg)
            j += 1
        self.repeated = _repeated(given)
        return [*args[: i + 1], *options, "--", *positionals]


def _repeated(given: dict[str, list[str]]) -> list[str]:
    """An option given more than once keeps its last value, as in most command lines; a
    script that repeats one by mistake is told which value counts."""
    return [
        f"warning: an option is given {len(spelled)} times "
        f"({', '.join(terminal.visible(s) for s in spelled)}); the last counts"
        for spelled in given.values()
        if len(spelled) > 1
    ]


app = typer.Typer(
    cls=_Group,
    name="backprop",
    help="The terminal's backpropagation workbench: computational graphs, gradients, "
    "symbolic partials, and cross-checks against PyTorch and finite differences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    epilog="""[bold]Examples[/bold]

  A gradient, checked three ways:
    backprop grad "(x+y)*z" x=-2 y=5 z=-4

  The chain rule, path by path:
    backprop explain "(x*w - y)**2" x=2 w=1 y=4 --wrt w

  A picture of the graph:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 -o graph.svg

  Training, step by step:
    backprop train linear --epochs 100

  The operations and their rules:
    backprop ops
""",
)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class GradFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    tsv = "tsv"
    jsonl = "jsonl"


class CheckFormat(str, Enum):
    table = "table"
    json = "json"


class OnError(str, Enum):
    stop = "stop"
    skip = "skip"


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

  An expression that starts with '-':
    backprop grad -- "-x*y" x=3 y=2

  Arrays (quote them: the shell would expand brackets and parentheses):
    backprop grad "2*dot(x, x)" "x=[0,1,2,3]"
    backprop grad "sum(sigmoid(W @ x + b))" "W=[[1,2],[3,4]]" "x=[1,-1]" b=0
    backprop grad "2*x*x" "x=arange(4)" --seed-grad "[1,1,1,1]"

  f' and f'':
    backprop grad "x**3 + 2*x**2 - 3*x + 1" x=1 --order 2

  Every point of a file, and a bare column from stdin:
    backprop grad "w0*x0 + w1*x1 + w2" --points examples/points.csv > g.csv
    seq 0 0.01 10 | backprop grad "sin(x)*exp(-x)" --points - --format jsonl
"""


_AllowNonfinite = Annotated[
    bool,
    typer.Option(
        "--allow-nonfinite",
        help="Accept nan, inf and -inf as values (NAME=VALUE, --values, --points cells).",
    ),
]


def _given(ctx: typer.Context) -> frozenset[str]:
    """The parameters the command line set (not their defaults)."""
    return frozenset(
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"
    )


@app.command(context_settings={"ignore_unknown_options": True}, epilog=GRAD_EXAMPLES)
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
            help="Output format (default: table; with --points, csv).",
            show_default=False,
        ),
    ] = None,
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
            help="Also draw the graph with its values and gradients (.svg .png .pdf).",
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
    allow_nonfinite: _AllowNonfinite = False,
) -> None:
    """Differentiate an expression at a point: the computational graph with every node's value
    and gradient, the SymPy partials, and checks against torch autograd and finite differences.

    Exit codes: 0 all checks agree, 1 a cross-check disagreed, 2 bad usage or bad input.
    """
    from .grad_command import GradArgs
    from .grad_command import run as run_grad

    code = run_grad(
        GradArgs(
            expression=expression, values=values, file=file, values_file=values_file, wrt=wrt,
            seed_grad=seed_grad, order=order, fmt=None if fmt is None else fmt.value,
            points_file=points_file, on_error=on_error.value, check_points=check_points,
            dtype=dtype.value, torch_check=torch_check, device=device, symbolic=symbolic,
            simplify=simplify, latex=latex, symbolic_timeout=symbolic_timeout, expand=expand,
            picture_file=picture_file, max_rows=max_rows, max_length=max_length,
            allow_nonfinite=allow_nonfinite, given=_given(ctx),
        )
    )  # fmt: skip
    if code:
        raise typer.Exit(code)


OPS_EXAMPLES = """\
[bold]Examples[/bold]

  Every operation with its derivative rule:
    backprop ops

  Their names, from the JSON:
    backprop ops --format json | jq ".[].op"
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

  Forward accumulation instead:
    backprop explain "x*x + x" x=3 --mode forward
"""


@app.command(context_settings={"ignore_unknown_options": True}, epilog=EXPLAIN_EXAMPLES)
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
) -> None:
    """The chain rule step by step: every path from the output down to each variable with
    its product of local derivatives, the reverse sweep as numbered local steps (or, with
    --mode forward, one tangent sweep per input), and what each mode costs."""
    from . import render_explain as view
    from .explain import explain as run_explain
    from .render import to_json
    from .report import check_point, resolve_wrt

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    try:
        program, point = _program_and_point(expression, values, file, values_file, limits)
        for warning in [*program.warnings, *check_point(program.graph, point)]:
            _stderr(f"warning: {warning}")
        graph = program.graph
        chosen = resolve_wrt(graph, _names(wrt))
        report = run_explain(graph, {k: point[k] for k in graph.variables}, chosen, mode.value)
    except BackpropError as exc:
        _fail(exc)
    for warning in report["warnings"]:
        _stderr(f"warning: {warning['message']}")
    with _output():
        if fmt is ExplainFormat.json:
            sys.stdout.write(to_json(report) + "\n")
        elif fmt is ExplainFormat.markdown:
            sys.stdout.write(view.markdown(report))
        elif fmt is ExplainFormat.latex:
            from .symbolic import latex_names

            names = [e["name"] for e in report["legend"]] + [report["output"]["name"]]
            sys.stdout.write(view.latex(report, dict(zip(names, latex_names(names), strict=True))))
        else:
            console = _console()
            for i, item in enumerate(view.panels(report)):
                if i:
                    console.print()
                console.print(item)
    if not report["ok"]:
        _stderr("disagreement: the sum over paths differs from the reverse sweep")
        raise typer.Exit(EXIT_DISAGREE)


def _names(wrt: str | None) -> list[str] | None:
    return [w.strip() for w in wrt.split(",") if w.strip()] if wrt is not None else None


def _program_and_point(
    expression: str | None,
    values: list[str] | None,
    file: str | None,
    values_file: str | None,
    limits: Limits,
) -> tuple[Any, dict[str, float]]:
    """The program and the point, from arguments, files and --values (NAME=VALUE wins)."""
    program, rest = inputs.load_program(expression, list(values or []), file, limits)
    point = inputs.parse_values(rest, limits, program.warnings)
    if values_file is not None:
        from .data import read_values

        point = {**read_values(values_file, "--values", limits.allow_nonfinite), **point}
    return program, point


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
"""


def _higher(
    kind: str,
    expression: str | None,
    values: list[str] | None,
    file: str | None,
    values_file: str | None,
    wrt: str | None,
    fmt: Format,
    torch_check: bool,
    device: str,
    symbolic: bool,
    symbolic_timeout: float,
    max_length: int,
    allow_nonfinite: bool,
) -> None:
    from . import higher
    from .render import higher_csv, higher_markdown, higher_tables, to_json

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    try:
        program, point = _program_and_point(expression, values, file, values_file, limits)
        if not torch_check and device != "cpu":
            raise BackpropError("--device needs the torch check; drop --no-torch")
        build = higher.hessian_report if kind == "hessian" else higher.jacobian_report
        report = build(
            program.graph, point, _names(wrt), torch=torch_check, device=device,
            symbolic=symbolic, symbolic_timeout=symbolic_timeout,
        )  # fmt: skip
    except BackpropError as exc:
        _fail(exc)
    for warning in [*program.warnings, *(w["message"] for w in report["warnings"])]:
        _stderr(f"warning: {warning}")
    with _output():
        if fmt is Format.json:
            sys.stdout.write(to_json(report) + "\n")
        elif fmt is Format.csv:
            sys.stdout.write(higher_csv(report, kind))
        elif fmt is Format.markdown:
            sys.stdout.write(higher_markdown(report, kind))
        else:
            console = _console()
            for i, renderable in enumerate(higher_tables(report, kind, console.width)):
                if i:
                    console.print()
                console.print(renderable)
    if not report["ok"]:
        from .render import higher_lines

        for mark, line in higher_lines(report, kind):
            if mark == "✗":
                _stderr(f"disagreement: {line}")
        raise typer.Exit(EXIT_DISAGREE)


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
    str | None, typer.Option("--values", metavar="FILE.json", help="Values from a JSON object.")
]
_Wrt = Annotated[
    str | None, typer.Option("--wrt", metavar="X,Y", help="Only these variables (default: all).")
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
    typer.Option("--symbolic/--no-symbolic", help="SymPy entries (--no-symbolic skips SymPy)."),
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


@app.command(context_settings={"ignore_unknown_options": True}, epilog=JACOBIAN_EXAMPLES)
def jacobian(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    wrt: _Wrt = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    torch_check: _TorchCheck = True,
    device: _Device = "cpu",
    symbolic: _Symbolic = True,
    symbolic_timeout: _Timeout = 5.0,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
) -> None:
    """Every partial derivative of every element of the output (an array or a number) with
    respect to every element of the variables, checked against torch.autograd.functional,
    SymPy and finite differences.

    Exit codes: 0 all checks agree, 1 a check disagreed, 2 bad usage or bad input.
    """
    _higher(
        "jacobian", expression, values, file, values_file, wrt, fmt, torch_check, device,
        symbolic, symbolic_timeout, max_length, allow_nonfinite,
    )  # fmt: skip


@app.command(context_settings={"ignore_unknown_options": True}, epilog=HESSIAN_EXAMPLES)
def hessian(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    wrt: _Wrt = None,
    fmt: Annotated[Format, typer.Option("--format", help="Output format.")] = Format.table,
    torch_check: _TorchCheck = True,
    device: _Device = "cpu",
    symbolic: _Symbolic = True,
    symbolic_timeout: _Timeout = 5.0,
    max_length: _MaxLength = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
) -> None:
    """Every second derivative of a scalar output with respect to the variables' elements
    (forward over reverse: the engine's reverse sweep run on dual numbers), checked against
    torch.autograd.functional, SymPy and second differences.

    Exit codes: 0 all checks agree, 1 a check disagreed, 2 bad usage or bad input.
    """
    _higher(
        "hessian", expression, values, file, values_file, wrt, fmt, torch_check, device,
        symbolic, symbolic_timeout, max_length, allow_nonfinite,
    )  # fmt: skip


class GraphFormat(str, Enum):
    tree = "tree"
    dot = "dot"
    mermaid = "mermaid"


class Rankdir(str, Enum):
    LR = "LR"
    TB = "TB"


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

  The worst point, from the JSON:
    backprop check "x**3 - x" --format json | jq .worst
"""


@app.command(name="check", context_settings={"ignore_unknown_options": True}, epilog=CHECK_EXAMPLES)
def check_command(
    expression: _Expression = None,
    values: _Values = None,
    file: _File = None,
    values_file: _ValuesFile = None,
    samples: Annotated[
        int, typer.Option("--samples", min=1, max=100_000, help="Random points to check.")
    ] = 100,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=2**63 - 1, help="Seed of the random points.")
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
) -> None:
    """Check the gradient at many points (random, or from a file): the engine against torch
    autograd, finite differences and SymPy at each, with the worst point reported. For CI.

    Exit codes: 0 all checks agree, 1 a check disagreed somewhere, 2 bad usage or bad input.
    """
    from . import sweep
    from .render_check import check_heading, check_lines, check_table

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    try:
        if points_file == "-" and "-" in (expression, file):
            raise BackpropError("stdin can hold the program or the points, not both")
        program, fixed = _program_and_point(expression, values, file, values_file, limits)
        if not torch_check and device != "cpu":
            raise BackpropError("--device needs the torch check; drop --no-torch")
        low, high = _range(where)
        settings = sweep.Settings(
            samples=samples, seed=seed, low=low, high=high, wrt=_names(wrt), dtype=dtype.value,
            torch=torch_check, device=device, symbolic=symbolic,
            symbolic_timeout=symbolic_timeout,
        )  # fmt: skip
        if points_file is not None:
            what = "stdin" if points_file == "-" else points_file
            settings.given = sweep.read_points(points_file, what, program, fixed, allow_nonfinite)
            settings.source = what
        report = sweep.check(program, fixed, settings)
    except BackpropError as exc:
        _fail(exc)
    for warning in report["warnings"]:
        _stderr(f"warning: {warning['message']}")
    with _output():
        if fmt is CheckFormat.json:
            from .render import to_json

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
    from .data import number

    parts = text.split(",")
    if len(parts) != 2:
        raise BackpropError(f"--range: expected LOW,HIGH, got {text!r}")
    low, high = (number(p, "--range") for p in parts)
    if not low < high:
        raise BackpropError(f"--range: {low!r} is not below {high!r}")
    if not math.isfinite(high - low):
        raise BackpropError(f"--range: {low!r} to {high!r} is wider than float64 can hold")
    return low, high


GRAPH_EXAMPLES = """\
[bold]Examples[/bold]

  The graph with values and gradients:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4

  Graphviz's DOT, rendered by dot:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 --format dot | dot -Tsvg > g.svg

  A picture file:
    backprop graph examples/cs231n_add_mul.bp x=-2 y=5 z=-4 -o graph.svg

  A Mermaid flowchart:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 --format mermaid

  No values: the structure only:
    backprop graph "q = x + y; f = q * z"
"""


@app.command(context_settings={"ignore_unknown_options": True}, epilog=GRAPH_EXAMPLES)
def graph(
    expression: Annotated[
        str | None,
        typer.Argument(
            help="The expression, a program file (.bp) or '-' for stdin.", show_default=False
        ),
    ] = None,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME=VALUE...",
            help="Values (all or none: without them the picture shows the structure).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", metavar="PATH", help="Read the program from a file.")
    ] = None,
    values_file: Annotated[
        str | None, typer.Option("--values", metavar="FILE.json", help="Values from a JSON object.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE", help="Render with Graphviz: .svg .png .pdf"),
    ] = None,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="Printed format.")
    ] = GraphFormat.tree,
    rankdir: Annotated[
        Rankdir, typer.Option("--rankdir", help="Left to right or top down.")
    ] = Rankdir.LR,
    max_nodes: Annotated[
        int, typer.Option("--max-nodes", min=0, help="Show at most this many nodes (0: all).")
    ] = 200,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, max=100_000_000, metavar="CHARS")
    ] = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
) -> None:
    """Draw the computational graph, CS231n style: each node's op and label with its value
    (green) and gradient (red), each wire with the value going forward and the gradient
    coming back. Without values it shows the structure alone."""
    from . import picture as pictures

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    try:
        if output is not None:
            from .files import refuse_inputs_as_outputs

            pictures.check_output(output)
            refuse_inputs_as_outputs(
                [("-o", output)],
                [("the program", expression), ("--file", file), ("--values", values_file)],
            )
        program, point = _program_and_point(expression, values, file, values_file, limits)
        pic = pictures.picture(program.graph, _full_point_or_none(program.graph, point), max_nodes)
        text = (
            pictures.to_mermaid(pic, rankdir.value)
            if fmt is GraphFormat.mermaid
            else pictures.to_dot(pic, rankdir.value)
        )
        notes = [] if output is None else pictures.render(pic, output, rankdir.value)
    except BackpropError as exc:
        _fail(exc)
    if pic.cut:
        _stderr(f"note: {pic.cut:,} nodes not shown (--max-nodes {max_nodes})")
    for note in notes:
        _stderr(f"note: {note}")
    if output is not None:
        _stderr(f"wrote {output}")
        if fmt is GraphFormat.tree:
            return
    with _output():
        if fmt is GraphFormat.tree:
            _console().print(pictures.tree(pic))
        else:
            sys.stdout.write(text)


def _full_point_or_none(graph: Any, point: dict[str, float]) -> dict[str, float] | None:
    """All the values, or none (a structure-only picture); some but not all is a mistake."""
    from .report import check_point

    if not point:
        return None
    for warning in check_point(graph, point):
        _stderr(f"warning: {warning}")
    return {name: point[name] for name in graph.variables}


class TrainFormat(str, Enum):
    table = "table"
    jsonl = "jsonl"


class Optim(str, Enum):
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"


class Engine(str, Enum):
    graph = "graph"
    torch = "torch"


TRAIN_EXAMPLES = """\
[bold]Examples[/bold]

  The course's model, digit for digit:
    backprop train linear --epochs 100

  An affine model with a larger step:
    backprop train affine --epochs 200 --lr 0.02

  Your own data and Adam:
    backprop train quadratic --x 1,2,3,4 --y 6,17,34,57 --optimizer adam

  A small network:
    backprop train mlp --hidden 3 --x 1,2,3,4 --y 0,1,1,0 --epochs 500

  Any expression, from a starting point:
    backprop train "w1*x**2 + w2*x + b" --x 1,2,3 --y 6,17,34 --init w1=0,b=0

  The losses, from JSON lines:
    backprop train linear --epochs 100 --format jsonl | jq .loss

  Save the trained parameters (backprop grad --values reads them):
    backprop train linear --save params.json

  The built-in models:
    backprop train --list
"""


@app.command(epilog=TRAIN_EXAMPLES)
def train(
    model: Annotated[
        str | None,
        typer.Argument(
            help="linear (default), affine, quadratic, logistic, mlp, or an expression.",
            show_default=False,
        ),
    ] = None,
    list_models: Annotated[bool, typer.Option("--list", help="List the models.")] = False,
    x: Annotated[str | None, typer.Option("--x", metavar="1,2,3", help="Inputs.")] = None,
    y: Annotated[str | None, typer.Option("--y", metavar="2,4,6", help="Targets.")] = None,
    data_file: Annotated[
        str | None,
        typer.Option("--data", metavar="FILE.csv", help="CSV with a header row ('-': stdin)."),
    ] = None,
    target: Annotated[str, typer.Option("--target", help="The CSV column to predict.")] = "y",
    loss: Annotated[
        str | None,
        typer.Option("--loss", help="mse, mae, huber, bce, or sums such as mse+mae."),
    ] = None,
    optimizer: Annotated[Optim, typer.Option("--optimizer")] = Optim.sgd,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate.")] = 0.01,
    epochs: Annotated[int, typer.Option("--epochs", min=0, max=100_000_000)] = 100,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=0,
            help="1: per-sample updates (the default for linear); 0: full batch (the default "
            "otherwise).",
        ),
    ] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle", help="Reshuffle every epoch.")] = False,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, max=2**63 - 1, help="Random initialisation and shuffling."),
    ] = 0,
    init: Annotated[
        str | None,
        typer.Option("--init", metavar="w=1,b=0|FILE.json", help="Initial parameters."),
    ] = None,
    hidden: Annotated[
        int | None,
        typer.Option(
            "--hidden", min=1, max=10_000, help="mlp units (default 3).", show_default=False
        ),
    ] = None,
    engine_name: Annotated[
        Engine, typer.Option("--engine", help="graph: our engine; torch: torch autograd.")
    ] = Engine.graph,
    device: Annotated[str, typer.Option("--device", help="torch device (--engine torch).")] = "cpu",
    check: Annotated[
        bool, typer.Option("--check", help="Recompute every step with torch autograd.")
    ] = False,
    dtype: Annotated[
        DType, typer.Option("--dtype", help="float32 by default, as PyTorch and the course.")
    ] = DType.float32,
    log_every: Annotated[
        int | None, typer.Option("--log-every", min=1, metavar="K", help="Log every K epochs.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also print every step's gradients.")
    ] = False,
    predict_at: Annotated[
        str | None,
        typer.Option("--predict", metavar="4|a=1,b=2", help="Predict here, before and after."),
    ] = None,
    plot: Annotated[
        str | None, typer.Option("--plot", metavar="FILE", help="Loss curve: .png .svg .pdf")
    ] = None,
    save: Annotated[
        str | None, typer.Option("--save", metavar="FILE.json", help="Write the parameters.")
    ] = None,
    fmt: Annotated[TrainFormat, typer.Option("--format")] = TrainFormat.table,
    max_data: Annotated[
        int,
        typer.Option(
            "--max-data",
            min=1,
            metavar="N",
            help="Refuse more than N data values (rows × columns, the target included).",
        ),
    ] = 10_000_000,
    max_params: Annotated[
        int,
        typer.Option(
            "--max-params", min=1, metavar="N", help="Refuse a model of more than N parameters."
        ),
    ] = 1_000_000,
    max_step_elements: Annotated[
        int,
        typer.Option(
            "--max-step-elements",
            min=1,
            metavar="N",
            help="Refuse a training step whose batch would hold more than N array elements.",
        ),
    ] = 20_000_000,
) -> None:
    """Train a tiny model step by step on our graph engine (forward, backward, step),
    cross-checked against torch if asked, with the course's log lines and a loss curve.

    Exit codes: 0 trained, 1 diverged or the torch check disagreed, 2 bad usage or data,
    130 interrupted (the summary is still printed).
    """
    from . import models
    from . import train as training
    from .data import load

    if list_models:
        _list_models(fmt)
        return
    try:
        # Every budget is decided before the thing it bounds is made: the data while it is
        # read, the parameters from their shapes, a step from the graph's shapes.
        data, note = load(x, y, data_file, target, max_values=max_data)
        spec = model or "linear"
        built = models.build(
            spec, data, loss=loss, hidden=hidden or 3, seed=seed, max_params=max_params
        )
        for column in models.unused_columns(built):
            _stderr(f"warning: the data column {column!r} is not used by the model")
        if init is not None:
            built = inputs.with_init(built, init)
            models.check_size(built, max_params)
            units = _hidden_units(built)
            if hidden is not None and units is not None and units != hidden:
                raise BackpropError(
                    f"--hidden {hidden}, but --init gives {units} hidden units (the rows of W1)",
                    hint="drop --hidden, or initialise W1, b1 and W2 for that many units",
                )
        settings = training.Settings(
            epochs=epochs,
            lr=lr,
            optimizer=optimizer.value,
            batch_size=batch_size if batch_size is not None else (1 if spec == "linear" else 0),
            shuffle=shuffle,
            seed=seed,
            dtype=dtype.value,
            engine=engine_name.value,
            device=device,
            check=check,
            log_every=log_every or max(1, epochs // 100),
            verbose=verbose,
            max_step_elements=max_step_elements,
        )
        training.check_budget(built, len(data), settings)
        if predict_at is None and x is None and data_file is None and len(built.features) == 1:
            predict_at = "4"  # the course predicts at x = 4
        points = inputs.predict_points(predict_at, built)
        if plot is not None:
            from .plot import check_path

            check_path(plot)
        if save is not None:
            inputs.check_writable(save, "--save")
        from .files import refuse_inputs_as_outputs

        refuse_inputs_as_outputs(
            [("--save", save), ("--plot", plot)],
            [
                ("--data", data_file),
                ("--init", init if init and inputs.init_is_file(init) else None),
            ],
        )
        if device != "cpu" and engine_name is Engine.graph and not check:
            raise BackpropError("--device is for --engine torch or --check")
        if hidden is not None and spec != "mlp":  # said once the input is known to be good
            _stderr("warning: --hidden does nothing here: it is for the mlp model")
        with _output():
            result = _run_training(built, data, settings, note, points, fmt, verbose)
        _finish_training(built, result, settings, points, plot, save, fmt)
    except BackpropError as exc:
        _fail(exc)


def _list_models(fmt: TrainFormat) -> None:
    from .models import listing

    rows = listing()
    if fmt is TrainFormat.jsonl:
        for row in rows:
            print(json.dumps(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Models for backprop train", title_justify="left")
    for column in ("model", "formula", "default loss", "about"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["model"], row["formula"], row["loss"], row["about"])
    Console(highlight=False).print(table)


def _hidden_units(built: Any) -> int | None:
    """The mlp's hidden units as its parameters have them (None for other models)."""
    if built.name != "mlp":
        return None
    import numpy as np

    shape = np.shape(built.init.get("W1"))
    return int(shape[0]) if len(shape) == 2 else None


def _run_training(
    built: Any,
    data: Any,
    settings: Any,
    note: str,
    points: list[dict[str, float]],
    fmt: TrainFormat,
    verbose: bool,
) -> Any:
    import numpy as np

    from . import render_train as view
    from . import train as training

    table = fmt is TrainFormat.table
    quiet = False

    def say(line: str) -> None:
        """Print a line; a reader that stops early stops only the output."""
        nonlocal quiet
        if quiet:
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # Training goes on (its results may be --save'd); the rest of the output is dropped.
            quiet = True
            with suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    if table:
        for line in view.header(built, len(data), settings, note):
            say(line)
        for point in points:
            before = training.predict(built, built.init, _columns(point), settings.dtype)
            say(view.predict_line("before", list(point.values()), float(before[0])))

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "epoch":
            say(
                view.jsonl_epoch(info)
                if not table
                else view.progress_line(info["epoch"], info["loss"])
            )
        elif kind == "grad" and verbose and table:
            env, grads = info["env"], info["grads"]
            scalars = all(np.ndim(grads[p]) == 0 for p in built.params)
            if len(info["idx"]) == 1 and scalars and built.matrix is None:
                inputs = [float(env[f][0]) for f in built.features]
                gs = [float(np.ravel(grads[p])[0]) for p in built.params]
                say(view.grad_line(inputs, float(env[built.target][0]), gs))
            else:
                say(view.batch_grad_line(len(info["idx"]), grads, built.params))

    with _progress(table, settings.epochs) as advance:

        def with_progress(kind: str, info: dict[str, Any]) -> None:
            if kind == "tick":
                advance()
            else:
                on_event(kind, info)

        return training.run(built, data, settings, with_progress)


def _columns(point: dict[str, float]) -> dict[str, Any]:
    import numpy as np

    return {name: np.array([value]) for name, value in point.items()}


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    """A Rich progress bar on stderr, only where a person watches a terminal."""
    if not (enabled and sys.stderr.isatty() and total > 1):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task("training", total=total)
        yield lambda: bar.advance(task)


def _finish_training(
    built: Any,
    result: Any,
    settings: Any,
    points: list[dict[str, float]],
    plot: str | None,
    save: str | None,
    fmt: TrainFormat,
) -> None:
    from . import render_train as view
    from . import train as training

    predictions = []
    for point in points:
        after = training.predict(built, result.params, _columns(point), settings.dtype)
        x_shown: Any = next(iter(point.values())) if len(point) == 1 else point
        predictions.append({"x": x_shown, "y": float(after[0])})
    with _output():
        if fmt is TrainFormat.jsonl:
            print(view.jsonl_final(result, predictions, built))
        else:
            for point, prediction in zip(points, predictions, strict=True):
                print(view.predict_line("after", list(point.values()), prediction["y"]))
            console = _console()
            console.print(view.summary(built, result, settings))
            for line in view.status_lines(result, settings):
                console.print(line)
            drawn = view.curve(result.curve, width=min(64, max(20, console.width - 12)))
            if drawn:
                console.print(drawn, markup=False)
    if save is not None:
        _write_json(save, result.params)
    if plot is not None:
        from .plot import loss_plot

        loss_plot(result.curve, plot, f"{built.name}: {built.loss} loss")
    _training_verdict(result, settings)


def _write_json(path: str, params: dict[str, float]) -> None:
    from .files import write_atomically

    write_atomically(path, json.dumps(params, indent=2) + "\n")


def _training_verdict(result: Any, settings: Any) -> None:
    for warning in result.warnings:
        _stderr(f"warning: {warning}")
    if result.diverged_at is not None:
        _stderr(
            f"error: training diverged at epoch {result.diverged_at}: the loss or a parameter "
            f"became nan or infinite (lr {settings.lr!r}); try a smaller --lr. "
            "The last finite parameters are kept."
        )
        raise typer.Exit(EXIT_DISAGREE)
    if result.check_ok is False:
        _stderr(
            "disagreement: torch autograd's gradients differ from the engine's "
            f"(largest difference {result.check_max_error:.3g})"
        )
        raise typer.Exit(EXIT_DISAGREE)
    if result.interrupted:
        _stderr(f"interrupted after {result.epochs_run} epochs; the summary shows what was trained")
        raise typer.Exit(130)


def main() -> None:
    app()
