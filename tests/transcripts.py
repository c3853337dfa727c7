"""Compare a documented transcript (a README or docs block, a golden file) with fresh output.

What is deterministic is compared exactly: every word, symbol, verdict and table border, in
order, and every number to a few units in its last digit. What is rounding noise, which
differs between processors (FMA, libm, BLAS kernels) and thread counts, is compared by what
the documentation promises instead of digit for digit:

- an error figure (`max error 4e-13`, a `max error` column, JSON's `max_error`,
  `fd_error_estimate` and `spread`) only has to lie within the documented tolerance of its
  check;
- a finite-difference estimate (the `finite diff.` column, JSON's `finite_difference`) only
  has to agree with the documented one within the finite-difference tolerance;
- `backprop check`'s worst point may be another point, as long as the sentence has the
  documented form and its two numbers agree;
- a number shortened with `…` may differ by one unit in its last shown digit.

A number that prints a digit longer may widen its table column (longer border runs, more
padding) or move a line break; that still matches. Where both texts have the same lines,
each line's indentation and each table cell's alignment must match too. The torch build's
version (`2.13.0+cpu`, `2.13.0`) is not compared.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# The documented tolerances (docs/checks.md, "How the numbers are checked"): (rtol, atol).
TOLERANCE = {
    "torch": (1e-7, 1e-9),
    "symbolic": (1e-7, 1e-9),
    "finite_difference": (1e-6, 1e-8),
    "second_differences": (1e-5, 1e-7),
}
# Two renderings of one float64 computation on different processors: a few ulps apart,
# a little more after long sums.
RTOL_SAME, ATOL_SAME = 2e-14, 1e-15

NUMBER = re.compile(
    r"(?<![\w.])(?P<mantissa>\d+\.?\d*|\.\d+)(?P<cut>…)?(?P<exp>[eE][-+]?\d+)?(?![\w])"
)
TORCH_VERSION = re.compile(r"torch \d+\.\d+\.\d+(?:[+.][\w.]+)?")  # 2.13.0+cpu, 2.13.0
WORST = re.compile(r"worst point: (?P<body>.*?)(?=\n[✓✗·*]|\Z)", re.DOTALL)
WORST_BODY = re.compile(
    r"(?P<point>.+?): ∂/∂(?P<partial>[A-Za-z_]\w*)(?:\[[\d,]+\])? engine (?P<engine>\S+) vs "
    r"(?P<check>torch autograd|finite differences|SymPy, evaluated exactly) (?P<other>\S+)"
    r"(?: \(\w+\))?"
)
TABLE_CELL = re.compile(r"[│┃]")
TABLE_LINE = tuple("│┃┏┡┢└╇━┗┌├┣")
RULES = "━─═"  # border characters: a wider column only makes their runs longer
NOISE_COLUMNS = {"max error": "error", "finite diff.": "fd"}


@dataclass
class Token:
    text: str
    kind: str = "text"  # text | number | error:<check> | fd:<check>
    value: float = 0.0
    cut: bool = False
    last_place: float = 0.0


def _check_of(context: str) -> str:
    """Which check an error figure belongs to, from the words before it."""
    if "second differences" in context:
        return "second_differences"
    if "finite differences" in context or "finite diff" in context:
        return "finite_difference"
    if "SymPy" in context:
        return "symbolic"
    return "torch"


def _number(match: re.Match[str]) -> Token:
    mantissa, exp = match["mantissa"], match["exp"] or ""
    value = float(mantissa + exp)
    decimals = len(mantissa.partition(".")[2])
    last_place = 10.0 ** (-decimals + (int(exp[1:]) if exp else 0))
    return Token(match[0], "number", value, bool(match["cut"]), last_place)


def _table(lines: list[str], index: int) -> tuple[str, list[str]]:
    """The title and the header cells of the Rich table that `lines[index]` belongs to."""
    start = index
    while start > 0 and not lines[start].startswith("┏"):
        start -= 1
    title = lines[start - 1] if start > 0 else ""
    header = [line for line in lines[start : index + 1] if line.startswith("┃")]
    cells: list[str] = []
    for line in header:
        parts = TABLE_CELL.split(line)[1:-1]
        if not cells:
            cells = [p.strip() for p in parts]
        else:
            cells = [f"{a} {b.strip()}".strip() for a, b in zip(cells, parts, strict=False)]
    return title, cells


def normalise(text: str) -> str:
    """What may differ between machines without being noise in a number: the torch build's
    version, and which point `backprop check` found worst (checked by `_worst_points`)."""
    text = TORCH_VERSION.sub("torch ⟨version⟩", text)
    return WORST.sub("worst point: ⟨worst⟩", text)


def _text_tokens(text: str) -> list[Token]:
    found: list[Token] = []
    for c in text:
        if c.isspace():
            continue
        if c in RULES and found and found[-1].text == c:
            continue
        found.append(Token(c))
    return found


def tokens(text: str) -> list[Token]:
    """Every non-space character as a token (a run of one border character as one), numbers
    whole, each number with its kind."""
    lines = normalise(text).split("\n")
    out: list[Token] = []
    for row, line in enumerate(lines):
        title, columns = _table(lines, row) if line.startswith("│") else ("", [])
        position = 0
        for match in NUMBER.finditer(line):
            out.extend(_text_tokens(line[position : match.start()]))
            token = _number(match)
            before = line[: match.start()]
            earlier = "\n".join([*lines[max(0, row - 2) : row], before])
            if columns:
                cell = len(TABLE_CELL.findall(before)) - 1
                noise = NOISE_COLUMNS.get(columns[cell] if 0 <= cell < len(columns) else "")
                if noise == "error":
                    first = TABLE_CELL.split(line)[1] if line.count("│") > 1 else ""
                    token.kind = f"error:{_check_of(first)}"
                elif noise == "fd":
                    second = "Second" in title or "Hessian" in title
                    token.kind = "fd:second_differences" if second else "fd:finite_difference"
            elif re.search(r"max\s+error\s*$", earlier):
                verdict = max(earlier.rfind(mark) for mark in "✓✗·")
                token.kind = f"error:{_check_of(earlier[verdict:])}"
            out.append(token)
            position = match.end()
        out.extend(_text_tokens(line[position:]))
    return out


def _close(shown: Token, actual: Token, rtol: float = RTOL_SAME, atol: float = ATOL_SAME) -> bool:
    a, s = actual.value, shown.value
    tolerance = atol + rtol * max(abs(a), abs(s))
    if shown.cut or actual.cut:
        tolerance += 1.01 * max(
            shown.last_place if shown.cut else 0.0, actual.last_place if actual.cut else 0.0
        )
    return abs(a - s) <= tolerance


def _within(value: float, check: str, scale: float) -> bool:
    rtol, atol = TOLERANCE[check]
    return math.isfinite(value) and 0 <= value <= atol + rtol * scale


def _scale(seq: list[Token]) -> float:
    """The size of the numbers the checks compare: the values with a fraction or an
    exponent (counts, ids and sample sizes are whole numbers and do not count)."""
    values = [
        abs(t.value)
        for t in seq
        if t.kind == "number" and (t.cut or any(c in t.text for c in ".eE"))
    ]
    return max([1.0, *values])


def differences(shown: str, actual: str) -> list[str]:
    """What differs between the documented text and the fresh one; empty when they match."""
    if _strip(shown) == _strip(actual):
        return []
    problems = _worst_points(shown, actual)
    a, s = tokens(actual), tokens(shown)
    scale = _scale(s)
    for i, (x, y) in enumerate(zip(s, a, strict=False)):
        where = _context(s, i)
        if x.kind == "text" or y.kind == "text":
            if x.text != y.text or x.kind != y.kind:
                problems.append(f"at {where!r}: documented {x.text!r}, got {y.text!r}")
                break
        elif x.kind.startswith("error:"):
            if not _within(y.value, x.kind[6:], scale):
                problems.append(f"at {where!r}: error {y.text} beyond the {x.kind[6:]} tolerance")
        elif x.kind.startswith("fd:"):
            if not _close(x, y, *TOLERANCE[x.kind[3:]]):
                problems.append(f"at {where!r}: finite difference {x.text} vs {y.text}")
        elif x.value == y.value and x.text != y.text and not (x.cut or y.cut):
            problems.append(f"at {where!r}: {x.text} is now written {y.text}")
        elif not _close(x, y):
            problems.append(f"at {where!r}: documented {x.text}, got {y.text}")
    if not problems and len(s) != len(a):
        longer = s if len(s) > len(a) else a
        tail = "".join(t.text for t in longer[min(len(s), len(a)) :][:40])
        which = "documented" if len(s) > len(a) else "fresh"
        problems.append(f"the {which} text goes on: {tail!r}")
    return problems or _layout(shown, actual)


def _alignment(cell: str) -> str:
    """How a table cell's text sits: L(eft), R(ight), C(entred) or F(ull)."""
    inner = cell[1:-1] if len(cell) >= 2 else cell
    if not inner.strip() or (inner[:1] != " " and inner[-1:] != " "):
        return "F"
    lead, trail = len(inner) - len(inner.lstrip()), len(inner) - len(inner.rstrip())
    if lead == 0:
        return "L"
    if trail == 0:
        return "R"
    return "C" if abs(lead - trail) <= 1 else ("L" if lead < trail else "R")


