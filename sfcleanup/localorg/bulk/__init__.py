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

Modules: `ingest` and `query` (the HTTP handlers), `listing` (GET of the job lists), `processing` (an ingest job's
thread and batches), `results` (its result files), `common` (what the handlers share), `jobs` (the job records
and `BulkState`, which the org owns as `org.bulk`). Their routes are in `localorg.routes`.
"""

from __future__ import annotations

from typing import Protocol

from sfcleanup.localorg.bulk.jobs import BulkState

__all__ = ["close", "wait_idle"]


class _HasBulk(Protocol):
    @property
    def bulk(self) -> BulkState: ...


def wait_idle(org: _HasBulk, timeout: float = 30.0) -> bool:
    """Wait until no ingest job of `org` is processing; False if one still is after `timeout` seconds."""
    return org.bulk.wait_idle(timeout)


def close(org: _HasBulk, timeout: float = 30.0) -> None:
    """Let running jobs finish, then delete every job's files; their results are no longer served."""
    org.bulk.close(timeout)
