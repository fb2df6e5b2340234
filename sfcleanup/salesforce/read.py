"""Reading a run's records: the SOQL files, paged to the end, parsed into typed models at the boundary."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar
from urllib.parse import urlencode

from pydantic import BaseModel

from sfcleanup import billing, queries
from sfcleanup.billing import RULE_BY_OBJECT, Phase, Rule
from sfcleanup.changes import Values
from sfcleanup.models import Invoice, InvoiceLine, InvoiceRun, OrderProduct, UsageSummary
from sfcleanup.plan import RunPlan, RunRecords, plan_records
from sfcleanup.planstore import PlanStore
from sfcleanup.salesforce import composite
from sfcleanup.salesforce.bulkquery import BULK_READ_THRESHOLD, BulkQueries, QueryJob, whole_query
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.shapes import QueryPage, counts_by_value, text_fields

M = TypeVar("M", bound=BaseModel)


# The smallest Id: every real Id sorts after it, so it starts a keyset scan.
FIRST_ID = "000000000000000AAA"


def keyset_soql(query: str, run_id: str, after: str, page_size: int) -> str:
    """The keyset query `query`'s page of up to `page_size` records after `after`, asking for one record more
    than a page holds: whether more follow is then known without an extra call for an empty page."""
    return queries.render(query, run_id=run_id, after=after, limit=page_size + 1)


def keyset_pages(
    client: SalesforceClient,
    query: str,
    run_id: str,
    *,
    page_size: int = 2000,
    first: QueryPage | None = None,
) -> Iterator[list[dict[str, object]]]:
    """A run's records of one query, page by page, each page the next `page_size` Ids after the last one.

    Keyset paging needs no server-side cursor: nothing expires during a long clean-up, and a page can be read
    again after a lost answer. Each query reads only the first page of its answer (see keyset_soql). The next
    page is fetched while the caller works through the current one. `first` is the first page when it was
    read already (`first_pages`): it is not read again.
    """

    def fetch(after: str) -> QueryPage:
        return client.query_page(keyset_soql(query, run_id, after, page_size), batch_size=page_size)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sfcleanup-read") as pool:
        if first is None:
            ahead = pool.submit(contextvars.copy_context().run, fetch, FIRST_ID)
        else:
            ahead = Future()
            ahead.set_result(first)
        while True:
            page, done = ahead.result()
            if not page:
                return
            if not done:
                ahead = pool.submit(contextvars.copy_context().run, fetch, str(page[-1]["Id"]))
            yield page
            if done:
                return


# Composite takes at most five queries a call (DOMAIN.md, section 4).
COMPOSITE_QUERIES = 5


def first_pages(
    client: SalesforceClient, names: Sequence[str], run_id: str, *, page_size: int = 2000
) -> dict[str, QueryPage]:
    """The first keyset page of each query of `names`, exactly what `keyset_pages` reads first: five queries a
    Composite call, so a run's small objects start in one call instead of one each."""
    found: dict[str, QueryPage] = {}
    for start in range(0, len(names), COMPOSITE_QUERIES):
        chunk = names[start : start + COMPOSITE_QUERIES]
        soqls = [keyset_soql(name, run_id, FIRST_ID, page_size) for name in chunk]
        _, pages = client.get_with_first_pages("keyset first pages", [], soqls, batch_size=page_size)
        found.update(zip(chunk, pages, strict=True))
    return found


def _records(
    pages: Iterator[list[dict[str, object]]], model: type[M], read: list[int], on_page: Callable[[int], None]
) -> Iterator[M]:
    """One query's records as models, read page by page when the planner gets to them; counted in `read`."""
    for page in pages:
        read[0] += len(page)
        on_page(len(page))
        for record in page:
            yield model.model_validate(record)


# The keyset queries a Bulk API 2.0 query job may read instead, by the object whose size decides.
BULK_READABLE = {
    "invoices": billing.INVOICE,
    "invoice_lines": billing.INVOICE_LINE,
    "usage_summaries": billing.USAGE_SUMMARY,
    "order_products": billing.ORDER_PRODUCT,
}


