"""`backprop ops`: the registry of operations and their derivative rules."""

from __future__ import annotations

import json
import sys
from enum import Enum
from typing import Annotated

import typer


class OpsFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


OPS_EXAMPLES = """\
[bold]Examples[/bold]

  Every operation with its derivative rule:
    backprop ops

  Their names, from the JSON:
    backprop ops --format json | jq ".[].op"
"""


def ops(
    fmt: Annotated[OpsFormat, typer.Option("--format", help="Output format.")] = OpsFormat.table,
) -> None:
    """List the operations the expression language knows, with their derivative rules."""

    from ..render.gradient import ops_markdown, ops_rows, ops_table

    rows = ops_rows()
    if fmt is OpsFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    elif fmt is OpsFormat.markdown:
        sys.stdout.write(ops_markdown(rows))
    else:
        from rich.console import Console

        Console(highlight=False).print(ops_table(rows))


def register(app: typer.Typer) -> None:
    app.command(epilog=OPS_EXAMPLES)(ops)
