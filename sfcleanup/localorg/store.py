"""SQLite state of the local org: one table per sObject, derived from the schema.

Table layout (relied on by the SOQL compiler): the table is named after the object's API name, `_rowid` is
the integer primary key, and every field is a column named after its API name. Text holds ids, strings,
picklists, dates (YYYY-MM-DD) and datetimes (sftime.DATETIME_FORMAT); REAL holds numbers; INTEGER 0/1 holds
booleans. `IsDeleted` marks records in the recycle bin.

One connection is shared by all request threads and guarded by `lock`: SQLite work is short, while the
latency the org simulates happens outside it, so concurrent requests still overlap where a real org would.

Lock chains (a record and its master-detail or locking-lookup ancestors, what a write to it locks) are cached
here, because every written row needs one and walking it cost a query per ancestor. What invalidates them is
watched by SQLite itself (temporary triggers, see `_watch_chain_columns`), so no write path, however it reaches
the connection, can leave a stale chain behind.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sfcleanup import ids
from sfcleanup.localorg import idgen, schema
from sfcleanup.localorg.schema import FieldSpec, FieldType, SObjectSpec
from sfcleanup.sftime import format_datetime

Clock = Callable[[], datetime]

# SObjectSpec.lock_parents is a property that rebuilds its tuple on every call; the write path asks per row.
_LOCK_PARENTS: dict[str, tuple[FieldSpec, ...]] = {spec.name: spec.lock_parents for spec in schema.SOBJECTS}
# Whose chains are cached, by key prefix: schema objects with lock parents. A chain is cached only when it was
# asked for with the object its id's prefix names, so a hit never answers for another object.
_CACHED_SPECS: dict[str, SObjectSpec] = {spec.key_prefix: spec for spec in schema.SOBJECTS if spec.lock_parents}
_CHAIN_CHANGED = "_localorg_lock_chain_changed"

_SQL_TYPES = {
    FieldType.DOUBLE: "REAL",
    FieldType.CURRENCY: "REAL",
    FieldType.BOOLEAN: "INTEGER",
}


def quote(name: str) -> str:
    """SQL identifier quoting; names come from the schema, never from a request."""
    return '"' + name.replace('"', '""') + '"'


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, path: str | Path | None = None, *, clock: Clock = _utcnow) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self.clock = clock
        # Picklist values this org's admin has not added (e.g. CleanUp Status "Completed with errors"):
        # absent from describe and refused on write. Keyed by (object, field) API names.
        self.removed_picklist_values: dict[tuple[str, str], frozenset[str]] = {}
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        # SQL text per object (and per column set for updates): rebuilding and quoting it cost more per row than
        # SQLite's own work on these one-row statements.
        self._parents_sql: dict[str, str] = {}
        self._update_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._fields_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        # Lock chain cache: record id -> chain, for records of schema objects that have lock parents.
        # `_chain_children` maps a record id to the ids whose cached chains were built on its chain, so dropping
        # one drops everything that passes through it. Its own lock (never held while SQLite runs) because the
        # triggers report changes from whichever thread executes the statement; `_chain_generation` lets a walk
        # that raced with such a change answer without caching.
        self._chains: dict[str, tuple[str, ...]] = {}
        self._chain_children: dict[str, set[str]] = {}
        self._chains_in_transaction: list[str] = []
        self._chain_generation = 0
        self._chain_lock = threading.Lock()
        # Another connection (a second process on the same state file) commits without firing this connection's
        # triggers; SQLite's data_version tells us it did. An in-memory database has no other connection.
        self._data_version: int | None = None if self.path == ":memory:" else -1
        self._create_tables()
        self._watch_chain_columns()

    def _create_tables(self) -> None:
        with self.lock:
            for spec in schema.SOBJECTS:
                columns = ["_rowid INTEGER PRIMARY KEY"]
                for field in spec.fields:
                    sql_type = _SQL_TYPES.get(field.type, "TEXT")
                    suffix = " UNIQUE NOT NULL" if field.type is FieldType.ID else ""
                    columns.append(f"{quote(field.name)} {sql_type}{suffix}")
                self.conn.execute(f"CREATE TABLE IF NOT EXISTS {quote(spec.name)} ({', '.join(columns)})")
                for field in spec.fields:
                    if field.type is FieldType.REFERENCE:
                        index = quote(f"ix_{spec.name}_{field.name}")
                        self.conn.execute(
                            f"CREATE INDEX IF NOT EXISTS {index} ON {quote(spec.name)} ({quote(field.name)})"
                        )
                parents = _LOCK_PARENTS[spec.name]
                if parents:
                    self._parents_sql[spec.name] = (
                        f"SELECT {', '.join(quote(f.name) for f in parents)} FROM {quote(spec.name)} WHERE Id = ?"
                    )

    def _watch_chain_columns(self) -> None:
        """Report every change that can alter a cached lock chain, whoever makes it.

        A chain depends on the lock-parent columns of the records on it (Order.AccountId is updateable, and a
        state file or a test can change any column with plain SQL) and on those rows existing (a hard delete in
        the Bulk API removes the row; its id may later be given to a new record). Soft deletes keep the row and
        its parents, so they leave chains as they are, as the walk always did. TEMP triggers live only on this
        connection: the state file never refers to a function other connections lack.
        """
        self.conn.create_function(_CHAIN_CHANGED, 1, self._chain_changed)
        with self.lock:
            for spec in schema.SOBJECTS:
                table = quote(spec.name)
                watched = ["Id", *(f.name for f in _LOCK_PARENTS[spec.name])]
                changed = " OR ".join(f"OLD.{quote(c)} IS NOT NEW.{quote(c)}" for c in watched)
                self.conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS {quote('lock_chain_update_' + spec.name)} "
                    f"AFTER UPDATE OF {', '.join(quote(c) for c in watched)} ON {table} WHEN {changed} "
                    f"BEGIN SELECT {_CHAIN_CHANGED}(OLD.Id); END"
                )
                self.conn.execute(
                    f"CREATE TEMP TRIGGER IF NOT EXISTS {quote('lock_chain_delete_' + spec.name)} "
                    f"AFTER DELETE ON {table} BEGIN SELECT {_CHAIN_CHANGED}(OLD.Id); END"
                )

    def picklist(self, spec: SObjectSpec, field: FieldSpec) -> tuple[str, ...]:
        """The field's active values in this org."""
        removed = self.removed_picklist_values.get((spec.name, field.name), frozenset())
        return tuple(v for v in field.picklist if v not in removed)

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; nested use becomes a savepoint so allOrNone can roll back a part."""
        with self.lock:
            nested = self.conn.in_transaction
            name = f"sp{threading.get_ident()}"
            self.conn.execute(f"SAVEPOINT {name}" if nested else "BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                try:
                    self.conn.execute(f"ROLLBACK TO {name}" if nested else "ROLLBACK")
                    if nested:
                        self.conn.execute(f"RELEASE {name}")
                finally:
                    # Chains cached since the transaction began may rest on rows or parents the rollback undid
                    # (triggers do not fire for a rollback, nor for one SQLite made itself before a failing
                    # ROLLBACK here). Dropping them all is simple and rarely costs anything.
                    self._forget_chains_of_transaction(keep_journal=nested)
                raise
            self.conn.execute(f"RELEASE {name}" if nested else "COMMIT")
            if not nested:
                # Committed: what was cached inside is as durable as the rows it was read from.
                with self._chain_lock:
                    self._chains_in_transaction.clear()

    def now(self) -> str:
        return format_datetime(self.clock())

    def insert(self, spec: SObjectSpec, values: Mapping[str, Any]) -> str:
        """Insert already-validated values (canonical field names) and return the new 18-character id."""
        with self.lock:
            row = self.conn.execute(f"SELECT COALESCE(MAX(_rowid), 0) + 1 FROM {quote(spec.name)}").fetchone()
            rowid = int(row[0])
            record_id = idgen.record_id(spec.key_prefix, rowid)
            stamp = self.now()
            full = {
                **values,
                "Id": record_id,
                "IsDeleted": 0,
                "CreatedDate": stamp,
                "LastModifiedDate": stamp,
                "SystemModstamp": stamp,
            }
            _mirror_status_index(spec, full)
            names = ", ".join(quote(k) for k in full)
            marks = ", ".join("?" for _ in full)
            self.conn.execute(
                f"INSERT INTO {quote(spec.name)} (_rowid, {names}) VALUES (?, {marks})",
                (rowid, *full.values()),
            )
            return record_id

    def insert_many(self, spec: SObjectSpec, rows: list[dict[str, Any]]) -> list[str]:
        """Fast path for seeding: one executemany inside the caller's transaction."""
        if not rows:
            return []
        with self.lock:
            start = int(self.conn.execute(f"SELECT COALESCE(MAX(_rowid), 0) + 1 FROM {quote(spec.name)}").fetchone()[0])
            stamp = self.now()
            keys = list(rows[0])
            names = ["_rowid", "Id", "IsDeleted", "CreatedDate", "LastModifiedDate", "SystemModstamp", *keys]
            # Decided once per call, not per row: seeding inserts hundreds of thousands of rows through here.
            mirrored = spec.field("blng__InvoiceRunStatusIndex__c") is not None
            if mirrored:
                names.append("blng__InvoiceRunStatusIndex__c")
            new_ids = []
            params = []
            make, prefix = idgen.record_id, spec.key_prefix
            for offset, row in enumerate(rows):
                rowid = start + offset
                record_id = make(prefix, rowid)
                new_ids.append(record_id)
                values = [rowid, record_id, 0, stamp, stamp, stamp]
                values.extend([row[k] for k in keys])
                if mirrored:
                    values.append(row.get("blng__InvoiceRunProcessingStatus__c"))
                params.append(values)
            column_list = ", ".join(quote(n) for n in names)
            marks = ", ".join("?" for _ in names)
            self.conn.executemany(f"INSERT INTO {quote(spec.name)} ({column_list}) VALUES ({marks})", params)
            return new_ids

    def get(self, spec: SObjectSpec, record_id: str) -> dict[str, Any] | None:
        """The stored row (deleted ones included, with IsDeleted=1), or None when the id does not exist."""
        with self.lock:
            row = self.conn.execute(f"SELECT * FROM {quote(spec.name)} WHERE Id = ?", (ids.to18(record_id),)).fetchone()
        return None if row is None else _without_rowid(row)

    def get_fields(self, spec: SObjectSpec, record_id: str, fields: tuple[str, ...]) -> dict[str, Any] | None:
        """Like `get`, reading only these fields (canonical names): a write checks a few of them, not the row."""
        lookup = ids.to18(record_id)
        shape = (spec.name, fields)
        sql = self._fields_sql.get(shape)
        if sql is None:
            columns = ", ".join(quote(f) for f in fields)
            sql = self._fields_sql.setdefault(shape, f"SELECT {columns} FROM {quote(spec.name)} WHERE Id = ?")
        with self.lock:
            row = self.conn.execute(sql, (lookup,)).fetchone()
        return None if row is None else dict(zip(fields, row, strict=True))

    def update(self, spec: SObjectSpec, record_id: str, values: Mapping[str, Any]) -> None:
        """Apply already-validated values; stamps LastModifiedDate and SystemModstamp."""
        stamp = self.now()
        full = {**values, "LastModifiedDate": stamp, "SystemModstamp": stamp}
        _mirror_status_index(spec, full)
        shape = (spec.name, tuple(full))
        sql = self._update_sql.get(shape)
        if sql is None:
            assignments = ", ".join(f"{quote(k)} = ?" for k in full)
            sql = self._update_sql.setdefault(shape, f"UPDATE {quote(spec.name)} SET {assignments} WHERE Id = ?")
        with self.lock:
            self.conn.execute(sql, (*full.values(), record_id))

    # --- lock chains ------------------------------------------------------------------------------------
    def lock_chain(self, spec: SObjectSpec, record_id: str) -> tuple[str, ...]:
        """The record and every master-detail (or locking lookup) ancestor, nearest first: what a write locks.

        The chain is the record followed by the chain of its first non-empty lock parent; a record whose row is
        missing, or that has no lock parent set, ends it. Ids are validated (and may be 15 characters) as `get`
        validates them; the chain holds them as given and as stored. Cached per record while every row it was
        read from exists; see `_watch_chain_columns` and `transaction` for what drops an entry.
        """
        with self.lock:
            # Under the store lock, as the uncached walk was: a request asking while another request's
            # transaction is open waits for it to end and sees what it committed.
            if self._data_version is not None:
                self._check_other_connections()
            return self._chain(spec, record_id)[0]

    def _chain(self, spec: SObjectSpec, record_id: str) -> tuple[tuple[str, ...], bool]:
        """One record's chain, and whether it is stable: cached, or unable to change (no lock parents).

        The caller holds the store lock.
        """
        cacheable = _CACHED_SPECS.get(record_id[:3]) is spec
        if cacheable:
            cached = self._chains.get(record_id)
            if cached is not None:
                return cached, True
        generation = self._chain_generation
        lookup = ids.to18(record_id)
        parents = _LOCK_PARENTS.get(spec.name)
        if parents is None:  # an object outside the schema
            parents = spec.lock_parents
        if not parents:
            # Nothing to read: the record alone, whether or not it exists, and nothing can change that.
            return (record_id,), True
        row = self.conn.execute(self._parents_sql_for(spec, parents), (lookup,)).fetchone()
        if row is None:
            # A missing row ends the chain, but a record may be inserted with this id later: never cached.
            return (record_id,), False
        # Only 18-character ids are cached: the triggers report the stored (18-character) id, so an entry under
        # a 15-character spelling could not be found to be dropped. The API always hands over 18 characters.
        cacheable = cacheable and lookup == record_id
        # The first lock parent that is set leads on; none set (or an unknown object) ends the chain here, which
        # then depends on this row alone, and the update trigger watches it.
        lead = next(((f, v) for f, v in zip(parents, row, strict=True) if v), None)
        parent_spec = schema.sobject(lead[0].reference_to or "") if lead is not None else None
        if lead is None or parent_spec is None:
            chain: tuple[str, ...] = (record_id,)
            parent_id = None
        else:
            parent_id = str(lead[1])
            parent_chain, parent_stable = self._chain(parent_spec, parent_id)
            chain = (record_id, *parent_chain)
            cacheable = cacheable and parent_stable
        if not cacheable:
            return chain, False
        return chain, self._remember_chain(record_id, chain, parent_id, generation)

    def _parents_sql_for(self, spec: SObjectSpec, parents: tuple[FieldSpec, ...]) -> str:
        sql = self._parents_sql.get(spec.name)
        if sql is None:
            columns = ", ".join(quote(f.name) for f in parents)
            sql = f"SELECT {columns} FROM {quote(spec.name)} WHERE Id = ?"
        return sql

    def _remember_chain(self, record_id: str, chain: tuple[str, ...], parent_id: str | None, generation: int) -> bool:
        in_transaction = self.conn.in_transaction
        with self._chain_lock:
            if generation != self._chain_generation:
                return False  # something changed while the walk read: the answer stands, but is not kept
            self._chains[record_id] = chain
            if parent_id is not None:
                self._chain_children.setdefault(parent_id, set()).add(record_id)
            if in_transaction:
                self._chains_in_transaction.append(record_id)
        return True

    def _check_other_connections(self) -> None:
        """Drop every cached chain when another connection committed since the last look (-1: never looked)."""
        version = int(self.conn.execute("PRAGMA data_version").fetchone()[0])
        if version != self._data_version:
            if self._data_version != -1:
                self.forget_all_lock_chains()
            self._data_version = version

    def forget_all_lock_chains(self) -> None:
        """Drop every cached lock chain; the next write to each record walks its chain again."""
        with self._chain_lock:
            self._chain_generation += 1
            self._chains.clear()
            self._chain_children.clear()

    def _chain_changed(self, record_id: Any) -> None:
        """Trigger callback: drop the chain of `record_id` and every cached chain built on it."""
        if isinstance(record_id, str):
            self.forget_lock_chains([record_id])

    def forget_lock_chains(self, record_ids: Iterable[str]) -> None:
        """Drop the cached chains of these records and of every record whose chain passes through them."""
        with self._chain_lock:
            self._chain_generation += 1
            pending = list(record_ids)
            while pending:
                record_id = pending.pop()
                self._chains.pop(record_id, None)
                pending.extend(self._chain_children.pop(record_id, ()))

    def _forget_chains_of_transaction(self, *, keep_journal: bool) -> None:
        with self._chain_lock:
            cached = list(self._chains_in_transaction)
            if not keep_journal:
                self._chains_in_transaction.clear()
        # A savepoint rolled back inside a longer transaction: the outer one may still roll back as a whole, so
        # the journal stays until the outermost transaction ends.
        self.forget_lock_chains(cached)

    def mark_deleted(self, spec: SObjectSpec, record_id: str) -> None:
        stamp = self.now()
        with self.lock:
            self.conn.execute(
                f"UPDATE {quote(spec.name)} SET IsDeleted = 1, SystemModstamp = ? WHERE Id = ?",
                (stamp, record_id),
            )

    def count(self, spec: SObjectSpec) -> int:
        with self.lock:
            return int(self.conn.execute(f"SELECT COUNT(*) FROM {quote(spec.name)} WHERE IsDeleted = 0").fetchone()[0])

    def group_counts(self, sobject: str, field: str) -> dict[str, int]:
        """Live records of `sobject` counted by the value of `field` (names from the schema)."""
        spec = schema.sobject(sobject)
        column = spec.field(field) if spec else None
        if spec is None or column is None:
            raise KeyError(f"{sobject}.{field} is not in the local org's schema")
        sql = f"SELECT {quote(column.name)}, COUNT(*) FROM {quote(spec.name)} WHERE IsDeleted = 0 GROUP BY 1 ORDER BY 1"
        with self.lock:
            return {str(row[0]): int(row[1]) for row in self.conn.execute(sql).fetchall()}

    def count_all(self) -> int:
        """Records in every table, deleted ones included: zero means a new, unseeded store."""
        with self.lock:
            return sum(
                int(self.conn.execute(f"SELECT COUNT(*) FROM {quote(spec.name)}").fetchone()[0])
                for spec in schema.SOBJECTS
            )

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table, for tests that compare the whole org before and after."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for spec in schema.SOBJECTS:
                rows = self.conn.execute(f"SELECT * FROM {quote(spec.name)} ORDER BY _rowid").fetchall()
                out[spec.name] = [_without_rowid(r) for r in rows]
        return out


def _mirror_status_index(spec: SObjectSpec, values: dict[str, Any]) -> None:
    """blng__InvoiceRunStatusIndex__c follows the processing status, as the package's trigger keeps it."""
    if "blng__InvoiceRunProcessingStatus__c" in values and spec.field("blng__InvoiceRunStatusIndex__c"):
        values["blng__InvoiceRunStatusIndex__c"] = values["blng__InvoiceRunProcessingStatus__c"]


def _without_rowid(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record.pop("_rowid", None)
    return record


def by_prefix(record_id: str) -> SObjectSpec | None:
    return schema.BY_PREFIX.get(record_id[:3])
