"""The steps `bench.localorg_bench` times: each API step against the local org through unmodified
simple-salesforce, and the store read straight with SQL that the writing steps are checked against.

Each step returns an `Outcome` (records, ok, detail); `bench.localorg_bench.measure` takes the clock, the API
calls and the memory around it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simple_salesforce.api import Salesforce
from simple_salesforce.bulk2 import SFBulk2Handler, SFBulk2Type

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.store import Store

API_VERSION = "62.0"
QUERY_BATCH = 2000
COLLECTION_RECORDS = 200
COLLECTIONS_PER_CALL = 5
STATUS_FIELD = "blng__InvoiceRunProcessingStatus__c"
INDEX_FIELD = "blng__InvoiceRunStatusIndex__c"
FIELDS = ("Id", STATUS_FIELD, "OrderId", "Order.AccountId")
PENDING = "Pending Billing"
RESET = "Error"


@dataclass
class Outcome:
    """What a step's work reports back; the measuring around it is `measure`'s job."""

    records: int
    ok: bool
    detail: str = ""


# --- the store, read directly (the reference the API steps are checked against) ----------------------------
def status_counts(store: Store, run_id: str) -> dict[str, int]:
    """Order products linked to the run, by processing status; also checks the mirrored status index."""
    sql = (
        f"SELECT {STATUS_FIELD}, COUNT(*), SUM({INDEX_FIELD} IS NOT {STATUS_FIELD}) FROM OrderItem "  # noqa: S608 - constant identifiers, the run id is bound
        "WHERE blng__InvoiceRun__c = ? AND IsDeleted = 0 GROUP BY 1"
    )
    with store.lock:
        rows = store.conn.execute(sql, (run_id,)).fetchall()
    counts = {str(row[0]): int(row[1]) for row in rows}
    # A status the index does not mirror would be a store bug; count it as a status of its own so it shows.
    stale = sum(int(row[2] or 0) for row in rows)
    if stale:
        counts["<index not mirrored>"] = stale
    return counts


def state_check(store: Store, run_id: str, expected: str, total: int) -> tuple[bool, str]:
    counts = status_counts(store, run_id)
    return counts == {expected: total}, f"store: {counts}"


# --- the API steps --------------------------------------------------------------------------------------------
def soql(run_id: str) -> str:
    # The run id comes from the seed, never from input: no quoting needed beyond the literal.
    return f"SELECT {', '.join(FIELDS)} FROM OrderItem WHERE blng__InvoiceRun__c = '{run_id}'"  # noqa: S608


def rest_query(sf: Salesforce, query: str, ids: list[str]) -> Outcome:
    """query, then queryMore until done; fills `ids` for the write steps."""
    headers = {"Sforce-Query-Options": f"batchSize={QUERY_BATCH}"}
    page = sf.query(query, headers=headers)
    pages = 1
    total = int(page["totalSize"])
    missing_account = 0
    while True:
        for record in page["records"]:
            ids.append(record["Id"])
            order = record.get("Order") or {}
            if not order.get("AccountId"):
                missing_account += 1
        if page["done"]:
            break
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True, headers=headers)
        pages += 1
    ok = len(ids) == total and len(set(ids)) == total and missing_account == 0 and total > 0
    return Outcome(len(ids), ok, f"pages={pages} totalSize={total} no Order.AccountId={missing_account}")


def order_items_bulk2(sf: Salesforce) -> SFBulk2Type:
    # simple-salesforce types `sf.bulk2` as a union of its handlers; narrow it to the Bulk API 2.0 one.
    handler = sf.bulk2
    assert isinstance(handler, SFBulk2Handler)
    return handler.OrderItem


def bulk_query(sf: Salesforce, query: str, expected: list[str], wait: int) -> Outcome:
    pages = 0
    seen: set[str] = set()
    rows = 0
    missing_account = 0
    for page in order_items_bulk2(sf).query(query, wait=wait):
        assert isinstance(page, str)  # the generator yields each result page's CSV text
        pages += 1
        for row in csv.DictReader(io.StringIO(page)):
            rows += 1
            seen.add(row["Id"])
            if not row["Order.AccountId"]:
                missing_account += 1
    ok = rows == len(expected) and seen == set(expected) and missing_account == 0
    return Outcome(rows, ok, f"result pages={pages} same ids as REST={seen == set(expected)}")


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def composite_body(version: str, ids: list[str], status: str) -> dict[str, Any]:
    """One composite call: up to 5 PATCH sObject Collections subrequests of up to 200 records each."""
    subrequests = [
        {
            "method": "PATCH",
            "url": f"/services/data/v{version}/composite/sobjects",
            "referenceId": f"collection{index}",
            "body": {
                "allOrNone": False,
                "records": [{"attributes": {"type": "OrderItem"}, "id": rid, STATUS_FIELD: status} for rid in chunk],
            },
        }
        for index, chunk in enumerate(_chunks(ids, COLLECTION_RECORDS))
    ]
    return {"allOrNone": False, "compositeRequest": subrequests}


def composite_update(sf: Salesforce, org: LocalOrg, run_id: str, ids: list[str]) -> Outcome:
    failed = calls = 0
    for call_ids in _chunks(ids, COLLECTION_RECORDS * COLLECTIONS_PER_CALL):
        answer = sf.restful("composite", method="POST", json=composite_body(API_VERSION, call_ids, PENDING))
        calls += 1
        for sub in answer["compositeResponse"] if answer else []:
            if sub["httpStatusCode"] != 200:
                failed += COLLECTION_RECORDS
                continue
            failed += sum(1 for result in sub["body"] if not result["success"])
    state_ok, state = state_check(org.store, run_id, PENDING, len(ids))
    ok = failed == 0 and state_ok
    return Outcome(len(ids), ok, f"composite calls={calls} failed rows={failed} {state}")


def write_reset_csv(path: Path, ids: list[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        # LF line endings: the job is created with simple-salesforce's default lineEnding=LF, and the org
        # fails a job whose data does not match it.
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["Id", STATUS_FIELD])
        writer.writerows([rid, RESET] for rid in ids)


def bulk_update(sf: Salesforce, csv_path: Path, wait: int, jobs: list[str]) -> Outcome:
    results = order_items_bulk2(sf).update(csv_file=str(csv_path), wait=wait)
    processed = sum(int(result["numberRecordsProcessed"]) for result in results)
    failed = sum(int(result["numberRecordsFailed"]) for result in results)
    jobs.extend(str(result["job_id"]) for result in results)
    return Outcome(processed, failed == 0, f"jobs={len(results)} failed rows={failed}")


def server_seconds(sf: Salesforce, jobs: list[str]) -> float:
    """The org's own processing time of ingest jobs (totalProcessingTime), without the client's polling."""
    total_ms = 0
    for job_id in jobs:
        info = sf.restful(f"jobs/ingest/{job_id}") or {}
        total_ms += int(info.get("totalProcessingTime", 0))
    return total_ms / 1000.0
