"""`backprop train`: the PyTorch course's models (or any model expression) trained step by step.
Only `register` imports typer, so the quick path (entry.py) runs the command without it."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

from ..core.errors import BackpropError
from ..io import inputs
from . import common
from . import output as out
from .common import (
    DType,
    _console,
    _fail,
    _form,
    _output,
    _stderr,
)
from .terminal import EXIT_DISAGREE, leave

if TYPE_CHECKING:
    import typer


class TrainFormat(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    tsv = "tsv"
    markdown = "markdown"
    html = "html"
    svg = "svg"
    png = "png"
    pdf = "pdf"


# what training writes: the log (table), its lines (jsonl), one document (json), the
# history (csv, tsv), a page (html) or the loss curve (svg, png, pdf); --list, the models
# as a listing
FORMATS = tuple(f.value for f in TrainFormat)
LIST_FORMATS = ("table", "json", "jsonl", "csv", "tsv", "markdown")
LIST_COLUMNS = ("model", "formula", "loss", "about")


class Optim(str, Enum):
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"


class Engine(str, Enum):
    graph = "graph"
    torch = "torch"


TRAIN_EXAMPLES = """\
[bold]Examples[/bold]

  The PyTorch course's y = w*x loop, its printed numbers digit for digit:
    backprop train linear --epochs 100 --digits 0

  An affine model with a larger step:
    backprop train affine --epochs 200 --lr 0.02

  Your own data and Adam:
    backprop train quadratic --x 1,2,3,4 --y 6,17,34,57 --optimizer adam

  A small network:
    backprop train mlp --hidden 3 --x 1,2,3,4 --y 0,1,1,0 --epochs 500

  A model spec (the chain-rule network) on columns x1,x2,y of a file:
    backprop train mlp:2-3-1 --data examples/xor.csv --epochs 500 --lr 0.5

  Any expression, from a starting point:
    backprop train "w1*x**2 + w2*x + b" --x 1,2,3 --y 6,17,34 --init w1=0,b=0

  The losses, from JSON lines:
    backprop train linear --epochs 100 --format jsonl | jq .loss

  Settings, history and final parameters as one JSON document:
    backprop train linear --epochs 20 --format json | jq .params

  The loss curve as a picture, and the history as CSV:
    backprop train affine --epochs 200 --lr 0.02 -o loss.svg
    backprop train affine --epochs 200 --lr 0.02 -o history.csv

  Save the trained parameters (backprop grad --values reads them):
    backprop train linear --save params.json

  The built-in models:
    backprop train --list
