"""The planner: records in, transitions out. A pure function: no client, clock, logger or environment.

It applies the clean-up rules of `billing` to every record linked to a run, and its posted guard keeps away
from anything that is, or is becoming, posted: such records are reported as anomalies for a person to look at.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

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


@dataclass(frozen=True)
class RunPlan:
    run: InvoiceRun
    changes: dict[Phase, tuple[Change, ...]]
    anomalies: tuple[Anomaly, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not any(self.changes.values())

    @property
    def total(self) -> int:
        return sum(len(c) for c in self.changes.values())

    def transitions(self) -> dict[str, dict[str, int]]:
        """Per object, how many records go from each state to the target: {"OrderItem": {"Error -> ...": 3}}."""
        out: dict[str, dict[str, int]] = {}
        for phase in Phase:
            rule = RULE_BY_PHASE[phase]
            counts = Counter(
                f"{c.before[rule.status_field]} -> {c.after[rule.status_field]}" for c in self.changes[phase]
            )
            out[rule.sobject] = dict(sorted(counts.items()))
        return out

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


def _plan_invoices(
    rule: Rule, invoices: Iterable[Invoice], anomalies: list[Anomaly]
) -> tuple[list[Change], dict[str, str | None]]:
    changes = []
    statuses: dict[str, str | None] = {}
    for invoice in invoices:
        statuses[invoice.id] = invoice.status
        if invoice.status == billing.InvoiceStatus.POST_IN_PROGRESS:
            anomalies.append(
                Anomaly(
                    billing.INVOICE,
                    invoice.id,
                    AnomalyReason.INVOICE_POST_IN_PROGRESS,
                    "invoice is Post In progress: left alone; check the posting job before the next run",
                )
            )
        if invoice.status in rule.from_states:
            changes.append(
                change_for(rule, invoice.id, invoice.account_id or invoice.id, {rule.status_field: invoice.status})
            )
    return changes, statuses


def _plan_lines(
    rule: Rule, lines: Iterable[InvoiceLine], invoice_status: dict[str, str | None], anomalies: list[Anomaly]
) -> tuple[list[Change], set[str]]:
    changes = []
    billed: set[str] = set()
    for line in lines:
        status_of_invoice = line.invoice_status or invoice_status.get(line.invoice_id or "")
        if status_of_invoice in GUARDED_INVOICE_STATES:
            # Whatever this line billed stays billed: its sources must not go back to Pending Billing.
            billed.update(i for i in (line.order_product_id, line.usage_summary_id) if i)
            if line.status in rule.from_states:
                anomalies.append(
                    Anomaly(
                        billing.INVOICE_LINE,
                        line.id,
                        AnomalyReason.LINE_ON_POSTED_INVOICE,
                        f"{line.status} line on invoice {line.invoice_id} ({status_of_invoice}): needs a person, "
                        "not a clean-up",
                    )
                )
            continue
        if line.status in rule.from_states:
            group = line.account_id or line.invoice_id or line.id
            changes.append(change_for(rule, line.id, group, {rule.status_field: line.status}))
    return changes, billed


def _source_on_posted_invoice(source: BillingSource, invoice_status: dict[str, str | None]) -> bool:
    """A usage summary whose own invoice is posted; the invoice list covers a join that came back empty."""
    if not isinstance(source, UsageSummary):
        return False
    status = source.invoice_status or invoice_status.get(source.invoice_id or "")
    return status in GUARDED_INVOICE_STATES


def _plan_sources(
    rule: Rule,
    sources: Iterable[BillingSource],
    billed: set[str],
    invoice_status: dict[str, str | None],
    run_id: str,
    anomalies: list[Anomaly],
) -> list[Change]:
    changes = []
    for source in sources:
        if source.run_id != run_id or source.status not in rule.from_states:
            continue
        on_posted = _source_on_posted_invoice(source, invoice_status)
        if source.id in billed or on_posted:
            anomalies.append(
                Anomaly(
                    rule.sobject,
                    source.id,
                    AnomalyReason.SOURCE_BILLED_ON_POSTED_INVOICE,
                    f"{source.status} but billed on a posted invoice: resetting it would bill it twice",
                )
            )
            continue
        group = getattr(source, "account_id", None) or source.id
        changes.append(change_for(rule, source.id, group, _source_values(source)))
    return changes


def plan_run(
    run: InvoiceRun,
    invoices: Sequence[Invoice],
    lines: Sequence[InvoiceLine],
    order_products: Sequence[OrderProduct],
    usage_summaries: Sequence[UsageSummary],
) -> RunPlan:
    """Every transition the clean-up makes for `run`, in phase order, and the anomalies it leaves alone."""
    anomalies: list[Anomaly] = []
    invoice_changes, invoice_status = _plan_invoices(RULE_BY_PHASE[Phase.INVOICES], invoices, anomalies)
    line_changes, billed = _plan_lines(RULE_BY_PHASE[Phase.INVOICE_LINES], lines, invoice_status, anomalies)
    usage_rule, product_rule = RULE_BY_PHASE[Phase.USAGE_SUMMARIES], RULE_BY_PHASE[Phase.ORDER_PRODUCTS]
    usage_changes = _plan_sources(usage_rule, usage_summaries, billed, invoice_status, run.id, anomalies)
    product_changes = _plan_sources(product_rule, order_products, billed, invoice_status, run.id, anomalies)
    changes = {
        Phase.INVOICE_LINES: tuple(line_changes),
        Phase.INVOICES: tuple(invoice_changes),
        Phase.USAGE_SUMMARIES: tuple(usage_changes),
        Phase.ORDER_PRODUCTS: tuple(product_changes),
    }
    return RunPlan(run=run, changes=changes, anomalies=tuple(anomalies))
