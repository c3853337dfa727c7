"""Writing to the terminal and to pipes, shared by every command: stderr lines, the output
guard (a reader that stops early ends us quietly), the Rich console and the grad report.
No typer here: `backprop grad` can run without it (see entry.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, NoReturn

from ..core.errors import BackpropError, visible

EXIT_DISAGREE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3


def leave(code: int) -> NoReturn:
    """End the command with this exit code: as typer's Exit where typer runs the command
    (the group's own ending, its warnings, still runs), as SystemExit on a quick path,
    which never imports typer (see entry.py)."""
    typer = sys.modules.get("typer")
    if typer is not None:
        raise typer.Exit(code)
    raise SystemExit(code)


def stderr(line: str) -> None:
    """One line on stderr, control characters escaped; a stderr that cannot be written
    (2>/dev/full, closed) loses the line but never changes the exit code."""
    with suppress(OSError, ValueError, AttributeError):
        print(visible(line), file=sys.stderr, flush=True)


class _ClosedStdin:
    """Stands in for a closed standard input (`<&-`): reading it is a one-line error."""

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise BackpropError("cannot read stdin: standard input is closed")

    @property
    def buffer(self) -> Any:
        raise BackpropError("cannot read stdin: standard input is closed")

    def read(self, *_: Any) -> str:
        raise BackpropError("cannot read stdin: standard input is closed")

    readline = read


def check_streams() -> int | None:
    """Before any work: a closed stdout is exit 2 with one line (there is nowhere to write
    the result), a closed stdin becomes an error only if it is read, and a closed stderr
    loses the messages but not the exit code. None: all is well."""
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    else:  # an ASCII stderr still shows every message, its symbols escaped
        with suppress(AttributeError, ValueError):
            sys.stderr.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    if sys.stdin is None:
        sys.stdin = _ClosedStdin()
    if sys.stdout is None:
        stderr("error: standard output is closed, so there is nowhere to write the result")
        return EXIT_USAGE
    return None


def encoding_error(exc: UnicodeEncodeError) -> BackpropError:
    """What an output that the terminal's encoding cannot show (PYTHONIOENCODING=ascii and
    a table's ∂ or borders) is told: exit 2 with a hint, not a crash. Output that is ASCII
    (JSON, CSV) is written as usual under such an encoding."""
    char = exc.object[exc.start : exc.start + 1] if isinstance(exc.object, str) else "?"
    return BackpropError(
        f"the output's encoding ({exc.encoding}) cannot show {char!r} "
        f"(U+{ord(char):04X}) of this output",
        hint="use a UTF-8 locale or PYTHONIOENCODING=utf-8, or an ASCII format such as "
        "--format json",
    )


def error_lines(exc: BackpropError) -> None:
    """The one-line error (and its hint or caret lines) on stderr."""
    stderr(f"error: {exc.message}")
    for line in exc.details():
        stderr(line)


@contextmanager
def output() -> Iterator[None]:
    """Write the result; a reader that stops early (`| head`) ends us quietly, and an
    output that cannot be written is a one-line error."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        # Nobody reads the rest: say nothing more, and keep Python from complaining at exit.
        with suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except UnicodeEncodeError as exc:
        raise encoding_error(exc) from None
    except OSError as exc:
        raise BackpropError(f"cannot write the output: {exc.strerror or exc}") from None


def quiet_broken_pipes() -> None:
    """Rich's consoles (ours, and typer's for --help) exit 1 on a closed pipe; make them
    raise BrokenPipeError instead, which `output` and the command's guard end quietly."""
    from rich.console import Console

    def on_broken_pipe(self: Console) -> None:
        self.quiet = True
        raise BrokenPipeError

    Console.on_broken_pipe = on_broken_pipe  # type: ignore[method-assign]


# Set while stdout is redirected into -o's file (output.into): a file gets no colour, even
# where FORCE_COLOR asks the terminal for it.
TO_FILE = ContextVar("backprop_to_file", default=False)


def console() -> Any:
    """A Rich console on stdout whose closed pipe reaches `output` like any other write."""
    from rich.console import Console

    quiet_broken_pipes()
    if TO_FILE.get():
        return Console(highlight=False, force_terminal=False, no_color=True)
    return Console(highlight=False)


def print_rich(report: dict[str, Any], max_rows: int) -> None:
    """The grad report's tables, fitted to the terminal's width (COLUMNS when piped)."""
    from ..render.gradient import tables

    out = console()
    for i, renderable in enumerate(tables(report, out.width, max_rows)):
        if i:
            out.print()
        out.print(renderable)


def report_disagreement(report: dict[str, Any]) -> None:
    """Each disagreement on stderr, its two numbers in full (the table's digits may not
    show where they part)."""
    from ..render.gradient import check_lines
    from ..render.numbers import full

    for mark, line in check_lines(report):
        if mark == "✗":
            stderr(f"disagreement: {line}")
    for p in report["partials"]:
        for check, status in p["status"].items():
            if status == "mismatch":
                other = p["symbolic_value"] if check == "symbolic" else p[check]
                shown = "none" if other is None else full(other)
                stderr(
                    f"disagreement: ∂/∂{p['element']}: engine {full(p['engine'])} vs "
                    f"{check.replace('_', ' ')} {shown}"
                )
