"""Text -> Graph: our own whitelist tokenizer and an iterative operator-precedence parser.

Nothing the user typed is ever handed to eval, exec or SymPy's parsers. Every construct
outside the language is refused with a message that names it and the column; input size,
nesting depth and node count are bounded, and no step recurses on the input's structure.
"""

from __future__ import annotations

import difflib
import keyword
import re
import unicodedata
from dataclasses import dataclass, field, replace

from . import ops
from .errors import BackpropError, ParseError
from .graph import Graph, Node


@dataclass(frozen=True)
class Limits:
    max_length: int = 1_000_000  # characters of source
    max_depth: int = 256  # nested parentheses and calls
    max_nodes: int = 1_000_000
    max_literal: int = 100  # characters in one number or name


DEFAULT_LIMITS = Limits()

# ---- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\f]+)
  | (?P<comment>\#[^\r\n]*)
  | (?P<nl>\r\n|\r|\n)
  | (?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*=|\+=|-=|\*=|/=|\*\*|[-+*/^(),;=])
    """,
    re.VERBOSE | re.ASCII,
)

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
    (".", "attribute access ('.') is not supported"),
    ("[", "subscripts and lists ('[ ]') are not supported"),
    ("]", "subscripts and lists ('[ ]') are not supported"),
    ("{", "sets and dicts ('{ }') are not supported"),
    ("}", "sets and dicts ('{ }') are not supported"),
    ("@", "matrix multiplication '@' is not supported for scalar expressions"),
    (":", "':' is not supported (no slices, lambdas or annotations)"),
    ("&", "bitwise operators are not supported"),
    ("|", "bitwise operators are not supported"),
    ("~", "bitwise operators are not supported"),
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


@dataclass(frozen=True, slots=True)
class Token:
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


def tokenize(
    source: str, *, limits: Limits = DEFAULT_LIMITS, what: str = "expression"
) -> list[Token]:
    """Split source into tokens; newlines inside parentheses are dropped, as in Python."""
    _check_characters(source, what)
    tokens: list[Token] = []
    depth = 0
    pos = 0
    n = len(source)
    while pos < n:
        m = _TOKEN.match(source, pos)
        if m is None:
            raise _refused(source, pos, what)
        kind = m.lastgroup
        assert kind is not None
        text = m.group()
        if kind == "num":
            _check_number(source, m, limits, what)
        elif kind == "name":
            _check_name(source, m, limits, what)
        elif kind == "op":
            if source.startswith(("//", "=="), pos):
                raise _refused(source, pos, what)
            depth += text == "("
            depth -= text == ")" and depth > 0
        if kind == "nl" and depth == 0:
            tokens.append(Token("nl", text, m.start(), m.end()))
        elif kind in ("num", "name", "op"):
            tokens.append(Token(kind, text, m.start(), m.end()))
        pos = m.end()
    tokens.append(Token("eof", "", n, n))
    return tokens


# ---- the parser ---------------------------------------------------------------------------

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "**": 4, "^": 4}
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


@dataclass
class Program:
    graph: Graph
    warnings: list[str] = field(default_factory=list)
    statements: int = 1
    origin: str = "expression"  # where the source came from: "expression", "stdin" or a path
    last_start: int = 0  # where the last statement (the output) begins in graph.source
    last_assigns: bool = False  # whether that statement is an assignment


class _Parser:
    def __init__(self, source: str, limits: Limits, what: str) -> None:
        self.source = source
        self.limits = limits
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
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

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
        if name in ops.FUNCTIONS:
            raise self.error(
                f"'{name}' is a function: call it as {name}(...)", tok.start, hint=None
            )
        if name in ops.CONSTANTS:
            return self.add("const", (), tok.start, tok.end, value=ops.CONSTANTS[name])
        if name not in self.variables:
            self.variables[name] = self.add("input", (), tok.start, tok.end, name=name)
        return self.variables[name]

    def unknown_function(self, tok: Token) -> ParseError:
        name = tok.text
        if name in self.bound or name in self.variables or name in ops.CONSTANTS:
            return self.error(
                f"'{name}' is not a function",
                tok.start,
                hint=f"to multiply, write {name}*(...)",
            )
        close = difflib.get_close_matches(name, sorted(ops.FUNCTIONS), n=3, cutoff=0.7)
        hint = (
            "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
            if close
            else f"`backprop ops` lists the functions; to multiply, write {name}*(...)"
        )
        return self.error(f"unknown function '{name}'", tok.start, hint=hint)

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
            if tok.text in ops.FUNCTIONS:
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
                self.nodes[node] = replace(self.nodes[node], name=tok.text)
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
            if tok.kind in ("num", "name"):
                if not expect_operand:
                    prev = self.tokens[self.pos - 1]
                    raise self.error(
                        f"missing operator between {prev.text!r} and {text!r}", tok.start
                    )
                self.pos += 1
                if tok.kind == "num":
                    operands.append(_Operand(self.number(tok), tok.start, tok.end))
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
        op = by_arity[len(args)]
        node = self.add(op, tuple(a.node for a in args), frame.token.start, close.end)
        return _Operand(node, frame.token.start, close.end)


def _line_col(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _prepare(source: str, limits: Limits, what: str) -> str:
    if source.startswith("\ufeff"):
        source = source[1:]
    if len(source) > limits.max_length:
        raise BackpropError(
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
    if keyword.iskeyword(name) or name in ops.FUNCTIONS:
        raise BackpropError(f"{what}: {name!r} is reserved and cannot be a variable")


def parse_constant(
    text: str, *, what: str, limits: Limits = DEFAULT_LIMITS, warnings: list[str] | None = None
) -> float:
    """A constant expression such as `-2`, `1.5e-3` or `pi/4`, evaluated in float64.
    Parser warnings (a literal that underflows, say) are added to `warnings`."""
    from .engine import evaluate

    if not text.strip():
        raise BackpropError(f"{what} is empty")
    program = parse_program(text, limits=limits, what=what)
    graph = program.graph
    if program.statements != 1:
        raise BackpropError(f"{what} must be one expression, not {program.statements} statements")
    if warnings is not None:
        warnings += [f"{what}: {w}" for w in program.warnings]
    if graph.variables:
        names = ", ".join(graph.variables)
        raise BackpropError(
            f"{what} must be a constant expression, but it uses {names}",
            hint="values may use numbers, pi, e and functions, not other variables",
        )
    if any(n.name is not None for n in graph.nodes):
        raise BackpropError(f"{what} must be an expression, not an assignment")
    value = float(evaluate(graph, {})[graph.output])
    return value


def parse_binding(
    arg: str, *, limits: Limits = DEFAULT_LIMITS, warnings: list[str] | None = None
) -> tuple[str, float]:
    """`NAME=VALUE` from the command line."""
    name, sep, value_text = arg.partition("=")
    name = name.strip()
    if not sep:
        raise BackpropError(
            f"expected NAME=VALUE, got {arg!r}",
            hint="values are given as x=1.5; the expression comes first",
        )
    if not name:
        raise BackpropError(f"missing the name in {arg!r} (expected NAME=VALUE)")
    check_variable_name(name, f"value {arg!r}")
    value = parse_constant(value_text, what=f"value for {name}", limits=limits, warnings=warnings)
    return name, value
