"""The clean-up of invoice runs, phase by phase in the safe order, journaled, verified and reported.

prepare(): preflight, read and plan, all read-only. apply(): CleanUp Status Started, invoice lines, invoices,
usage summaries, order products, verify, CleanUp Status Completed (or Completed with errors).

A run's outcome is `running` until proven otherwise. Any stop, signal or unexpected error ends it as
`stopped` or `interrupted` with the reason, in the report and in the journal's `end` entry; the lease is
released and CleanUp Status set to "Completed with errors" (work is left) as far as the org still answers.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from sfcleanup import billing, preflight
from sfcleanup.billing import RULE_BY_PHASE, CleanUpStatus, Phase, RunStatus
from sfcleanup.config import Settings
from sfcleanup.errorlogs import write_error_logs
from sfcleanup.errors import ExitCode, Interrupted, SfCleanupError, StopRun
from sfcleanup.interrupts import Interrupts
from sfcleanup.journal import Journal, JournalError, read_entries
from sfcleanup.lease import Lease, LeaseHeld, Leases, LocalLock, default_identity
from sfcleanup.models import InvoiceRun
from sfcleanup.outcomes import Failure, Held, RowOutcome
from sfcleanup.plan import ChangeSet, RunPlan, Without
from sfcleanup.preflight import OrgReadiness
from sfcleanup.report import ObjectCounts, Report, RunOutcome, RunResult, VerifyCount
from sfcleanup.salesforce.bulkwrite import open_jobs, resume_open_jobs
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.read import eligible_left, plan_streaming, remaining_by_status
from sfcleanup.salesforce.writers import bulk_api, bulk_writer, jobs_for, writer_for

log = structlog.get_logger("sfcleanup.worker")
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class Prepared:
    readiness: OrgReadiness
    plans: list[RunPlan]
    estimated_calls: int
    budget: dict[str, int] = field(default_factory=dict)


def _outcome(plan: RunPlan, status: RunResult) -> RunOutcome:
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


def _label(sobject: str) -> str:
    return {billing.INVOICE_LINE: "line", billing.INVOICE: "invoice"}.get(sobject, sobject)


class Worker:
    def __init__(
        self,
        client: SalesforceClient,
        settings: Settings,
        *,
        include_completed: bool = False,
        progress: ProgressFactory | None = None,
        sleep: Callable[[float], None] = time.sleep,
        interrupts: Interrupts | None = None,
    ) -> None:
        # Inert unless the command line installed it for the process (interrupts.PROCESS).
        self.interrupts = interrupts or Interrupts()

        def pause(seconds: float) -> None:
            # The writers' and pollers' pauses are safe points: nothing of this worker is in flight then.
            self.interrupts.check()
            sleep(seconds)

        self._sleep = pause
        self.client = client
        self.settings = settings
        identity = settings.worker_id or default_identity(settings.journal_dir)
        self.leases = Leases(client, identity, settings.lease_timeout_s)
        self._planned_at: dict[str, datetime] = {}
        self.include_completed = include_completed
        self._progress = progress

    @property
    def _workdir(self) -> Path:
        """Where Bulk API CSV files are written and read."""
        return self.settings.journal_dir / "bulk"

    @property
    def _per_call(self) -> int:
        return self.settings.write.batch_size * self.settings.write.collections_per_call

    def readiness(self) -> OrgReadiness:
        """Describe the Billing objects once; raises if the org lacks what the clean-up needs."""
        readiness = preflight.check_org(self.client)
        preflight.require_ready(readiness)
        return readiness

    def prepare(self, raw_run_ids: Sequence[str], *, readiness: OrgReadiness | None = None) -> Prepared:
        """Preflight, read and plan every run; read-only. Raises before anything is written."""
        readiness = readiness or self.readiness()
        run_ids = preflight.parse_run_ids(raw_run_ids, readiness.run_key_prefix)
        runs, limits = preflight.check_runs(self.client, run_ids, readiness, include_completed=self.include_completed)
        for run in runs:
            self.check_lease(run)
        plans = [self._plan(run) for run in runs]
        estimate = sum(self._estimate(p) for p in plans)
        budget = preflight.check_budget(limits, estimate, self.settings.api_reserve)
        return Prepared(readiness, plans, estimate, budget)

    def _estimate(self, plan: RunPlan) -> int:
        if plan.is_empty:
            return 0
        phases = sum(
            preflight.estimate_phase_calls(
                len(c), per_call=self._per_call, bulk_jobs=jobs_for(len(c), self.settings.write)
            )
            for c in plan.changes.values()
        )
        return phases + preflight.FIXED_CALLS_PER_RUN

    def _plan(self, run: InvoiceRun) -> RunPlan:
        self._planned_at[run.id] = datetime.now(UTC)
        plan, read = plan_streaming(self.client, run)
        log.info("plan.ready", run=run.id, records=read, changes=plan.total)
        return plan

    def _fresh(self, plan: RunPlan, planned_at: datetime) -> RunPlan:
        """The plan again if another worker held the run's lease since it was made (it may have cleaned it)."""
        # A minute's margin covers the difference between this machine's clock and the org's.
        if not self.leases.touched_by_others_since(planned_at - timedelta(minutes=1)):
            return plan
        log.info("plan.stale", reason="another worker held the run since it was planned")
        current = preflight.read_runs(self.client, [plan.run.id]).get(plan.run.id, plan.run)
        return self._plan(current)

    def check_lease(self, run: InvoiceRun) -> None:
        """Refuse, before anything is written, a run another live worker is cleaning."""
        if run.cleanup_status == CleanUpStatus.STARTED:
            holder = self.leases.holder_other_than_me(run.id)
            if holder is not None:
                raise LeaseHeld(f"invoice run {run.id}: {self.leases.refusal(holder)}")

    def report(self, mode: str, prepared: Prepared, outcomes: list[RunOutcome]) -> Report:
        usage = self.client.usage
        return Report(
            mode=mode,
            runs=outcomes,
            api_calls=usage.calls,
            api_usage={"used": usage.used, "max": usage.max},
            estimated_calls=prepared.estimated_calls,
            budget=prepared.budget,
        )

    def outcome_of(self, plan: RunPlan, status: RunResult) -> RunOutcome:
        return _outcome(plan, status)

    def preview(self, prepared: Prepared) -> Report:
        return self.report("plan", prepared, [_outcome(p, RunResult.PLANNED) for p in prepared.plans])

    def apply(self, prepared: Prepared) -> Report:
        return self.report("run", prepared, self.clean_all(prepared))

    def clean_all(self, prepared: Prepared) -> list[RunOutcome]:
        """Clean each planned run in turn. A run that cannot progress is reported and the next one tried; only
        a stop that concerns every run (daily limit, reserve, authentication, a signal) leaves the rest
        not started."""
        self.client.keep_reserve(self.settings.api_reserve)
        outcomes: list[RunOutcome] = []
        halted: str | None = None
        with self.interrupts.deferred():
            for plan in prepared.plans:
                if halted is None and self.interrupts.received:
                    halted = f"{self.interrupts.received} received"
                if halted is not None:
                    outcomes.append(self.not_started(plan, halted))
                    continue
                outcome = self._clean(plan)
                outcomes.append(outcome)
                if outcome.ends_invocation:
                    halted = f"run {outcome.id} {outcome.message or outcome.status.value}"
        return outcomes

    def not_started(self, plan: RunPlan, reason: str) -> RunOutcome:
        """A run left alone because an earlier stop ended the invocation; running again picks it up."""
        outcome = _outcome(plan, RunResult.NOT_STARTED)
        outcome.exit_code = ExitCode.STOPPED
        outcome.message = f"not started: {reason}"
        return outcome

    # --- one run --------------------------------------------------------------------------------------
    def _clean(self, plan: RunPlan) -> RunOutcome:
        run = plan.run
        outcome = _outcome(plan, RunResult.RUNNING)
        if _settled(plan) and run.status != RunStatus.COMPLETED:
            outcome.status = RunResult.NOTHING_TO_DO
            outcome.message = "nothing eligible for clean-up: nothing was changed"
            return outcome
        structlog.contextvars.bind_contextvars(run=run.id)
        try:
            return self._clean_locked(plan, outcome)
        except LeaseHeld as exc:
            self._stopped(outcome, exc)
            return outcome
        finally:
            structlog.contextvars.unbind_contextvars("run", "phase")

    @staticmethod
    def _stopped(outcome: RunOutcome, exc: SfCleanupError) -> None:
        interrupted = isinstance(exc, Interrupted)
        outcome.status = RunResult.INTERRUPTED if interrupted else RunResult.STOPPED
        outcome.exit_code = exc.exit_code
        outcome.message = f"{outcome.status.value}: {exc}"
        outcome.stopped_by = type(exc).__name__
        outcome.ends_invocation = exc.ends_invocation
        log.warning("run.stopped", reason=str(exc), interrupted=interrupted)

    @staticmethod
    def _crashed(outcome: RunOutcome, exc: Exception) -> None:
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

    def _clean_locked(self, plan: RunPlan, outcome: RunOutcome) -> RunOutcome:
        run = plan.run
        planned_at = self._planned_at.get(run.id, datetime.now(UTC))
        with LocalLock(self.settings.journal_dir, run.id), Journal(self.settings.journal_dir, run.id) as journal:
            outcome.journal = str(journal.path)
            journal.start(mode="run", options={"include_completed": self.include_completed, "planned": plan.total})
            lease: Lease | None = None
            try:
                lease = self.leases.acquire(run.id)
                journal.note("lease.acquired", holder=lease.holder, record=lease.record_id)
                fresh = self._plan(plan.run) if self._resume_bulk(journal) else self._fresh(plan, planned_at)
                if fresh is not plan:
                    outcome = _outcome(fresh, RunResult.RUNNING)
                    outcome.journal = str(journal.path)
                if _settled(fresh):
                    outcome.status = RunResult.NOTHING_TO_DO
                    outcome.message = "another worker cleaned this run meanwhile: nothing was changed"
                    self.leases.release(lease)
                else:
                    self.interrupts.check()
                    self._phases(fresh, journal, outcome, lease)
                    self._finished(outcome)
            except SfCleanupError as exc:
                self._stopped(outcome, exc)
                self._wind_down(journal, run, outcome, lease)
            except Exception as exc:  # any error must end the journal truthfully, then the run
                self._crashed(outcome, exc)
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

    @staticmethod
    def _finished(outcome: RunOutcome) -> None:
        """Every phase ran: the outcome is what the writes and the verification proved."""
        if outcome.status is RunResult.RUNNING:
            outcome.status = RunResult.VERIFY_MISMATCH if outcome.unaccounted else RunResult.CLEANED

    def _wind_down(self, journal: Journal, run: InvoiceRun, outcome: RunOutcome, lease: Lease | None) -> None:
        """After a stop: the counts as the journal has them, the lease released and, if the run says a clean-up
        is under way, CleanUp Status "Completed with errors" (it ended with work left), in one call.

        Best effort: the stop may be the daily limit itself. Then the status stays Started and the lease times
        out, or is resumed at once by this worker's identity.
        """
        self._recount(journal, outcome)
        if lease is None:
            return
        try:
            if outcome.cleanup_status == CleanUpStatus.STARTED:
                ended = CleanUpStatus.COMPLETED_WITH_ERRORS
                self._set_run_field(
                    journal,
                    run,
                    billing.CLEANUP_STATUS,
                    CleanUpStatus.STARTED,
                    ended,
                    also=[self.leases.release_patch(lease)],
                )
                outcome.cleanup_status = ended
            else:
                self.leases.release(lease)
            journal.note("lease.released", record=lease.record_id)
        except SfCleanupError as exc:
            journal.note("wind_down.failed", reason=str(exc))
            log.warning("run.wind_down_failed", reason=str(exc))
            with contextlib.suppress(SfCleanupError):
                self.leases.release(lease)

    @staticmethod
    def _recount(journal: Journal, outcome: RunOutcome) -> None:
        """Updated and failed rows per object from this invocation's journal: a phase cut short loses the
        writer's own tally, never the journal's."""
        updated: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        failures = []
        for (sobject, record_id), entry in journal.last_outcomes().items():
            if RowOutcome(entry["outcome"]).applied:
                updated[sobject] += 1
            elif entry["outcome"] == RowOutcome.FAILED:
                failed[sobject] += 1
                failures.append(Failure(record_id, sobject, entry.get("code") or "UNKNOWN", entry.get("message") or ""))
        for sobject, counts in outcome.objects.items():
            counts.updated, counts.failed = updated[sobject], failed[sobject]
        outcome.failures = failures

    def _resume_bulk(self, journal: Journal) -> bool:
        """Finish reading Bulk API jobs an earlier, stopped invocation left running; True if there were any."""
        try:
            entries = read_entries(journal.path, allow_truncated=True)
        except JournalError as exc:
            raise StopRun(f"cannot check the journal for unfinished Bulk API jobs: {exc}") from None
        if not open_jobs(entries):
            return False
        resumed = resume_open_jobs(
            bulk_writer(self.client, self.settings.write, journal, self._workdir, sleep=self._sleep),
            bulk_api(self.client, self.settings.write, self._sleep),
            entries,
        )
        journal.note("bulk.resumed", jobs=resumed)
        return True

    def _set_run_field(
        self,
        journal: Journal,
        run: InvoiceRun,
        name: str,
        before: str | None,
        after: str,
        also: list[tuple[str, str, dict[str, Any]]] | None = None,
    ) -> None:
        journal.run_field(name, before, after, "pending")
        if also:
            self.client.update_many(f"update {name}", [(billing.INVOICE_RUN, run.id, {name: after})], best_effort=also)
        else:
            self.client.update_record(billing.INVOICE_RUN, run.id, {name: after})
        journal.run_field(name, before, after, "updated")
        log.info("run.field", field=name, before=before, after=str(after))

    def _progress_for(self, label: str, total: int, lease: Lease) -> Callable[[int], None]:
        """Progress on a terminal, and the lease's heartbeat, after every batch."""
        shown = self._progress(label, total) if self._progress else None

        def advance(done: int) -> None:
            # After a batch's answers are journaled: the safe point where a signal stops the run.
            self.interrupts.check()
            if shown is not None:
                shown(done)
            self.leases.heartbeat(lease)

        return advance

    def _phases(self, plan: RunPlan, journal: Journal, outcome: RunOutcome, lease: Lease) -> None:
        run = plan.run
        if run.status == RunStatus.COMPLETED:
            # The package's documented way to clean a run that completed: mark it Completed with errors first.
            self._set_run_field(journal, run, billing.RUN_STATUS, run.status, RunStatus.COMPLETED_WITH_ERRORS)
            outcome.run_status = RunStatus.COMPLETED_WITH_ERRORS
        if run.cleanup_status != CleanUpStatus.STARTED:
            self._set_run_field(journal, run, billing.CLEANUP_STATUS, run.cleanup_status, CleanUpStatus.STARTED)
        outcome.cleanup_status = CleanUpStatus.STARTED
        # Records that did not reach their target in this invocation, with why: what depends on them waits.
        blocked: dict[str, str] = {}
        for phase in Phase:
            rule = RULE_BY_PHASE[phase]
            changes = self._hold_back(plan, phase, blocked, outcome)
            if not changes:
                continue
            structlog.contextvars.bind_contextvars(phase=phase.value)
            progress = self._progress_for(f"{run.id} {rule.sobject}", len(changes), lease)
            writer = writer_for(
                len(changes),
                self.client,
                self.settings.write,
                journal,
                self._workdir,
                sleep=self._sleep,
                progress=progress,
            )
            log.info("phase.start", object=rule.sobject, records=len(changes), route=type(writer).__name__)
            result = writer.apply(phase.value, rule, changes)
            counts = outcome.objects[rule.sobject]
            counts.updated, counts.failed = result.updated, len(result.failures)
            outcome.failures.extend(result.failures)
            for failure in result.failures:
                blocked[failure.id] = f"{_label(rule.sobject)} {failure.id} not {rule.to_state} ({failure.code})"
            log.info("phase.done", updated=counts.updated, failed=counts.failed)
        self._verify(plan, outcome)
        if outcome.failures and self.settings.error_logs:
            outcome.error_logs, _ = write_error_logs(self.client, run.id, outcome.failures, journal)
        unfinished = bool(outcome.failures or outcome.held)
        final = CleanUpStatus.COMPLETED_WITH_ERRORS if unfinished or outcome.unaccounted else CleanUpStatus.COMPLETED
        # The final status and the lease's release travel in one call.
        self._set_run_field(
            journal, run, billing.CLEANUP_STATUS, CleanUpStatus.STARTED, final, also=[self.leases.release_patch(lease)]
        )
        outcome.cleanup_status = final
        if unfinished:
            outcome.status = RunResult.CLEANED_WITH_FAILURES
            outcome.exit_code = ExitCode.ROW_FAILURES

    @staticmethod
    def _hold_back(plan: RunPlan, phase: Phase, blocked: dict[str, str], outcome: RunOutcome) -> ChangeSet:
        """The phase's changes less those waiting for a record that did not reach its target; those are held
        (reported, and left for the next invocation) and block in turn what waits for them."""
        changes = plan.changes[phase]
        if not changes or not blocked:
            return changes
        waiting = plan.dependencies.waiting(phase, blocked)
        if not waiting:
            return changes
        sobject = RULE_BY_PHASE[phase].sobject
        for record_id, blocker in sorted(waiting.items()):
            blocked[record_id] = blocked[blocker]
            outcome.held.append(Held(record_id, sobject, blocker, f"held: {blocked[blocker]}"))
        outcome.objects[sobject].held = len(waiting)
        log.warning("phase.held", object=sobject, held=len(waiting))
        return Without(changes, waiting)

    def _verify(self, plan: RunPlan, outcome: RunOutcome) -> None:
        """Re-count what is still eligible: only anomalies, failed rows and held records may be left.

        Anything more means the org holds eligible records the clean-up did not account for (created or
        changed since planning, or a bug): exit 1 with a message, never a row in the failures.
        """
        left = eligible_left(remaining_by_status(self.client, plan.run.id))
        outcome.eligible_left = left
        failed = Counter(f.sobject for f in outcome.failures)
        outcome.verify = {
            sobject: VerifyCount(expected=counts.anomalies + failed[sobject] + counts.held, left=left.get(sobject, 0))
            for sobject, counts in outcome.objects.items()
        }
        unaccounted = outcome.unaccounted
        if unaccounted:
            what = ", ".join(f"{n} {sobject}" for sobject, n in unaccounted.items())
            outcome.exit_code = max(outcome.exit_code, ExitCode.ROW_FAILURES)
            outcome.message = (
                f"verify: {what} record(s) still eligible that the clean-up did not account for (changed since "
                f"planning?); see `sfcleanup status {plan.run.id}` and run again"
            )
            log.warning("verify.mismatch", unaccounted=unaccounted)
        log.info("verify.done", eligible_left=left, failed=sum(failed.values()))


def _settled(plan: RunPlan) -> bool:
    """Nothing to write, and the run's CleanUp Status does not say a clean-up was left unfinished.

    Started or Completed with errors with nothing left to write is finished by setting the final status.
    """
    unfinished = (CleanUpStatus.STARTED, CleanUpStatus.COMPLETED_WITH_ERRORS)
    return plan.is_empty and plan.run.cleanup_status not in unfinished
