"""Model specs: `linear`, `affine`, `quadratic`, `logistic` and `mlp:N0-N1-...-NL[:act]`,
with a loss, expanded into a program of the expression language, so that every command
that takes an expression takes a model too.

Grammar (the whole argument, nothing around it):

    spec   := builtin | "mlp:" sizes [":" act]
    builtin:= linear | affine | quadratic | logistic
    sizes  := N ("-" N)+        every N a whole number >= 1 (no leading zeros, at most 9
                                digits), at least one hidden layer
    act    := a unary elementwise op of the registry (default sigmoid)

Anything else is an expression: a variable called `linear` is differentiated as `(linear)`.

The named form (the default) is the network as a textbook draws it, one named node per
weight and no biases (the chain-rule network of the book PyTorch计算机视觉实战 is `mlp:2-3-1`):

* inputs `x` (one) or `x1 ... xN0`; targets `y` (one output) or `y1 ... yNL`;
* hidden layer l, unit j: `hlj = sum of (source * weight)`, then `alj = act(hlj)`, all the
  layer's h first, then its a; the output layer is linear: `yhat` (or `yhat1 ... yhatNL`);
* weights `wGK`: G numbers the weight groups from 1. The first layer has one group per
  input i (G = i), K being the unit of the first hidden layer it feeds (`w21`: x2 to
  unit 1). Every later layer has one group per unit, numbered on from there, K being the
  unit of the layer before it comes from (`w31`: a11 into yhat of mlp:2-3-1; in
  mlp:2-3-2-1 the second hidden layer's units take groups 3 and 4, the output group 5);
* two indices are written together when both are one digit (`h11`, `w23`), otherwise
  joined by '_' (`h1_12`, `w12_3`), so that no name is ambiguous;
* the cost `C` is the loss summed over the outputs (`C = (yhat - y)**2`); a sum of losses
  gives `C_mse`, `C_mae`, ... and `C = C_mse + C_mae`.

The matrix form (`form="matrix"`, mlp only) is train's batch form: `X` holds one row per
sample, `H = act(X @ W1.T + b1)` (`H1`, `H2`, ... with more hidden layers), `yhat = H @ W2 +
b2` (`H @ W2.T + b2` and target `Y` with more than one output), and `C` the mean over the
rows of each row's loss.

Initialisation: the built-ins start as train starts them (linear's w = 1, biases 0, ...).
An mlp's weights are drawn as nn.Linear draws them, uniform in ±1/sqrt(fan_in), from
numpy's default_rng(seed), layer by layer, W_l (N_l × N_{l-1}) then b_l; the named form's
weights are those matrices' entries (wGK is W_l[unit, source]), so both forms of one seed
hold the same weights, and only the matrix form has biases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ops
from .errors import BackpropError, LimitError

PREDICTION = "yhat"
COST = "C"  # the loss node of an expanded spec, as the book calls it
MATRIX = "X"  # the n × N0 matrix of the inputs in the matrix form
FORMS = ("named", "matrix")


@dataclass(frozen=True)
class Template:
    name: str
    template: str  # {x} stands for the input
    init: dict[str, float]  # parameter -> initial value
    about: str
    loss: str = "mse"


_LOGISTIC = "sigmoid(w*{x} + b)"
DEFAULT_ACTIVATION = _LOGISTIC.partition("(")[0]  # the logistic unit's: the book's sigmoid

TEMPLATES = {
    t.name: t
    for t in (
        Template("linear", "w*{x}", {"w": 1.0}, "the PyTorch course's y = w*x; w starts at 1"),
        Template(
            "affine",
            "w*{x} + b",
            {"w": 1.0, "b": 0.0},
            "PyTorch's nn.Linear(1, 1)",
        ),
        Template(
            "quadratic",
            "w1*{x}**2 + w2*{x} + b",
            {"w1": 1.0, "w2": 1.0, "b": 0.0},
            "the PyTorch course's homework quadratic model",
        ),
        Template(
            "logistic",
            _LOGISTIC,
            {"w": 1.0, "b": 0.0},
            "binary classification; binary cross-entropy by default",
            loss="bce",
        ),
    )
}

# Per-sample losses of a prediction {yhat} and its target {y}.
LOSSES = {
    "mse": "({yhat} - {y})**2",
    "mae": "abs({yhat} - {y})",
    # Huber with delta 1, from min and abs: 0.5·r² inside |r| <= 1, |r| - 0.5 outside.
    "huber": "0.5*min(abs({yhat} - {y}), 1)**2 + (abs({yhat} - {y}) - min(abs({yhat} - {y}), 1))",
    # Binary cross-entropy with the logs clamped at -100 as nn.BCELoss does: a prediction
    # that rounds to exactly 0 or 1 costs 100, not inf. The clamp goes inside the log, so the
    # reverse sweep never meets 0/0 there either.
    "bce": "-({y}*log(max({yhat}, exp(-100))) + (1 - {y})*log(max(1 - {yhat}, exp(-100))))",
}

# Every parameter is held several times over (its start, its value, its gradient, the
# optimizer's state, the result as JSON), about 100 bytes in all: a million is 100 MB.
MAX_PARAMS = 1_000_000
MAX_LAYERS = 64  # sizes in one mlp spec
_MAX_DIGITS = 9  # of one layer size
_CHARS_PER_WEIGHT = 10  # at least `a1*w11 + ` in the named form, for the estimate


@dataclass(frozen=True)
class Spec:
    text: str  # as the user wrote it
    kind: str  # a template's name, or "mlp"
    sizes: tuple[int, ...] = ()
    activation: str = DEFAULT_ACTIVATION

    @property
    def shown(self) -> str:
        """The text as messages show it (cut, see show)."""
        return show(self.text)

    @property
    def default_loss(self) -> str:
        return TEMPLATES[self.kind].loss if self.kind in TEMPLATES else "mse"

    @property
    def hidden_layers(self) -> int:
        return max(0, len(self.sizes) - 2)


def is_spec(text: str | None) -> bool:
    """Whether an expression argument is meant as a model spec (well formed or not)."""
    return text is not None and (text in TEMPLATES or text == "mlp" or text.startswith("mlp:"))


def refuse_a_mistyped_spec(text: str) -> None:
    """`mpl:2-3-1`, `MLPP:2-3-1`: a spec whose family name is one slip from mlp (the one
    spec written with a colon) is an error that names it, not a parse error about ':'."""
    from .suggest import closest

    head, colon, rest = text.partition(":")
    if colon and head.isascii() and head.isalpha() and closest(head, ["mlp"]) == "mlp":
        raise BackpropError(
            f"unknown model spec '{show(text)}'; did you mean '{show('mlp:' + rest)}'?",
            hint="`backprop train --list` lists the models",
        )


_SIZES = re.compile(r"[0-9]+(?:-[0-9]+)*", re.ASCII)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)


def activations() -> list[str]:
    """The registry's unary elementwise functions, which an mlp may use as its activation."""
    return sorted(
        name
        for name, arities in ops.FUNCTIONS.items()
        if 1 in arities and ops.OPS[arities[1]].elementwise
    )


