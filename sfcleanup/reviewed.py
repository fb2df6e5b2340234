"""Applying a reviewed plan (`run --plan PLAN_FILE`): exactly the records of the file, through the same lifecycle
as any clean-up (lock, lease, canary, phases, verify, final status), with three differences:

- the plan is never made again: not when another worker held the run meanwhile, not when a Bulk API job is
  resumed; what changed since is found by re-reading the planned records instead (`drift`);
- just before writing, each planned record whose values are no longer the plan's before-values is skipped and
  reported `drifted`, and what depends on it is held, as behind a failed row;
- records eligible now that the plan did not hold are left for the next plan and counted (`new_since_plan`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sfcleanup import billing, planfile, preflight
from sfcleanup.billing import Phase
from sfcleanup.cleanresult import Tally
from sfcleanup.drift import find_drift, reread_calls
from sfcleanup.journal import Journal
from sfcleanup.models import InvoiceRun
from sfcleanup.phases import PhaseRunner
from sfcleanup.plan import RunPlan
from sfcleanup.planfile import PlanHeader
from sfcleanup.preparing import Prepared, Preparer
from sfcleanup.runclean import RunCleaner
from sfcleanup.worker import Worker

_LABELS = {billing.INVOICE_LINE: "line", billing.INVOICE: "invoice"}


class ReviewedPreparer(Preparer):
    """A Preparer whose plans are the reviewed ones: never made again."""

    reviewed: Mapping[str, RunPlan] = {}

    def plan(self, run: InvoiceRun) -> RunPlan:
        return self.reviewed[run.id]

    def fresh(self, plan: RunPlan, planned_at: datetime) -> RunPlan:
        return plan


class ReviewedPhaseRunner(PhaseRunner):
    """The phases, after the planned records were read again and those that drifted set aside."""

    reviewed = True

    def skipped(self, plan: RunPlan, journal: Journal, tally: Tally) -> Mapping[Phase, Mapping[str, str]]:
        skipped: dict[Phase, dict[str, str]] = {}
        for phase, records in find_drift(self._client, plan).items():
            for drifted in records.values():
                tally.drifted.append(drifted)
                journal.note("plan.drifted", object=drifted.sobject, id=drifted.id, reason=drifted.reason)
                label = _LABELS.get(drifted.sobject, drifted.sobject)
                skipped.setdefault(phase, {})[drifted.id] = f"{label} {drifted.id} drifted since the plan"
        return skipped


class ReviewedWorker(Worker):
    """The Worker, cleaning with the reviewed plans of one plan file."""

    reviewed: Mapping[str, RunPlan] = {}

    def _cleaner(self) -> RunCleaner:
        phases = ReviewedPhaseRunner(
            self.client, self.settings, self.leases, self.interrupts, sleep=self._sleep, progress=self._progress
        )
        preparer = ReviewedPreparer(
            self.client,
            self.settings,
            self.leases,
            include_completed=self.include_completed,
            clock=self._clock,
            sleep=self._sleep,
        )
        preparer.reviewed = self.reviewed
        return RunCleaner(
            self.client,
            self.settings,
            self.leases,
            self.interrupts,
            preparer,
            phases,
            include_completed=self.include_completed,
            org=self.org,
        )

    def prepare_reviewed(self, header: PlanHeader) -> Prepared:
        """Read-only: the org is ready, the plan's runs may still be cleaned and nobody else holds them; the plans
        are loaded from the file and costed (with their re-reading) against the day's allowance."""
        readiness = self.readiness()
        runs, limits = preflight.check_runs(
            self.client, list(header.run_ids), readiness, include_completed=self.include_completed
        )
        preparer = self._preparer()
        for run in runs:
            preparer.check_lease(run)
        plans = planfile.load_plans(header, {run.id: run for run in runs})
        self.reviewed = {plan.run.id: plan for plan in plans}
        write, after = self.settings.write, self.readiness_after
        estimate = sum(preflight.estimate_run(p, write, readiness_after=after) + reread_calls(p) for p in plans)
        budget = preflight.check_budget(limits, estimate, self.settings.api_reserve)
        now = self._clock()
        return Prepared(readiness, plans, estimate, budget, {plan.run.id: now for plan in plans})
