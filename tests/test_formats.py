"""One output story for every command: `--format` with the same names, `-o FILE` choosing
the format from its extension (unless --format says otherwise), written whole or not at
all, the old output flags kept as aliases, and `--digits` for the human formats only."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backprop_cli.cli import check, diff, explain, grad, grad_run, higher, ops, output, train
from backprop_cli.cli.app import app
from backprop_cli.core.errors import InputError

HAVE_DOT = shutil.which("dot") is not None
HAVE_LATEX = shutil.which("pdflatex") is not None

# Each command with arguments that work, and the formats it has.
TABLES = ("parquet", "arrow")  # files of the points of grad --points only
POINTS = ("grad", "x*y", "--points", "-")
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "grad": (
        ("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--no-torch"),
        tuple(f for f in grad_run.FORMATS if f not in TABLES),
    ),
    "explain": (("explain", "(x*w - y)**2", "x=2", "w=1", "y=4"), explain.FORMATS),
    "check": (("check", "x**3 - x", "--samples", "5", "--no-torch"), check.FORMATS),
    "jacobian": (("jacobian", "x * y", "x=[1,2]", "y=2", "--no-torch"), higher.FORMATS),
    "hessian": (("hessian", "x1**2*x2", "x1=1", "x2=2", "--no-torch"), higher.FORMATS),
    "diff": (("diff", "x**2*sin(x)"), diff.FORMATS),
    "train": (("train", "linear", "--epochs", "3"), train.FORMATS),
    "train --list": (("train", "--list"), train.LIST_FORMATS),
    "ops": (("ops",), ops.FORMATS),
}


class Out:
    def __init__(self, code: int, data: bytes, stderr: str) -> None:
        self.code, self.data, self.stderr = code, data, stderr

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


def invoke(*args: str, stdin: str | None = None) -> Out:
    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Out(result.exit_code, result.stdout_bytes, result.stderr)


def _rows(text: str, delimiter: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    assert len(rows) >= 2, text
    assert all(len(row) == len(rows[0]) for row in rows), text
    return rows


def looks_like(fmt: str, data: bytes) -> None:
    """The output is what the format says it is."""
    if fmt == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        return
    if fmt == "pdf":
        assert data.startswith(b"%PDF")
        return
    if fmt == "parquet":
        assert data.startswith(b"PAR1") and data.endswith(b"PAR1")
        return
    if fmt == "arrow":
        assert data.startswith(b"ARROW1")
        return
    text = data.decode("utf-8")
    assert text.strip(), fmt
    if fmt == "json":
        document = json.loads(text)
        assert next(iter(document)) == "schema"
    elif fmt == "jsonl":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines and all(next(iter(line)) == "schema" for line in lines)
    elif fmt == "csv":
        assert len(_rows(text, ",")[0]) >= 2
    elif fmt == "tsv":
        assert "\t" in text.splitlines()[0] and len(_rows(text, "\t")[0]) >= 2
    elif fmt == "markdown":
        assert "|" in text or "**" in text
    elif fmt == "latex":
        assert "\\begin{document}" in text and text.rstrip().endswith("\\end{document}")
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    elif fmt == "dot":
        assert text.startswith("digraph")
    elif fmt == "mermaid":
        assert text.startswith("flowchart")
    elif fmt == "svg":
        assert "<svg" in text and text.rstrip().endswith("</svg>")
    elif fmt == "table":
        with pytest.raises(ValueError):
            json.loads(text)
    else:  # pragma: no cover - every format is listed
        raise AssertionError(fmt)


def needs_dot(command: str, fmt: str) -> Any:
    return pytest.mark.skipif(
        command == "grad" and fmt in output.PICTURES and not HAVE_DOT,
        reason="Graphviz's dot is not installed",
    )


PAIRS = [
    pytest.param(command, fmt, marks=needs_dot(command, fmt), id=f"{command}-{fmt}")
    for command, (_, formats) in COMMANDS.items()
    for fmt in formats
]


# ---- the names ----------------------------------------------------------------------------------


def test_every_command_uses_the_shared_names():
    for command, (_, formats) in COMMANDS.items():
        assert set(formats) <= set(output.FORMATS), command
    assert set(grad_run.FORMATS) <= set(output.FORMATS)
    enums = [
        (grad.GradFormat, grad_run.FORMATS), (explain.ExplainFormat, explain.FORMATS),
        (check.CheckFormat, check.FORMATS), (higher.HigherFormat, higher.FORMATS),
        (diff.DiffFormat, diff.FORMATS), (ops.OpsFormat, ops.FORMATS),
    ]  # fmt: skip
    for enum, formats in enums:
        assert [f.value for f in enum] == list(formats), enum
    assert set(train.FORMATS) | set(train.LIST_FORMATS) == {f.value for f in train.TrainFormat}


def test_the_old_names_stay():
    assert {"table", "json", "csv", "markdown", "tsv", "jsonl"} <= set(grad_run.FORMATS)
    assert {"table", "markdown", "latex", "json"} <= set(explain.FORMATS)
    assert {"table", "json"} <= set(check.FORMATS)
    assert {"table", "json", "csv", "markdown"} <= set(higher.FORMATS)
    assert {"table", "json", "markdown"} <= set(diff.FORMATS) & set(ops.FORMATS)
    assert {"table", "jsonl"} <= set(train.FORMATS) & set(train.LIST_FORMATS)


def test_every_extension_names_a_format():
    assert set(output.EXTENSIONS.values()) == set(output.FORMATS)
    assert output.from_extension("REPORT.MD") == "markdown"
    assert output.from_extension("noextension") is None


# ---- every command in every format --------------------------------------------------------------


@pytest.mark.parametrize(("command", "fmt"), PAIRS)
def test_every_command_in_every_format(command, fmt):
    args, _ = COMMANDS[command]
    r = invoke(*args, "--format", fmt)
    assert r.code == 0, r.stderr
    looks_like(fmt, r.data)


def test_grad_points_formats():
    for fmt in grad_run.ROW_FORMATS:
        r = invoke("grad", "x*y", "--points", "-", "--format", fmt, stdin="x,y\n1,2\n3,4\n")
        assert r.code == 0, r.stderr
        looks_like(fmt, r.data)
    r = invoke("grad", "x*y", "--points", "-", "--format", "markdown", stdin="x,y\n1,2\n")
    assert r.code == 2 and "csv, tsv or jsonl" in r.stderr


def test_explain_csv_has_a_row_per_link_with_operand_positions():
    r = invoke("explain", "x*x + x", "x=3", "--format", "csv")
    assert r.code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["path"], row["link"], row["from"], row["to"]) for row in rows] == [
        ("1", "1", "f", "t1"), ("1", "2", "t1", "x"), ("2", "1", "f", "t1"),
        ("2", "2", "t1", "x"), ("3", "1", "f", "x"),
    ]  # fmt: skip
    assert {row["partial"] for row in rows} == {"7"}
    assert [row["product"] for row in rows] == ["3", "3", "3", "3", "1"]
    assert rows[1]["operand"] != rows[3]["operand"]  # x*x: the two links to x differ


def test_explain_csv_of_arrays_is_refused():
    r = invoke("explain", "sum(x*x)", "x=[1,2]", "--format", "csv")
    assert r.code == 2 and r.data == b""
    assert r.stderr.startswith("error: explain's csv") and "hint:" in r.stderr


def test_check_and_train_rows():
    r = invoke("check", "x*x", "--samples", "4", "--no-torch", "--format", "tsv")
    rows = _rows(r.text, "\t")
    assert rows[0][:4] == ["check", "compared", "agree", "disagree"]
    assert [row[0] for row in rows[1:]] == ["torch", "finite_difference", "symbolic"]
    r = invoke("train", "affine", "--epochs", "4", "--format", "csv")
    rows = _rows(r.text, ",")
    assert rows[0] == ["epoch", "loss", "b", "w"] and len(rows) == 5  # the model's order
    r = invoke("train", "mlp:2-3-1", "--data", "examples/xor.csv", "--epochs", "2", "--format",
               "csv")  # fmt: skip
    assert _rows(r.text, ",")[0][:3] == ["epoch", "loss", "w11"]


def test_train_json_is_one_document():
    r = invoke("train", "linear", "--epochs", "5", "--format", "json")
    document = json.loads(r.text)
    assert document["settings"]["epochs"] == 5 and document["settings"]["optimizer"] == "sgd"
    assert [e["epoch"] for e in document["history"]] == [0, 1, 2, 3, 4]
    assert set(document["params"]) == {"w"}
    assert document["predictions"][0]["x"] == 4.0


@pytest.mark.skipif(not HAVE_LATEX, reason="pdflatex is not installed")
@pytest.mark.parametrize("args", [("diff", "x**2*sin(x)", "--order", "2"),
                                  ("diff", "(x*w - y)**2", "--wrt", "w")])  # fmt: skip
def test_diff_latex_compiles(args, tmp_path):
    r = invoke(*args, "-o", str(tmp_path / "d.tex"))
    assert r.code == 0, r.stderr
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
        cwd=tmp_path, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "d.pdf").stat().st_size > 0


# ---- -o and the extensions ----------------------------------------------------------------------


def _command_for(fmt: str) -> str:
    return next(c for c in ("grad", "explain") if fmt in COMMANDS[c][1])


EXTENSIONS = [
    pytest.param(ext, fmt, marks=needs_dot("grad", fmt), id=ext)
    for ext, fmt in output.EXTENSIONS.items()
]


@pytest.mark.parametrize(("extension", "fmt"), EXTENSIONS)
def test_o_picks_the_format_from_the_extension(extension, fmt, tmp_path):
    target = tmp_path / f"result{extension}"
    if fmt in TABLES:
        r = invoke(*POINTS, "-o", str(target), stdin="x,y\n1,2\n")
        assert r.code == 0, r.stderr
        looks_like(fmt, target.read_bytes())
        return
    args, _ = COMMANDS[_command_for(fmt)]
    r = invoke(*args, "-o", str(target))
    assert r.code == 0, r.stderr
    assert r.data == b""  # the result went to the file
    looks_like(fmt, target.read_bytes())


def test_o_for_every_command(tmp_path):
    for command, (args, formats) in COMMANDS.items():
        target = tmp_path / f"{command.replace(' ', '')}.json"
        fmt = "json" if "json" in formats else "csv"
        target = target.with_suffix("." + fmt)
        r = invoke(*args, "--output", str(target))
        assert r.code == 0, (command, r.stderr)
        assert r.data == b"", command
        looks_like(fmt, target.read_bytes())


def test_format_wins_over_the_extension(tmp_path):
    args, _ = COMMANDS["grad"]
    target = tmp_path / "out.txt"
    assert invoke(*args, "--format", "json", "-o", str(target)).code == 0
    looks_like("json", target.read_bytes())
    target = tmp_path / "out.json"
    assert invoke(*args, "--format", "csv", "-o", str(target)).code == 0
    looks_like("csv", target.read_bytes())


def test_a_table_file_is_plain_text(tmp_path):
    target = tmp_path / "grad.txt"
    args, _ = COMMANDS["grad"]
    assert invoke(*args, "-o", str(target)).code == 0
    text = target.read_text(encoding="utf-8")
    assert "Computational graph" in text and "\x1b[" not in text


def test_o_dash_writes_stdout(tmp_path):
    args, _ = COMMANDS["grad"]
    r = invoke(*args, "-o", "-", "--format", "json")
    assert r.code == 0 and json.loads(r.text)["schema"] == "backprop-cli/grad/1"
    r = invoke(*args, "-o", "-")
    assert r.code == 0 and "Computational graph" in r.text
    assert not list(tmp_path.iterdir())


def test_an_unknown_extension_is_one_line_and_writes_nothing(tmp_path):
    target = tmp_path / "out.xyz"
    args, _ = COMMANDS["grad"]
    r = invoke(*args, "-o", str(target))
    assert r.code == 2 and r.data == b""
    lines = r.stderr.splitlines()
    assert lines[0] == f"error: -o {target}: cannot tell the format from the extension"
    assert lines[1].startswith("hint: give --format (") and len(lines) == 2
    assert not target.exists()


@pytest.mark.parametrize(
    ("command", "fmt"),
    [("explain", "svg"), ("check", "latex"), ("ops", "png"), ("train", "latex"),
     ("diff", "dot"), ("jacobian", "html")],
)  # fmt: skip
def test_an_unsupported_format_is_one_line_and_writes_nothing(command, fmt, tmp_path):
    args, _ = COMMANDS[command]
    r = invoke(*args, "--format", fmt)
    assert r.code == 2 and r.data == b""
    lines = r.stderr.splitlines()
    assert lines[0].startswith("error: ") and all(line.startswith("hint: ") for line in lines[1:])
    assert len(lines) <= 2
    target = tmp_path / f"out{next(e for e, f in output.EXTENSIONS.items() if f == fmt)}"
    r = invoke(*args, "-o", str(target))
    assert r.code == 2 and r.data == b""
    name = "train" if command == "train" else command
    assert r.stderr.splitlines()[0] == f"error: {name} has no {fmt} output"
    assert r.stderr.splitlines()[1].startswith(f"hint: {name}'s formats: table")
    assert not target.exists()


def test_points_have_no_picture(tmp_path):
    r = invoke("grad", "x*y", "--points", "-", "-o", str(tmp_path / "g.svg"), stdin="x,y\n1,2\n")
    assert r.code == 2 and "csv, tsv or jsonl" in r.stderr
    assert not list(tmp_path.iterdir())


def test_binary_formats_are_not_written_to_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdout", Terminal())
    with pytest.raises(InputError, match="png is binary and stdout is a terminal"):
        output.resolve("png", None, grad_run.FORMATS, "table", "grad")
    assert output.resolve("svg", None, grad_run.FORMATS, "table", "grad") == "svg"


# ---- nothing is written on an error -------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (("grad", "x*", "x=1"), None),
        (("grad", "x*y", "x=1"), None),
        (("explain", "x*y", "x=1", "y=oops"), None),
        (("check", "log(x)", "--range", "2,1"), None),
        (("train", "linear", "--x", "1,2", "--y", "1"), None),
        (("grad", "x*y", "--points", "-"), "x,y\n" + "1,2\n" * 5000 + "1,oops\n"),
    ],
)
def test_nothing_is_written_on_an_error(args, stdin, tmp_path):
    old = tmp_path / "result.json"
    old.write_text("the old file\n")
    target = old.with_suffix(".csv") if "--points" in args else old
    target.write_text("the old file\n")
    r = invoke(*args, "-o", str(target), stdin=stdin)
    assert r.code == 2 and r.stderr.startswith("error: ")
    assert target.read_text() == "the old file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({old.name, target.name})


def test_a_disagreement_still_writes_the_result(tmp_path):
    target = tmp_path / "t.json"
    r = invoke("train", "linear", "--epochs", "3", "--lr", "1e6", "-o", str(target))
    assert r.code == 1 and "diverged" in r.stderr
    assert json.loads(target.read_text())["diverged_at"] == 1


def test_o_never_overwrites_an_input(tmp_path):
    program = tmp_path / "p.bp"
    program.write_text("f = x * y\n")
    values = tmp_path / "v.json"
    values.write_text('{"x": 1, "y": 2}')
    data = tmp_path / "d.csv"
    data.write_text("x,y\n1,2\n2,4\n")
    cases = [
        ("grad", "--file", str(program), "x=1", "y=2", "--format", "csv", "-o", str(program)),
        ("grad", str(program), "--values", str(values), "--format", "json", "-o", str(values)),
        ("explain", str(program), "x=1", "y=2", "--format", "csv", "-o", str(program)),
        ("check", str(program), "--format", "csv", "-o", str(program)),
        ("diff", "--file", str(program), "--format", "csv", "-o", str(program)),
        ("jacobian", str(program), "x=1", "y=2", "--format", "csv", "-o", str(program)),
        ("train", "linear", "--data", str(data), "--format", "csv", "-o", str(data)),
        ("grad", "x*y", "--points", str(data), "-o", str(data)),
    ]
    for args in cases:
        before = {p: p.read_text() for p in (program, values, data)}
        r = invoke(*args)
        assert r.code == 2, args
        assert "would destroy the input" in r.stderr, (args, r.stderr)
        assert {p: p.read_text() for p in (program, values, data)} == before
    r = invoke(*COMMANDS["grad"][0], "--graph", str(tmp_path / "g.svg"),
               "-o", str(tmp_path / "g.svg"))  # fmt: skip
    assert r.code == 2 and "both write" in r.stderr


# ---- the old flags -------------------------------------------------------------------------------


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot is not installed")
def test_grad_graph_writes_the_table_and_the_picture(tmp_path):
    picture = tmp_path / "g.svg"
    r = invoke(*COMMANDS["grad"][0], "--graph", str(picture))
    assert r.code == 0, r.stderr
    assert "Computational graph" in r.text
    looks_like("svg", picture.read_bytes())
    # with -o as well: the JSON to its file, the picture to --graph's
    result = tmp_path / "g.json"
    r = invoke(*COMMANDS["grad"][0], "--graph", str(picture), "-o", str(result))
    assert r.code == 0 and r.data == b""
    looks_like("json", result.read_bytes())


def test_train_plot_and_save_still_work(tmp_path):
    plot, save, result = tmp_path / "p.png", tmp_path / "params.json", tmp_path / "h.csv"
    r = invoke("train", "linear", "--epochs", "3", "--plot", str(plot), "--save", str(save))
    assert r.code == 0, r.stderr
    assert "Parameters" in r.text
    looks_like("png", plot.read_bytes())
    assert set(json.loads(save.read_text())) == {"w"}  # a values file: no schema key
    r = invoke("train", "linear", "--epochs", "3", "--save", str(save), "-o", str(result))
    assert r.code == 0 and r.data == b""
    looks_like("csv", result.read_bytes())
    r = invoke("train", "linear", "--epochs", "3", "-o", str(tmp_path / "loss.svg"))
    assert r.code == 0
    looks_like("svg", (tmp_path / "loss.svg").read_bytes())


# ---- --digits ------------------------------------------------------------------------------------


def test_digits_changes_the_table_but_not_the_machine_formats():
    args = ("grad", "x/3", "x=1", "--no-torch", "--no-symbolic")
    short, long = invoke(*args, "--digits", "2"), invoke(*args, "--digits", "8")
    assert short.code == long.code == 0
    assert "0.33 " in short.text and "0.33333333" in long.text
    for fmt in ("json", "jsonl", "csv", "tsv"):
        plain = invoke(*args, "--format", fmt).data
        assert invoke(*args, "--format", fmt, "--digits", "2").data == plain, fmt
        assert b"0.3333333333333333" in plain, fmt
    train_args = ("train", "linear", "--epochs", "2")
    assert invoke(*train_args, "--digits", "2").text != invoke(*train_args, "--digits", "9").text
    assert (
        invoke(*train_args, "--format", "json", "--digits", "2").data
        == invoke(*train_args, "--format", "json").data
    )


@pytest.mark.parametrize("command", ["grad", "explain", "check", "jacobian", "hessian", "diff",
                                     "train", "graph"])  # fmt: skip
def test_every_command_that_prints_numbers_has_digits_and_o(command):
    r = invoke(command, "--help")
    assert "--digits" in r.text and "--output" in r.text and "-o" in r.text
    assert "--format" in r.text


def test_digits_is_checked():
    r = invoke(*COMMANDS["grad"][0], "--digits", "18")
    assert r.code == 2 and r.stderr.startswith("error: ")


# ---- grad's quick path ---------------------------------------------------------------------------


def _choices(param: Any) -> list[str]:
    """An option's choices, as the typer in use keeps them."""
    import enum

    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return [str(m.value) for m in annotation]
    kind = param.type if hasattr(param, "type") else None
    return [str(getattr(c, "value", c)) for c in getattr(kind, "choices", None) or []]


