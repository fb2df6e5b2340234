"""Keyset first pages read together: the small objects' first pages in one Composite call, the link-model
lines' first page in the call that counts the run's records. Each is exactly the page `keyset_pages` reads
first, the rest of each query is read page by page as before, and a failure is the one a lone query raises."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
import requests
import responses
from pydantic import BaseModel, SecretStr

from sfcleanup import preflight
from sfcleanup.billing import Phase
from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.errors import ApiError, SfCleanupError, TransientExhausted
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.schema import sobject
from sfcleanup.models import Invoice, InvoiceLine, OrderProduct, UsageSummary
from sfcleanup.plan import RunPlan, plan_run
from sfcleanup.salesforce.bulkquery import whole_query
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.read import (
    BULK_READABLE,
    LINK_LINES,
    counts_and_first_pages,
    first_pages,
    keyset_pages,
    plan_streaming,
    remaining_by_status,
)
from sfcleanup.salesforce.retry import no_wait_policy
from tests.support import make_client, make_org
from tests.test_composite_boundary import API, INSTANCE, ShuffledComposite

KEYSET_QUERIES = [*BULK_READABLE, LINK_LINES]
M = TypeVar("M", bound=BaseModel)


def _client() -> SalesforceClient:
    """A client of a fake org (`responses`) that never waits between retries."""
    return SalesforceClient(
        Connector(OrgSettings(auth=AuthMode.TOKEN), requests.Session(), lambda: OrgSession(INSTANCE, SecretStr("t"))),
        api_version="62.0",
        retry=no_wait_policy(),
        timeout_s=5,
    )


def _planned(plan: RunPlan) -> list[tuple[str, str, str, str]]:
    """What a plan changes and where it locks, whatever order its records were read in."""
    return sorted(
        (
            phase.value,
            change.id,
            change.group,
            repr(sorted((k, None if v is None else str(v)) for k, v in change.after.items())),
        )
        for phase in Phase
        for change in plan.changes[phase]
    )


def _ids(pages: Any) -> list[str]:
    return [str(record["Id"]) for page in pages for record in page]


def _with_link_lines(org: LocalOrg, run_id: str, lines: int) -> None:
    """Lines of other runs naming the run's usage summaries: what the link-model query reads."""
    snapshot = org.store.snapshot()
    summaries = [r["Id"] for r in snapshot["blng__UsageSummary__c"] if r["blng__InvoiceRun__c"] == run_id]
    others = [r["Id"] for r in snapshot["blng__InvoiceLine__c"] if r["blng__InvoiceRun__c"] not in (run_id, None)]
    spec = sobject("blng__InvoiceLine__c")
    assert spec is not None and len(others) >= lines
    for n, line in enumerate(others[:lines]):
        org.store.update(spec, line, {"blng__UsageSummary__c": summaries[n % len(summaries)]})


def test_bundled_first_pages_cost_one_call_and_read_what_keyset_pages_read() -> None:
    """Five keyset queries' first pages in one call; each query then read on from its bundled first page gives,
    record for record, what reading it page by page from the start gives, and what the whole query holds."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    _with_link_lines(org, run_id, 12)
    client = make_client(org)

    calls = org.stats.api_calls
    firsts = first_pages(client, KEYSET_QUERIES, run_id, page_size=200)
    assert org.stats.api_calls - calls == 1

    for query in KEYSET_QUERIES:
        bundled = _ids(keyset_pages(client, query, run_id, page_size=200, first=firsts[query]))
        by_pages = _ids(keyset_pages(client, query, run_id, page_size=200))
        whole = sorted(str(r["Id"]) for r in client.query_all(whole_query(query, run_id)))
        assert bundled == by_pages == whole, query
        assert whole, query


def test_the_link_lines_first_page_rides_in_the_counting_call() -> None:
    """Four counts and the link-model lines' first page: one call, the counts those of remaining_by_status."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    _with_link_lines(org, run_id, 5)
    client = make_client(org)

    calls = org.stats.api_calls
    counts, firsts = counts_and_first_pages(client, run_id, [LINK_LINES])
    assert org.stats.api_calls - calls == 1
    assert counts == remaining_by_status(client, run_id)
    records, done = firsts[LINK_LINES]
    assert done and sorted(str(r["Id"]) for r in records) == _ids(keyset_pages(client, LINK_LINES, run_id))
    assert len(records) == 5
    with pytest.raises(ValueError, match="5 queries"):
        counts_and_first_pages(client, run_id, KEYSET_QUERIES[:2])


