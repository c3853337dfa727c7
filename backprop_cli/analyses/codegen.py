"""Generated code as data: the graph turned into straight-line statements over a small
vocabulary of array functions, one statement per node forward and one per wire backward
(adjoints accumulated with += in the reverse sweep's order), or the forward-mode (tangent)
sweep, or forward over reverse (Hessians). render/code.py prints it in each language.

Elementwise rules are traced from the registry's own numpy code, so the generated code keeps
the engine's conventions at kinks and ties; array ops give their rules in the registry.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core import ops
from ..core.errors import InputError
from ..core.graph import Graph

MODES = ("reverse", "forward", "hessian")

# The vocabulary: every function an expression may call. Elementwise ones carry numpy's
# function, so constants fold and the printers know their arity.
# (numpy's own names: the vocabulary is numpy's, whatever the target)
_NUMPY = (
    np.add, np.subtract, np.multiply, np.divide, np.power, np.negative, np.positive, np.exp,
    np.log, np.sqrt, np.logaddexp, np.sin, np.cos, np.tan, np.tanh, np.absolute, np.sign,
    np.fmod, np.isnan, np.less, np.less_equal, np.greater, np.greater_equal, np.equal,
    np.not_equal,
)  # fmt: skip
ELEMENTWISE: dict[str, Callable[..., Any]] = {f.__name__: f for f in _NUMPY}
ELEMENTWISE |= {"or": np.logical_or, "and": np.logical_and}
PREDICATES = {"isnan", "less", "less_equal", "greater", "greater_equal", "equal", "not_equal",
              "or", "and"}  # fmt: skip
ARRAY = {
    "sum", "mean", "amax", "amin", "dot", "matmul", "transpose", "reshape", "getitem",
    "spread", "size", "share", "share_tangent", "matmul_grad_a", "matmul_grad_b", "scatter",
    "reshape_as", "unbroadcast", "zeros_like", "ones_like",
}  # fmt: skip
# Results that may share memory with an argument: numpy and torch copy them before a += that
# would otherwise write through to another name.
MAY_ALIAS = {"name", "unbroadcast", "reshape_as", "transpose", "spread"}

_UFUNCS: dict[Any, str] = {f: name for name, f in ELEMENTWISE.items()}
_UFUNCS |= {np.bitwise_or: "or", np.bitwise_and: "and"}


class NoCode(Exception):
    """A rule that uses numpy beyond the code's vocabulary (a bug in the registry)."""


@dataclass(frozen=True, eq=False)
class Expr:
    """A name, a constant, or a call of a vocabulary function. Compared by identity: a
    subexpression used twice is one object, which the code then computes once."""

    fn: str  # "name", "const" or a vocabulary function
    args: tuple[Expr, ...] = ()
    value: Any = None  # a name's identifier; a constant's float, bool or array
    attrs: tuple[tuple[str, Any], ...] = ()

    @property
    def kw(self) -> dict[str, Any]:
        return dict(self.attrs)


def name(identifier: str) -> Expr:
    return Expr("name", value=identifier)


def const(value: Any) -> Expr:
    if isinstance(value, (bool, np.bool_)):
        return Expr("const", value=bool(value))
    arr = np.asarray(value)
    return Expr("const", value=float(arr) if arr.ndim == 0 else np.array(arr, dtype=np.float64))


def _is(e: Expr | None, number: float) -> bool:
    return (
        e is not None
        and e.fn == "const"
        and not isinstance(e.value, (bool, np.ndarray))
        and e.value == number
    )


def _scalar_const(e: Expr) -> bool:
    return e.fn == "const" and not isinstance(e.value, np.ndarray)


