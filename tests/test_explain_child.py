"""`backprop explain` gets SymPy's local derivatives from the child started early: proved in
fresh processes that the command's own process never imports SymPy and prints what the
in-process path prints; and in this process that a child which runs out of its budget or
fails leaves the same explanation, worked out here."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backprop_cli import api
from backprop_cli.analyses import explain as analysis
from backprop_cli.checks import sandbox
from backprop_cli.checks.symbolic import local_formulas
from backprop_cli.cli.entry import _explain_formulas_in_child, quick_args
from tests.conftest import run

NEURON = ["explain", "(x*w-y)**2", "x=2", "w=1", "y=4", "--wrt", "w"]


def started(args: list[str], tmp_path: Path) -> tuple[int, str, str, bool, bool]:
    """`backprop ARGS` in a fresh process: exit code, stdout, stderr, whether its own
    process imported SymPy, and whether the child it started early got SymPy's work."""
    seen = tmp_path / "seen.txt"
    code = (
        "import sys\n"
        "from backprop_cli.checks import sandbox\n"
        "started = []\n"
        "hand_over = sandbox._hand_over\n"
        "def counted(*args):\n"
        "    started.append(hand_over(*args))\n"
        "    return started[-1]\n"
        "sandbox._hand_over = counted\n"
        "from backprop_cli.cli.entry import main\n"
        f"sys.argv = ['backprop', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    found = f\"{'sympy' in sys.modules} {started == [True]}\"\n"
        f"    open({str(seen)!r}, 'w').write(found)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )
    imported, early = seen.read_text().split()
    return done.returncode, done.stdout, done.stderr, imported == "True", early == "True"


def test_explain_leaves_sympy_to_its_child_and_prints_the_same(tmp_path):
    code, out, err, imported, early = started(NEURON, tmp_path)
    assert early and not imported
    assert "= 2*t2 · 1 · x" in out  # SymPy's formulas are there
    here = run(*NEURON)  # in this process, SymPy imported here
    assert (code, out, err) == (here.code, here.stdout, here.stderr)


@pytest.mark.parametrize(
    "extra",
    [
        ["--format", "json"],
        ["--format", "jsonl"],
        ["--format", "csv"],
        ["--format=tsv"],
        ["--mode", "forward"],
        ["--mode", "forward", "--format", "json"],
    ],
)
def test_every_format_from_the_child_is_the_same(extra, tmp_path):
    args = ["explain", "x*exp(y) + sigmoid(x)*x", "x=1.5", "y=-2", *extra]
    code, out, err, imported, early = started(args, tmp_path)
    assert early and not imported
    here = run(*args)
    assert (code, out, err) == (here.code, here.stdout, here.stderr)


def test_a_file_named_by_its_extension_is_the_same(tmp_path, monkeypatch):
    args = [*NEURON, "-o", "paths.csv"]
    code, out, _, imported, early = started(args, tmp_path)
    assert (code, out, early, imported) == (0, "", True, False)
    again = tmp_path / "again"
    again.mkdir()
    monkeypatch.chdir(again)
    assert run(*args).code == 0
    made = (tmp_path / "paths.csv").read_text(encoding="utf-8")
    assert "2*t2" in made
    assert (again / "paths.csv").read_text(encoding="utf-8") == made


@pytest.mark.parametrize(
    ("extra", "child"),
    [
        ([], True),
        (["--format", "json"], True),
        (["-o", "paths.tsv"], True),
        (["-o", "-"], True),
        (["--format", "markdown"], False),  # its LaTeX names come from SymPy here
        (["--format", "latex"], False),
        (["--format", "html"], False),  # the page works out its own formulas
        (["-o", "page.html"], False),
        (["-o", "notes.md"], False),
        (["--step"], False),  # numbers only
        (["--show-program"], False),  # the program only
    ],
)
def test_the_child_is_started_only_where_it_does_the_work(extra, child):
    fields = quick_args("explain", [*NEURON[1:], *extra])
    assert fields is not None
    assert _explain_formulas_in_child(fields) is child


def test_a_program_that_fails_to_parse_leaves_the_child_unused(tmp_path):
    code, out, err, imported, handed = started(["explain", "x*", "x=1"], tmp_path)
    assert code == 2 and out == "" and err.startswith("error: ")
    assert not imported and not handed


@pytest.fixture(autouse=True)
def _no_child_left_waiting() -> Iterator[None]:
    yield
    spare = sandbox._take_spare()
    if spare is not None:
        pid, job, results = spare
        os.close(job)
        os.close(results)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _explained() -> dict[str, Any]:
    return api.explain("(x*w-y)**2 + exp(x)*x", x=2, w=1, y=4).report


def _without_a_child() -> dict[str, Any]:
    assert not sandbox.spare_waiting()
    return _explained()


def test_the_library_works_formulas_out_in_its_own_process(monkeypatch):
    """No child waits: bp.explain imports SymPy here, once for every later call."""
    jobs: list[Any] = []
    original = analysis._Formulas

    class Watched(original):  # type: ignore[misc, valid-type]
        def __init__(self, ctx: Any, edges: list[tuple[int, int]]) -> None:
            super().__init__(ctx, edges)
            jobs.append(self.job)

    monkeypatch.setattr(analysis, "_Formulas", Watched)
    _without_a_child()
    assert jobs == [None]


def _watch_hand_over(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each job reached the child started early (not a fresh one)."""
    handed: list[bool] = []
    hand_over = sandbox._hand_over

    def watched(*args: Any) -> bool:
        handed.append(hand_over(*args))
        return handed[-1]

    monkeypatch.setattr(sandbox, "_hand_over", watched)
    return handed


def test_the_child_gives_what_this_process_gives(monkeypatch):
    expected = _without_a_child()
    handed = _watch_hand_over(monkeypatch)
    sandbox.prestart()
    assert sandbox.spare_waiting()
    assert _explained() == expected
    assert handed == [True]  # the graph, its cached facts left out, reached the child


def test_a_graph_reaches_the_child_without_its_cached_facts():
    graph = api.explain("x*x + x", x=3)._graph
    assert graph._facts  # the engine's plan, and more
    sent = pickle.loads(sandbox._job_bytes((len, (graph,), 1, 1.0)))
    assert sent[1][0] == graph and not sent[1][0]._facts


def _first_then_wait(
    graph: Any, names: list[str], values: list[float], edges: list[tuple[int, int]], *, emit: Any
) -> None:
    node, k = edges[0]
    emit({"edge": [node, k], **local_formulas(graph, names, values, [edges[0]])[(node, k)]})
    time.sleep(60)


def test_a_child_out_of_its_budget_leaves_the_rest_to_this_process(monkeypatch):
    expected = _without_a_child()
    monkeypatch.setattr(analysis, "FORMULA_SECONDS", 1.0)
    monkeypatch.setattr(analysis, "_formulas_child", _first_then_wait)
    handed = _watch_hand_over(monkeypatch)
    sandbox.prestart()
    began = time.monotonic()
    assert _explained() == expected
    assert time.monotonic() - began < 30  # the child was stopped at its budget
    assert handed == [True]


def _first_then_fail(
    graph: Any, names: list[str], values: list[float], edges: list[tuple[int, int]], *, emit: Any
) -> None:
    node, k = edges[0]
    emit({"edge": [node, k], **local_formulas(graph, names, values, [edges[0]])[(node, k)]})
    raise RuntimeError("SymPy gave up")


def _nothing_then_die(*args: Any, emit: Any) -> None:
    os._exit(7)


@pytest.mark.parametrize("child", [_first_then_fail, _nothing_then_die])
def test_a_failing_child_leaves_the_rest_to_this_process(child, monkeypatch):
    expected = _without_a_child()
    monkeypatch.setattr(analysis, "_formulas_child", child)
    handed = _watch_hand_over(monkeypatch)
    sandbox.prestart()
    assert _explained() == expected
    assert handed == [True]
