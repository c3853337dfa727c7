"""`grad --points` and `check --points` at the edges of their inputs: text files with odd
line ends, marks and bytes; Parquet and Arrow files with nulls, wide, nested, dictionary,
large_string, decimal and timestamp columns, no rows or a broken end; tables written out;
and the binary formats' first bytes arriving a few at a time from a pipe."""

from __future__ import annotations

import csv
import datetime
import decimal
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from backprop_cli.analyses import point_blocks, points

from .test_cli import run


def grad(*args, stdin=None):
    return run("grad", *args, stdin=stdin)


def rows_of(text):
    return list(csv.reader(io.StringIO(text)))


def one_error_line(r):
    assert r.code == 2, (r.code, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def write_parquet(path, columns):
    pq.write_table(pa.table(columns), path)
    return str(path)


def write_arrow(path, columns, stream=False):
    t = pa.table(columns)
    with (ipc.new_stream if stream else ipc.new_file)(path, t.schema) as w:
        w.write_table(t)
    return str(path)


# ---- text files --------------------------------------------------------------------------------


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_line_ends_and_a_byte_order_mark(end):
    text = "\ufeffx,y" + end + end.join(["1,2", "", "  ", "3,4"]) + end
    r = grad("x*y", "--points", "-", stdin=text)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["x,y,value,d_x,d_y", "1,2,2.0,2.0,1.0", "3,4,12.0,4.0,3.0"]


def test_a_last_line_without_its_newline():
    r = grad("x*y", "--points", "-", stdin="x,y\r\n1,2\r\n3,4")
    assert r.stdout.splitlines()[1:] == ["1,2,2.0,2.0,1.0", "3,4,12.0,4.0,3.0"]


def test_bad_rows_of_a_text_file_are_named_by_line_and_counted():
    text = "x,y\n1,2,\n1,\x002\n\n3,4\n1,2\xa0\n5,\n"
    r = grad("x*y", "--points", "-", "--on-error", "skip", stdin=text)
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["3,4,12.0,4.0,3.0"]
    assert "skipped: line 2: 3 fields, but the header has 2" in r.stderr
    assert "skipped: line 3: column y: '\\x002' is not a number" in r.stderr
    assert "skipped: line 6: column y: '2\\xa0' is not a number" in r.stderr
    assert "skipped: line 7: column y: '' is not a number" in r.stderr
    assert "skipped 4 bad rows; wrote 1" in r.stderr


def test_invalid_utf8_is_a_bad_row_and_passes_through_replaced():
    data = b"x,id\n1,\xff\n\xff2,a\n"
    r = grad("x*x", "--points", "-", "--on-error", "skip", stdin=data)
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["1,\ufffd,1.0,2.0"]
    assert "skipped: line 3: column x: '\ufffd2' is not a number" in r.stderr


def test_an_unclosed_quote_stops_at_its_line():
    r = grad("x*y", "--points", "-", stdin='x,y\n1,2\n"1,2\n3,4\n')
    one_error_line(r)
    assert r.stdout.splitlines() == ["x,y,value,d_x,d_y", "1,2,2.0,2.0,1.0"]
    assert "line 3: not a CSV row (a quote is not closed on this line" in r.stderr


@pytest.mark.parametrize("text", ["", "\n\n", "  \n"])
def test_an_empty_text_file(text):
    r = grad("x*y", "--points", "-", stdin=text)
    one_error_line(r)
    assert "stdin is empty" in r.stderr


@pytest.mark.parametrize("text", ["x,y\n", "x,y"])
def test_a_header_only(text):
    r = grad("x*y", "--points", "-", stdin=text)
    assert r.code == 0 and r.stdout == "x,y,value,d_x,d_y\n"


def test_one_bare_column_of_numbers():
    r = grad("sin(x)", "--points", "-", "--on-error", "skip", stdin=" 0\r\n\r\nx\r\n2")
    assert r.code == 0
    assert r.stdout.splitlines() == [
        "x,value,d_x",
        "0,0.0,1.0",
        "2,0.9092974268256817,-0.4161468365471424",
    ]
    assert "skipped: line 3:" in r.stderr


def test_strict_numbers_of_a_text_file():
    text = "x\n+1\n.5\n5.\n1.e5\n-0\n1_000\n\u0661\nnan\ninf\n0x10\ne5\n1e\n"
    r = grad("x*x", "--points", "-", "--on-error", "skip", stdin=text)
    assert [row[0] for row in rows_of(r.stdout)[1:]] == ["+1", ".5", "5.", "1.e5", "-0"]
    assert "skipped 7 bad rows; wrote 5" in r.stderr
    assert "line 9: column x: nan is not a finite number (pass --allow-nonfinite" in r.stderr


def test_nonfinite_cells_with_allow_nonfinite():
    text = "x,y\n nan ,\t-inf\nNaN,INFINITY\n"
    r = grad("x*y", "--points", "-", "--allow-nonfinite", stdin=text)
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["nan,-inf,nan,-inf,nan", "NaN,INFINITY,nan,inf,nan"]
    assert "2 points have a nan or infinite value or gradient (line 2, 3)" in r.stderr
    r = grad("x*y", "--points", "-", "--allow-nonfinite", "--format", "jsonl", stdin=text)
    first = json.loads(r.stdout.splitlines()[0])
    assert first["point"] == {"x": None, "y": None} and first["value"] is None


def test_float32_range_and_underflow_of_text_cells():
    text = "x\n3.5e38\n1e-46\n2\n1e-46\n"
    r = grad("x*x", "--points", "-", "--dtype", "float32", "--on-error", "skip", stdin=text)
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["1e-46,0.0,0.0", "2,4.0,4.0", "1e-46,0.0,0.0"]
    assert "skipped: line 2: column x: 3.5e38 overflows float32" in r.stderr
    assert (
        "2 nonzero cells are too small for float32 and become 0 (the first on line 3)" in r.stderr
    )


def test_a_column_named_as_a_constant():
    r = grad("x*pi", "--points", "-", stdin="x,pi\n1,2\n")
    assert r.code == 0
    assert r.stdout.splitlines()[1] == "1,2,3.141592653589793,3.141592653589793"
    assert "stdin, line 1: column 'pi' is not a variable" in r.stderr


@pytest.mark.parametrize("name", ["value", "d_x"])
def test_a_column_named_as_an_output_column(name):
    r = grad("x*x", "--points", "-", stdin=f"x,{name}\n1,2\n")
    one_error_line(r)
    assert f"two columns called '{name}'" in r.stderr
    r = grad("x*x", "--points", "-", "--format", "jsonl", stdin=f"x,{name}\n1,2\n")
    assert r.code == 0 and json.loads(r.stdout)["extra"] == {name: "2"}


def test_pass_through_cells_with_separators_and_quotes():
    r = grad("x*x", "--points", "-", "--format", "tsv", stdin='x,id\n1,"a\tb"\n2,"c""d"\n')
    assert r.stdout.splitlines()[1:] == ['1\t"a\tb"\t1.0\t2.0', '2\t"c""d"\t4.0\t4.0']
    r = grad("x*x", "--points", "-", stdin="x\tid\n1\ta,b\n")
    assert r.stdout.splitlines()[1] == '1,"a,b",1.0,2.0'


def test_numbers_are_written_as_python_writes_them():
    xs = ["0.1", "1e16", "1e-5", "123456789012345678", "5e-324", "1.7976931348623157e308"]
    r = grad("x*3", "--points", "-", stdin="x\n" + "\n".join(xs) + "\n")
    got = [row[1] for row in rows_of(r.stdout)[1:]]
    assert got == [repr(float(x) * 3) for x in xs]
    r = grad("x*3", "--points", "-", "--dtype", "float32", stdin="x\n0.1\n1e-5\n")
    got = [row[1] for row in rows_of(r.stdout)[1:]]
    assert got == [str(np.float32(0.1) * np.float32(3)), str(np.float32(1e-5) * np.float32(3))]


def test_the_block_reader_across_many_blocks_keeps_lines_and_counts(monkeypatch):
    monkeypatch.setattr(point_blocks, "BLOCK_CHARS", 256)
    lines = []
    for i in range(2000):
        lines.append(f"{i},{i % 7}" if i % 97 else "oops,1")
        if i % 311 == 0:
            lines.append("")
    text = "x,y\r\n" + "\r\n".join(lines) + "\r\n"
    r = grad("x*y", "--points", "-", "--on-error", "skip", "--format", "jsonl", stdin=text)
    assert r.code == 0
    got = [json.loads(line) for line in r.stdout.splitlines()]
    want = [n for n, t in enumerate(text.split("\r\n")[1:-1], start=2) if t and t[0] != "o"]
    assert [g["line"] for g in got] == want
    assert f"skipped {2000 // 97 + 1} bad rows" in r.stderr


# ---- Parquet and Arrow files -------------------------------------------------------------------


def test_a_table_with_no_rows(tmp_path):
    for path in (
        write_parquet(tmp_path / "p.parquet", {"x": pa.array([], pa.float64())}),
        write_arrow(tmp_path / "p.arrow", {"x": pa.array([], pa.float64())}),
        write_arrow(tmp_path / "s.arrows", {"x": pa.array([], pa.float64())}, stream=True),
    ):
        r = grad("x*x", "--points", path)
        assert r.code == 0 and r.stdout == "x,value,d_x\n", r.stderr
    r = run("check", "x*x", "--points", str(tmp_path / "p.parquet"))
    one_error_line(r)
    assert "has a header but no points" in r.stderr


def test_a_table_with_no_columns(tmp_path):
    r = grad("x*x", "--points", write_parquet(tmp_path / "p.parquet", {}))
    one_error_line(r)
    assert "has no column for x" in r.stderr


@pytest.mark.parametrize(
    ("column", "written"),
    [
        (pa.array([1, 2], pa.int8()), ["1", "2"]),
        (pa.array([2**64 - 1, 1], pa.uint64()), ["18446744073709551615", "1"]),
        (
            pa.array([decimal.Decimal("1.50"), decimal.Decimal("0.10")], pa.decimal128(10, 2)),
            ["1.50", "0.10"],
        ),
        (pa.array(np.array([1.5, 2], dtype=np.float16)), ["1.5", "2.0"]),
        (pa.array(np.array([0.1, 2], dtype=np.float32)), ["0.10000000149011612", "2.0"]),
    ],
)
def test_a_variable_column_of_any_number_type(tmp_path, column, written):
    path = write_arrow(tmp_path / "p.arrow", {"x": column})
    r = grad("x*2", "--points", path)
    assert r.code == 0, r.stderr
    got = rows_of(r.stdout)[1:]
    assert [row[0] for row in got] == written
    expected = [float(v) * 2 for v in column.to_pylist()]
    assert [float(row[1]) for row in got] == expected


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        (pa.array([True]), "bool"),
        (pa.array([b"1"]), "binary"),
        (pa.array([datetime.datetime(2020, 1, 1)], pa.timestamp("us")), "timestamp"),
        (pa.array([None], pa.null()), "null"),
    ],
)
def test_a_variable_column_that_does_not_hold_numbers(tmp_path, column, kind):
    r = grad("x*x", "--points", write_arrow(tmp_path / "p.arrow", {"x": column}))
    one_error_line(r)
    assert f"column x holds {kind}" in r.stderr


