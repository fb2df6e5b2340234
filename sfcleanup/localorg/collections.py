"""sObject Collections: create, update and delete up to 200 records in one call.

Rows are locked first (waiting outside the database lock, as other requests must be able to finish; their lock
chains read together), then applied in one transaction. With allOrNone, one failed row rolls back all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sfcleanup import ids
from sfcleanup.localorg import records, schema
from sfcleanup.localorg.context import Org, RequestContext
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse
from sfcleanup.localorg.records import BatchReads, RowError, RowFailure
from sfcleanup.localorg.schema import SObjectSpec

MAX_RECORDS = 200
ROLLED_BACK = RowError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


class _RollBack(Exception):
    pass


def _result(record_id: str | None, error: RowError | None) -> dict[str, Any]:
    out: dict[str, Any] = {"success": error is None, "errors": [] if error is None else [error.as_json()]}
    if record_id is not None:
        out = {"id": record_id, **out}
    return out


def _too_many() -> BadRequest:
    return BadRequest(
        400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call"
    )


def _record_type(record: Any) -> SObjectSpec:
    if not isinstance(record, dict):
        raise records.fail("JSON_PARSER_ERROR", "Each record must be a JSON object")
    attributes = record.get("attributes")
    type_name = attributes.get("type") if isinstance(attributes, dict) else None
    if not isinstance(type_name, str):
        raise records.fail("INVALID_TYPE", "Must send a concrete entity type.")
    spec = schema.sobject(type_name)
    if spec is None:
        raise records.fail("INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
    return spec


Write = Callable[[BatchReads], str | None]


@dataclass(slots=True)
class _Planned:
    """One row of the request: its id, what stops it, what it writes, and whether it locks its record first."""

    record_id: str | None
    error: RowError | None = None
    spec: SObjectSpec | None = None
    write: Write | None = None
    locks: bool = False


def _lock_all(org: Org, ctx: RequestContext, planned: list[_Planned]) -> None:
    """Lock each row that writes an existing record, in request order; their lock chains are read together."""
    targets = [(row.spec, row.record_id) for row in planned if row.locks and row.spec and row.record_id]
    chains = org.store.lock_chains(targets)
    for row in planned:
        if row.locks and row.error is None and row.spec is not None and row.record_id is not None:
            row.error = org.lock_row(ctx, row.spec, row.record_id, chains)


def _apply_all(org: Org, ctx: RequestContext, planned: list[_Planned], all_or_none: bool) -> list[dict[str, Any]]:
    """Lock the rows (waiting outside the database lock), then run each row's write in one transaction; returns
    the row results in request order."""
    _lock_all(org, ctx, planned)
    results: list[tuple[str | None, RowError | None]] = []
    try:
        with org.store.transaction():
            reads = BatchReads(
                org.store, [(row.spec, row.record_id) for row in planned if row.spec and row.write and not row.error]
            )
            for row in planned:
                record_id, error = row.record_id, row.error
                if error is None and row.write is not None:
                    try:
                        record_id = row.write(reads)
                    except RowFailure as failure:
                        error = failure.error
                results.append((record_id, error))
            if all_or_none and any(error is not None for _, error in results):
                raise _RollBack
    except _RollBack:
        return [_result(rid, error or ROLLED_BACK) for rid, error in results]
    org.wrote(ctx, sum(1 for _, error in results if error is None))
    return [_result(rid, error) for rid, error in results]


def _body(req: HttpRequest) -> tuple[list[Any], bool]:
    payload = req.json()
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise BadRequest(400, "JSON_PARSER_ERROR", "The request body must have a records array")
    rows = payload["records"]
    if len(rows) > MAX_RECORDS:
        raise _too_many()
    return rows, bool(payload.get("allOrNone", False))


def _plan_update(org: Org, record: Any) -> _Planned:
    try:
        spec = _record_type(record)
        record_id = records.check_id(spec, record.get("id", record.get("Id")))
    except RowFailure as failure:
        return _Planned(None, failure.error)

    def write(reads: BatchReads) -> str:
        records.update(spec, record_id, record, org.store, reads)
        return record_id

    return _Planned(record_id, spec=spec, write=write, locks=True)


def _plan_create(record: Any, org: Org) -> _Planned:
    try:
        spec = _record_type(record)
    except RowFailure as failure:
        return _Planned(None, failure.error)
    if record.get("id") or record.get("Id"):
        return _Planned(None, RowError("INVALID_FIELD", "cannot specify Id in an insert call", ("Id",)))
    return _Planned(None, spec=spec, write=lambda reads: records.create(spec, record, org.store, reads))


def _plan_delete(org: Org, raw_id: str) -> _Planned:
    spec = schema.BY_PREFIX.get(raw_id[:3])
    if spec is None:
        return _Planned(None, RowError("MALFORMED_ID", f"malformed id {raw_id}", ()))
    try:
        record_id = records.check_id(spec, raw_id)
    except RowFailure as failure:
        return _Planned(None, failure.error)

    def write(reads: BatchReads) -> str:
        records.delete(spec, record_id, org.store, reads)
        return record_id

    return _Planned(record_id, spec=spec, write=write, locks=True)


def _duplicates(raw_ids: list[Any]) -> set[str]:
    """Ids named more than once in one request (compared in 18-character form; malformed ones are left to
    their own row error)."""
    seen: set[str] = set()
    repeated: set[str] = set()
    for raw_id in raw_ids:
        try:
            full = ids.to18(str(raw_id))
        except ids.InvalidId:
            continue
        (repeated if full in seen else seen).add(full)
    return repeated


def _duplicate(record_id: str) -> _Planned:
    return _Planned(record_id, RowError("DUPLICATE_VALUE", f"Duplicate id in list: {record_id}"))


def _row_id(record: Any) -> Any:
    return record.get("id", record.get("Id")) if isinstance(record, dict) else None


def collections(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    # The same id twice in one call: every row naming it fails, before any lock is taken. Salesforce tolerates a
    # few repeats of one id in some APIs; the local org refuses the second, the strict side of that.
    if req.method == "DELETE":
        raw_ids = [i for i in (req.param("ids") or "").split(",") if i]
        if len(raw_ids) > MAX_RECORDS:
            raise _too_many()
        all_or_none = (req.param("allOrNone") or "false").lower() == "true"
        repeated = _duplicates(raw_ids)
        planned = [
            _duplicate(ids.to18(raw_id)) if _in(raw_id, repeated) else _plan_delete(org, raw_id) for raw_id in raw_ids
        ]
        return HttpResponse.json(200, _apply_all(org, ctx, planned, all_or_none))
    rows, all_or_none = _body(req)
    if req.method == "PATCH":
        repeated = _duplicates([_row_id(record) for record in rows])
        planned = [
            _duplicate(ids.to18(str(_row_id(record)))) if _in(_row_id(record), repeated) else _plan_update(org, record)
            for record in rows
        ]
    else:
        planned = [_plan_create(record, org) for record in rows]
    return HttpResponse.json(200, _apply_all(org, ctx, planned, all_or_none))


def _in(raw_id: Any, repeated: set[str]) -> bool:
    if not repeated or raw_id is None:
        return False
    try:
        return ids.to18(str(raw_id)) in repeated
    except ids.InvalidId:
        return False
