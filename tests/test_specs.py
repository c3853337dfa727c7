"""Model specs wherever an expression goes: the grammar, the book network of seed 000 as
`mlp:2-3-1`, the named and matrix forms, the initialisation note, bad specs and train."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backprop_cli.cli.entry import quick_grad_args
from backprop_cli.core import specs
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import parse_program
from tests.conftest import run

ROOT = Path(__file__).parent.parent
BOOK = ROOT / "examples" / "chain_rule_network.bp"
WEIGHTS = {
    "w11": 0.8, "w12": 0.4, "w13": 0.3, "w21": 0.2, "w22": 0.9, "w23": 0.5,
    "w31": 0.3, "w32": 0.5, "w33": 0.9,
}  # fmt: skip
POINT = ["x1=1", "x2=1", "y=0"]
FAST = ["--no-torch", "--no-symbolic"]


def statements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


@pytest.fixture
def params(tmp_path: Path) -> str:
    path = tmp_path / "params.json"
    path.write_text(json.dumps(WEIGHTS))
    return str(path)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point (grad's quick path included), in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


# --- the grammar and the expansion --------------------------------------------------------


def test_the_book_network_is_mlp_2_3_1_statement_for_statement():
    assert statements(specs.expand("mlp:2-3-1", loss="mse").text) == statements(BOOK.read_text())


def test_show_program_prints_the_book_network():
    r = run("grad", "mlp:2-3-1", "--loss", "mse", "--show-program")
    assert r.code == 0 and r.stderr == ""
    assert statements(r.stdout) == statements(BOOK.read_text())
    assert r.stdout.startswith("# mlp:2-3-1 --loss mse --form named: inputs x1, x2; target y")
    for command in ("explain", "graph", "check"):
        other = run(command, "mlp:2-3-1", "--show-program")
        assert other.code == 0 and other.stdout == r.stdout, command


def test_show_program_on_the_quick_path_and_for_an_expression():
    out = cli("grad", "mlp:2-3-1", "--show-program")
    assert out.returncode == 0, out.stderr
    assert statements(out.stdout) == statements(BOOK.read_text())
    assert quick_grad_args(["mlp:2-3-1", "--show-program"]) is not None
    r = run("grad", "q = x + y; f = q * z", "--show-program")
    assert r.code == 0 and r.stdout == "q = x + y; f = q * z\n"


def test_the_naming_rule_for_more_layers_and_outputs():
    text = specs.expand("mlp:2-3-2-2:tanh").text
    assert statements(text) == [
        "h11 = x1*w11 + x2*w21",
        "h12 = x1*w12 + x2*w22",
        "h13 = x1*w13 + x2*w23",
        "a11 = tanh(h11)",
        "a12 = tanh(h12)",
        "a13 = tanh(h13)",
        "h21 = a11*w31 + a12*w32 + a13*w33",
        "h22 = a11*w41 + a12*w42 + a13*w43",
        "a21 = tanh(h21)",
        "a22 = tanh(h22)",
        "yhat1 = a21*w51 + a22*w52",
        "yhat2 = a21*w61 + a22*w62",
        "C = (yhat1 - y1)**2 + (yhat2 - y2)**2",
    ]
    wide = specs.expand("mlp:1-12-1")
    assert wide.inputs == ("x",)
    assert "h1_12 = x*w1_12" in wide.text and "w2_12" in wide.params
    assert "yhat = a11*w21 + " in wide.text and "+ a1_12*w2_12\n" in wide.text
    deep = specs.expand("mlp:2-10-3-1").text  # groups 3, 4, 5: layer 2; 6: the output
    assert "h21 = a11*w31 + " in deep and " + a1_10*w3_10\n" in deep
    assert "yhat = a21*w61 + a22*w62 + a23*w63\n" in deep


def test_builtins_and_losses_expand_as_train_writes_them():
    assert statements(specs.expand("linear").text) == ["yhat = w*x", "C = (yhat - y)**2"]
    assert specs.expand("logistic").loss == "bce"
    summed = statements(specs.expand("affine", loss="mse+mae").text)
    assert summed[1:] == [
        "C_mse = (yhat - y)**2",
        "C_mae = abs(yhat - y)",
        "C = C_mse + C_mae",
    ]


def test_both_forms_parse_within_the_default_limits():
    for text in ("mlp:2-3-1", "mlp:3-4-4-2:relu", "quadratic"):
        parse_program(specs.expand(text).text)
    parse_program(specs.expand("mlp:3-4-4-2", form="matrix", loss="huber").text)


def test_the_named_weights_are_the_matrix_forms_entries():
    spec = specs.parse_spec("mlp:2-3-2-1")
    named = specs.initial(spec, "named", seed=5)
    matrix = specs.initial(spec, "matrix", seed=5)
    assert named["w11"] == matrix["W1"][0, 0] and named["w21"] == matrix["W1"][0, 1]
    assert named["w12"] == matrix["W1"][1, 0]
    assert named["w41"] == matrix["W2"][1, 0]  # group 4: unit 2 of layer 2, from a11
    assert named["w52"] == matrix["W3"][1]  # group 5: the output, from a22
    assert set(named) == set(specs.expand(spec).params)


def test_a_variable_named_like_a_model_is_written_in_parentheses():
    r = run("grad", "(linear)", "linear=2", *FAST, "--format", "json")
    assert r.code == 0 and r.json()["value"] == 2


# --- the book's numbers -----------------------------------------------------------------


def test_explain_reproduces_the_books_path_for_w11(params):
    r = run("explain", "mlp:2-3-1", *POINT, "--init", params, "--wrt", "w11", "--digits", "0")
    assert r.code == 0, r.stderr
    assert "1.5208" in r.stdout and "0.14547852" in r.stdout
    assert "C → t11 → yhat → t9 → t7 → a11 → h11 → t1 → w11" in r.stdout
    assert r.stderr == ""  # every weight given: no initialisation note
    data = run("explain", "mlp:2-3-1", *POINT, "--init", params, "--format", "json").json()
    assert data["ok"]


def test_grad_gives_the_books_numbers(params):
    r = run("grad", "mlp:2-3-1", *POINT, "--init", params, "--format", "json", "--no-symbolic")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["value"] == pytest.approx(1.5208, abs=5e-5)
    assert data["gradient"]["w11"] == pytest.approx(0.14548, abs=5e-6)
    assert data["gradient"]["w31"] == pytest.approx(1.8031, abs=5e-5)
    assert data["source"] == "mlp:2-3-1"
    given = [f"{k}={v}" for k, v in WEIGHTS.items()]
    quick = cli("grad", "mlp:2-3-1", *POINT, *given, *FAST, "--format", "json")
    assert quick.returncode == 0, quick.stderr
    assert json.loads(quick.stdout)["gradient"] == pytest.approx(data["gradient"])


def test_name_value_wins_over_init(params):
    r = run("grad", "mlp:2-3-1", *POINT, "w11=0", "--init", params, *FAST, "--format", "json")
    assert r.code == 0 and r.json()["variables"]["w11"] == 0


def test_the_matrix_form_agrees_with_the_named_form():
    w1 = [[WEIGHTS[f"w{i}{j}"] for i in (1, 2)] for j in (1, 2, 3)]
    w2 = [WEIGHTS[f"w3{j}"] for j in (1, 2, 3)]
    r = run(
        "grad", "mlp:2-3-1", "--form", "matrix", "X=[[1,1]]", "y=[0]", f"W1={w1}",
        "b1=[0,0,0]", f"W2={w2}", "b2=0", "--format", "json", *FAST,
    )  # fmt: skip
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["value"] == pytest.approx(1.5208120789621902, rel=1e-12)
    named = run("grad", "mlp:2-3-1", *POINT, *(f"{k}={v}" for k, v in WEIGHTS.items()),
                "--format", "json", *FAST).json()  # fmt: skip
    g = np.array(data["gradient"]["W1"])
    for i in (1, 2):
        for j in (1, 2, 3):
            assert g[j - 1, i - 1] == pytest.approx(named["gradient"][f"w{i}{j}"], rel=1e-12)
    assert data["gradient"]["W2"] == pytest.approx([named["gradient"][f"w3{j}"] for j in (1, 2, 3)])


def test_the_forms_agree_on_the_same_seeds_weights():
    """Unset, both forms start from the same draws; the matrix form's biases set to 0."""
    x = ["x1=0.5", "x2=-1", "y=0.25"]
    named = run("grad", "mlp:2-4-1:tanh", *x, "--seed", "7", "--format", "json", *FAST)
    matrix = run("grad", "mlp:2-4-1:tanh", "--form", "matrix", "--seed", "7", "X=[[0.5,-1]]",
                 "y=[0.25]", "b1=[0,0,0,0]", "b2=0", "--format", "json", *FAST)  # fmt: skip
    assert named.code == 0 and matrix.code == 0, named.stderr + matrix.stderr
    assert matrix.json()["value"] == pytest.approx(named.json()["value"], rel=1e-12)


