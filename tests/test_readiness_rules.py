"""Readiness rules: one table per rule (ready, and not ready with the expected reason), rules turned off by a
missing field, properties over random records, and the reader's queries against a fake client."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfcleanup import queries
from sfcleanup.errors import ApiError
from sfcleanup.readiness import (
    RULES,
    InvoiceLineState,
    InvoiceScheduler,
    OrderProductState,
    Severity,
    UsageSummaryState,
    assess,
    available_from_describe,
)
from sfcleanup.readiness import reader as readiness_reader
from sfcleanup.readiness.fields import OBJECTS, PATHS_BY_OBJECT, READINESS_FIELDS_READ, resolve
from sfcleanup.salesforce.composite import SubResult

TODAY = date(2026, 11, 26)
TARGET = date(2026, 12, 1)
ALL_FIELDS = frozenset(name for rule in RULES for name in rule.fields) | frozenset(
    f"{owner}.{field}" for owner, names in READINESS_FIELDS_READ.items() for field in names
)


def order_product(**overrides: Any) -> OrderProductState:
    """An order product every rule passes: activated, Pending Billing, fully set up, due before the target."""
    values: dict[str, Any] = {
        "id": "802000000000001AAA",
        "order_id": "801000000000001AAA",
        "order_status": "Activated",
        "invoice_batch": "Batch A",
        "activated": True,
        "processing_status": "Pending Billing",
        "hold_billing": "No",
        "charge_type": "Recurring",
        "billing_frequency": "Monthly",
        "next_billing_date": date(2026, 11, 30),
        "billable_unit_price": "10.00",
        "pending_billings": "120.00",
        "billing_rule_id": "a0B000000000001AAA",
        "generate_invoices": "Yes",
        "tax_rule_id": "a0T000000000001AAA",
        "revenue_rule_id": "a0R000000000001AAA",
    }
    return OrderProductState.model_validate({**values, **overrides})


def usage_summary(**overrides: Any) -> UsageSummaryState:
    values: dict[str, Any] = {
        "id": "a0U000000000001AAA",
        "order_product_id": "802000000000001AAA",
        "status": "Queued For Invoice",
        "processing_status": "Pending Billing",
        "next_billing_date": date(2026, 11, 30),
        "summary_end_date": date(2026, 11, 29),
        "order_product_hold_billing": "No",
        "invoice_batch": "Batch A",
    }
    return UsageSummaryState.model_validate({**values, **overrides})


def scheduler(**overrides: Any) -> InvoiceScheduler:
    values: dict[str, Any] = {
        "id": "a0S000000000001AAA",
        "name": "Nightly",
        "type": "Daily",
        "target_date": TARGET,
        "invoice_batches": "Batch A;Batch B",
    }
    return InvoiceScheduler.model_validate({**values, **overrides})


def line(**overrides: Any) -> InvoiceLineState:
    values: dict[str, Any] = {
        "id": "a0L000000000001AAA",
        "status": "Draft",
        "order_product_id": "802000000000001AAA",
        "invoice_id": "a0I000000000001AAA",
        "invoice_status": "Draft",
    }
    return InvoiceLineState.model_validate({**values, **overrides})


def codes_for(
    record: OrderProductState | UsageSummaryState,
    *,
    schedulers: tuple[InvoiceScheduler, ...] = (),
    lines: tuple[InvoiceLineState, ...] = (),
    available: frozenset[str] = ALL_FIELDS,
) -> dict[str, Severity]:
    ops = [record] if isinstance(record, OrderProductState) else []
    uss = [record] if isinstance(record, UsageSummaryState) else []
    result = assess(ops, uss, schedulers or (scheduler(),), lines, available_fields=available, today=TODAY)
    (only,) = result.records
    return {reason.code: reason.severity for reason in only.reasons}


def test_the_baselines_are_ready() -> None:
    assert codes_for(order_product()) == {}
    assert codes_for(usage_summary()) == {}


# (rule code, overrides that keep the record ready, overrides that make the rule fire)
ORDER_PRODUCT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("order_not_activated", {"order_status": "Activated"}, {"order_status": "Draft"}),
    ("not_activated", {"activated": True}, {"activated": False}),
    ("processing_status", {"processing_status": "Pending Billing"}, {"processing_status": "In Progress"}),
    ("processing_status", {}, {"processing_status": "Error"}),
    ("processing_status", {}, {"processing_status": "Will Not Invoice"}),
    ("processing_status", {}, {"processing_status": "Completed"}),
    ("processing_status", {}, {"processing_status": None}),
    ("on_hold", {"hold_billing": None}, {"hold_billing": "Yes"}),
    ("no_charge_type", {"charge_type": "One-Time"}, {"charge_type": None}),
    ("no_billing_rule", {}, {"billing_rule_id": None, "generate_invoices": None}),
    ("no_tax_rule", {}, {"tax_rule_id": None}),
    ("no_revenue_rule", {}, {"revenue_rule_id": None}),
    ("rule_generates_no_invoices", {"generate_invoices": "Yes"}, {"generate_invoices": "No"}),
    ("no_next_billing_date", {"charge_type": "Usage", "next_billing_date": None}, {"next_billing_date": None}),
    ("no_next_billing_date", {}, {"charge_type": "One Time", "next_billing_date": None}),
    ("no_billable_unit_price", {"charge_type": "Usage", "billable_unit_price": None}, {"billable_unit_price": None}),
    ("no_billing_frequency", {"charge_type": "One-Time", "billing_frequency": None}, {"billing_frequency": None}),
    ("no_billing_frequency", {}, {"charge_type": "Usage", "billing_frequency": None}),
    ("nothing_to_bill", {"billing_frequency": "Invoice Plan", "pending_billings": 0}, {"pending_billings": 0}),
    ("nothing_to_bill", {"charge_type": "Usage", "pending_billings": 0}, {"pending_billings": "0.00"}),
    ("batch_not_scheduled", {"invoice_batch": "Batch B"}, {"invoice_batch": "Batch C"}),
    ("batch_not_scheduled", {}, {"invoice_batch": None}),
    ("after_target_date", {"next_billing_date": date(2026, 11, 30)}, {"next_billing_date": date(2026, 12, 2)}),
]


@pytest.mark.parametrize(("code", "ready", "not_ready"), ORDER_PRODUCT_CASES)
def test_order_product_rules(code: str, ready: dict[str, Any], not_ready: dict[str, Any]) -> None:
    assert code not in codes_for(order_product(**ready))
    assert codes_for(order_product(**not_ready)).get(code) is Severity.BLOCKS


USAGE_SUMMARY_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("us_status", {"status": "Queued For Invoice"}, {"status": "New"}),
    ("us_status", {}, {"status": "Queued For Group Calculation"}),
    ("us_processing_status", {}, {"processing_status": "Error"}),
    ("us_order_product_on_hold", {"order_product_hold_billing": None}, {"order_product_hold_billing": "Yes"}),
    ("us_batch_not_scheduled", {"invoice_batch": "Batch B"}, {"invoice_batch": None}),
    ("us_after_target_date", {"next_billing_date": None}, {"next_billing_date": date(2026, 12, 5)}),
    # Without a next billing date the summary's end date stands in (KB 000381770: "End Date or Next Billing Date").
    ("us_after_target_date", {}, {"next_billing_date": None, "summary_end_date": date(2026, 12, 5)}),
]


@pytest.mark.parametrize(("code", "ready", "not_ready"), USAGE_SUMMARY_CASES)
def test_usage_summary_rules(code: str, ready: dict[str, Any], not_ready: dict[str, Any]) -> None:
    assert code not in codes_for(usage_summary(**ready))
    assert codes_for(usage_summary(**not_ready)).get(code) is Severity.BLOCKS


@pytest.mark.parametrize(
    ("record", "code"),
    [
        (order_product(next_billing_date=TARGET), "after_target_date"),
        (usage_summary(next_billing_date=TARGET), "us_after_target_date"),
    ],
)
def test_next_billing_date_on_the_target_date_is_borderline(
    record: OrderProductState | UsageSummaryState, code: str
) -> None:
    """'Before the target date' and 'on or before' disagree on this day: a note, not a block."""
    assert codes_for(record) == {code: Severity.BORDERLINE}
    result = assess(
        [record] if isinstance(record, OrderProductState) else [],
        [record] if isinstance(record, UsageSummaryState) else [],
        [scheduler()],
        [],
        available_fields=ALL_FIELDS,
        today=TODAY,
    )
    assert result.records[0].ready


@pytest.mark.parametrize(
    ("schedulers", "batch", "selected"),
    [
        ((scheduler(invoice_batches=None),), None, True),  # null only matches null
        ((scheduler(invoice_batches=None),), "Batch A", False),
        ((scheduler(),), None, False),
        ((scheduler(type="Once", start="2026-11-20T06:00:00.000+0000"),), "Batch A", False),  # ran already
        ((scheduler(type="Once", start="2026-11-27T06:00:00.000+0000"),), "Batch A", True),
        ((scheduler(type="Once", start="2026-11-20T06:00:00.000+0000"), scheduler(type="Weekly")), "Batch A", True),
    ],
)
def test_which_schedulers_select_an_order(
    schedulers: tuple[InvoiceScheduler, ...], batch: str | None, selected: bool
) -> None:
    codes = codes_for(order_product(invoice_batch=batch), schedulers=schedulers)
    assert ("batch_not_scheduled" not in codes) is selected


def test_the_latest_target_date_of_the_selecting_schedulers_counts() -> None:
    early = scheduler(target_date=date(2026, 11, 28))
    late = scheduler(target_date=date(2026, 12, 10))
    other = scheduler(target_date=date(2027, 1, 1), invoice_batches="Batch Z")
    record = order_product(next_billing_date=date(2026, 12, 5))
    assert "after_target_date" not in codes_for(record, schedulers=(early, late))
    assert "after_target_date" in codes_for(record, schedulers=(early, other))


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ((), set()),
        ((line(),), {"draft_line"}),
        ((line(invoice_status="Posted"),), {"posted_invoice_draft_line"}),
        ((line(invoice_status="Post In progress"),), {"posted_invoice_draft_line"}),
        ((line(status="Cancelled"), line(status="Posted", invoice_status="Posted")), set()),
        ((line(order_product_id="802000000000009AAA"),), set()),
    ],
)
def test_invoice_lines_on_an_order_product(lines: tuple[InvoiceLineState, ...], expected: set[str]) -> None:
    codes = codes_for(order_product(), lines=lines)
    assert set(codes) & {"draft_line", "posted_invoice_draft_line"} == expected


def test_invoice_lines_on_a_usage_summary() -> None:
    draft = line(order_product_id=None, usage_summary_id="a0U000000000001AAA")
    assert "us_draft_line" in codes_for(usage_summary(), lines=(draft,))
    posted = line(order_product_id=None, usage_summary_id="a0U000000000001AAA", invoice_status="Posted")
    assert "us_posted_invoice_draft_line" in codes_for(usage_summary(), lines=(posted,))


def test_reasons_carry_code_field_value_and_source() -> None:
    result = assess(
        [order_product(hold_billing="Yes", processing_status="Error")],
        [],
        [scheduler()],
        [],
        available_fields=ALL_FIELDS,
        today=TODAY,
    )
    reasons = {reason.code: reason for reason in result.records[0].reasons}
    assert reasons["on_hold"].field == "OrderItem.blng__HoldBilling__c"
    assert reasons["on_hold"].value == "Yes"
    assert "000381770" in reasons["on_hold"].source
    assert "Error Log" in reasons["processing_status"].message
    assert result.counts == {"on_hold": 1, "processing_status": 1}
    assert not result.records[0].ready and result.not_ready == result.records


def test_a_missing_field_turns_its_rule_off_with_a_note() -> None:
    """An org without the Billing Rule's Generate Invoices field: that rule is off, never an error."""
    available = ALL_FIELDS - {"blng__BillingRule__c.blng__GenerateInvoices__c"}
    result = assess(
        [order_product(generate_invoices=None)], [], [scheduler()], [], available_fields=available, today=TODAY
    )
    (off,) = result.disabled
    assert off.code == "rule_generates_no_invoices"
    assert off.missing == ("blng__BillingRule__c.blng__GenerateInvoices__c",)
    assert "not checked" in off.note
    assert result.records[0].ready


