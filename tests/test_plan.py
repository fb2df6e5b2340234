"""The planner: every from-state, every to-state, every guard, as tables."""

from __future__ import annotations

import pytest

from sfcleanup import billing
from sfcleanup.billing import InvoiceStatus, Phase, ProcessingStatus
from sfcleanup.models import Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary
from sfcleanup.plan import AnomalyReason, RunPlan, plan_run

RUN = InvoiceRun(id="a1A5g0000000001AAA", status="Failed")
OTHER_RUN = "a1A5g0000000002AAA"
START = "2026-11-20T01:00:00.000+0000"


def _plan(
    invoices: list[Invoice] | None = None,
    lines: list[InvoiceLine] | None = None,
    products: list[OrderProduct] | None = None,
    usage: list[UsageSummary] | None = None,
) -> RunPlan:
    return plan_run(RUN, invoices or [], lines or [], products or [], usage or [])


def _invoice(status: str, id_: str = "inv1", account: str = "acc1") -> Invoice:
    return Invoice(id=id_, status=status, account_id=account)


def _line(status: str, invoice_status: str = "Draft", **extra: str) -> InvoiceLine:
    return InvoiceLine(
        id=extra.pop("id", "line1"),
        status=status,
        invoice_id=extra.pop("invoice_id", "inv1"),
        invoice_status=invoice_status,
        account_id="acc1",
        **extra,
    )


def _product(status: str, id_: str = "op1", run: str = RUN.id) -> OrderProduct:
    return OrderProduct(id=id_, status=status, run_id=run, run_start=START, order_id="ord1", account_id="acc1")


def _usage(status: str, id_: str = "us1", invoice_status: str | None = None) -> UsageSummary:
    return UsageSummary(
        id=id_, status=status, run_id=RUN.id, run_start=START, account_id="acc1", invoice_status=invoice_status
    )


@pytest.mark.parametrize(
    ("status", "cancelled"),
    [
        ("Error", True),
        ("Initiated", True),
        ("Draft", True),
        ("Posted", False),
        ("Post In progress", False),
        ("Cancelled", False),
        ("Rebilled", False),
        (None, False),
    ],
)
def test_invoice_transitions(status: str | None, cancelled: bool) -> None:
    """Only Error, Initiated and Draft invoices become Cancelled (two Ls); every other state is left alone."""
    changes = _plan(invoices=[_invoice(status)] if status else [Invoice(id="inv1")]).changes[Phase.INVOICES]
    assert [(c.before, c.after) for c in changes] == (
        [({"blng__InvoiceStatus__c": status}, {"blng__InvoiceStatus__c": "Cancelled"})] if cancelled else []
    )


@pytest.mark.parametrize(
    ("status", "cancelled"),
    [("Error", True), ("Draft", True), ("Initiated", False), ("Posted", False), ("Cancelled", False)],
)
def test_invoice_line_transitions(status: str, cancelled: bool) -> None:
    """Only Error and Draft lines of an unposted invoice become Cancelled."""
    changes = _plan(lines=[_line(status)]).changes[Phase.INVOICE_LINES]
    expected = [({"blng__InvoiceLineStatus__c": status}, {"blng__InvoiceLineStatus__c": "Cancelled"})]
    assert [(c.before, c.after) for c in changes] == (expected if cancelled else [])


@pytest.mark.parametrize(
    ("status", "reset"),
    [
        ("Error", True),
        ("In Progress", True),
        ("Completed", False),
        ("Pending Billing", False),
        ("Will Not Invoice", False),
    ],
)
@pytest.mark.parametrize("kind", ["order_product", "usage_summary"])
def test_source_transitions(kind: str, status: str, reset: bool) -> None:
    """Error and In Progress sources go to Pending Billing with the run lookup and start date nulled."""
    if kind == "order_product":
        plan, phase = _plan(products=[_product(status)]), Phase.ORDER_PRODUCTS
    else:
        plan, phase = _plan(usage=[_usage(status)]), Phase.USAGE_SUMMARIES
    changes = plan.changes[phase]
    before = {billing.PROCESSING_STATUS: status, billing.RUN_LOOKUP: RUN.id, billing.RUN_START_DATE: START}
    after = {billing.PROCESSING_STATUS: "Pending Billing", billing.RUN_LOOKUP: None, billing.RUN_START_DATE: None}
    assert [(c.before, c.after) for c in changes] == ([(before, after)] if reset else [])


def test_sources_of_another_run_are_not_touched() -> None:
    """A source linked to a different run is outside this plan even in an eligible state."""
    assert _plan(products=[_product("Error", run=OTHER_RUN)]).is_empty


