"""Several query jobs of a run polled with one call: the org's list of query jobs ("Get Information About All
Query Jobs"), which holds every user's jobs in no order; a job not on its first page is polled on its own."""

from __future__ import annotations

from typing import Any

import pytest
import requests
import responses
from pydantic import SecretStr

from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.errors import StopRun
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.bulk.jobs import USER_ID
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.salesforce.bulk import Polling
from sfcleanup.salesforce.bulkquery import BulkQueries, QueryJob
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.read import bulk_reads
from sfcleanup.salesforce.retry import no_wait_policy
from tests.support import make_client, make_org

SOQL = "SELECT Id, blng__InvoiceRunProcessingStatus__c FROM OrderItem"
INSTANCE = "https://acme.my.salesforce.com"
JOBS = f"{INSTANCE}/services/data/v62.0/jobs/query"


def _read_three(org: LocalOrg) -> tuple[list[list[str]], dict[str, int], int]:
    """Three query jobs created, then read in turn as the planner reads them: their ids per job, the calls by
    endpoint and in all."""
    client = make_client(org)
    bulk = BulkQueries(client, page_records=10_000)
    before = org.stats.snapshot()["api_calls_by_endpoint"]
    calls = org.stats.api_calls
    jobs = [bulk.create(SOQL, "OrderItem") for _ in range(3)]
    with bulk.ahead(jobs) as pages:
        read = [sorted(str(row["Id"]) for page in pages(job) for row in page) for job in jobs]
    after = org.stats.snapshot()["api_calls_by_endpoint"]
    by_endpoint = {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)}
    return read, by_endpoint, org.stats.api_calls - calls


def test_one_list_tells_the_states_of_every_waiting_job() -> None:
    """Three jobs waiting: one look at the job list (among the org's other users' and Bulk 1.0 jobs) finds all
    three complete, so no job is polled on its own: 3 creates, 1 list, 3 result pages."""
    org, _ = make_org("demo")
    read, by_endpoint, calls = _read_three(org)
    assert calls == 7
    assert by_endpoint == {"query_jobs": 4, "query_results": 3}
    assert read[0] == read[1] == read[2] and len(read[0]) > 100


def test_jobs_missing_from_the_first_page_are_polled_on_their_own() -> None:
    """A list whose first page holds only other users' jobs (thousands of them, ours last): the one list
    call tells nothing, the list is not paged through nor asked for again, and each job is polled on its own
    as before; what is read is the same."""
    org, _ = make_org("demo", FaultProfile(lock_wait_s=0.2, foreign_query_jobs=3000, own_jobs_listed_last=True))
    read, by_endpoint, calls = _read_three(org)
    assert calls == 3 + 1 + 3 + 3
    assert by_endpoint == {"query_jobs": 4, "query_job": 3, "query_results": 3}
    assert read[0] == read[1] == read[2] and len(read[0]) > 100

    listed = make_client(org).request("list", "GET", "jobs/query", params={"jobType": "V2Query"}).json()
    assert not listed["done"] and len(listed["records"]) == 1000
    assert all(job["createdById"] != USER_ID for job in listed["records"])


def test_a_lone_waiting_job_is_polled_on_its_own() -> None:
    """One job waiting: its own GET, as before (a list would cost as much and might not hold it)."""
    org, _ = make_org("demo")
    client = make_client(org)
    bulk = BulkQueries(client)
    job = bulk.create(SOQL, "OrderItem")
    before = org.stats.snapshot()["api_calls_by_endpoint"]
    bulk.wait(job)
    after = org.stats.snapshot()["api_calls_by_endpoint"]
    assert {name: count - before.get(name, 0) for name, count in after.items() if count != before.get(name, 0)} == {
        "query_job": 1
    }


def test_the_local_query_job_list_holds_every_users_jobs_in_no_order() -> None:
    """GET jobs/query lists other users' and Bulk API 1.0 jobs beside the worker's, the worker's not first,
    each with the state its own GET shows at that moment (a list is a look like any other)."""
    org, _ = make_org("demo")
    client = make_client(org)
    ours = {
        client.request("create", "POST", "jobs/query", json={"operation": "query", "query": SOQL}).json()["id"]
        for _ in range(6)
    }
    listed = client.request("list", "GET", "jobs/query").json()
    assert listed["done"] and listed["nextRecordsUrl"] is None
    records = listed["records"]
    assert {job["jobType"] for job in records} == {"Classic", "V2Query"}
    assert {job["id"] for job in records if job["createdById"] == USER_ID} == ours
    assert [n for n, job in enumerate(records) if job["id"] in ours] != list(range(len(ours)))
    for job in (job for job in records if job["id"] in ours):
        assert job["state"] == "JobComplete" == client.request("get", "GET", f"jobs/query/{job['id']}").json()["state"]


