"""`backprop explain --step`, a debugger for the backward pass: in a terminal each key press
moves one step (this is the only module that reads keys, through termios); anywhere else
every step is printed, a line each, and nothing waits for input."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..analyses.point import check_point, resolve_wrt
from ..analyses.walk import walk
from ..core.errors import BackpropError
from ..render import numbers
from ..render.step import Steps
from . import output as out
from . import terminal

NEXT = {b"\x1b[C", b"\x1bOC", b"\r", b"\n", b" ", b"n"}
BACK = {b"\x1b[D", b"\x1bOD", b"p", b"\x7f", b"\x08"}
QUIT = {b"q", b"Q", b"\x1b", b"\x03", b"\x04", b""}  # Esc, Ctrl-C, Ctrl-D, end of input
ESCAPE_WAIT = 0.05  # seconds to wait for the rest of an arrow key after its Esc
RESIZE_POLL = 0.25  # seconds between looks at the terminal's size while waiting for a key


def refuse(fmt: str, mode: str) -> None:
    """--step draws the reverse sweep in the terminal: other formats and modes are errors."""
    if fmt != "table":
        raise BackpropError(f"--step shows the table format only, not {fmt}")
    if mode != "reverse":
        raise BackpropError("--step walks the reverse sweep, not --mode forward")


def run(program: Any, point: dict[str, Any], wrt: list[str] | None, digits: int | None,
        output: str | None) -> None:  # fmt: skip
    """Step through `program` at `point`: key by key in a terminal, else printed whole."""
    graph = program.graph
    notes = [*program.warnings, *check_point(graph, point)]
    chosen = resolve_wrt(graph, wrt)
    steps = Steps(walk(graph, {name: point[name] for name in graph.variables}))
    for note in notes:
        terminal.stderr(f"warning: {note}")
    with numbers.precision(digits), out.into(output), terminal.output():
        if interactive():
            _loop(steps)
        else:
            sys.stdout.write(steps.transcript(chosen))


def interactive() -> bool:
    """Whether keys can be read: stdin and stdout are both a terminal (not Windows)."""
    if os.name != "posix" or terminal.TO_FILE.get():
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def action(key: bytes) -> str | None:
    """What a key does: 'next', 'back', 'quit' or nothing (None)."""
    if key in NEXT:
        return "next"
    if key in BACK:
        return "back"
    return "quit" if key in QUIT else None


def move(n: int, act: str | None, count: int) -> int:
    """The step after `act` at step `n` of `count` (the first and the last stay put)."""
    if act == "next":
        return min(n + 1, count)
    return max(n - 1, 1) if act == "back" else n


def _loop(steps: Steps) -> None:
    """One frame per step on the alternate screen, redrawn in place at each key."""
    from rich.live import Live

    console = terminal.console()
    fd = sys.stdin.fileno()
    n = 1
    try:
        with _keys(fd), Live(console=console, screen=True, auto_refresh=False,
                             redirect_stdout=False, redirect_stderr=False) as live:  # fmt: skip
            while True:
                size = console.size
                live.update(steps.frame(n, size.width, size.height), refresh=True)
                key = _read_key(fd, _resized(console, size))  # None: redraw at the new size
                act = None if key is None else action(key)
                if act == "quit":
                    break
                n = move(n, act, steps.count)
    except KeyboardInterrupt:  # Ctrl-C is a way out, as q is
        pass


def _resized(console: Any, size: Any) -> Callable[[], bool]:
    """Whether the terminal is no longer the size the frame was drawn at."""
    return lambda: bool(console.size != size)


@contextmanager
def _keys(fd: int) -> Iterator[None]:
    """Keys arrive one by one, unechoed; the terminal is put back however the block ends."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _read_key(fd: int, resized: Callable[[], bool]) -> bytes | None:
    """The next key (an arrow's whole escape sequence), or None when the terminal's size
    changed while waiting."""
    import select

    while not select.select([fd], [], [], RESIZE_POLL)[0]:
        if resized():
            return None
    key = os.read(fd, 1)
    if key != b"\x1b":
        return key
    while select.select([fd], [], [], ESCAPE_WAIT)[0]:
        more = os.read(fd, 1)
        key += more
        if not more or _complete(key):
            break
    return key


def _complete(key: bytes) -> bool:
    """Whether an escape sequence has ended: Esc and one other byte, or Esc [ or Esc O
    and then a final byte (a letter, or ~)."""
    if len(key) == 2:
        return key[1:] not in (b"[", b"O")
    return len(key) > 2 and 0x40 <= key[-1] <= 0x7E
