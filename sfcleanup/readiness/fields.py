"""The fields the readiness rules read: API names, the paths the queries select, and what the org must grant.

A field is named by its qualified name, "Object.Field" (e.g. "OrderItem.blng__HoldBilling__c"). The engine is
given the set of qualified names the org has (from describe) and turns off every rule that needs one it lacks.
docs/readiness.md records, per name, whether it was verified in documentation or assumed from its label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sfcleanup.salesforce.shapes import SObjectDescribe

ORDER = "Order"
ORDER_PRODUCT = "OrderItem"
USAGE_SUMMARY = "blng__UsageSummary__c"
BILLING_RULE = "blng__BillingRule__c"
SCHEDULER = "blng__InvoiceScheduler__c"
INVOICE_LINE = "blng__InvoiceLine__c"
INVOICE = "blng__Invoice__c"

# Objects whose describe the reader asks for.
OBJECTS: tuple[str, ...] = (ORDER, ORDER_PRODUCT, USAGE_SUMMARY, BILLING_RULE, SCHEDULER, INVOICE_LINE, INVOICE)

# (object, relationship name) -> (lookup field, object it points to): how a path in a SELECT list resolves.
RELATIONSHIPS: dict[tuple[str, str], tuple[str, str]] = {
    (ORDER_PRODUCT, "Order"): ("OrderId", ORDER),
    (ORDER_PRODUCT, "blng__BillingRule__r"): ("blng__BillingRule__c", BILLING_RULE),
    (USAGE_SUMMARY, "blng__OrderProduct__r"): ("blng__OrderProduct__c", ORDER_PRODUCT),
    (INVOICE_LINE, "blng__Invoice__r"): ("blng__Invoice__c", INVOICE),
}

# What each query selects beyond Id, as paths from the queried object. The reader keeps only the paths whose
# every hop and field the org has, so an org without a field still gets an answer (and the rule turns off).
ORDER_PRODUCT_PATHS: tuple[str, ...] = (
    "OrderId",
    "Order.Status",
    "Order.blng__InvoiceBatch__c",
    "SBQQ__Activated__c",
    "blng__InvoiceRunProcessingStatus__c",
    "blng__HoldBilling__c",
    "SBQQ__ChargeType__c",
    "SBQQ__BillingFrequency__c",
    "blng__NextBillingDate__c",
    "blng__BillableUnitPrice__c",
    "blng__PendingBillings__c",
    "blng__BillingRule__c",
    "blng__BillingRule__r.blng__GenerateInvoices__c",
    "blng__TaxRule__c",
    "blng__RevenueRecognitionRule__c",
)
USAGE_SUMMARY_PATHS: tuple[str, ...] = (
    "blng__OrderProduct__c",
    "blng__Status__c",
    "blng__InvoiceRunProcessingStatus__c",
    "blng__NextBillingDate__c",
    "blng__SummaryEndDate__c",
    "blng__OrderProduct__r.blng__HoldBilling__c",
    "blng__OrderProduct__r.Order.blng__InvoiceBatch__c",
)
SCHEDULER_PATHS: tuple[str, ...] = (
    "Name",
    "blng__Type__c",
    "blng__StartDateTime__c",
    "blng__TargetDate__c",
    "blng__InvoiceBatches__c",
)
# The line query has a fixed list: every field in it is one the clean-up itself needs (billing.FIELDS_READ).
INVOICE_LINE_PATHS: tuple[str, ...] = (
    "blng__InvoiceLineStatus__c",
    "blng__OrderProduct__c",
    "blng__UsageSummary__c",
    "blng__Invoice__c",
    "blng__Invoice__r.blng__InvoiceStatus__c",
)

PATHS_BY_OBJECT: dict[str, tuple[str, ...]] = {
    ORDER_PRODUCT: ORDER_PRODUCT_PATHS,
    USAGE_SUMMARY: USAGE_SUMMARY_PATHS,
    SCHEDULER: SCHEDULER_PATHS,
    INVOICE_LINE: INVOICE_LINE_PATHS,
}


def resolve(sobject: str, path: str) -> list[str]:
    """The qualified names a path reads: each lookup it follows, then the field at its end."""
    *hops, field = path.split(".")
    read = []
    for hop in hops:
        lookup, target = RELATIONSHIPS[(sobject, hop)]
        read.append(f"{sobject}.{lookup}")
        sobject = target
    read.append(f"{sobject}.{field}")
    return read


def selectable(sobject: str, paths: Iterable[str], available: frozenset[str]) -> tuple[str, ...]:
    """The paths the org can answer: a query naming a field the org lacks fails as a whole (INVALID_FIELD)."""
    return tuple(path for path in paths if all(name in available for name in resolve(sobject, path)))


def _fields_read() -> dict[str, frozenset[str]]:
    by_object: dict[str, set[str]] = {}
    for sobject, paths in PATHS_BY_OBJECT.items():
        for path in paths:
            for qualified in resolve(sobject, path):
                owner, name = qualified.split(".", 1)
                by_object.setdefault(owner, set()).add(name)
    return {owner: frozenset(names) for owner, names in by_object.items()}


# Every field the readiness queries may read, per object: what the permission set must make readable.
READINESS_FIELDS_READ: dict[str, frozenset[str]] = _fields_read()

# Read through object access, never listed in field permissions (the platform rejects permissions on required
# and master-detail fields). Order.Status is required on every order.
READINESS_NOT_PERMISSIONABLE: frozenset[tuple[str, str]] = frozenset(
    {(ORDER, "Status"), (ORDER_PRODUCT, "OrderId"), (USAGE_SUMMARY, "blng__OrderProduct__c"), (SCHEDULER, "Name")}
    | {(INVOICE_LINE, "blng__Invoice__c")}
)


def available_from_describe(describes: Mapping[str, object]) -> frozenset[str]:
    """Qualified names of every field in the given describe results (object name -> describe JSON)."""
    return frozenset(
        f"{sobject}.{field.name}"
        for sobject, described in describes.items()
        for field in SObjectDescribe.model_validate(described).fields
    )
