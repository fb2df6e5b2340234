"""Record-level semantics shared by every write path (REST, collections, composite, Bulk API 2.0).

Values are validated and coerced as Salesforce does, row errors carry Salesforce's `statusCode` and message,
and the Billing package's own guard (a Posted invoice and its lines are frozen) is enforced here, once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sfcleanup import ids
from sfcleanup.localorg import schema
from sfcleanup.localorg.schema import FieldSpec, FieldType, SObjectSpec
from sfcleanup.localorg.store import Store
from sfcleanup.sftime import normalise_date, normalise_datetime

POSTED_STATES = frozenset({"Posted"})


class Reader(Protocol):
    """What checking a write reads: the org's active picklist values and a few fields of other records. A `Store`,
    or the `BatchReads` of a transaction that writes many records."""

    def picklist(self, spec: SObjectSpec, field: FieldSpec) -> tuple[str, ...]: ...

    def get_fields(self, spec: SObjectSpec, record_id: str, fields: tuple[str, ...]) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class RowError:
    status_code: str
    message: str
    fields: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}


class RowFailure(Exception):
    def __init__(self, error: RowError) -> None:
        super().__init__(error.message)
        self.error = error


def fail(status_code: str, message: str, *fields: str) -> RowFailure:
    return RowFailure(RowError(status_code, message, tuple(fields)))


def _coerce(spec: SObjectSpec, field: FieldSpec, value: Any, store: Reader) -> Any:
    if value is None:
        if not field.nillable:
            raise fail("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{field.name}]", field.name)
        return None
    match field.type:
        case FieldType.STRING | FieldType.TEXTAREA | FieldType.ID:
            text = value if isinstance(value, str) else str(value)
            if field.length and len(text) > field.length:
                raise fail(
                    "STRING_TOO_LONG",
                    f"{field.label}: data value too large: {text[:40]} (max length={field.length})",
                    field.name,
                )
            return text
        case FieldType.PICKLIST:
            if not isinstance(value, str):
                raise _bad_type(field, value)
            if field.restricted and value not in store.picklist(spec, field):
                raise fail(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{field.label}: bad value for restricted picklist field: {value}",
                    field.name,
                )
            return value
        case FieldType.MULTIPICKLIST:
            if not isinstance(value, str):
                raise _bad_type(field, value)
            return _multipicklist(spec, field, value, store)
        case FieldType.REFERENCE:
            return _coerce_reference(field, value, store)
        case FieldType.DATETIME:
            try:
                return normalise_datetime(str(value))
            except ValueError:
                raise _bad_type(field, value) from None
        case FieldType.DATE:
            try:
                return normalise_date(str(value))
            except ValueError:
                raise _bad_type(field, value) from None
        case FieldType.DOUBLE | FieldType.CURRENCY:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise _bad_type(field, value) from None
            if isinstance(value, bool) or not math.isfinite(number):
                raise _bad_type(field, value)
            return number
        case FieldType.BOOLEAN:
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return int(value.lower() == "true")
            raise _bad_type(field, value)


def _multipicklist(spec: SObjectSpec, field: FieldSpec, value: str, store: Reader) -> str:
    """Values separated by ";", each one of the field's active values; stored once each, in the field's own
    order, whatever order they were written in (a multi-select picklist is a set of values)."""
    active = store.picklist(spec, field)
    chosen = value.split(";")
    for part in chosen:
        if part not in active:
            raise fail(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{field.label}: bad value for restricted picklist field: {part}",
                field.name,
            )
    return ";".join(v for v in active if v in chosen)


def _bad_type(field: FieldSpec, value: Any) -> RowFailure:
    # Built only when raised: formatting the message for every value written cost more than the check itself.
    return fail("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{field.label}: value not of required type: {value}", field.name)


def _coerce_reference(field: FieldSpec, value: Any, store: Reader) -> str:
    text = str(value)
    target = schema.sobject(field.reference_to or "")
    try:
        full = ids.to18(text)
    except ids.InvalidId:
        raise fail("MALFORMED_ID", f"{field.label}: id value of incorrect type: {text}", field.name) from None
    if target is None or full[:3] != target.key_prefix:
        raise fail("FIELD_INTEGRITY_EXCEPTION", f"{field.label}: id value of incorrect type: {text}", field.name)
    parent = store.get_fields(target, full, _DELETED_ONLY)
    if parent is None or parent["IsDeleted"]:
        raise fail("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {field.label}: {text}", field.name)
    return full


def coerce_values(spec: SObjectSpec, payload: Mapping[str, Any], store: Reader, *, creating: bool) -> dict[str, Any]:
    """Validate a write payload; returns canonical field name -> stored value, or raises RowFailure."""
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "attributes" or (key.lower() == "id" and not creating):
            continue
        field = spec.field(key)
        if field is None:
            raise fail("INVALID_FIELD", f"No such column '{key}' on sobject of type {spec.name}", key)
        allowed = field.createable if creating else field.updateable
        if not allowed:
            verb = "create" if creating else "update"
            raise fail(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {verb} fields: {field.name}. Please check the security settings of this field and "
                "verify that it is read/write for your profile or permission set.",
                field.name,
            )
        out[field.name] = _coerce(spec, field, value, store)
    if creating:
        for field in spec.fields:
            if field.default is not None and field.name not in out:
                out[field.name] = _coerce(spec, field, field.default, store)
        missing = [f.name for f in spec.fields if not f.nillable and f.createable and f.name not in out]
        if missing:
            raise fail("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", *missing)
    return out


# What a write reads of the record it changes: IsDeleted, and the fields `_package_guard` looks at. Reading
# just these instead of the whole row was a third of the cost of a one-field update. A guard that reads another
# field of the record must name it here (it would otherwise see None).
_DELETED_ONLY = ("IsDeleted",)
_GUARD_READS: dict[str, tuple[str, ...]] = {
    "blng__Invoice__c": ("IsDeleted", "blng__InvoiceStatus__c"),
    "blng__InvoiceLine__c": ("IsDeleted", "blng__Invoice__c"),
}
_INVOICE_STATUS = ("blng__InvoiceStatus__c",)


def _package_guard(spec: SObjectSpec, current: Mapping[str, Any], store: Reader) -> None:
    """The Billing package's validation: a posted invoice and the lines on it cannot be changed."""
    if spec.name == "blng__Invoice__c" and current.get("blng__InvoiceStatus__c") in POSTED_STATES:
        raise fail("FIELD_CUSTOM_VALIDATION_EXCEPTION", "A posted invoice can't be modified.")
    if spec.name == "blng__InvoiceLine__c" and current.get("blng__Invoice__c"):
        invoice = store.get_fields(schema.BY_NAME["blng__invoice__c"], current["blng__Invoice__c"], _INVOICE_STATUS)
        if invoice is not None and invoice.get("blng__InvoiceStatus__c") in POSTED_STATES:
            raise fail("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Invoice lines on a posted invoice can't be modified.")


