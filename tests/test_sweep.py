"""Sweep cleans exactly the runs that need it; failures go back to the org as Error Logs on the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sfcleanup import billing
from sfcleanup.config import load_settings
from sfcleanup.errors import ConfigError, ExitCode
from sfcleanup.lease import Leases
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.report import RunResult
from sfcleanup.sweep import SweepOptions, sweep
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after
from tests.support import brief_sleep, make_client, make_org


def _worker(org: LocalOrg, tmp_path: Path, **settings: Any) -> Worker:
    return Worker(make_client(org), load_settings(None, journal_dir=tmp_path / "j", **settings), sleep=brief_sleep)


def _expected(before: dict[str, list[dict[str, Any]]], run_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """The oracle applied run after run."""
    state = before
    for run_id in run_ids:
        expected = expected_after(state, run_id)
        state = {sobject: list(rows.values()) for sobject, rows in expected.items()}
    return expected


def test_sweep_cleans_exactly_the_failed_runs(demo: tuple[LocalOrg, ScenarioInfo], tmp_path: Path) -> None:
    """Failed and Completed-with-errors runs are cleaned; the completed and the running run are left alone."""
    org, info = demo
    before = org.store.snapshot()
    report = sweep(_worker(org, tmp_path), SweepOptions())
    cleaned = {r.id for r in report.runs if r.status is RunResult.CLEANED}
    assert cleaned == {info.runs["failed_run"], info.runs["errors_run"]}
    assert report.exit_code is ExitCode.CLEAN and report.mode == "sweep"
    runs = set(info.runs.values())
    assert differences(_expected(before, sorted(cleaned)), org.store.snapshot(), skip=runs) == []
    after_runs = by_id(org.store.snapshot())["blng__InvoiceRun__c"]
    assert after_runs[info.runs["completed_run"]] == by_id(before)["blng__InvoiceRun__c"][info.runs["completed_run"]]
    assert after_runs[info.runs["running_run"]] == by_id(before)["blng__InvoiceRun__c"][info.runs["running_run"]]
    again = sweep(_worker(org, tmp_path), SweepOptions())
    assert again.runs == [] and again.exit_code is ExitCode.CLEAN


def test_dry_run_plans_and_writes_nothing(demo: tuple[LocalOrg, ScenarioInfo], tmp_path: Path) -> None:
    """--dry-run plans each run found and leaves the org as it was."""
    org, _ = demo
    before = org.store.snapshot()
    report = sweep(_worker(org, tmp_path), SweepOptions(dry_run=True))
    assert [r.status for r in report.runs] == [RunResult.PLANNED, RunResult.PLANNED]
    assert org.store.snapshot() == before


def test_max_runs_and_since(demo: tuple[LocalOrg, ScenarioInfo], tmp_path: Path) -> None:
    """--max-runs takes the oldest runs first; --since keeps runs created in the last days (all of the demo's)."""
    org, info = demo
    report = sweep(_worker(org, tmp_path), SweepOptions(max_runs=1, since_days=1, dry_run=True))
    assert [r.id for r in report.runs] == [info.runs["failed_run"]]


@pytest.mark.parametrize(("options", "message"), [({"max_runs": 0}, "--max-runs"), ({"since_days": 0}, "--since")])
def test_bad_options(options: dict[str, int], message: str) -> None:
    """Out-of-range options are one-line configuration errors."""
    with pytest.raises(ConfigError, match=message):
        SweepOptions(**options)


def test_a_busy_run_is_skipped_and_the_rest_cleaned(demo: tuple[LocalOrg, ScenarioInfo], tmp_path: Path) -> None:
    """A run another worker holds is skipped (exit 3: run again later) while the other runs are cleaned."""
    org, info = demo
    busy = info.runs["failed_run"]
    client = make_client(org)
    Leases(client, "someone-else", 900).acquire(busy)
    client.update_record(billing.INVOICE_RUN, busy, {billing.CLEANUP_STATUS: "Started"})
    report = sweep(_worker(org, tmp_path), SweepOptions())
    statuses = {r.id: r.status for r in report.runs}
    assert statuses == {busy: RunResult.NOT_STARTED, info.runs["errors_run"]: RunResult.CLEANED}
    assert report.exit_code is ExitCode.STOPPED


def _error_logs(org: LocalOrg, run_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in org.store.snapshot()["blng__ErrorLog__c"]
        if r["blng__InvoiceRun__c"] == run_id and not str(r["blng__ErrorCode__c"]).startswith("SFCLEANUP_LEASE")
    ]


@pytest.mark.parametrize("enabled", [True, False])
def test_failed_rows_become_error_logs_on_the_run(tmp_path: Path, enabled: bool) -> None:
    """Each row that finally failed becomes an Error Log on the run with its code, message and record id,
    marked as sfcleanup's; the setting turns it off."""
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.02))
    run_id = info.runs["errors_run"]
    seeded = len(_error_logs(org, run_id))
    victims = [
        r["Id"]
        for r in org.store.snapshot()["OrderItem"]
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceRunProcessingStatus__c"] == "Error"
    ][:3]
    org.locks.acquire(10**9, victims)
    report = sweep(_worker(org, tmp_path, error_logs=enabled), SweepOptions())
    outcome = next(r for r in report.runs if r.id == run_id)
    assert outcome.status is RunResult.CLEANED_WITH_FAILURES and report.exit_code is ExitCode.ROW_FAILURES
    logs = _error_logs(org, run_id)[seeded:]
    if not enabled:
        assert logs == [] and outcome.error_logs == 0
        return
    # The locked order products fail, and so do usage summaries whose master is one of them.
    failed = {(f.id, f.sobject, f.code) for f in outcome.failures}
    assert {v for v, _, _ in failed} >= set(victims)
    assert outcome.error_logs == len(failed) == len(logs)
    logged = set()
    for record in logs:
        detail = json.loads(record["blng__FullErrorLog__c"])
        assert detail["origin"] == "sfcleanup" and detail["record_id"] in record["blng__Summary__c"]
        logged.add((detail["record_id"], detail["object"], record["blng__ErrorCode__c"]))
    assert logged == failed
