"""Bulk API 2.0 ingest processing: the job's thread, its parallel 10,000-record batches and their rows."""

from __future__ import annotations

import csv
import itertools
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
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
from sfcleanup.localorg.records import RowError, RowFailure
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
    while batch := list(itertools.islice(rows, BATCH_RECORDS)):
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
    batch: list[list[str]],
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


Apply = Callable[[], tuple[str, bool]]


@dataclass
class _Row:
    """One record of a batch: what it is, what stops it, and the write to run in the batch's transaction."""

    cells: list[str]
    record_id: str | None = None
    error: RowError | None = None
    apply: Apply | None = None
    created: bool = False
    # What the row locks before it is written, in order: the record, or a new child's master-detail parents.
    locks: tuple[tuple[SObjectSpec, str], ...] = ()


def _process_batch(
    org: Org, job: IngestJob, header: list[str], batch: list[list[str]], out: Results, rng: random.Random
) -> None:
    ctx = RequestContext(owner=next(org.bulk.batch_owners), version=job.api_version)
    names = [_canonical(job.sobject, name) for name in header]
    rows: list[_Row] = []
    try:
        skipped: list[list[str]] = []
        rate = org.profile.bulk_unprocessed_rate
        for cells in batch:
            if rate > 0 and rng.random() < rate:
                skipped.append(cells)
            else:
                rows.append(_plan(org, job, names, cells))
        out.unprocessed(skipped)
        # Every row's lock chain read at once, then the rows locked one by one in upload order, as before.
        chains = org.store.lock_chains([target for row in rows for target in row.locks])
        for row in rows:
            row.error = row.error or _lock(org, ctx, row.locks, chains)
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


def _record(org: Org, job: IngestJob, rows: list[_Row], out: Results) -> None:
    failed = 0
    with out.lock:
        for row in rows:
            if row.error is None:
                out.success(row.record_id or "", row.created, row.cells)
            else:
                failed += 1
                out.failure(row.record_id, row.error, row.cells)
    with org.bulk.lock:
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


def _plan(org: Org, job: IngestJob, names: list[str], cells: list[str]) -> _Row:
    row = _Row(cells)
    if len(cells) != len(names):
        row.error = RowError("INVALID_INPUT", f"The row has {len(cells)} columns; the header has {len(names)}")
        return row
    payload = _payload(names, cells)
    spec, store = job.sobject, org.store
    if job.operation == "insert" or (job.operation == "upsert" and payload.get("Id") is None):
        if job.operation == "upsert":
            payload.pop("Id", None)
        row.locks = _parents(spec, payload)
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
    row.locks = ((spec, record_id),)
    row.apply = _writer(job.operation, spec, record_id, payload, store)
    return row


def _lock(
    org: Org, ctx: RequestContext, targets: tuple[tuple[SObjectSpec, str], ...], chains: ChainBatch
) -> RowError | None:
    for spec, record_id in targets:
        error = org.lock_row(ctx, spec, record_id, chains)
        if error is not None:
            return error
    return None


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


def _parents(spec: SObjectSpec, payload: dict[str, Any]) -> tuple[tuple[SObjectSpec, str], ...]:
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