def test_a_small_run_is_read_in_two_calls_and_planned_as_before() -> None:
    """Every object under the query-job threshold: the counts (with the link lines' first page) and the four
    first pages cost two calls; further pages are plain keyset pages; the plan is the one the whole queries,
    read to their end, make."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]
    _with_link_lines(org, run_id, 7)
    client = make_client(org)
    run = preflight.read_runs(client, [run_id])[run_id]

    before = org.stats.snapshot()["api_calls_by_endpoint"]
    plan, read = plan_streaming(client, run, batch_size=200, bulk_threshold=10**9)
    after = org.stats.snapshot()["api_calls_by_endpoint"]
    calls = {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)}

    assert calls.pop("composite") == 2
    # The rest are later pages of objects over 200 records (and pages the org cut short), never a first page.
    assert set(calls) <= {"run_query"}
    larger = sum(1 for by_status in remaining_by_status(client, run_id).values() if sum(by_status.values()) > 200)
    assert calls.get("run_query", 0) >= larger > 0

    def whole(query: str, model: type[M]) -> list[M]:
        return [model.model_validate(r) for r in client.query_all(whole_query(query, run_id))]

    by_whole_queries = plan_run(
        run,
        whole("invoices", Invoice),
        whole("invoice_lines", InvoiceLine),
        whole("order_products", OrderProduct),
        whole("usage_summaries", UsageSummary),
        whole(LINK_LINES, InvoiceLine),
    )
    assert _planned(plan) == _planned(by_whole_queries)
    assert plan.anomalies and sorted(map(repr, plan.anomalies)) == sorted(map(repr, by_whole_queries.anomalies))
    assert read == sum(len(_ids(keyset_pages(client, query, run_id))) for query in KEYSET_QUERIES)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (400, [{"errorCode": "INVALID_FIELD", "message": "No such column 'blng__Account__c'"}], ApiError),
        (503, [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server unavailable"}], TransientExhausted),
    ],
)
def test_a_failed_first_page_in_the_bundle_raises_what_a_lone_query_raises(
    status: int, body: object, kind: type[SfCleanupError]
) -> None:
    """A query refused for good, or unavailable through every retry, inside the bundle: the same error (type,
    message, status, code) as the same query refused on its own."""
    with responses.RequestsMock() as mocked:
        mocked.get(f"{API}/query/", status=status, json=body)
        with pytest.raises(SfCleanupError) as alone:
            next(keyset_pages(_client(), "invoices", "a1A5g0000000001EAA"))
    with responses.RequestsMock() as mocked:
        mocked.add_callback(
            responses.POST, f"{API}/composite", callback=ShuffledComposite(_refuse_invoices(status, body))
        )
        with pytest.raises(SfCleanupError) as bundled:
            first_pages(_client(), ["invoices", "order_products"], "a1A5g0000000001EAA")
    assert type(bundled.value) is type(alone.value) is kind
    assert str(bundled.value) == str(alone.value)
    if isinstance(alone.value, ApiError):
        assert isinstance(bundled.value, ApiError)
        assert (bundled.value.status, bundled.value.error_code) == (alone.value.status, alone.value.error_code)


def _refuse_invoices(status: int, body: object) -> Any:
    def answer(sub: dict[str, Any]) -> tuple[int, Any]:
        if "blng__Invoice__c" in sub["url"]:
            return status, body
        return 200, {"done": True, "totalSize": 0, "records": []}

    return answer


@responses.activate
def test_a_bundled_first_page_is_not_read_to_its_end() -> None:
    """A first page that says more follow is kept as it came, with the batch size asked for: its next page is
    the keyset reader's to ask for, so no nextRecordsUrl is followed."""
    page = {"done": False, "nextRecordsUrl": "/services/data/v62.0/query/01gQ-1", "records": [{"Id": "a1B1"}]}
    fake = ShuffledComposite(lambda sub: (200, page)).register()
    firsts = first_pages(_client(), ["invoices"], "a1A5g0000000001EAA", page_size=500)
    assert firsts == {"invoices": ([{"Id": "a1B1"}], False)}
    (sub,) = fake.bodies[0]["compositeRequest"]
    assert sub["httpHeaders"] == {"Sforce-Query-Options": "batchSize=500"}
    assert "LIMIT+501" in sub["url"]
    assert [call.request.method for call in responses.calls] == ["POST"]


def test_no_small_object_means_no_bundle_call() -> None:
    """Nothing to bundle costs nothing."""
    client: SalesforceClient = make_client(make_org("demo")[0])
    calls = client.usage.calls
    assert first_pages(client, [], "a1A5g0000000001EAA") == {}
    assert client.usage.calls == calls
