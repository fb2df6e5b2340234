"""The clean-up rules of Salesforce Billing: objects, fields, from-states and to-states, and their safe order.

This is the package's own "Clean Up" (DOMAIN.md section 1), written down once. Everything that decides what
to change reads it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

INVOICE = "blng__Invoice__c"
INVOICE_LINE = "blng__InvoiceLine__c"
ORDER_PRODUCT = "OrderItem"
USAGE_SUMMARY = "blng__UsageSummary__c"
INVOICE_RUN = "blng__InvoiceRun__c"
ERROR_LOG = "blng__ErrorLog__c"

PROCESSING_STATUS = "blng__InvoiceRunProcessingStatus__c"
RUN_LOOKUP = "blng__InvoiceRun__c"
RUN_START_DATE = "blng__InvoiceRunStartDate__c"
RUN_STATUS = "blng__Status__c"
CLEANUP_STATUS = "blng__CleanUpStatus__c"


class InvoiceStatus(StrEnum):
    DRAFT = "Draft"
    POSTED = "Posted"
    # The API value has two Ls; the UI label and the help text say "Canceled".
    CANCELLED = "Cancelled"
    ERROR = "Error"
    INITIATED = "Initiated"
    POST_IN_PROGRESS = "Post In progress"


class ProcessingStatus(StrEnum):
    COMPLETED = "Completed"
    ERROR = "Error"
    IN_PROGRESS = "In Progress"
    PENDING_BILLING = "Pending Billing"
    WILL_NOT_INVOICE = "Will Not Invoice"


class CleanUpStatus(StrEnum):
    STARTED = "Started"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed with errors"


class RunStatus(StrEnum):
    STARTED = "Started"
    COMPLETED = "Completed"
    COMPLETED_WITH_ERRORS = "Completed with errors"
    CANCELED = "Canceled"
    FAILED = "Failed"
    STOPPED = "Stopped"


# Invoices in these states are, or are becoming, posted: never touch them, their lines, or what they billed.
GUARDED_INVOICE_STATES = frozenset({InvoiceStatus.POSTED, InvoiceStatus.POST_IN_PROGRESS})

# Runs that ended without completing cleanly; the run's status values are read from the org and intersected.
FAILED_RUN_STATES = frozenset(
    {RunStatus.COMPLETED_WITH_ERRORS, RunStatus.FAILED, RunStatus.CANCELED, RunStatus.STOPPED}
)


def run_is_running(status: str | None) -> bool:
    """Started, or any "Step n : ... " value: the run's batch jobs may still be working on its records."""
    if status is None:
        return False
    return status == RunStatus.STARTED or status.startswith("Step ")


class Phase(StrEnum):
    """The write phases in their safe order: cancel what could be billed before resetting what bills."""

    INVOICE_LINES = "invoice_lines"
    INVOICES = "invoices"
    USAGE_SUMMARIES = "usage_summaries"
    ORDER_PRODUCTS = "order_products"


@dataclass(frozen=True)
class Rule:
    phase: Phase
    sobject: str
    status_field: str
    from_states: frozenset[str]
    to_state: str
    # Fields set to null along with the status change.
    cleared: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.status_field, *self.cleared)


RULES: tuple[Rule, ...] = (
    Rule(
        Phase.INVOICE_LINES,
        INVOICE_LINE,
        "blng__InvoiceLineStatus__c",
        frozenset({InvoiceStatus.ERROR, InvoiceStatus.DRAFT}),
        InvoiceStatus.CANCELLED,
    ),
    Rule(
        Phase.INVOICES,
        INVOICE,
        "blng__InvoiceStatus__c",
        frozenset({InvoiceStatus.ERROR, InvoiceStatus.INITIATED, InvoiceStatus.DRAFT}),
        InvoiceStatus.CANCELLED,
    ),
    Rule(
        Phase.USAGE_SUMMARIES,
        USAGE_SUMMARY,
        PROCESSING_STATUS,
        frozenset({ProcessingStatus.ERROR, ProcessingStatus.IN_PROGRESS}),
        ProcessingStatus.PENDING_BILLING,
        (RUN_LOOKUP, RUN_START_DATE),
    ),
    Rule(
        Phase.ORDER_PRODUCTS,
        ORDER_PRODUCT,
        PROCESSING_STATUS,
        frozenset({ProcessingStatus.ERROR, ProcessingStatus.IN_PROGRESS}),
        ProcessingStatus.PENDING_BILLING,
        (RUN_LOOKUP, RUN_START_DATE),
    ),
)

RULE_BY_PHASE: dict[Phase, Rule] = {rule.phase: rule for rule in RULES}
RULE_BY_OBJECT: dict[str, Rule] = {rule.sobject: rule for rule in RULES}

# Picklist values the clean-up writes or reads; preflight checks each exists in the org.
REQUIRED_PICKLIST_VALUES: dict[tuple[str, str], frozenset[str]] = {
    (INVOICE, "blng__InvoiceStatus__c"): frozenset({InvoiceStatus.CANCELLED}),
    (INVOICE_LINE, "blng__InvoiceLineStatus__c"): frozenset({InvoiceStatus.CANCELLED}),
    (ORDER_PRODUCT, PROCESSING_STATUS): frozenset({ProcessingStatus.PENDING_BILLING}),
    (USAGE_SUMMARY, PROCESSING_STATUS): frozenset({ProcessingStatus.PENDING_BILLING}),
    (INVOICE_RUN, CLEANUP_STATUS): frozenset(
        {CleanUpStatus.STARTED, CleanUpStatus.COMPLETED, CleanUpStatus.COMPLETED_WITH_ERRORS}
    ),
}

# Every field the worker reads (queries/*.soql) or writes, per object: what preflight checks in describe and
# what the least-privilege permission set grants. A test keeps this in step with the query files.
FIELDS_READ: dict[str, frozenset[str]] = {
    INVOICE_RUN: frozenset({"Name", RUN_STATUS, CLEANUP_STATUS}),
    INVOICE: frozenset({"blng__InvoiceStatus__c", "blng__Account__c", "blng__InvoiceRunCreatedBy__c"}),
    INVOICE_LINE: frozenset(
        {
            "blng__InvoiceLineStatus__c",
            "blng__Invoice__c",
            "blng__InvoiceRun__c",
            "blng__OrderProduct__c",
            "blng__UsageSummary__c",
        }
    ),
    ORDER_PRODUCT: frozenset({PROCESSING_STATUS, RUN_LOOKUP, RUN_START_DATE, "OrderId"}),
    USAGE_SUMMARY: frozenset(
        {
            PROCESSING_STATUS,
            RUN_LOOKUP,
            RUN_START_DATE,
            "blng__OrderProduct__c",
            "blng__InvoiceLine__c",
            "blng__Invoice__c",
        }
    ),
}
FIELDS_WRITTEN: dict[str, frozenset[str]] = {
    INVOICE_RUN: frozenset({RUN_STATUS, CLEANUP_STATUS}),
    **{rule.sobject: frozenset(rule.fields) for rule in RULES},
}
