"""Bulk API 2.0 ingest: jobs created, fed a CSV streamed from disk, closed, polled and read back.

Creating a job is the one call that is not safe to repeat: its id is journaled before anything else happens,
and after a lost answer the worker looks for the job it may have created instead of creating another.
Polling backs off and has a deadline; results are streamed to disk.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import structlog

from sfcleanup.config import WriteSettings
from sfcleanup.errors import AmbiguousWrite, ApiError, StopRun, TransientExhausted
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.retry import CREATE_RESENDS, sends
from sfcleanup.salesforce.shapes import BulkJobInfo, BulkJobPage
from sfcleanup.sftime import parse_datetime

TERMINAL = frozenset({"JobComplete", "Failed", "Aborted"})
RESULT_KINDS = ("successfulResults", "failedResults", "unprocessedrecords")
# The Date header has whole seconds, and the org stamps a job a moment after it reads the request.
CLOCK_SLACK = timedelta(seconds=2)
# Pauses between polls grow by half each time: a job seen done up to a third late rather than up to twice as
# late (doubling), for a poll or two more on a long job.
POLL_GROWTH = 1.5
# The longest a job that reports progress waits for its next look: a rate measured early can be off.
PACED_WAIT_MAX_S = 60.0
log = structlog.get_logger("sfcleanup.bulk")


@dataclass(frozen=True)
class JobState:
    id: str
    state: str
    processed: int
    failed: int
    error: str | None

    @classmethod
    def parse(cls, body: object) -> JobState:
        info = BulkJobInfo.model_validate(body)
        return cls(info.id, str(info.state), info.processed or 0, info.failed or 0, info.error)


@dataclass(frozen=True)
class Polling:
    first_s: float = 0.5
    max_s: float = 10.0
    deadline_s: float = 3600.0
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic

    @classmethod
    def of(cls, settings: WriteSettings, sleep: Callable[[float], None]) -> Polling:
        """Polling as the settings say, for ingest and query jobs alike: from half a second (or less, when the
        cap is lower) up to `bulk_poll_max_s`, for at most `bulk_timeout_s`."""
        return cls(
            first_s=min(0.5, settings.bulk_poll_max_s),
            max_s=settings.bulk_poll_max_s,
            deadline_s=settings.bulk_timeout_s,
            sleep=sleep,
        )


class BulkApi:
    def __init__(self, client: SalesforceClient, polling: Polling | None = None) -> None:
        self._client = client
        self._polling = polling or Polling()

    def create_job(self, sobject: str) -> str:
        """Create an update job. After a lost answer, adopt the job only if the org shows it can be no other;
        otherwise ask again (a job created but never adopted stays Open and empty: it writes nothing)."""
        body = {
            "object": sobject,
            "operation": "update",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        for _ in sends(CREATE_RESENDS):
            sent = self._polling.monotonic()
            try:
                response = self._client.request(f"bulk create {sobject}", "POST", "jobs/ingest/", json=body, write=True)
            except AmbiguousWrite:
                found = self._find_created(sobject, sent)
                if found is not None:
                    log.warning("bulk.job_found_after_lost_answer", job=found)
                    return found
                continue
            return str(response.json()["id"])
        raise StopRun(f"creating a Bulk API job for {sobject} kept losing its answer; run again")

    def _find_created(self, sobject: str, sent: float) -> str | None:
        """The job a create whose answer was lost made, if the org's job list proves which one it is.

        Proof is: exactly one Bulk API 2.0 (not Classic) update job on `sobject`, created by the running user,
        still Open, created (by the org's clock, read from the listing's Date header) between the moment the
        create was sent and the listing's answer. Any doubt (user or org time unknown, none or several such
        jobs) means no adoption.
        """
        user = self._client.user_id()
        if user is None:
            log.warning("bulk.job_not_adopted", reason="the running user's id is unknown")
            return None
        jobs, org_now = self._list_jobs()
        if org_now is None:
            log.warning("bulk.job_not_adopted", reason="the org's time is unknown (no Date header)")
            return None
        earliest = org_now - timedelta(seconds=self._polling.monotonic() - sent) - CLOCK_SLACK
        candidates = [
            job
            for job in jobs
            if job.job_type == "V2Ingest"
            and job.created_by == user
            and job.sobject == sobject
            and job.operation == "update"
            and job.state == "Open"
            and earliest <= _parse_time(job.created_date or "") <= org_now + CLOCK_SLACK
        ]
        if len(candidates) == 1:
            return candidates[0].id
        log.warning("bulk.job_not_adopted", reason="no single job can be proven ours", jobs=[j.id for j in candidates])
        return None

    def _list_jobs(self) -> tuple[list[BulkJobInfo], datetime | None]:
        """Every ingest job the org lists (1,000 a page, in no order), and the org's time at the first page."""
        response = self._client.request("bulk list jobs", "GET", "jobs/ingest/", params={"jobType": "V2Ingest"})
        org_now = _header_time(response.headers.get("Date"))
        page = BulkJobPage.model_validate(response.json())
        jobs = list(page.records)
        while not page.done and page.next_url:
            page = BulkJobPage.model_validate(self._client.get_url("bulk list jobs", page.next_url).json())
            jobs += page.records
        return jobs, org_now

    def upload(self, job_id: str, csv_path: Path) -> None:
        """PUT the CSV. After a lost answer, a second PUT that the org refuses as duplicate content proves the
        first one arrived."""

        def put() -> None:
            self._client.request(
                "bulk upload",
                "PUT",
                f"jobs/ingest/{job_id}/batches",
                data=csv_path,
                headers={"Content-Type": "text/csv"},
                write=True,
            )

        try:
            put()
        except AmbiguousWrite:
            try:
                put()
            except ApiError as exc:
                if exc.error_code != "BULK_API_ERROR":
                    raise

    def close(self, job_id: str) -> None:
        """Mark the upload complete; repeating it after a lost answer meets a job already closed."""
        try:
            self._client.request("bulk close", "PATCH", f"jobs/ingest/{job_id}/", json={"state": "UploadComplete"})
        except ApiError as exc:
            if exc.error_code != "INVALIDJOBSTATE" or self.state(job_id).state == "Open":
                raise

    def abort(self, job_id: str) -> None:
        self._client.request("bulk abort", "PATCH", f"jobs/ingest/{job_id}/", json={"state": "Aborted"})

    def state(self, job_id: str) -> JobState:
        return JobState.parse(self._client.request("bulk job", "GET", f"jobs/ingest/{job_id}/").json())

    def wait(self, job_id: str, records: int | None = None) -> JobState:
        """Poll until the job ends or the deadline passes.

        Pauses grow by half from `first_s` up to `max_s`. Once the job reports progress, the org is asked again
        only when the rest should be done at the rate seen so far (at most PACED_WAIT_MAX_S later): a job of
        hundreds of thousands of records runs for minutes, and a look every `max_s` cost it dozens of calls.
        The wait is slept in slices of at most `max_s`, so the worker's pauses still see a signal as often.
        """
        polling = self._polling
        started = polling.monotonic()
        deadline = started + polling.deadline_s
        pause = polling.first_s
        while True:
            current = self.state(job_id)
            if current.state in TERMINAL:
                return current
            now = polling.monotonic()
            if records and current.processed > 0 and now > started:
                rate = current.processed / (now - started)
                left = max(records - current.processed, 0) / rate
                pause = min(max(left, polling.first_s), max(polling.max_s, PACED_WAIT_MAX_S))
            if now + min(pause, polling.max_s) > deadline:
                raise TransientExhausted(
                    f"Bulk API job {job_id} is still {current.state} after {polling.deadline_s:.0f} s; run again to "
                    "resume polling it (the job goes on in the org)"
                )
            self._sleep_in_slices(min(pause, deadline - now))
            pause = min(pause * POLL_GROWTH, polling.max_s)

    def _sleep_in_slices(self, seconds: float) -> None:
        polling = self._polling
        while seconds > 0:
            step = min(seconds, polling.max_s)
            polling.sleep(step)
            seconds -= step

    def results(self, job_id: str, kind: str, target: Path) -> Path:
        """Stream one result CSV (successfulResults, failedResults, unprocessedrecords) to `target`."""
        return self._client.download(f"bulk {kind}", f"jobs/ingest/{job_id}/{kind}/", target)


def read_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle)


def _header_time(value: str | None) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _parse_time(text: str) -> datetime:
    try:
        return parse_datetime(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
