"""backprop train: the course digit for digit, every model, loss and optimizer against a plain
torch loop, the data errors, the outputs (log lines, JSONL, plots, saved parameters)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from backprop_cli.analyses import models, train
from backprop_cli.io import data as data_mod
from backprop_cli.render import numbers
from tests.conftest import run

COURSE_LOG = """\
predict (before training) 4 4.0
\tgrad: 1.0 2.0 -2.0
\tgrad: 2.0 4.0 -7.840000152587891
\tgrad: 3.0 6.0 -16.228801727294922
progress: 0 7.315943717956543
"""


def course_in_torch() -> list[str]:
    """The course's script (seed 002), verbatim in spirit: float32, per-sample SGD."""
    x_data, y_data = [1.0, 2.0, 3.0], [2.0, 4.0, 6.0]
    w = torch.tensor([1.0], requires_grad=True)
    lines = [f"predict (before training) 4 {(4 * w).item()}"]
    for epoch in range(100):
        for x, y in zip(x_data, y_data, strict=True):
            loss = (x * w - y) ** 2
            loss.backward()
            lines.append(f"\tgrad: {x} {y} {w.grad.item()}")
            w.data = w.data - 0.01 * w.grad.data
            w.grad.data.zero_()
        lines.append(f"progress: {epoch} {loss.item()}")
    lines.append(f"predict (after training) 4 {(4 * w).item()}")
    return lines


def test_the_course_digit_for_digit():
    with numbers.precision(numbers.FULL):  # --digits 0: every digit, as print() shows it
        r = run("train", "linear", "--epochs", "100", "--verbose")  # float32 by default
    assert r.code == 0, r.stderr
    ours = [
        line for line in r.stdout.splitlines() if line.startswith(("predict", "\tgrad", "progress"))
    ]
    assert ours == course_in_torch()
    assert r.stdout.splitlines()[4:9] == COURSE_LOG.splitlines()
    assert "predict (after training) 4 7.999998569488525" in r.stdout


def test_the_course_with_the_torch_engine():
    r = run("train", "--engine", "torch", "--dtype", "float32", "--format", "jsonl")
    final = json.loads(r.stdout.splitlines()[-1])
    assert final["predictions"] == [{"x": 4.0, "y": 7.999998569488525}]


def torch_loop(model: models.Model, ds, settings: train.Settings) -> dict[str, float]:
    """An independent torch training loop: the same formulas written with torch ops,
    torch.optim, mean reduction, the same batches."""
    dt = getattr(torch, settings.dtype)
    params = {p: torch.tensor(model.init[p], dtype=dt, requires_grad=True) for p in model.params}
    opt = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=settings.lr),
        "momentum": lambda ps: torch.optim.SGD(ps, lr=settings.lr, momentum=0.9),
        "adam": lambda ps: torch.optim.Adam(ps, lr=settings.lr),
    }[settings.optimizer](list(params.values()))
    x = {f: torch.tensor(ds.features[f], dtype=dt) for f in ds.features}
    y = torch.tensor(ds.target, dtype=dt)
    for _ in range(settings.epochs):
        for idx in train.batches(len(ds), settings.batch_size, None):
            i = torch.tensor(idx)
            yhat = PREDICT[model.name](params, {f: v[i] for f, v in x.items()})
            loss = LOSS_FNS[model.loss](yhat, y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.item() for k, v in params.items()}


PREDICT = {
    "linear": lambda p, x: p["w"] * x["x"],
    "affine": lambda p, x: p["w"] * x["x"] + p["b"],
    "quadratic": lambda p, x: p["w1"] * x["x"] ** 2 + p["w2"] * x["x"] + p["b"],
    "logistic": lambda p, x: torch.sigmoid(p["w"] * x["x"] + p["b"]),
}
LOSS_FNS = {
    "mse": torch.nn.functional.mse_loss,
    "mae": torch.nn.functional.l1_loss,
    "huber": torch.nn.functional.huber_loss,
    "bce": torch.nn.functional.binary_cross_entropy,
    "mse+mae": lambda a, b: torch.nn.functional.mse_loss(a, b) + torch.nn.functional.l1_loss(a, b),
}

