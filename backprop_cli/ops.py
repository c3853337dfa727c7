"""THE op registry: one entry per primitive with everything every interpretation needs.

Each entry holds how the op is written, its numpy forward, one vector-Jacobian product per
input (g is the upstream gradient, out the op's own value), its SymPy and torch counterparts
(given the module, so neither library is imported here), its derivative rule as text, and
sample points for the registry-wide tests. The backward rules follow torch's conventions at
awkward points (kinks, zero bases, ties) so that the cross-check compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = Any  # a numpy array or numpy scalar; kept loose so batching and shapes stay free
Vjp = Callable[..., Array]


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    syntax: str  # how a user writes it, for `backprop ops` and error messages
    forward: Callable[..., Array]
    vjp: tuple[Vjp, ...]  # one rule per input: (g, out, *inputs) -> cotangent
    sympy: Callable[..., Any]  # (sympy module, *args) -> expression
    torch: Callable[..., Any]  # (torch module, *args) -> tensor
    rule: str  # the derivative rule, as shown by `backprop ops`
    samples: tuple[tuple[float, ...], ...]  # valid points for tests, kinks included
    call: str | None = None  # function-call name, e.g. "exp"
    symbol: str | None = None  # infix or prefix symbol, e.g. "*"
    branch: Callable[..., Array] | None = None  # piecewise ops: the piece; 0 on a kink
    domain: str | None = None  # where the op is defined, for domain warnings
    # The local derivative as a textbook writes it in terms of the op's own output, for
    # `explain` ((sp, out, *inputs) -> expression); otherwise SymPy differentiates `sympy`.
    local: Callable[..., Any] | None = None


def _where(cond: Array, a: Array, b: Array) -> Array:
    out: Array = np.where(cond, a, b)
    return out[()]  # a numpy scalar for scalar inputs, an array otherwise


def _zero(g: Array) -> Array:
    return np.zeros((), dtype=np.result_type(g))


def _sigmoid(a: Array) -> Array:
    # Stable on both sides: never exponentiates a large positive number.
    e = np.exp(-np.abs(a))
    return _where(a >= 0, 1 / (1 + e), e / (1 + e))


def _pick(first: Array, a: Array, b: Array) -> Array:
    # torch's maximum/minimum: a on a tie (so max(-0.0, 0.0) is -0.0), nan from either side
    return _where(first | np.isnan(a), a, b)


def _power(a: Array, b: Array) -> Array:
    out = np.power(a, b)
    # numpy takes a**0.5 as sqrt(a), which keeps the sign of -0.0; IEEE pow (and torch)
    # give -0 only for odd integer exponents.
    return _where((out == 0) & (np.abs(np.fmod(b, 2)) != 1), np.abs(out), out)


def _sgn(a: Array) -> Array:
    # torch's sgn: like sign, but 0 (not nan) for a nan input
    return _where(np.isnan(a), _zero(a), np.sign(a))


def _max_share(a: Array, b: Array, g: Array, loser: Array) -> Array:
    # torch's maximum/minimum backward: a tie splits g in half, the losing side gets 0.
    return _where(loser, _zero(g), np.where(a == b, g / 2, g))


def _log_base(a: Array, b: Array) -> Array:
    return np.log(a) / np.log(b)


_OPS: list[Op] = [
    # ---- arithmetic -------------------------------------------------------------------
    Op(
        "add", 2, "a + b", np.add,
        (lambda g, out, a, b: g, lambda g, out, a, b: g),
        lambda sp, a, b: a + b, lambda t, a, b: a + b,
        "∂/∂a = 1, ∂/∂b = 1", ((2.0, -3.0), (0.0, 0.5)), symbol="+",
    ),
    Op(
        "sub", 2, "a - b", np.subtract,
        (lambda g, out, a, b: g, lambda g, out, a, b: -g),
        lambda sp, a, b: a - b, lambda t, a, b: a - b,
        "∂/∂a = 1, ∂/∂b = -1", ((2.0, -3.0), (0.0, 0.5)), symbol="-",
    ),
    Op(
        "mul", 2, "a * b", np.multiply,
        (lambda g, out, a, b: g * b, lambda g, out, a, b: g * a),
        lambda sp, a, b: a * b, lambda t, a, b: a * b,
        "∂/∂a = b, ∂/∂b = a", ((2.0, -3.0), (0.0, 0.5)), symbol="*",
    ),
    Op(
        "div", 2, "a / b", np.divide,
        (lambda g, out, a, b: g / b, lambda g, out, a, b: -g * ((a / b) / b)),
        lambda sp, a, b: a / b, lambda t, a, b: a / b,
        "∂/∂a = 1/b, ∂/∂b = -a/b²", ((2.0, -3.0), (0.0, 0.5), (1.0, 4.0)), symbol="/",
        domain="b ≠ 0",
    ),
    Op(
        "pow", 2, "a ** b, a ^ b, pow(a, b)", _power,
        (
            # torch: an exponent of exactly 0 has zero gradient even where a**-1 blows up
            lambda g, out, a, b: _where(b == 0, _zero(g), g * (b * np.power(a, b - 1))),
            # torch: d/db is 0 at a zero base with b >= 0 (instead of 0 * log 0 = nan)
            # (torch masks the factor, not g: a nan upstream still gives nan)
            lambda g, out, a, b: g * _where((a == 0) & (b >= 0), _zero(out), out * np.log(a)),
        ),
        lambda sp, a, b: a**b, lambda t, a, b: t.pow(a, b),
        "∂/∂a = b·a^(b-1), ∂/∂b = a^b·ln a",
        ((2.0, 3.0), (1.5, 0.5), (-2.0, 3.0), (0.0, 2.0), (4.0, -0.5)),
        call="pow", symbol="**", domain="a > 0, or b an integer",
    ),
    Op(
        "neg", 1, "-a", np.negative,
        (lambda g, out, a: -g,),
        lambda sp, a: -a, lambda t, a: -a,
        "∂/∂a = -1", ((2.0,), (0.0,)), symbol="-",
    ),
    Op(
        "pos", 1, "+a", np.positive,
        (lambda g, out, a: g,),
        lambda sp, a: a, lambda t, a: a.clone(),
        "∂/∂a = 1", ((2.0,),), symbol="+",
    ),
    Op(
        "assign", 1, "name = a", np.positive,
        (lambda g, out, a: g,),
        lambda sp, a: a, lambda t, a: a.clone(),
        "∂/∂a = 1 (a named copy)", ((2.0,),), symbol="=",
    ),
    # ---- exponentials and logarithms --------------------------------------------------
    Op(
        "exp", 1, "exp(a)", np.exp,
        (lambda g, out, a: g * out,),
        lambda sp, a: sp.exp(a), lambda t, a: t.exp(a),
        "∂/∂a = exp(a)", ((0.5,), (-2.0,), (0.0,)), call="exp",
    ),
    Op(
        "log", 1, "log(a)", np.log,
        (lambda g, out, a: g / a,),
        lambda sp, a: sp.log(a), lambda t, a: t.log(a),
        "∂/∂a = 1/a", ((0.5,), (3.0,)), call="log", domain="a > 0",
    ),
    Op(
        "log_base", 2, "log(a, base)", _log_base,
        (
            lambda g, out, a, b: g / (a * np.log(b)),
            lambda g, out, a, b: -g * np.log(a) / (b * np.log(b) ** 2),
        ),
        lambda sp, a, b: sp.log(a) / sp.log(b), lambda t, a, b: t.log(a) / t.log(b),
        "∂/∂a = 1/(a·ln base), ∂/∂base = -ln a/(base·ln² base)",
        ((8.0, 2.0), (0.5, 10.0)), call="log", domain="a > 0, base > 0, base ≠ 1",
    ),
    Op(
        "sqrt", 1, "sqrt(a)", np.sqrt,
        (lambda g, out, a: g / (2 * out),),
        lambda sp, a: sp.sqrt(a), lambda t, a: t.sqrt(a),
        "∂/∂a = 1/(2·sqrt(a))", ((4.0,), (0.5,)), call="sqrt", domain="a ≥ 0",
        local=lambda sp, out, a: 1 / (2 * out),
    ),
    Op(
        "softplus", 1, "softplus(a)", lambda a: np.logaddexp(0, a),
        (lambda g, out, a: g * _sigmoid(a),),
                # torch's own softplus turns linear above 20, so the check uses the exact logaddexp
        lambda sp, a: sp.log(1 + sp.exp(a)), lambda t, a: t.logaddexp(a, t.zeros_like(a)),
        "∂/∂a = sigmoid(a)", ((0.0,), (2.0,), (-3.0,)), call="softplus",
    ),
    # ---- trigonometric and squashing functions ----------------------------------------
    Op(
        "sin", 1, "sin(a)", np.sin,
        (lambda g, out, a: g * np.cos(a),),
        lambda sp, a: sp.sin(a), lambda t, a: t.sin(a),
        "∂/∂a = cos(a)", ((0.5,), (-2.0,), (0.0,)), call="sin",
    ),
    Op(
        "cos", 1, "cos(a)", np.cos,
        (lambda g, out, a: g * -np.sin(a),),
        lambda sp, a: sp.cos(a), lambda t, a: t.cos(a),
        "∂/∂a = -sin(a)", ((0.5,), (-2.0,), (0.0,)), call="cos",
    ),
    Op(
        "tan", 1, "tan(a)", np.tan,
        (lambda g, out, a: g * (1 + out**2),),
        lambda sp, a: sp.tan(a), lambda t, a: t.tan(a),
        "∂/∂a = 1 + tan²(a)", ((0.5,), (-1.0,), (0.0,)), call="tan", domain="cos a ≠ 0",
        local=lambda sp, out, a: 1 + out**2,
    ),
    Op(
        "tanh", 1, "tanh(a)", np.tanh,
        (lambda g, out, a: g * (1 - out * out),),
        lambda sp, a: sp.tanh(a), lambda t, a: t.tanh(a),
        "∂/∂a = 1 - tanh²(a)", ((0.5,), (-2.0,), (0.0,)), call="tanh",
        local=lambda sp, out, a: 1 - out**2,
    ),
    Op(
        "sigmoid", 1, "sigmoid(a)", _sigmoid,
        (lambda g, out, a: g * (1 - out) * out,),
        lambda sp, a: 1 / (1 + sp.exp(-a)), lambda t, a: t.sigmoid(a),
        "∂/∂a = sigmoid(a)·(1 - sigmoid(a))", ((0.5,), (-2.0,), (0.0,)), call="sigmoid",
        local=lambda sp, out, a: out * (1 - out),
    ),
    # ---- piecewise functions: torch's subgradient at the kink --------------------------
    Op(
        "relu", 1, "relu(a)", lambda a: _where(a < 0, _zero(a), a),
        # torch's threshold_backward masks on the output: 0 where relu(a) <= 0
        (lambda g, out, a: _where(out <= 0, _zero(g), g),),
        lambda sp, a: sp.Max(0, a), lambda t, a: t.relu(a),
        "∂/∂a = 1 if a > 0 else 0 (0 at the kink a = 0)", ((1.5,), (-2.0,), (0.0,)),
        call="relu", branch=lambda a: np.sign(a),
        local=lambda sp, out, a: sp.Heaviside(a, 0),  # a step that is 0 at 0, as torch
    ),
    Op(
        "abs", 1, "abs(a)", np.abs,
        (lambda g, out, a: g * _sgn(a),),
        lambda sp, a: sp.Abs(a), lambda t, a: t.abs(a),
        "∂/∂a = sign(a) (0 at the kink a = 0)", ((1.5,), (-2.0,), (0.0,)),
        call="abs", branch=lambda a: np.sign(a),
    ),
    Op(
        "max", 2, "max(a, b)", lambda a, b: _pick(a >= b, a, b),
        (
            lambda g, out, a, b: _max_share(a, b, g, a < b),
            lambda g, out, a, b: _max_share(a, b, g, a > b),
        ),
        lambda sp, a, b: sp.Max(a, b), lambda t, a, b: t.maximum(a, b),
        "∂/∂a = 1 if a > b, 0 if a < b, ½ on a tie; ∂/∂b likewise",
        ((1.0, 2.0), (3.0, -1.0), (1.0, 1.0)),
        call="max", branch=lambda a, b: np.sign(a - b),
    ),
    Op(
        "min", 2, "min(a, b)", lambda a, b: _pick(a <= b, a, b),
        (
            lambda g, out, a, b: _max_share(a, b, g, a > b),
            lambda g, out, a, b: _max_share(a, b, g, a < b),
        ),
        lambda sp, a, b: sp.Min(a, b), lambda t, a, b: t.minimum(a, b),
        "∂/∂a = 1 if a < b, 0 if a > b, ½ on a tie; ∂/∂b likewise",
        ((1.0, 2.0), (3.0, -1.0), (1.0, 1.0)),
        call="min", branch=lambda a, b: np.sign(a - b),
    ),
]  # fmt: skip

OPS: dict[str, Op] = {op.name: op for op in _OPS}

# How the parser maps syntax to ops.
INFIX: dict[str, str] = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "^": "pow"}
PREFIX: dict[str, str] = {"-": "neg", "+": "pos"}
FUNCTIONS: dict[str, dict[int, str]] = {}
for _op in _OPS:
    if _op.call:
        FUNCTIONS.setdefault(_op.call, {})[_op.arity] = _op.name

# Named constants; a program may assign to these names, which then shadows them.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "e": float(np.e)}

# Leaf node kinds of the graph (not ops: they have no inputs and no rule).
LEAVES = ("input", "const")


def get(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"no rule registered for op {name!r}") from None
