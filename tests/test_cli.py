"""The command line: every option, format and exit code of `grad`, `ops` and `--version`."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from backprop_cli import __version__
from backprop_cli.core import ops
from tests.conftest import cli_in_fresh_python, run

CS231N = ["grad", "(x+y)*z", "x=-2", "y=5", "z=-4"]


def test_table_shows_graph_partials_and_checks():
    r = run(*CS231N)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert "value -12" in out
    for piece in ("Computational graph", "Partial derivatives", "x+y", "(x+y)*z", "add", "mul"):
        assert piece in out
    assert "SymPy: f = z*(x + y)" in out
    assert "✓ torch autograd" in out and "✓ finite differences" in out and "✓ SymPy" in out
    assert "\x1b[" not in out  # no colour when not a terminal
    assert r.stderr == ""


def test_json_contract():
    r = run(*CS231N, "--format", "json")
    assert r.code == 0
    data = r.json()
    assert data["value"] == -12.0
    assert data["gradient"] == {"x": -4.0, "y": -4.0, "z": 3.0}
    assert data["symbolic"] == {"x": "z", "y": "z", "z": "x + y"}
    nodes = data["nodes"]
    assert [n["id"] for n in nodes] == [0, 1, 2, 3, 4]
    assert [n["op"] for n in nodes] == ["input", "input", "add", "input", "mul"]
    assert nodes[2]["inputs"] == [0, 1] and nodes[4]["inputs"] == [2, 3]
    assert [n["value"] for n in nodes] == [-2.0, 5.0, 3.0, -4.0, -12.0]
    assert [n["grad"] for n in nodes] == [-4.0, -4.0, -4.0, 3.0, 1.0]
    assert {"id", "label", "op", "inputs", "value", "grad"} <= set(nodes[0])
    for check in ("torch", "finite_difference"):
        assert data["checks"][check]["ok"] is True
        assert data["checks"][check]["max_error"] == pytest.approx(0.0, abs=1e-9)
    assert data["ok"] is True


def test_json_of_a_program_labels_named_nodes():
    r = run("grad", "q = x + y; f = q * z", "x=-2", "y=5", "z=-4", "--format", "json")
    labels = [n["label"] for n in r.json()["nodes"]]
    assert labels == ["x", "y", "q", "z", "f"]


def test_json_nonfinite_becomes_null_with_a_warning():
    r = run("grad", "log(x) + y", "x=-1", "y=2", "--format", "json")
    assert r.code == 0
    data = json.loads(r.stdout)  # strict: no NaN tokens
    assert data["value"] is None
    assert any("null" in w["message"] for w in data["warnings"])
    assert any("log(-1)" in w["message"] for w in data["warnings"])
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout


def test_csv_row():
    r = run(*CS231N, "--format", "csv")
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows == [
        ["x", "y", "z", "value", "d_x", "d_y", "d_z"],
        ["-2", "5", "-4", "-12", "-4", "-4", "3"],
    ]


def test_markdown_tables():
    r = run(*CS231N, "--format", "markdown")
    grad = "$\\partial f / \\partial \\mathrm{node}$"
    assert f"| id | name | node | op | inputs | value | {grad} | note |" in r.stdout
    assert "| 4 | `f` (output) | `(x+y)*z` | mul | `t1`, `z` | -12 | 1 |  |" in r.stdout
    assert "| $\\frac{\\partial f}{\\partial x}$ | $z$ | -4 | -4 | -4 | -4 | ✓ |" in r.stdout
    assert "| $\\frac{\\partial f}{\\partial z}$ | $x + y$ | 3 | 3 | 3 | 3 | ✓ |" in r.stdout


def test_wrt_restricts_partials():
    r = run(*CS231N, "--wrt", "z,x", "--format", "json")
    data = r.json()
    assert data["wrt"] == ["z", "x"]
    assert list(data["gradient"]) == ["z", "x"]
    assert [p["variable"] for p in data["partials"]] == ["z", "x"]


def test_wrt_unknown_variable():
    r = run(*CS231N, "--wrt", "w")
    assert r.code == 2
    assert "--wrt names w" in r.stderr


def test_float32():
    r = run("grad", "sigmoid(x*w)", "x=0.3", "w=0.7", "--dtype", "float32", "--format", "json")
    data = r.json()
    assert data["dtype"] == "float32"
    s = 1 / (1 + math.exp(-0.21))
    assert data["value"] == float(np.float32(s)) or data["value"] == pytest.approx(s, rel=1e-6)
    assert data["ok"] is True
    table = run("grad", "sigmoid(x*w)", "x=0.3", "w=0.7", "--dtype", "float32").stdout
    assert "0.5523" in table and "(float32: w = 0.699999988079071" in table


def test_missing_values_are_all_named():
    r = run("grad", "(x+y)*z", "y=1")
    assert r.code == 2
    assert r.stderr.splitlines()[0] == "error: missing values for x, z"
    assert r.stdout == ""


def test_unused_value_warns():
    r = run("grad", "x*2", "x=1", "w=3", "--no-torch", "--no-symbolic")
    assert r.code == 0
    assert "warning: a value was given for 'w'" in r.stderr


def test_duplicate_value():
    r = run("grad", "x*2", "x=1", "x=2")
    assert r.code == 2 and "x is given twice" in r.stderr


def test_parse_error_prints_caret_and_exit_2():
    r = run("grad", "(x+y)*", "x=1", "y=2")
    assert r.code == 2
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: expression: column 7:")
    assert lines[1] == "  (x+y)*"
    assert lines[2] == "        ^"
    assert "Traceback" not in r.stderr


def test_unknown_function_suggestion():
    r = run("grad", "sigmod(x)", "x=1")
    assert r.code == 2
    assert "did you mean 'sigmoid'" in r.stderr


def test_leading_minus_expression_works_with_and_without_double_dash():
    opts = ["--format", "json", "--no-torch", "--no-symbolic"]
    for args in (
        ["grad", "-x*y", "x=3", "y=2", *opts],
        ["grad", *opts, "--", "-x*y", "x=3", "y=2"],
    ):
        r = run(*args)
        assert r.code == 0, r.stderr
        assert r.json()["value"] == -6.0


def test_negative_values():
    r = run("grad", "x*y", "x=-3", "y=-2e-1", "--format", "csv", "--no-torch", "--no-symbolic")
    assert r.stdout.splitlines()[1] == "-3,-0.2,0.6000000000000001,-0.2,-3"


def test_unknown_option_is_one_line():
    r = run(*CS231N, "--formt", "json")
    assert r.code == 2
    assert r.stderr.splitlines() == ["error: no such option --formt; did you mean --format?"]


def test_bad_option_value_is_one_line():
    r = run(*CS231N, "--format", "yaml")
    assert r.code == 2
    assert r.stderr.startswith("error: ")
    assert "yaml" in r.stderr and "Traceback" not in r.stderr


def test_missing_expression():
    r = run("grad")
    assert r.code == 2 and "missing the expression" in r.stderr


def test_file_and_stdin(tmp_path):
    prog = tmp_path / "prog.bp"
    prog.write_text("# the seed's loss\nyhat = x * w\nr = yhat - y\nloss = r ** 2\n")
    r = run("grad", "--file", str(prog), "x=2", "w=1", "y=4", "--format", "json")
    assert r.code == 0, r.stderr
    assert r.json()["value"] == 4.0 and r.json()["gradient"]["w"] == -8.0
    r = run("grad", "-", "x=2", "w=1", "y=4", "--format", "json", stdin=prog.read_text())
    assert r.json()["gradient"]["w"] == -8.0
    r = run("grad", "--file", "-", "x=2", "w=1", "y=4", "--format", "csv", stdin=prog.read_text())
    assert r.stdout.splitlines()[1] == "1,2,4,4,-8,-4,4"  # w, x, y sorted


def test_file_errors_name_the_file(tmp_path):
    prog = tmp_path / "bad.bp"
    prog.write_text("q = x +\n")
    r = run("grad", "--file", str(prog), "x=1")
    assert r.code == 2
    assert r.stderr.startswith(f"error: {prog}: column 8")
    r = run("grad", "--file", str(tmp_path / "missing.bp"))
    assert r.code == 2 and "cannot read" in r.stderr


def test_bom_and_binary_input(tmp_path):
    prog = tmp_path / "bom.bp"
    prog.write_bytes("\ufeffx * 2\n".encode())
    assert run("grad", "--file", str(prog), "x=1", "--format", "csv").code == 0
    prog.write_bytes(b"\xff\xfe\x00x")
    r = run("grad", "--file", str(prog), "x=1")
    assert r.code == 2 and "not valid UTF-8" in r.stderr


def test_max_length():
    r = run("grad", "x + x + x", "x=1", "--max-length", "5")
    assert r.code == 2 and "the limit is 5" in r.stderr


def test_hostile_sizes_end_quickly():
    for expr in ("x+" * 5_000_000 + "x", "9**9**9**9", "(" * 10_000 + "x" + ")" * 10_000):
        r = run("grad", expr, "x=1")
        assert r.code == 2
        assert len(r.stderr.splitlines()[0]) < 200


def test_no_torch_skips_torch():
    r = run(*CS231N, "--no-torch", "--format", "json")
    data = r.json()
    assert data["checks"]["torch"] == {
        "rtol": 1e-7,
        "atol": 1e-9,
        "ok": None,
        "skipped": "--no-torch",
        "max_error": None,
    }
    assert all(p["torch"] is None for p in data["partials"])


def test_no_torch_never_imports_torch():
    cli_in_fresh_python(
        [*CS231N, "--no-torch"], "assert 'torch' not in sys.modules, 'torch was imported'"
    )


def test_no_symbolic_never_imports_sympy_anywhere():
    out = cli_in_fresh_python(
        ["grad", "x*y", "x=1", "y=2", "--no-torch", "--no-symbolic", "--format", "json"],
        "assert 'sympy' not in sys.modules and 'torch' not in sys.modules",
    )
    assert json.loads(out.stdout)["checks"]["symbolic"]["skipped"] == "--no-symbolic"


def test_device_cuda_without_cuda_is_exit_2(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run(*CS231N, "--device", "cuda")
    assert r.code == 2
    assert "CUDA is not available" in r.stderr.splitlines()[0]


def test_device_cuda_when_available_uses_it(monkeypatch):
    # Pretend CUDA exists and record where the tensors were asked to live.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    asked: list[str] = []
    real_tensor = torch.tensor

    def tensor(*args, device=None, **kwargs):
        asked.append(str(device))
        return real_tensor(*args, **kwargs)

    monkeypatch.setattr(torch, "tensor", tensor)
    r = run(*CS231N, "--device", "cuda", "--format", "json", "--no-symbolic")
    assert r.code == 0, r.stderr
    assert set(asked) == {"cuda"}
    assert r.json()["checks"]["torch"]["device"] == "cuda"


def test_bad_device_names():
    assert run(*CS231N, "--device", "tpu9").code == 2
    r = run(*CS231N, "--device", "cuda", "--no-torch")
    assert r.code == 2 and "drop --no-torch" in r.stderr


def test_disagreement_is_exit_1_and_red_on_stderr(monkeypatch):
    # Break the engine's rule for mul: the cross-checks must catch it.
    mul = ops.OPS["mul"]
    broken = type(mul)(**{**mul.__dict__, "vjp": (lambda g, out, a, b: g * b * 2, mul.vjp[1])})
    monkeypatch.setitem(ops.OPS, "mul", broken)
    r = run(*CS231N, "--format", "json")
    assert r.code == 1
    data = r.json()
    assert data["ok"] is False
    assert data["checks"]["torch"]["ok"] is False
    assert data["checks"]["finite_difference"]["ok"] is False
    assert data["checks"]["symbolic"]["ok"] is False
    assert "disagreement" in r.stderr
    table = run(*CS231N)
    assert table.code == 1 and "✗" in table.stdout


def test_kinks_do_not_fail_the_checks():
    r = run("grad", "relu(x) + abs(y) + max(x, y)", "x=0", "y=0", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    px = next(p for p in data["partials"] if p["variable"] == "x")
    assert px["engine"] == 0.5 and px["torch"] == 0.5
    assert px["status"]["symbolic"] == "convention"
    assert px["status"]["finite_difference"] == "kink"
    assert any("kink" in n for node in data["nodes"] for n in node["notes"])


def test_symbolic_budget_keeps_numeric_results():
    expr = "+".join(f"tanh(w{i}*x + sin(w{i}))**{i % 5 + 2}" for i in range(40))
    values = [f"w{i}=0.{i + 1}" for i in range(40)] + ["x=0.5"]
    r = run("grad", expr, *values, "--symbolic-timeout", "0.1", "--no-torch", "--format", "json")
    assert r.code == 0
    data = r.json()
    assert data["checks"]["symbolic"]["state"] in ("budget", "partial")
    assert data["gradient"]["x"] is not None


def test_latex_and_no_simplify():
    r = run("grad", "x**2 * sin(x)", "x=1", "--latex", "--no-simplify", "--format", "json")
    data = r.json()
    assert "\\sin" in data["latex"]["x"]
    assert data["partials"][0]["simplified"] is False
    table = run("grad", "x**2 * sin(x)", "x=1", "--latex", "--no-torch").stdout
    assert "\\sin" in table


def test_constant_expression_has_value_and_nothing_to_differentiate():
    r = run("grad", "2 + 3", "--format", "json")
    assert r.code == 0
    assert r.json()["value"] == 5.0 and r.json()["gradient"] == {}


def test_version():
    r = run("--version")
    assert r.code == 0 and r.stdout.strip() == f"backprop-cli {__version__}"


@pytest.mark.parametrize("command", ["grad", "ops", "train", "explain", "graph"])
def test_help_has_examples(command):
    r = run(command, "--help")
    assert r.code == 0
    assert "Examples" in r.stdout and f"backprop {command}" in r.stdout


def test_top_level_help_lists_commands_and_examples():
    r = run("--help")
    assert r.code == 0
    for command in ("grad", "ops", "train", "explain", "graph"):
        assert command in r.stdout
    assert "Examples" in r.stdout


def test_ops_lists_the_registry():
    r = run("ops", "--format", "json")
    assert r.json()["schema"] == "backprop-cli/ops/1"
    rows = r.json()["ops"]
    assert [row["op"] for row in rows] == list(ops.OPS)
    assert all(row["rule"] for row in rows)
    table = run("ops").stdout
    assert "softplus" in table and "sigmoid" in table
    md = run("ops", "--format", "markdown").stdout
    assert md.startswith("| op | written as | derivative rule | notes |")


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "backprop_cli", "grad", "x*y", "x=2", "y=3", "--format", "csv",
         "--no-torch", "--no-symbolic"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1] == "2,3,6,3,2"


def test_no_color_even_when_forced(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[32m" in run(*CS231N).stdout  # green values
    monkeypatch.setenv("NO_COLOR", "1")
    out = run(*CS231N).stdout
    assert not re.search(r"\x1b\[[0-9;]*(3[0-8]|9[0-7])[;m]", out)


def test_seed_grad_scales_a_scalar_output_in_the_engine_and_every_check():
    result = run("grad", "x*y", "x=1", "y=3", "--seed-grad", "2", "--format", "json")
    assert result.code == 0, result.stderr
    data = result.json()
    assert data["gradient"]["x"] == pytest.approx(6.0) and data["gradient"]["y"] == pytest.approx(
        2.0
    )
    assert data["ok"] and all(
        data["checks"][c]["ok"] for c in ("torch", "finite_difference", "symbolic")
    )
    refused = run("grad", "x*y", "x=1", "y=3", "--seed-grad", "[1,2]")
    assert refused.code == 2 and "the output is a scalar" in refused.stderr
