"""Issue 9's reliability findings at the Salesforce boundary, each reproduced against a fake transport or the
local org: a dropped results download (5), a Bulk job the org no longer has (8), and bookkeeping that must
not stop real work (9).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ProtocolError

from sfcleanup.config import AuthMode, OrgSettings, load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.lease import Lease, Leases
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.report import Report
from sfcleanup.salesforce.bulk import BulkApi
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import no_wait_policy
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after, journal_entries
from tests.support import brief_sleep, make_client, make_org

INSTANCE = "https://acme.my.salesforce.com"
RESULTS = b'"sf__Id","sf__Created","Id"\n"a1C5g0000000001AAA","false","a1C5g0000000001AAA"\n'
# An owner no request of the local org ever has: a lock it takes stays until the test ends.
TEST_LOCK_OWNER = 1 << 60


class _CutStream:
    """A response body that breaks after its first chunk, as a dropped connection does mid-download."""

    def __init__(self, body: bytes, cut: bool) -> None:
        self._body = body
        self._cut = cut

    def stream(self, chunk_size: int, decode_content: bool = True) -> Iterator[bytes]:
        half = len(self._body) // 2
        yield self._body[:half]
        if self._cut:
            raise ProtocolError("Connection broken: IncompleteRead")
        yield self._body[half:]

    def release_conn(self) -> None:
        return None

    def close(self) -> None:
        return None


class DropsFirstDownload(BaseAdapter):
    """Answers every GET with `RESULTS`; the first answer's body is cut off half-way."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.requests += 1
        response = requests.Response()
        response.status_code = 200
        response.url = request.url or ""
        response.request = request
        response.headers = CaseInsensitiveDict({"Content-Type": "text/csv"})
        response.raw = _CutStream(RESULTS, cut=self.requests == 1)
        return response

    def close(self) -> None:
        return None


def test_finding_5_dropped_bulk_results_download_is_retried(tmp_path: Path) -> None:
    """A results download whose connection drops half-way is downloaded again, and the file holds every row."""
    http = requests.Session()
    transport = DropsFirstDownload()
    http.mount("https://", transport)
    connector = Connector(OrgSettings(auth=AuthMode.TOKEN), http, lambda: OrgSession(INSTANCE, SecretStr("t0ken")))
    client = SalesforceClient(connector, api_version="62.0", retry=no_wait_policy(), timeout_s=5)
    target = BulkApi(client).results("7505g0000000001AAA", "successfulResults", tmp_path / "ok.csv")
    assert target.read_bytes() == RESULTS
    assert transport.requests == 2


class Crash(BaseException):
    """Stands for the process dying: nothing catches it, no journal entry follows it."""


def _bulk_worker(org: LocalOrg, tmp_path: Path, sleep: Callable[[float], None]) -> Worker:
    settings = load_settings(None, journal_dir=tmp_path / "j", write={"route": "bulk", "bulk_poll_max_s": 0.05})
    return Worker(make_client(org, attempts=10), settings, sleep=sleep)


