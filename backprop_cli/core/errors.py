"""User-facing errors: everything a user can trigger with bad input raises one of these.

The CLI turns them into a one-line message on stderr and exit code 2; nothing else may
escape as a traceback.
"""

from __future__ import annotations


class BackpropError(Exception):
    """Bad usage or bad input (exit code 2): the base of every error a user can cause, with
    the one-line `message` the CLI prints and an optional `hint`::

        >>> try:
        ...     bp.grad("x*y", x=1)
        ... except bp.BackpropError as exc:
        ...     print(exc.message)
        missing value for y
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def details(self) -> list[str]:
        """Extra lines shown under the one-line message (e.g. the source with a caret)."""
        return [f"hint: {self.hint}"] if self.hint else []


class InputError(BackpropError):
    """Input that is well formed but cannot be used: a missing value, a shape that does not
    fit, a bad option or file (the library's kind for what the CLI exits 2 on)::

        >>> bp.grad("x*y", x=1)
        Traceback (most recent call last):
        backprop_cli.InputError: missing value for y
    """


class LimitError(InputError):
    """Work a budget refused before doing it (sizes, elements, operations)::

    >>> bp.grad("sum(ones(20000,1)*ones(1,20000)*x)", x=1)
    Traceback (most recent call last):
    backprop_cli.LimitError: the expression is too big to run: ...
    """


class ParseError(BackpropError):
    """A syntax error, or a shape mismatch, at a position in the source text (1-based `line`
    and `column`)::

        >>> try:
        ...     bp.grad("(x+", x=1)
        ... except bp.ParseError as exc:
        ...     print(exc.column, exc.reason)
        4 unexpected end of input after '+': expected a number, a name, '(' or a sign
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        offset: int,
        what: str = "expression",
        hint: str | None = None,
    ) -> None:
        self.source = source
        self.offset = max(0, min(offset, len(source)))
        self.line, self.column = line_and_column(source, self.offset)
        self.reason = message
        super().__init__(
            f"{what}: line {self.line}, column {self.column}: {message}"
            if "\n" in source.rstrip("\n")
            else f"{what}: column {self.column}: {message}",
            hint=hint,
        )

    def details(self) -> list[str]:
        text = self.source.split("\n")[self.line - 1]
        if len(text) > 120:
            # Show a window of the line around the column so huge inputs stay readable.
            start = max(0, self.column - 60)
            window = text[start : start + 120]
            prefix = "…" if start > 0 else ""
            caret_at = self.column - 1 - start + len(prefix)
            text = prefix + window + ("…" if start + 120 < len(text) else "")
        else:
            caret_at = self.column - 1
        shown = "".join(ch if ch.isprintable() else "?" for ch in text)
        return ["  " + shown, "  " + " " * caret_at + "^", *super().details()]


def line_and_column(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    start = source.rfind("\n", 0, offset) + 1
    return line, offset - start + 1


def visible(text: str) -> str:
    """Control and other invisible characters shown escaped (ESC as \\x1b, a zero-width
    space as \\u200b), so nothing a user gave (a file name, a --wrt or --device string, a
    data cell) can move the cursor, retitle or clear the terminal."""
    if text.isprintable():
        return text
    return "".join(
        c
        if c.isprintable() or c == "\t"
        else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
        for c in text
    )
