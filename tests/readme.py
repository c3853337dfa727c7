"""README.md and the pages of the documentation site (docs/*.md) as data: their fenced
blocks, their transcripts and every command line they show."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
README_PATH = ROOT / "README.md"
DOCS = ROOT / "docs"
WIDTH = 88  # the terminal width of the transcripts, as the pages say


def pages() -> list[Path]:
    """README.md, then every page of the documentation site, by file name."""
    return [README_PATH, *sorted(DOCS.glob("*.md"))]


def name(path: Path) -> str:
    """The page's path from the repository root: README.md, docs/grad.md."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def text(path: Path = README_PATH) -> str:
    return path.read_text()


def _fenced(path: Path) -> list[tuple[str, str]]:
    """The page's fenced code blocks as (info string, body), in order."""
    found: list[tuple[str, str]] = []
    current: list[str] | None = None
    info = ""
    for line in text(path).splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                found.append((info, "".join(current)))
                current = None
        elif current is not None:
            current.append(line)
    return found


def blocks(lang: str = "", path: Path = README_PATH) -> list[str]:
    """The fenced code blocks of one page (README by default) with this info string."""
    return [body for info, body in _fenced(path) if info == lang]


def all_blocks(lang: str = "") -> list[tuple[Path, str]]:
    """The fenced blocks with this info string on every page, with the page holding each."""
    return [(path, body) for path in pages() for body in blocks(lang, path)]


@dataclass(frozen=True)
class Transcript:
    command: str  # the line after "$ "
    output: str  # what it prints: stdout, or stderr when it fails
    block: str  # the whole block as it stands on its page
    path: Path = README_PATH  # the page that shows it

    @property
    def page(self) -> str:
        return name(self.path)


def transcripts() -> list[Transcript]:
    """Every block on every page that starts with `$ COMMAND`: the command, then what it
    prints."""
    found = []
    for path, block in all_blocks():
        if block.startswith("$ "):
            first, _, rest = block.partition("\n")
            found.append(Transcript(first[2:], rest, block, path))
    return found


def unique_transcripts() -> list[Transcript]:
    """The transcripts, each command with the same output listed once (README's tour and a
    page of the site may show the same one)."""
    seen: dict[tuple[str, str], Transcript] = {}
    for t in transcripts():
        seen.setdefault((t.command, t.output), t)
    return list(seen.values())


def replace_block(path: Path, shown: str, fresh: str) -> None:
    """Rewrite one block of a page (UPDATE_README=1): `shown` must occur there once."""
    page = path.read_text()
    assert page.count(shown) == 1, f"the block to update is not unique in {name(path)}"
    path.write_text(page.replace(shown, fresh))


def _prose(path: Path) -> str:
    """The page without its fenced blocks (each block's lines left blank)."""
    lines, inside = [], False
    for line in text(path).splitlines():
        if line.startswith("```"):
            inside = not inside
            lines.append("")
        else:
            lines.append("" if inside else line)
    return "\n".join(lines)


COMMAND = re.compile(r"(?:^|\| )backprop(?: |$)")
PLACEHOLDER = re.compile(r"…|\.\.\.|\b[A-Z]{3,}\b")
SHELL = re.compile(r"(?:python3? |\. |\.venv/bin/|jq |apt-get |brew |pip |seq |echo )")


def _spans() -> list[str]:
    return [m[1] for path in pages() for m in re.finditer(r"`([^`]+)`", _prose(path))]


def inline_commands() -> list[str]:
    """The command lines written in backticks in the prose of every page (a span that only
    names a command, such as `backprop grad`, is a name, not a command line)."""
    found = []
    for span in _spans():
        line = " ".join(span.split())
        if COMMAND.search(line) and not re.fullmatch(r"backprop( \w+)?", line):
            found.append(line)
    return found


def wrapped_commands() -> list[str]:
    """Command spans broken over two lines of a page: pasted from the file, each half would
    run alone."""
    return [
        s for s in _spans() if "\n" in s and (COMMAND.search(" ".join(s.split())) or SHELL.match(s))
    ]


def other_shell_lines() -> list[str]:
    """Spans that are shell commands other than backprop's (python, jq, apt-get, ...)."""
    return [" ".join(s.split()) for s in _spans() if SHELL.match(s) and not COMMAND.search(s)]


def block_commands() -> list[str]:
    """Command lines of blocks that are commands without a transcript (README's first block,
    the examples' block) and of the shell blocks (Quickstart, Development), on every page."""
    found = []
    for _, block in all_blocks():
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if len(lines) == 1 and lines[0].startswith("backprop "):
            found.append(lines[0])
    for _, block in all_blocks("sh"):
        found += [line for line in block.strip().splitlines() if line.strip()]
    return found


def runnable(command: str) -> bool:
    """A complete command line, not a pattern with placeholders."""
    return PLACEHOLDER.search(command) is None
