"""The `scale` scenario: N billing sources on one failed run, generated and inserted in chunks
(docs/localorg-scenarios.md)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sfcleanup.localorg import idgen
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.seed.rows import (
    ACCOUNT,
    BILLING_RULE,
    INVOICE,
    LINE,
    OBJECTS,
    ORDER,
    ORDER_ITEM,
    REVENUE_RULE,
    RUN,
    SCHEDULER,
    TAX_RULE,
    USAGE,
    ScenarioInfo,
    insert_stream,
    invoice_run_row,
    line_status_of,
    next_rowid,
    usage_status_of,
)
from sfcleanup.localorg.store import Store
from sfcleanup.sftime import format_datetime

SCALE_DEFAULT_RECORDS = 10_000
SCALE_MIN_RECORDS = 1_000
SCALE_MAX_RECORDS = 1_000_000


_SCALE_CYCLE = ("Draft", "Error", "Initiated")
_SOURCE_STATUS = {"Draft": "In Progress", "Initiated": "In Progress", "Error": "Error", "Posted": "Completed"}


@dataclass(frozen=True)
class _Layout:
    """Where every scale record goes, as small per-order arrays; rows are generated from these on the fly."""

    accounts: int
    order_account: list[int]  # order index -> account index
    source_start: list[int]  # sources of order o: source_start[o] up to, not including, source_start[o + 1]
    products: list[int]  # order index -> number of order products (the rest of its sources are usage)
    product_start: list[int]  # order index -> global index of its first order product
    usage_start: list[int]  # order index -> global index of its first usage summary

    @property
    def orders(self) -> int:
        return len(self.order_account)

    def status(self, order: int) -> str:
        # About 2% of invoices were posted before the run failed.
        return "Posted" if order % 50 == 49 else _SCALE_CYCLE[order % 3]

    def sources(self, order: int) -> int:
        return self.source_start[order + 1] - self.source_start[order]


def _layout(records: int) -> _Layout:
    accounts = max(1, records // 50)
    order_account = [a for a in range(accounts) for _ in range(1 + (a + 1) % 3)]
    orders = len(order_account)
    source_start = [o * records // orders for o in range(orders + 1)]
    products, product_start, usage_start = [], [], []
    product_total = usage_total = 0
    for o in range(orders):
        size = source_start[o + 1] - source_start[o]
        usage = size // 5
        product_start.append(product_total)
        usage_start.append(usage_total)
        products.append(size - usage)
        product_total += size - usage
        usage_total += usage
    return _Layout(accounts, order_account, source_start, products, product_start, usage_start)


def seed_scale(store: Store, records: int, now: datetime) -> ScenarioInfo:
    lay = _layout(records)
    first = {spec.name: next_rowid(store, spec) for spec in OBJECTS}

    def make(spec: SObjectSpec, index: int) -> str:
        return idgen.record_id(spec.key_prefix, first[spec.name] + index)

    started = now - timedelta(hours=3)
    start_text = format_datetime(started)
    day = started.date().isoformat()
    effective = (now - timedelta(days=30)).date().isoformat()
    run_id = make(RUN, 0)
    today = now.date()
    # One billing setup shared by every order product, and one scheduler that selects every order's batch: after
    # a clean-up, every reset record is ready for the next run (docs/localorg-scenarios.md).
    setup = {
        "SBQQ__Activated__c": True,
        "SBQQ__ChargeType__c": "Recurring",
        "SBQQ__BillingFrequency__c": "Monthly",
        "blng__HoldBilling__c": "No",
        "blng__NextBillingDate__c": today.isoformat(),
        "blng__BillingRule__c": make(BILLING_RULE, 0),
        "blng__TaxRule__c": make(TAX_RULE, 0),
        "blng__RevenueRecognitionRule__c": make(REVENUE_RULE, 0),
    }
    summary_dates = {
        "blng__NextBillingDate__c": today.isoformat(),
        "blng__SummaryEndDate__c": (today - timedelta(days=1)).isoformat(),
    }

    def account_rows() -> Iterator[dict[str, Any]]:
        for a in range(lay.accounts):
            yield {"Name": f"Scale Customer {a + 1:07d}"}

    def order_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            account = make(ACCOUNT, lay.order_account[o])
            yield {
                "Name": f"ORD-{o + 1:07d}",
                "AccountId": account,
                "Status": "Activated",
                "EffectiveDate": effective,
                "blng__InvoiceBatch__c": "Batch A",
            }

    def product_amount(k: int) -> float:
        return 50.0 * (1 + k % 4)

    def invoice_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            start = lay.product_start[o]
            usage = lay.sources(o) - lay.products[o]
            total = sum(product_amount(k) for k in range(start, start + lay.products[o])) + 25.0 * usage
            yield {
                "Name": f"INV-{o + 1:07d}",
                "blng__Account__c": make(ACCOUNT, lay.order_account[o]),
                "blng__Order__c": make(ORDER, o),
                "blng__InvoiceStatus__c": lay.status(o),
                "blng__InvoiceRunCreatedBy__c": run_id,
                "blng__InvoiceDate__c": day,
                "blng__TotalAmount__c": total,
            }

    def product_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            order = make(ORDER, o)
            processing = _SOURCE_STATUS[lay.status(o)]
            for k in range(lay.product_start[o], lay.product_start[o] + lay.products[o]):
                quantity = float(1 + k % 4)
                yield {
                    "OrderId": order,
                    "Quantity": quantity,
                    "UnitPrice": 50.0,
                    "blng__InvoiceRunProcessingStatus__c": processing,
                    "blng__InvoiceRun__c": run_id,
                    "blng__InvoiceRunStartDate__c": start_text,
                    **setup,
                    "blng__BillableUnitPrice__c": 50.0,
                    "blng__PendingBillings__c": 50.0 * quantity,
                }

    def usage_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            order = make(ORDER, o)
            invoice = make(INVOICE, o)
            status = lay.status(o)
            processing = _SOURCE_STATUS[status]
            summary_status = usage_status_of(processing)
            products = lay.products[o]
            # An order's lines list its order products first, then its usage summaries.
            first_usage_line = lay.source_start[o] + products
            for j in range(lay.sources(o) - products):
                yield {
                    "Name": f"US-{lay.usage_start[o] + j + 1:07d}",
                    "blng__OrderProduct__c": make(ORDER_ITEM, lay.product_start[o] + j % products),
                    "blng__InvoiceLine__c": make(LINE, first_usage_line + j),
                    "blng__Invoice__c": invoice,
                    "blng__Order__c": order,
                    "blng__Status__c": summary_status,
                    "blng__InvoiceRunProcessingStatus__c": processing,
                    "blng__InvoiceRun__c": run_id,
                    "blng__InvoiceRunStartDate__c": start_text,
                    **summary_dates,
                }

    def line_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            invoice = make(INVOICE, o)
            status = line_status_of(lay.status(o))
            products = lay.products[o]
            for j in range(lay.sources(o)):
                if j < products:
                    k = lay.product_start[o] + j
                    product, summary, amount = make(ORDER_ITEM, k), None, product_amount(k)
                else:
                    u = j - products
                    product = make(ORDER_ITEM, lay.product_start[o] + u % products)
                    summary, amount = make(USAGE, lay.usage_start[o] + u), 25.0
                yield {
                    "Name": f"IL-{lay.source_start[o] + j + 1:07d}",
                    "blng__Invoice__c": invoice,
                    "blng__InvoiceLineStatus__c": status,
                    "blng__InvoiceRun__c": run_id,
                    "blng__OrderProduct__c": product,
                    "blng__UsageSummary__c": summary,
                    "blng__TotalAmount__c": amount,
                }

    run = invoice_run_row(f"Invoice run {day} (failed, scale)", "Failed", started, now - timedelta(hours=2), 1)
    scheduler = {
        "Name": "Daily invoicing",
        "blng__Type__c": "Daily",
        "blng__StartDateTime__c": format_datetime(now - timedelta(days=30)),
        "blng__TargetDate__c": (today + timedelta(days=7)).isoformat(),
        "blng__InvoiceBatches__c": "Batch A",
    }
    streams: list[tuple[SObjectSpec, Iterable[dict[str, Any]]]] = [
        (RUN, [run]),
        (BILLING_RULE, [{"Name": "Bill in advance", "blng__GenerateInvoices__c": "Yes"}]),
        (TAX_RULE, [{"Name": "Standard tax"}]),
        (REVENUE_RULE, [{"Name": "Recognise over the term"}]),
        (SCHEDULER, [scheduler]),
        (ACCOUNT, account_rows()),
        (ORDER, order_rows()),
        (INVOICE, invoice_rows()),
        (ORDER_ITEM, product_rows()),
        (USAGE, usage_rows()),
        (LINE, line_rows()),
    ]
    counts = {spec.name: 0 for spec in OBJECTS}
    # One transaction per object: a 1M seed must not hold one giant transaction, and a half-seeded store
    # is thrown away anyway (seed into a fresh store).
    for spec, rows in streams:
        counts[spec.name] = insert_stream(store, spec, rows, first[spec.name])

    eligible = [o for o in range(lay.orders) if lay.status(o) != "Posted"]
    cleanable = {
        INVOICE.name: len(eligible),
        LINE.name: sum(lay.sources(o) for o in eligible),
        ORDER_ITEM.name: sum(lay.products[o] for o in eligible),
        USAGE.name: sum(lay.sources(o) - lay.products[o] for o in eligible),
    }
    return ScenarioInfo("scale", runs={"failed_run": run_id}, counts=counts, cleanable={"failed_run": cleanable})