# Read by keyset pages whatever the run's size, and needing nothing read before it: its first page rides in the
# call that counts the run's records (four counts and one query, Composite's five).
LINK_LINES = "usage_summary_lines"


def bulk_reads(
    bulk: BulkQueries,
    run_id: str,
    counts: dict[str, dict[str, int]],
    threshold: int = BULK_READ_THRESHOLD,
    page_size: int = 2000,
) -> dict[str, QueryJob]:
    """Query jobs for the run's large objects, created at once so the org runs them while planning starts.

    The sizes come from the verify counts (`counts_and_first_pages`); an object with at least `threshold`
    records linked to the run is read by a query job, the others by keyset pages. Once one object goes through
    a query job, so does every object of `2 * page_size` records or more: the org's job list tells the states
    of all the run's jobs in one call (`QueryJobStates`), so such a job costs its create and one results page,
    two calls, where keyset pages cost at least two besides the first (which asks for one record more than a
    page holds), and more whenever the org cuts a page short.
    """
    sizes = {sobject: sum(by_status.values()) for sobject, by_status in counts.items()}
    chosen = {query for query, sobject in BULK_READABLE.items() if sizes.get(sobject, 0) >= threshold}
    if chosen:
        chosen |= {query for query, sobject in BULK_READABLE.items() if sizes.get(sobject, 0) >= 2 * page_size}
    return {
        query: bulk.create(whole_query(query, run_id), sobject)
        for query, sobject in BULK_READABLE.items()
        if query in chosen
    }


def plan_streaming(
    client: SalesforceClient,
    run: InvoiceRun,
    *,
    batch_size: int = 2000,
    bulk: BulkQueries | None = None,
    bulk_threshold: int = BULK_READ_THRESHOLD,
    on_page: Callable[[int], None] = lambda _: None,
) -> tuple[RunPlan, int]:
    """Read the run page by page and plan each record as it comes, the changes going to a PlanStore on disk.

    Large objects are read through Bulk API 2.0 query jobs (`bulk_reads`), the rest through keyset pages.
    Returns the plan and the number of records read; `on_page` hears of each page's records as they come.
    """
    store = PlanStore()
    read = [0]
    bulk = bulk or BulkQueries(client)
    counts, firsts = counts_and_first_pages(client, run.id, [LINK_LINES], page_size=batch_size)
    jobs = bulk_reads(bulk, run.id, counts, bulk_threshold, batch_size)

    # The query jobs' results download in the order the planner reads them, each while it plans the one before.
    with bulk.ahead(list(jobs.values())) as bulk_pages:
        # The small objects' first pages, together, while the org runs the query jobs; each is held until the
        # planner gets to its query, the rest of which is read as it goes.
        small = [query for query in BULK_READABLE if query not in jobs]
        firsts |= first_pages(client, small, run.id, page_size=batch_size)

        def stream(query: str, model: type[M]) -> Iterator[M]:
            job = jobs.get(query)
            pages = (
                bulk_pages(job)
                if job
                else keyset_pages(client, query, run.id, page_size=batch_size, first=firsts.pop(query))
            )
            return _records(pages, model, read, on_page)

        records = RunRecords(
            invoices=stream("invoices", Invoice),
            lines=stream("invoice_lines", InvoiceLine),
            usage_summary_lines=stream("usage_summary_lines", InvoiceLine),
            usage_summaries=stream("usage_summaries", UsageSummary),
            order_products=stream("order_products", OrderProduct),
        )
        anomalies = plan_records(run, records, store)
    store.seal()
    changes = {phase: store.changes(phase) for phase in Phase}
    return RunPlan(run, changes, anomalies, dependencies=store), read[0]


