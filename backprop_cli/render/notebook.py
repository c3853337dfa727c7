"""Notebook output besides the pages (render/page.py): preformatted text, the terminal's
Rich tables as HTML, a picture's tree; every text escaped by the pages' one function for
HTML, `text`."""

from __future__ import annotations

from typing import Any

from .page import text

STYLE = (
    "<style>.bp-table{border-collapse:collapse;font-family:ui-monospace,monospace;"
    "font-size:12px}.bp-table th,.bp-table td{border:1px solid #ccc;padding:2px 8px;"
    "text-align:right}.bp-table th{background:#f4f4f4}.bp-table td.bp-left{text-align:left}"
    ".bp-ok{color:#1e7b34}.bp-bad{color:#b02a37}.bp-note{color:#555}</style>"
)


def pre(body: str, note: str = "") -> str:
    """Preformatted text (a terminal tree, a formula), with a note above it."""
    shown = f"<p class='bp-note'>{text(note)}</p>" if note else ""
    return STYLE + shown + f"<pre>{text(body)}</pre>"


def rich_html(renderables: list[Any], width: int = 100) -> str:
    """Rich renderables (the terminal's tables) as HTML with inline styles."""
    import io

    from rich.console import Console

    console = Console(
        width=width, record=True, file=io.StringIO(), color_system="truecolor", force_jupyter=False
    )
    for item in renderables:
        console.print(item, highlight=False)
    return console.export_html(
        inline_styles=True,
        code_format='<pre style="font-family:ui-monospace,monospace;font-size:12px">{code}</pre>',
    )


def tree_text(pic: Any) -> str:
    """A picture as the terminal's tree, in plain text."""
    import io

    from rich.console import Console

    from .picture import tree

    console = Console(
        width=100, record=True, color_system=None, file=io.StringIO(), force_jupyter=False
    )
    console.print(tree(pic))
    return console.export_text()
