"""examples/tour.ipynb, run in a real Jupyter kernel (nbclient) from a temporary copy, with
examples/ as its working directory; each section's output is checked, and the committed
file is checked to be clean (no outputs, no execution counts). Cells are found by their tag
(metadata.tags), so the notebook's cells can be reordered freely.

Graphviz: the picture cell must show SVG where `dot` is on PATH, and the text fallback where
it is not; CI sets BACKPROP_REQUIRE_DOT=1, which makes a missing `dot` a failure."""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # starts a kernel; no timing is asserted

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NOTEBOOK = EXAMPLES / "tour.ipynb"
CELL_TIMEOUT = 180  # seconds a cell may take (the first imports torch and SymPy)
NEED_DOT = os.environ.get("BACKPROP_REQUIRE_DOT") == "1"
TAGS = (
    "setup", "grad-result", "grad-values", "picture", "sigmoid", "explain", "network",
    "train", "plot", "compile", "dot", "modes", "diff",
)  # fmt: skip


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The notebook after running every cell (errors are kept as outputs, not raised, so that
    test_no_cell_fails can list them all)."""
    folder = tmp_path_factory.mktemp("notebook")
    copy = folder / NOTEBOOK.name
    shutil.copyfile(NOTEBOOK, copy)
    nb = nbformat.read(copy, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    with pytest.MonkeyPatch.context() as env:  # the kernel inherits this environment
        env.setenv("IPYTHONDIR", str(folder / "ipython"))  # no user profile or startup files
        env.delenv("MPLBACKEND", raising=False)
        client.execute()
    nbformat.write(nb, copy)  # outputs go to the copy only, kept for a failing run's reader
    return nb


def cell(nb: Any, tag: str) -> Any:
    found = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {tag!r}, found {len(found)}"
    return found[0]


def data(c: Any, mime: str) -> list[str]:
    """The cell's rich outputs of one MIME type (display_data and execute_result)."""
    return [
        o["data"][mime]
        for o in c.outputs
        if o["output_type"] in ("display_data", "execute_result") and mime in o["data"]
    ]


def text(c: Any) -> str:
    """What the cell printed, and the plain-text form of what it displayed."""
    # A print may arrive in several stream messages: their texts join as written.
    printed = "".join(o["text"] for o in c.outputs if o["output_type"] == "stream")
    return "\n".join([printed, *data(c, "text/plain")])


def test_the_committed_notebook_is_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for c in nb.cells:
        assert "execution" not in c.metadata, f"cell {c.id} keeps execution timings"
        if c.cell_type == "code":
            assert c.outputs == [], f"cell {c.id} has saved outputs"
            assert c.execution_count is None, f"cell {c.id} has an execution count"
    source = "\n".join(c.source for c in nb.cells)
    assert str(ROOT) not in source, "the notebook names an absolute path"
    jargon = re.search(r"\bseeds\b|\bseed \d{3}\b", source, re.IGNORECASE)
    assert not jargon, f"the notebook uses the project's jargon: {jargon.group(0)!r}"
    for tag in TAGS:
        cell(nb, tag)


def test_no_cell_fails(executed):
    errors = [
        f"cell {c.id}: {o['ename']}: {o['evalue']}"
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o["output_type"] == "error"
    ]
    assert not errors, "\n".join(errors)


def test_the_kernel_runs_this_interpreter(executed):
    shown = text(cell(executed, "setup"))
    assert "backprop-cli" in shown
    assert sys.executable in shown, f"the kernel is another Python: {shown}"


def test_the_grad_result_shows_its_tables(executed):
    [html] = data(cell(executed, "grad-result"), "text/html")
    assert "<table" in html
    for number in ("-12", "-4", "3"):
        assert re.search(rf">\s*{re.escape(number)}\s*<", html), number
    shown = text(cell(executed, "grad-values"))
    assert "{'x': -4.0, 'y': -4.0, 'z': 3.0}" in shown
    assert "Node(id=2, label='x+y', op='add'" in shown
    assert "df/dx = z" in shown


def test_the_picture_is_svg_with_graphviz_and_text_without(executed):
    c = cell(executed, "picture")
    if shutil.which("dot") is not None:
        [svg] = data(c, "image/svg+xml")
        assert "<svg" in svg
    elif NEED_DOT:
        pytest.fail("BACKPROP_REQUIRE_DOT=1, but Graphviz's dot is not on PATH")
    else:
        assert not data(c, "image/svg+xml")
        notes = [h for h in data(c, "text/html") if "Graphviz" in h and "not installed" in h]
        assert notes, "no text fallback that says Graphviz is not installed"


def test_the_sigmoid_neuron_has_cs231n_numbers(executed):
    shown = text(cell(executed, "sigmoid"))
    assert "f = 0.7311" in shown
    assert "on w: [-0.1966, -0.3932, 0.1966]" in shown
    assert "on x: [0.3932, -0.5898]" in shown
    [markdown] = data(cell(executed, "explain"), "text/markdown")
    assert "∂f/∂w0" in markdown
    assert "-0.1966" in markdown


def test_the_chain_rule_network_matches_the_books_file(executed):
    shown = text(cell(executed, "network"))
    assert "C = 1.5208" in shown
    assert "dC/dw11 = 0.14548, dC/dw31 = 1.8031" in shown
    assert "checks agree: True" in shown


def test_training_takes_w_to_2(executed):
    c = cell(executed, "train")
    found = re.search(r"w = (-?\d+\.\d+) after 100 epochs", text(c))
    assert found, text(c)
    assert abs(float(found.group(1)) - 2) < 1e-3
    assert "Epoch(epoch=0," in text(c)
    [html] = data(c, "text/html")
    assert "<table" in html


def test_the_loss_curve_is_one_png(executed):
    [png] = data(cell(executed, "plot"), "image/png")  # one image: not shown twice
    assert base64.b64decode(png).startswith(b"\x89PNG")


def test_compile_evaluates_a_batch(executed):
    shown = text(cell(executed, "compile"))
    assert "f     : [0.2689 0.7311 0.9526 0.9933 0.9991]" in shown
    assert "df/dw0: [-0.3932 -0.1966" in shown


def test_the_dot_product_and_the_two_modes(executed):
    c = cell(executed, "dot")
    assert re.search(r"28\.0 \[\s*4\.\s+8\.\s+12\.\s*\]", text(c)), text(c)
    [hessian] = data(c, "text/markdown")
    assert "hessian" in hessian
    [modes] = data(cell(executed, "modes"), "text/markdown")
    assert "Forward sweep for x" in modes
    assert "forward mode: 3 sweeps" in modes


def test_the_symbolic_derivative(executed):
    [markdown] = data(cell(executed, "diff"), "text/markdown")
    assert "x**2*cos(x) + 2*x*sin(x)" in markdown
