"""`backprop grad` itself, apart from how its arguments were parsed: typer's command (grad.py)
and the quick path that skips typer (entry.py) both call `run`, which returns the exit code.
No typer here."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from ..core.errors import BackpropError
from ..core.parse import DEFAULT_LIMITS, Limits
from ..io import inputs
from . import output as out
from .terminal import EXIT_DISAGREE, error_lines, output, print_rich, report_disagreement, stderr

# grad's formats, in the order --help lists them (GradFormat in grad.py, and entry.py's
# quick path, have the same)
FORMATS = (
    "table", "json", "csv", "markdown", "tsv", "jsonl",
    "html", "dot", "mermaid", "svg", "png", "pdf", "latex", "parquet", "arrow",
)  # fmt: skip
ROW_FORMATS = ("csv", "tsv", "jsonl", "parquet", "arrow")  # one row per point (--points)
PICTURE_FORMATS = ("dot", "mermaid", "svg", "png", "pdf")  # the graph with values and gradients
GRAPH_NODES = 200  # nodes --graph draws (the nearest the output), as `graph` by default


@dataclass
class GradArgs:
    """Every option of `backprop grad`, with its default."""

    expression: str | None = None
    values: list[str] | None = None
    file: str | None = None
    values_file: str | None = None
    wrt: str | None = None
    seed_grad: str | None = None
    order: int = 1
    fmt: str | None = None  # table; csv with --points
    points_file: str | None = None
    on_error: str = "stop"
    check_points: bool = False
    dtype: str = "float64"
    torch_check: bool = True
    device: str = "cpu"
    symbolic: bool = True
    simplify: bool = True
    latex: bool = False
    symbolic_timeout: float = 5.0
    expand: bool = False
    picture_file: str | None = None
    max_rows: int = 200
    max_length: int = DEFAULT_LIMITS.max_length
    allow_nonfinite: bool = False
    # A model spec (linear, mlp:2-3-1, ...) where the expression goes; None: not given.
    loss: str | None = None
    form: str | None = None  # named (the default) or matrix
    seed: int | None = None  # of the mlp's initialisation (0)
    init: str | None = None  # the spec's parameters: name=value pairs or a JSON file
    show_program: bool = False  # print the program (a spec's expansion) and stop
    output: str | None = None  # -o FILE: the result goes there ('-': stdout)
    digits: int | None = None  # significant digits of the human formats (None: the default)
    dpi: int | None = None  # a PNG picture's resolution (None: Graphviz's 96)
    given: frozenset[str] = frozenset()  # the fields set on the command line


# Options of one point that --points does not use, and those only --points uses, with their
# spelling and the value that asks for something: given so in the other mode, each is a
# warning (it would do nothing). Turning off what does not run anyway (--no-torch,
# --no-symbolic with --points) is harmless and passes quietly.
_ONE_POINT: dict[str, tuple[str, object]] = {
    "torch_check": ("--torch (--check is the torch check of --points)", True),
    "symbolic": ("--symbolic", True), "simplify": ("--simplify", True),
    "latex": ("--latex", True), "expand": ("--expand", True),
    "symbolic_timeout": ("--symbolic-timeout", None), "max_rows": ("--max-rows", None),
}  # fmt: skip
_POINTS_ONLY: dict[str, tuple[str, object]] = {
    "on_error": ("--on-error", None),
    "check_points": ("--check", True),
}


def unused_options(a: GradArgs) -> list[str]:
    """Warnings for options that do nothing in this mode; an output that would not be
    written (--graph with --points) is an error instead."""
    if a.points_file is not None and a.picture_file is not None:
        raise BackpropError(
            "--graph draws the graph at one point, and --points gives many",
            hint="draw it at one of them with backprop graph EXPR NAME=VALUE... -o FILE",
        )
    table, where = (
        (_POINTS_ONLY, "without --points")
        if a.points_file is None
        else (_ONE_POINT, "with --points")
    )
    unused = [
        f"{flag} does nothing {where}"
        for field, (flag, asks) in table.items()
        if field in a.given and (asks is None or getattr(a, field) == asks)
    ]
    if a.points_file is not None and "device" in a.given and not a.check_points:
        unused.append("--device does nothing with --points without --check")
    if a.dpi is not None and not _draws_png(a):
        unused.append("--dpi changes PNG pictures only, and none is drawn")
    return unused


def _draws_png(a: GradArgs) -> bool:
    """Whether a PNG is written: --graph g.png, --format png, or -o g.png without --format."""
    files = [f for f in (a.picture_file, None if a.fmt else a.output) if f is not None]
    return a.fmt == "png" or any(f.lower().endswith(".png") for f in files)


def _reads(a: GradArgs) -> list[tuple[str, str | None]]:
    """The files grad reads, which no output may overwrite."""
    reads = [("the program", a.expression), ("--file", a.file)]
    reads += [("--values", a.values_file), ("--points", a.points_file)]
    if a.init is not None and inputs.init_is_file(a.init):
        reads.append(("--init", a.init))
    return reads


def _format(a: GradArgs) -> str:
    """--format, else -o's extension, else table (csv with --points); checked before work."""
    if a.points_file is None:
        fmt = out.resolve(a.fmt, a.output, FORMATS, "table", "grad")
        if fmt in ("parquet", "arrow"):
            raise BackpropError(
                f"{fmt} holds one row per point: it is an output of --points FILE",
                hint="for one point use --format json or csv",
            )
        return fmt
    fmt = out.resolve(a.fmt, a.output, FORMATS, "csv", "grad")
    if fmt not in ROW_FORMATS:
        raise BackpropError(
            "--points writes one row per point: use --format csv, tsv or jsonl (or the "
            f"files parquet and arrow), not {fmt}"
        )
    return fmt


