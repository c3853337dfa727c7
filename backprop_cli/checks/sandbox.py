"""Run a function in a forked child with a wall-clock and memory budget, streaming its
results back as JSON lines, so a slow or greedy computation (SymPy on a large expression)
can be cut off without losing what it already produced.

A command that starts several children (`grad --order 2`) gives them one `Deadline`: the
budget is the command's, not each child's. Where fork is unavailable the function runs
inline, without a budget.
"""

from __future__ import annotations

import json
import math
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

from ..io.files import end_with_parent

Emit = Callable[[dict[str, Any]], None]


LATE_READS = 64  # reads of what was already sent, once the deadline has passed
CPU_SLACK = 5  # CPU seconds past the budget before the kernel stops a child (SIGXCPU)
# Deaths that mean a limit ran out, not that the computation failed: SIGXCPU at the CPU-time
# limit, SIGKILL at its hard limit (or the kernel's out-of-memory killer). The parent's own
# kill at the deadline is recorded as a timeout before it is sent.
_BUDGET_SIGNALS = {
    s for s in (getattr(signal, "SIGXCPU", None), getattr(signal, "SIGKILL", None)) if s
}

# A child started early (see `prestart`): (pid, where its job goes, where its results come).
_spare: tuple[int, int, int] | None = None


def prestart() -> None:
    """Fork the child for the next Bounded now, early: it imports SymPy while the parent
    starts up and works, then waits for its job. What the parent has imported by then
    (numpy and the core, which both need) the child has without importing it again.
    Unused, it ends when the parent does (its job pipe closes)."""
    global _spare
    if _spare is not None or not hasattr(os, "fork"):
        return
    job_r, job_w = os.pipe()
    result_r, result_w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        end_with_parent(parent)
        os.close(job_w)
        os.close(result_r)
        _spare_child(job_r, result_w)
    os.close(job_r)
    os.close(result_w)
    _spare = (pid, job_w, result_r)


def spare_waiting() -> bool:
    """Whether a child started early waits for a job: a computation handed to it costs no
    import of SymPy here, nor a fresh child's."""
    return _spare is not None


def _take_spare() -> tuple[int, int, int] | None:
    global _spare
    spare, _spare = _spare, None
    return spare


def _hand_over(
    spare: tuple[int, int, int],
    func: Callable[..., None],
    args: tuple[Any, ...],
    memory_mb: int,
    seconds: float,
) -> bool:
    """Send the job to the waiting child (from a thread: a large job must not wait for the
    child to finish its imports); False if it cannot be sent or the child is gone."""
    import threading

    pid, job_w, result_r = spare
    try:
        gone = os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        gone = True
    try:
        if gone:
            raise ChildProcessError
        data = _job_bytes((func, args, memory_mb, seconds))
    except Exception:
        os.close(job_w)
        os.close(result_r)
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        with suppress(OSError):
            os.waitpid(pid, 0)
        return False

    def send() -> None:
        with suppress(OSError):
            view = memoryview(data)
            while view:
                view = view[os.write(job_w, view) :]
        with suppress(OSError):
            os.close(job_w)

    threading.Thread(target=send, daemon=True).start()
    return True


def _job_bytes(job: tuple[Any, ...]) -> bytes:
    """The job pickled for the child started early. A graph goes without the facts it has
    cached (a compiled plan may hold functions made on the fly, which do not pickle): the
    child works out again the few it needs."""
    import copyreg
    import io
    import pickle

    from ..core.graph import Graph

    def graph_alone(graph: Graph) -> tuple[Any, ...]:
        return Graph, (graph.nodes, graph.output, graph.source, graph.variables)

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {**copyreg.dispatch_table, Graph: graph_alone}
    pickler.dump(job)
    return buffer.getvalue()