def test_the_quick_path_knows_every_grad_option():
    import typer.main

    from backprop_cli.cli import entry

    command = typer.main.get_command(app).commands["grad"]  # type: ignore[attr-defined]
    options: set[str] = set()
    for param in command.params:
        if getattr(param, "param_type_name", "") == "option":
            options |= set(param.opts) | set(param.secondary_opts)
            if _choices(param):
                field = entry._FLAGS[param.opts[0]][0]
                assert list(entry._CHOICES[field]) == _choices(param), field
    assert options - {"-h", "--help"} == set(entry._FLAGS)


def test_the_quick_path_reads_o_and_digits():
    from backprop_cli.cli.entry import quick_grad_args

    fields = quick_grad_args(["x*y", "x=1", "y=2", "-o", "g.json", "--digits", "3"])
    assert fields is not None and fields["output"] == "g.json" and fields["digits"] == 3
    assert quick_grad_args(["x*y", "x=1", "-o=g.json"]) is None  # typer reads -o=g as "=g"
    assert quick_grad_args(["x*y", "x=1", "--digits", "99"]) is None
    assert quick_grad_args(["x*y", "x=1", "--format", "svg"])["fmt"] == "svg"  # type: ignore[index]


def test_the_quick_path_writes_o(tmp_path):
    code = (
        "import sys\n"
        "from backprop_cli.cli.entry import main\n"
        "sys.argv = ['backprop', 'grad', 'x*y', 'x=1', 'y=2', '--no-torch', '-o', 'g.csv']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'typer' not in sys.modules  # the quick path starts without typer\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert (tmp_path / "g.csv").read_text().splitlines()[0] == "x,y,value,d_x,d_y"


# ---- the helpers ---------------------------------------------------------------------------------


def test_rows_text_and_retab():
    text = output.rows_text(["a", "b"], [["1", None], ["x,y", 'say "hi"']])
    assert text == 'a,b\n1,\n"x,y","say ""hi"""\n'
    assert output.retab(text) == 'a\tb\n1\t\nx,y\t"say ""hi"""\n'
    assert output.compact('{\n  "a": [1, 2]\n}') == '{"a": [1, 2]}\n'


def test_train_markdown_holds_the_parameters_predictions_and_history():
    r = invoke("train", "linear", "--epochs", "3", "--format", "markdown")
    assert r.code == 0
    text = r.data.decode()
    assert "| `w` | 1.596 |" in text and "| 4 | 6.384 |" in text
    assert "| 0 | 7.316 |" in text and "| 2 | 2.186 |" in text
    args = ("train", "linear", "--epochs", "250", "--log-every", "1", "--format", "markdown")
    long = invoke(*args).data.decode()
    assert "| … | 50 epochs more |" in long and "| 249 |" in long


def test_ops_jsonl_is_one_operation_a_line():
    lines = invoke("ops", "--format", "jsonl").data.decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) > 20 and all(next(iter(row)) == "schema" for row in rows)
    assert {row["op"] for row in rows} >= {"add", "mul", "sigmoid"}


