"""`grad --points`: one row per point from CSV/TSV/JSON lines, vectorised and streamed."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from backprop_cli.analyses import points
from tests.conftest import cli_in_fresh_python, run

NEURON = "1/(1+exp(-(w0*x0+w1*x1+w2)))"


def torch_neuron(rows):
    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in rows.items()}
    out = 1 / (1 + torch.exp(-(t["w0"] * t["x0"] + t["w1"] * t["x1"] + t["w2"])))
    out.sum().backward()
    return out.detach().numpy(), {k: v.grad.numpy() for k, v in t.items()}


def read_csv(text, delimiter=","):
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    return rows[0], rows[1:]


def test_csv_points_match_torch_row_by_row(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(50, 5))
    names = ["w0", "w1", "w2", "x0", "x1"]
    path = tmp_path / "points.csv"
    path.write_text(
        ",".join(names) + "\n" + "\n".join(",".join(map(repr, r)) for r in data.tolist()) + "\n"
    )
    result = run("grad", NEURON, "--points", str(path), "--format", "csv")
    assert result.code == 0, result.stderr
    header, rows = read_csv(result.stdout)
    assert header == [*names, "value", *(f"d_{n}" for n in names)]
    assert len(rows) == 50
    got = np.array(rows, dtype=float)
    np.testing.assert_array_equal(got[:, :5], data)  # the inputs as given, in order
    value, grads = torch_neuron({n: data[:, j] for j, n in enumerate(names)})
    np.testing.assert_allclose(got[:, 5], value, rtol=1e-13)
    for j, n in enumerate(names):
        np.testing.assert_allclose(got[:, 6 + j], grads[n], rtol=1e-12, atol=1e-15)


def test_bare_column_from_stdin_to_jsonl():
    xs = [0.0, 0.25, 0.5, 1.0, 10.0]
    stdin = "\n".join(map(str, xs)) + "\n"
    result = run("grad", "sin(x)*exp(-x)", "--points", "-", "--format", "jsonl", stdin=stdin)
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["line"] for row in lines] == [1, 2, 3, 4, 5]
    for x, row in zip(xs, lines, strict=True):
        assert row["point"] == {"x": x}
        assert row["value"] == pytest.approx(math.sin(x) * math.exp(-x), rel=1e-14)
        expected = (math.cos(x) - math.sin(x)) * math.exp(-x)
        assert row["gradient"]["x"] == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_fixed_values_combine_with_the_varying_columns():
    stdin = "x\n1\n2\n3\n"
    result = run("grad", "w*x + b", "w=2", "b=0.5", "--points", "-", stdin=stdin)
    assert result.code == 0, result.stderr
    header, rows = read_csv(result.stdout)
    assert header == ["x", "b", "w", "value", "d_b", "d_w", "d_x"]
    table = [dict(zip(header, r, strict=True)) for r in rows]
    for x, row in zip((1, 2, 3), table, strict=True):
        assert float(row["value"]) == pytest.approx(2 * x + 0.5)
        assert float(row["d_w"]) == pytest.approx(x)  # each point's own gradient of w
        assert float(row["d_x"]) == pytest.approx(2)
        assert float(row["d_b"]) == pytest.approx(1)


def test_jsonl_input_with_extra_fields_passed_through():
    stdin = '{"x": 1, "id": "a"}\n{"x": 2.5, "id": {"k": [1, 2]}}\n'
    result = run("grad", "x*x", "--points", "-", "--format", "jsonl", stdin=stdin)
    assert result.code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["extra"] == {"id": "a"} and rows[1]["extra"] == {"id": {"k": [1, 2]}}
    assert [r["gradient"]["x"] for r in rows] == pytest.approx([2.0, 5.0])


def test_tsv_in_and_out_with_an_extra_text_column():
    stdin = "x\tlabel\n1\tfirst, with a comma\n2\tsecond\n"
    result = run("grad", "3*x", "--points", "-", "--format", "tsv", stdin=stdin)
    assert result.code == 0, result.stderr
    header, rows = read_csv(result.stdout, delimiter="\t")
    assert header == ["x", "label", "value", "d_x"]
    assert rows[0] == ["1", "first, with a comma", "3.0", "3.0"]


def test_a_bad_row_stops_after_the_rows_before_it():
    stdin = "x\n1\n2\nabc\n4\n"
    result = run("grad", "x*x", "--points", "-", stdin=stdin)
    assert result.code == 2
    _, rows = read_csv(result.stdout)
    assert [r[0] for r in rows] == ["1", "2"]  # what was computed is not lost
    assert "line 4" in result.stderr and "'abc' is not a number" in result.stderr
    assert "Traceback" not in result.stderr


def test_on_error_skip_counts_and_keeps_going():
    stdin = "x,y\n1,2\n1_000,2\n3\n4,5\nnan,1\n6,7\n"
    result = run("grad", "x*y", "--points", "-", "--on-error", "skip", stdin=stdin)
    assert result.code == 0, result.stderr
    _, rows = read_csv(result.stdout)
    assert [r[:2] for r in rows] == [["1", "2"], ["4", "5"], ["6", "7"]]
    assert "line 3" in result.stderr and "line 4" in result.stderr and "line 6" in result.stderr
    assert "skipped 3 bad rows" in result.stderr


@pytest.mark.parametrize(
    ("stdin", "args", "fragment"),
    [
        ("", [], "is empty"),
        ("a,b\n1,2\n", [], "has no column for x"),
        ("x,y\n1,2\n", ["y=3"], "given both as a column"),
        ("x,x\n1,2\n", [], "appears twice"),
        ("x\n1\n", ["x=1", "y=2"], "nothing to vary"),
        ("x-1,y\n1,2\n", [], "not a column name"),
    ],
)
def test_bad_files_are_clear_errors(stdin, args, fragment):
    result = run("grad", "x*y", *args, "--points", "-", stdin=stdin)
    assert result.code == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt", ["table", "json", "markdown"])
def test_points_need_a_row_format(fmt):
    result = run("grad", "x*2", "--points", "-", "--format", fmt, stdin="x\n1\n")
    assert result.code == 2 and "csv, tsv or jsonl" in result.stderr


def test_a_huge_line_is_one_bad_row_not_a_memory_blowup():
    stdin = "x\n1\n" + "9" * (points.MAX_LINE_CHARS + 10) + "\n2\n"
    result = run("grad", "x*2", "--points", "-", "--on-error", "skip", stdin=stdin)
    assert result.code == 0
    _, rows = read_csv(result.stdout)
    assert [r[0] for r in rows] == ["1", "2"]
    assert "longer than" in result.stderr


def test_nonfinite_results_are_written_and_counted():
    result = run("grad", "log(x)", "--points", "-", stdin="x\n1\n-1\n0\n")
    assert result.code == 0
    _, rows = read_csv(result.stdout)
    assert rows[1][1] == "nan" and rows[2][1] == "-inf"
    assert "2 points have a nan or infinite value" in result.stderr


def test_check_compares_every_point_with_torch():
    stdin = "x,y\n" + "\n".join(f"{i / 7},{i / 3 - 1}" for i in range(40)) + "\n"
    result = run("grad", "tanh(x*y) + softplus(y)", "--points", "-", "--check", stdin=stdin)
    assert result.code == 0, result.stderr
    assert (
        "✓ torch autograd" in result.stderr and "80 gradients of 40 points agree" in result.stderr
    )


def test_check_reports_a_disagreement(monkeypatch):
    from backprop_cli.checks import autograd

    real = autograd.torch_batch

    def off_by_one(*args, **kwargs):
        value, grads, about = real(*args, **kwargs)
        grads["x"] = grads["x"] + 1.0
        return value, grads, about

    monkeypatch.setattr(autograd, "torch_batch", off_by_one)
    result = run("grad", "x*x", "--points", "-", "--check", stdin="x\n1\n2\n")
    assert result.code == 1
    assert "disagreement" in result.stderr and "line 2 (x)" in result.stderr


def test_arrays_with_seed_grad_and_float32():
    result = run(
        "grad", "x*v", "v=[1,2]", "--points", "-", "--seed-grad", "[1,1]", "--dtype", "float32",
        stdin="x\n0.1\n2\n",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    header, rows = read_csv(result.stdout)
    assert header == ["x", "v[0]", "v[1]", "value[0]", "value[1]", "d_v[0]", "d_v[1]", "d_x"]
    assert rows[0][3:5] == ["0.1", "0.2"]  # float32 numbers, shortest
    assert float(rows[1][7]) == pytest.approx(3.0)


def test_chunks_give_the_same_rows_as_one_pass():
    graph_args = ("grad", "x*y + exp(x)", "--points", "-", "--format", "jsonl")
    stdin = "x,y\n" + "\n".join(f"{i},{-i}" for i in range(100)) + "\n"
    whole = run(*graph_args, stdin=stdin).stdout
    from backprop_cli.core.parse import parse

    graph = parse("x*y + exp(x)")
    plan = points.plan(graph, {}, ["x", "y"], ["x", "y"], "float64", 1.0, rows_per_chunk=7)
    reader = points.PointReader(io.StringIO(stdin), "stdin", ["x", "y"], {})
    out = io.StringIO()
    summary = points.run(plan, reader, "jsonl", out)
    assert summary.rows == 100
    assert out.getvalue() == whole


@settings(max_examples=40)
@given(
    st.lists(
        st.one_of(
            st.floats(-1e6, 1e6, allow_nan=False).map(repr),
            st.text(alphabet='0123456789.eE+-_ nai,\t"', max_size=8),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_random_cells_never_crash(cells):
    stdin = "x\n" + "\n".join(cells) + "\n"
    result = run("grad", "x*x", "--points", "-", "--on-error", "skip", stdin=stdin)
    assert result.code in (0, 2), result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if result.code == 0:
        _, rows = read_csv(result.stdout)
        for row in rows:
            x = float(row[0])
            assert float(row[2]) == pytest.approx(2 * x)


def test_points_never_import_sympy_or_torch_without_check(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("x\n1\n2\n")
    cli_in_fresh_python(
        ["grad", "x*x", "--points", str(path)],
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules",
    )


def test_a_json_key_first_seen_later_does_not_shift_the_csv_columns(monkeypatch):
    monkeypatch.setattr(points, "MAX_CHUNK_ROWS", 4)
    rows = [f'{{"x": {i}}}' if i != 6 else '{"x": 6, "tag": "late"}' for i in range(10)]
    result = run("grad", "x*x", "--points", "-", stdin="\n".join(rows) + "\n")
    assert result.code == 0, result.stderr
    header, body = read_csv(result.stdout)
    assert header == ["x", "value", "d_x"]
    assert all(len(r) == 3 for r in body)
    assert [float(r[2]) for r in body] == [2.0 * i for i in range(10)]


def test_a_bad_first_json_row_is_skipped_like_any_other():
    stdin = '{"x": 1}\n{"x": 3, "y": 4}\n'
    result = run("grad", "x*y", "--points", "-", "--on-error", "skip", "--format", "jsonl",
                 stdin=stdin)  # fmt: skip
    assert result.code == 0, result.stderr
    assert [json.loads(r)["line"] for r in result.stdout.splitlines()] == [2]
    assert "line 1: no value for y" in result.stderr


def test_an_overlong_line_in_a_cr_only_file_loses_only_itself():
    stdin = "x\r1\r" + "9" * (points.MAX_LINE_CHARS + 5) + "\r3\r5\r"
    result = run("grad", "x*2", "--points", "-", "--on-error", "skip", stdin=stdin)
    assert result.code == 0
    _, rows = read_csv(result.stdout)
    assert [r[0] for r in rows] == ["1", "3", "5"]


# ---- data read is data kept: what cannot be read as written is named by its line ------


def test_an_unterminated_quote_is_a_bad_row_not_a_cut_field(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('x,id\n1,"multi\nline"\n2,ok\n')
    r = run("grad", "x", "--points", str(path))
    assert r.code == 2
    assert "line 2" in r.stderr and "quote is not closed" in r.stderr
    assert "multi" not in r.stdout
    r = run("grad", "x", "--points", str(path), "--on-error", "skip")
    assert r.code == 0 and r.stdout.splitlines()[1:] == ["2,ok,2.0,1.0"]
    assert "skipped: line 2" in r.stderr


def test_a_quoted_field_on_its_line_is_kept_as_written(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text('x,id\n1,"a, b"\n')
    r = run("grad", "x", "--points", str(path))
    assert r.code == 0 and r.stdout.splitlines()[1] == '1,"a, b",1.0,1.0'


def test_a_duplicate_key_in_a_json_line_is_named():
    r = run("grad", "x", "--points", "-", stdin='{"x": 1}\n{"x": 1, "x": 2}\n')
    assert r.code == 2 and "line 2" in r.stderr and "'x' is given twice" in r.stderr
    r = run(
        "grad",
        "x",
        "--points",
        "-",
        "--format",
        "jsonl",
        stdin='{"x": 1, "id": {"a": 1, "a": 2}}\n',
    )
    assert r.code == 2 and "'a' is given twice" in r.stderr


def test_a_column_named_like_a_constant_is_a_warning(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("x,e,pi\n1,2,3\n")
    r = run("grad", "x*e + pi", "--points", str(path))
    assert r.code == 0
    assert r.stdout.splitlines()[1].startswith("1,2,3,")  # passed through, as written
    assert "line 1: column 'e' is not a variable" in r.stderr
    assert "column 'pi' is not a variable" in r.stderr
    r = run("grad", "x*e", "--points", "-", stdin='{"x": 1, "e": 5}\n')
    assert r.code == 0 and "column 'e' is not a variable" in r.stderr


def test_a_column_e_is_plain_data_when_the_expression_does_not_use_e(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("x,e\n1,2\n")
    r = run("grad", "x*3", "--points", str(path))
    assert r.code == 0 and "not a variable" not in r.stderr


def test_a_space_after_a_closing_quote_is_still_read(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text('"x" ,"id"\n1 ,"a"\n')
    r = run("grad", "x", "--points", str(path))
    assert r.code == 0, r.stderr


# ---- numbers are never silently changed: NAME=VALUE's rules for every cell --------------


def test_a_cell_beyond_float32_is_a_bad_row_in_float32(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("x\n1e39\n2\n")
    r = run("grad", "x*2", "--points", str(path), "--dtype", "float32")
    assert r.code == 2 and "line 2" in r.stderr and "overflows float32" in r.stderr
    assert "RuntimeWarning" not in r.stderr
    r = run("grad", "x*2", "--points", str(path), "--dtype", "float32", "--on-error", "skip")
    assert r.code == 0 and r.stdout.splitlines()[1:] == ["2,4.0,2.0"]
    r = run("grad", "x*2", "--points", "-", "--dtype", "float32", stdin='{"x": 1e39}\n')
    assert r.code == 2 and "overflows float32" in r.stderr
    assert run("grad", "x*2", "--points", str(path)).code == 0  # float64 holds it


def test_cells_that_become_zero_are_counted_in_a_warning(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("x\n1e-46\n1e-400\n0.0\n0e5\n")
    r = run("grad", "x*2", "--points", str(path), "--dtype", "float32")
    assert r.code == 0
    assert (
        "2 nonzero cells are too small for float32 and become 0 (the first on line 2)" in r.stderr
    )
    r = run("grad", "x*2", "--points", str(path))
    assert r.code == 0
    assert "1 nonzero cell is too small for float64 and becomes 0 (the first on line 3)" in r.stderr


@pytest.mark.parametrize("space", ["\u00a0", "\x1c", "\u2003"])
def test_only_ascii_spaces_may_surround_a_number(tmp_path, space):
    path = tmp_path / "s.csv"
    path.write_text(f"x,y\n1,2\n{space}3,4\n")
    r = run("grad", "x*y", "--points", str(path))
    assert r.code == 2 and "line 3" in r.stderr and "is not a number" in r.stderr
    path.write_text("x,y\n 1 ,\t2\n")
    assert run("grad", "x*y", "--points", str(path)).code == 0
