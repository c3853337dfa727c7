"""Text -> Graph: our own whitelist tokenizer and an iterative operator-precedence parser.

Nothing the user typed is ever handed to eval, exec or SymPy's parsers. Every construct
outside the language is refused with a message that names it and the column; input size,
nesting depth and node count are bounded, and no step recurses on the input's structure.
"""

from __future__ import annotations

import difflib
import keyword
import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import ops, shapes
from .errors import BackpropError, LimitError, ParseError
from .graph import Graph, Node


@dataclass(frozen=True)
class Limits:
    max_length: int = 100_000  # characters of source (--max-length raises it)
    max_depth: int = 256  # nested parentheses and calls
    max_nodes: int = 1_000_000
    max_literal: int = 100  # characters in one number or name
    max_elements: int = 10_000_000  # elements of one array literal or constructor
    allow_nonfinite: bool = False  # values may be nan, inf and -inf (--allow-nonfinite)


DEFAULT_LIMITS = Limits()

# ---- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\f]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<nl>\r\n|\r|\n)
  | (?P<num>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*=|\+=|-=|\*=|/=|\*\*|[-+*/^(),;=@\[\]:]|\.(?=[A-Za-z_]))
    """,
    re.VERBOSE | re.ASCII,
)

_ATTRIBUTE = re.compile(r"[A-Za-z0-9_]*", re.ASCII)
_AUGMENTED = {"+=": "add", "-=": "sub", "*=": "mul", "/=": "div", "**=": "pow"}

# Constructs outside the language, named so the error says what was refused.
_REFUSED_TEXT = [
    ("//", "floor division '//' is not supported"),
    ("==", "comparisons are not supported"),
    ("!=", "comparisons are not supported"),
    ("<=", "comparisons are not supported"),
    (">=", "comparisons are not supported"),
    ("<<", "bitwise shifts are not supported"),
    (">>", "bitwise shifts are not supported"),
    ("%", "the modulo operator '%' is not supported"),
    ("<", "comparisons are not supported"),
    (">", "comparisons are not supported"),
    ("!", "'!' is not supported (no factorials or negation; use -x for minus)"),
    ('"', "strings are not part of the expression language"),
    ("'", "strings are not part of the expression language"),
    ("{", "sets and dicts ('{ }') are not supported"),
    ("}", "sets and dicts ('{ }') are not supported"),
    ("&", "bitwise operators are not supported"),
    ("|", "bitwise operators are not supported"),
    ("~", "bitwise operators are not supported"),
    (".", "'.' is not supported here (numbers are written 1.5, the transpose x.T)"),
    ("\\", "backslashes are not supported (statements end at a newline or ';')"),
]

_KEYWORD_CONSTRUCTS = {
    "lambda": "lambda expressions",
    "import": "import statements",
    "from": "import statements",
    "and": "boolean operators",
    "or": "boolean operators",
    "not": "boolean operators",
    "if": "conditionals",
    "else": "conditionals",
    "elif": "conditionals",
    "for": "loops and comprehensions",
    "while": "loops",
    "in": "membership tests",
    "is": "identity tests",
    "def": "function definitions",
    "class": "class definitions",
    "True": "Python booleans",
    "False": "Python booleans",
    "None": "None",
}

# Characters people paste from documents, with what to type instead.
_LOOKALIKES = {
    "−": "-", "–": "-", "—": "-", "×": "*", "·": "*", "÷": "/",
    "²": "**2", "³": "**3", "π": "pi", "√": "sqrt(...)",
}  # fmt: skip


class Token(NamedTuple):  # a tuple: a program of 10⁵ nodes has some 3·10⁵ of them
    kind: str  # "num", "name", "op", "nl", "eof"
    text: str
    start: int
    end: int


_OUTSIDE = re.compile(r"[^\t\n\r\f\x20-\x7e]")  # anything but printable ASCII and spacing


def _check_characters(source: str, what: str) -> None:
    found = _OUTSIDE.search(source)
    if found is not None:
        offset, ch = found.start(), found.group()
        code = f"U+{ord(ch):04X}"
        name = unicodedata.name(ch, "")
        if ch == "\0":
            message = "NUL character (U+0000) is not allowed"
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            kind = "invisible" if unicodedata.category(ch) == "Cf" else "control"
            message = f"{kind} character {code} {name}".rstrip() + " is not allowed"
        else:
            message = f"non-ASCII character {ch!r} ({code} {name}) is not allowed".replace(
                " )", ")"
            )
        hint = None
        if ch in _LOOKALIKES:
            hint = f"type {_LOOKALIKES[ch]!r} instead of {ch!r}"
        elif unicodedata.category(ch).startswith(("L", "N")):
            hint = "names and numbers must be plain ASCII"
        raise ParseError(message, source=source, offset=offset, what=what, hint=hint)


def _refused(source: str, offset: int, what: str) -> ParseError:
    for text, message in _REFUSED_TEXT:
        if source.startswith(text, offset):
            return ParseError(message, source=source, offset=offset, what=what)
    ch = source[offset]
    return ParseError(f"unexpected character {ch!r}", source=source, offset=offset, what=what)


def _check_number(source: str, m: re.Match[str], limits: Limits, what: str) -> None:
    text, end = m.group(), m.end()
    nxt = source[end : end + 1]
    if len(text) > limits.max_literal:
        raise ParseError(
            f"number literal longer than {limits.max_literal} characters",
            source=source,
            offset=m.start(),
            what=what,
        )
    if text == "0" and nxt in ("x", "X", "o", "O", "b", "B"):
        raise ParseError(
            "hexadecimal, octal and binary literals are not supported",
            source=source,
            offset=m.start(),
            what=what,
        )
    if nxt in ("j", "J") and not re.match(r"[A-Za-z0-9_]", source[end + 1 : end + 2], re.ASCII):
        raise ParseError(
            "complex literals are not supported", source=source, offset=m.start(), what=what
        )
    if nxt == "_":
        raise ParseError(
            "digit separators '_' are not supported in numbers",
            source=source,
            offset=end,
            what=what,
            hint="write the number without '_'",
        )
    if nxt in ("e", "E"):
        raise ParseError(
            f"malformed number {text + nxt!r}: the exponent needs digits",
            source=source,
            offset=m.start(),
            what=what,
        )
    if nxt == ".":
        raise ParseError(f"malformed number {text}.", source=source, offset=end, what=what)
    if re.match(r"[A-Za-z_]", nxt, re.ASCII):
        raise ParseError(
            f"missing operator between {text!r} and {nxt!r}",
            source=source,
            offset=end,
            what=what,
            hint=f"implicit multiplication is not supported: write {text}*{nxt}",
        )


def _check_name(source: str, m: re.Match[str], limits: Limits, what: str) -> None:
    name = m.group()
    message = None
    if len(name) > limits.max_literal:
        message = f"name longer than {limits.max_literal} characters"
    elif name in _KEYWORD_CONSTRUCTS or keyword.iskeyword(name):
        construct = _KEYWORD_CONSTRUCTS.get(name, "Python statements")
        message = f"'{name}' is a Python keyword: {construct} are not part of the language"
    elif name.startswith("_"):
        message = f"names may not start with '_' ({name!r})"
    if message:
        raise ParseError(message, source=source, offset=m.start(), what=what)


_SPACING = frozenset(("ws", "comment"))
# What may follow a number without a closer look (see _check_number); anything else, such as
# a letter, '_' or '.', is looked at.
_AFTER_NUMBER = frozenset(" \t\f\n)+-*/^,;=@]:#")


def tokenize(
    source: str, *, limits: Limits = DEFAULT_LIMITS, what: str = "expression"
) -> list[Token]:
    """Split source into tokens; newlines inside parentheses are dropped, as in Python."""
    _check_characters(source, what)
    tokens: list[Token] = []
    append = tokens.append
    names: set[str] = set()  # names already checked: a long program repeats a few
    depth = 0
    pos = 0
    n = len(source)
    match = _TOKEN.match
    while pos < n:
        m = match(source, pos)
        if m is None:
            raise _refused(source, pos, what)
        kind = m.lastgroup
        end = m.end()
        if kind in _SPACING:
            pos = end
            continue
        assert kind is not None
        text = m.group()
        if kind == "name":
            if text not in names:
                _check_name(source, m, limits, what)
                names.add(text)
        elif kind == "num":
            if len(text) > limits.max_literal or source[end : end + 1] not in _AFTER_NUMBER:
                _check_number(source, m, limits, what)
        elif kind == "op":
            if text in ("/", "=") and source.startswith(("//", "=="), pos):
                raise _refused(source, pos, what)
            if text == ".":
                attr = _ATTRIBUTE.match(source, end, end + 200).group()  # type: ignore[union-attr]
                if attr not in ops.POSTFIX:
                    raise ParseError(
                        f"attribute access ('.{attr}') is not supported; the one attribute "
                        "is .T (the transpose)",
                        source=source,
                        offset=pos,
                        what=what,
                    )
            elif text in ("(", "["):
                depth += 1
            elif text in (")", "]") and depth > 0:
                depth -= 1
        elif depth:  # a newline inside parentheses
            pos = end
            continue
        append(Token(kind, text, pos, end))
        pos = end
    append(Token("eof", "", n, n))
    return tokens


# ---- the parser ---------------------------------------------------------------------------

# Functions as other notations and libraries spell them, and the name they have here; one
# is suggested only where `backprop ops` has it (lg is log10 once log10 exists).
_ELSEWHERE = {
    "ln": "log", "tg": "tan", "lg": "log10", "ctg": "cot", "cotan": "cot", "cosec": "csc",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2",
    "fabs": "abs", "absolute": "abs", "power": "pow", "maximum": "max", "minimum": "min",
    "amax": "max", "amin": "min", "average": "mean", "avg": "mean", "transpose": "T",
    "sqr": "square",
}  # fmt: skip
_WHY = {"ln": "log is the natural logarithm", "transpose": "T(x), or x.T"}
# Functions the language does not have, and how it writes them.
_WRITTEN = {
    "log10": "log(x)/log(10)", "log2": "log(x)/log(2)", "log1p": "log(1 + x)",
    "expm1": "exp(x) - 1", "exp2": "2**x", "square": "x**2", "cot": "1/tan(x)",
    "sec": "1/cos(x)", "csc": "1/sin(x)", "sinh": "(exp(x) - exp(-x))/2",
    "cosh": "(exp(x) + exp(-x))/2", "softmax": "exp(x)/sum(exp(x))",
    "norm": "sqrt(sum(x**2))", "matmul": "x @ y",
}  # fmt: skip
_CALLS = {"matmul": "matmul(x, y)"}  # the call _WRITTEN rewrites, where it is not f(x)
_INVERSE_TRIG = {"asin", "acos", "atan", "atan2"}

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "@": 2, "**": 4, "^": 4}
_RIGHT_ASSOC = {"**", "^"}
_UNARY_PRECEDENCE = 3  # binds tighter than * and looser than **, as in Python: -x**2 = -(x**2)


@dataclass
class _Operand:
    node: int
    start: int
    end: int


@dataclass
class _Frame:
    kind: str  # "binary", "unary", "paren", "call"
    token: Token
    precedence: int = 0
    fn: str = ""
    operands_at: int = 0  # operand-stack height when a call frame opened
    keywords: dict[str, int] = field(default_factory=dict)  # axis=0
    ints: list[int] = field(default_factory=list)  # reshape(a, 2, 3): the 2, 3


@dataclass
class Program:
    graph: Graph
    warnings: list[str] = field(default_factory=list)
    statements: int = 1
    origin: str = "expression"  # where the source came from: "expression", "stdin" or a path
    last_start: int = 0  # where the last statement (the output) begins in graph.source
    last_assigns: bool = False  # whether that statement is an assignment


def _function_hint(name: str) -> str:
    """What an unknown function most likely means, as a hint: ours under another name (ln:
    log), how the language writes it (cot: 1/tan(x)), or the function it is a slip of."""
    from .suggest import closest

    known = sorted([*ops.FUNCTIONS, *ops.CONSTRUCTORS])
    lower = name.lower()
    meant = _ELSEWHERE.get(lower, lower)
    if meant in known:
        why = f" ({_WHY[lower]})" if lower in _WHY else ""
        return f"did you mean '{meant}'?{why}"
    if meant in _WRITTEN:
        call = _CALLS.get(meant, f"{meant}(x)")
        said = f"{call} is" if meant == lower else f"{name} is {meant}, and {call} is"
        return f"{said} written {_WRITTEN[meant]}"
    if meant in _INVERSE_TRIG:
        return "the language has no inverse trigonometric functions (`backprop ops` lists its own)"
    slip = closest(name, known)
    close = [slip] if slip is not None else difflib.get_close_matches(name, known, 3, 0.7)
    if close:
        return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return f"`backprop ops` lists the functions; to multiply, write {name}*(...)"


class _Parser:
    def __init__(
        self, source: str, limits: Limits, what: str, constants: dict[str, float] | None = None
    ) -> None:
        self.source = source
        self.limits = limits
        self.constants = ops.CONSTANTS if constants is None else constants
        self.what = what
        self.tokens = tokenize(source, limits=limits, what=what)
        self.pos = 0
        self.nodes: list[Node] = []
        self.bound: dict[str, int] = {}  # names assigned so far -> node id
        self.variables: dict[str, int] = {}  # free names -> input node id
        self.warnings: list[str] = []

    # -- helpers --
    def error(self, message: str, offset: int, hint: str | None = None) -> ParseError:
        return ParseError(message, source=self.source, offset=offset, what=self.what, hint=hint)

    def peek(self, ahead: int = 0) -> Token:
        try:
            return self.tokens[self.pos + ahead]
        except IndexError:  # past the end: the end
            return self.tokens[-1]

    def add(self, op: str, inputs: tuple[int, ...], start: int, end: int, **kw: object) -> int:
        if len(self.nodes) >= self.limits.max_nodes:
            raise self.error(f"more than {self.limits.max_nodes} graph nodes", start)
        node_id = len(self.nodes)
        self.nodes.append(Node(node_id, op, inputs, span=(start, end), **kw))  # type: ignore[arg-type]
        return node_id

    def describe(self, tok: Token) -> str:
        return {"eof": "end of input", "nl": "end of line"}.get(tok.kind, repr(tok.text))

    # -- names --
    def resolve(self, tok: Token) -> int:
        name = tok.text
        if name in self.bound:
            return self.bound[name]
        if ops.is_function(name):
            raise self.error(
                f"'{name}' is a function: call it as {name}(...)", tok.start, hint=None
            )
        if name in self.constants:
            return self.add("const", (), tok.start, tok.end, value=self.constants[name])
        if name not in self.variables:
            self.variables[name] = self.add("input", (), tok.start, tok.end, name=name)
        return self.variables[name]

    def unknown_function(self, tok: Token) -> ParseError:
        """The error for `name(` when name is no function: a definition (f(x) = …), a name
        of another notation (ln), a slip (sni), or a product written without '*'."""
        name = tok.text
        definition = self.definition_after(tok)
        if definition is not None:
            return self.error(
                f"'{name}(…) = …' defines a function: function definitions are not part of "
                "the language",
                tok.start,
                hint=f"name the expression instead: {name} = {definition} (its free names "
                "are the variables)",
            )
        if name in self.bound or name in self.variables or name in self.constants:
            return self.error(
                f"'{name}' is not a function",
                tok.start,
                hint=f"to multiply, write {name}*(...)",
            )
        return self.error(f"unknown function '{name}'", tok.start, hint=_function_hint(name))

    def definition_after(self, tok: Token) -> str | None:
        """For `name(...) = rhs` (self.pos at its '('): the text of rhs, else None."""
        depth, i = 0, self.pos
        while i < len(self.tokens):
            text = self.tokens[i].text
            if self.tokens[i].kind in ("nl", "eof") or text == ";":
                return None
            depth += {"(": 1, ")": -1}.get(text, 0) if self.tokens[i].kind == "op" else 0
            i += 1
            if depth == 0:
                break
        after = self.tokens[min(i, len(self.tokens) - 1)]
        if after.text != "=":
            return None
        end = next(
            (t.start for t in self.tokens[i + 1 :] if t.kind in ("nl", "eof") or t.text == ";"),
            len(self.source),
        )
        rhs = " ".join(self.source[after.end : end].split()) or "…"
        return rhs if len(rhs) <= 40 else rhs[:39] + "…"

    # -- statements --
    def program(self) -> Program:
        if not self.source.strip():
            raise self.error("empty expression", 0)
        last: int | None = None
        last_start = 0
        statements: list[tuple[int, bool]] = []  # (offset, is_assignment)
        while True:
            tok = self.peek()
            if tok.kind == "nl" or tok.text == ";":
                self.pos += 1
                continue
            if tok.kind == "eof":
                break
            node, assigned = self.statement()
            statements.append((tok.start, assigned))
            last, last_start = node, tok.start
        if last is None:
            raise self.error("nothing to compute: the input has no statement", last_start)
        for offset, assigned in statements[:-1]:
            if not assigned:
                line, col = _line_col(self.source, offset)
                self.warnings.append(
                    f"the statement at line {line}, column {col} has no effect: "
                    "only the last statement is the output"
                )
        graph = Graph(
            tuple(self.nodes),
            last,
            self.source,
            dict(sorted(self.variables.items())),
        )
        return Program(
            graph,
            self.warnings,
            len(statements),
            self.what,
            last_start,
            statements[-1][1],
        )

    def statement(self) -> tuple[int, bool]:
        tok, nxt = self.peek(), self.peek(1)
        if tok.kind == "name" and (nxt.text == "=" or nxt.text in _AUGMENTED):
            if ops.is_function(tok.text):
                raise self.error(f"cannot assign to the function name '{tok.text}'", tok.start)
            self.pos += 2
            before = len(self.nodes)
            rhs = self.expression()
            if nxt.text in _AUGMENTED:
                current = self.resolve(tok)
                node = self.add(
                    _AUGMENTED[nxt.text], (current, rhs.node), tok.start, rhs.end, name=tok.text
                )
            elif rhs.node >= before and self.nodes[rhs.node].op != "input":
                # The statement built this node: it takes the name.
                node = rhs.node
                built = self.nodes[node]
                self.nodes[node] = Node(
                    built.id, built.op, built.inputs, tok.text, built.value, built.span, built.attrs
                )
            else:
                # `b = a` names an existing node: a copy node carries the new name.
                node = self.add("assign", (rhs.node,), tok.start, rhs.end, name=tok.text)
            self.bound[tok.text] = node
            return node, True
        return self.expression().node, False

    # -- expressions: shunting-yard with explicit stacks, so nothing recurses --
    def expression(self) -> _Operand:
        operands: list[_Operand] = []
        frames: list[_Frame] = []
        expect_operand = True
        depth = 0
        while True:
            tok = self.peek()
            text = tok.text
            if (
                expect_operand
                and frames
                and frames[-1].kind == "call"
                and self.attribute_arg(frames[-1], len(operands))
            ):
                expect_operand = False
                continue
            if tok.kind in ("num", "name"):
                if not expect_operand:
                    prev = self.tokens[self.pos - 1]
                    raise self.error(
                        f"missing operator between {prev.text!r} and {text!r}", tok.start
                    )
                self.pos += 1
                if tok.kind == "num":
                    operands.append(_Operand(self.number(tok), tok.start, tok.end))
                elif self.peek().text == "(" and tok.text in ops.CONSTRUCTORS:
                    operands.append(self.constructor(tok))
                elif self.peek().text == "(":
                    if tok.text not in ops.FUNCTIONS:
                        raise self.unknown_function(tok)
                    depth = self.enter(depth, tok)
                    self.pos += 1
                    frames.append(_Frame("call", tok, fn=text, operands_at=len(operands)))
                    continue
                else:
                    operands.append(_Operand(self.resolve(tok), tok.start, tok.end))
                expect_operand = False
            elif text == "(" and tok.kind == "op":
                if not expect_operand:
                    raise self.error(
                        "missing operator before '('",
                        tok.start,
                        hint="implicit multiplication is not supported: write a*(b)",
                    )
                depth = self.enter(depth, tok)
                self.pos += 1
                frames.append(_Frame("paren", tok))
            elif text == "[" and tok.kind == "op":
                if expect_operand:
                    operands.append(self.array_literal(depth))
                else:
                    operands[-1] = self.subscript(operands[-1], depth)
                expect_operand = False
            elif text == "." and tok.kind == "op":
                if expect_operand:
                    raise self.expected_operand(tok)
                operands[-1] = self.attribute(operands[-1])
                expect_operand = False
            elif text in ("]", ":") and tok.kind == "op":
                if text == ":":
                    raise self.error("':' only appears in slices such as x[1:3]", tok.start)
                raise self.error("unmatched ']'", tok.start)
            elif text in ("+", "-") and expect_operand:
                self.pos += 1
                frames.append(_Frame("unary", tok, _UNARY_PRECEDENCE))
            elif text in _PRECEDENCE and tok.kind == "op":
                if expect_operand:
                    raise self.expected_operand(tok)
                prec = _PRECEDENCE[text]
                while frames and frames[-1].kind in ("binary", "unary"):
                    top = frames[-1].precedence
                    if top > prec or (top == prec and text not in _RIGHT_ASSOC):
                        self.reduce(frames.pop(), operands)
                    else:
                        break
                self.pos += 1
                frames.append(_Frame("binary", tok, prec))
                expect_operand = True
            elif text in (")", ","):
                call_open = frames and frames[-1].kind == "call"
                if expect_operand and not (text == ")" and call_open and self.after_open()):
                    raise self.expected_operand(tok)
                while frames and frames[-1].kind in ("binary", "unary"):
                    self.reduce(frames.pop(), operands)
                if not frames:
                    if text == ",":
                        raise self.error(
                            "',' outside a function call: tuples are not supported", tok.start
                        )
                    raise self.error("unmatched ')'", tok.start)
                frame = frames[-1]
                self.pos += 1
                if text == ",":
                    if frame.kind != "call":
                        raise self.error(
                            "',' outside a function call: tuples are not supported", tok.start
                        )
                    expect_operand = True
                    continue
                frames.pop()
                depth -= 1
                if frame.kind == "paren":
                    inner = operands[-1]
                    operands[-1] = _Operand(inner.node, frame.token.start, tok.end)
                else:
                    operands.append(self.call(frame, operands, tok))
                expect_operand = False
            else:
                # Only statement ends are left: a newline, ';', the end, '=' or 'op='.
                if text == "=":
                    raise self.error(
                        "'=' can only follow a name at the start of a statement",
                        tok.start,
                        hint="comparisons are not supported; an assignment is `name = expr`",
                    )
                if text in _AUGMENTED:
                    raise self.error(
                        f"'{text}' can only follow a name at the start of a statement", tok.start
                    )
                if expect_operand:
                    raise self.expected_operand(tok)
                for frame in reversed(frames):
                    if frame.kind in ("paren", "call"):
                        raise self.error(
                            f"'(' is never closed (the {self.describe(tok)} comes first)",
                            frame.token.start if frame.kind == "paren" else frame.token.end,
                        )
                while frames:
                    self.reduce(frames.pop(), operands)
                assert len(operands) == 1
                return operands[0]

    def after_open(self) -> bool:
        return self.tokens[self.pos - 1].text == "("

    def enter(self, depth: int, tok: Token) -> int:
        if depth + 1 > self.limits.max_depth:
            raise self.error(
                f"nesting deeper than {self.limits.max_depth} levels of parentheses", tok.start
            )
        return depth + 1

    def expected_operand(self, tok: Token) -> ParseError:
        prev = self.tokens[self.pos - 1] if self.pos > 0 else None
        after = f" after {prev.text!r}" if prev is not None and prev.kind == "op" else ""
        return self.error(
            f"unexpected {self.describe(tok)}{after}: expected a number, a name, '(' or a sign",
            tok.start,
        )

    def number(self, tok: Token) -> int:
        value = float(tok.text)
        if value == float("inf"):
            raise self.error(f"number {tok.text} is too large for float64", tok.start)
        if value == 0.0 and any(c in "123456789" for c in tok.text.split("e")[0].split("E")[0]):
            self.warnings.append(f"the number {tok.text} is too small for float64 and becomes 0")
        elif 0.0 < value < 2.2250738585072014e-308:
            self.warnings.append(
                f"the number {tok.text} is subnormal in float64 and keeps only a few digits "
                f"({value!r})"
            )
        return self.add("const", (), tok.start, tok.end, value=value)

    def reduce(self, frame: _Frame, operands: list[_Operand]) -> None:
        tok = frame.token
        if frame.kind == "unary":
            arg = operands.pop()
            node = self.add(ops.PREFIX[tok.text], (arg.node,), tok.start, arg.end)
            operands.append(_Operand(node, tok.start, arg.end))
        else:
            right, left = operands.pop(), operands.pop()
            node = self.add(ops.INFIX[tok.text], (left.node, right.node), left.start, right.end)
            operands.append(_Operand(node, left.start, right.end))

    def call(self, frame: _Frame, operands: list[_Operand], close: Token) -> _Operand:
        args = operands[frame.operands_at :]
        del operands[frame.operands_at :]
        by_arity = ops.FUNCTIONS[frame.fn]
        if len(args) not in by_arity:
            counts = sorted(by_arity)
            takes = " or ".join(str(c) for c in counts)
            plural = "" if counts == [1] else "s"
            raise self.error(
                f"{frame.fn}() takes {takes} argument{plural}, got {len(args)}",
                frame.token.start,
                hint=f"usage: {ops.OPS[by_arity[counts[0]]].syntax}",
            )
        op = ops.OPS[by_arity[len(args)]]
        attrs: dict[str, object] = {}
        for key, value in frame.keywords.items():
            if key not in op.attrs:
                raise self.error(
                    f"{frame.fn}() with {len(args)} argument{'s' if len(args) > 1 else ''} "
                    f"takes no keyword '{key}'",
                    frame.token.start,
                    hint=f"usage: {op.syntax}",
                )
            attrs[key] = value
        if "shape" in op.attrs:
            if not frame.ints:
                raise self.error(
                    f"{frame.fn}() needs the new shape after the array",
                    frame.token.start,
                    hint=f"usage: {op.syntax}",
                )
            attrs["shape"] = tuple(frame.ints)
        node = self.add(
            op.name,
            tuple(a.node for a in args),
            frame.token.start,
            close.end,
            attrs=tuple(attrs.items()),
        )
        return _Operand(node, frame.token.start, close.end)

    # -- arrays: attributes of calls, constructors, literals, subscripts, .T --
    def attribute_arg(self, frame: _Frame, height: int) -> bool:
        """A keyword (`axis=0`) or a trailing integer (`reshape(a, 2, 3)`) at this point of
        a call: read it into the frame and say so."""
        tok, nxt = self.peek(), self.peek(1)
        if tok.kind == "name" and nxt.text == "=":
            takes = {a for name in ops.FUNCTIONS[frame.fn].values() for a in ops.OPS[name].attrs}
            if tok.text not in takes - {"shape", "index"}:
                raise self.error(f"{frame.fn}() takes no keyword '{tok.text}'", tok.start)
            if tok.text in frame.keywords:
                raise self.error(f"keyword '{tok.text}' given twice", tok.start)
            self.pos += 2
            frame.keywords[tok.text] = self.integer(tok.text)
            return True
        if frame.keywords:
            raise self.error("positional argument after a keyword", tok.start)
        shaped = any("shape" in ops.OPS[name].attrs for name in ops.FUNCTIONS[frame.fn].values())
        if shaped and height > frame.operands_at:
            frame.ints.append(self.integer("dimension"))
            return True
        return False

    def integer(self, what: str) -> int:
        """A signed integer literal (an axis, an index, a dimension)."""
        tok = self.peek()
        sign = 1
        if tok.text in ("-", "+") and tok.kind == "op":
            sign = -1 if tok.text == "-" else 1
            self.pos += 1
            tok = self.peek()
        if tok.kind != "num" or not tok.text.isdigit():
            found = "a variable" if tok.kind == "name" else self.describe(tok)
            raise self.error(f"the {what} must be an integer literal, not {found}", tok.start)
        self.pos += 1
        if len(tok.text) > 18:
            raise self.error(f"the {what} {tok.text} is out of range", tok.start)
        return sign * int(tok.text)

    def constructor(self, tok: Token) -> _Operand:
        """zeros(2, 3), ones(4), arange(4), arange(1, 2, 0.25): a constant array."""
        self.pos += 1  # the '('
        args: list[float] = []
        while True:
            at = self.peek()
            if at.text == ")" and not args:
                break
            sign = 1.0
            if at.text in ("-", "+") and at.kind == "op":
                sign = -1.0 if at.text == "-" else 1.0
                self.pos += 1
                at = self.peek()
            if at.kind != "num":
                raise self.error(
                    f"the arguments of {tok.text}() must be numbers, not {self.describe(at)}",
                    at.start,
                )
            args.append(sign * float(at.text))
            self.pos += 1
            after = self.peek()
            self.pos += 1
            if after.text == ")":
                break
            if after.text != ",":
                raise self.error(f"expected ',' or ')', got {self.describe(after)}", after.start)
        close = self.tokens[self.pos - 1]
        try:
            value = ops.CONSTRUCTORS[tok.text](*args, limit=self.limits.max_elements)
        except ValueError as exc:
            raise self.error(f"{tok.text}(): {exc}", tok.start) from None
        value.flags.writeable = False
        node = self.add("const", (), tok.start, close.end, value=value)
        return _Operand(node, tok.start, close.end)

    def array_literal(self, depth: int) -> _Operand:
        """A nested-bracket literal of constants: [1, 2], [[1, 2], [3, 4]], [pi/4, -1]."""
        first = self.peek()
        lists: list[list[tuple[Any, Token]]] = []  # the lists being filled, innermost last
        opened: list[Token] = []
        elements = 0
        while True:
            tok = self.peek()
            if tok.text == "[" and tok.kind == "op":
                if len(lists) >= ops.MAX_DIMS:
                    raise self.error(f"an array has at most {ops.MAX_DIMS} dimensions", tok.start)
                if depth + len(lists) + 1 > self.limits.max_depth:
                    raise self.error(
                        f"nesting deeper than {self.limits.max_depth} levels", tok.start
                    )
                lists.append([])
                opened.append(tok)
                self.pos += 1
                continue
            if tok.text == "]":
                if not lists[-1]:
                    raise self.error("empty list: an array needs at least one element", tok.start)
                bracket = opened.pop()
                done = _stack(lists.pop(), self)
                self.pos += 1
                if not lists:
                    break
                lists[-1].append((done, bracket))
            else:
                leaf = self.literal_leaf()
                elements += int(np.size(leaf))  # type: ignore[arg-type]  # may be an array
                if elements > self.limits.max_elements:
                    raise self.error(
                        f"more than {self.limits.max_elements:,} elements in one list", tok.start
                    )
                lists[-1].append((leaf, tok))
            after = self.peek()
            if after.text == ",":
                self.pos += 1
            elif after.text != "]":
                raise self.error(
                    f"expected ',' or ']' in the list, got {self.describe(after)}", after.start
                )
        close = self.tokens[self.pos - 1]
        node = self.add("const", (), first.start, close.end, value=done)
        return _Operand(node, first.start, close.end)

    def literal_leaf(self) -> object:
        """One element of a list literal: a number, or a constant expression (pi/4)."""
        tok, nxt, third = self.peek(), self.peek(1), self.peek(2)
        if tok.kind == "num" and nxt.text in (",", "]"):
            self.pos += 1
            return self.float_of(tok, 1.0)
        if tok.text in ("-", "+") and nxt.kind == "num" and third.text in (",", "]"):
            self.pos += 2
            return self.float_of(nxt, -1.0 if tok.text == "-" else 1.0)
        start, level = self.pos, 0
        while True:
            at = self.peek()
            if at.kind in ("eof", "nl") or at.text == ";":
                break
            if level == 0 and at.text in (",", "]"):
                break
            level += at.text in ("(", "[")
            level -= at.text in (")", "]")
            self.pos += 1
        if self.pos == start:
            raise self.expected_operand(self.peek())
        return self.constant_of(start, self.pos)

    def float_of(self, tok: Token, sign: float) -> float:
        value = float(tok.text)
        if value == float("inf"):
            raise self.error(f"number {tok.text} is too large for float64", tok.start)
        return sign * value

    def constant_of(self, start: int, end: int) -> object:
        """Parse tokens[start:end] on their own as a constant expression and evaluate it."""
        from .engine import check_constants, evaluate

        sub = _Parser.__new__(_Parser)
        sub.source, sub.limits, sub.what = self.source, self.limits, self.what
        sub.constants = self.constants
        eof = self.tokens[end]
        sub.tokens = [*self.tokens[start:end], Token("eof", "", eof.start, eof.start)]
        sub.pos, sub.nodes, sub.bound, sub.variables, sub.warnings = 0, [], {}, {}, []
        operand = sub.expression()
        if sub.variables:
            name = next(iter(sub.variables))
            raise self.error(
                f"list elements must be constants, but this one uses {name}",
                self.tokens[start].start,
                hint="write the array as a value (W=[[1, 2], [3, 4]]) and use its name",
            )
        graph = Graph(tuple(sub.nodes), operand.node, self.source)
        _check_size(graph, self.what, self.limits, "one list element")
        if self.constants is ops.CONSTANTS:  # else nan and inf were asked for
            check_constants(graph, what=self.what)
        self.warnings += sub.warnings
        with np.errstate(all="ignore"):
            value = evaluate(graph, {})[operand.node]
        return float(value) if np.ndim(value) == 0 else np.asarray(value)

    def subscript(self, target: _Operand, depth: int) -> _Operand:
        """x[0], W[1, 2], x[1:3], W[:, 0], x[::-1]: integers and slices only."""
        self.enter(depth, self.peek())
        self.pos += 1
        items: list[object] = []
        while True:
            items.append(self.index_item())
            tok = self.peek()
            self.pos += 1
            if tok.text == "]":
                break
            if tok.text != ",":
                raise self.error(
                    f"expected ',' or ']' in the index, got {self.describe(tok)}", tok.start
                )
        close = self.tokens[self.pos - 1]
        node = self.add(
            ops.SUBSCRIPT, (target.node,), target.start, close.end, attrs=(("index", tuple(items)),)
        )
        return _Operand(node, target.start, close.end)

    def index_item(self) -> object:
        parts: list[int | None] = []
        while True:
            tok = self.peek()
            if tok.text in (":", ",", "]"):
                parts.append(None)
            else:
                parts.append(self.integer("index"))
            if self.peek().text != ":" or len(parts) == 3:
                break
            self.pos += 1
        if len(parts) == 1:
            if parts[0] is None:
                raise self.error("expected an integer index or a slice", self.peek().start)
            return parts[0]
        if len(parts) == 3 and parts[2] == 0:
            raise self.error("a slice step cannot be zero", self.peek().start)
        return ("slice", *parts, *([None] * (3 - len(parts))))

    def attribute(self, target: _Operand) -> _Operand:
        name = self.peek(1)  # the tokenizer let only known attributes through
        self.pos += 2
        node = self.add(ops.POSTFIX[name.text], (target.node,), target.start, name.end)
        return _Operand(node, target.start, name.end)


def _stack(items: list[tuple[Any, Token]], parser: _Parser) -> Any:
    """A finished list: its elements must all have one shape."""
    first = np.shape(items[0][0])
    for value, tok in items:
        if np.shape(value) != first:
            raise parser.error(
                f"ragged list: this element has shape {np.shape(value)}, the first {first}",
                tok.start,
            )
    array = np.array([value for value, _ in items], dtype=np.float64)
    array.flags.writeable = False
    return array


def _check_size(graph: Graph, what: str, limits: Limits, one: str) -> None:
    """A constant expression's shapes against the budget, and its result against the
    elements one value may hold, before any of it is computed."""
    cores = shapes.check_constants_budget(graph, [False] * len(graph.nodes), what)
    elements = shapes.size(cores[graph.output])
    if elements > limits.max_elements:
        raise LimitError(
            f"{what} would have {elements:,} elements, more than the "
            f"{limits.max_elements:,} {one} may hold"
        )


def _line_col(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _prepare(source: str, limits: Limits, what: str) -> str:
    if source.startswith("\ufeff"):
        source = source[1:]
    if len(source) > limits.max_length:
        raise LimitError(
            f"{what} is {len(source):,} characters long; the limit is {limits.max_length:,}",
            hint="raise it with --max-length if you really mean it",
        )
    # One newline convention, so lines and columns mean the same on every platform.
    return source.replace("\r\n", "\n").replace("\r", "\n")


def parse_program(
    source: str, *, limits: Limits = DEFAULT_LIMITS, what: str = "expression"
) -> Program:
    """Parse a program (statements separated by ';' or newlines) into a Graph."""
    from .engine import check_constants

    source = _prepare(source, limits, what)
    program = _Parser(source, limits, what).program()
    check_constants(program.graph, what=what)
    return program


def parse(source: str, *, limits: Limits = DEFAULT_LIMITS) -> Graph:
    """Parse and return only the graph (warnings dropped); handy for tests and the API."""
    return parse_program(source, limits=limits).graph


_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*", re.ASCII)


def check_variable_name(name: str, what: str) -> None:
    if not _NAME.fullmatch(name):
        raise BackpropError(
            f"{what}: {name!r} is not a valid name (ASCII letters, digits and '_', "
            "starting with a letter)"
        )
    if keyword.iskeyword(name) or ops.is_function(name):
        raise BackpropError(f"{what}: {name!r} is reserved and cannot be a variable")


_NONFINITE = re.compile(r"(?<![A-Za-z0-9_.])(nan|inf(?:inity)?)(?![A-Za-z0-9_])", re.IGNORECASE)


def parse_constant(
    text: str, *, what: str, limits: Limits = DEFAULT_LIMITS, warnings: list[str] | None = None
) -> Any:
    """A constant expression such as `-2`, `1.5e-3`, `pi/4`, `[[1, 2], [3, 4]]` or
    `2*arange(4)`, evaluated in float64: a float, or a read-only array. Parser warnings (a
    literal that underflows, say) are added to `warnings`. `nan`, `inf` and `infinity` (any
    case) are values only with limits.allow_nonfinite; otherwise they are refused by name."""
    from .engine import check_constants, evaluate

    if not text.strip():
        raise BackpropError(f"{what} is empty")
    found = _NONFINITE.search(text)
    constants = None
    if found and not limits.allow_nonfinite:
        raise ParseError(
            f"{found.group(1)} is not a finite number",
            source=text,
            offset=found.start(),
            what=what,
            hint="pass --allow-nonfinite to give nan or inf as a value",
        )
    if found:
        text = _NONFINITE.sub(lambda m: m.group(1).lower()[:3], text)
        constants = {**ops.CONSTANTS, "nan": math.nan, "inf": math.inf}
    program = _Parser(_prepare(text, limits, what), limits, what, constants).program()
    graph = program.graph
    _check_size(graph, what, limits, "one value")
    if not found:
        check_constants(graph, what=what)
    if program.statements != 1:
        raise BackpropError(f"{what} must be one expression, not {program.statements} statements")
    if warnings is not None:
        warnings += [f"{what}: {w}" for w in program.warnings]
    if graph.variables:
        names = ", ".join(graph.variables)
        raise BackpropError(
            f"{what} must be a constant expression, but it uses {names}",
            hint="values may use numbers, lists, pi, e and functions, not other variables",
        )
    if any(n.name is not None for n in graph.nodes):
        raise BackpropError(f"{what} must be an expression, not an assignment")
    with np.errstate(all="ignore"):
        value = evaluate(graph, {})[graph.output]
    if np.ndim(value) == 0:
        return float(value)
    array = np.array(value, dtype=np.float64)
    array.flags.writeable = False
    return array


def parse_binding(
    arg: str, *, limits: Limits = DEFAULT_LIMITS, warnings: list[str] | None = None
) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line: a number or an array."""
    name, sep, value_text = arg.partition("=")
    name = name.strip()
    if not sep:
        raise BackpropError(
            f"expected NAME=VALUE, got {arg!r}",
            hint="values are given as x=1.5 or x=[1,2,3]; the expression comes first",
        )
    if not name:
        raise BackpropError(f"missing the name in {arg!r} (expected NAME=VALUE)")
    check_variable_name(name, f"value {arg!r}")
    value = parse_constant(value_text, what=f"value for {name}", limits=limits, warnings=warnings)
    return name, value
