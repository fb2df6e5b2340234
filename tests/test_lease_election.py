"""Lease election without tidy ids or clocks: however the workers' calls interleave, two never both proceed.

The fake org keeps lease records as a strict org may: ids random within the key prefix, every CreatedDate in
the same second, query rows in no order, and a little random latency on every call so that threads
interleave differently in every trial.
"""

from __future__ import annotations

import random
import string
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sfcleanup import billing
from sfcleanup.errors import AmbiguousWrite
from sfcleanup.lease import LEASE_CODE, RELEASED_CODE, LeaseHeld, LeaseLost, Leases
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.composite import SubResult
from tests.support import make_client

RUN_ID = "a1A5g0000000001EAA"
SAME_SECOND = "2026-11-26T07:00:00.000+0000"


class StrictLeaseOrg:
    """Just enough of an org for lease records: create, query (all pages at once), update."""

    api_version = "62.0"

    def __init__(self, rng: random.Random, *, after_create: Callable[[], None] | None = None) -> None:
        self._rng = rng
        self._lock = threading.Lock()
        self._after_create = after_create or (lambda: None)
        self.rows: dict[str, dict[str, Any]] = {}
        self.ids: list[str] | None = None  # when set, the ids to hand out, in turn

    def _latency(self) -> None:
        time.sleep(self._rng.random() * 0.002)

    def org_now(self) -> datetime:
        return datetime(2026, 11, 26, 7, 0, 30, tzinfo=UTC)

    def create_record(self, sobject: str, fields: dict[str, Any]) -> str:
        self._latency()
        with self._lock:
            if self.ids:
                record_id = self.ids.pop(0)
            else:
                record_id = "a1E" + "".join(self._rng.choices(string.ascii_letters + string.digits, k=12)) + "AAA"
            self.rows[record_id] = {
                **fields,
                "Id": record_id,
                "CreatedDate": SAME_SECOND,
                "LastModifiedDate": SAME_SECOND,
            }
        self._after_create()
        self._latency()
        return record_id

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        self._latency()
        with self._lock:
            rows = [dict(row) for row in self.rows.values()]
        self._rng.shuffle(rows)
        self._latency()
        return rows

    def update_record(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        self._latency()
        with self._lock:
            self.rows[record_id].update(fields)

    def composite_rounds(
        self, what: str, subrequests: list[dict[str, Any]], *, attempts: int | None = None
    ) -> list[SubResult]:
        raise NotImplementedError("no heartbeats in an election")

    def held(self) -> list[str]:
        return [row["blng__ErrorName__c"] for row in self.rows.values() if row["blng__ErrorCode__c"] == LEASE_CODE]


def _leases(org: StrictLeaseOrg, name: str) -> Leases:
    # Pauses a hundred times shorter than in production: the interleavings matter here, not the waiting.
    return Leases(org, name, 900, sleep=lambda s: time.sleep(s / 100))


def _race(org: StrictLeaseOrg, names: list[str]) -> dict[str, bool]:
    """Every worker acquires at once; which of them proceeded."""
    won: dict[str, bool] = {}

    def go(name: str) -> None:
        try:
            _leases(org, name).acquire(RUN_ID)
            won[name] = True
        except LeaseHeld:
            won[name] = False

    threads = [threading.Thread(target=go, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return won


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
def test_many_randomised_races_never_let_two_workers_proceed(workers: int) -> None:
    """Over many trials with random ids, one CreatedDate second and random latency, at most one worker
    proceeds, the others' records are released, and nearly always one does proceed."""
    rng = random.Random(20261126 + workers)
    one_winner = 0
    trials = 150
    for _ in range(trials):
        org = StrictLeaseOrg(rng)
        won = _race(org, [f"worker-{n}" for n in range(workers)])
        winners = [name for name, ok in won.items() if ok]
        assert len(winners) <= 1, won
        assert org.held() == winners
        one_winner += len(winners)
    assert one_winner >= trials * 0.9


def test_both_created_before_either_reads_agree_on_one_winner() -> None:
    """A creates, B creates, then both read both: exactly one proceeds, the first by (CreatedDate, Id)."""
    for seed in range(20):
        barrier = threading.Barrier(2)
        # A generous timeout: on a loaded machine one thread may start seconds after the other, and a broken
        # barrier would fail the trial for a reason that has nothing to do with the election.
        org = StrictLeaseOrg(random.Random(seed), after_create=lambda b=barrier: b.wait(timeout=120))
        won = _race(org, ["worker-A", "worker-B"])
        first = min(org.rows.values(), key=lambda row: row["Id"])["blng__ErrorName__c"]
        assert [name for name, ok in won.items() if ok] == [first]


@pytest.mark.parametrize("later_id_sorts_first", [True, False])
def test_a_worker_that_proceeded_alone_is_never_joined(later_id_sorts_first: bool) -> None:
    """A read its record alone and proceeded; B, creating later, sees A and withdraws, whichever id sorts first."""
    org = StrictLeaseOrg(random.Random(7))
    org.ids = (
        ["a1E5g00000000ZZAAA", "a1E5g0000000000AAA"]
        if later_id_sorts_first
        else ["a1E5g0000000000AAA", "a1E5g00000000ZZAAA"]
    )
    _leases(org, "worker-A").acquire(RUN_ID)
    with pytest.raises(LeaseHeld, match="worker-A"):
        _leases(org, "worker-B").acquire(RUN_ID)
    assert org.held() == ["worker-A"]


def test_lost_answer_on_a_read_back_record_is_not_created_twice() -> None:
    """A creation whose answer was lost but which the org did make is found by its nonce, not made again."""
    org = StrictLeaseOrg(random.Random(3))
    create = org.create_record

    def create_then_lose_answer(sobject: str, fields: dict[str, Any]) -> str:
        create(sobject, fields)
        raise AmbiguousWrite("connection reset after the request was sent")

    org.create_record = create_then_lose_answer  # type: ignore[method-assign]
    lease = _leases(org, "worker-A").acquire(RUN_ID)
    assert list(org.rows) == [lease.record_id]


def test_heartbeat_of_a_lease_taken_over_stops_the_worker(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """A worker whose lease another worker closed (judging it dead) learns it at its next heartbeat and stops."""
    org, info = demo
    run_id = info.runs["failed_run"]
    client: SalesforceClient = make_client(org)
    now = [datetime.now(UTC)]
    leases = Leases(client, "worker-A", 900, clock=lambda: now[0])
    lease = leases.acquire(run_id)
    client.update_record(billing.ERROR_LOG, lease.record_id, {"blng__ErrorCode__c": RELEASED_CODE})
    now[0] += timedelta(minutes=2)
    with pytest.raises(LeaseLost, match="took this run's lease over"):
        leases.heartbeat(lease)


def test_heartbeat_renews_a_lease_still_held(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """A due heartbeat writes the lease's summary and leaves the lease held."""
    org, info = demo
    run_id = info.runs["failed_run"]
    client = make_client(org)
    now = [datetime.now(UTC)]
    leases = Leases(client, "worker-A", 900, clock=lambda: now[0])
    lease = leases.acquire(run_id)
    now[0] += timedelta(minutes=2)
    leases.heartbeat(lease)
    row = next(r for r in org.store.snapshot()["blng__ErrorLog__c"] if r["Id"] == lease.record_id)
    assert row["blng__Summary__c"].startswith("sfcleanup alive at")
    assert row["blng__ErrorCode__c"] == LEASE_CODE
