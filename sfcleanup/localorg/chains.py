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
from collections.abc import Iterable, Sequence
from typing import Any

from sfcleanup import ids
from sfcleanup.localorg import schema
from sfcleanup.localorg.schema import FieldSpec, SObjectSpec
from sfcleanup.localorg.sql import id_chunks, quote

# SObjectSpec.lock_parents is a property that rebuilds its tuple on every call; the write path asks per row.
LOCK_PARENTS: dict[str, tuple[FieldSpec, ...]] = {spec.name: spec.lock_parents for spec in schema.SOBJECTS}
# Whose chains are cached, by key prefix: schema objects with lock parents. A chain is cached only when it was
# asked for with the object its id's prefix names, so a hit never answers for another object.
_CACHED_SPECS: dict[str, SObjectSpec] = {spec.key_prefix: spec for spec in schema.SOBJECTS if spec.lock_parents}
_CHAIN_CHANGED = "_localorg_lock_chain_changed"
# What the walk learns of one record from its row: its id in 18 characters, whether the row exists, and its lead
# (`_lead`). `_ParentRows` holds them for records read ahead, by (object name, id as given).
_Read = tuple[str, bool, tuple[SObjectSpec, str] | None]
_ParentRows = dict[tuple[str, str], _Read]


def _parents_of(spec: SObjectSpec) -> tuple[FieldSpec, ...]:
    parents = LOCK_PARENTS.get(spec.name)
    return spec.lock_parents if parents is None else parents  # None: an object outside the schema


