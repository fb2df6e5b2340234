"""The three scripted contenders: the clean-up as users write it by hand with simple-salesforce.

- `per_record_loop`: query each object's records, then `sf.<Object>.update(id, {...})` one record per call, in
  the safe order.
- `bulk2_update`: the same queries, then one `sf.bulk2.<Object>.update(records=[...])` per object with
  simple-salesforce's defaults (its `None` becomes an empty CSV cell, which Salesforce ignores on update).
- `serial_collections`: the same queries, then `PATCH composite/sobjects` with 200 records per call, one call
  at a time; failed rows are counted, not retried.

They stand for a plain user script: no posted guard (harmless on the `scale` scenario, whose posted invoices'
sources are Completed and so outside every filter), no retries, one record's error does not stop the loop.
`limit` (per_record_loop and serial_collections) stops writing after that many records but still runs every
object's query. Each returns a `Tally`; `bench.contenders` runs them from its command line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simple_salesforce.api import Salesforce

# The clean-up as the package documents it (DOMAIN.md section 1), written out here rather than imported from
# sfcleanup.billing: a user script does not import the tool it competes with, and the harness's own check must
# not share a mistake with the code under test. Safe order: what could be billed is cancelled first.
# (object, run link field, status field, from states, to state, fields nulled)
Rule = tuple[str, str, str, tuple[str, ...], str, tuple[str, ...]]
RUN_CLEARED = ("blng__InvoiceRun__c", "blng__InvoiceRunStartDate__c")
RULES: tuple[Rule, ...] = (
    ("blng__InvoiceLine__c", "blng__InvoiceRun__c", "blng__InvoiceLineStatus__c", ("Draft", "Error"), "Cancelled", ()),
    (
        "blng__Invoice__c",
        "blng__InvoiceRunCreatedBy__c",
        "blng__InvoiceStatus__c",
        ("Draft", "Error", "Initiated"),
        "Cancelled",
        (),
    ),
    (
        "blng__UsageSummary__c",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunProcessingStatus__c",
        ("Error", "In Progress"),
        "Pending Billing",
        RUN_CLEARED,
    ),
    (
        "OrderItem",
        "blng__InvoiceRun__c",
        "blng__InvoiceRunProcessingStatus__c",
        ("Error", "In Progress"),
        "Pending Billing",
        RUN_CLEARED,
    ),
)
COLLECTION_SIZE = 200


@dataclass
class Tally:
    """What a scripted contender did; `update_s` and `update_calls` cover the writes only (for extrapolation)."""

    name: str
    queried: int = 0
    sent: int = 0
    updated: int = 0
    failed: int = 0
    query_s: float = 0.0
    update_s: float = 0.0
    update_calls: int = 0
    stopped_early: bool = False
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, code: str, count: int = 1) -> None:
        self.failed += count
        self.errors[code] = self.errors.get(code, 0) + count

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "queried": self.queried,
            "sent": self.sent,
            "updated": self.updated,
            "failed": self.failed,
            "query_s": round(self.query_s, 3),
            "update_s": round(self.update_s, 3),
            "update_calls": self.update_calls,
            "stopped_early": self.stopped_early,
            "errors": self.errors,
        }


# --- the scripted contenders (simple-salesforce, as a user writes it) ------------------------------------------
def connect(instance_url: str, token: str, ca_bundle: str | None) -> Salesforce:
    # Imported here: the sfcleanup wrapper must not pay for simple-salesforce in its own peak RSS.
    import requests
    from simple_salesforce.api import Salesforce

    session = requests.Session()
    if ca_bundle:
        session.verify = ca_bundle
    return Salesforce(instance_url=instance_url, session_id=token, session=session)


def soql(rule: Rule, run_id: str) -> str:
    sobject, run_field, status_field, from_states, _, _ = rule
    states = ", ".join(f"'{state}'" for state in from_states)
    # The run id is an 18-character id the harness took from the seed, not user input.
    return f"SELECT Id FROM {sobject} WHERE {run_field} = '{run_id}' AND {status_field} IN ({states})"  # noqa: S608


def query_ids(sf: Salesforce, rule: Rule, run_id: str, tally: Tally) -> list[str]:
    started = time.perf_counter()
    result = sf.query_all(soql(rule, run_id))
    tally.query_s += time.perf_counter() - started
    ids = [str(record["Id"]) for record in result["records"]]
    tally.queried += len(ids)
    return ids


def values(rule: Rule) -> dict[str, Any]:
    _, _, status_field, _, to_state, cleared = rule
    return {status_field: to_state, **dict.fromkeys(cleared)}


def _error_code(exc: Exception) -> str:
    content = getattr(exc, "content", None)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", type(exc).__name__))
    return type(exc).__name__


def per_record_loop(sf: Salesforce, run_id: str, limit: int | None) -> Tally:
    from simple_salesforce.exceptions import SalesforceError

    tally = Tally("per_record_loop")
    for rule in RULES:
        ids = query_ids(sf, rule, run_id, tally)
        sobject = getattr(sf, rule[0])
        body = values(rule)
        started = time.perf_counter()
        for record_id in ids:
            if limit is not None and tally.sent >= limit:
                tally.stopped_early = True
                break
            tally.sent += 1
            tally.update_calls += 1
            try:
                sobject.update(record_id, body)
                tally.updated += 1
            except SalesforceError as exc:
                # What a first script does: note it and carry on with the next record.
                tally.error(_error_code(exc))
        tally.update_s += time.perf_counter() - started
    return tally


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def serial_collections(sf: Salesforce, run_id: str, limit: int | None) -> Tally:
    from simple_salesforce.exceptions import SalesforceError

    tally = Tally("serial_collections")
    for rule in RULES:
        ids = query_ids(sf, rule, run_id, tally)
        body = values(rule)
        started = time.perf_counter()
        for chunk in _chunks(ids, COLLECTION_SIZE):
            if limit is not None and tally.sent >= limit:
                tally.stopped_early = True
                break
            records = [{"attributes": {"type": rule[0]}, "id": record_id, **body} for record_id in chunk]
            tally.sent += len(chunk)
            tally.update_calls += 1
            try:
                answer = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records})
            except SalesforceError as exc:
                tally.error(_error_code(exc), len(chunk))
                continue
            for row in answer or []:
                if row.get("success"):
                    tally.updated += 1
                else:
                    errors = row.get("errors") or [{}]
                    tally.error(str(errors[0].get("statusCode", "UNKNOWN")))
        tally.update_s += time.perf_counter() - started
    return tally


def bulk2_update(sf: Salesforce, run_id: str, limit: int | None) -> Tally:
    from simple_salesforce.bulk2 import SFBulk2Handler

    tally = Tally("bulk2_update")
    handler = sf.bulk2
    # simple-salesforce types `sf.bulk2` as a union of its handlers; narrow it to the Bulk API 2.0 one.
    assert isinstance(handler, SFBulk2Handler)
    for rule in RULES:
        ids = query_ids(sf, rule, run_id, tally)
        if not ids:
            continue
        body = values(rule)
        # None goes into the CSV as an empty cell: on update Salesforce leaves that field as it was, so the run
        # lookup and start date stay set. That is what this call does for its users; it is kept, not fixed.
        records = [{"Id": record_id, **body} for record_id in ids]
        started = time.perf_counter()
        results = getattr(handler, rule[0]).update(records=records)
        tally.update_s += time.perf_counter() - started
        tally.sent += len(records)
        for result in results:
            tally.update_calls += 1
            processed = int(result["numberRecordsProcessed"])
            failed = int(result["numberRecordsFailed"])
            tally.updated += processed - failed
            if failed:
                tally.error("BULK_ROW_FAILED", failed)
    return tally


SCRIPTED: dict[str, Callable[[Salesforce, str, int | None], Tally]] = {
    "per_record_loop": per_record_loop,
    "bulk2_update": bulk2_update,
    "serial_collections": serial_collections,
}
