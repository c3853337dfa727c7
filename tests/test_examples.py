"""Every example in examples/ runs as its header says and reproduces the published numbers."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
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


def expectations(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ")
        for line in path.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


@pytest.mark.parametrize("path", SESSIONS, ids=[p.stem for p in SESSIONS])
def test_training_session_prints_the_published_lines(path, monkeypatch):
    monkeypatch.chdir(path.parent.parent)
    lines = path.read_text().splitlines()
    command = next(line for line in reversed(lines) if line and not line.startswith("#"))
    args = shlex.split(command)
    assert args[0] == "$BACKPROP"
    result = run(*args[1:])
    assert result.code == 0, result.stderr
    printed = result.stdout.splitlines()
    for line in expectations(path):
        assert line in printed


# The scripts as a user runs them after the Quickstart: `sh examples/x.sh`, with no
# environment activated, so `backprop` is not on PATH.
BARE_PATH = "/usr/bin:/bin"
INSTALLED = Path(sys.executable).with_name("backprop")


def run_script(
    path: Path, env: dict[str, str], cwd: Path, shell: str = "sh"
) -> subprocess.CompletedProcess[str]:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    return subprocess.run(
        [shell, str(path)], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize("path", SESSIONS, ids=[p.stem for p in SESSIONS])
def test_session_runs_with_the_program_named_by_BACKPROP(path, tmp_path):
    if not INSTALLED.exists():
        pytest.skip("the console script is not installed beside this python")
    done = run_script(path, {"PATH": BARE_PATH, "BACKPROP": str(INSTALLED)}, tmp_path)
    assert done.returncode == 0, done.stderr
    for line in expectations(path):
        assert line in done.stdout.splitlines()


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh"])
@pytest.mark.parametrize("path", SESSIONS, ids=[p.stem for p in SESSIONS])
def test_session_finds_the_checkouts_environment(path, shell, tmp_path):
    venv = path.parent.parent / ".venv" / "bin" / "backprop"
    if not venv.exists():
        pytest.skip("no .venv in this checkout (the Quickstart makes one)")
    done = run_script(path, {"PATH": BARE_PATH}, tmp_path, shell)
    assert done.returncode == 0, done.stderr
    assert expectations(path)[0] in done.stdout.splitlines()


def test_session_without_backprop_says_how_to_get_it(tmp_path):
    examples = tmp_path / "examples"
    shutil.copytree(SESSIONS[0].parent / "lib", examples / "lib")
    for path in SESSIONS:
        shutil.copy(path, examples / path.name)
    done = run_script(examples / SESSIONS[0].name, {"PATH": BARE_PATH}, tmp_path)
    assert done.returncode == 127
    assert done.stdout == ""
    assert "backprop not found" in done.stderr and ".venv/bin/activate" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