SHOWN = 60  # characters of a spec that a message shows


def show(text: str, limit: int = SHOWN) -> str:
    """`text` as a message shows it: cut to `limit` characters with "…" (a spec may be
    100,000 characters long; the error line should not be)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_spec(text: str) -> Spec:
    """The spec of `text` (see is_spec); a malformed one is a one-line BackpropError."""
    if text in TEMPLATES:
        return Spec(text, text)
    if text == "mlp":
        raise BackpropError(
            "the model spec mlp needs its layer sizes, e.g. mlp:2-3-1 (2 inputs, 3 hidden "
            "sigmoid units, 1 output); a variable called mlp is written (mlp)"
        )
    if not text.startswith("mlp:"):
        raise BackpropError(f"{show(text)!r} is not a model spec")
    sizes_text, sep, activation = text[4:].partition(":")
    where = f"model spec {show(text)!r}"
    if not _SIZES.fullmatch(sizes_text):
        bad = next((p for p in sizes_text.split("-") if not p.isascii() or not p.isdigit()), "")
        raise BackpropError(
            f"{where}: "
            + (f"{show(bad, 20)!r} is not a layer size" if bad else "the layer sizes are missing")
            + "; write mlp:N0-N1-...-NL with whole numbers >= 1, e.g. mlp:2-3-1 or mlp:2-3-1:tanh"
        )
    parts = sizes_text.split("-")
    if len(parts) > MAX_LAYERS:
        raise LimitError(f"{where}: {len(parts):,} layer sizes, more than {MAX_LAYERS}")
    for part in parts:  # ASCII digits only (the pattern), never int() of a long string
        if len(part) > 1 and part.startswith("0"):
            stripped = part.lstrip("0") or "0"
            if len(stripped) <= _MAX_DIGITS:
                raise BackpropError(
                    f"{where}: write {stripped}, not {show(part, 20)} (no leading zeros)"
                )
            raise BackpropError(f"{where}: the layer size {show(part, 20)} is too large")
        if len(part) > _MAX_DIGITS:
            raise BackpropError(f"{where}: the layer size {show(part, 20)} is too large")
    sizes = tuple(int(p) for p in parts)
    if min(sizes) < 1:
        raise BackpropError(f"{where}: every layer needs at least 1 unit, not {min(sizes)}")
    if len(sizes) < 3:
        raise BackpropError(
            f"{where}: an mlp needs at least one hidden layer (mlp:N0-N1-NL); without one, "
            "use affine or an expression"
        )
    if sep and not activation:
        raise BackpropError(f"{where}: the activation after ':' is missing")
    if activation:
        known = activations()
        if activation not in known:
            what = (
                "an op of the registry, but not a unary elementwise one"
                if activation in ops.FUNCTIONS
                else "no op of the registry"
            )
            shown = show(activation, 20)
            shown = shown if _NAME.fullmatch(activation) else repr(shown)
            raise BackpropError(
                f"{where}: the activation {shown} is {what}; use one of {', '.join(known)}"
            )
    return Spec(text, "mlp", sizes, activation or DEFAULT_ACTIVATION)


def _idx(*ks: int) -> str:
    """Indices as part of a name: together when all are one digit, else joined by '_'."""
    return "".join(map(str, ks)) if all(k <= 9 for k in ks) else "_".join(map(str, ks))


def parameter_count(spec: Spec, form: str) -> int:
    if spec.kind in TEMPLATES:
        return len(TEMPLATES[spec.kind].init)
    weights = sum(a * b for a, b in zip(spec.sizes, spec.sizes[1:], strict=False))
    return weights + (sum(spec.sizes[1:]) if form == "matrix" else 0)


@dataclass(frozen=True)
class Body:
    """A model's prediction statements."""

    text: str
    inputs: tuple[str, ...]  # the names it reads its inputs under (X in the matrix form)
    predictions: tuple[str, ...]  # yhat, or yhat1, yhat2, ...
    params: tuple[str, ...]
    matrix: str | None = None  # the input matrix's name, in the matrix form


