"""Behaviour kept by the local org's faster write path: ids, cached lock chains, narrow reads, lock manager.

The id pairs below were worked out by hand from the checksum documented in `sfcleanup/ids.py` (three chunks
of five characters; bit i of a chunk is set when its character i is upper case; the 5-bit number indexes
"A".."Z", "0".."5"), so they check the fast implementation against the definition, not against itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce.api import Salesforce

from sfcleanup import ids
from sfcleanup.localorg import adapter, idgen, records
from sfcleanup.localorg.app import LocalOrg, RequestContext
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.locks import LockManager
from sfcleanup.localorg.records import RowFailure
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.store import Store
from tests.support import sobject_spec

ACCOUNT, ORDER, ORDER_ITEM = sobject_spec("Account"), sobject_spec("Order"), sobject_spec("OrderItem")
INVOICE, LINE = sobject_spec("blng__Invoice__c"), sobject_spec("blng__InvoiceLine__c")


# --- ids ---------------------------------------------------------------------------------------------------
# 15 characters -> 18, with the working: chunk flags (positions of upper-case letters) -> value -> character.
ID_PAIRS = [
    # "001A0": A at 3 -> 8 -> I; "00000" -> 0 -> A; "6Vm9r": V at 1 -> 2 -> C
    ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
    # "a1AZZ": 2,3,4 -> 28 -> "2"; "ZZZab": 0,1,2 -> 7 -> H; "cdeXY": 3,4 -> 24 -> Y
    ("a1AZZZZZabcdeXY", "a1AZZZZZabcdeXY2HY"),
    # every character upper case: 31 in each chunk -> "5"
    ("ABCDEFGHIJKLMNO", "ABCDEFGHIJKLMNO555"),
    # no upper case at all -> A A A
    ("0015g000000abcd", "0015g000000abcdAAA"),
    # "801Qy": Q at 3 -> 8 -> I; "00000" -> A; "Ab1Cd": 0,3 -> 9 -> J
    ("801Qy00000Ab1Cd", "801Qy00000Ab1CdIAJ"),
]


@pytest.mark.parametrize(("id15", "id18"), ID_PAIRS)
def test_to18_and_checksum_agree_with_hand_computed_pairs(id15: str, id18: str) -> None:
    """The 18-character form of a 15-character id is the one the documented checksum gives."""
    assert ids.checksum(id15) == id18[15:]
    assert ids.to18(id15) == id18
    assert ids.to18(id18) == id18
    assert ids.is_valid(id18) and ids.is_valid(id15)


@pytest.mark.parametrize(("id15", "id18"), ID_PAIRS)
def test_a_wrong_checksum_is_refused_naming_the_right_one(id15: str, id18: str) -> None:
    """An 18-character id whose last three characters disagree with the checksum is invalid, and says why."""
    wrong = id18[:15] + ("B" if id18[15] != "B" else "C") + id18[16:]
    with pytest.raises(ids.InvalidId, match=f"checksum should be '{id18[15:]}'"):
        ids.to18(wrong)
    assert not ids.is_valid(wrong)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("001A0000006Vm9", "14 characters"),
        ("001A0000006Vm9-", "contains '-'"),
        ("001A0000006Vm9rIA_", "contains '_'"),
        ("001é000000Vm9rx", "contains 'é'"),
        ("", "0 characters"),
    ],
)
def test_to18_refuses_bad_lengths_and_characters(value: str, reason: str) -> None:
    """Ids of the wrong length or with characters outside 0-9, A-Z, a-z are refused with the reason."""
    with pytest.raises(ids.InvalidId, match=reason):
        ids.to18(value)


def test_checksum_counts_only_ascii_capitals() -> None:
    """Characters outside the id alphabet count as lower case, as the character-by-character definition says."""
    assert ids.checksum("É" * 15) == "AAA"
    assert ids.checksum("ÉAÉÉÉ" + "0" * 10) == "CAA"
    # A short string has short chunks: only the characters present count.
    assert ids.checksum("AB") == "DAA"


@pytest.mark.parametrize(
    ("prefix", "number", "expected"),
    [
        ("001", 1, "0015g0000000001AAA"),
        ("001", 35, "0015g000000000ZAAQ"),  # digit 35 is Z, at position 4 of the last chunk -> 16 -> Q
        ("001", 36, "0015g000000000aAAA"),
        ("001", 62, "0015g0000000010AAA"),
        ("001", 3843, "0015g00000000zzAAA"),
        ("001", 3844, "0015g0000000100AAA"),
        ("a1B", 61, "a1B5g000000000zEAA"),  # "a1B5g": B at 2 -> 4 -> E
        ("001", 62**8, "0015g0100000000AAA"),
        ("001", 62**9 - 1, "0015g0zzzzzzzzzAAA"),
    ],
)
def test_make_writes_the_counter_in_base_62_with_its_checksum(prefix: str, number: int, expected: str) -> None:
    """Generated ids are prefix, "5g0", nine base-62 digits and the checksum, at every digit boundary."""
    assert ids.make(prefix, number) == expected
    assert ids.to18(expected[:15]) == expected


@pytest.mark.parametrize("number", [-1, 62**9])
def test_make_refuses_numbers_outside_the_counter(number: int) -> None:
    """A record number that does not fit nine base-62 digits is an error, not a wrapped id."""
    with pytest.raises(ValueError, match="out of range"):
        ids.make("001", number)


# --- a small org -------------------------------------------------------------------------------------------
class Orders:
    """Two accounts; an order on the first with one order product."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.first = store.insert(ACCOUNT, {"Name": "First"})
        self.second = store.insert(ACCOUNT, {"Name": "Second"})
        self.order = store.insert(ORDER, {"Name": "O-1", "AccountId": self.first, "Status": "Draft"})
        self.item = store.insert(ORDER_ITEM, {"OrderId": self.order, "Quantity": 1.0, "UnitPrice": 10.0})

    def chain(self) -> list[str]:
        return records.lock_keys(ORDER_ITEM, self.item, self.store)


