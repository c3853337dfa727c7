"""How `backprop train` reads: the course's log lines, a summary table, a loss curve drawn in
the terminal, and JSON lines for pipelines. Returns strings and renderables; never prints.

Numbers follow --digits (render/numbers.py): 4 significant digits by default
(`progress: 0 7.316`); `--digits 0` prints the log lines as the course's print() does
(`progress: 0 7.315943717956543`), digit for digit. JSON lines carry every digit."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from . import numbers
from .gradient import schema_id

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from ..analyses.models import Model
    from ..analyses.train import Result, Settings


def _py(x: float) -> str:
    """A number in a log line: as the course's print() shows it (Python's repr of a float,
    4.0 and 7.315943717956543) with --digits 0, else with the --digits setting (4, 7.316)."""
    if numbers.digits() == numbers.FULL:
        return repr(float(x))
    return numbers.number(x)


def progress_line(epoch: int, loss: float) -> str:
    return f"progress: {epoch} {_py(loss)}"


def grad_line(inputs: list[float], target: float, grads: list[float]) -> str:
    return "\tgrad: " + " ".join(_py(v) for v in [*inputs, target, *grads])


def batch_grad_line(n: int, grads: dict[str, Any], params: list[str]) -> str:
    import numpy as np

    shown = ", ".join(
        f"{p}={_py(float(grads[p]))}"
        if np.ndim(grads[p]) == 0
        else f"{p}={_compact(np.asarray(grads[p], dtype=np.float64), 'float64')}"
        for p in params
    )
    return f"\tgrad (batch of {n}): {shown}"


def predict_line(when: str, inputs: list[float], value: float) -> str:
    shown = " ".join(_num_as_typed(v) for v in inputs)
    return f"predict ({when} training) {shown} {_py(value)}"


def _num_as_typed(x: float) -> str:
    """An input the user gave (--predict 4, --lr 0.01): every digit, as typed."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def header(model: Model, n: int, settings: Settings, data_note: str) -> list[str]:
    lines = [
        f"model: ŷ = {model.formula}" if "\n" not in model.formula else "model:",
        *(f"  {line}" for line in model.formula.splitlines() if "\n" in model.formula),
        f"loss: {model.loss} (mean over each batch)",
        f"data: {n} samples{data_note}; target {model.target}; inputs {', '.join(model.features)}",
    ]
    batch = "full batch" if settings.batch_size <= 0 else f"batch size {settings.batch_size}"
    lines.append(
        f"training: {settings.optimizer}, lr {_num_as_typed(settings.lr)}, "
        f"{numbers.plural(settings.epochs, 'epoch')}, {batch}, {settings.dtype}, "
        f"engine {settings.engine}" + (", shuffled" if settings.shuffle else "")
    )
    return lines


def summary(model: Model, result: Result, settings: Settings) -> RenderableType:
    from rich.table import Table

    table = Table(title="Parameters", title_justify="left")
    table.add_column("parameter")
    table.add_column("initial", justify="right")
    table.add_column("trained", justify="right", style="bold green")
    for name in model.params:
        table.add_row(
            name,
            _param(model.init[name], settings.dtype),
            _param(result.params[name], settings.dtype),
        )
    return table


def _param(value: Any, dtype: str) -> str:
    """A parameter with the --digits setting (every digit with 0), an array compactly."""
    import numpy as np

    if np.ndim(value) == 0:
        return numbers.number(float(value), dtype=dtype)
    return _compact(np.asarray(value, dtype=np.float64), dtype)


