"""The estimate made before writing covers what the writing then costs, on either route, locks and all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.worker import Worker
from tests.support import brief_sleep, make_client, make_org


@pytest.mark.parametrize("route", ["composite", "bulk"])
@pytest.mark.parametrize("lock_failure_rate", [0.0, 0.05])
def test_the_calls_a_clean_up_makes_stay_within_its_estimate(
    tmp_path: Path, route: str, lock_failure_rate: float
) -> None:
    """Writing, verifying and the final status take no more calls than `preflight.estimate_run` counted."""
    org, info = make_org("demo", faults=FaultProfile(seed=3, lock_wait_s=0.05, lock_failure_rate=lock_failure_rate))
    settings = load_settings(None, journal_dir=tmp_path / "j", write={"route": route, "bulk_poll_max_s": 0.05})
    client = make_client(org, attempts=10)
    # Polls are calls: on the Bulk route they are spaced as bulk_poll_max_s says (not cut to brief_sleep's few
    # milliseconds), so how many a job takes does not depend on how much CPU its threads get on a busy machine.
    sleep = (lambda seconds: time.sleep(min(seconds, 0.05))) if route == "bulk" else brief_sleep
    worker = Worker(client, settings, sleep=sleep)
    prepared = worker.prepare([info.runs["failed_run"]])
    before = client.usage.calls
    report = worker.apply(prepared)
    assert report.exit_code is ExitCode.CLEAN
    assert 0 < client.usage.calls - before <= prepared.estimated_calls