def _connect(org: LocalOrg) -> Salesforce:
    session = requests.Session()
    adapter.mount(session, org)
    return Salesforce(instance_url=org.instance_url, session_id=org.access_token, session=session)


HOLDER, WRITER = 9_001, 9_002  # lock owners of the test's own, apart from the org's request numbers


def _lock_row(org: LocalOrg, spec: SObjectSpec, record_id: str) -> Any:
    """Lock one row for a fresh request, then let go; returns the row error or None."""
    ctx = RequestContext(owner=WRITER, version="62.0")
    try:
        return org.lock_row(ctx, spec, record_id)
    finally:
        org.locks.release_all(ctx.owner)


# --- lock chains -------------------------------------------------------------------------------------------
def test_lock_chain_follows_an_order_re_parented_through_patch() -> None:
    """After PATCHing an Order's AccountId, its order products lock the new account and no longer the old one."""
    org = LocalOrg(Store(), faults=FaultProfile(lock_wait_s=0.0))
    data = Orders(org.store)
    assert data.chain() == [data.item, data.order, data.first]  # computed, and now cached

    _connect(org).restful(f"sobjects/Order/{data.order}", method="PATCH", json={"AccountId": data.second})

    assert data.chain() == [data.item, data.order, data.second]
    assert records.lock_keys(ORDER, data.order, org.store) == [data.order, data.second]
    # Another request holding the new account blocks a write to the product; holding the old one does not.
    assert org.locks.acquire(HOLDER, [data.second])
    error = _lock_row(org, ORDER_ITEM, data.item)
    assert error is not None and error.status_code == "UNABLE_TO_LOCK_ROW"
    org.locks.release_all(HOLDER)
    assert org.locks.acquire(HOLDER, [data.first])
    assert _lock_row(org, ORDER_ITEM, data.item) is None
    org.locks.release_all(HOLDER)


def test_lock_chain_follows_a_lock_parent_changed_with_plain_sql() -> None:
    """A change made straight in SQLite (as a state file edit would) also reaches the lock chain."""
    store = Store()
    data = Orders(store)
    assert data.chain()[-1] == data.first
    with store.lock:
        store.conn.execute('UPDATE "Order" SET AccountId = ? WHERE Id = ?', (data.second, data.order))
    assert data.chain() == [data.item, data.order, data.second]
    with store.lock:
        store.conn.execute('UPDATE "Order" SET AccountId = NULL WHERE Id = ?', (data.order,))
    assert data.chain() == [data.item, data.order]


