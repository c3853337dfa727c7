"""Training: the course's loop (forward, backward, step) on our graph engine, or on torch.

Each step evaluates the training program on a batch (a vectorised forward pass), seeds the
loss with 1/batch so the gradient is that of the mean, and updates the parameters with the
chosen optimizer, whose arithmetic follows torch.optim's step by step. Events (logged
epochs, per-sample gradients) go to a callback; nothing here prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import autograd, compare
from ..core import engine, shapes
from ..core.errors import BackpropError, LimitError
from ..io.data import Dataset
from .models import LOSS, PREDICTION, Model
from .optim import (
    MAX_STEP_ELEMENTS,
    STEP_OPTION,
    Optimizer,
    Settings,
    Stepper,
)


@dataclass
class Result:
    params: dict[str, Any]  # the last finite parameters: numbers, or nested lists for arrays
    loss: float | None  # the mean loss over all data with those parameters
    curve: list[tuple[int, float]] = field(default_factory=list)  # (epoch, loss), thinned
    epochs_run: int = 0
    diverged_at: int | None = None  # the epoch whose loss or parameters went non-finite
    interrupted: bool = False
    check_max_error: float | None = None  # largest gradient disagreement with torch (--check)
    check_ok: bool | None = None
    warnings: list[str] = field(default_factory=list)
    # The first and the last epoch's steps (at most MAX_KEPT_STEPS each): the sample or batch,
    # its loss, and the gradients the step used, for the training page.
    first_steps: list[dict[str, Any]] = field(default_factory=list)
    last_steps: list[dict[str, Any]] = field(default_factory=list)


MAX_KEPT_STEPS = 50


Event = Callable[[str, dict[str, Any]], None]


def batches(n: int, size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """The epoch's batches as views of one order: a million one-row batches are not a
    million arrays."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    step = n if size <= 0 else size
    for i in range(0, n, step):
        yield order[i : i + step]


def cast(value: Any, dt: Any) -> Any:
    """A parameter in the engine's dtype: a numpy scalar, or an array."""
    return np.asarray(value, dtype=dt)[()]


def plain(value: Any) -> Any:
    """A parameter as JSON holds it: a float, or nested lists."""
    out: Any = np.asarray(value, dtype=np.float64).tolist()
    return out


def _inputs(model: Model, columns: dict[str, np.ndarray], idx: Any, dt: Any) -> dict[str, Any]:
    if model.matrix is not None:  # one row per sample, one column per input
        stacked = np.stack([columns[f][idx] for f in model.features], axis=-1)
        return {model.matrix: stacked.astype(dt)}
    return {f: columns[f][idx].astype(dt) for f in model.features}


def _keep_step(
    result: Result,
    epoch: int,
    model: Model,
    data: Dataset,
    idx: Any,
    loss: float,
    grads: dict[str, Any],
) -> None:
    kept = result.first_steps if epoch == 0 else result.last_steps
    if epoch != 0 and kept and kept[0]["epoch"] != epoch:
        kept.clear()
    if len(kept) >= MAX_KEPT_STEPS:
        return
    sample = None
    if len(idx) == 1:
        columns = [*data.features.items(), (data.target_name, data.target)]
        sample = {name: plain(column[idx[0]]) for name, column in columns}
    kept.append(
        {
            "epoch": epoch,
            "step": len(kept) + 1,
            "size": len(idx),
            "sample": sample,
            "loss": loss,
            "grads": {name: plain(grads[name]) for name in model.params},
        }
    )


def _env(model: Model, data: Dataset, idx: Any, params: dict[str, Any], dt: Any) -> dict[str, Any]:
    env = _inputs(model, data.features, idx, dt)
    env[model.target] = data.target[idx].astype(dt)
    env.update(params)
    return env


def step_elements(model: Model, rows: int) -> int:
    """The array elements one evaluation of the training program on `rows` rows holds,
    from the shapes alone (nothing is allocated)."""
    found = {name: tuple(np.shape(model.init[name])) for name in model.params}
    if model.matrix is not None:
        found[model.matrix] = (rows, len(model.features))
    else:
        found.update({f: (rows,) for f in model.features})
    found[model.target] = (rows,)
    cores = shapes.infer(model.graph, found, what="model", budget=False)
    return shapes.cost(model.graph, cores)[0]