def test_pass_through_columns_of_a_table(tmp_path):
    x = [1.0, 2.0, 3.0]
    path = write_parquet(
        tmp_path / "p.parquet",
        {
            "x": x,
            "id": pa.array(["a", "b", "a"]).dictionary_encode(),
            "t": pa.array([datetime.datetime(2020, 1, 1)] * 3, pa.timestamp("us")),
            "d": pa.array([datetime.date(2020, 1, 2)] * 3),
            "i": pa.array([1, 2, 3], pa.int16()),
            "f": [0.1, 1e20, float("nan")],
            "e": x,
        },
    )
    r = grad("x*x*e", "--points", path)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [
        "x,id,t,d,i,f,e,value,d_x",
        "1.0,a,2020-01-01 00:00:00.000000,2020-01-02,1,0.1,1.0,2.718281828459045,5.43656365691809",
    ]
    assert rows_of(r.stdout)[3][5] == "nan"
    assert "column 'e' is not a variable" in r.stderr


@pytest.mark.parametrize("kind", ["string", "int64", "bool", "list", "struct", "binary"])
@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_a_null_pass_through_cell_keeps_its_row(tmp_path, kind, fmt):
    values = {
        "string": pa.array(["a", None, "c"]),
        "int64": pa.array([1, None, 3]),
        "bool": pa.array([True, None, False]),
        "list": pa.array([[1], None, [2, 3]]),
        "struct": pa.array([{"a": 1}, None, {"a": 2}]),
        "binary": pa.array([b"a", None, b"c"]),
    }[kind]
    path = write_parquet(tmp_path / "p.parquet", {"x": [1.0, 2.0, 3.0], "id": values})
    r = grad("x*x", "--points", path, "--format", fmt)
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    if fmt == "jsonl":
        got = [json.loads(line) for line in lines]
        assert [g["line"] for g in got] == [1, 2, 3]
        assert got[1]["extra"] == {"id": None}
        assert got[1]["value"] == 4.0
    else:
        sep = "\t" if fmt == "tsv" else ","
        got = list(csv.reader(io.StringIO(r.stdout), delimiter=sep))
        assert len(got) == 4
        assert got[2] == ["2.0", "", "4.0", "4.0"]


