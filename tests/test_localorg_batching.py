"""What the local org reads once per Bulk API batch instead of once per row, and why each row still sees what it saw.

A batch reads its rows' lock chains together before it locks them (`Store.lock_chains`) and, inside its
transaction, what its writes check (`records.BatchReads`). Each read ahead must answer as the row-by-row read
did: a change committed by another connection before the batch, a re-parent committed by a request the batch
waited for, a record the batch itself wrote or created, all still reach the rows after them.
"""

from __future__ import annotations

import csv
import io
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce

from sfcleanup import ids
from sfcleanup.localorg import adapter, bulk, idgen, records
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.locks import LockManager
from sfcleanup.localorg.records import BatchReads, RowFailure
from sfcleanup.localorg.store import Store
from tests.support import sobject_spec

ACCOUNT, ORDER, ORDER_ITEM = sobject_spec("Account"), sobject_spec("Order"), sobject_spec("OrderItem")
INVOICE, LINE = sobject_spec("blng__Invoice__c"), sobject_spec("blng__InvoiceLine__c")
STATUS = "blng__InvoiceRunProcessingStatus__c"
HOLDER, OTHER = 9_001, 9_002  # lock owners of the test's own, apart from the org's request numbers


class Orders:
    """Two accounts; an order on the first with `items` order products."""

    def __init__(self, store: Store, items: int = 2) -> None:
        self.first = store.insert(ACCOUNT, {"Name": "First"})
        self.second = store.insert(ACCOUNT, {"Name": "Second"})
        self.order = store.insert(ORDER, {"Name": "O-1", "AccountId": self.first, "Status": "Draft"})
        self.items = [
            store.insert(ORDER_ITEM, {"OrderId": self.order, "Quantity": 1.0, STATUS: "Error"}) for _ in range(items)
        ]


def _bulk_update(org: LocalOrg, item_ids: list[str]) -> dict[str, str]:
    """One Bulk API 2.0 update job (one batch) setting these order products to Pending Billing: error by id."""
    session = adapter.mount(requests.Session(), org)
    sf: Any = Salesforce(instance_url=org.instance_url, session_id=org.access_token, session=session)
    [result] = sf.bulk2.OrderItem.update(records=[{"Id": i, STATUS: "Pending Billing"} for i in item_ids], wait=0)
    response = session.get(
        f"{org.instance_url}/services/data/v62.0/jobs/ingest/{result['job_id']}/failedResults/",
        headers={"Authorization": f"Bearer {org.access_token}"},
    )
    return {row["sf__Id"]: row["sf__Error"].split(":")[0] for row in csv.DictReader(io.StringIO(response.text))}


# --- lock chains read together -------------------------------------------------------------------------------
def test_chains_read_together_answer_as_reading_each_one_does() -> None:
    """Records, ancestors, a missing record and a 15-character id: the same chains as `lock_keys` one at a time."""
    store = Store()
    data = Orders(store)
    missing = idgen.record_id(ORDER_ITEM.key_prefix, 999)
    wanted = [
        (ORDER_ITEM, data.items[0]),
        (ORDER_ITEM, data.items[1][:15]),
        (ORDER, data.order),
        (ACCOUNT, data.first),
        (ORDER_ITEM, missing),
        (ORDER_ITEM, data.items[0]),
    ]
    alone = Store()
    Orders(alone)  # the same rows, so the same ids, read one at a time with nothing cached ahead
    batch = store.lock_chains(wanted)
    answers = [batch.keys(spec, record_id) for spec, record_id in wanted]
    assert answers == [records.lock_keys(spec, record_id, alone) for spec, record_id in wanted]
    assert answers[0] == [data.items[0], data.order, data.first]
    assert answers[1] == [data.items[1][:15], data.order, data.first]
    assert answers[4] == [missing]


def test_chains_read_together_refuse_an_invalid_id_as_one_read_does() -> None:
    with pytest.raises(ids.InvalidId):
        Store().lock_chains([(ORDER_ITEM, "802-bad-id-at-all")])