def _lead(parents: tuple[FieldSpec, ...], row: Sequence[Any]) -> tuple[SObjectSpec, str] | None:
    """The first lock parent that is set, as (its object, its id); None when none is set or its object is unknown."""
    for field, value in zip(parents, row, strict=True):
        if value:
            parent_spec = schema.sobject(field.reference_to or "")
            return None if parent_spec is None else (parent_spec, str(value))
    return None


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

    @property
    def generation(self) -> int:
        """Moves whenever something that can change a chain changes (or every chain was dropped)."""
        return self._chain_generation

    def chains(self, wanted: Sequence[tuple[SObjectSpec, str]]) -> tuple[dict[tuple[str, str], tuple[str, ...]], int]:
        """`chain` of many records at once, keyed by (object name, id as given), and the `generation` read at.

        One look at other connections and one query per object and ancestor level (`WHERE Id IN`), instead of
        both for every record: a Bulk API batch asks for 10,000. All under one hold of the store lock, so the
        chains answer as of one moment, as `chain` answers for one record. Once `generation` has moved, a chain
        may have changed since: the caller reads it again before relying on it. Only stable chains are answered
        (see `_chain`): one that rests on a missing row changes, unwatched, when a record with that id is
        inserted, so the caller reads it on its own when it locks it.
        """
        with self.lock:
            if self._data_version is not None:
                self._check_other_connections()
            generation = self._chain_generation
            rows = self._parent_rows(wanted)
            out: dict[tuple[str, str], tuple[str, ...]] = {}
            for spec, record_id in wanted:
                key = (spec.name, record_id)
                if key not in out:
                    chain, stable = self._chain(spec, record_id, rows, generation)
                    if stable:
                        out[key] = chain
            return out, generation

    def _chain(
        self, spec: SObjectSpec, record_id: str, rows: _ParentRows | None = None, generation: int | None = None
    ) -> tuple[tuple[str, ...], bool]:
        """One record's chain, and whether it is stable: cached, or unable to change (no lock parents).

        The caller holds the store lock. `rows` holds lock-parent columns already read (`_parent_rows`) and
        `generation` the generation they were read at.
        """
        cacheable = _CACHED_SPECS.get(record_id[:3]) is spec
        if cacheable:
            cached = self._chains.get(record_id)
            if cached is not None:
                return cached, True
        if generation is None:
            generation = self._chain_generation
        read = rows.get((spec.name, record_id)) if rows is not None else None
        if read is None:
            lookup = ids.to18(record_id)
            parents = _parents_of(spec)
            if not parents:
                # Nothing to read: the record alone, whether or not it exists, and nothing can change that.
                return (record_id,), True
            row = self.conn.execute(self._parents_sql_for(spec, parents), (lookup,)).fetchone()
            exists = row is not None
            lead = _lead(parents, row) if row is not None else None
        else:
            lookup, exists, lead = read
        if not exists:
            # A missing row ends the chain, but a record may be inserted with this id later: never cached.
            return (record_id,), False
        # Only 18-character ids are cached: the triggers report the stored (18-character) id, so an entry under
        # a 15-character spelling could not be found to be dropped. The API always hands over 18 characters.
        cacheable = cacheable and lookup == record_id
        # The first lock parent that is set leads on; none set (or an unknown object) ends the chain here, which
        # then depends on this row alone, and the update trigger watches it.
        if lead is None:
            chain: tuple[str, ...] = (record_id,)
            parent_id = None
        else:
            parent_spec, parent_id = lead
            parent_chain, parent_stable = self._chain(parent_spec, parent_id, rows, generation)
            chain = (record_id, *parent_chain)
            cacheable = cacheable and parent_stable
        if not cacheable:
            return chain, False
        return chain, self._remember_chain(record_id, chain, parent_id, generation)

    def _parent_rows(self, wanted: Sequence[tuple[SObjectSpec, str]]) -> _ParentRows:
        """What `_chain` would read of every record it walks for `wanted`, ancestors included, read a level at a
        time with one query per object. Cached chains and objects without lock parents need no row."""
        rows: _ParentRows = {}
        level: Iterable[tuple[SObjectSpec, str]] = wanted
        while True:
            unread: dict[str, tuple[SObjectSpec, tuple[FieldSpec, ...], dict[str, list[str]]]] = {}
            for spec, record_id in level:
                if (spec.name, record_id) in rows or (
                    _CACHED_SPECS.get(record_id[:3]) is spec and record_id in self._chains
                ):
                    continue
                parents = _parents_of(spec)
                if not parents:
                    continue
                try:
                    lookup = ids.to18(record_id)
                except ids.InvalidId:
                    continue  # the walk raises it, as it does for one record
                unread.setdefault(spec.name, (spec, parents, {}))[2].setdefault(lookup, []).append(record_id)
            if not unread:
                return rows
            leads: list[tuple[SObjectSpec, str]] = []
            for spec, parents, spellings in unread.values():
                found = self._read_parents(spec, parents, sorted(spellings))
                for lookup, given in spellings.items():
                    row = found.get(lookup)
                    lead = _lead(parents, row) if row is not None else None
                    for record_id in given:
                        rows[(spec.name, record_id)] = (lookup, row is not None, lead)
                    if lead is not None:
                        leads.append(lead)
            level = leads

    def _read_parents(
        self, spec: SObjectSpec, parents: tuple[FieldSpec, ...], lookups: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        """The lock-parent columns of these records (18-character ids) that have a row, by id."""
        columns = ", ".join(quote(f.name) for f in parents)
        found: dict[str, tuple[Any, ...]] = {}
        for where, chunk in id_chunks(lookups):
            for row in self.conn.execute(f"SELECT Id, {columns} FROM {quote(spec.name)} WHERE {where}", chunk):
                found[row[0]] = tuple(row)[1:]
        return found

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
        # the journal stays until the outermost transaction ends. Nothing cached inside: nothing to drop, and the
        # generation stays, so chains read together elsewhere are not read again for nothing.
        if cached:
            self.forget(cached)


class ChainBatch:
    """The lock chains of one request's rows, read together (`LockChains.chains`) before the rows lock them.

    `wanted` lists the records in the order the request will lock them. When the chains' generation moves before a
    record is locked (a request this one waited for may have re-parented a record, then committed and let go), the
    chains still to be locked are read again, so each row locks what reading its chain at that moment would.
    """

    def __init__(self, source: LockChains, wanted: Sequence[tuple[SObjectSpec, str]]) -> None:
        self._source = source
        # Two flat lists, not the pairs: fewer objects for the garbage collector while the request holds them.
        self._specs = [spec for spec, _ in wanted]
        self._ids = [record_id for _, record_id in wanted]
        self._asked = 0
        self._chains, self._generation = source.chains(wanted)

    def keys(self, spec: SObjectSpec, record_id: str) -> list[str]:
        """What a write to the record locks, as `LockChains.chain` would answer now."""
        if self._source.generation != self._generation:
            # From the first record not yet asked for: records are asked for in `wanted` order, or not at all.
            rest = list(zip(self._specs[self._asked :], self._ids[self._asked :], strict=True))
            self._chains, self._generation = self._source.chains(rest)
        self._asked += 1
        found = self._chains.get((spec.name, record_id))
        if found is None:  # unstable, not announced, or asked for out of order: read on its own
            return list(self._source.chain(spec, record_id))
        return list(found)
