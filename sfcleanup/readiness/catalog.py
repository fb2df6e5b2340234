"""The readiness rules as data: what each one checks, the fields it needs, and where the fact comes from.

"documented" rules restate Salesforce documentation (the source names the page or knowledge article);
"inferred" rules follow from documented behaviour but are not stated anywhere as a rule. docs/readiness.md
is the same table for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sfcleanup.readiness.fields import BILLING_RULE, ORDER, ORDER_PRODUCT, SCHEDULER, USAGE_SUMMARY

KB_UNABLE_TO_INVOICE = "KB 000381770 (Unable to Invoice an Order using Salesforce Billing)"
KB_POSTED_DRAFT_LINES = "KB 000380799 (Cancel or Post Invoice Lines in Draft status while Invoice is Posted)"
KB_INVOICE_RUN_PRACTICES = "KB 000389310 (invoice run best practices: Invoice Batch, null only selects null)"
DEV_SCHEDULER = "blng_dev blng__InvoiceScheduler__c (blng__TargetDate__c)"
DEV_USAGE_SUMMARY = "blng_dev blng__UsageSummary__c (blng__NextBillingDate__c, blng__Status__c)"
DEV_BILLING_RULE = "blng_dev blng__BillingRule__c (blng__GenerateInvoices__c)"


class Basis(StrEnum):
    DOCUMENTED = "documented"
    INFERRED = "inferred"


class Severity(StrEnum):
    # The next run will not bill the record.
    BLOCKS = "blocks"
    # The documentation disagrees with itself on this case: the next run may or may not bill it.
    BORDERLINE = "borderline"


@dataclass(frozen=True)
class RuleSpec:
    code: str
    sobject: str
    # The field the reason names (the one an admin changes); always one of `fields`.
    field: str
    # Every field the rule reads. If the org lacks one, the rule is off.
    fields: tuple[str, ...]
    basis: Basis
    source: str
    summary: str


def _q(sobject: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{sobject}.{name}" for name in names)


OP_ORDER = _q(ORDER_PRODUCT, "OrderId")
OP_CHARGE = _q(ORDER_PRODUCT, "SBQQ__ChargeType__c")
SCHEDULER_FIELDS = _q(SCHEDULER, "blng__InvoiceBatches__c")
OP_BATCH = (*OP_ORDER, *_q(ORDER, "blng__InvoiceBatch__c"), *SCHEDULER_FIELDS)
US_BATCH = (*_q(USAGE_SUMMARY, "blng__OrderProduct__c"), *OP_BATCH)
LINE_FIELDS = (
    *_q("blng__InvoiceLine__c", "blng__InvoiceLineStatus__c", "blng__Invoice__c"),
    *_q("blng__Invoice__c", "blng__InvoiceStatus__c"),
)


def _op(code: str, field: str, needs: tuple[str, ...], basis: Basis, source: str, summary: str) -> RuleSpec:
    qualified = f"{ORDER_PRODUCT}.{field}" if "." not in field else field
    return RuleSpec(code, ORDER_PRODUCT, qualified, tuple(dict.fromkeys((qualified, *needs))), basis, source, summary)


def _us(code: str, field: str, needs: tuple[str, ...], basis: Basis, source: str, summary: str) -> RuleSpec:
    qualified = f"{USAGE_SUMMARY}.{field}" if "." not in field else field
    return RuleSpec(code, USAGE_SUMMARY, qualified, tuple(dict.fromkeys((qualified, *needs))), basis, source, summary)


DOC, INF = Basis.DOCUMENTED, Basis.INFERRED
RULES: tuple[RuleSpec, ...] = (
    _op("order_not_activated", "Order.Status", OP_ORDER, DOC, KB_UNABLE_TO_INVOICE, "order is not Activated"),
    _op("not_activated", "SBQQ__Activated__c", (), DOC, KB_UNABLE_TO_INVOICE, "order product is not activated"),
    _op(
        "processing_status",
        "blng__InvoiceRunProcessingStatus__c",
        (),
        DOC,
        KB_UNABLE_TO_INVOICE,
        "Invoice Run Processing Status is not Pending Billing",
    ),
    _op("on_hold", "blng__HoldBilling__c", (), DOC, KB_UNABLE_TO_INVOICE, "Hold Billing is Yes"),
    _op("no_charge_type", "SBQQ__ChargeType__c", (), DOC, KB_UNABLE_TO_INVOICE, "Charge Type is empty"),
    _op("no_billing_rule", "blng__BillingRule__c", (), DOC, KB_UNABLE_TO_INVOICE, "Billing Rule is empty"),
    _op("no_tax_rule", "blng__TaxRule__c", (), DOC, KB_UNABLE_TO_INVOICE, "Tax Rule is empty"),
    _op(
        "no_revenue_rule",
        "blng__RevenueRecognitionRule__c",
        (),
        DOC,
        KB_UNABLE_TO_INVOICE,
        "Revenue Recognition Rule is empty",
    ),
    _op(
        "rule_generates_no_invoices",
        f"{BILLING_RULE}.blng__GenerateInvoices__c",
        _q(ORDER_PRODUCT, "blng__BillingRule__c"),
        DOC,
        f"{KB_UNABLE_TO_INVOICE}; {DEV_BILLING_RULE}",
        "the billing rule's Generate Invoices is No",
    ),
    _op(
        "no_next_billing_date",
        "blng__NextBillingDate__c",
        OP_CHARGE,
        DOC,
        KB_UNABLE_TO_INVOICE,
        "Recurring or One-Time without Next Billing Date",
    ),
    _op(
        "no_billable_unit_price",
        "blng__BillableUnitPrice__c",
        OP_CHARGE,
        DOC,
        KB_UNABLE_TO_INVOICE,
        "Recurring or One-Time without Billable Unit Price",
    ),
    _op(
        "no_billing_frequency",
        "SBQQ__BillingFrequency__c",
        OP_CHARGE,
        INF,
        "billing period needs a frequency (KB 000381770 lists the frequency; the rule is inferred)",
        "Recurring or Usage without Billing Frequency",
    ),
    _op(
        "nothing_to_bill",
        "blng__PendingBillings__c",
        (*OP_CHARGE, *_q(ORDER_PRODUCT, "SBQQ__BillingFrequency__c")),
        DOC,
        KB_UNABLE_TO_INVOICE,
        "Pending Billing Amount is 0 outside an invoice plan",
    ),
    _op(
        "batch_not_scheduled",
        f"{ORDER}.blng__InvoiceBatch__c",
        OP_BATCH,
        DOC,
        KB_INVOICE_RUN_PRACTICES,
        "no active invoice scheduler selects the order's Invoice Batch",
    ),
    _op(
        "after_target_date",
        "blng__NextBillingDate__c",
        (*OP_BATCH, *_q(SCHEDULER, "blng__TargetDate__c")),
        DOC,
        DEV_SCHEDULER,
        "Next Billing Date is after the target date of the schedulers that select it",
    ),
    _op(
        "draft_line",
        "blng__InvoiceLine__c.blng__InvoiceLineStatus__c",
        (*LINE_FIELDS, "blng__InvoiceLine__c.blng__OrderProduct__c"),
        DOC,
        KB_UNABLE_TO_INVOICE,
        "a draft invoice line still holds it",
    ),
    _op(
        "posted_invoice_draft_line",
        "blng__Invoice__c.blng__InvoiceStatus__c",
        (*LINE_FIELDS, "blng__InvoiceLine__c.blng__OrderProduct__c"),
        DOC,
        KB_POSTED_DRAFT_LINES,
        "a posted invoice still has a draft line for it",
    ),
    _us(
        "us_status",
        "blng__Status__c",
        (),
        DOC,
        f"{KB_UNABLE_TO_INVOICE}; {DEV_USAGE_SUMMARY}",
        "usage summary Status is not Queued For Invoice",
    ),
    _us(
        "us_processing_status",
        "blng__InvoiceRunProcessingStatus__c",
        (),
        DOC,
        KB_UNABLE_TO_INVOICE,
        "Invoice Run Processing Status is not Pending Billing",
    ),
    _us(
        "us_order_product_on_hold",
        f"{ORDER_PRODUCT}.blng__HoldBilling__c",
        _q(USAGE_SUMMARY, "blng__OrderProduct__c"),
        INF,
        "Hold Billing holds the order product's billing (KB 000381770); that it holds its usage summaries too "
        "is stated only by secondary sources",
        "its order product's Hold Billing is Yes",
    ),
    _us(
        "us_batch_not_scheduled",
        f"{ORDER}.blng__InvoiceBatch__c",
        US_BATCH,
        DOC,
        KB_INVOICE_RUN_PRACTICES,
        "no active invoice scheduler selects its order's Invoice Batch",
    ),
    _us(
        "us_after_target_date",
        "blng__NextBillingDate__c",
        (*US_BATCH, *_q(SCHEDULER, "blng__TargetDate__c")),
        DOC,
        f"{DEV_USAGE_SUMMARY}; {DEV_SCHEDULER}",
        "Next Billing Date is not before the schedulers' target date",
    ),
    _us(
        "us_draft_line",
        "blng__InvoiceLine__c.blng__InvoiceLineStatus__c",
        (*LINE_FIELDS, "blng__InvoiceLine__c.blng__UsageSummary__c"),
        DOC,
        KB_UNABLE_TO_INVOICE,
        "a draft invoice line still holds it",
    ),
    _us(
        "us_posted_invoice_draft_line",
        "blng__Invoice__c.blng__InvoiceStatus__c",
        (*LINE_FIELDS, "blng__InvoiceLine__c.blng__UsageSummary__c"),
        DOC,
        KB_POSTED_DRAFT_LINES,
        "a posted invoice still has a draft line for it",
    ),
)
RULE_BY_CODE: dict[str, RuleSpec] = {rule.code: rule for rule in RULES}

# What each processing status other than Pending Billing means to an admin (KB 000381770; DOMAIN.md).
PROCESSING_STATUS_MEANING: dict[str, str] = {
    "In Progress": "an invoice run holds it, or a draft invoice line does: post or cancel that line",
    "Error": "the last invoice run failed on it: read the run's Error Log related list, fix, then reset it",
    "Will Not Invoice": "Billing decided not to invoice it, often because its billing rule's Generate Invoices "
    "is No: set it to Pending Billing once that is fixed",
    "Completed": "it is fully billed: there is nothing left to invoice",
}
