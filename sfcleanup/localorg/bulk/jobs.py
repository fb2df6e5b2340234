"""Bulk API 2.0 jobs of the local org: their states, the org-level state that holds them, and the helpers
the ingest and query handlers share."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sfcleanup import ids
from sfcleanup.localorg import idgen
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, not_found
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.soql import CompiledQuery
from sfcleanup.sftime import format_datetime

if TYPE_CHECKING:
    from sfcleanup.localorg.app import LocalOrg


BATCH_RECORDS = 10_000
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_RECORDS = 50_000
NULL_VALUE = "#N/A"
JOB_KEY_PREFIX = "750"
USER_ID = idgen.record_id("005", 1)
# How long a results request waits for an aborted job's thread to finish the batch it is in.
RESULTS_WAIT_S = 60.0
FAILED_JOB_MESSAGE = "InternalServerError : The job failed while processing its batches"
# Batches of one job processed at once ("Bulk API 2.0 processes batches in parallel"; how many is not documented).
PARALLEL_BATCHES = 4
# "Salesforce automatically retries failed batches up to a maximum of 20 times" (Understanding Bulk API 2.0 Ingest).
BATCH_RETRIES = 20
BATCH_TIMEOUT_MESSAGE = "InternalServerError : A batch could not be processed within the time limit after 20 retries"

INGEST_OPERATIONS = frozenset({"insert", "update", "upsert", "delete", "hardDelete"})
QUERY_OPERATIONS = frozenset({"query", "queryAll"})
DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
RESULT_FILES = {"successfulresults": "success", "failedresults": "failed", "unprocessedrecords": "unprocessed"}

# Lock owners of job batches: far above the request counter, so a batch never shares an owner with a request.
_BATCH_OWNERS = itertools.count(1 << 40)


class JobState(StrEnum):
    OPEN = "Open"
    UPLOAD_COMPLETE = "UploadComplete"
    IN_PROGRESS = "InProgress"
    JOB_COMPLETE = "JobComplete"
    FAILED = "Failed"
    ABORTED = "Aborted"


FINISHED = frozenset({JobState.JOB_COMPLETE, JobState.FAILED, JobState.ABORTED})
ABORTABLE = frozenset({JobState.OPEN, JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS})
DELETABLE = frozenset({JobState.UPLOAD_COMPLETE, JobState.JOB_COMPLETE, JobState.FAILED, JobState.ABORTED})


# --- org-level state ------------------------------------------------------------------------------------------
class _BulkState:
    """What an org's jobs share: the lock over job fields, the job counter, the temp directory, the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.numbers = itertools.count(1)
        self.threads: list[threading.Thread] = []
        # Job lists (GET jobs/ingest, jobs/query): the foreign jobs, made once, and open list locators.
        self.foreign: dict[bool, Any] = {}
        self.job_lists: dict[str, list[dict[str, Any]]] = {}
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None

    def job_directory(self, job_id: str) -> Path:
        with self.lock:
            if self._tempdir is None:
                self._tempdir = tempfile.TemporaryDirectory(prefix="sfcleanup-bulk-")
            path = Path(self._tempdir.name) / job_id
        path.mkdir()
        return path

    def close(self) -> None:
        with self.lock:
            if self._tempdir is not None:
                self._tempdir.cleanup()
                self._tempdir = None


# Keyed weakly by org: LocalOrg offers `bulk_jobs` for the jobs themselves, and the temp directory must go away
# with its org.
_STATES: weakref.WeakKeyDictionary[LocalOrg, _BulkState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(org: LocalOrg) -> _BulkState:
    with _STATES_LOCK:
        state = _STATES.get(org)
        if state is None:
            state = _STATES[org] = _BulkState()
        return state


def wait_idle(org: LocalOrg, timeout: float = 30.0) -> bool:
    """Wait until no ingest job of `org` is processing; False if one still is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    threads = list(_state(org).threads)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(thread.is_alive() for thread in threads)


def close(org: LocalOrg, timeout: float = 30.0) -> None:
    """Let running jobs finish, then delete every job's files; their results are no longer served."""
    wait_idle(org, timeout)
    _state(org).close()


# --- jobs -----------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class _Job:
    id: str
    operation: str
    sobject: SObjectSpec
    api_version: str
    line_ending: str
    column_delimiter: str
    created_date: str
    state: JobState
    modstamp: str
    error_message: str | None = None
    processed: int = 0
    processing_ms: int = 0
    retries: int = 0

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.column_delimiter]

    @property
    def eol(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    def info(self, *, detail: bool) -> dict[str, Any]:
        """Job info as Salesforce returns it; `detail` adds what only GET of one job shows."""
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject.name,
            "createdById": USER_ID,
            "createdDate": self.created_date,
            "systemModstamp": self.modstamp,
            "state": str(self.state),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }

    def _details(self, job_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobType": job_type,
            "numberRecordsProcessed": self.processed,
            "retries": self.retries,
            "totalProcessingTime": self.processing_ms,
        }
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


