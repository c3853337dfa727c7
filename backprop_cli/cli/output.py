"""One output story for every command: `--format NAME` with the same names everywhere, and
`-o/--output FILE`, whose extension picks the format when `--format` is not given.

A command says which formats it has (`resolve(..., allowed=...)`); the names and the
extensions are shared, so `-o report.md` means Markdown wherever Markdown exists. `-o`
writes the command's main result, and only once it is complete: on an error the file is
left as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from ..core.errors import InputError
from ..io.files import check_target, refuse_inputs_as_outputs, replacing, write_atomically

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
    "parquet",  # the points of grad --points, as record batches
    "arrow",
)
BINARY = frozenset({"png", "pdf", "parquet", "arrow"})
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
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}


MACHINE = frozenset({"json", "jsonl", "csv", "tsv"})  # always every digit (--digits aside)


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
    if fmt is None and output is not None and output != "-":
        fmt = from_extension(output)
        if fmt is None:
            known = ", ".join(sorted({e for e, f in EXTENSIONS.items() if f in allowed}))
            raise InputError(
                f"-o {output}: cannot tell the format from the extension",
                hint=f"give --format ({choices}), or end the file in one of {known}",
            )
    if output is not None and output != "-" and output.endswith(("/", os.sep)):
        raise InputError(f"-o {output}: names a folder, not a file")
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


def refuse(output: str | None, reads: Sequence[tuple[str, str | None]]) -> None:
    """-o naming a file that the command reads (the program, --values, --points, ...) is
    an error before any work: writing it would destroy the input."""
    refuse_inputs_as_outputs([("-o", output)], reads)


@contextmanager
def into(output: str | None) -> Iterator[None]:
    """Everything printed inside goes to -o's file (no -o, or -o -: stdout as usual). The
    text is streamed to a temporary file beside the target, which replaces it when the
    block ends without an error; on an error the target is left as it was."""
    if output is None or output == "-":
        yield
        return
    from .terminal import TO_FILE

    with replacing(output) as temporary:
        saved, plain = sys.stdout, TO_FILE.set(True)
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            sys.stdout = stream
            try:
                yield
            finally:
                sys.stdout = saved
                TO_FILE.reset(plain)


def emit(output: str | None, data: str | bytes) -> None:
    """A whole result, to stdout or atomically to -o's file (a text result ends in a
    newline)."""
    if isinstance(data, str) and not data.endswith("\n"):
        data += "\n"
    write(output, data)


def compact(json_text: str) -> str:
    """A JSON document on one line: its JSON-lines form."""
    return json.dumps(json.loads(json_text), ensure_ascii=False, allow_nan=False) + "\n"


def rows_text(header: Sequence[str], rows: Iterable[Sequence[Any]], delimiter: str = ",") -> str:
    """CSV (or TSV) with a header row; None is an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
    return buffer.getvalue()


def retab(csv_text: str) -> str:
    """CSV text as TSV: the same cells, tab-separated (quoted only where a cell needs it)."""
    rows = list(csv.reader(io.StringIO(csv_text)))
    return rows_text(rows[0], rows[1:], "\t") if rows else ""


def delimiter(fmt: str) -> str:
    return "\t" if fmt == "tsv" else ","


PANEL = "Output"  # the help panel of --format, -o and --digits

# The typer option types of -o and --digits. They are made on first use, so that what needs
# no typer (grad's quick path, see entry.py) can use this module without importing it.
if TYPE_CHECKING:
    Output = Annotated[str | None, "-o/--output FILE"]
    Digits = Annotated[int | None, "--digits N"]
else:

    @cache
    def _options() -> dict[str, Any]:
        import typer

        output = typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Write the result to FILE ('-': stdout); when --format is not given, its "
            "extension picks one of the command's formats (.json .csv .md …).",
            show_default=False,
            rich_help_panel=PANEL,
        )
        digits = typer.Option(
            "--digits",
            min=0,
            max=17,
            metavar="N",
            help="Significant digits of the numbers shown (default 4; 0: every digit). JSON, "
            "JSONL, CSV and TSV always carry full precision.",
            show_default=False,
            rich_help_panel=PANEL,
        )
        return {
            "Output": Annotated[str | None, output],
            "Digits": Annotated[int | None, digits],
        }

    def __getattr__(name: str) -> Any:
        if name in ("Output", "Digits"):
            return _options()[name]
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
