"""Bulk API 2.0 of the local org, driven by unmodified simple-salesforce over the in-process adapter."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import simple_salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceOperationError

from sfcleanup import ids
from sfcleanup.localorg import adapter, bulk, schema
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile

START = "2026-11-26T07:11:15.000+0000"
STATUS = "blng__InvoiceRunProcessingStatus__c"
RUN = "blng__InvoiceRun__c"
RUN_START = "blng__InvoiceRunStartDate__c"
ORDER_ITEM = schema.BY_NAME["orderitem"]
# simple-salesforce sleeps `wait` seconds before its first poll (5 by default); the local org needs none.
NO_WAIT = 0


@dataclass
class Env:
    org: LocalOrg
    session: requests.Session
    sf: Any
    account: str
    order: str
    run: str
    items: list[str]

    def url(self, path: str) -> str:
        return f"{self.org.instance_url}/services/data/v62.0/jobs/{path}"

    def get(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.url(path), headers=self.auth, params=params)

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(
            method, self.url(path), headers={**self.auth, **kwargs.pop("headers", {})}, **kwargs
        )

    def all_jobs(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every entry of a job list, following nextRecordsUrl until done."""
        page = self.get(path, **params).json()
        jobs = list(page["records"])
        while not page["done"]:
            page = self.session.get(self.org.instance_url + page["nextRecordsUrl"], headers=self.auth).json()
            jobs.extend(page["records"])
        return jobs

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.org.access_token}"}

    def item(self, record_id: str) -> dict[str, Any]:
        row = self.org.store.get(ORDER_ITEM, record_id)
        assert row is not None
        return row

    def results(self, job_id: str, kind: str) -> list[dict[str, str]]:
        """Rows by column name: simple-salesforce orders the columns of `records=` uploads arbitrarily."""
        response = self.get(f"ingest/{job_id}/{kind}/")
        assert response.status_code == 200
        return list(csv.DictReader(io.StringIO(response.text)))

    def only_job_id(self) -> str:
        """The one job this org's own user made, found among every user's jobs on every page of the list."""
        listed = [job for job in self.all_jobs("ingest") if job["createdById"] == bulk.jobs.USER_ID]
        assert len(listed) == 1
        return str(listed[0]["id"])


def _seed(org: LocalOrg, items: int) -> tuple[str, str, str, list[str]]:
    store = org.store
    account = store.insert(schema.BY_NAME["account"], {"Name": "Acme"})
    order = store.insert(schema.BY_NAME["order"], {"Name": "O-1", "AccountId": account, "Status": "Activated"})
    run = store.insert(schema.BY_NAME["blng__invoicerun__c"], {"Name": "IR-1", "blng__Status__c": "Completed"})
    row = {"OrderId": order, "Quantity": 1.0, STATUS: "Error", RUN: run, RUN_START: START}
    with store.transaction():
        created = store.insert_many(ORDER_ITEM, [dict(row) for _ in range(items)])
    return account, order, run, created


@pytest.fixture
def make_env() -> Iterator[Callable[..., Env]]:
    orgs: list[LocalOrg] = []

    def make(items: int = 3, **profile: Any) -> Env:
        org = LocalOrg(faults=FaultProfile(lock_wait_s=0.05, **profile))
        orgs.append(org)
        account, order, run, created = _seed(org, items)
        session = adapter.mount(requests.Session(), org)
        sf = simple_salesforce.Salesforce(instance_url=org.instance_url, session_id=org.access_token, session=session)
        return Env(org, session, sf, account, order, run, created)

    yield make
    for org in orgs:
        bulk.close(org)


def _csv_file(tmp_path: Path, rows: list[list[str]]) -> str:
    path = tmp_path / "upload.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    return str(path)


