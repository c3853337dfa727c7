"""Higher-order derivatives: `grad --order 2`, `backprop jacobian`, `backprop hessian` and the
module behind them (backprop_cli.analyses.higher), each checked against torch.autograd.functional
computed here, analytic derivatives, and the registry of ops."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from numpy.testing import assert_allclose
from torch.autograd.functional import hessian as torch_hessian
from torch.autograd.functional import jacobian as torch_jacobian

from backprop_cli.analyses import higher
from backprop_cli.core import engine, ops
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import parse
from tests.conftest import cli_in_fresh_python, run

JAX_POLY = "x**3 + 2*x**2 - 3*x + 1"  # the JAX autodiff cookbook's f: f'(1) = 4, f''(1) = 10
WIKI = "x1**2*x2 + exp(x1*x2)"
W = [[1.0, 2.0], [3.0, 4.0]]
X = [1.0, -1.0]
SIGMOID_ARGS = ["sigmoid(W @ x)", "W=[[1,2],[3,4]]", "x=[1,-1]"]
CHECKS = ("torch", "finite_difference", "symbolic")


def t64(value) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def wiki_hessian(x1: float, x2: float) -> np.ndarray:
    """The analytic Hessian of x1²·x2 + exp(x1·x2)."""
    e = math.exp(x1 * x2)
    off = 2 * x1 + e * (1 + x1 * x2)
    return np.array([[2 * x2 + x2 * x2 * e, off], [off, x1 * x1 * e]])


def all_ok(entries: list[dict]) -> None:
    """Every entry's every check ran and agreed."""
    for entry in entries:
        assert entry["status"] == dict.fromkeys(CHECKS, "ok"), entry
        assert entry["ok"] is True


# ---- grad --order 2 ------------------------------------------------------------------------


