"""`backprop graph`: the computational graph as a picture, DOT, Mermaid or a tree."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Any

import typer

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from .common import (
    _AllowNonfinite,
    _console,
    _fail,
    _Form,
    _form,
    _Init,
    _load,
    _Loss,
    _ModelSeed,
    _output,
    _show_program,
    _ShowProgram,
    _stderr,
)


class GraphFormat(str, Enum):
    tree = "tree"
    dot = "dot"
    mermaid = "mermaid"


class Rankdir(str, Enum):
    LR = "LR"
    TB = "TB"


GRAPH_EXAMPLES = """\
[bold]Examples[/bold]

  The graph with values and gradients:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4

  Graphviz's DOT, rendered by dot:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 --format dot | dot -Tsvg > g.svg

  A picture file:
    backprop graph examples/cs231n_add_mul.bp x=-2 y=5 z=-4 -o graph.svg

  A Mermaid flowchart:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 --format mermaid

  A model spec, its weights from the model's initialisation:
    backprop graph mlp:2-3-1 x1=1 x2=1 y=0

  No values: the structure only:
    backprop graph "q = x + y; f = q * z"
"""


def graph(
    expression: Annotated[
        str | None,
        typer.Argument(
            help="The expression, a program file (.bp) or '-' for stdin.", show_default=False
        ),
    ] = None,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME=VALUE...",
            help="Values (all or none: without them the picture shows the structure).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", metavar="PATH", help="Read the program from a file.")
    ] = None,
    values_file: Annotated[
        str | None, typer.Option("--values", metavar="FILE.json", help="Values from a JSON object.")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", metavar="FILE", help="Render with Graphviz: .svg .png .pdf"),
    ] = None,
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="Printed format.")
    ] = GraphFormat.tree,
    rankdir: Annotated[
        Rankdir, typer.Option("--rankdir", help="Left to right or top down.")
    ] = Rankdir.LR,
    max_nodes: Annotated[
        int, typer.Option("--max-nodes", min=0, help="Show at most this many nodes (0: all).")
    ] = 200,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, max=100_000_000, metavar="CHARS")
    ] = DEFAULT_LIMITS.max_length,
    allow_nonfinite: _AllowNonfinite = False,
    loss: _Loss = None,
    form: _Form = None,
    seed: _ModelSeed = None,
    init: _Init = None,
    show_program: _ShowProgram = False,
) -> None:
    """Draw the computational graph, CS231n style: each node's op and label with its value
    (green) and gradient (red), each wire with the value going forward and the gradient
    coming back. Without values it shows the structure alone.

    A model spec (linear, mlp:2-3-1, ...) goes where the expression goes, as in grad.
    Given some values (or --init), its other parameters start from its initialisation."""
    from ..io.inputs import ModelOptions
    from ..render import picture as pictures

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    fill = bool(values) or values_file is not None or init is not None
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init, fill=fill)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        if output is not None:
            from ..io.files import refuse_inputs_as_outputs
            from ..io.inputs import init_is_file

            pictures.check_output(output)
            refuse_inputs_as_outputs(
                [("-o", output)],
                [("the program", expression), ("--file", file), ("--values", values_file)]
                + ([("--init", init)] if init is not None and init_is_file(init) else []),
            )
        program, point, expansion = _load(expression, values, file, values_file, limits, model)
        for warning in program.warnings if expansion is not None else []:
            _stderr(f"warning: {warning}")
        pic = pictures.picture(program.graph, _full_point_or_none(program.graph, point), max_nodes)
        text = (
            pictures.to_mermaid(pic, rankdir.value)
            if fmt is GraphFormat.mermaid
            else pictures.to_dot(pic, rankdir.value)
        )
        notes = [] if output is None else pictures.render(pic, output, rankdir.value)
    except BackpropError as exc:
        _fail(exc)
    if pic.cut:
        _stderr(f"note: {pic.cut:,} nodes not shown (--max-nodes {max_nodes})")
    for note in notes:
        _stderr(f"note: {note}")
    if output is not None:
        _stderr(f"wrote {output}")
        if fmt is GraphFormat.tree:
            return
    with _output():
        if fmt is GraphFormat.tree:
            _console().print(pictures.tree(pic))
        else:
            sys.stdout.write(text)


def _full_point_or_none(graph: Any, point: dict[str, float]) -> dict[str, float] | None:
    """All the values, or none (a structure-only picture); some but not all is a mistake."""
    from ..analyses.point import check_point

    if not point:
        return None
    for warning in check_point(graph, point):
        _stderr(f"warning: {warning}")
    return {name: point[name] for name in graph.variables}


def register(app: typer.Typer) -> None:
    app.command(context_settings={"ignore_unknown_options": True}, epilog=GRAPH_EXAMPLES)(graph)