def test_nested_pass_through_cells_are_written_as_json(tmp_path):
    path = write_parquet(
        tmp_path / "p.parquet",
        {"x": [1.0, 2.0], "s": pa.array([{"a": 1}, {"a": 2}]), "l": pa.array([["u"], []])},
    )
    r = grad("x*x", "--points", path)
    assert r.code == 0, r.stderr
    got = rows_of(r.stdout)
    assert got[1][1:3] == ['{"a": 1}', '["u"]']
    j = grad("x*x", "--points", path, "--format", "jsonl")
    assert json.loads(j.stdout.splitlines()[0])["extra"] == {"s": {"a": 1}, "l": ["u"]}


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl"])
def test_a_large_string_pass_through_column(tmp_path, fmt):
    ids = pa.array(["a", "b,c", 'd"e'], pa.large_string())
    path = write_arrow(tmp_path / "p.arrow", {"x": [1.0, 2.0, 3.0], "id": ids})
    r = grad("x*x", "--points", path, "--format", fmt)
    assert r.code == 0, r.stderr
    if fmt == "jsonl":
        assert [
            json.loads(line)["extra"]["id"] for line in r.stdout.splitlines()
        ] == ids.to_pylist()
    else:
        sep = "\t" if fmt == "tsv" else ","
        got = list(csv.reader(io.StringIO(r.stdout), delimiter=sep))
        assert [row[1] for row in got[1:]] == ids.to_pylist()