def test_a_chain_re_parented_after_the_batch_read_it_is_read_again_before_it_is_locked() -> None:
    """A re-parent between the batch's read and a row's lock reaches that row, as reading its chain then did."""
    store = Store()
    data = Orders(store)
    batch = store.lock_chains([(ORDER_ITEM, item) for item in data.items])
    assert batch.keys(ORDER_ITEM, data.items[0]) == [data.items[0], data.order, data.first]
    store.update(ORDER, data.order, {"AccountId": data.second})
    assert batch.keys(ORDER_ITEM, data.items[1]) == [data.items[1], data.order, data.second]


def test_a_record_created_after_the_batch_read_its_missing_row_gets_its_chain() -> None:
    """A record with no row when the batch read (never cached) is read again once one with its id exists."""
    store = Store()
    data = Orders(store, items=0)
    coming = idgen.record_id(ORDER_ITEM.key_prefix, 1)
    batch = store.lock_chains([(ORDER_ITEM, coming), (ORDER_ITEM, coming)])
    assert batch.keys(ORDER_ITEM, coming) == [coming]
    assert store.insert(ORDER_ITEM, {"OrderId": data.order, "Quantity": 1.0}) == coming
    assert batch.keys(ORDER_ITEM, coming) == [coming, data.order, data.first]


def test_a_re_parent_committed_by_another_connection_reaches_the_next_batch(tmp_path: Path) -> None:
    """Another process's commit is looked for once per batch, not per row: the next batch still sees it."""
    path = tmp_path / "org.sqlite"
    first = Store(path)
    data = Orders(first, items=1)
    org = LocalOrg(Store(path), faults=FaultProfile(lock_wait_s=0.0))
    try:
        assert _bulk_update(org, data.items) == {}  # its chain (item, order, first account) is now cached
        first.update(ORDER, data.order, {"AccountId": data.second})
        assert org.locks.acquire(HOLDER, [data.second])
        assert _bulk_update(org, data.items) == {data.items[0]: "UNABLE_TO_LOCK_ROW"}
        org.locks.release_all(HOLDER)
        assert org.locks.acquire(HOLDER, [data.first])
        assert _bulk_update(org, data.items) == {}
    finally:
        bulk.close(org)
        first.close()


def test_a_bulk_row_locks_the_parent_a_request_it_waited_for_committed() -> None:
    """The batch waits on its first row; meanwhile the order moves to the second account, which another owner
    holds: the second row, locked after the wait, must contend on the second account, not the first."""
    org = LocalOrg(Store(), faults=FaultProfile(lock_wait_s=2.0))
    data = Orders(org.store)
    waiting = threading.Event()
    # The lock clock jumps past the request's wait budget as the first row is let go: the second row, still
    # contended, times out at once instead of after the budget's real seconds (a row that is not contended is
    # taken whatever the clock says, so an uncontended second row would still succeed and fail the test).
    jump = [0.0]
    org.locks = LockManager(2.0, on_wait=waiting.set, monotonic=lambda: time.monotonic() + jump[0])
    assert org.locks.acquire(HOLDER, [data.items[0]])
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            job = pool.submit(_bulk_update, org, data.items)
            assert waiting.wait(10), "the batch never waited for its first row"
            org.store.update(ORDER, data.order, {"AccountId": data.second})
            assert org.locks.acquire(OTHER, [data.second])
            jump[0] = 60.0
            org.locks.release_all(HOLDER)
            failed = job.result(timeout=30)
    finally:
        bulk.close(org)
    assert failed.get(data.items[1]) == "UNABLE_TO_LOCK_ROW"


def test_bulk_lock_failures_are_the_seeded_draws_one_per_row_in_upload_order() -> None:
    """Reading chains ahead draws nothing: row k fails exactly when the seed's k-th draw falls under the rate."""
    seed, rate = 11, 0.3
    org = LocalOrg(Store(), faults=FaultProfile(seed=seed, lock_failure_rate=rate))
    data = Orders(org.store, items=40)
    try:
        failed = _bulk_update(org, data.items)
    finally:
        bulk.close(org)
    draws = random.Random(seed)
    expected = {item: "UNABLE_TO_LOCK_ROW" for item in data.items if draws.random() < rate}
    assert failed == expected
    assert 0 < len(expected) < len(data.items)