XS = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
CASES = [
    ("linear", "mse", "sgd", 1, [2.1 * v for v in XS]),
    ("affine", "mse", "sgd", 0, [2 * v + 1 for v in XS]),
    ("affine", "mae", "momentum", 2, [2 * v + 1 for v in XS]),
    ("affine", "huber", "adam", 0, [3 * v - 2 for v in XS]),
    ("affine", "mse+mae", "sgd", 3, [2 * v + 1 for v in XS]),
    ("quadratic", "mse", "adam", 0, [v * v - v + 0.5 for v in XS]),
    ("logistic", "bce", "sgd", 0, [0, 0, 0, 1, 1, 1]),
    ("logistic", "bce", "adam", 2, [0, 0, 1, 0, 1, 1]),
]


@pytest.mark.parametrize(("name", "loss", "optimizer", "batch", "ys"), CASES)
def test_models_losses_optimizers_match_a_torch_loop(name, loss, optimizer, batch, ys):
    ds = data_mod.Dataset({"x": np.array(XS)}, "y", np.array(ys, dtype=float))
    model = models.build(name, ds, loss=loss, hidden=3, seed=0)
    for dtype, rel in (("float64", 1e-9), ("float32", 1e-4)):
        settings = train.Settings(
            epochs=60, lr=0.05, optimizer=optimizer, batch_size=batch, dtype=dtype
        )
        result = train.run(model, ds, settings, lambda *_: None)
        expected = torch_loop(model, ds, settings)
        for p, value in expected.items():
            assert result.params[p] == pytest.approx(value, rel=rel, abs=rel * 1e-3), (p, dtype)


@pytest.mark.parametrize(("name", "ys", "answer"), [
    ("affine", [2 * v + 1 for v in XS], {"w": 2.0, "b": 1.0}),
    ("quadratic", [3 * v * v + 2 * v + 1 for v in XS], {"w1": 3.0, "w2": 2.0, "b": 1.0}),
])  # fmt: skip
def test_models_reach_the_known_answer(name, ys, answer):
    ds = data_mod.Dataset({"x": np.array(XS)}, "y", np.array(ys))
    model = models.build(name, ds, loss=None, hidden=3, seed=0)
    settings = train.Settings(epochs=4000, lr=0.1, optimizer="adam", batch_size=0, dtype="float64")
    result = train.run(model, ds, settings, lambda *_: None)
    for p, value in answer.items():
        assert result.params[p] == pytest.approx(value, abs=1e-3)


def test_mlp_learns_xor_like_data_and_matches_torch_engine():
    xs = {"a": np.array([0.0, 0, 1, 1]), "b": np.array([0.0, 1, 0, 1])}
    ds = data_mod.Dataset(xs, "y", np.array([0.0, 1, 1, 0]))
    model = models.build("mlp", ds, loss="mse", hidden=4, seed=0)
    assert model.params == ["W1", "W2", "b1", "b2"]
    assert sum(np.size(model.init[p]) for p in model.params) == 4 * 2 + 4 + 4 + 1
    settings = train.Settings(epochs=700, lr=0.1, optimizer="adam", batch_size=0, dtype="float64")
    ours = train.run(model, ds, settings, lambda *_: None)
    settings.engine = "torch"
    theirs = train.run(model, ds, settings, lambda *_: None)
    for p in model.params:
        np.testing.assert_allclose(ours.params[p], theirs.params[p], rtol=1e-9, atol=1e-12)
    # Later, XOR's saddle amplifies last-bit differences between the engines, so the learning
    # itself is judged on our engine alone.
    settings = train.Settings(epochs=2000, lr=0.1, optimizer="adam", batch_size=0, dtype="float64")
    assert train.run(model, ds, settings, lambda *_: None).loss < 0.01


def test_custom_expression_parameters_are_the_free_names():
    ds = data_mod.Dataset({"x": np.array(XS)}, "y", np.array(XS))
    model = models.build("w1*x**2 + w2*x + b", ds, loss=None, hidden=3, seed=0)
    assert sorted(model.params) == ["b", "w1", "w2"]
    program = models.build("a = w*x; a + b", ds, loss=None, hidden=3, seed=0)
    assert sorted(program.params) == ["b", "w"]