"""


def train(
    model: Annotated[
        str | None,
        typer.Argument(
            help="linear (default), affine, quadratic, logistic, mlp (--hidden), a model spec "
            "such as mlp:2-3-1 or mlp:2-3-1:tanh, or an expression.",
            show_default=False,
        ),
    ] = None,
    list_models: Annotated[bool, typer.Option("--list", help="List the models.")] = False,
    x: Annotated[str | None, typer.Option("--x", metavar="1,2,3", help="Inputs.")] = None,
    y: Annotated[str | None, typer.Option("--y", metavar="2,4,6", help="Targets.")] = None,
    data_file: Annotated[
        str | None,
        typer.Option("--data", metavar="FILE.csv", help="CSV with a header row ('-': stdin)."),
    ] = None,
    target: Annotated[str, typer.Option("--target", help="The CSV column to predict.")] = "y",
    loss: Annotated[
        str | None,
        typer.Option("--loss", help="mse, mae, huber, bce, or sums such as mse+mae."),
    ] = None,
    optimizer: Annotated[Optim, typer.Option("--optimizer")] = Optim.sgd,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Learning rate.")] = 0.01,
    epochs: Annotated[int, typer.Option("--epochs", min=0, max=100_000_000)] = 100,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=0,
            help="1: per-sample updates (the default for linear); 0: full batch (the default "
            "otherwise).",
        ),
    ] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle", help="Reshuffle every epoch.")] = False,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, max=2**63 - 1, help="Random initialisation and shuffling."),
    ] = 0,
    init: Annotated[
        str | None,
        typer.Option("--init", metavar="w=1,b=0|FILE.json", help="Initial parameters."),
    ] = None,
    hidden: Annotated[
        int | None,
        typer.Option(
            "--hidden", min=1, max=10_000, help="mlp units (default 3).", show_default=False
        ),
    ] = None,
    engine_name: Annotated[
        Engine, typer.Option("--engine", help="graph: our engine; torch: torch autograd.")
    ] = Engine.graph,
    device: Annotated[str, typer.Option("--device", help="torch device (--engine torch).")] = "cpu",
    check: Annotated[
        bool, typer.Option("--check", help="Recompute every step with torch autograd.")
    ] = False,
    dtype: Annotated[
        DType, typer.Option("--dtype", help="float32 by default, as PyTorch's.")
    ] = DType.float32,
    log_every: Annotated[
        int | None, typer.Option("--log-every", min=1, metavar="K", help="Log every K epochs.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also print every step's gradients.")
    ] = False,
    predict_at: Annotated[
        str | None,
        typer.Option("--predict", metavar="4|a=1,b=2", help="Predict here, before and after."),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="FILE",
            help="Also draw the loss curve (.png .svg .pdf); -o loss.svg draws it alone.",
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    save: Annotated[
        str | None,
        typer.Option(
            "--save",
            metavar="FILE.json",
            help="Also write the trained parameters as a values file (grad --values reads it).",
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    fmt: Annotated[
        TrainFormat | None,
        typer.Option(
            "--format",
            help="Output format (default: table): json is one document (settings, history, "
            "final parameters), csv and tsv the history, markdown a report, html a page (the "
            "loss curve, the parameters' paths, the first and last epoch's gradients), svg, "
            "png and pdf the loss curve. "
            "Without it, -o's extension decides.",
            show_default=False,
            rich_help_panel=out.PANEL,
        ),
    ] = None,
    output: out.Output = None,
    digits: out.Digits = None,
    form: common._Form = None,
    show_program: Annotated[
        bool,
        typer.Option("--show-program", help="Print the training program and stop."),
    ] = False,
    max_data: Annotated[
        int,
        typer.Option(
            "--max-data",
            min=1,
            metavar="N",
            help="Refuse more than N data values (rows × columns, the target included).",
        ),
    ] = 10_000_000,
    max_params: Annotated[
        int,
        typer.Option(
            "--max-params", min=1, metavar="N", help="Refuse a model of more than N parameters."
        ),
    ] = 1_000_000,
    max_step_elements: Annotated[
        int,
        typer.Option(
            "--max-step-elements",
            min=1,
            metavar="N",
            help="Refuse a training step whose batch would hold more than N array elements.",
        ),
    ] = 20_000_000,
) -> None:
    """Train a tiny model step by step on our graph engine (forward, backward, step),
    cross-checked against torch if asked, with the PyTorch course's log lines and a loss curve.

    Exit codes: 0 trained, 1 diverged or the torch check disagreed, 2 bad usage or data,
    130 interrupted (the summary is still printed).
    """
    from ..analyses import models
    from ..analyses import train as training
    from ..io.data import load
    from ..render import numbers

    given = fmt and fmt.value
    if list_models:
        try:
            chosen = out.resolve(given, output, LIST_FORMATS, "table", "train --list")
        except BackpropError as exc:
            _fail(exc)
        with out.into(output), _output():
            _list_models(chosen)
        return
    try:
        chosen = out.resolve(given, output, FORMATS, "table", "train")
        # Every budget is decided before the thing it bounds is made: the data while it is
        # read, the parameters from their shapes, a step from the graph's shapes.
        data, note = load(x, y, data_file, target, max_values=max_data)
        spec = model or "linear"
        built = models.build(
            spec,
            data,
            loss=loss,
            hidden=hidden or 3,
            seed=seed,
            max_params=max_params,
            form=_form(form),
        )
        if show_program:
            with _output():
                sys.stdout.write(built.program.rstrip("\n") + "\n")
            return
        notes = [
            f"the data column {column!r} is not used by the model"
            for column in models.unused_columns(built)
        ]
        if init is not None:
            built = inputs.with_init(built, init)
            models.check_size(built, max_params)
            units = _hidden_units(built)
            if hidden is not None and units is not None and units != hidden:
                raise BackpropError(
                    f"--hidden {hidden}, but --init gives {units} hidden units (the rows of W1)",
                    hint="drop --hidden, or initialise W1, b1 and W2 for that many units",
                )
        settings = training.Settings(
            epochs=epochs,
            lr=lr,
            optimizer=optimizer.value,
            batch_size=batch_size if batch_size is not None else (1 if spec == "linear" else 0),
            shuffle=shuffle,
            seed=seed,
            dtype=dtype.value,
            engine=engine_name.value,
            device=device,
            check=check,
            log_every=log_every or max(1, epochs // 100),
            verbose=verbose,
            max_step_elements=max_step_elements,
        )
        if not math.isfinite(lr):
            raise BackpropError(f"--lr must be a finite number, not {lr}")
        training.check_budget(built, len(data), settings)
        if predict_at is None and x is None and data_file is None and len(built.features) == 1:
            predict_at = "4"  # the course predicts at x = 4
        points = inputs.predict_points(predict_at, built)
        if plot is not None:
            from ..render.plot import check_path

            check_path(plot)
        if save is not None:
            inputs.check_writable(save, "--save")
        from ..io.files import refuse_inputs_as_outputs

        refuse_inputs_as_outputs(
            [("--save", save), ("--plot", plot), ("-o", output)],
            [
                ("--data", data_file),
                ("--init", init if init and inputs.init_is_file(init) else None),
            ],
        )
        if device != "cpu" and engine_name is Engine.graph and not check:
            raise BackpropError("--device is for --engine torch or --check")
        training.check_fits(data, settings.dtype)
        if device != "cpu":
            from ..checks.autograd import check_device

            check_device(device, settings.dtype)
        if hidden is not None and spec != "mlp":
            notes.append("--hidden does nothing here: it is for the mlp model")
        for warning in notes:  # said once the input is known to be good
            _stderr(f"warning: {warning}")
        with numbers.precision(digits):
            with out.into(output):
                with _output():
                    trained = _run_training(built, data, settings, note, points, chosen, verbose)
                _finish_training(built, trained, settings, points, plot, save, chosen)
            _training_verdict(trained.result, settings)
    except BackpropError as exc:
        _fail(exc)


def _list_models(fmt: str) -> None:
    from ..analyses.models import listing
    from ..render.gradient import code, schema_id, with_schema

    rows = listing()
    if fmt == "jsonl":
        for row in rows:
            print(json.dumps({"schema": schema_id("model"), **row}, ensure_ascii=False))
        return
    if fmt == "json":
        document = with_schema("models", {"models": rows})
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return
    if fmt in ("csv", "tsv"):
        cells = [[row[c] for c in LIST_COLUMNS] for row in rows]
        sys.stdout.write(out.rows_text(LIST_COLUMNS, cells, out.delimiter(fmt)))
        return
    if fmt == "markdown":
        lines = ["| model | formula | default loss | about |", "|---|---|---|---|"]
        lines += [
            f"| {code(r['model'])} | {code(r['formula'])} | {r['loss']} | {r['about']} |"
            for r in rows
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    from rich.table import Table

    table = Table(title="Models for backprop train", title_justify="left")
    for column in ("model", "formula", "default loss", "about"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["model"], row["formula"], row["loss"], row["about"])
    _console().print(table)


def _hidden_units(built: Any) -> int | None:
    """The mlp's hidden units as its parameters have them (None for other models)."""
    if built.name != "mlp":
        return None
    import numpy as np

    shape = np.shape(built.init.get("W1"))
    return int(shape[0]) if len(shape) == 2 else None


