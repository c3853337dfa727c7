"""How `backprop train` reads: the log lines, predictions and summary at --digits (4
significant digits by default, every digit as the course prints them with 0), the grammar of
counts, and the loss curve drawn by plotext within the terminal's width."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from rich.console import Console

from backprop_cli.render import numbers
from backprop_cli.render import train as view
from tests.conftest import run

BRAILLE = re.compile("[\u2801-\u28ff]")
FALLING = [(epoch, 7.3 * 0.75**epoch + 9e-13) for epoch in range(130)]


def lines_of(text: str, prefixes: tuple[str, ...]) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefixes)]


# ---- numbers -------------------------------------------------------------------------------


def test_log_lines_show_four_significant_digits_by_default():
    r = run("train", "linear", "--epochs", "3", "--verbose")
    assert r.code == 0, r.stderr
    assert lines_of(r.stdout, ("predict", "progress", "\tgrad")) == [
        "predict (before training) 4 4",
        "\tgrad: 1 2 -2",
        "\tgrad: 2 4 -7.84",
        "\tgrad: 3 6 -16.23",
        "progress: 0 7.316",
        "\tgrad: 1 2 -1.479",
        "\tgrad: 2 4 -5.796",
        "\tgrad: 3 6 -12",
        "progress: 1 3.999",
        "\tgrad: 1 2 -1.093",
        "\tgrad: 2 4 -4.285",
        "\tgrad: 3 6 -8.87",
        "progress: 2 2.186",
        "predict (after training) 4 6.384",
    ]
    assert "│ w         │       1 │   1.596 │" in r.stdout
    assert "loss over all data after training: 0.762" in r.stdout


def test_full_digits_print_the_course_log_as_its_print_does():
    with numbers.precision(numbers.FULL):
        r = run("train", "linear", "--epochs", "1")
    assert lines_of(r.stdout, ("predict", "progress")) == [
        "predict (before training) 4 4.0",
        "progress: 0 7.315943717956543",
        "predict (after training) 4 5.042752265930176",
    ]
    assert "│ w         │       1 │ 1.2606881 │" in r.stdout  # every digit float32 has
    assert "loss over all data after training: 2.5507166" in r.stdout
    if "--digits" in run("train", "--help").stdout:  # the option, where the command has it
        again = run("train", "linear", "--epochs", "1", "--digits", "0").stdout
        assert "progress: 0 7.315943717956543" in again


def test_json_lines_keep_every_digit():
    r = run("train", "linear", "--epochs", "2", "--format", "jsonl")
    first = json.loads(r.stdout.splitlines()[0])
    assert first["loss"] == 7.315943717956543


def test_batch_gradients_of_arrays_are_compact_and_rounded():
    line = view.batch_grad_line(
        4, {"W": [[0.123456789, 2.0], [3.0, -4.5]], "b": 0.30000000000000004}, ["W", "b"]
    )
    assert line == "\tgrad (batch of 4): W=[[0.1235, 2], [3, -4.5]], b=0.3"
    with numbers.precision(numbers.FULL):
        assert view.batch_grad_line(1, {"b": 0.30000000000000004}, ["b"]).endswith(
            "b=0.30000000000000004"
        )


def test_counts_agree_with_their_nouns():
    assert "training: sgd, lr 0.01, 1 epoch, batch size 1" in run("train", "--epochs", "1").stdout
    assert ", 2 epochs, " in run("train", "--epochs", "2").stdout


# ---- the loss curve ------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(20, 6), (40, 10), (64, 16), (120, 24)])
def test_the_curve_fits_its_size_and_has_axes_and_ticks(width, height):
    drawn = view.curve(FALLING, width=width, height=height)
    lines = drawn.splitlines()
    assert len(lines) <= height and max(len(line) for line in lines) <= width
    assert BRAILLE.search(drawn)  # plotted in braille dots
    assert "┤" in drawn and "┬" in drawn and "└" in drawn  # axes with ticks
    assert "\x1b" not in drawn
    labels = re.findall(r"^\s*(\S+)┤", drawn, re.MULTILINE)
    assert labels[0] == "1" and all(re.fullmatch(r"1|0\.0*1|1e-\d\d", t) for t in labels)
    if width >= 40:
        assert "loss (log scale) by epoch" in drawn
        assert re.search(r"^\s+0\s.*\s129$", lines[-1])  # the first and the last epoch
    if height == 16:  # five rows apart: every third decade
        assert labels == ["1", "0.001", "1e-06", "1e-09", "1e-12"]


def test_the_curve_is_linear_when_the_loss_falls_little_and_ticks_are_round():
    drawn = view.curve([(0, 7.3), (1, 4.0), (2, 2.19)], width=64, height=16)
    assert "loss (linear scale) by epoch" in drawn
    labels = re.findall(r"^\s*([\d.]+)┤", drawn, re.MULTILINE)
    assert labels == ["7", "6", "5", "4", "3"]  # whole steps within the losses' range


def test_the_curve_skips_what_it_cannot_draw_and_leaves_no_state_behind():
    assert view.curve([(0, 1.0)]) == ""
    assert view.curve([(0, float("nan")), (1, float("inf"))]) == ""
    first = view.curve(FALLING, width=50, height=12)
    view.curve([(0, 1.0), (1, 2.0)], width=30, height=8, color=True)
    assert view.curve(FALLING, width=50, height=12) == first


def test_the_curve_is_coloured_only_on_a_terminal():
    coloured = view.curve(FALLING, width=50, height=12, color=True)
    assert "\x1b[" in coloured
    for terminal in (False, True):
        console = Console(
            width=80, force_terminal=terminal, color_system="standard" if terminal else "auto"
        )
        with console.capture() as captured:
            console.print(view.curve_renderable(FALLING, width=50, height=12))
        assert ("\x1b[" in captured.get()) is terminal
        assert BRAILLE.search(captured.get())


@pytest.mark.parametrize("columns", [40, 60, 88, 120])
def test_trains_curve_stays_within_the_terminal(columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", str(columns))
    r = run("train", "linear", "--epochs", "30")
    assert r.code == 0, r.stderr
    curve = r.stdout[r.stdout.index("loss (log scale) by epoch") - 30 :]
    assert BRAILLE.search(curve) and "\x1b" not in r.stdout
    assert max(len(line) for line in curve.splitlines()) <= columns


def test_plotext_is_imported_only_to_draw():
    code = (
        "import sys\n"
        "import backprop_cli.render.train as view\n"
        "assert 'plotext' not in sys.modules\n"
        "view.curve([(0, 2.0), (1, 1.0)])\n"
        "assert 'plotext' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