def _spare_child(job_r: int, result_w: int) -> None:
    try:
        quiet = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # hold no terminal or pipe of the parent's open
            os.dup2(quiet, fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            from . import symbolic

            symbolic.preload()  # the slow imports, done while the parent starts up
        except Exception:
            pass
        chunks = []
        while True:
            chunk = os.read(job_r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            os._exit(0)
        import pickle

        func, args, memory_mb, seconds = pickle.loads(b"".join(chunks))
    except BaseException:
        os._exit(1)
    _child(func, args, result_w, memory_mb, seconds)


class Deadline:
    """One wall-clock budget shared by the children of a command. Its clock starts with the
    first child, so time spent before SymPy starts is not charged to it; each later child
    gets only what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at: float | None = None  # the monotonic time it runs out, once started

    def start(self) -> float:
        if self.at is None:
            self.at = time.monotonic() + self.seconds
        return self.at

    def left(self) -> float:
        if self.at is None:
            return self.seconds
        return max(0.0, self.at - time.monotonic())


class Bounded:
    """A started computation; `collect` waits (up to its deadline) for what it sends.
    `status` ends as "done", "timeout" (a budget ran out) or "error" (with an error
    message)."""

    def __init__(
        self,
        func: Callable[..., None],
        args: tuple[Any, ...],
        *,
        seconds: float | None = None,
        memory_mb: int,
        deadline: Deadline | None = None,
    ) -> None:
        if deadline is None:
            assert seconds is not None, "a Bounded needs seconds or a deadline"
            deadline = Deadline(seconds)
        self.deadline = deadline.start()
        seconds = deadline.left()
        self.messages: list[dict[str, Any]] = []
        self.status = "running"
        self.pid: int | None = None
        self.fd: int | None = None
        if seconds <= 0.0:  # the command's budget is already spent: start nothing
            self.status = "timeout"
            return
        if not hasattr(os, "fork"):
            self._inline(func, args)
            return
        spare = _take_spare()
        if spare is not None and _hand_over(spare, func, args, memory_mb, seconds):
            self.pid, self.fd = spare[0], spare[2]
            return
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            end_with_parent(parent)
            os.close(read_fd)
            _child(func, args, write_fd, memory_mb, seconds)
        os.close(write_fd)
        self.pid, self.fd = pid, read_fd

    def _inline(self, func: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            func(*args, emit=self.messages.append)
            self.status = "done"
        except Exception as exc:
            self.messages.append({"error": f"{type(exc).__name__}: {exc}"[:500]})
            self.status = "error"

    def stream(self) -> Iterator[dict[str, Any]]:
        """The messages one by one as they arrive, until the child ends or the deadline;
        a child that died of something other than a budget ends with an error message."""
        if self.fd is None:
            yield from self.messages
            return
        try:
            yield from self._read()
        except BaseException:  # the reader stopped early, or Ctrl-C: stop the child too
            self.status = "timeout"
            self._reap()
            raise
        note = self._reap()
        if note is not None:
            yield note

    def _read(self) -> Iterator[dict[str, Any]]:
        assert self.fd is not None
        buffer = b""
        late = 0
        while True:
            # Past the deadline, what the child has already sent is still read.
            left = max(0.0, self.deadline - time.monotonic())
            late += left == 0.0
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready or late > LATE_READS:
                if left == 0.0:
                    self.status = "timeout"
                    return
                continue
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line:
                    message = json.loads(line)
                    self.messages.append(message)
                    yield message

    def collect(self) -> list[dict[str, Any]]:
        """Everything the child sends, until it ends or the deadline."""
        for _ in self.stream():
            pass
        return self.messages

    def _reap(self) -> dict[str, Any] | None:
        """Wait for the child; how it ended, and the error message that says why, if it
        failed without sending one."""
        assert self.pid is not None and self.fd is not None
        if self.status == "timeout":
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.fd = None
        if self.status == "timeout":
            return None
        self.status, note = _ending(status, self.messages)
        if note is not None:
            self.messages.append(note)
        return note


def _ending(status: int, messages: list[dict[str, Any]]) -> tuple[str, dict[str, Any] | None]:
    """A child's wait status as "done", "timeout" or "error", with an error message where
    the child sent none. The parent reads the pipe to its end before waiting, so a child
    that a limit killed around the deadline is a timeout, never a failure."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        if number in _BUDGET_SIGNALS:
            return "timeout", None
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return "error", {"error": f"the child process was killed by {name}"}
    code = os.WEXITSTATUS(status)
    if code == 0:
        return "done", None
    if any("error" in m for m in messages):
        return "error", None
    return "error", {"error": f"the child process ended with exit status {code}"}


def _child(
    func: Callable[..., None], args: tuple[Any, ...], fd: int, memory_mb: int, seconds: float
) -> None:
    code = 0
    try:
        _quiet()
        _limit_memory(memory_mb)
        _limit_cpu(seconds)  # ends the child even if its parent died and cannot kill it
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        out = os.fdopen(fd, "w")

        def emit(message: dict[str, Any]) -> None:
            out.write(json.dumps(message) + "\n")
            out.flush()

        try:
            func(*args, emit=emit)
        except BaseException as exc:  # report anything, including MemoryError
            code = 1
            emit({"error": f"{type(exc).__name__}: {exc}"[:500]})
    finally:
        os._exit(code)


def _quiet() -> None:
    """Hold none of the parent's terminal or pipes (a reader of our stdout must not wait)."""
    with suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)


def _limit_cpu(seconds: float) -> None:
    """The CPU-time limit counts from the process's start, so what a child started early
    spent on its imports is added: the budget itself is all the job's."""
    with suppress(ImportError, OSError, ValueError):
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime + seconds) + CPU_SLACK
        hard = soft + CPU_SLACK  # SIGKILL, should SIGXCPU not end it
        _, given = resource.getrlimit(resource.RLIMIT_CPU)
        if given != resource.RLIM_INFINITY:  # a process may not raise its hard limit
            soft, hard = min(soft, given), min(hard, given)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _limit_memory(memory_mb: int) -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # no /proc or no resource module: the wall clock still bounds the child
