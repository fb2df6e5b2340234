"""Scratch space for reading a journal larger than memory: a private temporary SQLite database, deleted when
closed, and in it the rows a journal shows sent and not yet answered.

A Bulk API phase journals every record it sends before the first answer comes, so at a million sources a
million records wait for their answers; held as objects they would need gigabytes.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Iterable

from sfcleanup.changes import Values

HELD = 10_000
# The most ids bound in one statement (SQLite allows at least 999).
_CHUNK = 500

# A pending row's record id, group, before and after values, as the row gave them.
Sent = tuple[object, object, Values, Values]


def scratch_db(schema: str) -> sqlite3.Connection:
    """A new private database on disk, with little cache: what it holds is written once and read once."""
    # Used by one thread at a time, not always the one that opened it (as the plan store).
    db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
    db.executescript(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE; PRAGMA cache_size = -4000;"
        f"{schema}; BEGIN;"
    )
    return db


def load(data: bytes) -> tuple[object, ...]:
    # Bytes this process wrote to its own private file, not input from elsewhere.
    loaded: tuple[object, ...] = marshal.loads(data)  # noqa: S302
    return loaded


class Unanswered:
    """Pending rows not yet answered, per batch (numbered by the reader) and record id: the newest `held`
    in memory, the rest in SQLite."""

    def __init__(self, *, held: int | None = None) -> None:
        self._held = held or HELD
        self._recent: dict[tuple[int, str], Sent] = {}
        self._db: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def put(self, batch: int, record_id: str, sent: Sent) -> None:
        """A pending row; a later one for the same batch and record replaces it, as the writer's does."""
        self._recent[(batch, record_id)] = sent
        if len(self._recent) >= self._held:
            if self._db is None:
                self._db = scratch_db("CREATE TABLE sent (batch INTEGER, id TEXT, data BLOB, PRIMARY KEY (batch, id))")
            # What JSON decoding made, which marshal takes whole.
            rows = ((b, i, marshal.dumps(sent)) for (b, i), sent in self._recent.items())  # type: ignore[arg-type]
            self._db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", rows)
            self._recent.clear()

    def take(self, batch: int, ids: Iterable[str]) -> dict[str, Sent]:
        """The pending rows of these records in the batch, each forgotten once taken: an answer is given once."""
        wanted = dict.fromkeys(ids)
        found: dict[str, Sent] = {}
        for record_id in wanted:
            sent = self._recent.pop((batch, record_id), None)
            if sent is not None:
                found[record_id] = sent
        if self._db is None:
            return found
        listed = list(wanted)
        for start in range(0, len(listed), _CHUNK):
            chunk = listed[start : start + _CHUNK]
            where = f"batch = ? AND id IN ({', '.join('?' * len(chunk))})"
            for record_id, data in self._db.execute(f"SELECT id, data FROM sent WHERE {where}", (batch, *chunk)):  # noqa: S608
                found.setdefault(record_id, load(data))  # type: ignore[arg-type]
            self._db.execute(f"DELETE FROM sent WHERE {where}", (batch, *chunk))  # noqa: S608
        return found