def _compact(array: Any, dtype: str, items: int = 6) -> str:
    """An array's elements when there are at most `items`, else its shape and the first
    and last elements: (3, 2) [[0.1, 0.2], …]."""
    import numpy as np

    def cell(a: Any) -> str:
        if a.ndim == 0:
            return numbers.number(float(a), dtype=dtype)
        if a.size <= items:
            return "[" + ", ".join(cell(b) for b in a) + "]"
        if a.ndim == 1:
            head = [cell(b) for b in a[: max(1, items // 2)]]
            return "[" + ", ".join([*head, "…", cell(a[-1])]) + "]"
        return "[" + ", ".join([cell(a[0]), *(["…"] if a.shape[0] > 1 else [])]) + "]"

    array = np.asarray(array, dtype=np.float64)
    text = cell(array)
    return text if array.size <= items else f"{tuple(array.shape)} {text}"


def status_lines(result: Result, settings: Settings) -> list[str]:
    lines = []
    if result.loss is not None:
        loss = numbers.number(result.loss, dtype=settings.dtype)
        lines.append(f"loss over all data after training: {loss}")
    if result.check_max_error is not None:
        verdict = "agree" if result.check_ok else "DISAGREE"
        lines.append(
            f"torch autograd check, every step: gradients {verdict} "
            f"(largest difference {result.check_max_error:.2g})"
        )
    return lines


CURVE_COLOR = 9  # bright red, as in the --plot picture


def curve(
    per_epoch: list[tuple[int, float]], width: int = 64, height: int = 16, color: bool = False
) -> str:
    """The loss against the epoch, drawn by plotext: braille dots (2 × 4 per character
    cell) joined into a line, framed axes with ticks, a log scale when the loss falls more
    than a hundredfold. `width` and `height` count every character cell, tick labels and
    title included (at least 20 × 6). No colour codes unless `color` asks for them."""
    points = [(epoch, loss) for epoch, loss in per_epoch if math.isfinite(loss)]
    if len(points) < 2:
        return ""
    try:
        import plotext as plt  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - plotext is a dependency
        return f"(no loss curve: plotext cannot be imported: {str(exc).splitlines()[0]})"
    if not hasattr(plt, "marker"):  # pragma: no cover - plotext 5 draws with another API
        return "(no loss curve: it needs plotext 6 or later: pip install -U plotext)"

    width, height = max(20, width), max(6, height)
    epochs = [epoch for epoch, _ in points]
    losses = [loss for _, loss in points]
    log = min(losses) > 0 and max(losses) / min(losses) > 100
    # plotext's own log scale misplaces ticks given by hand, so the curve is drawn in
    # log10(loss) on a linear axis whose ticks are labelled with the powers of ten.
    ys = [math.log10(v) for v in losses] if log else losses
    fig = plt.figure
    fig.clear()
    plt.terminal.limit(False, False)  # the size asked for, not the terminal's
    try:
        marker = plt.marker("braille")
        if color:
            marker.fill(CURVE_COLOR)
        fig.draw(fig.signal(epochs, ys, marker=marker).lines())
        fig.plot_size(width, height)
        fig.theme("colorless")
        scale = "log" if log else "linear"
        titles = (f"loss ({scale} scale) by epoch", f"loss ({scale} scale)", f"loss ({scale})")
        fig.title(next((t for t in titles if len(t) <= width - 2), "loss"))
        y_ticks = _decades(min(ys), max(ys), height // 3) if log else _ticks(ys, height // 2)
        fig.ruler(1).ticks(*y_ticks)
        fig.ruler(0).ticks(*_epoch_ticks(epochs[0], epochs[-1], max(2, width // 12)))
        # Limits given by hand: with ticks given, plotext's own limits may leave data out.
        lo, hi = min(ys), max(ys)
        pad = 0.0 if hi > lo else max(1.0, abs(lo)) / 10
        fig.ruler(1).lim(lo - pad, hi + pad)
        fig.ruler(0).lim(epochs[0], epochs[-1])
        text = str(fig.build().string(colorless=not color))
    finally:
        fig.clear()
        plt.terminal.limit()
    return "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines())


def curve_renderable(per_epoch: list[tuple[int, float]], width: int = 64, height: int = 16) -> Text:
    """`curve` in colour for Rich, which drops the colour where the output is not a
    terminal (a pipe, a file, NO_COLOR)."""
    from rich.text import Text

    return Text.from_ansi(curve(per_epoch, width, height, color=True))


def _step(span: float, count: int) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts `span` into about `count`."""
    raw = span / max(1, count)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def _tick_label(x: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step)))
    text = f"{x:.{decimals}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text == "-0" else text


def _ticks(ys: list[float], count: int) -> tuple[list[float], list[str]]:
    lo, hi = min(ys), max(ys)
    if hi - lo <= 0:
        return [lo], [numbers.number(lo)]
    step = _step(hi - lo, count)
    first = math.ceil(lo / step)
    positions = [k * step for k in range(first, math.floor(hi / step) + 1)]
    return positions, [_tick_label(p, step) for p in positions]


def _decades(lo: float, hi: float, count: int) -> tuple[list[float], list[str]]:
    """Ticks at powers of ten (in log10 units), every few decades when there are many."""
    decades = list(range(math.ceil(lo), math.floor(hi) + 1))
    every = max(1, math.ceil(len(decades) / max(1, count)))
    shown = decades[::-1][::every][::-1]  # the top decade always shown
    return [float(d) for d in shown], [numbers.number(10.0**d, 3) for d in shown]


def _epoch_ticks(first: int, last: int, count: int) -> tuple[list[float], list[str]]:
    """Whole epochs at a round step, and the last epoch."""
    step = max(1, int(_step(max(1, last - first), count)))
    positions = list(range(first - first % step + (step if first % step else 0), last + 1, step))
    if not positions or positions[0] != first:
        positions.insert(0, first)
    if last - positions[-1] >= step / 2:
        positions.append(last)
    elif positions[-1] != last:
        positions[-1] = last
    return [float(p) for p in positions], [str(p) for p in positions]


def jsonl_epoch(entry: dict[str, Any]) -> str:
    """An epoch's line; its parameters come as the trainer holds them (numpy values)."""
    import numpy as np

    params = {k: np.asarray(v, dtype=np.float64).tolist() for k, v in entry["params"].items()}
    line = {"schema": schema_id("train-epoch"), **entry, "params": params}
    return json.dumps(_clean(line), allow_nan=False)


def jsonl_final(result: Result, predictions: list[dict[str, Any]], model: Model) -> str:
    final = {
        "schema": schema_id("train-final"),
        "final": True,
        "params": result.params,
        "loss": result.loss,
        "predictions": predictions,
        "epochs": result.epochs_run,
        "diverged_at": result.diverged_at,
        "interrupted": result.interrupted,
        "model": model.formula,
        "loss_function": model.loss,
    }
    if result.check_max_error is not None:
        final["check"] = {"ok": result.check_ok, "max_error": result.check_max_error}
    return json.dumps(_clean(final), allow_nan=False)


def document(
    model: Model,
    result: Result,
    settings: Settings,
    history: list[dict[str, Any]],
    data_size: int,
    predictions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole training as one JSON-ready document (`train --format json`, and the API's
    `TrainResult.to_dict()`): the model, the settings, the history of logged epochs, the
    final parameters and loss, the predictions asked for, and how it ended."""
    chosen = ("epochs", "lr", "optimizer", "batch_size", "shuffle", "seed", "dtype", "engine")
    shown = {name: getattr(settings, name) for name in chosen}
    shown.update(device=settings.device, check=settings.check, log_every=settings.log_every)
    check = None
    if result.check_ok is not None or result.check_max_error is not None:
        check = {"ok": result.check_ok, "max_error": result.check_max_error}
    doc = {
        "schema": schema_id("train"),
        "model": model.name,
        "formula": model.formula,
        "loss_name": model.loss,
        "parameters": list(model.params),
        "settings": shown,
        "data_size": data_size,
        "epochs": result.epochs_run,
        "loss": result.loss,
        "params": result.params,
        "history": history,
        "predictions": list(predictions or []),
        "diverged_at": result.diverged_at,
        "interrupted": result.interrupted,
        "check": check,
        "warnings": list(result.warnings),
    }
    cleaned: dict[str, Any] = _clean(doc)
    return cleaned


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


MARKDOWN_HISTORY = 200  # epochs shown in Markdown's history table; the JSON keeps them all


def markdown(doc: dict[str, Any]) -> str:
    """The train document (see `document`) as Markdown for a notebook or a report: the model
    and settings, the parameters before and after, the predictions, and the loss by epoch
    (the first and last epochs when there are more than MARKDOWN_HISTORY)."""
    n = numbers.number
    settings = doc["settings"]
    lines = [
        f"**{doc['model']}**: $\\hat y$ = `{'; '.join(doc['formula'].split(chr(10)))}`, "
        f"loss {doc['loss_name']}, "
        f"{numbers.plural(doc['data_size'], 'sample')}",
        "",
        f"{settings['optimizer']}, lr {n(settings['lr'])}, "
        f"{numbers.plural(doc['epochs'], 'epoch')}, batch size {settings['batch_size']}, "
        f"{settings['dtype']}",
        "",
        "| parameter | trained |",
        "|---|---:|",
    ]
    for name in doc["parameters"]:
        lines.append(f"| `{name}` | {numbers.number_any(doc['params'][name])} |")
    lines += ["", f"loss over all data after training: **{n(doc['loss'])}**", ""]
    if doc["predictions"]:
        lines += ["| x | ŷ |", "|---|---:|"]
        for p in doc["predictions"]:
            lines.append(f"| {numbers.number_any(p['x'])} | {n(p['y'])} |")
        lines.append("")
    history = doc["history"]
    if history:
        half = MARKDOWN_HISTORY // 2
        shown = history if len(history) <= MARKDOWN_HISTORY else history[:half] + history[-half:]
        lines += ["| epoch | loss |", "|---:|---:|"]
        for k, row in enumerate(shown):
            if len(history) > MARKDOWN_HISTORY and k == half:
                lines.append(f"| … | {numbers.plural(len(history) - 2 * half, 'epoch')} more |")
            lines.append(f"| {row['epoch']} | {n(row['loss'])} |")
        lines.append("")
    if doc.get("diverged_at") is not None:
        lines += [f"diverged at epoch {doc['diverged_at']}", ""]
    for warning in doc.get("warnings") or []:
        lines += [f"- warning: {warning}"]
    return "\n".join(lines).rstrip("\n") + "\n"