def run(a: GradArgs) -> int:
    """Differentiate, check, print; the exit code (0, 1 a check disagreed, 2 bad input)."""
    from .. import api
    from ..core.parse import parse_constant
    from ..io.files import refuse_inputs_as_outputs

    limits = Limits(max_length=a.max_length, allow_nonfinite=a.allow_nonfinite)
    try:
        unused = unused_options(a)  # said once the input is known to be good
        if a.points_file == "-" and "-" in (a.expression, a.file):
            raise BackpropError("stdin can hold the program or the points, not both")
        fmt = _format(a)
        refuse_inputs_as_outputs([("-o", a.output), ("--graph", a.picture_file)], _reads(a))
        model = inputs.ModelOptions(loss=a.loss, form=a.form, seed=a.seed, init=a.init)
        program, rest, expansion = inputs.load_model(
            a.expression, list(a.values or []), a.file, limits, model
        )
        if a.show_program:
            with output():
                sys.stdout.write(inputs.program_listing(program, expansion))
            return 0
        point = inputs.parse_values(rest, limits, program.warnings)
        if a.values_file is not None:
            from ..io.data import read_values

            point = {**read_values(a.values_file, "--values", a.allow_nonfinite), **point}
        if expansion is not None:
            point = inputs.spec_point(program, expansion, point, model)
        if a.points_file is not None:
            return _points(program, point, a, unused, fmt)
        if not a.torch_check and a.device != "cpu":
            raise BackpropError("--device needs the torch check; drop --no-torch")
        seed_grad = (
            None
            if a.seed_grad is None
            else parse_constant(a.seed_grad, what="--seed-grad", limits=limits)
        )
        if a.picture_file is not None or fmt in PICTURE_FORMATS:
            from ..render import picture as pictures

            if a.picture_file is not None:
                pictures.check_output(a.picture_file)
            if fmt in out.PICTURES:
                _need_dot()
            pictures.check_layout(pictures.picture(program.graph, None, GRAPH_NODES))
        with api.quiet():  # the warnings are printed below, after the checks of the input
            result = api.grad(
                program, point, wrt=_names(a.wrt), seed_grad=seed_grad, order=a.order,
                dtype=a.dtype, torch=a.torch_check, device=a.device, symbolic=a.symbolic,
                simplify=a.simplify, latex=a.latex or fmt in ("markdown", "latex"),  # math-ready
                mathml=fmt == "html", symbolic_timeout=a.symbolic_timeout, expand=a.expand,
                allow_nonfinite=a.allow_nonfinite,
            )  # fmt: skip
            report = result.report
        from ..render import numbers

        with numbers.precision(a.digits):
            if a.picture_file is not None:
                pic = pictures.picture(program.graph, report["variables_used"], GRAPH_NODES)
                folds = pictures.fold_notes(pic, GRAPH_NODES, "grad")
                for note in folds + pictures.render(pic, a.picture_file, dpi=a.dpi):
                    stderr(f"note: {note}")
            for warning in report["warnings"]:
                stderr(f"warning: {warning['message']}")
            if fmt in PICTURE_FORMATS:
                _draw(program, report, fmt, a.output, a.dpi)
            elif fmt == "html":  # the page: its step-through is worked out before writing
                page = result.to_html()
                with out.into(a.output), output():
                    sys.stdout.write(page)
            else:
                _write(report, fmt, a.max_rows, a.output)
    except BackpropError as exc:
        error_lines(exc)
        return exc.exit_code
    for warning in unused:  # said once the input was good, so an error comes first
        stderr(f"warning: {warning}")
    if not report["ok"]:
        report_disagreement(report)
        return EXIT_DISAGREE
    return 0


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [w.strip() for w in text.split(",") if w.strip()]


