"""THE op registry: one entry per primitive with everything every interpretation needs.

Each entry holds how the op is written, its numpy forward, one vector-Jacobian product per
input (g is the upstream gradient, out the op's own value), its SymPy and torch counterparts
(given the module, so neither library is imported here), its derivative rule as text, and
sample points for the registry-wide tests. The backward rules follow torch's conventions at
awkward points (kinks, zero bases, ties) so that the cross-check compares like with like.

Elementwise ops see arrays whose shapes the engine has already lined up. Array ops (sums,
products, transposes, indexing) get a `Ctx` saying how many leading batch axes each input
carries in front of its core shape (one point's shape), and work on the core axes only, so
every interpretation can evaluate many points at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    # Array ops: the core shape of the result, from the inputs' core shapes and the node's
    # attributes (raising ValueError with a sentence on a mismatch). Elementwise ops (None)
    # broadcast. Array ops' forward, vjp, sympy and torch also take `ctx=Ctx(...)`.
    shape: Callable[..., tuple[int, ...]] | None = None
    attrs: tuple[str, ...] = ()  # attribute names the op takes (axis, index, shape)
    # The counterpart in SymPy's matrix calculus ((sp, *args, ctx=Ctx) -> a scalar or a
    # matrix expression, a vector being a column), for the compact ∂f/∂W = G·Xᵀ forms; None
    # where matrix calculus has no counterpart. Raises NoMatrixForm for shapes it cannot take.
    matrix: Callable[..., Any] | None = None
    # Array ops' test cases: the inputs' shapes and the node's attributes.
    array_samples: tuple[tuple[tuple[tuple[int, ...], ...], tuple[tuple[str, Any], ...]], ...] = ()
    # Generated code (`backprop codegen`): the forward, each input's VJP and the tangent,
    # written with c, a builder of the code's vocabulary ((c, *args, **attrs) -> expression;
    # VJPs take (c, g, out, *args, **attrs), the tangent (c, tangents, out, *args, **attrs)
    # with None for a zero tangent). Elementwise ops need none of them: their numpy rules
    # above are traced as they are, and a tangent is the VJP applied to it.
    code: Callable[..., Any] | None = None
    code_vjp: tuple[Callable[..., Any], ...] = ()
    code_jvp: Callable[..., Any] | None = None

    @property
    def elementwise(self) -> bool:
        return self.shape is None


@dataclass(frozen=True)
class Ctx:
    """What an array op needs besides its inputs: each input's leading batch axes and core
    shape, the result's core shape, and the node's attributes."""

    batch: tuple[int, ...]
    cores: tuple[tuple[int, ...], ...]
    out: tuple[int, ...]
    attrs: dict[str, Any]

    def axes(self, i: int = 0, batch: int | None = None) -> tuple[int, ...]:
        """The absolute axes an `axis` attribute means for input i (all core axes if None)."""
        b = self.batch[i] if batch is None else batch
        nd = len(self.cores[i])
        axis = self.attrs.get("axis")
        if axis is None:
            return tuple(range(b, b + nd))
        return (b + axis % nd,)

    def index(self, batch: int) -> tuple[Any, ...]:
        """The node's index, applied after `batch` leading axes."""
        parts = tuple(
            slice(*item[1:]) if isinstance(item, tuple) else item for item in self.attrs["index"]
        )
        return (slice(None),) * batch + parts


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
        code=lambda c, a, b: c.call("power", a, b),
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


# ---- array ops: reductions, products, rearrangements ---------------------------------------


def _s(*shapes: tuple[int, ...], **attrs: Any) -> tuple[Any, ...]:
    return shapes, tuple(attrs.items())


def _show(shape: tuple[int, ...]) -> str:
    return "scalar" if not shape else str(shape)


