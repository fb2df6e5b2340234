"""The Bulk API 2.0 writer: one ingest job per phase, fed a CSV written to disk in lock-point order.

Same contract as the Composite writer: row outcomes journaled, failures normalised. Rows the job could not
lock are retried through Composite one parent at a time; rows it left unprocessed (a job that failed or
stopped) go through Composite too. The job id is journaled before the job is fed or polled, so a restarted
worker finishes reading that job instead of creating a second one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import structlog

from sfcleanup.billing import RULE_BY_OBJECT, Rule
from sfcleanup.changes import Change, ChangeSet, MemoryChanges
from sfcleanup.config import WriteSettings
from sfcleanup.entries import JobNote, job_notes, records
from sfcleanup.errors import ApiError
from sfcleanup.journal import Journal
from sfcleanup.outcomes import Failure, JobFailure, PhaseResult, RowOutcome, RowResult
from sfcleanup.salesforce.bulk import BulkApi
from sfcleanup.salesforce.bulkfiles import chunks, column_of, groups_of, result_kinds, rows_of, write_csv
from sfcleanup.salesforce.classify import RowVerdict, classify_row
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.concurrency import Observation, Tuning, shared
from sfcleanup.salesforce.write import CompositeWriter

# Below this many records a second job costs more calls than it saves time.
MIN_RECORDS_PER_JOB = 10_000
# "Salesforce creates a separate batch for every 10,000 records in your job data" and runs the batches in
# parallel (Understanding Bulk API 2.0 Ingest): two batches that hold records of one account lock each other.
BATCH_RECORDS = 10_000
# The tail of an account cut by a batch boundary goes through Composite once the job is done, unless it is
# longer than this (an account that large straddles the boundary as before: its batches wait for each other).
MAX_DEFERRED_TAIL = 200
# Journal state of a job the org no longer has (deleted, or unreadable): finished, outcome unknown.
LOST = "lost"
log = structlog.get_logger("sfcleanup.bulkwrite")
# The changes of these ids, of those a job carries: a job's result rows are looked up a few thousand at a time.
Lookup = Callable[[Sequence[str]], dict[str, Change]]


def bulk_jobs_for(records: int, most: int, minimum: int = MIN_RECORDS_PER_JOB) -> int:
    """Jobs for one phase: as many as allowed, each with at least `minimum` records."""
    return max(1, min(most, records // minimum))


class BulkWriter:
    def __init__(
        self,
        client: SalesforceClient,
        settings: WriteSettings,
        journal: Journal,
        api: BulkApi,
        workdir: Path,
        *,
        progress: Callable[[int], None] | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._journal = journal
        self._api = api
        self._workdir = workdir
        self._progress = progress or (lambda _: None)
        self._sleep = sleep

    def _composite(self) -> CompositeWriter:
        kwargs = {"sleep": self._sleep} if self._sleep else {}
        return CompositeWriter(self._client, self._settings, self._journal, **kwargs)

    def apply(self, phase: str, rule: Rule, changes: ChangeSet) -> PhaseResult:
        """Jobs for the phase, running at once on disjoint accounts; then every row's outcome, and retries.

        The changes stream by in lock-point order and are cut into `jobs` CSV files at account boundaries,
        so no account's records are in two jobs running at the same time.
        """
        self._workdir.mkdir(parents=True, exist_ok=True)
        # Jobs at once: the setting is the ceiling (each job costs about 6 calls, and an object's calls stay
        # within 25); lock failures above the tolerated share halve it for the session, clean jobs regrow it.
        jobs_at_most = self._settings.bulk_jobs_per_object
        level = shared(self._client, "bulk jobs", jobs_at_most, Tuning(ceiling=jobs_at_most))
        jobs = bulk_jobs_for(len(changes), level.level, self._settings.bulk_min_records_per_job)
        pushbacks = self._client.usage.pushbacks
        deferred: list[Change] = []
        # Each file is submitted as soon as it is written, so the org works on it while the next one is cut.
        # The changes stream from the plan to the file and the journal: none are held, however large the phase.
        submitted = [
            (self._submit(phase, rule, batch, path, count), batch, path, count)
            for batch, path, count in self._write_parts(phase, rule, changes, jobs, deferred)
        ]
        outcome = PhaseResult()
        locked: list[Change] = []
        leftover: list[Change] = []
        # The jobs run at once in the org; reading them one after the other waits only as long as the slowest.
        for job, batch, path, count in submitted:
            done, job_locked, job_leftover = self.collect(phase, rule, job, batch, changes.get_many, records=count)
            pushed_back = self._client.usage.pushbacks > pushbacks
            level.observe(Observation(count, len(job_locked), pushed_back=pushed_back))
            outcome.merge(done)
            locked += job_locked
            leftover += job_leftover
            path.unlink(missing_ok=True)
        log.info("bulk.concurrency", phase=phase, jobs=len(submitted), next_level=level.level, backoffs=level.decreases)
        if deferred or locked or leftover:
            # Through Composite, in one pass: the tails of accounts cut at batch boundaries (the jobs are done,
            # nothing of theirs is locked now), rows that failed on a lock, rows a job left unprocessed. Calls
            # never share an account, and the writer's last lock round sends one account at a time.
            log.info("bulk.composite_pass", boundary_tails=len(deferred), locked=len(locked), unprocessed=len(leftover))
            outcome.merge(self._composite().apply(phase, rule, [*deferred, *locked, *leftover]))
        return outcome

    def _submit(self, phase: str, rule: Rule, batch: str, path: Path, count: int) -> str:
        job = self._api.create_job(rule.sobject)
        self._journal.note(
            "bulk.job", state="created", job=job, phase=phase, batch=batch, object=rule.sobject, records=count
        )
        self._api.upload(job, path)
        self._api.close(job)
        self._journal.note("bulk.job", state="uploaded", job=job)
        log.info("bulk.job_submitted", job=job, object=rule.sobject, records=count)
        return job

    def _write_parts(
        self, phase: str, rule: Rule, changes: ChangeSet, jobs: int, deferred: list[Change]
    ) -> Iterator[tuple[str, Path, int]]:
        """Cut the changes into `jobs` CSV files of about equal size, each ending at an account boundary.

        Within a file, every 10,000-record batch ends at an account boundary too: an account that would cross
        one is cut there and its tail (at most MAX_DEFERRED_TAIL records) appended to `deferred`, so the job's
        batches, which Salesforce runs in parallel, never wait for each other's locks.
        """
        target = -(-len(changes) // jobs)
        groups = iter(groups_of(iter(changes)))
        pending_group: list[Change] | None = next(groups, None)
        for index in range(jobs):
            batch = f"{phase}-bulk-{index + 1}" if jobs > 1 else f"{phase}-bulk"
            path = self._workdir / f"{self._journal.run_id}-{batch}.csv"

            def part(last: bool) -> Iterator[Change]:
                nonlocal pending_group
                size = 0
                while pending_group is not None and (last or size < target):
                    group = pending_group
                    room = BATCH_RECORDS - size % BATCH_RECORDS
                    if room < len(group) <= room + MAX_DEFERRED_TAIL:
                        deferred.extend(group[room:])
                        group = group[:room]
                    size += len(group)
                    yield from group
                    pending_group = next(groups, None)

            count = write_csv(path, rule, self._journaled(phase, batch, part(index == jobs - 1)))
            if count:
                yield batch, path, count
            else:
                path.unlink(missing_ok=True)

    def _journaled(self, phase: str, batch: str, changes: Iterable[Change]) -> Iterator[Change]:
        """Pass the changes through, journaling them as pending 2,000 at a time."""
        for chunk in chunks(iter(changes)):
            self._journal.pending(phase, batch, chunk)
            yield from chunk

    def lost(self, job: str, phase: str, batch: str, error: ApiError) -> None:
        """Give up on a journaled job the org no longer shows; the run is planned again from the org."""
        log.warning(
            "bulk.job_lost",
            job=job,
            phase=phase,
            error=str(error),
            remedy="the run is planned again from the org's records; records the job updated are not eligible",
        )
        self._journal.note("bulk.job", state=LOST, job=job, error=error.error_code or str(error.status))

    def collect(
        self, phase: str, rule: Rule, job: str, batch: str, lookup: Lookup, records: int | None = None
    ) -> tuple[PhaseResult, list[Change], list[Change]]:
        """Wait for the job, journal every row's outcome, and say which rows to retry (locked, unprocessed)."""
        final = self._api.wait(job, records)
        self._journal.note(
            "bulk.job", state=final.state, job=job, processed=final.processed, failed=final.failed, error=final.error
        )
        outcome = PhaseResult()
        if final.state != "JobComplete":
            log.warning("bulk.job_ended", job=job, state=final.state, error=final.error)
            outcome.job_failures.append(JobFailure(job, final.state, final.error))
        locked: list[Change] = []
        leftover: list[Change] = []
        files = {
            kind: self._api.results(job, kind, self._workdir / f"{job}-{kind}.csv")
            for kind in result_kinds(final, records)
        }
        for ids in chunks(column_of(files, "successfulResults", "sf__Id")):
            found = lookup(ids)
            done = [found[i] for i in ids if i in found]
            self._journal.outcomes(phase, batch, [RowResult(c, RowOutcome.UPDATED) for c in done])
            outcome.updated += len(done)
            self._progress(len(done))
        for rows in chunks(rows_of(files, "failedResults")):
            results: list[RowResult] = []
            ids = [row.get("sf__Id") or row.get("Id") or "" for row in rows]
            found = lookup(ids)
            for row, record_id in zip(rows, ids, strict=True):
                change = found.get(record_id)
                if change is None:
                    continue
                code, _, message = (row.get("sf__Error") or "UNKNOWN:").partition(":")
                message = message.removesuffix(" --").removesuffix(":--").strip(":")
                if classify_row(code) is RowVerdict.LOCKED:
                    locked.append(change)
                    results.append(RowResult(change, RowOutcome.LOCKED, code, message))
                else:
                    outcome.failures.append(Failure(change.id, change.sobject, code, message))
                    results.append(RowResult(change, RowOutcome.FAILED, code, message))
            self._journal.outcomes(phase, batch, results)
        for rows in chunks(rows_of(files, "unprocessedrecords")):
            ids = [r.get("Id", "") for r in rows]
            found = lookup(ids)
            leftover += [found[i] for i in ids if i in found]
        if leftover:
            self._journal.note("bulk.unprocessed", job=job, records=len(leftover))
        for path in files.values():
            path.unlink(missing_ok=True)
        self._journal.note("bulk.job", state="consumed", job=job)
        return outcome, locked, leftover