def _layout(shown: str, actual: str) -> list[str]:
    """Where both texts have the same lines: each line's indentation (trees, nested lists)
    and, in tables, which side of its cell each value sits on."""
    old, new = _strip(shown).splitlines(), _strip(actual).splitlines()
    if len(old) != len(new):
        return []  # a number of another length moved a line break; the tokens matched
    for n, (x, y) in enumerate(zip(old, new, strict=True), 1):
        if x.startswith(TABLE_LINE) and y.startswith(TABLE_LINE):
            cells = zip(TABLE_CELL.split(x)[1:-1], TABLE_CELL.split(y)[1:-1], strict=False)
            for a, b in cells:
                if "F" not in (_alignment(a), _alignment(b)) and _alignment(a) != _alignment(b):
                    return [f"line {n}: {a.strip()!r} is aligned differently ({b!r})"]
        elif len(x) - len(x.lstrip(" ")) != len(y) - len(y.lstrip(" ")):
            return [f"line {n}: indented differently: {x!r} vs {y!r}"]
    return []


def _context(seq: list[Token], i: int) -> str:
    return "".join(t.text for t in seq[max(0, i - 12) : i + 1])


def _worst_points(shown: str, actual: str) -> list[str]:
    """The worst point may be another point, but it names the same variables, one of
    them as the partial, one of the checks, and two numbers that agree."""
    documented, fresh = WORST.search(shown), WORST.search(actual)
    if documented is None:
        return []
    if fresh is None:
        return ["the documented 'worst point:' sentence is missing"]
    old, new = (" ".join(m["body"].split()) for m in (documented, fresh))
    form, shown_form = WORST_BODY.fullmatch(new), WORST_BODY.fullmatch(old)
    if form is None or shown_form is None:
        return [f"the worst point does not have the documented form: {new!r}"]
    names = re.findall(r"(?:^|, )([A-Za-z_]\w*) = ", form["point"])
    if names != re.findall(r"(?:^|, )([A-Za-z_]\w*) = ", shown_form["point"]):
        return [f"the worst point names other variables: {new!r}"]
    if form["partial"] not in names:
        return [f"the worst point's partial is not one of its variables: {new!r}"]
    numbers = [NUMBER.fullmatch(form[k].lstrip("-")) for k in ("engine", "other")]
    if None in numbers:
        return [f"the worst point's figures are not numbers: {new!r}"]
    engine, other = (_signed(form[k]) for k in ("engine", "other"))
    rtol, atol = TOLERANCE[_check_of(form["check"])]
    slack = sum(t.last_place for t in (engine, other) if t.cut)
    if abs(engine.value - other.value) > atol + rtol * abs(engine.value) + slack:
        return [f"the worst point's numbers do not agree: {new!r}"]
    return []


