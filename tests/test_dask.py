"""bp.dask.gradients on a local cluster of two worker processes: over four Parquet files its
rows equal `backprop grad --points` on the same points as CSV, in order, with fixed values,
wrt and arrays. Skipped without Dask, unless BACKPROP_REQUIRE_DASK=1 (as in CI)."""

from __future__ import annotations

import doctest
import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import backprop_cli as bp
from tests.conftest import run

try:
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd
    import pyarrow  # noqa: F401  (Parquet)
    from distributed import Client, LocalCluster
except ImportError:
    if os.environ.get("BACKPROP_REQUIRE_DASK") == "1":
        raise
    pytest.skip('Dask is not installed (pip install "backprop-cli[dask]")', allow_module_level=True)

ROOT = Path(__file__).parent.parent
ROWS = 1_000
PARTITIONS = 4
EXPR = "sin(x)*k + log(1 + x*x)/w"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """One cluster for the whole file: two worker processes, on this machine only."""
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        local_directory=str(tmp_path_factory.mktemp("dask")),
    )  # fmt: skip
    with cluster, Client(cluster) as connected:
        yield connected


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> tuple[pd.DataFrame, Path, Path]:
    """The same points as four Parquet files and as one CSV file: a row number, a float and
    an integer variable, and a text column that passes through."""
    folder = tmp_path_factory.mktemp("points")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "id": np.arange(ROWS),
            "x": rng.standard_normal(ROWS) * 3,
            "k": rng.integers(-5, 5, ROWS),
            "label": [f"p{i}" for i in range(ROWS)],
        }
    )
    parquet = folder / "parquet"
    parquet.mkdir()
    for n, rows in enumerate(np.array_split(np.arange(ROWS), PARTITIONS)):
        frame.iloc[rows].to_parquet(parquet / f"part-{n}.parquet", index=False)
    csv = folder / "points.csv"
    frame.to_csv(csv, index=False)  # floats as their shortest round-trip text
    return frame, parquet, csv


def cli_rows(*args: str) -> pd.DataFrame:
    """`backprop grad ARGS` as a table of texts, each number read back with Python's float."""
    result = run("grad", *args)
    assert result.code == 0, result.stderr
    table = pd.read_csv(io.StringIO(result.stdout), dtype=str, keep_default_na=False)
    for column in table.columns:
        if column != "label":
            table[column] = [float(text) for text in table[column]]
    return table


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same columns in the same order, every number equal as a float."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for column in want.columns:
        if column == "label":
            assert list(got[column]) == list(want[column])
        else:
            mine = got[column].to_numpy(dtype=np.float64)
            np.testing.assert_array_equal(mine, want[column].to_numpy(dtype=np.float64), column)


def test_rows_equal_grad_points_with_a_fixed_value(client, points):
    _, parquet, csv = points
    data = dd.read_parquet(str(parquet))
    assert data.npartitions == PARTITIONS
    out = bp.dask.gradients(data, EXPR, w=1.5)
    assert isinstance(out, dd.DataFrame) and out.npartitions == PARTITIONS
    got = out.compute()
    assert list(got["id"]) == list(range(ROWS))  # the input's order
    assert_same_rows(got, cli_rows(EXPR, "--points", str(csv), "w=1.5"))


def test_wrt_and_array_values_equal_grad_points(client, points):
    _, parquet, csv = points
    expr = "sum(tanh(W @ v) * x) + k*b"
    values = {"W": [[1, -2], [0.5, 3]], "v": [0.25, -1], "b": 2}
    out = bp.dask.gradients(dd.read_parquet(str(parquet)), expr, values, wrt="W,x")
    got = out.compute()
    want = cli_rows(
        expr, "--points", str(csv), "W=[[1,-2],[0.5,3]]", "v=[0.25,-1]", "b=2", "--wrt", "W,x"
    )
    assert_same_rows(got, want)
    assert list(got.columns[4:]) == [
        "W[0,0]", "W[0,1]", "W[1,0]", "W[1,1]", "b", "v[0]", "v[1]",
        "value", "d_W[0,0]", "d_W[0,1]", "d_W[1,0]", "d_W[1,1]", "d_x",
    ]  # fmt: skip


def test_a_dask_array_of_points_with_named_columns(client, points):
    frame, _, csv = points
    array = da.from_array(frame[["x", "k"]].to_numpy(dtype=np.float64), chunks=(300, 2))
    got = bp.dask.gradients(array, EXPR, columns=["x", "k"], w=1.5).compute()
    want = cli_rows(EXPR, "--points", str(csv), "w=1.5").drop(columns=["id", "label"])
    assert_same_rows(got.reset_index(drop=True), want)


def test_a_partition_bigger_than_one_call_and_an_empty_one(points, monkeypatch):
    import dask

    import backprop_cli.dask as bp_dask

    _, parquet, _ = points
    data = dd.read_parquet(str(parquet))
    expr, values = "sum(W @ v) * sin(x) + k", {"W": [[1, 2], [3, 4]], "v": [1, -1]}
    with dask.config.set(scheduler="sync"):  # in this process, where CALL_ROWS is patched
        whole = bp.dask.gradients(data, expr, values).compute()
        monkeypatch.setattr(bp_dask, "CALL_ROWS", 7)
        pieces = bp.dask.gradients(data, expr, values).compute()
        empty = bp.dask.gradients(data[data.x > 1e9], expr, values).compute()
    pd.testing.assert_frame_equal(pieces, whole)
    assert len(empty) == 0 and list(empty.columns) == list(whole.columns)
    assert (empty.dtypes == whole.dtypes).all()


