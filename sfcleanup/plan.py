"""The planner: records in, transitions out. Pure: no client, clock, logger or environment.

It applies the clean-up rules of `billing` to every record linked to a run, and its posted guard keeps away
from anything that is, or is becoming, posted: such records are reported as anomalies for a person to look at.

`Planner` takes records one at a time (invoices, then lines, then sources), so a run of any size is planned
as it is read, with memory bound by what the guard must remember (invoice statuses, billed sources), not by
the run; where the changes go is the caller's choice (`plan_run` keeps them in memory).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sfcleanup import billing, links
from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.changes import (
    ChangeSet,
    Dependencies,
    MemoryChanges,
    MemoryDependencies,
    MemorySink,
    NoDependencies,
    PlanSink,
    Values,
    change_for,
)
from sfcleanup.links import Link, Path, Reach
from sfcleanup.models import BillingSource, Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary


class AnomalyReason(StrEnum):
    LINE_ON_POSTED_INVOICE = "line_on_posted_invoice"
    LINE_INVOICE_UNREADABLE = "line_invoice_unreadable"
    SOURCE_BILLED_ON_POSTED_INVOICE = "source_billed_on_posted_invoice"
    SOURCE_BILLED_ON_OPEN_INVOICE = "source_billed_on_open_invoice"
    INVOICE_POST_IN_PROGRESS = "invoice_post_in_progress"


@dataclass(frozen=True, slots=True)
class Anomaly:
    sobject: str
    id: str
    reason: AnomalyReason
    detail: str


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


def _source_values(source: BillingSource) -> Values:
    return {
        billing.PROCESSING_STATUS: source.status,
        billing.RUN_LOOKUP: source.run_id,
        billing.RUN_START_DATE: source.run_start,
    }


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
        on_path = path.links()
        reach, link = links.worst(on_path)
        if link is None:
            return
        if reach >= Reach.OPEN:
            held = self._bound.get(source_id)
            if held is None or reach > held.reach:
                self._bound[source_id] = link
            return
        for planned in on_path:
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


@dataclass(frozen=True)
class RunRecords:
    """A run's records as the planner needs them, each stream in any order within itself."""

    invoices: Iterable[Invoice]
    lines: Iterable[InvoiceLine]
    # Lines of any run naming one of the run's usage summaries.
    usage_summary_lines: Iterable[InvoiceLine]
    usage_summaries: Iterable[UsageSummary]
    order_products: Iterable[OrderProduct]


def plan_records(run: InvoiceRun, records: RunRecords, sink: PlanSink) -> tuple[Anomaly, ...]:
    """The planner's one entry point: feed `records` in the order its link model needs (invoices, the run's
    lines, the lines naming its usage summaries, then the sources), the changes going to `sink`; returns the
    anomalies. Streams are consumed one after the other, so each may be read lazily."""
    planner = Planner(run, sink)
    for invoice in records.invoices:
        planner.invoice(invoice)
    for line in records.lines:
        planner.line(line)
    for line in records.usage_summary_lines:
        planner.line_of_usage_summary(line)
    for summary in records.usage_summaries:
        planner.source(summary)
    for product in records.order_products:
        planner.source(product)
    return tuple(planner.anomalies)


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
    records = RunRecords(invoices, lines, usage_summary_lines, usage_summaries, order_products)
    anomalies = plan_records(run, records, sink)
    changes: dict[Phase, ChangeSet] = {phase: MemoryChanges(sink.changes[phase]) for phase in Phase}
    return RunPlan(run=run, changes=changes, anomalies=anomalies, dependencies=MemoryDependencies(sink.edges, changes))