def call(fn: str, *args: Expr, **attrs: Any) -> Expr:
    """fn(*args), simplified where that is exact: constants folded, x*1, x+0, x/1, x**1,
    --x and +x dropped, a constant condition decided."""
    assert fn in ELEMENTWISE or fn in ARRAY, fn
    if fn in ELEMENTWISE and args and all(_scalar_const(a) for a in args):
        with np.errstate(all="ignore"):
            return const(ELEMENTWISE[fn](*(a.value for a in args)))
    a = args[0] if args else None
    b = args[1] if len(args) > 1 else None
    if fn == "multiply":
        if _is(a, 1):
            return args[1]
        if _is(b, 1):
            return args[0]
        if _is(a, -1):
            return call("negative", args[1])
    elif fn == "add":
        if _is(a, 0):
            return args[1]
        if _is(b, 0):
            return args[0]
    elif fn == "subtract":
        if _is(b, 0):
            return args[0]
        if _is(a, 0):
            return call("negative", args[1])
    elif fn in ("divide", "power") and _is(b, 1):
        return args[0]
    elif fn == "negative" and args[0].fn == "negative":
        return args[0].args[0]
    elif fn == "positive":
        return args[0]
    elif fn == "where":
        cond, left, right = args
        if cond.fn == "const":
            return left if cond.value else right
        if left is right:
            return left
    elif fn in ("or", "and") and (_scalar_const(args[0]) or _scalar_const(args[1])):
        known, other = (args[0], args[1]) if _scalar_const(args[0]) else (args[1], args[0])
        if bool(known.value) == (fn == "or"):
            return const(fn == "or")
        return other
    kept = tuple((k, v) for k, v in attrs.items() if v is not None)
    return Expr(fn, tuple(args), attrs=kept)


def plus(a: Expr | None, b: Expr | None) -> Expr | None:
    """a + b where None is an exact zero (a tangent that is known to vanish)."""
    if a is None:
        return b
    if b is None:
        return a
    return call("add", a, b)


def times(a: Expr | None, b: Expr) -> Expr | None:
    """a * b where None is an exact zero."""
    return None if a is None else call("multiply", a, b)


class Builder:
    """What the registry's code rules receive as `c`."""

    call = staticmethod(call)
    plus = staticmethod(plus)


BUILDER = Builder()

ELEMENTWISE["where"] = np.where


# ---- tracing the registry's numpy rules ------------------------------------------------------


def _lift(x: Any) -> Expr:
    if isinstance(x, Sym):
        return x.expr
    if isinstance(x, Expr):
        return x
    arr = np.asarray(x)
    if arr.ndim:
        raise NoCode("a rule made an array constant")
    return const(arr[()])


class Sym:
    """A placeholder that numpy code runs on: every operation builds an expression."""

    __array_priority__ = 1000

    def __init__(self, expr: Expr) -> None:
        self.expr = expr

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = _UFUNCS.get(ufunc)
        if method != "__call__" or kwargs or fn is None:
            raise NoCode(f"numpy's {ufunc.__name__} has no counterpart in generated code")
        return Sym(call(fn, *(_lift(x) for x in inputs)))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.where and not kwargs:
            return Sym(call("where", *(_lift(x) for x in args)))
        if func is np.result_type:
            return np.dtype(np.float64)
        raise NoCode(f"numpy's {func.__name__} has no counterpart in generated code")

    def __getitem__(self, index: Any) -> Sym:
        if index != ():
            raise NoCode("a rule indexes its operand")
        return self

    def _op(fn: str, swap: bool = False) -> Any:  # type: ignore[misc]
        def method(self: Sym, other: Any) -> Sym:
            pair = (_lift(other), self.expr) if swap else (self.expr, _lift(other))
            return Sym(call(fn, *pair))

        return method

    __add__, __radd__ = _op("add"), _op("add", True)
    __sub__, __rsub__ = _op("subtract"), _op("subtract", True)
    __mul__, __rmul__ = _op("multiply"), _op("multiply", True)
    __truediv__, __rtruediv__ = _op("divide"), _op("divide", True)
    __pow__, __rpow__ = _op("power"), _op("power", True)
    __or__, __ror__ = _op("or"), _op("or", True)
    __and__, __rand__ = _op("and"), _op("and", True)
    __lt__, __le__ = _op("less"), _op("less_equal")
    __gt__, __ge__ = _op("greater"), _op("greater_equal")
    __eq__, __ne__ = _op("equal"), _op("not_equal")
    __hash__ = None  # type: ignore[assignment]

    def __neg__(self) -> Sym:
        return Sym(call("negative", self.expr))

    def __pos__(self) -> Sym:
        return self

    def __abs__(self) -> Sym:
        return Sym(call("absolute", self.expr))


