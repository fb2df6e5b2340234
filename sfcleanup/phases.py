"""The writing part of one run's clean-up: CleanUp Status Started, each phase in the safe order through the
writer its size calls for, records held back behind those that failed, verification, Error Logs, and the
final CleanUp Status released together with the lease."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import structlog

from sfcleanup import billing, canary, preflight
from sfcleanup.billing import RULE_BY_PHASE, CleanUpStatus, Phase, RunStatus
from sfcleanup.changes import ChangeSet, MemoryChanges, Without
from sfcleanup.cleanresult import Tally
from sfcleanup.config import Settings
from sfcleanup.errorlogs import write_error_logs
from sfcleanup.errors import SfCleanupError
from sfcleanup.interrupts import Interrupts
from sfcleanup.journal import Journal
from sfcleanup.lease import Lease, Leases
from sfcleanup.models import InvoiceRun
from sfcleanup.outcomes import Held, PhaseResult
from sfcleanup.plan import RunPlan
from sfcleanup.report import VerifyCount
from sfcleanup.salesforce.client import SalesforceClient, Update
from sfcleanup.salesforce.read import eligible_left, remaining_by_status
from sfcleanup.salesforce.write import CompositeWriter
from sfcleanup.salesforce.writers import writer_for

log = structlog.get_logger("sfcleanup.worker")
# A progress display: (label, total records or None while the total is not known) -> advance by n records.
ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


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
    # A reviewed plan (`run --plan`): records eligible beyond it are new since the plan, not a verify mismatch.
    reviewed = False

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

    def run(self, plan: RunPlan, journal: Journal, tally: Tally, lease: Lease) -> None:
        """Every phase, verified, the final status set; `tally` follows along, so a stop leaves it true."""
        run = plan.run
        if run.status == RunStatus.COMPLETED:
            # The package's documented way to clean a run that completed: mark it Completed with errors first.
            set_run_field(self._client, journal, run, billing.RUN_STATUS, run.status, RunStatus.COMPLETED_WITH_ERRORS)
            tally.run_status = RunStatus.COMPLETED_WITH_ERRORS
        if run.cleanup_status != CleanUpStatus.STARTED:
            try:
                set_run_field(
                    self._client, journal, run, billing.CLEANUP_STATUS, run.cleanup_status, CleanUpStatus.STARTED
                )
            except SfCleanupError:
                # A lost answer may hide a write the org applied: the tally says what the org shows, if it
                # still answers, so the wind-down ends a status that did become Started.
                with contextlib.suppress(SfCleanupError):
                    tally.cleanup_status = preflight.read_runs(self._client, [run.id])[run.id].cleanup_status
                raise
        tally.cleanup_status = CleanUpStatus.STARTED
        # Records that did not reach their target in this invocation, with why: what depends on them waits.
        blocked: dict[str, str] = {}
        skipped = self.skipped(plan, journal, tally)
        for records in skipped.values():
            blocked.update(records)
        for phase in Phase:
            self._phase(plan, phase, journal, tally, lease, blocked, skipped.get(phase, {}))
        self._verify(plan, tally)
        if tally.failures and self._settings.error_logs:
            tally.error_logs, _ = write_error_logs(self._client, run.id, tally.failures, journal)
        left = tally.unfinished or tally.unaccounted or tally.new_since_plan
        final = CleanUpStatus.COMPLETED_WITH_ERRORS if left else CleanUpStatus.COMPLETED
        close_run(self._client, journal, run, final, self._leases.release_patch(lease))
        tally.cleanup_status = final

    def skipped(self, plan: RunPlan, journal: Journal, tally: Tally) -> Mapping[Phase, Mapping[str, str]]:
        """Planned records not to write, per phase, each with why (what waits for them is held): none here; a
        reviewed plan's drifted records (reviewed.ReviewedPhaseRunner)."""
        return {}

    def _phase(
        self,
        plan: RunPlan,
        phase: Phase,
        journal: Journal,
        tally: Tally,
        lease: Lease,
        blocked: dict[str, str],
        skip: Collection[str],
    ) -> None:
        rule = RULE_BY_PHASE[phase]
        changes = _hold_back(plan, phase, blocked, tally, skip)
        if not changes:
            return
        structlog.contextvars.bind_contextvars(phase=phase.value)
        progress = self._progress_for(f"{plan.run.id} {rule.sobject}", len(changes), lease)
        log.info("phase.start", object=rule.sobject, records=len(changes))
        # The canary batch first: written, read back and compared before the rest of the phase is sent.
        first, rest = canary.split(changes, self._settings.write.canary_records)
        # Through Composite whatever the phase's route: one call instead of a Bulk API job, and the org's
        # triggers and flows run for both APIs alike.
        # Each canary call reads its records back after writing them: no call of its own for the read-back.
        result, read_back = CompositeWriter(
            self._client, self._settings.write, journal, progress=progress, sleep=self.sleep
        ).apply_and_read_back(phase.value, rule, MemoryChanges(first))
        failed = {f.id for f in result.failures}
        mismatches = canary.compare(self._client, rule, first, failed, read_back)
        canary.stop_on_mismatch(journal, phase.value, mismatches)
        if rest:
            result.merge(self._write(phase, rest, journal, progress))
        tally.updated[rule.sobject] = result.updated
        tally.failures.extend(result.failures)
        for failure in result.failures:
            blocked[failure.id] = f"{_label(rule.sobject)} {failure.id} not {rule.to_state} ({failure.code})"
        log.info("phase.done", updated=result.updated, failed=len(result.failures))

    def _write(
        self, phase: Phase, changes: ChangeSet, journal: Journal, progress: Callable[[int], None]
    ) -> PhaseResult:
        """Part of a phase through the writer its size calls for (`writers.route_for`)."""
        writer = writer_for(
            len(changes),
            self._client,
            self._settings.write,
            journal,
            self.workdir,
            sleep=self.sleep,
            progress=progress,
        )
        log.info("phase.batch", records=len(changes), route=type(writer).__name__)
        return writer.apply(phase.value, RULE_BY_PHASE[phase], changes)

    def _verify(self, plan: RunPlan, tally: Tally) -> None:
        """Re-count what is still eligible: only anomalies, failed rows and held records may be left.

        Anything more means the org holds eligible records the clean-up did not account for (created or
        changed since planning, or a bug): `runclean.finished` makes that exit 1 with a message.
        """
        left = eligible_left(remaining_by_status(self._client, plan.run.id))
        tally.eligible_left = left
        # Drifted records (`run --plan`) were left as they are, like failed rows: they may still be eligible.
        drifted = Counter(d.sobject for d in tally.drifted)
        tally.verify = {
            sobject: VerifyCount(
                expected=counts.anomalies + counts.failed + counts.held + drifted[sobject], left=left.get(sobject, 0)
            )
            for sobject, counts in tally.objects().items()
        }
        if tally.unaccounted and self.reviewed:
            # A reviewed plan is applied exactly: what became eligible since is left for the next plan, counted.
            tally.new_since_plan = tally.unaccounted
            tally.verify = {s: VerifyCount(max(v.expected, v.left), v.left) for s, v in tally.verify.items()}
            log.info("verify.new_since_plan", records=tally.new_since_plan)
        if tally.unaccounted:
            log.warning("verify.mismatch", unaccounted=tally.unaccounted)
        log.info("verify.done", eligible_left=left, failed=len(tally.failures))


def _hold_back(
    plan: RunPlan, phase: Phase, blocked: dict[str, str], tally: Tally, skip: Collection[str] = ()
) -> ChangeSet:
    """The phase's changes less those skipped and those waiting for a record that did not reach its target;
    the waiting ones are held (reported, and left for the next invocation) and block in turn what waits for them."""
    changes: ChangeSet = Without(plan.changes[phase], skip) if skip else plan.changes[phase]
    if not changes or not blocked:
        return changes
    waiting = {k: v for k, v in plan.dependencies.waiting(phase, blocked).items() if k not in skip}
    if not waiting:
        return changes
    sobject = RULE_BY_PHASE[phase].sobject
    for record_id, blocker in sorted(waiting.items()):
        blocked[record_id] = blocked[blocker]
        tally.held.append(Held(record_id, sobject, blocker, f"held: {blocked[blocker]}"))
    log.warning("phase.held", object=sobject, held=len(waiting))
    return Without(plan.changes[phase], {*skip, *waiting})
