"""One run's clean-up, start to end: the local lock, the lease, the phases, verification and the final status.

A run's outcome is `running` until proven otherwise. Any stop, signal or unexpected error ends it as
`stopped` or `interrupted` with the reason, in the report and in the journal's `end` entry; the lease is
released and CleanUp Status set to "Completed with errors" (work is left) as far as the org still answers.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import datetime

import structlog

from sfcleanup.billing import RULE_BY_PHASE, CleanUpStatus, Phase, RunStatus
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
from sfcleanup.report import ObjectCounts, RunOutcome, RunResult
from sfcleanup.salesforce.bulkwrite import open_jobs, resume_open_jobs
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.writers import bulk_api, bulk_writer

log = structlog.get_logger("sfcleanup.worker")


def outcome_for(plan: RunPlan, status: RunResult) -> RunOutcome:
    """A run's outcome as planned: counts per object, transitions and anomalies, in `status`."""
    anomalies = plan.anomalies_by_object()
    objects = {
        RULE_BY_PHASE[phase].sobject: ObjectCounts(
            planned=len(plan.changes[phase]), anomalies=anomalies.get(RULE_BY_PHASE[phase].sobject, 0)
        )
        for phase in Phase
    }
    return RunOutcome(
        id=plan.run.id,
        name=plan.run.name,
        run_status=plan.run.status,
        status=status,
        objects=objects,
        transitions=plan.transitions(),
        anomalies=list(plan.anomalies),
        cleanup_status=plan.run.cleanup_status,
    )


def settled(plan: RunPlan) -> bool:
    """Nothing to write, and the run's CleanUp Status does not say a clean-up was left unfinished.

    Started or Completed with errors with nothing left to write is finished by setting the final status.
    """
    unfinished = (CleanUpStatus.STARTED, CleanUpStatus.COMPLETED_WITH_ERRORS)
    return plan.is_empty and plan.run.cleanup_status not in unfinished


def stopped(outcome: RunOutcome, exc: SfCleanupError) -> None:
    interrupted = isinstance(exc, Interrupted)
    outcome.status = RunResult.INTERRUPTED if interrupted else RunResult.STOPPED
    outcome.exit_code = exc.exit_code
    outcome.message = f"{outcome.status.value}: {exc}"
    outcome.stopped_by = type(exc).__name__
    outcome.ends_invocation = exc.ends_invocation
    log.warning("run.stopped", reason=str(exc), interrupted=interrupted)


def crashed(outcome: RunOutcome, exc: Exception) -> None:
    """An error nobody planned for: a bug, or the machine (disk full). Recorded as it is, never as success;
    the invocation ends, since the next run would most likely meet it too."""
    outcome.status = RunResult.INTERRUPTED
    outcome.exit_code = ExitCode.STOPPED
    outcome.message = (
        f"interrupted by an unexpected error ({type(exc).__name__}: {exc}); the journal shows what was "
        "written and running again is safe; please report the error"
    )
    outcome.stopped_by = type(exc).__name__
    outcome.ends_invocation = True
    log.error("run.crashed", exc_info=exc)


def finished(outcome: RunOutcome) -> None:
    """Every phase ran: the outcome is what the writes and the verification proved."""
    if outcome.status is RunResult.RUNNING:
        outcome.status = RunResult.VERIFY_MISMATCH if outcome.unaccounted else RunResult.CLEANED


def recount(journal: Journal, outcome: RunOutcome) -> None:
    """Updated and failed rows per object from this invocation's journal: a phase cut short loses the
    writer's own tally, never the journal's."""
    updated: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    failures = []
    for (sobject, record_id), entry in journal.last_outcomes().items():
        if entry.outcome is not None and entry.outcome.applied:
            updated[sobject] += 1
        elif entry.outcome is RowOutcome.FAILED:
            failed[sobject] += 1
            failures.append(Failure(record_id, sobject, entry.code or "UNKNOWN", entry.message or ""))
    for sobject, counts in outcome.objects.items():
        counts.updated, counts.failed = updated[sobject], failed[sobject]
    outcome.failures = failures


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

    def clean(self, plan: RunPlan, planned_at: datetime) -> RunOutcome:
        run = plan.run
        outcome = outcome_for(plan, RunResult.RUNNING)
        if settled(plan) and run.status != RunStatus.COMPLETED:
            outcome.status = RunResult.NOTHING_TO_DO
            outcome.message = "nothing eligible for clean-up: nothing was changed"
            return outcome
        structlog.contextvars.bind_contextvars(run=run.id)
        try:
            return self._clean_locked(plan, outcome, planned_at)
        except LeaseHeld as exc:
            stopped(outcome, exc)
            return outcome
        finally:
            structlog.contextvars.unbind_contextvars("run", "phase")

    def _clean_locked(self, plan: RunPlan, outcome: RunOutcome, planned_at: datetime) -> RunOutcome:
        run = plan.run
        with LocalLock(self._settings.journal_dir, run.id), Journal(self._settings.journal_dir, run.id) as journal:
            outcome.journal = str(journal.path)
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
                    outcome = outcome_for(fresh, RunResult.RUNNING)
                    outcome.journal = str(journal.path)
                if settled(fresh):
                    outcome.status = RunResult.NOTHING_TO_DO
                    outcome.message = "another worker cleaned this run meanwhile: nothing was changed"
                    self._leases.release(lease)
                else:
                    self._interrupts.check()
                    self._phases.run(fresh, journal, outcome, lease)
                    finished(outcome)
            except SfCleanupError as exc:
                stopped(outcome, exc)
                self._wind_down(journal, run, outcome, lease)
            except Exception as exc:  # any error must end the journal truthfully, then the run
                crashed(outcome, exc)
                self._wind_down(journal, run, outcome, lease)
            except BaseException:
                # A second signal while winding down: stop at once, as a crash would; the journal still says so.
                outcome.status, outcome.exit_code = RunResult.INTERRUPTED, ExitCode.STOPPED
                outcome.message = "interrupted at once by a second signal; run again to continue"
                raise
            finally:
                journal.end(
                    status=outcome.status.value,
                    exit_code=int(outcome.exit_code),
                    counts={name: vars(counts) for name, counts in outcome.objects.items()},
                    reason=outcome.message,
                )
        return outcome

    def _wind_down(self, journal: Journal, run: InvoiceRun, outcome: RunOutcome, lease: Lease | None) -> None:
        """After a stop: the counts as the journal has them, the lease released and, if the run says a clean-up
        is under way, CleanUp Status "Completed with errors" (it ended with work left), in one call.

        Best effort: the stop may be the daily limit itself. Then the status stays Started and the lease times
        out, or is resumed at once by this worker's identity.
        """
        recount(journal, outcome)
        if lease is None:
            return
        try:
            if outcome.cleanup_status == CleanUpStatus.STARTED:
                ended = CleanUpStatus.COMPLETED_WITH_ERRORS
                close_run(self._client, journal, run, ended, self._leases.release_patch(lease))
                outcome.cleanup_status = ended
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
