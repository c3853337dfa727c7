"""How `backprop train` reads: the course's log lines, a summary table, a loss curve drawn in
the terminal, and JSON lines for pipelines. Returns strings and renderables; never prints."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from .gradient import fmt, short_any

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ..analyses.models import Model
    from ..analyses.train import Result, Settings


def _py(x: float) -> str:
    """A number as the course's print() shows it (Python's repr of a float)."""
    return repr(float(x))


def progress_line(epoch: int, loss: float) -> str:
    return f"progress: {epoch} {_py(loss)}"


def grad_line(inputs: list[float], target: float, grads: list[float]) -> str:
    return "\tgrad: " + " ".join(_py(v) for v in [*inputs, target, *grads])


def batch_grad_line(n: int, grads: dict[str, Any], params: list[str]) -> str:
    import numpy as np

    shown = ", ".join(
        f"{p}={float(grads[p])!r}"
        if np.ndim(grads[p]) == 0
        else f"{p}={short_any(np.asarray(grads[p]).tolist(), 'float64', 6)}"
        for p in params
    )
    return f"\tgrad (batch of {n}): {shown}"


def predict_line(when: str, inputs: list[float], value: float) -> str:
    shown = " ".join(_num_as_typed(v) for v in inputs)
    return f"predict ({when} training) {shown} {_py(value)}"


def _num_as_typed(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else _py(x)


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
        f"{settings.epochs} epochs, {batch}, {settings.dtype}, engine {settings.engine}"
        + (", shuffled" if settings.shuffle else "")
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
    """A parameter: every digit of a number, a compact form of an array."""
    import numpy as np

    if np.ndim(value) == 0:
        return fmt(float(value), dtype)
    return short_any(np.asarray(value, dtype=np.float64).tolist(), dtype, 6)


def status_lines(result: Result, settings: Settings) -> list[str]:
    lines = []
    if result.loss is not None:
        lines.append(f"loss over all data after training: {fmt(result.loss, settings.dtype)}")
    if result.check_max_error is not None:
        verdict = "agree" if result.check_ok else "DISAGREE"
        lines.append(
            f"torch autograd check, every step: gradients {verdict} "
            f"(largest difference {result.check_max_error:.2g})"
        )
    return lines


def curve(per_epoch: list[tuple[int, float]], width: int = 64, height: int = 12) -> str:
    """The loss against the epoch, drawn with text: log scale when it spans decades."""
    points = [(epoch, loss) for epoch, loss in per_epoch if math.isfinite(loss)]
    if len(points) < 2:
        return ""
    losses = [loss for _, loss in points]
    log = min(losses) > 0 and max(losses) / min(losses) > 100
    ys = [math.log10(v) for v in losses] if log else losses
    lo, hi = min(ys), max(ys)
    span = hi - lo or 1.0
    first, last = points[0][0], points[-1][0]
    grid = [[" "] * width for _ in range(height)]
    for (epoch, _), y in zip(points, ys, strict=True):
        col = round((epoch - first) / max(1, last - first) * (width - 1))
        row = round((hi - y) / span * (height - 1))
        grid[row][col] = "•"
    top = f"{10**hi:.3g}" if log else f"{hi:.3g}"
    bottom = f"{10**lo:.3g}" if log else f"{lo:.3g}"
    pad = max(len(top), len(bottom))
    lines = [f"loss ({'log scale' if log else 'linear scale'}) by epoch"]
    for r, cells in enumerate(grid):
        label = top if r == 0 else bottom if r == height - 1 else ""
        lines.append(f"{label:>{pad}} │{''.join(cells)}")
    lines.append(" " * pad + " └" + "─" * width)
    left, right = str(first), str(last)
    lines.append(" " * (pad + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    return "\n".join(lines)


def jsonl_epoch(entry: dict[str, Any]) -> str:
    """An epoch's line; its parameters come as the trainer holds them (numpy values)."""
    import numpy as np

    params = {k: np.asarray(v, dtype=np.float64).tolist() for k, v in entry["params"].items()}
    return json.dumps(_clean({**entry, "params": params}), allow_nan=False)


def jsonl_final(result: Result, predictions: list[dict[str, Any]], model: Model) -> str:
    final = {
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


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