def current_values(client: SalesforceClient, rule: Rule, ids: Sequence[str]) -> dict[str, Values]:
    """The current values of the rule's fields, per Id, for the records of `ids` the org still shows."""
    rows: dict[str, Values] = {}
    # 200 ids keep the query's URL well under Salesforce's 16,384-byte limit.
    for start in range(0, len(ids), 200):
        soql = values_soql(rule, ids[start : start + 200])
        rows.update((str(r["Id"]), text_fields(r, rule.fields)) for r in client.query_all(soql))
    return rows


def values_soql(rule: Rule, ids: Sequence[str]) -> str:
    """`SELECT Id, <the rule's fields> FROM <object> WHERE Id IN (...)`: at most 200 ids (see current_values)."""
    return queries.render("verify_by_ids", fields=", ".join(rule.fields), sobject=rule.sobject, ids=list(ids))


def values_subrequest(api_version: str, rule: Rule, ids: Sequence[str]) -> dict[str, object]:
    """current_values' query as a Composite subrequest, to ride in the call that writes `ids` (at most 200)."""
    url = f"/services/data/v{api_version}/query/?" + urlencode({"q": values_soql(rule, ids)})
    return composite.subrequest("GET", url, 0, prefix="readback")


def values_read_back(rule: Rule, answer: SubResult, updated: Collection[str]) -> dict[str, Values | None]:
    """What `values_subrequest`, run after the writes, found for the records of `updated` (written by those
    writes): their values, or None for a record the org no longer shows. Empty when the query did not answer
    whole (a failed subrequest, a further page): the caller reads those records again by itself."""
    body = answer.body
    if answer.failure is not None or not isinstance(body, dict) or not body.get("done", True):
        return {}
    found = {str(r["Id"]): text_fields(r, rule.fields) for r in body.get("records", [])}
    return {record_id: found.get(record_id) for record_id in updated}


# Which field links each object to its run.
RUN_LINK = {
    billing.INVOICE: "blng__InvoiceRunCreatedBy__c",
    billing.INVOICE_LINE: "blng__InvoiceRun__c",
    billing.ORDER_PRODUCT: billing.RUN_LOOKUP,
    billing.USAGE_SUMMARY: billing.RUN_LOOKUP,
}


def remaining_by_status(client: SalesforceClient, run_id: str) -> dict[str, dict[str, int]]:
    """Per object, how many records linked to the run are in each status: four aggregate queries, one call."""
    return counts_and_first_pages(client, run_id, [])[0]


def counts_and_first_pages(
    client: SalesforceClient, run_id: str, names: Sequence[str], *, page_size: int = 2000
) -> tuple[dict[str, dict[str, int]], dict[str, QueryPage]]:
    """`remaining_by_status`, and the first keyset page of each query of `names` (`first_pages`), in the one
    call: the counts take four of Composite's five queries, so `names` holds one at most."""
    if len(RUN_LINK) + len(names) > COMPOSITE_QUERIES:
        raise ValueError(f"one Composite call holds {COMPOSITE_QUERIES} queries: four counts and {list(names)}")
    paths = []
    for sobject, run_field in RUN_LINK.items():
        status_field = RULE_BY_OBJECT[sobject].status_field
        soql = queries.render(
            "remaining_by_status", status_field=status_field, sobject=sobject, run_field=run_field, run_id=run_id
        )
        paths.append("query/?" + urlencode({"q": soql}))
    soqls = [keyset_soql(name, run_id, FIRST_ID, page_size) for name in names]
    answers, pages = client.get_with_first_pages("verify counts", paths, soqls, batch_size=page_size)
    counts = {
        sobject: counts_by_value(page, RULE_BY_OBJECT[sobject].status_field)
        for sobject, page in zip(RUN_LINK, answers, strict=True)
    }
    return counts, dict(zip(names, pages, strict=True))


def eligible_left(counts: dict[str, dict[str, int]]) -> dict[str, int]:
    """How many records per object are still in a from-state of the clean-up."""
    return {
        sobject: sum(n for status, n in by_status.items() if status in RULE_BY_OBJECT[sobject].from_states)
        for sobject, by_status in counts.items()
    }
