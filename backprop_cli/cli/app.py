"""The `backprop` command group: each command lives in its own module of this folder and
registers itself here. Every error a user can cause ends here as one line on stderr and
exit code 2; a failed cross-check is exit code 1.

The conventions every command shares are kept here, in one place: -h is --help; bare
`backprop` prints the help; shell completion (--install-completion / --show-completion
[SHELL]); "did you mean" for a mistyped option; help panels (PANELS: the same option sits
in the same panel wherever it appears); flags without a `<bool>` type; docstrings re-flowed
to the terminal's width.
"""

from __future__ import annotations

import errno
import inspect
import os
import re
import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from .. import __version__
from ..core.errors import BackpropError, InputError, visible
from ..core.suggest import closest
from . import check, codegen, diff, explain, grad, graph, higher, ops, terminal, train
from .common import _fail, _stderr  # noqa: F401
from .terminal import EXIT_DISAGREE, EXIT_INTERNAL

try:  # typer >= 0.25 vendors click
    from typer._click.exceptions import ClickException, NoSuchOption
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click.exceptions import ClickException, NoSuchOption  # type: ignore[import-not-found,no-redef,assignment,unused-ignore]

PROG = "backprop"
HELP_OPTIONS = ["-h", "--help"]
COMPLETE_VAR = "_BACKPROP_COMPLETE"  # set by the completion scripts: click's _PROG_COMPLETE
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
_COMPLETION_OPTIONS = ("--show-completion", "--install-completion")
_LONG_OPTION = re.compile(r"--[A-Za-z][A-Za-z0-9-]*")
_WRITE_ERRORS = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF}


# Help panels, one table for every command: an option sits in the same panel wherever it
# appears (COMMAND_PANELS says where a command means something else by it). An option's
# own rich_help_panel wins. Commands with fewer than PANELLED options keep one panel.
INPUT, POINTS, CHECKS, OUTPUT, LIMITS, MODEL = (
    "Input", "Points", "Checks", "Output", "Limits", "Model specs",
)  # fmt: skip
TRAINING, PICTURE = "Training", "Picture"
PANELLED = 8
PANELS = {
    **dict.fromkeys(
        ["--file", "--values", "--wrt", "--seed-grad", "--order", "--dtype",
         "--allow-nonfinite"], INPUT,
    ),
    **dict.fromkeys(["--points", "--on-error", "--check", "--samples", "--range"], POINTS),
    **dict.fromkeys(["--torch", "--device", "--symbolic", "--simplify", "--expand"], CHECKS),
    **dict.fromkeys(
        ["--format", "--output", "--digits", "--graph", "--latex", "--max-rows", "--mode",
         "--steps", "--rankdir", "--max-nodes", "--edge-labels", "--legend", "--dpi",
         "--collapse"], OUTPUT,
    ),
    **dict.fromkeys(
        ["--max-length", "--symbolic-timeout", "--max-data", "--max-params",
         "--max-step-elements"], LIMITS,
    ),
    **dict.fromkeys(["--loss", "--form", "--seed", "--init", "--show-program"], MODEL),
}  # fmt: skip
COMMAND_PANELS = {
    "check": {"--seed": POINTS},
    "diff": {"--simplify": OUTPUT},
    "train": {
        **dict.fromkeys(["--x", "--y", "--data", "--target"], INPUT),
        **dict.fromkeys(["--list", "--hidden", "--init", "--loss", "--form"], MODEL),
        **dict.fromkeys(
            ["--optimizer", "--lr", "--epochs", "--batch-size", "--shuffle", "--seed",
             "--engine", "--device", "--dtype"], TRAINING,
        ),
        "--check": CHECKS,
        **dict.fromkeys(
            ["--log-every", "--verbose", "--predict", "--plot", "--save", "--show-program"],
            OUTPUT,
        ),
    },
}  # fmt: skip
PANEL_ORDER = {
    "train": (INPUT, MODEL, TRAINING, CHECKS, OUTPUT, PICTURE, LIMITS),
    "": (INPUT, POINTS, CHECKS, OUTPUT, PICTURE, LIMITS, MODEL),
}