def _run_training(
    built: Any,
    data: Any,
    settings: Any,
    note: str,
    points: list[dict[str, float]],
    fmt: str,
    verbose: bool,
) -> Any:
    """Train, printing the log (table) or the epochs' JSON lines (jsonl) as it goes; the
    API's TrainResult (with its history for json, csv and tsv)."""
    import numpy as np

    from .. import api
    from ..analyses import train as training
    from ..render import train as view

    table = fmt == "table"
    lines = fmt == "jsonl"
    quiet = False

    def say(line: str) -> None:
        """Print a line; a reader that stops early stops only the output."""
        nonlocal quiet
        if quiet:
            return
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            # Training goes on (its results may be --save'd); the rest of the output is dropped.
            quiet = True
            with suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    if table:
        for line in view.header(built, len(data), settings, note):
            say(line)
        for point in points:
            before = training.predict(built, built.init, _columns(point), settings.dtype)
            say(view.predict_line("before", list(point.values()), float(before[0])))

    def on_event(kind: str, info: dict[str, Any]) -> None:
        if kind == "epoch" and (table or lines):
            say(
                view.progress_line(info["epoch"], info["loss"]) if table else view.jsonl_epoch(info)
            )
        elif kind == "grad" and verbose and table:
            env, grads = info["env"], info["grads"]
            scalars = all(np.ndim(grads[p]) == 0 for p in built.params)
            if len(info["idx"]) == 1 and scalars and built.matrix is None:
                inputs = [float(env[f][0]) for f in built.features]
                gs = [float(np.ravel(grads[p])[0]) for p in built.params]
                say(view.grad_line(inputs, float(env[built.target][0]), gs))
            else:
                say(view.batch_grad_line(len(info["idx"]), grads, built.params))

    with _progress(table, settings.epochs) as advance:

        def with_progress(kind: str, info: dict[str, Any]) -> None:
            if kind == "tick":
                advance()
            else:
                on_event(kind, info)

        with api.quiet():  # its warnings are printed with the verdict
            return api.train(
                built, data=data, epochs=settings.epochs, lr=settings.lr,
                optimizer=settings.optimizer, batch_size=settings.batch_size,
                shuffle=settings.shuffle, seed=settings.seed, dtype=settings.dtype,
                engine=settings.engine, device=settings.device, check=settings.check,
                log_every=settings.log_every, verbose=settings.verbose,
                max_step_elements=settings.max_step_elements, on_event=with_progress,
                history=fmt in ("json", "csv", "tsv", "markdown", "html"),
            )  # fmt: skip


