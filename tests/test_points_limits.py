"""`grad --points` and `check` within limits: memory that does not grow with the rows (bad
rows counted, wide rows in small chunks), pass-through values copied as written, keys the
CSV cannot hold named, constants shadowed by a column said, and long checks refused."""

from __future__ import annotations

import csv
import io
import json
import time
import tracemalloc

import pytest

from backprop_cli.analyses import check as sweep
from backprop_cli.analyses import points
from backprop_cli.core.parse import parse
from tests.conftest import run


def read_csv(text):
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def jsonl(text):
    return [json.loads(line) for line in text.splitlines()]


def stream_through(stdin, expression="x*x", kind="csv", on_error="stop"):
    """points.run on `stdin`, in this process: (the summary, the output, the reader)."""
    graph = parse(expression)
    names = list(graph.variables)
    plan = points.plan(graph, {}, names, names, "float64", 1.0)
    reader = points.PointReader(io.StringIO(stdin), "stdin", names, {})
    out = io.StringIO()
    summary = points.run(plan, reader, kind, out, on_error)
    return summary, out.getvalue(), reader


# ---- memory: bad rows are counted, wide rows come in small chunks ---------------------------


def test_skipped_rows_are_counted_and_only_the_first_few_kept():
    summary, out, _ = stream_through("x\n" + "abc\n" * 5000 + "3\n", on_error="skip")
    assert len(summary.skipped) == 5000
    assert len(list(summary.skipped)) == points.SHOWN_BAD_ROWS
    assert summary.skipped[0].line == 2 and summary.skipped[:2][1].line == 3
    assert out == "x,value,d_x\n3,9.0,6.0\n"


