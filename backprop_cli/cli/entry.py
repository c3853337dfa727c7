"""The `backprop` command's entry point: the common command lines start without typer.

typer's import, with pydantic's, costs about as much as numpy's, so a plain `grad`, `ops`,
`graph`, `explain` or `train` (only the command's own options, NAME=VALUE values, the
expression) is read here and handed to the same function the typer command calls; the
help is written from the user's cache once typer has drawn it, and --version needs
nothing. Anything else (`--`, an unknown or malformed option, a value that is not one of
the choices, any other command) goes to typer as usual, which gives its usual messages.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import suppress
from typing import Any

_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)

# option -> (GradArgs field, the value it sets; None: it takes the next argument)
_FLAGS: dict[str, tuple[str, Any]] = {
    "--torch": ("torch_check", True),
    "--no-torch": ("torch_check", False),
    "--symbolic": ("symbolic", True),
    "--no-symbolic": ("symbolic", False),
    "--simplify": ("simplify", True),
    "--no-simplify": ("simplify", False),
    "--latex": ("latex", True),
    "--check": ("check_points", True),
    "--expand": ("expand", True),
    "--file": ("file", None),
    "--values": ("values_file", None),
    "--wrt": ("wrt", None),
    "--seed-grad": ("seed_grad", None),
    "--order": ("order", None),
    "--format": ("fmt", None),
    "--points": ("points_file", None),
    "--on-error": ("on_error", None),
    "--dtype": ("dtype", None),
    "--device": ("device", None),
    "--symbolic-timeout": ("symbolic_timeout", None),
    "--graph": ("picture_file", None),
    "--max-rows": ("max_rows", None),
    "--max-length": ("max_length", None),
    "--allow-nonfinite": ("allow_nonfinite", True),
    "--loss": ("loss", None),
    "--form": ("form", None),
    "--seed": ("seed", None),
    "--init": ("init", None),
    "--show-program": ("show_program", True),
    "--output": ("output", None),
    "-o": ("output", None),
    "--digits": ("digits", None),
    "--dpi": ("dpi", None),
}
_CHOICES = {
    "fmt": (  # grad_run.FORMATS
        "table",
        "json",
        "csv",
        "markdown",
        "tsv",
        "jsonl",
        "html",
        "dot",
        "mermaid",
        "svg",
        "png",
        "pdf",
        "latex",
        "parquet",
        "arrow",
    ),
    "on_error": ("stop", "skip"),
    "dtype": ("float64", "float32"),
    "form": ("named", "matrix"),
}
_NUMBERS: dict[str, tuple[type, float, float]] = {
    "order": (int, 1, 2),
    "max_rows": (int, 0, float("inf")),
    "max_length": (int, 1, 100_000_000),
    "symbolic_timeout": (float, 0.1, 3600),
    "seed": (int, 0, 2**63 - 1),
    "digits": (int, 0, 17),
    "dpi": (int, 24, 600),
}


def quick_grad_args(argv: list[str]) -> dict[str, Any] | None:
    """GradArgs fields for a plain `grad` argument list, or None to let typer read it."""
    fields: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("-") and token != "-":
            name, eq, inline = token.partition("=")
            if name not in _FLAGS or (eq and not name.startswith("--")):
                return None  # --help, --, -x*y, a typo, -o=FILE: typer knows what to say
            field, constant = _FLAGS[name]
            if field in fields:
                return None  # given twice
            if constant is not None:
                if eq:
                    return None
                fields[field] = constant
            else:
                if eq:
                    value = inline
                elif i + 1 < len(argv):
                    i += 1
                    value = argv[i]
                else:
                    return None
                parsed = _value(field, value)
                if parsed is None:
                    return None
                fields[field] = parsed
        else:
            positional.append(token)
        i += 1
    if not positional:
        return None
    fields["given"] = frozenset(fields)
    fields["expression"], fields["values"] = positional[0], positional[1:]
    return fields


def _value(field: str, text: str) -> Any:
    if field in _CHOICES:
        return text if text in _CHOICES[field] else None
    if field in _NUMBERS:
        kind, low, high = _NUMBERS[field]
        pattern = _INTEGER if kind is int else _DECIMAL
        if not pattern.fullmatch(text):  # ASCII only, as typer reads numbers
            return None
        number = kind(text)
        return number if low <= number <= high else None
    return text


# The quick paths of ops, graph, explain and train: each command's positional arguments,
# and the options it reads without typer: option -> (parameter, kind), where kind is a
# flag's value (True, False), str (any text), a number (int or float, lowest, highest) or
# the name of the Enum (in the command's module or in common) that the value must be.
_OUTPUT = {"--output": ("output", str), "-o": ("output", str)}
_DIGITS = {"--digits": ("digits", (int, 0, 17))}
_PROGRAM = {
    "--file": ("file", str),
    "--values": ("values_file", str),
    "--max-length": ("max_length", (int, 1, 100_000_000)),
    "--allow-nonfinite": ("allow_nonfinite", True),
    "--loss": ("loss", str),
    "--form": ("form", "Form"),
    "--seed": ("seed", (int, 0, 2**63 - 1)),
    "--init": ("init", str),
    "--show-program": ("show_program", True),
}
_NO_MAX = float("inf")
_QUICK: dict[str, tuple[tuple[str, ...], dict[str, tuple[str, Any]]]] = {
    "ops": ((), {"--format": ("fmt", "OpsFormat"), **_OUTPUT}),
    "graph": (
        ("expression", "values"),
        {
            **_PROGRAM,
            "--format": ("fmt", "GraphFormat"),
            **_OUTPUT,
            **_DIGITS,
            "--rankdir": ("rankdir", "Rankdir"),
            "--max-nodes": ("max_nodes", (int, 0, _NO_MAX)),
            "--collapse": ("collapse", True),
            "--no-collapse": ("collapse", False),
            "--edge-labels": ("edge_labels", True),
            "--no-edge-labels": ("edge_labels", False),
            "--legend": ("legend", True),
            "--no-legend": ("legend", False),
            "--dpi": ("dpi", (int, 24, 600)),
        },
    ),
    "explain": (
        ("expression", "values"),
        {
            **_PROGRAM,
            "--wrt": ("wrt", str),
            "--mode": ("mode", "Mode"),
            "--format": ("fmt", "ExplainFormat"),
            **_OUTPUT,
            **_DIGITS,
            "--step": ("step", True),
        },
    ),
    "train": (
        ("model",),
        {
            "--list": ("list_models", True),
            "--x": ("x", str),
            "--y": ("y", str),
            "--data": ("data_file", str),
            "--target": ("target", str),
            "--loss": ("loss", str),
            "--optimizer": ("optimizer", "Optim"),
            "--lr": ("lr", (float, 0.0, _NO_MAX)),
            "--epochs": ("epochs", (int, 0, 100_000_000)),
            "--batch-size": ("batch_size", (int, 0, _NO_MAX)),
            "--shuffle": ("shuffle", True),
            "--seed": ("seed", (int, 0, 2**63 - 1)),
            "--init": ("init", str),
            "--hidden": ("hidden", (int, 1, 10_000)),
            "--engine": ("engine_name", "Engine"),
            "--device": ("device", str),
            "--check": ("check", True),
            "--dtype": ("dtype", "DType"),
            "--log-every": ("log_every", (int, 1, _NO_MAX)),
            "--verbose": ("verbose", True),
            "--predict": ("predict_at", str),
            "--plot": ("plot", str),
            "--save": ("save", str),
            "--format": ("fmt", "TrainFormat"),
            **_OUTPUT,
            **_DIGITS,
            "--form": ("form", "Form"),
            "--show-program": ("show_program", True),
            "--max-data": ("max_data", (int, 1, _NO_MAX)),
            "--max-params": ("max_params", (int, 1, _NO_MAX)),
            "--max-step-elements": ("max_step_elements", (int, 1, _NO_MAX)),
        },
    ),
}


def quick_args(command: str, argv: list[str]) -> dict[str, Any] | None:
    """The keyword arguments of a plain `ops`, `graph`, `explain` or `train` command line
    (options as text, Enum names left for `_quick` to resolve), or None for typer."""
    positions, options = _QUICK[command]
    fields: dict[str, Any] = {}
    positional: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token.startswith("-") and token != "-":
            name, eq, inline = token.partition("=")
            if name not in options or (eq and not name.startswith("--")):
                return None
            field, kind = options[name]
            if field in fields:
                return None
            if isinstance(kind, bool):
                if eq:
                    return None
                fields[field] = kind
                i += 1
                continue
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                return None
            if isinstance(kind, tuple):
                value = _number(value, *kind)
                if value is None:
                    return None
            fields[field] = value
        else:
            positional.append(token)
        i += 1
    if positions == ("expression", "values"):
        fields["expression"] = positional[0] if positional else None
        fields["values"] = positional[1:] or None
    elif len(positional) > len(positions):
        return None  # typer says what is extra
    else:
        fields.update(zip(positions, positional, strict=False))
    return fields


def _number(text: str, kind: type, low: float, high: float) -> Any:
    pattern = _INTEGER if kind is int else _DECIMAL
    if not pattern.fullmatch(text):  # ASCII only, as typer reads numbers
        return None
    number = kind(text)
    return number if low <= number <= high else None


def main() -> None:
    from .terminal import check_streams

    problem = check_streams()
    if problem is not None:
        sys.exit(problem)
    argv = sys.argv[1:]
    if "_BACKPROP_COMPLETE" not in os.environ:  # completion: typer
        code = _without_typer(argv)
        if code is not None:
            sys.exit(code)
    from .app import main as typer_main

    typer_main()


def _without_typer(argv: list[str]) -> int | None:
    """The exit code of a command line run without typer; None: typer's to run."""
    if argv == ["--version"]:
        from .. import __version__

        print(f"backprop-cli {__version__}")
        return 0
    topic = _help_topic(argv)
    if topic is not None:
        return _help(argv, topic)
    if argv[:1] == ["grad"]:
        fields = quick_grad_args(argv[1:])
        if fields is None:
            return None
        if fields.get("symbolic", True) and fields.get("points_file") is None:
            from ..checks import sandbox, symbolic

            sandbox.prestart()  # SymPy's child imports it while we start up
        from .grad_run import GradArgs, run

        return _guarded(lambda: run(GradArgs(**fields)))
    if argv[:1] and argv[0] in _QUICK:
        fields = quick_args(argv[0], argv[1:])
        if fields is None:
            return None
        if argv[0] == "explain" and _explain_formulas_in_child(fields):
            from ..checks import sandbox, symbolic  # noqa: F401 - numpy, ops: for both

            sandbox.prestart()  # SymPy's local derivatives: its child imports it meanwhile
        return _quick(argv[0], fields)
    return None


