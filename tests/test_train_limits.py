"""backprop train's budgets: the data (rows × columns, refused while reading), the parameters
(from the shapes, before anything is drawn) and one step's arrays (from the graph's shapes),
each with its option; and the data held compactly, as float64 columns."""

from __future__ import annotations

import inspect
import itertools
import json
import tracemalloc

import numpy as np
import pytest

from backprop_cli.analyses import models, train
from backprop_cli.cli import train as cli_train
from backprop_cli.core.errors import BackpropError
from backprop_cli.io import data
from tests.conftest import run


def refused(r, *fragments: str) -> None:
    """Exit 2, one line on stderr, nothing on stdout, and every fragment in that line."""
    assert r.code == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def csv_text(rows: int) -> str:
    return "x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(1, rows + 1))


# --- the data ---------------------------------------------------------------------------


def test_the_defaults_are_the_modules_limits():
    options = inspect.signature(cli_train.train).parameters
    assert options["max_data"].default == data.MAX_DATA_VALUES
    assert options["max_params"].default == models.MAX_PARAMS
    assert options["max_step_elements"].default == train.MAX_STEP_ELEMENTS


def test_data_at_the_limit_trains_and_one_row_more_is_refused_at_its_line():
    ok = run(
        "train", "linear", "--data", "-", "--epochs", "1", "--max-data", "10", stdin=csv_text(5)
    )
    assert ok.code == 0, ok.stderr
    r = run("train", "linear", "--data", "-", "--max-data", "10", stdin=csv_text(6))
    refused(r, "stdin, line 7:", "more than 10 data values", "6 rows × 2 columns", "--max-data")


def test_blank_lines_count_for_the_line_number_not_the_budget():
    r = run("train", "linear", "--data", "-", "--max-data", "2", stdin="x,y\n\n1,2\n\n,\n3,4\n")
    refused(r, "stdin, line 6:", "more than 2 data values")


def test_the_lists_are_refused_before_they_are_read():
    r = run("train", "linear", "--x", "1,2,3", "--y", "2,4,nan", "--max-data", "4")
    refused(r, "--x/--y: 3 rows × 2 columns is more than 4 data values", "--max-data")


def test_an_endless_stream_stops_at_the_limit():
    endless = itertools.chain([(1, "x,y")], ((n, "1,2") for n in itertools.count(2)))
    with pytest.raises(BackpropError, match=r"line 502: more than 1,000 data values"):
        data.from_csv(endless, "stdin", "y", max_values=1000)
    assert next(endless) == (503, "1,2")  # reading stopped at the row that passed the limit


def test_the_data_is_held_as_float64_columns():
    rows = 200_000
    source = itertools.chain([(1, "x,y")], ((n, f"{n},{n}.5") for n in range(2, rows + 2)))
    tracemalloc.start()
    dataset = data.from_csv(source, "stdin", "y")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    column = dataset.features["x"]
    assert column.dtype == np.float64 and column.flags.c_contiguous
    assert len(dataset) == rows and dataset.target[-1] == rows + 1.5
    # 16 bytes a row held; about twice that while the columns are put together.
    assert peak < 40 * rows, peak


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1,2", [1.0, 2.0]),
        (" 1 ,\t2", [1.0, 2.0]),
        ('"1","2.5"', [1.0, 2.5]),
        ("1.,.5", [1.0, 0.5]),
        ("-1e-99,+3E+2", [-1e-99, 300.0]),
        ("1e300,2e-300", [1e300, 2e-300]),
        ("9" * 250 + "e5,1", [float("9" * 250 + "e5"), 1.0]),
    ],
)
def test_cells_read_as_the_strict_number_reader_reads_them(text, want):
    dataset = data.from_csv(iter([(1, "x,y"), (2, text)]), "stdin", "y")
    assert [dataset.features["x"][0], dataset.target[0]] == want


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e400,2", "line 2, column 'x': 1e400 is too large for float64"),
        ("9" * 400 + ",2", "is too large for float64"),
        ("1,nan", "line 2, column 'y': nan is not a finite number"),
        ("1_0,2", "line 2, column 'x': '1_0' is not a number"),
        ("1,2,3", "line 2: 3 fields, but the header has 2"),
    ],
)
def test_bad_cells_are_still_named(text, message):
    with pytest.raises(BackpropError, match=message):
        data.from_csv(iter([(1, "x,y"), (2, text)]), "stdin", "y")