def test_skipping_rows_holds_no_memory_per_row(monkeypatch):
    monkeypatch.setattr(points, "MAX_CHUNK_ROWS", 1000)  # lines are read 1,000 at a time
    stdin = "x\n" + "abc\n" * 50_000
    stream_through("x,c\n1,2\n")  # the readers' modules imported before memory is traced
    tracemalloc.start()
    try:
        summary, _, _ = stream_through(stdin, on_error="skip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(summary.skipped) == 50_000
    assert peak < 3_000_000  # the input and one block of lines, not a record per row


def test_the_cli_says_how_many_rows_were_skipped():
    r = run("grad", "x", "--points", "-", "--on-error", "skip", stdin="x\n" + "abc\n" * 2000)
    assert r.code == 0
    assert "skipped 2,000 bad rows (1,990 more not shown); wrote 0" in r.stderr
    assert r.stderr.count("skipped: line") == 10


def test_wide_rows_are_read_a_few_at_a_time(monkeypatch):
    monkeypatch.setattr(points, "CHUNK_BYTES", 200_000)
    header = "x," + ",".join(f"c{i}" for i in range(2000))
    cells = ",".join(str(i % 10) for i in range(2000))
    stdin = header + "\n" + "".join(f"{r},{cells}\n" for r in range(20))
    graph = parse("x*x")
    plan = points.plan(graph, {}, ["x"], ["x"], "float64", 1.0)
    reader = points.PointReader(io.StringIO(stdin), "stdin", ["x"], {})
    sizes = [
        len(c.lines) for c in points.chunks(reader, plan.rows_per_chunk, "stop", points.Summary())
    ]
    assert sum(sizes) == 20 and max(sizes) <= 2  # a row holds ~130 kB: two make a chunk
    _, out, _ = stream_through(stdin)
    head, rows = read_csv(out)
    assert head[:3] == ["x", "c0", "c1"] and head[-2:] == ["value", "d_x"]
    assert rows[19][:3] == ["19", "0", "1"] and rows[19][-2:] == ["361.0", "38.0"]


def test_a_wide_file_does_not_hold_every_row(monkeypatch):
    monkeypatch.setattr(points, "CHUNK_BYTES", 1_000_000)
    header = "x," + ",".join(f"c{i}" for i in range(20_000))
    cells = ",".join("7" for _ in range(20_000))
    stdin = header + "\n" + "".join(f"{r},{cells}\n" for r in range(40))
    stream_through("x,c\n1,2\n")  # the readers' modules imported before memory is traced
    tracemalloc.start()
    try:
        summary, out, _ = stream_through(stdin)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.rows == 40
    # the input and the output themselves, and about one row's cells (20,000 strings)
    assert peak < 2 * len(stdin) + 2 * len(out) + 12_000_000


def test_long_numeric_lines_are_not_gathered_by_the_thousand(monkeypatch):
    monkeypatch.setattr(points, "CHUNK_BYTES", 10_000)
    stdin = "x\n" + ("1." + "0" * 3000 + "\n") * 12
    graph = parse("x*x")
    plan = points.plan(graph, {}, ["x"], ["x"], "float64", 1.0)
    reader = points.PointReader(io.StringIO(stdin), "stdin", ["x"], {})
    sizes = [
        len(c.lines) for c in points.chunks(reader, plan.rows_per_chunk, "stop", points.Summary())
    ]
    assert sum(sizes) == 12 and max(sizes) <= 4


# ---- JSON values pass through as written ------------------------------------------------------

BIG = "1" * 400


@pytest.mark.parametrize(
    "written", ["NaN", "[1, NaN]", BIG, "1.50", "-Infinity", '{"k":  1e5}', '"\\u00e9"', "null"]
)
def test_a_json_extra_is_copied_as_written(written):
    stdin = f'{{"x": 2, "a": {written}}}\n'
    r = run("grad", "x*x", "--points", "-", "--format", "jsonl", stdin=stdin)
    assert r.code == 0, r.stderr
    assert f'"extra": {{"a": {written}}}' in r.stdout
    assert '"value": 4.0' in r.stdout
    r = run("grad", "x*x", "--points", "-", "--format", "csv", stdin=stdin)
    assert r.code == 0, r.stderr
    cell = next(csv.reader(io.StringIO(r.stdout.splitlines()[1])))[1]
    assert cell == (json.loads(written) if written.startswith('"') else written)


def test_json_extras_of_many_kinds_in_one_row():
    stdin = '{"x": 1, "id": "a,\\"b\\"", "n": 1e999, "deep": [[NaN]], "t": true}\n'
    r = run("grad", "x", "--points", "-", stdin=stdin)
    assert r.code == 0, r.stderr
    head, rows = read_csv(r.stdout)
    assert head == ["x", "id", "n", "deep", "t", "value", "d_x"]
    assert rows[0] == ["1.0", 'a,"b"', "1e999", "[[NaN]]", "true", "1.0", "1.0"]


def test_a_variable_keeps_the_number_rules():
    r = run("grad", "x", "--points", "-", stdin='{"x": NaN}\n')
    assert r.code == 2 and "--allow-nonfinite" in r.stderr
    r = run("grad", "x", "--points", "-", stdin=f'{{"x": {BIG}}}\n')
    assert r.code == 2 and "not a finite number" in r.stderr
    r = run("grad", "x", "--points", "-", "--format", "jsonl", stdin='{"x": 1.50}\n')
    assert r.code == 0 and jsonl(r.stdout)[0]["point"] == {"x": 1.5}


def test_a_nonfinite_point_is_null_in_json_lines():
    r = run("grad", "x", "--points", "-", "--allow-nonfinite", "--format", "jsonl",
            stdin="x\nnan\n2\n")  # fmt: skip
    assert r.code == 0, r.stderr
    rows = jsonl(r.stdout)
    assert rows[0]["point"] == {"x": None} and rows[1]["point"] == {"x": 2.0}


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('{"x": 01}', "Expecting ',' delimiter"),
        ('{"x": 1,}', "Expecting property name"),
        ('{"x" 1}', "Expecting ':' delimiter"),
        ('{"x": 1}}', "Extra data"),
        ('{"x": [1,}', "Expecting value"),
        ('{"x": 1, "\\u0078": 2}', "'x' is given twice"),
        ("[1, 2]", "expected a JSON object"),
        ('{"x": "a\tb"}', "Invalid control character"),
    ],
)
def test_bad_json_lines_are_named_as_before(line, fragment):
    r = run("grad", "x", "--points", "-", stdin='{"x": 1}\n' + line + "\n")
    assert r.code == 2 and "line 2" in r.stderr and fragment in r.stderr, r.stderr
    assert r.stdout.splitlines() == ["x,value,d_x", "1.0,1.0,1.0"]


def test_a_line_of_escaped_quotes_is_read_in_linear_time():
    line = '{"x": 1, "a": ["' + '\\"' * 300_000 + '"]}'
    start = time.monotonic()
    r = run("grad", "x", "--points", "-", "--format", "jsonl", stdin=line + "\n")
    assert time.monotonic() - start < 10
    assert r.code == 0 and jsonl(r.stdout)[0]["extra"]["a"] == ['"' * 300_000]


# ---- keys the CSV header cannot hold ----------------------------------------------------------