def _reduced(cores: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    if axis is None:
        return ()
    if not cores:
        raise ValueError("has no axis to reduce: its input is a scalar")
    if not -len(cores) <= axis < len(cores):
        raise ValueError(f"axis {axis} is out of range for shape {cores}")
    return tuple(d for k, d in enumerate(cores) if k != axis % len(cores))


def _spread_back(g: Array, ctx: Ctx) -> Array:
    """A reduction's upstream gradient, put back along the axes it reduced."""
    gb = np.ndim(g) - len(ctx.out)
    return np.expand_dims(g, ctx.axes(0, gb))


def _count(ctx: Ctx) -> int:
    core = ctx.cores[0]
    axis = ctx.attrs.get("axis")
    return int(np.prod(core)) if axis is None else core[axis % len(core)]


def _amax_vjp(g: Array, out: Array, a: Array, ctx: Ctx, keep: Any) -> Array:
    # torch's amax/amin: the gradient is shared evenly by the elements that attain it
    axes = ctx.axes(0)
    winners = a == keep(a, axis=axes, keepdims=True)
    return _spread_back(g, ctx) * winners / np.sum(winners, axis=axes, keepdims=True)


def _sympy_reduce(sp: Any, a: Any, ctx: Ctx, how: str) -> Any:
    a = np.asarray(a, dtype=object)
    axis = ctx.attrs.get("axis")
    if how == "sum":
        return np.sum(a, axis=axis)
    if how == "mean":
        return np.sum(a, axis=axis) / sp.Integer(_count(ctx))
    pick = np.frompyfunc(sp.Max if how == "max" else sp.Min, 2, 1)
    flat = a.reshape(-1) if axis is None else a
    return pick.reduce(flat, axis=0 if axis is None else axis)


def _torch_dims(ctx: Ctx) -> tuple[int, ...]:
    return ctx.axes(0)


def _matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if not a or not b or len(a) > 2 or len(b) > 2:
        raise ValueError(
            f"matrix multiplication needs vectors or matrices, got shapes {_show(a)} and {_show(b)}"
        )
    inner_a, inner_b = a[-1], b[0]
    if inner_a != inner_b:
        raise ValueError(f"shapes {_show(a)} and {_show(b)} do not line up ({inner_a} ≠ {inner_b})")
    return a[:-1] + b[1:]


_EINSUM = {
    (2, 2): ("...ij,...jk->...ik", "...ik,...jk->...ij", "...ij,...ik->...jk"),
    (2, 1): ("...ij,...j->...i", "...i,...j->...ij", "...ij,...i->...j"),
    (1, 2): ("...j,...jk->...k", "...k,...jk->...j", "...j,...k->...jk"),
    (1, 1): ("...j,...j->...", "...,...j->...j", "...j,...->...j"),
}


def _mm(ctx: Ctx) -> tuple[str, str, str]:
    return _EINSUM[(len(ctx.cores[0]), len(ctx.cores[1]))]


def _contract(spec: str, a: Array, b: Array) -> Array:
    """np.einsum(spec, a, b) for the matrix-product specs above, through np.matmul (BLAS) once
    the operands are big: numpy's einsum loops over 10^9 products for seconds."""
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.size * b.size <= 1 << 16:
        return np.einsum(spec, a, b)  # small, or dual numbers (which follow einsum)
    left, z = spec.split("->")
    x, y = (term[3:] for term in left.split(","))
    if not x or not y:
        return np.einsum(spec, a, b)  # a scalar times an array: no products to sum
    shared = [c for c in x if c in y and c not in z[3:]]
    fa, fb = [c for c in x if c not in shared], [c for c in y if c not in shared]
    a2 = _core_order(a, x, fa + shared)
    b2 = _core_order(b, y, shared + fb)
    if not fa:
        a2 = a2[..., None, :]
    if not shared:
        a2, b2 = a2[..., None], b2[..., None, :]
    if not fb:
        b2 = b2[..., None]
    out = np.matmul(a2, b2)
    if not fb:
        out = out[..., 0]
    if not fa:
        out = out[..., 0, :] if fb else out[..., 0]
    return np.swapaxes(out, -1, -2) if fa + fb != list(z[3:]) else out


def _core_order(a: Array, letters: str, order: list[str]) -> Array:
    """a with its core axes (named by letters) put in the given order."""
    if list(letters) == order:
        return a
    return np.swapaxes(a, -1, -2)


def _dot_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) != 1 or len(b) != 1 or a != b:
        raise ValueError(f"needs two vectors of one length, got shapes {_show(a)} and {_show(b)}")
    return ()


