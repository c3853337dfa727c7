"""`backprop explain --step`, a debugger for the backward pass: in a terminal each key press
moves one step (this is the only module that reads keys, through termios); anywhere else
every step is printed, a line each, and nothing waits for input."""

from __future__ import annotations

import os
import sys
from contextlib import suppress
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
READ_MOST = 65_536  # bytes read at once: the keys already typed, applied before a redraw
ENDS = ("SIGTERM", "SIGHUP", "SIGQUIT")  # each ends the stepper as q does, exit 128 + its number


def refuse(fmt: str, mode: str) -> None:
    """--step draws the reverse sweep in the terminal: other formats and modes are errors."""
    if fmt != "table":
        raise BackpropError(f"--step shows the table format only, not {fmt}")
    if mode != "reverse":
        raise BackpropError("--step walks the reverse sweep, not --mode forward")


def run(program: Any, point: dict[str, Any], wrt: list[str] | None, digits: int | None,
        output: str | None) -> None:  # fmt: skip
    """Step through `program` at `point`: key by key in a terminal, else printed whole.
    The warnings `backprop explain` gives go to stderr first (and into the frame)."""
    graph = program.graph
    notes = [*program.warnings, *check_point(graph, point)]
    chosen = resolve_wrt(graph, wrt)
    data = walk(graph, {name: point[name] for name in graph.variables}, paths=False)
    notes += warnings(graph, data)
    steps = Steps(data, notes)
    for note in notes:
        terminal.stderr(f"warning: {note}")
    with numbers.precision(digits), out.into(output), terminal.output():
        console = terminal.console()
        if interactive(console):
            _Stepper(steps, console).run()
        else:
            sys.stdout.write(steps.transcript(chosen))


def warnings(graph: Any, data: dict[str, Any]) -> list[str]:
    """The walk's warnings as `backprop explain` words them: each node's domain or gradient
    problem, then each kink (a graph of numbers only, as explain's)."""
    found = [f"node {issue['node']}: {issue['message']}" for issue in data["issues"]]
    if not data["arrays"]:
        found += [
            f"node {k} ({graph.nodes[k].op}) is on its kink: torch's subgradient is used"
            for k in data["kinks"]
        ]
    return found


def interactive(console: Any = None) -> bool:
    """Whether keys can be read and a screen drawn: stdin and stdout are both a terminal
    (not Windows), and Rich takes the console for an interactive one that understands
    escape sequences (not TERM=dumb or unknown, TTY_COMPATIBLE=0 or TTY_INTERACTIVE=0)."""
    if os.name != "posix" or terminal.TO_FILE.get():
        return False
    try:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return False
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False
    console = console if console is not None else terminal.console()
    return bool(console.is_terminal and not console.is_dumb_terminal and console.is_interactive)


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


def split(data: bytes) -> list[bytes]:
    """The keys in the bytes read: an arrow's escape sequence (Esc [ or Esc O, then up to
    a final byte) is one key; an Esc followed by anything else is Esc, then that key."""
    keys: list[bytes] = []
    i = 0
    while i < len(data):
        if data[i : i + 1] != b"\x1b" or data[i + 1 : i + 2] not in (b"[", b"O"):
            keys.append(data[i : i + 1])
            i += 1
            continue
        j = i + 2
        while j < len(data) and not 0x40 <= data[j] <= 0x7E:
            j += 1
        keys.append(data[i : j + 1])
        i = j + 1
    return keys


def unfinished(data: bytes) -> bool:
    """Whether the bytes end inside an escape sequence (an Esc, or Esc [ or Esc O without
    its final byte): the rest of an arrow key may be on its way."""
    at = data.rfind(b"\x1b")
    if at < 0:
        return False
    last = split(data[at:])[0]
    if last == b"\x1b":
        return at == len(data) - 1
    return len(last) == 2 or not 0x40 <= last[-1] <= 0x7E


class _Gone(Exception):
    """The terminal went away (hung up): the stepper ends as if q was pressed."""


