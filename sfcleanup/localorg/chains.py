"""Lock chains of the local org's records, cached: a record and its master-detail or locking-lookup ancestors,
what a write to it locks.

Every written row needs its chain, and walking it cost a query per ancestor, so chains are cached per record.
What invalidates them is watched by SQLite itself (temporary triggers, see `LockChains.watch`), so no write path,
however it reaches the connection, can leave a stale chain behind. The store owns one `LockChains` and tells it
when a transaction commits or rolls back.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from sfcleanup import ids
from sfcleanup.localorg import schema
from sfcleanup.localorg.schema import FieldSpec, SObjectSpec
from sfcleanup.localorg.sql import quote

# SObjectSpec.lock_parents is a property that rebuilds its tuple on every call; the write path asks per row.
LOCK_PARENTS: dict[str, tuple[FieldSpec, ...]] = {spec.name: spec.lock_parents for spec in schema.SOBJECTS}
# Whose chains are cached, by key prefix: schema objects with lock parents. A chain is cached only when it was
# asked for with the object its id's prefix names, so a hit never answers for another object.
_CACHED_SPECS: dict[str, SObjectSpec] = {spec.key_prefix: spec for spec in schema.SOBJECTS if spec.lock_parents}
_CHAIN_CHANGED = "_localorg_lock_chain_changed"


class LockChains:
    """The chain cache of one store's connection; `conn` is used under `lock`, the store's lock."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, *, shared_file: bool) -> None:
        self.conn = conn
        self.lock = lock
        self._parents_sql: dict[str, str] = {
            name: f"SELECT {', '.join(quote(f.name) for f in parents)} FROM {quote(name)} WHERE Id = ?"
            for name, parents in LOCK_PARENTS.items()
            if parents
        }
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
        self._data_version: int | None = -1 if shared_file else None

    def watch(self) -> None:
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
                watched = ["Id", *(f.name for f in LOCK_PARENTS[spec.name])]
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

    def chain(self, spec: SObjectSpec, record_id: str) -> tuple[str, ...]:
        """The record and every master-detail (or locking lookup) ancestor, nearest first: what a write locks.

        The chain is the record followed by the chain of its first non-empty lock parent; a record whose row is
        missing, or that has no lock parent set, ends it. Ids are validated (and may be 15 characters) as `get`
        validates them; the chain holds them as given and as stored. Cached per record while every row it was
        read from exists; see `watch` and the store's `transaction` for what drops an entry.
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
        parents = LOCK_PARENTS.get(spec.name)
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
                self.forget_all()
            self._data_version = version

    def forget_all(self) -> None:
        """Drop every cached lock chain; the next write to each record walks its chain again."""
        with self._chain_lock:
            self._chain_generation += 1
            self._chains.clear()
            self._chain_children.clear()

    def _chain_changed(self, record_id: Any) -> None:
        """Trigger callback: drop the chain of `record_id` and every cached chain built on it."""
        if isinstance(record_id, str):
            self.forget([record_id])

    def forget(self, record_ids: Iterable[str]) -> None:
        """Drop the cached chains of these records and of every record whose chain passes through them."""
        with self._chain_lock:
            self._chain_generation += 1
            pending = list(record_ids)
            while pending:
                record_id = pending.pop()
                self._chains.pop(record_id, None)
                pending.extend(self._chain_children.pop(record_id, ()))

    def committed(self) -> None:
        """The outermost transaction committed: what was cached inside is as durable as the rows it was read from."""
        with self._chain_lock:
            self._chains_in_transaction.clear()

    def rolled_back(self, *, keep_journal: bool) -> None:
        """Chains cached since the transaction began may rest on rows or parents the rollback undid."""
        with self._chain_lock:
            cached = list(self._chains_in_transaction)
            if not keep_journal:
                self._chains_in_transaction.clear()
        # A savepoint rolled back inside a longer transaction: the outer one may still roll back as a whole, so
        # the journal stays until the outermost transaction ends.
        self.forget(cached)
