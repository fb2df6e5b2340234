"""Large reads through Bulk API 2.0 query jobs: the same plan as keyset pages, fewer calls, paged by locator."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sfcleanup import preflight
from sfcleanup.billing import Phase
from sfcleanup.errors import ApiError
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.bulk.jobs import QueryJob
from sfcleanup.plan import RunPlan
from sfcleanup.salesforce.bulkquery import BULK_READ_THRESHOLD, BulkQueries, read_slices, record, whole_query
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.read import plan_streaming
from tests.support import make_client, make_org

Planned = tuple[dict[Phase, list[tuple[str, str, tuple[tuple[str, str | None], ...]]]], list[str]]


def _planned(plan: RunPlan) -> Planned:
    """What a plan changes, comparable whatever order the records were read in."""
    changes = {
        phase: sorted((c.id, c.group, tuple(sorted(c.after.items()))) for c in plan.changes[phase]) for phase in Phase
    }
    return changes, sorted(repr(a) for a in plan.anomalies)


def _plan(org: LocalOrg, run_id: str, **options: int) -> tuple[Planned, int, SalesforceClient]:
    client = make_client(org)
    run = preflight.read_runs(client, [run_id])[run_id]
    calls = client.usage.calls
    page_records = options.pop("page_records", None)
    bulk = BulkQueries(client, page_records=page_records) if page_records else None
    plan, _ = plan_streaming(client, run, bulk=bulk, **options)
    return _planned(plan), client.usage.calls - calls, client


def _query_jobs(org: LocalOrg) -> list[QueryJob]:
    return [job for job in org.bulk_jobs.values() if isinstance(job, QueryJob)]


def test_a_plan_read_through_query_jobs_is_the_plan_read_through_keyset_pages() -> None:
    """Every object read by a query job, in pages of 7 records in no particular order, plans exactly what
    keyset pages plan: same changes, same lock points, same anomalies."""
    org, info = make_org("demo")
    run_id = info.runs["failed_run"]

    by_pages, _, _ = _plan(org, run_id, bulk_threshold=10**9)
    assert _query_jobs(org) == []
    by_jobs, _, _ = _plan(org, run_id, bulk_threshold=1, page_records=7)

    assert by_jobs == by_pages
    assert sum(len(changes) for changes in by_jobs[0].values()) > 7
    assert sorted(job.sobject.name for job in _query_jobs(org)) == sorted(
        ["blng__Invoice__c", "blng__InvoiceLine__c", "blng__UsageSummary__c", "OrderItem"]
    )


@pytest.mark.slow
def test_a_large_object_is_read_in_a_few_calls() -> None:
    """6,000 sources: the lines (6,000, at the threshold or above) come through a query job, and with them the
    order products (4,800: under the threshold, but three keyset pages or more); one look at the job list tells
    both jobs' states, so each costs its create and one page instead of 3 or more keyset pages; the plan is
    the one keyset pages make."""
    org, info = make_org("scale", records=6000)
    run_id = info.runs["failed_run"]
    by_pages, page_calls, _ = _plan(org, run_id, bulk_threshold=10**9)
    before = org.stats.snapshot()["api_calls_by_endpoint"]
    by_jobs, job_calls, _ = _plan(org, run_id)
    after = org.stats.snapshot()["api_calls_by_endpoint"]

    assert by_jobs == by_pages
    assert 6000 >= BULK_READ_THRESHOLD > info.cleanable["failed_run"]["OrderItem"] >= 2 * 2000
    assert [job.sobject.name for job in _query_jobs(org)] == ["blng__InvoiceLine__c", "OrderItem"]
    bulk_calls = {
        name: after.get(name, 0) - before.get(name, 0) for name in ("query_jobs", "query_job", "query_results")
    }
    # Two creates and one look at the job list (both on `query_jobs`), no job polled on its own, one page each.
    assert bulk_calls == {"query_jobs": 3, "query_job": 0, "query_results": 2}
    # The counts (with the link lines' first page) and the small objects' first pages cost one call each.
    assert job_calls == 2 + 3 + 2 <= page_calls


def test_a_csv_row_becomes_the_record_rest_would_return() -> None:
    """Dotted columns nest by relationship; an empty cell is a null, left out as REST leaves out nothing but
    the models read a missing key as None."""
    row = {"Id": "a1", "blng__Invoice__r.blng__InvoiceStatus__c": "Draft", "Order.Account.Name": "", "X": ""}
    assert record(row) == {"Id": "a1", "blng__Invoice__r": {"blng__InvoiceStatus__c": "Draft"}}


def test_a_result_file_reads_as_its_rows_read_one_by_one(tmp_path: Path) -> None:
    """A page read from disk in slices gives, row for row, the records its rows give one by one as
    csv.DictReader reads them: blank lines skipped, a short row's missing cells empty."""
    path = tmp_path / "page.csv"
    path.write_text(
        "Id,blng__Invoice__r.blng__InvoiceStatus__c,blng__Invoice__r.blng__Account__c,X\n"
        'a1,Draft,001A,"x, quoted"\n'
        "a2,,001B,\n"
        "\n"
        "a3,Posted\n"
        "a4,Draft,001C,y\n",
        encoding="utf-8",
    )
    with path.open(newline="", encoding="utf-8") as handle:
        expected = [record({k: v or "" for k, v in row.items()}) for row in csv.DictReader(handle)]
    assert [r for chunk in read_slices(path, size=3) for r in chunk] == expected
    assert [len(chunk) for chunk in read_slices(path, size=3)] == [3, 1]
    assert expected[2] == {"Id": "a3", "blng__Invoice__r": {"blng__InvoiceStatus__c": "Posted"}}


