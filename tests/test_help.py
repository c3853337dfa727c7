"""-h is help everywhere, as --help is; an expression that starts with '-' is still one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import run

COMMANDS = ["grad", "ops", "explain", "jacobian", "hessian", "check", "graph", "train", "diff",
            "codegen"]  # fmt: skip


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


# ---- bare `backprop` ----------------------------------------------------------------------


def test_bare_backprop_prints_the_help_and_exits_0():
    bare = run()
    assert bare.code == 0 and bare.stderr == ""
    assert bare.stdout == run("--help").stdout
    out = subprocess.run(
        [sys.executable, "-m", "backprop_cli"], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stderr == ""
    assert "Usage: backprop [OPTIONS] COMMAND" in out.stdout  # not "python -m backprop_cli"


# ---- completion ---------------------------------------------------------------------------

SCRIPTS = {
    "bash": "complete -o default -F _backprop_completion backprop",
    "zsh": "compdef _backprop_completion backprop",
    "fish": "complete --command backprop",
}


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
@pytest.mark.parametrize("spelled", ["apart", "joined"])
def test_show_completion_prints_the_script_for_the_named_shell(shell, spelled):
    args = ["--show-completion", shell] if spelled == "apart" else [f"--show-completion={shell}"]
    result = run(*args)
    assert result.code == 0, result.stderr
    assert SCRIPTS[shell] in result.stdout and "_BACKPROP_COMPLETE" in result.stdout
    others = [marker for name, marker in SCRIPTS.items() if name != shell]
    assert not any(marker in result.stdout for marker in others)


def test_a_shell_without_completion_is_a_usage_error():
    result = run("--show-completion", "tcsh")
    assert result.code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: --show-completion: no completion for the shell 'tcsh'",
        "hint: the shells: bash, zsh, fish, powershell, pwsh",
    ]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_install_completion_writes_the_script_under_home(shell, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "backprop_cli", "--install-completion", shell],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    written = {
        "bash": tmp_path / ".bash_completions" / "backprop.sh",
        "zsh": tmp_path / ".zfunc" / "_backprop",
        "fish": tmp_path / ".config" / "fish" / "completions" / "backprop.fish",
    }[shell]
    assert str(written) in out.stdout
    assert SCRIPTS[shell] in written.read_text()


def _complete(shell: str, line: str, *args: str) -> list[str]:
    """What the completion script's call back into `backprop` answers for `line`, the
    command line typed so far (the word under the cursor last)."""
    words = line.split(" ")
    env = {**os.environ, "_BACKPROP_COMPLETE": f"complete_{shell}"}
    if shell == "bash":
        env.update(COMP_WORDS=line, COMP_CWORD=str(len(words) - 1))
    else:
        env["_TYPER_COMPLETE_ARGS"] = line
        if shell == "fish":
            env["_TYPER_COMPLETE_FISH_ACTION"] = "get-args"
    out = subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.split("\n")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_completes_commands_and_options(shell):
    commands = " ".join(_complete(shell, "backprop gr"))
    assert "grad" in commands and "graph" in commands and "train" not in commands
    options = " ".join(_complete(shell, "backprop grad --fo"))
    assert "--format" in options and "--wrt" not in options
    assert "--epochs" in " ".join(_complete(shell, "backprop train --ep"))


def test_completion_reaches_typer_past_the_quick_grad_path():
    # the arguments a quick `grad` would run are only read as a completion request
    answer = _complete("bash", "backprop grad --fo", "grad", "x", "x=1")
    assert "--format" in answer and "value" not in " ".join(answer)


def _shim(tmp_path):
    """A `backprop` on PATH that runs this checkout, as the installed command would."""
    shim = tmp_path / "bin" / "backprop"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m backprop_cli "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_bash_script_completes_in_bash(tmp_path):
    script = (
        "source <(backprop --show-completion bash)\n"
        "COMP_WORDS=(backprop gr); COMP_CWORD=1; _backprop_completion backprop\n"
        'echo "${COMPREPLY[*]}"\n'
        "COMP_WORDS=(backprop grad --fo); COMP_CWORD=2; _backprop_completion backprop\n"
        'echo "${COMPREPLY[*]}"\n'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        capture_output=True, text=True, timeout=120, check=False, env=_shim(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    commands, options = out.stdout.splitlines()
    assert commands.split() == ["grad", "graph"]
    assert "--format" in options.split()


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
def test_the_zsh_script_completes_in_zsh(tmp_path):
    # compdef and _arguments belong to zsh's completion system: here they print what
    # they are given
    script = (
        "compdef() { print -r -- compdef $* }\n"
        "_arguments() { print -r -- $* }\n"
        "source <(backprop --show-completion zsh)\n"
        "words=(backprop gr); CURRENT=2; _backprop_completion\n"
        "words=(backprop grad --fo); CURRENT=3; _backprop_completion\n"
    )
    out = subprocess.run(
        ["zsh", "-f", "-c", script],
        capture_output=True, text=True, timeout=120, check=False, env=_shim(tmp_path),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    registered, commands, options = out.stdout.splitlines()
    assert registered == "compdef _backprop_completion backprop"
    assert '"grad":' in commands and '"graph":' in commands and '"train":' not in commands
    assert '"--format":' in options


# ---- help panels, types and wrapping ------------------------------------------------------

PANELLED = ["grad", "explain", "jacobian", "hessian", "check", "graph", "train", "diff"]
GRAD_PANELS = ["Arguments", "Options", "Input", "Points", "Checks", "Output", "Limits",
               "Model specs"]  # fmt: skip


def _help(command: str, columns: int, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    result = run(*([command] if command else []), "--help")
    assert result.code == 0, result.stderr
    return result.stdout


def _panels(page: str) -> dict[str, list[str]]:
    """Each panel's title and the option names on its rows."""
    panels: dict[str, list[str]] = {}
    title = None
    for line in page.splitlines():
        if line.startswith("╭─ "):
            title = line[3:].split(" ─")[0]
            panels[title] = []
        elif line.startswith("│ -") and title is not None:
            words = line[2:].split()
            while words and words[0].startswith("-"):  # the names, before type and help
                panels[title].append(words.pop(0))
    return panels


