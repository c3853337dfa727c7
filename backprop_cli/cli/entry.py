"""The `backprop` command's entry point.

`backprop grad` is the main job and is often run many times from scripts, so its common
forms start without typer (whose import, with pydantic, costs about as much as numpy's):
an argument list made only of grad's own options, NAME=VALUE values and one expression is
read here and handed to the same `grad_run.run` the typer command calls. Anything else
(help, `--`, an unknown or malformed option, any other command) goes to typer as usual,
which then gives its usual messages.
"""

from __future__ import annotations

import os
import re
import sys
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


def main() -> None:
    from .terminal import check_streams

    problem = check_streams()
    if problem is not None:
        sys.exit(problem)
    argv = sys.argv[1:]
    if argv[:1] == ["grad"] and "_BACKPROP_COMPLETE" not in os.environ:  # completion: typer
        fields = quick_grad_args(argv[1:])
        if fields is not None:
            if fields.get("symbolic", True) and fields.get("points_file") is None:
                from ..checks.sandbox import prestart

                prestart()  # SymPy's child imports it while we start up
            sys.exit(_quick_grad(fields))
    from .app import main as typer_main

    typer_main()


def _quick_grad(fields: dict[str, Any]) -> int:
    """grad_run.run, with the same last-resort handling as the typer path."""
    from ..core.errors import BackpropError
    from .grad_run import GradArgs, run
    from .terminal import EXIT_INTERNAL, encoding_error, error_lines, stderr

    try:
        return run(GradArgs(**fields))
    except BackpropError as exc:
        error_lines(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        stderr("aborted")
        return 130
    except UnicodeEncodeError as exc:
        error_lines(encoding_error(exc))
        return 2
    except Exception as exc:
        if os.environ.get("BACKPROP_DEBUG"):
            raise
        stderr(f"internal error: {type(exc).__name__}: {exc}")
        stderr("this is a bug in backprop-cli; BACKPROP_DEBUG=1 shows the traceback")
        return EXIT_INTERNAL