def _columns(point: dict[str, float]) -> dict[str, Any]:
    import numpy as np

    return {name: np.array([value]) for name, value in point.items()}


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    """A Rich progress bar on stderr, only where a person watches a terminal."""
    if not (enabled and sys.stderr.isatty() and total > 1):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task("training", total=total)
        yield lambda: bar.advance(task)


def _finish_training(
    built: Any,
    trained: Any,
    settings: Any,
    points: list[dict[str, float]],
    plot: str | None,
    save: str | None,
    fmt: str,
) -> None:
    from ..analyses import train as training
    from ..render import train as view

    result = trained.result
    predictions = []
    for point in points:
        after = training.predict(built, result.params, _columns(point), settings.dtype)
        x_shown: Any = next(iter(point.values())) if len(point) == 1 else point
        predictions.append({"x": x_shown, "y": float(after[0])})
    with _output():
        if fmt == "jsonl":
            print(view.jsonl_final(result, predictions, built))
        elif fmt == "json":
            print(trained.to_json(predictions))
        elif fmt == "markdown":
            sys.stdout.write(view.markdown(trained.to_dict(predictions)))
        elif fmt == "html":
            sys.stdout.write(trained.to_html(predictions))
        elif fmt in ("csv", "tsv"):
            sys.stdout.write(history_rows(trained, out.delimiter(fmt)))
        elif fmt in out.PICTURES:
            out.write(None, _curve_picture(result.curve, f"{built.name}: {built.loss} loss", fmt))
        else:
            for point, prediction in zip(points, predictions, strict=True):
                print(view.predict_line("after", list(point.values()), prediction["y"]))
            console = _console()
            console.print(view.summary(built, result, settings))
            for line in view.status_lines(result, settings):
                console.print(line)
            drawn = view.curve_renderable(result.curve, width=min(72, console.width))
            if drawn.plain:
                console.print(drawn)
    if save is not None:
        _write_json(save, result.params)
    if plot is not None:
        from ..render.plot import loss_plot

        loss_plot(result.curve, plot, f"{built.name}: {built.loss} loss")


