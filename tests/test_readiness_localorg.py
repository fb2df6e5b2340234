"""Readiness against the demo org: after the clean-up of its failed run, the reader and the rules find exactly the
records the seed made unbillable (ScenarioInfo.not_ready), and every other record the clean-up reset is ready."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from sfcleanup.config import Settings, load_settings
from sfcleanup.errors import ApiError
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.readiness import RULES, Readiness, Severity, active_rules, fields, reader
from sfcleanup.salesforce.classify import Classified, Verdict
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.local import local_connector
from sfcleanup.salesforce.retry import no_wait_policy
from sfcleanup.worker import Worker
from tests.oracle import by_id
from tests.support import brief_sleep, copy_org, make_client, make_org

PROCESSING = "blng__InvoiceRunProcessingStatus__c"
SOURCES = ("OrderItem", "blng__UsageSummary__c")


def clean_and_reset_ids(org: LocalOrg, settings: Settings, run_id: str) -> dict[str, list[str]]:
    """Clean the run with the worker in process; the ids of the order products and usage summaries it reset."""
    before = by_id(org.store.snapshot())
    worker = Worker(make_client(org), settings, sleep=brief_sleep)
    worker.apply(worker.prepare([run_id]))
    after = by_id(org.store.snapshot())
    return {
        sobject: [
            record_id
            for record_id, row in after[sobject].items()
            if row[PROCESSING] == "Pending Billing" and before[sobject][record_id][PROCESSING] != "Pending Billing"
        ]
        for sobject in SOURCES
    }


def assess_reset(client: Any, reset: dict[str, list[str]], **options: Any) -> Readiness:
    read = reader.read(
        client, order_product_ids=reset["OrderItem"], usage_summary_ids=reset["blng__UsageSummary__c"], **options
    )
    return read.assess(datetime.now(UTC).date())


def by_reason(readiness: Readiness) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for record in readiness.records:
        for reason in record.reasons:
            found.setdefault(reason.code, set()).add(record.id)
    return found


@pytest.fixture(scope="module")
def cleaned_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]]:
    """The clean-up `cleaned` gives each test a copy of, made once."""
    org, info = make_org()
    settings = load_settings(None, journal_dir=tmp_path_factory.mktemp("cleaned") / "journal")
    return org, info, clean_and_reset_ids(org, settings, info.runs["failed_run"])


@pytest.fixture
def cleaned(
    cleaned_once: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]]:
    """The demo org after the clean-up of its failed run, and the ids of the sources it reset."""
    org, info, reset = cleaned_once
    return copy_org(org), copy.deepcopy(info), copy.deepcopy(reset)


def test_describe_has_every_field_the_rules_read(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """Describe lists every field the readiness queries select, so no rule is turned off against the local org."""
    org, _ = demo
    client = make_client(org)
    available = reader.available_fields(client)
    wanted = {f"{sobject}.{name}" for sobject, names in fields.READINESS_FIELDS_READ.items() for name in names}
    assert wanted - available == set()
    assert {name for rule in RULES for name in rule.fields} - available == set()
    assert active_rules(available)[1] == ()
    scheduler = {
        f["name"]: f for f in client.get_many("d", ["sobjects/blng__InvoiceScheduler__c/describe/"])[0]["fields"]
    }
    batches = scheduler["blng__InvoiceBatches__c"]
    assert batches["type"] == "multipicklist" and batches["restrictedPicklist"] is True
    assert [v["value"] for v in batches["picklistValues"]] == ["Batch A", "Batch B", "Batch C"]
    order_item = {f["name"]: f for f in client.get_many("d", ["sobjects/OrderItem/describe/"])[0]["fields"]}
    assert order_item["blng__BillingRule__c"]["referenceTo"] == ["blng__BillingRule__c"]
    assert order_item["blng__BillingRule__c"]["relationshipName"] == "blng__BillingRule__r"
    assert (
        order_item["SBQQ__Activated__c"]["type"] == "boolean" and order_item["SBQQ__Activated__c"]["nillable"] is False
    )
    assert [v["value"] for v in order_item["SBQQ__ChargeType__c"]["picklistValues"]] == [
        "One-Time",
        "Recurring",
        "Usage",
    ]


def test_exactly_the_seeded_records_fail_each_reason(
    cleaned: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> None:
    """Per reason code, the records found are exactly the ones the seed made fail it; nothing else fails."""
    org, info, reset = cleaned
    seeded = {code: set(ids) for code, ids in info.not_ready["failed_run"].items()}
    assert {"on_hold", "rule_generates_no_invoices", "after_target_date", "batch_not_scheduled"} <= set(seeded)
    assert {"no_next_billing_date", "us_status"} <= set(seeded)
    all_reset = set(reset["OrderItem"]) | set(reset["blng__UsageSummary__c"])
    assert set().union(*seeded.values()) <= all_reset, "the seed's failing records must be ones the clean-up resets"

    readiness = assess_reset(make_client(org), reset)

    assert len(readiness.records) == len(all_reset) == 600
    assert readiness.disabled == ()
    assert by_reason(readiness) == seeded


def test_most_reset_records_are_ready_and_borderline_stays_ready(
    cleaned: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> None:
    org, info, reset = cleaned
    readiness = assess_reset(make_client(org), reset)
    blocked = {record.id for record in readiness.not_ready}
    seeded = info.not_ready["failed_run"]
    assert len(readiness.ready) >= 0.9 * len(readiness.records)
    # One order product is due exactly on the target date: reported, borderline, and ready.
    borderline = {
        record.id for record in readiness.records for reason in record.reasons if reason.severity is Severity.BORDERLINE
    }
    assert len(borderline) == 1 and borderline <= set(seeded["after_target_date"])
    assert blocked == set().union(*(set(ids) for ids in seeded.values())) - borderline


def test_before_the_clean_up_only_the_clean_up_s_own_reasons_remain(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """Read by run before any clean-up, the failed run's sources are held by their processing status and draft
    lines as well; the seeded reasons are there too, and no others."""
    org, info = demo
    read = reader.read(make_client(org), run_id=info.runs["failed_run"])
    readiness = read.assess(datetime.now(UTC).date())
    own = {"processing_status", "us_processing_status", "draft_line", "us_draft_line", "posted_invoice_draft_line"}
    assert set(readiness.counts) - own == set(info.not_ready["failed_run"])


class _DescribeWithout:
    """The worker's client, except that describe leaves out some fields: an org without them."""

    def __init__(self, client: SalesforceClient, without: set[str]) -> None:
        self.client = client
        self.without = without

    def get_many(self, what: str, paths: list[str]) -> list[Any]:
        results = self.client.get_many(what, paths)
        if any(path.startswith("query/") for path in paths):
            return results
        for path, described in zip(paths, results, strict=True):
            sobject = path.split("/")[1]
            described["fields"] = [f for f in described["fields"] if f"{sobject}.{f['name']}" not in self.without]
        return results

    def composite_rounds(self, what: str, subrequests: list[dict[str, Any]], **kwargs: Any) -> list[SubResult]:
        results = self.client.composite_rounds(what, subrequests, **kwargs)
        for request, result in zip(subrequests, results, strict=True):
            sobject = request["url"].split("/sobjects/")[1].split("/")[0]
            if result.ok and isinstance(result.body, dict) and "fields" in result.body:
                fields_ = result.body["fields"]
                result.body["fields"] = [f for f in fields_ if f"{sobject}.{f['name']}" not in self.without]
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_field_the_org_lacks_turns_its_rule_off(
    cleaned: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> None:
    """Without Hold Billing (describe says so), the queries leave it out, on_hold and the usage summary's hold
    rule are reported off, and every other seeded reason is still found."""
    org, info, reset = cleaned
    client = _DescribeWithout(make_client(org), {"OrderItem.blng__HoldBilling__c"})
    readiness = assess_reset(client, reset)
    assert {rule.code for rule in readiness.disabled} == {"on_hold", "us_order_product_on_hold"}
    assert all("OrderItem.blng__HoldBilling__c" in rule.missing for rule in readiness.disabled)
    seeded = {code: set(ids) for code, ids in info.not_ready["failed_run"].items()}
    expected = {code: ids for code, ids in seeded.items() if code not in {"on_hold", "us_order_product_on_hold"}}
    assert by_reason(readiness) == expected


def test_scale_sources_are_billable_but_for_the_clean_up() -> None:
    """The scale scenario's billing setup is billable: read by run, its sources only wait for the clean-up."""
    org, info = make_org("scale", records=1000)
    read = reader.read(make_client(org), run_id=info.runs["failed_run"])
    readiness = read.assess(datetime.now(UTC).date())
    assert len(readiness.records) == 1000
    assert set(readiness.counts) <= {"processing_status", "us_processing_status", "draft_line", "us_draft_line"}


class _NoSchedulerObject(SalesforceClient):
    """The org's client, but the invoice scheduler object's describe answers 404, as in an org without it."""

    def composite_rounds(self, what: str, subrequests: list[dict[str, Any]], **kwargs: Any) -> list[SubResult]:
        results = super().composite_rounds(what, subrequests, **kwargs)
        gone = Classified(Verdict.FATAL, 404, "NOT_FOUND", "The requested resource does not exist")
        return [
            SubResult(r.reference, 404, None, gone) if "blng__InvoiceScheduler__c/describe" in s["url"] else r
            for r, s in zip(results, subrequests, strict=True)
        ]


def test_an_object_the_org_lacks_turns_its_rules_off(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """Without the invoice scheduler object the scheduler rules are reported off and the others still run."""
    org, _ = demo
    client = _NoSchedulerObject(local_connector(org), api_version="62.0", retry=no_wait_policy(6), timeout_s=30)
    available = reader.available_fields(client)
    assert not any(name.startswith("blng__InvoiceScheduler__c.") for name in available)
    _, disabled = active_rules(available)
    off = {rule.code for rule in disabled}
    assert {"batch_not_scheduled", "after_target_date"} <= off
    assert "on_hold" not in off


def test_the_readiness_read_stays_within_its_estimate(
    cleaned: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> None:
    """Reading readiness for the reset records (and those still linked to the run) costs no more API calls than
    the estimate the worker counts before writing."""
    org, info, reset = cleaned
    client = make_client(org)
    reader.read(
        client,
        run_id=info.runs["failed_run"],
        order_product_ids=reset["OrderItem"],
        usage_summary_ids=reset["blng__UsageSummary__c"],
    )
    estimate = reader.estimated_calls(len(reset["OrderItem"]), len(reset["blng__UsageSummary__c"]))
    assert 0 < client.usage.calls <= estimate


@pytest.mark.slow
def test_reading_thousands_of_reset_sources_takes_a_fifth_of_the_calls(settings: Settings) -> None:
    """Readiness of a scale run of 2,000 sources after its clean-up: every source and every draft line naming
    one is read, in no more calls than estimated and at most a quarter of the one call a query it took before
    (queries five to a Composite call)."""
    org, info = make_org("scale", records=2000)
    run_id = info.runs["failed_run"]
    reset = clean_and_reset_ids(org, settings, run_id)
    products, summaries = reset["OrderItem"], reset["blng__UsageSummary__c"]
    assert len(products) + len(summaries) >= 1000
    before = org.api_used
    read = reader.read(make_client(org), run_id=run_id, order_product_ids=products, usage_summary_ids=summaries)
    calls = org.api_used - before

    rows = by_id(org.store.snapshot())
    sources = {record.id for record in (*read.order_products, *read.usage_summaries)}
    assert sources == set(rows["OrderItem"]) | set(rows["blng__UsageSummary__c"])
    draft = {
        line_id
        for line_id, line in rows["blng__InvoiceLine__c"].items()
        if line["blng__InvoiceLineStatus__c"] == "Draft"
        and {line["blng__OrderProduct__c"], line["blng__UsageSummary__c"]} & sources
    }
    assert {line.id for line in read.lines} == draft
    one_call_a_query = (
        1  # the describes
        + math.ceil(len(products) / reader.IDS_PER_QUERY)
        + math.ceil(len(summaries) / reader.IDS_PER_QUERY)
        + 3  # the records still linked to the run, and the schedulers
        + math.ceil(len(sources) / reader.LINE_IDS_PER_QUERY)
    )
    assert calls <= reader.estimated_calls(len(products), len(summaries))
    assert calls * 4 <= one_call_a_query


def test_a_query_the_org_refuses_raises_instead_of_reading_fewer_records(
    cleaned: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> None:
    """An id the org refuses in the last chunk of order products fails its subrequest: the read raises the org's
    error; it never goes on with the records of the other queries."""
    org, _, reset = cleaned
    ids = [*reset["OrderItem"], "not-an-id"]
    with pytest.raises(ApiError, match="readiness records: INVALID_QUERY_FILTER_OPERATOR"):
        reader.read(make_client(org), order_product_ids=ids, usage_summary_ids=reset["blng__UsageSummary__c"])


def test_readiness_is_assessed_in_parts_and_agrees_with_assessing_everything_at_once(
    cleaned: tuple[LocalOrg, ScenarioInfo, dict[str, list[str]]],
) -> None:
    """600 reset sources and those still linked to the run: read and assessed a part of at most 500 sources at a
    time (what is held at once does not grow with the run), in the same calls, with the same records, order,
    reasons and counts as reading everything first."""
    org, info, reset = cleaned
    options: dict[str, Any] = {
        "run_id": info.runs["failed_run"],
        "order_product_ids": reset["OrderItem"],
        "usage_summary_ids": reset["blng__UsageSummary__c"],
    }
    today = datetime.now(UTC).date()
    sizes = [len(part.order_products) + len(part.usage_summaries) for part in reader.parts(make_client(org), **options)]
    assert len(sizes) >= 2 and max(sizes) <= reader.SOURCES_PER_PART
    whole_client, parts_client = make_client(org), make_client(org)
    whole = reader.read(whole_client, **options).assess(today)
    in_parts = reader.check(parts_client, today=today, **options)
    assert in_parts == whole
    assert sum(sizes) == len(whole.records) >= 600
    assert parts_client.usage.calls == whole_client.usage.calls
