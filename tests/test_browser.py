"""The HTML pages in a real browser: headless Chromium through Selenium (tests/browser.py).

The pages are the ones docs/pages.md's commands write (the sigmoid neuron's `grad`, the chain-rule
network's `explain`, `train linear`) and a hostile program's. Every number a page shows
while stepping is checked against another report of the same computation, not against the
JSON inside the page: `explain --format json` (its reverse sweep, step by step, and its
paths), `grad --format json` (every node's value and final gradient) and `train --format
json`. Then the paths of a clicked node, the keyboard alone, the console and the network
log (nothing is fetched, nothing errs), a phone's width, print, and screenshots (into
$BACKPROP_ARTIFACTS; with UPDATE_README=1 also docs/step-through.png).

Each pytest-xdist worker has its own browser; the pages are written once per run."""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import browser

ROOT = Path(__file__).resolve().parent.parent
README_PICTURE = ROOT / "docs" / "step-through.png"
PNG = b"\x89PNG\r\n\x1a\n"

NEURON = ["1/(1+exp(-(w0*x0+w1*x1+w2)))", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3"]
NETWORK = ["--file", "examples/chain_rule_network.bp", "--values", "examples/network.json"]
NETWORK += ["x1=1", "x2=1", "y=0"]
TRAIN = ["linear", "--epochs", "100"]
ENGINE_ONLY = ["--no-torch", "--no-symbolic", "--format", "json"]  # the engine's numbers

HOSTILE_MARKUP = '<img src="http://127.0.0.1:9/x.png" onerror="alert(1)"><script>alert(2)</script>'
WEIRD_NAME = ("constructor__proto__hasOwnProperty_toString_valueOf_" + "Z9" * 50)[:100]
HOSTILE_PROGRAM = (
    f"# {HOSTILE_MARKUP}\n"
    f"constructor = (x *  # {HOSTILE_MARKUP}\n"
    "    y)\n"
    f"{WEIRD_NAME} = exp(constructor) + t1\n"
)
HOSTILE_AT = ["x=1", "y=2", "t1=3"]

GRAPHS = ("neuron", "network")
PAGES = (*GRAPHS, "training", "hostile")
PLAY_MS = 700  # the step-through's Play interval


# ---- the pages and their references ------------------------------------------------------


@dataclass
class Graph:
    """A step-through page and two other reports of the same point."""

    path: Path
    grad: dict[str, Any]  # grad --format json: every node's value and final gradient
    explain: dict[str, Any] | None  # explain --format json: the reverse sweep and the paths

    @property
    def nodes(self) -> list[dict[str, Any]]:
        return list(self.grad["nodes"])

    @property
    def order(self) -> list[str]:
        """The forward pass: every node, in evaluation order."""
        return [str(n["id"]) for n in self.nodes]

    @property
    def output(self) -> str:
        return str(self.grad["output"]["id"])

    def node(self, node_id: str) -> dict[str, Any]:
        return next(n for n in self.nodes if str(n["id"]) == node_id)

    @property
    def reverse(self) -> list[dict[str, Any]]:
        assert self.explain is not None
        steps = list(self.explain["reverse_steps"])
        assert len(steps) == self.explain["reverse_steps_total"], "explain cut the sweep short"
        return steps

    def wire(self, step: dict[str, Any]) -> tuple[str, str, str]:
        """A reverse step's wire, its consumer and its input, as the page's ids."""
        node = self.node(str(step["node"]))
        return f"{step['node']}-{step['k']}", str(node["id"]), str(node["inputs"][step["k"]])

    @property
    def count(self) -> int:
        return len(self.order) + len(self.reverse)


@dataclass
class Training:
    path: Path
    doc: dict[str, Any]  # train --format json


def _cli(args: list[str], stdout: Path | None) -> tuple[list[str], subprocess.Popen[str]]:
    out = stdout.open("w") if stdout is not None else subprocess.DEVNULL
    command = [sys.executable, "-m", "backprop_cli", *args]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    return command, process


def _generate(folder: Path) -> None:
    """Every page and report, the commands run side by side."""
    (folder / "hostile.bp").write_text(HOSTILE_PROGRAM, encoding="utf-8")
    hostile = ["--file", str(folder / "hostile.bp"), *HOSTILE_AT, "--no-torch"]
    pages = {
        "neuron.html": ["grad", *NEURON],
        "network.html": ["explain", *NETWORK],
        "training.html": ["train", *TRAIN],
        "hostile.html": ["grad", *hostile],
    }
    reports = {
        "neuron.grad.json": ["grad", *NEURON, *ENGINE_ONLY],
        "neuron.explain.json": ["explain", *NEURON, "--format", "json"],
        "network.grad.json": ["grad", *NETWORK, *ENGINE_ONLY],
        "network.explain.json": ["explain", *NETWORK, "--format", "json"],
        "hostile.grad.json": ["grad", *hostile, "--no-symbolic", "--format", "json"],
        "training.json": ["train", *TRAIN, "--format", "json"],
    }
    running = [_cli([*args, "-o", str(folder / name)], None) for name, args in pages.items()]
    running += [_cli(args, folder / name) for name, args in reports.items()]
    for command, process in running:
        _, err = process.communicate(timeout=180)
        assert process.returncode == 0, f"{command} exited {process.returncode}:\n{err}"


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(path)):
        yield


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The four pages (and their references), written once for all of the run's workers:
    under pytest-xdist the first worker to ask writes them, the others wait and read."""
    browser.require_browser()
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by every worker of this run
    folder = base / "browser-pages"
    with _lock(base / "browser-pages.lock"):
        if not (folder / "done").exists():
            folder.mkdir(parents=True, exist_ok=True)
            _generate(folder)
            (folder / "done").write_text("")

    def read(name: str) -> Any:
        return json.loads((folder / name).read_text(encoding="utf-8"))

    return {
        "neuron": Graph(
            folder / "neuron.html", read("neuron.grad.json"), read("neuron.explain.json")
        ),
        "network": Graph(
            folder / "network.html", read("network.grad.json"), read("network.explain.json")
        ),
        "hostile": Graph(folder / "hostile.html", read("hostile.grad.json"), None),
        "training": Training(folder / "training.html", read("training.json")),
    }


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One browser for this module's tests on this worker."""
    started = browser.start(tmp_path_factory.mktemp("chromium-profile"))
    yield started
    started.quit()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BACKPROP_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---- driving a page ----------------------------------------------------------------------


