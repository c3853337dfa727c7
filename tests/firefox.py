"""A headless Firefox for the pages' tests, driven through its own WebDriver BiDi remote
agent over a websocket (websocket-client): no driver program, nothing downloaded.

`Firefox()` starts the system's `firefox-esr` (or `firefox`) with a fresh profile whose
prefs keep it off the network (no updates, telemetry, captive-portal or connectivity
checks, prefetching, remote settings or safe browsing), opens a BiDi session and records
every `log.entryAdded` and `network.beforeRequestSent` event. Used as a context manager it
ends the browser and removes the profile however the block ends.

Where no Firefox is on PATH the tests skip; with BACKPROP_REQUIRE_FIREFOX=1 they fail."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

REQUIRED = os.environ.get("BACKPROP_REQUIRE_FIREFOX") == "1"
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
EVENTS = ["log.entryAdded", "network.beforeRequestSent"]

# Normal prefs: the browser asks nothing of any server while the tests run.
PREFS: dict[str, Any] = {
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.checkInstallTime": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "app.normandy.api_url": "",
    "app.shield.optoutstudies.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.newtabpage.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.discovery.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.newtabpage.activity-stream.telemetry": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.search.update": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.tabs.warnOnClose": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.policy.firstRunURL": "",
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.shutdownPingSender.enabled": False,
    "toolkit.telemetry.firstShutdownPing.enabled": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.prefetch-next": False,
    "network.dns.disablePrefetch": True,
    "network.predictor.enabled": False,
    "network.http.speculative-parallel-limit": 0,
    "network.trr.mode": 5,
    "services.settings.server": "data:,#remote-settings-off/v1",
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.blocklist.enabled": False,
    "geo.provider.network.url": "",
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
}


def binary() -> str | None:
    return shutil.which("firefox-esr") or shutil.which("firefox")


def require_firefox() -> str:
    """The Firefox binary; skip the calling test (fail it, under BACKPROP_REQUIRE_FIREFOX=1)
    without one."""
    found = binary()
    if found is not None:
        return found
    if REQUIRED:
        pytest.fail("BACKPROP_REQUIRE_FIREFOX=1, but no firefox-esr or firefox on PATH")
    pytest.skip("needs firefox-esr or firefox on PATH")


class BidiError(RuntimeError):
    """An error answer to a command, or a script that threw."""


def unwrap(remote: dict[str, Any]) -> Any:
    """A BiDi RemoteValue as Python: strings, numbers (NaN, ±Infinity and -0 included),
    booleans, null and undefined (None), arrays and plain objects; any other value (a DOM
    node, a function, …) stays the RemoteValue it is."""
    kind = remote["type"]
    if kind in ("undefined", "null"):
        return None
    if kind in ("string", "boolean"):
        return remote["value"]
    if kind == "number":
        value = remote["value"]
        special = {"NaN": float("nan"), "-0": -0.0, "Infinity": float("inf"),
                   "-Infinity": float("-inf")}  # fmt: skip
        return special[value] if isinstance(value, str) else value
    if kind == "bigint":
        return int(remote["value"])
    if kind in ("array", "set"):
        return [unwrap(item) for item in remote.get("value", [])]
    if kind in ("object", "map"):
        out = {}
        for key, value in remote.get("value", []):
            out[key if isinstance(key, str) else unwrap(key)] = unwrap(value)
        return out
    return remote


class Firefox:
    """One headless Firefox and its BiDi session; `events` holds every event received."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.context = ""
        self._ids = itertools.count(1)
        self._ws: Any = None
        self._process: subprocess.Popen[str] | None = None
        self._profile = Path(tempfile.mkdtemp(prefix="backprop-firefox-"))
        try:
            self._start(require_firefox())
        except BaseException:
            self.close()
            raise

    # ---- start and stop ------------------------------------------------------------------

    def _start(self, program: str) -> None:
        import websocket

        (self._profile / "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items())
        )
        env = {**os.environ, "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1"}
        argv = [program, "--headless", "--no-remote", "--profile", str(self._profile)]
        self._process = subprocess.Popen(
            [*argv, "--remote-debugging-port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        found: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_stderr, args=(found,), daemon=True).start()
        try:
            url = found.get(timeout=max(self.timeout, 90.0))  # a busy machine starts it slowly
        except queue.Empty:
            url = None
        if url is None:  # it ended, or never said where WebDriver BiDi listens
            said = "".join(self.stderr[-20:])
            raise BidiError(f"Firefox gave no WebDriver BiDi address:\n{said}")
        self._ws = websocket.create_connection(
            url.rstrip("/") + "/session", timeout=max(self.timeout, 90.0), suppress_origin=True
        )
        self.command("session.new", {"capabilities": {}}, timeout=max(self.timeout, 90.0))
        self.command("session.subscribe", {"events": EVENTS})
        tree = self.command("browsingContext.getTree", {"maxDepth": 0})
        self.context = tree["contexts"][0]["context"]

    def _read_stderr(self, found: queue.Queue[str | None]) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self.stderr.append(line)
            match = LISTENING.search(line)
            if match:
                found.put(match.group(1))
        found.put(None)  # the browser has ended

    def close(self) -> None:
        """End the session and the browser (every process it started) and remove the
        profile; safe to call more than once."""
        asked = False
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self.command("browser.close", {}, timeout=3.0)
                asked = True
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(timeout=5 if asked else 0.1)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)  # its content processes, if any remain
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Firefox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- commands ------------------------------------------------------------------------

    def command(self, method: str, params: dict[str, Any], timeout: float | None = None) -> Any:
        """Send one command and wait for its answer, keeping the events that arrive first."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BidiError(f"{method}: no answer in {timeout or self.timeout} s")
            self._ws.settimeout(left)
            message = json.loads(self._ws.recv())
            if message.get("type") == "event":
                self.events.append(message)
            elif message.get("id") == ident:
                if message.get("type") == "error":
                    raise BidiError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message.get("result")

    def navigate(self, url: str) -> None:
        self.command(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (awaiting a promise) and return its value."""
        result = self.command(
            "script.evaluate",
            {
                "expression": expression,
                "target": {"context": self.context},
                "awaitPromise": True,
                "resultOwnership": "none",
                "serializationOptions": {"maxObjectDepth": 16},
            },
        )
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise BidiError(f"script threw: {details.get('text')}\n{expression}")
        return unwrap(result["result"])

    def drain(self, wait: float = 0.2) -> None:
        """Collect the events that arrive within `wait` seconds (a round trip flushes the
        ones already sent)."""
        self.evaluate(f"new Promise(r => setTimeout(r, {int(wait * 1000)}))")

    def events_of(self, method: str) -> list[dict[str, Any]]:
        return [e["params"] for e in self.events if e.get("method") == method]
