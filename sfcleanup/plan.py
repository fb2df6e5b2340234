"""The planner: records in, transitions out. Pure: no client, clock, logger or environment.

It applies the clean-up rules of `billing` to every record linked to a run, and its posted guard keeps away
from anything that is, or is becoming, posted: such records are reported as anomalies for a person to look at.

`Planner` takes records one at a time (invoices, then lines, then sources), so a run of any size is planned
as it is read, with memory bound by what the guard must remember (invoice statuses, billed sources), not by
the run; where the changes go is the caller's choice (`plan_run` keeps them in memory).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sfcleanup import billing
from sfcleanup.billing import GUARDED_INVOICE_STATES, RULE_BY_PHASE, Phase, Rule
from sfcleanup.models import BillingSource, Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary

Values = dict[str, str | None]


class AnomalyReason(StrEnum):
    LINE_ON_POSTED_INVOICE = "line_on_posted_invoice"
    SOURCE_BILLED_ON_POSTED_INVOICE = "source_billed_on_posted_invoice"
    INVOICE_POST_IN_PROGRESS = "invoice_post_in_progress"


@dataclass(frozen=True, slots=True)
class Change:
    sobject: str
    id: str
    # The lock point the record shares with its siblings (the account): a batch keeps a group together.
    group: str
    before: Values
    after: Values


@dataclass(frozen=True, slots=True)
class Anomaly:
    sobject: str
    id: str
    reason: AnomalyReason
    detail: str


class ChangeSet(Protocol):
    """The changes of one phase, iterated in lock-point order (group, then id)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Change]: ...

    def get(self, record_id: str) -> Change | None: ...

    def transitions(self, status_field: str) -> dict[str, int]: ...


def _order(change: Change) -> tuple[str, str]:
    return change.group, change.id


