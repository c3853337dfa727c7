"""The transcripts and numbers of README.md and of every page of the documentation site
(docs/*.md) are real outputs: regenerate them and compare.

What is deterministic is compared exactly and rounding noise within the documented
tolerances (tests/transcripts.py), so the pages hold on any processor. The transcripts are
made at 88 columns, as the pages say. UPDATE_README=1 rewrites the blocks from the current
output instead, in whichever page holds them (then review the diff); it also redraws the
picture README embeds. tests/test_shell.py runs the same command lines through real
shells.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests import readme
from tests.conftest import run
from tests.transcripts import differences, json_differences

README = readme.text()
UPDATE = bool(os.environ.get("UPDATE_README"))


def strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def same(shown: str, actual: str, path: Path = readme.README_PATH) -> bool:
    """Compare a block of a page with fresh output, or rewrite the block under UPDATE_README."""
    if UPDATE and strip(shown) != strip(actual):
        fixed = "\n".join(line.rstrip() for line in actual.splitlines()) + "\n"
        readme.replace_block(path, shown, fixed)
        return True
    problems = differences(shown, actual)
    assert not problems, "\n".join(problems)
    return True


@pytest.fixture(autouse=True)
def _width(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(readme.WIDTH))


TRANSCRIPTS = readme.transcripts()
GETTING_STARTED = readme.DOCS / "getting-started.md"


def test_the_pages_have_their_transcripts():
    assert len(TRANSCRIPTS) >= 15
    assert len({t.page for t in TRANSCRIPTS}) >= 8  # the site's pages show them, not one page
    assert len([t for t in TRANSCRIPTS if t.path == readme.README_PATH]) >= 4  # README's tour
    for page in (readme.README_PATH, GETTING_STARTED):
        assert f"{readme.WIDTH} columns" in readme.text(page), readme.name(page)


def test_the_machinery_reads_every_page():
    """A transcript on a docs page is found with its page, and its page is what is rewritten."""
    found = {t.page for t in TRANSCRIPTS}
    assert "README.md" in found and "docs/grad.md" in found
    for t in TRANSCRIPTS:
        assert t.block in readme.text(t.path)


def test_replace_block_rewrites_the_page_that_holds_the_block(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```\n$ backprop ops\nold\n```\n")
    readme.replace_block(page, "$ backprop ops\nold\n", "$ backprop ops\nnew\n")
    assert page.read_text() == "# A page\n\n```\n$ backprop ops\nnew\n```\n"
    with pytest.raises(AssertionError):
        readme.replace_block(page, "not there\n", "x\n")


@pytest.mark.parametrize(
    "shown", TRANSCRIPTS, ids=[f"{t.page}: {t.command[:60]}" for t in TRANSCRIPTS]
)
def test_transcript(shown, monkeypatch):
    """The block is the command line, then what it prints (stderr when it fails)."""
    monkeypatch.chdir(readme.ROOT)
    args = shlex.split(shown.command)
    assert args[0] == "backprop"
    result = run(*args[1:])
    assert result.code in (0, 2), result.stderr
    printed = result.stdout if result.code == 0 else result.stderr
    assert same(shown.block, f"$ {shown.command}\n{printed}", shown.path)


def test_kink_transcript_names_the_kinks_on_stderr():
    command = "relu(x) * y + max(x, y)"
    result = run("grad", command, "x=0", "y=0")
    assert result.code == 0
    assert "warning: node 1 (relu) is evaluated on its kink" in result.stderr
    (page,) = {t.path for t in TRANSCRIPTS if command in t.command}
    assert "kink" in readme.text(page).split(command, 2)[2][:3000]


def _contract_example() -> tuple[Path, str]:
    for path, block in readme.all_blocks("json"):
        if '"expression": "q = x + y; f = q * z"' in block:
            return path, block
    raise AssertionError("no page shows the JSON report of q = x + y; f = q * z")


def test_json_contract_example():
    path, block = _contract_example()
    assert path == readme.DOCS / "grad.md"
    result = run("grad", "q = x + y; f = q * z", "x=-2", "y=5", "z=-4", "--format", "json")
    if UPDATE:
        same(block, result.stdout, path)
        return
    shown, actual = json.loads(block), result.json()
    for data in (shown, actual):
        data["checks"]["torch"].pop("version")  # depends on the installed torch
    assert json_differences(shown, actual) == []


PICTURE = readme.DOCS / "sigmoid_neuron.svg"


def _svg_text(svg: str) -> list[str]:
    return sorted(re.findall(r"<text\b[^>]*>(.*?)</text>", svg, re.DOTALL))


def test_the_embedded_picture_shows_the_current_graph(tmp_path, monkeypatch):
    """README's picture is what the command it names draws now: the same labels, values and
    gradients (the layout may differ between Graphviz versions). UPDATE_README redraws it."""
    assert "docs/sigmoid_neuron.svg" in README
    (line,) = {c for c in readme.inline_commands() if c.endswith("-o docs/sigmoid_neuron.svg")}
    if shutil.which("dot") is None:
        if os.environ.get("BACKPROP_REQUIRE_DOT"):
            pytest.fail("dot is not installed (BACKPROP_REQUIRE_DOT=1)")
        pytest.skip("Graphviz's dot is not installed")
    fresh = tmp_path / "picture.svg"
    args = shlex.split(line)[1:]
    args[-1] = str(fresh)
    monkeypatch.chdir(readme.ROOT)
    result = run(*args)
    assert result.code == 0, result.stderr
    drawn, shown = fresh.read_text(), PICTURE.read_text()
    if UPDATE and _svg_text(drawn) != _svg_text(shown):
        PICTURE.write_text(drawn)
        shown = drawn
    assert _svg_text(shown) == _svg_text(drawn)
    for label in (">w0<", ">exp<"):
        assert label in shown, label


OPS_PAGE = readme.DOCS / "expressions.md"


def test_ops_table():
    """The expressions page shows `backprop ops --format markdown` as it prints now."""
    table = run("ops", "--format", "markdown").stdout
    page = readme.text(OPS_PAGE)
    start = page.index("| op | written as |")
    end = page.find("\n\n", start)
    shown = page[start : len(page) if end < 0 else end + 1]
    if UPDATE and shown.strip() != table.strip():
        readme.replace_block(OPS_PAGE, shown, table.strip() + "\n")
        return
    assert shown.strip() == table.strip()


def test_quickstart_has_two_commands_and_ci_runs_the_same_tests():
    quickstart = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = readme.blocks("sh")[0].strip().splitlines()
    assert len(commands) == 2 and commands[0] in quickstart
    assert "backprop grad" in commands[0]
    ci = (readme.ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
    # the site's getting-started page gives the same two commands
    assert readme.blocks("sh", GETTING_STARTED)[0].strip().splitlines() == commands
