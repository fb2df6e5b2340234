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

import re
from typing import TYPE_CHECKING

from sfcleanup.localorg.bulk.ingest import ingest_job, ingest_jobs, ingest_results, ingest_upload
from sfcleanup.localorg.bulk.jobs import close, wait_idle
from sfcleanup.localorg.bulk.query import query_job, query_jobs, query_results

if TYPE_CHECKING:
    from sfcleanup.localorg.app import Handler

__all__ = ["ROUTES", "close", "wait_idle"]

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
