"""Undo: put back the values a clean-up journaled, where nobody has changed them since.

Order products and usage summaries get their processing status, run lookup and start date back. Invoice and
line statuses only with an explicit flag: un-cancelling drafts is rarely what anyone wants. A record whose
current value is no longer the journaled after-value was changed by someone else: it is skipped and reported.
Sources are restored before invoices and lines, the reverse of the clean-up, so stopping half-way never
leaves a draft invoice next to a source the next run would bill again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sfcleanup import billing
from sfcleanup.billing import RULE_BY_OBJECT
from sfcleanup.changes import Change
from sfcleanup.config import WriteSettings
from sfcleanup.entries import RecordEntry, records
from sfcleanup.journal import Journal, JournalError, read_entries
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.outcomes import Failure
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.read import current_values
from sfcleanup.salesforce.write import CompositeWriter

SOURCES = (billing.ORDER_PRODUCT, billing.USAGE_SUMMARY)
INVOICES = (billing.INVOICE, billing.INVOICE_LINE)
UNDO_ORDER = (*SOURCES, *INVOICES)


@dataclass(frozen=True)
class Skipped:
    id: str
    sobject: str
    reason: str


@dataclass
class UndoPlan:
    run_id: str
    journal: Path
    restore: dict[str, list[Change]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.restore.values())


def journaled_changes(entries: Iterable[RecordEntry], objects: Sequence[str]) -> dict[str, Change]:
    """Per record: its value before sfcleanup first changed it, and the value sfcleanup last gave it.

    Pending entries without an outcome (a crash in flight) count too: whether they were applied is read from
    the org, like everything else, before anything is restored.
    """
    out: dict[str, Change] = {}
    for entry in entries:
        if entry.sobject not in objects:
            continue
        if entry.type == "outcome" and (entry.outcome is None or not entry.outcome.applied):
            continue
        first = out.get(entry.id)
        before = first.after if first else entry.before
        out[entry.id] = Change(entry.sobject, entry.id, entry.group or entry.id, entry.after, before)
    return out


def load(path: Path, *, run_id: str | None, allow_truncated: bool) -> tuple[str, list[dict[str, object]]]:
    """The journal's run, and its entries."""
    entries = read_entries(path, allow_truncated=allow_truncated)
    journal_run = str(entries[0]["run_id"])
    if run_id is not None and journal_run != run_id:
        raise JournalError(f"journal {path} is for invoice run {journal_run}, not {run_id}")
    if not any(e["type"] == "start" for e in entries):
        raise JournalError(f"{path} has no start entry: it is not a complete sfcleanup journal")
    return journal_run, entries


def require_same_org(
    path: Path, entries: Iterable[dict[str, object]], org: OrgIdentity, *, allow_unknown: bool
) -> None:
    """A journal is applied only to the org it was written in: a full-copy sandbox has production's record ids,
    so ids alone cannot tell them apart; every `start` entry names its org's id."""
    for entry in entries:
        if entry["type"] != "start":
            continue
        written_in = entry.get("org")
        org_id = written_in.get("id") if isinstance(written_in, dict) else None
        if org_id is None:
            if allow_unknown:
                continue
            raise JournalError(
                f"journal {path} does not say which org it was written in (made by an sfcleanup that did not record "
                f"it): make sure it was {org.name} ({org.id}), then pass --allow-unknown-org"
            )
        if org_id != org.id:
            name = written_in.get("name") if isinstance(written_in, dict) else None
            raise JournalError(
                f"journal {path} was written in org {name} ({org_id}), not in {org.name} ({org.id}) where this "
                "connection points: undo applies a journal only to its own org; nothing was written"
            )


def plan_undo(
    client: SalesforceClient,
    path: Path,
    *,
    org: OrgIdentity,
    run_id: str | None,
    include_invoices: bool,
    allow_truncated: bool,
    allow_unknown_org: bool = False,
) -> UndoPlan:
    """What undo would restore, checked against the org's current values (read-only); refuses a journal of
    another org."""
    journal_run, all_entries = load(path, run_id=run_id, allow_truncated=allow_truncated)
    require_same_org(path, all_entries, org, allow_unknown=allow_unknown_org)
    entries = list(records(all_entries))
    objects = UNDO_ORDER if include_invoices else SOURCES
    changes = journaled_changes(entries, objects)
    plan = UndoPlan(journal_run, path)
    for sobject in objects:
        wanted = [c for c in changes.values() if c.sobject == sobject]
        current = current_values(client, RULE_BY_OBJECT[sobject], [c.id for c in wanted]) if wanted else {}
        restore = []
        for change in wanted:
            row = current.get(change.id)
            if row is None:
                plan.skipped.append(Skipped(change.id, sobject, "no longer exists or is not visible"))
            elif any(row.get(k) != v for k, v in change.before.items()):
                now = {k: row.get(k) for k in change.before}
                plan.skipped.append(Skipped(change.id, sobject, f"changed since the clean-up: now {now}"))
            else:
                restore.append(change)
        plan.restore[sobject] = restore
    return plan


def apply_undo(
    client: SalesforceClient, plan: UndoPlan, settings: WriteSettings, journal_dir: Path, org: OrgIdentity
) -> tuple[int, list[Failure]]:
    """Restore, journaled in `<run_id>.undo.jsonl` like any clean-up."""
    updated = 0
    failures: list[Failure] = []
    with Journal(journal_dir, plan.run_id, kind="undo") as journal:
        journal.start(mode="undo", options={"source": str(plan.journal), "records": plan.total}, org=org.as_json())
        for sobject, changes in plan.restore.items():
            if changes:
                outcome = CompositeWriter(client, settings, journal).apply(
                    f"undo_{sobject}", RULE_BY_OBJECT[sobject], changes
                )
                updated += outcome.updated
                failures += outcome.failures
        journal.end(
            status="undone", exit_code=1 if failures else 0, counts={"updated": updated, "failed": len(failures)}
        )
    return updated, failures
