"""`backprop explain`: the chain rule path by path and the staged reverse sweep. Only
`register` imports typer, so the quick path (entry.py) runs the command without it."""

from __future__ import annotations

import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from . import common
from . import output as out
from . import step as stepper
from .common import (
    _console,
    _fail,
    _form,
    _load,
    _names,
    _output,
    _show_program,
    _stderr,
)
from .terminal import EXIT_DISAGREE, leave

if TYPE_CHECKING:
    import typer


class ExplainFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    latex = "latex"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    html = "html"


FORMATS = tuple(f.value for f in ExplainFormat)

# csv/tsv: one row per link of each chain-rule path (a path is the links from the output
# down to the variable; its product is the path's share of the partial)
PATH_COLUMNS = ("variable", "path", "link", "from", "to", "operand", "formula", "at", "local",
                "product", "partial")  # fmt: skip


class Mode(str, Enum):
    reverse = "reverse"
    forward = "forward"


EXPLAIN_EXAMPLES = """\
[bold]Examples[/bold]

  The chain rule for one partial:
    backprop explain "(x*w - y)**2" x=2 w=1 y=4 --wrt w

  CS231n's sigmoid neuron, path by path:
    backprop explain examples/sigmoid_neuron.bp w0=2 x0=-1 w1=-3 x1=-2 w2=-3

  As a LaTeX document:
    backprop explain examples/seed_loss.bp x=2 w=1 y=4 --format latex > s.tex

  The first tutorial's chain-rule network, with its weights from a file:
    backprop explain mlp:2-3-1 x1=1 x2=1 y=0 --init examples/network.json

  Forward accumulation instead:
    backprop explain "x*x + x" x=3 --mode forward

  Every link of every path, as CSV:
    backprop explain "x*x + x" x=3 -o paths.csv
"""


def explain(
    expression: Annotated[
        str | None,
        typer.Argument(
            help="The expression, a program file (.bp) or '-' for stdin.", show_default=False
        ),
    ] = None,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAME=VALUE...", help="A value for each variable.", show_default=False
        ),
    ] = None,
    file: Annotated[
        str | None, typer.Option("--file", metavar="PATH", help="Read the program from a file.")
    ] = None,
    values_file: Annotated[
        str | None, typer.Option("--values", metavar="FILE.json", help="Values from a JSON object.")
    ] = None,
    wrt: Annotated[
        str | None, typer.Option("--wrt", metavar="X,Y", help="Only these variables.")
    ] = None,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode", help="reverse: paths and the backward pass; forward: tangent sweeps."
        ),
    ] = Mode.reverse,
    fmt: Annotated[
        ExplainFormat | None,
        typer.Option(
            "--format",
            help="Output format (default: table); csv and tsv have a row per link of each "
            "chain-rule path; html is a page with a step-through of both passes. Without it, "
            "-o's extension decides.",
            show_default=False,
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    output: out.Output = None,
    digits: out.Digits = None,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, max=100_000_000, metavar="CHARS")
    ] = DEFAULT_LIMITS.max_length,
    allow_nonfinite: common._AllowNonfinite = False,
    loss: common._Loss = None,
    form: common._Form = None,
    seed: common._ModelSeed = None,
    init: common._Init = None,
    show_program: common._ShowProgram = False,
    step: Annotated[
        bool,
        typer.Option(
            "--step",
            help="Step through the forward and backward pass, a key per step (in a "
            "terminal; elsewhere every step is printed).",
            rich_help_panel=out.PANEL,
        ),
    ] = False,
) -> None:
    """The chain rule step by step: every path from the output down to each variable with
    its product of local derivatives, the reverse sweep as numbered local steps (or, with
    --mode forward, one tangent sweep per input), and what each mode costs.

    A model spec (linear, mlp:2-3-1, ...) goes where the expression goes, as in grad."""
    from .. import api
    from ..io.inputs import ModelOptions, init_is_file
    from ..render import explain as view
    from ..render import numbers
    from ..render.gradient import to_json

    limits = Limits(max_length=max_length, allow_nonfinite=allow_nonfinite)
    model = ModelOptions(loss=loss, form=_form(form), seed=seed, init=init)
    if show_program and step:
        _fail(BackpropError("--show-program prints the program and stops; it does not take --step"))
    if show_program:
        _show_program(expression, file, limits, model)
        return
    try:
        chosen = out.resolve(fmt and fmt.value, output, FORMATS, "table", "explain")
        if step:
            stepper.refuse(chosen, mode.value)
        reads = [("the program", expression), ("--file", file), ("--values", values_file)]
        out.refuse(output, [*reads, ("--init", init if init and init_is_file(init) else None)])
        program, point, expansion = _load(
            expression, values, file, values_file, limits, model, "explain"
        )
        if step:
            stepper.run(program, point, _names(wrt), digits, output)
            return
        if chosen == "table":
            _import_rich()
        with api.quiet():  # its warnings are printed below
            result = api.explain(
                program, point, wrt=_names(wrt), mode=mode.value, allow_nonfinite=allow_nonfinite
            )
        report = result.report
        page = None
        if chosen == "html":  # worked out here, so that its errors are one-line errors
            with numbers.precision(digits):
                page = result.to_html()
        if chosen in ("csv", "tsv") and "partials" not in report:
            raise BackpropError(
                "explain's csv and tsv have a row per link of each chain-rule path, and "
                "array variables are explained by their reverse sweep, not by paths",
                hint="use --format json, markdown or table",
            )
    except BackpropError as exc:
        _fail(exc)  # before any warning: the first line of bad input is the error
    for warning in result.warnings:
        _stderr(f"warning: {warning}")
    if expansion is not None:  # the spec's notes (its initialisation) in the JSON too
        report["warnings"] = [{"message": w} for w in program.warnings] + report["warnings"]
    with numbers.precision(digits), out.into(output), _output():
        if chosen == "json":
            sys.stdout.write(to_json(report, "explain") + "\n")
        elif chosen == "jsonl":
            sys.stdout.write(out.compact(to_json(report, "explain")))
        elif chosen in ("csv", "tsv"):
            sys.stdout.write(path_rows(report, out.delimiter(chosen)))
        elif chosen == "markdown":
            sys.stdout.write(view.markdown(report))
        elif chosen == "latex":
            sys.stdout.write(result.latex())
        elif page is not None:
            sys.stdout.write(page)
        else:
            console = _console()
            for i, item in enumerate(view.panels(report)):
                if i:
                    console.print()
                console.print(item)
    if not report["ok"]:
        _stderr("disagreement: the sum over paths differs from the reverse sweep")
        leave(EXIT_DISAGREE)


