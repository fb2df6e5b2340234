"""Bulk API 2.0 ingest jobs of the local org: the HTTP handlers. Processing is in `processing`, result files
in `results`."""

from __future__ import annotations

import re
import threading
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
from sfcleanup.localorg.bulk.jobs import (
    FINISHED,
    INGEST_OPERATIONS,
    JOB_KEY_PREFIX,
    MAX_UPLOAD_BYTES,
    RESULT_FILES,
    RESULTS_WAIT_S,
    IngestJob,
    JobState,
)
from sfcleanup.localorg.bulk.listing import listing
from sfcleanup.localorg.bulk.processing import run_job
from sfcleanup.localorg.bulk.results import abandon
from sfcleanup.localorg.context import Org, RequestContext
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse
from sfcleanup.localorg.schema import SObjectSpec


# --- ingest: HTTP handlers -------------------------------------------------------------------------------------
def ingest_jobs(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    if req.method == "GET":
        return listing(org, req, IngestJob, ctx.version)
    payload = json_object(req)
    operation = choice(payload, "operation", INGEST_OPERATIONS)
    object_name = payload.get("object")
    if not isinstance(object_name, str) or not object_name:
        raise BadRequest(400, "INVALID_INPUT", "object is required")
    spec = schema.sobject(object_name)
    if spec is None:
        raise BadRequest(400, "INVALIDENTITY", f"Entity '{object_name}' is not supported by the Bulk API.")
    delimiter, line_ending = format_options(payload)
    external_id = _external_id(spec, operation, payload.get("externalIdFieldName"))
    job_id = idgen.record_id(JOB_KEY_PREFIX, next(org.bulk.numbers))
    stamp = timestamp(org)
    job = IngestJob(
        id=job_id,
        operation=operation,
        sobject=spec,
        api_version=ctx.version,
        line_ending=line_ending,
        column_delimiter=delimiter,
        created_date=stamp,
        modstamp=stamp,
        state=JobState.OPEN,
        external_id=external_id,
        directory=org.bulk.job_directory(job_id),
    )
    add_job(org, job)
    org.stats.add("bulk_jobs")
    return HttpResponse.json(200, job.info(detail=False))


def _external_id(spec: SObjectSpec, operation: str, value: Any) -> str | None:
    if operation != "upsert":
        return None
    if not isinstance(value, str) or not value:
        message = f"External ID was blank for {spec.name}. An External ID must be specified for upsert."
        raise BadRequest(400, "INVALIDJOB", message)
    # The local schema has no external id fields: Id is the only field an upsert can match on.
    if value.lower() != "id":
        message = f"Field name provided, {value} is not an External ID or indexed field for {spec.name}"
        raise BadRequest(400, "INVALIDJOB", message)
    return "Id"


def ingest_job(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = find_job(org, match["job_id"], IngestJob)
    if req.method == "DELETE":
        return delete_job(org, job)
    if req.method == "PATCH":
        wanted = json_object(req).get("state")
        if wanted == JobState.UPLOAD_COMPLETE:
            return HttpResponse.json(200, _close_job(org, job))
        if wanted == JobState.ABORTED:
            return HttpResponse.json(200, abort(org, job, abandon))
        raise invalid_state(f"Invalid state transition to {wanted}")
    with org.bulk.lock:
        return HttpResponse.json(200, job.info(detail=True))


def _close_job(org: Org, job: IngestJob) -> dict[str, Any]:
    """Close the job and start processing it; returns its info as of the transition (UploadComplete)."""
    state = org.bulk
    with state.lock:
        if job.state is not JobState.OPEN:
            raise invalid_state(f"Closing a job in state {job.state} is not allowed")
        # Drawn here, in request order, so a seeded profile fails the same jobs on every run.
        job.fails = org.faults.draw(org.profile.bulk_job_failure_rate)
        set_state(org, job, JobState.UPLOAD_COMPLETE)
        info = job.info(detail=False)
        thread = threading.Thread(target=run_job, args=(org, job), name=f"bulk-{job.id}", daemon=True)
        state.threads = [t for t in state.threads if t.is_alive()] + [thread]
    thread.start()
    return info


def ingest_upload(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = find_job(org, match["job_id"], IngestJob)
    if len(req.body) > MAX_UPLOAD_BYTES:
        raise BadRequest(400, "INVALID_INPUT", f"The upload exceeds the maximum size of {MAX_UPLOAD_BYTES} bytes")
    # Written aside first, so the bulk lock is not held for a 100 MB write and a half-written file is never read.
    part = job.directory / f"upload-{ctx.owner}.part"
    part.write_bytes(req.body)
    with org.bulk.lock:
        problem = _upload_problem(job)
        if problem is None:
            part.replace(job.upload_path)
            job.uploaded = True
    if problem is not None:
        part.unlink(missing_ok=True)
        raise problem
    return HttpResponse.empty(201)


def _upload_problem(job: IngestJob) -> BadRequest | None:
    if job.state is not JobState.OPEN:
        return invalid_state(f"Uploading data to a job in state {job.state} is not allowed")
    if job.uploaded:
        return BadRequest(
            400,
            "BULK_API_ERROR",
            f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / 'Delete' the current Job "
            "then create a new Job and make sure you only do 'PUT' once on a given Job.",
        )
    return None


def ingest_results(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = find_job(org, match["job_id"], IngestJob)
    with org.bulk.lock:
        if job.state not in FINISHED:
            raise invalid_state(f"Results are not available for a job in state {job.state}")
    # An aborted job's thread may still be finishing its batch: its files are complete once it is done.
    if not job.done.wait(RESULTS_WAIT_S):
        raise BadRequest(503, "SERVER_UNAVAILABLE", "The job's results are not ready yet; try again later")
    body = job.result_path(RESULT_FILES[match["results"].lower()]).read_bytes()
    return HttpResponse(200, body, {"Content-Type": "text/csv"})