def test_graph_takes_the_shared_name_table_for_its_tree():
    tree = invoke("graph", "x*y", "x=1", "y=2").data
    assert invoke("graph", "x*y", "x=1", "y=2", "--format", "table").data == tree


def _png_size(path) -> tuple[int, int]:
    import struct

    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_grad_dpi_sets_the_pictures_resolution_and_warns_without_a_png(tmp_path):
    args = ("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--no-torch", "--no-symbolic")
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    assert invoke(*args, "-o", str(small), "--dpi", "48").code == 0
    assert invoke(*args, "--graph", str(large), "--dpi", "192").code == 0
    (w1, h1), (w2, h2) = _png_size(small), _png_size(large)
    assert 3.5 < w2 / w1 < 4.5 and 3.5 < h2 / h1 < 4.5
    r = invoke(*args, "--dpi", "48")
    assert r.code == 0 and "warning: --dpi changes PNG pictures only" in r.stderr
    r = invoke(*args, "-o", str(tmp_path / "g.svg"), "--dpi", "48")
    assert "--dpi changes PNG pictures only" in r.stderr


GRAD_LATEX_CASES = [
    ("(x+y)*z", "x=-2", "y=5", "z=-4"),
    ("a_b*c + x^2", "a_b=1", "c=2", "x=3"),
    ("sum(sigmoid(W @ x + b))", "W=[[1,2],[3,4]]", "x=[1,-1]", "b=0"),
    ("mlp:2-8-8-1", "x1=1", "x2=0.5", "y=1"),
]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no LaTeX installed")
@pytest.mark.parametrize("args", GRAD_LATEX_CASES, ids=[a[0] for a in GRAD_LATEX_CASES])
def test_grad_latex_is_a_document_that_compiles_without_overfull_lines(args, tmp_path):
    r = invoke("grad", *args, "--no-torch", "--format", "latex")
    assert r.code == 0, r.stderr
    tex = r.data.decode()
    assert tex.startswith("\\documentclass{article}") and tex.rstrip().endswith("\\end{document}")
    assert "\\frac{\\partial" in tex and "\\begin{longtable}" in tex
    (tmp_path / "g.tex").write_text(tex)
    for _ in range(2):  # longtable settles its column widths on the second run
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "g.tex"],
            cwd=tmp_path, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:]
    assert "Overfull" not in (tmp_path / "g.log").read_text(errors="replace")


