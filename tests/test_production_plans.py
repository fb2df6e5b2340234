"""Reviewed plans applied exactly: `plan --out PLAN_FILE`, then `run --plan PLAN_FILE`, against the local org."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sfcleanup import planfile
from sfcleanup.billing import Phase
from sfcleanup.cli import main
from sfcleanup.drift import find_drift, same_value
from sfcleanup.localorg.schema import sobject as schema_object
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from sfcleanup.preflight import read_runs
from sfcleanup.salesforce.bulk import Polling
from sfcleanup.salesforce.bulkquery import BulkQueries
from sfcleanup.salesforce.read import plan_streaming
from tests.oracle import differences, expected_after, journal_consistent, released_too_early
from tests.support import (
    brief_sleep,
    local_args,
    make_client,
    make_org,
    seeded_state,
    serve,
    state_snapshot,
    worker_env,
)

LINE, PRODUCT = "blng__InvoiceLine__c", "OrderItem"


def _plan(state: Path, tmp_path: Path, run_id: str, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    path = tmp_path / "reviewed.jsonl"
    assert main(local_args(state, tmp_path, "plan", run_id, "--out", str(path), "--json", *extra)) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["mode"] == "plan"
    assert f"Plan written to {path}" in captured.err
    return path


def _update(state: Path, sobject: str, record_id: str, values: dict[str, Any]) -> None:
    store = Store(state)
    try:
        spec = schema_object(sobject)
        assert spec is not None
        store.update(spec, record_id, values)
    finally:
        store.close()


def test_the_plan_file_holds_every_record_with_its_values_and_reason(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The file's header names the org, the user, the runs and the settings; its lines hold every planned record
    with before, after and reason, what each waits for, and the anomalies; nothing is written to the org."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    before = state_snapshot(state)
    path = _plan(state, tmp_path, run_id, capsys)
    assert state_snapshot(state) == before
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    header, body = lines[0], lines[1:]
    assert header["org"]["id"] == before["Organization"][0]["Id"] and header["org"]["username"]
    assert [r["id"] for r in header["runs"]] == [run_id] and header["settings"]["include_completed"] is False
    changes = [e for e in body if e["type"] == "change"]
    assert len(changes) == header["records"] > 0
    line = next(c for c in changes if c["object"] == LINE)
    assert line["after"] == {"blng__InvoiceLineStatus__c": "Cancelled"} and "-> Cancelled" in line["reason"]
    assert any(e["type"] == "depends" for e in body) and any(e["type"] == "anomaly" for e in body)
    eligible_lines = {
        r["Id"]
        for r in before[LINE]
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceLineStatus__c"] in ("Draft", "Error")
    }
    planned_lines = {c["id"] for c in changes if c["object"] == LINE}
    assert planned_lines <= eligible_lines and len(eligible_lines - planned_lines) == 2  # two on a posted invoice


@pytest.mark.slow
def test_run_plan_applies_exactly_the_plan(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run --plan` reaches the oracle state, journals consistently, and a second application of the same plan
    writes nothing: every record drifted (exit 1), each reported with code DRIFTED in the failures CSV."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    path = _plan(state, tmp_path, run_id, capsys)
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", "--plan", str(path), "--yes", "--json", "--no-readiness")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"][0]["status"] == "cleaned" and report["runs"][0]["drifted"] == []
    after = state_snapshot(state)
    assert differences(expected_after(before, run_id), after, skip={run_id}) == []
    assert journal_consistent(tmp_path / "j" / f"{run_id}.jsonl", before, after) == []
    assert main(local_args(state, tmp_path, "run", "--plan", str(path), "--yes", "--json", "--no-readiness")) == 1
    again = json.loads(capsys.readouterr().out)["runs"][0]
    assert len(again["drifted"]) == sum(c["planned"] for c in again["objects"].values())
    assert state_snapshot(state)[LINE] == after[LINE]
    [failures] = (tmp_path / "j").glob("failures-*.csv")
    rows = list(csv.DictReader(failures.open()))
    assert rows and {r["ErrorCode"] for r in rows} == {"DRIFTED"}


def test_drifted_records_are_skipped_and_hold_what_depends_on_them(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Between plan and run someone sets a planned Draft line to Error and makes a Completed order product of the
    run eligible: the line is reported drifted and left alone, its invoice and what it billed are held (the
    dependency rule, as behind a failed row), the new order product is left for the next plan and counted, the
    rest is applied; exit 1."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    path = _plan(state, tmp_path, run_id, capsys)
    planned = [json.loads(x) for x in path.read_text().splitlines()[1:]]
    line_id = next(e["id"] for e in planned if e["type"] == "change" and e["object"] == LINE)
    snapshot = state_snapshot(state)
    newcomer = next(
        r["Id"]
        for r in snapshot[PRODUCT]
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceRunProcessingStatus__c"] == "Completed"
    )
    _update(state, LINE, line_id, {"blng__InvoiceLineStatus__c": "Error"})
    _update(state, PRODUCT, newcomer, {"blng__InvoiceRunProcessingStatus__c": "Error"})
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", "--plan", str(path), "--yes", "--json", "--no-readiness")) == 1
    run = json.loads(capsys.readouterr().out)["runs"][0]
    after = state_snapshot(state)
    assert [d["id"] for d in run["drifted"]] == [line_id]
    assert "'Draft' -> 'Error'" in run["drifted"][0]["reason"]
    assert run["new_since_plan"] == {PRODUCT: 1}
    line_invoice = next(r["blng__Invoice__c"] for r in before[LINE] if r["Id"] == line_id)
    assert any(h["id"] == line_invoice for h in run["held"])
    expected = expected_after(before, run_id, failing=frozenset({line_id}))
    assert differences(expected, after, skip={run_id, newcomer}) == []
    assert next(r for r in after[PRODUCT] if r["Id"] == newcomer) == next(
        r for r in before[PRODUCT] if r["Id"] == newcomer
    )
    assert released_too_early(before, after, run_id) == []
    assert next(r for r in after["blng__InvoiceRun__c"] if r["Id"] == run_id)["blng__CleanUpStatus__c"] == (
        "Completed with errors"
    )


def test_a_tampered_plan_is_refused(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan edited after it was written (one value changed) exits 2 with one line and writes nothing."""
    state, info = org_file
    path = _plan(state, tmp_path, info.runs["failed_run"], capsys)
    text = path.read_text()
    cancelled, posted = '{"blng__InvoiceLineStatus__c":"Cancelled"}', '{"blng__InvoiceLineStatus__c":"Posted"}'
    assert cancelled in text
    path.write_text(text.replace(cancelled, posted, 1))
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", "--plan", str(path), "--yes")) == 2
    err = capsys.readouterr().err.strip()
    assert "sha256 does not match" in err and "\n" not in err
    assert state_snapshot(state) == before and not (tmp_path / "j").exists()


