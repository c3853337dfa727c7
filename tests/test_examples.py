"""Every example in examples/ runs as its header says and reproduces the published numbers."""

from __future__ import annotations

import shlex
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import run

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.bp"))


def header(path: Path, key: str) -> str:
    for line in path.read_text().splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path.name} has no '# {key}:' line")


def test_there_are_examples():
    assert len(EXAMPLES) >= 6


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_reproduces_its_numbers(path, monkeypatch):
    monkeypatch.chdir(path.parent.parent)
    args = shlex.split(header(path, "run"))
    assert args[0] == "backprop"
    result = run(*args[1:], "--format", "json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["ok"] is True
    for item in header(path, "expect").split():
        key, text = item.split("=")
        # The published figure is rounded to the digits it shows.
        tol = 0.5 * 10 ** Decimal(text).as_tuple().exponent + 1e-12
        got = data["value"] if key == "value" else data["gradient"][key.removeprefix("d_")]
        assert got == pytest.approx(float(text), abs=tol), (key, got)


SESSIONS = sorted((Path(__file__).parent.parent / "examples").glob("*.sh"))


def test_there_are_training_sessions():
    assert len(SESSIONS) >= 2


@pytest.mark.parametrize("path", SESSIONS, ids=[p.stem for p in SESSIONS])
def test_training_session_prints_the_published_lines(path, monkeypatch):
    monkeypatch.chdir(path.parent.parent)
    lines = path.read_text().splitlines()
    command = next(line for line in reversed(lines) if line and not line.startswith("#"))
    args = shlex.split(command)
    assert args[0] == "backprop"
    result = run(*args[1:])
    assert result.code == 0, result.stderr
    printed = result.stdout.splitlines()
    for line in lines:
        if line.startswith("# expect: "):
            assert line.removeprefix("# expect: ") in printed
