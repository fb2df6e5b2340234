"""Bulk API 2.0 polling: backoff, timing by the job's own progress, and the deadline."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from pydantic import SecretStr

from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.errors import TransientExhausted
from sfcleanup.salesforce.bulk import BulkApi, Polling
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import no_wait_policy

INSTANCE = "https://acme.my.salesforce.com"
JOB = f"{INSTANCE}/services/data/v62.0/jobs/ingest/7505g0000000001AAA/"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def _api(clock: Clock, deadline_s: float = 600.0) -> BulkApi:
    connector = Connector(
        OrgSettings(auth=AuthMode.TOKEN), requests.Session(), lambda: OrgSession(INSTANCE, SecretStr("t"))
    )
    client = SalesforceClient(connector, api_version="62.0", retry=no_wait_policy(), timeout_s=5)
    polling = Polling(first_s=0.5, max_s=5.0, deadline_s=deadline_s, sleep=clock.sleep, monotonic=clock.monotonic)
    return BulkApi(client, polling)


def _state(state: str, processed: int) -> dict[str, object]:
    return {"id": "7505g0000000001AAA", "state": state, "numberRecordsProcessed": processed, "numberRecordsFailed": 0}


@responses.activate
def test_pauses_grow_until_progress_then_follow_the_rate() -> None:
    """Without progress the pauses grow by half (0.5, 0.75, 1.125); with 4,000 of 10,000 done after 2.375 s,
    the next pause is the ~3.6 s the rest should take at that rate."""
    clock = Clock()
    for body in (
        _state("UploadComplete", 0),
        _state("InProgress", 0),
        _state("InProgress", 0),
        _state("InProgress", 4000),
        _state("InProgress", 9000),
        _state("JobComplete", 10000),
    ):
        responses.get(JOB, json=body)
    final = _api(clock).wait("7505g0000000001AAA", records=10000)
    assert final.state == "JobComplete"
    assert clock.sleeps[:3] == [0.5, 0.75, 1.125]
    assert clock.sleeps[3] == pytest.approx(6000 / (4000 / 2.375), abs=0.01)  # 6,000 left at ~1,684 records/s
    assert 0.5 <= clock.sleeps[4] < 1.0  # 1,000 left at ~1,515 records/s


@responses.activate
def test_deadline_stops_with_a_resumable_error() -> None:
    """A job still running at the deadline stops the worker (exit 3), saying the next run resumes polling it."""
    clock = Clock()
    responses.get(JOB, json=_state("InProgress", 0))
    with pytest.raises(TransientExhausted, match="resume polling"):
        _api(clock, deadline_s=3.0).wait("7505g0000000001AAA", records=10)
    assert sum(clock.sleeps) <= 3.0


@responses.activate
def test_a_long_job_is_asked_again_when_it_should_be_done_sleeping_in_short_slices() -> None:
    """A job of 330,000 records that the org processes at 20,000 a second from the first look: seen moving half
    a second in, it is asked again when the rest should be done (16 s later), and found complete. Three looks,
    where a look every 5 s took six; the waiting is slept in slices of at most 5 s, so a signal is seen as soon
    as before."""
    clock = Clock()
    start = clock.now

    def answer(request: object) -> tuple[int, dict[str, str], str]:
        processed = min(330_000, int((clock.now - start) * 20_000))
        state = "JobComplete" if processed == 330_000 else "InProgress"
        return 200, {}, json.dumps(_state(state, processed))

    responses.add_callback(responses.GET, JOB, callback=answer)
    final = _api(clock).wait("7505g0000000001AAA", records=330_000)
    assert final.state == "JobComplete"
    assert len(responses.calls) == 3
    assert max(clock.sleeps) <= 5.0
    assert clock.now - start == pytest.approx(16.5)


@responses.activate
def test_a_rate_measured_early_never_waits_more_than_a_minute() -> None:
    """A job whose first progress says it needs an hour more is asked again a minute later."""
    clock = Clock()
    for body in (_state("InProgress", 0), _state("InProgress", 1), _state("JobComplete", 100_000)):
        responses.get(JOB, json=body)
    _api(clock, deadline_s=7200).wait("7505g0000000001AAA", records=100_000)
    assert sum(clock.sleeps) == pytest.approx(0.5 + 60.0)