# --- the initialisation note ------------------------------------------------------------


def test_the_initialisation_is_said_on_stderr_and_in_the_json():
    r = run("grad", "mlp:2-3-1", *POINT, "--format", "json", *FAST)
    assert r.code == 0, r.stderr
    note = next(w["message"] for w in r.json()["warnings"] if "initialisation" in w["message"])
    assert "9 parameters" in note and "--seed 0" in note and "w11=" in note
    assert f"warning: {note}" in r.stderr
    seeded = run("grad", "mlp:2-3-1", *POINT, "--seed", "3", "--format", "json", *FAST)
    assert "--seed 3" in seeded.stderr
    assert seeded.json()["variables"]["w11"] != r.json()["variables"]["w11"]
    linear = run("grad", "linear", "x=2", "y=1", *FAST, "--format", "json")
    assert linear.json()["variables"]["w"] == 1  # train's start
    assert "1 parameter starts" in linear.stderr and "w=1" in linear.stderr
    explained = run("explain", "mlp:2-3-1", *POINT, "--format", "json")
    assert any("initialisation" in w["message"] for w in explained.json()["warnings"])


def test_init_inline_and_partial():
    r = run("grad", "affine", "x=2", "y=1", "--init", "w=2", *FAST, "--format", "json")
    assert r.code == 0 and r.json()["variables"] == {"b": 0, "w": 2, "x": 2, "y": 1}
    assert "1 parameter starts" in r.stderr and "b=0" in r.stderr