def _need_dot() -> None:
    """A picture file needs Graphviz: said before the work, not after it."""
    import shutil

    if shutil.which("dot") is None:
        raise BackpropError(
            "Graphviz's dot program is not installed, so pictures cannot be rendered",
            hint="install Graphviz (apt-get install graphviz, brew install graphviz); "
            "--format dot or mermaid prints the graph as text without it",
        )


def _write(report: dict[str, Any], fmt: str, max_rows: int, to: str | None = None) -> None:
    from ..render.gradient import to_csv, to_json, to_markdown

    with out.into(to), output():
        if fmt == "json":
            sys.stdout.write(to_json(report, "grad") + "\n")
        elif fmt == "jsonl":
            sys.stdout.write(out.compact(to_json(report, "grad")))
        elif fmt == "csv":
            sys.stdout.write(to_csv(report))
        elif fmt == "tsv":
            sys.stdout.write(to_csv(report, delimiter="\t"))
        elif fmt == "markdown":
            sys.stdout.write(to_markdown(report))
        elif fmt == "latex":
            from ..render.latex import grad_document

            sys.stdout.write(grad_document(report))
        else:
            print_rich(report, max_rows)


def _draw(program: Any, report: dict[str, Any], fmt: str, to: str | None, dpi: int | None) -> None:
    """The graph with its values and gradients as the result: DOT, Mermaid or a picture."""
    from ..render import picture as pictures

    pic = pictures.picture(program.graph, report["variables_used"], GRAPH_NODES)
    data: str | bytes
    if fmt == "dot":
        data = pictures.to_dot(pic)
    elif fmt == "mermaid":
        data = pictures.to_mermaid(pic)
    else:
        data, notes = pictures.layout(pic, fmt, dpi=dpi)
        for note in pictures.fold_notes(pic, GRAPH_NODES, "grad") + notes:
            stderr(f"note: {note}")
    with output():
        out.emit(to, data)


