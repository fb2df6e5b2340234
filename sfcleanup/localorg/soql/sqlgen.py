"""Plan -> SQLite: joins for parent paths, a WHERE clause with SOQL's null semantics, ORDER BY and LIMIT.

Literal values are always bound parameters; identifiers only ever come from the schema, quoted.

SOQL differs from SQL on nulls: `Status != 'Draft'` and `Status NOT IN ('Draft')` also match records whose
Status is null, and NOT of a condition is its plain logical complement. NOT is therefore pushed down to the
comparisons (De Morgan), and each comparison says what it means for a null column, so no SQL NOT ever meets
a NULL operand; the positive forms stay index-friendly (`blng__Invoice__c IN (...)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sfcleanup import ids
from sfcleanup.localorg.schema import FieldSpec, FieldType, SObjectSpec
from sfcleanup.localorg.soql import ast, literals
from sfcleanup.localorg.soql.ast import LiteralKind
from sfcleanup.localorg.soql.resolve import ID_TYPES, STRING_TYPES, FieldRef, Plan
from sfcleanup.localorg.sql import quote

BASE = "t0"
# For a relative date range [start, end): the SQL and which bound(s) each operator compares with.
_RANGE_SQL = {
    "=": ("({c} >= ? AND {c} < ?)", (0, 1)),
    "<": ("{c} < ?", (0,)),
    "<=": ("{c} < ?", (1,)),
    ">": ("{c} >= ?", (1,)),
    ">=": ("{c} >= ?", (0,)),
}


class Joins:
    """One LEFT JOIN per distinct relationship path; deleted parents are still joined, as Salesforce does."""

    def __init__(self, sobject: SObjectSpec) -> None:
        self.base = f"{quote(sobject.name)} AS {BASE}"
        self.aliases: dict[tuple[str, ...], str] = {(): BASE}
        self.clauses: list[str] = []

    def alias(self, lookups: Sequence[FieldSpec], parents: Sequence[SObjectSpec]) -> str:
        """The alias of the table reached by following `lookups`, joining whatever is not joined yet."""
        key: tuple[str, ...] = ()
        for lookup, parent in zip(lookups, parents, strict=True):
            child = self.aliases[key]
            key = (*key, lookup.name)
            if key not in self.aliases:
                alias = f"t{len(self.aliases)}"
                self.aliases[key] = alias
                self.clauses.append(
                    f'LEFT JOIN {quote(parent.name)} AS {alias} ON {alias}."Id" = {child}.{quote(lookup.name)}'
                )
        return self.aliases[key]

    def column(self, ref: FieldRef) -> str:
        return f"{self.alias(ref.lookups, ref.parents)}.{quote(ref.field.name)}"

    def comparable(self, ref: FieldRef) -> str:
        """Text fields compare and sort case-insensitively in SOQL; ids stay exact so their indexes serve."""
        column = self.column(ref)
        return f"{column} COLLATE NOCASE" if ref.field.type in STRING_TYPES else column

    def from_sql(self) -> str:
        return " ".join([f"FROM {self.base}", *self.clauses])


class Filter:
    """Builds the WHERE clause; the bound values accumulate in `params` in the order the SQL uses them."""

    def __init__(self, plan: Plan, joins: Joins, now: datetime, *, include_deleted: bool) -> None:
        self.plan = plan
        self.joins = joins
        self.now = now
        self.params: list[Any] = []
        parts = [] if include_deleted else [f'{BASE}."IsDeleted" = 0']
        if plan.query.where is not None:
            parts.append(self.condition(plan.query.where, negate=False))
        self.sql = f" WHERE {' AND '.join(parts)}" if parts else ""

    def condition(self, condition: ast.Condition, *, negate: bool) -> str:
        if isinstance(condition, ast.Comparison):
            return self.comparison(condition, negate=negate)
        if isinstance(condition, ast.Not):
            return self.condition(condition.operand, negate=not negate)
        is_and = isinstance(condition, ast.And)
        joiner = " AND " if is_and != negate else " OR "
        return "(" + joiner.join(self.condition(c, negate=negate) for c in condition.operands) + ")"

    def comparison(self, comparison: ast.Comparison, *, negate: bool) -> str:
        ref = self.plan.refs[comparison.path]
        column = self.joins.column(ref)
        predicate, null_result = self.predicate(comparison, ref)
        if null_result is None:  # the predicate tests for null itself
            return f"NOT ({predicate})" if negate else predicate
        if negate:
            predicate, null_result = f"NOT ({predicate})", not null_result
        return f"({column} IS NULL OR {predicate})" if null_result else predicate

    def predicate(self, comparison: ast.Comparison, ref: FieldRef) -> tuple[str, bool | None]:
        """SQL true exactly for the non-null column values that match, and whether a null column matches."""
        op = comparison.op
        if op in ("IN", "NOT IN"):
            sql, null_matches = self.in_list(comparison.values, ref)
            return (sql, null_matches) if op == "IN" else (f"NOT {sql}", not null_matches)
        value = comparison.values[0]
        column = self.joins.column(ref)
        if value.kind is LiteralKind.NULL:
            if op == "=":
                return f"{column} IS NULL", None
            if op == "!=":
                return f"{column} IS NOT NULL", None
            return "0", False  # nothing is less than, greater than or like null
        if op == "LIKE":
            self.params.append(literals.decode_string(value.raw[1:-1], like=True))
            return f"{column} LIKE ? ESCAPE '\\'", False
        if isinstance(value.value, ast.RelativeDate):
            return self.date_range(value.value, ref, op)
        self.params.append(self.bind(value, ref.field))
        if op == "!=":
            return f"{self.joins.comparable(ref)} <> ?", True
        return f"{self.joins.comparable(ref)} {op} ?", False

    def in_list(self, values: Sequence[ast.Literal], ref: FieldRef) -> tuple[str, bool]:
        plain = [v for v in values if v.kind not in (LiteralKind.NULL, LiteralKind.RELATIVE_DATE)]
        parts: list[str] = []
        if plain:
            marks = ", ".join("?" for _ in plain)
            parts.append(f"{self.joins.comparable(ref)} IN ({marks})")
            self.params.extend(self.bind(v, ref.field) for v in plain)
        for value in values:
            if isinstance(value.value, ast.RelativeDate):
                parts.append(self.date_range(value.value, ref, "=")[0])
        sql = "(" + (" OR ".join(parts) or "0") + ")"
        return sql, any(v.kind is LiteralKind.NULL for v in values)

    def date_range(self, value: ast.RelativeDate, ref: FieldRef, op: ast.Operator) -> tuple[str, bool]:
        column = self.joins.column(ref)
        bounds = literals.date_bounds(value, self.now, as_datetime=ref.field.type is FieldType.DATETIME)
        if op == "!=":
            self.params.extend(bounds)
            return f"({column} < ? OR {column} >= ?)", True
        template, which = _RANGE_SQL[op]
        self.params.extend(bounds[i] for i in which)
        return template.format(c=column), False

    @staticmethod
    def bind(value: ast.Literal, field: FieldSpec) -> Any:
        if value.kind is LiteralKind.BOOLEAN:
            return 1 if value.value else 0
        if field.type in ID_TYPES and isinstance(value.value, str) and ids.is_valid(value.value):
            # Stored ids are 18 characters; a 15-character id in a filter means the same record.
            return ids.to18(value.value)
        if field.type is FieldType.MULTIPICKLIST and isinstance(value.value, str):
            return multipicklist_set(value.value, field)
        return value.value


def multipicklist_set(text: str, field: FieldSpec) -> str:
    """'B;A' means the set {A, B}: written in the field's value order, as the store keeps it, so that = and !=
    compare sets. A value the field does not have is kept, and then matches no record."""
    wanted = [part.lower() for part in text.split(";")]
    known = [value for value in field.picklist if value.lower() in wanted]
    unknown = [part for part in text.split(";") if part.lower() not in {v.lower() for v in field.picklist}]
    return ";".join([*known, *unknown])


def aggregate_sql(aggregate: ast.Aggregate, plan: Plan, joins: Joins) -> str:
    column = joins.column(plan.refs[aggregate.path])
    return f"COUNT(DISTINCT {column})" if aggregate.function == "COUNT_DISTINCT" else f"COUNT({column})"


def order_sql(plan: Plan, joins: Joins, *, tiebreak: bool) -> str:
    """ORDER BY as written; records add the base rowid last so that pages are stable between calls."""
    terms = []
    for item in plan.query.order_by:
        target = item.target
        if isinstance(target, ast.Path):
            expr = joins.comparable(plan.refs[target])
        else:
            expr = aggregate_sql(target, plan, joins)
        direction = "DESC" if item.descending else "ASC"
        terms.append(f"{expr} {direction} NULLS {'FIRST' if item.nulls_first else 'LAST'}")
    if tiebreak:
        terms.append(f"{BASE}._rowid")
    return f" ORDER BY {', '.join(terms)}" if terms else ""


def limit_sql(plan: Plan) -> tuple[str, list[int]]:
    limit, offset = plan.query.limit, plan.query.offset
    if limit is None and offset is None:
        return "", []
    # SQLite needs a LIMIT before an OFFSET; -1 means no limit.
    return " LIMIT ? OFFSET ?", [-1 if limit is None else limit, offset or 0]
