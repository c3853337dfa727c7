"""`backprop graph`: the computational graph as a tree, a picture (SVG, PNG, PDF), DOT,
Mermaid or JSON. Only `register` imports typer, so the quick path (entry.py) runs the
command without it."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from . import common
from . import output as out
from .common import (
    _console,
    _fail,
    _form,
    _load,
    _output,
    _show_program,
    _stderr,
)

if TYPE_CHECKING:
    import typer


class GraphFormat(str, Enum):
    tree = "tree"
    table = "table"  # the shared name of the text display: here, the tree
    json = "json"
    dot = "dot"
    mermaid = "mermaid"
    svg = "svg"
    png = "png"
    pdf = "pdf"


FORMATS = tuple(f.value for f in GraphFormat)


class Rankdir(str, Enum):
    LR = "LR"
    TB = "TB"


GRAPH_EXAMPLES = """\
[bold]Examples[/bold]

  The graph with values and gradients:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4

  A picture file (the extension picks the format: .svg .png .pdf .dot .mmd .json):
    backprop graph examples/cs231n_add_mul.bp x=-2 y=5 z=-4 -o graph.svg

  A larger PNG:
    backprop graph mlp:2-8-8-1 x1=1 x2=0.5 y=1 -o mlp.png --dpi 150

  Graphviz's DOT, rendered by dot:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 --format dot | dot -Tsvg > g.svg

  A Mermaid flowchart:
    backprop graph "(x+y)*z" x=-2 y=5 z=-4 --format mermaid

  A model spec, its weights from the model's initialisation:
    backprop graph mlp:2-3-1 x1=1 x2=1 y=0

  No values: the structure only:
    backprop graph "q = x + y; f = q * z"
