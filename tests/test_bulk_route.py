"""The Bulk API 2.0 route: same results as Composite, faults absorbed, and a stopped job resumed, not redone."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.bulk import processing
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from sfcleanup.report import Report
from sfcleanup.salesforce import bulkfiles, bulkwrite
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after, journal_consistent, journal_entries
from tests.support import make_client, make_org


def short_sleep(seconds: float) -> None:
    time.sleep(min(seconds, 0.01))


def _worker(org: LocalOrg, tmp_path: Path, route: str = "bulk", sleep: Any = short_sleep) -> Worker:
    settings = load_settings(None, journal_dir=tmp_path / "j", write={"route": route, "bulk_poll_max_s": 0.05})
    return Worker(make_client(org, attempts=10), settings, sleep=sleep)


def _clean(org: LocalOrg, tmp_path: Path, run_id: str, route: str = "bulk") -> Report:
    worker = _worker(org, tmp_path, route)
    return worker.apply(worker.prepare([run_id]))


def _ingest_jobs(org: LocalOrg) -> list[Any]:
    return [job for job in org.bulk_jobs.values() if getattr(job, "operation", None) == "update"]


def test_bulk_route_reaches_the_oracle_and_journals_the_job(tmp_path: Path) -> None:
    """Every phase goes through one ingest job; the org ends in the oracle state and the journal shows each job
    created, uploaded, complete and consumed, with every row's outcome."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    report = _clean(org, tmp_path, run_id)
    after = org.store.snapshot()
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    journal = tmp_path / "j" / f"{run_id}.jsonl"
    assert journal_consistent(journal, before, after) == []
    states = [e["state"] for e in journal_entries(journal) if e.get("event") == "bulk.job"]
    assert states == ["created", "uploaded", "JobComplete", "consumed"] * 4
    assert len(_ingest_jobs(org)) == 4


def test_bulk_and_composite_routes_give_the_same_result(tmp_path: Path) -> None:
    """Both routes leave identical records and report identical counts."""
    results = []
    moment = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    for route in ("composite", "bulk"):
        store = Store(clock=lambda: moment)
        info = seed(store, "demo", now=moment)
        org = LocalOrg(store, faults=FaultProfile(lock_wait_s=0.2))
        report = _clean(org, tmp_path / route, info.runs["errors_run"], route)
        snapshot = by_id(org.store.snapshot())
        stable = {
            sobject: {
                i: {k: v for k, v in r.items() if k not in ("LastModifiedDate", "SystemModstamp")}
                for i, r in rows.items()
            }
            for sobject, rows in snapshot.items()
            if sobject != "blng__ErrorLog__c"
        }
        results.append((stable, report.to_json()["runs"][0]["objects"]))
    assert results[0] == results[1]


class Crash(BaseException):
    """Stands for the process dying: nothing catches it, no journal entry follows it."""