def trace(rule: Callable[..., Any], *args: Expr) -> Expr:
    """The expression a registry rule computes, given its arguments' expressions."""
    with np.errstate(all="ignore"):
        return _lift(rule(*(Sym(a) for a in args)))


# ---- the tangent of an expression (forward over reverse) -------------------------------------


def tangent(e: Expr, tangents: dict[str, Expr]) -> Expr | None:
    """d e along the direction the names' tangents give (None: exactly zero), by the same
    rules as the engine's dual numbers."""
    memo: dict[int, Expr | None] = {}

    def t(x: Expr) -> Expr | None:
        if id(x) not in memo:
            memo[id(x)] = _tangent_of(x, t, tangents)
        return memo[id(x)]

    return t(e)


def _tangent_of(e: Expr, t: Callable[[Expr], Expr | None], tangents: dict[str, Expr]) -> Any:
    if e.fn == "name":
        return tangents.get(e.value)
    if e.fn in ("const", "sign", "ones_like", "zeros_like", "size") or e.fn in PREDICATES:
        return None
    a = e.args[0]
    b = e.args[1] if len(e.args) > 1 else a
    ta = t(a)
    tb = t(b) if len(e.args) > 1 else None
    fn = e.fn
    if fn == "add":
        return plus(ta, tb)
    if fn == "subtract":
        return plus(ta, None if tb is None else call("negative", tb))
    if fn == "multiply":
        return plus(times(ta, b), None if tb is None else call("multiply", a, tb))
    if fn == "divide":
        left = None if ta is None else call("divide", ta, b)
        right = None if tb is None else call("multiply", call("divide", e, b), tb)
        return plus(left, None if right is None else call("negative", right))
    if fn == "power":
        left = times(ta, call("multiply", b, call("power", a, call("subtract", b, const(1.0)))))
        return plus(left, times(tb, call("multiply", e, call("log", a))))
    if fn == "negative":
        return None if ta is None else call("negative", ta)
    if fn == "positive" or fn == "fmod":
        return ta
    if fn == "where":
        tl, tr = t(e.args[1]), t(e.args[2])
        if tl is None and tr is None:
            return None
        zero = const(0.0)
        return call("where", e.args[0], tl or zero, tr or zero)
    if fn == "logaddexp":
        left = times(ta, call("exp", call("subtract", a, e)))
        return plus(left, times(tb, call("exp", call("subtract", b, e))))
    if ta is None:
        return None
    local = {
        np.exp.__name__: lambda: e,
        np.log.__name__: lambda: call("divide", const(1.0), a),
        np.sqrt.__name__: lambda: call("divide", const(1.0), call("multiply", const(2.0), e)),
        np.sin.__name__: lambda: call("cos", a),
        np.cos.__name__: lambda: call("negative", call("sin", a)),
        np.tan.__name__: lambda: call("add", const(1.0), call("multiply", e, e)),
        np.tanh.__name__: lambda: call("subtract", const(1.0), call("multiply", e, e)),
        # inside other rules |a| takes its right derivative at 0, as the dual numbers do
        np.absolute.__name__: lambda: call(
            "where", call("less", a, const(0.0)), const(-1.0), const(1.0)
        ),
    }.get(fn)
    if local is None:
        raise NoCode(f"no tangent rule for {fn} in generated code")
    return call("multiply", ta, local())


# ---- the program -----------------------------------------------------------------------------


@dataclass
class Stmt:
    """target = expr (or +=), with a comment naming the rule. `copy`: numpy and torch copy
    the value, because a later += to this name must not write through to another."""

    target: str
    expr: Expr
    accumulate: bool = False
    comment: str = ""
    copy: bool = False
    temp: bool = False  # a subexpression computed once for the statement after it
    local: Expr | None = None  # the comment ends with this expression, in the target's syntax


