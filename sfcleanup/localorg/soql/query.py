"""CompiledQuery: a resolved plan turned into SQL for one `now` and one query/queryAll choice."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.soql import sqlgen
from sfcleanup.localorg.soql.resolve import Kind, Plan
from sfcleanup.localorg.soql.shape import RecordShape, convert

# Below SQLite's historical limit of 999 bound variables per statement.
_CHUNK = 900


@dataclass(frozen=True)
class CompiledQuery:
    sobject: SObjectSpec
    kind: Kind
    columns: tuple[str, ...]
    _plan: Plan = field(repr=False)
    _sql: str = field(repr=False)  # rowids, COUNT() or the aggregate statement, depending on kind
    _params: tuple[Any, ...] = field(repr=False)
    _fetch_sql: str = field(repr=False)
    _shape: RecordShape | None = field(repr=False)

    def rowids(self, conn: sqlite3.Connection) -> list[int]:
        """Base-table rowids of the matching records, in result order, with LIMIT and OFFSET applied."""
        self._expect("records")
        return [int(row[0]) for row in _execute(conn, self._sql, self._params)]

    def fetch(self, conn: sqlite3.Connection, rowids: Sequence[int], *, version: str = "v60.0") -> list[dict[str, Any]]:
        """REST records for these rowids, in the given order; rowids that no longer exist are skipped."""
        shape = self._record_shape()
        prefix = f"/services/data/{version}/sobjects/"
        rows = self._fetch_rows(conn, rowids)
        return [shape.record(rows[r], prefix) for r in rowids if r in rows]

    def fetch_flat(self, conn: sqlite3.Connection, rowids: Sequence[int]) -> list[dict[str, Any]]:
        """The same records keyed by dotted column path with flat values, as the Bulk API's CSV has them."""
        shape = self._record_shape()
        rows = self._fetch_rows(conn, rowids)
        return [shape.flat_record(rows[r]) for r in rowids if r in rows]

    def count(self, conn: sqlite3.Connection) -> int:
        """COUNT(): the number of matching rows, LIMIT and OFFSET applied."""
        self._expect("count")
        return int(_execute(conn, self._sql, self._params)[0][0])

    def aggregate(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        """AggregateResult records: grouped fields by name, aggregates by alias or exprN."""
        self._expect("aggregate")
        outputs = self._plan.outputs
        results = []
        for row in _execute(conn, self._sql, self._params):
            record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for output, value in zip(outputs, row, strict=True):
                record[output.name] = value if output.aggregate else convert(output.ref.field.type, value)
            results.append(record)
        return results

    def _fetch_rows(self, conn: sqlite3.Connection, rowids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        # Fetch is by rowid only, deliberately without the WHERE clause: the caller snapshotted membership.
        rows: dict[int, tuple[Any, ...]] = {}
        for start in range(0, len(rowids), _CHUNK):
            chunk = tuple(rowids[start : start + _CHUNK])
            marks = ", ".join("?" for _ in chunk)
            for row in _execute(conn, f"{self._fetch_sql} WHERE {sqlgen.BASE}._rowid IN ({marks})", chunk):
                rows[int(row[0])] = row
        return rows

    def _record_shape(self) -> RecordShape:
        self._expect("records")
        assert self._shape is not None
        return self._shape

    def _expect(self, kind: Kind) -> None:
        if self.kind != kind:
            raise ValueError(f"this is a {self.kind!r} query; the call needs a {kind!r} one")


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Plain tuples whatever the connection's row_factory: positions are all the compiler uses."""
    cursor = conn.cursor()
    cursor.row_factory = None
    try:
        return cursor.execute(sql, tuple(params)).fetchall()
    finally:
        cursor.close()


def build(plan: Plan, *, now: datetime, include_deleted: bool) -> CompiledQuery:
    joins = sqlgen.Joins(plan.sobject)
    where = sqlgen.Filter(plan, joins, now, include_deleted=include_deleted)
    order = sqlgen.order_sql(plan, joins, tiebreak=plan.kind == "records")
    limit, limit_params = sqlgen.limit_sql(plan)
    params = (*where.params, *limit_params)
    fetch_sql, shape = "", None
    if plan.kind == "records":
        sql = f"SELECT {sqlgen.BASE}._rowid {joins.from_sql()}{where.sql}{order}{limit}"
        fetch_joins = sqlgen.Joins(plan.sobject)
        shape = RecordShape.build(plan.sobject, plan.fields, fetch_joins)
        fetch_sql = f"SELECT {', '.join(shape.expressions)} {fetch_joins.from_sql()}"
    elif plan.kind == "count":
        inner = f"SELECT 1 {joins.from_sql()}{where.sql}{limit}"
        sql = f"SELECT COUNT(*) FROM ({inner})"
    else:
        sql = _aggregate_statement(plan, joins, where.sql, order, limit)
    return CompiledQuery(plan.sobject, plan.kind, plan.columns, plan, sql, params, fetch_sql, shape)


def _aggregate_statement(plan: Plan, joins: sqlgen.Joins, where: str, order: str, limit: str) -> str:
    selected = [
        sqlgen.aggregate_sql(output.aggregate, plan, joins) if output.aggregate else joins.column(output.ref)
        for output in plan.outputs
    ]
    grouped = [joins.column(plan.refs[path]) for path in plan.query.group_by]
    group = f" GROUP BY {', '.join(grouped)}" if grouped else ""
    # Without ORDER BY, groups come back in group order, so results are deterministic.
    order = order or (f" ORDER BY {', '.join(grouped)}" if grouped else "")
    return f"SELECT {', '.join(selected) or '1'} {joins.from_sql()}{where}{group}{order}{limit}"
