"""Bulk API 2.0 ingest and query jobs of the local org.

Ingest: create a job, PUT one CSV, PATCH it to UploadComplete; a daemon thread then moves it through InProgress
to JobComplete (or Failed), processing the rows in internal batches of 10,000 as Salesforce does. Each batch
locks its rows with its own lock owner, writes them in one store transaction (a row that fails raises before it
writes, so it never rolls back the others), then sleeps the profile's per-record cost while still holding its
row locks, because a real batch holds them for its whole transaction.

Choices where Salesforce leaves room, documented here once:

- A job drawn to fail (`bulk_job_failure_rate`, drawn once per job when it is closed) processes the first half
  of its 10,000-record batches, rounded down, then ends Failed: a job of one batch writes nothing. The rows it
  did process are in successfulResults/failedResults, the others in unprocessedrecords.
- `bulk_unprocessed_rate` leaves that share of rows (one draw per row) unprocessed in a JobComplete job.
- An aborted job finishes the batch it is in; its later batches are reported as unprocessed.
- A second PUT to one job is refused, as Salesforce does. Results are served once the job is JobComplete,
  Failed or Aborted.
- Query jobs snapshot their matching rows when created (state UploadComplete) and report JobComplete from the
  next look on. Pages are read from that snapshot; without maxRecords a page holds 50,000 rows, the page size
  simple-salesforce asks for by default.

The uploaded CSV and the result files live in a temporary directory per org, so a job of 100,000+ rows holds one
batch of parsed rows in memory, never the whole file.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import itertools
import re
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from sfcleanup import ids
from sfcleanup.localorg import records, schema
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, not_found
from sfcleanup.localorg.records import RowError, RowFailure
from sfcleanup.localorg.schema import FieldType, SObjectSpec
from sfcleanup.localorg.soql import CompiledQuery, SoqlError, compile_soql
from sfcleanup.localorg.store import Store, quote
from sfcleanup.sftime import format_datetime

if TYPE_CHECKING:
    from sfcleanup.localorg.app import Handler, LocalOrg, RequestContext

BATCH_RECORDS = 10_000
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_RECORDS = 50_000
NULL_VALUE = "#N/A"
JOB_KEY_PREFIX = "750"
USER_ID = ids.make("005", 1)
# How long a results request waits for an aborted job's thread to finish the batch it is in.
RESULTS_WAIT_S = 60.0
FAILED_JOB_MESSAGE = "InternalServerError : The job failed while processing its batches"

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
            "retries": 0,
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


def _listing(org: LocalOrg, kind: type[_Job]) -> HttpResponse:
    with _state(org).lock:
        listed = [job.info(detail=False) for job in org.bulk_jobs.values() if isinstance(job, kind)]
    return HttpResponse.json(200, {"done": True, "records": listed, "nextRecordsUrl": None})


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


def _abort(org: LocalOrg, job: _Job) -> dict[str, Any]:
    """Abort the job; returns its info as of the transition."""
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
        _abandon(job)
        job.done.set()
    return info


# --- ingest: HTTP handlers -------------------------------------------------------------------------------------
def ingest_jobs(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    if req.method == "GET":
        return _listing(org, IngestJob)
    payload = _json_object(req)
    operation = _choice(payload, "operation", INGEST_OPERATIONS)
    object_name = payload.get("object")
    if not isinstance(object_name, str) or not object_name:
        raise BadRequest(400, "INVALID_INPUT", "object is required")
    spec = schema.sobject(object_name)
    if spec is None:
        raise BadRequest(400, "INVALIDENTITY", f"Entity '{object_name}' is not supported by the Bulk API.")
    delimiter, line_ending = _format_options(payload)
    external_id = _external_id(spec, operation, payload.get("externalIdFieldName"))
    job_id = ids.make(JOB_KEY_PREFIX, next(_state(org).numbers))
    stamp = _now(org)
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
        directory=_state(org).job_directory(job_id),
    )
    _add_job(org, job)
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


def ingest_job(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = _find_job(org, match["job_id"], IngestJob)
    if req.method == "DELETE":
        return _delete_job(org, job)
    if req.method == "PATCH":
        wanted = _json_object(req).get("state")
        if wanted == JobState.UPLOAD_COMPLETE:
            return HttpResponse.json(200, _close_job(org, job))
        if wanted == JobState.ABORTED:
            return HttpResponse.json(200, _abort(org, job))
        raise _invalid_state(f"Invalid state transition to {wanted}")
    with _state(org).lock:
        return HttpResponse.json(200, job.info(detail=True))


def _close_job(org: LocalOrg, job: IngestJob) -> dict[str, Any]:
    """Close the job and start processing it; returns its info as of the transition (UploadComplete)."""
    state = _state(org)
    with state.lock:
        if job.state is not JobState.OPEN:
            raise _invalid_state(f"Closing a job in state {job.state} is not allowed")
        # Drawn here, in request order, so a seeded profile fails the same jobs on every run.
        job.fails = org.faults.draw(org.profile.bulk_job_failure_rate)
        _set_state(org, job, JobState.UPLOAD_COMPLETE)
        info = job.info(detail=False)
        thread = threading.Thread(target=_run_job, args=(org, job), name=f"bulk-{job.id}", daemon=True)
        state.threads = [t for t in state.threads if t.is_alive()] + [thread]
    thread.start()
    return info


def ingest_upload(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = _find_job(org, match["job_id"], IngestJob)
    if len(req.body) > MAX_UPLOAD_BYTES:
        raise BadRequest(400, "INVALID_INPUT", f"The upload exceeds the maximum size of {MAX_UPLOAD_BYTES} bytes")
    # Written aside first, so the bulk lock is not held for a 100 MB write and a half-written file is never read.
    part = job.directory / f"upload-{ctx.owner}.part"
    part.write_bytes(req.body)
    with _state(org).lock:
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
        return _invalid_state(f"Uploading data to a job in state {job.state} is not allowed")
    if job.uploaded:
        return BadRequest(
            400,
            "BULK_API_ERROR",
            f"Found multiple contents for job: <{job.id}>, please 'Close' / 'Abort' / 'Delete' the current Job "
            "then create a new Job and make sure you only do 'PUT' once on a given Job.",
        )
    return None


def ingest_results(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = _find_job(org, match["job_id"], IngestJob)
    with _state(org).lock:
        if job.state not in FINISHED:
            raise _invalid_state(f"Results are not available for a job in state {job.state}")
    # An aborted job's thread may still be finishing its batch: its files are complete once it is done.
    if not job.done.wait(RESULTS_WAIT_S):
        raise BadRequest(503, "SERVER_UNAVAILABLE", "The job's results are not ready yet; try again later")
    body = job.result_path(RESULT_FILES[match["results"].lower()]).read_bytes()
    return HttpResponse(200, body, {"Content-Type": "text/csv"})


# --- ingest: result files --------------------------------------------------------------------------------------
class _Results:
    """The job's three result files as Salesforce writes them: the sf__ columns, then the uploaded columns."""

    def __init__(self, job: IngestJob, header: list[str]) -> None:
        self._files = [job.result_path(name).open("w", encoding="utf-8", newline="") for name in _RESULT_NAMES]
        delimiter, eol = job.delimiter, job.eol
        self._success, self._failed = (
            csv.writer(handle, delimiter=delimiter, lineterminator=eol, quoting=csv.QUOTE_ALL)
            for handle in self._files[:2]
        )
        self._unprocessed = csv.writer(self._files[2], delimiter=delimiter, lineterminator=eol)
        names = [_minimal(name, delimiter) for name in header]
        self._files[0].write(delimiter.join(['"sf__Id"', '"sf__Created"', *names]) + eol)
        self._files[1].write(delimiter.join(['"sf__Id"', '"sf__Error"', *names]) + eol)
        self._unprocessed.writerow(header)

    def success(self, record_id: str, created: bool, cells: list[str]) -> None:
        self._success.writerow([record_id, "true" if created else "false", *cells])

    def failure(self, record_id: str | None, error: RowError, cells: list[str]) -> None:
        self._failed.writerow([record_id or "", error_text(error), *cells])

    def unprocessed(self, rows: Iterable[list[str]]) -> None:
        self._unprocessed.writerows(rows)

    def close(self) -> None:
        for handle in self._files:
            handle.close()


