"""The estimate made before writing covers what the writing then costs, on either route, locks and all."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sfcleanup.billing import Phase
from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.readiness import reader as readiness_reader
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
    # Worker.apply ends at the final status: the readiness section (commands.readiness) is not part of it.
    worker = Worker(client, settings, sleep=sleep, readiness_after=False)
    prepared = worker.prepare([info.runs["failed_run"]])
    before = client.usage.calls
    report = worker.apply(prepared)
    assert report.exit_code is ExitCode.CLEAN
    assert 0 < client.usage.calls - before <= prepared.estimated_calls


def test_the_readiness_section_is_in_the_estimate_only_when_it_follows(tmp_path: Path) -> None:
    """`--no-readiness` takes the readiness section's reads out of the estimate, and nothing else."""
    org, info = make_org("demo")
    settings = load_settings(None, journal_dir=tmp_path / "j")
    client = make_client(org)
    plans = [
        Worker(client, settings, readiness_after=after).prepare([info.runs["failed_run"]]) for after in (True, False)
    ]
    with_section, without = plans
    plan = without.plans[0]
    sources = len(plan.changes[Phase.ORDER_PRODUCTS]), len(plan.changes[Phase.USAGE_SUMMARIES])
    assert readiness_reader.estimated_calls(*sources) > 0
    assert with_section.estimated_calls - without.estimated_calls == readiness_reader.estimated_calls(*sources)
