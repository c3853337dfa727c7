"""Writing the files an option names without ever destroying what was there.

Every output file (`--save`, `--plot`, `--graph`, `graph -o`) is written to a temporary
file in the same directory, flushed to disk, and moved over the target in one step
(`os.replace`), so a kill, a full disk or a file-size limit mid-write leaves the old file as
it was. An output that is one of the command's own input files is refused before anything
runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

from .errors import BackpropError


def _mode_for(path: str) -> int:
    """The permissions the file would get from a plain open(): the old file's, else the
    umask's."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """A temporary path beside `path` to write; on success it replaces `path` atomically,
    on any failure it is removed and `path` is untouched."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{base}.", suffix=".part")
    except OSError as exc:
        raise BackpropError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
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


def refuse_inputs_as_outputs(
    outputs: Sequence[tuple[str, str | None]], inputs: Sequence[tuple[str, str | None]]
) -> None:
    """Exit 2 when an output option names a file that an input option reads
    (`train --data d.csv --save d.csv`): it would be overwritten."""
    readable = []
    for what, path in inputs:
        if path is None or path == "-":
            continue
        with contextlib.suppress(OSError):
            readable.append((what, path, os.stat(path)))
    for out_what, out_path in outputs:
        if out_path is None or out_path == "-":
            continue
        try:
            target = os.stat(out_path)
        except OSError:
            continue
        for in_what, in_path, source in readable:
            if (target.st_dev, target.st_ino) == (source.st_dev, source.st_ino):
                raise BackpropError(
                    f"{out_what} {out_path} is the file {in_what} reads ({in_path}); "
                    "writing it would destroy the input",
                    hint="choose another output file",
                )


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
    """A preexec function for a child program (Graphviz's dot): see `end_with_parent`."""
    parent = os.getpid()
    return lambda: end_with_parent(parent)
