"""Two workers never clean one run at once: the lease in the org, and the local lock per journal directory."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sfcleanup import billing
from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.lease import LeaseHeld, Leases
from sfcleanup.locallock import LocalLock
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from sfcleanup.report import Report, RunResult
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after
from tests.support import brief_sleep, make_client, make_org


def _worker(org: LocalOrg, tmp_path: Path, name: str) -> Worker:
    settings = load_settings(None, journal_dir=tmp_path / name, worker_id=name)
    return Worker(make_client(org), settings, sleep=brief_sleep)


def _hold(org: LocalOrg, run_id: str, holder: str) -> None:
    """Another worker is mid-clean-up: its lease exists and the run says Started."""
    client = make_client(org)
    Leases(client, holder, 900).acquire(run_id)
    client.update_record(billing.INVOICE_RUN, run_id, {billing.CLEANUP_STATUS: "Started"})


def test_second_worker_refuses_a_held_run(demo: tuple[LocalOrg, ScenarioInfo], tmp_path: Path) -> None:
    """A worker finding another's fresh lease refuses, naming the holder, and writes nothing."""
    org, info = demo
    run_id = info.runs["failed_run"]
    _hold(org, run_id, "worker-A")
    before = org.store.snapshot()
    with pytest.raises(LeaseHeld, match="another worker \\(worker-A\\) is cleaning this run") as caught:
        _worker(org, tmp_path, "worker-B").prepare([run_id])
    assert caught.value.exit_code is ExitCode.STOPPED
    assert org.store.snapshot() == before


def test_stale_lease_is_taken_over(tmp_path: Path) -> None:
    """A lease not renewed within the timeout (by the org's clock) belongs to a dead worker: the next one takes
    over and finishes."""
    org_time = [datetime.now(UTC)]
    store = Store(clock=lambda: org_time[0])
    info = seed(store, "demo", now=org_time[0])
    org = LocalOrg(store, faults=FaultProfile(lock_wait_s=0.2))
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    _hold(org, run_id, "worker-A")
    org_time[0] += timedelta(hours=2)
    worker = _worker(org, tmp_path, "worker-B")
    worker.leases = Leases(worker.client, "worker-B", 900, clock=lambda: org_time[0])
    report = worker.apply(worker.prepare([run_id]))
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    codes = {r["blng__ErrorName__c"]: r["blng__ErrorCode__c"] for r in org.store.snapshot()["blng__ErrorLog__c"]}
    assert codes == {**codes, "worker-A": "SFCLEANUP_LEASE_RELEASED", "worker-B": "SFCLEANUP_LEASE_RELEASED"}


def test_restarted_worker_resumes_its_own_lease(demo: tuple[LocalOrg, ScenarioInfo], tmp_path: Path) -> None:
    """The same identity (same machine and journal directory) is not blocked by the lease it left when it died."""
    org, info = demo
    run_id = info.runs["failed_run"]
    _hold(org, run_id, "worker-A")
    report = _worker(org, tmp_path, "worker-A").apply(_worker(org, tmp_path, "worker-A").prepare([run_id]))
    assert report.runs[0].status is RunResult.CLEANED


def test_local_lock_stops_a_second_process_on_the_same_journal(tmp_path: Path) -> None:
    """The journal directory's lock file is exclusive while held, and free again once released."""
    with LocalLock(tmp_path, "a1A"), pytest.raises(LeaseHeld, match="is locked"), LocalLock(tmp_path, "a1A"):
        pass
    with LocalLock(tmp_path, "a1A"):
        pass


def test_two_workers_at_once_one_cleans_one_refuses(tmp_path: Path) -> None:
    """Started together on one run, exactly one worker cleans it; the other meets its lease or finds it done."""
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.5, latency=LatencyModel(request_ms=5)))
    run_id = info.runs["errors_run"]
    before = org.store.snapshot()
    workers = [_worker(org, tmp_path, name) for name in ("worker-A", "worker-B")]
    prepared = [w.prepare([run_id]) for w in workers]
    reports: dict[int, Report] = {}

    def go(index: int) -> None:
        reports[index] = workers[index].apply(prepared[index])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    statuses = sorted(r.runs[0].status.value for r in reports.values())
    # Overlapping, the later worker meets the lease; one after the other, it finds nothing left to do.
    assert statuses in (["cleaned", "stopped"], ["cleaned", "nothing_to_do"])
    other = next(r for r in reports.values() if r.runs[0].status is not RunResult.CLEANED)
    assert ("is cleaning this run" if statuses[1] == "stopped" else "meanwhile") in (other.runs[0].message or "")
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    assert by_id(org.store.snapshot())["blng__InvoiceRun__c"][run_id]["blng__CleanUpStatus__c"] == "Completed"
