"""Seed scenarios for the local org: the same records, with the same ids and values, every time.

Seed into a fresh store: ids come from the store's own counter (`MAX(_rowid) + 1` per object), so a store that
already holds rows gives other ids. Every scenario is one call: `seed(store, name, records=..., now=...)`.
`now` (default: the store's clock) only moves the dates; it never changes which records exist. The text below
is Markdown, ready for the README.

## Seed scenarios

### `empty`

The schema and nothing else.

### `demo`

1,792 records, seeded in a few hundredths of a second. Four invoice runs, each on its own accounts, plus
unrelated records. `ScenarioInfo.runs` maps each role to its run id; `ScenarioInfo.cleanable` holds the
numbers a correct clean-up of each run changes.

| role | `blng__Status__c` | invoices cancelled | lines cancelled | order products reset | usage summaries reset |
|---|---|--:|--:|--:|--:|
| `failed_run` | Failed | 30 | 600 | 450 | 150 |
| `errors_run` | Completed with errors | 8 | 104 | 80 | 24 |
| `completed_run` | Completed | 0 (1 if included deliberately) | 0 (3) | 0 (3) | 0 |
| `running_run` | Step 2 : Invoice Line Creation - Processing | must refuse: the run is live | | | |

Records per run and state. A source (order product `OrderItem`, usage summary `blng__UsageSummary__c`) is
linked to its run (`blng__InvoiceRun__c` and `blng__InvoiceRunStartDate__c` set) unless it is Pending Billing.
Invoices count by `blng__InvoiceRunCreatedBy__c`, lines by `blng__InvoiceRun__c`.

| records | `failed_run` | `errors_run` | `completed_run` | `running_run` | no run |
|---|--:|--:|--:|--:|--:|
| Account | 30 | 8 | 5 | 3 | 5 |
| Order | 35 | 13 | 5 | 3 | 5 |
| invoice Draft | 10 | 3 | 1 | | 1 (made by hand) |
| invoice Error | 10 | 3 | | | |
| invoice Initiated | 10 | 2 | | 3 | |
| invoice Posted | 3 | 3 | 4 | | |
| invoice Post In progress | 1 | 1 | | | |
| invoice Cancelled | 1 | 1 | | | |
| invoice line Draft | 402 | 67 | 3 | 21 | 2 |
| invoice line Error | 200 | 39 | | | |
| invoice line Posted | 6 | 6 | 24 | | |
| invoice line Post In progress | 2 | 2 | | | |
| invoice line Cancelled | 2 | 2 | | | |
| order product Error | 210 | 40 | | | |
| order product In Progress | 242 | 42 | 3 | 15 | |
| order product Completed | 6 | 6 | 20 | | |
| order product Pending Billing (unlinked) | 32 | 10 | | | 20 |
| usage summary Error | 50 | 9 | | | |
| usage summary In Progress | 101 | 16 | | 6 | |
| usage summary Completed | 1 | 1 | 4 | | |
| usage summary Pending Billing (unlinked) | | | | | 5 |
| error log `blng__ErrorLog__c` | 2 | | | | |

Totals: Account 51, Order 61, OrderItem 646, blng__UsageSummary__c 193, blng__Invoice__c 57,
blng__InvoiceLine__c 778, blng__InvoiceRun__c 4, blng__ErrorLog__c 2.

How `failed_run` and `errors_run` are built: each account has one order whose invoice cycles Draft, Error,
Initiated over the accounts (`failed_run`: 15 linked order products, 5 usage summaries and 1 unlinked Pending
Billing order product per order; `errors_run`: 10, 3 and 1). An Error invoice has Error lines and Error
sources; a Draft or Initiated invoice has Draft lines, and its sources are In Progress except every fifth order
product, which is Error. One invoice line per source, with `blng__InvoiceRun__c` = the run (a usage summary's
line also names its order product). The 452 Error/In Progress order products of `failed_run` take three query
pages at batchSize 200. Accounts 1 to 5 of both runs each have a second order holding, in this order:

1. a clean Posted invoice: 4 Posted lines, 3 order products and 1 usage summary Completed;
2. a "Post In progress" invoice: 2 "Post In progress" lines, 2 order products Completed (never touch it);
3. trap (a), `traps[role]["posted_with_draft_lines"]`: a Posted invoice with 2 Draft lines whose order products
   are In Progress and linked to the run: an anomaly to report, never to cancel or reset;
4. trap (b), `traps[role]["billed_usage_summary"]`: a usage summary In Progress and linked to the run whose
   Posted line (of this run) sits on a Posted invoice, next to a Completed order product: billed, never reset;
5. trap (d), `traps[role]["cancelled_invoice"]`: an invoice already Cancelled, 2 Cancelled lines, 2 order
   products back in Pending Billing: nothing to do.

Trap (c), records that must never change: everything of `completed_run` (unless it is cleaned deliberately;
its leftover Draft invoice is on its fifth account), everything of `running_run`, the unlinked Pending
Billing order products on the failing runs' orders, and five unrelated accounts, each with an order of 4
Pending Billing order products and 1 Pending Billing usage summary; the first also has a Draft invoice made
by hand (no run), with 2 Draft lines without a run (`traps["unrelated"]["manual_draft_invoice"]`).

### `scale`

`records=N` billing sources (1,000 to 1,000,000; default 10,000) on one run, role `failed_run`, Status Failed.
`N // 50` accounts with 2, 3, 1, 2, 3, 1, ... orders (about N/25 orders); the N sources are spread evenly over
the orders (about 25 each); in each order a fifth (rounded down) are usage summaries, each on one of the order's
order products, and the rest are order products. One invoice per order, created by the run: every 50th order's
invoice is Posted (its lines Posted, its sources Completed: billed, not eligible); the others cycle Draft,
Error, Initiated. One invoice line per source, on its order's invoice. An Error invoice has Error lines and
Error sources; a Draft or Initiated invoice has Draft lines and In Progress sources. Every source is linked
to the run. `ScenarioInfo.cleanable["failed_run"]` gives the exact numbers a clean-up changes (for N=100,000:
3,921 invoices, 98,000 lines, 78,420 order products, 19,580 usage summaries). 100,000 sources seed in about
3 s, 1,000,000 in about 35 s with flat memory (rows are generated and inserted 20,000 at a time).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sfcleanup.localorg import idgen, schema
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.store import Store, quote
from sfcleanup.sftime import format_datetime

SCENARIOS: tuple[str, ...] = ("empty", "demo", "scale")
SCALE_DEFAULT_RECORDS = 10_000
SCALE_MIN_RECORDS = 1_000
SCALE_MAX_RECORDS = 1_000_000
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

# Insertion order; ids are computed before insertion, so references may point forwards (usage summary <-> line).
OBJECTS: tuple[SObjectSpec, ...] = (ACCOUNT, RUN, ORDER, ORDER_ITEM, INVOICE, USAGE, LINE, ERROR_LOG)

_PROCESSING = ("blng__InvoiceRunProcessingStatus__c", "blng__InvoiceRun__c", "blng__InvoiceRunStartDate__c")

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
    ORDER.name: ("Name", "AccountId", "Status", "EffectiveDate"),
    ORDER_ITEM.name: ("OrderId", "Quantity", "UnitPrice", *_PROCESSING),
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
        *_PROCESSING,
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
}

_NAME_PREFIX = {ORDER.name: "ORD", INVOICE.name: "INV", LINE.name: "IL", USAGE.name: "US", ERROR_LOG.name: "EL"}


def _check_columns() -> None:
    """Fail at import, not half-way through a seed, when the schema and this module drift apart."""
    for spec in OBJECTS:
        for name in COLUMNS[spec.name]:
            found = spec.field(name)
            if found is None or found.name != name:
                raise RuntimeError(f"seed writes {spec.name}.{name}, which the schema does not define")


_check_columns()


@dataclass(frozen=True)
class ScenarioInfo:
    """What a caller needs to find its way in a seeded org.

    `runs` maps a role (failed_run, errors_run, completed_run, running_run) to the run's id; `counts` gives the
    records inserted per object API name; `cleanable` gives, per role and object, how many records a correct
    clean-up of that run changes (the running run's numbers are what it must refuse to touch); `traps` maps a
    role to named trap records (see the module docstring).
    """

    scenario: str
    runs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    cleanable: dict[str, dict[str, int]] = field(default_factory=dict)
    traps: dict[str, dict[str, str]] = field(default_factory=dict)


def seed(store: Store, scenario: str, *, records: int | None = None, now: datetime | None = None) -> ScenarioInfo:
    """Fill `store` with the named scenario and return its ids; see the module docstring for the contents."""
    size = check_records(scenario, records)
    moment = _whole_seconds(now if now is not None else store.clock())
    if scenario == "empty":
        return ScenarioInfo("empty", counts={spec.name: 0 for spec in OBJECTS})
    if scenario == "demo":
        return _seed_demo(store, moment)
    return _seed_scale(store, size if size is not None else SCALE_DEFAULT_RECORDS, moment)


def check_records(scenario: str, records: int | None) -> int | None:
    """Validate a scenario name and its `records`, before anything is written; raises ValueError saying why."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    if records is None:
        return None
    if scenario != "scale":
        raise ValueError(f"the {scenario} scenario has a fixed size: records applies to the scale scenario only")
    # bool is an int in Python; `records=True` is a mistake, not 1 record.
    if isinstance(records, bool) or not isinstance(records, int):
        raise ValueError(f"records must be a whole number, not {records!r}")
    if not SCALE_MIN_RECORDS <= records <= SCALE_MAX_RECORDS:
        raise ValueError(
            f"records must be between {SCALE_MIN_RECORDS:,} and {SCALE_MAX_RECORDS:,} for the scale scenario,"
            f" not {records:,}"
        )
    return records


def _whole_seconds(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).replace(microsecond=0)


def _next_rowid(store: Store, spec: SObjectSpec) -> int:
    """The rowid insert_many gives the next row: it numbers from MAX(_rowid) + 1."""
    with store.lock:
        row = store.conn.execute(f"SELECT COALESCE(MAX(_rowid), 0) + 1 FROM {quote(spec.name)}").fetchone()
    return int(row[0])


def _insert_stream(store: Store, spec: SObjectSpec, rows: Iterable[dict[str, Any]], first_rowid: int) -> int:
    """Insert rows in chunks inside one transaction; check each chunk got the ids computed for it in advance.

    Returns the number of rows inserted. A mismatch means another writer used the store meanwhile: the
    forward references computed from the same counters would then point at the wrong records.
    """
    expected = first_rowid
    with store.transaction():
        for chunk in _chunks(rows, CHUNK_ROWS):
            new_ids = store.insert_many(spec, chunk)
            if new_ids[0] != idgen.record_id(spec.key_prefix, expected):
                raise RuntimeError(f"{spec.name} ids moved while seeding: was the store written concurrently?")
            expected += len(new_ids)
    return expected - first_rowid


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run_row(name: str, status: str, started: datetime, completed: datetime | None, job: int) -> dict[str, Any]:
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


def _line_status(invoice_status: str) -> str:
    """Lines follow their invoice, except that Draft and Initiated invoices have Draft lines."""
    return "Draft" if invoice_status in ("Draft", "Initiated") else invoice_status


def _usage_status(processing: str) -> str:
    """The usage summary's own status (not touched by clean-up), consistent with where billing got to."""
    return {"Completed": "Invoiced", "Pending Billing": "New"}.get(processing, "Queued For Invoice")


# --- demo ---------------------------------------------------------------------------------------------------


class _Plan:
    """Rows to insert, with their ids known up front so records can reference ones added later."""

    def __init__(self, store: Store) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {spec.name: [] for spec in OBJECTS}
        self.start = {spec.name: _next_rowid(store, spec) for spec in OBJECTS}
        self._where: dict[str, dict[str, Any]] = {}

    def next_id(self, spec: SObjectSpec) -> str:
        return idgen.record_id(spec.key_prefix, self.start[spec.name] + len(self.rows[spec.name]))

    def add(self, spec: SObjectSpec, **values: Any) -> str:
        rowid = self.start[spec.name] + len(self.rows[spec.name])
        if "Name" in COLUMNS[spec.name] and "Name" not in values:
            values["Name"] = f"{_NAME_PREFIX[spec.name]}-{rowid:06d}"
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
                spec.name: _insert_stream(store, spec, self.rows[spec.name], self.start[spec.name]) for spec in OBJECTS
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
        run_id = self.plan.add(RUN, **_run_row(name, status, started, completed, self._jobs))
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
                    blng__Status__c=_usage_status(processing),
                    blng__InvoiceRunProcessingStatus__c=processing,
                    blng__InvoiceRun__c=run.id if linked and run else None,
                    blng__InvoiceRunStartDate__c=run.start if linked and run else None,
                )
            )
        if invoice_status is None:
            return None, product_ids, usage_ids
        lines = line_status or _line_status(invoice_status)
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


