"""`backprop explain --step`: without a terminal every step is printed, a line each, with
the engine's numbers; in a real pseudo-terminal each key moves one step, and q, Esc and
Ctrl-C leave at once with the terminal as it was."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from backprop_cli.analyses.walk import walk
from backprop_cli.cli import step as keys
from backprop_cli.core.parse import parse
from backprop_cli.render import numbers
from backprop_cli.render.step import Steps, window
from tests.conftest import TERMINAL_VARIABLES, run

ROOT = Path(__file__).parent.parent
CS231N = ["(x+y)*z", "x=-2", "y=5", "z=-4"]
SIGMOID = ["examples/sigmoid_neuron.bp", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"]
STEP_LINE = re.compile(r"^step (\d+) of (\d+) · (forward|backward): (.*)$")
GRADIENT = re.compile(r"^  ∂(\w+)/∂(\w+) = (\S+)$")

CS231N_STEPS = [
    "forward: x = -2  (a variable)",
    "forward: y = 5  (a variable)",
    "forward: t1 = x + y = 3",
    "forward: z = -4  (a variable)",
    "forward: f = t1 * z = -12",
    "backward: ∂f/∂t1 += ∂f/∂f · ∂f/∂t1 (local) = 1 · -4 = -4  (so far -4)",
    "backward: ∂f/∂z += ∂f/∂f · ∂f/∂z (local) = 1 · 3 = 3  (so far 3)",
    "backward: ∂f/∂x += ∂f/∂t1 · ∂t1/∂x = -4 · 1 = -4  (so far -4)",
    "backward: ∂f/∂y += ∂f/∂t1 · ∂t1/∂y = -4 · 1 = -4  (so far -4)",
]


def stepped(*args: str) -> str:
    r = run("explain", *args, "--step")
    assert r.code == 0, r.stderr
    return r.stdout


def step_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if STEP_LINE.match(line)]


def gradients(text: str) -> dict[str, float]:
    return {m[2]: float(m[3]) for line in text.splitlines() if (m := GRADIENT.match(line))}


# ---- without a terminal ---------------------------------------------------------------------


def test_without_a_terminal_every_step_is_printed_in_order():
    text = stepped(*CS231N)
    lines = text.splitlines()
    assert lines[0] == "f = (x+y)*z = -12 at x = -2, y = 5, z = -4"
    assert lines[1] == "5 forward steps (a value per node), then 4 backward steps (one += each)"
    assert step_lines(text) == [f"step {n} of 9 · {s}" for n, s in enumerate(CS231N_STEPS, 1)]
    assert lines[-4:] == ["the gradients:", "  ∂f/∂x = -4", "  ∂f/∂y = -4", "  ∂f/∂z = 3"]


@pytest.mark.parametrize(
    "args",
    [CS231N, SIGMOID, ["x*x + x", "x=3"], ["2*x*x", "x=3"], ["a = x*2; a = a*a; a + y", "x=3",
     "y=0.5"]],
)  # fmt: skip
def test_the_step_count_is_the_nodes_then_the_sweeps_additions(args):
    text = stepped(*args)
    source = (ROOT / args[0]).read_text() if args[0].endswith(".bp") else args[0]
    point = {k: float(v) for k, v in (a.split("=") for a in args[1:])}
    data = walk(parse(source), point)
    count = len(data["forward"]) + len(data["backward"])
    matches = [STEP_LINE.match(line) for line in step_lines(text)]
    assert [int(m[1]) for m in matches if m] == list(range(1, count + 1))
    assert {int(m[2]) for m in matches if m} == {count}
    phases = [m[3] for m in matches if m]
    assert phases == ["forward"] * len(data["forward"]) + ["backward"] * len(data["backward"])


@pytest.mark.parametrize("args", [CS231N, SIGMOID, ["x*x + x", "x=3"],
                                  ["exp(-x)*sin(y)/(1 + x*x)", "x=0.3", "y=1.7"]])  # fmt: skip
def test_the_final_totals_are_grads_gradients(args):
    text = stepped(*args, "--digits", "0")
    grad = run("grad", *args, "--format", "json", "--no-torch", "--no-symbolic")
    assert grad.code == 0, grad.stderr
    assert gradients(text) == grad.json()["gradient"]
    # and each variable's last `so far` is its gradient
    last: dict[str, float] = {}
    for line in step_lines(text):
        if m := re.search(r"∂\w+/∂(\w+) \+= .*\(so far (\S+)\)$", line):
            last[m[1]] = float(m[2])
    for name, gradient in gradients(text).items():
        assert last.get(name, 0.0) == gradient, name


def test_digits_are_respected():
    noisy = ["x*y + x", "x=0.1", "y=3"]  # x*y is 0.30000000000000004
    default = stepped(*noisy)
    assert "t1 = x * y = 0.3\n" in default and "0.30000000000000004" not in default
    assert "t1 = x * y = 0.30000000000000004\n" in stepped(*noisy, "--digits", "0")
    two = stepped(*SIGMOID, "--digits", "2")
    assert "= 0.73 at" in two.splitlines()[0]
    assert "∂f/∂w0 = -0.2" in two and "-0.1966" not in two


def test_wrt_only_picks_the_final_gradients():
    text = stepped(*CS231N, "--wrt", "z")
    assert len(step_lines(text)) == 9
    assert text.splitlines()[-2:] == ["the gradients:", "  ∂f/∂z = 3"]
    r = run("explain", *CS231N, "--step", "--wrt", "q")
    assert r.code == 2 and r.stdout == "" and "--wrt names q" in r.stderr


def test_outputs_without_a_sweep():
    assert stepped("2*3").splitlines()[-2:] == ["step 3 of 3 · forward: f = 2 * 3 = 6",
                                                "no variables"]  # fmt: skip
    unused = stepped("a = x*2; y", "x=1", "y=2").splitlines()
    assert unused[-2:] == ["  ∂y/∂x = 0  (y does not depend on it)", "  ∂y/∂y = 1"]


def test_files_values_and_model_specs(tmp_path):
    values = tmp_path / "point.json"
    values.write_text('{"x": 2, "w": 1, "y": 4}')
    from_file = stepped("--file", "examples/seed_loss.bp", "--values", str(values), "--wrt", "w")
    assert from_file.splitlines()[-1] == "  ∂loss/∂w = -8"
    spec = stepped("mlp:2-3-1", "x1=1", "x2=1", "y=0", "--init", "examples/network.json")
    grad = run("grad", "mlp:2-3-1", "x1=1", "x2=1", "y=0", "--init", "examples/network.json",
               "--format", "json", "--no-torch", "--no-symbolic")  # fmt: skip
    with numbers.precision(4):
        wanted = {k: numbers.number(v) for k, v in grad.json()["gradient"].items()}
    shown = {m[2]: m[3] for line in spec.splitlines() if (m := GRADIENT.match(line))}
    assert shown == wanted


def test_arrays_show_shapes_and_the_contribution_only():
    text = stepped("sum(W*W)", "W=[[1,2],[3,4]]")
    assert "step 5 of 6 · backward: ∂f/∂W += the share through t1 → W (left) = " \
        "[[1, 2], [3, 4]]  (so far [[1, 2], [3, 4]])" in text  # fmt: skip
    assert text.splitlines()[-1] == "  ∂f/∂W = [[2, 4], [6, 8]]"
    long = stepped("sum(x*x)", "x=[1,2,3,4,5,6,7,8,9,10]")
    assert "x = (10,) [1, 2, …, 10]  (a variable)" in long
    assert long.splitlines()[-1] == "  ∂f/∂x = [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "json"], "error: --step shows the table format only, not json"),
        (["-o", "steps.csv"], "error: --step shows the table format only, not csv"),
        (["--mode", "forward"], "error: --step walks the reverse sweep, not --mode forward"),
    ],
)
def test_step_is_for_the_table_and_the_reverse_sweep(extra, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("explain", *CS231N, "--step", *extra)
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [message]
    assert not (tmp_path / "steps.csv").exists()


def test_o_writes_the_steps_to_a_file(tmp_path):
    target = tmp_path / "steps.txt"
    r = run("explain", *CS231N, "--step", "-o", str(target))
    assert r.code == 0 and r.stdout == "", r.stderr
    assert step_lines(target.read_text())[-1] == f"step 9 of 9 · {CS231N_STEPS[-1]}"


# ---- the frame and the keys ---------------------------------------------------------------


def test_the_keys():
    assert [keys.action(k) for k in (b"\x1b[C", b"\x1bOC", b"\r", b"\n", b" ", b"n")] == [
        "next"
    ] * 6
    assert [keys.action(k) for k in (b"\x1b[D", b"\x1bOD", b"p", b"\x7f")] == ["back"] * 4
    assert [keys.action(k) for k in (b"q", b"\x1b", b"\x03")] == ["quit"] * 3
    assert keys.action(b"x") is None and keys.action(b"\x1b[A") is None
    assert [keys.move(1, "back", 9), keys.move(9, "next", 9), keys.move(4, None, 9)] == [1, 9, 4]


def test_a_tall_graph_shows_a_window_around_the_step():
    assert window(5, 2, 10) == (0, 5)
    assert window(100, 0, 10) == (0, 8) and window(100, 99, 10) == (92, 100)
    start, stop = window(100, 50, 10)
    assert start <= 50 < stop and stop - start == 8
    from rich.console import Console

    source = (ROOT / SIGMOID[0]).read_text()
    point = {k: float(v) for k, v in (a.split("=") for a in SIGMOID[1:])}
    steps = Steps(walk(parse(source), point))
    console = Console(width=100, height=14, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for n in (1, steps.count // 2, steps.count):
        console.print(steps.frame(n, 100, 14))
        shown = console.export_text()
        assert len(shown.splitlines()) <= 14
        assert "▶" in shown and "more" in shown and f"step {n} of {steps.count}" in shown


# ---- in a pseudo-terminal -------------------------------------------------------------------

pexpect = pytest.importorskip("pexpect")
needs_posix = pytest.mark.skipif(os.name != "posix", reason="needs a POSIX pseudo-terminal")
RIGHT, LEFT = "\x1b[C", "\x1b[D"
SHOWN = re.compile(r"step (\d+) of 9 · ([^\x1b\r\n]*)[\x1b\r\n]")  # the whole line


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (*TERMINAL_VARIABLES, "COLUMNS")}
    env["TERM"] = "xterm-256color"
    return env


def _spawn(command: str = sys.executable, args: list[str] | None = None):
    words = ["-m", "backprop_cli", "explain", *CS231N, "--step"]
    child = pexpect.spawn(command, words if args is None else args, env=_env(), cwd=str(ROOT),
                          dimensions=(40, 120), encoding="utf-8", timeout=10)  # fmt: skip
    _expect_step(child, 1)
    return child


def _expect_step(child, n: int) -> None:
    child.expect(SHOWN)
    assert int(child.match[1]) == n, child.match[0]
    assert child.match[2].rstrip() == CS231N_STEPS[n - 1]


def _ends_quickly(child, within: float = 5.0) -> str:
    start = time.monotonic()
    child.expect(pexpect.EOF, timeout=within)
    assert time.monotonic() - start < within
    child.close()
    assert child.exitstatus == 0 and child.signalstatus is None
    return str(child.before)


@needs_posix
def test_each_key_moves_one_step_and_q_quits():
    child = _spawn()
    for n, key in enumerate([RIGHT, "\r", " ", "n", RIGHT, RIGHT, RIGHT, RIGHT], start=2):
        child.send(key)
        _expect_step(child, n)
    child.send(RIGHT)  # the last step stays
    _expect_step(child, 9)
    for n, key in [(8, LEFT), (7, "p"), (6, "\x7f"), (7, RIGHT)]:
        child.send(key)
        _expect_step(child, n)
    child.send("q")
    rest = _ends_quickly(child)
    assert "\x1b[?1049l" in rest  # the alternate screen is left
    assert "Traceback" not in rest


@needs_posix
def test_escape_quits_and_the_terminal_is_put_back():
    line = " ".join([sys.executable, "-m", "backprop_cli", "explain", "'(x+y)*z'", *CS231N[1:],
                     "--step; stty -a"])  # fmt: skip
    child = _spawn("/bin/sh", ["-c", line])
    child.send(RIGHT)
    _expect_step(child, 2)
    child.send("\x1b")
    rest = _ends_quickly(child)
    assert re.search(r"(?<![-\w])icanon\b", rest), rest  # line editing is back
    assert re.search(r"(?<![-\w])echo\b", rest), rest  # and so is echo


@needs_posix
def test_ctrl_c_leaves_cleanly():
    child = _spawn()
    child.send(RIGHT)
    _expect_step(child, 2)
    child.sendintr()
    rest = _ends_quickly(child)
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest
    assert "aborted" not in rest and "\x1b[?1049l" in rest
