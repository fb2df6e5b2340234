"""Bulk API 2.0 query jobs of the local org: a snapshot of the matching rows, served in locator pages."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
from typing import Any

from sfcleanup.localorg import idgen, schema
from sfcleanup.localorg.bulk.common import (
    abort,
    add_job,
    choice,
    delete_job,
    find_job,
    format_options,
    invalid_state,
    json_object,
    set_state,
    timestamp,
)
from sfcleanup.localorg.bulk.jobs import DEFAULT_MAX_RECORDS, JOB_KEY_PREFIX, QUERY_OPERATIONS, JobState, QueryJob
from sfcleanup.localorg.bulk.listing import listing
from sfcleanup.localorg.context import Org, RequestContext
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse
from sfcleanup.localorg.schema import FieldType, SObjectSpec
from sfcleanup.localorg.soql import SoqlError, compile_soql
from sfcleanup.localorg.soql.parser import parse


# --- query jobs -----------------------------------------------------------------------------------------------
def query_jobs(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    if req.method == "GET":
        # The list shows each job as its own GET would at that moment (`_settle`): looking at a job through the
        # list is a look like any other.
        with org.bulk.lock:
            own = [job for job in org.bulk.jobs.values() if isinstance(job, QueryJob)]
        for job in own:
            _settle(org, job)
        return listing(org, req, QueryJob, ctx.version)
    payload = json_object(req)
    operation = choice(payload, "operation", QUERY_OPERATIONS)
    text = payload.get("query")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(400, "INVALID_INPUT", "query is required")
    delimiter, line_ending = format_options(payload)
    try:
        compiled = compile_soql(text, now=org.now(), include_deleted=operation == "queryAll")
    except SoqlError as exc:
        raise BadRequest(400, exc.error_code, exc.message) from None
    if compiled.kind != "records":
        raise BadRequest(400, "INVALID_INPUT", "Aggregate queries are not supported by Bulk API 2.0 query jobs")
    _refuse_unsupported_clauses(text)
    with org.store.lock:
        rowids = compiled.rowids(org.store.conn)
    # Results come in no particular order (chunks are processed in parallel): a client must not rely on any.
    org.faults.shuffle(rowids)
    stamp = timestamp(org)
    job = QueryJob(
        id=idgen.record_id(JOB_KEY_PREFIX, next(org.bulk.numbers)),
        operation=operation,
        sobject=compiled.sobject,
        api_version=ctx.version,
        line_ending=line_ending,
        column_delimiter=delimiter,
        created_date=stamp,
        modstamp=stamp,
        state=JobState.UPLOAD_COMPLETE,
        compiled=compiled,
        rowids=rowids,
    )
    add_job(org, job)
    org.stats.add("bulk_query_jobs")
    return HttpResponse.json(200, job.info(detail=False))


def _refuse_unsupported_clauses(text: str) -> None:
    """ "Bulk API 2.0 doesn't support SOQL queries that include any of these items: GROUP BY, LIMIT, ORDER BY,
    OFFSET, or TYPEOF clauses" (Create a Query Job). Salesforce may still run some of them; refusing them keeps
    a client from depending on an order or a cut the platform does not promise. TYPEOF is not in the local
    grammar at all, and GROUP BY makes an aggregate query, refused above."""
    query = parse(text)
    clauses = [
        name
        for name, present in (
            ("ORDER BY", bool(query.order_by)),
            ("LIMIT", query.limit is not None),
            ("OFFSET", query.offset is not None),
        )
        if present
    ]
    if clauses:
        raise BadRequest(400, "INVALID_INPUT", f"{', '.join(clauses)} is not supported by Bulk API 2.0 query jobs")


def _settle(org: Org, job: QueryJob) -> None:
    """The rows were read when the job was created: from the first look after that, the job is complete."""
    with org.bulk.lock:
        if job.state in (JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS):
            job.processed = len(job.rowids)
            set_state(org, job, JobState.JOB_COMPLETE)


def query_job(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = find_job(org, match["job_id"], QueryJob)
    if req.method == "DELETE":
        return delete_job(org, job)
    if req.method == "PATCH":
        wanted = json_object(req).get("state")
        if wanted != JobState.ABORTED:
            raise invalid_state(f"Invalid state transition to {wanted}")
        return HttpResponse.json(200, abort(org, job))
    _settle(org, job)
    with org.bulk.lock:
        return HttpResponse.json(200, job.info(detail=True))


def _locator(offset: int) -> str:
    # Salesforce's locators are opaque; these encode the next offset the way theirs look (MTAwMDA for 10000).
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def _offset(locator: str, total: int) -> int:
    try:
        decoded = base64.b64decode(locator + "=" * (-len(locator) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    if not decoded.isdigit() or int(decoded) > total:
        raise BadRequest(400, "INVALID_INPUT", f"Invalid locator: {locator}")
    return int(decoded)


def _max_records(req: HttpRequest) -> int:
    raw = req.param("maxRecords")
    if not raw:
        return DEFAULT_MAX_RECORDS
    if not raw.isdigit() or int(raw) < 1:
        raise BadRequest(400, "INVALID_INPUT", f"Invalid maxRecords: {raw}")
    return int(raw)


def query_results(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = find_job(org, match["job_id"], QueryJob)
    _settle(org, job)
    if job.state is not JobState.JOB_COMPLETE:
        raise invalid_state(f"Results are not available for a job in state {job.state}")
    total = len(job.rowids)
    locator = req.param("locator")
    start = _offset(locator, total) if locator else 0
    end = min(total, start + _max_records(req))
    with org.store.lock:
        rows = job.compiled.fetch_flat(org.store.conn, job.rowids[start:end])
    ctx.sleep_ms += len(rows) * org.profile.latency.read_ms_per_record
    headers = {
        "Content-Type": "text/csv",
        "Sforce-NumberOfRecords": str(len(rows)),
        "Sforce-Locator": _locator(end) if end < total else "null",
    }
    return HttpResponse(200, _query_csv(job, rows).encode(), headers)


def _query_csv(job: QueryJob, rows: list[dict[str, Any]]) -> str:
    columns = list(job.compiled.columns)
    types = [_column_type(job.sobject, column) for column in columns]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=job.delimiter, lineterminator=job.eol, quoting=csv.QUOTE_ALL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(column), kind) for column, kind in zip(columns, types, strict=True)])
    return buffer.getvalue()


def _column_type(spec: SObjectSpec, path: str) -> FieldType | None:
    """The type of a dotted column path (`Order.Account.Name`), following relationship names from `spec`."""
    *relationships, name = path.split(".")
    current: SObjectSpec | None = spec
    for relationship in relationships:
        lookup = current.relationship(relationship) if current is not None else None
        current = schema.sobject(lookup.reference_to or "") if lookup is not None else None
    found = current.field(name) if current is not None else None
    return found.type if found is not None else None


def _csv_value(value: Any, kind: FieldType | None) -> str:
    """A value as Bulk API 2.0 query results print it; a null is an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool) or kind is FieldType.BOOLEAN:
        return "true" if value else "false"
    text = str(value)
    if kind is FieldType.DATETIME and text.endswith("+0000"):
        # REST returns +0000; Bulk query CSVs write the same instant with a Z.
        return text.removesuffix("+0000") + "Z"
    return text