def test_a_large_string_variable_column(tmp_path):
    path = write_arrow(tmp_path / "p.arrow", {"x": pa.array(["1", " 2"], pa.large_string())})
    r = grad("x*x", "--points", path)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["1,1.0,2.0", "2,4.0,4.0"]


def test_strings_with_line_breaks_and_quotes_are_quoted(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"x": [1.0, 2.0], "id": ["a\nb", 'c,\t"d"']})
    for fmt, sep in (("csv", ","), ("tsv", "\t")):
        r = grad("x*x", "--points", path, "--format", fmt)
        assert f'1.0{sep}"a\nb"{sep}1.0' in r.stdout
        assert f'2.0{sep}"c,\t""d"""{sep}4.0' in r.stdout


def test_duplicate_column_names_in_a_table(tmp_path):
    t = pa.Table.from_arrays([pa.array([1.0]), pa.array([2.0])], names=["x", "x"])
    pq.write_table(t, tmp_path / "p.parquet")
    r = grad("x*x", "--points", str(tmp_path / "p.parquet"))
    one_error_line(r)
    assert "column 'x' appears twice" in r.stderr


def test_a_wide_table(tmp_path):
    columns = {"x": [1.0, 2.0], **{f"c{i}": [float(i), -1.0] for i in range(2000)}}
    r = grad("x*x", "--points", write_parquet(tmp_path / "p.parquet", columns))
    assert r.code == 0
    got = rows_of(r.stdout)
    assert len(got[0]) == 2003 and got[1][-2:] == ["1.0", "2.0"] and got[1][2000] == "1999.0"


