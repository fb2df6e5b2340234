"""Never bill twice, over generated orgs: the dependency rule and the link model, checked end to end.

Hypothesis builds small Billing orgs in the local org (any statuses, empty and dangling links, links across
runs), picks records whose writes fail (someone else holds their lock from the start of their phase), runs
the worker, and checks the org with the oracle (`tests/oracle.py`, written from DOMAIN.md apart from the
planner): nothing posted or billed on a posted invoice changed, no source released while a line or invoice
that billed it is not cancelled, every record that could reach its target did, and the report's failed and
held records are exactly those the oracle expects. A second invocation, the locks gone, finishes the run.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfcleanup import ids
from sfcleanup.config import load_settings
from sfcleanup.errors import ExitCode
from sfcleanup.localorg import schema
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.store import Store
from sfcleanup.report import Report
from sfcleanup.worker import Worker
from tests.oracle import by_id, differences, expected_after, released_too_early
from tests.support import make_client

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


def _spec(name: str) -> SObjectSpec:
    spec = schema.sobject(name)
    assert spec is not None
    return spec


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
    account = add(_spec("Account"), {"Name": "Acme"})
    order = add(_spec("Order"), {"AccountId": account, "Status": "Activated", "EffectiveDate": "2026-11-01"})
    runs = {
        role: add(_spec("blng__InvoiceRun__c"), {"Name": role, "blng__Status__c": "Failed"})
        for role in ("this", "other")
    }

    def run_of() -> str | None:
        role = draw(st.sampled_from(RUNS))
        return runs[role] if role else None

    def dangling(prefix: str) -> str:
        return ids.make(prefix, 900_000 + draw(st.integers(0, 9)))

    invoice_spec, line_spec = _spec("blng__Invoice__c"), _spec("blng__InvoiceLine__c")
    product_spec, usage_spec = _spec("OrderItem"), _spec("blng__UsageSummary__c")
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
    worker = Worker(make_client(generated.org), config, progress=progress, sleep=lambda _: None)
    return worker.apply(worker.prepare([generated.run_id]))


def _changed(before: dict[str, dict[str, dict[str, Any]]], expected: dict[str, dict[str, dict[str, Any]]]) -> set[str]:
    return {
        record_id
        for sobject, records in expected.items()
        for record_id, record in records.items()
        if record != before[sobject][record_id]
    }


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
        assert failed == wanted & generated.failing_ids
        assert held == wanted - reached - generated.failing_ids
        assert first.exit_code is (ExitCode.ROW_FAILURES if failed | held else ExitCode.CLEAN)

        org.locks.release_all(LOCK_OWNER)
        second = _invoke(generated, journal, route, locked=False)
        assert second.exit_code is ExitCode.CLEAN
        final = org.store.snapshot()
        assert released_too_early(before, final, run_id) == []
        assert differences(full, final, skip={run_id}) == []
