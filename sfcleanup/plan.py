"""The planner: records in, transitions out. Pure: no client, clock, logger or environment.

It applies the clean-up rules of `billing` to every record linked to a run, and its posted guard keeps away
from anything that is, or is becoming, posted: such records are reported as anomalies for a person to look at.

`Planner` takes records one at a time (invoices, then lines, then sources), so a run of any size is planned
as it is read, with memory bound by what the guard must remember (invoice statuses, billed sources), not by
the run; where the changes go is the caller's choice (`plan_run` keeps them in memory).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from sfcleanup import billing, links
from sfcleanup.billing import RULE_BY_PHASE, Phase, Rule
from sfcleanup.links import Link, Path, Reach
from sfcleanup.models import BillingSource, Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary

Values = dict[str, str | None]


class AnomalyReason(StrEnum):
    LINE_ON_POSTED_INVOICE = "line_on_posted_invoice"
    LINE_INVOICE_UNREADABLE = "line_invoice_unreadable"
    SOURCE_BILLED_ON_POSTED_INVOICE = "source_billed_on_posted_invoice"
    SOURCE_BILLED_ON_OPEN_INVOICE = "source_billed_on_open_invoice"
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


class Dependencies(Protocol):
    """What the planned changes wait for (see `PlanSink.depend`)."""

    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        """The changes of `phase` that wait for a record in `blocked`, each with one record it waits for."""
        ...


class NoDependencies:
    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        return {}


class Without:
    """A ChangeSet less the records held back (`held` is a subset of `changes`)."""

    def __init__(self, changes: ChangeSet, held: Collection[str]) -> None:
        self._changes = changes
        self._held = frozenset(held)

    def __len__(self) -> int:
        return len(self._changes) - len(self._held)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[Change]:
        return (c for c in self._changes if c.id not in self._held)

    def get(self, record_id: str) -> Change | None:
        return None if record_id in self._held else self._changes.get(record_id)

    def transitions(self, status_field: str) -> dict[str, int]:
        counts = Counter(f"{c.before[status_field]} -> {c.after[status_field]}" for c in self)
        return dict(sorted(counts.items()))


@dataclass(frozen=True)
class RunPlan:
    run: InvoiceRun
    changes: Mapping[Phase, ChangeSet]
    anomalies: tuple[Anomaly, ...] = ()
    dependencies: Dependencies = field(default_factory=NoDependencies)

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


class PlanSink(Protocol):
    """Where a planner's decisions go: the changes of each phase, and what each change waits for."""

    def add(self, phase: Phase, change: Change) -> None: ...

    def depend(self, record_id: str, on: str) -> None:
        """`record_id` may be written only once `on` (a record of an earlier phase) reached its target."""
        ...


