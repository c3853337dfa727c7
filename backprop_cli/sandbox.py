"""Run a function in a forked child with a wall-clock and memory budget, streaming its
results back as JSON lines, so a slow or greedy computation (SymPy on a large expression)
can be cut off without losing what it already produced.

Where fork is unavailable the function runs inline, without a budget.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

Emit = Callable[[dict[str, Any]], None]


LATE_READS = 64  # reads of what was already sent, once the deadline has passed


class Bounded:
    """A started computation; `collect` waits (up to its deadline) for what it sends."""

    def __init__(
        self,
        func: Callable[..., None],
        args: tuple[Any, ...],
        *,
        seconds: float,
        memory_mb: int,
    ) -> None:
        self.deadline = time.monotonic() + seconds
        self.messages: list[dict[str, Any]] = []
        self.status = "running"
        self.pid: int | None = None
        self.fd: int | None = None
        if not hasattr(os, "fork"):
            self._inline(func, args)
            return
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(func, args, write_fd, memory_mb)
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
        """The messages one by one as they arrive, until the child ends or the deadline."""
        if self.fd is None:
            yield from self.messages
            return
        buffer = b""
        late = 0
        try:
            while True:
                # Past the deadline, what the child has already sent is still read.
                left = max(0.0, self.deadline - time.monotonic())
                late += left == 0.0
                ready, _, _ = select.select([self.fd], [], [], left)
                if not ready or late > LATE_READS:
                    if left == 0.0:
                        self.status = "timeout"
                        break
                    continue
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line:
                        message = json.loads(line)
                        self.messages.append(message)
                        yield message
        except GeneratorExit:  # the reader stopped early: stop the child too
            self.status = "timeout"
            raise
        finally:
            self._reap()

    def collect(self) -> list[dict[str, Any]]:
        if self.fd is None:
            return self.messages
        buffer = b""
        late = 0
        try:
            while True:
                # Past the deadline, what the child has already sent is still read.
                left = max(0.0, self.deadline - time.monotonic())
                late += left == 0.0
                ready, _, _ = select.select([self.fd], [], [], left)
                if not ready or late > LATE_READS:
                    if left == 0.0:
                        self.status = "timeout"
                        break
                    continue
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                self.messages.extend(json.loads(line) for line in lines if line)
        finally:
            self._reap()
        return self.messages

    def _reap(self) -> None:
        assert self.pid is not None and self.fd is not None
        if self.status == "timeout":
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.fd = None
        if self.status != "timeout":
            if os.WIFSIGNALED(status):
                self.status = f"killed by signal {os.WTERMSIG(status)}"
            elif os.WEXITSTATUS(status) != 0:
                self.status = "error"
            else:
                self.status = "done"


def _child(func: Callable[..., None], args: tuple[Any, ...], fd: int, memory_mb: int) -> None:
    code = 0
    try:
        _limit_memory(memory_mb)
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


def _limit_memory(memory_mb: int) -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = current + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, OSError, ValueError):
        pass  # no /proc or no resource module: the wall clock still bounds the child