def open_jobs(entries: Sequence[dict[str, object]]) -> list[JobNote]:
    """Jobs a journal shows created but never read to the end (nor given up as gone): a worker stopped while
    they ran."""
    created: dict[str, JobNote] = {}
    for note in job_notes(entries):
        if note.state == "created":
            created[note.job] = note
        elif note.state in ("consumed", LOST):
            created.pop(note.job, None)
    return list(created.values())


def resume_open_jobs(writer: BulkWriter, api: BulkApi, entries: Sequence[dict[str, object]]) -> int:
    """Finish reading the jobs a stopped worker left behind, journaling their outcomes; no job is created.

    A job never closed is aborted (its data may be partial). A job the org no longer has (Salesforce deletes
    ingest jobs after seven days; an admin may delete one sooner) or cannot show is logged with its id and
    journaled as lost: what it did is unknown, so nothing is guessed. Either way, what the jobs did not do is
    picked up by planning the run again afterwards from the org's records, so nothing is retried here.
    Returns how many jobs were dealt with.
    """
    jobs = open_jobs(entries)
    pending_entries = list(records(entries, kind="pending"))
    for note in jobs:
        job, batch, phase = note.job, str(note.batch), str(note.phase)
        rule = RULE_BY_OBJECT[str(note.sobject)]
        pending = {e.id: e.change() for e in pending_entries if e.batch == batch}
        try:
            state = api.state(job)
            log.info("bulk.resume", job=job, state=state.state)
            if state.state == "Open":
                api.abort(job)
            writer.collect(phase, rule, job, batch, MemoryChanges(list(pending.values())).get_many)
        except ApiError as exc:
            writer.lost(job, phase, batch, exc)
    return len(jobs)
