"""The canary batch: an org whose automation rewrites what the clean-up writes is caught after the first few
records of a phase, on either write route, in process and over HTTPS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.faults import FaultProfile, FieldRewrite
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from sfcleanup.worker import Worker
from tests.support import brief_sleep, make_client, make_org, serve, state_snapshot, worker_env

LINE = "blng__InvoiceLine__c"
STATUS = "blng__InvoiceLineStatus__c"
# A trigger that answers "success" to a cancelled line and stores Error instead.
REWRITE = FieldRewrite.model_validate({"object": LINE, "field": STATUS, "value": "Error", "when": "Cancelled"})


def _changed(
    before: dict[str, list[dict[str, object]]], after: dict[str, list[dict[str, object]]], sobject: str
) -> set[str]:
    old = {str(r["Id"]): r for r in before[sobject]}
    return {str(r["Id"]) for r in after[sobject] if r != old.get(str(r["Id"]))}


@pytest.mark.parametrize("route", ["composite", "bulk"])
def test_a_rewriting_trigger_stops_the_phase_after_the_canary(route: str, tmp_path: Path) -> None:
    """With a trigger rewriting cancelled lines to Error, the run writes only the canary batch of lines (10), reads
    them back, stops with exit 3 naming a record, the field and both values, journals each mismatch, and touches
    no other line, invoice or source; on the Bulk route no job is created."""
    org, info = make_org("demo", faults=FaultProfile(lock_wait_s=0.2, rewrites=(REWRITE,)))
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    settings = load_settings(None, journal_dir=tmp_path / "j", write={"route": route, "bulk_poll_max_s": 0.05})
    worker = Worker(make_client(org), settings, sleep=brief_sleep)
    report = worker.apply(worker.prepare([run_id]))
    after = org.store.snapshot()
    outcome = report.runs[0]
    assert report.exit_code is ExitCode.STOPPED and outcome.status.value == "stopped"
    assert outcome.message is not None and f"{STATUS}: sent 'Cancelled', the org holds 'Error'" in outcome.message
    lines = _changed(before, after, LINE)
    assert len(lines) == settings.write.canary_records
    assert any(line in outcome.message for line in lines)
    for sobject in ("blng__Invoice__c", "OrderItem", "blng__UsageSummary__c"):
        assert _changed(before, after, sobject) == set()
    assert org.bulk_jobs == {}
    entries = [json.loads(x) for x in (tmp_path / "j" / f"{run_id}.jsonl").read_text().splitlines()]
    notes = [e for e in entries if e["type"] == "note" and e["event"] == "canary.mismatch"]
    assert {n["id"] for n in notes} == lines
    assert all(n["sent"] == "Cancelled" and n["stored"] == "Error" and n["field"] == STATUS for n in notes)
    run = next(r for r in after["blng__InvoiceRun__c"] if r["Id"] == run_id)
    assert run["blng__CleanUpStatus__c"] == "Completed with errors"


def test_a_trigger_on_other_values_does_not_stop_the_run(tmp_path: Path) -> None:
    """A rewrite that leaves the values the clean-up sends alone (it fires on Posted only) lets the run finish."""
    quiet = FieldRewrite.model_validate({"object": LINE, "field": STATUS, "value": "Error", "when": "Posted"})
    org, info = make_org("demo", faults=FaultProfile(lock_wait_s=0.2, rewrites=(quiet,)))
    settings = load_settings(None, journal_dir=tmp_path / "j")
    worker = Worker(make_client(org), settings, sleep=brief_sleep)
    assert worker.apply(worker.prepare([info.runs["failed_run"]])).exit_code is ExitCode.CLEAN


@pytest.mark.slow
def test_canary_over_https(tmp_path: Path) -> None:
    """`localorg serve --faults` with a `[[rewrites]]` profile: `run` over HTTPS exits 3 after the canary and
    the report's message names the field and both values."""
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    info = seed(store, "demo")
    store.close()
    profile = tmp_path / "trigger.toml"
    profile.write_text(f'[[rewrites]]\nobject = "{LINE}"\nfield = "{STATUS}"\nvalue = "Error"\nwhen = "Cancelled"\n')
    run_id = info.runs["errors_run"]
    before = state_snapshot(state)
    with serve("--state", str(state), "--faults", str(profile)) as endpoint:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "sfcleanup", "run", run_id, "--yes", "--json"),
                *("--journal-dir", str(tmp_path / "j"), "--instance-url", endpoint["instance_url"]),
                *("--ca-bundle", endpoint["ca_bundle"]),
            ],
            env=worker_env(endpoint),
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 3, result.stderr[-2000:]
    message = json.loads(result.stdout)["runs"][0]["message"]
    assert "sent 'Cancelled', the org holds 'Error'" in message
    assert len(_changed(before, state_snapshot(state), LINE)) == 10