class Planner:
    """Feed it a run's invoices, then its lines, then the lines naming its usage summaries, then its sources.

    Each change goes to the sink as it is decided. A source is changed only when every link from it to an
    invoice (`sfcleanup.links`) is cancelled or cancelled by this clean-up; it then depends on those writes.
    Sources linked to a posted invoice, or to a line or invoice this clean-up does not cancel, are anomalies.
    """

    def __init__(self, run: InvoiceRun, sink: PlanSink) -> None:
        self.run = run
        self._sink = sink
        self.anomalies: list[Anomaly] = []
        # The run's own invoices: their status when a join comes back empty, and which ones this plan cancels.
        self._invoice_status: dict[str, str | None] = {}
        # Sources bound by a link the clean-up must not cross: the most binding link seen so far.
        self._bound: dict[str, Link] = {}

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
            self._sink.add(Phase.INVOICES, change_for(rule, invoice.id, group, {rule.status_field: invoice.status}))

    def _invoice_link(self, invoice_id: str | None, joined_status: str | None) -> Link | None:
        if invoice_id is None:
            # A join without its id cannot come from Salesforce; its status still counts.
            return None if joined_status is None else Link(billing.INVOICE, "(no id)", joined_status, False)
        status = joined_status or self._invoice_status.get(invoice_id)
        planned = links.invoice_planned(status, invoice_id in self._invoice_status)
        return Link(billing.INVOICE, invoice_id, status, planned)

    def line(self, line: InvoiceLine) -> None:
        """A line of the run: cancelled unless its invoice is guarded or unreadable; binds what it names."""
        rule = RULE_BY_PHASE[Phase.INVOICE_LINES]
        invoice = self._invoice_link(line.invoice_id, line.invoice_status)
        invoice_status = invoice.status if invoice else None
        planned = links.line_planned(line.status, True, line.invoice_id, invoice_status)
        self._bind_all(line, Path(Link(billing.INVOICE_LINE, line.id, line.status, planned), invoice))
        if planned:
            group = line.account_id or line.invoice_id or line.id
            self._sink.add(Phase.INVOICE_LINES, change_for(rule, line.id, group, {rule.status_field: line.status}))
            if invoice is not None and invoice.planned:
                # An invoice is cancelled only after every line of it this clean-up cancels.
                self._sink.depend(invoice.id, line.id)
            return
        if line.status not in rule.from_states:
            return
        problem = links.line_invoice_problem(line.invoice_id, invoice_status)
        reason, detail = (
            (AnomalyReason.LINE_ON_POSTED_INVOICE, f"on invoice {line.invoice_id} ({invoice_status})")
            if problem == "guarded"
            else (AnomalyReason.LINE_INVOICE_UNREADABLE, f"its invoice {line.invoice_id} could not be read")
        )
        self.anomalies.append(
            Anomaly(
                billing.INVOICE_LINE, line.id, reason, f"{line.status} line {detail}: needs a person, not a clean-up"
            )
        )

    def line_of_usage_summary(self, line: InvoiceLine) -> None:
        """A line of any run naming one of the run's usage summaries; the run's own lines were fed already."""
        if line.run_id == self.run.id or line.usage_summary_id is None:
            return
        invoice = self._invoice_link(line.invoice_id, line.invoice_status)
        path = Path(Link(billing.INVOICE_LINE, line.id, line.status, False), invoice)
        self._bind(line.usage_summary_id, path)

    def _bind_all(self, line: InvoiceLine, path: Path) -> None:
        for source_id in (line.order_product_id, line.usage_summary_id):
            if source_id:
                self._bind(source_id, path)

    def _bind(self, source_id: str, path: Path) -> None:
        """Record what one path from a source to an invoice asks of the source."""
        reach, link = links.worst(path.links())
        if link is None:
            return
        if reach >= Reach.OPEN:
            held = self._bound.get(source_id)
            if held is None or link.reach > held.reach:
                self._bound[source_id] = link
            return
        for planned in path.links():
            if planned.reach is Reach.PLANNED:
                self._sink.depend(source_id, planned.id)

    def _bind_own_links(self, summary: UsageSummary) -> None:
        """A usage summary's own invoice, and its own invoice line with that line's invoice."""
        own_invoice = self._invoice_link(summary.invoice_id, summary.invoice_status)
        if own_invoice is not None:
            self._bind(summary.id, Path(None, own_invoice))
        if summary.invoice_line_id is None:
            return
        line_invoice = self._invoice_link(summary.invoice_line_invoice_id, summary.invoice_line_invoice_status)
        of_run = summary.invoice_line_run_id == self.run.id
        planned = links.line_planned(
            summary.invoice_line_status,
            of_run,
            summary.invoice_line_invoice_id,
            line_invoice.status if line_invoice else None,
        )
        own_line = Link(billing.INVOICE_LINE, summary.invoice_line_id, summary.invoice_line_status, planned)
        self._bind(summary.id, Path(own_line, line_invoice))

    def source(self, source: BillingSource) -> None:
        phase = Phase.USAGE_SUMMARIES if isinstance(source, UsageSummary) else Phase.ORDER_PRODUCTS
        rule = RULE_BY_PHASE[phase]
        if source.run_id != self.run.id or source.status not in rule.from_states:
            return
        if isinstance(source, UsageSummary):
            self._bind_own_links(source)
        bound = self._bound.get(source.id)
        if bound is not None:
            self.anomalies.append(_bound_anomaly(rule.sobject, source, bound))
            return
        group = getattr(source, "account_id", None) or source.id
        self._sink.add(phase, change_for(rule, source.id, group, _source_values(source)))


def _bound_anomaly(sobject: str, source: BillingSource, link: Link) -> Anomaly:
    if link.reach is Reach.POSTED:
        return Anomaly(
            sobject,
            source.id,
            AnomalyReason.SOURCE_BILLED_ON_POSTED_INVOICE,
            f"{source.status} but billed on {link.describe()}: resetting it would bill it twice",
        )
    return Anomaly(
        sobject,
        source.id,
        AnomalyReason.SOURCE_BILLED_ON_OPEN_INVOICE,
        f"{source.status} but {link.describe()} still bills it and this clean-up does not cancel it: "
        "resetting it would bill it twice",
    )


class MemorySink:
    """Collects a plan in memory: small runs and tests."""

    def __init__(self) -> None:
        self.changes: dict[Phase, list[Change]] = {phase: [] for phase in Phase}
        self.edges: dict[str, set[str]] = {}

    def add(self, phase: Phase, change: Change) -> None:
        self.changes[phase].append(change)

    def depend(self, record_id: str, on: str) -> None:
        self.edges.setdefault(record_id, set()).add(on)


class MemoryDependencies:
    """What each planned change waits for, held in memory."""

    def __init__(self, edges: Mapping[str, set[str]], changes: Mapping[Phase, ChangeSet]) -> None:
        self._edges = edges
        self._changes = changes

    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for change in self._changes[phase]:
            waits = sorted(self._edges.get(change.id, set()) & set(blocked))
            if waits:
                out[change.id] = waits[0]
        return out

    def of(self, record_id: str) -> frozenset[str]:
        return frozenset(self._edges.get(record_id, ()))


def plan_run(
    run: InvoiceRun,
    invoices: Sequence[Invoice],
    lines: Sequence[InvoiceLine],
    order_products: Sequence[OrderProduct],
    usage_summaries: Sequence[UsageSummary],
    usage_summary_lines: Sequence[InvoiceLine] = (),
) -> RunPlan:
    """Every transition the clean-up makes for `run`, in phase order, and the anomalies it leaves alone."""
    sink = MemorySink()
    planner = Planner(run, sink)
    for invoice in invoices:
        planner.invoice(invoice)
    for line in lines:
        planner.line(line)
    for line in usage_summary_lines:
        planner.line_of_usage_summary(line)
    for source in (*usage_summaries, *order_products):
        planner.source(source)
    changes: dict[Phase, ChangeSet] = {phase: MemoryChanges(sink.changes[phase]) for phase in Phase}
    return RunPlan(
        run=run,
        changes=changes,
        anomalies=tuple(planner.anomalies),
        dependencies=MemoryDependencies(sink.edges, changes),
    )
