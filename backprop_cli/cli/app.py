"""The `backprop` command group: each command lives in its own module of this folder and
registers itself here. Every error a user can cause ends here as one line on stderr and
exit code 2; a failed cross-check is exit code 1.
"""

from __future__ import annotations

import errno
import os
import sys
from contextlib import suppress
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from ..core.errors import BackpropError, visible
from . import check, diff, explain, grad, graph, higher, ops, terminal, train
from .common import _fail, _stderr  # noqa: F401
from .terminal import EXIT_DISAGREE, EXIT_INTERNAL

try:  # typer >= 0.25 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer depends on click itself
    from click.exceptions import ClickException  # type: ignore[import-not-found,no-redef,assignment,unused-ignore]

HELP_OPTIONS = ["-h", "--help"]
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
        flags: set[str] = set(HELP_OPTIONS)
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
        f"({', '.join(visible(s) for s in spelled)}); the last counts"
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


for _command in (grad, ops, explain, higher, check, graph, train, diff):
    _command.register(app)
for _info in app.registered_commands:  # -h is help in every command, as in the group
    _info.context_settings = {**(_info.context_settings or {}), "help_option_names": HELP_OPTIONS}


def main() -> None:
    app()
