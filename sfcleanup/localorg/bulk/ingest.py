"""Bulk API 2.0 ingest jobs of the local org: the HTTP handlers, the result files and the processing thread."""

from __future__ import annotations

import csv
import io
import itertools
import random
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from sfcleanup.localorg import idgen, records, schema
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse
from sfcleanup.localorg.records import RowError, RowFailure
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.store import Store, quote

if TYPE_CHECKING:
    from sfcleanup.localorg.app import LocalOrg, RequestContext

from sfcleanup.localorg.bulk.jobs import (
    _BATCH_OWNERS,
    BATCH_RECORDS,
    BATCH_RETRIES,
    BATCH_TIMEOUT_MESSAGE,
    FAILED_JOB_MESSAGE,
    FINISHED,
    INGEST_OPERATIONS,
    JOB_KEY_PREFIX,
    MAX_UPLOAD_BYTES,
    NULL_VALUE,
    PARALLEL_BATCHES,
    RESULT_FILES,
    RESULTS_WAIT_S,
    IngestJob,
    JobState,
    _abort,
    _add_job,
    _choice,
    _delete_job,
    _find_job,
    _format_options,
    _invalid_state,
    _json_object,
    _now,
    _set_state,
    _state,
)
from sfcleanup.localorg.bulk.listing import listing


# --- ingest: HTTP handlers -------------------------------------------------------------------------------------
def ingest_jobs(org: LocalOrg, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    if req.method == "GET":
        return listing(org, req, IngestJob, ctx.version)
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
    job_id = idgen.record_id(JOB_KEY_PREFIX, next(_state(org).numbers))
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
            return HttpResponse.json(200, _abort(org, job, _abandon))
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
        # Parallel batches write through one set of files.
        self.lock = threading.Lock()
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
        with self.lock:
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
            timed_out = _process_batches(org, job, header, reader, results, fail_after)
    if timed_out is not None:
        return timed_out
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
) -> str | None:
    """Run the 10,000-record batches in parallel, as Bulk API 2.0 does ("only parallel mode"); returns the job's
    error message when a batch ran past the processing limit.

    Each batch has its own lock owner, so two batches that touch children of one parent wait for each other and,
    past the lock wait, fail rows with UNABLE_TO_LOCK_ROW. At most PARALLEL_BATCHES run at once, which bounds the
    rows held in memory. Every seeded decision is drawn here, in batch order, so a seed replays whatever order the
    threads happen to finish in.
    """
    rows = _records(reader)
    slots = threading.BoundedSemaphore(PARALLEL_BATCHES)
    threads: list[threading.Thread] = []
    crashes: list[BaseException] = []
    timed_out = False
    number = 0
    while batch := list(itertools.islice(rows, BATCH_RECORDS)):
        with _state(org).lock:
            aborted = job.state is JobState.ABORTED
        if aborted or (fail_after is not None and number >= fail_after):
            results.unprocessed(batch)
            continue
        number += 1
        if len(batch) * org.profile.latency.bulk_ms_per_record / 1000.0 > org.profile.bulk_batch_limit_s:
            # "If Salesforce can't process all the records in a batch within 5 minutes, the batch fails", is
            # retried (each retry runs as long) and then fails the job; its rows stay unprocessed.
            results.unprocessed(batch)
            timed_out = True
            continue
        rng = random.Random(org.faults.integer(0, 2**62))
        slots.acquire()
        thread = threading.Thread(
            target=_batch_thread,
            args=(org, job, header, batch, results, rng, slots, crashes),
            name=f"bulk-{job.id}-{number}",
            daemon=True,
        )
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    if crashes:
        raise crashes[0]
    if timed_out:
        with _state(org).lock:
            job.retries = BATCH_RETRIES
        return BATCH_TIMEOUT_MESSAGE
    return None


def _batch_thread(
    org: LocalOrg,
    job: IngestJob,
    header: list[str],
    batch: list[list[str]],
    out: _Results,
    rng: random.Random,
    slots: threading.BoundedSemaphore,
    crashes: list[BaseException],
) -> None:
    try:
        _process_batch(org, job, header, batch, out, rng)
    except BaseException as exc:  # reported by the job thread, which ends the job Failed
        crashes.append(exc)
    finally:
        slots.release()


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


def _process_batch(
    org: LocalOrg, job: IngestJob, header: list[str], batch: list[list[str]], out: _Results, rng: random.Random
) -> None:
    from sfcleanup.localorg.app import RequestContext  # the app imports the routes, which import this module

    ctx = RequestContext(owner=next(_BATCH_OWNERS), version=job.api_version)
    names = [_canonical(job.sobject, name) for name in header]
    rows: list[_Row] = []
    try:
        skipped: list[list[str]] = []
        rate = org.profile.bulk_unprocessed_rate
        for cells in batch:
            if rate > 0 and rng.random() < rate:
                skipped.append(cells)
            else:
                rows.append(_plan(org, ctx, job, names, cells))
        out.unprocessed(skipped)
        with org.store.transaction():
            for row in rows:
                _apply(row)
        # Outside the store lock, so other requests proceed; inside the row locks, which a real batch holds.
        if rows and org.profile.latency.bulk_ms_per_record > 0:
            org.sleep(len(rows) * org.profile.latency.bulk_ms_per_record / 1000.0)
    finally:
        org.locks.release_all(ctx.owner)
    # Result files list rows in no particular order: Salesforce writes them as its parallel batches finish.
    rng.shuffle(rows)
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
    with out.lock:
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