def test_an_org_without_schedulers_turns_the_scheduler_rules_off() -> None:
    available = frozenset(name for name in ALL_FIELDS if not name.startswith("blng__InvoiceScheduler__c."))
    result = assess([order_product()], [usage_summary()], [], [], available_fields=available, today=TODAY)
    off = {rule.code for rule in result.disabled}
    assert off == {"batch_not_scheduled", "after_target_date", "us_batch_not_scheduled", "us_after_target_date"}
    assert all(record.ready for record in result.records)


def test_every_rule_names_a_field_it_reads_and_has_a_check() -> None:
    from sfcleanup.readiness.checks import CHECKS

    assert {rule.code for rule in RULES} == set(CHECKS)
    for rule in RULES:
        assert rule.field in rule.fields
        assert rule.source


# --- properties ---------------------------------------------------------------------------------------------

field_subsets = st.sets(st.sampled_from(sorted(ALL_FIELDS))).map(frozenset)


@settings(max_examples=200, deadline=None)
@given(available=field_subsets)
def test_a_record_with_no_failing_condition_is_ready_whatever_the_org_has(available: frozenset[str]) -> None:
    result = assess([order_product()], [usage_summary()], [scheduler()], [], available_fields=available, today=TODAY)
    assert all(record.reasons == () for record in result.records)
    assert {rule.code for rule in result.disabled} == {rule.code for rule in RULES if not set(rule.fields) <= available}