# --- the parameters ---------------------------------------------------------------------


def test_an_mlp_too_large_is_refused_from_its_shapes():
    r = run("train", "mlp", "--hidden", "100", "--max-params", "300")
    refused(r, "--hidden 100 on 1 inputs has 301 parameters, more than 300", "--max-params")
    assert run("train", "mlp", "--hidden", "100", "--epochs", "1", "--max-params", "301").code == 0


def test_the_mlp_draws_nothing_before_the_parameter_check():
    class NoDraws:
        def uniform(self, *args, **kwargs):
            raise AssertionError("a weight was drawn")

    with pytest.raises(BackpropError, match="50,010,001 parameters"):
        models._mlp([f"x{i}" for i in range(4999)], 10_000, NoDraws(), models.MAX_PARAMS)  # type: ignore[arg-type]


def test_init_arrays_count_against_the_parameters():
    r = run("train", "sum(W)*x", "--init", "W=ones(30,30)", "--max-params", "100")
    refused(r, "the model has 900 parameters (W alone 900), more than 100", "--max-params")


# --- one step ---------------------------------------------------------------------------


def test_a_step_too_large_is_refused_with_the_batch_that_fits():
    r = run("train", "affine", "--max-step-elements", "20")
    refused(
        r,
        "a training step on a batch of 3 rows holds 24 array elements, more than 20",
        "batches of up to 2 rows fit",
        "--max-step-elements",
    )
    ok = run("train", "affine", "--batch-size", "2", "--epochs", "1", "--max-step-elements", "20")
    assert ok.code == 0, ok.stderr


def test_a_step_that_not_even_one_row_fits():
    r = run("train", "mlp", "--hidden", "5", "--max-step-elements", "40")
    refused(r, "not even one row fits", "--max-step-elements")


def test_an_expression_is_evaluated_on_all_rows_at_once_so_that_pass_must_fit():
    r = run("train", "w*x", "--batch-size", "1", "--max-step-elements", "15")
    refused(r, "the loss over all 3 rows holds 20 array elements in one pass", "more than 15")


def test_a_builtin_model_takes_the_final_passes_in_slices_with_the_same_result():
    def final(*limit: str) -> dict:
        args = ("train", "logistic", "--format", "jsonl", "--epochs", "3", "--batch-size", "1")
        r = run(*args, "--x", "-2,-1,0,1,2,3", "--y", "0,0,0,1,1,1", *limit)
        assert r.code == 0, r.stderr
        return json.loads(r.stdout.splitlines()[-1])

    assert final("--max-step-elements", "60") == final()


def test_sliced_passes_match_one_pass():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(500, 3))
    ds = data.Dataset({f"x{j}": xs[:, j] for j in range(3)}, "y", xs.sum(axis=1))
    model = models.build("mlp", ds, loss="mse+mae", hidden=4, seed=0)
    whole = train.full_loss(model, ds, model.init, "float64")
    sliced = train.full_loss(model, ds, model.init, "float64", max_elements=500)
    assert sliced == pytest.approx(whole, rel=1e-12)
    np.testing.assert_allclose(
        train.predict(model, model.init, ds.features, "float64", max_elements=500),
        train.predict(model, model.init, ds.features, "float64"),
        rtol=1e-12,
    )


def test_fitting_rows_is_the_largest_batch_within_the_limit():
    ds = data.Dataset({"x": np.arange(100.0)}, "y", np.arange(100.0))
    model = models.build("affine", ds, loss=None, hidden=3, seed=0)
    fit = train.fitting_rows(model, 500, 100)
    assert train.step_elements(model, fit) <= 500 < train.step_elements(model, fit + 1)
    assert train.fitting_rows(model, 10**9, 100) == 100
    assert train.fitting_rows(model, 1, 100) == 0


def test_batches_are_views_of_one_order():
    got = list(train.batches(7, 3, None))
    assert [b.tolist() for b in got] == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(b.base is got[0].base for b in got)
