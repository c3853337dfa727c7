"""Every command line that README.md, the pages of the documentation site (docs/*.md) and
the `--help` epilogues show works when pasted into bash and into zsh.

Three checks, from cheap to real:
- a lint of the line's quoting: nothing a shell could expand (globs `* ? [ ]`, parentheses,
  braces, `~`, `$`, `!` even inside double quotes, `=` or `#` at the start of a word) is left
  unquoted;
- the line pasted into an interactive bash and an interactive zsh (history expansion on,
  zsh's comments off, as in a terminal), with `backprop` replaced by a function that records
  its arguments: each shell must hand `backprop` exactly the arguments the line means;
- the line run for real through `bash -c` and `zsh -c` with the installed `backprop` on PATH,
  at the transcripts' width: the output must match the page's transcript (tests/
  transcripts.py), and a line without a transcript must succeed.

zsh is skipped where it is not installed, unless BACKPROP_REQUIRE_SHELLS=1 (CI sets it and
installs zsh).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import readme
from tests.conftest import TERMINAL_VARIABLES, run
from tests.transcripts import differences

REQUIRE = bool(os.environ.get("BACKPROP_REQUIRE_SHELLS"))
SHELLS = {"bash": ["bash", "--norc", "--noprofile"], "zsh": ["zsh", "-f"]}


def shell(name: str) -> list[str]:
    if shutil.which(name) is None:
        if REQUIRE:
            pytest.fail(f"{name} is not installed (BACKPROP_REQUIRE_SHELLS=1)")
        pytest.skip(f"{name} is not installed")
    return SHELLS[name]


# ---- the command lines -----------------------------------------------------------------


def _example_lines(text: str) -> list[str]:
    lines = (line.strip(" │") for line in text.splitlines())
    return [line for line in lines if readme.COMMAND.search(line)]


def epilogue_commands() -> list[str]:
    """The example lines of every command's --help, as written in the source."""
    from backprop_cli.cli.app import app

    epilogs = [app.info.epilog, *(c.epilog for c in app.registered_commands)]
    return list(dict.fromkeys(line for e in epilogs if e for line in _example_lines(e)))


def help_pages(columns: int) -> str:
    from backprop_cli.cli.app import app

    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    saved = dict(os.environ)
    os.environ["COLUMNS"] = str(columns)
    for variable in TERMINAL_VARIABLES:
        os.environ.pop(variable, None)
    try:
        pages = [run(*([name] if name else []), "--help").stdout for name in [None, *names]]
        return "\n".join(pages)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_help_examples_fit_an_80_column_terminal_whole():
    """A line that wraps cannot be pasted: every example is shown on one line at 80."""
    shown = _example_lines(help_pages(80))
    assert shown and set(shown) == set(EPILOGUE_LINES)


TRANSCRIPTS = readme.unique_transcripts()  # a transcript shown on two pages runs once
PAGE_LINES = list(
    dict.fromkeys(
        [t.command for t in TRANSCRIPTS] + readme.inline_commands() + readme.block_commands()
    )
)
EPILOGUE_LINES = epilogue_commands()


def test_there_are_command_lines_to_check():
    assert len(TRANSCRIPTS) >= 15
    assert len(PAGE_LINES) >= 25
    assert len(EPILOGUE_LINES) >= 25


# ---- lint -----------------------------------------------------------------------------

EXPANDS = set("*?[]{}()~$`!^")


def unquoted_hazards(line: str) -> list[str]:
    """The characters of `line` that bash or zsh would expand or treat as syntax."""
    hazards, quote, word_start, i = [], "", True, 0
    while i < len(line):
        c = line[i]
        if quote == "'":
            quote = "" if c == "'" else quote
        elif quote == '"':
            if c == "\\":
                i += 1
            elif c == '"':
                quote = ""
            elif c in "!$`":
                hazards.append(f"{c!r} inside double quotes at column {i + 1}")
        elif c in "'\"":
            quote = c
        elif c == "\\":
            i += 1
        elif c.isspace():
            word_start = True
            i += 1
            continue
        elif c in EXPANDS:
            hazards.append(f"unquoted {c!r} at column {i + 1}")
        elif word_start and c in "=#":
            hazards.append(f"a word starting with {c!r} at column {i + 1}")
        word_start = c in "|&;<>" and not quote
        i += 1
    if quote:
        hazards.append("an unterminated quote")
    return hazards


@pytest.mark.parametrize("line", PAGE_LINES + EPILOGUE_LINES + readme.other_shell_lines())
def test_every_argument_a_shell_could_expand_is_quoted(line):
    assert unquoted_hazards(line) == []


def test_no_command_line_is_broken_over_two_lines_of_a_page():
    assert readme.wrapped_commands() == []
    assert len(readme.other_shell_lines()) >= 4


def test_the_lint_finds_what_shells_trip_on():
    assert unquoted_hazards("backprop grad x**2 x=1")
    assert unquoted_hazards('backprop grad "2*dot(x, x)" x=arange(4)')
    assert unquoted_hazards("backprop grad x x=[1,2,3]")
    assert unquoted_hazards('backprop grad "x" x=1   # a comment')
    assert unquoted_hazards('backprop grad "x!" x=1')
    assert unquoted_hazards("backprop grad x =1")
    assert unquoted_hazards('backprop grad "x" x=1   (a note)')
    assert not unquoted_hazards("""backprop grad "2*dot(x, x)" "x=arange(4)" --wrt x,y""")
    assert not unquoted_hazards("""seq 0 1 | backprop grad 'sin(x)' --points - > out.csv""")


