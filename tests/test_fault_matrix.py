"""The fault matrix: every fault the local org can inject, on both write routes. Whatever happens, the
invariants hold (nothing outside the plan changes, posted invoices, their lines and billed sources are
untouched, no source is released while a line or invoice that billed it is not cancelled, the journal agrees
with the org) and every eligible record reaches its target within a few invocations, the exit codes saying
which. A row that fails holds back what depends on it until the next invocation, so a chain (line, invoice,
source) can take one invocation per link under heavy faults."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.report import Report, RunResult
from sfcleanup.worker import Worker
from tests.oracle import differences, expected_after, journal_consistent, released_too_early
from tests.support import make_client, make_org

FAULTS = {
    "locks-10pct": FaultProfile(seed=11, lock_wait_s=0.05, lock_failure_rate=0.10),
    "locks-50pct": FaultProfile(seed=12, lock_wait_s=0.05, lock_failure_rate=0.50),
    "503-bursts": FaultProfile(seed=13, lock_wait_s=0.05, unavailable_rate=0.15, unavailable_burst=3),
    "reset-after-write": FaultProfile(seed=14, lock_wait_s=0.05, reset_after_write_rate=0.25),
    "timeouts": FaultProfile(seed=15, lock_wait_s=0.05, timeout_rate=0.15),
    "session-expiry": FaultProfile(seed=16, lock_wait_s=0.05, session_expiry_after_calls=6),
    "concurrent-limit-403": FaultProfile(seed=17, lock_wait_s=0.05, concurrent_limit_rate=0.25),
    "bulk-job-failed": FaultProfile(seed=18, lock_wait_s=0.05, bulk_job_failure_rate=1.0),
    "bulk-partial-results": FaultProfile(seed=19, lock_wait_s=0.05, bulk_unprocessed_rate=0.3),
}


# Two for a fault that outlasts one invocation's retries, plus one per link of the longest dependency chain
# (line, invoice) whose write can fail in one invocation and hold back the next link.
INVOCATIONS = 4


def _short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.005))


def _invoke(org: object, tmp_path: Path, run_id: str, route: str, reserve: float = 0.2) -> Report:
    settings = load_settings(
        None, journal_dir=tmp_path / "j", api_reserve=reserve, write={"route": route, "bulk_poll_max_s": 0.05}
    )
    worker = Worker(make_client(org, attempts=12), settings, sleep=_short_sleep)  # type: ignore[arg-type]
    return worker.apply(worker.prepare([run_id]))


@pytest.mark.parametrize("route", ["composite", "bulk"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_fault_matrix(tmp_path: Path, fault: str, route: str) -> None:
    """Under the fault, at most four invocations reach the oracle state with every invariant kept."""
    org, info = make_org("demo", FAULTS[fault])
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    codes = []
    for _ in range(INVOCATIONS):
        report = _invoke(org, tmp_path, run_id, route)
        codes.append(report.exit_code)
        after = org.store.snapshot()
        # The invariants hold after every invocation, finished or not.
        assert journal_consistent(tmp_path / "j" / f"{run_id}.jsonl", before, after) == []
        assert released_too_early(before, after, run_id) == []
        if report.exit_code is ExitCode.CLEAN:
            break
        assert report.exit_code in (ExitCode.ROW_FAILURES, ExitCode.STOPPED)
    assert codes[-1] is ExitCode.CLEAN, codes
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []


@pytest.mark.parametrize("route", ["composite", "bulk"])
def test_daily_limit_stops_cleanly_and_the_next_window_finishes(tmp_path: Path, route: str) -> None:
    """The daily-limit 403 stops the run with exit 3 having kept every invariant; once the 24-hour window
    rolls, the next invocation finishes it."""
    org, info = make_org("demo", FaultProfile(seed=20, lock_wait_s=0.05))
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    settings = load_settings(
        None, journal_dir=tmp_path / "j", api_reserve=0.0, write={"route": route, "bulk_poll_max_s": 0.05}
    )
    worker = Worker(make_client(org), settings, sleep=_short_sleep)
    prepared = worker.prepare([run_id])
    # Other integrations spend the allowance while this one writes: three calls are left.
    org.profile = org.profile.model_copy(update={"daily_api_limit": org.api_used + 3})
    first = worker.apply(prepared)
    assert first.exit_code is ExitCode.STOPPED and first.runs[0].status is RunResult.STOPPED
    assert "daily API limit" in (first.runs[0].message or "")
    assert journal_consistent(tmp_path / "j" / f"{run_id}.jsonl", before, org.store.snapshot()) == []
    org.api_used = 0  # the rolling window moves on
    org.profile = org.profile.model_copy(update={"daily_api_limit": 100_000})
    second = _invoke(org, tmp_path, run_id, route, reserve=0.0)
    assert second.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []


def test_reserve_stops_before_the_limit(tmp_path: Path) -> None:
    """While writing, the worker stops (exit 3, resumable) as soon as the org's usage reaches the reserve left
    for the rest of the business, without spending it."""
    org, info = make_org("demo", FaultProfile(seed=21, lock_wait_s=0.05, daily_api_limit=100))
    run_id = info.runs["failed_run"]
    settings = load_settings(None, journal_dir=tmp_path / "j", api_reserve=0.5, write={"route": "composite"})
    worker = Worker(make_client(org), settings, sleep=_short_sleep)
    prepared = worker.prepare([run_id])
    org.api_used = 47  # others spent most of the day's allowance: three calls above the reserve of 50 remain
    report = worker.apply(prepared)
    assert report.exit_code is ExitCode.STOPPED
    assert "reserve" in (report.runs[0].message or "")
    assert org.api_used <= 50
