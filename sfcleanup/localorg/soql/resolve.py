"""Semantic analysis: bind every field path of a parsed query to the schema and check it as Salesforce does.

The result, a Plan, depends only on the query text, so it is cached; `now` and queryAll only matter when the
SQL is generated from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal as TypingLiteral

from sfcleanup import ids
from sfcleanup.localorg import schema
from sfcleanup.localorg.schema import FieldSpec, FieldType, SObjectSpec
from sfcleanup.localorg.soql import ast, errors
from sfcleanup.localorg.soql.ast import LiteralKind

Kind = TypingLiteral["records", "count", "aggregate"]

STRING_TYPES = frozenset({FieldType.STRING, FieldType.TEXTAREA, FieldType.PICKLIST, FieldType.MULTIPICKLIST})
# A multi-select picklist is filtered with =, != (both on the whole set of values, "A;B") and INCLUDES/EXCLUDES,
# which the local org does not parse; it cannot be sorted or grouped (SOQL reference, multi-select picklists).
MULTIPICKLIST_OPERATORS = frozenset({"=", "!="})
ID_TYPES = frozenset({FieldType.ID, FieldType.REFERENCE})

# Which literals a field of each type can be compared with, and the type name Salesforce's error uses.
_ACCEPTS: dict[FieldType, tuple[frozenset[LiteralKind], str]] = {
    FieldType.ID: (frozenset({LiteralKind.STRING}), "id"),
    FieldType.REFERENCE: (frozenset({LiteralKind.STRING}), "id"),
    FieldType.STRING: (frozenset({LiteralKind.STRING}), "string"),
    FieldType.TEXTAREA: (frozenset({LiteralKind.STRING}), "string"),
    FieldType.PICKLIST: (frozenset({LiteralKind.STRING}), "string"),
    FieldType.MULTIPICKLIST: (frozenset({LiteralKind.STRING}), "string"),
    FieldType.DATE: (frozenset({LiteralKind.DATE, LiteralKind.RELATIVE_DATE}), "date"),
    FieldType.DATETIME: (frozenset({LiteralKind.DATETIME, LiteralKind.RELATIVE_DATE}), "dateTime"),
    FieldType.DOUBLE: (frozenset({LiteralKind.NUMBER}), "double"),
    FieldType.CURRENCY: (frozenset({LiteralKind.NUMBER}), "currency"),
    FieldType.BOOLEAN: (frozenset({LiteralKind.BOOLEAN}), "boolean"),
}


@dataclass(frozen=True)
class FieldRef:
    """A path bound to the schema: the lookups followed from the FROM object, then the field read."""

    lookups: tuple[FieldSpec, ...]
    parents: tuple[SObjectSpec, ...]  # parents[i] is the object lookups[i] points to
    field: FieldSpec

    @property
    def relationship_path(self) -> tuple[str, ...]:
        """Canonical relationship names; one SQL join per distinct prefix of these."""
        return tuple(lookup.relationship_name or "" for lookup in self.lookups)

    @property
    def canonical(self) -> str:
        return ".".join((*self.relationship_path, self.field.name))


@dataclass(frozen=True)
class Output:
    """One column of an aggregate result: a grouped field (aggregate is None) or an aggregate function."""

    name: str
    ref: FieldRef
    aggregate: ast.Aggregate | None


@dataclass(frozen=True)
class Plan:
    query: ast.Query
    sobject: SObjectSpec
    kind: Kind
    refs: Mapping[ast.Path, FieldRef]  # every path written anywhere in the query
    fields: tuple[FieldRef, ...]  # records: the selected fields, in order
    outputs: tuple[Output, ...]  # aggregate: the result columns, in order

    @property
    def columns(self) -> tuple[str, ...]:
        if self.kind == "aggregate":
            return tuple(output.name for output in self.outputs)
        return tuple(ref.canonical for ref in self.fields)


def resolve(query: ast.Query) -> Plan:
    text = query.text
    sobject = schema.sobject(query.sobject)
    if sobject is None:
        raise errors.unknown_sobject(text, query.sobject_pos, query.sobject)
    refs = {path: _resolve_path(text, sobject, path) for path in _paths(query)}
    for condition in _comparisons(query.where):
        _check_operator(text, condition, refs[condition.path].field)
        _check_values(text, condition, refs[condition.path].field)
    _check_sortable(query, refs)
    kind = _kind(query)
    if kind == "aggregate":
        return Plan(query, sobject, kind, refs, (), _outputs(query, refs))
    fields = tuple(refs[item.path] for item in query.select if isinstance(item, ast.SelectField))
    seen: set[str] = set()
    for item, ref in zip((i for i in query.select if isinstance(i, ast.SelectField)), fields, strict=True):
        if ref.canonical.lower() in seen:
            raise errors.malformed(text, item.path.pos, f"duplicate field selected: {item.path.text}")
        seen.add(ref.canonical.lower())
    return Plan(query, sobject, kind, refs, fields, ())


def _resolve_path(text: str, base: SObjectSpec, path: ast.Path) -> FieldRef:
    current = base
    lookups: list[FieldSpec] = []
    parents: list[SObjectSpec] = []
    for segment in path.segments[:-1]:
        lookup = current.relationship(segment)
        parent = schema.sobject(lookup.reference_to) if lookup and lookup.reference_to else None
        if lookup is None or parent is None:
            raise errors.unknown_relationship(text, path.pos, segment)
        lookups.append(lookup)
        parents.append(parent)
        current = parent
    field = current.field(path.segments[-1])
    if field is None:
        raise errors.no_such_column(text, path.pos, path.segments[-1], current.name)
    return FieldRef(tuple(lookups), tuple(parents), field)


def _paths(query: ast.Query) -> Iterator[ast.Path]:
    for item in query.select:
        if isinstance(item, ast.SelectField):
            yield item.path
        elif isinstance(item, ast.SelectAggregate):
            yield item.aggregate.path
    for comparison in _comparisons(query.where):
        yield comparison.path
    yield from query.group_by
    for order in query.order_by:
        yield order.target if isinstance(order.target, ast.Path) else order.target.path


def _comparisons(condition: ast.Condition | None) -> Iterator[ast.Comparison]:
    if condition is None:
        return
    if isinstance(condition, ast.Comparison):
        yield condition
    elif isinstance(condition, ast.Not):
        yield from _comparisons(condition.operand)
    else:
        for operand in condition.operands:
            yield from _comparisons(operand)


def _check_operator(text: str, comparison: ast.Comparison, field: FieldSpec) -> None:
    if field.type is FieldType.MULTIPICKLIST and comparison.op not in MULTIPICKLIST_OPERATORS:
        raise errors.positioned(
            errors.INVALID_QUERY_FILTER_OPERATOR, text, comparison.path.pos, "invalid operator on multipicklist field"
        )


def _check_sortable(query: ast.Query, refs: Mapping[ast.Path, FieldRef]) -> None:
    """ORDER BY and GROUP BY refuse a multi-select picklist."""
    for path in query.group_by:
        if refs[path].field.type is FieldType.MULTIPICKLIST:
            raise errors.malformed(query.text, path.pos, f"field '{path.text}' can not be grouped in a query call")
    for order in query.order_by:
        if isinstance(order.target, ast.Path) and refs[order.target].field.type is FieldType.MULTIPICKLIST:
            raise errors.malformed(
                query.text, order.target.pos, f"field '{order.target.text}' can not be sorted in a query call"
            )


def _check_values(text: str, comparison: ast.Comparison, field: FieldSpec) -> None:
    accepted, type_name = _ACCEPTS[field.type]
    quoted = LiteralKind.STRING in accepted
    for value in comparison.values:
        if field.type in ID_TYPES and value.kind is LiteralKind.STRING and comparison.op != "LIKE":
            _check_id_literal(text, value)
        if value.kind is LiteralKind.NULL or value.kind in accepted:
            continue
        raise errors.malformed(
            text,
            value.pos,
            f"value of filter criterion for field '{comparison.path.text}' must be of type {type_name} "
            f"and should {'' if quoted else 'not '}be enclosed in quotes",
        )


def _check_id_literal(text: str, value: ast.Literal) -> None:
    """An id field compared with a string that is no 15/18-character id: Salesforce refuses the query with
    INVALID_QUERY_FILTER_OPERATOR "invalid ID field: <value>" instead of matching nothing."""
    literal = value.value if isinstance(value.value, str) else ""
    if not ids.is_valid(literal):
        raise errors.positioned(errors.INVALID_QUERY_FILTER_OPERATOR, text, value.pos, f"invalid ID field: {literal}")


def _kind(query: ast.Query) -> Kind:
    counts = [item for item in query.select if isinstance(item, ast.SelectCount)]
    if counts:
        if len(query.select) > 1 or query.group_by:
            raise errors.malformed(query.text, counts[0].pos, "COUNT() must be the only element in the SELECT list")
        return "count"
    aggregated = any(isinstance(item, ast.SelectAggregate) for item in query.select)
    ordered_by_aggregate = any(isinstance(order.target, ast.Aggregate) for order in query.order_by)
    return "aggregate" if aggregated or ordered_by_aggregate or query.group_by else "records"


def _outputs(query: ast.Query, refs: Mapping[ast.Path, FieldRef]) -> tuple[Output, ...]:
    """Result columns of an aggregate query, enforcing that plain fields are grouped."""
    grouped = {refs[path].canonical.lower() for path in query.group_by}
    outputs: list[Output] = []
    unnamed = 0  # Salesforce numbers exprN over the aggregates that have no alias
    for item in query.select:
        if isinstance(item, ast.SelectField):
            ref = refs[item.path]
            if ref.canonical.lower() not in grouped:
                raise errors.malformed(
                    query.text, item.path.pos, f"Field must be grouped or aggregated: {item.path.text}"
                )
            # A grouped parent field is reported under its own name, without the relationship path.
            outputs.append(Output(ref.field.name, ref, None))
        elif isinstance(item, ast.SelectAggregate):
            name = item.alias
            if name is None:
                name = f"expr{unnamed}"
                unnamed += 1
            outputs.append(Output(name, refs[item.aggregate.path], item.aggregate))
    for order in query.order_by:
        target = order.target
        if isinstance(target, ast.Path) and refs[target].canonical.lower() not in grouped:
            raise errors.malformed(
                query.text, target.pos, f"Ordered field must be grouped or aggregated: {target.text}"
            )
    names: set[str] = set()
    for output, pos in zip(outputs, _output_positions(query), strict=True):
        if output.name.lower() in names:
            raise errors.malformed(query.text, pos, f"duplicate alias: {output.name}")
        names.add(output.name.lower())
    return tuple(outputs)


def _output_positions(query: ast.Query) -> Iterator[errors.Pos]:
    for item in query.select:
        if isinstance(item, ast.SelectField):
            yield item.path.pos
        elif isinstance(item, ast.SelectAggregate):
            yield item.aggregate.pos