def test_update_nulls_na_cells_and_leaves_empty_cells(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """`#N/A` sets a field to null while an empty cell leaves the stored value as it was."""
    env = make_env()
    first, second, untouched = env.items
    upload = _csv_file(
        tmp_path,
        [
            ["Id", STATUS, RUN, RUN_START],
            [first, "Pending Billing", "#N/A", "#N/A"],
            [second, "Pending Billing", "", ""],
        ],
    )

    [result] = env.sf.bulk2.OrderItem.update(csv_file=upload, wait=NO_WAIT)

    assert result["numberRecordsProcessed"] == 2
    assert result["numberRecordsFailed"] == 0
    assert {k: env.item(first)[k] for k in (STATUS, RUN, RUN_START)} == {
        STATUS: "Pending Billing",
        RUN: None,
        RUN_START: None,
    }
    assert {k: env.item(second)[k] for k in (STATUS, RUN, RUN_START)} == {
        STATUS: "Pending Billing",
        RUN: env.run,
        RUN_START: START,
    }
    assert env.item(untouched)[STATUS] == "Error"
    assert env.org.stats.get("bulk_batches") == 1
    assert env.org.stats.get("records_written") == 2


def test_results_csvs_report_each_row_as_salesforce_writes_them(make_env: Callable[..., Env], tmp_path: Path) -> None:
    """successfulResults and failedResults carry the sf__ columns, then the uploaded columns, all values quoted."""
    env = make_env()
    good, bad, _ = env.items
    upload = _csv_file(tmp_path, [["Id", STATUS], [good, "Pending Billing"], [bad, "Bogus"]])

    [result] = env.sf.bulk2.OrderItem.update(csv_file=upload, wait=NO_WAIT)
    job_id = result["job_id"]

    success = env.get(f"ingest/{job_id}/successfulResults/").text
    failed = env.get(f"ingest/{job_id}/failedResults/").text
    assert success.splitlines() == [
        f'"sf__Id","sf__Created",Id,{STATUS}',
        f'"{good}","false","{good}","Pending Billing"',
    ]
    assert failed.splitlines() == [
        f'"sf__Id","sf__Error",Id,{STATUS}',
        f'"{bad}","INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:Invoice Run Processing Status: bad value for '
        f'restricted picklist field: Bogus:{STATUS} --","{bad}","Bogus"',
    ]
    assert env.get(f"ingest/{job_id}/unprocessedrecords/").text == f"Id,{STATUS}\n"
    assert env.item(good)[STATUS] == "Pending Billing"
    assert env.item(bad)[STATUS] == "Error"


def test_held_row_lock_fails_only_that_row(make_env: Callable[..., Env]) -> None:
    """A row whose record another owner has locked fails with UNABLE_TO_LOCK_ROW; the batch's other rows commit."""
    env = make_env()
    locked, free, _ = env.items
    assert env.org.locks.acquire(999, [locked])

    [result] = env.sf.bulk2.OrderItem.update(
        records=[{"Id": locked, STATUS: "Pending Billing"}, {"Id": free, STATUS: "Pending Billing"}], wait=NO_WAIT
    )

    assert result["numberRecordsFailed"] == 1
    [row] = env.results(result["job_id"], "failedResults")
    assert (row["sf__Id"], row["sf__Error"]) == (
        locked,
        f"UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: {locked}:--",
    )
    assert env.item(locked)[STATUS] == "Error"
    assert env.item(free)[STATUS] == "Pending Billing"
    # The job's batch released what it locked: the shared Order and Account are free again.
    assert env.org.locks.acquire(1000, [free, env.order, env.account])


def test_failed_job_processes_no_row_of_a_single_batch(make_env: Callable[..., Env]) -> None:
    """A job drawn to fail ends Failed with an errorMessage and leaves a one-batch upload entirely unprocessed."""
    env = make_env(bulk_job_failure_rate=1.0)

    with pytest.raises(SalesforceOperationError, match="InternalServerError"):
        env.sf.bulk2.OrderItem.update(records=[{"Id": i, STATUS: "Pending Billing"} for i in env.items], wait=NO_WAIT)

    job_id = env.only_job_id()
    info = env.get(f"ingest/{job_id}").json()
    assert (info["state"], info["numberRecordsProcessed"]) == ("Failed", 0)
    assert info["errorMessage"].startswith("InternalServerError : ")
    assert sorted(row["Id"] for row in env.results(job_id, "unprocessedrecords")) == sorted(env.items)
    assert {env.item(i)[STATUS] for i in env.items} == {"Error"}


def test_failed_job_keeps_the_batches_it_processed(make_env: Callable[..., Env]) -> None:
    """A failing job of two 10,000-record batches commits the first and reports the second as unprocessed."""
    env = make_env(items=10_001, bulk_job_failure_rate=1.0)
    rows = [{"Id": i, STATUS: "Pending Billing"} for i in env.items]

    with pytest.raises(SalesforceOperationError):
        env.sf.bulk2.OrderItem.update(records=rows, wait=NO_WAIT)

    job_id = env.only_job_id()
    assert env.get(f"ingest/{job_id}").json()["numberRecordsProcessed"] == 10_000
    unprocessed = env.results(job_id, "unprocessedRecords")
    assert len(unprocessed) == 1
    statuses = [env.item(i)[STATUS] for i in env.items]
    assert statuses.count("Pending Billing") == 10_000
    assert env.item(unprocessed[0]["Id"])[STATUS] == "Error"
    assert env.org.stats.get("bulk_batches") == 1


def test_unprocessed_rate_leaves_rows_untouched_in_a_complete_job(make_env: Callable[..., Env]) -> None:
    """With bulk_unprocessed_rate 1.0 the job completes yet every row is in unprocessedrecords and none is written."""
    env = make_env(bulk_unprocessed_rate=1.0)

    [result] = env.sf.bulk2.OrderItem.update(
        records=[{"Id": i, STATUS: "Pending Billing"} for i in env.items], wait=NO_WAIT
    )

    assert (result["numberRecordsProcessed"], result["numberRecordsFailed"], result["numberRecordsTotal"]) == (0, 0, 3)
    assert sorted(row["Id"] for row in env.results(result["job_id"], "unprocessedrecords")) == sorted(env.items)
    assert {env.item(i)[STATUS] for i in env.items} == {"Error"}


def test_unknown_header_field_fails_the_job(make_env: Callable[..., Env]) -> None:
    """A header naming a field the object lacks fails the whole job with Salesforce's InvalidBatch message."""
    env = make_env()

    with pytest.raises(SalesforceOperationError, match="InvalidBatch : Field name not found : Foo__c"):
        env.sf.bulk2.OrderItem.update(records=[{"Id": env.items[0], "Foo__c": "x"}], wait=NO_WAIT)

    assert env.item(env.items[0])[STATUS] == "Error"


def test_insert_then_hard_delete(make_env: Callable[..., Env]) -> None:
    """Insert reports sf__Created true with the new id; hardDelete removes the row instead of recycling it."""
    env = make_env(items=0)

    [inserted] = env.sf.bulk2.OrderItem.insert(
        records=[{"OrderId": env.order, STATUS: "Pending Billing"}], wait=NO_WAIT
    )
    [row] = env.results(inserted["job_id"], "successfulResults")
    new_id = row["sf__Id"]
    assert row["sf__Created"] == "true"
    assert env.item(new_id)[STATUS] == "Pending Billing"

    [deleted] = env.sf.bulk2.OrderItem.hard_delete(records=[{"Id": new_id}], wait=NO_WAIT)
    assert deleted["numberRecordsFailed"] == 0
    assert env.org.store.get(ORDER_ITEM, new_id) is None


def test_query_pages_follow_the_locator(make_env: Callable[..., Env]) -> None:
    """maxRecords splits results into pages, each a full CSV; the last page's Sforce-Locator is null."""
    env = make_env(items=5)

    pages = list(env.sf.bulk2.OrderItem.query("SELECT Id, OrderId FROM OrderItem", max_records=2, wait=NO_WAIT))

    assert len(pages) == 3
    parsed = [list(csv.DictReader(io.StringIO(page))) for page in pages]
    assert [len(rows) for rows in parsed] == [2, 2, 1]
    assert sorted(row["Id"] for rows in parsed for row in rows) == sorted(env.items)
    assert {row["OrderId"] for rows in parsed for row in rows} == {env.order}
    assert pages[0].splitlines()[0] == '"Id","OrderId"'

    job_id = env.send("POST", "query", json={"operation": "query", "query": "SELECT Id FROM OrderItem"}).json()["id"]
    first = env.get(f"query/{job_id}/results", maxRecords=3)
    last = env.get(f"query/{job_id}/results", maxRecords=3, locator=first.headers["Sforce-Locator"])
    assert (first.headers["Sforce-NumberOfRecords"], last.headers["Sforce-NumberOfRecords"]) == ("3", "2")
    assert last.headers["Sforce-Locator"] == "null"


def test_query_parent_path_and_value_formats(make_env: Callable[..., Env]) -> None:
    """A parent field is a dotted column; datetimes end in Z, booleans are true/false and nulls are empty."""
    env = make_env(items=1)
    query = "SELECT Id, Order.Account.Name, blng__InvoiceRunStartDate__c, IsDeleted, UnitPrice FROM OrderItem"

    [page] = env.sf.bulk2.OrderItem.query(query, wait=NO_WAIT)

    assert page.splitlines() == [
        f'"Id","Order.Account.Name","{RUN_START}","IsDeleted","UnitPrice"',
        f'"{env.items[0]}","Acme","2026-11-26T07:11:15.000Z","false",""',
    ]


def test_query_with_unknown_field_is_refused(make_env: Callable[..., Env]) -> None:
    """A SOQL error refuses the query job with 400 and Salesforce's error array."""
    env = make_env()

    with pytest.raises(SalesforceMalformedRequest) as caught:
        list(env.sf.bulk2.OrderItem.query("SELECT Foo__c FROM OrderItem", wait=NO_WAIT))

    assert caught.value.content[0]["errorCode"] == "INVALID_FIELD"
    assert "Foo__c" in caught.value.content[0]["message"]


def test_error_shapes(make_env: Callable[..., Env]) -> None:
    """Unknown jobs are 404 NOT_FOUND, unknown objects 400 INVALIDENTITY, bad transitions 400 INVALIDJOBSTATE."""
    env = make_env()
    unknown = env.get(f"ingest/{ids.make('750', 999)}")
    assert (unknown.status_code, unknown.json()[0]["errorCode"]) == (404, "NOT_FOUND")

    entity = env.send("POST", "ingest", json={"object": "Foo__c", "operation": "update", "contentType": "CSV"})
    assert entity.status_code == 400
    assert entity.json()[0] == {
        "errorCode": "INVALIDENTITY",
        "message": "Entity 'Foo__c' is not supported by the Bulk API.",
    }

    job = env.send("POST", "ingest", json={"object": "OrderItem", "operation": "update", "lineEnding": "LF"}).json()
    assert (job["id"][:3], job["state"], job["contentUrl"]) == (
        "750",
        "Open",
        f"services/data/v62.0/jobs/ingest/{job['id']}/batches",
    )
    body = f"Id,{STATUS}\n{env.items[0]},Pending Billing\n".encode()
    headers = {"Content-Type": "text/csv"}
    assert env.send("PUT", f"ingest/{job['id']}/batches", data=body, headers=headers).status_code == 201
    again = env.send("PUT", f"ingest/{job['id']}/batches", data=body, headers=headers)
    assert (again.status_code, again.json()[0]["errorCode"]) == (400, "BULK_API_ERROR")

    aborted = env.send("PATCH", f"ingest/{job['id']}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    closing = env.send("PATCH", f"ingest/{job['id']}", json={"state": "UploadComplete"})
    assert (closing.status_code, closing.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    assert env.results(job["id"], "unprocessedrecords") == [{"Id": env.items[0], STATUS: "Pending Billing"}]
    assert env.send("DELETE", f"ingest/{job['id']}").status_code == 204
    assert env.get(f"ingest/{job['id']}").status_code == 404
    assert env.item(env.items[0])[STATUS] == "Error"


def test_query_job_abort_and_delete(make_env: Callable[..., Env]) -> None:
    """An aborted query job serves no results; deleting it makes it unknown."""
    env = make_env()
    job = env.send("POST", "query", json={"operation": "query", "query": "SELECT Id FROM OrderItem"}).json()
    assert (job["id"][:3], job["state"]) == ("750", "UploadComplete")

    assert env.send("PATCH", f"query/{job['id']}", json={"state": "Aborted"}).json()["state"] == "Aborted"
    results = env.get(f"query/{job['id']}/results")
    assert (results.status_code, results.json()[0]["errorCode"]) == (400, "INVALIDJOBSTATE")
    assert env.send("DELETE", f"query/{job['id']}").status_code == 204
    assert env.get(f"query/{job['id']}").status_code == 404