def test_a_plan_for_another_org_or_too_old_is_refused(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan made in the sandbox is refused against production (exit 2), and one older than plan_max_age_s
    against its own org (exit 2); neither writes anything."""
    state, info = org_file
    path = _plan(state, tmp_path, info.runs["failed_run"], capsys)
    production = tmp_path / "production.sqlite3"
    seeded_state(production, production=True)
    before = state_snapshot(production)
    assert main(local_args(production, tmp_path, "run", "--plan", str(path), "--yes", "--production")) == 2
    assert "was made for org Acme" in capsys.readouterr().err
    assert state_snapshot(production) == before
    config = tmp_path / "fresh-only.toml"
    config.write_text("plan_max_age_s = 0.000001\n")
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", "--plan", str(path), "--yes", "--config", str(config))) == 2
    assert "more than plan_max_age_s" in capsys.readouterr().err
    assert state_snapshot(state) == before


def test_re_reading_costs_at_most_one_call_per_2000_records() -> None:
    """Finding drift in a plan of N records costs at most ceil(N/2000) API calls, counted by the org."""
    org, info = make_org("scale", records=3_000)
    client = make_client(org)
    run = read_runs(client, [info.runs["failed_run"]])[info.runs["failed_run"]]
    plan, _ = plan_streaming(client, run)
    used = org.api_used
    assert find_drift(client, plan) == {phase: {} for phase in plan.changes}
    assert 0 < org.api_used - used <= math.ceil(plan.total / 2000)


@pytest.mark.slow
def test_reviewed_plan_over_https(tmp_path: Path) -> None:
    """Over HTTPS against a production org: `plan --out`, then `run --plan --production --yes` reaches the oracle
    state; the same plan tampered with is refused with exit 2."""
    state = tmp_path / "prod.sqlite3"
    store = Store(state)
    info = seed(store, "demo", production=True)
    store.close()
    run_id = info.runs["errors_run"]
    path = tmp_path / "reviewed.jsonl"
    with serve("--state", str(state)) as endpoint:

        def worker(*args: str) -> subprocess.CompletedProcess[str]:
            command = [sys.executable, "-m", "sfcleanup", *args, "--instance-url", endpoint["instance_url"]]
            command += ["--ca-bundle", endpoint["ca_bundle"], "--journal-dir", str(tmp_path / "j")]
            return subprocess.run(command, env=worker_env(endpoint), capture_output=True, text=True, timeout=120)

        planned = worker("plan", run_id, "--out", str(path))
        assert planned.returncode == 0, planned.stderr[-2000:]
        assert f"sfcleanup run --plan {path} --production" in planned.stderr
        tampered = tmp_path / "tampered.jsonl"
        tampered.write_text(path.read_text().replace("Cancelled", "Posted", 1))
        before = state_snapshot(state)
        refused = worker("run", "--plan", str(tampered), "--yes", "--production")
        assert refused.returncode == 2 and "sha256 does not match" in refused.stderr
        assert state_snapshot(state) == before
        applied = worker("run", "--plan", str(path), "--yes", "--production", "--json", "--no-readiness")
    assert applied.returncode == 0, applied.stderr[-2000:]
    assert json.loads(applied.stdout)["runs"][0]["status"] == "cleaned"
    assert differences(expected_after(before, run_id), state_snapshot(state), skip={run_id}) == []
    assert planfile.read_header(path).org_id == before["Organization"][0]["Id"]


def test_run_needs_run_ids_or_a_plan_not_both(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`run` with neither run ids nor --plan, or with both, exits 2 with one line and writes nothing."""
    state, info = org_file
    path = _plan(state, tmp_path, info.runs["failed_run"], capsys)
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", "--yes")) == 2
    assert "give at least one RUN_ID" in capsys.readouterr().err
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--plan", str(path), "--yes")) == 2
    assert "not both" in capsys.readouterr().err
    assert state_snapshot(state) == before


def test_a_plan_read_through_bulk_query_jobs_has_not_drifted_when_nothing_changed() -> None:
    """A plan whose records came from Bulk API 2.0 query jobs (datetimes as `...Z` in their CSV) is re-read
    through REST (`...+0000`) just before writing: the same instant is the same value, so nothing drifts; a
    value that did change still does."""
    org, info = make_org("scale", records=1_000)
    client = make_client(org)
    run = read_runs(client, [info.runs["failed_run"]])[info.runs["failed_run"]]
    bulk = BulkQueries(client, Polling(first_s=0.001, max_s=0.005, sleep=brief_sleep))
    plan, _ = plan_streaming(client, run, bulk=bulk, bulk_threshold=1)
    products = list(plan.changes[Phase.ORDER_PRODUCTS])
    assert any(str(c.before.get("blng__InvoiceRunStartDate__c", "")).endswith("Z") for c in products)
    assert find_drift(client, plan) == {phase: {} for phase in plan.changes}
    moved = next(c for c in products if c.before.get("blng__InvoiceRunStartDate__c"))
    spec = schema_object(PRODUCT)
    assert spec is not None
    org.store.update(spec, moved.id, {"blng__InvoiceRunStartDate__c": "2026-12-01T00:00:00.000+0000"})
    assert list(find_drift(client, plan)[Phase.ORDER_PRODUCTS]) == [moved.id]


@pytest.mark.parametrize(
    ("planned", "current", "same"),
    [
        ("2026-12-02T11:15:26.000Z", "2026-12-02T11:15:26.000+0000", True),
        ("2026-12-02T11:15:26.000Z", "2026-12-02T11:15:27.000+0000", False),
        ("2026-12-02T11:15:26Z", "2026-12-02T12:15:26.000+01:00", True),
        ("Error", "Error", True),
        ("2026-12-02", "2026-12-02T00:00:00.000+0000", False),
        (None, "", False),
        ("Z-12", "Z-12", True),
    ],
)
def test_same_value_compares_datetimes_as_instants(planned: str | None, current: str, same: bool) -> None:
    assert same_value(planned, current) is same
