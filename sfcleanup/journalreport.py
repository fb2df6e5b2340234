"""What a journal says happened, rebuilt without the org: the Data Loader-style changes CSV (one row per
record and field, with its before and after values and outcome), and a report for `sfcleanup report`.

The journal is the record of truth: these are derived from it, so they can be made again at any time, also
for a clean-up whose process died before printing anything.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sfcleanup.billing import RULE_BY_OBJECT
from sfcleanup.errors import ExitCode
from sfcleanup.journalread import Record, Stream
from sfcleanup.lastwritten import Last, LastWritten
from sfcleanup.outcomes import Failure
from sfcleanup.report import ObjectCounts, Report, RunOutcome, RunResult

CHANGES_HEADER = ("Id", "Object", "Field", "Before", "After", "Outcome", "Error")
CLEANUP_STATUS = "blng__CleanUpStatus__c"


@dataclass
class Told:
    """What a report needs of a journal, gathered in one pass over it: each record's last word, the last
    `end` and the last CleanUp Status the run was given."""

    run_id: str
    written: LastWritten
    end: dict[str, object] | None = None
    cleanup: dict[str, object] | None = None


@contextmanager
def read_journal(journal: Path, *, allow_truncated: bool = False) -> Iterator[Told]:
    """The journal read once, checked as `journal.read_entries` checks it (raising its JournalError)."""
    with LastWritten() as written:
        told = Told("", written)
        stream = Stream(journal, allow_truncated=allow_truncated)
        for entry in stream:
            if isinstance(entry, Record):
                written.add(entry)
            elif entry.get("type") == "end":
                told.end = entry
            elif entry.get("type") == "run_field" and entry.get("field") == CLEANUP_STATUS:
                told.cleanup = entry if entry.get("outcome") == "updated" else told.cleanup
        told.run_id = stream.run_id
        yield told


def changes_path(journal: Path, directory: Path | None = None) -> Path:
    """`changes-<run>.csv` beside the journal (`changes-<run>.undo.csv` for an undo's journal)."""
    return (directory or journal.parent) / f"changes-{journal.name.removesuffix('.jsonl')}.csv"


def write_changes_csv(written: Iterable[Last], path: Path) -> Path:
    """Id, Object, Field, Before, After, Outcome (and the error of a failed row): one row per field written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CHANGES_HEADER)
        for last in written:
            error = f"{last.code}: {last.message}" if last.failed and last.code else ""
            before, outcome = last.before, last.journaled
            writer.writerows(
                [last.id, last.sobject, name, before.get(name), after, outcome, error]
                for name, after in last.after.items()
            )
    return path


def run_outcome(journal: Path, told: Told) -> RunOutcome:
    """The run as its journal tells it: counts, transitions and failures per object, and the last end."""
    objects: dict[str, ObjectCounts] = {}
    transitions: dict[str, dict[str, int]] = {}
    failures = []
    for last in told.written:
        sobject = last.sobject
        counts = objects.setdefault(sobject, ObjectCounts())
        counts.planned += 1
        if last.outcome is not None and last.outcome.applied:
            counts.updated += 1
        if last.failed:
            counts.failed += 1
            failures.append(Failure(last.id, sobject, last.code or "UNKNOWN", last.message or ""))
        rule = RULE_BY_OBJECT.get(sobject)
        status = rule.status_field if rule else next(iter(last.after), "")
        label = f"{last.before.get(status)} -> {last.after.get(status)}"
        by_label = transitions.setdefault(sobject, {})
        by_label[label] = by_label.get(label, 0) + 1
    status, code, message = _ended(told.end)
    updated = told.cleanup
    return RunOutcome(
        id=told.run_id,
        name=None,
        run_status=None,
        status=status,
        objects=objects,
        transitions=transitions,
        failures=failures,
        cleanup_status=str(updated["after"]) if updated and updated.get("after") else None,
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


def journal_report(journal: Path, told: Told) -> Report:
    return Report(mode="journal", runs=[run_outcome(journal, told)])
