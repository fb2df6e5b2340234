"""Record locks in the local org: concurrent collections PATCHes of children of one account contend on it.

A write locks the record and its master-detail ancestors (invoice line -> invoice -> account) until its request
ends; the org's simulated write latency (`LatencyModel.write_ms_per_record`) is spent while those locks are held.
The org's `sleep` is wrapped so a test knows when the first request holds its locks before it sends the second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from sfcleanup.localorg import adapter
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.locks import LockManager
from sfcleanup.localorg.store import Store
from tests.support import sobject_spec

LINES_PER_INVOICE = 3


ACCOUNT, INVOICE, LINE = sobject_spec("Account"), sobject_spec("blng__Invoice__c"), sobject_spec("blng__InvoiceLine__c")


@dataclass
class Holding:
    """The org's sleep, instrumented: it is called while a request holds its locks, after its writes."""

    started: threading.Event = field(default_factory=threading.Event)
    sleeping: int = 0
    most_at_once: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.sleeping += 1
            self.most_at_once = max(self.most_at_once, self.sleeping)
        self.started.set()
        time.sleep(seconds)
        with self._lock:
            self.sleeping -= 1


@dataclass
class Billing:
    """Two accounts: A with two Draft invoices, B with one; each invoice has three Draft lines."""

    org: LocalOrg
    holding: Holding
    lines: dict[str, list[str]]  # "A1", "A2", "B1" -> line ids


def billing(profile: FaultProfile, lines_per_invoice: int = LINES_PER_INVOICE) -> Billing:
    store = Store()
    holding = Holding()
    org = LocalOrg(store, faults=profile, sleep=holding)
    lines: dict[str, list[str]] = {}
    for account_name, invoices in (("A", 2), ("B", 1)):
        account = store.insert(ACCOUNT, {"Name": f"Account {account_name}"})
        for number in range(1, invoices + 1):
            invoice = store.insert(
                INVOICE,
                {"Name": f"INV-{account_name}{number}", "blng__Account__c": account, "blng__InvoiceStatus__c": "Draft"},
            )
            lines[f"{account_name}{number}"] = [
                store.insert(
                    LINE,
                    {
                        "Name": f"IL-{account_name}{number}-{n}",
                        "blng__Invoice__c": invoice,
                        "blng__InvoiceLineStatus__c": "Draft",
                    },
                )
                for n in range(lines_per_invoice)
            ]
    return Billing(org, holding, lines)


def client(org: LocalOrg) -> Salesforce:
    session = requests.Session()
    adapter.mount(session, org)
    return Salesforce(instance_url=org.instance_url, session_id=org.access_token, session=session)


def cancel_lines(org: LocalOrg, line_ids: list[str]) -> list[dict[str, Any]]:
    """One collections PATCH cancelling these lines, from its own client; returns the row results."""
    records = [
        {"attributes": {"type": LINE.name}, "id": line_id, "blng__InvoiceLineStatus__c": "Cancelled"}
        for line_id in line_ids
    ]
    results: list[dict[str, Any]] = client(org).restful("composite/sobjects", method="PATCH", json={"records": records})
    return results


def statuses(org: LocalOrg, line_ids: list[str]) -> list[str]:
    found = [org.store.get(LINE, line_id) for line_id in line_ids]
    return [row["blng__InvoiceLineStatus__c"] for row in found if row is not None]


def while_first_holds(
    setup: Billing, first: list[str], second: Callable[[], Any]
) -> tuple[list[dict[str, Any]], Any, float]:
    """Send `first` in a thread; once it holds its locks, run `second`; returns both answers and second's time."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        holder: Future[list[dict[str, Any]]] = pool.submit(cancel_lines, setup.org, first)
        assert setup.holding.started.wait(5), "the first request never reached its write latency"
        started = time.monotonic()
        answer = second()
        elapsed = time.monotonic() - started
        return holder.result(timeout=10), answer, elapsed


def codes(results: list[dict[str, Any]]) -> list[str | None]:
    return [r["errors"][0]["statusCode"] if r["errors"] else None for r in results]


# --- contention on one account --------------------------------------------------------------------------------
def test_lines_of_one_account_contend_and_fail_after_a_short_lock_wait() -> None:
    """Lines of another invoice of the same account fail with UNABLE_TO_LOCK_ROW while the first request holds."""
    setup = billing(FaultProfile(latency=LatencyModel(write_ms_per_record=150), lock_wait_s=0.05))
    first_results, second_results, _ = while_first_holds(
        setup, setup.lines["A1"], lambda: cancel_lines(setup.org, setup.lines["A2"])
    )
    assert all(r["success"] for r in first_results)
    assert codes(second_results) == ["UNABLE_TO_LOCK_ROW"] * LINES_PER_INVOICE
    assert [r["id"] for r in second_results] == setup.lines["A2"]
    assert all(r["errors"][0]["message"].startswith("unable to obtain exclusive access") for r in second_results)
    assert statuses(setup.org, setup.lines["A1"]) == ["Cancelled"] * LINES_PER_INVOICE
    assert statuses(setup.org, setup.lines["A2"]) == ["Draft"] * LINES_PER_INVOICE
    assert setup.org.stats.get("lock_failures") == LINES_PER_INVOICE


def test_a_request_waits_for_locks_once_not_once_per_row() -> None:
    """A request's lock wait is one budget: when the holder keeps the account longer, all its rows fail together."""
    # The holder keeps account A for 3 x 100 ms; ten rows waiting 50 ms each would outlast it and succeed late.
    setup = billing(FaultProfile(latency=LatencyModel(write_ms_per_record=100), lock_wait_s=0.05), lines_per_invoice=10)
    _, second_results, elapsed = while_first_holds(
        setup, setup.lines["A1"][:3], lambda: cancel_lines(setup.org, setup.lines["A2"])
    )
    assert codes(second_results) == ["UNABLE_TO_LOCK_ROW"] * 10
    assert statuses(setup.org, setup.lines["A2"]) == ["Draft"] * 10
    assert elapsed < 0.25  # one 50 ms wait, not ten


