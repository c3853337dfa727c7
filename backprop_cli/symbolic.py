"""The SymPy counterpart of a graph: the only module that imports sympy.

The expression is built from our graph node by node (never by parsing text), differentiated
per variable and evaluated exactly at the point. `partials` streams its results through
`emit` (first unsimplified, then simplified per variable) so that a budget cut still leaves
the earlier results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from . import ops
from .graph import Graph

MAX_FORMULA_CHARS = 200_000
_SMALLEST_NORMAL = 2.2250738585072014e-308
DIGITS = 30  # working precision of the exact evaluation

# Where SymPy's value at a kink is a convention that differs from torch's subgradient.
_CONVENTION_FUNCS = ("Heaviside", "sign", "DiracDelta")


def to_sympy(graph: Graph, sp: Any) -> list[Any]:
    """One SymPy expression per node, built in a loop over the nodes."""
    exprs: list[Any] = []
    for node in graph.nodes:
        if node.op == "input":
            exprs.append(sp.Symbol(node.name, real=True))
        elif node.op == "const":
            text = graph.text(node.id)
            if text == "pi":
                exprs.append(sp.pi)
            elif text == "e":
                exprs.append(sp.E)
            else:
                # The literal as typed (0.1 is 1/10), unless float64 could not hold it to
                # full precision: then the value the engine really used.
                typed = Fraction(text)
                used = node.value if node.value is not None else 0.0
                frac = typed if typed == 0 or abs(used) >= _SMALLEST_NORMAL else Fraction(used)
                exprs.append(sp.Rational(frac.numerator, frac.denominator))
        else:
            exprs.append(ops.OPS[node.op].sympy(sp, *(exprs[i] for i in node.inputs)))
    return exprs


def _exact(value: float, sp: Any) -> Any:
    # The float the engine used, exactly (0.1 given on the command line is a binary fraction).
    frac = Fraction(value)
    return sp.Rational(frac.numerator, frac.denominator)


def _describe(expr: Any, sp: Any, subs: Mapping[Any, Any], latex: bool) -> dict[str, Any]:
    text = sp.sstr(expr)
    info: dict[str, Any] = {"formula": _cap(text)}
    if latex:
        info["latex"] = _cap(sp.latex(expr))
    at_point = expr.xreplace(subs)
    value = sp.N(at_point, DIGITS)
    info["convention"] = any(
        sp.N(arg.xreplace(subs), DIGITS) == 0
        for f in expr.atoms(sp.Function)
        if type(f).__name__ in _CONVENTION_FUNCS
        for arg in f.args[:1]
    )
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


def _cap(text: str) -> str:
    if len(text) <= MAX_FORMULA_CHARS:
        return text
    return text[:MAX_FORMULA_CHARS] + f"… ({len(text):,} characters in all)"


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

    exprs = to_sympy(graph, sp)
    out = exprs[graph.output]
    symbols = {name: exprs[node_id] for name, node_id in graph.variables.items()}
    subs = {symbols[name]: _exact(point[name], sp) for name in symbols}
    derivatives = {name: sp.diff(out, symbols[name]) for name in wrt}
    emit(
        {
            "stage": "raw",
            "output": _describe(out, sp, subs, latex),
            "partials": {n: _describe(d, sp, subs, latex) for n, d in derivatives.items()},
        }
    )
    if not simplify:
        return
    emit({"stage": "simplified", "output": _describe(_simplify(out, sp), sp, subs, latex)})
    for name, d in derivatives.items():
        emit(
            {
                "stage": "simplified",
                "partials": {name: _describe(_simplify(d, sp), sp, subs, latex)},
            }
        )


def _simplify(expr: Any, sp: Any) -> Any:
    """SymPy's simplify, kept to the functions the expression already uses: a sigmoid's
    derivative stays in exp, not cosh, so it still reads like the graph it came from."""
    known = {type(f) for f in expr.atoms(sp.Function)}

    def measure(e: Any) -> int:
        new = {type(f) for f in e.atoms(sp.Function)} - known
        return int(sp.count_ops(e)) + 1000 * len(new)

    return sp.simplify(expr, ratio=1.0, measure=measure)