# ---- pasted into interactive shells ----------------------------------------------------


def expected_calls(line: str) -> list[list[str]]:
    """The argument lists `backprop` gets from the line, as POSIX quoting reads it."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = list(lexer)
    calls, current = [], None
    for word in [*words, "|"]:
        if current is not None and re.fullmatch(r"[|&;<>]+", word):
            calls.append(current)
            current = None
        elif current is not None:
            current.append(word)
        elif word == "backprop":
            current = []
    return calls


RECORDER = 'backprop() { printf \'%s\\0\' "$#" "$@" >> "$BP_CALLS"; cat > /dev/null; }'


def pasted_calls(name: str, line: str, tmp_path: Path) -> tuple[list[list[str]], str]:
    """Paste the line into an interactive shell whose `backprop` records its arguments."""
    calls = tmp_path / f"calls-{name}"
    env = {
        **os.environ,
        "BP_CALLS": str(calls),
        "HISTFILE": str(tmp_path / "history"),
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [*shell(name), "-i"],
        input=f"{RECORDER}\n{line}\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    fields = calls.read_bytes().decode().split("\0")[:-1] if calls.exists() else []
    out: list[list[str]] = []
    while fields:
        n = int(fields.pop(0))
        out.append(fields[:n])
        del fields[:n]
    return out, done.stderr


# (The Quickstart's and Development's lines run .venv/bin/...: linted above, not recorded.)
CALLING = [line for line in PAGE_LINES + EPILOGUE_LINES if expected_calls(line)]


@pytest.mark.parametrize("name", SHELLS)
@pytest.mark.parametrize("line", CALLING)
def test_pasted_line_gives_backprop_the_arguments_it_means(line, name, tmp_path):
    got, stderr = pasted_calls(name, line, tmp_path)
    assert got == expected_calls(line), stderr[-2000:]


def test_a_pasted_line_that_a_shell_mangles_is_caught(tmp_path):
    mangled = [
        ("bash", 'backprop grad "x!y" x=1'),  # history expansion
        ("zsh", 'backprop grad "x!y" x=1'),
        ("zsh", 'backprop grad "x*x" x=1   # note'),  # no comments when interactive
        ("zsh", 'backprop grad "x" x=[1]'),  # no matches found
    ]
    for name, line in mangled:
        if shutil.which(name) is not None:
            got, _ = pasted_calls(name, line, tmp_path)
            assert got != expected_calls(line), (name, line)
            (tmp_path / f"calls-{name}").unlink(missing_ok=True)


# ---- run for real ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory like a fresh clone's, for lines that read or write files."""
    root = tmp_path_factory.mktemp("shell")
    shutil.copytree(readme.ROOT / "examples", root / "examples")
    (root / "docs").mkdir()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    installed = Path(sys.executable).with_name("backprop")
    if installed.exists():
        (bin_dir / "backprop").symlink_to(installed)
    else:  # run from a checkout without the console script
        script = bin_dir / "backprop"
        script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m backprop_cli "$@"\n')
        script.chmod(0o755)
    # the pages' --values lines read what `backprop train linear --save params.json` writes
    saved = run_line("bash", "backprop train linear --save params.json", root)
    assert saved.returncode == 0, saved.stderr
    return root


def run_line(name: str, line: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    for tool in ("jq", "dot"):
        if re.search(rf"\| {tool}\b", line) and shutil.which(tool) is None:
            if REQUIRE:
                pytest.fail(f"{tool} is not installed")
            pytest.skip(f"{tool} is not installed")
    env = {
        **os.environ,
        "PATH": f"{cwd / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "COLUMNS": str(readme.WIDTH),
    }
    for key in ("FORCE_COLOR", "TERM"):
        env.pop(key, None)
    return subprocess.run(
        [*shell(name), "-o", "pipefail", "-c", line],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("name", SHELLS)
@pytest.mark.parametrize(
    "shown", TRANSCRIPTS, ids=[f"{t.page}: {t.command[:60]}" for t in TRANSCRIPTS]
)
def test_transcript_through_a_real_shell(shown, name, workdir):
    done = run_line(name, shown.command, workdir)
    assert done.returncode in (0, 2), done.stderr
    printed = done.stdout if done.returncode == 0 else done.stderr
    problems = differences(shown.output, printed)
    assert not problems, "\n".join(problems)


OTHER_PAGE_LINES = [
    line
    for line in PAGE_LINES
    if readme.runnable(line)
    and expected_calls(line)
    and line not in {t.command for t in TRANSCRIPTS}
]


@pytest.mark.parametrize("name", SHELLS)
@pytest.mark.parametrize("line", OTHER_PAGE_LINES)
def test_page_line_runs_in_a_real_shell(line, name, workdir):
    done = run_line(name, line, workdir)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("line", [line for line in EPILOGUE_LINES if readme.runnable(line)])
def test_help_example_runs_in_bash(line, workdir):
    done = run_line("bash", line, workdir)
    assert done.returncode == 0, done.stderr[-3000:]
