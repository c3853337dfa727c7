"""What each command imports at start-up, proved in fresh processes: --help read from its
cache imports no typer or Rich, the quick paths of ops, graph, explain and train no typer,
and none of them a library it does not need; each prints what typer's path prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backprop_cli.cli.entry import _QUICK, quick_args
from tests.conftest import run

HEAVY = ("typer", "pydantic", "rich", "numpy", "sympy", "torch", "matplotlib", "plotext")


def started(args: list[str], tmp_path: Path) -> tuple[int, str, str, set[str]]:
    """`backprop ARGS` in a fresh process: exit code, stdout, stderr and which of HEAVY it
    imported, with its help cache in tmp_path."""
    seen = tmp_path / "modules.txt"
    code = (
        "import sys\n"
        "from backprop_cli.cli.entry import main\n"
        f"sys.argv = ['backprop', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        f"    loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        f"    open({str(seen)!r}, 'w').write(' '.join(loaded))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    return done.returncode, done.stdout, done.stderr, set(seen.read_text().split())


def same_as_typer(args: list[str], tmp_path: Path) -> set[str]:
    code, out, err, modules = started(args, tmp_path)
    typer = run(*args)
    assert (code, out, err) == (typer.code, typer.stdout, typer.stderr)
    return modules


def kept(args: list[str], tmp_path: Path) -> set[str]:
    """The modules of a run that finds the help kept by the run before; once more if the
    package's code changed in between (its files are part of the key)."""
    modules = same_as_typer(args, tmp_path)
    return same_as_typer(args, tmp_path) if "typer" in modules else modules


@pytest.mark.parametrize("args", [["--help"], [], ["-h"], ["graph", "--help"]])
def test_help_is_drawn_once_then_read_without_typer_or_rich(args, tmp_path):
    first = same_as_typer(args, tmp_path)
    assert {"typer", "rich"} <= first  # drawn, and kept
    assert kept(args, tmp_path) == set()


def test_the_kept_help_follows_the_terminal_width(tmp_path, monkeypatch):
    same_as_typer(["--help"], tmp_path)
    monkeypatch.setenv("COLUMNS", "60")
    assert "typer" in same_as_typer(["--help"], tmp_path)  # another width: drawn anew
    assert kept(["--help"], tmp_path) == set()


def test_version_imports_nothing_heavy(tmp_path):
    assert same_as_typer(["--version"], tmp_path) == set()


@pytest.mark.parametrize(
    "args",
    [
        ["ops"],
        ["ops", "--format", "json"],
        ["ops", "--format=csv"],
        ["graph", "(x+y)*z", "x=1", "y=2", "z=3", "--format", "dot"],
        ["graph", "(x+y)*z", "x=1", "y=2", "z=3"],
        ["graph", "q = x + y; f = q * z", "--format", "mermaid"],
        ["graph", "x*", "x=1"],
    ],
)
def test_ops_and_graph_start_without_typer_sympy_or_torch(args, tmp_path):
    assert quick_args(args[0], args[1:]) is not None
    modules = same_as_typer(args, tmp_path)
    assert not modules & {"typer", "pydantic", "sympy", "torch", "matplotlib"}


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "(x*w - y)**2", "x=2", "w=1", "y=4", "--wrt", "w"],
        ["explain", "x*x + x", "x=3", "--mode", "forward", "--format", "json"],
    ],
)
def test_explain_starts_without_typer_or_torch(args, tmp_path):
    modules = same_as_typer(args, tmp_path)
    assert not modules & {"typer", "pydantic", "torch"}


@pytest.mark.parametrize(
    "args",
    [
        ["train", "linear", "--epochs", "5"],
        ["train", "--list", "--format", "json"],
        ["train", "linear", "--epochs", "3", "--lr", "0.1", "--format", "json"],
    ],
)
def test_train_starts_without_typer_sympy_or_torch(args, tmp_path):
    modules = same_as_typer(args, tmp_path)
    assert not modules & {"typer", "pydantic", "sympy", "torch"}


@pytest.mark.parametrize(
    "args",
    [
        ["ops", "--help"],
        ["ops", "extra"],
        ["ops", "--format", "json", "--format", "csv"],
        ["ops", "-o=ops.json"],
        ["graph", "-x*y", "x=1", "y=2"],
        ["graph", "x*y", "--", "x=1"],
        ["graph", "x*y", "--dpi", "9"],
        ["graph", "x*y", "--max-nodes", "-1"],
        ["graph", "x*y", "--legend=no"],
        ["explain", "x*y", "--wrt"],
        ["train", "linear", "mlp"],
        ["train", "--epochs", "1e3"],
        ["train", "--lr", "inf"],
    ],
)
def test_anything_unusual_goes_to_typer(args):
    assert quick_args(args[0], args[1:]) is None


@pytest.mark.parametrize(
    "args",
    [
        ["ops", "--format", "xml"],
        ["graph", "x*y", "x=1", "y=2", "--format", "table", "--rankdir", "RL"],
        ["train", "--optimizer", "lbfgs"],
    ],
)
def test_a_value_that_is_not_a_choice_gets_typers_message(args, tmp_path):
    code, _, err, modules = started(args, tmp_path)
    assert code == 2 and "is not one of" in err
    assert "typer" in modules


def test_the_quick_options_are_the_commands_own():
    """Each option the quick paths read is the command's, read as typer reads it: a flag
    as a flag, a number in the same range, a choice among the same values."""
    from typer.main import get_command

    from backprop_cli.cli.app import app

    group = get_command(app)
    for name, (_, options) in _QUICK.items():
        command = group.commands[name]  # type: ignore[attr-defined]
        params = {p.name: p for p in command.params}
        for option, (field, kind) in options.items():
            param = params[field]
            assert option in [*param.opts, *param.secondary_opts], (name, option)
            described = param.type_descriptor
            if isinstance(kind, bool):
                assert param.is_flag, (name, option)
            elif isinstance(kind, tuple):
                low, high = kind[1:]
                assert (param.min, param.max) == (low, None if high == float("inf") else high)
            elif isinstance(kind, str):
                assert [c.value for c in described.choices] == [c.value for c in _enum(kind)]
            else:
                assert kind is str and not described.is_choice and not described.is_ranged


def _enum(name):
    from backprop_cli.cli import common, explain, graph, ops, train

    for module in (ops, graph, explain, train, common):
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(name)
