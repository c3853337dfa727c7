"""Arrays end to end: vector and matrix values in `grad`, `explain` and `graph`, checked
against numpy formulas and torch autograd; shape errors, value files, CSV columns."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose

from tests.conftest import cli_in_fresh_python, run


def lit(value) -> str:
    """A value as the command line takes it: a number or nested brackets."""
    return json.dumps(np.asarray(value, dtype=float).tolist())


def grad_json(*args: str):
    r = run("grad", *args, "--format", "json")
    assert r.code == 0, r.stderr
    return r.json()


def torch_grads(fn, values: dict[str, np.ndarray], seed=None):
    """Value and gradient of fn(**tensors) by torch autograd (float64)."""
    ts = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in values.items()}
    out = fn(**ts)
    if seed is None:
        out.backward()
    else:
        out.backward(gradient=torch.tensor(seed, dtype=torch.float64))
    grads = {
        k: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape)) for k, t in ts.items()
    }
    return out.detach().numpy(), grads


# --- seed 004 (PyTorch course): y = 2·xᵀx at x = arange(4) ---------------------------------


@pytest.mark.parametrize("x", ["[0,1,2,3]", "arange(4)"])
def test_two_dot_x_x(x):
    data = grad_json("2*dot(x, x)", f"x={x}")
    assert data["value"] == pytest.approx(28.0)
    assert_allclose(data["gradient"]["x"], [0, 4, 8, 12], atol=1e-12)
    assert data["shapes"] == {"x": [4]}
    assert data["variables"]["x"] == pytest.approx([0, 1, 2, 3])
    assert data["ok"] is True


def test_two_dot_x_x_symbolic_compact_form():
    data = grad_json("2*dot(x, x)", "x=[0,1,2,3]", "--no-torch")
    assert data["symbolic"]["x"] == "4*x"
    assert [data["symbolic"][f"x[{i}]"] for i in range(4)] == [f"4*x[{i}]" for i in range(4)]
    assert data["checks"]["symbolic"]["ok"] is True
    table = run("grad", "2*dot(x, x)", "x=[0,1,2,3]", "--no-torch")
    assert table.code == 0, table.stderr
    assert "∂f/∂x = 4*x" in table.stdout


@pytest.mark.parametrize("seed", ["[1,1,1,1]", "1"])
def test_array_output_with_seed_grad(seed):
    data = grad_json("2*x*x", "x=[0,1,2,3]", "--seed-grad", seed, "--no-symbolic")
    assert_allclose(data["gradient"]["x"], [0, 4, 8, 12], atol=1e-12)
    assert_allclose(data["value"], [0, 2, 8, 18], atol=1e-12)
    assert data["output"]["shape"] == [4]
    assert data["seed_grad"] == pytest.approx([1, 1, 1, 1])
    assert data["ok"] is True


def test_seed_grad_weights_the_elements_like_torch():
    x = np.array([0.5, -1.0, 2.0])
    seed = np.array([1.0, -2.0, 0.25])
    data = grad_json("x*sin(x)", f"x={lit(x)}", "--seed-grad", lit(seed), "--no-symbolic")
    _, want = torch_grads(lambda x: x * torch.sin(x), {"x": x}, seed)
    assert_allclose(data["gradient"]["x"], want["x"], rtol=1e-12)
    assert data["ok"] is True


def test_array_output_without_seed_grad_is_refused():
    r = run("grad", "2*x*x", "x=[0,1,2,3]")
    assert r.code == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert "(4,)" in r.stderr and "not a scalar" in r.stderr
    hints = [line for line in r.stderr.splitlines() if line.startswith("hint:")]
    assert len(hints) == 1
    for piece in ("sum(", "jacobian", "--seed-grad"):
        assert piece in hints[0]


def test_seed_grad_of_the_wrong_shape_is_refused():
    r = run("grad", "2*x", "x=[1,2]", "--seed-grad", "[1,2,3]")
    assert r.code == 2
    assert "Traceback" not in r.stderr
    assert "--seed-grad" in r.stderr and "(3,)" in r.stderr and "(2,)" in r.stderr


def test_seed_grad_on_a_scalar_output_scales_every_check():
    # torch: y = x*x at x=3; y.backward(gradient=tensor(2.)) gives x.grad == 12
    data = grad_json("x*x", "x=3", "--seed-grad", "2")
    assert data["gradient"]["x"] == pytest.approx(12.0)
    for check in ("torch", "finite_difference", "symbolic"):
        assert data["checks"][check]["ok"] is True, check
    assert data["ok"] is True


def test_seed_grad_of_an_array_for_a_scalar_output_is_refused():
    r = run("grad", "x*x", "x=3", "--seed-grad", "[1,2]")
    assert r.code == 2
    assert "Traceback" not in r.stderr
    assert "--seed-grad" in r.stderr and "(2,)" in r.stderr


# --- seed 003: nn.Linear(1, 1) with an MSE loss ------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "w", "b"),
    [
        ([1, 2, 3], [1.5, 2.5, 3.5], -0.2505, 0.9166),  # the issue's example
        ([1, 2, 3], [2, 4, 6], 0.5, -1.0),
        ([-1.5, 0, 2.25, 4], [0.3, -0.7, 1.1, 2.0], 1.3, 0.2),
    ],
)
def test_linear_mse(x, y, w, b):
    xs, ys = np.array(x, dtype=float), np.array(y, dtype=float)
    data = grad_json("mean((w*x + b - y)**2)", f"x={lit(xs)}", f"y={lit(ys)}", f"w={w}", f"b={b}")
    r = w * xs + b - ys
    assert data["value"] == pytest.approx(np.mean(r**2), rel=1e-12)
    assert data["gradient"]["w"] == pytest.approx(np.mean(2 * r * xs), rel=1e-12)
    assert data["gradient"]["b"] == pytest.approx(np.mean(2 * r), rel=1e-12)
    assert_allclose(data["gradient"]["x"], 2 * r * w / len(xs), rtol=1e-12, atol=1e-15)
    assert_allclose(data["gradient"]["y"], -2 * r / len(xs), rtol=1e-12, atol=1e-15)
    assert data["shapes"] == {"b": [], "w": [], "x": [len(xs)], "y": [len(xs)]}
    assert data["ok"] is True


def test_linear_mse_issue_example_numbers():
    data = grad_json(
        "mean((w*x + b - y)**2)", "x=[1,2,3]", "y=[1.5,2.5,3.5]", "w=-0.2505", "b=0.9166",
        "--wrt", "w,b",
    )  # fmt: skip
    assert data["wrt"] == ["w", "b"]
    assert set(data["gradient"]) == {"w", "b"}
    assert data["gradient"]["w"] == pytest.approx(-10.004933333333334, rel=1e-12)
    assert data["gradient"]["b"] == pytest.approx(-4.1688, rel=1e-12)
    assert data["value"] == pytest.approx(5.387223526666666, rel=1e-12)


# --- CS231n: D = W @ X, f = sum(D * G) -------------------------------------------------------


@pytest.mark.parametrize("shapes", [(2, 3, 4), (3, 1, 2), (1, 4, 1)])
def test_matmul_gradients_cs231n(shapes):
    m, n, p = shapes
    rng = np.random.default_rng(231 + m * 100 + n * 10 + p)
    W = np.round(rng.normal(size=(m, n)), 3)
    X = np.round(rng.normal(size=(n, p)), 3)
    G = np.round(rng.normal(size=(m, p)), 3)
    data = grad_json(
        "sum((W @ X) * G)", f"W={lit(W)}", f"X={lit(X)}", f"G={lit(G)}",
        "--wrt", "W,X", "--no-symbolic",
    )  # fmt: skip
    assert set(data["gradient"]) == {"W", "X"}
    assert data["shapes"] == {"G": [m, p], "W": [m, n], "X": [n, p]}
    assert data["value"] == pytest.approx(np.sum((W @ X) * G), rel=1e-12, abs=1e-12)
    assert_allclose(data["gradient"]["W"], G @ X.T, rtol=1e-12, atol=1e-12)
    assert_allclose(data["gradient"]["X"], W.T @ G, rtol=1e-12, atol=1e-12)
    assert data["ok"] is True


# --- a layer: sum(sigmoid(W @ x + b)) -------------------------------------------------------

LAYER = ["sum(sigmoid(W @ x + b))", "W=[[1,2],[3,4]]", "x=[1,-1]", "b=[0,0.5]"]
LAYER_VALUES = {
    "W": np.array([[1.0, 2.0], [3.0, 4.0]]),
    "x": np.array([1.0, -1.0]),
    "b": np.array([0.0, 0.5]),
}


def _layer_torch():
    return torch_grads(lambda W, x, b: torch.sigmoid(W @ x + b).sum(), LAYER_VALUES)


def test_sigmoid_layer_matches_torch():
    data = grad_json(*LAYER)
    value, want = _layer_torch()
    assert data["value"] == pytest.approx(float(value), rel=1e-12)
    for name in ("W", "x", "b"):
        assert_allclose(data["gradient"][name], want[name], rtol=1e-12)
    assert data["shapes"] == {"W": [2, 2], "b": [2], "x": [2]}
    assert data["checks"]["torch"]["ok"] is True
    assert data["checks"]["symbolic"]["ok"] is True
    assert data["ok"] is True


# --- broadcasting VJPs, property-based -------------------------------------------------------

_finite = st.floats(-2, 2, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 3))


@st.composite
def _broadcast_case(draw):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, min_side=1, max_side=3)
    )
    a_shape, b_shape = shapes.input_shapes
    a = draw(hnp.arrays(np.float64, a_shape, elements=_finite))
    b = draw(hnp.arrays(np.float64, b_shape, elements=_finite))
    g = draw(hnp.arrays(np.float64, shapes.result_shape, elements=_finite))
    return a, b, g


BROADCAST_EXPRESSIONS = {
    "sum(G * (a*b + a - b))": lambda a, b, G: (G * (a * b + a - b)).sum(),
    "sum(sin(a) * exp(b) * G)": lambda a, b, G: (torch.sin(a) * torch.exp(b) * G).sum(),
}


@settings(max_examples=15, deadline=None)
@given(case=_broadcast_case(), expression=st.sampled_from(sorted(BROADCAST_EXPRESSIONS)))
def test_broadcasting_vjps_match_torch(case, expression):
    a, b, g = case
    data = grad_json(
        expression, f"a={lit(a)}", f"b={lit(b)}", f"G={lit(g)}",
        "--wrt", "a,b", "--no-symbolic", "--no-torch",
    )  # fmt: skip
    value, want = torch_grads(BROADCAST_EXPRESSIONS[expression], {"a": a, "b": b, "G": g})
    assert data["value"] == pytest.approx(float(value), rel=1e-10, abs=1e-12)
    for name, arr in (("a", a), ("b", b)):
        got = np.asarray(data["gradient"][name], dtype=float)
        assert got.shape == arr.shape, (name, got.shape, arr.shape)
        assert_allclose(got, want[name], rtol=1e-10, atol=1e-12)
    assert data["checks"]["finite_difference"]["ok"] is True


# --- reductions, transposes, reshapes, indexing vs torch -------------------------------------

W_VALUE = np.array([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]])  # no ties in any row or column
X_VALUE = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])

STRUCTURAL = [
    ("sum(W)", lambda W: W.sum()),
    ("mean(W)", lambda W: W.mean()),
    ("max(W)", lambda W: W.amax()),
    ("min(W)", lambda W: W.amin()),
    *[
        (f"{name}(W, axis={axis})", (lambda n, ax: lambda W: getattr(W, n)(dim=ax))(t, axis))
        for name, t in (("sum", "sum"), ("mean", "mean"), ("max", "amax"), ("min", "amin"))
        for axis in (0, 1, -1)
    ],
    ("T(W)", lambda W: W.T),
    ("W.T", lambda W: W.T),
    ("W[1,0]", lambda W: W[1, 0]),
    ("W[:,1]", lambda W: W[:, 1]),
    ("W[0]", lambda W: W[0]),
    ("W[0:2, 1:3]", lambda W: W[0:2, 1:3]),
    ("T(W) @ W", lambda W: W.T @ W),
    ("reshape(x, 2, 3)", lambda x: x.reshape(2, 3)),
    ("reshape(x, 3, 2) @ W", lambda x, W: x.reshape(3, 2) @ W),
    ("x[1:3]", lambda x: x[1:3]),
    ("x[:2]", lambda x: x[:2]),
    ("x[::2]", lambda x: x[::2]),
    ("x[-1]", lambda x: x[-1]),
]


@pytest.mark.parametrize(("expression", "fn"), STRUCTURAL, ids=[e for e, _ in STRUCTURAL])
def test_structural_ops_match_torch(expression, fn):
    names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    values = {n: {"W": W_VALUE, "x": X_VALUE}[n] for n in names}
    out = fn(**{n: torch.tensor(v, dtype=torch.float64) for n, v in values.items()}).numpy()
    seed = None
    args = [f"{n}={lit(v)}" for n, v in values.items()]
    if out.shape:
        # a non-uniform upstream gradient, so a rule that routes G to the wrong place fails
        seed = np.arange(1.0, out.size + 1).reshape(out.shape) * 0.5
        args += ["--seed-grad", lit(seed)]
    value, want = torch_grads(fn, values, seed)
    data = grad_json(expression, *args, "--no-symbolic")
    assert_allclose(data["value"], value, rtol=1e-12)
    assert data["output"]["shape"] == list(value.shape)
    for name in names:
        assert_allclose(data["gradient"][name], want[name], rtol=1e-12, atol=0)
    assert data["ok"] is True


def test_max_ties_split_the_gradient_like_torch_amax():
    data = grad_json("max(x)", "x=[1,3,3]")
    assert_allclose(data["gradient"]["x"], [0, 0.5, 0.5])
    _, want = torch_grads(lambda x: x.amax(), {"x": np.array([1.0, 3.0, 3.0])})
    assert_allclose(data["gradient"]["x"], want["x"])
    assert data["ok"] is True


def test_max_along_an_axis_with_ties_like_torch_amax():
    W = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    seed = np.array([2.0, -1.0])
    data = grad_json("max(W, axis=1)", f"W={lit(W)}", "--seed-grad", lit(seed), "--no-symbolic")
    _, want = torch_grads(lambda W: W.amax(dim=1), {"W": W}, seed)
    assert_allclose(data["gradient"]["W"], [[0, 1, 1], [-0.5, -0.5, 0]])
    assert_allclose(data["gradient"]["W"], want["W"])
    assert data["ok"] is True


# --- shape and value errors: exit 2, one clear first line, no traceback ----------------------


def _refused(*args: str) -> str:
    r = run("grad", *args)
    assert r.code == 2, (r.code, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("error:")
    return first


@pytest.mark.parametrize(
    ("args", "pieces"),
    [
        (["sum(W @ x)", "W=[[1,2],[3,4]]", "x=[1,2,3]"], ["matmul", "(2, 2)", "(3,)"]),
        (["sum(A @ B)", "A=[[1,2,3]]", "B=[[1,2,3]]"], ["matmul", "(1, 3)"]),
        (["sum(a + b)", "a=[1,2]", "b=[1,2,3]"], ["add", "broadcast", "(2,)", "(3,)"]),
        (["sum(a * b)", "a=[[1,2],[3,4]]", "b=[1,2,3]"], ["mul", "(2, 2)", "(3,)"]),
        (["dot(a, b)", "a=[1,2]", "b=[1,2,3]"], ["dot", "(2,)", "(3,)"]),
        (["sum(reshape(x, 4, 2))", "x=[1,2,3,4,5,6]"], ["reshape", "(6,)", "(4, 2)"]),
        (["sum(x, axis=5)", "x=[1,2,3]"], ["sum", "axis 5", "(3,)"]),
        (["mean(W, axis=2)", "W=[[1,2],[3,4]]"], ["mean", "axis 2", "(2, 2)"]),
        (["x[5]", "x=[1,2]"], ["getitem", "5", "(2,)"]),
    ],
    ids=["matmul", "matmul-2d", "add", "mul", "dot", "reshape", "axis", "axis-2d", "index"],
)
def test_shape_errors_name_the_op_and_shapes(args, pieces):
    first = _refused(*args)
    for piece in pieces:
        assert piece in first, (piece, first)


def test_ragged_literal_is_refused():
    assert "ragged" in _refused("sum(x)", "x=[[1,2],[3]]")


def test_empty_literal_is_refused():
    assert "empty" in _refused("sum(x)", "x=[]")


def test_ragged_values_file_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"x": [[1, 2], [3]]}))
    assert "'x'" in _refused("sum(x)", "--values", str(path))


# --- --values FILE.json with arrays -----------------------------------------------------------


def test_values_file_with_arrays(tmp_path):
    path = tmp_path / "params.json"
    path.write_text(json.dumps({k: v.tolist() for k, v in LAYER_VALUES.items()}))
    data = grad_json(LAYER[0], "--values", str(path), "--no-symbolic")
    value, want = _layer_torch()
    assert data["value"] == pytest.approx(float(value), rel=1e-12)
    for name in ("W", "x", "b"):
        assert_allclose(data["gradient"][name], want[name], rtol=1e-12)
    assert data["shapes"] == {"W": [2, 2], "b": [2], "x": [2]}


def test_command_line_value_wins_over_values_file(tmp_path):
    # --help: "Values from a JSON object ...; NAME=VALUE wins."
    path = tmp_path / "params.json"
    path.write_text(json.dumps({k: v.tolist() for k, v in LAYER_VALUES.items()}))
    data = grad_json(LAYER[0], "--values", str(path), "x=[2,0]", "--no-symbolic")
    assert data["variables"]["x"] == pytest.approx([2.0, 0.0])
    assert data["variables"]["W"] == [[1.0, 2.0], [3.0, 4.0]]
    values = {**LAYER_VALUES, "x": np.array([2.0, 0.0])}
    _, want = torch_grads(lambda W, x, b: torch.sigmoid(W @ x + b).sum(), values)
    for name in ("W", "x", "b"):
        assert_allclose(data["gradient"][name], want[name], rtol=1e-12)


def test_array_constructors_in_values():
    data = grad_json("sum(W * x) + sum(z)", "W=ones(2,3)", "x=arange(3)", "z=zeros(2)")
    assert data["variables"] == {
        "W": [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
        "x": [0.0, 1.0, 2.0],
        "z": [0.0, 0.0],
    }
    assert_allclose(data["gradient"]["W"], [[0, 1, 2], [0, 1, 2]])
    assert_allclose(data["gradient"]["x"], [2, 2, 2])
    assert_allclose(data["gradient"]["z"], [1, 1])


# --- CSV: one flattened column per element ----------------------------------------------------


def test_csv_flattens_arrays_and_matches_json():
    r = run("grad", *LAYER, "--format", "csv")
    assert r.code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert len(rows) == 2
    header, row = rows
    elements = ["W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "b[0]", "b[1]", "x[0]", "x[1]"]
    assert header == [*elements, "value", *(f"d_{e}" for e in elements)]
    got = dict(zip(header, map(float, row), strict=True))
    data = grad_json(*LAYER)
    assert got["value"] == pytest.approx(data["value"], rel=1e-15)
    for name, values in data["variables"].items():
        for index, v in np.ndenumerate(np.asarray(values)):
            key = f"{name}[{','.join(map(str, index))}]"
            assert got[key] == pytest.approx(v)
            assert got[f"d_{key}"] == pytest.approx(
                np.asarray(data["gradient"][name])[index], rel=1e-15
            )


def test_csv_of_an_array_output_has_value_columns():
    r = run("grad", "2*x*x", "x=[1,2]", "--seed-grad", "[1,3]", "--format", "csv")
    assert r.code == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert rows[0] == ["x[0]", "x[1]", "value[0]", "value[1]", "d_x[0]", "d_x[1]"]
    assert [float(v) for v in rows[1]] == pytest.approx([1, 2, 2, 8, 4, 24])


# --- explain and graph -----------------------------------------------------------------------


def test_explain_arrays_shows_shapes_and_gradients():
    r = run("explain", *LAYER)
    assert r.code == 0, r.stderr
    assert "(2, 2)" in r.stdout and "(2,)" in r.stdout
    assert "∂f/∂W" in r.stdout and "∂f/∂x" in r.stdout and "∂f/∂b" in r.stdout
    assert "G·Bᵀ" in r.stdout and "Aᵀ·G" in r.stdout  # the matmul VJPs


def test_explain_arrays_json_matches_torch():
    r = run("explain", *LAYER, "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["arrays"] is True
    assert data["shapes"] == {"W": [2, 2], "b": [2], "x": [2]}
    value, want = _layer_torch()
    assert data["output"]["value"] == pytest.approx(float(value), rel=1e-12)
    grads = {g["variable"]: g for g in data["gradients"]}
    assert set(grads) == {"W", "x", "b"}
    for name in ("W", "x", "b"):
        assert grads[name]["shape"] == list(LAYER_VALUES[name].shape)
        assert_allclose(grads[name]["gradient"], want[name], rtol=1e-12)
    assert data["reverse_steps_total"] == len(data["reverse_steps"]) > 0


@pytest.mark.parametrize("fmt", ["markdown", "latex"])
def test_explain_arrays_markdown_and_latex_mention_shapes(fmt):
    r = run("explain", *LAYER, "--format", fmt)
    assert r.code == 0, r.stderr
    assert "(2, 2)" in r.stdout


def test_explain_arrays_wrt_one_variable():
    r = run("explain", *LAYER, "--wrt", "W", "--format", "json")
    assert r.code == 0, r.stderr
    grads = r.json()["gradients"]
    assert [g["variable"] for g in grads] == ["W"]
    assert_allclose(grads[0]["gradient"], _layer_torch()[1]["W"], rtol=1e-12)


def test_explain_forward_mode_with_arrays_is_refused():
    r = run("explain", *LAYER, "--mode", "forward")
    assert r.code == 2
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    assert "--mode forward" in r.stderr and "array" in r.stderr
    assert "--mode reverse" in r.stderr  # the way out


def test_explain_array_output_is_refused():
    r = run("explain", "2*x*x", "x=[1,2]")
    assert r.code == 2
    assert "Traceback" not in r.stderr
    assert "(2,)" in r.stderr and "not a scalar" in r.stderr


def test_graph_tree_shows_shapes_values_and_gradients():
    r = run("graph", *LAYER)
    assert r.code == 0, r.stderr
    out = r.stdout
    assert "(2, 2)" in out and "(2,)" in out
    assert "[[1, 2], [3, 4]]" in out
    assert "[0.9016, 1.333]" in out  # ∂f/∂x, to 4 significant digits


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
def test_graph_dot_and_mermaid_carry_shapes(fmt):
    r = run("graph", *LAYER, "--format", fmt)
    assert r.code == 0, r.stderr
    assert "(2, 2)" in r.stdout and "(2,)" in r.stdout
    if fmt == "dot":
        assert r.stdout.startswith("digraph")
        assert r.stdout.count("->") == 6


def test_graph_of_an_array_output_without_seed_still_draws():
    r = run("graph", "2*x*x", "x=[1,2]")
    assert r.code == 0, r.stderr
    assert "(2,)" in r.stdout and "[2, 8]" in r.stdout


# --- --no-torch never imports torch, arrays included ------------------------------------------


def test_no_torch_with_arrays_never_imports_torch():
    cli_in_fresh_python(
        ["grad", "sum(x*x)", "x=[1,2]", "--no-torch", "--format", "json"],
        "assert 'torch' not in sys.modules, 'torch was imported'",
    )


# ---- matrix calculus: compact forms where SymPy's matrix calculus gives one ----------------


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        # CS231n: D = W·X, f = sum(D ⊙ G) → dW = G·Xᵀ, dX = Wᵀ·G
        (
            "sum((W @ X) * G)",
            ["W=[[1,2,3],[4,5,6]]", "X=[[1,0],[2,1],[0,3]]", "G=[[1,-1],[2,0.5]]"],
            {"W": "G·Xᵀ", "X": "Wᵀ·G", "G": "W·X"},
        ),
        # a quadratic form: ∂/∂x xᵀAx = (A + Aᵀ)x, ∂/∂A = x·xᵀ
        ("dot(x, A @ x)", ["x=[1,2]", "A=[[1,2],[3,4]]"], {"x": "A·x + Aᵀ·x", "A": "x·xᵀ"}),
        (
            "sum(W @ x + b)",
            ["W=[[1,2],[3,4]]", "x=[1,-1]", "b=[0,0.5]"],
            {"W": "ones(2)·xᵀ", "x": "Wᵀ·ones(2)", "b": "ones(2)"},
        ),
    ],
)
def test_matrix_calculus_forms(expression, values, expected):
    result = run("grad", expression, *values, "--no-torch", "--format", "json")
    assert result.code == 0, result.stderr
    assert result.json()["symbolic_matrix"] == expected


def test_matrix_calculus_form_is_shown_in_the_table_and_markdown():
    args = ["grad", "sum((W @ X) * G)", "W=[[1,2],[3,4]]", "X=[[1,0],[2,1]]", "G=[[1,0],[0,1]]"]
    table = run(*args, "--no-torch")
    assert "SymPy, matrix calculus" in table.stdout and "∂f/∂W = G·Xᵀ" in table.stdout
    markdown = run(*args, "--no-torch", "--format", "markdown")
    partial = "$\\frac{\\partial f}{\\partial W}$"
    assert f"SymPy, matrix calculus: {partial} = `G·Xᵀ`" in markdown.stdout


def test_no_matrix_form_where_matrix_calculus_has_none():
    result = run(
        "grad",
        "sum(sigmoid(W @ x))",
        "W=[[1,2],[3,4]]",
        "x=[1,-1]",
        "--no-torch",
        "--format",
        "json",
    )
    assert result.code == 0, result.stderr
    assert result.json()["symbolic_matrix"] == {}
