"""One run's clean-up, start to end: the local lock, the lease, the phases, verification and the final status.

`RunCleaner.clean` returns what it did as one frozen `CleanResult`; the phases record into a `Tally` as they
go, so a stop anywhere leaves a true account. A run is `running` until proven otherwise. Any stop, signal or
unexpected error ends it as `stopped` or `interrupted` with the reason, in the result and in the journal's
`end` entry; the lease is released and CleanUp Status set to "Completed with errors" (work is left) as far as
the org still answers.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import asdict
from datetime import datetime

import structlog

from sfcleanup.billing import CleanUpStatus, RunStatus
from sfcleanup.cleanresult import CleanResult, Ending, Tally
from sfcleanup.config import Settings
from sfcleanup.errors import ExitCode, Interrupted, SfCleanupError, StopRun
from sfcleanup.interrupts import Interrupts
from sfcleanup.journal import Journal, JournalError, read_entries
from sfcleanup.lease import Lease, LeaseHeld, Leases
from sfcleanup.locallock import LocalLock
from sfcleanup.models import InvoiceRun
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.outcomes import Failure, RowOutcome
from sfcleanup.phases import PhaseRunner, close_run
from sfcleanup.plan import RunPlan
from sfcleanup.preparing import Preparer
from sfcleanup.report import RunResult
from sfcleanup.salesforce.bulkwrite import open_jobs, resume_open_jobs
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.writers import bulk_api, bulk_writer

log = structlog.get_logger("sfcleanup.worker")


def settled(plan: RunPlan) -> bool:
    """Nothing to write, and the run's CleanUp Status does not say a clean-up was left unfinished.

    Started or Completed with errors with nothing left to write is finished by setting the final status.
    """
    unfinished = (CleanUpStatus.STARTED, CleanUpStatus.COMPLETED_WITH_ERRORS)
    return plan.is_empty and plan.run.cleanup_status not in unfinished


def stopped(exc: SfCleanupError) -> Ending:
    interrupted = isinstance(exc, Interrupted)
    status = RunResult.INTERRUPTED if interrupted else RunResult.STOPPED
    log.warning("run.stopped", reason=str(exc), interrupted=interrupted)
    return Ending(status, exc.exit_code, f"{status.value}: {exc}", type(exc).__name__, exc.ends_invocation)


def crashed(exc: Exception) -> Ending:
    """An error nobody planned for: a bug, or the machine (disk full). Recorded as it is, never as success;
    the invocation ends, since the next run would most likely meet it too."""
    log.error("run.crashed", exc_info=exc)
    message = (
        f"interrupted by an unexpected error ({type(exc).__name__}: {exc}); the journal shows what was "
        "written and running again is safe; please report the error"
    )
    return Ending(RunResult.INTERRUPTED, ExitCode.STOPPED, message, type(exc).__name__, ends_invocation=True)


def finished(tally: Tally) -> Ending:
    """Every phase ran: the result is what the writes and the verification proved. Eligible records that
    verification found unaccounted for (created or changed since planning, or a bug) are exit 1 with a
    message, never a row in the failures."""
    left = tally.unaccounted
    message = None
    if left:
        what = ", ".join(f"{n} {sobject}" for sobject, n in left.items())
        message = (
            f"verify: {what} record(s) still eligible that the clean-up did not account for (changed since "
            f"planning?); see `sfcleanup status {tally.plan.run.id}` and run again"
        )
    if tally.unfinished:
        return Ending(RunResult.CLEANED_WITH_FAILURES, ExitCode.ROW_FAILURES, message)
    if left:
        return Ending(RunResult.VERIFY_MISMATCH, ExitCode.ROW_FAILURES, message)
    return Ending(RunResult.CLEANED)


def recount(journal: Journal, tally: Tally) -> None:
    """Updated and failed rows per object from this invocation's journal: a phase cut short loses the
    writer's own tally, never the journal's."""
    updated: Counter[str] = Counter()
    failures = []
    for (sobject, record_id), entry in journal.last_outcomes().items():
        if entry.outcome is not None and entry.outcome.applied:
            updated[sobject] += 1
        elif entry.outcome is RowOutcome.FAILED:
            failures.append(Failure(record_id, sobject, entry.code or "UNKNOWN", entry.message or ""))
    tally.updated = dict(updated)
    tally.failures = failures


# What the journal says if a second signal cuts the run short, even its wind-down.
CUT_SHORT = Ending(
    RunResult.INTERRUPTED, ExitCode.STOPPED, "interrupted at once by a second signal; run again to continue"
)
OTHER_WORKER_CLEANED = Ending(
    RunResult.NOTHING_TO_DO, message="another worker cleaned this run meanwhile: nothing was changed"
)
NOTHING_ELIGIBLE = Ending(RunResult.NOTHING_TO_DO, message="nothing eligible for clean-up: nothing was changed")


class RunCleaner:
    def __init__(
        self,
        client: SalesforceClient,
        settings: Settings,
        leases: Leases,
        interrupts: Interrupts,
        preparer: Preparer,
        phases: PhaseRunner,
        *,
        include_completed: bool = False,
        org: OrgIdentity | None = None,
    ) -> None:
        self._org = org
        self._client = client
        self._settings = settings
        self._leases = leases
        self._interrupts = interrupts
        self._preparer = preparer
        self._phases = phases
        self._include_completed = include_completed

    def clean(self, plan: RunPlan, planned_at: datetime) -> CleanResult:
        run = plan.run
        if settled(plan) and run.status != RunStatus.COMPLETED:
            return Tally.of(plan).result(NOTHING_ELIGIBLE)
        structlog.contextvars.bind_contextvars(run=run.id)
        try:
            return self._clean_locked(plan, planned_at)
        except LeaseHeld as exc:
            return Tally.of(plan).result(stopped(exc))
        finally:
            structlog.contextvars.unbind_contextvars("run", "phase")

    def _clean_locked(self, plan: RunPlan, planned_at: datetime) -> CleanResult:
        run = plan.run
        with LocalLock(self._settings.journal_dir, run.id), Journal(self._settings.journal_dir, run.id) as journal:
            tally = Tally.of(plan, str(journal.path))
            # Running until proven otherwise: whatever ends the run says how.
            ending = Ending(RunResult.RUNNING)
            journal.start(
                mode="run",
                options={"include_completed": self._include_completed, "planned": plan.total},
                org=self._org.as_json() if self._org else None,
            )
            lease: Lease | None = None
            try:
                lease = self._leases.acquire(run.id)
                journal.note("lease.acquired", holder=lease.holder, record=lease.record_id)
                if self._resume_bulk(journal):
                    fresh = self._preparer.plan(plan.run)
                else:
                    fresh = self._preparer.fresh(plan, planned_at)
                if fresh is not plan:
                    tally = Tally.of(fresh, str(journal.path))
                if settled(fresh):
                    self._leases.release(lease)
                    ending = OTHER_WORKER_CLEANED
                else:
                    self._interrupts.check()
                    self._phases.run(fresh, journal, tally, lease)
                    ending = finished(tally)
            except SfCleanupError as exc:
                ending = stopped(exc)
                self._wind_down(journal, run, tally, lease)
            except Exception as exc:  # any error must end the journal truthfully, then the run
                ending = crashed(exc)
                self._wind_down(journal, run, tally, lease)
            except BaseException:
                # A second signal while winding down: stop at once, as a crash would; the journal still says so.
                ending = CUT_SHORT
                raise
            finally:
                journal.end(
                    status=ending.status.value,
                    exit_code=int(ending.exit_code),
                    counts={name: asdict(counts) for name, counts in tally.objects().items()},
                    reason=ending.message,
                )
        return tally.result(ending)

    def _wind_down(self, journal: Journal, run: InvoiceRun, tally: Tally, lease: Lease | None) -> None:
        """After a stop: the counts as the journal has them, the lease released and, if the run says a clean-up
        is under way, CleanUp Status "Completed with errors" (it ended with work left), in one call.

        Best effort: the stop may be the daily limit itself. Then the status stays Started and the lease times
        out, or is resumed at once by this worker's identity.
        """
        recount(journal, tally)
        if lease is None:
            return
        try:
            if tally.cleanup_status == CleanUpStatus.STARTED:
                ended = CleanUpStatus.COMPLETED_WITH_ERRORS
                close_run(self._client, journal, run, ended, self._leases.release_patch(lease))
                tally.cleanup_status = ended
            else:
                self._leases.release(lease)
            journal.note("lease.released", record=lease.record_id)
        except SfCleanupError as exc:
            journal.note("wind_down.failed", reason=str(exc))
            log.warning("run.wind_down_failed", reason=str(exc))
            with contextlib.suppress(SfCleanupError):
                self._leases.release(lease)

    def _resume_bulk(self, journal: Journal) -> bool:
        """Finish reading Bulk API jobs an earlier, stopped invocation left running; True if there were any."""
        try:
            entries = read_entries(journal.path, allow_truncated=True)
        except JournalError as exc:
            raise StopRun(f"cannot check the journal for unfinished Bulk API jobs: {exc}") from None
        if not open_jobs(entries):
            return False
        write = self._settings.write
        sleep = self._phases.sleep
        writer = bulk_writer(self._client, write, journal, self._phases.workdir, sleep=sleep)
        resumed = resume_open_jobs(writer, bulk_api(self._client, write, sleep), entries)
        journal.note("bulk.resumed", jobs=resumed)
        return True