op_values = st.fixed_dictionaries(
    {
        "order_status": st.sampled_from(["Activated", "Draft", None]),
        "invoice_batch": st.sampled_from(["Batch A", "Batch C", None]),
        "activated": st.sampled_from([True, False, None]),
        "processing_status": st.sampled_from(["Pending Billing", "Error", "In Progress", "Completed", None]),
        "hold_billing": st.sampled_from(["Yes", "No", None]),
        "charge_type": st.sampled_from(["Recurring", "One-Time", "Usage", None]),
        "billing_frequency": st.sampled_from(["Monthly", "Invoice Plan", None]),
        "next_billing_date": st.sampled_from([None, date(2026, 11, 1), TARGET, date(2027, 1, 1)]),
        "billable_unit_price": st.sampled_from([None, 0, 5]),
        "pending_billings": st.sampled_from([None, 0, 5]),
        "generate_invoices": st.sampled_from(["Yes", "No", None]),
        "tax_rule_id": st.sampled_from(["a0T000000000001AAA", None]),
    }
)


@settings(max_examples=200, deadline=None)
@given(values=op_values, available=field_subsets, with_line=st.booleans())
def test_each_reason_names_a_field_the_engine_was_given(
    values: dict[str, Any], available: frozenset[str], with_line: bool
) -> None:
    lines = (line(invoice_status="Posted"),) if with_line else ()
    result = assess([order_product(**values)], [], [scheduler()], lines, available_fields=available, today=TODAY)
    off = {rule.code for rule in result.disabled}
    for reason in result.records[0].reasons:
        assert reason.field in available
        assert reason.code not in off
    assert result.counts == {reason.code: 1 for reason in result.records[0].reasons}


