"""SQLite state of the local org: one table per sObject, derived from the schema.

Table layout (relied on by the SOQL compiler): the table is named after the object's API name, `_rowid` is
the integer primary key, and every field is a column named after its API name. Text holds ids, strings,
picklists, dates (YYYY-MM-DD) and datetimes (sftime.DATETIME_FORMAT); REAL holds numbers; INTEGER 0/1 holds
booleans. `IsDeleted` marks records in the recycle bin.

One connection is shared by all request threads and guarded by `lock`: SQLite work is short, while the
latency the org simulates happens outside it, so concurrent requests still overlap where a real org would.

Lock chains (a record and its master-detail or locking-lookup ancestors, what a write to it locks) are cached
by the store's `chains` (see `chains.py`); the store tells it when a transaction commits or rolls back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sfcleanup import ids
from sfcleanup.localorg import idgen, schema
from sfcleanup.localorg.chains import ChainBatch, LockChains
from sfcleanup.localorg.faults import FieldRewrite
from sfcleanup.localorg.schema import FieldSpec, FieldType, SObjectSpec
from sfcleanup.localorg.sql import id_chunks
from sfcleanup.localorg.sql import quote as quote  # re-exported: callers quote identifiers as the store does
from sfcleanup.sftime import format_datetime

Clock = Callable[[], datetime]


_SQL_TYPES = {
    FieldType.DOUBLE: "REAL",
    FieldType.CURRENCY: "REAL",
    FieldType.BOOLEAN: "INTEGER",
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, path: str | Path | None = None, *, clock: Clock = _utcnow) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self.clock = clock
        # Picklist values this org's admin has not added (e.g. CleanUp Status "Completed with errors"):
        # absent from describe and refused on write. Keyed by (object, field) API names.
        self.removed_picklist_values: dict[tuple[str, str], frozenset[str]] = {}
        # Automations that rewrite a field a write sets (faults.FieldRewrite), applied by records.update.
        self.rewrites: tuple[FieldRewrite, ...] = ()
        self.lock = threading.RLock()
        self._last_stamp: tuple[datetime, str] | None = None
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        # SQL text per object (and per column set for updates): rebuilding and quoting it cost more per row than
        # SQLite's own work on these one-row statements.
        self._update_sql: dict[tuple[str, str, tuple[str, ...]], str] = {}
        self._fields_sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self._create_tables()
        self.chains = LockChains(self.conn, self.lock, shared_file=self.path != ":memory:")
        self.chains.watch()

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

    def picklist(self, spec: SObjectSpec, field: FieldSpec) -> tuple[str, ...]:
        """The field's active values in this org."""
        removed = self.removed_picklist_values.get((spec.name, field.name))
        if not removed:  # as in almost every org: every value written is checked against this
            return field.picklist
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
                    self.chains.rolled_back(keep_journal=nested)
                raise
            self.conn.execute(f"RELEASE {name}" if nested else "COMMIT")
            if not nested:
                # Committed: what was cached inside is as durable as the rows it was read from.
                self.chains.committed()

    def now(self) -> str:
        moment = self.clock()
        # Stamps are to the second, and a batch stamps thousands of rows within one: formatting once per second
        # is what writing them cost most after SQLite. One tuple, so threads never see one part of another's.
        second = moment.replace(microsecond=0)
        last = self._last_stamp
        if last is not None and last[0] == second:
            return last[1]
        stamp = format_datetime(second)
        self._last_stamp = (second, stamp)
        return stamp

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

    def get_many(
        self, spec: SObjectSpec, record_ids: Iterable[str], fields: tuple[str, ...]
    ) -> dict[str, tuple[Any, ...]]:
        """`get_fields` of many records (18-character ids) in one query per 500: by id, for each record found,
        its `_rowid` followed by the fields' values."""
        sql = f"SELECT Id, _rowid, {', '.join(quote(f) for f in fields)} FROM {quote(spec.name)} WHERE "
        found: dict[str, tuple[Any, ...]] = {}
        with self.lock:
            for where, chunk in id_chunks(sorted(set(record_ids))):
                for row in self.conn.execute(sql + where, chunk):
                    found[row[0]] = tuple(row)[1:]
        return found

    def update(self, spec: SObjectSpec, record_id: str, values: Mapping[str, Any], *, rowid: int | None = None) -> None:
        """Apply already-validated values; stamps LastModifiedDate and SystemModstamp.

        `rowid`: the record's `_rowid`, when the caller read it in the transaction this write is part of (found
        by the primary key, the write skips a search of the Id index).
        """
        stamp = self.now()
        full = {**values, "LastModifiedDate": stamp, "SystemModstamp": stamp}
        _mirror_status_index(spec, full)
        key = "_rowid" if rowid is not None else "Id"
        shape = (spec.name, key, tuple(full))
        sql = self._update_sql.get(shape)
        if sql is None:
            assignments = ", ".join(f"{quote(k)} = ?" for k in full)
            sql = self._update_sql.setdefault(shape, f"UPDATE {quote(spec.name)} SET {assignments} WHERE {key} = ?")
        with self.lock:
            self.conn.execute(sql, (*full.values(), record_id if rowid is None else rowid))

    # --- lock chains ------------------------------------------------------------------------------------
    def lock_chain(self, spec: SObjectSpec, record_id: str) -> tuple[str, ...]:
        """The record and every master-detail (or locking lookup) ancestor, nearest first: what a write locks."""
        return self.chains.chain(spec, record_id)

    def lock_chains(self, wanted: Sequence[tuple[SObjectSpec, str]]) -> ChainBatch:
        """`lock_chain` of many records, read together; `wanted` in the order they will be locked."""
        return ChainBatch(self.chains, wanted)

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

    def first_id(self, sobject: str) -> str | None:
        """The Id of the first live record of `sobject` (the org's one Organization, its one User), if any."""
        spec = schema.sobject(sobject)
        if spec is None:
            raise KeyError(f"{sobject} is not in the local org's schema")
        with self.lock:
            row = self.conn.execute(f"SELECT Id FROM {quote(spec.name)} WHERE IsDeleted = 0 ORDER BY _rowid").fetchone()
        return None if row is None else str(row[0])

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
                cursor = self.conn.execute(f"SELECT * FROM {quote(spec.name)} ORDER BY _rowid")
                # Plain tuples zipped with the column names: building thousands of dicts from sqlite3.Row was most
                # of a whole-org comparison's time.
                cursor.row_factory = None
                names = [d[0] for d in cursor.description]
                keep = [i for i, name in enumerate(names) if name != "_rowid"]
                columns = [names[i] for i in keep]
                out[spec.name] = [dict(zip(columns, [row[i] for i in keep], strict=True)) for row in cursor.fetchall()]
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