@dataclass
class Code:
    """A whole generated function: its parameters, body and results, plus what the
    printers need to know (the helpers it uses, whether it works on arrays)."""

    mode: str
    name: str
    params: list[str]  # the variables' code names, in order of first appearance
    variables: list[str]  # the same variables as the user wrote them
    wrt: list[str]  # the variables differentiated (code names)
    body: list[Stmt | str]  # a str is a section comment
    value: Expr
    grads: list[Expr]  # reverse, hessian: d_v per variable in wrt; forward: [the tangent]
    hvp: list[Expr] = field(default_factory=list)  # hessian: the tangents of the gradient
    tangent_params: list[str] = field(default_factory=list)  # forward, hessian
    arrays: bool = False  # uses array ops (numpy, torch, jax only)
    used: set[str] = field(default_factory=set)  # every vocabulary function called
    output: str = "f"  # what the output is called
    statements: int = 0  # forward statements (graph nodes)


PY_RESERVED = set(keyword.kwlist) | {
    "math", "np", "torch", "jnp", "jax", "abs", "max", "min", "float", "print", "range", "len",
    "self", "None", "True", "False", "grad", "hvp", "_unbroadcast", "_share", "_share_tangent",
    "_matmul_grad_a", "_matmul_grad_b", "_scatter", "_transpose", "slice", "tuple",
}  # fmt: skip
# C99's keywords, the <math.h> functions the code calls and the names of its own arguments
C_RESERVED = set(
    """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while bool true false exp log sqrt sin cos tan tanh fabs fmod
    pow log1p fmax isnan NAN INFINITY main grad hess hvp t_out size_t NULL errno
    math_errhandling signbit acos asin atan atan2 cosh sinh acosh asinh atanh exp2 expm1
    frexp ldexp log10 log2 logb modf scalbn scalbln cbrt hypot erf erfc lgamma tgamma ceil
    floor nearbyint rint lrint llrint round lround llround trunc remainder remquo copysign
    nan nextafter nexttoward fdim fmin fma ilogb isfinite isinf isnormal fpclassify
    isgreater isgreaterequal isless islessequal islessgreater isunordered HUGE_VAL
    HUGE_VALF HUGE_VALL FP_NAN FP_INFINITE FP_ZERO FP_SUBNORMAL FP_NORMAL FP_FAST_FMA
    FP_FAST_FMAF FP_FAST_FMAL FP_ILOGB0 FP_ILOGBNAN MATH_ERRNO MATH_ERREXCEPT float_t
    double_t asm typeof M_E M_LOG2E M_LOG10E M_LN2 M_LN10 M_PI M_PI_2 M_PI_4 M_1_PI M_2_PI
    M_2_SQRTPI M_SQRT2 M_SQRT1_2 printf fprintf sprintf snprintf puts putchar scanf exit
    abort malloc calloc realloc free abs labs llabs div strlen strcmp strcpy memcpy memset
    memmove rand srand atoi atof qsort bsearch time clock
    """.split()  # noqa: SIM905  (the words are C's, not op names of the registry)
)


class Namer:
    """Unique identifiers: a wanted name, with '_' appended while it is taken or reserved."""

    def __init__(self, reserved: Iterable[str]) -> None:
        self.taken = set(reserved)

    def fresh(self, wanted: str) -> str:
        got = wanted
        while got in self.taken:
            got += "_"
        self.taken.add(got)
        return got


def is_array_program(graph: Graph) -> bool:
    """Whether any node is an array op or an array constant."""
    for node in graph.nodes:
        if node.op == "const" and np.ndim(node.value) > 0:
            return True
        if node.op not in ops.LEAVES and not ops.OPS[node.op].elementwise:
            return True
    return False


def first_array_node(graph: Graph) -> int | None:
    for node in graph.nodes:
        if node.op == "const" and np.ndim(node.value) > 0:
            return node.id
        if node.op not in ops.LEAVES and not ops.OPS[node.op].elementwise:
            return node.id
    return None


def default_name(mode: str) -> str:
    return {"reverse": "f_and_grad", "forward": "f_and_tangent", "hessian": "f_grad_and_hessian"}[
        mode
    ]


