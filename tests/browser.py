"""A headless Chromium for the pages' tests, driven through Selenium with the system's own
browser and driver only (Selenium Manager never downloads anything), with the browser's
console and its network log recorded.

Where chromium or chromedriver is missing the tests skip; with BACKPROP_REQUIRE_BROWSER=1
(as CI sets it) they fail instead."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRED = os.environ.get("BACKPROP_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    if shutil.which("chromium") is None:
        return "chromium is not on PATH"
    if not os.access(CHROMEDRIVER, os.X_OK):
        return f"{CHROMEDRIVER} is missing"
    return None


def require_browser() -> None:
    """Skip the calling test (or fail it, under BACKPROP_REQUIRE_BROWSER=1) without a browser."""
    why = _missing()
    if why is None:
        return
    if REQUIRED:
        pytest.fail(f"BACKPROP_REQUIRE_BROWSER=1, but {why}", pytrace=False)
    pytest.skip(f"needs a browser: {why}")


def start(profile: Path, width: int = 1100, height: int = 900) -> Any:
    """A new headless Chromium with its own profile folder, its console and performance
    (network) logs on."""
    require_browser()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(shutil.which("chromium"))
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    service = Service(CHROMEDRIVER, env={**os.environ, "SE_OFFLINE": "true"})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(10)
    driver.get("about:blank")  # leave the start page (and forget what it loaded)
    drain(driver)
    return driver


def requests(driver: Any) -> list[str]:
    """The URL of every request the page made since the last call (the performance log's
    Network.requestWillBeSent events; reading the log empties it)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def console_errors(driver: Any) -> list[str]:
    """The console's SEVERE entries since the last call: script errors, CSP violations,
    refused loads."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def drain(driver: Any) -> None:
    """Forget what both logs hold so far."""
    driver.get_log("browser")
    driver.get_log("performance")


def open_page(driver: Any, path: Path) -> None:
    """Load a page (with fresh logs) and wait until its script has set it up."""
    from selenium.webdriver.support.ui import WebDriverWait

    drain(driver)
    driver.get(path.as_uri())
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return !!document.querySelector('[data-bp-ready]')")
    )


def viewport(driver: Any, width: int, height: int, mobile: bool = False) -> None:
    """The page's viewport, exactly width × height CSS pixels (a phone's with `mobile`), on
    screen media."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
