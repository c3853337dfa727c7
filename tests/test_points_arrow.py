"""`grad --points` read a block at a time through Arrow and written a column at a time: the
same rows, bad rows, counts and warnings as the strict line-by-line reader on any input, the
numbers written as Python writes them, and Parquet and Arrow files in and out."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backprop_cli.analyses import point_blocks, points
from backprop_cli.core.errors import BackpropError
from backprop_cli.core.parse import parse
from backprop_cli.io import arrow

from .test_cli import run


def through(text, expression, kind, on_error, allow=False, dtype="float64", fast=True):
    """points.run in this process: (output, rows, skipped, warnings) or the error's text."""
    saved = point_blocks.FAST
    point_blocks.FAST = fast
    try:
        graph = parse(expression)
        names = list(graph.variables)
        plan = points.plan(graph, {}, names, names, dtype, 1.0)
        out = io.StringIO()
        try:
            reader = points.PointReader(
                io.StringIO(text, newline=""), "stdin", names, {}, allow, points.CONSTANTS, dtype
            )
            summary = points.run(plan, reader, kind, out, on_error)
        except BackpropError as exc:
            return ("error", exc.message, out.getvalue())
        skipped = [(b.line, b.message) for b in summary.skipped]
        return (
            out.getvalue(),
            summary.rows,
            len(summary.skipped),
            skipped,
            summary.nonfinite,
            summary.nonfinite_lines,
            reader.warnings,
        )
    finally:
        point_blocks.FAST = saved


def both_readers(block, *args):
    """`through` with blocks of `block` characters and with the line reader alone."""
    saved = point_blocks.BLOCK_CHARS
    point_blocks.BLOCK_CHARS = block
    try:
        return through(*args, fast=True), through(*args, fast=False)
    finally:
        point_blocks.BLOCK_CHARS = saved


CELLS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(
        [
            "1.",
            ".5",
            "+3",
            "-0",
            "0.0",
            "1e5",
            "1E-400",
            "1e-320",
            "1e400",
            "3.5e38",
            "1e-46",
            " 2",
            "2 ",
            "\t2",
            " 1e3 ",
            "nan",
            "NaN",
            "-inf",
            "Infinity",
            "+inf",
            "abc",
            "",
            "1_000",
            "0x10",
            "e5",
            "1e",
            ".",
            "+",
            "١",
            '"1"',
            '"a,b"',
            '"a""b"',
            'a"b',
            "é",
            "1.5e+300",
            "0." + "0" * 330 + "1",
            "9" * 400,
            "  ",
            "\u00a0",
            "\x00",
        ]
    ),
    st.text(alphabet="0123456789.eE+- ", max_size=6),
)


@st.composite
def csv_files(draw):
    delimiter = draw(st.sampled_from([",", "\t"]))
    names = draw(st.sampled_from([["x"], ["x", "y"], ["y", "x"], ["x", "id"], ["id", "x", "y"]]))
    if draw(st.booleans()):
        names = [*names, "e"]
    header = delimiter.join(names)
    rows = []
    for _ in range(draw(st.integers(0, 25))):
        shape = draw(st.integers(0, 9))
        if shape == 0:
            rows.append(draw(st.sampled_from(["", "  ", "\t"])))
            continue
        count = len(names) + (draw(st.sampled_from([-1, 1])) if shape == 1 else 0)
        rows.append(delimiter.join(draw(CELLS) for _ in range(max(0, count))))
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    bom = "\ufeff" if draw(st.booleans()) else ""
    text = bom + header + end + end.join(rows) + (end if draw(st.booleans()) else "")
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    csv_files(),
    st.sampled_from(["csv", "tsv", "jsonl"]),
    st.sampled_from(["stop", "skip"]),
    st.booleans(),
    st.sampled_from(["float64", "float32"]),
    st.sampled_from([64, 200, 1 << 22]),
)
def test_blocks_read_as_the_strict_reader_does(text, kind, on_error, allow, dtype, block):
    expression = "x*y + 1" if "y" in text.splitlines()[0] else "x*x"
    fast, strict = both_readers(block, text, expression, kind, on_error, allow, dtype)
    assert fast == strict


JSON_VALUES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**25), 10**25).map(str),
    st.sampled_from(
        [
            "1.50",
            "-0",
            "1e400",
            "1e-400",
            "3.5e38",
            "1E5",
            "NaN",
            "-Infinity",
            "true",
            "null",
            '"a"',
            '"a,b"',
            '"\\u00e9"',
            '"\\""',
            '"tab\\there"',
            "[1, 2]",
            '{"k": 1}',
            "01",
            "1.",
            ".5",
            "+1",
            '"é"',
            "nan",
            "'a'",
            "9" * 400,
        ]
    ),
)


