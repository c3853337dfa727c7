"""The models and losses `backprop train` knows, written in the expression language (the
built-ins, the losses and the mlp specs come from core.specs, which every command shares).

A model and a loss become one program (`yhat = <model>; loss = <loss of yhat and y>`),
parsed by the same parser and differentiated by the same engine as `backprop grad`. The
data columns are its variables; every other free name is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import specs
from ..core.errors import BackpropError, LimitError
from ..core.graph import Graph
from ..core.ops import CONSTANTS
from ..core.parse import Limits, parse_program
from ..io.data import Dataset

PREDICTION = specs.PREDICTION
LOSS = "loss"

Builtin = specs.Template
BUILTINS = specs.TEMPLATES  # linear, affine, quadratic, logistic: core.specs has them
MLP_ABOUT = (
    "one hidden sigmoid layer (--hidden N) in batch form: X holds one row per sample, "
    "one column per input"
)
SPEC_ABOUT = (
    "the network as the book PyTorch计算机视觉实战 draws it, one named weight per edge, "
    "no biases; the data's columns are its inputs in order (--form matrix: batch form "
    "with biases, as mlp)"
)

# Per-sample losses of the prediction `yhat` and the target `{y}`.
LOSSES = {name: text.replace("{yhat}", PREDICTION) for name, text in specs.LOSSES.items()}


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
            "model": "mlp:N0-N1-...-NL[:act]",
            "formula": "h11 = x1*w11 + x2*w21, a11 = sigmoid(h11), …, yhat = a11*w31 + …",
            "about": SPEC_ABOUT,
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
    parts = specs.normalise_loss(spec)
    return "+".join(parts), specs.loss_lines(parts, [(PREDICTION, target)], LOSS, split=True)


MATRIX = specs.MATRIX  # the n × k matrix of all input columns, for models in matrix form


# Every parameter is held several times over (its start, its value, its gradient, the
# optimizer's state, the result as JSON), about 100 bytes in all: a million is 100 MB.
MAX_PARAMS = specs.MAX_PARAMS
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
        raise LimitError(
            f"the mlp with --hidden {hidden} on {k:,} inputs has {count:,} parameters, more "
            f"than {max_params:,}; use a smaller --hidden or raise the limit with {PARAMS_OPTION}"
        )
    # nn.Linear's initialisation: uniform in ±1/sqrt(fan_in), weights and biases alike.
    net = specs.Spec("mlp", "mlp", (k, hidden, 1))
    return specs.body(net, "matrix").text, specs.initial(net, "matrix", rng=rng)


def build(
    spec: str,
    data: Dataset,
    *,
    loss: str | None,
    hidden: int,
    seed: int,
    max_params: int = MAX_PARAMS,
    form: str | None = None,
) -> Model:
    """The training program for a built-in model name, a model spec (mlp:2-3-1) or an
    expression."""
    rng = np.random.default_rng(seed)
    features, target = data.names, data.target_name
    if form is not None and spec != "mlp" and not spec.startswith("mlp:"):
        if spec in BUILTINS:
            specs.check_form(specs.parse_spec(spec), form)
        elif form != "named":
            raise BackpropError("--form is for model specs (mlp:2-3-1 --form matrix)")
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
            if form == "named":
                raise BackpropError(
                    "the mlp model has the matrix form only; for the named form write its "
                    f"sizes, e.g. mlp:{len(features)}-{hidden}-1"
                )
            body, init = _mlp(features, hidden, rng, max_params)
            formula = f"sigmoid({MATRIX} @ W1.T + b1) @ W2 + b2"
            default_loss = "mse"
        name = spec
    elif specs.is_spec(spec):
        body, init = _spec_body(spec, features, form or "named", seed, max_params)
        formula, name, default_loss = body, spec, "mse"
    else:
        _refuse_model_slip(spec)
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


def _spec_body(
    text: str, features: list[str], form: str, seed: int, max_params: int
) -> tuple[str, dict[str, Any]]:
    """An mlp spec's prediction statements, its inputs the data's columns in order (named
    form) or their matrix X, and its seeded start, decided from the sizes before a draw."""
    spec = specs.parse_spec(text)
    specs.check_form(spec, form)
    outputs = spec.sizes[-1]
    if outputs != 1:
        raise BackpropError(
            f"{text} has {outputs} outputs, but train fits one target column; end the sizes with -1"
        )
    specs.check_size(spec, form, max_params=max_params, option=PARAMS_OPTION)
    if len(features) != spec.sizes[0]:
        raise BackpropError(
            f"{text} takes {spec.sizes[0]} input column{'s' if spec.sizes[0] > 1 else ''}, "
            f"but the data has {len(features)} ({', '.join(features)})",
            hint=f"use mlp:{len(features)}-" + "-".join(map(str, spec.sizes[1:])),
        )
    body = specs.body(spec, form, features if form == "named" else None)
    return body.text, specs.initial(spec, form, seed)


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


def _refuse_model_slip(spec: str) -> None:
    """A model that is one bare name a slip away from a built-in (lnear, Linear, mpl) is
    a typo, not a one-parameter constant model: say which model was meant. Names further
    from every model (w, bias, line) stay expressions (see core.suggest for "close")."""
    from ..core.suggest import closest

    specs.refuse_a_mistyped_spec(spec)
    if not spec.isidentifier() or not spec.isascii():
        return
    meant = closest(spec, [*BUILTINS, "mlp"])
    if meant is not None:
        raise BackpropError(
            f"unknown model {spec!r}; did you mean {meant!r}?",
            hint=f"`backprop train --list` lists the models; ({spec}) is a model of one "
            f"parameter {spec}",
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
        raise LimitError(
            f"the model has {total:,} parameters ({largest} alone {sizes[largest]:,}), more "
            f"than {max_params:,}; raise the limit with {PARAMS_OPTION}"
        )


def unused_columns(model: Model) -> list[str]:
    if model.matrix is not None:
        return []
    used = set(model.graph.variables)
    return [c for c in model.features if c not in used]