_RESULT_NAMES = ("success", "failed", "unprocessed")


def _minimal(name: str, delimiter: str) -> str:
    """A header name CSV-quoted only where it must be, as it was uploaded."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow([name])
    return buffer.getvalue()


def error_text(error: RowError) -> str:
    """Salesforce's sf__Error: `STATUS_CODE:message:fields --`, or `STATUS_CODE:message:--` without fields."""
    fields = ",".join(error.fields)
    return f"{error.status_code}:{error.message}:{fields + ' ' if fields else ''}--"


def _open_upload(job: IngestJob) -> IO[str]:
    # utf-8-sig: spreadsheet tools put a byte-order mark before the header; Salesforce ignores it.
    return job.upload_path.open(encoding="utf-8-sig", newline="")


def _records(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    return (cells for cells in reader if cells)  # a blank line is not a record


def _abandon(job: IngestJob) -> None:
    """Results of a job that processes nothing: every uploaded row is unprocessed."""
    if not job.uploaded:
        _Results(job, []).close()
        return
    with _open_upload(job) as source:
        reader = csv.reader(source, delimiter=job.delimiter)
        with closing(_Results(job, next(reader, []))) as results:
            results.unprocessed(_records(reader))


# --- ingest: processing ----------------------------------------------------------------------------------------
def _run_job(org: LocalOrg, job: IngestJob) -> None:
    started = time.monotonic()
    try:
        outcome = _process(org, job)
    except Exception as exc:  # a thread has no caller: a bug must still end the job, not leave it InProgress
        outcome = f"InternalServerError : {type(exc).__name__}: {exc}"
    # The final state is set only after the result files are closed, so a client never reads half a file.
    with _state(org).lock:
        job.processing_ms = int((time.monotonic() - started) * 1000)
        if job.state is not JobState.ABORTED:
            if outcome is None:
                _set_state(org, job, JobState.JOB_COMPLETE)
            else:
                _set_state(org, job, JobState.FAILED, outcome)
                org.stats.add("bulk_jobs_failed")
    job.done.set()
    if job.deleted:
        shutil.rmtree(job.directory, ignore_errors=True)


def _process(org: LocalOrg, job: IngestJob) -> str | None:
    """Process the upload; returns the job's error message when it fails, None when it completes."""
    with _state(org).lock:
        aborted = job.state is JobState.ABORTED
        if not aborted:
            _set_state(org, job, JobState.IN_PROGRESS)
    if aborted or not job.uploaded:
        _abandon(job)
        return None
    problem = _line_ending_problem(job)
    fail_after = _count_batches(job) // 2 if job.fails else None
    with _open_upload(job) as source:
        reader = csv.reader(source, delimiter=job.delimiter)
        header = next(reader, [])
        with closing(_Results(job, header)) as results:
            problem = problem or _header_problem(job.sobject, header)
            if problem is not None:
                results.unprocessed(_records(reader))
                return problem
            _process_batches(org, job, header, reader, results, fail_after)
    return FAILED_JOB_MESSAGE if fail_after is not None else None


def _count_batches(job: IngestJob) -> int:
    with _open_upload(job) as source:
        rows = sum(1 for _ in _records(csv.reader(source, delimiter=job.delimiter))) - 1
    return -(-max(0, rows) // BATCH_RECORDS)


def _process_batches(
    org: LocalOrg,
    job: IngestJob,
    header: list[str],
    reader: Iterator[list[str]],
    results: _Results,
    fail_after: int | None,
) -> None:
    rows = _records(reader)
    done = 0
    while batch := list(itertools.islice(rows, BATCH_RECORDS)):
        with _state(org).lock:
            aborted = job.state is JobState.ABORTED
        if aborted or (fail_after is not None and done >= fail_after):
            results.unprocessed(batch)
            continue
        _process_batch(org, job, header, batch, results)
        done += 1


def _line_ending_problem(job: IngestJob) -> str | None:
    """Salesforce fails a job whose data does not use the line ending the job was created with."""
    with job.upload_path.open("rb") as raw:
        first = raw.readline()
    if not first.endswith(b"\n") or first.endswith(b"\r\n") == (job.line_ending == "CRLF"):
        return None
    return f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {job.line_ending}"


def _header_problem(spec: SObjectSpec, header: list[str]) -> str | None:
    seen: set[str] = set()
    for name in header:
        found = spec.field(name.strip())
        if found is None:
            return f"InvalidBatch : Field name not found : {name}"
        if found.name in seen:
            return f"InvalidBatch : Duplicate field name : {name}"
        seen.add(found.name)
    return None


Apply = Callable[[], tuple[str, bool]]


@dataclass
class _Row:
    """One record of a batch: what it is, what stops it, and the write to run in the batch's transaction."""

    cells: list[str]
    record_id: str | None = None
    error: RowError | None = None
    apply: Apply | None = None
    created: bool = False


def _process_batch(org: LocalOrg, job: IngestJob, header: list[str], batch: list[list[str]], out: _Results) -> None:
    from sfcleanup.localorg.app import RequestContext  # the app imports the routes, which import this module

    ctx = RequestContext(owner=next(_BATCH_OWNERS), version=job.api_version)
    names = [_canonical(job.sobject, name) for name in header]
    rows: list[_Row] = []
    try:
        for cells in batch:
            if org.faults.draw(org.profile.bulk_unprocessed_rate):
                out.unprocessed([cells])
            else:
                rows.append(_plan(org, ctx, job, names, cells))
        with org.store.transaction():
            for row in rows:
                _apply(row)
        # Outside the store lock, so other requests proceed; inside the row locks, which a real batch holds.
        if rows and org.profile.latency.bulk_ms_per_record > 0:
            org.sleep(len(rows) * org.profile.latency.bulk_ms_per_record / 1000.0)
    finally:
        org.locks.release_all(ctx.owner)
    _record(org, job, rows, out)


def _apply(row: _Row) -> None:
    if row.error is not None or row.apply is None:
        return
    try:
        row.record_id, row.created = row.apply()
    except RowFailure as failure:
        row.error = failure.error


def _record(org: LocalOrg, job: IngestJob, rows: list[_Row], out: _Results) -> None:
    failed = 0
    for row in rows:
        if row.error is None:
            out.success(row.record_id or "", row.created, row.cells)
        else:
            failed += 1
            out.failure(row.record_id, row.error, row.cells)
    with _state(org).lock:
        job.processed += len(rows)
        job.failed += failed
    org.stats.add("bulk_records", len(rows))
    org.stats.add("bulk_batches")
    org.stats.add("records_written", len(rows) - failed)


def _canonical(spec: SObjectSpec, name: str) -> str:
    found = spec.field(name.strip())
    return found.name if found is not None else name


def _payload(names: list[str], cells: list[str]) -> dict[str, Any]:
    """An empty cell leaves the field as it is; `#N/A` sets it to null."""
    return {name: None if cell == NULL_VALUE else cell for name, cell in zip(names, cells, strict=True) if cell}


def _plan(org: LocalOrg, ctx: RequestContext, job: IngestJob, names: list[str], cells: list[str]) -> _Row:
    row = _Row(cells)
    if len(cells) != len(names):
        row.error = RowError("INVALID_INPUT", f"The row has {len(cells)} columns; the header has {len(names)}")
        return row
    payload = _payload(names, cells)
    spec, store = job.sobject, org.store
    if job.operation == "insert" or (job.operation == "upsert" and payload.get("Id") is None):
        if job.operation == "upsert":
            payload.pop("Id", None)
        row.error = _lock_parents(org, ctx, spec, payload)
        row.apply = lambda: (records.create(spec, payload, store), True)
        return row
    if payload.get("Id") is None:
        row.error = RowError("MISSING_ARGUMENT", f"Id not specified in an {job.operation} call")
        return row
    try:
        record_id = records.check_id(spec, payload["Id"])
    except RowFailure as failure:
        row.error = failure.error
        return row
    row.record_id = record_id
    row.error = org.lock_row(ctx, spec, record_id)
    row.apply = _writer(job.operation, spec, record_id, payload, store)
    return row


def _writer(operation: str, spec: SObjectSpec, record_id: str, payload: dict[str, Any], store: Store) -> Apply:
    def update() -> tuple[str, bool]:
        records.update(spec, record_id, payload, store)
        return record_id, False

    def delete() -> tuple[str, bool]:
        records.delete(spec, record_id, store)
        if operation == "hardDelete":
            # A hard delete skips the recycle bin: the row is gone, not marked IsDeleted.
            store.conn.execute(f"DELETE FROM {quote(spec.name)} WHERE Id = ?", (record_id,))
        return record_id, False

    return update if operation in ("update", "upsert") else delete


def _lock_parents(org: LocalOrg, ctx: RequestContext, spec: SObjectSpec, payload: dict[str, Any]) -> RowError | None:
    """A new child locks its master-detail parents, as an update of an existing child does."""
    for parent_field in spec.lock_parents:
        value = payload.get(parent_field.name)
        parent_spec = schema.sobject(parent_field.reference_to or "")
        if not value or parent_spec is None:
            continue
        try:
            parent_id = records.check_id(parent_spec, value)
        except RowFailure:
            continue  # the write itself reports the malformed reference
        error = org.lock_row(ctx, parent_spec, parent_id)
        if error is not None:
            return error
    return None


# --- query jobs -----------------------------------------------------------------------------------------------
def query_jobs(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    if req.method == "GET":
        return _listing(org, QueryJob)
    payload = _json_object(req)
    operation = _choice(payload, "operation", QUERY_OPERATIONS)
    text = payload.get("query")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(400, "INVALID_INPUT", "query is required")
    delimiter, line_ending = _format_options(payload)
    try:
        compiled = compile_soql(text, now=org.now(), include_deleted=operation == "queryAll")
    except SoqlError as exc:
        raise BadRequest(400, exc.error_code, exc.message) from None
    if compiled.kind != "records":
        raise BadRequest(400, "INVALID_INPUT", "Aggregate queries are not supported by Bulk API 2.0 query jobs")
    with org.store.lock:
        rowids = compiled.rowids(org.store.conn)
    stamp = _now(org)
    job = QueryJob(
        id=ids.make(JOB_KEY_PREFIX, next(_state(org).numbers)),
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
    _add_job(org, job)
    org.stats.add("bulk_query_jobs")
    return HttpResponse.json(200, job.info(detail=False))


def _settle(org: LocalOrg, job: QueryJob) -> None:
    """The rows were read when the job was created: from the first look after that, the job is complete."""
    with _state(org).lock:
        if job.state in (JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS):
            job.processed = len(job.rowids)
            _set_state(org, job, JobState.JOB_COMPLETE)


def query_job(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = _find_job(org, match["job_id"], QueryJob)
    if req.method == "DELETE":
        return _delete_job(org, job)
    if req.method == "PATCH":
        wanted = _json_object(req).get("state")
        if wanted != JobState.ABORTED:
            raise _invalid_state(f"Invalid state transition to {wanted}")
        return HttpResponse.json(200, _abort(org, job))
    _settle(org, job)
    with _state(org).lock:
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


def query_results(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    job = _find_job(org, match["job_id"], QueryJob)
    _settle(org, job)
    if job.state is not JobState.JOB_COMPLETE:
        raise _invalid_state(f"Results are not available for a job in state {job.state}")
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


# --- routes ---------------------------------------------------------------------------------------------------
_JOBS = r"^/services/data/v(?P<version>\d{2,3}\.0)/jobs"
_RESULTS = "successfulResults|failedResults|unprocessedRecords"


def _route(methods: str, pattern: str, handler: Handler) -> tuple[frozenset[str], re.Pattern[str], Handler, bool]:
    return frozenset(methods.split()), re.compile(_JOBS + pattern), handler, True


ROUTES: tuple[tuple[frozenset[str], re.Pattern[str], Handler, bool], ...] = (
    _route("GET POST", r"/ingest/?$", ingest_jobs),
    _route("GET PATCH DELETE", r"/ingest/(?P<job_id>\w+)/?$", ingest_job),
    _route("PUT", r"/ingest/(?P<job_id>\w+)/batches/?$", ingest_upload),
    # Salesforce documents unprocessedrecords/, simple-salesforce asks for unprocessedRecords: any case matches.
    _route("GET", rf"/ingest/(?P<job_id>\w+)/(?P<results>(?i:{_RESULTS}))/?$", ingest_results),
    _route("GET POST", r"/query/?$", query_jobs),
    _route("GET PATCH DELETE", r"/query/(?P<job_id>\w+)/?$", query_job),
    _route("GET", r"/query/(?P<job_id>\w+)/results/?$", query_results),
)
