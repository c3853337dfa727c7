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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

from . import ops
from .graph import Graph

MAX_FORMULA_CHARS = 200_000
DIGITS = 30  # working precision of the exact evaluation

# Where SymPy's value at a kink is a convention that differs from torch's subgradient.
_CONVENTION_FUNCS = ("Heaviside", "sign", "DiracDelta")


@dataclass
class Expressions:
    """SymPy expressions for every node, with constants as placeholder symbols."""

    nodes: list[Any]
    shown: dict[Any, Any]  # placeholder -> the constant as typed (1/10, pi)
    used: dict[Any, Any]  # placeholder -> the float64 value the engine used, exactly


def _exact(value: float, sp: Any) -> Any:
    frac = Fraction(value)
    return sp.Rational(frac.numerator, frac.denominator)


def to_sympy(graph: Graph, sp: Any) -> Expressions:
    """One SymPy expression per node, built in a loop over the nodes."""
    exprs: list[Any] = []
    shown: dict[Any, Any] = {}
    used: dict[Any, Any] = {}
    for node in graph.nodes:
        if node.op == "input":
            exprs.append(sp.Symbol(node.name, real=True))
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
            exprs.append(ops.OPS[node.op].sympy(sp, *(exprs[i] for i in node.inputs)))
    return Expressions(exprs, shown, used)


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


def _shown(expr: Any, sp: Any, shown: Mapping[Any, Any], latex: bool) -> dict[str, Any]:
    readable = expr.xreplace(shown)
    info = {"formula": _cap(sp.sstr(readable))}
    if latex:
        info["latex"] = _cap(sp.latex(readable))
    return info


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
    point: Mapping[str, float],
    wrt: list[str],
    latex: bool,
    simplify: bool,
    *,
    emit: Callable[[dict[str, Any]], None],
) -> None:
    """Send {"stage": "raw", ...} with every partial, then one "simplified" per variable."""
    import sympy as sp

    built = to_sympy(graph, sp)
    out = built.nodes[graph.output]
    symbols = {name: built.nodes[node_id] for name, node_id in graph.variables.items()}
    at = {**built.used, **{symbols[n]: _exact(point[n], sp) for n in symbols}}
    derivatives = {name: sp.diff(out, symbols[name]) for name in wrt}

    def described(expr: Any) -> dict[str, Any]:
        return {**_shown(expr, sp, built.shown, latex), **_value(expr, sp, at)}

    emit(
        {
            "stage": "raw",
            "output": _guarded(partial(described, out)),
            "partials": {n: _guarded(partial(described, d)) for n, d in derivatives.items()},
        }
    )
    if not simplify:
        return

    # Simplified forms replace only the formula: the value stays the one computed from the
    # differentiated graph, whose algebra has not cancelled anything.
    def simplified(expr: Any) -> dict[str, Any]:
        return _shown(_simplify(expr.xreplace(built.shown), sp), sp, {}, latex)

    emit({"stage": "simplified", "output": _guarded(partial(simplified, out))})
    for name, d in derivatives.items():
        emit({"stage": "simplified", "partials": {name: _guarded(partial(simplified, d))}})


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
) -> dict[tuple[int, int], dict[str, str]]:
    """The local derivative ∂node/∂input_k of each edge as a formula in the nodes' short
    names (2*r for r**2), and the same formula with the values put in (2*(-2)), as text and
    LaTeX. Each input position gets its own symbol, so x*x has ∂/∂a = b on each edge. The
    derivative of each (op, position, constant operands) is worked out once."""
    import sympy as sp

    cache: dict[tuple[Any, ...], Any] = {}
    tex: dict[Any, str] = {}
    out: dict[tuple[int, int], dict[str, str]] = {}
    for node_id, k in edges:
        node = graph.nodes[node_id]
        op = ops.OPS[node.op]
        consts = tuple(_literal(graph, i, sp) for i in node.inputs)
        key = (node.op, k, consts)
        if key not in cache:
            cache[key] = _derivative(op, k, consts, sp)
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
    return out


def _literal(graph: Graph, node_id: int, sp: Any) -> Any:
    """A numeric literal operand as SymPy folds it (2 in r**2), or None for the others.
    Zero stays a name, so 0**x keeps its form instead of turning into zoo."""
    node = graph.nodes[node_id]
    if node.op != "const" or graph.text(node_id) in ops.CONSTANTS:
        return None
    typed = Fraction(graph.text(node_id))
    return None if typed == 0 else sp.Rational(typed.numerator, typed.denominator)


def _derivative(op: ops.Op, k: int, consts: tuple[Any, ...], sp: Any) -> Any:
    slots = [
        c if c is not None else sp.Symbol(f"_slot{j}", real=True) for j, c in enumerate(consts)
    ]
    if op.local is not None:  # the textbook form, in the op's output: a·(1 - a)
        return op.local(sp, sp.Symbol("_out", real=True), *slots)
    return sp.diff(op.sympy(sp, *slots), slots[k])


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