"""

_PICTURE = "Picture"


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
    fmt: Annotated[
        GraphFormat | None,
        typer.Option(
            "--format",
            help="tree (the default), a picture through Graphviz (svg, png, pdf), its DOT, "
            "a Mermaid flowchart, or json (every node, full precision). Without it, -o's "
            "extension decides.",
            show_default=False,
            rich_help_panel="Output",
        ),
    ] = None,
    output: out.Output = None,
    digits: out.Digits = None,
    rankdir: Annotated[
        Rankdir | None,
        typer.Option(
            "--rankdir",
            help="Left to right or top down (default: LR; TB above 50 nodes).",
            show_default=False,
            rich_help_panel=_PICTURE,
        ),
    ] = None,
    max_nodes: Annotated[
        int,
        typer.Option(
            "--max-nodes",
            min=0,
            metavar="N",
            help="Draw the N nodes nearest the output and fold the rest into one (0: all).",
            rich_help_panel=_PICTURE,
        ),
    ] = 200,
    collapse: Annotated[
        bool | None,
        typer.Option(
            "--collapse/--no-collapse",
            help="Fold repeated blocks (the middle neurons of a layer, the middle terms of a "
            "long sum) into one node each; by default when the graph has over 50 nodes.",
            show_default=False,
            rich_help_panel=_PICTURE,
        ),
    ] = None,
    edge_labels: Annotated[
        bool | None,
        typer.Option(
            "--edge-labels/--no-edge-labels",
            help="The value and gradient on every wire, or on none. By default a graph of "
            "over 50 nodes labels only the wires of a node used more than once (the part of "
            "its gradient each sends back).",
            show_default=False,
            rich_help_panel=_PICTURE,
        ),
    ] = None,
    legend: Annotated[
        bool,
        typer.Option(
            "--legend/--no-legend",
            help="A legend of the colours and shapes (DOT and pictures).",
            show_default=False,
            rich_help_panel=_PICTURE,
        ),
    ] = True,
    dpi: Annotated[
        int | None,
        typer.Option(
            "--dpi",
            min=24,
            max=600,
            metavar="N",
            help="PNG resolution in dots per inch (default 96, where 11-point text is about "
            "15 pixels high).",
            show_default=False,
            rich_help_panel=_PICTURE,
        ),
    ] = None,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, max=100_000_000, metavar="CHARS")
    ] = DEFAULT_LIMITS.max_length,
    allow_nonfinite: common._AllowNonfinite = False,
    loss: common._Loss = None,
    form: common._Form = None,
    seed: common._ModelSeed = None,
    init: common._Init = None,
    show_program: common._ShowProgram = False,
) -> None:
    """Draw the computational graph, CS231n style: each node's op and name with its value
    (green) and gradient (red), each wire with the value going forward and the gradient
    coming back. Without values it shows the structure alone.

    Each statement's nodes are boxed together, and statements alike (a layer's neurons)
    boxed around them; large graphs fold repeated blocks (see --collapse).
    A model spec (linear, mlp:2-3-1, ...) goes where the expression goes, as in grad.
    Given some values (or --init), its other parameters start from its initialisation."""
    from ..io.inputs import ModelOptions
    from ..render import numbers
    from ..render import picture as pictures

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    fill = bool(values) or values_file is not None or init is not None
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init, fill=fill)
    if show_program:
        _show_program(expression, file, limits, model)
        return
    warnings: list[str] = []
    try:
        asked = None if fmt is None else fmt.value
        if asked is None and output is not None and out.from_extension(output) == "table":
            asked = "tree"  # -o graph.txt: the tree, as text
        asked = "tree" if asked == "table" else asked
        chosen = out.resolve(asked, output, FORMATS, "tree", "graph")
        if output is not None and output != "-":
            from ..io.inputs import init_is_file

            out.refuse(
                output,
                [("the program", expression), ("--file", file), ("--values", values_file)]
                + ([("--init", init)] if init is not None and init_is_file(init) else []),
            )
        if dpi is not None and chosen != "png":
            warnings.append(f"--dpi changes PNG pictures only, not {chosen}")
        program, point, expansion = _load(
            expression, values, file, values_file, limits, model, "graph"
        )
        if expansion is not None:
            warnings += program.warnings
        full = _full_point_or_none(program.graph, point, warnings)
        pic = pictures.picture(program.graph, full, max_nodes, collapse=collapse)
        direction = None if rankdir is None else rankdir.value
        if edge_labels:
            pic.sparse = False
        labels = edge_labels is not False
        notes: list[str] = []
        with numbers.precision(digits):
            data: str | bytes | None = None
            if chosen in ("svg", "png", "pdf"):
                data, notes = pictures.layout(
                    pic, chosen, direction, dpi=dpi, wire_labels=labels, legend=legend
                )
            elif chosen == "dot":
                data = pictures.to_dot(pic, direction, labels, legend=legend)
            elif chosen == "mermaid":
                data = pictures.to_mermaid(pic, direction, labels)
            elif chosen == "json":
                data = pictures.to_json(pic, warnings)
            with _output():
                if data is None:
                    with out.into(output):
                        _console().print(pictures.tree(pic))
                else:
                    out.write(output, data)
    except BackpropError as exc:
        _fail(exc)
    for warning in warnings:
        _stderr(f"warning: {warning}")
    folds = [] if chosen == "json" else pictures.fold_notes(pic, max_nodes)
    for note in folds + notes:
        _stderr(f"note: {note}")
    if output is not None and output != "-":
        _stderr(f"wrote {output}")


def _full_point_or_none(
    graph: Any, point: dict[str, float], warnings: list[str]
) -> dict[str, float] | None:
    """All the values, or none (a structure-only picture); some but not all is a mistake."""
    from ..analyses.point import check_point

    if not point:
        return None
    warnings += check_point(graph, point)
    return {name: point[name] for name in graph.variables}


def register(app: typer.Typer) -> None:
    global typer  # the signature's annotations name typer: typer reads them from here
    import typer

    app.command(context_settings={"ignore_unknown_options": True}, epilog=GRAPH_EXAMPLES)(graph)