def test_finding_8_a_journaled_bulk_job_that_is_gone_is_replanned(tmp_path: Path) -> None:
    """A journaled Bulk job the org has deleted is logged as lost by id, and the run is planned again from
    the org's records and cleaned to the end."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()

    def die(_: float) -> None:
        raise Crash

    first = _bulk_worker(org, tmp_path, die)
    with pytest.raises(Crash):
        first.apply(first.prepare([run_id]))
    (job_id,) = list(org.bulk_jobs)
    org.bulk_jobs[job_id].done.wait(30)
    del org.bulk_jobs[job_id]  # as Salesforce does after seven days, or an admin sooner
    second = _bulk_worker(org, tmp_path, lambda s: time.sleep(min(s, 0.01)))
    report = second.apply(second.prepare([run_id]))
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    entries = journal_entries(tmp_path / "j" / f"{run_id}.jsonl")
    assert any(e.get("event") == "bulk.job" and e.get("state") == "lost" and e.get("job") == job_id for e in entries)


def _composite_worker(org: LocalOrg, tmp_path: Path) -> Worker:
    settings = load_settings(None, journal_dir=tmp_path / "j", worker_id="worker-A")
    return Worker(make_client(org), settings, sleep=brief_sleep)


def _lock_lease_once_acquired(worker: Worker, org: LocalOrg) -> None:
    """From the moment the worker holds its lease, another transaction keeps the lease record locked."""
    acquire = worker.leases.acquire

    def acquire_then_lock(run_id: str) -> Lease:
        lease = acquire(run_id)
        assert org.locks.acquire(TEST_LOCK_OWNER, [lease.record_id])
        return lease

    worker.leases.acquire = acquire_then_lock  # type: ignore[method-assign]


def _finished_cleanly(org: LocalOrg, run_id: str, before: dict[str, list[dict[str, Any]]], report: Report) -> None:
    assert report.exit_code is ExitCode.CLEAN, report.runs[0].message
    assert report.runs[0].cleanup_status == "Completed"
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    assert by_id(org.store.snapshot())["blng__InvoiceRun__c"][run_id]["blng__CleanUpStatus__c"] == "Completed"


@pytest.mark.slow
def test_finding_9_locked_lease_heartbeat_does_not_stop_the_run(tmp_path: Path) -> None:
    """A lease record locked through every heartbeat is logged and tolerated: the clean-up runs to the end."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    worker = _composite_worker(org, tmp_path)
    # Every reading of the clock is two minutes after the last: each batch is due a heartbeat.
    ticks = itertools.count()
    start = datetime.now(UTC)
    worker.leases = Leases(worker.client, "worker-A", 900, clock=lambda: start + timedelta(minutes=2 * next(ticks)))
    _lock_lease_once_acquired(worker, org)
    _finished_cleanly(org, run_id, before, worker.apply(worker.prepare([run_id])))


@pytest.mark.slow
def test_finding_9_final_status_is_judged_alone_when_the_lease_release_stays_locked(tmp_path: Path) -> None:
    """The final CleanUp Status written, a lease release that stays locked is left to time out: the report says
    Completed, as the org does."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    worker = _composite_worker(org, tmp_path)
    _lock_lease_once_acquired(worker, org)
    _finished_cleanly(org, run_id, before, worker.apply(worker.prepare([run_id])))
    leases = [r for r in org.store.snapshot()["blng__ErrorLog__c"] if r["blng__ErrorName__c"] == "worker-A"]
    assert [r["blng__ErrorCode__c"] for r in leases] == ["SFCLEANUP_LEASE"]


class DropsFirstMatch(BaseAdapter):
    """Passes requests on to `inner`, except the first one `match` picks: that one never reaches the org and
    the connection drops, so the worker gets no answer."""

    def __init__(self, inner: BaseAdapter, match: Callable[[requests.PreparedRequest], bool]) -> None:
        super().__init__()
        self._inner = inner
        self._match = match
        self.dropped = 0

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if not self.dropped and self._match(request):
            self.dropped += 1
            raise requests.exceptions.ConnectionError("connection reset before the answer")
        return self._inner.send(request, *args, **kwargs)

    def close(self) -> None:
        self._inner.close()


def _creates_a_lease(request: requests.PreparedRequest) -> bool:
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    return request.method == "POST" and b'"SFCLEANUP_LEASE"' in body


def test_finding_9_lost_answer_creating_the_lease_is_retried(tmp_path: Path) -> None:
    """A lease creation that lost its answer, and that the read-back shows never happened, is sent again and
    the clean-up goes on."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    worker = _composite_worker(org, tmp_path)
    http = worker.client.http
    dropping = DropsFirstMatch(http.get_adapter(worker.client.instance_url), _creates_a_lease)
    http.mount(worker.client.instance_url, dropping)
    _finished_cleanly(org, run_id, before, worker.apply(worker.prepare([run_id])))
    assert dropping.dropped == 1
