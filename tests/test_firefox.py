"""The HTML pages in Firefox: headless, through its WebDriver BiDi agent (tests/firefox.py).

The pages are the ones README's commands write: the sigmoid neuron's `grad`, the
chain-rule network's `explain` and `train linear`. On the neuron page the Next button walks
the whole sweep: after every step the sentence's step number and kind, the current node
(forward) or wire (backward) and the input's gradient so far are what the page's JSON
says, and at the end every node shows the gradient `grad --format json` reports. Then the
arrow keys, a clicked node's paths, the console and the network log of every page (no
error, nothing fetched), the training page's charts and tables, and MathML laid out.

One browser for the module; the pages are written once."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import firefox
from tests.conftest import run

NEURON = ["1/(1+exp(-(w0*x0+w1*x1+w2)))", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"]
ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NETWORK = ["--file", str(EXAMPLES / "chain_rule_network.bp"), "--values",
           str(EXAMPLES / "network.json"), "x1=1", "x2=1", "y=0"]  # fmt: skip

# The state of the step-through, read in one round trip.
STATE = """(() => {
  const now = document.querySelector("p.bp-now");
  const ids = (sel, attr) => [...document.querySelectorAll(sel)].map(e => e.getAttribute(attr));
  const grads = {}, values = {};
  for (const g of document.querySelectorAll("g.bp-node[data-node]")) {
    const id = g.getAttribute("data-node"), grad = g.querySelector("tspan.bp-live-grad");
    values[id] = g.querySelector("tspan.bp-live-value").textContent;
    if (grad) grads[id] = grad.textContent;
  }
  return {
    step: now.getAttribute("data-step"), kind: now.getAttribute("data-kind"),
    edge: now.getAttribute("data-edge"), say: now.textContent,
    nodes: ids("g.bp-node.bp-current", "data-node"),
    edges: ids("g.bp-edge.bp-current", "data-edge"),
    from: ids("g.bp-node.bp-from", "data-node"), to: ids("g.bp-node.bp-to", "data-node"),
    grads, values,
    next: document.querySelector('button[data-action="next"]').disabled,
  };
})()"""


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("firefox-pages")
    commands = {
        "neuron": ["grad", *NEURON],
        "network": ["explain", *NETWORK],
        "training": ["train", "linear", "--epochs", "100"],
    }
    out = {}
    for name, args in commands.items():
        out[name] = where / f"{name}.html"
        result = run(*args, "-o", str(out[name]))
        assert result.code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[firefox.Firefox]:
    firefox.require_firefox()
    with firefox.Firefox(timeout=30.0) as ff:
        yield ff


def show(ff: firefox.Firefox, page: Path) -> dict[str, Any]:
    """Open a page fresh (its step-through at the start); the JSON its script reads."""
    ff.navigate(page.as_uri())
    assert ff.evaluate("document.querySelector('main.bp-page[data-bp-root]') !== null")
    assert ff.evaluate("document.querySelector('[data-bp-root]').hasAttribute('data-bp-ready')")
    return ff.evaluate("JSON.parse(document.querySelector('script.bp-data').textContent)")


def click(ff: firefox.Firefox, selector: str) -> None:
    ff.evaluate(
        f"document.querySelector({selector!r}).dispatchEvent("
        "new MouseEvent('click', {bubbles: true, cancelable: true, view: window}))"
    )


def key(ff: firefox.Firefox, name: str, **flags: bool) -> None:
    options = ", ".join(f"{k}: {'true' if v else 'false'}" for k, v in flags.items())
    ff.evaluate(
        f"document.dispatchEvent(new KeyboardEvent('keydown', {{key: {name!r}, bubbles: true, "
        f"cancelable: true{', ' + options if options else ''}}}))"
    )


def test_next_walks_the_neuron_sweep_step_by_step(browser, pages):
    data = show(browser, pages["neuron"])
    steps, forward = data["steps"], data["forward_count"]
    start = browser.evaluate(STATE)
    assert (start["step"], start["kind"], start["edge"]) == ("0", "start", "")
    assert start["say"] == data["start"]
    assert start["nodes"] == start["edges"] == [] and not start["next"]
    assert set(start["grads"].values()) == {""} and set(start["values"].values()) == {""}
    assert 0 < forward < len(steps)
    for n, step in enumerate(steps, start=1):
        click(browser, 'button[data-action="next"]')
        now = browser.evaluate(STATE)
        assert (now["step"], now["kind"], now["say"]) == (str(n), step["kind"], step["say"])
        node = str(step["node"])
        if step["kind"] == "forward":
            assert n <= forward
            assert now["nodes"] == [node] and now["edges"] == [] and now["edge"] == ""
            assert now["values"][node] == data["nodes"][node]["value"]
        else:
            assert n > forward
            assert now["edges"] == [step["edge"]] and now["edge"] == step["edge"]
            assert now["nodes"] == [] and now["from"] == [node]
            assert now["to"] == [str(step["input"])]
            assert now["grads"][str(step["input"])] == step["total"], (n, step)
        assert now["next"] is (n == len(steps))
    report = run("grad", *NEURON, "--format", "json")
    assert report.code == 0, report.stderr
    final = {str(n["id"]): n["grad"] for n in report.json()["nodes"] if n["grad"] is not None}
    assert set(now["grads"]) == set(final)
    for node, want in final.items():
        assert math.isclose(float(now["grads"][node]), want, rel_tol=1e-3, abs_tol=1e-12), node


def test_arrow_keys_step_forward_and_back(browser, pages):
    count = len(show(browser, pages["neuron"])["steps"])

    def step() -> str:
        return browser.evaluate("document.querySelector('p.bp-now').dataset.step")

    for _ in range(3):
        key(browser, "ArrowRight")
    assert step() == "3"
    key(browser, "ArrowLeft")
    assert step() == "2"
    key(browser, "ArrowRight", ctrlKey=True)  # a browser shortcut, not a step
    assert step() == "2"
    key(browser, "End")
    assert step() == str(count)
    key(browser, "ArrowRight")
    assert step() == str(count)
    key(browser, "Home")
    assert step() == "0"
    key(browser, "ArrowLeft")
    assert step() == "0"


def test_clicking_a_node_shows_its_paths(browser, pages):
    show(browser, pages["neuron"])
    # the wires on a variable's paths, from explain's JSON (not from the page)
    import json

    report = json.loads(run("explain", *NEURON, "--format", "json").stdout)
    wires: dict[str, set[str]] = {}
    for partial in report["partials"]:
        for path in partial["paths"]:
            for link in path["links"]:
                n, k = link["edge"]
                wires.setdefault(partial["variable"], set()).add(f"{n}-{k}")
    name = max(wires, key=lambda v: len(wires[v]))
    node = (
        next(str(n["id"]) for n in report["legend"] if n["name"] == name)
        if any(n["name"] == name for n in report["legend"])
        else browser.evaluate(
            "[...document.querySelectorAll('g.bp-node')].find(g => "
            f"g.querySelector('.bp-title').textContent.trim() === {json.dumps(name)}).dataset.node"
        )
    )
    path = {"edges": sorted(wires[name])}
    click(browser, f'g.bp-node[data-node="{node}"]')
    seen = browser.evaluate(f"""(() => {{
      const shown = [...document.querySelectorAll(".bp-detail")].filter(e => !e.hidden);
      const box = shown.length ? shown[0].getBoundingClientRect() : null;
      const ids = s => [...document.querySelectorAll(s)].map(e => e.getAttribute("data-edge"));
      return {{
        shown: shown.map(e => e.dataset.detail),
        height: box ? box.height : 0,
        empty: document.querySelector(".bp-detail-empty").hidden,
        selected: document.querySelector('g.bp-node[data-node="{node}"]')
          .classList.contains("bp-selected"),
        wires: ids("g.bp-edge.bp-on-path").sort(),
        paths: shown.length ? shown[0].querySelectorAll("li.bp-path").length : 0,
      }};
    }})()""")
    assert seen["shown"] == [node] and seen["height"] > 0 and seen["empty"]
    assert seen["selected"] and seen["paths"] > 0
    assert seen["wires"] == sorted(path["edges"])
    click(browser, f'g.bp-node[data-node="{node}"]')  # again: closed
    assert browser.evaluate("document.querySelectorAll('.bp-on-path, .bp-selected').length") == 0
    assert browser.evaluate("[...document.querySelectorAll('.bp-detail')].every(e => e.hidden)")


@pytest.mark.parametrize("name", ["neuron", "network", "training"])
def test_no_error_is_logged_and_nothing_is_fetched(browser, pages, name):
    browser.events.clear()
    page = pages[name].as_uri()
    browser.navigate(page)
    # every step forward and back, so the script's every path runs
    browser.evaluate("""(() => {
      const next = document.querySelector('button[data-action="next"]');
      const prev = document.querySelector('button[data-action="prev"]');
      if (next) { while (!next.disabled) next.click(); while (!prev.disabled) prev.click(); }
    })()""")
    browser.drain()
    errors = [e for e in browser.events_of("log.entryAdded") if e.get("level") == "error"]
    assert errors == [], [e.get("text") for e in errors]
    # Firefox's own stylesheet loads its list-bullet font from a data: URL; nothing else
    # but the page itself may be asked for.
    urls = [e["request"]["url"] for e in browser.events_of("network.beforeRequestSent")]
    assert [u for u in urls if u != page and not u.startswith("data:")] == []


def test_the_training_page_has_its_charts_and_tables(browser, pages):
    browser.navigate(pages["training"].as_uri())
    seen = browser.evaluate("""(() => ({
      charts: [...document.querySelectorAll("svg.bp-chart")].map(s => {
        const box = s.getBoundingClientRect();
        return [box.width, box.height, s.querySelectorAll("path, polyline").length];
      }),
      tables: [...document.querySelectorAll("table")].map(t => [
        t.caption ? t.caption.textContent : "", t.tBodies[0].rows.length]),
    }))()""")
    assert len(seen["charts"]) == 2
    for width, height, lines in seen["charts"]:
        assert width > 0 and height > 0 and lines > 0
    captions = [caption for caption, _ in seen["tables"]]
    assert "After training" in captions and "Settings" in captions
    assert any(c.startswith("The trained model") for c in captions)
    assert sum(c.startswith("each step") for c in captions) == 2
    assert all(rows > 0 for _, rows in seen["tables"]), seen["tables"]


def test_mathml_is_laid_out(browser, pages):
    show(browser, pages["neuron"])
    box = browser.evaluate("""(() => {
      const math = document.querySelector("tr[data-partial] math");
      const r = math.getBoundingClientRect();
      const frac = math.querySelector("mfrac");
      const [top, bottom] = [...frac.children].map(e => e.getBoundingClientRect());
      return {ns: math.namespaceURI, width: r.width, height: r.height,
              stacked: top.bottom <= bottom.top + 1};
    })()""")
    assert box["ns"] == "http://www.w3.org/1998/Math/MathML"
    assert box["width"] > 0 and box["height"] > 0
    assert box["stacked"]  # the fraction's numerator above its denominator