def input_names(spec: Spec) -> tuple[str, ...]:
    n = spec.sizes[0] if spec.kind == "mlp" else 1
    return ("x",) if n == 1 else tuple(f"x{i}" for i in range(1, n + 1))


def target_names(spec: Spec, form: str = "named") -> tuple[str, ...]:
    k = spec.sizes[-1] if spec.kind == "mlp" else 1
    if k == 1:
        return ("y",)
    return ("Y",) if form == "matrix" else tuple(f"y{i}" for i in range(1, k + 1))


def check_form(spec: Spec, form: str) -> None:
    if form not in FORMS:
        raise BackpropError(f"--form: expected named or matrix, not {form!r}")
    if form == "matrix" and spec.kind != "mlp":
        raise BackpropError(
            f"--form matrix is for mlp specs; {spec.shown} has one input and one form"
        )


def check_size(
    spec: Spec,
    form: str,
    *,
    max_params: int = MAX_PARAMS,
    max_length: int | None = None,
    option: str = "--max-params",
) -> None:
    """Refuse, from the sizes alone, a spec of too many parameters or too long a program."""
    count = parameter_count(spec, form)
    if count > max_params:
        raise LimitError(
            f"the model spec {spec.shown} has {count:,} parameters, more than {max_params:,}"
            + (f"; use smaller layers or raise the limit with {option}" if option else "")
        )
    if form == "named" and max_length is not None:
        estimate = count * _CHARS_PER_WEIGHT
        if estimate > max_length:
            _too_long(spec, f"about {estimate:,}", max_length)


def _too_long(spec: Spec, size: str, max_length: int) -> None:
    raise LimitError(
        f"the model spec {spec.shown} expands to a named program of {size} characters, more "
        f"than --max-length {max_length:,}; use --form matrix, smaller layers, or raise "
        "--max-length"
    )