class _Build:
    def __init__(self, graph: Graph, reserved: set[str], arrays: bool) -> None:
        self.graph = graph
        self.arrays = arrays
        self.namer = Namer(reserved)
        self.reach = graph.ancestors_of_output()
        self.values: dict[int, Expr] = {}  # node id -> its value's expression
        self.codes: dict[int, str] = {}  # node id -> its code name (op and input nodes)
        self.body: list[Stmt | str] = []
        self.folded: dict[int, Expr] = {}  # op nodes whose value is a constant
        self._name_nodes()

    def _name_nodes(self) -> None:
        g = self.graph
        inputs = [n for n in g.nodes if n.op == "input"]
        for node in inputs:  # the variables first: their names are the user's
            assert node.name is not None
            self.codes[node.id] = self.namer.fresh(node.name)
        counts: dict[str, int] = {}
        output = g.output_name()
        unnamed = 0
        for node in g.nodes:
            if node.op == "input" or not self.reach[node.id]:
                continue
            if node.op == "const":
                if np.ndim(node.value) > 0:
                    self.codes[node.id] = self.namer.fresh("c" + str(len(self.codes) + 1))
                continue
            if node.name is not None:
                counts[node.name] = counts.get(node.name, 0) + 1
                k = counts[node.name]
                wanted = node.name if k == 1 else f"{node.name}_{k}"
            elif node.id == g.output:
                wanted = output
            else:
                unnamed += 1
                wanted = f"t{unnamed}"
            self.codes[node.id] = self.namer.fresh(wanted)

    def value(self, node_id: int) -> Expr:
        if node_id in self.folded:
            return self.folded[node_id]
        node = self.graph.nodes[node_id]
        if node.op == "const" and node_id not in self.codes:
            return const(node.value)
        return name(self.codes[node_id])

    def emit(
        self,
        target: str,
        expr: Expr,
        accumulate: bool = False,
        comment: str = "",
        local: Expr | None = None,
    ) -> None:
        """target = expr, with every subexpression the expression uses twice computed first."""
        for sub in _shared(expr):
            temp = self.namer.fresh(f"{target}_{sub.fn}")
            self.body.append(Stmt(temp, sub, temp=True))
            expr = _replace(expr, sub, name(temp))
        self.body.append(Stmt(target, expr, accumulate, comment, local=local))

    # -- forward --
    def forward(self) -> None:
        g = self.graph
        for node in g.nodes:
            if not self.reach[node.id] or node.op == "input":
                continue
            if node.op == "const":
                if node.id in self.codes:
                    self.body.append(Stmt(self.codes[node.id], const(node.value)))
                continue
            op = ops.OPS[node.op]
            args = [self.value(i) for i in node.inputs]
            expr = self.forward_expr(op, args, node.params)
            if expr.fn == "const":  # an op of constants: a constant, written where it is used
                self.folded[node.id] = expr
                continue
            shown = _shown_call(op, [_text(a) for a in args], node.params)
            comment = shown if _uses(expr, {"where"}) else ""
            self.emit(self.codes[node.id], expr, comment=comment)

    @staticmethod
    def forward_expr(op: ops.Op, args: list[Expr], params: dict[str, Any]) -> Expr:
        if op.code is not None:
            return op.code(BUILDER, *args, **params)  # type: ignore[no-any-return]
        if not op.elementwise:
            raise NoCode(f"{op.name} has no rule for generated code")
        return trace(op.forward, *args)

    def vjp(self, op: ops.Op, k: int, g: Expr, out: Expr, args: list[Expr], params: Any) -> Expr:
        if op.code_vjp:
            return op.code_vjp[k](BUILDER, g, out, *args, **params)  # type: ignore[no-any-return]
        return trace(op.vjp[k], g, out, *args)


def _text(e: Expr) -> str:
    if e.fn == "name":
        return str(e.value)
    if e.fn == "const" and not isinstance(e.value, np.ndarray):
        return number_text(e.value)
    return "…"