# --- every command ------------------------------------------------------------------------


def test_graph_and_check_take_specs(params):
    g = run("graph", "mlp:2-3-1", *POINT, "--init", params)
    assert g.code == 0, g.stderr
    assert "w33  0.9" in g.stdout and "1.521" in g.stdout
    structure = run("graph", "mlp:2-3-1:relu")
    assert structure.code == 0 and "relu" in structure.stdout and structure.stderr == ""
    c = run("check", "mlp:2-3-1:tanh", "--samples", "20", "--no-symbolic", "--format", "json")
    assert c.code == 0, c.stderr
    assert c.json()["ok"]
    fixed = run("check", "logistic", "--init", "w=1,b=0", "--samples", "10", "--range", "0.1,0.9",
                "--no-symbolic", "--format", "json")  # fmt: skip
    assert fixed.code == 0, fixed.stderr


def test_hessian_family_gets_specs_through_the_shared_loader():
    r = run("grad", "quadratic", "x=2", "y=1", "--order", "2", *FAST, "--format", "json")
    assert r.code == 0, r.stderr


def test_options_for_specs_on_an_expression():
    r = run("grad", "x*y", "x=1", "y=2", "--loss", "mae", *FAST)
    assert r.code == 0 and "--loss does nothing" in r.stderr
    r = run("grad", "x*y", "x=1", "y=2", "--init", "x=3", *FAST)
    assert r.code == 2 and "--init starts a model spec's parameters" in r.stderr


