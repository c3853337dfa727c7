"""The corpus of hostile and edge inputs: each line gives the arguments (and stdin), the
exit code expected and a fragment of the message; every one must end cleanly and fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import run

CORPUS = sorted((Path(__file__).parent / "corpus").glob("hostile*.jsonl"))
CASES = [
    json.loads(line) for path in CORPUS for line in path.read_text().splitlines() if line.strip()
]


def test_the_corpus_is_large():
    assert len(CASES) >= 300


@pytest.mark.parametrize("case", CASES, ids=[repr(c["args"])[:60] for c in CASES])
def test_corpus_case(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    result = run(*case["args"], stdin=case.get("stdin"))
    assert time.monotonic() - start < 30
    assert result.code == case["code"], result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    if case["code"] == 2:
        first = result.stderr.splitlines()[0]
        assert first.startswith("error: "), first
        assert case["fragment"] in result.stderr, result.stderr
    elif case["fragment"]:
        assert case["fragment"] in result.stderr + result.stdout
