"""The SymPy counterpart of a graph: the only module that imports sympy.

The expression is built from our graph node by node (never by parsing text), differentiated
per variable and evaluated exactly at the point. Every constant enters as a placeholder, so
a formula shows it as typed (0.1 as 1/10, pi as π) while the value is computed with the
float64 number the engine used, exactly. `partials` streams its results through `emit`
(first the differentiated forms with their values, then simplified forms per variable), so
that a budget cut still leaves the earlier results.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

import numpy as np

from ..core import ops
from ..core.graph import Graph

MAX_FORMULA_CHARS = 200_000
MAX_MATHML_TEXT = 2_000  # formulas longer than this (as text) are not printed as MathML
MAX_MATHML_CHARS = 40_000  # nor is MathML longer than this: pages stay small
DIGITS = 30  # working precision of the exact evaluation

# Where SymPy's value at a kink is a convention that differs from torch's subgradient.
_CONVENTION_FUNCS = ("Heaviside", "sign", "DiracDelta")


def preload() -> None:
    """Import SymPy now (in a child started early, while the parent starts up)."""
    import sympy  # noqa: F401


@dataclass
class Expressions:
    """SymPy expressions for every node, with constants as placeholder symbols."""

    nodes: list[Any]
    shown: dict[Any, Any]  # placeholder -> the constant as typed (1/10, pi)
    used: dict[Any, Any]  # placeholder -> the float64 value the engine used, exactly


def _exact(value: float, sp: Any) -> Any:
    if not math.isfinite(value):  # a value given with --allow-nonfinite
        return sp.nan if math.isnan(value) else (sp.oo if value > 0 else -sp.oo)
    frac = Fraction(value)
    return sp.Rational(frac.numerator, frac.denominator)


def to_sympy(graph: Graph, sp: Any, cores: list[tuple[int, ...]] | None = None) -> Expressions:
    """One SymPy expression per node, built in a loop over the nodes. With `cores` (each
    node's shape), an array node is a numpy array of SymPy expressions, one per element:
    W[0,1] is a symbol of its own."""
    exprs: list[Any] = []
    shown: dict[Any, Any] = {}
    used: dict[Any, Any] = {}
    for node in graph.nodes:
        core = cores[node.id] if cores is not None else ()
        if node.op == "input":
            assert node.name is not None
            exprs.append(_symbols(node.name, core, sp))
        elif node.op == "const" and np.ndim(node.value) > 0:
            exprs.append(_constant_array(node.value, node.id, sp, shown, used))
        elif node.op == "const":
            text = graph.text(node.id)
            c = sp.Dummy(f"c{node.id}", real=True)
            if text in ops.CONSTANTS:
                shown[c] = sp.pi if text == "pi" else sp.E
            else:
                typed = Fraction(text)
                shown[c] = sp.Rational(typed.numerator, typed.denominator)
            used[c] = _exact(node.value if node.value is not None else 0.0, sp)
            exprs.append(c)
        else:
            op = ops.OPS[node.op]
            args = [exprs[i] for i in node.inputs]
            if not op.elementwise:
                ctx = (
                    ops.Ctx(
                        (0,) * len(args), tuple(cores[i] for i in node.inputs), core, node.params
                    )
                    if cores is not None
                    else None
                )
                exprs.append(_array(op.sympy(sp, *args, ctx=ctx)))
            elif any(isinstance(a, np.ndarray) for a in args):
                each = np.frompyfunc(partial(op.sympy, sp), op.arity, 1)
                exprs.append(_array(each(*args)))
            else:
                exprs.append(op.sympy(sp, *args))
    return Expressions(exprs, shown, used)


def partial_formula(
    graph: Graph,
    variable: str,
    index: tuple[int, ...] = (),
    cores: list[tuple[int, ...]] | None = None,
    seed: Any = None,
    simplify: bool = True,
) -> Any:
    """∂output/∂variable[index] as one SymPy expression, in this process (the library's
    `Partial.formula`): built from the graph, constants as typed, simplified. An array
    output is first contracted with `seed` (ones by default), as the reverse sweep does."""
    import sympy as sp

    built = to_sympy(graph, sp, cores)
    out = built.nodes[graph.output]
    if isinstance(out, np.ndarray):
        weights = np.ones(out.shape) if seed is None else np.broadcast_to(seed, out.shape)
        out = sum((_exact(float(w), sp) * e for w, e in zip(weights.flat, out.flat, strict=True)),
                  sp.Integer(0))  # fmt: skip
    target = built.nodes[graph.variables[variable]]
    if isinstance(target, np.ndarray):
        target = target[index]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expr = sp.diff(out, target).subs(built.shown)
        return _simplify(expr, sp) if simplify else expr


def to_latex(expr: Any) -> str:
    """A SymPy expression (or array of them) as LaTeX."""
    import sympy as sp

    return str(sp.latex(expr))


def to_latex_name(name: str) -> str:
    """A variable's or element's name in LaTeX: w11 as w_{11}, W[0,1] as W_{0,1}."""
    base, _, index = name.partition("[")
    shown = latex_names([base])[0]
    return f"{shown}_{{{index.rstrip(']')}}}" if index else shown


def _array(value: Any) -> Any:
    """An object array, or its one element when it has no axes."""
    if isinstance(value, np.ndarray):
        return value[()] if value.ndim == 0 else value
    return value


def _symbols(name: str, core: tuple[int, ...], sp: Any) -> Any:
    if not core:
        return sp.Symbol(name, real=True)
    out = np.empty(core, dtype=object)
    for index in np.ndindex(*core):
        out[index] = sp.Symbol(f"{name}[{','.join(map(str, index))}]", real=True)
    return out


def _constant_array(
    value: Any, node_id: int, sp: Any, shown: dict[Any, Any], used: dict[Any, Any]
) -> Any:
    """A constant array: one placeholder per element, shown as its shortest decimal."""
    out = np.empty(np.shape(value), dtype=object)
    for index in np.ndindex(*np.shape(value)):
        x = float(value[index])
        c = sp.Dummy(f"c{node_id}_{'_'.join(map(str, index))}", real=True)
        typed = Fraction(repr(x))
        shown[c] = sp.Rational(typed.numerator, typed.denominator)
        used[c] = _exact(x, sp)
        out[index] = c
    return out


def element_symbol(built: Expressions, graph: Graph, name: str, index: tuple[int, ...]) -> Any:
    value = built.nodes[graph.variables[name]]
    return value[index] if index else value


def _value(expr: Any, sp: Any, at: Mapping[Any, Any]) -> dict[str, Any]:
    """The expression's exact value at the point, or why it has none."""
    at_point = expr.xreplace(at)
    value = sp.N(at_point, DIGITS)
    info: dict[str, Any] = {
        "convention": any(
            sp.N(f.args[0].xreplace(at), DIGITS) == 0
            for f in expr.atoms(sp.Function)
            if type(f).__name__ in _CONVENTION_FUNCS and f.args
        )
    }
    if value.has(sp.zoo, sp.nan) or value is sp.nan:
        info["value"], info["undefined"] = None, "undefined at this point"
    elif value.has(sp.I):
        info["value"], info["undefined"] = None, "complex at this point"
    elif value.is_number and value.is_real is not False:
        try:
            info["value"] = float(value)
        except (TypeError, ValueError):
            info["value"], info["undefined"] = None, "no numeric value at this point"
    else:
        info["value"], info["undefined"] = None, "no numeric value at this point"
    return info


def _shown(expr: Any, sp: Any, shown: Mapping[Any, Any], latex: bool | str) -> dict[str, Any]:
    """The formula as text; with `latex`, as LaTeX too; with latex="mathml", also as
    presentation MathML (for pages; left out when it would be too long to read)."""
    return _written(expr.xreplace(shown), sp, latex)


def _written(readable: Any, sp: Any, latex: bool | str) -> dict[str, Any]:
    """`_shown` of an expression whose constants are already as typed."""
    info: dict[str, Any] = {"formula": _cap(_sstr(readable, sp))}
    if latex:
        info["latex"] = _cap(sp.latex(readable))
    if latex == "mathml":
        info["mathml"] = mathml(readable, sp) if len(info["formula"]) <= MAX_MATHML_TEXT else None
    return info


_PRINTERS: dict[int, Any] = {}


def _sstr(expr: Any, sp: Any) -> str:
    """sp.sstr(expr), remembering each subexpression's text: the partials of one graph
    repeat the same subexpressions many times over, and SymPy prints each the same way
    wherever it stands (its parent adds any parentheses)."""
    printer = _PRINTERS.get(id(sp))
    if printer is None:
        printer = _PRINTERS[id(sp)] = _memo_printer(sp)()
    if len(printer.memo) > 200_000:
        printer.memo.clear()
    return str(printer.doprint(expr))


def _memo_printer(sp: Any) -> Any:
    base = sp.printing.str.StrPrinter

    class MemoPrinter(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.memo: dict[Any, str] = {}

        def _print(self, expr: Any, **kwargs: Any) -> str:
            if kwargs or not isinstance(expr, sp.Basic) or expr.is_Atom:
                return str(super()._print(expr, **kwargs))
            text = self.memo.get(expr)
            if text is None:
                text = self.memo[expr] = str(super()._print(expr))
            return text

    return MemoPrinter


def mathml(expr: Any, sp: Any) -> str | None:
    """SymPy's presentation MathML of expr as one <math> element, or None past
    MAX_MATHML_CHARS (a page then shows the text)."""
    inner = sp.mathml(expr, printer="presentation")
    if len(inner) > MAX_MATHML_CHARS:
        return None
    return f'<math xmlns="http://www.w3.org/1998/Math/MathML">{inner}</math>'


def _cap(text: str) -> str:
    if len(text) <= MAX_FORMULA_CHARS:
        return text
    return text[:MAX_FORMULA_CHARS] + f"… ({len(text):,} characters in all)"


def _guarded(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One partial's result; a SymPy failure there (an undecidable comparison inside Max, an
    mpmath corner) is that partial's error, not everyone's."""
    try:
        return work()
    except RecursionError:
        raise  # the expression is too deep for SymPy at all: the caller reports it
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def partials(
    graph: Graph,
    point: Mapping[str, Any],
    wrt: list[Any],
    latex: bool | str,
    simplify: bool,
    cores: list[tuple[int, ...]] | None = None,
    seed: Any = None,
    expand: bool = False,
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Send {"stage": "raw", ...} with every partial (keyed x, or W[0,1] for an element) and
    the library that differentiated ("backend"), then one "simplified" per partial. An array
    output is first contracted with `seed`. A large graph of numbers gets the reverse
    sweep's named forms instead (sweep_partials), unless `expand`."""
    import sympy as sp

    markup, latex = latex, bool(latex)  # the partials' own formulas may also get MathML
    wrt = [(entry, ()) if isinstance(entry, str) else entry for entry in wrt]
    if cores is None and seed is None and not expand and len(graph.nodes) > SWEEP_NODES:
        sweep_partials(graph, point, [name for name, _ in wrt], latex, emit=emit)
        return
    built = to_sympy(graph, sp, cores)
    out = built.nodes[graph.output]
    at = _at_point(built, graph, point, sp)
    found = _differentiate(graph, built, cores, sp, wrt, seed)

    def described(name: str) -> dict[str, Any]:
        return {**_written(found.readable[name], sp, markup), **found.value(name, at)}

    raw = {n: _guarded(partial(described, n)) for n in found.readable}
    emit(
        {
            "stage": "raw",
            "output": _guarded(partial(_described_output, out, sp, built.shown, latex)),
            "partials": raw,
            "compact": _compact_forms(graph, built, wrt, found.readable, sp, latex),
            "backend": found.backend,
        }
    )
    exact = {n: info.get("value") for n, info in raw.items()}
    matrix = _matrix_forms(graph, cores, point, wrt, exact, seed, sp, latex)
    if matrix:
        emit({"stage": "matrix", "matrix": matrix})
    if not simplify:
        return

    # Simplified forms replace only the formula: the value stays the one computed from the
    # differentiated graph, whose algebra has not cancelled anything.
    def simplified(readable: Any) -> dict[str, Any]:
        return _written(_simplify(readable, sp), sp, markup)

    if not isinstance(out, np.ndarray):
        emit(
            {
                "stage": "simplified",
                "output": _guarded(partial(simplified, out.xreplace(built.shown))),
            }
        )
    for name, d in found.readable.items():
        emit({"stage": "simplified", "partials": {name: _guarded(partial(simplified, d))}})


@dataclass
class _Found:
    """Each partial (keyed by its label) with its constants as typed, and a way to its exact
    value at the point, from SymPy's derivatives or SymEngine's."""

    readable: dict[str, Any]
    value: Callable[[str, Mapping[Any, Any]], dict[str, Any]]  # (label, exact point)
    backend: str


def _differentiate(
    graph: Graph,
    built: Expressions,
    cores: list[tuple[int, ...]] | None,
    sp: Any,
    wrt: list[tuple[str, tuple[int, ...]]],
    seed: Any = None,
) -> _Found:
    """∂(the output contracted with seed)/∂ each element of wrt: by SymEngine where
    fast_symbolic takes the graph, otherwise by SymPy."""
    from . import fast_symbolic

    fast = fast_symbolic.prepare(graph, built, sp, cores)
    labels = {_label(name, index): element_symbol(built, graph, name, index) for name, index in wrt}
    if fast is not None:
        try:
            return _differentiate_fast(graph, fast, sp, labels, seed)
        except fast_symbolic.Unsupported:
            pass  # an op whose derivative SymEngine leaves unevaluated: SymPy's turn
    total = _contracted(built.nodes[graph.output], seed, sp, sp, lambda r: r)
    derivatives = {n: sp.diff(total, s) for n, s in labels.items()}
    return _Found(
        {n: d.xreplace(built.shown) for n, d in derivatives.items()},
        lambda n, at: _value(derivatives[n], sp, at),
        "sympy",
    )


def _differentiate_fast(
    graph: Graph,
    fast: Any,
    sp: Any,
    labels: dict[str, Any],
    seed: Any,
) -> _Found:
    """`_differentiate` by SymEngine."""
    total = _contracted(fast.nodes[graph.output], seed, sp, fast.se, fast.image)
    derivatives = {n: fast.diff(total, fast.to_se[s]) for n, s in labels.items()}
    return _found_fast(fast, sp, derivatives)


def _found_fast(fast: Any, sp: Any, derivatives: dict[str, Any]) -> _Found:
    """SymEngine's derivatives in SymPy, each valued at the point on demand."""
    readable = {n: fast.readable(d) for n, d in derivatives.items()}
    points: list[tuple[Mapping[Any, Any], dict[Any, Any]]] = []  # the last point, in SymEngine

    def value(name: str, at: Mapping[Any, Any]) -> dict[str, Any]:
        if not points or points[-1][0] is not at:
            points[:] = [(at, fast.point(at))]
        found = fast.value(derivatives[name], points[-1][1])
        if found is None:  # no finite real value: SymPy says why, as its own path would
            return _value(fast.raw(derivatives[name]), sp, at)
        return {"convention": False, "value": found}

    return _Found(readable, value, "symengine")


def _contracted(out: Any, seed: Any, sp: Any, lib: Any, number: Callable[[Any], Any]) -> Any:
    """The output weighted by seed (a scalar output's --seed-grad), or an array output
    contracted with it; `lib` builds the sum, `number` writes each weight."""
    if seed is not None and not isinstance(out, np.ndarray):
        return number(_exact(float(seed), sp)) * out
    if isinstance(out, np.ndarray):
        weights = np.broadcast_to(np.asarray(seed, dtype=np.float64), out.shape)
        return lib.Add(
            *(number(_exact(float(w), sp)) * e for w, e in zip(weights.ravel(), out.ravel(),
                                                               strict=True))
        )  # fmt: skip
    return out


def partials_at_points(
    graph: Graph,
    points: list[dict[str, Any]],
    wrt: list[tuple[str, tuple[int, ...]]],
    cores: list[tuple[int, ...]] | None,
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Differentiate once, then evaluate every partial exactly at each point: first
    {"stage": "formulas", "partials": {label: formula}}, then {"stage": "point", "k": k,
    "partials": {label: value info}} per point, in order (a budget cut keeps the earlier)."""
    import sympy as sp

    built = to_sympy(graph, sp, cores)
    found = _differentiate(graph, built, cores, sp, wrt)
    emit(
        {
            "stage": "formulas",
            "partials": {
                n: _guarded(partial(_written, d, sp, False)) for n, d in found.readable.items()
            },
            "backend": found.backend,
        }
    )
    for k, point in enumerate(points):
        at = _at_point(built, graph, point, sp)
        values = {n: _guarded(partial(found.value, n, at)) for n in found.readable}
        emit({"stage": "point", "k": k, "partials": values})


def _at_point(
    built: Expressions, graph: Graph, point: Mapping[str, Any], sp: Any
) -> dict[Any, Any]:
    """Every symbol's exact value at the point: the constants as the engine used them, each
    variable (each element of an array) as the float64 given."""
    at = dict(built.used)
    for name, node_id in graph.variables.items():
        symbols = built.nodes[node_id]
        values = np.asarray(point[name], dtype=np.float64)
        if isinstance(symbols, np.ndarray):
            at.update((symbols[i], _exact(float(values[i]), sp)) for i in np.ndindex(*values.shape))
        else:
            at[symbols] = _exact(float(values), sp)
    return at


def _label(name: str, index: tuple[int, ...]) -> str:
    return name if not index else f"{name}[{','.join(map(str, index))}]"


def _described_output(out: Any, sp: Any, shown: Mapping[Any, Any], latex: bool) -> dict[str, Any]:
    if not isinstance(out, np.ndarray):
        return _shown(out, sp, shown, latex)
    readable = np.frompyfunc(lambda e: e.xreplace(shown), 1, 1)(out)
    info = {"formula": _cap(_sstr(readable.tolist(), sp))}
    if latex:
        info["latex"] = _cap(sp.latex(sp.Array(readable.tolist())))
    return info


def _compact_forms(
    graph: Graph,
    built: Expressions,
    wrt: list[tuple[str, tuple[int, ...]]],
    readable: dict[str, Any],
    sp: Any,
    latex: bool,
) -> dict[str, dict[str, str]]:
    """∂/∂x as one elementwise formula where every element's partial is the same formula
    in the matching elements (∂/∂x 2·dot(x, x) = 4·x): each array variable of x's shape
    stands for its elements."""
    forms: dict[str, dict[str, str]] = {}
    names = list(dict.fromkeys(name for name, index in wrt if index))
    for name in names:
        arrays = {
            other: built.nodes[node_id]
            for other, node_id in graph.variables.items()
            if isinstance(built.nodes[node_id], np.ndarray)
            and built.nodes[node_id].shape == built.nodes[graph.variables[name]].shape
        }
        shape = arrays[name].shape
        if sum(1 for n, i in wrt if n == name and i) != int(np.prod(shape)):
            continue  # not every element was differentiated
        whole = {other: sp.Symbol(other, real=True) for other in arrays}
        elements = {e for a in arrays.values() for e in a.ravel()}
        common = None
        for index in np.ndindex(*shape):
            d = readable[_label(name, index)]
            form = d.xreplace({arrays[o][index]: whole[o] for o in arrays})
            leftover = bool(form.free_symbols & elements)
            if leftover or (common is not None and form != common):
                common = None
                break
            common = form
        if common is not None:
            forms[name] = {"formula": _cap(_sstr(common, sp))}
            if latex:
                forms[name]["latex"] = _cap(sp.latex(common))
    return forms


def _matrix_forms(
    graph: Graph,
    cores: list[tuple[int, ...]] | None,
    point: Mapping[str, Any],
    wrt: list[tuple[str, tuple[int, ...]]],
    exact: dict[str, Any],
    seed: Any,
    sp: Any,
    latex: bool,
) -> dict[str, dict[str, str]]:
    """∂f/∂W as one matrix formula (G·Xᵀ, (A + Aᵀ)·x) where SymPy's matrix calculus gives one:
    the graph rebuilt from the registry's matrix counterparts, a vector as a column. A form is
    kept only if, evaluated at the point, it equals every element's partial."""
    if cores is None or cores[graph.output] or any(len(c) > 2 for c in cores):
        return {}
    names = [
        name
        for name in dict.fromkeys(n for n, index in wrt if index)
        if sum(1 for n, i in wrt if n == name) == int(np.prod(cores[graph.variables[name]]))
    ]
    if not names:
        return {}
    try:
        f, symbols = _matrix_graph(graph, cores, sp)
    except (ops.NoMatrixForm, TypeError, ValueError, AttributeError):
        return {}
    if seed is not None:
        f = f * _exact(float(np.asarray(seed)), sp)
    values = {}
    for name, symbol in symbols.items():
        given = np.asarray(point[name], dtype=np.float64)
        if given.ndim == 0:
            values[symbol] = _exact(float(given), sp)
        else:
            rows = given.reshape(symbol.shape)
            values[symbol] = sp.ImmutableMatrix(
                [[_exact(float(v), sp) for v in row] for row in rows]
            )
    forms: dict[str, dict[str, str]] = {}
    for name in names:
        target = symbols[name]
        try:
            d, text, explicit = _matrix_partial(f, target, values, sp)
        except Exception:  # matrix calculus is an extra: a failure only drops it
            continue
        if explicit.shape != target.shape or not _agrees(
            explicit, exact, name, cores[graph.variables[name]], sp
        ):
            continue
        forms[name] = {"formula": _cap(text)}
        if latex:
            forms[name]["latex"] = _cap(sp.latex(d))
    return forms


def _matrix_partial(f: Any, target: Any, values: dict[Any, Any], sp: Any) -> tuple[Any, str, Any]:
    """∂f/∂target by matrix calculus, as text, and evaluated at the point."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SymPy's deprecation notes from inside matrix calculus
        d = sp.diff(f, target)
        if getattr(d, "shape", None) != target.shape:
            raise ops.NoMatrixForm("not the variable's shape")
        text = _matrix_text(d, sp)
        explicit = sp.ImmutableMatrix(d.xreplace(values).doit())
    return d, text, explicit


def _matrix_graph(
    graph: Graph, cores: list[tuple[int, ...]], sp: Any
) -> tuple[Any, dict[str, Any]]:
    """The output as a matrix expression (a vector is a column), and each variable's symbol."""
    exprs: list[Any] = []
    symbols: dict[str, Any] = {}
    for node in graph.nodes:
        core = cores[node.id]
        if node.op == "input":
            assert node.name is not None
            if core:
                symbol = sp.MatrixSymbol(node.name, core[0], core[1] if len(core) == 2 else 1)
            else:
                symbol = sp.Symbol(node.name, real=True)
            symbols[node.name] = symbol
            exprs.append(symbol)
        elif node.op == "const":
            if np.ndim(node.value) > 0:
                raise ops.NoMatrixForm
            text = graph.text(node.id)
            if text in ops.CONSTANTS:
                exprs.append(sp.pi if text == "pi" else sp.E)
            else:
                typed = Fraction(text)
                exprs.append(sp.Rational(typed.numerator, typed.denominator))
        else:
            op = ops.OPS[node.op]
            if op.matrix is None:
                raise ops.NoMatrixForm
            args = [exprs[i] for i in node.inputs]
            if op.elementwise:
                exprs.append(op.matrix(sp, *args))
            else:
                ctx = ops.Ctx(
                    (0,) * len(args), tuple(cores[i] for i in node.inputs), core, node.params
                )
                exprs.append(op.matrix(sp, *args, ctx=ctx))
    return exprs[graph.output], symbols


def _agrees(
    explicit: Any, exact: dict[str, Any], name: str, core: tuple[int, ...], sp: Any
) -> bool:
    """The matrix form at the point equals each element's partial, as computed element by
    element (where that has a value)."""
    for index in np.ndindex(*core):
        theirs = exact.get(_label(name, index))
        if theirs is None:
            return False
        mine = complex(sp.N(explicit[index if len(index) == 2 else (index[0], 0)], 20))
        if not abs(mine - theirs) <= 1e-9 * max(1.0, abs(mine), abs(theirs)):
            return False
    return True


def _matrix_text(e: Any, sp: Any) -> str:
    """A matrix expression as a person writes it: A·B, Xᵀ, A ⊙ B, ones(n), I."""
    from sympy.matrices.expressions.diagonal import DiagMatrix

    def wrap(x: Any) -> str:
        text = _matrix_text(x, sp)
        simple = isinstance(x, (sp.MatrixSymbol, sp.OneMatrix, sp.Identity, sp.Transpose))
        plain = not x.is_Matrix and x.is_Atom and not any(c in text for c in "-/")
        return text if simple or plain else f"({text})"

    if not getattr(e, "is_Matrix", False):
        return str(sp.sstr(e))
    if isinstance(e, sp.MatrixSymbol):
        return str(e.name)
    if isinstance(e, sp.OneMatrix):
        m, n = e.shape
        return f"ones({m})" if n == 1 else f"ones({m}, {n})"
    if isinstance(e, sp.ZeroMatrix):
        return "0"
    if isinstance(e, sp.Identity):
        return "I"
    if isinstance(e, sp.Transpose):
        return wrap(e.arg) + "ᵀ"
    if isinstance(e, sp.MatMul):
        coeff, factors = e.as_coeff_matrices()
        kept = [
            m
            for m in factors
            if not (isinstance(m, DiagMatrix) and isinstance(m.args[0], sp.OneMatrix))
            and not isinstance(m, sp.Identity)
        ] or [sp.Identity(e.shape[0])]
        body = "·".join(wrap(m) for m in kept)
        if coeff == 1:
            return body
        if coeff == -1:
            return f"-{body}"
        return f"{wrap(coeff)}·{body}"
    if isinstance(e, sp.MatAdd):
        text = " + ".join(_matrix_text(a, sp) for a in e.args)
        return text.replace("+ -", "- ")
    if isinstance(e, sp.HadamardProduct):
        return " ⊙ ".join(wrap(a) for a in e.args)
    raise ops.NoMatrixForm(type(e).__name__)


def _simplify(expr: Any, sp: Any) -> Any:
    """SymPy's simplify, kept to the functions the expression already uses: a sigmoid's
    derivative stays in exp, not cosh, so it still reads like the graph it came from."""
    known = {type(f) for f in expr.atoms(sp.Function)}

    def measure(e: Any) -> int:
        new = {type(f) for f in e.atoms(sp.Function)} - known
        return int(sp.count_ops(e)) + 1000 * len(new)

    return sp.simplify(expr, ratio=1.0, measure=measure)


def local_formulas(
    graph: Graph,
    names: list[str],
    values: list[float],
    edges: list[tuple[int, int]],
    with_mathml: bool = False,
) -> dict[tuple[int, int], dict[str, str]]:
    """The local derivative ∂node/∂input_k of each edge as a formula in the nodes' short
    names (2*r for r**2), and the same formula with the values put in (2*(-2)), as text and
    LaTeX (and, with `with_mathml`, the formula as MathML, "" when too long). Each input
    position gets its own symbol, so x*x has ∂/∂a = b on each edge. The derivative of each
    (op, position, constant operands) is worked out once."""
    import sympy as sp

    cache: dict[tuple[Any, ...], Any] = {}
    tex: dict[Any, str] = {}
    out: dict[tuple[int, int], dict[str, str]] = {}
    for node_id, k in edges:
        node = graph.nodes[node_id]
        op = ops.OPS[node.op]
        consts = tuple(_literal(graph, i, sp) for i in node.inputs)
        key = (node.op, k, consts, repr(node.params))
        if key not in cache:
            ctx = (
                None
                if op.elementwise
                else ops.Ctx((0,) * len(consts), ((),) * len(consts), (), node.params)
            )  # an array op on numbers (sum(x) of a scalar x)
            cache[key] = _derivative(op, k, consts, sp, ctx)
        derivative = cache[key]
        named, valued = {}, {}
        for j, i in enumerate(node.inputs):
            slot = sp.Symbol(f"_slot{j}", real=True)
            named[slot] = _symbol(names[i], sp, tex, _latex_name(names[i], sp))
            valued[slot] = _symbol(_number(values[i]), sp, tex, _tex_value(values[i]))
        result = sp.Symbol("_out", real=True)
        named[result] = _symbol(names[node_id], sp, tex, _latex_name(names[node_id], sp))
        valued[result] = _symbol(_number(values[node_id]), sp, tex, _tex_value(values[node_id]))
        formula, at = derivative.xreplace(named), derivative.xreplace(valued)
        out[(node_id, k)] = {
            "text": sp.sstr(formula),
            "latex": sp.latex(formula, mul_symbol="dot", symbol_names=tex),
            "at": sp.sstr(at),
            "at_latex": sp.latex(at, mul_symbol="dot", symbol_names=tex),
        }
        if with_mathml:
            out[(node_id, k)]["mathml"] = mathml(formula, sp) or ""
    return out


def _literal(graph: Graph, node_id: int, sp: Any) -> Any:
    """A numeric literal operand as SymPy folds it (2 in r**2), or None for the others.
    Zero stays a name, so 0**x keeps its form instead of turning into zoo."""
    node = graph.nodes[node_id]
    if node.op != "const" or graph.text(node_id) in ops.CONSTANTS:
        return None
    typed = Fraction(graph.text(node_id))
    return None if typed == 0 else sp.Rational(typed.numerator, typed.denominator)


def _derivative(
    op: ops.Op, k: int, consts: tuple[Any, ...], sp: Any, ctx: ops.Ctx | None = None
) -> Any:
    slots = [
        c if c is not None else sp.Symbol(f"_slot{j}", real=True) for j, c in enumerate(consts)
    ]
    if op.local is not None:  # the textbook form, in the op's output: a·(1 - a)
        return op.local(sp, sp.Symbol("_out", real=True), *slots)
    expr = op.sympy(sp, *slots) if ctx is None else op.sympy(sp, *slots, ctx=ctx)
    return sp.diff(_array(expr), slots[k])


def _symbol(name: str, sp: Any, tex: dict[Any, str], latex: str) -> Any:
    symbol = sp.Symbol(name, real=True)
    tex[symbol] = latex
    return symbol


def _latex_name(name: str, sp: Any) -> str:
    """w11 as w_{11}, yhat as \\hat{y}; a plain word (loss) upright as one symbol."""
    if _is_number(name):
        return name
    if name in ops.CONSTANTS:
        return "\\pi" if name == "pi" else "e"
    base, primes = name.rstrip("'"), name[len(name.rstrip("'")) :]
    printed: str = sp.latex(sp.Symbol(base))
    if printed == base and len(base) > 1 and not any(c.isdigit() for c in base):
        printed = f"\\mathit{{{base}}}"
    return printed + primes


def _tex_value(value: float) -> str:
    if math.isnan(value):
        return "\\mathrm{nan}"
    if math.isinf(value):
        return "\\infty" if value > 0 else "\\left(-\\infty\\right)"
    text = repr(float(value))
    text = text[:-2] if text.endswith(".0") else text
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa} \\times 10^{{{int(exponent)}}}"
    return f"\\left({text}\\right)" if text.startswith("-") else text


def _number(value: float) -> str:
    text = repr(float(value))
    text = text[:-2] if text.endswith(".0") else text
    return f"({text})" if text.startswith("-") else text


def latex_names(names: list[str]) -> list[str]:
    """How each name is written in LaTeX (w11 as w_{11}, yhat as \\hat{y})."""
    import sympy as sp

    return [_latex_name(name, sp) for name in names]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def higher(
    graph: Graph,
    point: Mapping[str, Any],
    wrt: list[tuple[str, tuple[int, ...]]],
    cores: list[tuple[int, ...]],
    kind: str,
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Jacobian ("jacobian": every output element by every input element) or Hessian
    ("hessian": the output twice by input elements) entries, one row per message, each
    {"formula", "value"} keyed "row|column", with the library that differentiated."""
    import sympy as sp

    wrt = [tuple(entry) for entry in wrt]  # type: ignore[misc]
    built = to_sympy(graph, sp, cores)
    out = built.nodes[graph.output]
    at = _at_point(built, graph, point, sp)
    columns = [(_label(n, i), element_symbol(built, graph, n, i)) for n, i in wrt]
    if kind == "jacobian":
        outs = np.asarray(out, dtype=object)
        name = graph.output_name()
        rows = [(_label(name, tuple(i)), i) for i in np.ndindex(*outs.shape)]
    else:
        rows = [(row, a) for a, (row, _) in enumerate(columns)]
    fast = _higher_fast(graph, built, cores, sp, kind, rows, columns)

    def described(expr: Any) -> dict[str, Any]:
        return {**_shown(expr, sp, built.shown, False), **_value(expr, sp, at)}

    def from_fast(found: _Found, key: str) -> dict[str, Any]:
        return {**_written(found.readable[key], sp, False), **found.value(key, at)}

    for row, where in rows:
        if fast is not None:
            entries = {key: _guarded(partial(from_fast, fast, key))
                       for key in fast.readable if key.partition("|")[0] == row}  # fmt: skip
        elif kind == "jacobian":
            expr = np.asarray(out, dtype=object)[where]
            entries = {f"{row}|{c}": _guarded(partial(described, sp.diff(expr, s)))
                       for c, s in columns}  # fmt: skip
        else:
            first = sp.diff(out, columns[where][1])
            entries = {f"{row}|{c}": _guarded(partial(described, sp.diff(first, t)))
                       for c, t in columns[where:]}  # fmt: skip
        emit({"entries": entries, "backend": "sympy" if fast is None else fast.backend})


def _higher_fast(
    graph: Graph,
    built: Expressions,
    cores: list[tuple[int, ...]],
    sp: Any,
    kind: str,
    rows: list[tuple[str, Any]],
    columns: list[tuple[str, Any]],
) -> _Found | None:
    """Every Jacobian or Hessian entry by SymEngine, or None where SymPy takes the graph."""
    from . import fast_symbolic

    fast = fast_symbolic.prepare(graph, built, sp, cores)
    if fast is None:
        return None
    out = fast.nodes[graph.output]
    symbols = [(c, fast.to_se[s]) for c, s in columns]
    derivatives: dict[str, Any] = {}
    for row, where in rows:
        if kind == "jacobian":
            expr = np.asarray(out, dtype=object)[where]
            derivatives.update((f"{row}|{c}", fast.diff(expr, s)) for c, s in symbols)
        else:
            first = fast.diff(out, symbols[where][1])
            derivatives.update((f"{row}|{c}", fast.diff(first, t)) for c, t in symbols[where:])
    try:
        return _found_fast(fast, sp, derivatives)
    except fast_symbolic.Unsupported:
        return None


# ---- the reverse sweep, symbolically: partials with named intermediates ---------------------

SWEEP_NODES = 60  # above this many nodes, partials come from the symbolic reverse sweep
SWEEP_INLINE_OPS = 12  # an expression this small is written in place rather than named
_LINEAR_OPS = ("add", "sub", "mul", "div", "neg", "pos")


def sweep_partials(
    graph: Graph,
    point: Mapping[str, Any],
    wrt: list[str],
    latex: bool,
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Every partial the backprop way, as a person writes it: a reverse sweep over our graph
    in which SymPy only takes each node's local derivative, and the results refer to named
    intermediates (t3 = tanh(...), r = out - y) and named adjoints (d_t3 = ∂f/∂t3) instead of
    repeating them, so the output grows linearly with the graph. Each name's definition and
    its exact value at the point come with it. Sends one {"stage": "raw", "partials": …,
    "sweep": …} message (numbers only: scalar graphs)."""
    import sympy as sp

    names = graph.short_names()
    taken = set(names) | set(graph.variables)
    users = graph.consumers()
    shown: dict[Any, Any] = {}  # constant placeholder -> as typed
    exact: dict[Any, Any] = {}  # symbol -> its exact value at the point
    expr: list[Any] = []  # node -> what stands for it in formulas (a symbol, or inline)
    defs: dict[Any, Any] = {}  # named symbol -> its definition
    order: list[Any] = []  # the named symbols, in the order they are defined
    for node in graph.nodes:
        if node.op == "input":
            assert node.name is not None
            symbol = sp.Symbol(node.name, real=True)
            exact[symbol] = _exact(float(np.asarray(point[node.name], dtype=np.float64)), sp)
            expr.append(symbol)
            continue
        if node.op == "const":
            c = sp.Dummy(f"c{node.id}", real=True)
            text = graph.text(node.id)
            if text in ops.CONSTANTS:
                shown[c] = sp.pi if text == "pi" else sp.E
            else:
                typed = Fraction(text)
                shown[c] = sp.Rational(typed.numerator, typed.denominator)
            exact[c] = _exact(float(node.value if node.value is not None else 0.0), sp)
            expr.append(c)
            continue
        op = ops.OPS[node.op]
        here = op.sympy(sp, *(expr[i] for i in node.inputs))
        named = (  # a sum or product used once is written where it is used
            node.name is not None
            or len(users[node.id]) > 1
            or node.op not in _LINEAR_OPS
            or node.id == graph.output
        )
        if named:
            symbol = sp.Symbol(names[node.id], real=True)
            defs[symbol] = here
            order.append(symbol)
            exact[symbol] = sp.N(here.xreplace(exact), DIGITS)
            expr.append(symbol)
        else:
            expr.append(here)

    # The reverse sweep: d_node = Σ over its consumers of d_consumer · ∂consumer/∂node.
    local_cache: dict[tuple[str, int], tuple[Any, list[Any]]] = {}
    adjoint: dict[int, Any] = {graph.output: sp.Integer(1)}
    adjoint_defs: dict[Any, Any] = {}
    adjoint_order: list[Any] = []
    for node in reversed(graph.nodes):
        if node.op in ops.LEAVES or node.id not in adjoint:
            continue
        g = adjoint.pop(node.id)
        if sp.count_ops(g) > SWEEP_INLINE_OPS and g.free_symbols:
            label = f"d_{names[node.id]}"
            while label in taken:  # never a name the program already uses
                label += "'"
            taken.add(label)
            symbol = sp.Symbol(label, real=True)
            adjoint_defs[symbol] = g
            adjoint_order.append(symbol)
            exact[symbol] = sp.N(g.xreplace(exact), DIGITS)
            g = symbol
        op = ops.OPS[node.op]
        for k, i in enumerate(node.inputs):
            if graph.nodes[i].op == "const":
                continue
            key = (node.op, k)
            if key not in local_cache:
                slots = [sp.Symbol(f"_slot{j}", real=True) for j in range(op.arity)]
                out = sp.Symbol("_out", real=True)
                rule = (  # the textbook form in the node's own name (1 - t3**2), if any
                    op.local(sp, out, *slots)
                    if op.local is not None
                    else sp.diff(op.sympy(sp, *slots), slots[k])
                )
                local_cache[key] = (rule, [*slots, out])
            rule, slots = local_cache[key]
            given = {s: expr[node.inputs[j]] for j, s in enumerate(slots[:-1])}
            given[slots[-1]] = expr[node.id]
            local = rule.xreplace(given)
            term = g * local
            adjoint[i] = adjoint[i] + term if i in adjoint else term
        if graph.nodes[node.id].op != "input":
            adjoint.pop(node.id, None)

    def written(e: Any) -> str:
        return _cap(_sstr(e.xreplace(shown), sp))

    partials: dict[str, dict[str, Any]] = {}
    for name in wrt:
        node_id = graph.variables[name]
        d = adjoint.get(node_id, sp.Integer(0))
        info = {"formula": written(d), **_value(d, sp, exact)}
        if latex:
            info["latex"] = _cap(sp.latex(d.xreplace(shown)))
        partials[name] = info
    used = _referenced(
        [adjoint.get(graph.variables[n], sp.Integer(0)) for n in wrt], defs, adjoint_defs
    )
    emit(
        {
            "stage": "raw",
            "output": {"formula": written(defs.get(expr[graph.output], expr[graph.output]))},
            "partials": partials,
            "sweep": {
                "intermediates": [
                    [str(s), written(defs[s]), _float(exact[s])] for s in order if s in used
                ],
                "adjoints": [
                    [str(s), written(adjoint_defs[s]), _float(exact[s])]
                    for s in adjoint_order
                    if s in used
                ],
            },
        }
    )


def _referenced(roots: list[Any], *tables: dict[Any, Any]) -> set[Any]:
    """The named symbols the roots use, directly or through other names' definitions."""
    found: set[Any] = set()
    stack = [s for r in roots for s in r.free_symbols]
    while stack:
        s = stack.pop()
        if s in found:
            continue
        for table in tables:
            if s in table:
                found.add(s)
                stack.extend(table[s].free_symbols)
    return found


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


# ---- `backprop diff`: derivatives as formulas, and the rules that build them ----------------

MAX_DIFF_STEPS = 200  # steps shown per variable; a larger graph's are cut, and say so

# The rule each arithmetic op applies, keyed by how the registry writes it (symbol, arity);
# every op written as a call (exp, sin, max, …) applies the chain rule with its own
# derivative from the registry.
_SYMBOL_RULES: dict[tuple[str, int], str] = {
    ("+", 2): "sum rule",
    ("-", 2): "difference rule",
    ("*", 2): "product rule",
    ("/", 2): "quotient rule",
    ("**", 2): "power rule",
    ("-", 1): "constant multiple rule",
    ("+", 1): "identity rule",
    ("=", 1): "identity rule",
}
# The textbook form of each rule, u and v being the operands (c, n, a: constants).
RULE_FORMS: dict[str, str] = {
    "sum rule": "(u + v)' = u' + v'",
    "difference rule": "(u - v)' = u' - v'",
    "product rule": "(u·v)' = u'·v + u·v'",
    "constant multiple rule": "(c·u)' = c·u'",
    "quotient rule": "(u/v)' = (u'·v - u·v')/v²",
    "power rule": "(uⁿ)' = n·uⁿ⁻¹·u'",
    "exponential rule": "(aᵘ)' = aᵘ·ln(a)·u'",
    "generalized power rule": "(uᵛ)' = uᵛ·(v'·ln(u) + v·u'/u)",
    "chain rule": "f(u)' = f'(u)·u'",
    "multivariable chain rule": "f(u, v)' = ∂f/∂u·u' + ∂f/∂v·v'",
    "identity rule": "x' = 1",
    "constant rule": "c' = 0",
}


def derivative_pairs(wrt: list[str], order: int) -> list[tuple[str, ...]]:
    """What `diff` differentiates by: each variable (order 1); the Hessian's upper triangle
    (order 2), which is d²f/dx² alone for one variable."""
    if order == 1:
        return [(name,) for name in wrt]
    return [(a, b) for i, a in enumerate(wrt) for b in wrt[i:]]


def diff_forms(
    graph: Graph,
    wrt: list[str],
    order: int,
    simplify: bool,
    steps: bool,
    points: list[dict[str, float]],
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """The derivatives of a scalar graph as formulas, no point needed. Sends, in order (so a
    budget cut keeps what came first): {"stage": "output"} (the function, and how its names
    are written in LaTeX); {"stage": "raw", "index": k, ...} per derivative as differentiated;
    {"stage": "values", "index": k, ...} with its exact value at each of `points`; with
    `steps`, {"stage": "steps", "wrt": x, ...} per variable (the rules applied node by node,
    first derivatives); with `simplify`, {"stage": "simplified", "index": k, ...} per
    derivative, with its values again."""
    import sympy as sp

    exprs = readable_nodes(graph, sp)
    out = exprs[graph.output]
    names = [graph.output_name(), *graph.variables]
    emit(
        {
            "stage": "output",
            "formula": _cap(sp.sstr(out)),
            "latex": _cap(sp.latex(out)),
            "latex_names": {name: _latex_name(name, sp) for name in names},
        }
    )
    symbols = {name: exprs[node_id] for name, node_id in graph.variables.items()}
    pairs = derivative_pairs(wrt, order)
    first: dict[str, Any] = {}
    found: list[Any] = []
    for k, pair in enumerate(pairs):
        if pair[0] not in first:
            first[pair[0]] = sp.diff(out, symbols[pair[0]])
        d = first[pair[0]] if len(pair) == 1 else sp.diff(first[pair[0]], symbols[pair[1]])
        found.append(d)
        emit({"stage": "raw", "index": k, "formula": _cap(sp.sstr(d)), "latex": _cap(sp.latex(d))})
    at = [{symbols[n]: _exact(float(v), sp) for n, v in p.items()} for p in points]
    for k, d in enumerate(found):
        emit({"stage": "values", "index": k, "values": _values_at(d, sp, at)})
    if steps:
        for name in wrt:
            taken, cut = diff_steps(graph, exprs, name, sp)
            emit({"stage": "steps", "wrt": name, "steps": taken, "cut": cut})
    if not simplify:
        return
    for k, d in enumerate(found):
        try:
            s = _tidy(d, sp)
        except RecursionError:
            raise
        except Exception as exc:  # SymPy could not: the differentiated form stands
            emit({"stage": "simplified", "index": k, "error": f"{type(exc).__name__}: {exc}"})
            continue
        emit(
            {
                "stage": "simplified",
                "index": k,
                "formula": _cap(sp.sstr(s)),
                "latex": _cap(sp.latex(s)),
                "values": _values_at(s, sp, at),
            }
        )


def readable_nodes(graph: Graph, sp: Any) -> list[Any]:
    """Every node of a scalar graph as a SymPy expression in the variables, each constant as
    typed (0.1 as 1/10, pi as π)."""
    built = to_sympy(graph, sp, [()] * len(graph.nodes))  # array ops (max(x)) on numbers
    return [
        e.xreplace(built.shown) if hasattr(e, "xreplace") else sp.Float(float(e))
        for e in built.nodes
    ]


def _values_at(expr: Any, sp: Any, at: list[dict[Any, Any]]) -> list[dict[str, Any]]:
    """The expression's exact value at each point ({"value": float} or {"value": None,
    "undefined": why})."""
    found: list[dict[str, Any]] = []
    for point in at:
        info = _guarded(partial(_value, expr, sp, point))
        found.append({key: info[key] for key in ("value", "undefined", "error") if key in info})
    return found


def diff_steps(
    graph: Graph, exprs: list[Any], name: str, sp: Any
) -> tuple[list[dict[str, Any]], bool]:
    """The first derivative by `name`, built node by node in the graph's dependency order
    (forward: from the variable up to the output): each node that depends on the variable
    gets its derivative from its operands' derivatives by its op's rule. Returns the steps
    and whether they were cut at MAX_DIFF_STEPS."""
    x = exprs[graph.variables[name]]
    deps = graph.depends_on()
    needed = graph.ancestors_of_output()
    partial_d = len(graph.variables) > 1
    d_of = f"∂/∂{name}" if partial_d else f"d/d{name}"
    tex_name = _latex_name(name, sp)
    d_tex = (
        f"\\frac{{\\partial}}{{\\partial {tex_name}}}"
        if partial_d
        else f"\\frac{{d}}{{d {tex_name}}}"
    )
    derivative: dict[int, Any] = {}
    steps: list[dict[str, Any]] = []
    out = graph.output

    def step(node_id: int, rule: str, d: Any, because: str) -> dict[str, Any]:
        e = exprs[node_id]
        wrapped = _wrapped(e, sp)
        wrapped_tex = sp.latex(e) if _bare(e, sp) else f"\\left({sp.latex(e)}\\right)"
        node = graph.nodes[node_id]
        return {
            "wrt": name,
            "node": node_id,
            "name": node.name if node.op not in ops.LEAVES else None,
            "rule": rule,
            "form": RULE_FORMS.get(rule, ""),
            "because": because,
            "expression": _cap(sp.sstr(e)),
            "derivative": _cap(sp.sstr(d)),
            "equation": _cap(f"{d_of} {wrapped} = {sp.sstr(d)}"),
            "latex": _cap(f"{d_tex} {wrapped_tex} = {sp.latex(d)}"),
        }

    if name not in deps[out]:
        steps.append(step(out, "constant rule", sp.Integer(0), f"{graph.label(out)} does not "
                          f"depend on {name}"))  # fmt: skip
        return steps, False
    if graph.nodes[out].op == "input":
        return [step(out, "identity rule", sp.Integer(1), f"the variable {name} itself")], False
    for node in graph.nodes:
        if not needed[node.id] or name not in deps[node.id]:
            continue
        if node.op == "input":
            derivative[node.id] = sp.Integer(1)
            continue
        op = ops.OPS[node.op]
        args = [exprs[i] for i in node.inputs]
        slots = [sp.Dummy(f"a{k}", real=True) for k in range(op.arity)]
        if op.elementwise:
            f = op.sympy(sp, *slots)
        else:  # an array op on numbers (sum(x) of a scalar x)
            ctx = ops.Ctx((0,) * op.arity, ((),) * op.arity, (), node.params)
            f = _array(op.sympy(sp, *slots, ctx=ctx))
        given = dict(zip(slots, args, strict=True))
        moving = [k for k, i in enumerate(node.inputs) if i in derivative]
        terms = [sp.diff(f, slots[k]).xreplace(given) * derivative[node.inputs[k]] for k in moving]
        d = sp.Add(*terms)
        derivative[node.id] = d
        if len(steps) < MAX_DIFF_STEPS:
            rule, because = _rule(op, moving, args, x, sp)
            steps.append(step(node.id, rule, d, because))
        else:
            return steps, True
    return steps, False


def _bare(e: Any, sp: Any) -> bool:
    """A symbol, a number or a function call: written without parentheses after d/dx."""
    return bool(e.is_Atom or e.is_Function)


def _rule(op: ops.Op, moving: list[int], args: list[Any], x: Any, sp: Any) -> tuple[str, str]:
    """The rule an op applies, given which operands depend on the variable, and what its
    textbook form's letters (u, v, c, n, a, f) stand for here."""
    texts = [sp.sstr(a) for a in args]
    rule = _SYMBOL_RULES.get((op.symbol, op.arity)) if op.symbol is not None else None
    if rule is None:  # a function: the chain rule, with the op's own derivative
        inner = ", ".join(texts[k] for k in moving)
        kind = "chain rule" if len(moving) == 1 else "multivariable chain rule"
        return kind, f"f = {op.syntax}, {op.rule}; inner {inner}"
    if rule == "identity rule":
        return rule, f"a named copy of {texts[0]}"
    if op.arity == 1:  # -u
        return rule, f"c = -1, u = {texts[0]}"
    if rule == "product rule" and len(moving) == 1:
        u, c = texts[moving[0]], texts[1 - moving[0]]
        return "constant multiple rule", f"c = {c}, u = {u}"
    if rule == "quotient rule" and moving == [0]:
        return "constant multiple rule", f"c = 1/{_wrapped(args[1], sp)}, u = {texts[0]}"
    if rule == "power rule" and moving == [1]:
        return "exponential rule", f"a = {texts[0]}, u = {texts[1]}"
    if rule == "power rule" and len(moving) == 2:
        return "generalized power rule", f"u = {texts[0]}, v = {texts[1]}"
    if rule == "power rule":
        chained = "" if args[0] == x else f" (the chain rule for the inner {texts[0]})"
        return rule, f"u = {texts[0]}, n = {texts[1]}{chained}"
    return rule, f"u = {texts[0]}, v = {texts[1]}"


def _wrapped(e: Any, sp: Any) -> str:
    return str(sp.sstr(e)) if _bare(e, sp) else f"({sp.sstr(e)})"


def _tidy(d: Any, sp: Any) -> Any:
    """SymPy's simplified form where it is clearly simpler (at least two operations fewer);
    otherwise the differentiated form, which reads like the rules that made it
    (x**2*cos(x) + 2*x*sin(x) rather than x*(x*cos(x) + 2*sin(x)))."""
    s = _simplify(d, sp)
    return s if sp.count_ops(s) + 2 <= sp.count_ops(d) else d
