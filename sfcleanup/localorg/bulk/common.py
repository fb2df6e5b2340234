"""What the Bulk API 2.0 ingest, query and listing handlers share: finding and registering jobs, state changes,
request body checks, delete and abort."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sfcleanup import ids
from sfcleanup.localorg.bulk.jobs import (
    ABORTABLE,
    DELETABLE,
    DELIMITERS,
    LINE_ENDINGS,
    IngestJob,
    Job,
    JobState,
)
from sfcleanup.localorg.context import Org
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, not_found
from sfcleanup.sftime import format_datetime

J = TypeVar("J", bound=Job)


def timestamp(org: Org) -> str:
    return format_datetime(org.now())


def set_state(org: Org, job: Job, state: JobState, error_message: str | None = None) -> None:
    job.state = state
    job.modstamp = timestamp(org)
    if error_message is not None:
        job.error_message = error_message


def find_job(org: Org, raw_id: str, kind: type[J]) -> J:
    try:
        job_id = ids.to18(raw_id)
    except ids.InvalidId:
        raise not_found() from None
    job = org.bulk.jobs.get(job_id)
    if not isinstance(job, kind):
        raise not_found()
    return job


def add_job(org: Org, job: Job) -> None:
    with org.bulk.lock:
        org.bulk.jobs[job.id] = job


def invalid_state(message: str) -> BadRequest:
    return BadRequest(400, "INVALIDJOBSTATE", message)


def json_object(req: HttpRequest) -> dict[str, Any]:
    payload = req.json()
    if not isinstance(payload, dict):
        raise BadRequest(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return payload


def choice(payload: dict[str, Any], key: str, allowed: Iterable[str], default: str | None = None) -> str:
    value = payload.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(400, "INVALID_INPUT", f"Invalid value for {key}: {value}")
    return value


def format_options(payload: dict[str, Any]) -> tuple[str, str]:
    if payload.get("contentType", "CSV") != "CSV":
        raise BadRequest(400, "INVALID_INPUT", "The only content type supported is CSV")
    return choice(payload, "columnDelimiter", DELIMITERS, "COMMA"), choice(payload, "lineEnding", LINE_ENDINGS, "LF")


def delete_job(org: Org, job: Job) -> HttpResponse:
    with org.bulk.lock:
        if job.state not in DELETABLE:
            raise invalid_state(f"Deleting a job in state {job.state} is not allowed")
        org.bulk.jobs.pop(job.id, None)
        if job.state is JobState.UPLOAD_COMPLETE:
            # Nobody can read a deleted job's results: stop its processing as an abort would.
            set_state(org, job, JobState.ABORTED)
    if isinstance(job, IngestJob):
        job.deleted = True
        # A running job's thread still writes its files: it removes them itself when it stops.
        if job.done.is_set():
            shutil.rmtree(job.directory, ignore_errors=True)
    return HttpResponse.empty(204)


def abort(org: Org, job: Job, abandon: Callable[[IngestJob], None] | None = None) -> dict[str, Any]:
    """Abort the job; returns its info as of the transition. `abandon` writes the results of an ingest job
    that never started processing."""
    with org.bulk.lock:
        if job.state is JobState.JOB_COMPLETE:
            raise invalid_state("Aborting already Completed Job not allowed")
        if job.state not in ABORTABLE:
            raise invalid_state(f"Aborting a job in state {job.state} is not allowed")
        never_started = job.state is JobState.OPEN
        set_state(org, job, JobState.ABORTED)
        info = job.info(detail=False)
    if isinstance(job, IngestJob) and never_started:
        # No thread runs for a job aborted before it was closed: its results are final now.
        if abandon is not None:
            abandon(job)
        job.done.set()
    return info
