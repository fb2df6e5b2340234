"""Bulk API 2.0 ingest processing: the job's thread, its parallel 10,000-record batches and their rows."""

from __future__ import annotations

import csv
import itertools
import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

from sfcleanup.localorg import records, schema
from sfcleanup.localorg.bulk.common import set_state
from sfcleanup.localorg.bulk.jobs import (
    BATCH_RECORDS,
    BATCH_RETRIES,
    BATCH_TIMEOUT_MESSAGE,
    FAILED_JOB_MESSAGE,
    NULL_VALUE,
    PARALLEL_BATCHES,
    IngestJob,
    JobState,
)
from sfcleanup.localorg.bulk.results import Results, abandon, open_upload, upload_records
from sfcleanup.localorg.chains import ChainBatch
from sfcleanup.localorg.context import Org, RequestContext
from sfcleanup.localorg.records import BatchReads, RowError, RowFailure
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.sql import quote
from sfcleanup.localorg.store import Store


# --- processing ------------------------------------------------------------------------------------------------
def run_job(org: Org, job: IngestJob) -> None:
    started = time.monotonic()
    try:
        outcome = _process(org, job)
    except Exception as exc:  # a thread has no caller: a bug must still end the job, not leave it InProgress
        outcome = f"InternalServerError : {type(exc).__name__}: {exc}"
    # The final state is set only after the result files are closed, so a client never reads half a file.
    with org.bulk.lock:
        job.processing_ms = int((time.monotonic() - started) * 1000)
        if job.state is not JobState.ABORTED:
            if outcome is None:
                set_state(org, job, JobState.JOB_COMPLETE)
            else:
                set_state(org, job, JobState.FAILED, outcome)
                org.stats.add("bulk_jobs_failed")
    job.done.set()
    if job.deleted:
        shutil.rmtree(job.directory, ignore_errors=True)


def _process(org: Org, job: IngestJob) -> str | None:
    """Process the upload; returns the job's error message when it fails, None when it completes."""
    with org.bulk.lock:
        aborted = job.state is JobState.ABORTED
        if not aborted:
            set_state(org, job, JobState.IN_PROGRESS)
    if aborted or not job.uploaded:
        abandon(job)
        return None
    problem = _line_ending_problem(job)
    fail_after = _count_batches(job) // 2 if job.fails else None
    with open_upload(job) as source:
        reader = csv.reader(source, delimiter=job.delimiter)
        header = next(reader, [])
        with closing(Results(job, header)) as results:
            problem = problem or _header_problem(job.sobject, header)
            if problem is not None:
                results.unprocessed(upload_records(reader))
                return problem
            timed_out = _process_batches(org, job, header, reader, results, fail_after)
    if timed_out is not None:
        return timed_out
    return FAILED_JOB_MESSAGE if fail_after is not None else None


