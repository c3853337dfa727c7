"""Labels a user typed (a comment inside an expression can hold anything) are escaped in
every output format: Markdown rendered by a real CommonMark renderer holds no HTML of
theirs, Mermaid labels stay one literal label, DOT's HTML labels are escaped."""

from __future__ import annotations

import re

import pytest
from markdown_it import MarkdownIt

from tests.conftest import run

HOSTILE = [
    "sum(x*[1, # ` <img src=x onerror=alert(1)> `\n 2])",
    "sum(x*[1, # `` <script>alert(1)</script> ``` \n 2])",
    "x * 2 # </code></td><img src=x>",
    'x * 2 # " | ] ) --> n0 <b>bold</b>',
    "x * 2 # &lt;entity&gt; &amp; #quot;",
]
TAGS = re.compile(r"<(img|script|b)\b", re.IGNORECASE)  # the payloads' tags, not ours


def html_of(markdown: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(markdown)


@pytest.mark.parametrize("expression", HOSTILE)
@pytest.mark.parametrize(
    "command",
    [
        ["grad", "--format", "markdown", "--no-torch"],
        ["explain", "--format", "markdown"],
        ["explain", "--format", "markdown", "--mode", "forward"],
    ],
    ids=["grad", "explain", "explain-forward"],
)
def test_markdown_renders_no_html_of_the_users(expression, command):
    if "forward" in command and "[" in expression:
        pytest.skip("forward mode explains scalar expressions")
    r = run(command[0], expression, "x=1", *command[1:])
    assert r.code == 0, r.stderr
    rendered = html_of(r.stdout)
    assert not TAGS.search(rendered), TAGS.search(rendered)
    if "<img" in r.stdout:  # what was typed is still there, shown as text
        assert "&lt;img" in rendered


def test_markdown_tables_keep_their_columns():
    r = run("grad", "x * 2 # a | b | c", "x=1", "--format", "markdown", "--no-torch")
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 2 |")]
    assert rows and html_of(r.stdout).count("<table>") >= 1
    header = next(line for line in r.stdout.splitlines() if line.startswith("| id |"))
    assert rows[0].replace("\\|", "").count("|") == header.count("|")


@pytest.mark.parametrize("expression", HOSTILE)
def test_mermaid_labels_are_literal(expression):
    r = run("graph", expression, "x=1", "--format", "mermaid")
    assert r.code == 0, r.stderr
    for line in r.stdout.splitlines()[1:]:
        assert "<img" not in line and "<script" not in line and "</" not in line
        label = re.fullmatch(r'  n\d+(?:\(\[|\[)"(.*)"(?:\]\)|\])', line)
        if label:  # one label: no quote, bracket or pipe of the user's ends it
            assert '"' not in label[1]
    assert len(r.stdout.splitlines()) == len(set(r.stdout.splitlines()))


@pytest.mark.parametrize("expression", HOSTILE)
def test_dot_labels_are_escaped(expression):
    r = run("graph", expression, "x=1", "--format", "dot")
    assert r.code == 0, r.stderr
    assert "<img" not in r.stdout and "<script" not in r.stdout


# ---- the terminal: nothing a user gave reaches it as a control sequence ---------------

PWNED = "\x1b]0;PWNED\x07\x1b[2J\u200b"


@pytest.mark.parametrize(
    "args",
    [
        ["grad", "x", "x=1", "--wrt", PWNED],
        ["grad", "x", "x=1", "--device", PWNED],
        ["grad", "--file", f"/nonexistent/{PWNED}.bp", "x=1"],
        ["graph", "x", "x=1", "-o", f"/nonexistent/{PWNED}.svg"],
        ["train", "linear", "--init", f"w=1{PWNED}"],
        ["train", "linear", "--data", f"/nonexistent/{PWNED}.csv"],
        ["check", "x*y", "--range", PWNED],
    ],
    ids=["wrt", "device", "file", "graph-o", "init", "data", "range"],
)
def test_control_characters_are_shown_escaped_on_stderr(args):
    r = run(*args)
    assert r.code == 2
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr and "\u200b" not in r.stderr
    assert "\\x1b" in r.stderr or "U+001B" in r.stderr


def test_a_bad_points_row_is_named_without_its_control_characters(tmp_path):
    points = tmp_path / "p.csv"
    points.write_text(f"x,id\n1,a\n{PWNED},b\n")
    r = run("grad", "x", "--points", str(points))
    assert r.code == 2 and "line 3" in r.stderr
    assert "\x1b" not in r.stderr


def test_a_program_file_name_is_text_in_markdown(tmp_path):
    program = tmp_path / "<img src=x onerror=alert(3)>.bp"
    program.write_text("q = x + y\nq * 2\n")
    r = run("grad", "--file", str(program), "x=1", "y=2", "--format", "markdown", "--no-torch")
    assert r.code == 0, r.stderr
    rendered = html_of(r.stdout)
    assert not TAGS.search(rendered) and "&lt;img" in rendered


def test_a_pipe_outside_a_table_is_not_shown_escaped():
    r = run("explain", "sum(x*[1, # a | b\n 2])", "x=1", "--format", "markdown")
    heading = r.stdout.splitlines()[0]
    assert "a | b" in heading and "\\|" not in heading