def _no_bool(param: Any) -> Any:
    """A flag takes no value, so its help shows no type (typer would print `<bool>`)."""
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    return param


_TYPE_WIDTH = 20  # a longer type column squeezes the help text of every option


def _compact(param: Any) -> None:
    """A short type column, so that the help beside it stays readable at 60 columns: a long
    list of choices becomes NAME (the choices move into the help), an unnamed number N or
    X, and a number's range moves into the help ([1<=x<=2]; a bound that is only the
    integer type's, --seed's 2**63-1, is left out)."""
    described = getattr(param, "type_descriptor", None)
    if described is None or getattr(param, "is_flag", False):
        return
    long_names = [o for o in param.opts if o.startswith("--")]
    if described.is_choice and param.metavar is None and long_names:
        choices = [str(getattr(c, "value", c)) for c in described.choices or ()]
        if len("|".join(choices)) + 2 > _TYPE_WIDTH:
            param.metavar = long_names[0][2:].upper()
            param.help = f"{param.help or ''} One of: {', '.join(choices)}.".strip()
    if described.is_ranged:
        if param.metavar is None:
            whole = isinstance(param.min, int) or isinstance(param.max, int)
            param.metavar = "N" if whole else "X"
        bounds = param._get_number_range_help_str()
        if param.max is not None and param.max >= 2**31 and param.min is not None:
            bounds = f"x>={param.min}"
        setattr(param, "_get_number_range_help_str", lambda: None)  # noqa: B010
        if bounds:
            param.help = f"{param.help or ''} [{bounds}]".strip()


def _arrange(command: Any) -> None:
    """The conventions of a command's help: flags without `<bool>`, short types, and, for a
    command with many options, each option in its panel, the panels in PANEL_ORDER."""
    options = [p for p in command.params if getattr(p, "param_type_name", "") == "option"]
    for param in options:
        _no_bool(param)
        _compact(param)
    if len(options) < PANELLED:
        return
    name = command.name or ""
    table = {**PANELS, **COMMAND_PANELS.get(name, {})}
    for param in options:
        if getattr(param, "rich_help_panel", None) is None:
            panel = next((table[o] for o in param.opts if o in table), None)
            param.rich_help_panel = panel
    order = PANEL_ORDER.get(name, PANEL_ORDER[""])

    def rank(param: Any) -> int:
        panel = getattr(param, "rich_help_panel", None)
        return order.index(panel) if panel in order else len(order)

    # arguments keep their places (they are read in order); options are read by name
    arguments = [p for p in command.params if p not in options]
    command.params[:] = arguments + sorted(options, key=rank)


def _names_kept_whole() -> None:
    """typer lays an options panel out as one Rich table, and on a narrow terminal Rich
    squeezes its widest columns alike, cutting long option names (--symbolic-timeo…).
    The columns of names are kept whole; the type and the help (the last two) wrap, and a
    word too long for its line is folded onto the next, not cut."""
    from rich.table import Table
    from typer import rich_utils

    drawn_with = getattr(rich_utils, "Table", None)
    if drawn_with is None or getattr(drawn_with, "keeps_names", False):
        return  # done already, or a typer that draws its help otherwise

    class _HelpTable(Table):
        keeps_names = True

        def add_row(self, *cells: Any, **kwargs: Any) -> None:
            super().add_row(*cells, **kwargs)
            if len(self.columns) > 2:  # an options panel, not the list of commands
                for column in self.columns[:-2]:
                    column.no_wrap = True
            for cell in cells:  # the help: a row of Texts in a Rich Columns
                for item in getattr(cell, "renderables", [cell]):
                    if hasattr(item, "overflow"):
                        item.overflow = "fold"

    setattr(rich_utils, "Table", _HelpTable)  # noqa: B010


