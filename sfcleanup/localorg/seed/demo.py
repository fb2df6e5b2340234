"""The `demo` scenario: four invoice runs with their traps (docs/localorg-scenarios.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sfcleanup.localorg import idgen
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.seed.rows import (
    ACCOUNT,
    BILLING_RULE,
    CANCELLABLE_INVOICE,
    CANCELLABLE_LINE,
    COLUMNS,
    ERROR_LOG,
    INVOICE,
    LINE,
    NAME_PREFIX,
    OBJECTS,
    ORDER,
    ORDER_ITEM,
    RESETTABLE_SOURCE,
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


class _Plan:
    """Rows to insert, with their ids known up front so records can reference ones added later."""

    def __init__(self, store: Store) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in OBJECTS}
        self.start = {spec.name: next_rowid(store, spec) for spec in OBJECTS}
        self._where: dict[str, dict[str, Any]] = {}

    def next_id(self, spec: SObjectSpec) -> str:
        return idgen.record_id(spec.key_prefix, self.start[spec.name] + len(self.rows[spec.name]))

    def add(self, spec: SObjectSpec, **values: Any) -> str:
        rowid = self.start[spec.name] + len(self.rows[spec.name])
        if "Name" in COLUMNS[spec.name] and "Name" not in values:
            values["Name"] = f"{NAME_PREFIX[spec.name]}-{rowid:06d}"
        unknown = set(values) - set(COLUMNS[spec.name])
        if unknown:
            raise RuntimeError(f"seed bug: {spec.name} has no seeded column {sorted(unknown)}")
        row = {name: values.get(name) for name in COLUMNS[spec.name]}
        record_id = idgen.record_id(spec.key_prefix, rowid)
        self.rows[spec.name].append(row)
        self._where[record_id] = row
        return record_id

    def row(self, record_id: str) -> dict[str, Any]:
        return self._where[record_id]

    def set(self, record_id: str, **values: Any) -> None:
        self._where[record_id].update(values)

    def insert(self, store: Store) -> dict[str, int]:
        with store.transaction():
            return {
                spec.name: insert_stream(store, spec, self.rows[spec.name], self.start[spec.name]) for spec in OBJECTS
            }


@dataclass(frozen=True)
class _Run:
    role: str
    id: str
    start: str  # blng__StartTime__c, also each linked source's blng__InvoiceRunStartDate__c
    day: str


# Invoice batches of the demo's orders, in turn; the schedulers select both (Batch C only an inactive one does).
_BATCHES = ("Batch A", "Batch B")
_FREQUENCIES = ("Monthly", "Quarterly", "Annual")


class _Demo:
    def __init__(self, plan: _Plan, now: datetime) -> None:
        self.plan = plan
        self.now = now
        self.cleanable: dict[str, dict[str, int]] = {}
        self.traps: dict[str, dict[str, str]] = {}
        self.not_ready: dict[str, dict[str, list[str]]] = {}
        self._jobs = 0
        self.today = now.date()
        # Billing setup every order product shares by default (what makes it billable, docs/readiness.md).
        self.billing_rule = plan.add(BILLING_RULE, Name="Bill in advance", blng__GenerateInvoices__c="Yes")
        self.no_invoice_rule = plan.add(BILLING_RULE, Name="Do not invoice", blng__GenerateInvoices__c="No")
        self.tax_rule = plan.add(TAX_RULE, Name="Standard tax")
        self.revenue_rule = plan.add(REVENUE_RULE, Name="Recognise over the term")
        # The latest target date of the active schedulers, for Batch A and Batch B alike.
        self.target = self.today + timedelta(days=30)
        self._scheduler("Daily invoicing", "Daily", 30, 7, "Batch A")
        self._scheduler("Monthly invoicing", "Monthly", 60, 30, "Batch B;Batch A")
        # Ran once, ten days ago: it will not run again, so Batch C (which only it selects) is not scheduled.
        self._scheduler("Year-end catch-up (ran once)", "Once", 10, -9, "Batch C")

    def _scheduler(self, name: str, kind: str, started_days_ago: int, target_in_days: int, batches: str) -> None:
        self.plan.add(
            SCHEDULER,
            Name=name,
            blng__Type__c=kind,
            blng__StartDateTime__c=format_datetime(self.now - timedelta(days=started_days_ago)),
            blng__TargetDate__c=(self.today + timedelta(days=target_in_days)).isoformat(),
            blng__InvoiceBatches__c=batches,
        )

    def day(self, days: int) -> str:
        return (self.today + timedelta(days=days)).isoformat()

    def run(self, role: str, status: str, started: datetime, completed: datetime | None) -> _Run:
        self._jobs += 1
        name = f"Invoice run {started.date().isoformat()} ({role.replace('_', ' ')})"
        run_id = self.plan.add(RUN, **invoice_run_row(name, status, started, completed, self._jobs))
        self.cleanable[role] = {spec.name: 0 for spec in (INVOICE, LINE, ORDER_ITEM, USAGE)}
        return _Run(role, run_id, format_datetime(started), started.date().isoformat())

    def account(self, name: str) -> str:
        return self.plan.add(ACCOUNT, Name=name)

    def order(self, account: str) -> str:
        effective = (self.now - timedelta(days=30)).date().isoformat()
        batch = _BATCHES[len(self.plan.rows[ORDER.name]) % len(_BATCHES)]
        return self.plan.add(
            ORDER, AccountId=account, Status="Activated", EffectiveDate=effective, blng__InvoiceBatch__c=batch
        )

    def product(self, order: str, processing: str, run: _Run | None, *, usage: bool = False) -> str:
        """An order product, billable by default: activated, rules set, due today, something left to bill.
        `usage` makes it a Usage product (one that carries usage summaries)."""
        k = len(self.plan.rows[ORDER_ITEM.name])
        linked = run is not None and processing != "Pending Billing"
        quantity, price = float(1 + k % 4), float(10 * (5 + k % 9))
        charge = "Usage" if usage else ("One-Time" if k % 7 == 3 else "Recurring")
        return self.plan.add(
            ORDER_ITEM,
            OrderId=order,
            Quantity=quantity,
            UnitPrice=price,
            blng__InvoiceRunProcessingStatus__c=processing,
            blng__InvoiceRun__c=run.id if linked and run else None,
            blng__InvoiceRunStartDate__c=run.start if linked and run else None,
            SBQQ__Activated__c=True,
            SBQQ__ChargeType__c=charge,
            SBQQ__BillingFrequency__c=None if charge == "One-Time" else _FREQUENCIES[k % len(_FREQUENCIES)],
            blng__HoldBilling__c="No",
            blng__NextBillingDate__c=self.today.isoformat(),
            blng__BillableUnitPrice__c=price,
            blng__PendingBillings__c=quantity * price,
            blng__BillingRule__c=self.billing_rule,
            blng__TaxRule__c=self.tax_rule,
            blng__RevenueRecognitionRule__c=self.revenue_rule,
        )

    def group(
        self,
        run: _Run | None,
        account: str,
        invoice_status: str | None,
        products: Sequence[str],
        usage: Sequence[str] = (),
        *,
        line_status: str | None = None,
    ) -> tuple[str | None, list[str], list[str]]:
        """One order's billing: its order products and usage summaries (processing statuses given), and, when
        `invoice_status` is given, an invoice created by `run` with one line per source.

        Returns (invoice id, order product ids, usage summary ids).
        """
        order_id = self.order(account)
        product_ids = [self.product(order_id, status, run, usage=k < len(usage)) for k, status in enumerate(products)]
        usage_ids = []
        for j, processing in enumerate(usage):
            linked = run is not None and processing != "Pending Billing"
            usage_ids.append(
                self.plan.add(
                    USAGE,
                    blng__OrderProduct__c=product_ids[j % len(product_ids)],
                    blng__Order__c=order_id,
                    blng__Status__c=usage_status_of(processing),
                    blng__InvoiceRunProcessingStatus__c=processing,
                    blng__InvoiceRun__c=run.id if linked and run else None,
                    blng__InvoiceRunStartDate__c=run.start if linked and run else None,
                    blng__NextBillingDate__c=self.today.isoformat(),
                    blng__SummaryEndDate__c=self.day(-1),
                )
            )
        if invoice_status is None:
            return None, product_ids, usage_ids
        lines = line_status or line_status_of(invoice_status)
        invoice = self.plan.add(
            INVOICE,
            blng__Account__c=account,
            blng__Order__c=order_id,
            blng__InvoiceStatus__c=invoice_status,
            blng__InvoiceRunCreatedBy__c=run.id if run else None,
            blng__InvoiceDate__c=run.day if run else self.now.date().isoformat(),
        )
        total = 0.0
        for product in product_ids:
            row = self.plan.row(product)
            amount = float(row["Quantity"] * row["UnitPrice"])
            total += amount
            self._line(run, invoice, lines, amount, product, None)
        for j, summary in enumerate(usage_ids):
            amount = 12.5 * (1 + j % 4)
            total += amount
            product = product_ids[j % len(product_ids)]
            line = self._line(run, invoice, lines, amount, product, summary)
            self.plan.set(summary, blng__InvoiceLine__c=line, blng__Invoice__c=invoice)
        self.plan.set(invoice, blng__TotalAmount__c=total)
        if run is not None and invoice_status in CANCELLABLE_INVOICE:
            counts = self.cleanable[run.role]
            counts[INVOICE.name] += 1
            if lines in CANCELLABLE_LINE:
                counts[LINE.name] += len(product_ids) + len(usage_ids)
            counts[ORDER_ITEM.name] += sum(1 for status in products if status in RESETTABLE_SOURCE)
            counts[USAGE.name] += sum(1 for status in usage if status in RESETTABLE_SOURCE)
        return invoice, product_ids, usage_ids

    def _line(
        self, run: _Run | None, invoice: str, status: str, amount: float, product: str, summary: str | None
    ) -> str:
        return self.plan.add(
            LINE,
            blng__Invoice__c=invoice,
            blng__InvoiceLineStatus__c=status,
            blng__InvoiceRun__c=run.id if run else None,
            blng__OrderProduct__c=product,
            blng__UsageSummary__c=summary,
            blng__TotalAmount__c=amount,
        )

    def failing_run(self, run: _Run, accounts: int, products: int, usage: int) -> None:
        """The shape shared by failed_run and errors_run (module docstring)."""
        label = "Failed" if run.role == "failed_run" else "Errors"
        account_ids = [self.account(f"{label} Run Customer {n + 1:02d}") for n in range(accounts)]
        for n, account in enumerate(account_ids):
            invoice_status = ("Draft", "Error", "Initiated")[n % 3]
            if invoice_status == "Error":
                statuses = ["Error"] * products
                usage_statuses = ["Error"] * usage
            else:
                statuses = ["Error" if k % 5 == 4 else "In Progress" for k in range(products)]
                usage_statuses = ["In Progress"] * usage
            _, product_ids, usage_ids = self.group(run, account, invoice_status, statuses, usage_statuses)
            # Noise on the same order: a product waiting for a later run, never linked to this one.
            order = self.plan.row(product_ids[0])["OrderId"]
            self.product(order, "Pending Billing", None)
            if run.role == "failed_run":
                self.unready(run.role, n, order, product_ids, usage_ids)
        traps: dict[str, str] = {}
        self.group(run, account_ids[0], "Posted", ["Completed"] * 3, ["Completed"])
        invoice, _, _ = self.group(run, account_ids[1], "Post In progress", ["Completed"] * 2)
        traps["post_in_progress_invoice"] = _some(invoice)
        invoice, _, _ = self.group(run, account_ids[2], "Posted", ["In Progress"] * 2, line_status="Draft")
        traps["posted_with_draft_lines"] = _some(invoice)
        _, _, summaries = self.group(run, account_ids[3], "Posted", ["Completed"], ["In Progress"])
        traps["billed_usage_summary"] = summaries[0]
        invoice, _, _ = self.group(run, account_ids[4], "Cancelled", ["Pending Billing"] * 2)
        traps["cancelled_invoice"] = _some(invoice)
        self.traps[run.role] = traps

    def unready(self, role: str, n: int, order: str, products: list[str], usage: list[str]) -> None:
        """On the main orders of accounts n = 8 to 17 (0-based): records the clean-up resets that the next invoice
        run still will not bill, one readiness reason per order (docs/localorg-scenarios.md). Order products 0 to
        4 of an order carry its usage summaries; 5 and up carry none, so a reason on them stays their own."""
        found = self.not_ready.setdefault(role, {})

        def mark(code: str, ids: Sequence[str], **values: Any) -> None:
            for record_id in ids:
                self.plan.set(record_id, **values)
            found.setdefault(code, []).extend(ids)

        if n == 8:  # only the scheduler that ran once selects Batch C
            self.plan.set(order, blng__InvoiceBatch__c="Batch C")
            mark("batch_not_scheduled", products)
            mark("us_batch_not_scheduled", usage)
        elif n == 9:  # no batch: only a scheduler without batches would select it, and none is without
            self.plan.set(order, blng__InvoiceBatch__c=None)
            mark("batch_not_scheduled", products)
            mark("us_batch_not_scheduled", usage)
        elif n == 10:
            mark("on_hold", products[5:7], blng__HoldBilling__c="Yes")
        elif n == 11:  # a Usage product on hold holds its usage summary too
            mark("on_hold", products[:1], blng__HoldBilling__c="Yes")
            mark(
                "us_order_product_on_hold",
                [u for u in usage if self.plan.row(u)["blng__OrderProduct__c"] == products[0]],
            )
        elif n == 12:
            mark("rule_generates_no_invoices", products[5:8], blng__BillingRule__c=self.no_invoice_rule)
        elif n == 13:
            mark("after_target_date", products[5:8], blng__NextBillingDate__c=self.day(60))
            # Due exactly on the target date: borderline, still ready.
            mark("after_target_date", products[8:9], blng__NextBillingDate__c=self.target.isoformat())
        elif n == 14:
            mark("no_next_billing_date", products[5:8], SBQQ__ChargeType__c="Recurring", blng__NextBillingDate__c=None)
        elif n == 15:
            for summary, status in zip(usage, ("New", "Queued For Subtotal Calculation", "Processed"), strict=False):
                mark("us_status", [summary], blng__Status__c=status)
        elif n == 16:
            mark("us_after_target_date", usage[:2], blng__NextBillingDate__c=self.day(45))
        elif n == 17:
            # No next billing date of its own: its summary end date decides.
            mark(
                "us_after_target_date", usage[2:3], blng__NextBillingDate__c=None, blng__SummaryEndDate__c=self.day(40)
            )


def _some(value: str | None) -> str:
    if value is None:
        raise RuntimeError("seed bug: expected a record id")
    return value


def seed_demo(store: Store, now: datetime) -> ScenarioInfo:
    demo = _Demo(_Plan(store), now)
    hour = timedelta(hours=1)
    failed = demo.run("failed_run", "Failed", now - 3 * hour, now - 2.5 * hour)
    errors = demo.run("errors_run", "Completed with errors", now - 48 * hour, now - 47 * hour)
    completed = demo.run("completed_run", "Completed", now - 26 * hour, now - 25 * hour)
    running = demo.run("running_run", "Step 2 : Invoice Line Creation - Processing", now - hour / 6, None)

    demo.failing_run(failed, accounts=30, products=15, usage=5)
    demo.failing_run(errors, accounts=8, products=10, usage=3)
    for n in range(5):
        account = demo.account(f"Completed Run Customer {n + 1:02d}")
        if n < 4:
            demo.group(completed, account, "Posted", ["Completed"] * 5, ["Completed"])
        else:
            # The leftover a clean run can still have: only an explicit include-completed clean-up touches it.
            demo.group(completed, account, "Draft", ["In Progress"] * 3)
    for n in range(3):
        account = demo.account(f"Running Run Customer {n + 1:02d}")
        demo.group(running, account, "Initiated", ["In Progress"] * 5, ["In Progress"] * 2)

    unrelated: dict[str, str] = {}
    for n in range(5):
        account = demo.account(f"Unrelated Customer {n + 1:02d}")
        _, products, _ = demo.group(None, account, None, ["Pending Billing"] * 4, ["Pending Billing"])
        if n == 0:
            order = demo.plan.row(products[0])["OrderId"]
            unrelated["manual_draft_invoice"] = _manual_invoice(demo, account, order)
    demo.traps["unrelated"] = unrelated

    for code, name, summary in (
        ("UNABLE_TO_LOCK_ROW", "System.DmlException", "Update failed: unable to obtain exclusive access"),
        ("LIMIT_EXCEEDED", "System.LimitException", "Apex CPU time limit exceeded"),
    ):
        demo.plan.add(
            ERROR_LOG,
            blng__InvoiceRun__c=failed.id,
            blng__ErrorCode__c=code,
            blng__ErrorName__c=name,
            blng__Summary__c=summary,
            blng__FullErrorLog__c=f"{name}: {summary}\nClass.blng.InvoiceRunBatch.execute: line 412, column 1",
        )

    counts = demo.plan.insert(store)
    return ScenarioInfo(
        "demo",
        runs={run.role: run.id for run in (failed, errors, completed, running)},
        counts=counts,
        cleanable=demo.cleanable,
        traps=demo.traps,
        not_ready={role: {code: tuple(ids) for code, ids in codes.items()} for role, codes in demo.not_ready.items()},
    )


def _manual_invoice(demo: _Demo, account: str, order: str) -> str:
    """A Draft invoice a person created by hand: no run, lines without sources. No run's clean-up may touch it."""
    invoice = demo.plan.add(
        INVOICE,
        blng__Account__c=account,
        blng__Order__c=order,
        blng__InvoiceStatus__c="Draft",
        blng__InvoiceDate__c=demo.now.date().isoformat(),
        blng__TotalAmount__c=150.0,
    )
    for _ in range(2):
        demo.plan.add(LINE, blng__Invoice__c=invoice, blng__InvoiceLineStatus__c="Draft", blng__TotalAmount__c=75.0)
    return invoice