def test_float32_range_and_underflow_of_a_table(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"x": [1e-46, 3.5e38, 1.0]})
    r = grad("x*x", "--points", path, "--dtype", "float32", "--on-error", "skip")
    assert r.code == 0
    assert r.stdout.splitlines()[1:] == ["1e-46,0.0,0.0", "1.0,1.0,2.0"]
    assert "skipped: row 2: column x: 3.5e+38 overflows float32" in r.stderr
    assert "np.float64" not in r.stderr
    assert "1 nonzero value is too small for float32 and becomes 0 (the first in row 1)" in r.stderr


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_text_column_that_underflows_is_counted(tmp_path, dtype):
    path = write_parquet(tmp_path / "p.parquet", {"x": ["1", "1e-400", "2"]})
    r = grad("x*x", "--points", path, "--dtype", dtype)
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines()[2] == "1e-400,0.0,0.0"
    assert (
        f"1 nonzero value is too small for {dtype} and becomes 0 (the first in row 2)" in r.stderr
    )


@pytest.mark.parametrize("values", [[1.5, 2.0, 1.5], ["1.5", "2", "1.5"]])
def test_a_dictionary_encoded_variable_column_is_read(tmp_path, values):
    path = tmp_path / "p.arrow"
    t = pa.table({"x": pa.array(values).dictionary_encode()})
    with ipc.new_file(path, t.schema) as w:
        w.write_table(t)
    r = grad("x*x", "--points", str(path))
    assert r.code == 0, r.stderr
    assert [row.split(",")[1] for row in r.stdout.splitlines()[1:]] == ["2.25", "4.0", "2.25"]


def test_the_rows_of_a_table_are_named_as_rows(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"x": [1.0, -1.0, 0.0]})
    r = grad("log(x)", "--points", path)
    assert r.code == 0
    assert "2 points have a nan or infinite value or gradient (row 2, 3)" in r.stderr


def test_a_truncated_stream_writes_the_rows_before_it(tmp_path):
    sink = io.BytesIO()
    with ipc.new_stream(sink, pa.schema([("x", pa.float64())])) as w:
        for i in range(5):
            w.write_table(pa.table({"x": [float(i)]}))
    (tmp_path / "p.arrows").write_bytes(sink.getvalue()[:-100])
    r = grad("x*x", "--points", str(tmp_path / "p.arrows"))
    one_error_line(r)
    assert r.stdout.splitlines()[:2] == ["x,value,d_x", "0.0,0.0,0.0"]
    assert "cannot read on" in r.stderr


@pytest.mark.parametrize("cut", [5000, 60])
def test_a_truncated_parquet_file(tmp_path, cut):
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": np.arange(10_000, dtype=float)}), sink)
    (tmp_path / "p.parquet").write_bytes(sink.getvalue()[:cut])
    r = grad("x*x", "--points", str(tmp_path / "p.parquet"))
    one_error_line(r)
    assert "not a readable parquet file" in r.stderr