@pytest.mark.parametrize("posted_state", ["Posted", "Post In progress"])
def test_lines_of_posted_invoices_are_anomalies(posted_state: str) -> None:
    """A Draft line on a posted (or posting) invoice is reported, not cancelled."""
    plan = _plan(invoices=[_invoice(posted_state)], lines=[_line("Draft", invoice_status=posted_state)])
    assert plan.is_empty
    reasons = {(a.sobject, a.id, a.reason) for a in plan.anomalies}
    assert (billing.INVOICE_LINE, "line1", AnomalyReason.LINE_ON_POSTED_INVOICE) in reasons


def test_invoice_status_from_invoice_list_guards_lines_without_join() -> None:
    """When the line's join lacks the invoice status, the invoice read for the run still guards it."""
    line = InvoiceLine(id="line1", status="Draft", invoice_id="inv1", account_id="acc1")
    plan = _plan(invoices=[_invoice("Posted")], lines=[line])
    assert plan.is_empty
    assert [a.reason for a in plan.anomalies] == [AnomalyReason.LINE_ON_POSTED_INVOICE]


@pytest.mark.parametrize("line_status", ["Draft", "Posted", "Error"])
def test_sources_billed_on_posted_invoice_are_never_reset(line_status: str) -> None:
    """An In Progress order product or usage summary whose line sits on a posted invoice would bill twice."""
    line = _line(line_status, invoice_status="Posted", order_product_id="op1", usage_summary_id="us1")
    plan = _plan(
        invoices=[_invoice("Posted")], lines=[line], products=[_product("In Progress")], usage=[_usage("Error")]
    )
    assert plan.is_empty
    billed = {(a.sobject, a.id) for a in plan.anomalies if a.reason is AnomalyReason.SOURCE_BILLED_ON_POSTED_INVOICE}
    assert billed == {(billing.ORDER_PRODUCT, "op1"), (billing.USAGE_SUMMARY, "us1")}


def test_usage_summary_on_posted_invoice_is_guarded_by_its_own_link() -> None:
    """A usage summary whose own invoice link is posted is not reset even without a line of this run."""
    plan = _plan(usage=[_usage("In Progress", invoice_status="Posted")])
    assert plan.is_empty
    assert [a.reason for a in plan.anomalies] == [AnomalyReason.SOURCE_BILLED_ON_POSTED_INVOICE]


def test_post_in_progress_invoice_is_reported() -> None:
    """An invoice that is Post In progress is named as an anomaly and left alone."""
    plan = _plan(invoices=[_invoice("Post In progress")])
    assert plan.is_empty
    assert [a.reason for a in plan.anomalies] == [AnomalyReason.INVOICE_POST_IN_PROGRESS]


def test_groups_follow_the_account_lock_point() -> None:
    """Every change carries the account it shares a lock with, so batches keep siblings together."""
    plan = _plan(
        invoices=[_invoice("Draft", account="accA")],
        lines=[_line("Draft")],
        products=[_product("Error")],
        usage=[_usage("Error")],
    )
    assert {c.group for phase in Phase for c in plan.changes[phase]} == {"accA", "acc1"}


def test_mixed_run_counts_by_transition() -> None:
    """The preview counts each from -> to transition per object."""
    plan = _plan(
        invoices=[_invoice("Draft", "i1"), _invoice("Error", "i2"), _invoice("Posted", "i3")],
        products=[_product("Error", "p1"), _product("In Progress", "p2"), _product("Completed", "p3")],
    )
    transitions = plan.transitions()
    assert transitions[billing.INVOICE] == {"Draft -> Cancelled": 1, "Error -> Cancelled": 1}
    assert transitions[billing.ORDER_PRODUCT] == {"Error -> Pending Billing": 1, "In Progress -> Pending Billing": 1}
    assert plan.total == 4


def test_targets_are_the_documented_api_values() -> None:
    """The to-states are the API values Cancelled (two Ls) and Pending Billing."""
    assert InvoiceStatus.CANCELLED.value == "Cancelled"
    assert ProcessingStatus.PENDING_BILLING.value == "Pending Billing"
    assert [r.phase for r in billing.RULES] == [
        Phase.INVOICE_LINES,
        Phase.INVOICES,
        Phase.USAGE_SUMMARIES,
        Phase.ORDER_PRODUCTS,
    ]


def test_usage_summary_guard_falls_back_to_the_invoice_list() -> None:
    """When a usage summary's invoice join comes back empty, the run's invoice list still guards it."""
    usage = UsageSummary(id="us1", status="Error", run_id=RUN.id, run_start=START, account_id="acc1", invoice_id="inv1")
    plan = _plan(invoices=[_invoice("Posted")], usage=[usage])
    assert plan.is_empty
    assert [a.reason for a in plan.anomalies] == [AnomalyReason.SOURCE_BILLED_ON_POSTED_INVOICE]