def number_text(x: Any) -> str:
    """The shortest text that reads back as x (integers without a point)."""
    if isinstance(x, bool):
        return str(x)
    f = float(x)
    if f.is_integer() and abs(f) < 1e16:
        return str(int(f))
    return repr(f)


def _shown_call(op: ops.Op, args: list[str], params: dict[str, Any]) -> str:
    """The node as the user's syntax writes it, over code names: (q*z), sigmoid(h11), W@x."""
    if op.symbol == "=":
        return args[0]
    if (op.symbol and len(args) == 2 and op.call is None) or op.symbol == "@":
        return f"({args[0]}{op.symbol}{args[1]})"
    if op.symbol == "**":
        return f"({args[0]}**{args[1]})"
    if op.symbol and len(args) == 1:
        return f"({op.symbol}{args[0]})"
    if "index" in params:
        return f"{args[0]}[{', '.join(_index_text(i) for i in params['index'])}]"
    extra = [f"{k}={v}" for k, v in params.items() if k == "axis" and v is not None]
    if "shape" in params:
        extra = [", ".join(str(d) for d in params["shape"])]
    return f"{op.call or op.name}({', '.join(args + extra)})"


def _index_text(item: Any) -> str:
    if not isinstance(item, tuple):
        return str(item)
    start, stop, step = item[1:]
    text = f"{'' if start is None else start}:{'' if stop is None else stop}"
    return text + ("" if step is None else f":{step}")


def index_text(index: Iterable[Any]) -> str:
    return ", ".join(_index_text(i) for i in index)


def walk(e: Expr) -> Iterable[Expr]:
    stack = [e]
    while stack:
        x = stack.pop()
        yield x
        stack.extend(reversed(x.args))


def _uses(e: Expr, fns: set[str]) -> bool:
    return any(x.fn in fns for x in walk(e))


def _shared(e: Expr) -> list[Expr]:
    """Calls the expression reaches more than once, innermost first."""
    counts: dict[int, int] = {}
    order: list[Expr] = []

    def visit(x: Expr) -> None:
        counts[id(x)] = counts.get(id(x), 0) + 1
        if counts[id(x)] > 1:
            return
        for a in x.args:
            visit(a)
        order.append(x)

    visit(e)
    return [x for x in order if counts[id(x)] > 1 and x.fn not in ("name", "const")]


def _replace(e: Expr, old: Expr, new: Expr) -> Expr:
    memo: dict[int, Expr] = {}

    def go(x: Expr) -> Expr:
        if x is old:
            return new
        if not x.args:
            return x
        if id(x) not in memo:
            args = tuple(go(a) for a in x.args)
            memo[id(x)] = (
                x
                if all(a is b for a, b in zip(args, x.args, strict=True))
                else (Expr(x.fn, args, x.value, x.attrs))
            )
        return memo[id(x)]

    return go(e)


def _calls(body: list[Stmt | str], extra: list[Expr]) -> set[str]:
    used: set[str] = set()
    for item in [s.expr for s in body if isinstance(s, Stmt)] + extra:
        used |= {x.fn for x in walk(item)}
    return used - {"name", "const"}