# --- what writes read, read ahead ----------------------------------------------------------------------------
def _billing(store: Store) -> tuple[str, list[str]]:
    account = store.insert(ACCOUNT, {"Name": "A"})
    invoice = store.insert(INVOICE, {"Name": "INV", "blng__Account__c": account, "blng__InvoiceStatus__c": "Draft"})
    lines = [
        store.insert(LINE, {"Name": f"L{n}", "blng__Invoice__c": invoice, "blng__InvoiceLineStatus__c": "Draft"})
        for n in range(2)
    ]
    return invoice, lines


def test_a_record_written_twice_in_one_batch_is_checked_against_its_first_write() -> None:
    """Posted by the first write, the invoice refuses the second, though both were read ahead as Draft."""
    store = Store()
    invoice, _ = _billing(store)
    with store.transaction():
        reads = BatchReads(store, [(INVOICE, invoice), (INVOICE, invoice)])
        records.update(INVOICE, invoice, {"blng__InvoiceStatus__c": "Posted"}, store, reads)
        with pytest.raises(RowFailure) as failure:
            records.update(INVOICE, invoice, {"blng__InvoiceStatus__c": "Cancelled"}, store, reads)
    assert failure.value.error.message == "A posted invoice can't be modified."


def test_a_line_is_checked_against_its_invoice_as_written_earlier_in_the_same_transaction() -> None:
    """An invoice read once per transaction only where the transaction writes no invoice."""
    store = Store()
    invoice, lines = _billing(store)
    with store.transaction():
        reads = BatchReads(store, [(LINE, lines[0]), (INVOICE, invoice), (LINE, lines[1])])
        records.update(LINE, lines[0], {"blng__InvoiceLineStatus__c": "Cancelled"}, store, reads)
        records.update(INVOICE, invoice, {"blng__InvoiceStatus__c": "Posted"}, store, reads)
        with pytest.raises(RowFailure) as failure:
            records.update(LINE, lines[1], {"blng__InvoiceLineStatus__c": "Cancelled"}, store, reads)
    assert failure.value.error.message == "Invoice lines on a posted invoice can't be modified."


def test_a_record_created_earlier_in_the_batch_can_be_updated_by_a_later_row() -> None:
    """A record with no row when the batch read ahead is read again when written, not refused as missing."""
    store = Store()
    data = Orders(store, items=0)
    coming = idgen.record_id(ORDER_ITEM.key_prefix, 1)
    with store.transaction():
        reads = BatchReads(store, [(ORDER_ITEM, None), (ORDER_ITEM, coming)])
        assert records.create(ORDER_ITEM, {"OrderId": data.order, "Quantity": 1}, store, reads) == coming
        records.update(ORDER_ITEM, coming, {"Quantity": 2}, store, reads)
    row = store.get(ORDER_ITEM, coming)
    assert row is not None and row["Quantity"] == 2.0


def test_read_ahead_refuses_deleted_and_missing_records_as_one_read_does() -> None:
    store = Store()
    data = Orders(store)
    store.mark_deleted(ORDER_ITEM, data.items[0])
    missing = idgen.record_id(ORDER_ITEM.key_prefix, 999)
    with store.transaction():
        reads = BatchReads(store, [(ORDER_ITEM, data.items[0]), (ORDER_ITEM, missing)])
        codes = []
        for record_id in (data.items[0], missing):
            with pytest.raises(RowFailure) as failure:
                records.update(ORDER_ITEM, record_id, {"Quantity": 2}, store, reads)
            codes.append(failure.value.error.status_code)
    assert codes == ["ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"]


# --- stamps ---------------------------------------------------------------------------------------------------
def test_stamps_follow_the_clock_second_by_second_in_either_direction() -> None:
    """Formatting once per second still gives every write the second its clock says, even a clock set back."""
    start = datetime(2026, 11, 26, 7, 11, 15, 900_000, tzinfo=UTC)
    times = iter([start, start + timedelta(milliseconds=50), start + timedelta(milliseconds=150), start])
    store = Store(clock=lambda: next(times))
    stamps: list[Any] = [store.now() for _ in range(4)]
    assert stamps == [
        "2026-11-26T07:11:15.000+0000",
        "2026-11-26T07:11:15.000+0000",
        "2026-11-26T07:11:16.000+0000",
        "2026-11-26T07:11:15.000+0000",
    ]
