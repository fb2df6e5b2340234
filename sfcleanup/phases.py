"""The writing part of one run's clean-up: CleanUp Status Started, each phase in the safe order through the
writer its size calls for, records held back behind those that failed, verification, Error Logs, and the
final CleanUp Status released together with the lease."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from sfcleanup import billing, preflight
from sfcleanup.billing import RULE_BY_PHASE, CleanUpStatus, Phase, RunStatus
from sfcleanup.changes import ChangeSet, Without
from sfcleanup.config import Settings
from sfcleanup.errorlogs import write_error_logs
from sfcleanup.errors import ExitCode, SfCleanupError
from sfcleanup.interrupts import Interrupts
from sfcleanup.journal import Journal
from sfcleanup.lease import Lease, Leases
from sfcleanup.models import InvoiceRun
from sfcleanup.outcomes import Held
from sfcleanup.plan import RunPlan
from sfcleanup.report import RunOutcome, RunResult, VerifyCount
from sfcleanup.salesforce.client import SalesforceClient, Update
from sfcleanup.salesforce.read import eligible_left, remaining_by_status
from sfcleanup.salesforce.writers import writer_for

log = structlog.get_logger("sfcleanup.worker")
ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _label(sobject: str) -> str:
    return {billing.INVOICE_LINE: "line", billing.INVOICE: "invoice"}.get(sobject, sobject)


def set_run_field(
    client: SalesforceClient,
    journal: Journal,
    run: InvoiceRun,
    name: str,
    before: str | None,
    after: str,
    also: Sequence[Update] = (),
) -> None:
    """One field of the run, journaled before and after; `also` travels in the same call."""
    journal.run_field(name, before, after, "pending")
    if also:
        client.update_many(f"update {name}", [(billing.INVOICE_RUN, run.id, {name: after})], best_effort=also)
    else:
        client.update_record(billing.INVOICE_RUN, run.id, {name: after})
    journal.run_field(name, before, after, "updated")
    log.info("run.field", field=name, before=before, after=str(after))


def close_run(
    client: SalesforceClient, journal: Journal, run: InvoiceRun, final: CleanUpStatus, release: Update
) -> None:
    """CleanUp Status from Started to `final`, and the lease's release, in one call."""
    set_run_field(client, journal, run, billing.CLEANUP_STATUS, CleanUpStatus.STARTED, final, also=[release])


class PhaseRunner:
    def __init__(
        self,
        client: SalesforceClient,
        settings: Settings,
        leases: Leases,
        interrupts: Interrupts,
        *,
        sleep: Callable[[float], None],
        progress: ProgressFactory | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._leases = leases
        self._interrupts = interrupts
        self.sleep = sleep
        self._progress = progress

    @property
    def workdir(self) -> Path:
        """Where Bulk API CSV files are written and read."""
        return self._settings.journal_dir / "bulk"

    def _progress_for(self, label: str, total: int, lease: Lease) -> Callable[[int], None]:
        """Progress on a terminal, and the lease's heartbeat, after every batch."""
        shown = self._progress(label, total) if self._progress else None

        def advance(done: int) -> None:
            # After a batch's answers are journaled: the safe point where a signal stops the run.
            self._interrupts.check()
            if shown is not None:
                shown(done)
            self._leases.heartbeat(lease)

        return advance

    def run(self, plan: RunPlan, journal: Journal, outcome: RunOutcome, lease: Lease) -> None:
        """Every phase, verified, the final status set; `outcome` follows along, so a stop leaves it true."""
        run = plan.run
        if run.status == RunStatus.COMPLETED:
            # The package's documented way to clean a run that completed: mark it Completed with errors first.
            set_run_field(self._client, journal, run, billing.RUN_STATUS, run.status, RunStatus.COMPLETED_WITH_ERRORS)
            outcome.run_status = RunStatus.COMPLETED_WITH_ERRORS
        if run.cleanup_status != CleanUpStatus.STARTED:
            try:
                set_run_field(
                    self._client, journal, run, billing.CLEANUP_STATUS, run.cleanup_status, CleanUpStatus.STARTED
                )
            except SfCleanupError:
                # A lost answer may hide a write the org applied: the outcome says what the org shows, if it
                # still answers, so the wind-down ends a status that did become Started.
                with contextlib.suppress(SfCleanupError):
                    outcome.cleanup_status = preflight.read_runs(self._client, [run.id])[run.id].cleanup_status
                raise
        outcome.cleanup_status = CleanUpStatus.STARTED
        # Records that did not reach their target in this invocation, with why: what depends on them waits.
        blocked: dict[str, str] = {}
        for phase in Phase:
            self._phase(plan, phase, journal, outcome, lease, blocked)
        self._verify(plan, outcome)
        if outcome.failures and self._settings.error_logs:
            outcome.error_logs, _ = write_error_logs(self._client, run.id, outcome.failures, journal)
        unfinished = bool(outcome.failures or outcome.held)
        final = CleanUpStatus.COMPLETED_WITH_ERRORS if unfinished or outcome.unaccounted else CleanUpStatus.COMPLETED
        close_run(self._client, journal, run, final, self._leases.release_patch(lease))
        outcome.cleanup_status = final
        if unfinished:
            outcome.status = RunResult.CLEANED_WITH_FAILURES
            outcome.exit_code = ExitCode.ROW_FAILURES

    def _phase(
        self, plan: RunPlan, phase: Phase, journal: Journal, outcome: RunOutcome, lease: Lease, blocked: dict[str, str]
    ) -> None:
        rule = RULE_BY_PHASE[phase]
        changes = _hold_back(plan, phase, blocked, outcome)
        if not changes:
            return
        structlog.contextvars.bind_contextvars(phase=phase.value)
        progress = self._progress_for(f"{plan.run.id} {rule.sobject}", len(changes), lease)
        writer = writer_for(
            len(changes),
            self._client,
            self._settings.write,
            journal,
            self.workdir,
            sleep=self.sleep,
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

    def _verify(self, plan: RunPlan, outcome: RunOutcome) -> None:
        """Re-count what is still eligible: only anomalies, failed rows and held records may be left.

        Anything more means the org holds eligible records the clean-up did not account for (created or
        changed since planning, or a bug): exit 1 with a message, never a row in the failures.
        """
        left = eligible_left(remaining_by_status(self._client, plan.run.id))
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