def build(
    graph: Graph,
    *,
    mode: str = "reverse",
    wrt: list[str] | None = None,
    fn_name: str | None = None,
    reserved: set[str] | None = None,
) -> Code:
    """The generated function for `graph`: reverse (value and gradient), forward (value and
    the tangent along given directions) or hessian (value, gradient and Hessian rows)."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: one of {', '.join(MODES)}")
    arrays = is_array_program(graph)
    if mode == "hessian" and arrays:
        raise InputError("the Hessian code is for scalar inputs; this program uses arrays")
    reserved = set(PY_RESERVED if reserved is None else reserved)
    chosen = fn_name or default_name(mode)
    reserved.add(chosen)
    b = _Build(graph, reserved, arrays)
    inputs = [n for n in graph.nodes if n.op == "input"]
    variables = [n.name for n in inputs if n.name is not None]
    params = [b.codes[n.id] for n in inputs]
    wanted = variables if wrt is None else wrt
    if wrt is not None and not wrt:
        raise InputError("--wrt names no variable", hint=f"its variables: {', '.join(variables)}")
    unknown = [w for w in wanted if w not in graph.variables]
    if unknown:
        raise InputError(
            f"--wrt names {', '.join(unknown)}, which the expression does not use",
            hint=f"its variables: {', '.join(variables) or 'none'}",
        )
    order = [v for v in variables if v in wanted]
    wrt_nodes = [graph.variables[v] for v in order]
    code = Code(
        mode, chosen, params, variables, [b.codes[i] for i in wrt_nodes], [], const(0.0), [],
        arrays=arrays, output=b.codes.get(graph.output, graph.output_name()),
    )  # fmt: skip
    code.statements = sum(1 for n in graph.nodes if b.reach[n.id] and n.op not in ops.LEAVES)
    b.body.append("forward")
    if mode == "forward":
        _forward_mode(b, code, wrt_nodes)
    else:
        b.forward()
        _reverse(b, code, wrt_nodes, hessian=mode == "hessian")
    code.value = b.value(graph.output)
    code.body = _prune(b.body, [code.value, *code.grads, *code.hvp])
    code.used = _calls(b.body, [code.value, *code.grads, *code.hvp])
    return code


def _prune(body: list[Stmt | str], results: list[Expr]) -> list[Stmt | str]:
    """The statements that the results depend on (tangents no one asks for go), with the
    section comments of the sections that keep any."""
    live = {x.value for r in results for x in walk(r) if x.fn == "name"}
    kept: list[Stmt | str] = []
    for item in reversed(body):
        if isinstance(item, str):
            if kept and not isinstance(kept[-1], str):
                kept.append(item)
            continue
        if item.target in live:
            kept.append(item)
            live |= {x.value for x in walk(item.expr) if x.fn == "name"}
    return kept[::-1]


def _needs(graph: Graph, wrt_nodes: list[int]) -> list[bool]:
    """Which nodes depend on a variable differentiated."""
    chosen = set(wrt_nodes)
    needs: list[bool] = []
    for node in graph.nodes:
        needs.append(node.id in chosen or any(needs[i] for i in node.inputs))
    return needs


def _zeros(like: Expr) -> Expr:
    return call("zeros_like", like)


def _ones(like: Expr) -> Expr:
    return call("ones_like", like)


def _reverse(b: _Build, code: Code, wrt_nodes: list[int], hessian: bool) -> None:
    g = b.graph
    needs = _needs(g, wrt_nodes)
    adjoint: dict[int, str] = {}
    counts: dict[str, int] = {}
    tangents: dict[str, Expr] = {}  # hessian: each name's tangent
    if hessian:
        code.tangent_params = [b.namer.fresh(f"t_{b.codes[i]}") for i in wrt_nodes]
        tangents = {
            b.codes[i]: name(t) for i, t in zip(wrt_nodes, code.tangent_params, strict=True)
        }
        _forward_tangents(b, tangents)
    out = g.output
    b.body.append("backward")
    if needs[out] and b.reach[out]:
        adjoint[out] = b.namer.fresh(f"d_{b.codes[out]}")
        b.emit(adjoint[out], _ones(b.value(out)), comment=f"d{code.output}/d{code.output} = 1")
    for node in reversed(g.nodes[: out + 1]):
        if node.id not in adjoint or node.op in ops.LEAVES:
            continue
        op = ops.OPS[node.op]
        args = [b.value(i) for i in node.inputs]
        here = b.value(node.id)
        gexpr = name(adjoint[node.id])
        for k, i in enumerate(node.inputs):
            if not needs[i]:
                continue
            contrib = b.vjp(op, k, gexpr, here, args, node.params)
            if b.arrays and op.elementwise and op.arity > 1:
                contrib = call("unbroadcast", contrib, args[k])
            first = i not in adjoint
            if first:
                adjoint[i] = b.namer.fresh(f"d_{b.codes[i]}")
            target = adjoint[i]
            counts[target] = counts.get(target, 0) + 1
            text, local = _rule_comment(op, k, args, here, node.params)
            b.emit(target, contrib, accumulate=not first, comment=text, local=local)
            if hessian:
                _adjoint_tangent(b, target, contrib, tangents, counts)
    _mark_copies(b.body, counts)
    for i in wrt_nodes:
        if i not in adjoint:
            adjoint[i] = b.namer.fresh(f"d_{b.codes[i]}")
            zero = _zeros(b.value(i))
            b.body.append(Stmt(adjoint[i], zero, comment=f"{code.output} does not depend on it"))
        code.grads.append(name(adjoint[i]))
        if hessian:
            code.hvp.append(tangents.get(adjoint[i], const(0.0)))


def _adjoint_tangent(
    b: _Build, target: str, contrib: Expr, tangents: dict[str, Expr], counts: dict[str, int]
) -> None:
    """Forward over reverse: the tangent of an adjoint's statement, after it."""
    t = tangent(contrib, tangents)
    if t is None:
        return
    if target not in tangents:
        tangents[target] = name(b.namer.fresh(f"t_{target}"))
        b.emit(tangents[target].value, t)
    else:
        b.emit(tangents[target].value, t, accumulate=True)
    counts[tangents[target].value] = counts.get(tangents[target].value, 0) + 1