def test_lock_chain_of_a_re_parent_rolled_back_is_the_original() -> None:
    """A chain read inside a transaction that rolls back does not outlive the rollback."""
    store = Store()
    data = Orders(store)
    with pytest.raises(RuntimeError), store.transaction():
        store.update(ORDER, data.order, {"AccountId": data.second})
        assert data.chain() == [data.item, data.order, data.second]
        raise RuntimeError("roll back")
    assert data.chain() == [data.item, data.order, data.first]


def test_lock_chain_of_a_re_parent_in_a_rolled_back_savepoint_is_the_original() -> None:
    """A nested transaction (savepoint) that rolls back leaves the chain as the outer transaction sees it."""
    store = Store()
    data = Orders(store)
    with store.transaction():
        with pytest.raises(RuntimeError), store.transaction():
            store.update(ORDER, data.order, {"AccountId": data.second})
            assert data.chain()[-1] == data.second
            raise RuntimeError("roll back the savepoint")
        assert data.chain()[-1] == data.first
    assert data.chain()[-1] == data.first


def test_lock_chain_of_an_id_given_to_a_new_record_after_a_hard_delete() -> None:
    """A hard-deleted record's id, handed out again, locks the new record's parents, not the old one's."""
    store = Store()
    data = Orders(store)
    other_order = store.insert(ORDER, {"Name": "O-2", "AccountId": data.second, "Status": "Draft"})
    assert data.chain() == [data.item, data.order, data.first]
    with store.lock:  # what a Bulk API hardDelete does after marking the row deleted
        store.conn.execute('DELETE FROM "OrderItem" WHERE Id = ?', (data.item,))
    assert data.chain() == [data.item]
    reused = store.insert(ORDER_ITEM, {"OrderId": other_order, "Quantity": 2.0, "UnitPrice": 5.0})
    assert reused == data.item
    assert data.chain() == [data.item, other_order, data.second]


def test_lock_chain_of_a_missing_record_is_not_kept_until_it_exists() -> None:
    """Asking for the chain of an id no record has yet does not stop it from growing once the record exists."""
    store = Store()
    data = Orders(store)
    next_id = idgen.record_id(ORDER_ITEM.key_prefix, 2)
    assert records.lock_keys(ORDER_ITEM, next_id, store) == [next_id]
    assert store.insert(ORDER_ITEM, {"OrderId": data.order, "Quantity": 1.0, "UnitPrice": 1.0}) == next_id
    assert records.lock_keys(ORDER_ITEM, next_id, store) == [next_id, data.order, data.first]


def test_lock_chain_of_a_15_character_id_keeps_its_spelling_and_follows_changes() -> None:
    """A 15-character id is locked under the spelling given, and its chain still follows a re-parent."""
    store = Store()
    data = Orders(store)
    short = data.order[:15]
    assert records.lock_keys(ORDER, short, store) == [short, data.first]
    store.update(ORDER, data.order, {"AccountId": data.second})
    assert records.lock_keys(ORDER, short, store) == [short, data.second]


def test_lock_chain_sees_a_re_parent_committed_by_another_connection(tmp_path: Path) -> None:
    """Two stores on one state file: a re-parent committed by one reaches the other's lock chains."""
    path = tmp_path / "org.sqlite"
    first = Store(path)
    data = Orders(first)
    second = Store(path)
    assert records.lock_keys(ORDER_ITEM, data.item, second)[-1] == data.first
    first.update(ORDER, data.order, {"AccountId": data.second})
    assert records.lock_keys(ORDER_ITEM, data.item, second) == [data.item, data.order, data.second]
    first.close()
    second.close()


def test_lock_chain_of_an_invalid_id_is_an_invalid_id_error() -> None:
    """The chain walk validates ids as reading a record does."""
    with pytest.raises(ids.InvalidId):
        records.lock_keys(ORDER_ITEM, "802-bad-id-at-all", Store())