# --- models and reader --------------------------------------------------------------------------------------


def test_models_read_query_json_with_null_parents() -> None:
    record = {
        "attributes": {"type": "OrderItem"},
        "Id": "802000000000001AAA",
        "Order": None,
        "blng__BillingRule__r": {"attributes": {}, "blng__GenerateInvoices__c": "No"},
        "blng__NextBillingDate__c": "2026-12-01",
        "blng__PendingBillings__c": 0.0,
    }
    parsed = OrderProductState.model_validate(record)
    assert parsed.order_status is None and parsed.generate_invoices == "No"
    assert parsed.next_billing_date == date(2026, 12, 1)
    found = InvoiceScheduler.model_validate(
        {
            "Id": "a0S000000000001AAA",
            "blng__InvoiceBatches__c": "A; B",
            "blng__StartDateTime__c": "2026-11-27T06:00:00.000+0000",
        }
    )
    assert found.invoice_batches == frozenset({"A", "B"})
    assert found.start == datetime(2026, 11, 27, 6, tzinfo=UTC)


class FakeClient:
    """Answers readiness describes and queries from canned records; keeps the SOQL it was sent and the queries in
    each Composite call."""

    def __init__(self, describes: dict[str, list[str]], records: dict[str, list[dict[str, Any]]]) -> None:
        self.describes = describes
        self.records = records
        self.soql: list[str] = []
        self.queries_per_call: list[int] = []

    api_version = "62.0"

    def get_many(self, what: str, paths: list[str]) -> list[dict[str, Any]]:
        if not all(path.startswith("query/?") for path in paths):
            return [
                {"fields": [{"name": name} for name in self.describes.get(path.split("/")[1], [])]} for path in paths
            ]
        self.queries_per_call.append(len(paths))
        answers = []
        for path in paths:
            soql = parse_qs(urlsplit(path).query)["q"][0]
            self.soql.append(soql)
            records = self.records.get(soql.split(" FROM ")[1].split()[0], [])
            answers.append({"totalSize": len(records), "done": True, "records": records})
        return answers

    def composite_rounds(self, what: str, subrequests: list[dict[str, Any]]) -> list[SubResult]:
        """Describes as the Composite call answers them, each matched to its own subrequest."""
        out = []
        for request in subrequests:
            sobject = request["url"].split("/sobjects/")[1].split("/")[0]
            body = {"fields": [{"name": name} for name in self.describes.get(sobject, [])]}
            out.append(SubResult(request["referenceId"], 200, body, None))
        return out