class MemoryChanges:
    """A ChangeSet held in memory: small runs and tests."""

    def __init__(self, changes: Sequence[Change]) -> None:
        self._changes = tuple(sorted(changes, key=_order))
        self._by_id = {c.id: c for c in self._changes}

    def __len__(self) -> int:
        return len(self._changes)

    def __iter__(self) -> Iterator[Change]:
        return iter(self._changes)

    def __bool__(self) -> bool:
        return bool(self._changes)

    def get(self, record_id: str) -> Change | None:
        return self._by_id.get(record_id)

    def transitions(self, status_field: str) -> dict[str, int]:
        counts = Counter(f"{c.before[status_field]} -> {c.after[status_field]}" for c in self._changes)
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class RunPlan:
    run: InvoiceRun
    changes: Mapping[Phase, ChangeSet]
    anomalies: tuple[Anomaly, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.total == 0

    @property
    def total(self) -> int:
        return sum(len(c) for c in self.changes.values())

    def transitions(self) -> dict[str, dict[str, int]]:
        """Per object, how many records go from each state to the target: {"OrderItem": {"Error -> ...": 3}}."""
        return {
            RULE_BY_PHASE[phase].sobject: self.changes[phase].transitions(RULE_BY_PHASE[phase].status_field)
            for phase in Phase
        }

    def anomalies_by_object(self) -> dict[str, int]:
        return dict(Counter(a.sobject for a in self.anomalies))


def change_for(rule: Rule, record_id: str, group: str, current: Values) -> Change:
    """The transition of one record under `rule`, with the before values of every field it writes."""
    before = {name: current.get(name) for name in rule.fields}
    after: Values = {rule.status_field: rule.to_state, **{name: None for name in rule.cleared}}
    return Change(rule.sobject, record_id, group, before, after)


def _source_values(source: BillingSource) -> Values:
    return {
        billing.PROCESSING_STATUS: source.status,
        billing.RUN_LOOKUP: source.run_id,
        billing.RUN_START_DATE: source.run_start,
    }


Emit = Callable[[Phase, Change], None]


class Planner:
    """Feed it a run's invoices, then its lines, then its sources; it emits each change as it is decided.

    Lines must all come before any source: a source is billed when a line of this run on a posted invoice
    names it, and only the lines can tell.
    """

    def __init__(self, run: InvoiceRun, emit: Emit) -> None:
        self.run = run
        self._emit = emit
        self.anomalies: list[Anomaly] = []
        self._invoice_status: dict[str, str | None] = {}
        self._billed: set[str] = set()

    def invoice(self, invoice: Invoice) -> None:
        rule = RULE_BY_PHASE[Phase.INVOICES]
        self._invoice_status[invoice.id] = invoice.status
        if invoice.status == billing.InvoiceStatus.POST_IN_PROGRESS:
            self.anomalies.append(
                Anomaly(
                    billing.INVOICE,
                    invoice.id,
                    AnomalyReason.INVOICE_POST_IN_PROGRESS,
                    "invoice is Post In progress: left alone; check the posting job before the next run",
                )
            )
        if invoice.status in rule.from_states:
            group = invoice.account_id or invoice.id
            self._emit(Phase.INVOICES, change_for(rule, invoice.id, group, {rule.status_field: invoice.status}))

    def line(self, line: InvoiceLine) -> None:
        rule = RULE_BY_PHASE[Phase.INVOICE_LINES]
        status_of_invoice = line.invoice_status or self._invoice_status.get(line.invoice_id or "")
        if status_of_invoice in GUARDED_INVOICE_STATES:
            # Whatever this line billed stays billed: its sources must not go back to Pending Billing.
            self._billed.update(i for i in (line.order_product_id, line.usage_summary_id) if i)
            if line.status in rule.from_states:
                self.anomalies.append(
                    Anomaly(
                        billing.INVOICE_LINE,
                        line.id,
                        AnomalyReason.LINE_ON_POSTED_INVOICE,
                        f"{line.status} line on invoice {line.invoice_id} ({status_of_invoice}): needs a person, "
                        "not a clean-up",
                    )
                )
            return
        if line.status in rule.from_states:
            group = line.account_id or line.invoice_id or line.id
            self._emit(Phase.INVOICE_LINES, change_for(rule, line.id, group, {rule.status_field: line.status}))

    def _on_posted_invoice(self, source: BillingSource) -> bool:
        """A usage summary whose own invoice is posted; the invoice list covers a join that came back empty."""
        if not isinstance(source, UsageSummary):
            return False
        status = source.invoice_status or self._invoice_status.get(source.invoice_id or "")
        return status in GUARDED_INVOICE_STATES

    def source(self, source: BillingSource) -> None:
        phase = Phase.USAGE_SUMMARIES if isinstance(source, UsageSummary) else Phase.ORDER_PRODUCTS
        rule = RULE_BY_PHASE[phase]
        if source.run_id != self.run.id or source.status not in rule.from_states:
            return
        if source.id in self._billed or self._on_posted_invoice(source):
            self.anomalies.append(
                Anomaly(
                    rule.sobject,
                    source.id,
                    AnomalyReason.SOURCE_BILLED_ON_POSTED_INVOICE,
                    f"{source.status} but billed on a posted invoice: resetting it would bill it twice",
                )
            )
            return
        group = getattr(source, "account_id", None) or source.id
        self._emit(phase, change_for(rule, source.id, group, _source_values(source)))


def plan_run(
    run: InvoiceRun,
    invoices: Sequence[Invoice],
    lines: Sequence[InvoiceLine],
    order_products: Sequence[OrderProduct],
    usage_summaries: Sequence[UsageSummary],
) -> RunPlan:
    """Every transition the clean-up makes for `run`, in phase order, and the anomalies it leaves alone."""
    collected: dict[Phase, list[Change]] = {phase: [] for phase in Phase}
    planner = Planner(run, lambda phase, change: collected[phase].append(change))
    for invoice in invoices:
        planner.invoice(invoice)
    for line in lines:
        planner.line(line)
    for source in (*usage_summaries, *order_products):
        planner.source(source)
    changes = {phase: MemoryChanges(collected[phase]) for phase in Phase}
    return RunPlan(run=run, changes=changes, anomalies=tuple(planner.anomalies))