def _signed(text: str) -> Token:
    match = NUMBER.fullmatch(text.lstrip("-"))
    assert match is not None, text
    token = _number(match)
    token.value = -token.value if text.startswith("-") else token.value
    return token


def _strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


# ---- JSON ------------------------------------------------------------------------------

ERROR_KEYS = {"max_error", "fd_error_estimate", "spread", "error"}
FD_KEYS = {"finite_difference"}


def json_differences(shown: Any, actual: Any, path: str = "$") -> list[str]:
    """The same rules for two decoded JSON documents: keys and their order, strings and
    flags exactly; numbers to a few ulps; error figures within their check's tolerance."""
    scale = max([1.0, *_magnitudes(shown)])
    return _json(shown, actual, path, scale, None)


VALUE_KEYS = {"value", "grad", "gradient", "engine", "torch", "symbolic_value"}


def _magnitudes(data: Any, counted: bool = False) -> list[float]:
    """The sizes of the values the checks compare (not ids, spans, counts or shapes)."""
    if isinstance(data, dict):
        return [m for k, v in data.items() for m in _magnitudes(v, counted or k in VALUE_KEYS)]
    if isinstance(data, list):
        return [m for v in data for m in _magnitudes(v, counted)]
    if counted and _is_number(data):
        return [abs(float(data))] if math.isfinite(data) else []
    return []


