"""Each record's last word in a journal: per (object, id), the last pending or outcome record over every
invocation, in the order the records first appear. The changes CSV and `sfcleanup report` are made from it.

A run changes up to millions of records, far more than a worker may hold, so they go to a private temporary
SQLite file (`scratch`) a few thousand at a time, and memory stays flat.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterator
from types import TracebackType
from typing import NamedTuple

from sfcleanup.changes import Values
from sfcleanup.journalread import Record
from sfcleanup.outcomes import RowOutcome
from sfcleanup.scratch import load, scratch_db

# Sent, and the journal has no answer: the org may or may not have applied it (the next run reads it back).
UNANSWERED = "pending"
HELD = 20_000
_OUTCOMES = {outcome.value: outcome for outcome in RowOutcome}
# Per record, its last row spilled (rows are numbered as spilled, so the last is the newest), in the order the
# records first appeared.
_LAST = (
    "SELECT object, data FROM spilled JOIN"
    " (SELECT MIN(first) AS earliest, MAX(number) AS newest FROM spilled GROUP BY object, id) ON number = newest"
    " ORDER BY earliest"
)

Key = tuple[str, str]  # object, record id
Placed = tuple[int, Record]  # where the record's key first appeared, and its last record so far


class Last(NamedTuple):
    """One record's last word: the values sent and what the org answered (None: no answer yet)."""

    sobject: str
    id: str
    before: Values
    after: Values
    outcome: RowOutcome | None
    code: str | None
    message: str | None

    @property
    def journaled(self) -> str:
        """The outcome as the journal words it, `pending` for none."""
        return self.outcome.value if self.outcome is not None else UNANSWERED

    @property
    def failed(self) -> bool:
        # A row still locked when the run ended failed on its locks.
        return self.outcome in (RowOutcome.FAILED, RowOutcome.LOCKED)


class LastWritten:
    """Fed a journal's records in order with `add`; then iterated, as often as needed, for each record's last
    one, in the order the records first appeared. The newest `held` records are in memory, the rest in SQLite,
    where what a record last was at each spill is appended."""

    def __init__(self, *, held: int | None = None) -> None:
        self._held = held or HELD
        self._recent: dict[Key, Placed] = {}
        self._seen = 0
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> LastWritten:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def add(self, record: Record) -> None:
        key = (record.sobject, record.id)
        known = self._recent.get(key)
        self._recent[key] = (self._seen if known is None else known[0], record)
        self._seen += 1
        if len(self._recent) >= self._held:
            self._spill()

    def __iter__(self) -> Iterator[Last]:
        if self._db is None:
            # Never spilled: the dict's order is that of first appearance.
            for _, r in self._recent.values():
                yield Last(r.sobject, r.id, r.before, r.after, r.outcome, r.code, r.message)
            return
        self._spill()
        for sobject, data in self._db.execute(_LAST):
            record_id, before, after, outcome, code, message = load(data)
            known = _OUTCOMES[outcome] if isinstance(outcome, str) else None
            yield Last(sobject, record_id, before, after, known, code, message)  # type: ignore[arg-type]

    def _spill(self) -> None:
        if self._db is None:
            self._db = scratch_db(
                "CREATE TABLE spilled (number INTEGER PRIMARY KEY, first INTEGER NOT NULL, object TEXT NOT NULL,"
                " id TEXT NOT NULL, data BLOB NOT NULL)"
            )
        # Appended, not updated in place: sorting once at the end costs less than finding each record's row.
        rows = (_row(first, record) for first, record in self._recent.values())
        self._db.executemany("INSERT INTO spilled (first, object, id, data) VALUES (?, ?, ?, ?)", rows)
        self._recent.clear()


def _row(first: int, record: Record) -> tuple[int, str, str, bytes]:
    outcome = record.outcome.value if record.outcome is not None else None
    data = (record.id, record.before, record.after, outcome, record.code, record.message)
    return first, record.sobject, record.id, marshal.dumps(data)
