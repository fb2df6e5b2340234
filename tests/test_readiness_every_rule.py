"""Every readiness rule against the local org: a record the next run would bill is read through the reader and
assessed ready; one change to the org's data (the kind an admin would find) makes exactly that rule fire."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.readiness import Readiness, reader
from tests.support import copy_org, make_client, make_org, sobject_spec

FAR = "2099-01-01"


def _assess(org: LocalOrg, products: list[str], summaries: list[str]) -> Readiness:
    found = reader.read(make_client(org), order_product_ids=products, usage_summary_ids=summaries)
    return found.assess(datetime.now(UTC).date())


def _ready_pair(org: LocalOrg) -> tuple[dict[str, Any], dict[str, Any]]:
    """An order product the next run would bill, with a usage summary of it that would be billed too."""
    snapshot = org.store.snapshot()
    summaries = [
        r
        for r in snapshot["blng__UsageSummary__c"]
        if r["blng__OrderProduct__c"] and r["blng__Status__c"] == "Queued For Invoice"
    ]
    products = {r["Id"]: r for r in snapshot["OrderItem"]}
    for summary in summaries:
        product = products[summary["blng__OrderProduct__c"]]
        for record, spec in ((product, "OrderItem"), (summary, "blng__UsageSummary__c")):
            org.store.update(
                sobject_spec(spec),
                record["Id"],
                {"blng__InvoiceRunProcessingStatus__c": "Pending Billing", "blng__InvoiceRun__c": None},
            )
        result = _assess(org, [product["Id"]], [summary["Id"]])
        if all(record.ready and not record.reasons for record in result.records):
            return product, summary
    raise AssertionError("the demo has no order product and usage summary the next run would bill")


Ready = tuple[LocalOrg, dict[str, Any], dict[str, Any]]


@pytest.fixture(scope="module")
def ready_once() -> Ready:
    """The search `ready` gives each test a copy of the result of, made once."""
    org, _ = make_org("demo")
    return (org, *_ready_pair(org))


@pytest.fixture
def ready(ready_once: Ready) -> Ready:
    """The demo org with an order product and a usage summary of it that the next run would bill."""
    org, product, summary = ready_once
    return copy_org(org), copy.deepcopy(product), copy.deepcopy(summary)


def _line_naming(org: LocalOrg, field: str, record_id: str, *, posted: bool) -> None:
    snapshot = org.store.snapshot()
    status = "Posted" if posted else "Draft"
    invoice = next(r["Id"] for r in snapshot["blng__Invoice__c"] if r["blng__InvoiceStatus__c"] == status)
    line = next(r["Id"] for r in snapshot["blng__InvoiceLine__c"] if r["blng__Invoice__c"] == invoice)
    org.store.update(
        sobject_spec("blng__InvoiceLine__c"),
        line,
        {"blng__InvoiceLineStatus__c": "Draft", field: record_id},
    )


def _rule_of(org: LocalOrg, name: str, value: str) -> str:
    rules = org.store.snapshot()["blng__BillingRule__c"]
    return str(next(r["Id"] for r in rules if r[name] == value))


# rule code -> how to break it: the record whose fields change (product, summary or its order), and the values
PRODUCT_RULES: dict[str, tuple[str, dict[str, Any]]] = {
    "order_not_activated": ("order", {"Status": "Draft"}),
    "not_activated": ("product", {"SBQQ__Activated__c": 0}),
    "processing_status": ("product", {"blng__InvoiceRunProcessingStatus__c": "Error"}),
    "on_hold": ("product", {"blng__HoldBilling__c": "Yes"}),
    "no_charge_type": ("product", {"SBQQ__ChargeType__c": None}),
    "no_billing_rule": ("product", {"blng__BillingRule__c": None}),
    "no_tax_rule": ("product", {"blng__TaxRule__c": None}),
    "no_revenue_rule": ("product", {"blng__RevenueRecognitionRule__c": None}),
    # These three rules concern Recurring and One-Time charges only.
    "no_next_billing_date": ("product", {"blng__NextBillingDate__c": None, "SBQQ__ChargeType__c": "Recurring"}),
    "no_billable_unit_price": ("product", {"blng__BillableUnitPrice__c": None, "SBQQ__ChargeType__c": "Recurring"}),
    "no_billing_frequency": ("product", {"SBQQ__BillingFrequency__c": None}),
    "nothing_to_bill": ("product", {"blng__PendingBillings__c": 0.0, "SBQQ__ChargeType__c": "Recurring"}),
    "batch_not_scheduled": ("order", {"blng__InvoiceBatch__c": "Batch C"}),
    "after_target_date": ("product", {"blng__NextBillingDate__c": FAR}),
    "us_status": ("summary", {"blng__Status__c": "New"}),
    "us_processing_status": ("summary", {"blng__InvoiceRunProcessingStatus__c": "Error"}),
    "us_order_product_on_hold": ("product", {"blng__HoldBilling__c": "Yes"}),
    "us_batch_not_scheduled": ("order", {"blng__InvoiceBatch__c": "Batch C"}),
    "us_after_target_date": ("summary", {"blng__NextBillingDate__c": FAR}),
}


@pytest.mark.parametrize("code", sorted(PRODUCT_RULES))
def test_one_change_makes_the_rule_fire(ready: Ready, code: str) -> None:
    """The rule reports the record once the field it reads says so."""
    org, product, summary = ready
    where, values = PRODUCT_RULES[code]
    target = {"product": ("OrderItem", product["Id"]), "summary": ("blng__UsageSummary__c", summary["Id"])}
    target["order"] = ("Order", product["OrderId"])
    name, record_id = target[where]
    org.store.update(sobject_spec(name), record_id, values)
    result = _assess(org, [product["Id"]], [summary["Id"]])
    assert code in {reason.code for record in result.records for reason in record.reasons}


def test_rule_generates_no_invoices_fires_on_a_billing_rule_that_does_not_invoice(ready: Ready) -> None:
    """An order product whose billing rule's Generate Invoices is No is reported."""
    org, product, summary = ready
    rule = _rule_of(org, "blng__GenerateInvoices__c", "No")
    org.store.update(sobject_spec("OrderItem"), product["Id"], {"blng__BillingRule__c": rule})
    result = _assess(org, [product["Id"]], [summary["Id"]])
    assert "rule_generates_no_invoices" in {r.code for record in result.records for r in record.reasons}


@pytest.mark.parametrize(
    ("code", "field", "posted"),
    [
        ("draft_line", "blng__OrderProduct__c", False),
        ("posted_invoice_draft_line", "blng__OrderProduct__c", True),
        ("us_draft_line", "blng__UsageSummary__c", False),
        ("us_posted_invoice_draft_line", "blng__UsageSummary__c", True),
    ],
)
def test_a_draft_line_naming_the_record_is_reported(ready: Ready, code: str, field: str, posted: bool) -> None:
    """A Draft invoice line still naming the record (on a posted invoice or not) is reported."""
    org, product, summary = ready
    _line_naming(org, field, product["Id"] if field == "blng__OrderProduct__c" else summary["Id"], posted=posted)
    result = _assess(org, [product["Id"]], [summary["Id"]])
    assert code in {reason.code for record in result.records for reason in record.reasons}