def test_check_compares_every_step_with_torch():
    r = run("train", "affine", "--epochs", "20", "--check", "--format", "jsonl")
    final = json.loads(r.stdout.splitlines()[-1])
    assert r.code == 0 and final["check"]["ok"] is True
    # float32 training: the difference is rounding noise, bounded by the float32 tolerance
    assert 0 <= final["check"]["max_error"] < 1e-5


def test_jsonl_is_valid_and_complete():
    r = run("train", "linear", "--epochs", "100", "--format", "jsonl")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    epochs = [line for line in lines if not line.get("final")]
    assert len(epochs) == 100 and [e["epoch"] for e in epochs] == list(range(100))
    assert all(set(e) == {"schema", "epoch", "loss", "params"} for e in epochs)
    assert all(e["schema"] == "backprop-cli/train-epoch/1" for e in epochs)
    final = lines[-1]
    assert final["final"] is True and set(final["params"]) == {"w"}
    assert final["predictions"][0]["x"] == 4.0
    assert final["predictions"][0]["y"] == 7.999998569488525  # the course's float32 answer


def test_log_every():
    r = run("train", "linear", "--epochs", "1000", "--format", "jsonl", "--log-every", "250")
    epochs = [json.loads(line)["epoch"] for line in r.stdout.splitlines()[:-1]]
    assert epochs == [0, 249, 499, 749, 999]


def test_seed_makes_shuffled_training_reproducible():
    args = [
        "train",
        "affine",
        "--shuffle",
        "--batch-size",
        "1",
        "--epochs",
        "30",
        "--format",
        "jsonl",
    ]
    a = run(*args, "--seed", "3").stdout
    assert a == run(*args, "--seed", "3").stdout
    assert a != run(*args, "--seed", "4").stdout


def test_save_then_init_and_grad_read_it_back(tmp_path):
    saved = tmp_path / "params.json"
    r = run("train", "affine", "--epochs", "50", "--save", str(saved), "--format", "jsonl")
    params = json.loads(saved.read_text())
    assert params == json.loads(r.stdout.splitlines()[-1])["params"]
    again = run("train", "affine", "--epochs", "0", "--init", str(saved), "--format", "jsonl")
    assert json.loads(again.stdout.splitlines()[-1])["params"] == params
    g = run("grad", "(w*x + b - y)**2", "--values", str(saved), "x=4", "y=8", "--format", "json")
    assert g.code == 0
    assert g.json()["variables"]["w"] == params["w"]


def test_init_values_and_errors():
    r = run("train", "affine", "--init", "w=2,b=1", "--epochs", "0", "--format", "jsonl")
    assert json.loads(r.stdout)["params"] == {"b": 1.0, "w": 2.0}
    bad = run("train", "affine", "--init", "q=1")
    assert bad.code == 2 and "--init names q" in bad.stderr


def test_data_from_csv_and_stdin(tmp_path):
    csv = "x,y\n1,3\n2,5\n3,7\n"
    path = tmp_path / "d.csv"
    path.write_text(csv)
    for args, stdin in ((["--data", str(path)], None), (["--data", "-"], csv)):
        r = run("train", "affine", *args, "--epochs", "3000", "--lr", "0.05", "--optimizer",
                "adam", "--format", "jsonl", stdin=stdin)  # fmt: skip
        params = json.loads(r.stdout.splitlines()[-1])["params"]
        assert params["w"] == pytest.approx(2.0, abs=1e-3)
        assert params["b"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize(
    ("csv", "fragment"),
    [
        ("", "is empty"),
        ("x,y\n", "no data rows"),
        ("x,y\n1,2\n3\n", "line 3: 1 fields, but the header has 2"),
        ("x,y\n1,two\n", "line 2, column 'y': 'two' is not a number"),
        ("x,y\n1,nan\n", "nan is not a finite number"),
        ("x,z\n1,2\n", "no target column 'y' (columns: x, z)"),
        ("x y,y\n1,2\n", "column name 'x y' is not a valid variable name"),
        ("x,x,y\n1,2,3\n", "column 'x' appears twice"),
        ("y\n1\n", "only the target column"),
    ],
)
def test_bad_data_is_a_clear_error(csv, fragment, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(csv)
    r = run("train", "affine", "--data", str(path))
    assert r.code == 2
    assert fragment in r.stderr.splitlines()[0]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--x", "1,2", "--y", "1"], "--x has 2 values but --y has 1"),
        (["--x", "1,2"], "give both --x and --y"),
        (["--x", "1,a", "--y", "1,2"], "--x item 2: 'a' is not a number"),
        (["--loss", "mse+foo"], "unknown loss 'foo'"),
        (["--plot", "loss.gif"], "must end in .png"),
        (["--save", "/no/such/dir/p.json"], "does not exist"),
        (["--device", "cuda"], "--device is for --engine torch or --check"),
    ],
)
def test_bad_options(args, fragment):
    r = run("train", "affine", *args)
    assert r.code == 2
    assert fragment in r.stderr