# --- what a write reads ------------------------------------------------------------------------------------
def test_writing_a_deleted_record_fails_with_entity_is_deleted() -> None:
    """A deleted record's row fails with ENTITY_IS_DELETED, through collections and in the store's API."""
    org = LocalOrg(Store())
    data = Orders(org.store)
    sf = _connect(org)
    sf.restful(f"sobjects/OrderItem/{data.item}", method="DELETE")
    answer = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"records": [{"attributes": {"type": "OrderItem"}, "id": data.item, "Quantity": 3}]},
    )
    assert answer is not None and answer[0]["success"] is False
    assert answer[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    writes: list[Callable[[], None]] = [
        lambda: records.update(ORDER_ITEM, data.item, {"Quantity": 4}, org.store),
        lambda: records.delete(ORDER_ITEM, data.item, org.store),
    ]
    for write in writes:
        with pytest.raises(RowFailure) as failure:
            write()
        assert failure.value.error.status_code == "ENTITY_IS_DELETED"
    # The deleted row keeps its parents: a write to it still locks them.
    assert data.chain() == [data.item, data.order, data.first]


def test_writing_a_record_that_does_not_exist_fails_with_invalid_cross_reference() -> None:
    """A well-formed id with no record behind it is INVALID_CROSS_REFERENCE_KEY."""
    store = Store()
    Orders(store)
    with pytest.raises(RowFailure) as failure:
        records.update(ORDER_ITEM, ids.make(ORDER_ITEM.key_prefix, 99), {"Quantity": 4}, store)
    assert failure.value.error.status_code == "INVALID_CROSS_REFERENCE_KEY"


def test_lines_of_an_invoice_posted_after_they_were_created_are_frozen() -> None:
    """The package guard still sees the invoice's status, and the line's own, when a write reads only them."""
    store = Store()
    account = store.insert(ACCOUNT, {"Name": "A"})
    invoice = store.insert(INVOICE, {"Name": "INV", "blng__Account__c": account, "blng__InvoiceStatus__c": "Draft"})
    line = store.insert(LINE, {"Name": "L", "blng__Invoice__c": invoice, "blng__InvoiceLineStatus__c": "Draft"})
    records.update(LINE, line, {"blng__InvoiceLineStatus__c": "Error"}, store)
    store.update(INVOICE, invoice, {"blng__InvoiceStatus__c": "Posted"})
    writes: list[Callable[[], None]] = [
        lambda: records.update(LINE, line, {"blng__InvoiceLineStatus__c": "Cancelled"}, store),
        lambda: records.update(INVOICE, invoice, {"blng__InvoiceStatus__c": "Cancelled"}, store),
        lambda: records.delete(LINE, line, store),
    ]
    for write in writes:
        with pytest.raises(RowFailure) as failure:
            write()
        assert failure.value.error.status_code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    found = store.get(LINE, line)
    assert found is not None and found["blng__InvoiceLineStatus__c"] == "Error"


def test_a_bad_value_still_names_the_field_and_the_value() -> None:
    """A value of the wrong type fails with INVALID_TYPE_ON_FIELD_IN_RECORD naming the field and the value."""
    store = Store()
    data = Orders(store)
    with pytest.raises(RowFailure) as failure:
        records.update(ORDER_ITEM, data.item, {"Quantity": "many"}, store)
    assert failure.value.error.status_code == "INVALID_TYPE_ON_FIELD_IN_RECORD"
    assert failure.value.error.fields == ("Quantity",)
    assert "Quantity: value not of required type: many" in failure.value.error.message


# --- the lock manager ----------------------------------------------------------------------------------------
def test_lock_manager_takes_all_keys_or_none() -> None:
    """A request blocked on one key of its set takes none of the others."""
    locks = LockManager(0.0)
    assert locks.try_acquire(1, ["parent"]).acquired
    attempt = locks.try_acquire(2, ["child", "parent"])
    assert not attempt.acquired and locks.timeouts == 1
    # "child" was not taken by the failed attempt: a third request gets it at once, without waiting.
    taken = locks.try_acquire(3, ["child"])
    assert taken.acquired and not taken.waited and taken.waited_s == 0.0


def test_lock_manager_is_re_entrant_and_releases_everything_an_owner_took() -> None:
    """An owner takes its own keys again freely; releasing frees every key it took, in any number of calls."""
    locks = LockManager(0.0)
    assert locks.acquire(1, ["a", "parent"])
    assert locks.acquire(1, ["b", "parent"])
    assert not locks.acquire(2, ["b"])
    locks.release_all(1)
    assert locks.acquire(2, ["a", "b", "parent"])
