"""What a journal says happened, rebuilt without the org: the Data Loader-style changes CSV (one row per
record and field, with its before and after values and outcome), and a report for `sfcleanup report`.

The journal is the record of truth: these are derived from it, so they can be made again at any time, also
for a clean-up whose process died before printing anything.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sfcleanup.billing import RULE_BY_OBJECT
from sfcleanup.entries import RecordEntry, records
from sfcleanup.errors import ExitCode
from sfcleanup.outcomes import Failure, RowOutcome
from sfcleanup.report import ObjectCounts, Report, RunOutcome, RunResult

CHANGES_HEADER = ("Id", "Object", "Field", "Before", "After", "Outcome", "Error")
# Sent, and the journal has no answer: the org may or may not have applied it (the next run reads it back).
UNANSWERED = "pending"
CLEANUP_STATUS = "blng__CleanUpStatus__c"


@dataclass(frozen=True)
class Written:
    """One record's last word in the journal: the values sent and what the org answered (or no answer yet)."""

    entry: RecordEntry
    outcome: str

    @property
    def failed(self) -> bool:
        # A row still locked when the run ended failed on its locks.
        return self.outcome in (RowOutcome.FAILED.value, RowOutcome.LOCKED.value)


def last_written(entries: Iterable[dict[str, object]]) -> dict[tuple[str, str], Written]:
    """Per (object, id), the last pending or outcome entry over every invocation of the journal."""
    last: dict[tuple[str, str], Written] = {}
    for entry in records(entries):
        outcome = entry.outcome.value if entry.outcome is not None else UNANSWERED
        last[(entry.sobject, entry.id)] = Written(entry, outcome)
    return last


def changes_path(journal: Path, directory: Path | None = None) -> Path:
    """`changes-<run>.csv` beside the journal (`changes-<run>.undo.csv` for an undo's journal)."""
    return (directory or journal.parent) / f"changes-{journal.name.removesuffix('.jsonl')}.csv"


def write_changes_csv(written: dict[tuple[str, str], Written], path: Path) -> Path:
    """Id, Object, Field, Before, After, Outcome (and the error of a failed row): one row per field written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CHANGES_HEADER)
        for last in written.values():
            entry = last.entry
            error = f"{entry.code}: {entry.message}" if last.failed and entry.code else ""
            for field, after in entry.after.items():
                writer.writerow([entry.id, entry.sobject, field, entry.before.get(field), after, last.outcome, error])
    return path


def run_outcome(journal: Path, entries: list[dict[str, object]]) -> RunOutcome:
    """The run as its journal tells it: counts, transitions and failures per object, and the last end."""
    written = last_written(entries)
    objects: dict[str, ObjectCounts] = {}
    transitions: dict[str, dict[str, int]] = {}
    failures = []
    for (sobject, _), last in written.items():
        counts = objects.setdefault(sobject, ObjectCounts())
        counts.planned += 1
        if last.outcome in (RowOutcome.UPDATED.value, RowOutcome.CONFIRMED.value):
            counts.updated += 1
        if last.failed:
            counts.failed += 1
            failures.append(Failure(last.entry.id, sobject, last.entry.code or "UNKNOWN", last.entry.message or ""))
        rule = RULE_BY_OBJECT.get(sobject)
        field = rule.status_field if rule else next(iter(last.entry.after), "")
        label = f"{last.entry.before.get(field)} -> {last.entry.after.get(field)}"
        by_label = transitions.setdefault(sobject, {})
        by_label[label] = by_label.get(label, 0) + 1
    ends = [e for e in entries if e.get("type") == "end"]
    status, code, message = _ended(ends[-1] if ends else None)
    cleanup = [e for e in entries if e.get("type") == "run_field" and e.get("field") == CLEANUP_STATUS]
    updated = [e for e in cleanup if e.get("outcome") == "updated"]
    return RunOutcome(
        id=str(entries[0]["run_id"]),
        name=None,
        run_status=None,
        status=status,
        objects=objects,
        transitions=transitions,
        failures=failures,
        cleanup_status=str(updated[-1]["after"]) if updated and updated[-1].get("after") else None,
        journal=str(journal),
        message=message,
        exit_code=code,
    )


def _ended(end: dict[str, object] | None) -> tuple[RunResult, ExitCode, str | None]:
    if end is None:
        return RunResult.INTERRUPTED, ExitCode.STOPPED, "the journal has no end: the invocation died, or still runs"
    try:
        status = RunResult(str(end.get("status")))
    except ValueError:  # an undo's journal ends `undone`
        status = RunResult.CLEANED_WITH_FAILURES if end.get("exit_code") == 1 else RunResult.CLEANED
    code = end.get("exit_code")
    exit_code = next((member for member in ExitCode if member == code), ExitCode.STOPPED)
    reason = end.get("reason")
    return status, exit_code, str(reason) if reason else None


def journal_report(journal: Path, entries: list[dict[str, object]]) -> Report:
    return Report(mode="journal", runs=[run_outcome(journal, entries)])
