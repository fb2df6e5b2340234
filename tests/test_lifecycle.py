"""A run's lifecycle tells the truth: an error mid-phase, a verification mismatch, one run that cannot progress
among several, and a stop that concerns every run each end in the report, the journal and the org as what
they are, never as a success."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sfcleanup import billing
from sfcleanup.config import Settings, load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.lease import LEASE_CODE
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.report import RunResult, write_failures_csv
from sfcleanup.sweep import SweepOptions, sweep
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after, journal_consistent, journal_entries
from tests.support import brief_sleep, make_client, make_org


def _worker(org: LocalOrg, settings: Settings, **options: Any) -> Worker:
    return Worker(make_client(org), settings, sleep=brief_sleep, **options)


def _run(org: LocalOrg, run_id: str) -> dict[str, Any]:
    return by_id(org.store.snapshot())["blng__InvoiceRun__c"][run_id]


def _live_leases(org: LocalOrg, run_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in org.store.snapshot()["blng__ErrorLog__c"]
        if r["blng__InvoiceRun__c"] == run_id and r["blng__ErrorCode__c"] == LEASE_CODE
    ]


def _ends(journal: Path) -> list[dict[str, Any]]:
    return [e for e in journal_entries(journal) if e["type"] == "end"]


def _failing_progress(message: str) -> Callable[[str, int], Callable[[int], None]]:
    """A progress display that breaks after the first batch, as a full disk or a bug would."""

    def start(label: str, total: int) -> Callable[[int], None]:
        def advance(done: int) -> None:
            raise RuntimeError(message)

        return advance

    return start


def test_finding_3_exception_mid_phase_ends_journal_interrupted(
    demo: tuple[LocalOrg, ScenarioInfo], settings: Settings
) -> None:
    """An unexpected error after the first batch ends the run `interrupted` (exit 3) in the report and the
    journal, with the batch's answers journaled, the lease released and CleanUp Status "Completed with
    errors"; running again finishes the clean-up."""
    org, info = demo
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    worker = _worker(org, settings, progress=_failing_progress("disk full"))
    report = worker.apply(worker.prepare([run_id]))
    outcome = report.runs[0]
    assert (outcome.status, report.exit_code) == (RunResult.INTERRUPTED, ExitCode.STOPPED)
    assert "RuntimeError: disk full" in (outcome.message or "")
    journal = settings.journal_dir / f"{run_id}.jsonl"
    end = _ends(journal)[-1]
    assert (end["status"], end["exit_code"]) == ("interrupted", 3) and "disk full" in end["reason"]
    # The counts are what the org answered, as journaled: one batch's worth, not zero and not everything.
    written = sum(1 for e in journal_entries(journal) if e["type"] == "outcome" and e["outcome"] == "updated")
    assert (
        0
        < sum(c.updated for c in outcome.objects.values())
        == written
        < sum(c.planned for c in outcome.objects.values())
    )
    assert end["counts"]["blng__InvoiceLine__c"]["updated"] == outcome.objects["blng__InvoiceLine__c"].updated
    assert _run(org, run_id)["blng__CleanUpStatus__c"] == "Completed with errors"
    assert outcome.cleanup_status == "Completed with errors"
    assert _live_leases(org, run_id) == []
    assert journal_consistent(journal, before, org.store.snapshot()) == []
    again = _worker(org, settings).apply(_worker(org, settings).prepare([run_id]))
    assert again.runs[0].status is RunResult.CLEANED and again.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []
    assert _run(org, run_id)["blng__CleanUpStatus__c"] == "Completed"
    assert _ends(journal)[-1]["status"] == "cleaned"


def test_finding_4_verify_mismatch_is_not_a_failed_row(demo: tuple[LocalOrg, ScenarioInfo], settings: Settings) -> None:
    """An eligible record the plan did not hold (changed after planning) shows in the run's `verify` section
    and exits 1 with a message, but is no failed row: not in the failures, the CSV, nor the org's error logs."""
    org, info = demo
    run_id = info.runs["failed_run"]
    worker = _worker(org, settings)
    prepared = worker.prepare([run_id])
    # Someone else puts one of the run's completed order products back into Error after planning.
    straggler = next(
        r["Id"]
        for r in org.store.snapshot()["OrderItem"]
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceRunProcessingStatus__c"] == "Completed"
    )
    make_client(org).update_record("OrderItem", straggler, {billing.PROCESSING_STATUS: "Error"})
    logs_before = len(org.store.snapshot()["blng__ErrorLog__c"])
    report = worker.apply(prepared)
    outcome = report.runs[0]
    assert outcome.failures == [] and outcome.status is RunResult.VERIFY_MISMATCH
    assert report.exit_code is ExitCode.ROW_FAILURES
    assert "1 OrderItem" in (outcome.message or "")
    anomalies = outcome.objects["OrderItem"].anomalies
    assert report.to_json()["runs"][0]["verify"]["OrderItem"] == {"expected": anomalies, "left": anomalies + 1}
    assert write_failures_csv(report, settings.journal_dir / "failures.csv") is None
    new_logs = org.store.snapshot()["blng__ErrorLog__c"][logs_before:]
    assert [r for r in new_logs if not str(r["blng__ErrorCode__c"]).startswith("SFCLEANUP_LEASE")] == []
    assert _run(org, run_id)["blng__CleanUpStatus__c"] == "Completed with errors"
    end = _ends(settings.journal_dir / f"{run_id}.jsonl")[-1]
    assert (end["status"], end["exit_code"]) == ("verify_mismatch", 1)


