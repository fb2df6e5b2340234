"""Readiness for the runs a clean-up touched: which records to check, and the table, JSON and CSV an admin reads.

The clean-up clears a source's run link when it resets it, so the records it reset are found in the run's
journal (outcomes `updated` or `confirmed`); those still linked to the run are read by the run link.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sfcleanup import billing
from sfcleanup.journal import JournalError
from sfcleanup.journalread import Record, Stream
from sfcleanup.readiness.engine import Readiness, RecordReadiness
from sfcleanup.readiness.reader import available_fields, check
from sfcleanup.salesforce.client import SalesforceClient

APPLIED = frozenset({"updated", "confirmed"})


def reset_sources(journal: Path) -> tuple[list[str], list[str]]:
    """Order products and usage summaries a run's journal shows as reset: (order product ids, usage summary ids)."""
    found: dict[str, set[str]] = {billing.ORDER_PRODUCT: set(), billing.USAGE_SUMMARY: set()}
    try:
        for entry in Stream(journal, allow_truncated=True):
            if isinstance(entry, Record) and entry.type == "outcome" and entry.outcome in APPLIED:
                found.get(entry.sobject, set()).add(entry.id)
    except (JournalError, OSError):
        return [], []
    return sorted(found[billing.ORDER_PRODUCT]), sorted(found[billing.USAGE_SUMMARY])


def check_runs(client: SalesforceClient, journals: Mapping[str, Path], *, today: date) -> dict[str, Readiness]:
    """Readiness of each run's sources: those still linked to the run and those its journal shows as reset."""
    known = available_fields(client)
    out: dict[str, Readiness] = {}
    for run_id, journal in journals.items():
        products, summaries = reset_sources(journal)
        out[run_id] = check(
            client, today=today, run_id=run_id, order_product_ids=products, usage_summary_ids=summaries, available=known
        )
    return out


def to_json(readiness: Readiness) -> dict[str, object]:
    """Counts, rules turned off, and every record that is not ready or is borderline, with its reasons."""
    return {
        "records": len(readiness.records),
        "ready": len(readiness.ready),
        "not_ready": len(readiness.not_ready),
        "by_reason": dict(sorted(readiness.counts.items())),
        "rules_off": [{"code": d.code, "missing": list(d.missing), "note": d.note} for d in readiness.disabled],
        "records_with_reasons": [
            {
                "id": record.id,
                "object": record.sobject,
                "ready": record.ready,
                "reasons": [
                    {"code": r.code, "message": r.message, "field": r.field, "value": r.value, "severity": r.severity}
                    for r in record.reasons
                ],
            }
            for record in readiness.records
            if record.reasons
        ],
    }


def lightning_link(instance_url: str, sobject: str, record_id: str) -> str:
    return f"{instance_url.rstrip('/')}/lightning/r/{sobject}/{record_id}/view"


def write_csv(path: Path, results: Mapping[str, Readiness], instance_url: str) -> Path | None:
    """Id, Object, Reason, Severity, Field, Value, Message, InvoiceRunId, Link: one row per reason; none if none."""
    rows = [
        (run_id, record, reason)
        for run_id, readiness in results.items()
        for record in readiness.records
        for reason in record.reasons
    ]
    if not rows:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Id", "Object", "Reason", "Severity", "Field", "Value", "Message", "InvoiceRunId", "Link"])
        for run_id, record, reason in rows:
            link = lightning_link(instance_url, record.sobject, record.id)
            writer.writerow(
                [
                    record.id,
                    record.sobject,
                    reason.code,
                    reason.severity,
                    reason.field,
                    reason.value,
                    reason.message,
                    run_id,
                    link,
                ]
            )
    return path


def render(results: Mapping[str, Readiness], out: Console, csv_path: Path | None = None) -> None:
    """Per run: how many records the next invoice run will bill, and why the others will not."""
    for run_id, readiness in results.items():
        out.print(
            f"Will the next invoice run bill it? run {run_id}: {len(readiness.ready)} of {len(readiness.records)} "
            "order products and usage summaries ready"
        )
        if readiness.counts:
            table = Table(title_justify="left")
            table.add_column("reason")
            table.add_column("records", justify="right")
            table.add_column("for example")
            examples = _examples(readiness.records)
            for code, count in sorted(readiness.counts.items(), key=lambda item: (-item[1], item[0])):
                table.add_row(code, str(count), examples.get(code, ""))
            out.print(table)
        for disabled in readiness.disabled:
            out.print(f"  rule {disabled.code} is off: {disabled.note}")
    if csv_path is not None:
        out.print(f"Readiness CSV: {csv_path}")


def _examples(records: Iterable[RecordReadiness]) -> dict[str, str]:
    seen: Counter[str] = Counter()
    out: dict[str, str] = {}
    for record in records:
        for reason in record.reasons:
            if not seen[reason.code]:
                out[reason.code] = reason.message
            seen[reason.code] += 1
    return out
