"""README's transcripts and numbers are real outputs: regenerate them and compare.

UPDATE_README=1 rewrites the blocks from the current output instead (then review the diff).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from tests.conftest import run

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def blocks(lang: str = "") -> list[str]:
    """The fenced code blocks of README with this info string, in order."""
    found, current, info = [], None, ""
    for line in README.splitlines(keepends=True):
        if line.startswith("```"):
            if current is None:
                current, info = [], line[3:].strip()
            else:
                if info == lang:
                    found.append("".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return found


def strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def same(shown: str, actual: str) -> bool:
    """Compare a README block with fresh output, or rewrite the block under UPDATE_README."""
    if os.environ.get("UPDATE_README") and strip(shown) != strip(actual):
        text = (ROOT / "README.md").read_text()
        assert text.count(shown) == 1, "the block to update is not unique"
        fixed = "\n".join(line.rstrip() for line in actual.splitlines()) + "\n"
        (ROOT / "README.md").write_text(text.replace(shown, fixed))
        return True
    return strip(shown) == strip(actual)


@pytest.fixture(autouse=True)
def _width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "88")


def test_tour_transcript():
    shown = next(b for b in blocks() if b.startswith("f = (x+y)*z"))
    assert same(shown, run("grad", "(x+y)*z", "x=-2", "y=5", "z=-4").stdout)


def test_kink_transcript():
    shown = next(b for b in blocks() if b.startswith('$ backprop grad "relu(x)'))
    output = shown.partition("\n")[2]
    result = run("grad", "relu(x) * y + max(x, y)", "x=0", "y=0")
    assert result.code == 0
    assert same(output, result.stdout)
    assert "warning: node 1 (relu) is evaluated on its kink" in result.stderr


def test_json_contract_example():
    block = blocks("json")[0]
    result = run("grad", "q = x + y; f = q * z", "x=-2", "y=5", "z=-4", "--format", "json")
    shown, actual = json.loads(block), result.json()
    for data in (shown, actual):
        data["checks"]["torch"].pop("version")  # depends on the installed torch
    assert actual == shown or same(block, result.stdout)


def test_csv_example():
    shown = next(
        b for b in blocks() if b.startswith('$ backprop grad "(x+y)*z" x=-2 y=5 z=-4 --format csv')
    )
    output = shown.partition("\n")[2]
    assert same(output, run("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--format", "csv").stdout)


def test_error_example():
    shown = next(b for b in blocks() if b.startswith('$ backprop grad "sigmod'))
    output = shown.partition("\n")[2]
    result = run("grad", "sigmod(w*x)", "w=2", "x=1")
    assert result.code == 2
    assert same(output, result.stderr)


def test_train_transcript():
    shown = next(b for b in blocks() if b.startswith("$ backprop train linear --epochs 100"))
    output = shown.partition("\n")[2]
    result = run("train", "linear", "--epochs", "100", "--log-every", "25")
    assert result.code == 0
    assert same(output, result.stdout)


def test_train_jsonl_example():
    shown = next(b for b in blocks() if b.startswith("$ backprop train linear --epochs 3"))
    output = shown.partition("\n")[2]
    assert same(output, run("train", "linear", "--epochs", "3", "--format", "jsonl").stdout)


def test_explain_transcript():
    shown = next(b for b in blocks() if b.startswith("$ backprop explain"))
    result = run("explain", "(x*w - y)**2", "x=2", "w=1", "y=4", "--wrt", "w")
    assert result.code == 0
    assert same(shown.partition("\n")[2], result.stdout)


def test_graph_transcript():
    shown = next(b for b in blocks() if b.startswith("$ backprop graph"))
    result = run("graph", "(x+y)*z", "x=-2", "y=5", "z=-4")
    assert same(shown.partition("\n")[2], result.stdout)


def test_the_embedded_picture_shows_the_current_graph():
    svg = (ROOT / "docs" / "sigmoid_neuron.svg").read_text()
    assert "docs/sigmoid_neuron.svg" in README
    for label in (">w0<", ">exp<", ">0.7311…<", "∂ &#45;0.1966…", "∂ 0.3932…"):
        assert label in svg, label


def test_ops_table():
    table = run("ops", "--format", "markdown").stdout
    assert table in README


def test_quickstart_has_two_commands_and_ci_runs_the_same_tests():
    quickstart = README.split("## Quickstart", 1)[1].split("##", 1)[0]
    commands = blocks("sh")[0].strip().splitlines()
    assert len(commands) == 2 and commands[0] in quickstart
    assert "backprop grad" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci


ARRAY_TRANSCRIPTS = [
    '$ backprop grad "2*dot(x, x)" x=arange(4)',
    '$ backprop grad "mean((w*x + b - y)**2)"',
    '$ backprop grad "W @ x"',
    '$ backprop grad "2*x*x" x=arange(4)\n',
    '$ backprop grad "x**3 + 2*x**2 - 3*x + 1"',
    '$ backprop jacobian "sigmoid(W @ x)"',
    '$ backprop hessian "x1**2*x2 + exp(x1*x2)"',
    '$ backprop grad "1/(1+exp(-(w0*x0+w1*x1+w2)))" --points examples/points.csv',
    '$ backprop check "softplus(w*x + b) - tanh(x)**2"',
]


@pytest.mark.parametrize("start", ARRAY_TRANSCRIPTS)
def test_array_and_higher_order_transcripts(start):
    """The block is the command line, then what it prints (stderr when it fails)."""
    [shown] = [b for b in blocks() if b.startswith(start)]
    command = shown.partition("\n")[0]
    result = run(*shlex.split(command)[2:])
    printed = result.stdout if result.code == 0 else result.stderr
    assert result.code in (0, 2)
    assert same(shown, f"{command}\n{printed}")