def test_a_parquet_file_named_csv_and_an_empty_file_named_parquet(tmp_path):
    sink = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), sink)
    (tmp_path / "p.csv").write_bytes(sink.getvalue())
    r = grad("x*x", "--points", str(tmp_path / "p.csv"))
    assert r.code == 0 and r.stdout.splitlines()[1:] == ["1,1.0,2.0", "2,4.0,4.0"]
    (tmp_path / "e.parquet").write_bytes(b"")
    r = grad("x*x", "--points", str(tmp_path / "e.parquet"))
    one_error_line(r)
    assert "is not a Parquet file" in r.stderr


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_stream_of_tables_from_stdin(fmt):
    sink = io.BytesIO()
    t = pa.table({"x": [1.0, 2.0], "id": ["a", "b"]})
    if fmt == "parquet":
        pq.write_table(t, sink)
    else:
        with ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
    r = grad("x*x", "--points", "-", stdin=sink.getvalue())
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["x,id,value,d_x", "1.0,a,1.0,2.0", "2.0,b,4.0,4.0"]


class _Trickle(io.RawIOBase):
    """A pipe that gives a few bytes at a time."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.at, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        part = self.data[self.at : self.at + min(self.step, len(buffer))]
        buffer[: len(part)] = part
        self.at += len(part)
        return len(part)


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "stream"])
def test_a_table_whose_first_bytes_come_a_few_at_a_time(monkeypatch, fmt):
    sink = io.BytesIO()
    t = pa.table({"x": [1.0, 2.0]})
    if fmt == "parquet":
        pq.write_table(t, sink)
    else:
        with (ipc.new_file if fmt == "arrow" else ipc.new_stream)(sink, t.schema) as w:
            w.write_table(t)
    data = sink.getvalue()
    monkeypatch.setattr(points, "open", lambda *a, **k: io.BufferedReader(_Trickle(data, 2)),
                        raising=False)  # fmt: skip
    reader, stream = points.open_points("points.bin", "points.bin", ["x"], {})
    try:
        assert reader.kind == "table"
        summary = points.Summary()
        got = [c.columns["x"].tolist() for c in points.chunks(reader, 100, "stop", summary)]
    finally:
        stream.close()
    assert got == [[1.0, 2.0]]


# ---- tables written ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".pq", ".arrow", ".feather", ".ipc"])
def test_the_output_is_chosen_by_its_extension(tmp_path, suffix):
    out = tmp_path / f"o{suffix}"
    r = grad("x*y", "--points", "-", "-o", str(out), stdin="x,y,id\n1,2,a\n3,4,b\n")
    assert r.code == 0, r.stderr
    t = pq.read_table(out) if suffix in (".parquet", ".pq") else ipc.open_file(out).read_all()
    assert t.column_names == ["x", "y", "id", "value", "d_x", "d_y"]
    assert t.column("id").to_pylist() == ["a", "b"]
    assert t.column("value").to_pylist() == [2.0, 12.0]


@pytest.mark.parametrize("suffix", [".parquet", ".arrow"])
def test_a_table_with_no_rows_written_keeps_the_number_columns(tmp_path, suffix):
    out = tmp_path / f"o{suffix}"
    r = grad("x*x", "--points", "-", "-o", str(out), stdin="x,id\n")
    assert r.code == 0, r.stderr
    t = pq.read_table(out) if suffix == ".parquet" else ipc.open_file(out).read_all()
    assert t.num_rows == 0
    assert t.column_names == ["x", "id", "value", "d_x"]
    assert t.schema.field("x").type == pa.float64()
    assert t.schema.field("id").type == pa.string()
    assert t.schema.field("value").type == pa.float64()
    assert t.schema.field("d_x").type == pa.float64()


def test_a_table_written_keeps_a_null_pass_through_cell(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"x": [1.0, 2.0], "id": ["a", None]})
    r = grad("x*x", "--points", path, "-o", str(tmp_path / "o.parquet"))
    assert r.code == 0, r.stderr
    t = pq.read_table(tmp_path / "o.parquet")
    assert t.column("id").to_pylist() == ["a", None]
    assert t.column("value").to_pylist() == [1.0, 4.0]


def test_rows_written_as_a_table_from_json_lines(tmp_path):
    text = '{"x": 1, "id": "a"}\n{"x": 2, "k": [1]}\n'
    r = grad("x*x", "--points", "-", "-o", str(tmp_path / "o.parquet"), stdin=text)
    assert r.code == 0, r.stderr
    t = pq.read_table(tmp_path / "o.parquet")
    assert t.column_names[:2] == ["x", "id"]
    assert t.column("id").to_pylist() == ["a", None]
    assert t.column("value").to_pylist() == [1.0, 4.0]


# ---- check --points ----------------------------------------------------------------------------


def test_check_reads_a_table_with_null_pass_through_cells(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"x": [1.0, 2.0, 3.0], "id": ["a", None, "c"]})
    r = run("check", "x*x", "--points", path)
    assert r.code == 0, r.stdout + r.stderr
    assert "3 points" in r.stdout


def test_check_names_a_bad_row_of_a_table(tmp_path):
    path = write_parquet(tmp_path / "p.parquet", {"x": pa.array(["1", "abc"])})
    r = run("check", "x*x", "--points", path)
    one_error_line(r)
    assert "row 2: column x: 'abc' is not a number" in r.stderr


def test_check_reads_a_text_file_with_odd_line_ends():
    r = run("check", "x*x", "--points", "-", stdin="\ufeffx\r1\r\r2\r")
    assert r.code == 0, r.stdout + r.stderr
    assert "2 points" in r.stdout


def _backprop(args, stdin: bytes, cwd):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "backprop_cli", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_bad_row_ends_a_table_cleanly(tmp_path, fmt):
    text = b"x\n1\n2\nabc\n4\n"
    done = _backprop(["grad", "x*x", "--points", "-", "-o", f"o.{fmt}"], text, tmp_path)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "error: stdin, line 4: column x: 'abc' is not a number"
    done = _backprop(["grad", "x*x", "--points", "-", "--format", fmt], text, tmp_path)
    assert done.returncode == 2
    assert done.stderr.decode().strip() == "error: stdin, line 4: column x: 'abc' is not a number"
    sink = pa.BufferReader(done.stdout)
    got = pq.read_table(sink) if fmt == "parquet" else ipc.open_file(sink).read_all()
    assert got.column("value").to_pylist() == [1.0, 4.0]  # the rows before the bad one


def test_the_gradient_of_a_fixed_array_in_json_lines():
    for text in ("x\n1\n2\n", "x,id\n1,a\n2,b\n", "x\n 1\n2\n"):
        r = grad("W[0]*x", "W=[1,2]", "--points", "-", "--format", "jsonl", stdin=text)
        assert r.code == 0, r.stderr
        got = [json.loads(line) for line in r.stdout.splitlines()]
        assert [g["gradient"] for g in got] == [
            {"W": [1.0, 0.0], "x": 1.0},
            {"W": [2.0, 0.0], "x": 1.0},
        ]
        assert got[0]["point"] == {"x": 1.0, "W": [1.0, 2.0]}
    r = grad("W[0]*x", "W=[1,2]", "--points", "-", stdin="x\n1\n")
    assert r.stdout.splitlines() == [
        "x,W[0],W[1],value,d_W[0],d_W[1],d_x",
        "1,1.0,2.0,1.0,1.0,0.0,1.0",
    ]


def test_the_point_keys_come_in_one_order_whichever_way_a_row_is_read():
    orders = set()
    for text in ("y,x\n1,2\n", "y,x,id\n1,2,a\n", "y,x\n 1,2\n", '{"y": 1, "x": 2}\n'):
        r = grad("x*y+x", "--points", "-", "--format", "jsonl", stdin=text)
        orders.add(tuple(json.loads(r.stdout)["point"]))
    assert len(orders) == 1


def test_a_text_file_whose_first_column_is_named_par1():
    r = grad("PAR1*y", "--points", "-", stdin="PAR1,y\n1,2\n")
    assert r.code == 0, r.stderr
    assert r.stdout.splitlines() == ["PAR1,y,value,d_PAR1,d_y", "1,2,2.0,2.0,1.0"]
