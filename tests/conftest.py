"""Shared helpers: run the CLI in-process with stdout and stderr kept apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

from backprop_cli.cli.app import app

settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Where CI says a system tool is required, its tests must run, not skip."""
    import shutil

    if os.environ.get("BACKPROP_REQUIRE_LATEX") == "1" and shutil.which("pdflatex") is None:
        pytest.exit("BACKPROP_REQUIRE_LATEX=1, but pdflatex is not on PATH", returncode=3)


# Environment a user's shell may export that changes what Rich prints: every test starts
# from the same terminal (88 columns, no forced colour) and sets its own where it needs to.
TERMINAL_VARIABLES = ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "LINES")


@pytest.fixture(autouse=True)
def _same_terminal_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "88")
    for name in TERMINAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(*args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Result(result.exit_code, result.stdout, result.stderr)


def cli_in_fresh_python(args: list[str], then: str) -> subprocess.CompletedProcess[str]:
    """Run `backprop ARGS` in a new interpreter, then the assertions in `then` (Python code)."""
    code = (
        "import sys\n"
        "from backprop_cli.cli.app import main\n"
        f"sys.argv = ['backprop', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        f"{then}\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out