def check_id(spec: SObjectSpec, record_id: Any) -> str:
    """A well-formed id of this object, in 18-character form, or a MALFORMED_ID row failure."""
    text = str(record_id) if record_id is not None else ""
    try:
        full = ids.to18(text)
    except ids.InvalidId:
        raise fail("MALFORMED_ID", f"{spec.label} ID: id value of incorrect type: {text}", "Id") from None
    if full[:3] != spec.key_prefix:
        raise fail("MALFORMED_ID", f"{spec.label} ID: id value of incorrect type: {text}", "Id")
    return full


def existing(spec: SObjectSpec, record_id: str, store: Store) -> dict[str, Any]:
    return _live(store.get(spec, record_id))


def _written(spec: SObjectSpec, record_id: str, store: Store) -> dict[str, Any]:
    """`existing` for a write: the same checks, reading only the fields in `_GUARD_READS`."""
    return _live(store.get_fields(spec, record_id, _GUARD_READS.get(spec.name, _DELETED_ONLY)))


def _live(current: dict[str, Any] | None) -> dict[str, Any]:
    if current is None:
        raise fail("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    if current["IsDeleted"]:
        raise fail("ENTITY_IS_DELETED", "entity is deleted")
    return current


def create(spec: SObjectSpec, payload: Mapping[str, Any], store: Store, reads: BatchReads | None = None) -> str:
    return store.insert(spec, coerce_values(spec, payload, reads or store, creating=True))


def update(
    spec: SObjectSpec, record_id: str, payload: Mapping[str, Any], store: Store, reads: BatchReads | None = None
) -> None:
    """`reads`: what the request's transaction read ahead for its writes, when it writes many records."""
    current, rowid = (_written(spec, record_id, store), None) if reads is None else reads.current(spec, record_id)
    values = coerce_values(spec, payload, reads or store, creating=False)
    _package_guard(spec, current, reads or store)
    if store.rewrites:
        _rewrite(spec, values, store)
    store.update(spec, record_id, values, rowid=rowid)


def _rewrite(spec: SObjectSpec, values: dict[str, Any], store: Store) -> None:
    """The opt-in automations (faults.FieldRewrite): a field the write sets is stored as the automation says."""
    for rewrite in store.rewrites:
        field = spec.field(rewrite.field) if rewrite.sobject.lower() == spec.name.lower() else None
        if field is None or field.name not in values:
            continue
        if rewrite.when is None or values[field.name] == rewrite.when:
            values[field.name] = _coerce(spec, field, rewrite.value, store)


def delete(spec: SObjectSpec, record_id: str, store: Store, reads: BatchReads | None = None) -> None:
    current = _written(spec, record_id, store) if reads is None else reads.current(spec, record_id)[0]
    _package_guard(spec, current, reads or store)
    store.mark_deleted(spec, record_id)


class BatchReads:
    """What the checks of one transaction's many writes read, read ahead or read once.

    Made inside the transaction, before its first write, from the records it will write (`writes`: (object, id),
    or (object, None) for an insert). Each written record's own fields (`_GUARD_READS`) are read in one query per
    object and serve its first write only: a record written twice is read again, after the first write, as is a
    record that had no row (an insert of the same transaction may have made it since). A record the checks look up
    in an object the transaction does not write (a line's invoice, a reference's target) is read once: only this
    transaction could change it while it runs, and it does not.
    """

    def __init__(self, store: Store, writes: Iterable[tuple[SObjectSpec, str | None]]) -> None:
        self._store = store
        by_object: dict[str, tuple[SObjectSpec, list[str]]] = {}
        for spec, record_id in writes:
            listed = by_object.setdefault(spec.name, (spec, []))[1]
            if record_id is not None:
                listed.append(record_id)
        self._written = frozenset(by_object)
        self._current: dict[tuple[str, str], tuple[Any, ...]] = {}
        for name, (spec, record_ids) in by_object.items():
            if record_ids:
                rows = store.get_many(spec, record_ids, _GUARD_READS.get(name, _DELETED_ONLY))
                self._current.update(((name, record_id), row) for record_id, row in rows.items())
        self._looked_up: dict[tuple[str, str, tuple[str, ...]], dict[str, Any] | None] = {}

    def current(self, spec: SObjectSpec, record_id: str) -> tuple[dict[str, Any], int | None]:
        """`_written`: the record's checked fields, or the row failure of writing it; and its `_rowid` when it was
        read ahead (a record written again is found by its id)."""
        found = self._current.pop((spec.name, record_id), None)
        if found is None:
            return _written(spec, record_id, self._store), None
        fields = _GUARD_READS.get(spec.name, _DELETED_ONLY)
        return _live(dict(zip(fields, found[1:], strict=True))), int(found[0])

    def picklist(self, spec: SObjectSpec, field: FieldSpec) -> tuple[str, ...]:
        return self._store.picklist(spec, field)

    def get_fields(self, spec: SObjectSpec, record_id: str, fields: tuple[str, ...]) -> dict[str, Any] | None:
        if spec.name in self._written:
            return self._store.get_fields(spec, record_id, fields)
        key = (spec.name, record_id, fields)
        if key not in self._looked_up:
            self._looked_up[key] = self._store.get_fields(spec, record_id, fields)
        return self._looked_up[key]


def lock_keys(spec: SObjectSpec, record_id: str, store: Store) -> list[str]:
    """The record and every master-detail (or locking lookup) ancestor: what a write to it locks.

    The walk itself lives in the store, which caches each chain and knows when a write makes one stale.
    """
    return list(store.lock_chain(spec, record_id))