def test_a_run_left_completed_with_errors_and_nothing_to_write_is_finished(
    demo: tuple[LocalOrg, ScenarioInfo], settings: Settings
) -> None:
    """A run whose CleanUp Status says an earlier invocation ended with work left, but whose records are all
    done, gets its status set to Completed by the next invocation."""
    org, info = demo
    run_id = info.runs["failed_run"]
    worker = _worker(org, settings)
    worker.apply(worker.prepare([run_id]))
    make_client(org).update_record(billing.INVOICE_RUN, run_id, {billing.CLEANUP_STATUS: "Completed with errors"})
    again = _worker(org, settings)
    report = again.apply(again.prepare([run_id]))
    assert report.runs[0].status is RunResult.CLEANED and report.exit_code is ExitCode.CLEAN
    assert _run(org, run_id)["blng__CleanUpStatus__c"] == "Completed"


def _lock_run_record(org: LocalOrg, run_id: str) -> None:
    """Another job keeps the run record itself locked: nothing about this run can be written."""
    org.locks.acquire(10**9, [run_id])


def test_finding_10_a_run_that_cannot_progress_does_not_starve_the_sweep(tmp_path: Path) -> None:
    """A run whose writes never get through is reported stopped with the reason, and the sweep goes on to
    clean the next run in the same invocation (exit 3 for the stopped one)."""
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.01))
    stuck, other = info.runs["failed_run"], info.runs["errors_run"]
    before = org.store.snapshot()
    _lock_run_record(org, stuck)
    settings = load_settings(None, journal_dir=tmp_path / "j")
    report = sweep(_worker(org, settings), SweepOptions())
    outcomes = {r.id: r for r in report.runs}
    assert outcomes[stuck].status is RunResult.STOPPED
    assert "still failing after retries" in (outcomes[stuck].message or "")
    assert outcomes[other].status is RunResult.CLEANED
    assert report.exit_code is ExitCode.STOPPED
    after = org.store.snapshot()
    assert differences(expected_after(before, other), after, skip={stuck, other}) == []
    assert _ends(settings.journal_dir / f"{stuck}.jsonl")[-1]["status"] == "stopped"
    assert _live_leases(org, stuck) == []


def test_finding_10_a_multi_run_run_goes_on_after_a_run_that_cannot_progress(
    tmp_path: Path,
) -> None:
    """`run A B`: when A cannot progress, B is still cleaned in the same invocation."""
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.01))
    stuck, other = info.runs["failed_run"], info.runs["errors_run"]
    before = org.store.snapshot()
    _lock_run_record(org, stuck)
    worker = _worker(org, load_settings(None, journal_dir=tmp_path / "j"))
    report = worker.apply(worker.prepare([stuck, other]))
    assert [r.status for r in report.runs] == [RunResult.STOPPED, RunResult.CLEANED]
    assert report.exit_code is ExitCode.STOPPED
    assert differences(expected_after(before, other), org.store.snapshot(), skip={stuck, other}) == []


def test_a_stop_that_concerns_every_run_leaves_the_rest_not_started(tmp_path: Path) -> None:
    """The daily API limit stops the first run and the others are not started, each saying why."""
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.01))
    first, second = info.runs["failed_run"], info.runs["errors_run"]
    worker = _worker(org, load_settings(None, journal_dir=tmp_path / "j", api_reserve=0.0))
    prepared = worker.prepare([first, second])
    before = org.store.snapshot()
    org.profile = org.profile.model_copy(update={"daily_api_limit": org.api_used + 3})
    report = worker.apply(prepared)
    assert [r.status for r in report.runs] == [RunResult.STOPPED, RunResult.NOT_STARTED]
    assert "daily API limit" in (report.runs[1].message or "") and report.exit_code is ExitCode.STOPPED
    assert by_id(org.store.snapshot())["OrderItem"] == by_id(before)["OrderItem"]