def body(spec: Spec, form: str = "named", inputs: list[str] | None = None) -> Body:
    """The prediction statements; `inputs` renames the inputs (train's data columns)."""
    check_form(spec, form)
    names = tuple(inputs) if inputs is not None else input_names(spec)
    if spec.kind in TEMPLATES:
        t = TEMPLATES[spec.kind]
        return Body(
            f"{PREDICTION} = {t.template.format(x=names[0])}", names, (PREDICTION,), tuple(t.init)
        )
    if len(names) != spec.sizes[0]:
        raise BackpropError(f"{spec.shown} takes {spec.sizes[0]} inputs, not {len(names)}")
    return _matrix_body(spec) if form == "matrix" else _named_body(spec, names)


def _named_body(spec: Spec, inputs: tuple[str, ...]) -> Body:
    sizes, act = spec.sizes, spec.activation
    lines: list[str] = []
    params: list[str] = []
    sources: list[str] = list(inputs)
    group = sizes[0]  # the first layer's groups are its inputs
    last = len(sizes) - 1
    for layer in range(1, last):
        hs, acts = [], []
        for j in range(1, sizes[layer] + 1):
            if layer == 1:
                weights = [f"w{_idx(i, j)}" for i in range(1, len(sources) + 1)]
            else:
                weights = [f"w{_idx(group + j, k)}" for k in range(1, len(sources) + 1)]
            params += weights
            terms = " + ".join(f"{s}*{w}" for s, w in zip(sources, weights, strict=True))
            hs.append(f"h{_idx(layer, j)} = {terms}")
            acts.append(f"a{_idx(layer, j)} = {act}(h{_idx(layer, j)})")
        if layer > 1:
            group += sizes[layer]
        lines += hs + acts
        sources = [f"a{_idx(layer, j)}" for j in range(1, sizes[layer] + 1)]
    outputs = sizes[last]
    predictions = (
        (PREDICTION,) if outputs == 1 else tuple(f"{PREDICTION}{k}" for k in range(1, outputs + 1))
    )
    for k, prediction in enumerate(predictions, start=1):
        weights = [f"w{_idx(group + k, j)}" for j in range(1, len(sources) + 1)]
        params += weights
        terms = " + ".join(f"{s}*{w}" for s, w in zip(sources, weights, strict=True))
        lines.append(f"{prediction} = {terms}")
    return Body("\n".join(lines), inputs, predictions, tuple(params))


def _hidden_name(spec: Spec, layer: int) -> str:
    return "H" if spec.hidden_layers == 1 else f"H{layer}"


def _matrix_body(spec: Spec) -> Body:
    sizes, act = spec.sizes, spec.activation
    lines, params = [], []
    source = MATRIX
    last = len(sizes) - 1
    for layer in range(1, last):
        h = _hidden_name(spec, layer)
        lines.append(f"{h} = {act}({source} @ W{layer}.T + b{layer})")
        params += [f"W{layer}", f"b{layer}"]
        source = h
    weights = f"W{last}" if sizes[last] == 1 else f"W{last}.T"
    lines.append(f"{PREDICTION} = {source} @ {weights} + b{last}")
    params += [f"W{last}", f"b{last}"]
    return Body("\n".join(lines), (MATRIX,), (PREDICTION,), tuple(params), MATRIX)


def normalise_loss(loss: str) -> list[str]:
    """The terms of a loss such as "mse" or "mse+mae"."""
    if not loss.strip():
        raise BackpropError("--loss is empty", hint=f"losses: {', '.join(LOSSES)}")
    parts = [p.strip() for p in loss.split("+")]
    unknown = [p for p in parts if p not in LOSSES]
    if unknown:
        from .suggest import closest

        meant = closest(unknown[0], LOSSES)
        raise BackpropError(
            f"unknown loss {unknown[0]!r}" + (f"; did you mean {meant!r}?" if meant else ""),
            hint=f"losses: {', '.join(LOSSES)}, or sums such as mse+mae",
        )
    if len(set(parts)) != len(parts):
        raise BackpropError(f"the loss {loss!r} names a term twice")
    return parts