def test_a_whole_query_has_no_keyset_tail() -> None:
    """The query job reads the whole keyset query: no Id bound, no ORDER BY, no LIMIT (Bulk API 2.0 has none)."""
    soql = whole_query("invoice_lines", "a1A000000000001AAA")
    assert soql.endswith("WHERE blng__InvoiceRun__c = 'a1A000000000001AAA'")
    assert "ORDER BY" not in soql and "LIMIT" not in soql


@pytest.mark.parametrize("clause", ["ORDER BY Id", "LIMIT 5", "LIMIT 5 OFFSET 1"])
def test_the_local_org_refuses_what_bulk_query_jobs_do_not_support(clause: str) -> None:
    """ORDER BY, LIMIT and OFFSET are refused with 400, as Bulk API 2.0 documents them unsupported."""
    org, _ = make_org("demo")
    client = make_client(org)
    body = {"operation": "query", "query": f"SELECT Id FROM OrderItem {clause}"}  # noqa: S608 - constant clauses
    with pytest.raises(ApiError) as refused:
        client.request("bulk query", "POST", "jobs/query", json=body)
    assert refused.value.status == 400 and refused.value.error_code == "INVALID_INPUT"
    assert _query_jobs(org) == []


def test_query_job_results_come_in_no_particular_order() -> None:
    """The local org serves a query job's rows shuffled, so a reader that relied on Id order would fail here."""
    org, _ = make_org("demo")
    client = make_client(org)
    bulk = BulkQueries(client, page_records=50)
    job = bulk.create("SELECT Id FROM OrderItem", "OrderItem")
    ids = [str(row["Id"]) for page in bulk.pages(job) for row in page]
    assert len(ids) > 50 and len(set(ids)) == len(ids)
    assert ids != sorted(ids)


def test_pages_downloaded_ahead_are_the_pages_and_leave_nothing_behind(tmp_path: Path) -> None:
    """Results downloaded ahead read as the same records as results downloaded when asked for, page after page;
    and leaving with a job unread (the planner stopped) removes every file, the unread job's first page too."""
    org, _ = make_org("demo")
    client = make_client(org)
    bulk = BulkQueries(client, page_records=50, workdir=tmp_path)
    soql = "SELECT Id, blng__InvoiceRunProcessingStatus__c FROM OrderItem"
    first, second, unread = (bulk.create(soql, "OrderItem") for _ in range(3))
    directly = sorted(str(row["Id"]) for page in bulk.pages(first) for row in page)
    with bulk.ahead([first, second, unread]) as pages:
        ahead = sorted(str(row["Id"]) for page in pages(first) for row in page)
        assert sorted(str(row["Id"]) for page in pages(second) for row in page) == ahead
    assert ahead == directly and len(ahead) > 50
    assert list(tmp_path.iterdir()) == []
