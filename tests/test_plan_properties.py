"""The planner, as properties over generated runs: the posted guard, the documented transitions, idempotence.

A strategy builds a small org (invoices, lines, order products, usage summaries, some linked to the run being
cleaned, some to another run, some to none) and passes the planner what the worker's queries would read. A
simulator written here from DOMAIN.md, not from the planner, applies a plan the way the org would, so a plan
can be applied and the run planned again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import pytest
from hypothesis import Phase as HypothesisPhase
from hypothesis import find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.changes import Change
from sfcleanup.models import Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary
from sfcleanup.plan import RunPlan, plan_run

RUN = InvoiceRun(id="a1A5g0000000001AAA", status="Failed")
OTHER_RUN = "a1A5g0000000002AAA"
START = "2026-11-20T01:00:00.000+0000"

# Object and field names as DOMAIN.md spells them, written out here so the simulator does not borrow the
# planner's constants.
INVOICE = "blng__Invoice__c"
LINE = "blng__InvoiceLine__c"
PRODUCT = "OrderItem"
USAGE = "blng__UsageSummary__c"
PROCESSING = "blng__InvoiceRunProcessingStatus__c"
RUN_LOOKUP = "blng__InvoiceRun__c"
RUN_START = "blng__InvoiceRunStartDate__c"

# Every value the status fields take in generated data, including ones no rule names.
INVOICE_STATES: tuple[str | None, ...] = (
    None,
    "Draft",
    "Error",
    "Initiated",
    "Posted",
    "Post In progress",
    "Cancelled",
    "Rebilled",
)
PROCESSING_STATES: tuple[str | None, ...] = (
    None,
    "Completed",
    "Error",
    "In Progress",
    "Pending Billing",
    "Will Not Invoice",
)
GUARDED = frozenset({"Posted", "Post In progress"})
# This run is drawn twice as often as another run or none, so most examples have something to clean.
RUN_LINKS: tuple[str | None, ...] = (RUN.id, RUN.id, OTHER_RUN, None)


@dataclass(frozen=True)
class Documented:
    """One row of the clean-up table in DOMAIN.md section 1."""

    status_field: str
    from_states: frozenset[str]
    to_state: str
    cleared: tuple[str, ...] = ()


DOCUMENTED: dict[str, Documented] = {
    INVOICE: Documented("blng__InvoiceStatus__c", frozenset({"Error", "Initiated", "Draft"}), "Cancelled"),
    LINE: Documented("blng__InvoiceLineStatus__c", frozenset({"Error", "Draft"}), "Cancelled"),
    PRODUCT: Documented(PROCESSING, frozenset({"Error", "In Progress"}), "Pending Billing", (RUN_LOOKUP, RUN_START)),
    USAGE: Documented(PROCESSING, frozenset({"Error", "In Progress"}), "Pending Billing", (RUN_LOOKUP, RUN_START)),
}

# The Salesforce fields a change may write, per object, and the model attribute each one lands in.
ATTRIBUTES: dict[str, dict[str, str]] = {
    INVOICE: {"blng__InvoiceStatus__c": "status"},
    LINE: {"blng__InvoiceLineStatus__c": "status"},
    PRODUCT: {PROCESSING: "status", RUN_LOOKUP: "run_id", RUN_START: "run_start"},
    USAGE: {PROCESSING: "status", RUN_LOOKUP: "run_id", RUN_START: "run_start"},
}

Record = Invoice | InvoiceLine | OrderProduct | UsageSummary
Key = tuple[str, str]
R = TypeVar("R", Invoice, InvoiceLine, OrderProduct, UsageSummary)
T = TypeVar("T")

SETTINGS = settings(max_examples=150, deadline=None)


@dataclass(frozen=True)
class World:
    """A small org. The models carry no run link for invoices and lines, so those links are kept beside them."""

    invoices: tuple[Invoice, ...]
    lines: tuple[InvoiceLine, ...]
    order_products: tuple[OrderProduct, ...]
    usage_summaries: tuple[UsageSummary, ...]
    # blng__InvoiceRunCreatedBy__c of each invoice.
    invoice_run: dict[str, str | None]
    # blng__InvoiceRun__c of each line.
    line_run: dict[str, str | None]
    # Lines read without their invoice's fields (the join came back empty).
    missing_join: frozenset[str]

    def records(self) -> dict[Key, Record]:
        out: dict[Key, Record] = {}
        for sobject, records in (
            (INVOICE, self.invoices),
            (LINE, self.lines),
            (PRODUCT, self.order_products),
            (USAGE, self.usage_summaries),
        ):
            for record in records:
                out[(sobject, record.id)] = record
        return out

    def run_of(self, sobject: str, record: Record) -> str | None:
        if sobject == INVOICE:
            return self.invoice_run[record.id]
        if sobject == LINE:
            return self.line_run[record.id]
        assert isinstance(record, OrderProduct | UsageSummary)
        return record.run_id

    def invoice_status(self, invoice_id: str | None) -> str | None:
        return next((i.status for i in self.invoices if i.id == invoice_id), None)


# Built once: strategies made inside the loops below would be validated again at every draw.
INVOICE_STATE = st.sampled_from(INVOICE_STATES)
PROCESSING_STATE = st.sampled_from(PROCESSING_STATES)
RUN_LINK = st.sampled_from(RUN_LINKS)
MAYBE_START = st.sampled_from((START, None))


def _pick(draw: st.DrawFn, items: Sequence[T]) -> T:
    return items[draw(st.integers(0, len(items) - 1))]


def _optional(draw: st.DrawFn, items: Sequence[T]) -> T | None:
    present: bool = draw(st.booleans())
    return _pick(draw, items) if items and present else None


def _run_start(draw: st.DrawFn, run: str | None) -> str | None:
    return draw(MAYBE_START) if run else None


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """A coherent org: every reference points at a generated record, every join agrees with what it joins."""
    accounts = [f"acc{i}" for i in range(draw(st.integers(1, 3)))]
    invoices: list[Invoice] = []
    invoice_run: dict[str, str | None] = {}
    for i in range(draw(st.integers(0, 6))):
        invoice = Invoice(id=f"inv{i}", status=draw(INVOICE_STATE), account_id=_pick(draw, accounts))
        invoices.append(invoice)
        invoice_run[invoice.id] = draw(RUN_LINK)

    products: list[OrderProduct] = []
    for i in range(draw(st.integers(0, 5))):
        run = draw(RUN_LINK)
        products.append(
            OrderProduct(
                id=f"op{i}",
                status=draw(PROCESSING_STATE),
                run_id=run,
                run_start=_run_start(draw, run),
                order_id=f"ord{i}",
                account_id=_pick(draw, accounts),
            )
        )

    usage: list[UsageSummary] = []
    for i in range(draw(st.integers(0, 5))):
        run = draw(RUN_LINK)
        product = _optional(draw, products)
        billed_on = _optional(draw, invoices)
        usage.append(
            UsageSummary(
                id=f"us{i}",
                status=draw(PROCESSING_STATE),
                run_id=run,
                run_start=_run_start(draw, run),
                order_product_id=product.id if product else None,
                account_id=product.account_id if product else _pick(draw, accounts),
                invoice_id=billed_on.id if billed_on else None,
                invoice_status=billed_on.status if billed_on else None,
            )
        )

    lines: list[InvoiceLine] = []
    line_run: dict[str, str | None] = {}
    missing_join: set[str] = set()
    for i in range(draw(st.integers(0, 10)) if invoices else 0):
        invoice = _pick(draw, invoices)
        # The join may be missing only where the invoice list the planner reads still holds the invoice.
        joined = invoice_run[invoice.id] != RUN.id or draw(st.integers(0, 3)) > 0
        product = _optional(draw, products)
        summary = _optional(draw, usage)
        line = InvoiceLine(
            id=f"line{i}",
            status=draw(INVOICE_STATE),
            invoice_id=invoice.id,
            invoice_status=invoice.status if joined else None,
            account_id=invoice.account_id if joined else None,
            order_product_id=product.id if product else None,
            usage_summary_id=summary.id if summary else None,
        )
        lines.append(line)
        line_run[line.id] = draw(RUN_LINK)
        if not joined:
            missing_join.add(line.id)

    return World(
        invoices=tuple(invoices),
        lines=tuple(lines),
        order_products=tuple(products),
        usage_summaries=tuple(usage),
        invoice_run=invoice_run,
        line_run=line_run,
        missing_join=frozenset(missing_join),
    )


def plan_of(world: World) -> RunPlan:
    """Plan with what the worker's queries read: the run's invoices and lines; every source, for its own filter."""
    return plan_run(
        RUN,
        [i for i in world.invoices if world.invoice_run[i.id] == RUN.id],
        [line for line in world.lines if world.line_run[line.id] == RUN.id],
        world.order_products,
        world.usage_summaries,
    )


def all_changes(plan: RunPlan) -> list[Change]:
    return [change for phase in Phase for change in plan.changes[phase]]


def apply(world: World, plan: RunPlan) -> World:
    """The org after every change of `plan` is written, with the lines' and summaries' joins following."""
    updates: dict[Key, dict[str, str | None]] = {}
    for change in all_changes(plan):
        names = ATTRIBUTES[change.sobject]
        updates.setdefault((change.sobject, change.id), {}).update(
            {names[field]: value for field, value in change.after.items()}
        )
    unknown = set(updates) - set(world.records())
    assert not unknown, f"the plan changes records that do not exist: {sorted(unknown)}"

    def written(sobject: str, records: Iterable[R]) -> tuple[R, ...]:
        return tuple(r.model_copy(update=updates.get((sobject, r.id), {})) for r in records)

    invoices = written(INVOICE, world.invoices)
    status = {invoice.id: invoice.status for invoice in invoices}
    lines = tuple(
        line
        if line.id in world.missing_join or line.invoice_id is None
        else line.model_copy(update={"invoice_status": status[line.invoice_id]})
        for line in written(LINE, world.lines)
    )
    usage = tuple(
        summary
        if summary.invoice_id is None
        else summary.model_copy(update={"invoice_status": status[summary.invoice_id]})
        for summary in written(USAGE, world.usage_summaries)
    )
    return replace(
        world,
        invoices=invoices,
        lines=lines,
        order_products=written(PRODUCT, world.order_products),
        usage_summaries=usage,
    )


def anomaly_keys(plan: RunPlan) -> list[tuple[str, str, str]]:
    return sorted((a.sobject, a.id, a.reason.value) for a in plan.anomalies)


def current(sobject: str, record: Record, field: str) -> str | None:
    value = getattr(record, ATTRIBUTES[sobject][field])
    assert value is None or isinstance(value, str)
    return value


@SETTINGS
@given(worlds())
def test_posted_invoices_and_what_they_billed_are_never_touched(world: World) -> None:
    """No change names a posted or posting invoice, a line on one, a source a line of this run billed on one, or a
    usage summary whose own invoice is one."""
    guarded = {invoice.id for invoice in world.invoices if invoice.status in GUARDED}
    forbidden: set[Key] = {(INVOICE, invoice_id) for invoice_id in guarded}
    for line in world.lines:
        if line.invoice_id not in guarded:
            continue
        forbidden.add((LINE, line.id))
        if world.line_run[line.id] == RUN.id:
            if line.order_product_id:
                forbidden.add((PRODUCT, line.order_product_id))
            if line.usage_summary_id:
                forbidden.add((USAGE, line.usage_summary_id))
    forbidden |= {(USAGE, summary.id) for summary in world.usage_summaries if summary.invoice_status in GUARDED}
    touched = {(change.sobject, change.id) for change in all_changes(plan_of(world))}
    assert not touched & forbidden


@SETTINGS
@given(worlds())
def test_every_change_is_a_documented_transition(world: World) -> None:
    """Each change goes from a documented from-state to the documented target, nulls the cleared fields, writes
    only the rule's fields, and its before holds the record's current values of exactly those fields."""
    records = world.records()
    for phase in Phase:
        rule = RULE_BY_PHASE[phase]
        for change in plan_of(world).changes[phase]:
            assert change.sobject == rule.sobject
            documented = DOCUMENTED[change.sobject]
            fields = (documented.status_field, *documented.cleared)
            assert rule.fields == fields
            assert change.after == {documented.status_field: documented.to_state} | dict.fromkeys(documented.cleared)
            assert change.after[rule.status_field] == rule.to_state
            assert (change.sobject, change.id) in records, f"no such record: {change}"
            record = records[(change.sobject, change.id)]
            assert change.before == {field: current(change.sobject, record, field) for field in fields}
            assert change.before[rule.status_field] in rule.from_states & documented.from_states


@SETTINGS
@given(worlds())
def test_planning_again_after_applying_is_empty_with_the_same_anomalies(world: World) -> None:
    """Applying the plan and planning the run again gives no changes and the same anomalies (ids and reasons)."""
    first = plan_of(world)
    second = plan_of(apply(world, first))
    assert second.is_empty, all_changes(second)
    assert anomaly_keys(second) == anomaly_keys(first)


@SETTINGS
@given(worlds())
def test_only_planned_fields_change_and_no_record_is_planned_twice(world: World) -> None:
    """Every field applying the plan changes is in the after of that record's change, and no record is in two
    changes."""
    plan = plan_of(world)
    keys = [(change.sobject, change.id) for change in all_changes(plan)]
    assert len(keys) == len(set(keys))
    after_of = {(change.sobject, change.id): change.after for change in all_changes(plan)}
    cancelled_invoices = {change.id for change in all_changes(plan) if change.sobject == INVOICE}
    old, new = world.records(), apply(world, plan).records()
    assert old.keys() == new.keys()
    for key, record in new.items():
        sobject, _ = key
        field_of = {attribute: field for field, attribute in ATTRIBUTES[sobject].items()}
        before, after = old[key].model_dump(), record.model_dump()
        for attribute in [name for name in after if after[name] != before[name]]:
            if attribute == "invoice_status":
                # The org's join, not a write: it moves only because the plan changed the invoice it reads.
                assert isinstance(record, InvoiceLine | UsageSummary)
                assert record.invoice_id in cancelled_invoices
                continue
            assert attribute in field_of, f"{key}: {attribute} is not a field the clean-up writes"
            assert field_of[attribute] in after_of.get(key, {}), f"{key}: {attribute} changed but is not planned"


@SETTINGS
@given(worlds())
def test_records_of_another_run_or_none_are_never_changed(world: World) -> None:
    """Every change names a record linked to the run being cleaned (sources of other runs are passed in too)."""
    records = world.records()
    for change in all_changes(plan_of(world)):
        assert world.run_of(change.sobject, records[(change.sobject, change.id)]) == RUN.id


@SETTINGS
@given(worlds())
def test_nothing_of_the_run_is_left_in_a_from_state_unless_reported(world: World) -> None:
    """After applying, every record still linked to the run and still in a from-state is named in an anomaly."""
    plan = plan_of(world)
    reported = {(anomaly.sobject, anomaly.id) for anomaly in plan.anomalies}
    cleaned = apply(world, plan)
    for (sobject, record_id), record in cleaned.records().items():
        if cleaned.run_of(sobject, record) == RUN.id and record.status in DOCUMENTED[sobject].from_states:
            assert (sobject, record_id) in reported, f"{sobject} {record_id} left {record.status}, not reported"


def _line_of_run_on(world: World, states: frozenset[str], *, joined: bool) -> bool:
    return any(
        world.line_run[line.id] == RUN.id
        and (line.id not in world.missing_join) == joined
        and line.status in DOCUMENTED[LINE].from_states
        and world.invoice_status(line.invoice_id) in states
        for line in world.lines
    )


def _source_billed_on_posted(world: World) -> bool:
    billed = {
        line.order_product_id
        for line in world.lines
        if world.line_run[line.id] == RUN.id and world.invoice_status(line.invoice_id) in GUARDED
    }
    return any(
        p.id in billed and p.run_id == RUN.id and p.status in DOCUMENTED[PRODUCT].from_states
        for p in world.order_products
    )


REACHABLE: dict[str, Callable[[World], bool]] = {
    "a Draft/Error line of the run, its join missing, on a posted invoice": lambda w: _line_of_run_on(
        w, GUARDED, joined=False
    ),
    "a Draft/Error line of the run, joined, on a posted invoice": lambda w: _line_of_run_on(w, GUARDED, joined=True),
    "an Error/In Progress order product of the run billed by a line on a posted invoice": _source_billed_on_posted,
    "an Error/In Progress usage summary of the run whose own invoice is posted or posting": lambda w: any(
        u.run_id == RUN.id and u.status in DOCUMENTED[USAGE].from_states and u.invoice_status in GUARDED
        for u in w.usage_summaries
    ),
    "an Error order product of another run": lambda w: any(
        p.run_id == OTHER_RUN and p.status == "Error" for p in w.order_products
    ),
    "a Draft invoice of another run under a Draft line of this run": lambda w: any(
        w.line_run[line.id] == RUN.id
        and line.status == "Draft"
        and w.invoice_run[line.invoice_id or ""] == OTHER_RUN
        and line.invoice_status == "Draft"
        for line in w.lines
    ),
}


@pytest.mark.slow
def test_the_strategy_reaches_the_traps() -> None:
    """The generated runs include every trap the properties guard against, so no property holds vacuously."""
    search = settings(max_examples=3000, database=None, derandomize=True, phases=[HypothesisPhase.generate])
    for name, predicate in REACHABLE.items():
        try:
            find(worlds(), predicate, settings=search)
        except NoSuchExample:  # pragma: no cover - a failure message, not a branch
            raise AssertionError(f"the strategy never generated {name}") from None