def fitting_rows(model: Model, limit: int, most: int) -> int:
    """The most rows, up to `most`, whose evaluation holds at most `limit` elements (0 when
    not even one row fits): a binary search, as the count grows with the rows."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        try:
            fits = step_elements(model, mid) <= limit
        except BackpropError:  # shapes that fit only some row counts: no slice of this size
            fits = False
        low, high = (mid, high) if fits else (low, mid - 1)
    return low


def _separable(model: Model) -> bool:
    """Whether each row's loss depends on that row alone, so rows may be evaluated in slices:
    true of the built-in models (elementwise ops, row-by-row matrix products), not known of
    an expression, which may sum or sort over the rows."""
    return model.name != "custom"


def check_budget(model: Model, n: int, settings: Settings) -> None:
    """Refuse, from the shapes, a training step (or an expression's pass over all data) that
    would hold more than settings.max_step_elements elements."""
    limit = settings.max_step_elements
    batch = n if settings.batch_size <= 0 else min(settings.batch_size, n)
    held = step_elements(model, batch)
    if held > limit:
        fit = fitting_rows(model, limit, batch)
        advice = (
            f"batches of up to {fit:,} rows fit: use a smaller --batch-size"
            if fit
            else "not even one row fits"
        )
        raise LimitError(
            f"a training step on a batch of {batch:,} rows holds {held:,} array elements, more "
            f"than {limit:,} ({advice}); raise the limit with {STEP_OPTION}"
        )
    if batch < n and not _separable(model):
        whole = step_elements(model, n)
        if whole > limit:
            raise LimitError(
                f"the loss over all {n:,} rows holds {whole:,} array elements in one pass, "
                f"more than {limit:,} (an expression model is evaluated on every row at once); "
                f"raise the limit with {STEP_OPTION}"
            )


def _pass_rows(model: Model, n: int, limit: int) -> int:
    """Rows per evaluation over all data: every row at once, as before training on a full
    batch, unless that passes the budget and the model's rows are independent."""
    if n == 0 or not _separable(model) or step_elements(model, n) <= limit:
        return max(1, n)
    return max(1, fitting_rows(model, limit, n))


def predict(
    model: Model,
    params: dict[str, Any],
    inputs: dict[str, np.ndarray],
    dtype: str,
    max_elements: int = MAX_STEP_ELEMENTS,
) -> np.ndarray:
    """The model's predictions at the given input columns, in slices within the budget."""
    dt = engine.DTYPES[dtype]
    n = len(next(iter(inputs.values())))
    columns = {f: np.asarray(inputs[f], dtype=dt) for f in model.features}
    typed = {k: cast(v, dt) for k, v in params.items()}
    rows = _pass_rows(model, n, max_elements)
    out = np.empty(n)
    for start in range(0, n, rows):
        part = slice(start, min(n, start + rows))
        env = _inputs(model, columns, part, dt)
        env[model.target] = np.zeros(part.stop - start, dtype=dt)  # unused by the prediction
        env.update(typed)
        with np.errstate(all="ignore"):
            values = engine.evaluate(model.graph, env, dt)
        out[part] = np.asarray(values[_named(model, PREDICTION)], dtype=np.float64)
    return out


def full_loss(
    model: Model,
    data: Dataset,
    params: dict[str, Any],
    dtype: str,
    max_elements: int = MAX_STEP_ELEMENTS,
) -> float:
    """The mean loss over all data: one pass, or the per-row losses slice by slice, then
    their mean (the same mean, taken over the same numbers)."""
    dt = engine.DTYPES[dtype]
    typed = {k: cast(v, dt) for k, v in params.items()}
    n = len(data)
    rows = _pass_rows(model, n, max_elements)
    if rows >= n:
        with np.errstate(all="ignore"):
            values = engine.evaluate(model.graph, _env(model, data, np.arange(n), typed, dt), dt)
        return float(np.mean(values[model.graph.output], dtype=dt))
    losses = np.empty(n, dtype=dt)
    for start in range(0, n, rows):
        part = slice(start, min(n, start + rows))
        with np.errstate(all="ignore"):
            values = engine.evaluate(model.graph, _env(model, data, part, typed, dt), dt)
        losses[part] = values[model.graph.output]
    return float(np.mean(losses, dtype=dt))


def _named(model: Model, name: str) -> int:
    return max(n.id for n in model.graph.nodes if n.name == name)


def check_fits(data: Dataset, dtype: str) -> None:
    """Data that the training precision cannot hold is an input error, not a divergence."""
    largest = float(np.finfo(engine.DTYPES[dtype]).max)
    for name, column in [*data.features.items(), (data.target_name, data.target)]:
        big = np.abs(column) > largest
        if big.any():
            raise BackpropError(
                f"the data's column {name!r} holds {float(column[big][0])!r}, beyond {dtype}",
                hint="train with --dtype float64",
            )


def run(model: Model, data: Dataset, settings: Settings, on_event: Event) -> Result:
    """Train; stops early on divergence or Ctrl-C, keeping the last finite parameters."""
    if len(data) == 0:
        raise BackpropError("no data to train on")
    check_budget(model, len(data), settings)
    check_fits(data, settings.dtype)
    if (settings.engine == "torch" or settings.check) and settings.device != "cpu":
        autograd.check_device(settings.device, settings.dtype)
    if settings.engine == "torch":
        from .train_torch import TorchTrainer

        stepper: Stepper = TorchTrainer(model, settings)
    else:
        stepper = _GraphStepper(model, settings)
    dt = engine.DTYPES[settings.dtype]
    params = {name: cast(model.init[name], dt) for name in model.params}
    result = Result(params={k: plain(v) for k, v in params.items()}, loss=None)
    rng = np.random.default_rng(settings.seed) if settings.shuffle else None
    try:
        for epoch in range(settings.epochs):
            last_loss = math.nan
            for idx in batches(len(data), settings.batch_size, rng):
                env = _env(model, data, idx, params, dt)
                batch_loss, grads = stepper.gradients(env, len(idx))
                if settings.check:
                    _check(model, env, len(idx), grads, settings, result)
                if settings.verbose:
                    on_event("grad", {"epoch": epoch, "env": env, "grads": grads, "idx": idx})
                last_loss = float(batch_loss)
                if epoch in (0, settings.epochs - 1):
                    _keep_step(result, epoch, model, data, idx, last_loss, grads)
                new = stepper.step(params, grads)
                finite = all(bool(np.isfinite(v).all()) for v in new.values())
                if not math.isfinite(last_loss) or not finite:
                    result.diverged_at = epoch
                    break
                params = new
            result.epochs_run = epoch + 1 if result.diverged_at is None else epoch
            if result.diverged_at is not None:
                break
            _keep(result.curve, epoch, last_loss)
            if (epoch + 1) % settings.log_every == 0 or epoch == 0 or epoch == settings.epochs - 1:
                # The parameters as they are: only a reader that prints them converts them,
                # and nothing keeps a copy per epoch.
                on_event("epoch", {"epoch": epoch, "loss": last_loss, "params": dict(params)})
            on_event("tick", {"epoch": epoch})
    except KeyboardInterrupt:
        result.interrupted = True
    result.params = {k: plain(v) for k, v in params.items()}
    limit = settings.max_step_elements
    result.loss = full_loss(model, data, result.params, settings.dtype, limit)
    if "bce" in model.loss.split("+"):
        predictions = predict(model, result.params, data.features, settings.dtype, limit)
        outside = np.flatnonzero((predictions < 0) | (predictions > 1))
        if len(outside):
            k = int(outside[0])
            result.warnings.append(
                f"binary cross-entropy expects predictions between 0 and 1, but the model "
                f"predicts {float(predictions[k])!r} for row {k + 1}: give it a sigmoid output "
                "(the logistic model)"
            )
    return result


CURVE_POINTS = 4096


def _keep(curve: list[tuple[int, float]], epoch: int, loss: float) -> None:
    """Every epoch's loss for the curve, thinned to every 2nd, 4th, … as it grows."""
    stride = curve[1][0] - curve[0][0] if len(curve) > 1 else 1
    if epoch % stride == 0:
        curve.append((epoch, loss))
    if len(curve) > CURVE_POINTS:
        curve[:] = curve[::2]


class _GraphStepper(Stepper):
    """Gradients from our engine: one forward and one reverse sweep per batch."""

    def __init__(self, model: Model, settings: Settings) -> None:
        self.model = model
        self.dt = engine.DTYPES[settings.dtype]
        self.opt = Optimizer(settings.optimizer, settings.lr, self.dt)

    def gradients(self, env: dict[str, Any], n: int) -> tuple[float, dict[str, Any]]:
        graph = self.model.graph
        with np.errstate(all="ignore"):
            values = engine.evaluate(graph, env, self.dt)
            losses = np.broadcast_to(values[graph.output], (n,))
            seed = np.full(np.shape(values[graph.output]), self.dt(1) / self.dt(n), dtype=self.dt)
            grads = engine.backward(graph, values, seed)
        mean = np.mean(losses, dtype=self.dt)
        found = {}
        for name in self.model.params:
            g = grads[graph.variables[name]]
            found[name] = self.dt(0) if g is None else g
        return float(mean), found

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        with np.errstate(all="ignore"):
            return self.opt.step(params, grads)


def _check(
    model: Model,
    env: dict[str, Any],
    n: int,
    grads: dict[str, Any],
    settings: Settings,
    result: Result,
) -> None:
    """Recompute this step's gradients with torch autograd and keep the largest disagreement."""
    seed = np.full(n, 1.0 / n)
    out_core = engine.input_cores(model.graph, env)[model.graph.output]
    if out_core != (n,):  # a loss that does not depend on the data: the same for every sample
        seed = np.full(out_core, 1.0)
    run = autograd.torch_run(model.graph, env, settings.dtype, settings.device, seed=seed)
    rtol, atol = compare.TOLERANCES[settings.dtype]["torch"]
    worst = result.check_max_error or 0.0
    ok = result.check_ok is not False
    for name in model.params:
        theirs = run.grads[model.graph.variables[name]]
        ours = np.asarray(grads[name], dtype=np.float64)
        other = np.zeros_like(ours) if theirs is None else np.asarray(theirs, dtype=np.float64)
        worst = max(worst, float(np.max(compare.abs_errors(ours, other))))
        # An element is judged against the size of its array: summing many terms in float32
        # leaves an error proportional to the terms, even where their sum is small.
        slack = rtol * float(np.max(np.abs(ours), initial=0.0)) if ours.ndim else 0.0
        ok = ok and bool((compare.judge_many(ours, other, rtol, atol, slack) == "ok").all())
    result.check_max_error, result.check_ok = worst, ok


__all__ = ["LOSS", "PREDICTION", "Optimizer", "Result", "Settings", "predict", "run"]
