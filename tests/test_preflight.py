"""Preflight against what an org's describe and limits say: missing fields and values, run states, budget."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sfcleanup import billing, preflight
from sfcleanup.config import WriteSettings
from sfcleanup.errors import BudgetReserveReached, PreflightError
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.models import InvoiceRun
from sfcleanup.salesforce.client import SalesforceClient
from tests.support import make_client


class RecordedOrg:
    """Answers describe and limits from bodies recorded from the local org, edited per test."""

    def __init__(self, client: SalesforceClient) -> None:
        self.describes = {name: client.describe(name) for name in billing.FIELDS_READ}
        self.limits_body: dict[str, Any] = {"DailyApiRequests": {"Max": 1000, "Remaining": 1000}}

    def describe(self, sobject: str) -> dict[str, Any]:
        return copy.deepcopy(self.describes[sobject])

    def get_many(self, what: str, paths: list[str]) -> list[dict[str, Any]]:
        return [self.describe(path.split("/")[1]) for path in paths]

    def limits(self) -> dict[str, Any]:
        return self.limits_body

    def drop_value(self, sobject: str, field: str, value: str) -> None:
        for entry in self.describes[sobject]["fields"]:
            if entry["name"] == field:
                entry["picklistValues"] = [v for v in entry["picklistValues"] if v["value"] != value]

    def drop_field(self, sobject: str, field: str) -> None:
        self.describes[sobject]["fields"] = [f for f in self.describes[sobject]["fields"] if f["name"] != field]


@pytest.fixture
def recorded() -> RecordedOrg:
    return RecordedOrg(make_client(LocalOrg()))


def test_ready_org_has_no_problems(recorded: RecordedOrg) -> None:
    """The local org's describe satisfies every check, and its run key prefix is read from describe."""
    readiness = preflight.check_org(recorded)
    assert readiness.problems == ()
    assert readiness.run_key_prefix == "a1A"


@pytest.mark.parametrize(
    ("sobject", "field", "value"),
    [
        (billing.INVOICE_RUN, billing.CLEANUP_STATUS, "Completed with errors"),
        (billing.INVOICE, "blng__InvoiceStatus__c", "Cancelled"),
        (billing.INVOICE_LINE, "blng__InvoiceLineStatus__c", "Cancelled"),
        (billing.ORDER_PRODUCT, billing.PROCESSING_STATUS, "Pending Billing"),
    ],
)
def test_missing_picklist_value_is_named_with_the_fix(
    recorded: RecordedOrg, sobject: str, field: str, value: str
) -> None:
    """A picklist value the clean-up writes, missing from the org, stops preflight naming it and where to add it."""
    recorded.drop_value(sobject, field, value)
    with pytest.raises(PreflightError, match=f"'{value}' is missing from {sobject}.{field}.*Setup > Object Manager"):
        preflight.require_ready(preflight.check_org(recorded))


def test_missing_or_read_only_field(recorded: RecordedOrg) -> None:
    """A field the user cannot see, or cannot edit but must, is reported with the permission to grant."""
    recorded.drop_field(billing.USAGE_SUMMARY, billing.RUN_START_DATE)
    for entry in recorded.describes[billing.INVOICE]["fields"]:
        if entry["name"] == "blng__InvoiceStatus__c":
            entry["updateable"] = False
    problems = preflight.check_org(recorded).problems
    assert any("blng__UsageSummary__c.blng__InvoiceRunStartDate__c is missing" in p for p in problems)
    assert any("blng__Invoice__c.blng__InvoiceStatus__c is read-only" in p for p in problems)


@pytest.mark.parametrize(
    ("status", "include_completed", "refused"),
    [
        ("Failed", False, None),
        ("Completed with errors", False, None),
        ("Canceled", False, None),
        ("Stopped", False, None),
        ("Completed", False, "--include-completed"),
        ("Completed", True, None),
        ("Started", True, "still running"),
        ("Step 3 : Tax Calculation - Processing", True, "still running"),
        ("Step 1 : Invoice Creation - Complete", True, "still running"),
    ],
)
def test_run_states(recorded: RecordedOrg, status: str, include_completed: bool, refused: str | None) -> None:
    """Failed states are accepted, running ones always refused, Completed only with the flag."""
    readiness = preflight.check_org(recorded)
    reason = preflight.refusal_for(
        InvoiceRun(id="a1A5g0000000001EAA", status=status), readiness, include_completed=include_completed
    )
    assert (reason is None) if refused is None else (reason is not None and refused in reason)


def test_budget_keeps_the_reserve(recorded: RecordedOrg) -> None:
    """Writing is refused when the estimate would eat into the reserve left for the rest of the business."""
    recorded.limits_body = {"DailyApiRequests": {"Max": 1000, "Remaining": 230}}
    assert preflight.check_budget(recorded.limits(), 30, 0.2)["reserve"] == 200
    with pytest.raises(BudgetReserveReached, match="20% reserve"):
        preflight.check_budget(recorded.limits(), 31, 0.2)


def test_estimate_counts_composite_calls() -> None:
    """A Composite phase costs a call per 1,000 records; a Bulk phase a fixed number of calls per job."""
    assert preflight.estimate_phase_calls(0, per_call=1000) == 0
    assert preflight.estimate_phase_calls(2001, per_call=1000) == 3
    assert preflight.estimate_phase_calls(98_000, per_call=1000, bulk_jobs=3) == 3 * preflight.BULK_CALLS_PER_JOB


def test_the_canary_costs_a_phase_one_call_at_most() -> None:
    """The canary's read-back rides in its own write call: a phase larger than the canary batch pays one call
    for it (the call that could have carried its records with the rest), a phase no larger pays none."""
    write = WriteSettings()
    assert preflight.canary_calls(0, write) == 0
    assert preflight.canary_calls(write.canary_records, write) == 0
    assert preflight.canary_calls(write.canary_records + 1, write) == 1
    assert preflight.canary_calls(98_000, write) == 1
