"""SymPy's budget is one clock per command: children share a Deadline, and a child that a
limit ends (the wall clock, the CPU-time limit's SIGXCPU or SIGKILL) is a timeout, reported
as `budget`, while a real failure stays an error. Deaths are caused on purpose (a child that
signals itself, a CPU limit forced tiny), never by loading the machine, and no assertion
depends on how fast it is."""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any

import pytest

from backprop_cli.checks import sandbox, symbolic
from backprop_cli.checks.sandbox import Bounded, Deadline
from tests.conftest import run

SLACK = 0.25  # seconds between reading what is left of a budget and starting the child


@pytest.fixture(autouse=True)
def _no_spare_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """A child started early was forked before the test's patches: every child here is
    forked from the patched process."""
    monkeypatch.setattr(sandbox, "_take_spare", lambda: None)


def sleeps(*, emit: Any) -> None:
    emit({"stage": "raw", "partials": {}})
    time.sleep(60)


def quick(*, emit: Any) -> None:
    emit({"done": True})


def dies_by(number: int, *, emit: Any) -> None:
    emit({"sent": "before dying"})
    os.kill(os.getpid(), number)
    time.sleep(60)


def exits_with(code: int, *, emit: Any) -> None:
    os._exit(code)


def spins_past_its_cpu_limit(*, emit: Any) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 5))
    emit({"spinning": True})
    while True:
        pass


def limits_after_spending_cpu(*, emit: Any) -> None:
    """As a child started early does: CPU time spent (on imports) before the limit is set."""
    start = time.process_time()
    while time.process_time() - start < 0.5:
        pass
    sandbox._limit_cpu(7)
    used = time.process_time()
    emit({"soft": resource.getrlimit(resource.RLIMIT_CPU)[0], "used": used})


# ---- one deadline for several children ------------------------------------------------------


def test_the_clock_starts_with_the_first_child():
    deadline = Deadline(3.0)
    assert deadline.left() == 3.0  # nothing has started: nothing is spent
    job = Bounded(quick, (), deadline=deadline, memory_mb=256)
    assert deadline.at is not None and job.deadline == deadline.at
    assert job.collect() == [{"done": True}] and job.status == "done"
    assert 0.0 < deadline.left() <= 3.0


def test_a_second_child_gets_only_what_the_first_left():
    deadline = Deadline(0.5)
    first = Bounded(sleeps, (), deadline=deadline, memory_mb=256)
    first.collect()
    assert first.status == "timeout"
    second = Bounded(sleeps, (), deadline=deadline, memory_mb=256)
    assert second.status == "timeout" and second.pid is None  # no child was started at all
    assert second.collect() == []
    assert second.deadline == first.deadline


def test_a_child_after_a_quick_one_shares_its_deadline():
    deadline = Deadline(30.0)
    first = Bounded(quick, (), deadline=deadline, memory_mb=256)
    first.collect()
    second = Bounded(quick, (), deadline=deadline, memory_mb=256)
    assert second.deadline == first.deadline
    assert second.collect() == [{"done": True}] and second.status == "done"


def test_seconds_alone_still_give_a_child_its_own_budget():
    job = Bounded(sleeps, (), seconds=0.3, memory_mb=256)
    assert job.collect() == [{"stage": "raw", "partials": {}}]
    assert job.status == "timeout"


# ---- how a child ended ----------------------------------------------------------------------


@pytest.mark.parametrize("number", [signal.SIGXCPU, signal.SIGKILL])
def test_a_child_ended_by_a_limit_is_a_timeout(number):
    job = Bounded(dies_by, (number,), seconds=60, memory_mb=256)
    assert job.collect() == [{"sent": "before dying"}]  # what it sent first stands
    assert job.status == "timeout"


def test_a_child_past_its_cpu_limit_is_a_timeout():
    job = Bounded(spins_past_its_cpu_limit, (), seconds=120, memory_mb=256)
    assert job.collect() == [{"spinning": True}]
    assert job.status == "timeout"


def test_a_child_killed_by_another_signal_is_an_error_that_names_it():
    job = Bounded(dies_by, (signal.SIGUSR1,), seconds=60, memory_mb=256)
    messages = job.collect()
    assert job.status == "error"
    assert messages[-1] == {"error": "the child process was killed by SIGUSR1"}


def test_a_child_that_exits_badly_without_a_word_is_an_error():
    job = Bounded(exits_with, (3,), seconds=60, memory_mb=256)
    assert job.collect() == [{"error": "the child process ended with exit status 3"}]
    assert job.status == "error"


def test_an_exception_in_the_child_is_an_error_with_its_own_message():
    def broken(*, emit: Any) -> None:
        raise ValueError("no such form")

    job = Bounded(broken, (), seconds=60, memory_mb=256)
    assert job.collect() == [{"error": "ValueError: no such form"}]  # no second message
    assert job.status == "error"