def _import_rich() -> None:
    """Rich's modules for the table, imported before SymPy's formulas are asked for: where
    a child works them out, this runs while it is still importing SymPy."""
    from rich import console, table, tree  # noqa: F401 - for the time they take, here


def path_rows(report: dict[str, Any], delimiter: str = ",") -> str:
    """One row per link of each chain-rule path, every number in full: the variable, the
    path's number (from 1), the link's place on it (from 1, at the output), the nodes it
    joins, the operand it enters where a node takes the same input twice (x*x: left,
    right), the local derivative's formula, that formula at the point and its value, the
    path's product and the partial (the sum over the variable's paths).

    A long path's left-out middle is one row with from and to '…' and the count of its
    factors as the formula; a variable with too many paths to list has one row per group
    (path 'group N': the paths through one operand of the output, product their sum)."""
    rows: list[list[Any]] = []
    output = report["output"]["name"]
    for partial in report["partials"]:
        variable, total = partial["variable"], _full(partial["sum"])
        for number, path in enumerate(partial["paths"], 1):
            product = _full(path["product"])
            for place, link in enumerate(path["links"], 1):
                if "omitted" in link:
                    gap = f"{link['omitted']:,} factors left out"
                    rows.append([variable, number, place, "…", "…", None, gap, None, None,
                                 product, total])  # fmt: skip
                    continue
                formula = link.get("formula") or {}
                rows.append(
                    [
                        variable, number, place, link["from"], link["to"], link.get("operand"),
                        formula.get("text"), formula.get("at"), _full(link["value"]), product,
                        total,
                    ]
                )  # fmt: skip
        for number, group in enumerate(partial.get("groups") or [], 1):
            rows.append([variable, f"group {number}", 1, output, group["via"], None, None, None,
                         _full(group["local"]), _full(group["sum"]), total])  # fmt: skip
    return out.rows_text(PATH_COLUMNS, rows, delimiter)


def _full(x: Any) -> str | None:
    from ..render.numbers import full

    return None if x is None else full(float(x))


def register(app: typer.Typer) -> None:
    global typer  # the signature's annotations name typer: typer reads them from here
    import typer

    app.command(context_settings={"ignore_unknown_options": True}, epilog=EXPLAIN_EXAMPLES)(explain)