def test_a_late_json_key_is_named_not_silently_dropped(monkeypatch):
    monkeypatch.setattr(points, "MAX_CHUNK_ROWS", 4)
    rows = [f'{{"x": {i}}}' if i != 6 else '{"x": 6, "tag": "late"}' for i in range(10)]
    stdin = "\n".join(rows) + "\n"
    r = run("grad", "x*x", "--points", "-", stdin=stdin)
    assert r.code == 0, r.stderr
    head, body = read_csv(r.stdout)
    assert head == ["x", "value", "d_x"] and len(body) == 10
    assert "line 7: key 'tag' first appears after the CSV header" in r.stderr
    assert "1 value left out" in r.stderr and "--format jsonl keeps every key" in r.stderr
    r = run("grad", "x*x", "--points", "-", "--format", "jsonl", stdin=stdin)
    assert r.code == 0 and "tag" not in r.stderr
    assert jsonl(r.stdout)[6]["extra"] == {"tag": "late"}


def test_a_new_key_on_every_row_is_counted_not_collected(monkeypatch):
    monkeypatch.setattr(points, "MAX_CHUNK_ROWS", 2)
    stdin = "".join(f'{{"x": {i}, "k{i}": 1}}\n' for i in range(200))
    _, out, reader = stream_through(stdin)
    head, body = read_csv(out)
    assert head == ["x", "k0", "k1", "value", "d_x"] and len(body) == 200
    assert len(reader.names) == 3  # the columns stop growing once the header is written
    warning = reader.warnings[-1]
    assert "'k2' (line 3)" in warning and "…" in warning and "198 values left out" in warning


def test_a_variable_missing_from_the_first_json_row_still_gets_its_column():
    stdin = '{"x": 1}\n{"x": 3, "y": 4}\n'
    r = run("grad", "x*y", "--points", "-", "--on-error", "skip", stdin=stdin)
    assert r.code == 0, r.stderr
    head, body = read_csv(r.stdout)
    assert head == ["x", "y", "value", "d_x", "d_y"] and body == [
        ["3.0", "4.0", "12.0", "4.0", "3.0"]
    ]


# ---- check --points: a column named like a constant -------------------------------------------


def test_check_points_warns_about_a_column_that_shadows_a_constant():
    args = ["--points", "-", "--no-torch", "--no-symbolic", "--format", "json"]
    r = run("check", "x*e", *args, stdin="e,x\n1,2\n3,4\n")
    assert r.code == 0, r.stderr
    assert "column 'e' is not a variable ('e' is the constant" in r.stderr
    assert any("'e' is the constant" in w["message"] for w in r.json()["warnings"])
    r = run("check", "x*2", *args, stdin="e,x\n1,2\n3,4\n")
    assert r.code == 0 and "constant" not in r.stderr  # e not used: nothing to say


# ---- check: a budget up front -----------------------------------------------------------------


def test_a_check_that_would_take_minutes_is_refused_at_once():
    start = time.monotonic()
    r = run("check", "x*y", "--samples", "100000")
    assert time.monotonic() - start < 10
    assert r.code == 2
    first = r.stderr.splitlines()[0]
    assert first.startswith("error: checking 100,000 points would take about ")
    assert "a check may take about 60 s" in first
    assert "--samples " in r.stderr and "--no-torch" in r.stderr


def test_the_refusal_gives_a_count_that_is_accepted(monkeypatch):
    monkeypatch.setattr(sweep, "POINT_SECONDS", 1.0)  # each point "takes" a second
    r = run("check", "x*y", "--samples", "100", "--no-torch", "--no-symbolic")
    assert r.code == 2 and "use --samples 59 or fewer" in r.stderr
    r = run("check", "x*y", "--samples", "59", "--no-torch", "--no-symbolic", "--format", "json")
    assert r.code == 0 and r.json()["points"] == 59


def test_a_points_file_is_under_the_same_budget(monkeypatch):
    monkeypatch.setattr(sweep, "POINT_SECONDS", 1.0)
    stdin = "x\n" + "".join(f"{i}\n" for i in range(100))
    r = run("check", "x*x", "--points", "-", "--no-torch", "--no-symbolic", stdin=stdin)
    assert r.code == 2 and "split stdin" in r.stderr and "checking 100 points" in r.stderr


def test_one_point_is_always_checked(monkeypatch):
    monkeypatch.setattr(sweep, "POINT_SECONDS", 1e6)
    r = run("check", "x*y", "--samples", "1", "--no-torch", "--no-symbolic", "--format", "json")
    assert r.code == 0 and r.json()["points"] == 1


def test_the_estimate_grows_with_the_graph():
    small = parse("x*y")
    big = parse("+".join(f"sin(x*{i}+y)" for i in range(1, 100)))
    cores_small = [() for _ in small.nodes]
    cores_big = [() for _ in big.nodes]
    s, b = (
        sweep.point_seconds(g, c, ["x", "y"], True)
        for g, c in ((small, cores_small), (big, cores_big))
    )
    assert 1e-3 < s < 1e-2 and b > 20 * s
    assert sweep.point_seconds(small, cores_small, ["x", "y"], False) < s