# --- bad specs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("mlp:2-x-1", "'x' is not a layer size"),
        ("mlp:2-3-1:nosuchop", "the activation nosuchop is no op of the registry"),
        ("mlp:2-3-1:sum", "not a unary elementwise one"),
        ("mlp:0-1", "at least 1 unit"),
        ("mlp:2-1", "at least one hidden layer"),
        ("mlp:", "the layer sizes are missing"),
        ("mlp:2-3-1:", "activation after ':' is missing"),
        ("mlp", "needs its layer sizes"),
        ("mlp:99999999999-1-1", "too large"),
        ("mlp:100000-100000-1", "more than 1,000,000"),
        ("mlp:300-300-1", "more than --max-length 100,000; use --form matrix"),
    ],
)
@pytest.mark.parametrize("command", ["grad", "explain", "graph", "check"])
def test_a_bad_spec_is_one_line_and_exit_2(spec, fragment, command):
    r = run(command, spec, "x1=1")
    assert r.code == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and fragment in r.stderr


def test_a_bad_spec_on_the_quick_path():
    out = cli("grad", "mlp:2-x-1", "x1=1")
    assert out.returncode == 2 and len(out.stderr.splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_bad_loss_and_form():
    assert run("grad", "mlp:2-3-1", *POINT, "--loss", "nope").code == 2
    r = run("grad", "linear", "x=1", "y=1", "--form", "matrix")
    assert r.code == 2 and "--form matrix is for mlp specs" in r.stderr
    with pytest.raises(BackpropError):
        specs.expand("mlp:2-3-1", form="nope")


def test_the_quick_path_knows_the_new_options():
    fields = quick_grad_args(
        ["mlp:2-3-1", "x1=1", "--loss", "mae", "--form", "matrix", "--seed", "4", "--init", "p"]
    )
    assert fields is not None
    assert (fields["loss"], fields["form"], fields["seed"], fields["init"]) == (
        "mae",
        "matrix",
        4,
        "p",
    )
    assert quick_grad_args(["mlp:2-3-1", "--form", "grid"]) is None
    assert quick_grad_args(["mlp:2-3-1", "--seed", "-1"]) is None


# --- train ------------------------------------------------------------------------------


@pytest.fixture
def xor(tmp_path: Path) -> str:
    path = tmp_path / "xor.csv"
    path.write_text("x1,x2,y\n0,0,0\n0,1,1\n1,0,1\n1,1,0\n")
    return str(path)


def test_train_on_the_book_network(xor, tmp_path):
    saved = tmp_path / "p.json"
    r = run("train", "mlp:2-3-1", "--data", xor, "--epochs", "50", "--lr", "0.5", "--save",
            str(saved))  # fmt: skip
    assert r.code == 0, r.stderr
    assert "a11 = sigmoid(h11)" in r.stdout
    trained = json.loads(saved.read_text())
    assert set(trained) == set(WEIGHTS)
    # the trained weights go back into grad, the spec being the same program
    g = run("grad", "mlp:2-3-1", "x1=1", "x2=0", "y=1", "--init", str(saved), *FAST)
    assert g.code == 0 and g.stderr == ""


def test_train_matrix_form_is_trains_mlp(xor):
    spec = run("train", "mlp:2-3-1", "--form", "matrix", "--data", xor, "--epochs", "30",
               "--format", "jsonl")  # fmt: skip
    mlp = run("train", "mlp", "--hidden", "3", "--data", xor, "--epochs", "30", "--format", "jsonl")
    assert spec.code == 0 and mlp.code == 0, spec.stderr + mlp.stderr
    last = [json.loads(line) for line in spec.stdout.splitlines()][-1]
    other = [json.loads(line) for line in mlp.stdout.splitlines()][-1]
    assert last["loss"] == other["loss"]


def test_train_show_program_and_refusals(xor):
    r = run("train", "mlp:2-3-1", "--data", xor, "--show-program")
    assert r.code == 0 and "loss = loss_mse" in r.stdout
    r = run("train", "mlp:3-3-1", "--data", xor)
    assert r.code == 2 and "takes 3 input columns, but the data has 2" in r.stderr
    r = run("train", "mlp:2-3-2", "--data", xor)
    assert r.code == 2 and "train fits one target column" in r.stderr
    r = run("train", "mlp:2-500-1", "--data", xor, "--max-params", "100")
    assert r.code == 2 and "--max-params" in r.stderr
    r = run("train", "mlp:2-x-1", "--data", xor)
    assert r.code == 2 and len(r.stderr.splitlines()) == 1


def test_the_quick_path_matches_typer_on_a_spec(params):
    args = ["grad", "mlp:2-3-1:tanh", *POINT, "w11=0.5", "--seed", "2", "--loss", "mse+mae",
            "--format", "json", *FAST]  # fmt: skip
    assert quick_grad_args(args[1:]) is not None
    quick = cli(*args)
    typer = run(*args)
    assert quick.returncode == typer.code == 0
    assert quick.stdout == typer.stdout and quick.stderr == typer.stderr


# --- review fixes: long sizes, long specs, warning order, data shapes, higher commands ----


def test_leading_zeros_are_refused_and_long_sizes_never_reach_int():
    r = run("grad", "mlp:02-3-1", *POINT)
    assert r.code == 2 and r.stderr.splitlines() == [
        "error: model spec 'mlp:02-3-1': write 2, not 02 (no leading zeros)"
    ]
    huge = "mlp:2-" + "0" * 5000 + "3-1"
    for spec in (huge, "mlp:2-" + "9" * 5000 + "-1", "mlp:2-" + "0" * 5000 + "-1"):
        out = cli("grad", spec, "x1=1")
        assert out.returncode == 2, out.stderr
        assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("error: ")
        assert "internal error" not in out.stderr and len(out.stderr) < 200
    with pytest.raises(BackpropError, match="write 3, not"):
        specs.parse_spec(huge)
    import backprop_cli as bp

    with pytest.raises(BackpropError):
        bp.expand(huge)
    with pytest.raises(BackpropError, match="too large"):
        bp.expand("mlp:2-" + "9" * 5000 + "-1")


@pytest.mark.parametrize(
    "spec",
    [
        "mlp:" + "-".join(["1"] * 50_000),
        "mlp:2-3-" + "x" * 50_000,
        "mlp:2-3-1:" + "a" * 50_000,
        "mlp:2-3-1:" + "+" * 50_000,
    ],
)
def test_a_huge_spec_is_cut_in_the_error(spec):
    r = run("grad", spec, "x1=1")
    assert r.code == 2 and len(r.stderr.splitlines()) == 1, r.stderr[:300]
    assert r.stderr.startswith("error: ") and "…" in r.stderr and len(r.stderr) < 300


def test_show_cuts_to_sixty_characters():
    assert specs.show("mlp:2-3-1") == "mlp:2-3-1"
    cut = specs.show("m" * 1000)
    assert len(cut) == specs.SHOWN and cut.endswith("…")


@pytest.mark.parametrize(
    "args",
    [
        ["x*x", "x=1", "q=3", "--wrt", "zz"],
        ["mlp:2-3-1", *POINT, "--wrt", "zz"],
        ["x*x", "x=1", "--seed", "3", "--loss", "mae", "--wrt", "zz"],
    ],
)
def test_explain_says_the_error_before_any_warning(args):
    r = run("explain", *args)
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.splitlines() == [r.stderr.splitlines()[0]]
    assert r.stderr.startswith("error: --wrt names zz")


def test_explain_still_warns_when_it_succeeds():
    r = run("explain", "x*x", "x=1", "q=3", "--seed", "3")
    assert r.code == 0
    assert "warning: --seed does nothing" in r.stderr and "'q'" in r.stderr
    r = run("explain", "mlp:2-3-1", *POINT, "--wrt", "w11")
    assert r.code == 0 and "from the model's initialisation" in r.stderr


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        (
            ["X=[[1,2],[3,4],[5,6]]", "y=[[1],[2],[3]]"],
            "X is (3, 2), so the target y must be (3,), not (3, 1)",
        ),
        (["X=[[1,2]]", "y=[1,2]"], "X is (1, 2), so the target y must be (1,), not (2,)"),
        (["X=[[1,2]]", "y=1"], "must be (1,), not scalar"),
        (["X=[1,2]", "y=[1]"], "X must be N × 2"),
        (["X=[[1,2,3]]", "y=[1]"], "X must be N × 2"),
    ],
)
@pytest.mark.parametrize("command", ["grad", "explain", "hessian"])
def test_the_matrix_form_refuses_shapes_that_broadcast(values, fragment, command):
    extra = FAST if command != "explain" else []
    r = run(command, "mlp:2-3-1", "--form", "matrix", *values, *extra)
    assert r.code == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("error: mlp:2-3-1 --form matrix")
    assert fragment in r.stderr