def _json(
    shown: Any, actual: Any, path: str, scale: float, tol: tuple[float, float] | None
) -> list[str]:
    if isinstance(shown, dict):
        if not isinstance(actual, dict) or list(shown) != list(actual):
            got = list(actual) if isinstance(actual, dict) else actual
            return [f"{path}: keys {list(shown)} vs {got!r}"]
        own = (shown["rtol"], shown["atol"]) if {"rtol", "atol"} <= set(shown) else tol
        problems: list[str] = []
        for key in shown:
            sub = f"{path}.{key}"
            if key in ERROR_KEYS and _is_number(shown[key]):
                rtol, atol = own or TOLERANCE["finite_difference"]
                if not (_is_number(actual[key]) and 0 <= actual[key] <= atol + rtol * scale):
                    problems.append(f"{sub}: {actual[key]!r} beyond the tolerance")
            elif key in FD_KEYS and _is_number(shown[key]):
                second = "second_order" in path or "hessian" in path
                rtol, atol = TOLERANCE["second_differences" if second else "finite_difference"]
                a, s = actual[key], shown[key]
                if not (_is_number(a) and abs(a - s) <= atol + rtol * max(abs(a), abs(s))):
                    problems.append(f"{sub}: finite difference {s!r} vs {a!r}")
            else:
                problems += _json(shown[key], actual[key], sub, scale, own)
        return problems
    if isinstance(shown, list):
        if not isinstance(actual, list) or len(shown) != len(actual):
            return [f"{path}: {shown!r} vs {actual!r}"]
        return [
            p
            for i, (s, a) in enumerate(zip(shown, actual, strict=True))
            for p in _json(s, a, f"{path}[{i}]", scale, tol)
        ]
    if _is_number(shown) and _is_number(actual) and type(shown) is type(actual):
        if abs(shown - actual) <= ATOL_SAME + RTOL_SAME * max(abs(shown), abs(actual)):
            return []
        return [f"{path}: documented {shown!r}, got {actual!r}"]
    if shown != actual or type(shown) is not type(actual):
        return [f"{path}: documented {shown!r}, got {actual!r}"]
    return []


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)