def test_order_2_json_gives_jax_cookbook_derivatives():
    r = run("grad", JAX_POLY, "x=1", "--order", "2", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["gradient"]["x"] == pytest.approx(4.0)
    assert_allclose(data["hessian"], [[10.0]])
    second = data["second_order"]
    assert second["elements"] == ["x"]
    assert second["output_name"] == "f"
    (entry,) = second["entries"]
    assert (entry["row"], entry["column"]) == ("x", "x")
    for key in ("engine", "torch", "finite_difference", "symbolic_value"):
        assert entry[key] == pytest.approx(10.0, rel=1e-7), key
    assert entry["symbolic"].replace(" ", "") == "6*x+4"
    all_ok(second["entries"])
    for check in CHECKS:
        assert second["checks"][check]["ok"] is True, check
        assert second["checks"][check]["compared"] == 1
    assert data["ok"] is True


def test_order_2_table_shows_second_derivatives():
    r = run("grad", JAX_POLY, "x=1", "--order", "2")
    assert r.code == 0, r.stderr
    assert "Second derivatives of f" in r.stdout
    assert "∂²f/∂x²" in r.stdout
    assert "second derivatives: torch.autograd.functional" in r.stdout
    assert "✗" not in r.stdout


def test_order_2_matches_hessian_command():
    r = run("grad", WIKI, "x1=1", "x2=2", "--order", "2", "--format", "json")
    h = run("hessian", WIKI, "x1=1", "x2=2", "--format", "json")
    assert r.code == 0 and h.code == 0, r.stderr + h.stderr
    assert_allclose(r.json()["hessian"], h.json()["hessian"], rtol=1e-14)
    assert_allclose(r.json()["hessian"], wiki_hessian(1.0, 2.0), rtol=1e-12)
    assert r.json()["second_order"]["elements"] == ["x1", "x2"]


def test_order_2_with_wrt_keeps_only_the_chosen_variables():
    r = run("grad", "x*y**2", "x=1", "y=2", "--order", "2", "--wrt", "y", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["second_order"]["elements"] == ["y"]
    assert_allclose(data["hessian"], [[2.0]])  # ∂²(x·y²)/∂y² = 2x


def test_order_1_has_no_second_order_keys():
    data = run("grad", JAX_POLY, "x=1", "--format", "json").json()
    assert "hessian" not in data and "second_order" not in data


# ---- hessian -------------------------------------------------------------------------------


def test_hessian_of_jax_cookbook_polynomial():
    r = run("hessian", JAX_POLY, "x=1", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["value"] == pytest.approx(1.0)
    assert data["gradient"]["x"] == pytest.approx(4.0)
    assert_allclose(data["hessian"], [[10.0]])
    assert data["elements"] == ["x"]


def test_hessian_matches_analytic_formula_and_every_check():
    r = run("hessian", WIKI, "x1=1", "x2=2", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    H = np.array(data["hessian"])
    assert_allclose(H, wiki_hessian(1.0, 2.0), rtol=1e-13)
    assert_allclose(H, H.T, rtol=0, atol=0)
    assert data["elements"] == ["x1", "x2"] and data["wrt"] == ["x1", "x2"]
    assert data["value"] == pytest.approx(2 + math.exp(2))
    assert data["gradient"]["x1"] == pytest.approx(2 * 1 * 2 + 2 * math.exp(2))
    assert data["gradient"]["x2"] == pytest.approx(1 + math.exp(2))
    # the upper triangle, each entry checked three ways
    assert [(e["row"], e["column"]) for e in data["entries"]] == [
        ("x1", "x1"),
        ("x1", "x2"),
        ("x2", "x2"),
    ]
    all_ok(data["entries"])
    for e in data["entries"]:
        for key in ("torch", "symbolic_value"):
            assert e[key] == pytest.approx(e["engine"], rel=1e-12), key
        assert e["finite_difference"] == pytest.approx(e["engine"], rel=1e-6)
        assert e["fd_error_estimate"] is not None and e["fd_error_estimate"] < 1e-4
    for check in CHECKS:
        assert data["checks"][check]["ok"] is True, check
        assert data["checks"][check]["compared"] == 3
        assert data["checks"][check]["mismatches"] == []
    assert data["checks"]["symbolic"]["state"] == "done"
    assert data["symbolic"][0][1] == data["symbolic"][1][0]
    assert data["warnings"] == [] and data["ok"] is True


def test_hessian_of_matrix_inputs_matches_torch():
    r = run("hessian", "sum(sigmoid(W @ x))", "W=[[1,2],[3,4]]", "x=[1,-1]", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["elements"] == ["W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "x[0]", "x[1]"]
    blocks = torch_hessian(lambda w, x: torch.sigmoid(w @ x).sum(), (t64(W), t64(X)))
    sizes = [4, 2]
    theirs = np.block(
        [[blocks[i][j].numpy().reshape(sizes[i], sizes[j]) for j in range(2)] for i in range(2)]
    )
    H = np.array(data["hessian"])
    assert_allclose(H, theirs, rtol=1e-12, atol=1e-15)
    assert_allclose(H, H.T, atol=1e-15)
    assert len(data["entries"]) == 6 * 7 // 2
    assert data["ok"] is True


def test_hessian_wrt_one_array():
    r = run(
        "hessian", "sum(sigmoid(W @ x))", "W=[[1,2],[3,4]]", "x=[1,-1]", "--wrt", "x",
        "--format", "json",
    )  # fmt: skip
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["elements"] == ["x[0]", "x[1]"]
    theirs = torch_hessian(lambda x: torch.sigmoid(t64(W) @ x).sum(), t64(X)).numpy()
    assert_allclose(data["hessian"], theirs, rtol=1e-12)


def test_hessian_past_the_symbolic_limit_skips_sympy_only():
    r = run("hessian", "sum(x*x*x)", "x=arange(30)", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert_allclose(data["hessian"], np.diag(6 * np.arange(30.0)), atol=1e-12)
    sym = data["checks"]["symbolic"]
    assert sym["state"] == "skipped" and sym["ok"] is None
    assert "400" in sym["skipped"]
    assert data["checks"]["torch"]["ok"] is True
    assert data["checks"]["torch"]["compared"] == 30 * 31 // 2


def test_no_symbolic_and_no_torch_are_reported_as_skipped():
    r = run("hessian", WIKI, "x1=1", "x2=2", "--no-symbolic", "--no-torch", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert_allclose(data["hessian"], wiki_hessian(1.0, 2.0), rtol=1e-13)
    for e in data["entries"]:
        assert e["torch"] is None and e["symbolic"] is None
        assert e["status"]["torch"] == "skipped" and e["status"]["symbolic"] == "skipped"
        assert e["status"]["finite_difference"] == "ok"
    assert data["checks"]["symbolic"]["skipped"] == "--no-symbolic"
    assert data["checks"]["torch"]["compared"] == 0


# ---- jacobian ------------------------------------------------------------------------------


def test_jacobian_of_sigmoid_layer_matches_torch():
    r = run("jacobian", *SIGMOID_ARGS, "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    jw, jx = torch_jacobian(lambda w, x: torch.sigmoid(w @ x), (t64(W), t64(X)))
    # blocks of shape output + variable
    assert np.shape(data["jacobian"]["W"]) == (2, 2, 2)
    assert np.shape(data["jacobian"]["x"]) == (2, 2)
    assert_allclose(data["jacobian"]["W"], jw.numpy(), rtol=1e-13)
    assert_allclose(data["jacobian"]["x"], jx.numpy(), rtol=1e-13)
    # the flat matrix: one row per output element, W's elements then x's
    assert data["rows"] == ["f[0]", "f[1]"]
    assert data["columns"] == ["W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "x[0]", "x[1]"]
    flat = np.concatenate([jw.numpy().reshape(2, 4), jx.numpy()], axis=1)
    assert_allclose(data["matrix"], flat, rtol=1e-13)
    assert data["output"]["shape"] == [2]
    assert_allclose(data["output"]["value"], torch.sigmoid(t64(W) @ t64(X)).numpy())
    assert len(data["entries"]) == 12
    all_ok(data["entries"])
    for check in CHECKS:
        assert data["checks"][check]["ok"] is True and data["checks"][check]["compared"] == 12
    assert data["ok"] is True


def test_jacobian_wrt_x_only():
    r = run("jacobian", *SIGMOID_ARGS, "--wrt", "x", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert list(data["jacobian"]) == ["x"] and data["columns"] == ["x[0]", "x[1]"]
    jx = torch_jacobian(lambda x: torch.sigmoid(t64(W) @ x), t64(X)).numpy()
    assert_allclose(data["matrix"], jx, rtol=1e-13)


def test_jacobian_of_elementwise_function_is_diagonal():
    x = [0.1, 0.5, 0.9]
    data = run("jacobian", "x * sin(x)", "x=[0.1,0.5,0.9]", "--format", "json").json()
    J = np.array(data["matrix"])
    expected = np.diag([math.sin(v) + v * math.cos(v) for v in x])
    assert_allclose(J, expected, rtol=1e-14, atol=0)
    assert_allclose(J, torch_jacobian(lambda t: t * torch.sin(t), t64(x)).numpy(), rtol=1e-14)
    assert np.count_nonzero(J - np.diag(np.diag(J))) == 0


# expression, values, the same function in torch (its arguments in the order of the values)
JACOBIAN_CASES = {
    "matvec": (
        "W @ x", {"W": [[1, 2, 3], [4, 5, 6]], "x": [0.5, -1, 2]}, lambda w, x: w @ x,
    ),
    "transpose": ("W.T", {"W": [[1, 2, 3], [4, 5, 6]]}, lambda w: w.T),
    "T-call": ("T(W) * W", {"W": [[1, 2], [3, 4]]}, lambda w: w.T * w),
    "reshape": ("reshape(x, 2, 3)", {"x": [1, 2, 3, 4, 5, 6]}, lambda x: x.reshape(2, 3)),
    "reshape-matrix": (
        "reshape(x*x, 3, 2)", {"x": [[1, 2, 3], [4, 5, 6]]}, lambda x: (x * x).reshape(3, 2),
    ),
    "slice": ("x[1:] * x[0]", {"x": [1, 2, 3]}, lambda x: x[1:] * x[0]),
    "rows": ("W[0] * W[1]", {"W": [[1, 2], [3, 4]]}, lambda w: w[0] * w[1]),
    "sum-axis": ("sum(x*x, axis=0)", {"x": [[1, 2], [3, 4]]}, lambda x: (x * x).sum(0)),
    "mean": ("mean(exp(x))", {"x": [0.1, 0.2]}, lambda x: torch.exp(x).mean()),
    "amax": ("max(x)", {"x": [1, 3, 2]}, lambda x: x.max()),
    "dot": ("dot(x, y)", {"x": [1, 2], "y": [3, 4]}, lambda x, y: torch.dot(x, y)),
    "broadcast": ("x * y", {"x": [1, 2, 3], "y": 2}, lambda x, y: x * y),
    "tanh-layer": (
        "tanh(W @ x + b)",
        {"W": [[0.1, -0.2], [0.3, 0.4], [0.5, 0.6]], "x": [1, 2], "b": [0, 1, -1]},
        lambda w, x, b: torch.tanh(w @ x + b),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(JACOBIAN_CASES))
def test_jacobian_matches_torch(case):
    expression, values, fn = JACOBIAN_CASES[case]
    args = [f"{k}={v}".replace(" ", "") for k, v in values.items()]
    r = run("jacobian", expression, *args, "--no-symbolic", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    theirs = torch_jacobian(fn, tuple(t64(v) for v in values.values()))
    for name, block in zip(values, theirs, strict=True):
        assert_allclose(data["jacobian"][name], block.numpy(), rtol=1e-13, atol=1e-15)
    out_size = int(np.prod(data["output"]["shape"]))
    assert np.shape(data["matrix"]) == (out_size, sum(np.size(v) for v in values.values()))
    assert data["checks"]["torch"]["ok"] is True
    assert data["checks"]["finite_difference"]["ok"] in (True, None)
    assert data["ok"] is True


def test_jacobian_of_scalar_output_is_the_gradient():
    r = run("jacobian", "x*y**2", "x=1", "y=2", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["rows"] == ["f"] and data["columns"] == ["x", "y"]
    assert_allclose(data["matrix"], [[4.0, 4.0]])
    assert data["output"]["shape"] == []


# ---- the registry, swept -------------------------------------------------------------------

# Each elementwise op in torch, written here rather than taken from the registry.
TORCH_OPS = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
    "neg": lambda a: -a,
    "pos": lambda a: a,
    "assign": lambda a: a,
    "exp": torch.exp,
    "log": torch.log,
    "log_base": lambda a, b: torch.log(a) / torch.log(b),
    "sqrt": torch.sqrt,
    "softplus": F.softplus,
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "abs": torch.abs,
    "max": torch.maximum,
    "min": torch.minimum,
}
ELEMENTWISE = [op for op in ops.OPS.values() if op.elementwise]


def _applied(op: ops.Op, a: str, b: str) -> str:
    """The op written on a (and b): f(a), f(a, b), -(a), (a) * (b)."""
    if op.name == "assign":
        return "q"
    if op.call:
        return f"{op.call}({a})" if op.arity == 1 else f"{op.call}({a}, {b})"
    return f"{op.symbol}({a})" if op.arity == 1 else f"({a}) {op.symbol} ({b})"


def _sweep_expression(op: ops.Op) -> str:
    body = f"{_applied(op, 'x*y', 'x + 2*y')} + x*y**2"
    return f"q = x*y; f = {body}" if op.name == "assign" else body


# Smooth points: x·y = ±0.21 and x + 2y = 1.7 or 1.1 (no kink, no tie, inside every domain);
# the negative one only for ops defined everywhere.
SWEEP = [
    (op, point)
    for op in ELEMENTWISE
    for point in ((0.3, 0.7), (-0.3, 0.7))
    if point[0] > 0 or op.domain is None
]


def test_sweep_covers_every_elementwise_op():
    assert {op.name for op in ELEMENTWISE} == set(TORCH_OPS)
    assert len(ELEMENTWISE) >= 20


@pytest.mark.parametrize(
    ("op", "point"), SWEEP, ids=[f"{op.name}[x={p[0]},y={p[1]}]" for op, p in SWEEP]
)
def test_registry_hessian_matches_torch(op, point):
    x, y = point
    expression = _sweep_expression(op)
    r = run("hessian", expression, f"x={x}", f"y={y}", "--no-symbolic", "--format", "json")
    assert r.code == 0, (expression, r.stderr)
    data = r.json()
    fn = TORCH_OPS[op.name]

    def f(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
        u, v = tx * ty, tx + 2 * ty
        return (fn(u) if op.arity == 1 else fn(u, v)) + tx * ty**2

    blocks = torch_hessian(f, (t64(x), t64(y)))
    theirs = np.array([[float(blocks[i][j]) for j in range(2)] for i in range(2)])
    H = np.array(data["hessian"])
    assert_allclose(H, theirs, rtol=1e-12, atol=1e-14)
    assert_allclose(H, H.T, rtol=1e-14, atol=1e-15)
    for e in data["entries"]:
        assert e["status"]["torch"] == "ok", e
        assert e["status"]["finite_difference"] == "ok", e
    assert data["ok"] is True


# ---- errors --------------------------------------------------------------------------------


def assert_usage_error(r, *pieces: str, lines: int | None = 1) -> str:
    """Exit 2, nothing on stdout, an 'error: …' first line, no traceback."""
    assert r.code == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    if lines is not None:
        assert len(r.stderr.splitlines()) == lines, r.stderr
    first = r.stderr.splitlines()[0]
    for piece in pieces:
        assert piece in first, first
    return first


def test_order_2_refuses_array_inputs():
    r = run("grad", "sum(x*x)", "x=[1,2]", "--order", "2")
    assert_usage_error(r, "--order 2 is for scalar inputs", "x is an array", lines=2)
    assert "hint: backprop hessian" in r.stderr


def test_order_2_refuses_float32():
    r = run("grad", "x*x", "x=1", "--order", "2", "--dtype", "float32")
    assert_usage_error(r, "float64", "float32")


@pytest.mark.parametrize("order", ["0", "3"])
def test_order_out_of_range(order):
    assert_usage_error(run("grad", "x*x", "x=1", "--order", order), "--order")


def test_order_2_refuses_array_output():
    r = run("grad", "x*[1,2]", "x=1", "--order", "2")
    assert_usage_error(r, "not a scalar", lines=2)


def test_hessian_of_array_output_is_refused():
    r = run("hessian", "x*y", "x=[1,2]", "y=2")
    assert_usage_error(r, "shape (2,)", "scalar output", lines=2)
    assert "backprop jacobian" in r.stderr


@pytest.mark.parametrize("command", ["hessian", "jacobian"])
def test_unknown_wrt_variable(command):
    r = run(command, "x*y", "x=1", "y=2", "--wrt", "z")
    assert_usage_error(r, "--wrt", "z", "x, y")


@pytest.mark.parametrize("command", ["hessian", "jacobian"])
def test_parse_error_points_at_its_column(command):
    r = run(command, "x*+*y", "x=1", "y=2")
    assert_usage_error(r, "column 4", lines=3)
    assert r.stderr.splitlines()[1].strip() == "x*+*y"
    assert r.stderr.splitlines()[2] == "     ^"


@pytest.mark.parametrize("command", ["hessian", "jacobian"])
def test_missing_value(command):
    assert_usage_error(run(command, "x*y", "x=1"), "missing value for y", lines=2)


@pytest.mark.parametrize(("command", "expression"), [("hessian", "sum(x*x)"), ("jacobian", "x*x")])
def test_too_many_entries_are_refused(command, expression):
    r = run(command, expression, "x=zeros(501)")
    assert_usage_error(r, "501 × 501", "250,000")


def test_device_needs_torch():
    r = run("hessian", "x*y", "x=1", "y=2", "--no-torch", "--device", "cuda")
    assert_usage_error(r, "--device needs the torch check")


def test_unknown_device():
    assert_usage_error(
        run("jacobian", "x*y", "x=1", "y=2", "--device", "nonsense"), "nonsense", lines=2
    )


def test_unknown_format():
    assert_usage_error(run("hessian", "x*y", "x=1", "y=2", "--format", "xml"), "--format")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_hessian_checked_on_cuda():
    r = run("hessian", WIKI, "x1=1", "x2=2", "--device", "cuda", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["checks"]["torch"]["version"].startswith("cuda")
    assert data["checks"]["torch"]["ok"] is True


# ---- csv, markdown, table ------------------------------------------------------------------


def test_hessian_csv():
    r = run("hessian", WIKI, "x1=1", "x2=2", "--format", "csv")
    assert r.code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["", "x1", "x2"]
    assert [row[0] for row in rows[1:]] == ["x1", "x2"]
    assert_allclose([[float(v) for v in row[1:]] for row in rows[1:]], wiki_hessian(1, 2))


def test_jacobian_csv():
    r = run("jacobian", *SIGMOID_ARGS, "--format", "csv")
    assert r.code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["", "W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "x[0]", "x[1]"]
    assert [row[0] for row in rows[1:]] == ["f[0]", "f[1]"]
    data = run("jacobian", *SIGMOID_ARGS, "--format", "json").json()
    assert_allclose([[float(v) for v in row[1:]] for row in rows[1:]], data["matrix"], rtol=0)


def _markdown_matrix(text: str) -> tuple[list[str], dict[str, list[float]]]:
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    header, rule, body = cells[0], cells[1], cells[2:]
    assert all(set(c) <= set("-:") for c in rule)
    return [h.strip("$") for h in header[1:]], {
        row[0].strip("$"): [float(v) for v in row[1:]] for row in body
    }


def test_hessian_markdown():
    r = run("hessian", WIKI, "x1=1", "x2=2", "--format", "markdown")
    assert r.code == 0, r.stderr
    columns, rows = _markdown_matrix(r.stdout)
    assert columns == ["x_{1}", "x_{2}"] and list(rows) == ["x_{1}", "x_{2}"]
    # four significant digits by default (--digits)
    assert_allclose([rows["x_{1}"], rows["x_{2}"]], wiki_hessian(1, 2), rtol=5e-4)
    assert "x2**2*exp(x1*x2) + 2*x2" in r.stdout
    assert "✓ torch.autograd.functional" in r.stdout


def test_jacobian_markdown():
    r = run("jacobian", *SIGMOID_ARGS, "--format", "markdown")
    assert r.code == 0, r.stderr
    columns, rows = _markdown_matrix(r.stdout)
    assert columns == ["W_{0,0}", "W_{0,1}", "W_{1,0}", "W_{1,1}", "x_{0}", "x_{1}"]
    jw, jx = torch_jacobian(lambda w, x: torch.sigmoid(w @ x), (t64(W), t64(X)))
    flat = np.concatenate([jw.numpy().reshape(2, 4), jx.numpy()], axis=1)
    assert_allclose([rows["f_{0}"], rows["f_{1}"]], flat, rtol=5e-4)


def test_hessian_table():
    r = run("hessian", WIKI, "x1=1", "x2=2")
    assert r.code == 0, r.stderr
    out = r.stdout
    assert "Hessian" in out
    for value in ("33.56", "24.17", "7.389"):  # four significant digits (--digits)
        assert value in out, value
    assert "✓ torch.autograd.functional" in out and "✓ SymPy" in out
    assert "✓ finite differences" in out
    assert r.stderr == ""


def test_jacobian_table():
    r = run("jacobian", "x * sin(x)", "x=[0.1,0.5,0.9]")
    assert r.code == 0, r.stderr
    for piece in ("Jacobian", "f[0]", "x[2]", "0.1993", "0.9182", "1.343"):
        assert piece in r.stdout, piece


# ---- torch stays unimported ----------------------------------------------------------------


def test_hessian_no_torch_never_imports_torch():
    out = cli_in_fresh_python(
        ["hessian", "x*y", "x=1", "y=2", "--no-torch"], "assert 'torch' not in sys.modules"
    )
    assert "Hessian" in out.stdout


def test_jacobian_and_order_2_no_torch_never_import_torch():
    cli_in_fresh_python(
        ["jacobian", "x*y", "x=[1,2]", "y=2", "--no-torch", "--format", "json"],
        "assert 'torch' not in sys.modules",
    )
    cli_in_fresh_python(
        ["grad", "x*y", "x=1", "y=2", "--order", "2", "--no-torch", "--format", "json"],
        "assert 'torch' not in sys.modules",
    )


# ---- kinks ---------------------------------------------------------------------------------


def test_hessian_on_abs_kink_is_torch_convention():
    r = run("hessian", "abs(x)*y", "x=0", "y=2", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    theirs = torch_hessian(lambda x, y: torch.abs(x) * y, (t64(0.0), t64(2.0)))
    assert_allclose(data["hessian"], [[float(t) for t in row] for row in theirs], atol=0)
    by_pair = {(e["row"], e["column"]): e["status"] for e in data["entries"]}
    assert by_pair[("x", "x")]["finite_difference"] == "kink"
    assert by_pair[("x", "y")]["finite_difference"] == "kink"
    assert by_pair[("y", "y")]["finite_difference"] == "ok"


def test_hessian_on_relu_kink_does_not_crash_or_claim_a_mismatch():
    r = run("hessian", "relu(x)*y", "x=0", "y=2", "--format", "json")
    assert r.code == 0, r.stderr
    assert "Traceback" not in r.stderr
    data = r.json()
    for e in data["entries"]:
        assert "mismatch" not in e["status"].values(), e
    statuses = {(e["row"], e["column"]): e["status"] for e in data["entries"]}
    assert statuses[("x", "x")]["finite_difference"] == "kink"
    # SymPy's Heaviside(0) = 1/2 is a convention, not a disagreement
    assert statuses[("x", "y")]["symbolic"] in ("convention", "ok")


# At a kink or a tie, second derivatives take the same subgradient as the gradient (torch's):
# a piecewise op's tangent on dual numbers comes from its own derivative rule.
def test_hessian_on_relu_kink_is_symmetric_and_matches_torch():
    r = run("hessian", "relu(x)*y", "x=0", "y=2", "--format", "json")
    assert r.code == 0, r.stderr
    H = np.array(r.json()["hessian"])
    theirs = torch_hessian(lambda x, y: torch.relu(x) * y, (t64(0.0), t64(2.0)))
    assert_allclose(H, H.T)  # actual: [[0, 0], [1, 0]]
    assert_allclose(H, [[float(t) for t in row] for row in theirs])  # torch: all 0


@pytest.mark.parametrize(
    ("expression", "point", "fn"),
    [
        ("relu(x*y)*x", (0.0, 2.0), lambda x, y: torch.relu(x * y) * x),
        ("max(x, y)*x", (1.0, 1.0), lambda x, y: torch.maximum(x, y) * x),
        ("min(x, y)*x", (1.0, 1.0), lambda x, y: torch.minimum(x, y) * x),
    ],
    ids=["relu", "max-tie", "min-tie"],
)
def test_hessian_at_kink_or_tie_matches_torch(expression, point, fn):
    x, y = point
    r = run("hessian", expression, f"x={x}", f"y={y}", "--no-symbolic", "--format", "json")
    # actual: exit 1 with "disagreement: … torch" on stderr
    assert r.code == 0, r.stderr
    theirs = torch_hessian(fn, (t64(x), t64(y)))
    assert_allclose(r.json()["hessian"], [[float(t) for t in row] for row in theirs])


# ---- the module, directly ------------------------------------------------------------------


def _chosen(graph, env, wrt):
    return higher.elements(graph, engine.input_cores(graph, env), wrt)


def test_elements_order_and_labels():
    graph = parse("sum(W @ x) * s")
    env = {"W": np.array(W), "x": np.array(X), "s": 2.0}
    chosen = _chosen(graph, env, ["x", "W", "s"])
    assert chosen == [
        ("x", (0,)), ("x", (1,)),
        ("W", (0, 0)), ("W", (0, 1)), ("W", (1, 0)), ("W", (1, 1)),
        ("s", ()),
    ]  # fmt: skip


def test_module_hessian_and_second_differences():
    graph = parse(WIKI)
    env = {"x1": 1.0, "x2": 2.0}
    chosen = _chosen(graph, env, ["x1", "x2"])
    assert chosen == [("x1", ()), ("x2", ())]
    expected = wiki_hessian(1.0, 2.0)
    H = higher.hessian(graph, env, chosen)
    assert H.shape == (2, 2)
    assert_allclose(H, expected, rtol=1e-13)
    estimate, error = higher.second_differences(graph, env, chosen)
    assert_allclose(estimate, expected, rtol=1e-6)
    assert np.all(np.isfinite(error)) and np.all(error < 1e-4)
    assert_allclose(estimate, estimate.T)
    # only the chosen elements: a 1×1 block of the same matrix
    assert_allclose(higher.hessian(graph, env, [("x2", ())]), expected[1:, 1:], rtol=1e-13)


def test_module_hessian_has_no_negative_zeros():
    graph = parse("x*y")
    H = higher.hessian(graph, {"x": 1.0, "y": 2.0}, [("x", ()), ("y", ())])
    assert_allclose(H, [[0, 1], [1, 0]])
    assert not np.any(np.signbit(H))


def test_module_jacobian_blocks_have_output_plus_variable_shape():
    graph = parse("sigmoid(W @ x)")
    env = {"W": np.array(W), "x": np.array(X)}
    blocks = higher.jacobian(graph, env, ["W", "x"])
    assert blocks["W"].shape == (2, 2, 2) and blocks["x"].shape == (2, 2)
    jw, jx = torch_jacobian(lambda w, x: torch.sigmoid(w @ x), (t64(W), t64(X)))
    assert_allclose(blocks["W"], jw.numpy(), rtol=1e-13)
    assert_allclose(blocks["x"], jx.numpy(), rtol=1e-13)
    assert list(higher.jacobian(graph, env, ["x"])) == ["x"]


def test_module_jacobian_of_unused_variable_is_zero():
    graph = parse("x*x + 0*y")
    blocks = higher.jacobian(graph, {"x": np.array([1.0, 2.0]), "y": 3.0}, ["x", "y"])
    assert_allclose(blocks["x"], np.diag([2.0, 4.0]))
    assert_allclose(blocks["y"], [0.0, 0.0])


def test_module_hessian_of_matrix_inputs_matches_torch():
    graph = parse("sum(tanh(W @ x))")
    w = np.array([[0.5, -1.0], [2.0, 0.25]])
    x = np.array([0.3, -0.7])
    env = {"W": w, "x": x}
    chosen = _chosen(graph, env, ["W", "x"])
    H = higher.hessian(graph, env, chosen)
    blocks = torch_hessian(lambda a, b: torch.tanh(a @ b).sum(), (t64(w), t64(x)))
    theirs = np.block(
        [
            [blocks[i][j].numpy().reshape(len(b), -1) for j in range(2)]
            for i, b in enumerate([w.ravel(), x])
        ]
    )
    assert_allclose(H, theirs, rtol=1e-12, atol=1e-15)


def test_hessian_report_without_checks():
    graph = parse(WIKI)
    report = higher.hessian_report(
        graph, {"x1": 1.0, "x2": 2.0}, None, torch=False, symbolic=False, finite_difference=False
    )
    assert_allclose(report["hessian"], wiki_hessian(1.0, 2.0), rtol=1e-13)
    assert report["wrt"] == ["x1", "x2"]
    for e in report["entries"]:
        assert e["status"] == dict.fromkeys(CHECKS, "skipped")
        assert e["finite_difference"] is None
    assert report["ok"] is True


def test_hessian_report_refuses_array_output():
    graph = parse("x*y")
    with pytest.raises(BackpropError, match="a Hessian needs a scalar output"):
        higher.hessian_report(graph, {"x": np.array([1.0, 2.0]), "y": 2.0}, None, torch=False)


def test_jacobian_report_without_checks():
    graph = parse("x * sin(x)")
    x = np.array([0.1, 0.5, 0.9])
    report = higher.jacobian_report(
        graph, {"x": x}, ["x"], torch=False, symbolic=False, finite_difference=False
    )
    assert report["rows"] == ["f[0]", "f[1]", "f[2]"]
    assert report["columns"] == ["x[0]", "x[1]", "x[2]"]
    assert_allclose(report["matrix"], np.diag(np.sin(x) + x * np.cos(x)), rtol=1e-14)
    assert all(e["status"]["finite_difference"] == "skipped" for e in report["entries"])
    assert report["ok"] is True


def test_module_hessian_at_relu_kink_is_symmetric():
    graph = parse("relu(x)*y")
    H = higher.hessian(graph, {"x": 0.0, "y": 2.0}, [("x", ()), ("y", ())])
    assert_allclose(H, H.T)  # actual: [[0, 0], [1, 0]]


def test_an_asymmetric_engine_hessian_is_reported(monkeypatch):
    """Only the upper triangle is checked, so a lower triangle that differs is a warning."""
    real = higher.hessian

    def skewed(*args, **kwargs):
        matrix = np.array(real(*args, **kwargs), dtype=float)
        matrix[1, 0] += 1.0
        return matrix

    monkeypatch.setattr(higher, "hessian", skewed)
    report = higher.hessian_report(parse("x*y"), {"x": 1.0, "y": 2.0}, None, torch=False)
    assert any("not symmetric" in w["message"] for w in report["warnings"])


@pytest.mark.parametrize("command", ["hessian", "jacobian"])
def test_device_cuda_without_cuda_is_a_clear_error(monkeypatch, command):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run(command, "x*y", "x=1", "y=2", "--device", "cuda")
    assert r.code == 2 and "Traceback" not in r.stderr
    assert "CUDA is not available" in r.stderr.splitlines()[0]


@pytest.mark.parametrize(
    ("expression", "point", "fn"),
    [
        ("sigmoid(x)**2", {"x": 0.0}, lambda x: torch.sigmoid(x) ** 2),
        ("softplus(x)", {"x": 0.0}, lambda x: F.softplus(x)),
        ("sigmoid(x)*y", {"x": 0.0, "y": 1.0}, lambda x, y: torch.sigmoid(x) * y),
        ("softplus(x*y)", {"x": 0.0, "y": 0.0}, lambda x, y: F.softplus(x * y)),
    ],
)
def test_hessian_of_smooth_ops_at_zero_matches_torch(expression, point, fn):
    """The stable sigmoid takes exp(-|a|): its second derivative must not see |a|'s kink."""
    args = [f"{k}={v}" for k, v in point.items()]
    r = run("hessian", expression, *args, "--format", "json", "--no-symbolic")
    assert r.code == 0, r.stderr
    theirs = torch_hessian(fn, tuple(t64(v) for v in point.values()))
    n = len(point)
    expected = np.array([[float(theirs[i][j]) for j in range(n)] for i in range(n)])
    assert_allclose(np.array(r.json()["hessian"]), expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(
    ("command", "expression", "values"),
    [
        ("grad", "max(x)", ["x=[1,1,1]"]),
        ("grad", "min(x)", ["x=[0,0]"]),
        ("jacobian", "min(x)", ["x=[-1,-1,-1]"]),
        ("hessian", "cos(min(x))", ["x=[0,1,1,0]"]),
        ("jacobian", "0.5824271251430154*x + 0.5824271251430154*y", ["x=1", "y=-1"]),
        ("grad", "sum(0.5824271251430154*x)", ["x=[-1,1]"]),
    ],
)
def test_ties_and_cancellations_are_not_false_alarms(command, expression, values):
    r = run(command, expression, *values, "--no-symbolic")
    assert r.code == 0, r.stdout + r.stderr


def test_order_2_with_seed_grad_is_refused():
    r = run("grad", "x*x*y", "x=3", "y=2", "--seed-grad", "2", "--order", "2")
    assert r.code == 2 and "drop --seed-grad" in r.stderr