def _describes(without: set[str]) -> dict[str, list[str]]:
    names: dict[str, set[str]] = {sobject: {"Id"} for sobject in OBJECTS}
    for qualified in ALL_FIELDS - without:
        owner, field = qualified.split(".", 1)
        names[owner].add(field)
    return {owner: sorted(fields) for owner, fields in names.items()}


def test_reader_trims_the_select_list_to_the_orgs_fields_and_chunks_ids() -> None:
    client = FakeClient(
        _describes(without={"OrderItem.SBQQ__Activated__c", "blng__BillingRule__c.blng__GenerateInvoices__c"}),
        {"OrderItem": [{"Id": "802000000000001AAA", "SBQQ__ChargeType__c": "Usage"}]},
    )
    ids = [f"802{n:012d}AAA" for n in range(450)]
    found = readiness_reader.read(client, order_product_ids=ids)  # type: ignore[arg-type]
    assert "OrderItem.SBQQ__Activated__c" not in found.available_fields
    op_queries = [q for q in client.soql if " FROM OrderItem " in q]
    assert len(op_queries) == 3  # 200 + 200 + 50 ids
    assert all("SBQQ__Activated__c" not in q and "GenerateInvoices" not in q for q in op_queries)
    assert "blng__BillingRule__c" in op_queries[0] and f"'{ids[0]}'" in op_queries[0]
    assert found.order_products[0].charge_type == "Usage"
    assert any("FROM blng__InvoiceScheduler__c" in q for q in client.soql)
    assert any("FROM blng__InvoiceLine__c" in q and "'802000000000001AAA'" in q for q in client.soql)
    # The three order product queries and the schedulers' share one Composite call, the draft lines another.
    assert client.queries_per_call == [4, 1]