class _Conventions:
    """What the group and every command share: the conventions of _arrange, a help option
    without a <bool> metavar, option names kept whole in help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _arrange(self)

    def get_help_option(self, ctx: Any) -> Any:
        return _no_bool(super().get_help_option(ctx))  # type: ignore[misc]

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _names_kept_whole()
        super().format_help(ctx, formatter)  # type: ignore[misc]


class _Command(_Conventions, TyperCommand):
    """A command with the shared conventions."""


def _reflow(doc: str | None) -> str | None:
    """A docstring's paragraphs as single lines, for Rich to wrap at the terminal's width
    (typer's rich mode keeps the source's line breaks). A paragraph that starts with
    click's \\b mark keeps its lines."""
    if doc is None:
        return None
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(
        p if p.startswith("\b") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _exit(code: Any, standalone_mode: bool) -> Any:
    if not standalone_mode:
        return code
    sys.exit(code if isinstance(code, int) else 0)


class _Group(_Conventions, TyperGroup):
    """Turns usage errors into one line and keeps tracebacks away from users."""

    def get_params(self, ctx: Any) -> Any:
        for param in self.params:  # typer adds these after __init__
            if param.name in ("install_completion", "show_completion"):
                verb = "Install" if param.name == "install_completion" else "Print"
                param.metavar = "[SHELL]"
                param.help = (  # type: ignore[attr-defined]
                    f"{verb} the completion script for SHELL ({', '.join(SHELLS[:4])}; "
                    "default: the current shell)."
                )
        return super().get_params(ctx)

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        args = list(sys.argv[1:] if args is None else args)
        prog_name = prog_name or PROG  # also under `python -m backprop_cli`
        completing = bool(os.environ.get(complete_var or COMPLETE_VAR))
        if not args and not completing:
            args = ["--help"]  # bare `backprop`: the help, exit 0 (as gh, llm, git)
        terminal.quiet_broken_pipes()  # --help into | head -c5 ends with exit 0
        self.repeated: list[str] = []
        try:
            request = _completion_request(args)
            if request is not None:
                return _exit(_completion(*request), standalone_mode)
            code = super().main(
                args=args if completing else self._positionals_last(args),
                prog_name=prog_name,
                complete_var=complete_var or COMPLETE_VAR,
                standalone_mode=False,
                **extra,
            )
        except NoSuchOption as exc:
            ctx = getattr(exc, "ctx", None)
            known = _option_names(ctx.command) if ctx is not None else exc.possibilities or []
            path = ctx.command_path if ctx is not None else prog_name
            error = _unknown_option(exc.option_name, known, path)
            _stderr(f"error: {error.message}")
            for line in error.details():
                _stderr(line)
            code = error.exit_code
        except ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            if exc.format_message():  # empty when the help was shown for missing arguments
                _stderr(f"error: {_usage_message(exc.format_message())}{hint}")
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
        command = self.commands[args[i]]
        flags: set[str] = set(HELP_OPTIONS)
        valued: set[str] = set()
        owner: dict[str, Any] = {}
        for param in command.params:
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
            elif _LONG_OPTION.fullmatch(name):  # --formt: a slip, not an expression
                raise _unknown_option(name, [*flags, *valued], f"{PROG} {args[i]}")
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
        f"({', '.join(visible(s) for s in spelled)}); the last counts"
        for spelled in given.values()
        if len(spelled) > 1
    ]


_INVALID = re.compile(r"Invalid value for '([^']+)': (?:Value error, )?(.*)", re.DOTALL)
_NOT_ONE_OF = re.compile(r"'([^']*)' is not one of ((?:'[^']*'(?:, )?)+)\.?$")
_NO_COMMAND = re.compile(r"No such command '([^']*)'\.(?: Did you mean '([^']*)'\?)?")


