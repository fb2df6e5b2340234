"""One check per rule: given a record (and what the run's schedulers and lines say), the finding or None.

Checks are pure and see only values. Whether a rule runs at all (its fields exist in the org) is decided by
the engine before a check is called, so a None value here always means "empty", never "not in this org".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import TypeVar

from sfcleanup.billing import GUARDED_INVOICE_STATES, InvoiceStatus, ProcessingStatus
from sfcleanup.readiness.catalog import PROCESSING_STATUS_MEANING, Severity
from sfcleanup.readiness.models import InvoiceLineState, InvoiceScheduler, OrderProductState, UsageSummaryState


@dataclass(frozen=True)
class Finding:
    value: str | None
    message: str
    severity: Severity = Severity.BLOCKS


@dataclass(frozen=True)
class Context:
    schedulers: Sequence[InvoiceScheduler]
    today: date
    # Draft invoice lines by the id of the order product or usage summary they name.
    draft_lines: Mapping[str, Sequence[InvoiceLineState]]


R = TypeVar("R", OrderProductState, UsageSummaryState)
# One rule's check of one record of its object.
Check = Callable[[R, Context], Finding | None]


def _norm(value: str | None) -> str:
    """Picklist values compared as Billing writes them in prose too: "One-Time", "One Time" and "OneTime"."""
    return (value or "").replace("-", "").replace(" ", "").lower()


def _billed_per_period(charge_type: str | None) -> bool:
    # The KB's "Charge Type = Recurring or One Time" conditions.
    return _norm(charge_type) in {"recurring", "onetime"}


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _processing(status: str | None) -> Finding | None:
    if status == ProcessingStatus.PENDING_BILLING:
        return None
    meaning = PROCESSING_STATUS_MEANING.get(status or "", "an invoice run picks up only Pending Billing")
    return Finding(status, f"Invoice Run Processing Status is {status or 'empty'}: {meaning}.")


def _is_active(scheduler: InvoiceScheduler, today: date) -> bool:
    """A scheduler that will run again. A "Once" scheduler whose start has passed will not (inferred)."""
    if _norm(scheduler.type) != "once":
        return True
    return scheduler.start is None or scheduler.start.date() >= today


def selecting(batch: str | None, context: Context) -> list[InvoiceScheduler]:
    """Active schedulers whose Invoice Batches select `batch`. An empty selection selects only empty batches."""
    return [
        scheduler
        for scheduler in context.schedulers
        if _is_active(scheduler, context.today)
        and (batch in scheduler.invoice_batches if batch else not scheduler.invoice_batches)
    ]


def _not_scheduled(batch: str | None, context: Context, whose: str) -> Finding | None:
    if selecting(batch, context):
        return None
    shown = batch or "empty"
    return Finding(
        batch,
        f"{whose} Invoice Batch is {shown} and no active invoice scheduler selects it "
        "(a scheduler with no batches selects only orders with none).",
    )


def _after_target(
    next_billing: date | None, batch: str | None, context: Context, label: str = "Next Billing Date"
) -> Finding | None:
    targets = [s.target_date for s in selecting(batch, context) if s.target_date is not None]
    if next_billing is None or not targets:
        return None  # other rules report the empty date or the missing scheduler
    target = max(targets)
    if next_billing > target:
        return Finding(
            next_billing.isoformat(),
            f"{label} {next_billing} is after the latest target "
            f"date ({target}) of the schedulers that select it: the next run will not pick it up.",
        )
    if next_billing == target:
        return Finding(
            next_billing.isoformat(),
            f"{label} equals the schedulers' target date ({target}): "
            "the documentation says both 'before' and 'on or before'.",
            Severity.BORDERLINE,
        )
    return None


def _draft_line(record_id: str, context: Context, *, posted: bool) -> Finding | None:
    for line in context.draft_lines.get(record_id, ()):
        on_posted = line.invoice_status in GUARDED_INVOICE_STATES
        if on_posted and posted:
            return Finding(
                line.invoice_status,
                f"Invoice line {line.id} is Draft on posted invoice "
                f"{line.invoice_id}: fix that invoice first (KB 000380799); do not cancel the line.",
            )
        if not on_posted and not posted:
            return Finding(
                line.status, f"Invoice line {line.id} on invoice {line.invoice_id} is still Draft: post or cancel it."
            )
    return None


def _order_product_checks() -> dict[str, Check[OrderProductState]]:
    def frequency_needed(r: OrderProductState) -> bool:
        return _norm(r.charge_type) in {"recurring", "usage"}

    def nothing_to_bill(r: OrderProductState, _: Context) -> Finding | None:
        plan = _norm(r.billing_frequency) == "invoiceplan"
        if _billed_per_period(r.charge_type) and not plan and r.pending_billings == Decimal(0):
            return Finding(
                "0",
                "Pending Billing Amount (without tax) is 0 and it is not on an invoice plan: "
                "there is nothing left to bill.",
            )
        return None

    def empty(attribute: str, label: str) -> Check[OrderProductState]:
        def check(r: OrderProductState, _: Context) -> Finding | None:
            return None if getattr(r, attribute) else Finding(None, f"{label} is empty: Billing needs it to invoice.")

        return check

    def per_period(attribute: str, label: str) -> Check[OrderProductState]:
        def check(r: OrderProductState, _: Context) -> Finding | None:
            if _billed_per_period(r.charge_type) and getattr(r, attribute) is None:
                return Finding(None, f"{label} is empty on a {r.charge_type} order product.")
            return None

        return check

    return {
        "order_not_activated": lambda r, _: (
            None
            if r.order_status == "Activated"
            else Finding(
                r.order_status, f"Its order's Status is {r.order_status or 'empty'}: only activated orders are billed."
            )
        ),
        "not_activated": lambda r, _: (
            None if r.activated else Finding(_text(r.activated), "The order product is not activated.")
        ),
        "processing_status": lambda r, _: _processing(r.processing_status),
        "on_hold": lambda r, _: (
            Finding(r.hold_billing, "Hold Billing is Yes: set it to No to bill it.")
            if r.hold_billing == "Yes"
            else None
        ),
        "no_charge_type": empty("charge_type", "Charge Type"),
        "no_billing_rule": empty("billing_rule_id", "Billing Rule"),
        "no_tax_rule": empty("tax_rule_id", "Tax Rule"),
        "no_revenue_rule": empty("revenue_rule_id", "Revenue Recognition Rule"),
        "rule_generates_no_invoices": lambda r, _: (
            Finding("No", "Its billing rule's Generate Invoices is No: this billing rule never invoices.")
            if r.billing_rule_id and r.generate_invoices == "No"
            else None
        ),
        "no_next_billing_date": per_period("next_billing_date", "Next Billing Date"),
        "no_billable_unit_price": per_period("billable_unit_price", "Billable Unit Price"),
        "no_billing_frequency": lambda r, _: (
            Finding(None, f"Billing Frequency is empty on a {r.charge_type} order product.")
            if frequency_needed(r) and not r.billing_frequency
            else None
        ),
        "nothing_to_bill": nothing_to_bill,
        "batch_not_scheduled": lambda r, c: _not_scheduled(r.invoice_batch, c, "Its order's"),
        "after_target_date": lambda r, c: _after_target(r.next_billing_date, r.invoice_batch, c),
        "draft_line": lambda r, c: _draft_line(r.id, c, posted=False),
        "posted_invoice_draft_line": lambda r, c: _draft_line(r.id, c, posted=True),
    }


def _usage_summary_checks() -> dict[str, Check[UsageSummaryState]]:
    def status(r: UsageSummaryState, _: Context) -> Finding | None:
        if r.status == "Queued For Invoice":
            return None
        return Finding(
            r.status, f"Status is {r.status or 'empty'}: an invoice run bills only usage summaries Queued For Invoice."
        )

    def next_billing(r: UsageSummaryState) -> date | None:
        # KB 000381770: the run's target date must be after the End Date or the Next Billing Date.
        return r.next_billing_date or r.summary_end_date

    return {
        "us_status": status,
        "us_processing_status": lambda r, _: _processing(r.processing_status),
        "us_order_product_on_hold": lambda r, _: (
            Finding("Yes", "Its order product's Hold Billing is Yes: that holds its usage summaries too.")
            if r.order_product_hold_billing == "Yes"
            else None
        ),
        "us_batch_not_scheduled": lambda r, c: _not_scheduled(r.invoice_batch, c, "Its order's"),
        "us_after_target_date": lambda r, c: _after_target(
            next_billing(r),
            r.invoice_batch,
            c,
            "Next Billing Date" if r.next_billing_date else "Summary End Date (no Next Billing Date)",
        ),
        "us_draft_line": lambda r, c: _draft_line(r.id, c, posted=False),
        "us_posted_invoice_draft_line": lambda r, c: _draft_line(r.id, c, posted=True),
    }


ORDER_PRODUCT_CHECKS = _order_product_checks()
USAGE_SUMMARY_CHECKS = _usage_summary_checks()
# Every rule's code: the catalog names exactly these.
CHECKS = frozenset({*ORDER_PRODUCT_CHECKS, *USAGE_SUMMARY_CHECKS})


def run_check(code: str, record: OrderProductState | UsageSummaryState, context: Context) -> Finding | None:
    """Rule `code`'s finding on one record of the rule's object."""
    if isinstance(record, OrderProductState):
        return ORDER_PRODUCT_CHECKS[code](record, context)
    return USAGE_SUMMARY_CHECKS[code](record, context)


# Draft means "not yet posted or cancelled": the only line status that still holds its source.
DRAFT = InvoiceStatus.DRAFT
