"""`backprop explain --step`: without a terminal (or with one that cannot be drawn on) every
step is printed, a line each, with the engine's numbers and explain's warnings; in a real
pseudo-terminal each key moves one step, the frame fits any size, and q, Esc, Ctrl-C, Ctrl-D,
the signals that end a program and a hang-up all leave with the terminal as it was."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from backprop_cli.analyses.walk import walk
from backprop_cli.cli import step as keys
from backprop_cli.core.parse import parse
from backprop_cli.render import numbers
from backprop_cli.render.step import CURRENT, Steps, window
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
    assert [keys.action(k) for k in (b"q", b"\x1b", b"\x03", b"\x04")] == ["quit"] * 4
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


def test_a_constants_value_is_shown():
    assert step_lines(stepped("3")) == ["step 1 of 1 · forward: 3  (a constant)"]
    assert "step 1 of 4 · forward: pi = 3.142  (a constant)" in stepped("pi*x", "x=1")
    assert "step 1 of 4 · forward: 2  (a constant)" in stepped("2*x", "x=1")


@pytest.mark.parametrize(
    "args", [["log(x)", "x=-1"], ["relu(x)", "x=0"], ["x/y", "x=1", "y=0"], ["sum(log(x))",
             "x=[-1,1]"], ["mlp:2-3-1", "x1=1", "x2=1", "y=0"]],
)  # fmt: skip
def test_the_warnings_are_explains(args):
    plain, stepping = run("explain", *args), run("explain", *args, "--step")
    assert stepping.code == 0, stepping.stderr
    warned = [line for line in plain.stderr.splitlines() if line.startswith("warning: ")]
    assert warned and stepping.stderr.splitlines() == warned
    assert "warning" not in stepping.stdout


def test_show_program_refuses_step():
    r = run("explain", *CS231N, "--step", "--show-program")
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [
        "error: --show-program prints the program and stops; it does not take --step"
    ]


def test_keys_read_together_are_split_one_by_one():
    assert keys.split(b"\x1b[C\x1bOCnq \x1b[D") == [b"\x1b[C", b"\x1bOC", b"n", b"q", b" ",
                                                     b"\x1b[D"]  # fmt: skip
    # Esc then a key that starts no escape sequence: Esc (which quits), then that key
    assert keys.split(b"\x1bx") == [b"\x1b", b"x"] and keys.action(b"\x1b") == "quit"
    assert keys.split(b"\x1b\x1b[C") == [b"\x1b", b"\x1b[C"]
    assert keys.split(b"\x1b[1;5C") == [b"\x1b[1;5C"]  # Ctrl-→: a key that does nothing
    for whole in (b"n", b"\x1b[C", b"\x1bOD", b"\x1bq", b"\x1b[1;5C"):
        assert not keys.unfinished(whole)
    for part in (b"\x1b", b"n\x1b", b"\x1b[", b"\x1bO", b"\x1b[1;5"):
        assert keys.unfinished(part)


# ---- the frame's layout -------------------------------------------------------------------

ARRAYS = ["sum(tanh(W @ x) * x)", "W=[[1.1,2.2,3.3],[4.4,5.5,6.6],[7.7,8.8,9.9]]",
          "x=[0.1,-0.3,0.7]"]  # fmt: skip
NETWORK = (ROOT / "examples/chain_rule_network.bp").read_text()
NETWORK_POINT = {**json.loads((ROOT / "examples/network.json").read_text()), "x1": 1.0, "x2": 1.0,
                 "y": 0.0}  # fmt: skip


def _steps_of(args: list[str], notes: list[str] | None = None) -> Steps:
    source = (ROOT / args[0]).read_text() if args[0].endswith(".bp") else args[0]
    point = {k: np.asarray(json.loads(v), dtype=float) for k, v in (a.split("=") for a in args[1:])}
    graph = parse(source)
    return Steps(walk(graph, {k: point[k] for k in graph.variables}, paths=False), notes or [])


def _drawn(steps: Steps, n: int, width: int, height: int) -> list[str]:
    """The frame as the terminal shows it (Rich's Screen crops what is below its height)."""
    from rich.screen import Screen

    console = Console(width=width, height=height, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(Screen(steps.frame(n, width, height)))
    return console.export_text().splitlines()


def _network(notes: list[str] | None = None) -> Steps:
    graph = parse(NETWORK)
    point = {k: NETWORK_POINT[k] for k in graph.variables}
    return Steps(walk(graph, point, paths=False), notes or [])


def _squeezed(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("name", ["cs231n", "sigmoid", "arrays", "network"])
def test_the_step_line_and_the_keys_fit_any_terminal(name):
    from rich.cells import cell_len
    from rich.text import Text

    programs = {"cs231n": CS231N, "sigmoid": SIGMOID, "arrays": ARRAYS}
    notes = ["one", "two"]
    steps = _network(notes) if name == "network" else _steps_of(programs[name], notes)
    measure = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    for width in (12, 20, 30, 40, 52, 71, 80, 100, 120, 160):
        for height in (3, 6, 10, 14, 24):
            for n in (1, steps.forward, steps.forward + 1, steps.count):
                shown = _drawn(steps, n, width, height)
                where = (name, width, height, n)
                assert len(shown) <= height and all(cell_len(line) <= width for line in shown)
                tall = len(Text(steps.line(n)).wrap(measure, width))
                if tall > height:  # as much of the step's line as fits, cut with …
                    assert shown[0].startswith(f"step {n} of"), where
                    assert shown[-1].rstrip().endswith("…"), where
                    continue
                assert _squeezed(steps.line(n)) in _squeezed("".join(shown)), where
                if tall < height:  # the keys
                    assert shown[-1].startswith("→") or any(
                        line.startswith("→") for line in shown), where  # fmt: skip
                if tall + 2 <= height:  # the heading
                    assert shown[0].startswith(steps.heading()[: width - 1]), where
                if tall + 3 <= height:  # and the warnings
                    assert shown[1].startswith("! 2 warnings: one; two"[: width - 1]), where
                if tall + 7 <= height:  # and the table, with the step's row
                    assert any(line.startswith(CURRENT) for line in shown), where


def test_what_goes_first_in_a_short_terminal():
    steps = _network()
    n = 21
    step = [line.rstrip() for line in _drawn(steps, n, 30, 10)]
    assert step[0].startswith("C = (yhat - y)**2 = 1.521")  # the heading
    assert step[-3:] == ["step 21 of 66 · forward: w31 =", "0.3  (a variable)",
                         "→ n: next  ← p: back  q: quit"]  # fmt: skip
    assert any(line.startswith(f"{CURRENT}   w31") for line in step)  # the table's step row
    # shorter: the table goes, then the plan, then the heading; the step's line stays
    assert not any(CURRENT in line for line in _drawn(steps, n, 30, 5))
    assert [line.rstrip() for line in _drawn(steps, n, 30, 3)][:2] == step[-3:-1]
    assert [line.rstrip() for line in _drawn(steps, n, 30, 2)] == step[-3:-1]  # no keys
    assert [line.rstrip() for line in _drawn(steps, n, 30, 1)] == ["step 21 of 66 · forward: w31…"]


@pytest.mark.parametrize(("width", "columns"), [
    (160, ["node", "op", "computes", "value", "∂f/∂node so far", "∂f/∂node"]),
    (120, ["node", "computes", "value", "∂f/∂node so far", "∂f/∂node"]),
    (80, ["node", "value", "∂f/∂node so far"]),
    (40, ["node", "value", "so far"]),
])  # fmt: skip
def test_narrow_terminals_keep_the_marker_and_the_names(width, columns):
    steps = _steps_of(ARRAYS)
    for n in range(1, steps.count + 1):
        shown = _drawn(steps, n, width, 30)
        header = next(line for line in shown if line.lstrip().startswith("node"))
        assert header.split() == " ".join(columns).split(), (width, n)
        rows = [line for line in shown if line[:1] in (CURRENT, "•", " ") and "   " in line]
        current = steps.nodes[steps.state(n).current]["name"]
        assert any(line.startswith(f"{CURRENT}   {current} ") for line in rows), (width, n)
        for line in rows:  # a value is whole, or cut with …
            for cell in re.split(r"\s{3,}", line.strip()):
                if cell.count("[") != cell.count("]"):
                    assert cell.endswith("…"), (width, n, cell)


def test_a_scalar_graph_keeps_its_names_in_a_narrow_terminal():
    steps = _steps_of(CS231N)
    for width in (14, 20, 30, 39):
        for n in range(1, steps.count + 1):
            text = "\n".join(_drawn(steps, n, width, 20))
            current = steps.nodes[steps.state(n).current]["name"]
            assert f"{CURRENT}   {current}" in text, (width, n)


def test_the_frame_shows_the_warnings_under_the_heading():
    steps = _steps_of(
        ["log(x)", "x=-1"], ["node 1: log(-1) is undefined (nan) (defined for a > 0)"]
    )
    shown = _drawn(steps, 1, 80, 24)
    assert (
        shown[1].rstrip() == "! 1 warning: node 1: log(-1) is undefined (nan) (defined for a > 0)"
    )
    assert _drawn(steps, 1, 30, 24)[1] == "! 1 warning: node 1: log(-1) …"
    two = _drawn(_steps_of(CS231N, ["one", "two"]), 1, 80, 24)[1]
    assert two.rstrip() == "! 2 warnings: one; two"
    assert not _drawn(_steps_of(CS231N), 1, 80, 24)[1].startswith("!")


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
    child.delaybeforesend = None
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
    child.send(RIGHT + LEFT)  # the last step stays: one back is step 8
    _expect_step(child, 8)
    for n, key in [(7, "p"), (6, "\x7f"), (7, RIGHT)]:
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


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NETWORK_ARGS = ["--file", "examples/chain_rule_network.bp", "--values", "examples/network.json",
                "x1=1", "x2=1", "y=0"]  # fmt: skip


def _stepper(args: list[str], rows: int = 24, columns: int = 80, **env: str):
    """`backprop explain ARGS --step` in a pseudo-terminal of this size."""
    child = pexpect.spawn(sys.executable, ["-m", "backprop_cli", "explain", *args, "--step"],
                          env={**_env(), **env}, cwd=str(ROOT), dimensions=(rows, columns),
                          encoding="utf-8", timeout=10)  # fmt: skip
    child.delaybeforesend = None
    return child


def _screen(child, settle: float = 0.3) -> list[str]:
    """What the terminal shows once the output stops: the last frame (each starts at the
    top left), its colours taken out."""
    seen = child.before + (child.after if isinstance(child.after, str) else "") + child.buffer
    child.buffer = ""
    while True:
        try:
            seen += child.read_nonblocking(1 << 20, timeout=settle)
        except pexpect.TIMEOUT:
            break
    return ANSI.sub("", seen.split("\x1b[H")[-1]).replace("\r", "").split("\n")


def _quit(child, key: str = "q") -> str:
    child.send(key)
    return _ends_quickly(child)


def _foreground_pid(child) -> int:
    return os.tcgetpgrp(child.child_fd)


@needs_posix
def test_the_warnings_come_before_the_screen_and_in_it():
    child = _stepper(["log(x)", "x=-1"])
    child.expect("warning: node 1: log\\(-1\\) is undefined \\(nan\\) \\(defined for a > 0\\)")
    child.expect_exact("\x1b[?1049h")  # then the alternate screen
    child.expect("step 1 of 3")
    shown = _screen(child)
    assert (
        shown[1].rstrip() == "! 1 warning: node 1: log(-1) is undefined (nan) (defined for a > 0)"
    )
    _quit(child)


@needs_posix
@pytest.mark.parametrize(
    "env", [{"TERM": "dumb"}, {"TERM": "unknown"}, {"TTY_COMPATIBLE": "0"},
            {"TTY_INTERACTIVE": "0"}],
)  # fmt: skip
def test_a_terminal_that_cannot_be_drawn_on_gets_every_step_printed(env):
    child = _stepper(CS231N, **env)
    rest = _ends_quickly(child)
    assert "\x1b[?1049h" not in rest
    assert [line for line in rest.splitlines() if STEP_LINE.match(line)] == [
        f"step {n} of 9 · {s}" for n, s in enumerate(CS231N_STEPS, 1)
    ]
    assert "the gradients:" in rest


@needs_posix
def test_the_terminals_own_size_wins_over_columns_and_lines():
    child = _stepper(CS231N, rows=24, columns=80, COLUMNS="150", LINES="60")
    child.expect("step 1 of 9")
    shown = _screen(child)
    assert len(shown) == 24 and {len(line) for line in shown} == {80}
    child.setwinsize(30, 100)  # a resize redraws at the new size
    child.expect("step 1 of 9")
    shown = _screen(child)
    assert len(shown) == 30 and {len(line) for line in shown} == {100}
    _quit(child)


@needs_posix
def test_a_short_terminal_keeps_the_step_line_and_the_keys():
    child = _stepper(NETWORK_ARGS, rows=10, columns=30)
    child.expect("step 1 of 66")
    child.send(RIGHT * 20)
    child.expect("step 21 of 66")
    shown = [line.rstrip() for line in _screen(child)]
    assert len(shown) == 10
    assert shown[-3:] == ["step 21 of 66 · forward: w31 =", "0.3  (a variable)",
                          "→ n: next  ← p: back  q: quit"]  # fmt: skip
    assert shown[0].startswith("C = (yhat - y)**2") and any(
        line.startswith(f"{CURRENT}   w31") for line in shown)  # fmt: skip
    _quit(child)
    child = _stepper(ARRAYS, rows=14, columns=71)
    child.expect("step 1 of 12")
    child.send(RIGHT * 8)
    child.expect("step 9 of 12")
    shown = [line.rstrip() for line in _screen(child)]
    assert shown[-4:-1] == [
        "step 9 of 12 · backward: ∂f/∂x += the share through t3 → x = [0.9425,",
        "0.9978, 0.9999]  (so far [0.9425, 0.9978, 0.9999])",
        "→ Enter Space n: next   ← p Backspace: back   q Esc Ctrl-C Ctrl-D: quit",
    ]
    _quit(child)


@needs_posix
@pytest.mark.parametrize("key", ["\x1bx", "\x04", "\x1b\x1b"])
def test_esc_followed_by_a_key_and_ctrl_d_quit(key):
    child = _stepper(CS231N)
    child.expect("step 1 of 9")
    rest = _quit(child, key)
    assert "\x1b[?1049l" in rest and "Traceback" not in rest


@needs_posix
def test_a_two_thousand_node_program_starts_quickly_and_takes_held_keys(tmp_path):
    program = tmp_path / "chain.bp"
    program.write_text("; ".join(["t = x", *["t = sin(t) + x"] * 999, "t"]))
    assert len(parse(program.read_text()).nodes) == 2000
    start = time.monotonic()
    child = _stepper(["--file", str(program), "x=0.5"], rows=40, columns=120)
    child.expect("step 1 of 4998 ")
    assert time.monotonic() - start < 5  # no paths are walked
    _screen(child)
    child.send(LEFT)  # a key that moves nothing draws nothing
    with pytest.raises(pexpect.TIMEOUT):
        child.expect_exact("\x1b[H", timeout=0.3)
    start = time.monotonic()
    for _ in range(300):  # a held key, each press its own write
        child.send(RIGHT)
    child.expect("step 301 of 4998 ")
    assert time.monotonic() - start < 2  # not a redraw per key
    start = time.monotonic()
    for _ in range(300):
        child.send(RIGHT)
    child.send("q")  # does not wait behind the keys before it
    _ends_quickly(child, within=2)
    assert time.monotonic() - start < 2


def _shell(rows: int = 24, columns: int = 100):
    """An interactive bash in a pseudo-terminal (job control: Ctrl-Z and fg)."""
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("needs bash")
    env = {**_env(), "PS1": "ready$ "}
    child = pexpect.spawn(bash, ["--norc", "--noprofile", "-i"], env=env, cwd=str(ROOT),
                          dimensions=(rows, columns), encoding="utf-8", timeout=10)  # fmt: skip
    child.delaybeforesend = None
    child.expect_exact("ready$ ")
    return child


STTY = (
    "echo \"modes=$(stty -a | tr ' ;' '\\n\\n' | grep -x -e -icanon -e icanon -e -echo -e echo)\""
)
MODES = re.compile(r"modes=(-?icanon)\s+(-?echo)\b")  # the output, not the echoed command
COMMAND = f"{sys.executable} -m backprop_cli explain '(x+y)*z' x=-2 y=5 z=-4 --step"


@needs_posix
def test_ctrl_z_puts_the_terminal_back_and_fg_takes_it_again():
    shell = _shell()
    shell.sendline(COMMAND)
    shell.expect("step 1 of 9")
    shell.send(RIGHT)
    shell.expect("step 2 of 9")
    shell.send("\x1a")  # Ctrl-Z
    shell.expect_exact("ready$ ")
    assert "\x1b[?25h" in shell.before and "\x1b[?1049l" in shell.before  # cursor, screen
    assert "Stopped" in shell.before
    shell.sendline(STTY)  # while it is stopped: line editing and echo are back
    shell.expect_exact("ready$ ")
    assert MODES.search(shell.before).groups() == ("icanon", "echo")
    shell.sendline("fg")
    shell.expect_exact("\x1b[?1049h")  # the alternate screen again, redrawn at its step
    shell.expect("step 2 of 9")
    shell.send(RIGHT)  # and keys still come one by one, unechoed
    shell.expect("step 3 of 9")
    shell.send("q")
    shell.expect_exact("ready$ ")
    shell.sendline(f"echo code $?; {STTY}")
    shell.expect_exact("ready$ ")
    assert "code 0" in shell.before
    assert MODES.search(shell.before).groups() == ("icanon", "echo")
    shell.sendline("exit")
    shell.expect(pexpect.EOF)


@needs_posix
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGQUIT"])
def test_the_signals_that_end_a_program_put_the_terminal_back(name):
    number = getattr(signal, name)
    line = f"trap 'echo trapped' TERM HUP QUIT; {COMMAND}; echo code $?; {STTY}"
    child = pexpect.spawn("/bin/sh", ["-c", line], env=_env(), cwd=str(ROOT),
                          dimensions=(24, 100), encoding="utf-8", timeout=10)  # fmt: skip
    child.delaybeforesend = None
    child.expect("step 1 of 9")
    if number == signal.SIGQUIT:
        child.send("\x1c")  # Ctrl-\
    else:
        os.killpg(_foreground_pid(child), number)
    child.expect(f"code {128 + number}")
    rest = child.before
    child.expect(pexpect.EOF)
    assert "\x1b[?25h" in rest and "\x1b[?1049l" in rest and "Traceback" not in rest
    assert MODES.search(child.before).groups() == ("icanon", "echo")


EIO_READS = """\
import errno, os, sys
read = os.read
def failing(fd, n):  # a hung-up terminal's read: EIO (some systems), not end of input
    data = read(fd, n)
    if not data:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    return data
os.read = failing
from backprop_cli.cli.app import main
sys.argv = ["backprop", *sys.argv[1:]]
main()
"""


def _ignore_hangups_in_a_controlling_terminal() -> None:
    import fcntl
    import termios

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@needs_posix
@pytest.mark.parametrize("how", ["controlling terminal, SIGHUP ignored", "reads fail with EIO"])
def test_a_terminal_that_hangs_up_ends_it_quietly(how):
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    start = ["-c", EIO_READS] if how.startswith("reads") else ["-m", "backprop_cli"]
    controlling = how.startswith("controlling")
    proc = subprocess.Popen(
        [sys.executable, *start, "explain", *CS231N, "--step"],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=str(ROOT), env=_env(),
        start_new_session=True,
        preexec_fn=_ignore_hangups_in_a_controlling_terminal if controlling else None,
    )  # fmt: skip
    os.close(slave)
    seen, deadline = b"", time.monotonic() + 10
    while b"step 1 of 9" not in seen and time.monotonic() < deadline:
        if select.select([master], [], [], 0.5)[0]:
            seen += os.read(master, 1 << 16)
    os.close(master)  # the terminal goes away
    _, err = proc.communicate(timeout=10)
    assert b"step 1 of 9" in seen
    assert proc.returncode == 0 and err == b"", err.decode()
