"""The quick path of `backprop grad` (no typer) reads exactly what typer reads, and gives the
same output and exit code; anything it does not know goes to typer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from backprop_cli.cli.entry import quick_grad_args
from tests.conftest import run

SAME = [
    ["grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--no-torch", "--no-symbolic"],
    ["grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--format", "json", "--no-torch"],
    ["grad", "x*y", "--format=csv", "x=1", "y=2", "--wrt", "y", "--no-torch", "--no-symbolic"],
    ["grad", "x*y", "x=1", "y=2", "--dtype", "float32", "--format", "jsonl", "--no-torch"],
    ["grad", "sigmod(x)", "x=1"],
    ["grad", "x*", "x=1", "--no-torch"],
    ["grad", "x*y", "x=1", "--no-torch", "--no-symbolic"],
    ["grad", "2*x*x", "x=[0,1,2,3]", "--seed-grad", "[1,1,1,1]", "--no-torch", "--format", "csv"],
    ["grad", "x**3", "x=2", "--order", "2", "--no-torch", "--format", "csv"],
    ["grad", "x*y", "x=1", "y=2", "--no-torch", "--device", "cuda"],
    ["grad", "log(x)", "x=-1", "--no-torch", "--no-symbolic", "--format", "markdown"],
    ["grad", "x*y", "x=nan", "y=2", "--allow-nonfinite", "--no-torch", "--format", "json"],
    ["grad", "x*y", "x=-inf", "y=2", "--no-torch", "--no-symbolic"],
]


def quick(args, tmp_path):
    code = (
        "import sys\n"
        "from backprop_cli.cli.entry import main\n"
        f"sys.argv = ['backprop', *{args!r}]\n"
        "main()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    return out.returncode, out.stdout, out.stderr


@pytest.mark.parametrize("args", SAME, ids=lambda a: " ".join(a[1:3]))
def test_quick_path_matches_typer(args, tmp_path, monkeypatch):
    assert quick_grad_args(args[1:]) is not None  # these do take the quick path
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = quick(args, tmp_path)
    typer = run(*args)
    assert code == typer.code
    assert out == typer.stdout
    assert err == typer.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["x*y", "--", "x=1"],
        ["-x*y", "x=1", "y=2"],
        ["x*y", "--no-such-option"],
        ["x*y", "--format", "xml"],
        ["x*y", "--order", "3"],
        ["x*y", "--wrt"],
        ["x*y", "--no-torch", "--no-torch"],
        ["x*y", "--no-torch=1"],
        ["--no-torch"],
    ],
)
def test_anything_unusual_goes_to_typer(args):
    assert quick_grad_args(args) is None


def test_quick_path_parses_values_and_options():
    fields = quick_grad_args(["w*x", "w=2", "--wrt", "w", "x=3", "--max-rows=5", "--no-torch"])
    assert fields == {
        "expression": "w*x",
        "values": ["w=2", "x=3"],
        "wrt": "w",
        "max_rows": 5,
        "torch_check": False,
        "given": frozenset({"wrt", "max_rows", "torch_check"}),
    }


def test_a_parse_error_with_sympys_child_started_early(tmp_path):
    """The child started early for SymPy is simply left unused: one error line, exit 2."""
    code, out, err = quick(["grad", "bad(", "x=1"], tmp_path)
    assert code == 2 and out == "" and err.startswith("error: expression: column 1: unknown")


@pytest.mark.parametrize("value", ["２", "٣", " 1_0 ", "1_0"])
def test_numbers_are_read_as_typer_reads_them(value):
    assert quick_grad_args(["x*y", "x=1", "y=2", "--max-rows", value]) is None


def test_a_dead_early_child_is_replaced_by_a_fresh_one():
    import os
    import signal

    from backprop_cli.checks import sandbox, symbolic
    from backprop_cli.core.parse import parse

    sandbox.prestart()
    assert sandbox._spare is not None
    pid = sandbox._spare[0]
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    job = sandbox.Bounded(
        symbolic.partials,
        (parse("x*y"), {"x": 2.0, "y": 3.0}, ["x"], False, False),
        seconds=30,
        memory_mb=2048,
    )
    messages = job.collect()
    assert job.status == "done"
    assert messages[0]["partials"]["x"]["formula"] == "y"
