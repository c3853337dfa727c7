"""SymEngine's differentiation for the symbolic checks, the only module that imports symengine:
the registry's SymPy counterparts built in symengine, differentiated there, valued there and
turned back into SymPy expressions; a graph SymEngine would write otherwise is SymPy's."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from decimal import Decimal
from functools import partial
from typing import Any

import numpy as np

from ..core import ops
from ..core.graph import Graph

ENV = "BACKPROP_SYMBOLIC"  # sympy | symengine | auto (unset): symengine for large graphs
BITS = 192  # working precision of the values (SymPy's path works to 30 digits, ~100 bits)
# Below this many scalar operations SymPy takes well under a second, and its text is the
# reference: SymEngine's differs now and then in how it groups signs and factors
# (2*(t**2 + 1) for SymPy's (2*t**2 + 2)), though never in value. BACKPROP_SYMBOLIC=symengine
# uses SymEngine whatever the size.
LARGE = 60
# SymEngine recurses in C++ as deep as the expression: far past this it would overflow the
# stack (SymPy raises RecursionError, which is reported).
MAX_DEPTH = 1000


def choice() -> str:
    """The setting: "sympy", "symengine" or "auto"."""
    wanted = os.environ.get(ENV, "").strip().lower()
    return wanted if wanted in ("sympy", "symengine") else "auto"


def installed() -> bool:
    try:
        import symengine  # noqa: F401
    except ImportError:
        return False
    return True


def backend(size: int = LARGE + 1) -> str:
    """Which library differentiates a graph of `size` scalar operations."""
    wanted = choice()
    if wanted == "sympy" or (wanted == "auto" and size <= LARGE) or not installed():
        return "sympy"
    return "symengine"


def depth(graph: Graph) -> int:
    """The longest chain of ops from a leaf to any node."""
    found: list[int] = []
    for node in graph.nodes:
        found.append(1 + max((found[i] for i in node.inputs), default=0))
    return max(found, default=0)


def size(graph: Graph, cores: list[Any] | None) -> int:
    """How many scalar operations the graph stands for (an array node counts each element)."""
    if cores is None:
        return len(graph.nodes)
    return sum(max(1, math.prod(core)) for core in cores)


class Unsupported(Exception):
    """Something SymEngine cannot write as SymPy does: the caller uses SymPy instead."""


class _Library:
    """symengine as the registry's counterparts see it, except that every exp(u) gets a base
    of its own: SymEngine merges exp(a)·exp(b) into exp(a + b), which SymPy keeps apart."""

    def __init__(self, se: Any) -> None:
        self._se = se
        self.bases: list[Any] = []

    def exp(self, u: Any) -> Any:
        base = self._se.Symbol(f"e#{len(self.bases)}")
        self.bases.append(base)
        return base**u

    def __getattr__(self, name: str) -> Any:
        return getattr(self._se, name)


class Fast:
    """The graph in SymEngine beside its SymPy build, with the ways back: `readable` (the
    constants as typed), `raw` (the constants as placeholders) and `value`."""

    def __init__(self, graph: Graph, built: Any, sp: Any, cores: list[Any] | None) -> None:
        import symengine as se

        self.se, self.sp = se, sp
        self.lib = _Library(se)
        self.to_se: dict[Any, Any] = {}  # SymPy symbol -> its SymEngine symbol
        self.raw_table: dict[Any, Any] = {}  # SymEngine symbol -> SymPy symbol
        self.shown_table: dict[Any, Any] = {}  # ... -> the same, constants as typed
        for k, symbol in enumerate(_leaves(built, graph)):
            mine = se.Symbol(f"{symbol.name}#{k}")
            self.to_se[symbol] = mine
            self.raw_table[mine] = symbol
            self.shown_table[mine] = built.shown.get(symbol, symbol)
        self.nodes = self._build(graph, built, cores)
        for base in self.lib.bases:
            self.raw_table[base] = self.shown_table[base] = sp.E
        self._raw, self._shown = Back(self.raw_table, sp), Back(self.shown_table, sp)
        self._images: dict[Any, Any] = {}

    def _build(self, graph: Graph, built: Any, cores: list[Any] | None) -> list[Any]:
        nodes: list[Any] = []
        for node in graph.nodes:
            mine = built.nodes[node.id]
            if node.op in ops.LEAVES:
                nodes.append(_each(lambda s: self.to_se[s], mine))
                continue
            op = ops.OPS[node.op]
            args = [nodes[i] for i in node.inputs]
            if not op.elementwise:
                ctx = (
                    ops.Ctx(
                        (0,) * len(args),
                        tuple(cores[i] for i in node.inputs),
                        cores[node.id],
                        node.params,
                    )
                    if cores is not None
                    else None
                )
                here = _array(op.sympy(self.lib, *args, ctx=ctx))
            elif any(isinstance(a, np.ndarray) for a in args):
                here = _array(np.frompyfunc(partial(op.sympy, self.lib), op.arity, 1)(*args))
            else:
                here = op.sympy(self.lib, *args)
            nodes.append(_each(self._distributed, here))
        return nodes

    def _distributed(self, e: Any) -> Any:
        """A number times a sum as SymPy writes it, spread over the terms (-(a + b) as
        -a - b): SymEngine keeps the product, and multiplying it further would differ."""
        if e.is_Mul and len(e.args) == 2:
            number, rest = sorted(e.args, key=lambda a: not a.is_Number)
            if number.is_Number and rest.is_Add:
                return self.se.Add(*(number * t for t in rest.args))
        return e

    def raw(self, e: Any) -> Any:
        """A SymEngine expression in SymPy, constants as placeholders."""
        return self._raw(e)

    def readable(self, e: Any) -> Any:
        """A SymEngine expression in SymPy, constants as typed."""
        return self._shown(e)

    # ---- SymPy's way into SymEngine, for the checks that both start alike ------------------

    def image(self, e: Any) -> Any:
        """A SymPy expression of our graph written in SymEngine (exp(u) as E**u)."""
        se = self.se
        if e in self.to_se:
            return self.to_se[e]
        if e in self._images:
            return self._images[e]
        if e.is_Rational:
            return se.Rational(int(e.p), int(e.q))
        if e is self.sp.pi or e is self.sp.E:
            return se.pi if e is self.sp.pi else se.E
        args = [self.image(a) for a in e.args]
        kind = type(e).__name__
        if kind == "exp":
            return se.E ** args[0]
        if kind in ("Add", "Mul", "Pow") or (e.is_Function and hasattr(se, kind)):
            out = getattr(se, kind)(*args)
            self._images[e] = out
            return out
        raise Unsupported(kind)

    def functions(self, e: Any) -> set[str]:
        """The names of the functions a SymEngine expression calls, exp included."""
        if not isinstance(e, self.se.Basic):
            return set()
        found = {type(f).__name__ for f in e.atoms(self.se.Function)}
        return found | {"exp"} if e.free_symbols & set(self.lib.bases) else found

    def merged(self, e: Any) -> Any:
        """A SymEngine expression with every exp's own base back to E."""
        return e.xreplace({b: self.se.E for b in self.lib.bases}) if self.lib.bases else e

    # ---- values ---------------------------------------------------------------------------

    def point(self, at: Mapping[Any, Any]) -> dict[Any, Any]:
        """SymPy's exact point (symbol -> the Rational of a float64) in SymEngine: an integer
        as it is, any other value as a binary float of BITS bits (which holds it exactly)."""
        return {self.to_se[s]: self._number(v) for s, v in at.items() if s in self.to_se}

    def _number(self, v: Any) -> Any:
        if not v.is_Rational:
            return self.image(v) if v.is_finite else self.se.nan  # a nan or ±inf given
        if v.is_Integer:  # so that (-2)**2 stays real
            return self.se.Integer(int(v))
        return self.se.RealMPFR(str(Decimal(float(v))), BITS)

    def value(self, e: Any, at: Mapping[Any, Any]) -> float | None:
        """The expression's value at the point, worked out to BITS bits and rounded once;
        None where it is not a finite real number (SymPy then says why)."""
        here = self.merged(e.xreplace(at))
        if here.free_symbols:
            return None
        got = here if here.is_Number else here.evalf(BITS)
        if not (got.is_Number and got.is_real):
            return None
        out = float(got)
        return out if math.isfinite(out) else None

    def diff(self, e: Any, wrt: Any) -> Any:
        return self.se.diff(e, wrt)