def test_grad_latex_shows_the_partials_and_their_values():
    tex = invoke("grad", "(x+y)*z", "x=-2", "y=5", "z=-4", "--no-torch", "-o", "-",
                 "--format", "latex").data.decode()  # fmt: skip
    assert "\\frac{\\partial f}{\\partial x} & = z = -4" in tex
    assert "\\frac{\\partial f}{\\partial z} & = x + y = 3" in tex
    assert "The value is $-12$ at $x = -2$, $y = 5$, $z = -4$." in tex


def test_o_ending_in_a_slash_names_a_folder_and_writes_nothing(tmp_path):
    target = tmp_path / "out.json"
    r = invoke("grad", "x", "x=1", "--no-torch", "-o", f"{target}/")
    assert r.code == 2 and r.stderr.splitlines() == [
        f"error: -o {target}/: names a folder, not a file"
    ]
    assert not target.exists()


def test_a_file_written_by_o_has_no_colour_even_when_forced(tmp_path):
    target = tmp_path / "t.txt"
    env = {**os.environ, "FORCE_COLOR": "1"}
    for args in (("grad", "x*y", "x=1", "y=2", "--no-torch"), ("ops",), ("train", "--list")):
        done = subprocess.run(
            [sys.executable, "-m", "backprop_cli", *args, "-o", str(target)],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "\x1b" not in target.read_text() and target.read_text().strip()