def _points(program: Any, fixed: dict[str, Any], a: GradArgs, unused: list[str], fmt: str) -> int:
    """`grad --points`: one row per point, streamed; problems on stderr, then the exit code."""
    from ..analyses import points
    from ..analyses.gradient import upstream
    from ..analyses.point import resolve_wrt
    from ..core.parse import parse_constant

    if a.order != 1:
        raise BackpropError("--order 2 is for one point; use backprop hessian per point")
    graph = program.graph
    for warning in program.warnings:
        stderr(f"warning: {warning}")
    for name in fixed:
        if name not in graph.variables:
            stderr(f"warning: a value was given for '{name}', but the expression does not use it")
    varying = [name for name in graph.variables if name not in fixed]
    if not varying:
        raise BackpropError(
            "every variable has a value, so --points has nothing to vary",
            hint="drop NAME=VALUE for the variables the file gives",
        )
    chosen = resolve_wrt(graph, _names(a.wrt))
    plan = points.plan(graph, fixed, varying, chosen, a.dtype, 1.0)
    plan.seed = upstream(
        graph,
        plan.cores[graph.output],
        None
        if a.seed_grad is None
        else parse_constant(
            a.seed_grad,
            what="--seed-grad",
            limits=Limits(max_length=a.max_length, allow_nonfinite=a.allow_nonfinite),
        ),
    )
    if a.dtype != "float64":
        from ..core import engine

        engine.check_constants(graph, dtype=a.dtype)
    what = "stdin" if a.points_file == "-" else str(a.points_file)
    used = points.constants_in(graph)
    reader, stream = points.open_points(
        str(a.points_file), what, varying, fixed, a.allow_nonfinite, used, a.dtype
    )
    done: list[Any] = []  # stays empty when the reader stops early (| head)
    try:
        try:
            checker = points.TorchCheck(plan, a.device) if a.check_points else None
            if checker is not None:
                checker.unit = reader.unit
            if checker is not None and a.device != "cpu":
                from ..checks.autograd import check_device

                check_device(a.device, a.dtype)
            with out.into(a.output), output():
                done.append(points.run(plan, reader, fmt, sys.stdout, a.on_error, checker))
        finally:
            for note in reader.warnings:
                stderr(f"warning: {note}")
    finally:
        stream.close()
    for warning in unused:
        stderr(f"warning: {warning}")
    return _points_summary(done[0], checker, reader.unit) if done else 0


def _points_summary(summary: Any, checker: Any, unit: str = "line") -> int:
    for bad in summary.skipped[:10]:
        stderr(f"skipped: {unit} {bad.line}: {bad.message}")
    if summary.skipped:
        more = len(summary.skipped) - 10
        stderr(
            f"skipped {len(summary.skipped):,} bad row{'s' if len(summary.skipped) > 1 else ''}"
            + (f" ({more:,} more not shown)" if more > 0 else "")
            + f"; wrote {summary.rows:,}"
        )
    if summary.nonfinite:
        lines = ", ".join(map(str, summary.nonfinite_lines))
        stderr(
            f"warning: {summary.nonfinite:,} point{'s have' if summary.nonfinite > 1 else ' has'} "
            f"a nan or infinite value or gradient ({unit} {lines}"
            + (", …)" if summary.nonfinite > len(summary.nonfinite_lines) else ")")
        )
    if checker is None:
        return 0
    from ..render.numbers import plural

    if summary.check_mismatch_count:
        count = summary.check_mismatch_count
        stderr(
            f"disagreement: torch autograd ({checker.about}): {plural(count, 'gradient')} "
            f"{'disagrees' if count == 1 else 'disagree'}, first at "
            + ", ".join(summary.check_mismatches)
        )
        return EXIT_DISAGREE
    inconclusive = (
        f"; {summary.check_inconclusive:,} too ill-conditioned to compare"
        if summary.check_inconclusive
        else ""
    )
    stderr(
        f"✓ torch autograd ({checker.about}): {plural(summary.check_compared, 'gradient')} of "
        f"{plural(summary.rows, 'point')} {'agrees' if summary.check_compared == 1 else 'agree'}"
        f", max error {summary.check_max_error:.2g}{inconclusive}"
    )
    return 0