def test_the_test_device_lists_the_workers_jobs_after_every_other_users() -> None:
    """`own_jobs_listed_last`: every foreign job first; `foreign_query_jobs` sets how many there are."""
    org, _ = make_org("demo", FaultProfile(foreign_query_jobs=7, own_jobs_listed_last=True))
    client = make_client(org)
    for _ in range(3):
        client.request("create", "POST", "jobs/query", json={"operation": "query", "query": SOQL})
    records = client.request("list", "GET", "jobs/query").json()["records"]
    assert [job["createdById"] == USER_ID for job in records] == [False] * 7 + [True] * 3


def test_once_one_object_needs_a_query_job_those_of_three_keyset_pages_join_it() -> None:
    """An object over the threshold goes through a query job; then so does any object of two pages or more
    (three keyset pages), as the job list makes its job cost two calls; without a first job none does."""
    org, info = make_org("demo")
    bulk = BulkQueries(make_client(org))
    run_id = info.runs["failed_run"]

    def chosen(lines: int, order_products: int, summaries: int) -> list[str]:
        counts = {
            "blng__Invoice__c": {"Draft": 10},
            "blng__InvoiceLine__c": {"Draft": lines},
            "OrderItem": {"Error": order_products},
            "blng__UsageSummary__c": {"Error": summaries},
        }
        return list(bulk_reads(bulk, run_id, counts, threshold=5000, page_size=2000))

    assert chosen(5000, 4000, 3999) == ["invoice_lines", "order_products"]
    assert chosen(4999, 4000, 4000) == []
    assert chosen(5000, 3999, 3999) == ["invoice_lines"]


# --- against a fake org, for states the local org does not hold long enough to see ---------------------------
def _client() -> SalesforceClient:
    connector = Connector(
        OrgSettings(auth=AuthMode.TOKEN), requests.Session(), lambda: OrgSession(INSTANCE, SecretStr("t"))
    )
    return SalesforceClient(connector, api_version="62.0", retry=no_wait_policy(), timeout_s=5)


def _entry(job_id: str, state: str, **changes: Any) -> dict[str, Any]:
    job = {"id": job_id, "operation": "query", "object": "OrderItem", "createdById": "005A", "state": state}
    return {**job, "jobType": "V2Query", **changes}


def _bulk(pauses: list[float]) -> tuple[BulkQueries, list[QueryJob]]:
    for job_id in ("750A", "750B"):
        responses.post(JOBS, json=_entry(job_id, "UploadComplete"))
    bulk = BulkQueries(_client(), Polling(first_s=0.5, max_s=2.0, sleep=pauses.append))
    return bulk, [bulk.create(SOQL, "OrderItem") for _ in range(2)]


def _gets() -> list[str]:
    return [str(call.request.url) for call in responses.calls if call.request.method == "GET"]


@responses.activate
def test_a_job_the_list_shows_running_is_looked_at_again_after_the_pause() -> None:
    """The list shows A in progress and B complete: A is looked at again after the usual pause (on its own now,
    as it alone still waits); B costs nothing more."""
    pauses: list[float] = []
    bulk, (first, second) = _bulk(pauses)
    others = [_entry(f"750X{n}", "JobComplete", createdById="005Z", jobType="Classic") for n in range(3)]
    listed = [others[0], _entry("750B", "JobComplete"), others[1], _entry("750A", "InProgress"), others[2]]
    responses.get(JOBS, json={"done": True, "records": listed, "nextRecordsUrl": None})
    responses.get(f"{JOBS}/750A", json=_entry("750A", "JobComplete"))

    bulk.wait(first)
    bulk.wait(second)
    assert _gets() == [f"{JOBS}?jobType=V2Query", f"{JOBS}/750A"]
    assert pauses == [0.5]


@responses.activate
def test_a_refused_list_leaves_each_job_to_its_own_poll() -> None:
    """A list the org refuses (this user may not see other users' jobs, say) is asked for once; then every
    job is polled on its own, as before."""
    pauses: list[float] = []
    bulk, jobs = _bulk(pauses)
    refused = [{"errorCode": "INSUFFICIENT_ACCESS", "message": "insufficient access rights"}]
    responses.get(JOBS, status=403, json=refused)
    for job in jobs:
        responses.get(f"{JOBS}/{job.id}", json=_entry(job.id, "JobComplete"))

    for job in jobs:
        bulk.wait(job)
    assert _gets() == [f"{JOBS}?jobType=V2Query", f"{JOBS}/750A", f"{JOBS}/750B"]
    assert pauses == []


@responses.activate
def test_a_job_the_list_shows_failed_is_reported_with_its_own_error() -> None:
    """A job the list shows Failed is asked about on its own, for the error message the list does not carry."""
    pauses: list[float] = []
    bulk, (first, _) = _bulk(pauses)
    responses.get(JOBS, json={"done": True, "records": [_entry("750A", "Failed"), _entry("750B", "InProgress")]})
    responses.get(f"{JOBS}/750A", json=_entry("750A", "Failed", errorMessage="InvalidBatch : bad query"))
    with pytest.raises(StopRun, match="ended Failed: InvalidBatch : bad query"):
        bulk.wait(first)