def test_a_death_note_reaches_a_reader_of_the_stream_too():
    job = Bounded(dies_by, (signal.SIGUSR1,), seconds=60, memory_mb=256)
    assert [m for m in job.stream() if "error" in m] == [
        {"error": "the child process was killed by SIGUSR1"}
    ]


def test_the_cpu_limit_leaves_the_whole_budget_to_the_job():
    """The limit counts from the process's start: what was spent before comes on top."""
    job = Bounded(limits_after_spending_cpu, (), seconds=60, memory_mb=256)
    (got,) = job.collect()
    assert got["used"] >= 0.5
    assert got["soft"] >= got["used"] + 7 + sandbox.CPU_SLACK - 0.1


# ---- the commands ---------------------------------------------------------------------------


def _record_children(monkeypatch: Any) -> list[Bounded]:
    """Every Bounded job the command starts, in order."""
    started: list[Bounded] = []
    real_init = Bounded.__init__

    def recording(self: Bounded, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        started.append(self)

    monkeypatch.setattr(Bounded, "__init__", recording)
    return started


def _order_2_states(budget: str, state: str) -> dict[str, Any]:
    """`grad x*y --order 2` with this budget; both SymPy states must be `state`."""
    r = run("grad", "x*y", "x=1", "y=2", "--order", "2", "--no-torch",
            "--symbolic-timeout", budget, "--format", "json")  # fmt: skip
    assert r.code == 0, r.stderr
    data: dict[str, Any] = r.json()
    assert data["checks"]["symbolic"]["state"] == state
    assert data["second_order"]["checks"]["symbolic"]["state"] == state
    return data


def test_grad_order_2_spends_one_budget(monkeypatch):
    """The first derivatives take the whole budget; the second derivatives' SymPy child gets
    none of a second one."""
    started = _record_children(monkeypatch)
    monkeypatch.setattr(symbolic, "partials", lambda *args, emit: time.sleep(60))
    data = _order_2_states("1", "budget")
    assert data["hessian"] == [[0.0, 1.0], [1.0, 0.0]]  # the numeric results stand
    first, second = started
    assert second.deadline <= first.deadline + SLACK


def test_grad_order_2_gives_the_second_child_what_is_left(monkeypatch):
    started = _record_children(monkeypatch)
    _order_2_states("60", "done")
    first, second = started
    assert first.deadline - SLACK <= second.deadline <= first.deadline + SLACK


def _sigxcpu_at_once(seconds: float) -> None:
    os.kill(os.getpid(), signal.SIGXCPU)  # as the kernel does at the CPU-time limit


def test_grad_child_at_its_cpu_limit_says_budget(monkeypatch):
    monkeypatch.setattr(sandbox, "_limit_cpu", _sigxcpu_at_once)
    r = run("grad", "sin(x)*y", "x=1", "y=2", "--no-torch", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["checks"]["symbolic"]["state"] == "budget"
    assert data["checks"]["symbolic"]["error"] is None
    assert {p["status"]["symbolic"] for p in data["partials"]} == {"budget"}
    table = run("grad", "sin(x)*y", "x=1", "y=2", "--no-torch")
    assert table.code == 0, table.stderr
    assert "skipped: budget" in table.stdout and "SymPy failed" not in table.stdout


def test_grad_child_at_its_cpu_limit_keeps_what_it_sent(monkeypatch):
    def raw_then_sigxcpu(*args: Any, emit: Any) -> None:
        emit({"stage": "raw", "partials": {"x": {"formula": "y", "value": 2.0}}})
        os.kill(os.getpid(), signal.SIGXCPU)

    monkeypatch.setattr(symbolic, "partials", raw_then_sigxcpu)
    r = run("grad", "x*y", "x=1", "y=2", "--no-torch", "--format", "json")
    assert r.code == 0, r.stderr
    data = r.json()
    assert data["checks"]["symbolic"]["state"] == "partial"
    status = {p["element"]: p["status"]["symbolic"] for p in data["partials"]}
    assert status == {"x": "ok", "y": "budget"}


def test_hessian_child_at_its_cpu_limit_says_budget(monkeypatch):
    monkeypatch.setattr(sandbox, "_limit_cpu", _sigxcpu_at_once)
    r = run("hessian", "x*y", "x=1", "y=2", "--no-torch", "--format", "json")
    assert r.code == 0, r.stderr
    assert r.json()["checks"]["symbolic"]["state"] == "budget"


def test_a_genuine_sympy_failure_is_still_an_error(monkeypatch):
    def fails(*args: Any, emit: Any) -> None:
        raise ValueError("SymPy could not")

    monkeypatch.setattr(symbolic, "partials", fails)
    r = run("grad", "x*y", "x=1", "y=2", "--no-torch", "--format", "json")
    assert r.code == 0, r.stderr
    sym = r.json()["checks"]["symbolic"]
    assert sym["state"] == "error" and sym["error"] == "ValueError: SymPy could not"
    table = run("grad", "x*y", "x=1", "y=2", "--no-torch")
    assert "SymPy failed" in table.stdout