def show(driver: Any, path: Path, width: int = 1100, height: int = 900, **kw: Any) -> None:
    browser.viewport(driver, width, height, **kw)
    browser.open_page(driver, path)


def press(driver: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def back_tab(driver: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()


def focus_on(driver: Any, stop: str, tries: int) -> None:
    """Shift+Tab until the focus is on `stop` (as ACTIVE names it)."""
    for _ in range(tries):
        if driver.execute_script(ACTIVE) == stop:
            return
        back_tab(driver)
    assert driver.execute_script(ACTIVE) == stop


def pointer_on(driver: Any, element: Any) -> Any:
    """A mouse resting on `element`: each call of the result clicks it there (the mouse's
    down and up where it rests, so a long walk of clicks stays quick)."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).move_to_element(element).perform()
    hit = (
        "const e = arguments[0], r = e.getBoundingClientRect();"
        "return document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2) === e"
    )
    assert driver.execute_script(hit, element)  # nothing lies over it

    def click() -> None:
        ActionChains(driver, duration=0).click().perform()

    return click


def css(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def clean(driver: Any, path: Path) -> None:
    """Nothing went to the console as an error (script errors, CSP violations, refused
    loads), no dialog opened, and the only request was the page itself."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 (reading it is the check)
    assert browser.console_errors(driver) == []
    fetched = [url for url in browser.requests(driver) if not url.startswith("data:")]
    assert fetched == [path.as_uri()]


# What the step-through shows now: the step, what is highlighted, every live number.
STATE = """
const root = document.querySelector('[data-bp-root]');
const tag = (e) => (e.tagName.toLowerCase() === 'tr' ? 'row:'
    : e.classList.contains('bp-edge') ? 'edge:'
    : e.classList.contains('bp-node') ? 'node:' : e.tagName.toLowerCase() + ':')
  + (e.getAttribute('data-node') || e.getAttribute('data-edge') || '');
const marked = (name) => Array.from(root.querySelectorAll('.' + name)).map(tag).sort();
const ids = (selector, attr) =>
  Array.from(root.querySelectorAll(selector)).map((e) => e.getAttribute(attr)).sort();
const texts = (selector) => {
  const found = {};
  root.querySelectorAll(selector).forEach((e) => {
    found[e.closest('[data-node]').getAttribute('data-node')] = e.textContent;
  });
  return found;
};
const now = root.querySelector('section.bp-walk p.bp-now');
const button = (a) => root.querySelector('button[data-action="' + a + '"]');
return {
  step: Number(now.getAttribute('data-step')),
  kind: now.getAttribute('data-kind'),
  edge: now.getAttribute('data-edge'),
  say: now.textContent,
  count: root.querySelector('.bp-count').textContent,
  current: marked('bp-current'),
  from: marked('bp-from'),
  to: marked('bp-to'),
  done: ids('svg.bp-graph g.bp-edge.bp-done', 'data-edge'),
  computed: ids('svg.bp-graph g.bp-node.bp-computed', 'data-node'),
  has_grad: ids('svg.bp-graph g.bp-node.bp-has-grad', 'data-node'),
  final: ids('svg.bp-graph g.bp-node.bp-final', 'data-node'),
  value: texts('svg.bp-graph g.bp-node tspan.bp-live-value'),
  grad: texts('svg.bp-graph g.bp-node tspan.bp-live-grad'),
  table: texts('tr[data-node] .bp-live-grad'),
  disabled: ['next', 'prev', 'reset'].filter((a) => button(a).disabled),
  playing: button('play').getAttribute('aria-pressed'),
  play_label: button('play').textContent,
};
"""

# What a selection shows: the selected node, the highlighted paths, the open panel.
SELECTION = """
const root = document.querySelector('[data-bp-root]');
const tag = (e) => (e.tagName.toLowerCase() === 'tr' ? 'row:'
    : e.classList.contains('bp-edge') ? 'edge:'
    : e.classList.contains('bp-node') ? 'node:' : e.tagName.toLowerCase() + ':')
  + (e.getAttribute('data-node') || e.getAttribute('data-edge') || '');
const open = Array.from(root.querySelectorAll('.bp-detail')).filter((e) => !e.hidden);
const inside = (selector) => open.length
  ? Array.from(open[0].querySelectorAll(selector)).map((e) => e.textContent) : [];
return {
  selected: Array.from(root.querySelectorAll('.bp-selected')).map(tag).sort(),
  on: Array.from(root.querySelectorAll('.bp-on-path')).map(tag).sort(),
  open: open.map((e) => e.getAttribute('data-detail')),
  shown: open.map((e) => e.getBoundingClientRect().height > 0),
  paths: inside('li.bp-path'),
  products: inside('li.bp-path .bp-product'),
  hint: !root.querySelector('.bp-detail-empty').hidden,
};
"""

ACTIVE = """
const a = document.activeElement;
if (a.matches('button[data-action]')) return 'button:' + a.getAttribute('data-action');
if (a.matches('g.bp-node')) return 'node:' + a.getAttribute('data-node');
if (a.matches('button[data-select]')) return 'select:' + a.getAttribute('data-select');
return a.tagName.toLowerCase();
"""


RING = "return getComputedStyle(document.activeElement).outlineStyle"


def state(driver: Any) -> dict[str, Any]:
    found: dict[str, Any] = driver.execute_script(STATE)
    return found


def number(shown: str) -> float:
    return float(shown.replace("−", "-"))


def close(shown: str, want: float) -> bool:
    """A shown number (rounded to 4 significant digits) against the report's."""
    return math.isclose(number(shown), want, rel_tol=1e-3, abs_tol=1e-12)


def expect(g: Graph, i: int) -> dict[str, Any]:
    """What step i should show, from explain's reverse sweep and grad's nodes alone."""
    order, steps, out = g.order, g.reverse, g.output
    forward, j = min(i, len(order)), max(0, i - len(order))
    backward = i > len(order)
    sofar: dict[str, float] = {}
    if backward:
        sofar[out] = g.node(out)["grad"]  # the seed
    last: dict[str, int] = {}
    for n, s in enumerate(steps, start=1):
        _, _, to = g.wire(s)
        last[to] = n
        if n <= j:
            sofar[to] = s["total"]
    final = {node for node, n in last.items() if j >= n} | ({out} if backward else set())
    want: dict[str, Any] = {
        "step": i,
        "edge": "",
        "current": [],
        "from": [],
        "to": [],
        "done": sorted(g.wire(s)[0] for s in steps[:j]),
        "computed": sorted(order[:forward]),
        "has_grad": sorted(sofar),
        "final": sorted(final),
        "disabled": (["prev", "reset"] if i == 0 else []) + (["next"] if i == g.count else []),
        "value": {n: (g.node(n)["value"] if n in order[:forward] else None) for n in order},
        "grad": {
            n: sofar.get(n) for n in order if g.node(n)["grad"] is not None
        },  # constants have no gradient line
        "table": {n: sofar.get(n) for n in order},
    }
    if i == 0:
        want.update(kind="start", count=f"Step 0 of {g.count}")
    elif i <= len(order):
        node = order[i - 1]
        want.update(kind="forward", current=[f"node:{node}", f"row:{node}"])
        want["count"] = f"Step {i} of {g.count} · forward"
    else:
        edge, frm, to = g.wire(steps[j - 1])
        want.update(kind="backward", edge=edge, current=[f"edge:{edge}"])
        want.update({"from": [f"node:{frm}", f"row:{frm}"], "to": [f"node:{to}", f"row:{to}"]})
        want["count"] = f"Step {i} of {g.count} · backward"
    return want


def _numbers(text: str) -> list[str]:
    """The words of a sentence that read as numbers."""
    found = []
    for word in re.split(r"[\s(),;]+", text):
        with contextlib.suppress(ValueError):
            number(word)
            found.append(word)
    return found


def _sentence(g: Graph, i: int, say: str) -> list[str]:
    """The step's sentence: its pass, its node or wire, the report's numbers."""
    order = g.order
    if i == 0:
        return [] if "Press Next" in say else [f"step 0 says {say!r}"]
    if i <= len(order):
        node = g.node(order[i - 1])
        said = _numbers(say)
        ok = say.startswith("forward") and node["display_name"] in say
        if node["op"] != "const":
            ok = ok and bool(said) and close(said[-1], node["value"])
        return [] if ok else [f"step {i} says {say!r}; {node['display_name']} = {node['value']}"]
    s = g.reverse[i - len(order) - 1]
    assert g.explain is not None
    total = f"∂{g.explain['output']['name']}/∂{s['to']} += "
    before, _, after = say.partition("so far ")
    said, so_far = _numbers(before), _numbers(after)
    ok = say.startswith("backward") and total in say and bool(said) and bool(so_far)
    if not (ok and close(said[-1], s["contribution"]) and close(so_far[0], s["total"])):
        return [f"step {i} says {say!r}; explain: {s['contribution']}, so far {s['total']}"]
    return []


def differences(g: Graph, i: int, seen: dict[str, Any]) -> list[str]:
    want = expect(g, i)
    problems = []
    for key in ("step", "kind", "edge", "count", "current", "from", "to", "done", "computed"):
        if seen[key] != want[key]:
            problems.append(f"{key}: shown {seen[key]!r}, expected {want[key]!r}")
    for key in ("has_grad", "final", "disabled"):
        if seen[key] != want[key]:
            problems.append(f"{key}: shown {seen[key]!r}, expected {want[key]!r}")
    for key in ("value", "grad", "table"):
        if set(seen[key]) != set(want[key]):
            problems.append(f"{key}: shown for {sorted(seen[key])}, expected {sorted(want[key])}")
            continue
        for node, value in want[key].items():
            text = seen[key][node]
            ok = text == "" if value is None else text != "" and close(text, value)
            if not ok:
                problems.append(f"{key} of node {node}: shown {text!r}, expected {value!r}")
    problems += _sentence(g, i, seen["say"])
    return [f"step {i}: {p}" for p in problems]


def final_gradients_shown(g: Graph, seen: dict[str, Any]) -> None:
    """Every node's final gradient, as grad --format json has it, in the SVG and the table."""
    for node in g.nodes:
        key, grad = str(node["id"]), node["grad"]
        if grad is None:
            assert key not in seen["grad"] and seen["table"][key] == ""
        else:
            assert close(seen["grad"][key], grad), (node["display_name"], seen["grad"][key])
            assert close(seen["table"][key], grad), (node["display_name"], seen["table"][key])
            assert key in seen["final"]


def references_agree(g: Graph) -> None:
    """explain's sweep and grad's nodes are of the same graph (names, wires, gradients)."""
    for s in g.reverse:
        _, frm, to = g.wire(s)
        assert g.node(frm)["display_name"] == s["from"]
        assert g.node(to)["display_name"] == s["to"]
    assert g.explain is not None
    for p in g.explain["partials"]:
        assert math.isclose(p["gradient"], g.grad["gradient"][p["variable"]], rel_tol=1e-12)


# ---- the step-through --------------------------------------------------------------------


@pytest.mark.parametrize("name", GRAPHS)
def test_next_walks_the_whole_sweep_and_prev_walks_it_back(
    driver: Any, pages: dict[str, Any], name: str
) -> None:
    from selenium.webdriver.common.keys import Keys

    g = pages[name]
    references_agree(g)
    show(driver, g.path)
    seen = [state(driver)]
    assert differences(g, 0, seen[0]) == []
    next_button = pointer_on(driver, css(driver, 'button[data-action="next"]'))
    for i in range(1, g.count + 1):
        next_button()
        seen.append(state(driver))
        assert differences(g, i, seen[i]) == []
    final_gradients_shown(g, seen[-1])
    next_button()  # disabled at the end: nothing changes
    assert state(driver) == seen[-1]

    prev_button = pointer_on(driver, css(driver, 'button[data-action="prev"]'))
    for i in range(g.count - 1, -1, -1):
        prev_button()
        assert state(driver) == seen[i], f"Prev to step {i}"

    press(driver, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert state(driver) == seen[3]
    css(driver, 'button[data-action="reset"]').click()
    assert state(driver) == seen[0]
    press(driver, Keys.END)  # the final state
    assert state(driver) == seen[-1]
    press(driver, Keys.HOME)
    assert state(driver) == seen[0]
    clean(driver, g.path)


@pytest.mark.parametrize("name", GRAPHS)
def test_arrow_keys_walk_the_whole_sweep(driver: Any, pages: dict[str, Any], name: str) -> None:
    from selenium.webdriver.common.keys import Keys

    g = pages[name]
    show(driver, g.path)
    for i in range(1, g.count + 1):
        press(driver, Keys.ARROW_RIGHT)
        assert differences(g, i, state(driver)) == []
    final_gradients_shown(g, state(driver))
    press(driver, Keys.ARROW_RIGHT)
    assert state(driver)["step"] == g.count
    press(driver, Keys.ARROW_LEFT)
    assert differences(g, g.count - 1, state(driver)) == []
    press(driver, Keys.HOME)
    assert differences(g, 0, state(driver)) == []
    press(driver, Keys.ARROW_LEFT)  # nothing before step 0
    assert differences(g, 0, state(driver)) == []
    clean(driver, g.path)


def _wait(driver: Any, what: Any, seconds: float) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    def reached(d: Any) -> Any:
        now = state(d)
        return now if what(now) else False

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(reached)


def test_play_advances_by_itself_and_stops_at_the_end(driver: Any, pages: dict[str, Any]) -> None:
    from selenium.webdriver.common.keys import Keys

    g = pages["neuron"]
    show(driver, g.path)
    play = css(driver, 'button[data-action="play"]')
    play.click()
    now = state(driver)
    assert (now["playing"], now["play_label"]) == ("true", "Pause")
    reached = _wait(driver, lambda s: s["step"] >= 2, 8 * PLAY_MS / 1000)
    assert differences(g, reached["step"], reached) == []
    play.click()  # pause
    paused = state(driver)
    assert (paused["playing"], paused["play_label"]) == ("false", "Play")
    time.sleep(1.3 * PLAY_MS / 1000)
    assert state(driver)["step"] == paused["step"]

    press(driver, Keys.END, Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    assert state(driver)["step"] == g.count - 2
    play.click()
    end = _wait(driver, lambda s: s["step"] == g.count, 8 * PLAY_MS / 1000)
    assert differences(g, g.count, end) == []
    _wait(driver, lambda s: s["playing"] == "false", 6 * PLAY_MS / 1000)
    time.sleep(1.3 * PLAY_MS / 1000)
    stopped = state(driver)
    assert (stopped["step"], stopped["play_label"]) == (g.count, "Play")

    play.click()  # at the end, Play starts over
    assert state(driver)["step"] in (0, 1)
    play.click()
    clean(driver, g.path)


# ---- selecting a node --------------------------------------------------------------------


def _cleared(seen: dict[str, Any]) -> None:
    assert (seen["selected"], seen["on"], seen["open"], seen["hint"]) == ([], [], [], True)


@pytest.mark.parametrize("name", GRAPHS)
def test_clicking_a_node_highlights_its_paths(
    driver: Any, pages: dict[str, Any], name: str
) -> None:
    """Every node with a gradient: its panel lists its paths, whose products sum to grad's
    gradient; a variable's highlighted wires and nodes are exactly those of explain's paths."""
    from selenium.webdriver.common.keys import Keys

    g = pages[name]
    assert g.explain is not None
    partials = {p["variable"]: p for p in g.explain["partials"]}
    ids = {n["display_name"]: str(n["id"]) for n in g.nodes if n["op"] != "const"}
    show(driver, g.path)
    for node in g.nodes:
        if node["grad"] is None:
            continue
        key = str(node["id"])
        css(driver, f'svg.bp-graph g.bp-node[data-node="{key}"]').click()
        seen = driver.execute_script(SELECTION)
        assert seen["selected"] == [f"node:{key}", f"row:{key}"]
        assert driver.execute_script(RING) == "none"  # a click: the selection marks it
        assert (seen["open"], seen["shown"], seen["hint"]) == ([key], [True], False)
        if key == g.output:
            assert (seen["paths"], seen["on"]) == ([], [f"node:{key}"])
            continue
        products = [number(p) for p in seen["products"]]
        slack = 1e-3 * sum(abs(p) for p in products) + 1e-12
        assert abs(sum(products) - node["grad"]) <= slack, (node["display_name"], products)
        variable = partials.get(node["display_name"]) if node["op"] == "input" else None
        if variable is None:
            continue
        paths = variable["paths"]
        assert len(paths) == variable["count"] == len(seen["paths"])
        assert not any("omitted" in link for p in paths for link in p["links"])
        wires = {f"edge:{n}-{k}" for p in paths for n, k in (link["edge"] for link in p["links"])}
        on_nodes = {f"node:{ids[step]}" for p in paths for step in p["names"]}
        assert seen["on"] == sorted(wires | on_nodes), node["display_name"]
        want = sorted(p["product"] for p in paths)
        assert all(
            close(s, w) for s, w in zip(sorted(seen["products"], key=number), want, strict=True)
        )
        assert math.isclose(sum(want), node["grad"], rel_tol=1e-9, abs_tol=1e-12)

    press(driver, Keys.ESCAPE)
    _cleared(driver.execute_script(SELECTION))

    variable = next(n for n in g.nodes if n["op"] == "input")
    key = str(variable["id"])
    css(driver, f'tr[data-node="{key}"] button[data-select="{key}"]').click()
    assert driver.execute_script(SELECTION)["open"] == [key]
    css(driver, f'.bp-detail[data-detail="{key}"] button[data-clear]').click()
    _cleared(driver.execute_script(SELECTION))
    svg_node = css(driver, f'svg.bp-graph g.bp-node[data-node="{key}"]')
    svg_node.click()
    svg_node.click()  # a second click on the selected node clears it
    _cleared(driver.execute_script(SELECTION))
    clean(driver, g.path)


# Boxes whose highlight would be cut by the graph's edge: each rect, grown by half the
# widest highlight's stroke (3.5), must lie inside the SVG's viewBox.
CLIPPED = """
const out = [];
document.querySelectorAll('svg.bp-graph').forEach((svg) => {
  const v = svg.viewBox.baseVal;
  svg.querySelectorAll('g.bp-node > rect').forEach((rect) => {
    const b = rect.getBBox();
    const m = 1.75;
    if (b.x - m < v.x || b.y - m < v.y || b.x + b.width + m > v.x + v.width
        || b.y + b.height + m > v.y + v.height) {
      out.push(rect.parentElement.getAttribute('data-node'));
    }
  });
});
return out;
"""


@pytest.mark.parametrize("name", GRAPHS)
def test_highlights_stay_inside_the_graph(driver: Any, pages: dict[str, Any], name: str) -> None:
    g = pages[name]
    show(driver, g.path)
    assert driver.execute_script(CLIPPED) == []
    clean(driver, g.path)


def test_keyboard_alone(driver: Any, pages: dict[str, Any]) -> None:
    """Tab reaches the buttons, then every node in order; Enter on a node selects it; Enter
    and Space on Next step; the arrow keys step wherever the focus is."""
    from selenium.webdriver.common.keys import Keys

    g = pages["neuron"]
    show(driver, g.path)
    stops = []
    for _ in range(len(g.order) + 4):
        press(driver, Keys.TAB)
        stops.append(driver.execute_script(ACTIVE))
        assert driver.execute_script(RING) not in ("none", ""), f"no focus ring on {stops[-1]}"
    assert "button:next" in stops, stops
    first = stops.index("button:next")
    assert stops[first : first + 2 + len(g.order)] == [
        "button:next",
        "button:play",
        *(f"node:{n}" for n in g.order),
    ], stops
    assert not any(s.startswith("node:") for s in stops[:first])

    target = next(str(n["id"]) for n in g.nodes if n["display_name"] == "t3")
    focus_on(driver, f"node:{target}", len(stops))
    press(driver, Keys.ENTER)
    seen = driver.execute_script(SELECTION)
    assert (seen["open"], seen["selected"]) == ([target], [f"node:{target}", f"row:{target}"])
    assert seen["on"] and seen["paths"]
    press(driver, Keys.ENTER)  # again: cleared
    _cleared(driver.execute_script(SELECTION))
    press(driver, Keys.SPACE)
    assert driver.execute_script(SELECTION)["open"] == [target]
    press(driver, Keys.ESCAPE)
    _cleared(driver.execute_script(SELECTION))

    press(driver, Keys.ARROW_RIGHT)  # the focus is on a node; the page still steps
    assert differences(g, 1, state(driver)) == []
    focus_on(driver, "button:next", len(stops))
    press(driver, Keys.ENTER)
    assert differences(g, 2, state(driver)) == []
    press(driver, Keys.SPACE)
    assert differences(g, 3, state(driver)) == []
    clean(driver, g.path)


# ---- nothing fetched, nothing injected ---------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_no_console_errors_and_no_requests(driver: Any, pages: dict[str, Any], name: str) -> None:
    """The script runs under the page's Content-Security-Policy (its hash matches), logs no
    error, and the page fetches nothing: the performance log holds only the page itself."""
    from selenium.webdriver.common.keys import Keys

    page = pages[name]
    show(driver, page.path)
    policy = driver.execute_script(
        "return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]')"
        ".getAttribute('content')"
    )
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy
    if isinstance(page, Graph):
        press(driver, Keys.END, Keys.HOME, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
        assert state(driver)["step"] == 2
        css(driver, f'svg.bp-graph g.bp-node[data-node="{page.order[0]}"]').click()
        press(driver, Keys.ESCAPE)
    clean(driver, page.path)


def test_hostile_text_shows_literally(driver: Any, pages: dict[str, Any]) -> None:
    """Markup in a program's comment and the longest, oddest name the parser takes: shown as
    text, never as elements; no dialog, no request."""
    from selenium.webdriver.common.keys import Keys

    g = pages["hostile"]
    show(driver, g.path)
    found = driver.execute_script(
        """
        const texts = (s) => Array.from(document.querySelectorAll(s)).map((e) => e.textContent);
        return {
          images: document.querySelectorAll('img, image, iframe, object, embed').length,
          handlers: Array.from(document.querySelectorAll('*')).filter((e) =>
            Array.from(e.attributes).some((a) => a.name.startsWith('on'))).length,
          scripts: Array.from(document.scripts).map((s) => s.type || 'classic'),
          cells: texts('tr[data-node] td code'),
          titles: texts('svg.bp-graph g.bp-node > title'),
          names: texts('tr[data-node] button[data-select]'),
          boxes: texts('svg.bp-graph g.bp-node text.bp-title'),
        };
        """
    )
    assert (found["images"], found["handlers"]) == (0, 0)
    assert found["scripts"] == ["application/json", "classic"]
    assert any(HOSTILE_MARKUP in cell for cell in found["cells"]), found["cells"]
    assert any(HOSTILE_MARKUP in title for title in found["titles"]), found["titles"]
    assert WEIRD_NAME in found["names"]
    assert any(box.startswith(WEIRD_NAME) for box in found["boxes"])
    press(driver, Keys.END)
    assert WEIRD_NAME in state(driver)["say"]
    weird = next(str(n["id"]) for n in g.nodes if n["display_name"] == "constructor")
    css(driver, f'svg.bp-graph g.bp-node[data-node="{weird}"]').click()
    assert driver.execute_script(SELECTION)["open"] == [weird]
    clean(driver, g.path)


# ---- a phone, paper ----------------------------------------------------------------------

# Elements and text that reach past the viewport's right edge with no scrolling box around.
OVERFLOW = """
const width = window.innerWidth;
const out = [];
const scrolls = (e) => {
  for (let p = e; p && p !== document.body; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== 'visible') return true;
  }
  return false;
};
document.body.querySelectorAll('*').forEach((e) => {
  const r = e.getBoundingClientRect();
  if (r.width > 0 && r.right > width + 1 && !scrolls(e.parentElement)) {
    out.push(e.tagName.toLowerCase() + '.' + (e.getAttribute('class') || '') + ' ' + r.right);
  }
});
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let t = walker.nextNode(); t; t = walker.nextNode()) {
  const range = document.createRange();
  range.selectNodeContents(t);
  const r = range.getBoundingClientRect();
  if (r.width > 0 && r.right > width + 1 && !scrolls(t.parentElement)) {
    out.push('text in ' + t.parentElement.tagName.toLowerCase() + ': ' + t.data.slice(0, 60));
  }
}
return {inner: width, scroll: document.documentElement.scrollWidth, outside: out};
"""


# Whether the step's node or wire shows in the graph's box: all of it, or where it is wider
# than the box, its middle.
IN_VIEW = """
const now = document.querySelector('svg.bp-graph .bp-current');
const r = now.getBoundingClientRect();
const b = now.closest('.bp-scroll').getBoundingClientRect();
if (r.width > b.width) {
  const middle = (r.left + r.right) / 2;
  return middle >= b.left && middle <= b.right;
}
return r.left >= b.left - 1 && r.right <= b.right + 1;
"""


@pytest.mark.parametrize("name", PAGES)
def test_phone_width(driver: Any, pages: dict[str, Any], name: str, artifacts: Path) -> None:
    """At 390×844 the page itself never scrolls sideways: wide tables, graphs and programs
    scroll inside their own boxes; the graph keeps its size, its box scrolling to each step's
    node or wire."""
    from selenium.webdriver.common.keys import Keys

    page = pages[name]
    show(driver, page.path, 390, 844, mobile=True)
    try:
        found = driver.execute_script(OVERFLOW)
        assert found["inner"] == 390
        assert found["scroll"] <= found["inner"] + 1, found
        assert found["outside"] == []
        if isinstance(page, Graph):
            css(driver, 'button[data-action="next"]').click()
            assert state(driver)["step"] == 1
            graph = driver.execute_script(
                "const svg = document.querySelector('svg.bp-graph');"
                "const box = svg.closest('.bp-scroll');"
                "return [svg.getBoundingClientRect().width / svg.width.baseVal.value,"
                " box.getBoundingClientRect().right, getComputedStyle(box).overflowX]"
            )
            assert graph[0] > 0.99, "the graph shrinks to unreadable instead of scrolling"
            assert graph[1] <= found["inner"] + 1 and graph[2] == "auto"
            assert driver.execute_script(IN_VIEW), "step 1's node is out of its box's view"
            press(driver, Keys.END)
            assert driver.execute_script(IN_VIEW), "the last wire is out of its box's view"
            backward = state(driver)["step"] - len(page.order)
            press(driver, *[Keys.ARROW_LEFT] * backward)
            assert state(driver)["current"][0] == f"node:{page.output}"
            assert driver.execute_script(IN_VIEW), "the output is out of its box's view"
        if name == "neuron":
            picture = driver.get_screenshot_as_png()
            assert picture.startswith(PNG)
            (artifacts / "phone.png").write_bytes(picture)
    finally:
        browser.viewport(driver, 1100, 900)
    clean(driver, page.path)


def test_print_shows_the_final_state(driver: Any, pages: dict[str, Any], artifacts: Path) -> None:
    from selenium.webdriver.common.keys import Keys

    g = pages["neuron"]
    show(driver, g.path)
    press(driver, *[Keys.ARROW_RIGHT] * 5)
    try:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        driver.execute_script("window.dispatchEvent(new Event('beforeprint'))")
        hidden = driver.execute_script(
            "return [matchMedia('print').matches].concat(['.bp-controls', '.bp-now', "
            "'.bp-details'].map((s) => getComputedStyle(document.querySelector(s)).display))"
        )
        assert hidden == [True, "none", "none", "none"]
        seen = state(driver)
        assert differences(g, g.count, seen) == []
        final_gradients_shown(g, seen)
        driver.execute_script("window.dispatchEvent(new Event('afterprint'))")
        assert differences(g, 5, state(driver)) == []  # back where the reader was
        pdf = base64.b64decode(driver.execute_cdp_cmd("Page.printToPDF", {})["data"])
        assert pdf.startswith(b"%PDF")
        (artifacts / "neuron.pdf").write_bytes(pdf)
        assert differences(g, 5, state(driver)) == []
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    clean(driver, g.path)


# ---- the training page -------------------------------------------------------------------

TRAINING = """
const rows = (t) => Array.from(t.querySelectorAll('tbody tr')).map((r) =>
  Array.from(r.children).map((c) => c.textContent));
return Array.from(document.querySelectorAll('main > section')).map((s) => ({
  heading: s.querySelector('h2').textContent,
  charts: Array.from(s.querySelectorAll('svg.bp-chart')).map((c) => ({
    width: c.getBoundingClientRect().width,
    text: c.textContent,
    lines: Array.from(c.querySelectorAll('polyline')).map((p) => ({
      title: p.querySelector('title').textContent,
      points: p.getAttribute('points').trim().split(/\\s+/).map((xy) => xy.split(',').map(Number)),
    })),
  })),
  tables: Array.from(s.querySelectorAll('table')).map((t) => ({
    head: Array.from(t.querySelectorAll('thead th')).map((c) => c.textContent),
    rows: rows(t),
  })),
}));
"""


def _epoch(start: float, lr: float, data: list[tuple[float, float]]) -> list[tuple[float, ...]]:
    """linear (ŷ = w*x), mse, one sample a step: each step's (w before, ∂loss/∂w, loss)."""
    w, steps = start, []
    for x, y in data:
        grad = 2 * (w * x - y) * x
        steps.append((w, grad, (w * x - y) ** 2))
        w -= lr * grad
    return [*steps, (w,)]


def test_training_page(driver: Any, pages: dict[str, Any]) -> None:
    """The loss curve and the parameters' paths drawn, the first and last epoch's gradients
    (each step's, recomputed here from train's JSON: its settings and its epochs' weights),
    the final parameters and loss and the predictions as train --format json has them."""
    t: Training = pages["training"]
    doc = t.doc
    show(driver, t.path)
    sections = {s["heading"]: s for s in driver.execute_script(TRAINING)}
    history, params = doc["history"], doc["parameters"]
    last_epoch = history[-1]["epoch"]
    assert list(sections) == [
        "Loss",
        "Parameters",
        "The first epoch (0)",
        f"The last epoch ({last_epoch})",
        "Final parameters",
        "Predictions",
        "Settings",
    ]

    (loss,) = sections["Loss"]["charts"]
    (curve,) = loss["lines"]
    assert loss["width"] > 300 and curve["title"] == "loss"
    assert len(curve["points"]) == len(history) == doc["epochs"]
    assert curve["points"][-1][1] > curve["points"][0][1]  # the loss falls: the line goes down
    assert "(log scale)" in loss["text"]  # 7.3 down to 5e-13
    (chart,) = sections["Parameters"]["charts"]
    assert [line["title"] for line in chart["lines"]] == params
    assert all(len(line["points"]) == len(history) for line in chart["lines"])

    header = driver.execute_script("return document.querySelector('header').textContent")
    shown_loss = re.search(r"final loss (\S+)", header)
    assert shown_loss is not None and close(shown_loss.group(1), doc["loss"])
    (final,) = sections["Final parameters"]["tables"]
    assert [row[0] for row in final["rows"]] == params
    assert all(close(row[1], doc["params"][row[0]]) for row in final["rows"])
    (predictions,) = sections["Predictions"]["tables"]
    assert len(predictions["rows"]) == len(doc["predictions"])
    for row, want in zip(predictions["rows"], doc["predictions"], strict=True):
        assert close(row[0], want["x"]) and close(row[1], want["y"])

    assert doc["formula"] == "w*x" and doc["loss_name"] == "mse" and params == ["w"]
    lr = doc["settings"]["lr"]
    for heading, epoch in (("The first epoch (0)", 0), (f"The last epoch ({last_epoch})", -1)):
        (table,) = sections[heading]["tables"]
        assert table["head"] == ["step", "sample", "∂loss/∂w", "loss"]
        data = []
        for row in table["rows"]:
            m = re.fullmatch(r"x = (\S+), y = (\S+)", row[1])
            assert m, row
            data.append((number(m.group(1)), number(m.group(2))))
        assert len(data) == doc["data_size"]
        after = history[epoch]["params"]["w"]
        if epoch == 0:  # the weight before the first step, from the one after the epoch
            start = after
            for x, y in reversed(data):
                start = (start - 2 * lr * x * y) / (1 - 2 * lr * x * x)
        else:
            start = history[epoch - 1]["params"]["w"]
        *steps, (end,) = _epoch(start, lr, data)
        assert math.isclose(end, after, rel_tol=1e-5)
        for j, (row, (_, grad, step_loss)) in enumerate(zip(table["rows"], steps, strict=True)):
            assert int(row[0]) == j + 1
            assert math.isclose(number(row[2]), grad, rel_tol=1e-3, abs_tol=1e-5), (row, grad)
            assert math.isclose(number(row[3]), step_loss, rel_tol=1e-3, abs_tol=1e-10)
        assert close(table["rows"][-1][3], history[epoch]["loss"])  # an epoch's loss: its last
    clean(driver, t.path)


# ---- pictures ----------------------------------------------------------------------------


def _png_size(picture: bytes) -> tuple[int, int]:
    assert picture.startswith(PNG)
    width, height = struct.unpack(">II", picture[16:24])
    return width, height


def test_screenshots(driver: Any, pages: dict[str, Any], artifacts: Path) -> None:
    """The neuron mid-way through its backward pass with a node selected (README's picture,
    rewritten with UPDATE_README=1), the network at its final state, the training page."""
    from selenium.webdriver.common.keys import Keys

    g = pages["neuron"]
    show(driver, g.path, 1100, 900)
    middle = len(g.order) + len(g.reverse) // 2
    press(driver, *[Keys.ARROW_RIGHT] * middle)
    w0 = next(str(n["id"]) for n in g.nodes if n["display_name"] == "w0")
    css(driver, f'svg.bp-graph g.bp-node[data-node="{w0}"]').click()
    driver.execute_script("document.querySelector('section.bp-walk').scrollIntoView()")
    assert differences(g, middle, state(driver)) == []
    colours = driver.execute_script(
        "const stroke = (s) => getComputedStyle(document.querySelector(s)).stroke;"
        "return [stroke('.bp-edge.bp-current path'), stroke('g.bp-node.bp-from rect'),"
        " stroke('g.bp-node.bp-to rect'), document.querySelector('g.bp-node.bp-from')"
        "  .classList.contains('bp-on-path')]"
    )
    assert colours[3], "the step's node should lie on the selected paths here"
    assert colours[0] == colours[1] == colours[2], "the step's boxes lose their highlight"
    picture = driver.get_screenshot_as_png()
    assert _png_size(picture) == (1100, 900)
    (artifacts / "neuron-step-through.png").write_bytes(picture)
    if os.environ.get("UPDATE_README") == "1":
        README_PICTURE.write_bytes(picture)
    clean(driver, g.path)

    network = pages["network"]
    show(driver, network.path, 1100, 900)
    press(driver, Keys.END)
    driver.execute_script("document.querySelector('section.bp-walk').scrollIntoView()")
    (artifacts / "network.png").write_bytes(driver.get_screenshot_as_png())
    clean(driver, network.path)

    training = pages["training"]
    show(driver, training.path, 1100, 900)
    (artifacts / "training.png").write_bytes(driver.get_screenshot_as_png())
    clean(driver, training.path)


def test_readme_picture_is_a_png() -> None:
    """README shows docs/step-through.png (UPDATE_README=1 rewrites it from
    test_screenshots)."""
    assert _png_size(README_PICTURE.read_bytes()) == (1100, 900)


def test_a_node_with_too_many_paths_to_list_still_lights_them(driver: Any, tmp_path: Path) -> None:
    """Past the listing's bounds the page counts a node's paths and still highlights every
    wire on them: here x reaches the output through a chain too long to list."""
    program = tmp_path / "chain.bp"
    program.write_text("t = x\n" + "t = t * 1.5 + y\n" * 80 + "f = t\n")
    page = tmp_path / "chain.html"
    done = subprocess.run(
        [sys.executable, "-m", "backprop_cli", "grad", "--file", str(program), "x=1", "y=2",
         "--no-torch", "--no-symbolic", "-o", str(page)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    show(driver, page)
    x = driver.execute_script(
        "return [...document.querySelectorAll('.bp-node')].find("
        "n => n.querySelector('.bp-title').textContent.trim() === 'x').dataset.node"
    )
    driver.execute_script(
        f"document.querySelector('.bp-node[data-node=\"{x}\"]')"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}))"
    )
    lit = driver.execute_script(
        "return [...document.querySelectorAll('.bp-edge.bp-on-path')].map(e => e.dataset.edge)"
    )
    on_nodes = driver.execute_script(
        "return document.querySelectorAll('.bp-node.bp-on-path').length"
    )
    detail = driver.execute_script(
        f"return document.querySelector('.bp-detail[data-detail=\"{x}\"]').textContent"
    )
    assert "too many or too long to list" in detail
    # x's one path, as explain lists it: its wires and the nodes along it
    report = json.loads(
        subprocess.run(
            [sys.executable, "-m", "backprop_cli", "explain", "--file", str(program), "x=1",
             "y=2", "--wrt", "x", "--format", "json"],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout
    )  # fmt: skip
    (path,) = report["partials"][0]["paths"]
    assert len(lit) == path["length"] > 80 and on_nodes == path["length"] + 1
    assert not driver.get_log("browser")


def test_a_graph_without_wires_ends_with_its_seed_gradient(driver: Any, tmp_path: Path) -> None:
    page = tmp_path / "x.html"
    done = subprocess.run(
        [sys.executable, "-m", "backprop_cli", "grad", "x", "x=3", "--no-torch", "-o", str(page)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    show(driver, page)
    grad = "return document.querySelector('.bp-node .bp-live-grad').textContent"
    assert driver.execute_script(grad) == ""
    driver.find_element("css selector", 'button[data-action="next"]').click()
    assert driver.execute_script(grad) == "1"  # the last step: ∂x/∂x = 1, final
    assert driver.execute_script("return document.querySelector('.bp-node.bp-final') !== null")
    assert not driver.get_log("browser")