@st.composite
def jsonl_files(draw):
    keys = draw(st.sampled_from([["x"], ["x", "y"], ["y", "x"], ["x", "id"], ["id", "x", "y"]]))
    rows = []
    for _ in range(draw(st.integers(0, 20))):
        shape = draw(st.integers(0, 12))
        if shape == 0:
            rows.append(draw(st.sampled_from(["", "  ", "[1]", "{", "x"])))
            continue
        names = list(keys)
        if shape == 1:
            names = names[::-1]
        elif shape == 2:
            names = names[:-1]
        elif shape == 3:
            names = [*names, draw(st.sampled_from(["z", "e", "x"]))]
        space = draw(st.sampled_from(["", " ", "  "]))
        members = [f'"{k}":{space}{draw(JSON_VALUES)}' for k in names]
        rows.append("{" + f",{space}".join(members) + "}")
    end = draw(st.sampled_from(["\n", "\r\n"]))
    return end.join(rows) + (end if draw(st.booleans()) else "")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jsonl_files(),
    st.sampled_from(["csv", "jsonl"]),
    st.sampled_from(["stop", "skip"]),
    st.booleans(),
    st.sampled_from(["float64", "float32"]),
    st.sampled_from([64, 300, 1 << 22]),
)
def test_json_lines_read_as_the_strict_reader_does(text, kind, on_error, allow, dtype, block):
    expression = "x*y + 1" if '"y"' in text.split("\n")[0] else "x*x"
    fast, strict = both_readers(block, text, expression, kind, on_error, allow, dtype)
    if kind == "csv" and ('"z"' in text or '"e"' in text):
        # A key first seen on a later row is a CSV column only if it came before the header
        # was written, which is after the first chunk: where chunks end is the readers' own.
        assert fast[:2] == strict[:2] if fast[0] == "error" else fast[1:5] == strict[1:5]
        return
    assert fast == strict


def test_a_numeric_file_is_read_at_once_and_kept_as_written():
    text = "x,y\n" + "".join(f"{i}.50,{-i}e0\n" for i in range(1000))
    out, rows, *_ = through(text, "x*y", "csv", "stop")
    assert rows == 1000
    lines = out.splitlines()
    assert lines[0] == "x,y,value,d_x,d_y"
    assert lines[3] == "2.50,-2e0,-5.0,-2.0,2.5"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.floats(width=64), min_size=1, max_size=50))
def test_numbers_are_written_as_python_writes_them(values):
    assert arrow.float_texts(np.array(values)).to_pylist() == [repr(v) for v in values]


def test_numbers_at_every_magnitude_are_written_as_python_writes_them():
    rng = np.random.default_rng(0)
    parts = []
    for exponent in range(-323, 308):
        x = rng.uniform(1, 10, size=40) * np.float64(10.0) ** exponent
        parts += [x, -x, np.round(x)]
    x = np.concatenate(parts)
    assert arrow.float_texts(x).to_pylist() == [repr(v) for v in x.tolist()]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32), min_size=1, max_size=20))
def test_float32_numbers_are_written_as_numpy_writes_them(values):
    x = np.array(values, dtype=np.float32)
    assert arrow.float_texts(x, "float32").to_pylist() == [str(v) for v in x]


# ---- Parquet and Arrow -----------------------------------------------------------------------

NEURON = "1/(1+exp(-(w*x+b)))"


def table(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "id": [f"p{i}" for i in range(n)],
            "w": rng.normal(size=n),
            "x": rng.normal(size=n),
            "b": rng.integers(-3, 3, size=n),
        }
    )


def csv_of(t):
    cols = t.column_names
    rows = zip(*(t.column(c).to_pylist() for c in cols), strict=True)
    return ",".join(cols) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)


@pytest.mark.parametrize("written", ["parquet", "arrow", "stream"])
def test_a_table_gives_what_its_csv_gives(tmp_path, written):
    t = table()
    path = tmp_path / f"points.{'arrow' if written != 'parquet' else 'parquet'}"
    if written == "parquet":
        pq.write_table(t, path, row_group_size=7)
    elif written == "arrow":
        with ipc.new_file(path, t.schema) as w:
            w.write_table(t, max_chunksize=9)
    else:
        with ipc.new_stream(path, t.schema) as w:
            w.write_table(t)
    (tmp_path / "points.csv").write_text(csv_of(t))
    a = run("grad", NEURON, "--points", str(path), "--format", "jsonl")
    b = run("grad", NEURON, "--points", str(tmp_path / "points.csv"), "--format", "jsonl")
    assert a.code == b.code == 0, a.stderr + b.stderr
    mine = [json.loads(line) for line in a.stdout.splitlines()]
    theirs = [json.loads(line) for line in b.stdout.splitlines()]
    assert [m["line"] for m in mine] == list(range(1, 51))
    for m, o in zip(mine, theirs, strict=True):
        assert m["point"] == o["point"] and m["value"] == o["value"]
        assert m["gradient"] == o["gradient"]
        assert m["extra"] == {"id": o["extra"]["id"]}


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_points_written_as_a_table(tmp_path, fmt):
    t = table()
    (tmp_path / "p.csv").write_text(csv_of(t))
    out = tmp_path / f"out.{fmt}"
    r = run("grad", NEURON, "--points", str(tmp_path / "p.csv"), "-o", str(out))
    assert r.code == 0, r.stderr
    got = pq.read_table(out) if fmt == "parquet" else ipc.open_file(out).read_all()
    assert got.column_names == ["id", "w", "x", "b", "value", "d_b", "d_w", "d_x"]
    assert got.column("id").to_pylist() == t.column("id").to_pylist()
    assert got.schema.field("w").type == pa.float64()
    text = run("grad", NEURON, "--points", str(tmp_path / "p.csv"))
    rows = [line.split(",") for line in text.stdout.splitlines()[1:]]
    assert got.column("d_w").to_pylist() == [float(r[6]) for r in rows]
    assert got.column("value").to_pylist() == [float(r[4]) for r in rows]