def test_the_matrix_forms_targets_with_more_outputs():
    ok = run("grad", "mlp:2-3-2", "--form", "matrix", "X=[[1,2],[3,4]]", "Y=[[0,1],[1,0]]", *FAST)
    assert ok.code == 0, ok.stderr
    r = run("grad", "mlp:2-3-2", "--form", "matrix", "X=[[1,2],[3,4]]", "Y=[0,1]", *FAST)
    assert r.code == 2 and "the target Y must be (2, 2), not (2,)" in r.stderr


def test_the_python_api_checks_the_matrix_shapes_too():
    import backprop_cli as bp

    with pytest.raises(BackpropError, match=r"must be \(3,\), not \(3, 1\)"):
        bp.grad("mlp:2-3-1", form="matrix", X=[[1, 2], [3, 4], [5, 6]], y=[[1], [2], [3]])


def test_the_named_form_refuses_mismatched_arrays_but_broadcasts_numbers():
    r = run("jacobian", "mlp:2-3-1", "x1=[1,2]", "x2=[1,2]", "y=[[0],[1]]", *FAST)
    assert r.code == 2 and r.stderr.startswith("error: mlp:2-3-1: the inputs and targets")
    assert "y (2, 1)" in r.stderr and len(r.stderr.splitlines()) == 1
    r = run("jacobian", "mlp:2-3-1", "x1=[1,2]", "x2=[1,2]", "y=0", *FAST)
    assert r.code == 0, r.stderr