def _options(command: str) -> list[str]:
    import typer

    from backprop_cli.cli.app import app

    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return [
        name
        for param in click_command.params
        if param.param_type_name == "option"
        for name in [*param.opts, *param.secondary_opts]
    ]


def test_grads_options_sit_in_the_named_panels_in_order(monkeypatch):
    panels = _panels(_help("grad", 120, monkeypatch))
    assert list(panels) == GRAD_PANELS
    assert panels["Options"] == ["--help", "-h"]
    assert {"--file", "--values", "--wrt"} <= set(panels["Input"])
    assert panels["Points"] == ["--points", "--on-error", "--check"]
    assert {"--torch", "--no-torch", "--symbolic", "--no-symbolic"} <= set(panels["Checks"])
    assert {"--format", "--output", "-o", "--digits", "--graph"} <= set(panels["Output"])
    assert {"--max-length", "--symbolic-timeout"} <= set(panels["Limits"])
    assert {"--loss", "--form", "--seed", "--init"} <= set(panels["Model specs"])


@pytest.mark.parametrize("command", PANELLED)
def test_every_option_of_a_long_command_is_in_a_named_panel(command, monkeypatch):
    panels = _panels(_help(command, 120, monkeypatch))
    assert panels.get("Options") == ["--help", "-h"], "an option with no panel: see PANELS"
    shown = [name for names in panels.values() for name in names]
    assert sorted(shown) == sorted([*_options(command), "--help", "-h"])


def test_trains_panels(monkeypatch):
    panels = _panels(_help("train", 120, monkeypatch))
    assert list(panels)[:6] == ["Arguments", "Options", "Input", "Model specs", "Training",
                                "Checks"]  # fmt: skip
    assert {"--x", "--y", "--data", "--target"} == set(panels["Input"])
    assert {"--lr", "--epochs", "--optimizer", "--seed"} <= set(panels["Training"])
    assert panels["Checks"] == ["--check"]


@pytest.mark.parametrize("columns", [60, 80, 120])
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_no_bool_type_and_fits_the_terminal(command, columns, monkeypatch):
    page = _help(command, columns, monkeypatch)
    assert "<bool>" not in page
    assert "9223372036854775807" not in page  # --seed's bound is only int64's
    assert max(len(line) for line in page.splitlines()) <= columns


@pytest.mark.parametrize("columns", [60, 80])
@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_option_names_are_never_cut(command, columns, monkeypatch):
    page = _help(command, columns, monkeypatch)
    names = _options(command) if command else ["--install-completion", "--show-completion"]
    rows = [w for line in page.splitlines() if line.startswith("│ -") for w in line.split()]
    for name in names:
        assert name in rows, (name, columns)


@pytest.mark.parametrize("command", COMMANDS)
def test_docstrings_are_reflowed_not_hard_wrapped(command, monkeypatch):
    """Each paragraph of the description is one line on a wide terminal: the source's line
    breaks are not kept (they made ragged lines on every other width)."""
    import inspect

    from backprop_cli.cli.app import app

    info = next(i for i in app.registered_commands if (i.name or i.callback.__name__) == command)  # type: ignore[union-attr]
    paragraphs = inspect.cleandoc(inspect.getdoc(info.callback) or "").split("\n\n")
    page = [line.strip() for line in _help(command, 400, monkeypatch).splitlines()]
    for paragraph in paragraphs:
        assert " ".join(paragraph.split()) in page, paragraph


@pytest.mark.parametrize("command", ["grad", "check", "explain", "graph", "jacobian"])
def test_allow_nonfinite_names_points_only_where_there_are_points(command, monkeypatch):
    page = _help(command, 200, monkeypatch)
    (row,) = [line for line in page.splitlines() if "--allow-nonfinite" in line]
    assert ("--points" in row) == ("--points" in _options(command)), row


def test_a_long_choice_list_moves_into_the_help(monkeypatch):
    rows = [line for line in _help("grad", 120, monkeypatch).splitlines() if "--format" in line]
    assert rows[0].split()[1:3] == ["--format", "FORMAT"]
    page = " ".join(_help("grad", 400, monkeypatch).split())
    assert "One of: table, json," in page