def test_parquet_in_and_out_keeps_the_columns_types(tmp_path):
    t = table()
    pq.write_table(t, tmp_path / "p.parquet")
    r = run("grad", NEURON, "--points", str(tmp_path / "p.parquet"), "-o", str(tmp_path / "o.pq"))
    assert r.code == 0, r.stderr
    got = pq.read_table(tmp_path / "o.pq")
    assert got.schema.field("b").type == pa.int64()
    assert got.column("b").to_pylist() == t.column("b").to_pylist()


def test_bad_rows_of_a_table_are_named_by_row(tmp_path):
    t = pa.table({"x": pa.array([1.0, None, 3.0, math.nan, 5.0])})
    pq.write_table(t, tmp_path / "p.parquet")
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"))
    assert r.code == 2
    assert "row 2: no value for x" in r.stderr
    assert r.stdout == "x,value,d_x\n1.0,1.0,2.0\n"
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"), "--on-error", "skip")
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["1.0,1.0,2.0", "3.0,9.0,6.0", "5.0,25.0,10.0"]
    assert "skipped: row 2: no value for x" in r.stderr
    assert "skipped: row 4: x: nan is not a finite number" in r.stderr
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"), "--on-error", "skip",
            "--allow-nonfinite")  # fmt: skip
    assert r.stdout.splitlines()[3] == "nan,nan,nan"


def test_a_table_column_of_number_texts_keeps_the_strict_rules(tmp_path):
    t = pa.table({"x": ["1.5", " 2", "1_000", "nan"]})
    pq.write_table(t, tmp_path / "p.parquet")
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"), "--on-error", "skip")
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["1.5,2.25,3.0", "2,4.0,4.0"]
    assert "row 3: column x: '1_000' is not a number" in r.stderr


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (pa.array([True, False]), "column x holds bool, not numbers"),
        (pa.array([[1.0], [2.0]]), "column x holds list<"),
    ],
)
def test_a_table_column_that_cannot_hold_numbers(tmp_path, column, message):
    pq.write_table(pa.table({"x": column}), tmp_path / "p.parquet")
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"))
    assert r.code == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_a_table_without_the_variable(tmp_path):
    pq.write_table(pa.table({"y": [1.0]}), tmp_path / "p.parquet")
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"))
    assert r.code == 2 and "has no column for x" in r.stderr


@pytest.mark.parametrize("name", ["p.parquet", "p.arrow", "p.feather"])
def test_a_text_file_named_as_a_table_is_refused(tmp_path, name):
    (tmp_path / name).write_text("x\n1\n")
    r = run("grad", "x*x", "--points", str(tmp_path / name))
    assert r.code == 2 and "is not a" in r.stderr and "Traceback" not in r.stderr


def test_a_broken_parquet_file(tmp_path):
    (tmp_path / "p.parquet").write_bytes(b"PAR1" + b"\x00" * 100)
    r = run("grad", "x*x", "--points", str(tmp_path / "p.parquet"))
    assert r.code == 2 and "not a readable parquet file" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_parquet_from_stdin(tmp_path):
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": [1.0, 2.0]}), sink)
    r = run("grad", "x*x", "--points", "-", stdin=sink.getvalue())
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["x,value,d_x", "1.0,1.0,2.0", "2.0,4.0,4.0"]


def test_check_points_reads_a_table(tmp_path):
    pq.write_table(table(20), tmp_path / "p.parquet")
    r = run("check", NEURON, "--points", str(tmp_path / "p.parquet"))
    assert r.code == 0, r.stdout + r.stderr
    assert "20 points" in r.stdout


def test_a_table_is_not_an_output_of_one_point():
    r = run("grad", "x*x", "x=1", "--format", "parquet")
    assert r.code == 2 and "--points" in r.stderr


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_points_do_not_import_pandas(tmp_path, fmt):
    # pyarrow imports pandas (when installed) for many of its conversions: a second or so
    t = table()
    (tmp_path / "p.csv").write_text(csv_of(t))
    pq.write_table(t, tmp_path / "p.parquet")
    source = tmp_path / ("p.parquet" if fmt == "parquet" else "p.csv")
    code = (
        "import sys\n"
        "from backprop_cli.cli.entry import main\n"
        f"sys.argv = ['backprop', 'grad', {NEURON!r}, '--points', {str(source)!r},\n"
        f"            '-o', {str(tmp_path / ('out.' + fmt))!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "assert 'pandas' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
