"""End to end against the in-process local org: the final state of every table, the run, and the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfcleanup.config import Settings
from sfcleanup.errors import ExitCode, PreflightError
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.report import Report, RunResult
from sfcleanup.worker import Worker
from tests.oracle import by_id, changed_ids, differences, expected_after, journal_consistent, released_too_early
from tests.support import brief_sleep, make_client, make_org


def clean(org: LocalOrg, settings: Settings, run_id: str, **options: bool) -> tuple[Worker, Report]:
    worker = Worker(make_client(org), settings, sleep=brief_sleep, **options)
    return worker, worker.apply(worker.prepare([run_id]))


def run_record(org: LocalOrg, run_id: str) -> dict[str, object]:
    return by_id(org.store.snapshot())["blng__InvoiceRun__c"][run_id]


@pytest.mark.parametrize("role", ["failed_run", "errors_run"])
def test_clean_reaches_the_oracle_state(demo: tuple[LocalOrg, ScenarioInfo], settings: Settings, role: str) -> None:
    """Every eligible record reaches its target, nothing else changes, and the journal matches the org."""
    org, info = demo
    run_id = info.runs[role]
    before = org.store.snapshot()
    _, report = clean(org, settings, run_id)
    after = org.store.snapshot()
    assert report.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    assert run_record(org, run_id)["blng__CleanUpStatus__c"] == "Completed"
    assert journal_consistent(settings.journal_dir / f"{run_id}.jsonl", before, after) == []
    assert released_too_early(before, after, run_id) == []
    assert changed_ids(before, after) - {run_id}, "the scenario must give the clean-up something to do"


def test_posted_invoices_lines_and_billed_sources_are_untouched(
    demo: tuple[LocalOrg, ScenarioInfo], settings: Settings
) -> None:
    """The seeded traps (posted invoice with draft lines, billed usage) keep every field as it was."""
    org, info = demo
    run_id = info.runs["failed_run"]
    before = by_id(org.store.snapshot())
    clean(org, settings, run_id)
    after = by_id(org.store.snapshot())
    guarded = [
        i
        for i, r in before["blng__Invoice__c"].items()
        if r["blng__InvoiceStatus__c"] in ("Posted", "Post In progress")
    ]
    assert guarded
    lines = [i for i, r in before["blng__InvoiceLine__c"].items() if r["blng__Invoice__c"] in guarded]
    sources = {
        x
        for i in lines
        for x in (
            before["blng__InvoiceLine__c"][i]["blng__OrderProduct__c"],
            before["blng__InvoiceLine__c"][i]["blng__UsageSummary__c"],
        )
        if x
    }
    for sobject, ids in (("blng__Invoice__c", guarded), ("blng__InvoiceLine__c", lines)):
        for record_id in ids:
            assert after[sobject][record_id] == before[sobject][record_id]
    for sobject in ("OrderItem", "blng__UsageSummary__c"):
        for record_id in sources & set(before[sobject]):
            assert after[sobject][record_id] == before[sobject][record_id]


def test_second_invocation_changes_nothing_and_says_so(demo: tuple[LocalOrg, ScenarioInfo], settings: Settings) -> None:
    """Running again on a cleaned run writes nothing and reports nothing_to_do."""
    org, info = demo
    run_id = info.runs["failed_run"]
    clean(org, settings, run_id)
    before = org.store.snapshot()
    _, report = clean(org, settings, run_id)
    assert report.runs[0].status is RunResult.NOTHING_TO_DO
    assert org.store.snapshot() == before


def test_plan_writes_nothing(demo: tuple[LocalOrg, ScenarioInfo], settings: Settings) -> None:
    """Preview reads and plans but leaves every table, timestamps included, as it was."""
    org, info = demo
    before = org.store.snapshot()
    worker = Worker(make_client(org), settings)
    preview = worker.preview(worker.prepare([info.runs["failed_run"]]))
    assert preview.runs[0].objects["OrderItem"].planned > 0
    assert org.store.snapshot() == before
    assert not settings.journal_dir.exists()


@pytest.mark.parametrize(
    ("role", "message"), [("running_run", "still running"), ("completed_run", "--include-completed")]
)
def test_runs_that_must_not_be_cleaned_are_refused(
    demo: tuple[LocalOrg, ScenarioInfo], settings: Settings, role: str, message: str
) -> None:
    """A running run, or a cleanly completed one without the flag, is refused before any write."""
    org, info = demo
    before = org.store.snapshot()
    with pytest.raises(PreflightError, match=message):
        Worker(make_client(org), settings).prepare([info.runs[role]])
    assert org.store.snapshot() == before


def test_completed_run_with_flag_is_marked_then_cleaned(
    demo: tuple[LocalOrg, ScenarioInfo], settings: Settings
) -> None:
    """--include-completed first sets the run to Completed with errors, then cleans it like any failed run."""
    org, info = demo
    run_id = info.runs["completed_run"]
    before = org.store.snapshot()
    _, report = clean(org, settings, run_id, include_completed=True)
    after = org.store.snapshot()
    assert report.exit_code is ExitCode.CLEAN
    run = run_record(org, run_id)
    assert (run["blng__Status__c"], run["blng__CleanUpStatus__c"]) == ("Completed with errors", "Completed")
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []


@pytest.mark.slow
def test_rows_that_stay_locked_fail_then_converge_on_rerun(settings: Settings) -> None:
    """A row locked by someone else fails after the lock retries (exit 1, Completed with errors); a re-run
    after the lock is released finishes it (exit 0)."""
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.05))
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    victim = next(
        r["Id"]
        for r in before["OrderItem"]
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceRunProcessingStatus__c"] == "Error"
    )
    org.locks.acquire(10**9, [victim])
    _, first = clean(org, settings, run_id)
    assert first.exit_code is ExitCode.ROW_FAILURES
    assert [(f.id, f.code) for f in first.runs[0].failures if f.id == victim] == [(victim, "UNABLE_TO_LOCK_ROW")]
    assert run_record(org, run_id)["blng__CleanUpStatus__c"] == "Completed with errors"
    org.locks.release_all(10**9)
    _, second = clean(org, settings, run_id)
    assert second.exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []


def test_journal_records_every_batch_with_outcomes(demo: tuple[LocalOrg, ScenarioInfo], settings: Settings) -> None:
    """The journal has a start, pending and outcome entries with before/after values, run fields, and an end."""
    org, info = demo
    run_id = info.runs["failed_run"]
    clean(org, settings, run_id)
    from tests.oracle import journal_entries

    entries = journal_entries(Path(settings.journal_dir) / f"{run_id}.jsonl")
    kinds = [e["type"] for e in entries]
    assert kinds[0] == "start" and kinds[-1] == "end"
    outcomes = [e for e in entries if e["type"] == "outcome"]
    assert {e["outcome"] for e in outcomes} == {"updated"}
    assert all(e["batch"] and e["before"] and e["after"] for e in outcomes)
    run_fields = [(e["field"], e["after"], e["outcome"]) for e in entries if e["type"] == "run_field"]
    assert ("blng__CleanUpStatus__c", "Started", "updated") in run_fields
    assert run_fields[-1] == ("blng__CleanUpStatus__c", "Completed", "updated")