def test_the_reader_sends_at_most_five_queries_a_composite_call() -> None:
    """1,000 order products and 1,000 usage summaries by id: 10 queries, with the schedulers' 11, in 3 calls."""
    client = FakeClient(_describes(without=set()), {})
    products = [f"802{n:012d}AAA" for n in range(1000)]
    summaries = [f"a0V{n:012d}AAA" for n in range(1000)]
    available = ALL_FIELDS | {"blng__InvoiceScheduler__c.Id"}
    readiness_reader.read(
        client,  # type: ignore[arg-type]
        order_product_ids=products,
        usage_summary_ids=summaries,
        available=available,
    )
    assert client.queries_per_call == [5, 5, 1]
    named = [id_ for q in client.soql for id_ in [*products, *summaries] if f"'{id_}'" in q]
    assert sorted(named) == sorted([*products, *summaries])  # each id in exactly one query


def test_the_longest_readiness_query_stays_under_the_uri_limit() -> None:
    """Every field selected and the most ids a query takes: the subrequest's URL stays under 16,384 bytes."""
    ids = [f"a0V{n:012d}AAA" for n in range(readiness_reader.IDS_PER_QUERY)]
    soqls = [
        queries.render(f"{stem}_by_ids", fields=readiness_reader.select_list(sobject, ALL_FIELDS), ids=ids)
        for stem, sobject in (
            ("readiness_order_products", "OrderItem"),
            ("readiness_usage_summaries", "blng__UsageSummary__c"),
        )
    ]
    soqls.append(queries.render("readiness_draft_lines", ids=ids[: readiness_reader.LINE_IDS_PER_QUERY]))
    for soql in soqls:
        url = f"/services/data/v62.0/{readiness_reader.query_path(soql)}"
        assert len(url.encode()) < readiness_reader.MAX_URI_BYTES


def test_reader_reads_by_run_and_quotes_the_run_id() -> None:
    client = FakeClient(_describes(without=set()), {})
    readiness_reader.read(client, run_id="a0X000000000001AAA", available=ALL_FIELDS)  # type: ignore[arg-type]
    by_run = [q for q in client.soql if "blng__InvoiceRun__c = 'a0X000000000001AAA'" in q]
    assert len(by_run) == 2  # order products and usage summaries


def test_every_selectable_path_resolves_to_fields_the_permission_set_knows() -> None:
    for sobject, paths in PATHS_BY_OBJECT.items():
        for path in paths:
            for qualified in resolve(sobject, path):
                owner, field = qualified.split(".", 1)
                assert field in READINESS_FIELDS_READ[owner]


def test_the_readiness_queries_render_with_quoted_ids() -> None:
    soql = queries.render("readiness_draft_lines", ids=["a0U000000000001AAA", "x' OR Id != '"])
    assert "\\'" in soql  # an id cannot end the string it sits in
    assert available_from_describe({"OrderItem": {"fields": [{"name": "Id"}]}}) == frozenset({"OrderItem.Id"})


def test_a_usage_summary_dated_only_by_its_summary_end_date_is_named_so() -> None:
    """When a usage summary has no Next Billing Date, the target-date reason names the Summary End Date it used."""
    record = usage_summary(next_billing_date=None, summary_end_date=date(2026, 12, 5))
    result = assess([], [record], (scheduler(),), [], available_fields=ALL_FIELDS, today=TODAY)
    (reason,) = [r for r in result.records[0].reasons if r.code == "us_after_target_date"]
    assert reason.message.startswith("Summary End Date (no Next Billing Date) 2026-12-05")


class _AnswersWithoutRecords(FakeClient):
    """Answers every query with a body that has no record list."""

    def get_many(self, what: str, paths: list[str]) -> list[dict[str, Any]]:
        answers = super().get_many(what, paths)
        return [{"done": True} for _ in answers] if paths[0].startswith("query/") else answers


def test_a_query_answer_without_its_records_raises() -> None:
    client = _AnswersWithoutRecords(_describes(without=set()), {})
    with pytest.raises(ApiError, match="readiness records: the org answered a query without its records"):
        readiness_reader.read(client, order_product_ids=["802000000000001AAA"])  # type: ignore[arg-type]