class Back:
    """SymEngine to SymPy, each distinct subexpression converted once; `table` says which
    SymPy expression each SymEngine symbol stands for."""

    def __init__(self, table: Mapping[Any, Any], sp: Any) -> None:
        self.table, self.sp = table, sp
        self.memo: dict[Any, Any] = {}

    def __call__(self, root: Any) -> Any:
        memo = self.memo
        stack = [root]
        while stack:
            e = stack[-1]
            if e in memo:
                stack.pop()
                continue
            todo = [] if e.is_Atom else [a for a in e.args if a not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            memo[e] = self._one(e, [] if e.is_Atom else [memo[a] for a in e.args])
        return memo[root]

    def _one(self, e: Any, args: list[Any]) -> Any:
        sp = self.sp
        if e.is_Symbol:
            if e not in self.table:
                raise Unsupported(f"a symbol of its own: {e}")
            return self.table[e]
        if e.is_Atom:
            return e._sympy_()  # numbers and named constants
        kind = type(e).__name__
        if kind in ("Add", "Mul", "Pow"):
            return getattr(sp, kind)(*args)
        if e.is_Function and not e.is_Derivative and hasattr(sp, kind):
            return getattr(sp, kind)(*args)
        raise Unsupported(kind)


def _leaves(built: Any, graph: Graph) -> list[Any]:
    """Every symbol the SymPy build has: the variables (each element) and the placeholders."""
    found: list[Any] = []
    for node in graph.nodes:
        if node.op in ops.LEAVES:
            value = built.nodes[node.id]
            found += list(value.ravel()) if isinstance(value, np.ndarray) else [value]
    return found


def _each(f: Any, value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.frompyfunc(f, 1, 1)(value)
    return f(value)


def _array(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value[()] if value.ndim == 0 else value
    return value


def prepare(graph: Graph, built: Any, sp: Any, cores: list[Any] | None = None) -> Fast | None:
    """The graph in SymEngine, or None where SymPy should differentiate: switched off, not
    installed, a small graph (unless BACKPROP_SYMBOLIC=symengine), or an op SymEngine would
    write differently (checked node by node)."""
    if backend(size(graph, cores)) != "symengine" or depth(graph) > MAX_DEPTH:
        return None
    try:
        fast = Fast(graph, built, sp, cores)
        _check(fast, graph, built, sp)
    except (Unsupported, AttributeError, TypeError, ValueError, RuntimeError, RecursionError):
        return None
    return fast


def _check(fast: Fast, graph: Graph, built: Any, sp: Any) -> None:
    """Both libraries start from the same output: SymEngine's, in SymPy, is SymPy's own, and
    uses the same functions (SymPy's real symbols simplify sqrt(x**2) to Abs(x), whose
    derivative SymEngine would write otherwise); and every node's local derivative reads
    the same in both."""
    theirs, mine = built.nodes[graph.output], fast.nodes[graph.output]
    pairs = (
        list(zip(np.ravel(theirs), np.ravel(mine), strict=True))
        if isinstance(theirs, np.ndarray)
        else [(theirs, mine)]
    )
    for t, m in pairs:
        if fast.raw(m) != t or _functions(t, sp) != fast.functions(m):
            raise Unsupported("the output is built differently")
    checked: set[Any] = set()
    for node in graph.nodes:
        op = ops.OPS.get(node.op)
        if op is None or not op.elementwise:
            continue
        consts = tuple(_typed(graph, built, i) for i in node.inputs)
        if (node.op, consts) not in checked:
            _check_local(fast, op, consts, sp)
            checked.add((node.op, consts))


def _functions(e: Any, sp: Any) -> set[str]:
    return {type(f).__name__ for f in e.atoms(sp.Function)} if isinstance(e, sp.Basic) else set()


def _typed(graph: Graph, built: Any, node_id: int) -> Any:
    """A scalar constant operand as typed (2, 1/10, pi), or None for the others."""
    node = graph.nodes[node_id]
    if node.op != "const" or np.ndim(node.value) > 0:
        return None
    return built.shown[built.nodes[node_id]]


def _check_local(fast: Fast, op: ops.Op, consts: tuple[Any, ...], sp: Any) -> None:
    se = fast.se
    slots = [sp.Symbol(f"_slot{k}", real=True) if c is None else c for k, c in enumerate(consts)]
    mine = [fast.image(s) if c is not None else se.Symbol(f"_slot{k}#")
            for k, (s, c) in enumerate(zip(slots, consts, strict=True))]  # fmt: skip
    back = {m: s for m, s, c in zip(mine, slots, consts, strict=True) if c is None}
    lib = _Library(se)
    f_se = op.sympy(lib, *mine)
    back.update({b: sp.E for b in lib.bases})
    f_sp = op.sympy(sp, *slots)
    for k, c in enumerate(consts):
        if c is None and Back(back, sp)(se.diff(f_se, mine[k])) != sp.diff(f_sp, slots[k]):
            raise Unsupported(f"{op.name}: its derivative reads differently")
