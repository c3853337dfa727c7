"""`backprop ops`: the registry of operations and their derivative rules. Only
`register` imports typer, so the quick path (entry.py) runs the command without it."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated

from . import output as out

if TYPE_CHECKING:
    import typer


class OpsFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    markdown = "markdown"


FORMATS = tuple(f.value for f in OpsFormat)

# csv/tsv: one row per operation (its notes joined by "; ")
OPS_COLUMNS = ("op", "syntax", "arity", "rule", "notes")

OPS_EXAMPLES = """\
[bold]Examples[/bold]

  Every operation with its derivative rule:
    backprop ops

  Their names, from the JSON:
    backprop ops --format json | jq ".ops[].op"

  As a spreadsheet:
    backprop ops -o ops.csv
"""


def ops(
    fmt: Annotated[
        OpsFormat | None,
        typer.Option(
            "--format",
            help="Output format (default: table). Without it, -o's extension decides.",
            show_default=False,
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    output: out.Output = None,
) -> None:
    """List the operations the expression language knows, with their derivative rules."""
    from ..core.errors import BackpropError
    from ..render.gradient import ops_markdown, ops_rows, ops_table, with_schema
    from .terminal import error_lines, leave
    from .terminal import output as guarded

    try:
        chosen = out.resolve(fmt and fmt.value, output, FORMATS, "table", "ops")
    except BackpropError as exc:
        error_lines(exc)
        leave(exc.exit_code)
    rows = ops_rows()
    with out.into(output), guarded():
        if chosen == "json":
            document = with_schema("ops", {"ops": rows})
            sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        elif chosen == "jsonl":
            for row in rows:
                line = json.dumps(with_schema("op", row), ensure_ascii=False)
                sys.stdout.write(line + "\n")
        elif chosen in ("csv", "tsv"):
            cells = [
                [r["op"], r["syntax"], r["arity"], r["rule"], "; ".join(r["notes"])] for r in rows
            ]
            sys.stdout.write(out.rows_text(OPS_COLUMNS, cells, out.delimiter(chosen)))
        elif chosen == "markdown":
            sys.stdout.write(ops_markdown(rows))
        else:
            from .terminal import console

            console().print(ops_table(rows))


def register(app: typer.Typer) -> None:
    global typer  # the signature's annotations name typer: typer reads them from here
    import typer

    app.command(epilog=OPS_EXAMPLES)(ops)
