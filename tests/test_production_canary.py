"""The canary batch: an org whose automation rewrites what the clean-up writes is caught after the first few
records of a phase, on either write route, in process and over HTTPS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from sfcleanup import canary
from sfcleanup.billing import RULE_BY_OBJECT
from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, FieldRewrite
from sfcleanup.localorg.http import HttpRequest, HttpResponse
from sfcleanup.localorg.seed import seed
from sfcleanup.localorg.store import Store
from sfcleanup.salesforce.read import values_soql
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


class Recorder:
    """The local org's entry point, wrapped: every request it is sent, as sent. With `lose_canary_of`, the first
    call that writes that object and carries a read-back is applied by the org and its answer lost (the
    connection drops)."""

    def __init__(self, org: LocalOrg, *, lose_canary_of: str | None = None) -> None:
        self._handle = org.handle
        self._lose = lose_canary_of
        self.requests: list[HttpRequest] = []

    def __call__(self, req: HttpRequest) -> HttpResponse:
        self.requests.append(req)
        response = self._handle(req)
        body = _composite_body(req)
        if self._lose and _read_backs(body) and _patched(body, self._lose):
            self._lose = None
            return HttpResponse(0, reset_connection=True)
        return response

    def composite_bodies(self) -> list[dict[str, Any]]:
        return [body for body in map(_composite_body, self.requests) if body]

    def queries(self) -> list[str]:
        """The SOQL of every query the worker sent as a call of its own (not inside Composite)."""
        return [q for r in self.requests if r.method == "GET" for q in r.query.get("q", [])]


def _composite_body(req: HttpRequest) -> dict[str, Any]:
    return json.loads(req.body) if req.method == "POST" and req.path.rstrip("/").endswith("/composite") else {}


def _soql(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("q", [""])[0]


def _is_read_back(soql: str, sobject: str) -> bool:
    """current_values' query (`SELECT Id, <the rule's fields> FROM <object> WHERE Id IN (...)`) for `sobject`."""
    return soql.startswith(values_soql(RULE_BY_OBJECT[sobject], []).split(" IN ")[0] + " IN ")


def _read_backs(body: dict[str, Any]) -> list[str]:
    """The queries a Composite call that writes sObject Collections carries."""
    subrequests = body.get("compositeRequest", [])
    if not any(sub["url"].endswith("/composite/sobjects") for sub in subrequests):
        return []
    return [_soql(sub["url"]) for sub in subrequests if sub["method"] == "GET"]


def _patched(body: dict[str, Any], sobject: str) -> list[str]:
    """Ids of `sobject` records this Composite call writes through sObject Collections PATCHes, in order."""
    return [
        record["id"]
        for sub in body.get("compositeRequest", [])
        if sub["method"] == "PATCH" and sub["url"].endswith("/composite/sobjects")
        for record in sub["body"]["records"]
        if record["attributes"]["type"] == sobject
    ]


def _assert_canary_reads_back_in_its_call(recorder: Recorder, sobject: str) -> list[dict[str, Any]]:
    """The first call writing `sobject` is the canary's: its sObject Collections PATCHes, then one query of
    exactly those records (the SOQL current_values sends), with collateSubrequests false so that it runs last.
    No read-back of `sobject` goes as a call of its own. Returns every call that writes `sobject`."""
    writes = [body for body in recorder.composite_bodies() if _patched(body, sobject)]
    canary_call = writes[0]
    subrequests = canary_call["compositeRequest"]
    assert canary_call["collateSubrequests"] is False
    assert [sub["method"] for sub in subrequests] == ["PATCH"] * (len(subrequests) - 1) + ["GET"]
    ids = _patched(canary_call, sobject)
    assert _read_backs(canary_call) == [values_soql(RULE_BY_OBJECT[sobject], ids)]
    assert not any(_read_backs(body) for body in writes[1:])
    assert not any(_is_read_back(q, sobject) for q in recorder.queries())
    return writes


def _clean_up(route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """The demo's failed run cleaned up on `route` (5 records a collection, 2 collections a call)."""
    org, info = make_org("demo")
    recorder = Recorder(org)
    monkeypatch.setattr(org, "handle", recorder)
    write = {"route": route, "batch_size": 5, "collections_per_call": 2, "bulk_poll_max_s": 0.05}
    settings = load_settings(None, journal_dir=tmp_path, write=write)
    worker = Worker(make_client(org), settings, sleep=brief_sleep)
    assert worker.apply(worker.prepare([info.runs["failed_run"]])).exit_code is ExitCode.CLEAN
    return recorder


def _writes(recorder: Recorder, sobject: str) -> list[dict[str, Any]]:
    return [body for body in recorder.composite_bodies() if _patched(body, sobject)]


@pytest.mark.parametrize("route", ["composite", "bulk"])
def test_the_canary_reads_back_in_the_call_that_writes_it(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each phase's canary batch and its read-back are one Composite call (PATCHes, then the query, not
    collated), and the run finishes clean."""
    recorder = _clean_up(route, tmp_path, monkeypatch)
    phases = [s for s in RULE_BY_OBJECT if _writes(recorder, s)]
    assert len(phases) == 4
    for sobject in phases:
        _assert_canary_reads_back_in_its_call(recorder, sobject)


@pytest.mark.slow
def test_the_canary_costs_a_phase_at_most_one_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same clean-up with and without canary batches (the split made empty): with them, each phase's
    Composite writes are at most one call more, and the whole run at most one call per phase more."""
    with_canary = _clean_up("composite", tmp_path / "canary", monkeypatch)
    monkeypatch.setattr(canary, "split", lambda changes, size: ([], changes))
    without = _clean_up("composite", tmp_path / "none", monkeypatch)
    phases = [s for s in RULE_BY_OBJECT if _writes(without, s)]
    assert len(phases) == 4
    for sobject in phases:
        assert not any(_read_backs(body) for body in _writes(without, sobject))
        assert (
            len(_writes(without, sobject)) <= len(_writes(with_canary, sobject)) <= len(_writes(without, sobject)) + 1
        )
    assert len(with_canary.requests) <= len(without.requests) + len(phases)


@pytest.mark.parametrize("rewrite", [False, True], ids=["kept", "rewritten"])
def test_a_lost_canary_answer_is_read_back_apart(
    rewrite: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the answer to the lines' canary call is lost, the writer reads the records back (its usual recovery):
    kept as sent, they are confirmed, the comparison reads them with a query of its own and the run finishes
    clean; rewritten by a trigger, they are sent again and the run stops with exit 3, each mismatch journaled."""
    org, info = make_org("demo", faults=FaultProfile(lock_wait_s=0.2, rewrites=(REWRITE,) if rewrite else ()))
    recorder = Recorder(org, lose_canary_of=LINE)
    monkeypatch.setattr(org, "handle", recorder)
    run_id = info.runs["failed_run"]
    settings = load_settings(None, journal_dir=tmp_path / "j", write={"route": "composite"})
    worker = Worker(make_client(org), settings, sleep=brief_sleep)
    report = worker.apply(worker.prepare([run_id]))
    # The lost call's records read back to learn what was applied; kept, they are confirmed and the comparison
    # reads them again; rewritten, they are sent again with the read-back in that call.
    assert sum(_is_read_back(q, LINE) for q in recorder.queries()) == (1 if rewrite else 2)
    entries = [json.loads(x) for x in (tmp_path / "j" / f"{run_id}.jsonl").read_text().splitlines()]
    notes = [e for e in entries if e["type"] == "note" and e["event"] == "canary.mismatch"]
    if rewrite:
        assert report.exit_code is ExitCode.STOPPED
        assert len(notes) == settings.write.canary_records and all(n["stored"] == "Error" for n in notes)
    else:
        assert report.exit_code is ExitCode.CLEAN and notes == []


@pytest.mark.parametrize("route", ["composite", "bulk"])
def test_a_rewriting_trigger_stops_the_phase_after_the_canary(
    route: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a trigger rewriting cancelled lines to Error, the run writes only the canary batch of lines (10), reads
    them back in the same call, stops with exit 3 naming a record, the field and both values, journals each
    mismatch, and touches no other line, invoice or source; on the Bulk route no job is created."""
    org, info = make_org("demo", faults=FaultProfile(lock_wait_s=0.2, rewrites=(REWRITE,)))
    recorder = Recorder(org)
    monkeypatch.setattr(org, "handle", recorder)
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
    assert len(_assert_canary_reads_back_in_its_call(recorder, LINE)) == 1
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


def test_canary_rows_retried_on_a_lock_are_read_back_in_the_retry_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Canary lines refused on a row lock are sent again in the lock-retry rounds, and each retry call carries
    the read-back of its own records: the trigger's rewrite is still caught (exit 3), every canary line written
    is journaled as a mismatch, and no read-back goes as a call of its own."""
    faults = FaultProfile(lock_wait_s=0.2, lock_failure_rate=0.4, rewrites=(REWRITE,))
    org, info = make_org("demo", faults=faults)
    recorder = Recorder(org)
    monkeypatch.setattr(org, "handle", recorder)
    run_id = info.runs["failed_run"]
    before = org.store.snapshot()
    # One call at a time: the org's seeded lock faults then fall on the same rows on every run.
    write = {"route": "composite", "max_in_flight": 1}
    settings = load_settings(None, journal_dir=tmp_path / "j", write=write)
    worker = Worker(make_client(org), settings, sleep=brief_sleep)
    assert worker.apply(worker.prepare([run_id])).exit_code is ExitCode.STOPPED
    writes = _writes(recorder, LINE)
    assert len(writes) >= 2
    for body in writes:
        assert body["collateSubrequests"] is False
        assert _read_backs(body) == [values_soql(RULE_BY_OBJECT[LINE], _patched(body, LINE))]
    assert not any(_is_read_back(q, LINE) for q in recorder.queries())
    lines = _changed(before, org.store.snapshot(), LINE)
    entries = [json.loads(x) for x in (tmp_path / "j" / f"{run_id}.jsonl").read_text().splitlines()]
    notes = [e for e in entries if e["type"] == "note" and e["event"] == "canary.mismatch"]
    assert lines and {n["id"] for n in notes} == lines