def loss_lines(
    parts: list[str], pairs: list[tuple[str, str]], name: str, *, split: bool, reduce: str = ""
) -> str:
    """The statements of the loss `name` over (prediction, target) pairs: one per term
    (`name_mse = ...`) and their sum, or one statement when `split` is off and there is one
    term. `reduce` wraps each term (e.g. "mean({})")."""

    def term(p: str) -> str:
        text = " + ".join(LOSSES[p].format(yhat=yh, y=y) for yh, y in pairs)
        return reduce.format(text) if reduce else text

    if len(parts) == 1 and not split:
        return f"{name} = {term(parts[0])}"
    lines = [f"{name}_{p} = {term(p)}" for p in parts]
    lines.append(f"{name} = " + " + ".join(f"{name}_{p}" for p in parts))
    return "\n".join(lines)


@dataclass(frozen=True)
class Expansion:
    """A spec with its loss, as a program of the expression language."""

    spec: Spec
    form: str
    loss: str  # e.g. "mse" or "mse+mae"
    text: str  # the whole program
    inputs: tuple[str, ...]
    targets: tuple[str, ...]
    params: tuple[str, ...]
    predictions: tuple[str, ...]

    def initial(self, seed: int = 0) -> dict[str, Any]:
        """Every parameter's start (see the module's docstring)."""
        return initial(self.spec, self.form, seed)

    def about_init(self, seed: int = 0) -> str:
        if self.spec.kind in TEMPLATES:
            start = ", ".join(f"{k}={v:g}" for k, v in TEMPLATES[self.spec.kind].init.items())
            return f"{self.spec.kind}'s initialisation, {start}"
        return f"uniform in ±1/sqrt(fan_in) as nn.Linear, --seed {seed}"


def expand(
    text: str | Spec,
    *,
    loss: str | None = None,
    form: str = "named",
    max_params: int = MAX_PARAMS,
    max_length: int | None = None,
) -> Expansion:
    """The program of a spec: its prediction and the loss `C` (see the module's docstring)."""
    spec = parse_spec(text) if isinstance(text, str) else text
    check_form(spec, form)
    check_size(spec, form, max_params=max_params, max_length=max_length, option="")
    parts = normalise_loss(loss if loss is not None else spec.default_loss)
    b = body(spec, form)
    targets = target_names(spec, form)
    if form == "matrix":
        pairs = [(PREDICTION, targets[0])]
        many = spec.sizes[-1] > 1
        reduce = "mean(sum({}, axis=1))" if many else "mean({})"
    else:
        pairs = list(zip(b.predictions, targets, strict=True))
        reduce = ""
    program = b.text + "\n" + loss_lines(parts, pairs, COST, split=False, reduce=reduce)
    if max_length is not None and len(program) > max_length:
        _too_long(spec, f"{len(program):,}", max_length)
    return Expansion(
        spec, form, "+".join(parts), program, b.inputs, targets, b.params, b.predictions
    )


def initial(spec: Spec, form: str = "named", seed: int = 0, rng: Any = None) -> dict[str, Any]:
    """The parameters' starts: a template's own, or an mlp's draws from default_rng(seed)
    (or from `rng`)."""
    if spec.kind in TEMPLATES:
        return dict(TEMPLATES[spec.kind].init)
    if rng is None:
        rng = np.random.default_rng(seed)
    sizes = spec.sizes
    last = len(sizes) - 1
    drawn: dict[str, Any] = {}
    for layer in range(1, last + 1):
        fan_in, units = sizes[layer - 1], sizes[layer]
        bound = 1 / np.sqrt(fan_in)
        if layer == last and units == 1:  # a vector and a number, as train's mlp holds them
            drawn[f"W{layer}"] = rng.uniform(-bound, bound, size=fan_in)
            drawn[f"b{layer}"] = float(rng.uniform(-bound, bound))
        else:
            drawn[f"W{layer}"] = rng.uniform(-bound, bound, size=(units, fan_in))
            drawn[f"b{layer}"] = rng.uniform(-bound, bound, size=units)
    if form == "matrix":
        return drawn
    named: dict[str, Any] = {}
    group = sizes[0]
    for layer in range(1, last + 1):
        w = np.asarray(drawn[f"W{layer}"]).reshape(sizes[layer], sizes[layer - 1])
        for unit in range(1, sizes[layer] + 1):
            for source in range(1, sizes[layer - 1] + 1):
                key = _idx(source, unit) if layer == 1 else _idx(group + unit, source)
                named[f"w{key}"] = float(w[unit - 1, source - 1])
        if layer > 1:
            group += sizes[layer]
    return named
