"""A run's plan on disk: changes kept in a SQLite file while they are written, so memory stays flat.

A 200,000-record run would otherwise hold every change (and its before and after values) in memory from
reading to verifying. Here they go to a temporary database (the system's temporary directory, or one given)
as they are planned, and come back in lock-point order, 2,000 at a time.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.changes import Change, Values

FLUSH_EVERY = 5000
FETCH = 2000
# Ids a lookup asks for in one query: well under SQLite's limit on host parameters (32,766 since 3.32).
GET_MANY = 500
# A plan's values repeat (a handful of statuses, one run, one start date): each distinct one is encoded and
# decoded once. Past this many distinct values, the rest are encoded and decoded one by one.
CACHE_AT_MOST = 4096


class _Codec:
    """Values to JSON text and back, each distinct value converted once; decoded values are fresh dicts."""

    def __init__(self) -> None:
        self._texts: dict[tuple[tuple[str, str | None], ...], str] = {}
        self._values: dict[str, Values] = {}

    def dumps(self, values: Values) -> str:
        key = tuple(values.items())
        text = self._texts.get(key)
        if text is None:
            text = json.dumps(values, separators=(",", ":"))
            # Only text (a status enum too: equal to its text, and written as it) and nulls: 1, 1.0 and True
            # are equal keys but different JSON.
            if len(self._texts) < CACHE_AT_MOST and all(v is None or isinstance(v, str) for _, v in key):
                self._texts[key] = text
        return text

    def loads(self, text: str) -> Values:
        values = self._values.get(text)
        if values is None:
            values = json.loads(text)
            if len(self._values) < CACHE_AT_MOST:
                self._values[text] = values
        return dict(values)


class PlanStore:
    def __init__(self, parent: Path | None = None) -> None:
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        self.directory = Path(tempfile.mkdtemp(prefix="sfcleanup-plan-", dir=parent))
        # Planned on one thread and applied on another (a sweep, a test): used by one thread at a time.
        self._conn = sqlite3.connect(self.directory / "plan.sqlite3", check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=OFF")
        self._conn.execute("PRAGMA synchronous=OFF")
        self._conn.execute(
            "CREATE TABLE changes (phase TEXT, sobject TEXT, id TEXT, grp TEXT, status_before TEXT, "
            "status_after TEXT, before TEXT, after TEXT)"
        )
        # What each change waits for: (record, dependency) pairs; see PlanSink.depend.
        self._conn.execute("CREATE TABLE deps (record TEXT, dep TEXT)")
        self._pending: list[tuple[str, ...]] = []
        self._pending_deps: list[tuple[str, str]] = []
        self._codec = _Codec()
        # The directory goes when the store does, even if nobody calls close().
        self._cleanup = weakref.finalize(self, _remove, self._conn, self.directory)

    def add(self, phase: Phase, change: Change) -> None:
        status_field = RULE_BY_PHASE[phase].status_field
        self._pending.append(
            (
                phase.value,
                change.sobject,
                change.id,
                change.group,
                str(change.before.get(status_field)),
                str(change.after.get(status_field)),
                self._codec.dumps(change.before),
                self._codec.dumps(change.after),
            )
        )
        if len(self._pending) >= FLUSH_EVERY:
            self._flush()

    def depend(self, record_id: str, on: str) -> None:
        self._pending_deps.append((record_id, on))
        if len(self._pending_deps) >= FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        self._conn.executemany("INSERT INTO changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._pending)
        self._conn.executemany("INSERT INTO deps VALUES (?, ?)", self._pending_deps)
        self._pending.clear()
        self._pending_deps.clear()

    def seal(self) -> None:
        """All changes are in: index them for ordered reads and lookups."""
        self._flush()
        self._conn.execute("CREATE INDEX changes_order ON changes (phase, grp, id)")
        self._conn.execute("CREATE UNIQUE INDEX changes_id ON changes (phase, id)")
        self._conn.execute("CREATE INDEX deps_dep ON deps (dep)")
        self._conn.commit()

    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        """The changes of `phase` that wait for a record in `blocked`, each with one record it waits for."""
        if not blocked:
            return {}
        self._conn.execute("CREATE TEMP TABLE IF NOT EXISTS blocked (id TEXT PRIMARY KEY)")
        self._conn.execute("DELETE FROM blocked")
        self._conn.executemany("INSERT OR IGNORE INTO blocked VALUES (?)", ((i,) for i in blocked))
        rows = self._conn.execute(
            "SELECT d.record, MIN(d.dep) FROM deps d JOIN blocked b ON b.id = d.dep "
            "JOIN changes c ON c.phase = ? AND c.id = d.record GROUP BY d.record",
            (phase.value,),
        )
        return {str(record): str(dep) for record, dep in rows}

    def edges(self) -> Iterator[tuple[str, str]]:
        """Every (record, what it waits for) pair, for a plan file (`planfile`) to carry them."""
        cursor = self._conn.execute("SELECT record, dep FROM deps ORDER BY record, dep")
        while rows := cursor.fetchmany(FETCH):
            yield from ((str(record), str(dep)) for record, dep in rows)

    def changes(self, phase: Phase) -> StoredChanges:
        return StoredChanges(self, phase)

    def count(self, phase: Phase) -> int:
        row = self._conn.execute("SELECT COUNT(*) FROM changes WHERE phase = ?", (phase.value,)).fetchone()
        return int(row[0])

    def iterate(self, phase: Phase) -> Iterator[Change]:
        cursor = self._conn.execute(
            "SELECT sobject, id, grp, before, after FROM changes WHERE phase = ? ORDER BY grp, id", (phase.value,)
        )
        loads = self._codec.loads
        while rows := cursor.fetchmany(FETCH):
            for sobject, record_id, group, before, after in rows:
                yield Change(sobject, record_id, group, loads(before), loads(after))

    def get_many(self, phase: Phase, record_ids: Sequence[str]) -> dict[str, Change]:
        """The changes of `phase` among `record_ids`, by id: one query per GET_MANY ids."""
        found: dict[str, Change] = {}
        loads = self._codec.loads
        for start in range(0, len(record_ids), GET_MANY):
            chunk = list(record_ids[start : start + GET_MANY])
            marks = ",".join("?" * len(chunk))
            # Only placeholders are built here; the ids travel as parameters.
            sql = f"SELECT sobject, id, grp, before, after FROM changes WHERE phase = ? AND id IN ({marks})"  # noqa: S608
            rows = self._conn.execute(sql, (phase.value, *chunk))
            for sobject, record_id, group, before, after in rows:
                found[record_id] = Change(sobject, record_id, group, loads(before), loads(after))
        return found

    def transitions(self, phase: Phase) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT status_before || ' -> ' || status_after, COUNT(*) FROM changes WHERE phase = ? GROUP BY 1 "
            "ORDER BY 1",
            (phase.value,),
        )
        return {str(label): int(count) for label, count in rows}

    def close(self) -> None:
        self._cleanup()


def _remove(conn: sqlite3.Connection, directory: Path) -> None:
    conn.close()
    shutil.rmtree(directory, ignore_errors=True)


class StoredChanges:
    """A ChangeSet backed by a PlanStore."""

    def __init__(self, store: PlanStore, phase: Phase) -> None:
        self._store = store
        self._phase = phase
        self._count = store.count(phase)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[Change]:
        return self._store.iterate(self._phase)

    def get_many(self, record_ids: Sequence[str]) -> dict[str, Change]:
        return self._store.get_many(self._phase, record_ids)

    def transitions(self, status_field: str) -> dict[str, int]:
        return self._store.transitions(self._phase)