def test_a_nan_stops_the_partition_that_holds_it(client, points):
    frame, _, _ = points
    broken = frame.copy()
    broken.loc[600, "x"] = np.nan
    data = dd.from_pandas(broken, npartitions=PARTITIONS, sort=False)
    with pytest.raises(bp.InputError, match=r"column x holds nan at row 600 of partition 2"):
        bp.dask.gradients(data, EXPR, w=1.5).compute()
    allowed = bp.dask.gradients(data, EXPR, w=1.5, allow_nonfinite=True).compute()
    assert np.isnan(allowed["value"][600]) and np.isfinite(allowed["value"].drop(600)).all()


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda d: bp.dask.gradients(d, "x*z"), bp.InputError, "the data has no column for z"),
        (lambda d: bp.dask.gradients(d, "x*label"), bp.InputError, "column label holds"),
        (lambda d: bp.dask.gradients(d, "x*(k"), bp.ParseError, "column 3"),
        (lambda d: bp.dask.gradients(d, "x*k", x=1), bp.InputError, "x is given both"),
        (lambda d: bp.dask.gradients(d, "x*k", wrt="q"), bp.InputError, "wrt names q"),
        (lambda d: bp.dask.gradients(d, "x*ones(2)"), bp.InputError, "scalar output"),
        (lambda d: bp.dask.gradients(d, "w*v", w=1, v=2), bp.InputError, "nothing to vary"),
        (lambda d: bp.dask.gradients(d, "x", x="a"), bp.InputError, "the value for x"),
        (lambda d: bp.dask.gradients(d, "x*k", columns=["x"]), bp.InputError, "a DataFrame"),
        (
            lambda d: bp.dask.gradients(d.rename(columns={"label": "value"}), "x*k"),
            bp.InputError,
            "two columns called 'value'",
        ),
        (lambda d: bp.dask.gradients(d.compute(), "x"), bp.InputError, "not DataFrame"),
        (
            lambda d: bp.dask.gradients(da.ones((4, 2)), "x*y", columns=["x"]),
            bp.InputError,
            "names 1 columns, but the array has 2",
        ),
        (
            lambda d: bp.dask.gradients(da.ones((4, 2, 2)), "x*y", columns=["x", "y"]),
            bp.InputError,
            "not 3",
        ),
        (lambda d: bp.dask.gradients(da.ones((4, 2)), "x*y"), bp.InputError, "columns="),
    ],
)
def test_bad_input_raises_before_any_work(points, call, error, message):
    _, parquet, _ = points
    with pytest.raises(error, match=message):
        call(dd.read_parquet(str(parquet)))


def test_a_pandas_frame_is_refused_with_the_way_to_make_it_a_dask_one(points):
    frame, _, _ = points
    with pytest.raises(bp.InputError) as caught:
        bp.dask.gradients(frame, "x")
    assert caught.value.hint is not None and "from_pandas" in caught.value.hint


def test_a_value_the_expression_does_not_use_is_a_warning(points):
    _, parquet, _ = points
    with pytest.warns(bp.BackpropWarning, match="a value was given for 'q'"):
        out = bp.dask.gradients(dd.read_parquet(str(parquet)), "x*k", q=2)
    assert "q" not in out.columns
    with warnings.catch_warnings(), bp.quiet():
        warnings.simplefilter("error")
        bp.dask.gradients(dd.read_parquet(str(parquet)), "x*k", q=2)


def test_the_docstring_example_runs(client):
    import backprop_cli.dask

    flags = doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testmod(backprop_cli.dask, extraglobs={"bp": bp}, optionflags=flags)
    assert attempted > 0 and failed == 0


def test_the_pages_example_runs_on_its_own_cluster():
    """docs/dask.md's `>>>` block, in a fresh interpreter (it starts and closes a cluster)."""
    code = (
        "import doctest, pathlib, sys\n"
        f"text = pathlib.Path({str(ROOT / 'docs' / 'dask.md')!r}).read_text()\n"
        "text = '\\n'.join('' if l.startswith('```') else l for l in text.splitlines())\n"
        "test = doctest.DocTestParser().get_doctest(text, {}, 'docs/dask.md', None, 0)\n"
        "runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)\n"
        "runner.run(test)\n"
        "sys.exit(1 if runner.failures or runner.tries < 10 else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_bp_dask_is_reachable_without_importing_dask_until_used():
    code = (
        "import sys\n"
        "import backprop_cli as bp\n"
        "assert 'dask' not in sys.modules\n"
        "assert 'dask' in dir(bp)\n"
        "f = bp.dask.gradients\n"
        "assert not [m for m in ('dask', 'distributed', 'pandas', 'pyarrow') if m in sys.modules]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_example_runs_and_writes_its_gradients(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "dask_gradients.py"), "--rows", "2000",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "2,000 points in 4 partitions, on 2 worker processes"
    assert lines[-1] == f"written to {tmp_path / 'gradients'}"
    data = pd.read_parquet(tmp_path / "points").sort_values("id")
    written = pd.read_parquet(tmp_path / "gradients").sort_values("id")
    value, grads = bp.compile("(w*x + b - y)**2")(x=data["x"], y=data["y"], w=2.0, b=0.0)
    np.testing.assert_array_equal(written["value"], value)
    np.testing.assert_array_equal(written["d_w"], grads["w"])
    np.testing.assert_array_equal(written["d_b"], grads["b"])
    mean = f"mean squared error  {np.mean(value):.4f}"
    assert mean in lines
