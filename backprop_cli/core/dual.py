"""Dual numbers over numpy arrays: a value and its tangent (its derivative along one
direction), carried through the very numpy code of the registry's forwards and VJPs.

Running the reverse sweep on duals differentiates the gradient itself (forward over
reverse), which gives Hessians exactly, with no second set of rules. Only the numpy
operations the registry and the engine use are supported; anything else fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Array = Any
_np: Any = np  # numpy's ufuncs, untyped: they dispatch to Dual.__array_ufunc__


def _v(x: Any) -> Any:
    return x.value if isinstance(x, Dual) else x


def _t(x: Any) -> Any:
    return x.tangent if isinstance(x, Dual) else np.zeros_like(np.asarray(x, dtype=np.float64))


def _times(partial: Array, tangent: Array) -> Array:
    """partial · tangent, exactly 0 where the tangent is 0 (so 0 · inf is not nan)."""
    with np.errstate(all="ignore"):
        return np.where(tangent == 0, 0.0, partial * tangent)


def _unary(f: Callable[[Array], Array], d: Callable[[Array, Array], Array]) -> Any:
    """A rule for f(a) with derivative d(a, f(a))."""

    def rule(a: Any) -> Dual:
        out = f(_v(a))
        return Dual(out, _times(d(_v(a), out), _t(a)))

    return rule


def _power(a: Any, b: Any) -> Dual:
    av, bv = _v(a), _v(b)
    out = np.power(av, bv)
    with np.errstate(all="ignore"):
        da = _times(bv * np.power(av, bv - 1), _t(a))
        db = _times(out * np.log(av), _t(b))
    return Dual(out, da + db)


def _logaddexp(a: Any, b: Any) -> Dual:
    av, bv = _v(a), _v(b)
    out = np.logaddexp(av, bv)
    with np.errstate(all="ignore"):
        return Dual(out, _times(np.exp(av - out), _t(a)) + _times(np.exp(bv - out), _t(b)))


def _divide(a: Any, b: Any) -> Dual:
    av, bv = _v(a), _v(b)
    with np.errstate(all="ignore"):
        out = np.divide(av, bv)
        return Dual(out, _times(1 / bv, _t(a)) - _times(out / bv, _t(b)))


_RULES: dict[Any, Callable[..., Dual]] = {
    np.add: lambda a, b: Dual(_v(a) + _v(b), _t(a) + _t(b)),
    np.subtract: lambda a, b: Dual(_v(a) - _v(b), _t(a) - _t(b)),
    np.multiply: lambda a, b: Dual(_v(a) * _v(b), _times(_v(b), _t(a)) + _times(_v(a), _t(b))),
    np.divide: _divide,
    np.power: _power,
    np.logaddexp: _logaddexp,
    np.negative: lambda a: Dual(-_v(a), -_t(a)),
    np.positive: lambda a: Dual(+_v(a), +_t(a)),
    np.exp: _unary(np.exp, lambda a, out: out),
    np.log: _unary(np.log, lambda a, out: 1 / a),
    np.sqrt: _unary(np.sqrt, lambda a, out: 1 / (2 * out)),
    np.sin: _unary(np.sin, lambda a, out: np.cos(a)),
    np.cos: _unary(np.cos, lambda a, out: -np.sin(a)),
    np.tan: _unary(np.tan, lambda a, out: 1 + out * out),
    np.tanh: _unary(np.tanh, lambda a, out: 1 - out * out),
    # |a| inside other forwards (the stable sigmoid's exp(-|a|)): its right derivative at
    # 0, so that those stay smooth there. The abs op itself takes torch's 0 at the kink
    # through its own rule (engine._piecewise_on_duals).
    np.absolute: _unary(np.absolute, lambda a, out: np.where(a < 0, -1.0, 1.0)),
    np.sign: _unary(np.sign, lambda a, out: np.zeros_like(out)),
    # fmod(a, c) moves with a (between its jumps)
    np.fmod: lambda a, b: Dual(np.fmod(_v(a), _v(b)), _t(a)),
}
# Tests and comparisons look at the values alone.
_PREDICATES = {
    np.isnan, np.isfinite, np.isinf, np.less, np.less_equal, np.greater, np.greater_equal,
    np.equal, np.not_equal, np.logical_and, np.logical_or, np.logical_not,
}  # fmt: skip


def _axis_arg(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in ("axis", "keepdims")}


def _extreme(a: Any, pick: Callable[..., Array], **kwargs: Any) -> Dual:
    """max/min along axes: the tangent of the elements attaining it, shared on a tie."""
    kw = _axis_arg(kwargs)
    value = pick(_v(a), **kw)
    keep = pick(_v(a), axis=kw.get("axis"), keepdims=True)
    winners = _v(a) == keep
    tangent = np.sum(_t(a) * winners, **kw) / np.sum(winners, **kw)
    return Dual(value, tangent)


def _where(cond: Any, a: Any, b: Any) -> Dual:
    c = _v(cond)
    return Dual(np.where(c, _v(a), _v(b)), np.where(c, _t(a), _t(b)))


def _einsum(spec: str, a: Any, b: Any) -> Dual:
    value = np.einsum(spec, _v(a), _v(b))
    return Dual(value, np.einsum(spec, _t(a), _v(b)) + np.einsum(spec, _v(a), _t(b)))


def _like(make: Callable[..., Array]) -> Callable[..., Dual]:
    def like(a: Any, *args: Any, **kwargs: Any) -> Dual:
        value = make(_v(a), *args, **kwargs)
        return Dual(value, np.zeros_like(np.asarray(value, dtype=np.float64)))

    return like


def _both(f: Callable[..., Array]) -> Callable[..., Dual]:
    """A linear rearrangement: the same to the value and the tangent."""

    def both(a: Any, *args: Any, **kwargs: Any) -> Dual:
        return Dual(f(_v(a), *args, **kwargs), f(_t(a), *args, **kwargs))

    return both


_FUNCTIONS: dict[Any, Callable[..., Any]] = {
    np.where: _where,
    np.einsum: _einsum,
    np.sum: lambda a, **kw: Dual(np.sum(_v(a), **_axis_arg(kw)), np.sum(_t(a), **_axis_arg(kw))),
    np.mean: lambda a, **kw: Dual(np.mean(_v(a), **_axis_arg(kw)), np.mean(_t(a), **_axis_arg(kw))),
    np.max: lambda a, **kw: _extreme(a, np.max, **kw),
    np.min: lambda a, **kw: _extreme(a, np.min, **kw),
    np.expand_dims: _both(np.expand_dims),
    np.swapaxes: _both(np.swapaxes),
    np.reshape: _both(np.reshape),
    np.broadcast_to: _both(np.broadcast_to),
    np.ones_like: _like(np.ones_like),
    np.zeros_like: _like(np.zeros_like),
    np.shape: lambda a: np.shape(_v(a)),
    np.ndim: lambda a: np.ndim(_v(a)),
    np.result_type: lambda *args: np.result_type(*(_v(a) for a in args)),
}


class Dual:
    """value + ε·tangent, elementwise, for numpy arrays of one shape."""

    __array_priority__ = 1000

    def __init__(self, value: Array, tangent: Array) -> None:
        value = np.asarray(value, dtype=np.float64)
        self.value = value[()] if value.ndim == 0 else value
        tangent = np.broadcast_to(np.asarray(tangent, dtype=np.float64), np.shape(value))
        self.tangent = tangent[()] if tangent.ndim == 0 else np.array(tangent)

    # -- numpy protocol --
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method != "__call__" or kwargs.get("out") is not None:
            return NotImplemented
        if ufunc in _PREDICATES:
            return ufunc(*(_v(x) for x in inputs))
        rule = _RULES.get(ufunc)
        if rule is None:
            raise TypeError(f"no forward-mode rule for numpy's {ufunc.__name__}")
        return rule(*inputs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        rule = _FUNCTIONS.get(func)
        if rule is None:
            raise TypeError(f"no forward-mode rule for numpy's {func.__name__}")
        return rule(*args, **kwargs)

    # -- array-like --
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.value))

    @property
    def ndim(self) -> int:
        return int(np.ndim(self.value))

    @property
    def dtype(self) -> Any:
        return np.result_type(self.value)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Dual:
        return Dual(
            np.sum(self.value, axis=axis, keepdims=keepdims),
            np.sum(self.tangent, axis=axis, keepdims=keepdims),
        )

    def __getitem__(self, index: Any) -> Dual:
        return Dual(np.asarray(self.value)[index], np.asarray(self.tangent)[index])

    def __setitem__(self, index: Any, other: Any) -> None:
        value, tangent = np.array(self.value), np.array(self.tangent)
        value[index] = _v(other)
        tangent[index] = _t(other)
        self.value, self.tangent = value, tangent

    # -- operators, through the ufuncs above --
    def __add__(self, o: Any) -> Any:
        return _np.add(self, o)

    def __radd__(self, o: Any) -> Any:
        return _np.add(o, self)

    def __sub__(self, o: Any) -> Any:
        return _np.subtract(self, o)

    def __rsub__(self, o: Any) -> Any:
        return _np.subtract(o, self)

    def __mul__(self, o: Any) -> Any:
        return _np.multiply(self, o)

    def __rmul__(self, o: Any) -> Any:
        return _np.multiply(o, self)

    def __truediv__(self, o: Any) -> Any:
        return _np.divide(self, o)

    def __rtruediv__(self, o: Any) -> Any:
        return _np.divide(o, self)

    def __pow__(self, o: Any) -> Any:
        return _np.power(self, o)

    def __rpow__(self, o: Any) -> Any:
        return _np.power(o, self)

    def __neg__(self) -> Any:
        return _np.negative(self)

    def __pos__(self) -> Any:
        return _np.positive(self)

    def __abs__(self) -> Any:
        return _np.absolute(self)

    def __lt__(self, o: Any) -> Any:
        return _np.less(self, o)

    def __le__(self, o: Any) -> Any:
        return _np.less_equal(self, o)

    def __gt__(self, o: Any) -> Any:
        return _np.greater(self, o)

    def __ge__(self, o: Any) -> Any:
        return _np.greater_equal(self, o)

    def __eq__(self, o: Any) -> Any:
        return _np.equal(self, o)

    def __ne__(self, o: Any) -> Any:
        return _np.not_equal(self, o)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Dual({self.value!r}, {self.tangent!r})"


def value_of(x: Any) -> Any:
    return _v(x)


def tangent_of(x: Any) -> Any:
    return _t(x)
