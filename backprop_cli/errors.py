"""User-facing errors: everything a user can trigger with bad input raises one of these.

The CLI turns them into a one-line message on stderr and exit code 2; nothing else may
escape as a traceback.
"""

from __future__ import annotations


class BackpropError(Exception):
    """Bad usage or bad input (exit code 2)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def details(self) -> list[str]:
        """Extra lines shown under the one-line message (e.g. the source with a caret)."""
        return [f"hint: {self.hint}"] if self.hint else []


class ParseError(BackpropError):
    """A syntax error at a position in the source text (1-based line and column)."""

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