@pytest.mark.parametrize("command", ["jacobian", "hessian"])
def test_the_higher_commands_take_the_spec_options(command, params):
    r = run(command, "mlp:2-3-1", *POINT, "--init", params, "--format", "json", *FAST)
    assert r.code == 0 and r.stderr == "", r.stderr
    r = run(command, "mlp:2-3-1", *POINT, "--seed", "4", "--loss", "mae", "--format", "json", *FAST)
    assert r.code == 0 and "--seed 4" in r.stderr
    data = r.json()
    assert "abs(" in data["expression"] and "--seed 4" in data["warnings"][0]["message"]
    r = run(command, "mlp:2-3-1", "--form", "matrix", "X=[[1,1]]", "y=[0]", *FAST)
    assert r.code == 0 and "W1 (3×2)" in r.stderr
    r = run(command, "mlp:2-3-1", "--show-program")
    assert r.code == 0 and r.stdout.startswith("# mlp:2-3-1 --loss mse --form named")
    r = run(command, "x*y", "x=1", "y=2", "--loss", "mae", *FAST)
    assert r.code == 0 and "--loss does nothing" in r.stderr
    r = run(command, "x*y", "x=1", "y=2", "--init", "x=3", *FAST)
    assert r.code == 2 and r.stderr.startswith("error: --init starts a model spec's")


def test_the_higher_tables_are_headed_by_the_spec(params):
    r = run("hessian", "mlp:2-3-1", *POINT, "--init", params, *FAST)
    assert r.code == 0 and "hessian of mlp:2-3-1" in r.stdout and "h11 =" not in r.stdout
    r = run("jacobian", "mlp:2-3-1", *POINT, "--init", params, "--format", "markdown", *FAST)
    assert r.code == 0 and "mlp:2-3-1" in r.stdout
