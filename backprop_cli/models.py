"""The models and losses `backprop train` knows, written in the expression language.

A model and a loss become one program (`yhat = <model>; loss = <loss of yhat and y>`),
parsed by the same parser and differentiated by the same engine as `backprop grad`. The
data columns are its variables; every other free name is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import Dataset
from .errors import BackpropError
from .graph import Graph
from .ops import CONSTANTS
from .parse import Limits, parse_program

PREDICTION = "yhat"
LOSS = "loss"


@dataclass(frozen=True)
class Builtin:
    name: str
    template: str  # {x} stands for the input column
    init: dict[str, float]  # parameter -> initial value
    about: str
    loss: str = "mse"


BUILTINS = {
    m.name: m
    for m in (
        Builtin("linear", "w*{x}", {"w": 1.0}, "the course's model (seed 002); w starts at 1"),
        Builtin("affine", "w*{x} + b", {"w": 1.0, "b": 0.0}, "nn.Linear(1, 1) (seed 003)"),
        Builtin(
            "quadratic",
            "w1*{x}**2 + w2*{x} + b",
            {"w1": 1.0, "w2": 1.0, "b": 0.0},
            "the homework's quadratic model (seed 002)",
        ),
        Builtin(
            "logistic",
            "sigmoid(w*{x} + b)",
            {"w": 1.0, "b": 0.0},
            "binary classification; binary cross-entropy by default",
            loss="bce",
        ),
    )
}
MLP_ABOUT = (
    "one hidden sigmoid layer (--hidden N) in batch form: X holds one row per sample, "
    "one column per input"
)

# Per-sample losses of the prediction `yhat` and the target `{y}`.
LOSSES = {
    "mse": "(yhat - {y})**2",
    "mae": "abs(yhat - {y})",
    # Huber with delta 1, from min and abs: 0.5·r² inside |r| <= 1, |r| - 0.5 outside.
    "huber": "0.5*min(abs(yhat - {y}), 1)**2 + (abs(yhat - {y}) - min(abs(yhat - {y}), 1))",
    # Binary cross-entropy with the logs clamped at -100 as nn.BCELoss does: a prediction
    # that rounds to exactly 0 or 1 costs 100, not inf. The clamp goes inside the log, so the
    # reverse sweep never meets 0/0 there either.
    "bce": "-({y}*log(max(yhat, exp(-100))) + (1 - {y})*log(max(1 - yhat, exp(-100))))",
}


@dataclass(frozen=True)
class Model:
    name: str  # a built-in's name, or "custom"
    formula: str  # the prediction, as the user reads it
    loss: str  # e.g. "mse" or "mse+mae"
    program: str  # the whole training program
    graph: Graph
    params: list[str]
    features: list[str]
    target: str
    init: dict[str, Any] = field(default_factory=dict)  # defaults (random ones included)
    matrix: str | None = None  # the name under which the input columns come as one matrix

    def param_node(self, name: str) -> int:
        return self.graph.variables[name]


def listing() -> list[dict[str, str]]:
    rows = [
        {"model": b.name, "formula": b.template.format(x="x"), "about": b.about, "loss": b.loss}
        for b in BUILTINS.values()
    ]
    rows.append(
        {
            "model": "mlp",
            "formula": "sigmoid(X @ W1.T + b1) @ W2 + b2",
            "about": MLP_ABOUT,
            "loss": "mse",
        }
    )
    rows.append(
        {
            "model": "EXPRESSION",
            "formula": 'any expression, e.g. "w1*x**2 + w2*x + b"',
            "about": "its free names that are not data columns are the parameters",
            "loss": "mse",
        }
    )
    return rows


def _loss_text(spec: str, target: str) -> tuple[str, str]:
    """The loss statements for a spec such as "mse" or "mse+mae"."""
    if not spec.strip():
        raise BackpropError("--loss is empty", hint=f"losses: {', '.join(LOSSES)}")
    parts = [p.strip() for p in spec.split("+")]
    unknown = [p for p in parts if p not in LOSSES]
    if unknown or not parts:
        raise BackpropError(
            f"unknown loss {unknown[0] if unknown else spec!r}",
            hint=f"losses: {', '.join(LOSSES)}, or sums such as mse+mae",
        )
    if len(set(parts)) != len(parts):
        raise BackpropError(f"the loss {spec!r} names a term twice")
    lines = [f"{LOSS}_{p} = {LOSSES[p].format(y=target)}" for p in parts]
    lines.append(f"{LOSS} = " + " + ".join(f"{LOSS}_{p}" for p in parts))
    return "+".join(parts), "\n".join(lines)


MATRIX = "X"  # the n × k matrix of all input columns, for models in matrix form


# Every parameter is held several times over (its start, its value, its gradient, the
# optimizer's state, the result as JSON), about 100 bytes in all: a million is 100 MB.
MAX_PARAMS = 1_000_000
PARAMS_OPTION = "--max-params"


def mlp_parameters(inputs: int, hidden: int) -> int:
    """W1 (hidden × inputs), b1 and W2 (hidden each) and b2."""
    return hidden * inputs + 2 * hidden + 1


def _mlp(
    features: list[str], hidden: int, rng: np.random.Generator, max_params: int
) -> tuple[str, dict[str, Any]]:
    """One hidden sigmoid layer in batch form, as nn.Linear computes it: every row of X is
    a sample, H = sigmoid(X @ W1.T + b1) holds one row of hidden units per sample."""
    if hidden < 1:
        raise BackpropError("--hidden must be at least 1")
    if hidden > 10_000:
        raise BackpropError("--hidden is at most 10000")
    k = len(features)
    count = mlp_parameters(k, hidden)
    if count > max_params:  # decided from the shapes, before any weight is drawn
        raise BackpropError(
            f"the mlp with --hidden {hidden} on {k:,} inputs has {count:,} parameters, more "
            f"than {max_params:,}; use a smaller --hidden or raise the limit with {PARAMS_OPTION}"
        )
    # nn.Linear's initialisation: uniform in ±1/sqrt(fan_in), weights and biases alike.
    bound_in, bound_out = 1 / np.sqrt(k), 1 / np.sqrt(hidden)
    init: dict[str, Any] = {
        "W1": rng.uniform(-bound_in, bound_in, size=(hidden, k)),
        "b1": rng.uniform(-bound_in, bound_in, size=hidden),
        "W2": rng.uniform(-bound_out, bound_out, size=hidden),
        "b2": float(rng.uniform(-bound_out, bound_out)),
    }
    body = f"H = sigmoid({MATRIX} @ W1.T + b1)\n{PREDICTION} = H @ W2 + b2"
    return body, init


def build(
    spec: str,
    data: Dataset,
    *,
    loss: str | None,
    hidden: int,
    seed: int,
    max_params: int = MAX_PARAMS,
) -> Model:
    """The training program for a built-in model name or an expression."""
    rng = np.random.default_rng(seed)
    features, target = data.names, data.target_name
    if spec in BUILTINS or spec == "mlp":
        builtin = BUILTINS.get(spec)
        if builtin is not None:
            if len(features) != 1:
                raise BackpropError(
                    f"the {spec} model takes one input column, but the data has "
                    f"{len(features)} ({', '.join(features)})",
                    hint="use mlp, or an expression that names the columns",
                )
            formula = builtin.template.format(x=features[0])
            body, init = f"{PREDICTION} = {formula}", dict(builtin.init)
            default_loss = builtin.loss
        else:
            body, init = _mlp(features, hidden, rng, max_params)
            formula = f"sigmoid({MATRIX} @ W1.T + b1) @ W2 + b2"
            default_loss = "mse"
        name = spec
    else:
        body, formula = _custom_body(spec)
        init, name, default_loss = {}, "custom", "mse"
    loss_name, loss_lines = _loss_text(loss if loss is not None else default_loss, target)
    program = f"{body}\n{loss_lines}"
    graph = parse_program(program, what="model", limits=_GENERATED).graph
    matrix = (
        MATRIX if spec == "mlp" or (MATRIX in graph.variables and MATRIX not in features) else None
    )
    _check_names(graph, features, target, set(init), matrix)
    if "bce" in loss_name.split("+"):
        _check_bce_targets(data)
    params = [v for v in graph.variables if v not in features and v not in (target, matrix)]
    if name == "custom" and target in parse_program(body, what="model").graph.variables:
        raise BackpropError(f"the model uses the target column {target!r}; it must predict it")
    if not params:
        raise BackpropError(f"the model {formula!r} has no parameters to train")
    for p in params:
        init.setdefault(p, float(rng.uniform(-1.0, 1.0)))
    model = Model(name, formula, loss_name, program, graph, params, features, target, init, matrix)
    check_size(model, max_params)
    return model


# Programs we generate (an mlp on many columns) may be larger than what a user may type.
_GENERATED = Limits(max_length=10**9, max_nodes=10**7)


def _check_names(
    graph: Graph, features: list[str], target: str, own: set[str], matrix: str | None
) -> None:
    """A data column must not share a name the model gives to something else: one of a
    built-in model's own parameters (`own`), a statement (yhat, loss, h1, …) or a constant
    (pi, e)."""
    assigned = {n.name for n in graph.nodes if n.name is not None and n.op != "input"}
    for column in (*features, target):
        if column == matrix:
            clash = "the input matrix (every input column, one row per sample)"
        elif column in assigned:
            clash = "a statement of the model"
        elif column in own:
            clash = "a parameter of the model"
        elif column in CONSTANTS and column not in graph.variables:
            clash = f"the constant {column}"
        else:
            continue
        raise BackpropError(
            f"the data column {column!r} has the name of {clash}",
            hint="rename the column in the data",
        )


def _check_bce_targets(data: Dataset) -> None:
    outside = np.flatnonzero((data.target < 0) | (data.target > 1))
    if len(outside):
        k = int(outside[0])
        raise BackpropError(
            f"binary cross-entropy needs targets between 0 and 1, but row {k + 1} has "
            f"{data.target_name} = {float(data.target[k])!r}"
        )


def _custom_body(spec: str) -> tuple[str, str]:
    """`yhat = …` for an expression or a program whose last statement is the prediction."""
    program = parse_program(spec, what="model")
    source = program.graph.source
    out = program.graph.out
    if program.statements == 1 and not program.last_assigns:
        return f"{PREDICTION} = {source.strip()}", source.strip()
    if program.last_assigns:
        assert out.name is not None
        return f"{source.rstrip()}\n{PREDICTION} = {out.name}", out.name
    start = program.last_start
    return source[:start] + f"{PREDICTION} = " + source[start:], source[start:].strip()


def check_size(model: Model, max_params: int = MAX_PARAMS) -> None:
    """The parameters' elements, counted from their shapes (an --init may give arrays)."""
    sizes = {name: int(np.size(model.init[name])) for name in model.params}
    total = sum(sizes.values())
    if total > max_params:
        largest = max(sizes, key=lambda name: sizes[name])
        raise BackpropError(
            f"the model has {total:,} parameters ({largest} alone {sizes[largest]:,}), more "
            f"than {max_params:,}; raise the limit with {PARAMS_OPTION}"
        )


def unused_columns(model: Model) -> list[str]:
    if model.matrix is not None:
        return []
    used = set(model.graph.variables)
    return [c for c in model.features if c not in used]
