"""Exit codes hold whatever the standard streams are: closed, full, or unable to encode the
reports' symbols; a reader that stops early ends the output quietly (exit 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent.parent
PYTHON = f'"{sys.executable}" -m backprop_cli'


def shell(line: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`line` through bash, with `backprop` standing for this checkout's command."""
    environment = {**os.environ, "PYTHONPATH": str(HERE), **env}
    return subprocess.run(
        ["bash", "-c", line.replace("backprop ", f"{PYTHON} ")],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


GRAD = 'backprop grad "x*y" x=1 y=2 --no-torch --no-symbolic'


def test_closed_stdout_is_one_line_and_exit_2():
    done = shell(f"{GRAD} >&-")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: standard output is closed, so there is nowhere to write the result"
    ]
    for line in ("backprop --help >&-", "backprop train --epochs 1 >&-", "backprop ops >&-"):
        assert shell(line).returncode == 2, line


def test_closed_stdin_is_an_error_only_when_it_is_read():
    for line in (
        "echo x | backprop grad - x=1 --no-torch <&-",
        "backprop grad --file - x=1 --no-torch <&-",
        "backprop grad x --points - --no-torch <&-",
        "backprop train linear --data - <&-",
    ):
        done = shell(line)
        assert done.returncode == 2, (line, done.stderr)
        assert "standard input is closed" in done.stderr and "Traceback" not in done.stderr
    assert shell(f"{GRAD} <&-").returncode == 0


def test_an_encoding_without_the_symbols_is_a_clear_error():
    for line in (GRAD, "backprop ops", "backprop train linear --epochs 2"):
        done = shell(line, PYTHONIOENCODING="ascii")
        assert done.returncode == 2, line
        assert done.stderr.startswith("error: the output's encoding (ascii) cannot show")
        assert "PYTHONIOENCODING=utf-8" in done.stderr and "internal error" not in done.stderr


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_ascii_output_is_written_under_any_encoding(encoding):
    for line in (
        f"{GRAD} --format json",
        'backprop explain "x*y" x=1 y=2 --format latex',
        "backprop train linear --epochs 2 --format jsonl",
        "backprop --version",
    ):
        done = shell(line, PYTHONIOENCODING=encoding)
        assert done.returncode == 0, (line, done.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_stderr_keeps_the_exit_code():
    assert shell('backprop grad "sigmod(x)" x=1 2>/dev/full').returncode == 2
    assert shell(f"{GRAD} 2>/dev/full").returncode == 0
    assert shell(f"{GRAD} 2>&-").returncode == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_a_full_stdout_is_exit_2():
    done = shell(f"{GRAD} >/dev/full")
    assert done.returncode == 2 and "cannot write the output" in done.stderr


@pytest.mark.parametrize(
    "line",
    [
        "backprop --help",
        "backprop grad --help",
        "backprop train --help",
        "backprop ops",
        "backprop ops --format json",
        "backprop train --list",
        GRAD,
    ],
)
def test_a_reader_that_stops_early_is_exit_0(line):
    done = shell(f"set -o pipefail; {line} | head -c5 > /dev/null")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