def _transpose(a: Array, ctx: Ctx) -> Array:
    return np.swapaxes(a, -1, -2) if len(ctx.cores[0]) == 2 else np.positive(a)


def _transpose_shape(a: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) > 2:
        raise ValueError(f"T transposes a vector or a matrix, not shape {_show(a)}")
    return a[::-1]


def _reshape_shape(a: tuple[int, ...], *, shape: tuple[int, ...]) -> tuple[int, ...]:
    size = math.prod(a)
    if len(shape) > MAX_DIMS:
        raise ValueError(f"an array has at most {MAX_DIMS} dimensions, not {len(shape)}")
    if shape.count(-1) > 1 or any(d < -1 or d == 0 for d in shape):
        raise ValueError(f"cannot take the shape {shape} (positive sizes, at most one -1)")
    known = math.prod(d for d in shape if d != -1)
    resolved = tuple(size // known if d == -1 else d for d in shape)
    if math.prod(resolved) != size:
        raise ValueError(f"cannot turn shape {_show(a)} ({size} elements) into {shape}")
    return resolved


def _batch_of(g: Array, ctx: Ctx) -> tuple[int, ...]:
    """The leading batch axes of an upstream gradient."""
    return tuple(np.shape(g)[: np.ndim(g) - len(ctx.out)])


def _index_shape(a: tuple[int, ...], *, index: tuple[Any, ...]) -> tuple[int, ...]:
    if not a:
        raise ValueError("cannot index a scalar")
    if len(index) > len(a):
        raise ValueError(f"{len(index)} indices for shape {_show(a)}")
    probe = np.broadcast_to(np.empty(()), a)  # no memory: a view with zero strides
    parts = tuple(slice(*i[1:]) if isinstance(i, tuple) else i for i in index)
    try:
        shape = tuple(probe[parts].shape)
    except IndexError as exc:
        raise ValueError(f"{exc} (shape {_show(a)})") from None
    if 0 in shape:
        raise ValueError(f"the slice selects no element of shape {_show(a)}")
    return shape


def _index_vjp(g: Array, out: Array, a: Array, ctx: Ctx) -> Array:
    gb = np.ndim(g) - len(ctx.out)
    full = np.zeros_like(g, shape=np.shape(g)[:gb] + ctx.cores[0])
    full[ctx.index(gb)] = g
    return full


def _torch_index(t: Any, a: Any, ctx: Ctx) -> Any:
    # torch slices cannot step backwards: such a slice becomes an index_select.
    axis = ctx.batch[0]
    for item in ctx.attrs["index"]:
        if not isinstance(item, tuple):
            a = a.select(axis, item)
            continue
        chosen = range(*slice(*item[1:]).indices(a.shape[axis]))
        if chosen.step > 0:
            a = a[(slice(None),) * axis + (slice(*item[1:]),)]
        else:
            a = a.index_select(axis, t.tensor(list(chosen), device=a.device))
        axis += 1
    return a


def _extreme_branch(a: Array, ctx: Ctx, pick: Callable[..., Array]) -> Array:
    """Which element max/min takes (1 + its position among those reduced), 0 on a tie."""
    axes = ctx.axes(0)
    best = pick(a, axis=axes, keepdims=True)
    winners = a == best
    ties = np.sum(winners, axis=axes) > 1
    moved = np.moveaxis(winners, axes, tuple(range(-len(axes), 0)))
    flat = moved.reshape(*moved.shape[: moved.ndim - len(axes)], -1)
    return np.where(ties, 0, np.argmax(flat, axis=-1) + 1)


_ARRAY_OPS: list[Op] = [
    Op(
        "sum", 1, "sum(a), sum(a, axis=k)",
        lambda a, ctx: np.sum(a, axis=ctx.axes(0)),
        (lambda g, out, a, ctx: _spread_back(g, ctx) * np.ones_like(a),),
        lambda sp, a, ctx: _sympy_reduce(sp, a, ctx, "sum"),
        lambda t, a, ctx: t.sum(a, dim=_torch_dims(ctx)),
        "∂/∂a = G, copied to every element summed", (), call="sum",
        shape=lambda a, axis=None: _reduced(a, axis), attrs=("axis",),
        array_samples=(_s((3,)), _s((2, 3)), _s((2, 3), axis=0), _s((2, 3), axis=-1)),
    ),
    Op(
        "mean", 1, "mean(a), mean(a, axis=k)",
        lambda a, ctx: np.mean(a, axis=ctx.axes(0)),
        (lambda g, out, a, ctx: _spread_back(g, ctx) * np.ones_like(a) / _count(ctx),),
        lambda sp, a, ctx: _sympy_reduce(sp, a, ctx, "mean"),
        lambda t, a, ctx: t.mean(a, dim=_torch_dims(ctx)),
        "∂/∂a = G/n, to every element averaged", (), call="mean",
        shape=lambda a, axis=None: _reduced(a, axis), attrs=("axis",),
        array_samples=(_s((4,)), _s((2, 3)), _s((2, 3), axis=1)),
    ),
    Op(
        "amax", 1, "max(a), max(a, axis=k)",
        lambda a, ctx: np.max(a, axis=ctx.axes(0)),
        (lambda g, out, a, ctx: _amax_vjp(g, out, a, ctx, np.max),),
        lambda sp, a, ctx: _sympy_reduce(sp, a, ctx, "max"),
        lambda t, a, ctx: t.amax(a, dim=_torch_dims(ctx)),
        "∂/∂a = G at the largest element (shared evenly on a tie), 0 elsewhere", (),
        call="max", shape=lambda a, axis=None: _reduced(a, axis), attrs=("axis",),
        array_samples=(_s((4,)), _s((2, 3)), _s((2, 3), axis=0)),
        branch=lambda a, ctx: _extreme_branch(a, ctx, np.max),
    ),
    Op(
        "amin", 1, "min(a), min(a, axis=k)",
        lambda a, ctx: np.min(a, axis=ctx.axes(0)),
        (lambda g, out, a, ctx: _amax_vjp(g, out, a, ctx, np.min),),
        lambda sp, a, ctx: _sympy_reduce(sp, a, ctx, "min"),
        lambda t, a, ctx: t.amin(a, dim=_torch_dims(ctx)),
        "∂/∂a = G at the smallest element (shared evenly on a tie), 0 elsewhere", (),
        call="min", shape=lambda a, axis=None: _reduced(a, axis), attrs=("axis",),
        array_samples=(_s((4,)), _s((2, 3)), _s((2, 3), axis=-1)),
        branch=lambda a, ctx: _extreme_branch(a, ctx, np.min),
    ),
    Op(
        "dot", 2, "dot(a, b)",
        lambda a, b, ctx: np.sum(a * b, axis=-1),
        (
            lambda g, out, a, b, ctx: np.expand_dims(g, -1) * b,
            lambda g, out, a, b, ctx: np.expand_dims(g, -1) * a,
        ),
        lambda sp, a, b, ctx: np.sum(np.asarray(a, dtype=object) * np.asarray(b, dtype=object)),
        lambda t, a, b, ctx: (a * b).sum(dim=-1),
        "∂/∂a = G·b, ∂/∂b = G·a", (), call="dot", shape=_dot_shape,
        array_samples=(_s((3,), (3,)),),
    ),
    Op(
        "matmul", 2, "a @ b",
        lambda a, b, ctx: _contract(_mm(ctx)[0], a, b),
        (
            lambda g, out, a, b, ctx: _contract(_mm(ctx)[1], g, b),
            lambda g, out, a, b, ctx: _contract(_mm(ctx)[2], a, g),
        ),
        lambda sp, a, b, ctx: np.matmul(np.asarray(a, dtype=object), np.asarray(b, dtype=object)),
        lambda t, a, b, ctx: t.einsum(_mm(ctx)[0], a, b),
        "∂/∂A = G·Bᵀ, ∂/∂B = Aᵀ·G", (), symbol="@", shape=_matmul_shape,
        array_samples=(_s((2, 3), (3, 2)), _s((2, 3), (3,)), _s((3,), (3, 2)), _s((3,), (3,))),
    ),
    Op(
        "transpose", 1, "T(a), a.T",
        _transpose,
        (lambda g, out, a, ctx: np.swapaxes(g, -1, -2) if len(ctx.cores[0]) == 2 else g,),
        lambda sp, a, ctx: np.asarray(a, dtype=object).T,
        lambda t, a, ctx: a.transpose(-1, -2) if len(ctx.cores[0]) == 2 else a.clone(),
        "∂/∂a = Gᵀ", (), call="T", shape=_transpose_shape,
        array_samples=(_s((2, 3)), _s((3,))),
    ),
    Op(
        "reshape", 1, "reshape(a, d1, d2, …)",
        lambda a, ctx: np.reshape(a, np.shape(a)[: ctx.batch[0]] + ctx.out),
        (lambda g, out, a, ctx: np.reshape(g, _batch_of(g, ctx) + ctx.cores[0]),),
        lambda sp, a, ctx: np.asarray(a, dtype=object).reshape(ctx.out),
        lambda t, a, ctx: a.reshape(tuple(a.shape[: ctx.batch[0]]) + ctx.out),
        "∂/∂a = G reshaped back", (), call="reshape", shape=_reshape_shape,
        attrs=("shape",), array_samples=(_s((2, 3), shape=(3, 2)), _s((2, 3), shape=(-1,))),
    ),
    Op(
        "getitem", 1, "a[i], a[i, j], a[i:j]",
        lambda a, ctx: np.positive(a[ctx.index(ctx.batch[0])]),
        (_index_vjp,),
        lambda sp, a, ctx: np.asarray(a, dtype=object)[ctx.index(0)],
        _torch_index,
        "∂/∂a = G at the indexed elements, 0 elsewhere", (), shape=_index_shape,
        attrs=("index",),
        array_samples=(
            _s((4,), index=(1,)), _s((4,), index=(("slice", 1, None, None),)),
            _s((2, 3), index=(-1, 0)), _s((2, 3), index=(("slice", None, None, -1), 1)),
            _s((2, 3), index=(0,)),
        ),
    ),
]  # fmt: skip

_OPS += _ARRAY_OPS


# ---- generated code: the array ops in the code's vocabulary ---------------------------------


def _linear_code(fn: str) -> Callable[..., Any]:
    """The tangent of a linear op: the op applied to the tangent."""
    return lambda c, t, out, a, **kw: None if t[0] is None else c.call(fn, t[0], **kw)


def _bilinear_code(fn: str) -> Callable[..., Any]:
    """The tangent of a product: each factor's tangent times the other factor."""

    def tangent(c: Any, t: Any, out: Any, a: Any, b: Any) -> Any:
        left = None if t[0] is None else c.call(fn, t[0], b)
        right = None if t[1] is None else c.call(fn, a, t[1])
        return c.plus(left, right)

    return tangent


def _extreme_code(
    fn: str,
) -> tuple[Callable[..., Any], tuple[Callable[..., Any]], Callable[..., Any]]:
    # torch's amax/amin: the elements attaining the extreme share it evenly
    return (
        lambda c, a, axis=None: c.call(fn, a, axis=axis),
        (lambda c, g, out, a, axis=None: c.call("share", g, a, out, axis=axis),),
        lambda c, t, out, a, axis=None: (
            None if t[0] is None else c.call("share_tangent", t[0], a, out, axis=axis)
        ),
    )


_CODE: dict[str, tuple[Callable[..., Any], tuple[Callable[..., Any], ...], Callable[..., Any]]] = {
    "sum": (
        lambda c, a, axis=None: c.call("sum", a, axis=axis),
        (lambda c, g, out, a, axis=None: c.call("spread", g, a, axis=axis),),
        _linear_code("sum"),
    ),
    "mean": (
        lambda c, a, axis=None: c.call("mean", a, axis=axis),
        (
            lambda c, g, out, a, axis=None: c.call(
                "divide", c.call("spread", g, a, axis=axis), c.call("size", a, axis=axis)
            ),
        ),
        _linear_code("mean"),
    ),
    "amax": _extreme_code("amax"),
    "amin": _extreme_code("amin"),
    "dot": (
        lambda c, a, b: c.call("dot", a, b),
        (
            lambda c, g, out, a, b: c.call("multiply", g, b),
            lambda c, g, out, a, b: c.call("multiply", g, a),
        ),
        _bilinear_code("dot"),
    ),
    "matmul": (
        lambda c, a, b: c.call("matmul", a, b),
        (
            lambda c, g, out, a, b: c.call("matmul_grad_a", g, a, b),
            lambda c, g, out, a, b: c.call("matmul_grad_b", g, a, b),
        ),
        _bilinear_code("matmul"),
    ),
    "transpose": (
        lambda c, a: c.call("transpose", a),
        (lambda c, g, out, a: c.call("transpose", g),),
        _linear_code("transpose"),
    ),
    "reshape": (
        lambda c, a, shape: c.call("reshape", a, shape=shape),
        (lambda c, g, out, a, shape: c.call("reshape_as", g, a),),
        _linear_code("reshape"),
    ),
    "getitem": (
        lambda c, a, index: c.call("getitem", a, index=index),
        (lambda c, g, out, a, index: c.call("scatter", g, a, index=index),),
        _linear_code("getitem"),
    ),
}
_OPS = [
    replace(op, code=_CODE[op.name][0], code_vjp=_CODE[op.name][1], code_jvp=_CODE[op.name][2])
    if op.name in _CODE
    else op
    for op in _OPS
]


# ---- matrix calculus: counterparts of the linear and bilinear ops ---------------------------


class NoMatrixForm(Exception):
    """A node that SymPy's matrix calculus cannot express (the elementwise forms still can)."""


def _is_matrix(v: Any) -> bool:
    return bool(getattr(v, "is_Matrix", False))


def _mx_add(sp: Any, a: Any, b: Any, sign: int) -> Any:
    if _is_matrix(a) and _is_matrix(b) and a.shape != b.shape:
        raise NoMatrixForm  # broadcasting a vector along a matrix: no plain matrix form
    if _is_matrix(a) and not _is_matrix(b):
        b = b * sp.OneMatrix(*a.shape)
    elif _is_matrix(b) and not _is_matrix(a):
        a = a * sp.OneMatrix(*b.shape)
    return a + sign * b


def _mx_mul(sp: Any, a: Any, b: Any) -> Any:
    if not (_is_matrix(a) and _is_matrix(b)) or a.shape == b.shape == (1, 1):
        return a * b
    if a.shape != b.shape:
        raise NoMatrixForm
    return sp.HadamardProduct(a, b)


def _mx_div(sp: Any, a: Any, b: Any) -> Any:
    if _is_matrix(b):
        raise NoMatrixForm
    return a * (1 / b)


def _mx_matmul(sp: Any, a: Any, b: Any, ctx: Ctx) -> Any:
    ca, cb = (len(c) for c in ctx.cores)
    if ca == 1 and cb == 2:
        return b.T * a  # the vector's result as a column
    if ca == 1 and cb == 1:
        return a.T * b
    return a * b


def _mx_sum(sp: Any, a: Any, ctx: Ctx) -> Any:
    if not _is_matrix(a):
        return a
    m, n = a.shape
    axis = ctx.attrs.get("axis")
    if n == 1 or axis is None:
        return sp.OneMatrix(1, m) * a * sp.OneMatrix(n, 1)
    if axis % 2 == 0:
        return a.T * sp.OneMatrix(m, 1)
    return a * sp.OneMatrix(n, 1)


def _mx_mean(sp: Any, a: Any, ctx: Ctx) -> Any:
    core = ctx.cores[0]
    axis = ctx.attrs.get("axis")
    count = int(np.prod(core)) if axis is None or len(core) < 2 else core[axis % len(core)]
    return _mx_sum(sp, a, ctx) * sp.Rational(1, max(count, 1))


def _mx_transpose(sp: Any, a: Any, ctx: Ctx) -> Any:
    return a.T if len(ctx.cores[0]) == 2 else a


_MATRIX: dict[str, Callable[..., Any]] = {
    "add": lambda sp, a, b: _mx_add(sp, a, b, 1),
    "sub": lambda sp, a, b: _mx_add(sp, a, b, -1),
    "mul": _mx_mul,
    "div": _mx_div,
    "neg": lambda sp, a: -a,
    "pos": lambda sp, a: a,
    "assign": lambda sp, a: a,
    "sum": _mx_sum,
    "mean": _mx_mean,
    "dot": lambda sp, a, b, ctx: a.T * b,
    "matmul": _mx_matmul,
    "transpose": _mx_transpose,
}
_OPS = [replace(op, matrix=_MATRIX.get(op.name)) for op in _OPS]

OPS: dict[str, Op] = {op.name: op for op in _OPS}

# How the parser maps syntax to ops.
INFIX: dict[str, str] = {
    "+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "^": "pow", "@": "matmul",
}  # fmt: skip
PREFIX: dict[str, str] = {"-": "neg", "+": "pos"}
FUNCTIONS: dict[str, dict[int, str]] = {}
for _op in _OPS:
    if _op.call:
        FUNCTIONS.setdefault(_op.call, {})[_op.arity] = _op.name

# Postfix syntax: x[...] and x.T.
SUBSCRIPT = "getitem"
POSTFIX: dict[str, str] = {"T": "transpose"}


MAX_DIMS = 32  # dimensions of any array: literals, values, constructors, reshape


def _dims(args: tuple[float, ...]) -> tuple[int, ...]:
    if not args:
        raise ValueError("give at least one dimension")
    if len(args) > MAX_DIMS:
        raise ValueError(f"an array has at most {MAX_DIMS} dimensions")
    if any(a != int(a) or a < 1 for a in args):
        raise ValueError("dimensions must be positive integers")
    return tuple(int(a) for a in args)


def _sized(shape: tuple[int, ...], limit: int) -> tuple[int, ...]:
    if math.prod(shape) > limit:
        raise ValueError(f"more than {limit:,} elements")
    return shape


def _arange(*args: float, limit: int) -> np.ndarray:
    if not 1 <= len(args) <= 3:
        raise ValueError("takes stop, or start, stop and an optional step")
    start, stop, step = (0.0, args[0], 1.0) if len(args) == 1 else (*args[:2], ((*args, 1.0))[2])
    if step == 0:
        raise ValueError("the step cannot be zero")
    span = (stop - start) / step
    if not math.isfinite(span) or span > limit:
        raise ValueError(f"more than {limit:,} elements")
    count = math.ceil(span)
    if count < 1:
        raise ValueError("the range is empty")
    _sized((count,), limit)
    return np.arange(start, stop, step, dtype=np.float64)


# Constant arrays written as calls: their arguments are number literals, their results
# constants (no node of their own in the graph beyond the constant).
CONSTRUCTORS: dict[str, Callable[..., np.ndarray]] = {
    "zeros": lambda *dims, limit: np.zeros(_sized(_dims(dims), limit)),
    "ones": lambda *dims, limit: np.ones(_sized(_dims(dims), limit)),
    "arange": _arange,
}


def is_function(name: str) -> bool:
    return name in FUNCTIONS or name in CONSTRUCTORS


# Named constants; a program may assign to these names, which then shadows them.
CONSTANTS: dict[str, float] = {"pi": float(np.pi), "e": float(np.e)}

# Leaf node kinds of the graph (not ops: they have no inputs and no rule).
LEAVES = ("input", "const")


def get(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise KeyError(f"no rule registered for op {name!r}") from None
