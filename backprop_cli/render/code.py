"""Generated code as source text: a `Code` (analyses/codegen.py) printed in Python (math),
NumPy, PyTorch, JAX or C99, formatted as ruff formats Python, importing only its library.

Each target is a printer of the code's vocabulary; precedence decides the parentheses, so
the statements read like the user's expression. Only names that passed the parser's
whitelist, numbers and our own words reach the text.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from ..analyses.codegen import (
    C_RESERVED,
    PY_RESERVED,
    Code,
    Expr,
    Namer,
    Stmt,
    index_text,
    number_text,
    walk,
)
from ..core.errors import InputError

TARGETS = ("python", "numpy", "torch", "jax", "c")
LINE = 88  # ruff's default line length
LIBRARY = {"python": "math", "numpy": "NumPy", "torch": "PyTorch", "jax": "JAX", "c": "C99"}

# Binding strength, loosest first (Python's table; C's is alike for what we print).
TERNARY, OR, AND, COMPARE, BITOR, BITAND, SUM, PRODUCT, UNARY, POWER, ATOM = range(11)
_INFIX = {
    "add": ("+", SUM), "subtract": ("-", SUM), "multiply": ("*", PRODUCT),
    "divide": ("/", PRODUCT), "matmul": ("@", PRODUCT),
}  # fmt: skip
_COMPARE = {
    "less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=", "equal": "==",
    "not_equal": "!=",
}  # fmt: skip
# functions every Python-family library and C spell as numpy does
_CALLS = {
    f.__name__
    for f in (np.exp, np.log, np.sqrt, np.sin, np.cos, np.tan, np.tanh, np.isnan, np.sign, np.fmod)
}


def reserved(target: str) -> set[str]:
    return set(C_RESERVED) if target == "c" else set(PY_RESERVED)


class Printer:
    """Python with the math module: scalars only."""

    target = "python"
    lib = "math"
    comment = "#"

    def __init__(self) -> None:
        self.helpers: dict[str, str] = {}
        self.names = Namer(())
        self.taken: set[str] = self.names.taken

    # -- expressions --
    def expr(self, e: Expr) -> str:
        return self.p(e)[0]

    def p(self, e: Expr) -> tuple[str, int]:
        """e's text and how tightly it binds."""
        if e.fn == "name":
            return str(e.value), ATOM
        if e.fn == "const":
            return self.const(e.value)
        method: Callable[..., tuple[str, int]] | None = getattr(self, "fn_" + e.fn, None)
        if method is not None:
            return method(*e.args, **e.kw)
        if e.fn in _INFIX:
            symbol, prec = _INFIX[e.fn]
            return self.infix(e.args[0], symbol, e.args[1], prec)
        if e.fn in _COMPARE:
            return self.infix(e.args[0], _COMPARE[e.fn], e.args[1], COMPARE, chain=False)
        if e.fn in _CALLS:
            return self.call(self.name_of(e.fn), *e.args), ATOM
        raise InputError(f"the {self.target} target cannot express {e.fn} (a bug)")

    def name_of(self, fn: str) -> str:
        return f"{self.lib}.{fn}"

    def at(self, e: Expr, prec: int) -> str:
        """e, parenthesised unless it binds at least as tightly as prec."""
        text, mine = self.p(e)
        return text if mine >= prec else f"({text})"

    def infix(self, a: Expr, op: str, b: Expr, prec: int, chain: bool = True) -> tuple[str, int]:
        # left-associative: the right operand must bind more tightly
        left = self.at(a, prec if chain else prec + 1)
        return f"{left} {op} {self.at(b, prec + 1)}", prec

    def call(self, fn: str, *args: Expr, extra: str = "") -> str:
        inner = ", ".join([self.expr(a) for a in args] + ([extra] if extra else []))
        return f"{fn}({inner})"

    def const(self, value: Any) -> tuple[str, int]:
        if isinstance(value, bool):
            return str(value), ATOM
        if isinstance(value, np.ndarray):
            return self.array(value), ATOM
        x = float(value)
        if math.isnan(x):
            return self.nan(), ATOM
        if math.isinf(x):
            return (self.inf(), ATOM) if x > 0 else ("-" + self.inf(), UNARY)
        text = self.number(x)
        return text, UNARY if text.startswith("-") else ATOM

    def number(self, x: float) -> str:
        return number_text(x)

    def nan(self) -> str:
        return f"{self.lib}.nan"

    def inf(self) -> str:
        return f"{self.lib}.inf"

    def array(self, value: np.ndarray) -> str:
        raise InputError("the python target works on numbers, not arrays")

    def fn_negative(self, a: Expr) -> tuple[str, int]:
        return "-" + self.at(a, UNARY), UNARY

    def power(self, a: Expr, b: Expr) -> tuple[str, int]:
        # ** is right-associative and binds more tightly than a unary minus on its left;
        # ruff (like black) writes it without spaces between simple operands: t2**2
        op = "**" if _simple(a) and _simple(b) else " ** "
        return f"{self.at(a, POWER + 1)}{op}{self.at(b, UNARY)}", POWER

    def fn_power(self, a: Expr, b: Expr) -> tuple[str, int]:
        if b.fn == "const" and float(b.value).is_integer():
            return self.power(a, b)
        # math.pow, not **: a negative base with a fractional exponent is an error, not a
        # complex number
        return self.call("math.pow", a, b), ATOM

    def fn_absolute(self, a: Expr) -> tuple[str, int]:
        return self.call("abs", a), ATOM

    def fn_sign(self, a: Expr) -> tuple[str, int]:
        x = self.at(a, COMPARE + 1)
        return f"({x} > 0) - ({x} < 0)", SUM

    def fn_logaddexp(self, a: Expr, b: Expr) -> tuple[str, int]:
        # log(e^a + e^b) without overflow: the larger plus log1p of the smaller's ratio
        if a.fn == "const" and a.value == 0:
            a, b = b, a
        if b.fn == "const" and b.value == 0:
            x = self.expr(a)
            return f"max({x}, 0) + math.log1p(math.exp(-abs({x})))", SUM
        x, y = self.expr(a), self.expr(b)
        return f"max({x}, {y}) + math.log1p(math.exp(-abs({x} - {y})))", SUM

    def fn_where(self, c: Expr, a: Expr, b: Expr) -> tuple[str, int]:
        # a number as a branch is written as a float, so the result is one whichever is taken
        left, right = self.branch(a, OR), self.branch(b, TERNARY)
        return f"{left} if {self.at(c, OR)} else {right}", TERNARY

    def branch(self, e: Expr, prec: int) -> str:
        if _scalar_number(e):
            return repr(float(e.value)) if float(e.value) >= 0 else f"({float(e.value)!r})"
        return self.at(e, prec)

    def fn_or(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.infix(a, "or", b, OR)

    def fn_and(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.infix(a, "and", b, AND)

    def fn_ones_like(self, a: Expr) -> tuple[str, int]:
        return "1.0", ATOM

    def fn_zeros_like(self, a: Expr) -> tuple[str, int]:
        return "0.0", ATOM

    # -- statements and the module --
    def convert(self, param: str) -> str | None:
        """The statement that turns a parameter into the target's array, if any."""
        return None

    def copy(self, text: str) -> str:
        return text

    lazy_where = True  # `a if c else b` evaluates one branch: hoist nothing out of it

    def statement(self, s: Stmt, indent: str) -> list[str]:
        op = "+=" if s.accumulate else "="
        return self.assign(s.target, op, s.expr, indent, self.note(s), s.copy)

    def assign(
        self,
        target: str,
        op: str,
        expr: Expr,
        indent: str,
        note: str = "",
        copy: bool = False,
        base: str | None = None,
    ) -> list[str]:
        """target op expr, within the line length as ruff keeps it: a statement too long is
        split, its largest operand computed first into a name of its own (a conditional
        whose branches must stay lazy becomes an if/else)."""
        value = self.expr(expr)
        line = f"{indent}{target} {op} {self.copy(value) if copy else value}"
        if len(line) <= LINE:
            return self.with_comment(line, note, indent)
        above = [f"{indent}{self.comment} {note}"] if note else []
        if expr.fn == "where" and self.lazy_where:
            cond, left, right = expr.args
            inner = indent + "    "
            return [*above, f"{indent}if {self.expr(cond)}:",
                    *self.assign(target, op, left, inner, base=base), f"{indent}else:",
                    *self.assign(target, op, right, inner, base=base)]  # fmt: skip
        parts = [a for a in expr.args if a.fn not in ("name", "const")]
        if not parts:  # names only: laid out over lines as ruff does
            head = f"{indent}{target} {op} "
            if expr.fn in _INFIX and len(indent + "    " + value) > LINE:
                symbol = _INFIX[expr.fn][0]
                first, second = (self.expr(a) for a in expr.args)
                inner = indent + "    "
                return [
                    *above,
                    f"{head}(",
                    inner + first,
                    f"{inner}{symbol} {second}",
                    f"{indent})",
                ]
            return [*above, *_wrapped(head, line, indent)]
        sub = max(parts, key=lambda a: len(self.expr(a)))
        temp = self.fresh(base or target)
        before = self.assign(temp, "=", sub, indent, base=base or target)
        rest = self.assign(target, op, _swap(expr, sub, temp), indent, "", copy, base)
        return [*above, *before, *rest]

    def fresh(self, base: str) -> str:
        k = 1
        while f"{base}_{k}" in self.taken:
            k += 1
        self.taken.add(f"{base}_{k}")
        return f"{base}_{k}"

    def note(self, s: Stmt) -> str:
        text = s.comment
        if s.local is not None:
            text += self.expr(s.local)
        return text

    def with_comment(self, line: str, note: str, indent: str) -> list[str]:
        if not note:
            return [line]
        inline = f"{line}  {self.comment} {note}"
        if len(inline) <= LINE:
            return [inline]
        return [f"{indent}{self.comment} {note}", line]

    def header(self, code: Code) -> list[str]:
        first = (
            f"{_what(code)}, generated by backprop-cli (backprop codegen --target {self.target})."
        )
        lines = [*textwrap.wrap('"""' + first, LINE), "", *textwrap.wrap(_how(code), LINE)]
        return [*lines, '"""', "", self.imports()]

    def imports(self) -> str:
        return "import math"

    def module(self, code: Code) -> str:
        self.names = Namer(_names(code) | reserved(self.target))
        self.taken = self.names.taken  # one set: unique() and fresh() never clash
        body = self.function_lines(code, code.name if code.mode != "hessian" else _hvp(code))
        if code.mode == "hessian":
            body += ["", "", *self.hessian_lines(code)]
        lines = self.header(code)
        if not any(f"{self.lib}." in line for line in body):  # nothing from the library
            lines = lines[:-2]
        helpers = [self.helpers[k] for k in sorted(self.helpers)]
        for helper in helpers:
            lines += ["", "", helper.rstrip("\n")]
        lines += ["", "", *body]
        return "\n".join(lines) + "\n"

    def signature(self, code: Code, fn: str) -> list[str]:
        return _bracketed(f"def {fn}(", code.params + code.tangent_params, "):", "")

    def function_lines(self, code: Code, fn: str) -> list[str]:
        lines = self.signature(code, fn)
        lines.append(f'    """{_doc(code, fn != code.name)}"""')
        for param in code.params + code.tangent_params:
            lines += self.convert_lines(param)
        for item in code.body:
            if isinstance(item, str):
                lines.append(f"    {self.comment} {item}")
            else:
                lines += self.statement(item, "    ")
        return lines + self.return_lines(code)

    def convert_lines(self, param: str) -> list[str]:
        converted = self.convert(param)
        if converted is None:
            return []
        head, _, rest = converted.partition("(")
        return _bracketed(f"    {head}(", rest[:-1].split(", "), ")", "    ")

    def return_lines(self, code: Code) -> list[str]:
        value = self.branch(code.value, TERNARY)  # a constant output as a float
        if code.mode == "forward":
            return [f"    return {value}, {self.branch(code.grads[0], TERNARY)}"]
        tuples = [[self.branch(g, TERNARY) for g in code.grads]]
        if code.mode == "hessian":
            tuples.append([self.branch(h, TERNARY) for h in code.hvp])
        line = f"    return {', '.join([value, *(_tuple(t) for t in tuples)])}"
        if len(line) <= LINE:
            return [line]
        # too long: each tuple gets a name of its own, one item a line, as ruff writes it
        lines: list[str] = []
        names = []
        for what, items in zip(("grad", "hvp"), tuples, strict=False):
            names.append(self.unique(what))
            lines += _bracketed(f"    {names[-1]} = (", items, ")", "    ", hug=False, one=True)
        return [*lines, f"    return {', '.join([value, *names])}"]

    def unique(self, wanted: str) -> str:
        return self.names.fresh(wanted)

    def hessian_lines(self, code: Code) -> list[str]:
        n = len(code.wrt)
        lines = _bracketed(f"def {code.name}(", code.params, "):", "")
        lines.append(f'    """{_hessian_doc(code)}"""')
        self.taken |= {"_"}
        value, grad = self.unique("value"), self.unique("grad")
        rows = []
        for j, var in enumerate(code.wrt):
            unit = ["1.0" if k == j else "0.0" for k in range(n)]
            rows.append(self.unique(f"h_{var}"))
            first = f"{value}, {grad}" if j == 0 else "_, _"
            head = f"    {first}, {rows[-1]} = {_hvp(code)}("
            lines += _bracketed(head, [*code.params, *unit], ")", "    ")
        if not n:
            lines += _bracketed(f"    {value}, {grad}, _ = {_hvp(code)}(", code.params, ")", "    ")
        line = f"    return {value}, {grad}, {_tuple(rows)}"
        if len(line) <= LINE:
            return [*lines, line]
        hess = self.unique("hessian")
        lines += _bracketed(f"    {hess} = (", rows, ")", "    ", hug=False, one=True)
        return [*lines, f"    return {value}, {grad}, {hess}"]


def _wrapped(head: str, line: str, indent: str) -> list[str]:
    """A statement of names too long for a line: a call's arguments on a line of their own,
    anything else in parentheses (what ruff does with either)."""
    value = line[len(head) :]
    name, bracket, rest = value.partition("(")
    if bracket and name and all(c.isalnum() or c in "._" for c in name) and rest.endswith(")"):
        args = _top_level(rest[:-1])
        if args is not None:
            return _bracketed(f"{head}{name}(", args, ")", indent)
    inner = indent + "    " + value
    if len(inner) <= LINE:
        return [f"{head}(", inner, f"{indent})"]
    return [line]


def _top_level(text: str) -> list[str] | None:
    """text split at the commas outside brackets; None if its brackets do not balance."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return None
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts if depth == 0 else None


def _bracketed(
    head: str, items: list[str], tail: str, indent: str, hug: bool = True, one: bool = False
) -> list[str]:
    """head + items + tail as ruff lays it out: on one line if it fits; else the items on
    one line of their own (calls and definitions, `hug`); else one item a line with a
    trailing comma. `one`: a tuple, whose single item keeps its comma."""
    joined = ", ".join(items) + ("," if one and len(items) == 1 else "")
    line = f"{head}{joined}{tail}"
    if len(line) <= LINE or not items:
        return [line]
    inner = indent + "    "
    if hug and len(inner + joined) <= LINE:
        return [head, inner + joined, indent + tail]
    return [head, *(f"{inner}{item}," for item in items), indent + tail]


def _names(code: Code) -> set[str]:
    found = {code.name, *code.params, *code.tangent_params}
    return found | {s.target for s in code.body if isinstance(s, Stmt)}


def _swap(expr: Expr, old: Expr, temp: str) -> Expr:
    args = tuple(Expr("name", value=temp) if a is old else a for a in expr.args)
    return Expr(expr.fn, args, expr.value, expr.attrs)


def _scalar_number(e: Expr) -> bool:
    return e.fn == "const" and isinstance(e.value, float) and math.isfinite(e.value)


def _simple(e: Expr) -> bool:
    """A name or a finite number, perhaps negated: what ruff hugs ** around."""
    if e.fn == "negative":
        e = e.args[0]
    if e.fn == "name":
        return True
    return e.fn == "const" and isinstance(e.value, float) and math.isfinite(e.value)


def _tuple(items: list[str]) -> str:
    if len(items) == 1:
        return f"({items[0]},)"
    return f"({', '.join(items)})"


def _hvp(code: Code) -> str:
    return f"_{code.name}_hvp"


def _what(code: Code) -> str:
    out = code.output
    return {
        "reverse": f"{out} and its gradient by reverse accumulation",
        "forward": f"{out} and its tangent by forward accumulation",
        "hessian": f"{out}, its gradient and its Hessian by forward over reverse accumulation",
    }[code.mode]


def _how(code: Code) -> str:
    if code.mode == "forward":
        return ("One statement per node computes its value, then its tangent t_name: the "
                "derivative along the direction the tangent parameters give.")  # fmt: skip
    return ("One statement per node computes its value; the backward pass walks the graph "
            "in reverse, adding each wire's part of the gradient to d_name with +=.")  # fmt: skip


def _doc(code: Code, helper: bool) -> str:
    out = code.output
    at = ", ".join(code.params) or "no variables"
    if code.mode == "forward":
        return f"{out} at ({at}) and its derivative along ({', '.join(code.tangent_params)})."
    grads = ", ".join(f"d{out}/d{v}" for v in code.wrt) or "none"
    if helper:
        return f"{out}, its gradient and the Hessian times ({', '.join(code.tangent_params)})."
    return f"{out} at ({at}) and its gradient ({grads})."


def _hessian_doc(code: Code) -> str:
    return f"{code.output}, its gradient and its Hessian rows (one per variable)."


class NumpyPrinter(Printer):
    target = "numpy"
    lib = "np"
    lazy_where = False  # np.where evaluates both branches anyway

    def imports(self) -> str:
        return "import numpy as np"

    def convert(self, param: str) -> str | None:
        return f"{param} = np.asarray({param}, dtype=np.float64)"

    def copy(self, text: str) -> str:
        return f"np.copy({text})"

    def array(self, value: np.ndarray) -> str:
        return f"np.array({_nested(value)}, dtype=np.float64)"

    def fn_power(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.power(a, b)

    def fn_absolute(self, a: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.abs", a), ATOM

    def fn_sign(self, a: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.sign", a), ATOM

    def fn_logaddexp(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.logaddexp", a, b), ATOM

    def fn_where(self, c: Expr, a: Expr, b: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.where", c, a, b), ATOM

    def fn_or(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.infix(a, "|", b, BITOR)

    def fn_and(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.infix(a, "&", b, BITAND)

    def fn_ones_like(self, a: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.ones_like", a), ATOM

    def fn_zeros_like(self, a: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.zeros_like", a), ATOM

    # -- arrays --
    def axis(self, axis: int | None) -> str:
        return "" if axis is None else f"axis={axis}"

    def reduce(self, fn: str, a: Expr, axis: int | None) -> tuple[str, int]:
        return self.call(f"{self.lib}.{fn}", a, extra=self.axis(axis)), ATOM

    def fn_sum(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.reduce("sum", a, axis)

    def fn_mean(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.reduce("mean", a, axis)

    def fn_amax(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.reduce("max", a, axis)

    def fn_amin(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.reduce("min", a, axis)

    def fn_dot(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.dot", a, b), ATOM

    def fn_transpose(self, a: Expr) -> tuple[str, int]:
        return f"{self.at(a, ATOM)}.T", ATOM

    def fn_reshape(self, a: Expr, shape: tuple[int, ...]) -> tuple[str, int]:
        return self.call(f"{self.lib}.reshape", a, extra=_shape(shape)), ATOM

    def fn_reshape_as(self, g: Expr, a: Expr) -> tuple[str, int]:
        return self.call(f"{self.lib}.reshape", g, extra=f"{self.lib}.shape({self.expr(a)})"), ATOM

    def fn_getitem(self, a: Expr, index: tuple[Any, ...]) -> tuple[str, int]:
        return f"{self.at(a, ATOM)}[{index_text(index)}]", ATOM

    def fn_spread(self, g: Expr, a: Expr, axis: int | None = None) -> tuple[str, int]:
        ones = self.call(f"{self.lib}.ones_like", a)
        if axis is None:
            return f"{self.at(g, PRODUCT)} * {ones}", PRODUCT
        return f"{self.lib}.expand_dims({self.expr(g)}, {axis}) * {ones}", PRODUCT

    def fn_size(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        if axis is None:
            return self.call(f"{self.lib}.size", a), ATOM
        return f"{self.lib}.shape({self.expr(a)})[{axis}]", ATOM

    def helper(self, key: str) -> str:
        text = HELPERS[self.target][key]
        self.helpers[key] = text
        return key

    def fn_share(self, g: Expr, a: Expr, out: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.call(self.helper("_share"), g, a, out, extra=self.axis(axis)), ATOM

    def fn_share_tangent(
        self, t: Expr, a: Expr, out: Expr, axis: int | None = None
    ) -> tuple[str, int]:
        return self.call(self.helper("_share_tangent"), t, a, out, extra=self.axis(axis)), ATOM

    def fn_matmul_grad_a(self, g: Expr, a: Expr, b: Expr) -> tuple[str, int]:
        return self.call(self.helper("_matmul_grad_a"), g, a, b), ATOM

    def fn_matmul_grad_b(self, g: Expr, a: Expr, b: Expr) -> tuple[str, int]:
        return self.call(self.helper("_matmul_grad_b"), g, a, b), ATOM

    def fn_unbroadcast(self, g: Expr, a: Expr) -> tuple[str, int]:
        return self.call(self.helper("_unbroadcast"), g, a), ATOM

    def fn_scatter(self, g: Expr, a: Expr, index: tuple[Any, ...]) -> tuple[str, int]:
        return self.call(self.helper("_scatter"), g, a, extra=f"np.s_[{index_text(index)}]"), ATOM


def _shape(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else f"({', '.join(str(d) for d in shape)})"


def _nested(value: np.ndarray) -> str:
    if value.ndim == 0:
        return number_text(float(value))
    return "[" + ", ".join(_nested(v) for v in value) + "]"


class TorchPrinter(NumpyPrinter):
    target = "torch"
    lib = "torch"

    def imports(self) -> str:
        return "import torch"

    def convert(self, param: str) -> str | None:
        return f"{param} = torch.as_tensor({param}, dtype=torch.float64)"

    def copy(self, text: str) -> str:
        return f"torch.clone({text})"

    def array(self, value: np.ndarray) -> str:
        # on the device of the first variable, so the code runs wherever its inputs are
        device = f", device={self.device}.device" if self.device else ""
        return f"torch.tensor({_nested(value)}, dtype=torch.float64{device})"

    def module(self, code: Code) -> str:
        self.device = code.params[0] if code.params else ""
        return super().module(code)

    def nan(self) -> str:
        return "torch.nan"

    def inf(self) -> str:
        return "torch.inf"

    def fn_logaddexp(self, a: Expr, b: Expr) -> tuple[str, int]:
        # torch's logaddexp takes tensors only
        if a.fn == "const":
            return self.call("torch.logaddexp", extra=f"{self.full(b, a)}, {self.expr(b)}"), ATOM
        if b.fn == "const":
            return self.call("torch.logaddexp", extra=f"{self.expr(a)}, {self.full(a, b)}"), ATOM
        return self.call("torch.logaddexp", a, b), ATOM

    def full(self, like: Expr, c: Expr) -> str:
        if c.value == 0:
            return f"torch.zeros_like({self.expr(like)})"
        return f"torch.full_like({self.expr(like)}, {self.expr(c)})"

    def fn_where(self, c: Expr, a: Expr, b: Expr) -> tuple[str, int]:
        if a.fn == "const" and b.fn == "const":  # two numbers would make a float32 result
            left = f"torch.tensor({self.expr(a)}, dtype=torch.float64)"
            return self.call("torch.where", c, extra=f"{left}, {self.expr(b)}"), ATOM
        return self.call("torch.where", c, a, b), ATOM

    def axis(self, axis: int | None) -> str:
        return "" if axis is None else f"dim={axis}"

    def fn_amax(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.reduce("amax", a, axis)

    def fn_amin(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        return self.reduce("amin", a, axis)

    def fn_transpose(self, a: Expr) -> tuple[str, int]:
        return self.call(self.helper("_transpose"), a), ATOM

    def fn_reshape_as(self, g: Expr, a: Expr) -> tuple[str, int]:
        return self.call("torch.reshape", g, extra=f"{self.at(a, ATOM)}.shape"), ATOM

    def fn_getitem(self, a: Expr, index: tuple[Any, ...]) -> tuple[str, int]:
        _no_backward_slices(index)
        return super().fn_getitem(a, index)

    def fn_spread(self, g: Expr, a: Expr, axis: int | None = None) -> tuple[str, int]:
        ones = self.call("torch.ones_like", a)
        if axis is None:
            return f"{self.at(g, PRODUCT)} * {ones}", PRODUCT
        return f"torch.unsqueeze({self.expr(g)}, {axis}) * {ones}", PRODUCT

    def fn_size(self, a: Expr, axis: int | None = None) -> tuple[str, int]:
        if axis is None:
            return f"{self.at(a, ATOM)}.numel()", ATOM
        return f"{self.at(a, ATOM)}.shape[{axis}]", ATOM

    def fn_scatter(self, g: Expr, a: Expr, index: tuple[Any, ...]) -> tuple[str, int]:
        _no_backward_slices(index)
        return self.call(self.helper("_scatter"), g, a, extra=_index_tuple(index)), ATOM


def _no_backward_slices(index: tuple[Any, ...]) -> None:
    if any(isinstance(i, tuple) and i[3] is not None and i[3] < 0 for i in index):
        raise InputError(
            "torch cannot slice with a negative step; the numpy and jax targets can",
            hint="or write the elements out, e.g. x[2], x[1], x[0]",
        )


def _index_tuple(index: tuple[Any, ...]) -> str:
    parts = [
        f"slice({', '.join('None' if v is None else str(v) for v in i[1:])})"
        if isinstance(i, tuple)
        else str(i)
        for i in index
    ]
    return f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"


class JaxPrinter(NumpyPrinter):
    target = "jax"
    lib = "jnp"

    def imports(self) -> str:
        return "import jax.numpy as jnp"

    def copy(self, text: str) -> str:
        return text  # jax's arrays never change: += makes a new one

    def convert(self, param: str) -> str | None:
        # float: jax's default floating type (float64 once jax_enable_x64 is set)
        return f"{param} = jnp.asarray({param}, dtype=float)"

    def array(self, value: np.ndarray) -> str:
        return f"jnp.array({_nested(value)}, dtype=float)"

    def fn_scatter(self, g: Expr, a: Expr, index: tuple[Any, ...]) -> tuple[str, int]:
        zeros = self.call("jnp.zeros_like", a)
        return f"{zeros}.at[{index_text(index)}].set({self.expr(g)})", ATOM


class CPrinter(Printer):
    """C99 with <math.h>: scalars only; the gradient is written to an array argument."""

    target = "c"
    lib = ""
    comment = "//"

    def name_of(self, fn: str) -> str:
        return fn

    def number(self, x: float) -> str:
        text = repr(x)
        return text if any(ch in text for ch in ".en") else text + ".0"

    def nan(self) -> str:
        return "NAN"

    def inf(self) -> str:
        return "INFINITY"

    def fn_power(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.call("pow", a, b), ATOM

    def fn_absolute(self, a: Expr) -> tuple[str, int]:
        return self.call("fabs", a), ATOM

    def fn_sign(self, a: Expr) -> tuple[str, int]:
        x = self.at(a, COMPARE + 1)
        return f"(double)(({x} > 0) - ({x} < 0))", UNARY

    def fn_isnan(self, a: Expr) -> tuple[str, int]:
        return self.call("isnan", a), ATOM

    def fn_logaddexp(self, a: Expr, b: Expr) -> tuple[str, int]:
        x, y = self.expr(a), self.expr(b)
        if a.fn == "const" and a.value == 0:
            x, y = y, x
        if (b.fn == "const" and b.value == 0) or (a.fn == "const" and a.value == 0):
            return f"fmax({x}, 0.0) + log1p(exp(-fabs({x})))", SUM
        return f"fmax({x}, {y}) + log1p(exp(-fabs({x} - {y})))", SUM

    def fn_where(self, c: Expr, a: Expr, b: Expr) -> tuple[str, int]:
        return f"{self.at(c, OR)} ? {self.at(a, OR)} : {self.at(b, TERNARY)}", TERNARY

    def fn_or(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.infix(a, "||", b, OR)

    def fn_and(self, a: Expr, b: Expr) -> tuple[str, int]:
        return self.infix(a, "&&", b, AND)

    def array(self, value: np.ndarray) -> str:
        raise InputError("the c target works on numbers, not arrays")

    def statement(self, s: Stmt, indent: str) -> list[str]:
        value = self.expr(s.expr)
        if s.accumulate:
            line = f"{indent}{s.target} += {value};"
        elif s.target in self.declared:
            line = f"{indent}{s.target} = {value};"
        else:
            self.declared.add(s.target)
            line = f"{indent}double {s.target} = {value};"
        return self.with_comment(line, self.note(s), indent)

    def module(self, code: Code) -> str:
        n = len(code.wrt)
        first = f"{_what(code)}, generated by backprop-cli (backprop codegen --target c): "
        first += "C99 with <math.h>; link with -lm."
        lines = ["/*", *(f" * {t}" for t in textwrap.wrap(first, LINE - 3)), " *"]
        for proto, meaning in self.prototypes(code):
            lines.append(f" *   {proto};")
            lines += [f" *   {t}" for m in meaning for t in textwrap.wrap(m, LINE - 5)]
            lines.append(" *")
        lines[-1] = " */"
        lines += ["#include <math.h>", ""]
        public = self.prototypes(code)[-1][0]
        if code.mode == "hessian":
            lines += self.body(code, "static " + self.prototypes(code)[0][0])
            lines += ["", public, "{"]
            self.names = Namer(_names(code) | reserved(self.target))
            self.taken = self.names.taken  # one set: unique() and fresh() never clash
            value = self.unique("value")
            for j in range(n):
                unit = ", ".join("1.0" if k == j else "0.0" for k in range(n))
                args = ", ".join([*code.params, unit, "grad", f"hess + {j * n}"])
                call = f"{_hvp(code)}({args});"
                lines.append(f"    double {value} = {call}" if j == 0 else f"    {call}")
            if not n:
                args = ", ".join([*code.params, "grad", "hess"])
                lines.append(f"    double {value} = {_hvp(code)}({args});")
            lines += [f"    return {value};", "}"]
        else:
            lines += self.body(code, public)
        return "\n".join(lines) + "\n"

    def prototypes(self, code: Code) -> list[tuple[str, list[str]]]:
        n = len(code.wrt)
        args = [f"double {p}" for p in code.params]
        targs = [f"double {t}" for t in code.tangent_params]
        out = code.output
        grads = ", ".join(f"grad[{k}] = d{out}/d{v}" for k, v in enumerate(code.wrt))
        if code.mode == "forward":
            proto = f"double {code.name}({', '.join(args + targs + ['double *t_out'])})"
            return [(proto, [f"returns {out}; writes its derivative along the direction "
                     "(" + ", ".join(code.tangent_params) + ") to *t_out."])]  # fmt: skip
        if code.mode == "hessian":
            hvp = f"double {_hvp(code)}({', '.join(args + targs + [f'double grad[{max(n, 1)}]', f'double hvp[{max(n, 1)}]'])})"  # noqa: E501
            public = f"double {code.name}({', '.join([*args, f'double grad[{max(n, 1)}]', f'double hess[{max(n * n, 1)}]'])})"  # noqa: E501
            return [
                (
                    hvp,
                    [
                        "returns " + out + "; writes its gradient to grad and the Hessian "
                        "times the direction to hvp."
                    ],
                ),
                (
                    public,
                    [
                        f"returns {out}; writes {grads or 'no gradient'} and the Hessian "
                        f"to hess, row by row (hess[{n}*i + j] = d2{out}/dvi dvj)."
                    ],
                ),
            ]
        proto = f"double {code.name}({', '.join([*args, f'double grad[{max(n, 1)}]'])})"
        return [(proto, [f"returns {out} and writes {grads or 'no gradient'}."])]

    def body(self, code: Code, proto: str) -> list[str]:
        self.declared: set[str] = set()
        lines = [proto, "{"]
        for item in code.body:
            if isinstance(item, str):
                lines.append(f"    // {item}")
            else:
                lines += self.statement(item, "    ")
        value = self.expr(code.value)
        if code.mode == "forward":
            lines.append(f"    *t_out = {self.expr(code.grads[0])};")
        else:
            lines += [f"    grad[{k}] = {self.expr(g)};" for k, g in enumerate(code.grads)]
            if code.mode == "hessian":
                lines += [f"    hvp[{k}] = {self.expr(h)};" for k, h in enumerate(code.hvp)]
        for p in code.params + code.tangent_params:
            if not any(isinstance(s, Stmt) and _mentions(s.expr, p) for s in code.body) and not (
                code.value.fn == "name" and code.value.value == p
            ):
                lines.append(f"    (void){p};")
        lines += [f"    return {value};", "}"]
        return lines


def _mentions(e: Expr, identifier: str) -> bool:
    return any(x.fn == "name" and x.value == identifier for x in walk(e))


PRINTERS: dict[str, type[Printer]] = {
    "python": Printer, "numpy": NumpyPrinter, "torch": TorchPrinter, "jax": JaxPrinter,
    "c": CPrinter,
}  # fmt: skip


def source(code: Code, target: str) -> str:
    """The generated module (or C file) for `code`."""
    if target not in PRINTERS:
        raise InputError(f"unknown target {target!r}: one of {', '.join(TARGETS)}")
    return PRINTERS[target]().module(code)


_NUMPY_HELPERS = {
    "_unbroadcast": '''\
def _unbroadcast(g, like):
    """g summed over the axes broadcasting added or stretched, to the shape of like."""
    shape = np.shape(like)
    while np.ndim(g) > len(shape):
        g = np.sum(g, axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and np.shape(g)[axis] != 1:
            g = np.sum(g, axis=axis, keepdims=True)
    return g
''',
    "_share": '''\
def _share(g, a, out, axis=None):
    """The gradient of max or min: g shared evenly by the elements of a that attain out."""
    if axis is not None:
        g, out = np.expand_dims(g, axis), np.expand_dims(out, axis)
    winners = a == out
    return g * winners / np.sum(winners, axis=axis, keepdims=True)
''',
    "_share_tangent": '''\
def _share_tangent(t, a, out, axis=None):
    """The tangent of max or min: the mean tangent of the elements that attain it."""
    winners = a == (out if axis is None else np.expand_dims(out, axis))
    return np.sum(t * winners, axis=axis) / np.sum(winners, axis=axis)
''',
    "_matmul_grad_a": '''\
def _matmul_grad_a(g, a, b):
    """d/da of a @ b times g: g @ b.T for matrices, vectors taken as rows or columns."""
    if np.ndim(b) == 1:
        return np.outer(g, b) if np.ndim(a) == 2 else g * b
    return g @ b.T if np.ndim(a) == 2 else b @ g
''',
    "_matmul_grad_b": '''\
def _matmul_grad_b(g, a, b):
    """d/db of a @ b times g: a.T @ g for matrices, vectors taken as rows or columns."""
    if np.ndim(a) == 1:
        return np.outer(a, g) if np.ndim(b) == 2 else g * a
    return a.T @ g if np.ndim(b) == 2 else g @ a
''',
    "_scatter": '''\
def _scatter(g, like, index):
    """g at the indexed elements of an array shaped like `like`, 0 elsewhere."""
    out = np.zeros_like(like)
    out[index] = g
    return out
''',
}


def _port(text: str, lib: str) -> str:
    return text.replace("np.", f"{lib}.")


HELPERS: dict[str, dict[str, str]] = {
    "numpy": _NUMPY_HELPERS,
    "jax": {k: _port(v, "jnp") for k, v in _NUMPY_HELPERS.items()},
    "torch": {
        "_unbroadcast": '''\
def _unbroadcast(g, like):
    """g summed over the axes broadcasting added or stretched, to the shape of like."""
    shape = like.shape
    while g.dim() > len(shape):
        g = g.sum(dim=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(dim=axis, keepdim=True)
    return g
''',
        "_share": '''\
def _share(g, a, out, dim=None):
    """The gradient of max or min: g shared evenly by the elements of a that attain out."""
    if dim is None:
        winners = a == out
        return g * winners / winners.sum()
    winners = a == out.unsqueeze(dim)
    return g.unsqueeze(dim) * winners / winners.sum(dim=dim, keepdim=True)
''',
        "_share_tangent": '''\
def _share_tangent(t, a, out, dim=None):
    """The tangent of max or min: the mean tangent of the elements that attain it."""
    if dim is None:
        winners = a == out
        return (t * winners).sum() / winners.sum()
    winners = a == out.unsqueeze(dim)
    return (t * winners).sum(dim=dim) / winners.sum(dim=dim)
''',
        "_matmul_grad_a": '''\
def _matmul_grad_a(g, a, b):
    """d/da of a @ b times g: g @ b.T for matrices, vectors taken as rows or columns."""
    if b.dim() == 1:
        return torch.outer(g, b) if a.dim() == 2 else g * b
    return g @ b.mT if a.dim() == 2 else b @ g
''',
        "_matmul_grad_b": '''\
def _matmul_grad_b(g, a, b):
    """d/db of a @ b times g: a.T @ g for matrices, vectors taken as rows or columns."""
    if a.dim() == 1:
        return torch.outer(a, g) if b.dim() == 2 else g * a
    return a.mT @ g if b.dim() == 2 else g @ a
''',
        "_scatter": '''\
def _scatter(g, like, index):
    """g at the indexed elements of a tensor shaped like `like`, 0 elsewhere."""
    out = torch.zeros_like(like)
    out[index] = g
    return out
''',
        "_transpose": '''\
def _transpose(a):
    """A matrix transposed; a vector as it is."""
    return a.mT if a.dim() == 2 else a
''',
    },
}
