"""The clean-up of invoice runs, as the commands use it: a thin facade over preparing (`preparing`), one run's
lifecycle (`runclean`) and its phases (`phases`).

prepare(): preflight, read and plan, all read-only. apply(): each run in turn, whose `CleanResult` becomes the
run's part of the report; a stop that concerns every run (daily limit, reserve, authentication, a signal) leaves
the rest not started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.cleanresult import CleanResult
from sfcleanup.clock import Clock, utc_now
from sfcleanup.config import Settings
from sfcleanup.errors import ExitCode
from sfcleanup.interrupts import Interrupts
from sfcleanup.lease import Leases
from sfcleanup.locallock import default_identity
from sfcleanup.orgidentity import OrgIdentity
from sfcleanup.phases import PhaseRunner, ProgressFactory
from sfcleanup.plan import RunPlan
from sfcleanup.preflight import OrgReadiness
from sfcleanup.preparing import Prepared, Preparer
from sfcleanup.report import ObjectCounts, Report, RunOutcome, RunResult
from sfcleanup.runclean import RunCleaner
from sfcleanup.salesforce.client import SalesforceClient

__all__ = ["Prepared", "ProgressFactory", "Worker", "outcome_for", "outcome_of_result"]


def outcome_for(plan: RunPlan, status: RunResult) -> RunOutcome:
    """A run's part of the report as planned: counts per object, transitions and anomalies, in `status`."""
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


def outcome_of_result(result: CleanResult) -> RunOutcome:
    """A run's part of the report, from what its clean-up did."""
    plan, ending = result.plan, result.ending
    return RunOutcome(
        id=plan.run.id,
        name=plan.run.name,
        run_status=result.run_status,
        status=ending.status,
        objects={sobject: ObjectCounts(**asdict(counts)) for sobject, counts in result.objects.items()},
        transitions=plan.transitions(),
        failures=list(result.failures),
        held=list(result.held),
        anomalies=list(plan.anomalies),
        cleanup_status=result.cleanup_status,
        eligible_left=dict(result.eligible_left),
        verify=dict(result.verify),
        error_logs=result.error_logs,
        journal=result.journal,
        message=ending.message,
        exit_code=ending.exit_code,
        stopped_by=ending.stopped_by,
        ends_invocation=ending.ends_invocation,
        drifted=list(result.drifted),
        new_since_plan=dict(result.new_since_plan),
    )


class Worker:
    def __init__(
        self,
        client: SalesforceClient,
        settings: Settings,
        *,
        include_completed: bool = False,
        progress: ProgressFactory | None = None,
        reading_progress: ProgressFactory | None = None,
        sleep: Callable[[float], None] = time.sleep,
        interrupts: Interrupts | None = None,
        clock: Clock = utc_now,
        org: OrgIdentity | None = None,
        readiness_after: bool = True,
    ) -> None:
        # Which org, as whom (orgidentity): in the report and every journal's start entry.
        self.org = org
        # Inert unless the command line installed it for the process (interrupts.PROCESS).
        self.interrupts = interrupts or Interrupts()

        def pause(seconds: float) -> None:
            # The writers' and pollers' pauses are safe points: nothing of this worker is in flight then.
            self.interrupts.check()
            sleep(seconds)

        self._sleep = pause
        self._clock = clock
        self.client = client
        self.settings = settings
        identity = settings.worker_id or default_identity(settings.journal_dir)
        self.leases = Leases(client, identity, settings.lease_timeout_s)
        self.include_completed = include_completed
        # Whether the read-only readiness section follows the clean-up: its calls are in the estimate only then.
        self.readiness_after = readiness_after
        self._progress = progress
        self._reading_progress = reading_progress

    # Built on each use from the current collaborators: `leases` may be replaced (tests, a second identity).
    def _preparer(self) -> Preparer:
        return Preparer(
            self.client,
            self.settings,
            self.leases,
            include_completed=self.include_completed,
            readiness_after=self.readiness_after,
            clock=self._clock,
            progress=self._reading_progress,
            sleep=self._sleep,
        )

    def _cleaner(self) -> RunCleaner:
        phases = PhaseRunner(
            self.client, self.settings, self.leases, self.interrupts, sleep=self._sleep, progress=self._progress
        )
        return RunCleaner(
            self.client,
            self.settings,
            self.leases,
            self.interrupts,
            self._preparer(),
            phases,
            include_completed=self.include_completed,
            org=self.org,
        )

    def readiness(self) -> OrgReadiness:
        """Describe the Billing objects once; raises if the org lacks what the clean-up needs."""
        return self._preparer().readiness()

    def prepare(self, raw_run_ids: Sequence[str], *, readiness: OrgReadiness | None = None) -> Prepared:
        """Preflight, read and plan every run; read-only. Raises before anything is written."""
        return self._preparer().prepare(raw_run_ids, readiness=readiness)

    def report(self, mode: str, prepared: Prepared, outcomes: list[RunOutcome]) -> Report:
        usage = self.client.usage
        return Report(
            mode=mode,
            runs=outcomes,
            api_calls=usage.calls,
            api_usage={"used": usage.used, "max": usage.max},
            estimated_calls=prepared.estimated_calls,
            budget=prepared.budget,
            org=self.org,
        )

    def outcome_of(self, plan: RunPlan, status: RunResult) -> RunOutcome:
        return outcome_for(plan, status)

    def preview(self, prepared: Prepared) -> Report:
        return self.report("plan", prepared, [outcome_for(p, RunResult.PLANNED) for p in prepared.plans])

    def apply(self, prepared: Prepared) -> Report:
        return self.report("run", prepared, self.clean_all(prepared))

    def clean_all(self, prepared: Prepared) -> list[RunOutcome]:
        """Clean each planned run in turn. A run that cannot progress is reported and the next one tried; only
        a stop that concerns every run (daily limit, reserve, authentication, a signal) leaves the rest
        not started."""
        self.client.keep_reserve(self.settings.api_reserve)
        outcomes: list[RunOutcome] = []
        halted: str | None = None
        cleaner = self._cleaner()
        with self.interrupts.deferred():
            for plan in prepared.plans:
                if halted is None and self.interrupts.received:
                    halted = f"{self.interrupts.received} received"
                if halted is not None:
                    outcomes.append(self.not_started(plan, halted))
                    continue
                planned_at = prepared.planned_at.get(plan.run.id) or self._clock()
                outcome = outcome_of_result(cleaner.clean(plan, planned_at))
                outcomes.append(outcome)
                if outcome.ends_invocation:
                    halted = f"run {outcome.id} {outcome.message or outcome.status.value}"
        return outcomes

    def not_started(self, plan: RunPlan, reason: str) -> RunOutcome:
        """A run left alone because an earlier stop ended the invocation; running again picks it up."""
        outcome = outcome_for(plan, RunResult.NOT_STARTED)
        outcome.exit_code = ExitCode.STOPPED
        outcome.message = f"not started: {reason}"
        return outcome
