"""REST resources: versions, limits, describe, single-record CRUD, and query with locator paging."""

from __future__ import annotations

import re
from typing import Any

from sfcleanup.localorg import records, schema
from sfcleanup.localorg.context import Org, RequestContext
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, not_found
from sfcleanup.localorg.locators import Locator
from sfcleanup.localorg.records import RowFailure
from sfcleanup.localorg.schema import FieldSpec, FieldType, SObjectSpec
from sfcleanup.localorg.soql import SoqlError, compile_soql

DEFAULT_BATCH = 2000
MIN_BATCH = 200
_BATCH_OPTION = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)


def spec_or_404(name: str) -> SObjectSpec:
    spec = schema.sobject(name)
    if spec is None:
        raise BadRequest(404, "NOT_FOUND", "The requested resource does not exist")
    return spec


def record_url(version: str, spec: SObjectSpec, record_id: str) -> str:
    return f"/services/data/v{version}/sobjects/{spec.name}/{record_id}"


def versions(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    latest = int(float(ctx.version))
    return HttpResponse.json(
        200,
        [
            {"label": f"Release {v}", "url": f"/services/data/v{v}.0", "version": f"{v}.0"}
            for v in range(50, latest + 1)
        ],
    )


def limits(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    bulk_batches = org.stats.get("bulk_batches")
    return HttpResponse.json(
        200,
        {
            "DailyApiRequests": {"Max": org.profile.daily_api_limit, "Remaining": org.api_remaining},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": max(0, 15000 - bulk_batches)},
            "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000 - org.stats.get("bulk_query_jobs")},
            "DailyBulkV2QueryFileStorageMB": {"Max": 1048576, "Remaining": 1048576},
        },
    )


def _field_describe(field: FieldSpec, values: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": field.name,
        "label": field.label,
        "type": field.type.value,
        "length": field.length,
        "updateable": field.updateable,
        "createable": field.createable,
        "nillable": field.nillable,
        "custom": field.name.endswith("__c"),
        "filterable": field.type is not FieldType.TEXTAREA,
        "restrictedPicklist": field.restricted,
        "defaultedOnCreate": field.default is not None,
        "picklistValues": [
            # The Billing UI labels the value "Cancelled" as "Canceled"; the API value keeps two Ls.
            {"value": v, "label": "Canceled" if v == "Cancelled" else v, "active": True, "defaultValue": False}
            for v in values
        ],
        "referenceTo": [field.reference_to] if field.reference_to else [],
        "relationshipName": field.relationship_name,
        "cascadeDelete": field.master_detail,
        "relationshipOrder": 0 if field.master_detail else None,
    }


def _object_summary(spec: SObjectSpec, version: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "label": spec.label,
        "keyPrefix": spec.key_prefix,
        "custom": spec.custom,
        "queryable": True,
        "createable": True,
        "updateable": True,
        "deletable": True,
        # The caller's version, as in every other url the org answers (it was fixed at v62.0).
        "urls": {"sobject": f"/services/data/v{version}/sobjects/{spec.name}"},
    }


def describe_global(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    sobjects = [_object_summary(s, ctx.version) for s in schema.SOBJECTS]
    return HttpResponse.json(200, {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects})


def describe(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    spec = spec_or_404(match["sobject"])
    fields = [_field_describe(f, org.store.picklist(spec, f)) for f in spec.api_fields]
    return HttpResponse.json(200, {**_object_summary(spec, ctx.version), "fields": fields})


def sobject_root(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    spec = spec_or_404(match["sobject"])
    if req.method == "GET":
        return HttpResponse.json(200, {"objectDescribe": _object_summary(spec, ctx.version), "recentItems": []})
    payload = req.json()
    if not isinstance(payload, dict):
        raise BadRequest(400, "JSON_PARSER_ERROR", "Expected a JSON object for the record")
    try:
        with org.store.transaction():
            new_id = records.create(spec, payload, org.store)
    except RowFailure as failure:
        error = failure.error
        raise BadRequest(400, error.status_code, error.message, list(error.fields)) from None
    org.wrote(ctx)
    created = HttpResponse.json(201, {"id": new_id, "success": True, "errors": []})
    # Salesforce names the new record's URL in Location; composite copies it into the subrequest's httpHeaders,
    # which were always empty without it.
    created.headers["Location"] = record_url(ctx.version, spec, new_id)
    return created


def shape_record(spec: SObjectSpec, row: dict[str, Any], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": spec.name, "url": record_url(version, spec, row["Id"])}}
    for field in spec.api_fields:
        value = row.get(field.name)
        if field.type is FieldType.BOOLEAN:
            value = bool(value)
        out[field.name] = value
    return out


def sobject_record(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    spec = spec_or_404(match["sobject"])
    try:
        record_id = records.check_id(spec, match["id"])
    except RowFailure:
        raise not_found() from None
    current = org.store.get(spec, record_id)
    if current is None:
        raise not_found()
    if current["IsDeleted"]:
        raise BadRequest(404, "ENTITY_IS_DELETED", "entity is deleted")
    if req.method == "GET":
        return HttpResponse.json(200, shape_record(spec, current, ctx.version))
    payload = req.json() if req.method == "PATCH" else {}
    if not isinstance(payload, dict):
        raise BadRequest(400, "JSON_PARSER_ERROR", "Expected a JSON object for the record")
    lock_error = org.lock_row(ctx, spec, record_id)
    if lock_error is not None:
        raise BadRequest(400, lock_error.status_code, lock_error.message)
    try:
        with org.store.transaction():
            if req.method == "PATCH":
                records.update(spec, record_id, payload, org.store)
            else:
                records.delete(spec, record_id, org.store)
    except RowFailure as failure:
        error = failure.error
        raise BadRequest(400, error.status_code, error.message, list(error.fields)) from None
    org.wrote(ctx)
    return HttpResponse.empty(204)


# --- query --------------------------------------------------------------------------------------------
def _batch_size(req: HttpRequest) -> int:
    option = _BATCH_OPTION.search(req.header("sforce-query-options") or "")
    if option is None:
        return DEFAULT_BATCH
    return max(MIN_BATCH, min(DEFAULT_BATCH, int(option.group(1))))


def _page_size(org: Org, batch: int) -> int:
    """The batch size asked for, or sometimes (seeded) fewer: Salesforce documents batchSize as a hint only."""
    if batch > 1 and org.faults.below(org.profile.short_page_rate):
        return org.faults.integer(batch // 2, batch - 1)
    return batch


def _page(org: Org, ctx: RequestContext, locator: Locator, start: int, endpoint: str) -> HttpResponse:
    chunk = locator.rowids[start : start + _page_size(org, locator.batch)]
    # The version goes to fetch itself: rewriting only the top-level url afterwards left nested parent records
    # (blng__Invoice__r, ...) pointing at v60.0 whatever version the client asked for.
    with org.store.lock:
        rows = locator.compiled.fetch(org.store.conn, chunk, version=f"v{ctx.version}")
    ctx.sleep_ms += len(rows) * org.profile.latency.read_ms_per_record
    end = start + len(chunk)
    body: dict[str, Any] = {"totalSize": len(locator.rowids), "done": end >= len(locator.rowids), "records": rows}
    if end < len(locator.rowids):
        org.locators.keep(locator)
        body["nextRecordsUrl"] = f"/services/data/v{ctx.version}/{endpoint}/{locator.key}-{end}"
    return HttpResponse.json(200, body)


def run_query(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    endpoint = match["endpoint"]
    text = req.param("q")
    if text is None:
        raise BadRequest(400, "MALFORMED_QUERY", "A query string must be provided as the q parameter")
    try:
        compiled = compile_soql(text, now=org.now(), include_deleted=endpoint == "queryAll")
    except SoqlError as exc:
        raise BadRequest(400, exc.error_code, exc.message) from None
    with org.store.lock:
        if compiled.kind == "count":
            return HttpResponse.json(200, {"totalSize": compiled.count(org.store.conn), "done": True, "records": []})
        if compiled.kind == "aggregate":
            rows = compiled.aggregate(org.store.conn)
            return HttpResponse.json(200, {"totalSize": len(rows), "done": True, "records": rows})
        rowids = compiled.rowids(org.store.conn)
    return _page(org, ctx, Locator(compiled, rowids, _batch_size(req)), 0, endpoint)


def query_more(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    key, _, position = match["locator"].rpartition("-")
    locator = org.locators.get(key)
    if locator is None or not position.isdigit():
        raise BadRequest(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return _page(org, ctx, locator, int(position), match["endpoint"])