def _mark_copies(body: list[Stmt | str], counts: dict[str, int]) -> None:
    seen: set[str] = set()
    for s in body:
        if isinstance(s, Stmt) and not s.temp and s.target not in seen:
            seen.add(s.target)
            s.copy = counts.get(s.target, 0) > 1 and s.expr.fn in MAY_ALIAS


def _rule_comment(
    op: ops.Op, k: int, args: list[Expr], out: Expr, params: dict[str, Any]
) -> tuple[str, Expr | None]:
    """d/dq (q*z) = z: the local derivative the statement multiplies by (its expression
    printed in the target's language)."""
    shown = _shown_call(op, [_text(a) for a in args], params)
    wire = _text(args[k])
    if op.symbol == "=":
        shown = f"({_text(out)} = {shown})"
    if op.code_vjp:
        parts = op.rule.split(", ")
        rule = parts[k] if len(parts) == op.arity else op.rule
        return f"d/d{wire} {shown}: {rule}", None
    return f"d/d{wire} {shown} = ", trace(op.vjp[k], const(1.0), out, *args)


def _forward_tangents(b: _Build, tangents: dict[str, Expr]) -> None:
    """t_name = the tangent of every forward value along the direction, after the forward
    statements (elementwise: each input's VJP applied to its tangent, so kinks take the
    same subgradient as the gradient)."""
    g = b.graph
    b.body.append("tangents")
    for node in g.nodes:
        if not b.reach[node.id] or node.op in ops.LEAVES:
            continue
        op = ops.OPS[node.op]
        args = [b.value(i) for i in node.inputs]
        ts = [tangents.get(a.value) if a.fn == "name" else None for a in args]
        here = b.value(node.id)
        if op.code_jvp is not None:
            t = op.code_jvp(BUILDER, ts, here, *args, **node.params)
        else:
            t = None
            for k, tk in enumerate(ts):
                if tk is not None:
                    t = plus(t, trace(op.vjp[k], tk, here, *args))
        if t is not None:
            target = b.namer.fresh(f"t_{b.codes[node.id]}")
            tangents[b.codes[node.id]] = name(target)
            b.emit(target, t)


def _forward_mode(b: _Build, code: Code, wrt_nodes: list[int]) -> None:
    b.forward()
    code.tangent_params = [b.namer.fresh(f"t_{b.codes[i]}") for i in wrt_nodes]
    tangents = {b.codes[i]: name(t) for i, t in zip(wrt_nodes, code.tangent_params, strict=True)}
    _forward_tangents(b, tangents)
    out = b.value(b.graph.output)
    found = tangents.get(out.value) if out.fn == "name" else None
    if found is None and out.fn == "const":
        found = const(0.0)  # a constant output: no tangent
    elif found is None:
        zero = b.namer.fresh(f"t_{code.output}")
        comment = f"{code.output} does not depend on them"
        b.body.append(Stmt(zero, _zeros(out), comment=comment))
        found = name(zero)
    code.grads = [found]