def history_rows(trained: Any, delimiter: str = ",") -> str:
    """The history, one row per logged epoch: its number, its loss and every parameter
    element after it (w, b; W1[0,0], …), every number in full. Past the history's budget
    an epoch keeps its loss and its parameters' cells are empty."""
    import numpy as np

    from ..render.numbers import full

    params = trained.result.params
    names = [n for n in trained.model.params if n in params] + [
        n for n in params if n not in trained.model.params
    ]
    shapes = {name: np.shape(params[name]) for name in names}
    header: list[str] = ["epoch", "loss"]
    for name, shape in shapes.items():
        header += (
            [name]
            if not shape
            else [f"{name}[{','.join(map(str, i))}]" for i in np.ndindex(*shape)]
        )
    rows = []
    for epoch in trained.history:
        cells: list[Any] = [epoch.epoch, full(epoch.loss)]
        for name, shape in shapes.items():
            flat = (
                np.ravel(np.asarray(epoch.params[name], dtype=np.float64)) if epoch.params else None
            )
            width = int(np.prod(shape)) if shape else 1
            cells += [None] * width if flat is None else [full(float(v)) for v in flat]
        rows.append(cells)
    return out.rows_text(header, rows, delimiter)


def _curve_picture(curve: list[tuple[int, float]], title: str, fmt: str) -> bytes:
    """The loss curve as SVG, PNG or PDF bytes (matplotlib, as --plot)."""
    import io

    from ..render.plot import loss_figure

    buffer = io.BytesIO()
    loss_figure(curve, title).savefig(buffer, format=fmt)
    return buffer.getvalue()


def _write_json(path: str, params: dict[str, float]) -> None:
    from ..io.files import write_atomically

    write_atomically(path, json.dumps(params, indent=2) + "\n")


def _training_verdict(result: Any, settings: Any) -> None:
    for warning in result.warnings:
        _stderr(f"warning: {warning}")
    if result.diverged_at is not None:
        _stderr(
            f"error: training diverged at epoch {result.diverged_at}: the loss or a parameter "
            f"became nan or infinite (lr {settings.lr!r}); try a smaller --lr. "
            "The last finite parameters are kept."
        )
        leave(EXIT_DISAGREE)
    if result.check_ok is False:
        _stderr(
            "disagreement: torch autograd's gradients differ from the engine's "
            f"(largest difference {result.check_max_error:.3g})"
        )
        leave(EXIT_DISAGREE)
    if result.interrupted:
        from ..render.numbers import plural

        epochs = plural(result.epochs_run, "epoch")
        _stderr(f"interrupted after {epochs}; the summary shows what was trained")
        leave(130)


def register(app: typer.Typer) -> None:
    global typer  # the signature's annotations name typer: typer reads them from here
    import typer

    app.command(epilog=TRAIN_EXAMPLES)(train)