@dataclass(kw_only=True)
class IngestJob(_Job):
    directory: Path
    external_id: str | None = None
    uploaded: bool = False
    failed: int = 0
    fails: bool = False
    deleted: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def upload_path(self) -> Path:
        return self.directory / "upload.csv"

    def result_path(self, name: str) -> Path:
        return self.directory / f"{name}.csv"

    def info(self, *, detail: bool) -> dict[str, Any]:
        out = super().info(detail=detail)
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        out["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if detail:
            out |= self._details("V2Ingest")
            out["numberRecordsFailed"] = self.failed
            out["apiActiveProcessingTime"] = self.processing_ms
            out["apexProcessingTime"] = 0
        return out


@dataclass(kw_only=True)
class QueryJob(_Job):
    compiled: CompiledQuery
    rowids: list[int]

    def info(self, *, detail: bool) -> dict[str, Any]:
        out = super().info(detail=detail)
        if detail:
            out |= self._details("V2Query")
        return out


J = TypeVar("J", bound=_Job)


def _now(org: LocalOrg) -> str:
    return format_datetime(org.now())


def _set_state(org: LocalOrg, job: _Job, state: JobState, error_message: str | None = None) -> None:
    job.state = state
    job.modstamp = _now(org)
    if error_message is not None:
        job.error_message = error_message


def _find_job(org: LocalOrg, raw_id: str, kind: type[J]) -> J:
    try:
        job_id = ids.to18(raw_id)
    except ids.InvalidId:
        raise not_found() from None
    job = org.bulk_jobs.get(job_id)
    if not isinstance(job, kind):
        raise not_found()
    return job


def _add_job(org: LocalOrg, job: _Job) -> None:
    with _state(org).lock:
        org.bulk_jobs[job.id] = job


def _invalid_state(message: str) -> BadRequest:
    return BadRequest(400, "INVALIDJOBSTATE", message)


def _json_object(req: HttpRequest) -> dict[str, Any]:
    payload = req.json()
    if not isinstance(payload, dict):
        raise BadRequest(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return payload


def _choice(payload: dict[str, Any], key: str, allowed: Iterable[str], default: str | None = None) -> str:
    value = payload.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise BadRequest(400, "INVALID_INPUT", f"Invalid value for {key}: {value}")
    return value


def _format_options(payload: dict[str, Any]) -> tuple[str, str]:
    if payload.get("contentType", "CSV") != "CSV":
        raise BadRequest(400, "INVALID_INPUT", "The only content type supported is CSV")
    return _choice(payload, "columnDelimiter", DELIMITERS, "COMMA"), _choice(payload, "lineEnding", LINE_ENDINGS, "LF")


def _delete_job(org: LocalOrg, job: _Job) -> HttpResponse:
    with _state(org).lock:
        if job.state not in DELETABLE:
            raise _invalid_state(f"Deleting a job in state {job.state} is not allowed")
        org.bulk_jobs.pop(job.id, None)
        if job.state is JobState.UPLOAD_COMPLETE:
            # Nobody can read a deleted job's results: stop its processing as an abort would.
            _set_state(org, job, JobState.ABORTED)
    if isinstance(job, IngestJob):
        job.deleted = True
        # A running job's thread still writes its files: it removes them itself when it stops.
        if job.done.is_set():
            shutil.rmtree(job.directory, ignore_errors=True)
    return HttpResponse.empty(204)


def _abort(org: LocalOrg, job: _Job, abandon: Callable[[IngestJob], None] | None = None) -> dict[str, Any]:
    """Abort the job; returns its info as of the transition. `abandon` writes the results of an ingest job
    that never started processing."""
    with _state(org).lock:
        if job.state is JobState.JOB_COMPLETE:
            raise _invalid_state("Aborting already Completed Job not allowed")
        if job.state not in ABORTABLE:
            raise _invalid_state(f"Aborting a job in state {job.state} is not allowed")
        never_started = job.state is JobState.OPEN
        _set_state(org, job, JobState.ABORTED)
        info = job.info(detail=False)
    if isinstance(job, IngestJob) and never_started:
        # No thread runs for a job aborted before it was closed: its results are final now.
        if abandon is not None:
            abandon(job)
        job.done.set()
    return info