# explain's formats that show SymPy's local derivatives without SymPy in this process
# (markdown and latex name the symbols with SymPy's LaTeX, html's page works out its own).
_EXPLAIN_CHILD_FORMATS = frozenset({"table", "json", "jsonl", "csv", "tsv"})


def _explain_formulas_in_child(fields: dict[str, Any]) -> bool:
    """Whether this explain shows SymPy's formulas and needs SymPy nowhere else: not
    --step (the stepper shows numbers) nor --show-program (it prints the program)."""
    if fields.get("step") or fields.get("show_program"):
        return False
    fmt, output = fields.get("fmt"), fields.get("output")
    if fmt is None and output is not None and output != "-":
        from .output import from_extension

        fmt = from_extension(output)
    return (fmt or "table") in _EXPLAIN_CHILD_FORMATS


def _quick(command: str, fields: dict[str, Any]) -> int | None:
    """Run the command's function as typer would, with the same last-resort handling as
    the typer path; None (before any work) when a value is not one of its choices."""
    import importlib

    module = importlib.import_module(f"{__package__}.{command}")
    options = _QUICK[command][1]
    kinds = {field: kind for field, kind in options.values() if isinstance(kind, str)}
    try:
        for field, kind in kinds.items():
            if field in fields:
                choices = getattr(module, kind, None)
                if choices is None:
                    from . import common

                    choices = getattr(common, kind)
                fields[field] = choices(fields[field])
    except ValueError:
        return None  # typer says which values there are
    return _guarded(lambda: getattr(module, command)(**fields) or 0)