def _count_batches(job: IngestJob) -> int:
    with open_upload(job) as source:
        rows = sum(1 for _ in upload_records(csv.reader(source, delimiter=job.delimiter))) - 1
    return -(-max(0, rows) // BATCH_RECORDS)


def _process_batches(
    org: Org,
    job: IngestJob,
    header: list[str],
    reader: Iterator[list[str]],
    results: Results,
    fail_after: int | None,
) -> str | None:
    """Run the 10,000-record batches in parallel, as Bulk API 2.0 does ("only parallel mode"); returns the job's
    error message when a batch ran past the processing limit.

    Each batch has its own lock owner, so two batches that touch children of one parent wait for each other and,
    past the lock wait, fail rows with UNABLE_TO_LOCK_ROW. At most PARALLEL_BATCHES run at once, which bounds the
    rows held in memory. Every seeded decision is drawn here, in batch order, so a seed replays whatever order the
    threads happen to finish in.
    """
    rows = upload_records(reader)
    slots = threading.BoundedSemaphore(PARALLEL_BATCHES)
    threads: list[threading.Thread] = []
    crashes: list[BaseException] = []
    timed_out = False
    number = 0
    # Tuples: the garbage collector stops tracking a tuple of strings, and a job holds up to four batches.
    while batch := [tuple(cells) for cells in itertools.islice(rows, BATCH_RECORDS)]:
        with org.bulk.lock:
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
        with org.bulk.lock:
            job.retries = BATCH_RETRIES
        return BATCH_TIMEOUT_MESSAGE
    return None


def _batch_thread(
    org: Org,
    job: IngestJob,
    header: list[str],
    batch: list[Cells],
    out: Results,
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


Cells = tuple[str, ...]
Targets = tuple[tuple[SObjectSpec, str], ...]


class _Rows:
    """The records of one batch, a column per field: what each is, what stops it, what it writes.

    Columns rather than an object per row: a batch holds 10,000 rows while it waits for locks, the store and its
    latency, and each object a row adds is one more for every full garbage collection to scan meanwhile (lists
    are one object each, and a dict or tuple of strings is not tracked at all).
    """

    __slots__ = ("cells", "created", "errors", "parents", "payloads", "record_ids")

    def __init__(self, cells: list[Cells]) -> None:
        self.cells = cells
        count = len(cells)
        self.record_ids: list[str | None] = [None] * count  # None until written for a new record
        self.errors: list[RowError | None] = [None] * count
        # The canonical fields to write, once the row passed the checks planning makes; None: nothing to write.
        self.payloads: list[dict[str, Any] | None] = [None] * count
        self.created: list[bool] = [False] * count
        # What a new record locks before it is written, by row: its master-detail parents, in order. A row that
        # writes an existing record locks that record (`_locks`).
        self.parents: dict[int, Targets] = {}


def _process_batch(
    org: Org, job: IngestJob, header: list[str], batch: list[Cells], out: Results, rng: random.Random
) -> None:
    ctx = RequestContext(owner=next(org.bulk.batch_owners), version=job.api_version)
    names = [_canonical(job.sobject, name) for name in header]
    rate = org.profile.bulk_unprocessed_rate
    if rate > 0:
        skipped = [rng.random() < rate for _ in batch]
        out.unprocessed(cells for cells, skip in zip(batch, skipped, strict=True) if skip)
        batch = [cells for cells, skip in zip(batch, skipped, strict=True) if not skip]
    rows = _Rows(batch)
    try:
        for index in range(len(batch)):
            _plan(job, names, rows, index)
        _lock_rows(org, ctx, job, rows)
        with org.store.transaction():
            writes = ((job.sobject, rows.record_ids[i]) for i in range(len(batch)) if _applies(rows, i))
            reads = BatchReads(org.store, writes)
            for index in range(len(batch)):
                _apply(job, org.store, rows, index, reads)
        # Outside the store lock, so other requests proceed; inside the row locks, which a real batch holds.
        if batch and org.profile.latency.bulk_ms_per_record > 0:
            org.sleep(len(batch) * org.profile.latency.bulk_ms_per_record / 1000.0)
    finally:
        org.locks.release_all(ctx.owner)
    # Result files list rows in no particular order: Salesforce writes them as its parallel batches finish.
    order = list(range(len(batch)))
    rng.shuffle(order)
    _record(org, job, rows, order, out)


def _lock_rows(org: Org, ctx: RequestContext, job: IngestJob, rows: _Rows) -> None:
    """Every row's lock chain read at once, then the rows locked one by one in upload order."""
    count = range(len(rows.cells))
    chains = org.store.lock_chains([target for index in count for target in _locks(job, rows, index)])
    for index in count:
        if rows.errors[index] is None:
            rows.errors[index] = _lock(org, ctx, _locks(job, rows, index), chains)


def _applies(rows: _Rows, index: int) -> bool:
    return rows.errors[index] is None and rows.payloads[index] is not None


def _apply(job: IngestJob, store: Store, rows: _Rows, index: int, reads: BatchReads) -> None:
    payload = rows.payloads[index]
    if rows.errors[index] is not None or payload is None:
        return
    spec, record_id = job.sobject, rows.record_ids[index]
    try:
        if record_id is None:
            rows.record_ids[index] = records.create(spec, payload, store, reads)
            rows.created[index] = True
        elif job.operation in ("update", "upsert"):
            records.update(spec, record_id, payload, store, reads)
        else:
            records.delete(spec, record_id, store, reads)
            if job.operation == "hardDelete":
                # A hard delete skips the recycle bin: the row is gone, not marked IsDeleted.
                store.conn.execute(f"DELETE FROM {quote(spec.name)} WHERE Id = ?", (record_id,))
    except RowFailure as failure:
        rows.errors[index] = failure.error


def _record(org: Org, job: IngestJob, rows: _Rows, order: list[int], out: Results) -> None:
    failed = 0
    with out.lock:
        for index in order:
            error = rows.errors[index]
            if error is None:
                out.success(rows.record_ids[index] or "", rows.created[index], rows.cells[index])
            else:
                failed += 1
                out.failure(rows.record_ids[index], error, rows.cells[index])
    with org.bulk.lock:
        job.processed += len(order)
        job.failed += failed
    org.stats.add("bulk_records", len(order))
    org.stats.add("bulk_batches")
    org.stats.add("records_written", len(order) - failed)


def _canonical(spec: SObjectSpec, name: str) -> str:
    found = spec.field(name.strip())
    return found.name if found is not None else name


def _payload(names: list[str], cells: Cells) -> dict[str, Any]:
    """An empty cell leaves the field as it is; `#N/A` sets it to null."""
    return {name: None if cell == NULL_VALUE else cell for name, cell in zip(names, cells, strict=True) if cell}


def _plan(job: IngestJob, names: list[str], rows: _Rows, index: int) -> None:
    cells = rows.cells[index]
    if len(cells) != len(names):
        rows.errors[index] = RowError("INVALID_INPUT", f"The row has {len(cells)} columns; the header has {len(names)}")
        return
    payload = _payload(names, cells)
    spec = job.sobject
    if job.operation == "insert" or (job.operation == "upsert" and payload.get("Id") is None):
        if job.operation == "upsert":
            payload.pop("Id", None)
        rows.parents[index] = _parents(spec, payload)
        rows.payloads[index] = payload
        return
    if payload.get("Id") is None:
        rows.errors[index] = RowError("MISSING_ARGUMENT", f"Id not specified in an {job.operation} call")
        return
    try:
        rows.record_ids[index] = records.check_id(spec, payload["Id"])
    except RowFailure as failure:
        rows.errors[index] = failure.error
        return
    rows.payloads[index] = payload


def _locks(job: IngestJob, rows: _Rows, index: int) -> Targets:
    """What the row locks before it is written, in order: the record, or a new record's master-detail parents."""
    if rows.errors[index] is not None:
        return ()
    record_id = rows.record_ids[index]
    return rows.parents.get(index, ()) if record_id is None else ((job.sobject, record_id),)


def _lock(org: Org, ctx: RequestContext, targets: Targets, chains: ChainBatch) -> RowError | None:
    for spec, record_id in targets:
        error = org.lock_row(ctx, spec, record_id, chains)
        if error is not None:
            return error
    return None


def _parents(spec: SObjectSpec, payload: dict[str, Any]) -> Targets:
    """A new child locks its master-detail parents, as an update of an existing child does."""
    found: list[tuple[SObjectSpec, str]] = []
    for parent_field in spec.lock_parents:
        value = payload.get(parent_field.name)
        parent_spec = schema.sobject(parent_field.reference_to or "")
        if not value or parent_spec is None:
            continue
        try:
            parent_id = records.check_id(parent_spec, value)
        except RowFailure:
            continue  # the write itself reports the malformed reference
        found.append((parent_spec, parent_id))
    return tuple(found)
