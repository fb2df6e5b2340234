"""What the seed scenarios share: the objects and columns they write, the row helpers, and `ScenarioInfo`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sfcleanup.localorg import idgen, schema
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.sql import quote
from sfcleanup.localorg.store import Store
from sfcleanup.sftime import format_datetime

# Rows per executemany: large enough to amortise Python overhead, small enough to keep memory flat at 1M.
CHUNK_ROWS = 20_000

# Statuses the package's clean-up changes (DOMAIN.md, section 1).
CANCELLABLE_INVOICE = frozenset({"Draft", "Error", "Initiated"})
CANCELLABLE_LINE = frozenset({"Draft", "Error"})
RESETTABLE_SOURCE = frozenset({"Error", "In Progress"})


def _spec(name: str) -> SObjectSpec:
    spec = schema.sobject(name)
    if spec is None:
        raise RuntimeError(f"the local org's schema has no {name}")
    return spec


ACCOUNT = _spec("Account")
ORDER = _spec("Order")
ORDER_ITEM = _spec("OrderItem")
RUN = _spec("blng__InvoiceRun__c")
INVOICE = _spec("blng__Invoice__c")
LINE = _spec("blng__InvoiceLine__c")
USAGE = _spec("blng__UsageSummary__c")
ERROR_LOG = _spec("blng__ErrorLog__c")
BILLING_RULE = _spec("blng__BillingRule__c")
TAX_RULE = _spec("blng__TaxRule__c")
REVENUE_RULE = _spec("blng__RevenueRecognitionRule__c")
SCHEDULER = _spec("blng__InvoiceScheduler__c")

# Insertion order; ids are computed before insertion, so references may point forwards (usage summary <-> line).
OBJECTS: tuple[SObjectSpec, ...] = (
    ACCOUNT,
    RUN,
    ORDER,
    ORDER_ITEM,
    INVOICE,
    USAGE,
    LINE,
    ERROR_LOG,
    BILLING_RULE,
    TAX_RULE,
    REVENUE_RULE,
    SCHEDULER,
)

# What the readiness rules read on an order product (docs/readiness.md); the seeds give every one a value.
BILLING = (
    "SBQQ__Activated__c",
    "SBQQ__ChargeType__c",
    "SBQQ__BillingFrequency__c",
    "blng__HoldBilling__c",
    "blng__NextBillingDate__c",
    "blng__BillableUnitPrice__c",
    "blng__PendingBillings__c",
    "blng__BillingRule__c",
    "blng__TaxRule__c",
    "blng__RevenueRecognitionRule__c",
)

PROCESSING = ("blng__InvoiceRunProcessingStatus__c", "blng__InvoiceRun__c", "blng__InvoiceRunStartDate__c")

# The fields the seed writes, per object. insert_many needs every row of a call to have the same keys, so each
# row is normalised to exactly these (None where a record leaves the field empty).
COLUMNS: dict[str, tuple[str, ...]] = {
    ACCOUNT.name: ("Name",),
    RUN.name: (
        "Name",
        "blng__Status__c",
        "blng__CleanUpStatus__c",
        "blng__TargetDate__c",
        "blng__InvoiceDate__c",
        "blng__StartTime__c",
        "blng__CompletedTime__c",
        "blng__ApexJobId__c",
        "blng__InvoiceScheduler__c",
    ),
    ORDER.name: ("Name", "AccountId", "Status", "EffectiveDate", "blng__InvoiceBatch__c"),
    ORDER_ITEM.name: ("OrderId", "Quantity", "UnitPrice", *PROCESSING, *BILLING),
    INVOICE.name: (
        "Name",
        "blng__Account__c",
        "blng__Order__c",
        "blng__InvoiceStatus__c",
        "blng__InvoiceRunCreatedBy__c",
        "blng__InvoiceDate__c",
        "blng__TotalAmount__c",
    ),
    USAGE.name: (
        "Name",
        "blng__OrderProduct__c",
        "blng__InvoiceLine__c",
        "blng__Invoice__c",
        "blng__Order__c",
        "blng__Status__c",
        *PROCESSING,
        "blng__NextBillingDate__c",
        "blng__SummaryEndDate__c",
    ),
    LINE.name: (
        "Name",
        "blng__Invoice__c",
        "blng__InvoiceLineStatus__c",
        "blng__InvoiceRun__c",
        "blng__OrderProduct__c",
        "blng__UsageSummary__c",
        "blng__TotalAmount__c",
    ),
    ERROR_LOG.name: (
        "Name",
        "blng__InvoiceRun__c",
        "blng__ErrorCode__c",
        "blng__ErrorName__c",
        "blng__Summary__c",
        "blng__FullErrorLog__c",
    ),
    BILLING_RULE.name: ("Name", "blng__GenerateInvoices__c"),
    TAX_RULE.name: ("Name",),
    REVENUE_RULE.name: ("Name",),
    SCHEDULER.name: (
        "Name",
        "blng__Type__c",
        "blng__StartDateTime__c",
        "blng__TargetDate__c",
        "blng__InvoiceBatches__c",
    ),
}

NAME_PREFIX = {ORDER.name: "ORD", INVOICE.name: "INV", LINE.name: "IL", USAGE.name: "US", ERROR_LOG.name: "EL"}


def check_columns() -> None:
    """Fail at import, not half-way through a seed, when the schema and this module drift apart."""
    for spec in OBJECTS:
        for name in COLUMNS[spec.name]:
            found = spec.field(name)
            if found is None or found.name != name:
                raise RuntimeError(f"seed writes {spec.name}.{name}, which the schema does not define")


check_columns()


@dataclass(frozen=True)
class ScenarioInfo:
    """What a caller needs to find its way in a seeded org.

    `runs` maps a role (failed_run, errors_run, completed_run, running_run) to the run's id; `counts` gives the
    records inserted per object API name; `cleanable` gives, per role and object, how many records a correct
    clean-up of that run changes (the running run's numbers are what it must refuse to touch); `traps` maps a
    role to named trap records (see docs/localorg-scenarios.md); `not_ready` maps a role to the readiness reason
    codes (sfcleanup.readiness) the scenario seeds on records a clean-up of that run resets, each with the ids
    of the records that have that reason after the clean-up (borderline reasons included).
    """

    scenario: str
    runs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    cleanable: dict[str, dict[str, int]] = field(default_factory=dict)
    traps: dict[str, dict[str, str]] = field(default_factory=dict)
    not_ready: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)


def whole_seconds(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)


def next_rowid(store: Store, spec: SObjectSpec) -> int:
    """The rowid insert_many gives the next row: it numbers from MAX(_rowid) + 1."""
    with store.lock:
        row = store.conn.execute(f"SELECT COALESCE(MAX(_rowid), 0) + 1 FROM {quote(spec.name)}").fetchone()
    return int(row[0])


def insert_stream(store: Store, spec: SObjectSpec, rows: Iterable[dict[str, Any]], first_rowid: int) -> int:
    """Insert rows in chunks inside one transaction; check each chunk got the ids computed for it in advance.

    Returns the number of rows inserted. A mismatch means another writer used the store meanwhile: the
    forward references computed from the same counters would then point at the wrong records.
    """
    expected = first_rowid
    with store.transaction():
        for chunk in chunks(rows, CHUNK_ROWS):
            new_ids = store.insert_many(spec, chunk)
            if new_ids[0] != idgen.record_id(spec.key_prefix, expected):
                raise RuntimeError(f"{spec.name} ids moved while seeding: was the store written concurrently?")
            expected += len(new_ids)
    return expected - first_rowid


def chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def invoice_run_row(name: str, status: str, started: datetime, completed: datetime | None, job: int) -> dict[str, Any]:
    return {
        "Name": name,
        "blng__Status__c": status,
        "blng__CleanUpStatus__c": None,
        "blng__TargetDate__c": started.date().isoformat(),
        "blng__InvoiceDate__c": started.date().isoformat(),
        "blng__StartTime__c": format_datetime(started),
        "blng__CompletedTime__c": None if completed is None else format_datetime(completed),
        "blng__ApexJobId__c": idgen.record_id("707", job),
        "blng__InvoiceScheduler__c": None,
    }


def line_status_of(invoice_status: str) -> str:
    """Lines follow their invoice, except that Draft and Initiated invoices have Draft lines."""
    return "Draft" if invoice_status in ("Draft", "Initiated") else invoice_status


def usage_status_of(processing: str) -> str:
    """The usage summary's own status (not touched by clean-up), consistent with where billing got to."""
    return {"Completed": "Invoiced", "Pending Billing": "New"}.get(processing, "Queued For Invoice")