def test_the_target_may_not_be_an_input_of_the_model(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,2\n")
    r = run("train", "w*x + y", "--data", str(path))
    assert r.code == 2 and "uses the target column 'y'" in r.stderr


def test_divergence_keeps_the_last_finite_parameters(tmp_path):
    saved = tmp_path / "p.json"
    r = run("train", "linear", "--lr", "1", "--epochs", "500", "--save", str(saved))
    assert r.code == 1
    assert "diverged at epoch" in r.stderr and "smaller --lr" in r.stderr
    params = json.loads(saved.read_text())
    assert math.isfinite(params["w"])


def test_torch_engine_on_a_missing_device_is_exit_2(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = run("train", "linear", "--engine", "torch", "--device", "cuda")
    assert r.code == 2 and "CUDA is not available" in r.stderr


def test_plot_files(tmp_path):
    for suffix in ("png", "svg"):
        path = tmp_path / f"loss.{suffix}"
        r = run("train", "linear", "--epochs", "30", "--plot", str(path))
        assert r.code == 0, r.stderr
        assert path.stat().st_size > 5000
    assert (tmp_path / "loss.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_mode_has_header_summary_and_curve():
    r = run("train", "affine", "--epochs", "50")
    assert r.code == 0
    for piece in ("model: ŷ = w*x + b", "Parameters", "loss over all data", "by epoch", "└"):
        assert piece in r.stdout


def test_list_models():
    r = run("train", "--list")
    for name in ("linear", "affine", "quadratic", "logistic", "mlp"):
        assert name in r.stdout


def test_ctrl_c_stops_cleanly_and_still_summarises(monkeypatch, tmp_path):
    real = train._GraphStepper.step
    calls = {"n": 0}

    def interrupted_step(self, params, grads):
        calls["n"] += 1
        if calls["n"] > 15:  # 5 epochs of the course's 3 samples
            raise KeyboardInterrupt
        return real(self, params, grads)

    monkeypatch.setattr(train._GraphStepper, "step", interrupted_step)
    saved = tmp_path / "p.json"
    r = run("train", "linear", "--epochs", "100", "--save", str(saved))
    assert r.code == 130
    assert "interrupted after 5 epochs" in r.stderr
    assert "Parameters" in r.stdout and "progress: 4 " in r.stdout
    assert "progress: 5 " not in r.stdout
    assert json.loads(saved.read_text())["w"] == pytest.approx(1.7791289594933983)


@pytest.mark.parametrize(
    ("csv", "model", "fragment"),
    [
        ("b,y\n1,2\n2,4\n", "affine", "'b' has the name of a parameter"),
        ("x,H,y\n1,2,3\n2,3,4\n", "mlp", "'H' has the name of a statement"),
        ("b2,y\n1,2\n", "mlp", "'b2' has the name of a parameter"),
        ("X,y\n1,2\n", "mlp", "'X' has the name of the input matrix"),
        ("pi,y\n1,2\n", "linear", "'pi' has the name of the constant pi"),
    ],
)
def test_columns_may_not_take_the_models_names(csv, model, fragment, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(csv)
    r = run("train", model, "--data", str(path))
    assert r.code == 2 and fragment in r.stderr


def test_logistic_on_separated_data_trains():
    r = run("train", "logistic", "--x", "-100,100", "--y", "0,1", "--epochs", "5", "--format",
            "jsonl")  # fmt: skip
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["loss"] == pytest.approx(0.0, abs=1e-12)


def test_bce_targets_must_be_probabilities():
    r = run("train", "logistic", "--x", "-2,-1,1,2", "--y", "0,0,2,1")
    assert r.code == 2 and "targets between 0 and 1" in r.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--init", "w=1,w=2"], "--init names w twice"),
        (["--loss", ""], "--loss is empty"),
        (["--save", "."], "that is a folder"),
    ],
)
def test_more_bad_options(args, fragment):
    r = run("train", "linear", *args)
    assert r.code == 2 and fragment in r.stderr


def test_huge_integers_in_json_values(tmp_path):
    path = tmp_path / "i.json"
    path.write_text('{"w": 1' + "0" * 400 + "}")
    r = run("grad", "w*x", "x=1", "--values", str(path))
    assert r.code == 2 and "not finite" in r.stderr


def test_a_reader_that_stops_early_loses_nothing_that_was_saved(tmp_path):
    """`train ... --save p.json | head`: the output stops; the training and --save do not."""
    saved = tmp_path / "p.json"
    args = ["train", "linear", "--epochs", "5000", "--log-every", "1", "--save", str(saved)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "backprop_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # far more than a pipe's buffer is still to come
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "internal error" not in err
    assert json.loads(saved.read_text())["w"] == pytest.approx(2.0, abs=1e-5)


@pytest.mark.parametrize(
    ("model", "init", "fragment"),
    [
        ("linear", "w=[1,2]", "w: given (2,), the model's is scalar"),
        ("w*x + b", "w=[[1]]", "w: given (1, 1), the model's is scalar"),
        ("mlp", "W1=1", "W1: given scalar"),
    ],
)
def test_init_with_a_shape_the_model_cannot_use_is_refused(model, init, fragment):
    result = run("train", model, "--epochs", "2", "--init", init)
    assert result.code == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_init_file_may_change_the_hidden_size_consistently(tmp_path):
    saved = tmp_path / "p.json"
    first = run("train", "mlp", "--hidden", "2", "--epochs", "2", "--save", str(saved))
    assert first.code == 0, first.stderr
    again = run("train", "mlp", "--epochs", "2", "--init", str(saved), "--format", "jsonl")
    assert again.code == 0, again.stderr
    final = json.loads(again.stdout.strip().splitlines()[-1])
    assert np.shape(final["params"]["W1"]) == (2, 1)


def test_hidden_that_contradicts_the_init_file_is_refused(tmp_path):
    saved = tmp_path / "p.json"
    assert run("train", "mlp", "--hidden", "2", "--epochs", "2", "--save", str(saved)).code == 0
    result = run("train", "mlp", "--hidden", "4", "--epochs", "2", "--init", str(saved))
    assert result.code == 2 and "--hidden 4, but --init gives 2 hidden units" in result.stderr


def test_float32_adam_follows_torch_optim_step_for_step():
    """Adam's scalars are rounded once, as torch's are, and its updates multiply in torch's
    order, so the first float32 step is torch's to within two ulps (torch's own kernels fuse
    multiply-adds and round sqrt differently on some processors); later steps differ by the
    gradients' float32 rounding, which Adam's normalisation carries on (docs/train.md's
    bound)."""
    import numpy as np

    def params(engine: str, epochs: int, lr: str) -> list[dict[str, float]]:
        args = ["train", "affine", "--optimizer", "adam", "--lr", lr, "--epochs", str(epochs)]
        r = run(*args, "--log-every", "1", "--format", "jsonl", "--engine", engine)
        assert r.code == 0, r.stderr
        return [json.loads(line)["params"] for line in r.stdout.splitlines()[:-1]]

    for lr in ("0.1", "0.3", "0.001"):
        ours, theirs = params("graph", 1, lr)[0], params("torch", 1, lr)[0]
        for name, value in theirs.items():
            ulp = float(np.spacing(np.float32(abs(value))))
            assert abs(ours[name] - value) <= 2 * ulp, (lr, name, ours[name], value)
    ours_run, theirs_run = params("graph", 200, "0.1"), params("torch", 200, "0.1")
    worst = max(abs(a[k] - b[k]) for a, b in zip(ours_run, theirs_run, strict=True) for k in a)
    assert worst < 1e-5