def _usage_message(message: str) -> str:
    """Click's and pydantic's wording in ours: lower case, the option first, the choices
    without quotes and the one most likely meant (`--format: 'jsno' is not one of table,
    json, …; did you mean json?`), `no such command 'gard'; did you mean 'grad'?`."""
    found = _NO_COMMAND.fullmatch(message.strip())
    if found:
        command, meant = found.groups()
        return f"no such command '{command}'" + (f"; did you mean '{meant}'?" if meant else "")
    found = _INVALID.fullmatch(message.strip())
    if not found:
        return message
    option, detail = found.groups()
    option = option.split(" / ")[-1] if option.startswith("-") else option
    detail = detail[:1].lower() + detail[1:]
    choice = _NOT_ONE_OF.match(detail)
    if choice:
        given, listed = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
        meant = closest(given, listed)
        detail = f"'{given}' is not one of {', '.join(listed)}"
        detail += f"; did you mean {meant}?" if meant else ""
    return f"{option}: {detail.rstrip('.')}"


def _unknown_option(name: str, known: Sequence[str], path: str) -> InputError:
    """`--formt`: no such option, and the option most likely meant."""
    meant = closest(name[2:], [k[2:] for k in known if k.startswith("--")])
    if meant is not None:
        return InputError(f"no such option {name}; did you mean --{meant}?")
    return InputError(
        f"no such option {name}",
        hint=f"see '{path} --help' (an expression that starts with '--' goes after '--')",
    )


def _option_names(command: Any) -> list[str]:
    return [
        name
        for param in command.params
        if getattr(param, "param_type_name", "") == "option"
        for name in [*param.opts, *param.secondary_opts]
    ] + HELP_OPTIONS


def _completion_request(args: list[str]) -> tuple[str, str | None] | None:
    """`--show-completion [SHELL]` or `--install-completion [SHELL]` (also OPTION=SHELL),
    alone on the command line: (the option, the shell or None for the current one)."""
    if not args or args[0].split("=", 1)[0] not in _COMPLETION_OPTIONS or len(args) > 2:
        return None
    option, _, shell = args[0].partition("=")
    if len(args) == 2:
        if shell:
            return None
        shell = args[1]
    return option, shell or None


def _completion(option: str, shell: str | None) -> int:
    """Print (--show-completion) or install the completion script for a shell: typer's
    scripts, which call `backprop` back with _BACKPROP_COMPLETE set."""
    from typer._completion_shared import _get_shell_name, get_completion_script, install

    if shell is None:
        shell = _get_shell_name()
        if shell not in SHELLS:
            raise InputError(
                f"{option}: cannot tell which shell this is ({shell or 'none found'})",
                hint=f"name it: {PROG} {option} bash (or {', '.join(SHELLS[1:4])})",
            )
    if shell not in SHELLS:
        raise InputError(
            f"{option}: no completion for the shell {shell!r}",
            hint=f"the shells: {', '.join(SHELLS)}",
        )
    if option == "--show-completion":
        print(get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell))
        return 0
    shell, path = install(shell=shell, prog_name=PROG, complete_var=COMPLETE_VAR)
    print(f"{shell} completion installed in {path}")
    print("it takes effect in a new shell")
    return 0


app = typer.Typer(
    cls=_Group,
    name="backprop",
    help="The terminal's backpropagation workbench: computational graphs, gradients, "
    "symbolic partials, and cross-checks against PyTorch and finite differences.",
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": HELP_OPTIONS},
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


for _command in (grad, ops, explain, higher, check, graph, train, diff, codegen):
    _command.register(app)
for _info in app.registered_commands:  # -h is help in every command, as in the group
    _info.context_settings = {**(_info.context_settings or {}), "help_option_names": HELP_OPTIONS}
    if _info.cls in (None, TyperCommand):
        _info.cls = _Command
    if _info.help is None:
        _info.help = _reflow(inspect.getdoc(_info.callback))


def main() -> None:
    app()
