"""An append-only JSONL record of every value the worker changes, for audit, resume and undo.

One file per run (`<journal_dir>/<run_id>.jsonl`); each invocation appends. Before a batch is sent its
records are written as `pending` with their before and after values; once the org answers, each gets its
outcome. Records are written compactly, a line per batch (`journalformat`); `read_entries` gives every reader
one entry per record, whichever format wrote the file. Every batch is flushed and fsynced, so a crash loses
at most the answer to the batch in flight, never the knowledge that it was sent.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from sfcleanup import __version__
from sfcleanup.changes import Change
from sfcleanup.clock import Clock, utc_now
from sfcleanup.journalformat import (
    FORMAT,
    OUTCOME_ROWS,
    PENDING_ROWS,
    by_object,
    expand,
    fields_of,
    outcome_row,
    pending_row,
)
from sfcleanup.journalformat import (
    JournalError as JournalError,  # re-exported: readers catch it from here
)
from sfcleanup.journalread import Record, Stream, lines
from sfcleanup.lastwritten import Last, LastWritten
from sfcleanup.outcomes import RowResult
from sfcleanup.scratch import Sent, Unanswered

JOURNAL_VERSION = FORMAT


def journal_path(directory: Path, run_id: str, kind: str = "") -> Path:
    """`<run_id>.jsonl` for clean-ups; `<run_id>.<kind>.jsonl` for other writers (undo) on the same run."""
    return directory / (f"{run_id}.{kind}.jsonl" if kind else f"{run_id}.jsonl")


class Journal:
    def __init__(self, directory: Path, run_id: str, *, kind: str = "", clock: Clock = utc_now) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = journal_path(directory, run_id, kind)
        self.run_id = run_id
        self.invocation = uuid.uuid4().hex
        self._clock = clock
        # What this invocation journaled as pending, per (batch, object) and id, until the answer comes: an
        # outcome row then names only the answer. A Bulk API phase sends every record before the first answer,
        # so past a few thousand these wait on disk (`scratch`).
        self._sent = Unanswered()
        self._batches: dict[tuple[str, str], int] = {}
        self._fields: dict[tuple[str, str], list[str]] = {}
        self._handle = self.path.open("a", encoding="utf-8")

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._handle.closed:
            self._sync()
            self._handle.close()
        self._sent.close()

    def _entry(self, kind: str, **fields: object) -> dict[str, object]:
        return {
            "type": kind,
            "run_id": self.run_id,
            "invocation": self.invocation,
            "at": self._clock().isoformat(timespec="milliseconds"),
            **fields,
        }

    def _write(self, entries: Iterable[dict[str, object]]) -> None:
        for entry in entries:
            self._handle.write(json.dumps(entry, separators=(",", ":"), sort_keys=True) + "\n")
        self._sync()

    def _sync(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def start(self, *, mode: str, options: Mapping[str, object], org: Mapping[str, object] | None = None) -> None:
        """`org`: which org the invocation writes to (orgidentity); `undo` refuses to apply it to another."""
        extra = {"org": dict(org)} if org is not None else {}
        self._write(
            [self._entry("start", version=JOURNAL_VERSION, tool=__version__, mode=mode, options=options, **extra)]
        )

    def pending(self, phase: str, batch: str, changes: Iterable[Change]) -> None:
        lines = []
        for sobject, group in by_object(changes).items():
            fields = self._fields.setdefault((batch, sobject), fields_of(group))
            number = self._batches.setdefault((batch, sobject), len(self._batches))
            for change in group:
                self._sent.put(number, change.id, (change.id, change.group, change.before, change.after))
            rows = [pending_row(c, fields) for c in group]
            lines.append(self._entry(PENDING_ROWS, phase=phase, batch=batch, object=sobject, fields=fields, rows=rows))
        self._write(lines)

    def outcomes(self, phase: str, batch: str, results: Iterable[RowResult]) -> None:
        """One row per record: outcome is `updated`, `confirmed` (found applied after a lost answer),
        `failed` or `locked` (to be retried)."""
        grouped: dict[str, list[RowResult]] = {}
        for result in results:
            grouped.setdefault(result.change.sobject, []).append(result)
        lines = []
        for sobject, group in grouped.items():
            fields = self._fields.get((batch, sobject)) or fields_of([r.change for r in group])
            number = self._batches.setdefault((batch, sobject), len(self._batches))
            sent = self._sent.take(number, (r.change.id for r in group))
            rows = [outcome_row(r, fields, _change(sobject, sent.pop(r.change.id, None))) for r in group]
            lines.append(self._entry(OUTCOME_ROWS, phase=phase, batch=batch, object=sobject, fields=fields, rows=rows))
        self._write(lines)

    def run_field(self, field: str, before: str | None, after: str | None, outcome: str) -> None:
        self._write([self._entry("run_field", field=field, before=before, after=after, outcome=outcome)])

    def note(self, event: str, **fields: object) -> None:
        self._write([self._entry("note", event=event, **fields)])

    def end(self, *, status: str, exit_code: int, counts: Mapping[str, object], reason: str | None = None) -> None:
        """The invocation's result; `reason` says why it stopped, when it did."""
        self._write([self._entry("end", status=status, exit_code=exit_code, counts=counts, reason=reason)])

    def last_outcomes(self) -> LastOutcomes:
        """This invocation's last outcome per (object, record id): what the org answered, as journaled.

        A run stopped mid-phase loses the writer's own tally; this is the record that survives it.
        """
        self._sync()
        return LastOutcomes(self.path, self.invocation)


def _change(sobject: str, sent: Sent | None) -> Change | None:
    if sent is None:
        return None
    record_id, group, before, after = sent
    return Change(sobject, str(record_id), str(group), before, after)


class LastOutcomes:
    """An invocation's last outcome per (object, record id), read from its journal as it is iterated, so a
    run of millions of records is recounted without holding them."""

    def __init__(self, path: Path, invocation: str) -> None:
        self.path = path
        self.invocation = invocation

    def items(self) -> Iterator[tuple[tuple[str, str], Last]]:
        with LastWritten() as written:
            for entry in Stream(self.path, allow_truncated=True):
                if isinstance(entry, Record) and entry.type == "outcome" and entry.invocation == self.invocation:
                    written.add(entry)
            for last in written:
                yield (last.sobject, last.id), last


def read_entries(path: Path, *, allow_truncated: bool = False) -> list[dict[str, object]]:
    """Every entry of a journal, checked: one run, known shape, no torn lines unless allowed (`journalread`).

    For readers that go back and forth over the entries; one that summarises a journal reads a `Stream`.
    """
    entries = list(lines(path, allow_truncated=allow_truncated))
    if not entries:
        raise JournalError(f"journal {path} is empty")
    try:
        entries = list(expand(entries))
    except JournalError as exc:
        raise JournalError(f"journal {path} has a damaged record line: {exc}") from None
    runs = {str(e["run_id"]) for e in entries}
    if len(runs) > 1:
        raise JournalError(f"journal {path} mixes entries of several runs ({', '.join(sorted(runs))})")
    return entries