def test_single_record_patch_on_a_locked_account_is_a_400_unable_to_lock_row() -> None:
    """A single-record PATCH blocked by a held account lock answers 400 with errorCode UNABLE_TO_LOCK_ROW."""
    setup = billing(FaultProfile(latency=LatencyModel(write_ms_per_record=150), lock_wait_s=0.05))
    blocked = setup.lines["A2"][0]

    def patch_one() -> Any:
        try:
            client(setup.org).blng__InvoiceLine__c.update(blocked, {"blng__InvoiceLineStatus__c": "Cancelled"})
        except SalesforceMalformedRequest as refused:
            return refused
        return None

    _, refused, _ = while_first_holds(setup, setup.lines["A1"], patch_one)
    assert isinstance(refused, SalesforceMalformedRequest) and refused.status == 400
    assert refused.content[0]["errorCode"] == "UNABLE_TO_LOCK_ROW"
    assert statuses(setup.org, [blocked]) == ["Draft"]


def test_lines_of_one_account_wait_and_succeed_with_a_long_lock_wait() -> None:
    """With a lock wait longer than the holder's, the second request waits for the account and then succeeds."""
    setup = billing(FaultProfile(latency=LatencyModel(write_ms_per_record=100), lock_wait_s=5.0))
    first_results, second_results, elapsed = while_first_holds(
        setup, setup.lines["A1"], lambda: cancel_lines(setup.org, setup.lines["A2"])
    )
    assert all(r["success"] for r in first_results + second_results)
    assert statuses(setup.org, setup.lines["A1"] + setup.lines["A2"]) == ["Cancelled"] * (2 * LINES_PER_INVOICE)
    assert setup.org.stats.get("lock_waits") == 1  # its first row waited; the rest then held the account
    assert setup.org.stats.get("lock_failures") == 0
    assert elapsed >= 0.2  # it waited for most of the holder's 300 ms before writing


def test_children_of_different_accounts_never_contend() -> None:
    """Concurrent requests on lines of different accounts both succeed, hold their locks at once, never wait."""
    setup = billing(FaultProfile(latency=LatencyModel(write_ms_per_record=150), lock_wait_s=0.05))
    first_results, second_results, _ = while_first_holds(
        setup, setup.lines["A1"], lambda: cancel_lines(setup.org, setup.lines["B1"])
    )
    assert all(r["success"] for r in first_results + second_results)
    assert statuses(setup.org, setup.lines["A1"] + setup.lines["B1"]) == ["Cancelled"] * (2 * LINES_PER_INVOICE)
    assert setup.holding.most_at_once == 2
    assert setup.org.stats.get("lock_waits") == 0 and setup.org.stats.get("lock_failures") == 0


def test_lock_waits_count_only_requests_that_waited() -> None:
    """A request that never waited is not counted in lock_waits although another one waited meanwhile."""
    setup = billing(FaultProfile(latency=LatencyModel(write_ms_per_record=100), lock_wait_s=5.0))
    waiting = threading.Event()
    setup.org.locks = LockManager(5.0, on_wait=waiting.set)
    with ThreadPoolExecutor(max_workers=3) as pool:
        holder = pool.submit(cancel_lines, setup.org, setup.lines["A1"])
        assert setup.holding.started.wait(5)
        waiter = pool.submit(cancel_lines, setup.org, setup.lines["A2"])
        assert waiting.wait(5), "the waiter never blocked on account A"
        free = cancel_lines(setup.org, setup.lines["B1"])
        results = holder.result(timeout=10) + waiter.result(timeout=10) + free
    assert all(r["success"] for r in results)
    assert setup.org.stats.get("lock_waits") == 1


# --- random lock failures -------------------------------------------------------------------------------------
def failure_pattern(seed: int, rate: float) -> tuple[list[bool], Billing]:
    setup = billing(FaultProfile(lock_failure_rate=rate, seed=seed), lines_per_invoice=10)
    line_ids = setup.lines["A1"] + setup.lines["B1"]
    results = cancel_lines(setup.org, line_ids)
    assert codes(results) == [None if r["success"] else "UNABLE_TO_LOCK_ROW" for r in results]
    return [not r["success"] for r in results], setup


def test_random_lock_failures_come_on_top_and_replay_with_the_seed() -> None:
    """lock_failure_rate fails uncontended rows with UNABLE_TO_LOCK_ROW, in the same rows for the same seed."""
    failed, setup = failure_pattern(seed=7, rate=0.3)
    assert 0 < sum(failed) < len(failed)
    line_ids = setup.lines["A1"] + setup.lines["B1"]
    expected = ["Draft" if f else "Cancelled" for f in failed]
    assert statuses(setup.org, line_ids) == expected
    assert setup.org.stats.get("lock_failures") == sum(failed) and setup.org.stats.get("lock_waits") == 0
    assert failure_pattern(seed=7, rate=0.3)[0] == failed
    assert failure_pattern(seed=8, rate=0.3)[0] != failed
    assert not any(failure_pattern(seed=7, rate=0.0)[0])
