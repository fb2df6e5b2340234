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
    RUN,
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


class _Demo:
    def __init__(self, plan: _Plan, now: datetime) -> None:
        self.plan = plan
        self.now = now
        self.cleanable: dict[str, dict[str, int]] = {}
        self.traps: dict[str, dict[str, str]] = {}
        self._jobs = 0

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
        return self.plan.add(ORDER, AccountId=account, Status="Activated", EffectiveDate=effective)

    def product(self, order: str, processing: str, run: _Run | None) -> str:
        k = len(self.plan.rows[ORDER_ITEM.name])
        linked = run is not None and processing != "Pending Billing"
        return self.plan.add(
            ORDER_ITEM,
            OrderId=order,
            Quantity=float(1 + k % 4),
            UnitPrice=float(10 * (5 + k % 9)),
            blng__InvoiceRunProcessingStatus__c=processing,
            blng__InvoiceRun__c=run.id if linked and run else None,
            blng__InvoiceRunStartDate__c=run.start if linked and run else None,
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
        product_ids = [self.product(order_id, status, run) for status in products]
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
            _, product_ids, _ = self.group(run, account, invoice_status, statuses, usage_statuses)
            # Noise on the same order: a product waiting for a later run, never linked to this one.
            order = self.plan.row(product_ids[0])["OrderId"]
            self.product(order, "Pending Billing", None)
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
