"""README.md as data: its fenced blocks, its transcripts and every command line it shows."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parent.parent
README_PATH = ROOT / "README.md"
WIDTH = 88  # the terminal width of the transcripts, as README says


def text() -> str:
    return README_PATH.read_text()


def blocks(lang: str = "") -> list[str]:
    """The fenced code blocks of README with this info string, in order."""
    found: list[str] = []
    current: list[str] | None = None
    info = ""
    for line in text().splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    found.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return found


@dataclass(frozen=True)
class Transcript:
    command: str  # the line after "$ "
    output: str  # what it prints: stdout, or stderr when it fails
    block: str  # the whole block as it stands in README


def transcripts() -> list[Transcript]:
    """Every block that starts with `$ COMMAND`: the command, then what it prints."""
    found = []
    for block in blocks():
        if block.startswith("$ "):
            first, _, rest = block.partition("\n")
            found.append(Transcript(first[2:], rest, block))
    return found


def _prose() -> str:
    """README without its fenced blocks (each block's lines left blank)."""
    lines, inside = [], False
    for line in text().splitlines():
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
    return [m[1] for m in re.finditer(r"`([^`]+)`", _prose())]


def inline_commands() -> list[str]:
    """The command lines written in backticks in the prose (a span that only names a
    command, such as `backprop grad`, is a name, not a command line)."""
    found = []
    for span in _spans():
        line = " ".join(span.split())
        if COMMAND.search(line) and not re.fullmatch(r"backprop( \w+)?", line):
            found.append(line)
    return found


def wrapped_commands() -> list[str]:
    """Command spans broken over two lines of README.md: pasted from the file, each half
    would run alone."""
    return [
        s for s in _spans() if "\n" in s and (COMMAND.search(" ".join(s.split())) or SHELL.match(s))
    ]


def other_shell_lines() -> list[str]:
    """Spans that are shell commands other than backprop's (python, jq, apt-get, ...)."""
    return [" ".join(s.split()) for s in _spans() if SHELL.match(s) and not COMMAND.search(s)]


def block_commands() -> list[str]:
    """Command lines of blocks that are commands without a transcript (the first block,
    the examples' block) and of the shell blocks (Quickstart, Development)."""
    found = []
    for block in blocks():
        lines = [line for line in block.strip().splitlines() if line.strip()]
        if len(lines) == 1 and lines[0].startswith("backprop "):
            found.append(lines[0])
    for block in blocks("sh"):
        found += [line for line in block.strip().splitlines() if line.strip()]
    return found


def runnable(command: str) -> bool:
    """A complete command line, not a pattern with placeholders."""
    return PLACEHOLDER.search(command) is None