def _guarded(work: Any) -> int:
    """A quick path's work, ended as the typer path ends it: an error a user can cause
    is its one-line message and exit code, a bug is exit 3 with a pointer to the
    traceback."""
    from ..core.errors import BackpropError
    from .terminal import EXIT_INTERNAL, encoding_error, error_lines, stderr

    try:
        return int(work())
    except BackpropError as exc:
        error_lines(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        stderr("aborted")
        return 130
    except BrokenPipeError:
        with suppress(OSError, ValueError):  # | head: end quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UnicodeEncodeError as exc:
        error_lines(encoding_error(exc))
        return 2
    except Exception as exc:
        if os.environ.get("BACKPROP_DEBUG"):
            raise
        stderr(f"internal error: {type(exc).__name__}: {exc}")
        stderr("this is a bug in backprop-cli; BACKPROP_DEBUG=1 shows the traceback")
        return EXIT_INTERNAL


# Help: typer and Rich take several times Python's own start-up to draw it, and what they
# draw depends only on the code, the command line, the environment and the terminal; so
# the text is kept in the user's cache under a digest of all of these, and written as it
# is while the digest is the same. Another digest draws it anew (and keeps the new text).
_VOLATILE = frozenset({"_", "PWD", "OLDPWD", "SHLVL"})  # the shell's, not Rich's
_HELP_NAME = re.compile(r"[a-z]+", re.ASCII)


def _help_topic(argv: list[str]) -> str | None:
    """The cache file of `backprop [--help|-h]` and `backprop COMMAND --help|-h`."""
    if argv in ([], ["--help"], ["-h"]):
        return "help"
    if len(argv) == 2 and argv[1] in ("--help", "-h") and _HELP_NAME.fullmatch(argv[0]):
        return f"help-{argv[0]}"
    return None


def _help(argv: list[str], topic: str) -> int:
    """The help, from the cache when its key is this run's, else drawn by typer."""
    from .terminal import output

    path, key = _help_file(topic), _help_key(argv)
    text = None
    if path is not None:
        with suppress(OSError, UnicodeError):
            with open(path, encoding="utf-8", newline="") as stream:
                kept = stream.read()
            if kept.startswith(key + "\n"):
                text = kept[len(key) + 1 :]
    if text is None:
        text = _drawn_help()
        if text is None or path is None:
            return 0
        with suppress(OSError):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.{os.getpid()}"
            with open(temporary, "w", encoding="utf-8", newline="") as stream:
                stream.write(key + "\n" + text)
            os.replace(temporary, path)
        return 0
    return _guarded(lambda: _write_help(text, output))


def _write_help(text: str, output: Any) -> int:
    with output():
        sys.stdout.write(text)
    return 0


def _help_file(topic: str) -> str | None:
    home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(home):
        return None
    return os.path.join(home, "backprop-cli", topic)


def _help_key(argv: list[str]) -> str:
    """A digest of what the help's text depends on: the code that draws it (each file's
    size and time), the command line, the environment and the terminal's streams."""
    import importlib.util

    parts = [sys.version, sys.executable, repr(argv)]
    parts += [f"{k}={v!r}" for k, v in sorted(os.environ.items()) if k not in _VOLATILE]
    for fd in (0, 1, 2):
        tty = size = None
        with suppress(OSError, ValueError):
            tty = os.isatty(fd)
            size = tuple(os.get_terminal_size(fd))
        parts.append(f"fd {fd}: {tty} {size}")
    stream = sys.stdout
    parts.append(f"stdout: {getattr(stream, 'encoding', None)} {getattr(stream, 'errors', None)}")
    folders = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    for name in ("typer", "rich", "click"):
        with suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(name)
            if spec is not None and spec.origin is not None:
                folders.append(os.path.dirname(spec.origin))
    for folder in folders:
        parts += _stamps(folder)
    try:
        from _blake2 import blake2b  # hashlib's, without the start-up of OpenSSL's
    except ImportError:  # pragma: no cover - a Python built without it
        from hashlib import blake2b
    # hashed: the environment may hold secrets, which have no place in a cache
    return blake2b("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _stamps(folder: str) -> list[str]:
    stamps = []
    with suppress(OSError):
        for entry in os.scandir(folder):
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    stamps += _stamps(entry.path)
            elif entry.name.endswith(".py"):
                info = entry.stat()
                stamps.append(f"{entry.path} {info.st_mtime_ns} {info.st_size}")
    return stamps


class _Recorder:
    """stdout as typer's help sees it, keeping a copy of what is written."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.parts: list[str] = []
        self.failed = False

    def write(self, text: str) -> int:
        try:
            written = self._stream.write(text)
        except (OSError, ValueError):  # not TypeError: click tries whether bytes go
            self.failed = True
            raise
        self.parts.append(text)
        return int(written or 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _drawn_help() -> str | None:
    """typer's help on stdout; its text, or None when it did not end well."""
    from .app import main as typer_main

    recorder = _Recorder(sys.stdout)
    sys.stdout = recorder
    try:
        typer_main()
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        if sys.stdout is recorder:
            sys.stdout = recorder._stream
    if code not in (0, None) or recorder.failed:
        sys.exit(code)
    return "".join(recorder.parts)
