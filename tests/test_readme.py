"""README's transcripts and numbers are real outputs: regenerate them and compare.

What is deterministic is compared exactly and rounding noise within the documented
tolerances (tests/transcripts.py), so the README holds on any processor. The transcripts are
made at 88 columns, as README says. UPDATE_README=1 rewrites the blocks from the current
output instead (then review the diff). tests/test_shell.py runs the same command lines
through real shells.
"""

from __future__ import annotations

import json
import os
import shlex

import pytest

from tests import readme
from tests.conftest import run
from tests.transcripts import differences, json_differences

README = readme.text()
blocks = readme.blocks


def strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def same(shown: str, actual: str) -> bool:
    """Compare a README block with fresh output, or rewrite the block under UPDATE_README."""
    if os.environ.get("UPDATE_README") and strip(shown) != strip(actual):
        text = readme.README_PATH.read_text()
        assert text.count(shown) == 1, "the block to update is not unique"
        fixed = "\n".join(line.rstrip() for line in actual.splitlines()) + "\n"
        readme.README_PATH.write_text(text.replace(shown, fixed))
        return True
    problems = differences(shown, actual)
    assert not problems, "\n".join(problems)
    return True


@pytest.fixture(autouse=True)
def _width(monkeypatch):
    monkeypatch.setenv("COLUMNS", str(readme.WIDTH))


TRANSCRIPTS = readme.transcripts()


def test_readme_has_its_transcripts():
    assert len(TRANSCRIPTS) >= 15
    assert f"{readme.WIDTH} columns" in README


@pytest.mark.parametrize("shown", TRANSCRIPTS, ids=[t.command[:60] for t in TRANSCRIPTS])
def test_transcript(shown, monkeypatch):
    """The block is the command line, then what it prints (stderr when it fails)."""
    monkeypatch.chdir(readme.ROOT)
    args = shlex.split(shown.command)
    assert args[0] == "backprop"
    result = run(*args[1:])
    assert result.code in (0, 2), result.stderr
    printed = result.stdout if result.code == 0 else result.stderr
    assert same(shown.block, f"$ {shown.command}\n{printed}")


def test_kink_transcript_names_the_kinks_on_stderr():
    result = run("grad", "relu(x) * y + max(x, y)", "x=0", "y=0")
    assert result.code == 0
    assert "warning: node 1 (relu) is evaluated on its kink" in result.stderr
    assert "kink" in README.split("relu(x) * y + max(x, y)", 2)[2][:3000]


def test_json_contract_example():
    block = blocks("json")[0]
    result = run("grad", "q = x + y; f = q * z", "x=-2", "y=5", "z=-4", "--format", "json")
    shown, actual = json.loads(block), result.json()
    for data in (shown, actual):
        data["checks"]["torch"].pop("version")  # depends on the installed torch
    if os.environ.get("UPDATE_README"):
        same(block, result.stdout)
    else:
        assert json_differences(shown, actual) == []


def test_the_embedded_picture_shows_the_current_graph():
    svg = (readme.ROOT / "docs" / "sigmoid_neuron.svg").read_text()
    assert "docs/sigmoid_neuron.svg" in README
    for label in (">w0<", ">exp<", ">0.7311…<", "∂ &#45;0.1966…", "∂ 0.3932…"):
        assert label in svg, label


def test_ops_table():
    table = run("ops", "--format", "markdown").stdout
    assert table in README


def test_quickstart_has_two_commands_and_ci_runs_the_same_tests():
    quickstart = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = blocks("sh")[0].strip().splitlines()
    assert len(commands) == 2 and commands[0] in quickstart
    assert "backprop grad" in commands[0]
    ci = (readme.ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
