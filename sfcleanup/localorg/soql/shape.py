"""Turning SQL rows into what the REST API returns: nested records with attributes, or flat dotted keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sfcleanup.localorg.schema import FieldType, SObjectSpec
from sfcleanup.localorg.soql.resolve import FieldRef
from sfcleanup.localorg.soql.sqlgen import BASE, Joins

_NUMBER_TYPES = frozenset({FieldType.DOUBLE, FieldType.CURRENCY})


def convert(field_type: FieldType, value: Any) -> Any:
    """SQLite values as JSON wants them: REAL -> float, INTEGER 0/1 booleans -> bool, NULL -> None."""
    if value is None:
        return None
    if field_type is FieldType.BOOLEAN:
        return bool(value)
    if field_type in _NUMBER_TYPES:
        return float(value)
    return value


@dataclass
class Leaf:
    key: str
    index: int
    type: FieldType


@dataclass
class Node:
    """One record object in the response: the base record, or a parent reached by a relationship."""

    sobject: SObjectSpec
    id_index: int  # the row position of this record's Id; None there means the parent does not exist
    entries: list[tuple[str, Leaf | Node]] = field(default_factory=list)

    def child(self, key: str) -> Node | None:
        for name, entry in self.entries:
            if name == key and isinstance(entry, Node):
                return entry
        return None


@dataclass
class RecordShape:
    """The SELECT list for fetching selected fields by rowid, and how each row position maps to a record."""

    expressions: list[str]
    root: Node
    flat: list[Leaf]

    @classmethod
    def build(cls, sobject: SObjectSpec, fields: tuple[FieldRef, ...], joins: Joins) -> RecordShape:
        # Position 0 is the rowid, used to put rows back into the caller's order; 1 is the record's Id.
        expressions = [f"{BASE}._rowid", f'{BASE}."Id"']
        root = Node(sobject, 1)
        flat: list[Leaf] = []
        for ref in fields:
            node = root
            for depth, (lookup, parent) in enumerate(zip(ref.lookups, ref.parents, strict=True)):
                key = lookup.relationship_name or lookup.name
                child = node.child(key)
                if child is None:
                    alias = joins.alias(ref.lookups[: depth + 1], ref.parents[: depth + 1])
                    expressions.append(f'{alias}."Id"')
                    child = Node(parent, len(expressions) - 1)
                    node.entries.append((key, child))
                node = child
            expressions.append(joins.column(ref))
            leaf = Leaf(ref.field.name, len(expressions) - 1, ref.field.type)
            node.entries.append((ref.field.name, leaf))
            flat.append(Leaf(ref.canonical, leaf.index, leaf.type))
        return cls(expressions, root, flat)

    def record(self, row: tuple[Any, ...], url_prefix: str) -> dict[str, Any]:
        return _record(self.root, row, url_prefix)

    def flat_record(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return {leaf.key: convert(leaf.type, row[leaf.index]) for leaf in self.flat}


def _record(node: Node, row: tuple[Any, ...], url_prefix: str) -> dict[str, Any]:
    name = node.sobject.name
    out: dict[str, Any] = {"attributes": {"type": name, "url": f"{url_prefix}{name}/{row[node.id_index]}"}}
    for key, entry in node.entries:
        if isinstance(entry, Leaf):
            out[key] = convert(entry.type, row[entry.index])
        else:
            out[key] = None if row[entry.id_index] is None else _record(entry, row, url_prefix)
    return out