def _seed_demo(store: Store, now: datetime) -> ScenarioInfo:
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


# --- scale --------------------------------------------------------------------------------------------------

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


def _seed_scale(store: Store, records: int, now: datetime) -> ScenarioInfo:
    lay = _layout(records)
    first = {spec.name: _next_rowid(store, spec) for spec in OBJECTS}

    def make(spec: SObjectSpec, index: int) -> str:
        return idgen.record_id(spec.key_prefix, first[spec.name] + index)

    started = now - timedelta(hours=3)
    start_text = format_datetime(started)
    day = started.date().isoformat()
    effective = (now - timedelta(days=30)).date().isoformat()
    run_id = make(RUN, 0)

    def account_rows() -> Iterator[dict[str, Any]]:
        for a in range(lay.accounts):
            yield {"Name": f"Scale Customer {a + 1:07d}"}

    def order_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            account = make(ACCOUNT, lay.order_account[o])
            yield {"Name": f"ORD-{o + 1:07d}", "AccountId": account, "Status": "Activated", "EffectiveDate": effective}

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
                yield {
                    "OrderId": order,
                    "Quantity": float(1 + k % 4),
                    "UnitPrice": 50.0,
                    "blng__InvoiceRunProcessingStatus__c": processing,
                    "blng__InvoiceRun__c": run_id,
                    "blng__InvoiceRunStartDate__c": start_text,
                }

    def usage_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            order = make(ORDER, o)
            invoice = make(INVOICE, o)
            status = lay.status(o)
            processing = _SOURCE_STATUS[status]
            usage_status = _usage_status(processing)
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
                    "blng__Status__c": usage_status,
                    "blng__InvoiceRunProcessingStatus__c": processing,
                    "blng__InvoiceRun__c": run_id,
                    "blng__InvoiceRunStartDate__c": start_text,
                }

    def line_rows() -> Iterator[dict[str, Any]]:
        for o in range(lay.orders):
            invoice = make(INVOICE, o)
            status = _line_status(lay.status(o))
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

    run_row = _run_row(f"Invoice run {day} (failed, scale)", "Failed", started, now - timedelta(hours=2), 1)
    streams: list[tuple[SObjectSpec, Iterable[dict[str, Any]]]] = [
        (RUN, [run_row]),
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
        counts[spec.name] = _insert_stream(store, spec, rows, first[spec.name])

    eligible = [o for o in range(lay.orders) if lay.status(o) != "Posted"]
    cleanable = {
        INVOICE.name: len(eligible),
        LINE.name: sum(lay.sources(o) for o in eligible),
        ORDER_ITEM.name: sum(lay.products[o] for o in eligible),
        USAGE.name: sum(lay.sources(o) - lay.products[o] for o in eligible),
    }
    return ScenarioInfo("scale", runs={"failed_run": run_id}, counts=counts, cleanable={"failed_run": cleanable})
