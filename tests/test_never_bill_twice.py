"""Never bill twice, over generated orgs: the dependency rule and the link model, checked end to end.

Hypothesis builds small Billing orgs in the local org (any statuses, empty and dangling links, links across
runs), picks records whose writes fail (someone else holds their lock from the start of their phase), runs
the worker, and checks the org with the oracle (`tests/oracle.py`, written from DOMAIN.md apart from the
planner): nothing posted or billed on a posted invoice changed, no source released while a line or invoice
that billed it is not cancelled, every record that could reach its target did, and the report's failed and
held records are exactly those the oracle expects. A second invocation, the locks gone, finishes the run.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfcleanup import ids
from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.store import Store
from sfcleanup.report import Report, write_failures_csv
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after, released_too_early
from tests.support import brief_sleep, make_client, make_org, sobject_spec

# Weighted towards what a failed run leaves (drafts to cancel), with every other value, unknown ones included.
INVOICE_STATES = (
    *("Draft", "Draft", "Draft", "Error", "Initiated", "Cancelled"),
    *(None, "Posted", "Post In progress", "Rebilled"),
)
LINE_STATES = ("Draft", "Draft", "Draft", "Error", "Cancelled", None, "Posted", "Post In progress", "Rebilled")
PROCESSING_STATES = ("Error", "In Progress", "In Progress", "Completed", "Pending Billing")
RUNS = ("this", "this", "this", "other", None)
LINKS = ("none", "some", "some", "some", "some", "dangling")
LOCK_OWNER = 10**9


@dataclass
class Org:
    """A generated org: the local org, the run to clean, and the records whose writes will fail."""

    org: LocalOrg
    run_id: str
    failing: dict[str, set[str]] = field(default_factory=dict)  # object -> ids locked when its phase starts

    @property
    def failing_ids(self) -> frozenset[str]:
        return frozenset(i for ids_ in self.failing.values() for i in ids_)


@st.composite
def orgs(draw: st.DrawFn) -> Org:
    store = Store()
    add = store.insert
    account = add(sobject_spec("Account"), {"Name": "Acme"})
    order = add(sobject_spec("Order"), {"AccountId": account, "Status": "Activated", "EffectiveDate": "2026-11-01"})
    runs = {
        role: add(sobject_spec("blng__InvoiceRun__c"), {"Name": role, "blng__Status__c": "Failed"})
        for role in ("this", "other")
    }

    def run_of() -> str | None:
        role = draw(st.sampled_from(RUNS))
        return runs[role] if role else None

    def dangling(prefix: str) -> str:
        return ids.make(prefix, 900_000 + draw(st.integers(0, 9)))

    invoice_spec, line_spec = sobject_spec("blng__Invoice__c"), sobject_spec("blng__InvoiceLine__c")
    product_spec, usage_spec = sobject_spec("OrderItem"), sobject_spec("blng__UsageSummary__c")
    invoices = [
        add(
            invoice_spec,
            {
                "blng__Account__c": account,
                "blng__InvoiceStatus__c": draw(st.sampled_from(INVOICE_STATES)),
                "blng__InvoiceRunCreatedBy__c": run_of(),
            },
        )
        for _ in range(draw(st.integers(0, 4)))
    ]

    def invoice_link() -> str | None:
        kind = draw(st.sampled_from(LINKS))
        if kind == "dangling" or (kind == "some" and not invoices):
            return dangling(invoice_spec.key_prefix)
        return draw(st.sampled_from(invoices)) if kind == "some" else None

    def source_fields() -> dict[str, Any]:
        run = run_of()
        return {
            "blng__InvoiceRunProcessingStatus__c": draw(st.sampled_from(PROCESSING_STATES)),
            "blng__InvoiceRun__c": run,
            "blng__InvoiceRunStartDate__c": "2026-11-20T01:00:00.000+0000" if run else None,
        }

    products = [
        add(product_spec, {"OrderId": order, "Quantity": 1.0, "UnitPrice": 10.0, **source_fields()})
        for _ in range(draw(st.integers(0, 3)))
    ]
    usage = [
        add(
            usage_spec,
            {
                "blng__OrderProduct__c": draw(st.sampled_from(products)) if products else None,
                "blng__Invoice__c": invoice_link(),
                **source_fields(),
            },
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    lines = [
        add(
            line_spec,
            {
                "blng__Invoice__c": invoice_link(),
                "blng__InvoiceLineStatus__c": draw(st.sampled_from(LINE_STATES)),
                "blng__InvoiceRun__c": run_of(),
                "blng__OrderProduct__c": draw(st.sampled_from([None, *products])),
                "blng__UsageSummary__c": draw(st.sampled_from([None, *usage])),
            },
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    for summary in usage:
        own = draw(st.sampled_from(("none", "line", "line", "dangling")))
        if own == "line" and lines:
            store.update(usage_spec, summary, {"blng__InvoiceLine__c": draw(st.sampled_from(lines))})
        elif own == "dangling":
            store.update(usage_spec, summary, {"blng__InvoiceLine__c": dangling(line_spec.key_prefix)})
    org = Org(LocalOrg(store, faults=FaultProfile(lock_wait_s=0.01)), runs["this"])
    for sobject, records in (
        ("blng__InvoiceLine__c", lines),
        ("blng__Invoice__c", invoices),
        ("blng__UsageSummary__c", usage),
        ("OrderItem", products),
    ):
        org.failing[sobject] = set(draw(st.sets(st.sampled_from(records), max_size=2))) if records else set()
    return org


def _lock_at_phase_start(generated: Org) -> Callable[[str, int], Callable[[int], None]]:
    """A progress factory: when a phase starts, someone else takes the locks of its failing records."""

    def factory(label: str, total: int) -> Callable[[int], None]:
        sobject = label.rsplit(" ", 1)[-1]
        generated.org.locks.acquire(LOCK_OWNER, generated.failing.get(sobject, ()))
        return lambda done: None

    return factory


def _invoke(generated: Org, journal: Path, route: str, *, locked: bool) -> Report:
    config = load_settings(None, journal_dir=journal, write={"route": route, "bulk_poll_max_s": 0.01})
    progress = _lock_at_phase_start(generated) if locked else None
    worker = Worker(make_client(generated.org), config, progress=progress, sleep=brief_sleep)
    return worker.apply(worker.prepare([generated.run_id]))


def _changed(before: dict[str, dict[str, dict[str, Any]]], expected: dict[str, dict[str, dict[str, Any]]]) -> set[str]:
    return {
        record_id
        for sobject, records in expected.items()
        for record_id, record in records.items()
        if record != before[sobject][record_id]
    }


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated=orgs(), route=st.sampled_from(("composite", "composite", "bulk")))
def test_generated_orgs_never_bill_twice(generated: Org, route: str) -> None:
    """With any records failing on any phase, one invocation changes exactly what the oracle allows, releases
    nothing early, reports exactly the failed and held records, and a second invocation finishes the run."""
    org, run_id = generated.org, generated.run_id
    before = org.store.snapshot()
    full = expected_after(before, run_id)
    partial = expected_after(before, run_id, failing=generated.failing_ids)
    with tempfile.TemporaryDirectory() as directory:
        journal = Path(directory)
        first = _invoke(generated, journal, route, locked=True)
        after = org.store.snapshot()
        assert released_too_early(before, after, run_id) == []
        assert differences(partial, after, skip={run_id}) == []
        old = by_id(before)
        wanted, reached = _changed(old, full), _changed(old, partial)
        failed = {f.id for r in first.runs for f in r.failures}
        held = {h.id for r in first.runs for h in r.held}
        # Every record the oracle expects left behind is reported, as failed (a failing record the worker
        # tried) or held (it waits for a failed or held record; a failing record may be held before its try).
        assert failed | held == wanted - reached
        assert failed <= generated.failing_ids and not failed & held
        assert first.exit_code is (ExitCode.ROW_FAILURES if failed | held else ExitCode.CLEAN)

        org.locks.release_all(LOCK_OWNER)
        second = _invoke(generated, journal, route, locked=False)
        assert second.exit_code is ExitCode.CLEAN
        final = org.store.snapshot()
        assert released_too_early(before, final, run_id) == []
        assert differences(full, final, skip={run_id}) == []


# --- the findings, by hand ----------------------------------------------------------------------------------


def _demo(tmp_path: Path) -> tuple[LocalOrg, str, Path]:
    org, info = make_org("demo", FaultProfile(lock_wait_s=0.01))
    return org, info.runs["failed_run"], tmp_path / "journal"


def _clean(org: LocalOrg, run_id: str, journal: Path, progress: Any = None) -> Report:
    worker = Worker(make_client(org), load_settings(None, journal_dir=journal), progress=progress, sleep=lambda _: 0)
    return worker.apply(worker.prepare([run_id]))


def _billed_by(snapshot: dict[str, dict[str, dict[str, Any]]], line_id: str) -> set[str]:
    line = snapshot["blng__InvoiceLine__c"][line_id]
    return {x for x in (line["blng__OrderProduct__c"], line["blng__UsageSummary__c"]) if x}


def test_finding_1_a_line_that_fails_to_cancel_holds_what_it_billed(tmp_path: Path) -> None:
    """A line that stays Draft (its lock never clears) keeps its sources In Progress/Error, reported as held
    with the line and the error named, in the failures CSV, exit 1; the next invocation finishes them."""
    org, run_id, journal = _demo(tmp_path)
    before = org.store.snapshot()
    old = by_id(before)
    line = next(
        i
        for i, r in old["blng__InvoiceLine__c"].items()
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceLineStatus__c"] == "Draft" and _billed_by(old, i)
    )
    org.locks.acquire(LOCK_OWNER, [line])
    report = _clean(org, run_id, journal)
    after = by_id(org.store.snapshot())
    assert report.exit_code is ExitCode.ROW_FAILURES
    for source in _billed_by(old, line):
        sobject = "OrderItem" if source in old["OrderItem"] else "blng__UsageSummary__c"
        assert after[sobject][source] == old[sobject][source]
    held = {h.id: h.reason for h in report.runs[0].held}
    assert _billed_by(old, line) <= set(held)
    # Its invoice waits for it too: an invoice is cancelled only after every line of it the clean-up cancels.
    invoice = old["blng__InvoiceLine__c"][line]["blng__Invoice__c"]
    assert after["blng__Invoice__c"][invoice] == old["blng__Invoice__c"][invoice]
    assert invoice in held
    assert held[next(iter(_billed_by(old, line)))] == f"held: line {line} not Cancelled (UNABLE_TO_LOCK_ROW)"
    assert released_too_early(before, org.store.snapshot(), run_id) == []
    rows = list(csv.DictReader(write_failures_csv(report, tmp_path / "failures.csv").open()))  # type: ignore[union-attr]
    assert {r["Id"] for r in rows if r["ErrorCode"] == "HELD"} == set(held)
    assert report.to_json()["runs"][0]["objects"]["OrderItem"]["held"] >= 1

    org.locks.release_all(LOCK_OWNER)
    assert _clean(org, run_id, journal).exit_code is ExitCode.CLEAN
    assert differences(expected_after(before, run_id), org.store.snapshot(), skip={run_id}) == []


def test_finding_1_an_invoice_that_fails_to_cancel_holds_what_its_lines_billed(tmp_path: Path) -> None:
    """An invoice whose cancel fails (locked when its phase starts, after its lines were cancelled) keeps
    every source its lines billed where it was."""
    org, run_id, journal = _demo(tmp_path)
    before = org.store.snapshot()
    old = by_id(before)
    invoice = next(
        i
        for i, r in old["blng__Invoice__c"].items()
        if r["blng__InvoiceRunCreatedBy__c"] == run_id and r["blng__InvoiceStatus__c"] == "Draft"
    )
    lines = [i for i, r in old["blng__InvoiceLine__c"].items() if r["blng__Invoice__c"] == invoice]
    billed = {s for line in lines for s in _billed_by(old, line)}
    assert billed

    def progress(label: str, total: int) -> Any:
        if label.endswith("blng__Invoice__c"):
            org.locks.acquire(LOCK_OWNER, [invoice])
        return lambda done: None

    report = _clean(org, run_id, journal, progress)
    after = by_id(org.store.snapshot())
    assert after["blng__Invoice__c"][invoice]["blng__InvoiceStatus__c"] == "Draft"
    for source in billed:
        sobject = "OrderItem" if source in old["OrderItem"] else "blng__UsageSummary__c"
        assert after[sobject][source] == old[sobject][source]
    assert billed <= {h.id for h in report.runs[0].held}
    assert released_too_early(before, org.store.snapshot(), run_id) == []


def _posted_line(old: dict[str, dict[str, dict[str, Any]]]) -> str:
    posted = {i for i, r in old["blng__Invoice__c"].items() if r["blng__InvoiceStatus__c"] == "Posted"}
    return next(i for i, r in old["blng__InvoiceLine__c"].items() if r["blng__Invoice__c"] in posted)


def _half_linked_summary(org: LocalOrg, run_id: str) -> str:
    """An eligible usage summary of the run whose own invoice link is empty and that no line of the run names."""
    old = by_id(org.store.snapshot())
    summary = next(
        i
        for i, r in old["blng__UsageSummary__c"].items()
        if r["blng__InvoiceRun__c"] == run_id and r["blng__InvoiceRunProcessingStatus__c"] in ("Error", "In Progress")
    )
    line_spec, usage_spec = sobject_spec("blng__InvoiceLine__c"), sobject_spec("blng__UsageSummary__c")
    for line_id, line in old["blng__InvoiceLine__c"].items():
        if line["blng__UsageSummary__c"] == summary:
            org.store.update(line_spec, line_id, {"blng__UsageSummary__c": None})
    org.store.update(usage_spec, summary, {"blng__Invoice__c": None, "blng__InvoiceLine__c": None})
    return summary


def test_finding_2_a_usage_summarys_own_line_on_a_posted_invoice_protects_it(tmp_path: Path) -> None:
    """A usage summary whose own invoice link is empty but whose own invoice line sits on a posted invoice is
    left alone and reported as billed on a posted invoice."""
    org, run_id, journal = _demo(tmp_path)
    summary = _half_linked_summary(org, run_id)
    org.store.update(
        sobject_spec("blng__UsageSummary__c"),
        summary,
        {"blng__InvoiceLine__c": _posted_line(by_id(org.store.snapshot()))},
    )
    before = by_id(org.store.snapshot())
    report = _clean(org, run_id, journal)
    assert by_id(org.store.snapshot())["blng__UsageSummary__c"][summary] == before["blng__UsageSummary__c"][summary]
    reasons = {a.id: a.reason.value for a in report.runs[0].anomalies}
    assert reasons[summary] == "source_billed_on_posted_invoice"


def test_finding_2_a_line_of_another_run_on_a_posted_invoice_protects_a_usage_summary(tmp_path: Path) -> None:
    """A usage summary named by a line of another run that sits on a posted invoice is left alone (a usage
    summary is billed once), even when none of its own links says so."""
    org, run_id, journal = _demo(tmp_path)
    summary = _half_linked_summary(org, run_id)
    line = _posted_line(by_id(org.store.snapshot()))
    other_run = next(r for r in by_id(org.store.snapshot())["blng__InvoiceRun__c"] if r != run_id)
    org.store.update(
        sobject_spec("blng__InvoiceLine__c"), line, {"blng__UsageSummary__c": summary, "blng__InvoiceRun__c": other_run}
    )
    before = by_id(org.store.snapshot())
    report = _clean(org, run_id, journal)
    assert by_id(org.store.snapshot())["blng__UsageSummary__c"][summary] == before["blng__UsageSummary__c"][summary]
    assert {a.id: a.reason.value for a in report.runs[0].anomalies}[summary] == "source_billed_on_posted_invoice"


def test_a_draft_line_of_another_run_keeps_a_usage_summary_for_a_person(tmp_path: Path) -> None:
    """A usage summary still billed by a Draft line of another run (which this clean-up does not cancel) is
    not reset: it is reported as billed on an open invoice."""
    org, run_id, journal = _demo(tmp_path)
    summary = _half_linked_summary(org, run_id)
    old = by_id(org.store.snapshot())
    other_run = next(r for r in old["blng__InvoiceRun__c"] if r != run_id)
    draft = next(
        i
        for i, r in old["blng__InvoiceLine__c"].items()
        if r["blng__InvoiceLineStatus__c"] == "Draft" and r["blng__InvoiceRun__c"] == run_id
    )
    org.store.update(
        sobject_spec("blng__InvoiceLine__c"),
        draft,
        {"blng__UsageSummary__c": summary, "blng__InvoiceRun__c": other_run},
    )
    report = _clean(org, run_id, journal)
    after = by_id(org.store.snapshot())
    assert after["blng__UsageSummary__c"][summary]["blng__InvoiceRunProcessingStatus__c"] in ("Error", "In Progress")
    assert {a.id: a.reason.value for a in report.runs[0].anomalies}[summary] == "source_billed_on_open_invoice"


def test_a_line_on_a_draft_invoice_of_another_run_keeps_its_source_for_a_person(tmp_path: Path) -> None:
    """A source billed by a line of this run that sits on a Draft invoice of another run (which this clean-up does
    not cancel) is not reset: it is reported as billed on an open invoice."""
    org, run_id, journal = _demo(tmp_path)
    old = by_id(org.store.snapshot())
    other_run = next(r for r in old["blng__InvoiceRun__c"] if r != run_id)
    line = next(
        i
        for i, r in old["blng__InvoiceLine__c"].items()
        if r["blng__InvoiceRun__c"] == run_id
        and r["blng__InvoiceLineStatus__c"] == "Draft"
        and r["blng__OrderProduct__c"]
    )
    product = old["blng__InvoiceLine__c"][line]["blng__OrderProduct__c"]
    invoice = old["blng__InvoiceLine__c"][line]["blng__Invoice__c"]
    org.store.update(sobject_spec("blng__Invoice__c"), invoice, {"blng__InvoiceRunCreatedBy__c": other_run})
    before = org.store.snapshot()
    report = _clean(org, run_id, journal)
    after = by_id(org.store.snapshot())
    assert after["OrderItem"][product] == by_id(before)["OrderItem"][product]
    assert {a.id: a.reason.value for a in report.runs[0].anomalies}[product] == "source_billed_on_open_invoice"
    assert released_too_early(before, org.store.snapshot(), run_id) == []