class _Stepper:
    """One frame per step on the alternate screen, redrawn in place when the step or the
    terminal's size changes. The terminal is put back however it ends: q, Esc, Ctrl-C,
    Ctrl-D, SIGTERM, SIGHUP, SIGQUIT or a hang-up; Ctrl-Z puts it back before stopping and
    takes it again on `fg`."""

    def __init__(self, steps: Steps, console: Any) -> None:
        self.steps, self.console = steps, console
        self.keys, self.screen = sys.stdin.fileno(), sys.stdout.fileno()
        self.n = 1
        self.drawn: tuple[int, int, int] | None = None  # the step and size on the screen
        self.saved: Any = None  # the terminal's settings before cbreak mode
        self.signals: list[int] = []  # SIGTSTP, SIGCONT, SIGWINCH: acted on in the loop
        self.closing = False
        self.gone = False  # the terminal hung up: nothing more is written to it
        self.ended: int | None = None  # a SIGTERM (...) that came while putting it back
        self.previous: dict[int, Any] = {}
        self.wake_read, self.wake_write = os.pipe()  # a signal's handler wakes the loop
        for fd in (self.wake_read, self.wake_write):
            os.set_blocking(fd, False)

    def run(self) -> None:
        import termios

        try:
            self._handle()
            self.saved = termios.tcgetattr(self.keys)
            try:
                self._take()
                self._draw()
                self._loop()
            except KeyboardInterrupt:  # Ctrl-C is a way out, as q is
                pass
            except _Gone:
                self.gone = True
            finally:
                self.closing = True
                self._give_back()
        finally:
            self._unhandle()
            os.close(self.wake_read)
            os.close(self.wake_write)
        if self.ended is not None:
            raise SystemExit(128 + self.ended)

    def _loop(self) -> None:
        while True:
            for key in split(self._read()):
                act = action(key)
                if act == "quit":
                    return
                self.n = move(self.n, act, self.steps.count)
            self._on_signals()
            self._draw()

    # ---- the terminal ---------------------------------------------------------------

    def _take(self) -> None:
        """Keys one by one, unechoed; the alternate screen, the cursor hidden."""
        import termios
        import tty

        try:
            tty.setcbreak(self.keys)
            self.console.set_alt_screen(True)
            self.console.show_cursor(False)
        except (termios.error, OSError):  # EIO: the terminal hung up
            raise _Gone from None
        self.drawn = None

    def _give_back(self) -> None:
        """The terminal as it was; a terminal that hung up is left alone, and what is
        still to be written to it goes nowhere."""
        import termios

        with suppress(termios.error, OSError):
            termios.tcsetattr(self.keys, termios.TCSADRAIN, self.saved)
        try:
            if not self.gone:
                self.console.show_cursor(True)
                self.console.set_alt_screen(False)
        except (OSError, ValueError):
            self.gone = True
        if self.gone:
            with suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.screen)

    def size(self) -> tuple[int, int]:
        """The terminal's size, from the terminal itself (an exported COLUMNS or LINES
        is not its size)."""
        try:
            columns, lines = os.get_terminal_size(self.screen)
        except OSError:
            columns = lines = 0
        if columns <= 0 or lines <= 0:
            fallback = self.console.size
            return fallback.width or 80, fallback.height or 24
        return columns, lines

    def _draw(self) -> None:
        """The frame of the current step, unless it is on the screen at this size."""
        from rich.control import Control
        from rich.screen import Screen

        width, height = self.size()
        if self.drawn == (self.n, width, height):
            return
        self.console.size = (width, height)
        frame = self.steps.frame(self.n, width, height)
        try:
            with self.console:  # one write
                self.console.control(Control.home())
                self.console.print(Screen(frame), end="")
        except OSError:  # EIO: the terminal hung up
            raise _Gone from None
        self.drawn = (self.n, width, height)

    def _read(self) -> bytes:
        """Every key typed so far, waiting for the first (and for the rest of an arrow
        key): b"" when the size changed or a signal came first. _Gone where the terminal
        is at its end (hung up, or the end of input)."""
        import select

        while True:
            ready = select.select([self.keys, self.wake_read], [], [], RESIZE_POLL)[0]
            if self.wake_read in ready:
                with suppress(OSError):
                    os.read(self.wake_read, 4096)
            if self.keys in ready:
                break
            if self.signals or self.drawn is None or self.drawn[1:] != self.size():
                return b""
        data = self._take_bytes(0)
        while len(data) < READ_MOST and select.select([self.keys], [], [], 0)[0]:
            data += self._take_bytes(len(data))
        while unfinished(data) and select.select([self.keys], [], [], ESCAPE_WAIT)[0]:
            data += self._take_bytes(len(data))
        return data

    def _take_bytes(self, have: int) -> bytes:
        try:
            data = os.read(self.keys, max(1, READ_MOST - have))
        except OSError:  # EIO: the terminal hung up
            raise _Gone from None
        if not data:  # the end of input
            raise _Gone
        return data

    # ---- signals --------------------------------------------------------------------

    def _handle(self) -> None:
        """Handlers for the loop's time: Ctrl-Z and `fg`, a resize, and the signals that
        end a program (each ends this one as q does). A signal that was ignored (nohup)
        stays ignored."""
        import signal

        def later(signum: int, _: Any) -> None:
            self.signals.append(signum)
            with suppress(OSError):
                os.write(self.wake_write, b"!")

        def end(signum: int, _: Any) -> None:
            if self.closing:
                self.ended = self.ended or signum
                return
            raise SystemExit(128 + signum)

        wanted = {"SIGTSTP": later, "SIGCONT": later, "SIGWINCH": later}
        wanted.update(dict.fromkeys(ENDS, end))
        for name, handler in wanted.items():
            number = getattr(signal, name, None)
            if number is None or signal.getsignal(number) == signal.SIG_IGN:
                continue
            self.previous[number] = signal.signal(number, handler)

    def _unhandle(self) -> None:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        self.previous.clear()

    def _on_signals(self) -> None:
        """Ctrl-Z: the terminal put back, then stopped as any program is; on `fg` the
        screen is taken again and redrawn. A resize or SIGCONT: redrawn."""
        import signal

        came, self.signals[:] = list(self.signals), []
        if signal.SIGTSTP in came:
            self._give_back()
            handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
            try:
                os.kill(os.getpid(), signal.SIGTSTP)  # stops here until `fg`
            finally:
                signal.signal(signal.SIGTSTP, handler)
            self.signals[:] = [s for s in self.signals if s != signal.SIGCONT]
        if signal.SIGTSTP in came or signal.SIGCONT in came:  # a shell may have reset it
            self._take()
