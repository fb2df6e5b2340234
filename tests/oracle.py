"""An independent statement of what a clean-up must leave behind, computed from a before-snapshot of the org.

Written from DOMAIN.md directly, not from the planner, so the end-to-end tests compare the worker's result
with a second, separate reading of the rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sfcleanup.journalformat import expand

Snapshot = dict[str, list[dict[str, Any]]]
GUARDED = {"Posted", "Post In progress"}
VOLATILE = {"LastModifiedDate", "SystemModstamp"}


def by_id(snapshot: Snapshot) -> dict[str, dict[str, dict[str, Any]]]:
    return {sobject: {r["Id"]: r for r in rows} for sobject, rows in snapshot.items()}


LINE = "blng__InvoiceLine__c"
INVOICE = "blng__Invoice__c"
PRODUCT = "OrderItem"
USAGE = "blng__UsageSummary__c"
SOURCES = (PRODUCT, USAGE)
LINE_STATUS = "blng__InvoiceLineStatus__c"
INVOICE_STATUS = "blng__InvoiceStatus__c"
PROCESSING = "blng__InvoiceRunProcessingStatus__c"
Data = dict[str, dict[str, dict[str, Any]]]


def status_of(data: Data, sobject: str, record_id: str | None) -> str | None:
    record = data[sobject].get(record_id or "")
    return None if record is None else record[LINE_STATUS if sobject == LINE else INVOICE_STATUS]


Index = dict[tuple[str, str], list[str]]


def lines_index(data: Data) -> Index:
    """Line ids by (source field, source id): the oracle looks up the lines naming each source in one pass over
    the lines instead of one pass per source."""
    index: Index = {}
    for line_id, line in data[LINE].items():
        for field in ("blng__OrderProduct__c", "blng__UsageSummary__c"):
            if line[field]:
                index.setdefault((field, line[field]), []).append(line_id)
    return index


def links_of(
    data: Data, sobject: str, source_id: str, run_id: str, index: Index | None = None
) -> list[tuple[str, str]]:
    """Every line and invoice on a path from a source to an invoice (DOMAIN.md section 3), as (object, id):
    the run's lines naming it and their invoices; for a usage summary also its own invoice, its own line and
    that line's invoice, and lines of other runs naming it."""
    field = "blng__OrderProduct__c" if sobject == PRODUCT else "blng__UsageSummary__c"
    naming = (index if index is not None else lines_index(data)).get((field, source_id), [])
    lines = [i for i in naming if sobject == USAGE or data[LINE][i]["blng__InvoiceRun__c"] == run_id]
    out = [(LINE, i) for i in lines]
    if sobject == USAGE:
        source = data[USAGE][source_id]
        if source["blng__Invoice__c"]:
            out.append((INVOICE, source["blng__Invoice__c"]))
        if source["blng__InvoiceLine__c"]:
            out.append((LINE, source["blng__InvoiceLine__c"]))
            lines.append(source["blng__InvoiceLine__c"])
    for line_id in lines:
        line = data[LINE].get(line_id)
        if line is None or line["blng__Invoice__c"]:
            out.append((INVOICE, line["blng__Invoice__c"] if line else "(dangling line)"))
    return out


def _line_cancellable(data: Data, line: dict[str, Any]) -> bool:
    """A line's invoice allows cancelling it: none, or one that exists with a status that is not guarded."""
    invoice_id = line["blng__Invoice__c"]
    if not invoice_id:
        return True
    status = status_of(data, INVOICE, invoice_id)
    return status is not None and status not in GUARDED


def protected(before: Data, sobject: str, source_id: str, run_id: str, index: Index | None = None) -> bool:
    """A source linked, by any path, to a posted (or posting) invoice or line: it was billed for good."""
    links = links_of(before, sobject, source_id, run_id, index)
    return any(status_of(before, kind, i) in GUARDED for kind, i in links)


def expected_after(before: Snapshot, run_id: str, *, failing: frozenset[str] = frozenset()) -> Data:
    """Every record's expected field values after cleaning `run_id` (run fields excepted).

    `failing`: records whose writes fail. They keep their values, an invoice keeps its status while a line of
    it that the clean-up would cancel fails, and a source stays while anything that billed it is not cancelled.
    Without `failing`, the state once the clean-up has finished.
    """
    old = by_id(before)
    # Snapshot records are flat (scalar values): copying each record is a deep copy.
    data = {sobject: {i: dict(r) for i, r in records.items()} for sobject, records in old.items()}
    index = lines_index(old)
    blocked_invoices: set[str] = set()
    for line in data[LINE].values():
        mine = line["blng__InvoiceRun__c"] == run_id
        if mine and line[LINE_STATUS] in ("Error", "Draft") and _line_cancellable(old, line):
            if line["Id"] in failing:
                blocked_invoices.add(line["blng__Invoice__c"])
            else:
                line[LINE_STATUS] = "Cancelled"
    for invoice in data[INVOICE].values():
        eligible = invoice[INVOICE_STATUS] in ("Error", "Initiated", "Draft")
        if invoice["blng__InvoiceRunCreatedBy__c"] != run_id or not eligible:
            continue
        if invoice["Id"] not in failing and invoice["Id"] not in blocked_invoices:
            invoice[INVOICE_STATUS] = "Cancelled"
    for sobject in SOURCES:
        for source in data[sobject].values():
            if source["blng__InvoiceRun__c"] != run_id or source[PROCESSING] not in ("Error", "In Progress"):
                continue
            links = links_of(old, sobject, source["Id"], run_id, index)
            # Released only when every line and invoice that billed it ends cancelled.
            if source["Id"] in failing or any(status_of(data, kind, i) != "Cancelled" for kind, i in links):
                continue
            source[PROCESSING] = "Pending Billing"
            source["blng__InvoiceRunStatusIndex__c"] = "Pending Billing"
            source["blng__InvoiceRun__c"] = None
            source["blng__InvoiceRunStartDate__c"] = None
    return data


def released_too_early(before: Snapshot, after: Snapshot, run_id: str) -> list[str]:
    """Sources this clean-up reset to Pending Billing while a line or invoice that billed them is not cancelled
    in the org (or was posted): the dependency rule, checked on the org's actual state."""
    old, new = by_id(before), by_id(after)
    index = lines_index(old)
    problems = []
    for sobject in SOURCES:
        for source_id, record in new[sobject].items():
            previous = old[sobject][source_id]
            if previous["blng__InvoiceRun__c"] != run_id or record[PROCESSING] == previous[PROCESSING]:
                continue
            if protected(old, sobject, source_id, run_id, index):
                problems.append(f"{sobject} {source_id} billed on a posted invoice was changed")
            for kind, record_id in links_of(old, sobject, source_id, run_id, index):
                if status_of(new, kind, record_id) != "Cancelled":
                    problems.append(
                        f"{sobject} {source_id} released while {kind} {record_id} is {status_of(new, kind, record_id)}"
                    )
    return problems


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
    """Every entry, one per record (compact record lines expanded); journals of several runs may be joined."""
    return list(expand(json.loads(line) for line in path.read_text().splitlines() if line.strip()))


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
