"""Reading the files and streams a user names, and writing the files an option names without
ever destroying what was there.

Every output file (`--save`, `--plot`, `--graph`, `graph -o`) is written to a temporary
file in the same directory, flushed to disk, and moved over the target in one step
(`os.replace`), so a kill, a full disk or a file-size limit mid-write leaves the old file as
it was. An output that is one of the command's own input files is refused before anything
runs.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..core.errors import BackpropError, LimitError


def _mode_for(path: str) -> int:
    """The permissions the file would get from a plain open(): the old file's, else the
    umask's."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _target(path: str) -> tuple[str, bool]:
    """(the file to write, whether to replace it whole). Through a symlink, the file it
    points to is written and the link stays. A device, a FIFO or a terminal (/dev/stdout,
    /dev/null, >(cat)) is written into, never replaced; so is a file with other hard links
    (replacing it would part them) or a writable file in a folder we may not create files
    in. A folder, or a file we may not write, is an error, as for a plain open()."""
    import stat

    try:
        info = os.stat(path)  # follows links
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise BackpropError(f"cannot write {path}: {exc.strerror or exc}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise BackpropError(f"cannot write {path}: that is a folder, not a file")
    if info is not None and not stat.S_ISREG(info.st_mode):
        return path, False
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise BackpropError(f"cannot write {path}: the folder {folder!r} does not exist")
    if info is not None and not os.access(real, os.W_OK):
        raise BackpropError(f"cannot write {path}: Permission denied")
    if not os.access(folder, os.W_OK | os.X_OK):
        if info is None:
            raise BackpropError(f"cannot write {path}: Permission denied (the folder)")
        return real, False
    return real, info is None or info.st_nlink == 1


def check_target(path: str) -> None:
    """Before any work: an output we could not write is an error now, not after it."""
    _target(path)


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """A path to write `path`'s new content to: a temporary file beside it, which replaces
    it in one step on success and is removed on any failure, so `path` is either old or new,
    never half-written (see `_target` for what is written in place instead)."""
    import tempfile

    real, whole = _target(path)
    if not whole:
        try:
            yield real
        except OSError as exc:
            raise BackpropError(f"cannot write {path}: {exc.strerror or exc}") from None
        return
    try:  # a short name: the target's own may already be near the 255-byte limit
        fd, temporary = tempfile.mkstemp(
            dir=os.path.dirname(real), prefix=".backprop-", suffix=".part"
        )
    except OSError as exc:
        raise BackpropError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temporary, _mode_for(real))
        with contextlib.suppress(OSError):  # keep the old file's owner where we may
            old = os.stat(real)
            os.chown(temporary, old.st_uid, old.st_gid)
        os.replace(temporary, real)
    except OSError as exc:
        raise BackpropError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def write_atomically(path: str, data: str | bytes) -> None:
    """Write `data` to `path` through a temporary file (see `replacing`)."""
    payload = data.encode() if isinstance(data, str) else data
    with replacing(path) as temporary, open(temporary, "wb") as f:
        f.write(payload)
        f.flush()


def _identity(path: str) -> tuple[int, int] | None:
    with contextlib.suppress(OSError, ValueError):
        info = os.fstat(0) if path == "-" else os.stat(path)
        return (info.st_dev, info.st_ino)
    return None


def refuse_inputs_as_outputs(
    outputs: Sequence[tuple[str, str | None]], inputs: Sequence[tuple[str, str | None]]
) -> None:
    """Exit 2 when an output option names a file that an input option reads
    (`train --data d.csv --save d.csv`, also through a link or as stdin), or that another
    output option writes: one would destroy the other."""
    readable = [
        (what, path, found)
        for what, path in inputs
        if path is not None and (found := _identity(path)) is not None
    ]
    written: list[tuple[str, object]] = []
    for out_what, out_path in outputs:
        if out_path is None or out_path == "-":
            continue
        target = _identity(out_path) or os.path.realpath(out_path)
        for in_what, in_path, source in readable:
            if target == source:
                where = "stdin" if in_path == "-" else in_path
                raise BackpropError(
                    f"{out_what} {out_path} is the file {in_what} reads ({where}); "
                    "writing it would destroy the input",
                    hint="choose another output file",
                )
        for other_what, other in written:
            if target == other:
                raise BackpropError(
                    f"{out_what} and {other_what} both write {out_path}; one would destroy "
                    "the other",
                    hint=f"give {out_what} another file",
                )
        written.append((out_what, target))


def end_with_parent(parent: int) -> None:
    """Called in a child process: Linux kills it (SIGKILL) when its parent dies, however
    the parent dies (SIGKILL included); if the parent is already gone, end now."""
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def die_with_parent() -> Callable[[], None]:
    """A preexec function for a child program (Graphviz's dot): see `end_with_parent`. What
    it needs is imported here, before the fork, never in the child."""
    import ctypes  # noqa: F401
    import signal  # noqa: F401

    parent = os.getpid()
    return lambda: end_with_parent(parent)


def open_text(path: str, what: str) -> Any:
    """A file or stdin ('-') as UTF-8 text to read line by line; bytes that are not UTF-8
    become U+FFFD (so the row they are in is reported, not the whole run lost)."""
    import io

    try:
        raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise BackpropError(f"cannot read {what}: {exc.strerror or exc}") from None
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
    if path == "-":
        stream.close = lambda: None  # type: ignore[method-assign]  # leave stdin open
    return stream


def read_text(path: str, what: str, limit: int) -> str:
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
    too_long = LimitError(
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
