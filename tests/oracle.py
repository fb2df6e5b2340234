"""An independent statement of what a clean-up must leave behind, computed from a before-snapshot of the org.

Written from DOMAIN.md directly, not from the planner, so the end-to-end tests compare the worker's result
with a second, separate reading of the rules.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

Snapshot = dict[str, list[dict[str, Any]]]
GUARDED = {"Posted", "Post In progress"}
VOLATILE = {"LastModifiedDate", "SystemModstamp"}


def by_id(snapshot: Snapshot) -> dict[str, dict[str, dict[str, Any]]]:
    return {sobject: {r["Id"]: r for r in rows} for sobject, rows in snapshot.items()}


def expected_after(before: Snapshot, run_id: str) -> dict[str, dict[str, dict[str, Any]]]:
    """Every record's expected field values after cleaning `run_id` (run fields excepted)."""
    data = copy.deepcopy(by_id(before))
    invoices = data["blng__Invoice__c"]
    invoice_status = {i: r["blng__InvoiceStatus__c"] for i, r in by_id(before)["blng__Invoice__c"].items()}
    billed: set[str] = set()
    for line in data["blng__InvoiceLine__c"].values():
        if line["blng__InvoiceRun__c"] != run_id:
            continue
        if invoice_status.get(line["blng__Invoice__c"]) in GUARDED:
            billed.update(x for x in (line["blng__OrderProduct__c"], line["blng__UsageSummary__c"]) if x)
        elif line["blng__InvoiceLineStatus__c"] in ("Error", "Draft"):
            line["blng__InvoiceLineStatus__c"] = "Cancelled"
    for invoice in invoices.values():
        if invoice["blng__InvoiceRunCreatedBy__c"] == run_id and invoice["blng__InvoiceStatus__c"] in (
            "Error",
            "Initiated",
            "Draft",
        ):
            invoice["blng__InvoiceStatus__c"] = "Cancelled"
    for sobject in ("OrderItem", "blng__UsageSummary__c"):
        for source in data[sobject].values():
            if source["blng__InvoiceRun__c"] != run_id:
                continue
            if source["blng__InvoiceRunProcessingStatus__c"] not in ("Error", "In Progress"):
                continue
            on_posted = sobject == "blng__UsageSummary__c" and invoice_status.get(source["blng__Invoice__c"]) in GUARDED
            if source["Id"] in billed or on_posted:
                continue
            source["blng__InvoiceRunProcessingStatus__c"] = "Pending Billing"
            source["blng__InvoiceRunStatusIndex__c"] = "Pending Billing"
            source["blng__InvoiceRun__c"] = None
            source["blng__InvoiceRunStartDate__c"] = None
    return data


def _not_sfcleanup(record: dict[str, Any]) -> bool:
    """Error logs sfcleanup writes itself (leases, failed rows) are checked by their own tests."""
    lease = str(record.get("blng__ErrorCode__c") or "").startswith("SFCLEANUP_LEASE")
    return not lease and not str(record.get("blng__ErrorName__c") or "").startswith("sfcleanup:")


def differences(expected: dict[str, dict[str, dict[str, Any]]], after: Snapshot, *, skip: set[str]) -> list[str]:
    """Field-level differences between expected and actual, ignoring timestamps, the `skip` record ids and the
    error logs sfcleanup wrote (leases and failed rows)."""
    actual = by_id(after)
    actual["blng__ErrorLog__c"] = {i: r for i, r in actual["blng__ErrorLog__c"].items() if _not_sfcleanup(r)}
    problems = []
    for sobject, records in expected.items():
        if set(records) != set(actual[sobject]):
            problems.append(f"{sobject}: record set changed")
        for record_id, fields in records.items():
            if record_id in skip:
                continue
            got = actual[sobject].get(record_id, {})
            for name, value in fields.items():
                if name not in VOLATILE and got.get(name) != value:
                    problems.append(f"{sobject} {record_id} {name}: expected {value!r}, got {got.get(name)!r}")
    return problems


def changed_ids(before: Snapshot, after: Snapshot) -> set[str]:
    old, new = by_id(before), by_id(after)
    out = set()
    for sobject, records in new.items():
        for record_id, fields in records.items():
            previous = old[sobject].get(record_id)
            if previous is None or any(fields[k] != previous.get(k) for k in fields if k not in VOLATILE):
                out.add(record_id)
    return out


def journal_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def journal_consistent(path: Path, before: Snapshot, after: Snapshot) -> list[str]:
    """Every record the org changed is journaled with its true before and after values."""
    entries = journal_entries(path)
    written = {e["id"]: e for e in entries if e["type"] in ("pending", "outcome")}
    old, new = by_id(before), by_id(after)
    problems = []
    for sobject in ("blng__Invoice__c", "blng__InvoiceLine__c", "OrderItem", "blng__UsageSummary__c"):
        for record_id, fields in new[sobject].items():
            previous = old[sobject][record_id]
            changed = {k for k in fields if k not in VOLATILE and fields[k] != previous[k]}
            changed.discard("blng__InvoiceRunStatusIndex__c")
            if not changed:
                continue
            entry = written.get(record_id)
            if entry is None:
                problems.append(f"{sobject} {record_id} changed but is not in the journal")
                continue
            for name in changed:
                if entry["before"].get(name) != previous[name] or entry["after"].get(name) != fields[name]:
                    problems.append(f"{sobject} {record_id} {name}: journal disagrees with the org")
    return problems
