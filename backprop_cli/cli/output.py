"""One output story for every command: `--format NAME` with the same names everywhere, and
`-o/--output FILE`, whose extension picks the format when `--format` is not given.

A command says which formats it has (`resolve(..., allowed=...)`); the names and the
extensions are shared, so `-o report.md` means Markdown wherever Markdown exists.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from ..core.errors import InputError
from ..io.files import check_target, write_atomically

FORMATS = (
    "table",
    "json",
    "jsonl",
    "csv",
    "tsv",
    "markdown",
    "latex",
    "html",
    "dot",
    "mermaid",
    "svg",
    "png",
    "pdf",
)
BINARY = frozenset({"png", "pdf"})
PICTURES = frozenset({"svg", "png", "pdf"})

EXTENSIONS = {
    ".txt": "table",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".md": "markdown",
    ".markdown": "markdown",
    ".tex": "latex",
    ".html": "html",
    ".htm": "html",
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
}


def from_extension(path: str) -> str | None:
    """The format a file name asks for, or None for an extension we do not know."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def resolve(
    fmt: str | None, output: str | None, allowed: Sequence[str], default: str, command: str
) -> str:
    """The format to write: --format, else -o's extension, else `default`. A format the
    command does not have, or an -o extension that names none, is an InputError (exit 2)
    before any work is done; so is an -o file that could not be written."""
    choices = ", ".join(allowed)
    if fmt is None and output is not None:
        fmt = from_extension(output)
        if fmt is None:
            known = ", ".join(sorted({e for e, f in EXTENSIONS.items() if f in allowed}))
            raise InputError(
                f"-o {output}: cannot tell the format from the extension",
                hint=f"give --format ({choices}), or end the file in one of {known}",
            )
    fmt = fmt or default
    if fmt not in allowed:
        raise InputError(f"{command} has no {fmt} output", hint=f"{command}'s formats: {choices}")
    if output is not None and output != "-":
        check_target(output)
    elif fmt in BINARY and sys.stdout.isatty():
        raise InputError(
            f"{fmt} is binary and stdout is a terminal",
            hint=f"write it to a file with -o FILE.{fmt}, or redirect stdout",
        )
    return fmt


def write(output: str | None, data: str | bytes) -> None:
    """The result to stdout (no -o, or -o -), or to the file, which is replaced in one step:
    it is either the old file or the whole new one."""
    if output is None or output == "-":
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
        return
    write_atomically(output, data)


Output = Annotated[
    str | None,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write the result to FILE ('-': stdout); its extension picks the format when "
        "--format is not given (.json .csv .md .tex .svg …).",
        show_default=False,
    ),
]

Digits = Annotated[
    int | None,
    typer.Option(
        "--digits",
        min=0,
        max=17,
        metavar="N",
        help="Significant digits of the numbers shown (default 4; 0: every digit). JSON, "
        "JSONL, CSV and TSV always carry full precision.",
        show_default=False,
    ),
]
