"""Adaptive concurrency: the controller's arithmetic (pure, no clock), and a clean-up that adapts under the local
org's lock faults and still ends exactly where it must."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.salesforce.concurrency import CONCURRENT_REQUEST_LIMIT, Concurrency, Observation, Tuning, shared
from sfcleanup.worker import Worker
from tests.oracle import differences, expected_after
from tests.support import brief_sleep, make_client, make_org


class Session:
    """Anything a weak reference can point at stands for the client here."""


CLEAN = Observation(rows=1000, locked=0, seconds_per_row=0.0015)


def test_the_level_grows_by_one_for_each_clean_call_until_the_first_trouble() -> None:
    """Slow start: at 4, four clean calls make 8."""
    level = Concurrency(4)
    for _ in range(4):
        level.observe(CLEAN)
    assert level.level == 8


def test_after_a_back_off_the_level_grows_by_one_after_as_many_clean_calls_as_it_has() -> None:
    """At 8, a push-back makes 4; four clean calls then make 5, and five more make 6."""
    level = Concurrency(8)
    level.observe(Observation(rows=1000, pushed_back=True))
    assert level.level == 4
    for _ in range(4):
        level.observe(CLEAN)
    assert level.level == 5
    for _ in range(5):
        level.observe(CLEAN)
    assert level.level == 6


def test_saturation_ends_slow_start_without_lowering_the_level() -> None:
    """Latency per row well above the best seen holds the level and makes growth additive from then on."""
    level = Concurrency(4)
    level.observe(CLEAN)
    assert level.level == 5
    level.observe(Observation(rows=1000, seconds_per_row=0.003))
    assert level.level == 5
    for _ in range(4):
        level.observe(CLEAN)
    assert level.level == 5
    level.observe(CLEAN)
    assert level.level == 6


def test_a_few_locked_rows_in_a_small_call_are_chance_not_contention() -> None:
    """2 of 15 rows locked is within the tolerated share's spread; 6 of 15, or 20% of 1,000, is contention."""
    level = Concurrency(8)
    level.observe(Observation(rows=15, locked=2))
    assert level.decreases == 0
    level.observe(Observation(rows=15, locked=6))
    assert level.decreases == 1
    level.observe(Observation(rows=1000, locked=200))
    assert level.decreases == 2


def test_lock_failures_above_the_tolerated_share_halve_the_level() -> None:
    """A call with 20% of its rows locked halves 9 to 4; 5% (the org's everyday rate) does not."""
    level = Concurrency(8)
    level.observe(Observation(rows=1000, locked=50, seconds_per_row=0.0015))
    assert (level.level, level.decreases) == (9, 0)
    level.observe(Observation(rows=1000, locked=200, seconds_per_row=0.0015))
    assert (level.level, level.decreases) == (4, 1)


def test_a_push_back_halves_the_level_down_to_the_floor_and_no_further() -> None:
    """A 503 or a concurrent-request 403 while a call ran halves the level, never below the floor."""
    level = Concurrency(4, Tuning(floor=2))
    for _ in range(5):
        level.observe(Observation(rows=200, pushed_back=True))
    assert (level.level, level.lowest) == (2, 2)


def test_latency_well_above_the_best_seen_holds_the_level() -> None:
    """Rows taking twice as long as the best seen say the org is saturated: no growth, no fall."""
    level = Concurrency(2)
    level.observe(CLEAN)
    level.observe(CLEAN)
    assert level.level == 4
    for _ in range(10):
        level.observe(Observation(rows=1000, seconds_per_row=0.003))
    assert level.level == 4


def test_the_level_never_passes_the_documented_limit() -> None:
    """Growth stops at Salesforce's 25 concurrent long-running requests; a start above it is clamped."""
    assert Concurrency(100).level == CONCURRENT_REQUEST_LIMIT
    level = Concurrency(20)
    for _ in range(1000):
        level.observe(CLEAN)
    assert level.level == level.highest == CONCURRENT_REQUEST_LIMIT


def test_a_level_is_shared_by_one_session_and_kind_only() -> None:
    """Phases of one session continue from the level the last one reached; another session starts afresh."""
    first, second = Session(), Session()
    assert shared(first, "composite", 4) is shared(first, "composite", 9)
    assert shared(first, "composite", 4) is not shared(first, "bulk jobs", 4)
    assert shared(second, "composite", 9).level == 9


def test_a_clean_up_under_lock_faults_adapts_and_ends_exactly_at_the_oracle(tmp_path: Path) -> None:
    """Composite route, a third of the writes refused on a lock: the level falls and rises as the org answers,
    each phase logs the level it ran at, and the org ends exactly as the oracle says."""
    org, info = make_org("demo", faults=FaultProfile(seed=5, lock_wait_s=0.05, lock_failure_rate=0.35))
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    settings = load_settings(
        None, journal_dir=tmp_path / "j", write={"route": "composite", "batch_size": 20, "lock_retry_rounds": 12}
    )
    worker = Worker(make_client(org, attempts=10), settings, sleep=brief_sleep)
    with capture_logs() as logs:
        report = worker.apply(worker.prepare([run_id]))
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    levels = [entry for entry in logs if entry["event"] == "write.concurrency"]
    assert {entry["phase"] for entry in levels} == {"invoice_lines", "invoices", "usage_summaries", "order_products"}
    assert any(entry["backoffs"] > 0 for entry in levels)
    assert all(
        1 <= entry["lowest"] <= entry["in_flight"] <= entry["highest"] <= CONCURRENT_REQUEST_LIMIT for entry in levels
    )
