"""-h is help everywhere, as --help is; an expression that starts with '-' is still one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import run

COMMANDS = ["grad", "ops", "explain", "jacobian", "hessian", "check", "graph", "train", "diff"]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_dash_h_is_help(command):
    words = [command] if command else []
    short, long = run(*words, "-h"), run(*words, "--help")
    assert short.code == 0 and short.stdout == long.stdout
    assert "Usage: backprop" in short.stdout and "-h" in short.stdout
    assert short.stderr == ""


@pytest.mark.parametrize("where", ["before", "after"])
def test_dash_h_among_other_arguments_is_help_and_runs_nothing(where):
    args = (
        ["train", "-h", "--epochs", "3"] if where == "before" else ["train", "--epochs", "3", "-h"]
    )
    result = run(*args)
    assert result.code == 0 and "Usage: backprop train" in result.stdout
    assert "epoch" not in result.stdout.split("Usage")[0]


def test_the_quick_path_hands_dash_h_to_help():
    out = subprocess.run(
        [sys.executable, "-m", "backprop_cli", "grad", "-h"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and "grad [OPTIONS]" in out.stdout


def test_an_expression_that_starts_with_a_minus_is_still_an_expression():
    result = run("grad", "-x*y", "x=1", "y=2", "--format", "csv", "--no-torch", "--no-symbolic")
    assert result.code == 0 and result.stdout.splitlines()[-1] == "1,2,-2,-2,-1"
    negated = run("grad", "(-h)", "h=1", "--format", "csv", "--no-torch", "--no-symbolic")
    assert negated.code == 0 and negated.stdout.splitlines()[-1] == "1,-1,-1"