def test_a_stopped_worker_resumes_its_job_instead_of_creating_another(tmp_path: Path) -> None:
    """A worker that dies while polling leaves its job id journaled; the next one reads that job's results,
    creates no second job for those records, and finishes the run."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()

    def die(_: float) -> None:
        raise Crash

    first = _worker(org, tmp_path, sleep=die)
    prepared = first.prepare([run_id])
    with pytest.raises(Crash):
        first.apply(prepared)
    assert len(_ingest_jobs(org)) == 1
    report = _clean(org, tmp_path, run_id)
    assert report.exit_code is ExitCode.CLEAN
    after = org.store.snapshot()
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    lines_jobs = [j for j in _ingest_jobs(org) if j.sobject.name == "blng__InvoiceLine__c"]
    assert len(lines_jobs) == 1
    entries = journal_entries(tmp_path / "j" / f"{run_id}.jsonl")
    assert any(e.get("event") == "bulk.resumed" for e in entries)
    assert journal_consistent(tmp_path / "j" / f"{run_id}.jsonl", before, after) == []


def test_large_objects_split_into_jobs_on_disjoint_accounts(tmp_path: Path) -> None:
    """An object of more than twice the minimum records per job goes out in two jobs at once, cut at account
    boundaries so that no account is in both, and the run still reaches the oracle state."""
    org, info = make_org("scale", records=1_000)
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    settings = load_settings(
        None,
        journal_dir=tmp_path / "j",
        write={
            "route": "bulk",
            "bulk_poll_max_s": 0.05,
            "bulk_jobs_per_object": 2,
            "bulk_min_records_per_job": 400,
        },
    )
    worker = Worker(make_client(org), settings, sleep=short_sleep)
    report = worker.apply(worker.prepare([run_id]))
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    entries = journal_entries(tmp_path / "j" / f"{run_id}.jsonl")
    accounts: dict[str, set[str]] = {}
    for entry in entries:
        # The canary batch goes first through Composite (phases.py); the jobs carry the rest.
        if entry["type"] == "pending" and entry["phase"] == "invoice_lines" and "-bulk-" in entry["batch"]:
            accounts.setdefault(entry["batch"], set()).add(entry["group"])
    assert sorted(accounts) == ["invoice_lines-bulk-1", "invoice_lines-bulk-2"]
    first, second = accounts.values()
    assert first and second and not first & second
    # Each job's rows are journaled as pending before the job is created, and the next job's only once this
    # one is uploaded: the order of one thread doing one job after the other.
    batch_of = {e["job"]: e["batch"] for e in entries if e.get("event") == "bulk.job" and e["state"] == "created"}
    steps: list[str] = []
    for entry in entries:
        if entry["type"] == "pending" and str(entry["batch"]).startswith("invoice_lines-bulk-"):
            step = f"pending {entry['batch']}"
        elif entry.get("event") == "bulk.job" and entry["state"] in ("created", "uploaded"):
            step = f"{entry['state']} {batch_of[entry['job']]}"
        else:
            continue
        if not steps or steps[-1] != step:
            steps.append(step)
    lines = [s for s in steps if "invoice_lines" in s]
    assert lines == [f"{step} invoice_lines-bulk-{n}" for n in (1, 2) for step in ("pending", "created", "uploaded")]


@pytest.mark.slow
def test_a_jobs_batches_end_at_account_boundaries_so_they_never_wait_for_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Salesforce cuts a job's data into batches of a fixed size and runs them in parallel (here 50 rows, four
    at once, each holding its locks 50 ms). An account that would straddle a cut is cut there and its tail goes
    through Composite after the job: no batch waits for another's lock, and the org ends exactly at the oracle."""
    monkeypatch.setattr(bulkwrite, "BATCH_RECORDS", 50)
    monkeypatch.setattr(processing, "BATCH_RECORDS", 50)
    latency = LatencyModel(bulk_ms_per_record=1.0)
    org, info = make_org("demo", faults=FaultProfile(lock_wait_s=0.02, latency=latency))
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    report = _clean(org, tmp_path, run_id)
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    assert org.stats.get("bulk_batches") > 2 * len(_ingest_jobs(org))
    assert org.stats.get("lock_waits") == org.stats.get("lock_failures") == 0


def test_a_result_column_reads_as_the_rows_read_one_by_one(tmp_path: Path) -> None:
    """A column of a result file, read without a dict a row, is what csv.DictReader's rows give: blank lines
    skipped, a short row's missing cell empty, a quoted cell whole; a file without the column refuses a row."""
    path = tmp_path / "successfulResults.csv"
    path.write_text('"sf__Id","sf__Created",Id\n"a1",false,a1\n\n"a,2",false\na3\n', encoding="utf-8")
    files = {"successfulResults": path}
    expected = [row["sf__Id"] for row in bulkfiles.rows_of(files, "successfulResults")]
    assert list(bulkfiles.column_of(files, "successfulResults", "sf__Id")) == expected == ["a1", "a,2", "a3"]
    assert list(bulkfiles.column_of(files, "successfulResults", "Id")) == ["a1", "", ""]
    assert list(bulkfiles.column_of(files, "failedResults", "sf__Id")) == []
    with pytest.raises(KeyError):
        list(bulkfiles.column_of(files, "successfulResults", "sf__Error"))
