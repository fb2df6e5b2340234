"""Preparing a clean-up, read-only: preflight, read and plan each run, refuse a run another worker is cleaning,
and cost the whole in API calls against the day's allowance. Nothing here writes."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from sfcleanup import preflight
from sfcleanup.billing import CleanUpStatus
from sfcleanup.clock import Clock, utc_now
from sfcleanup.config import Settings
from sfcleanup.lease import LeaseHeld, Leases
from sfcleanup.models import InvoiceRun
from sfcleanup.phases import ProgressFactory
from sfcleanup.plan import RunPlan
from sfcleanup.preflight import OrgReadiness
from sfcleanup.salesforce.bulk import Polling
from sfcleanup.salesforce.bulkquery import BulkQueries
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.read import plan_streaming

log = structlog.get_logger("sfcleanup.worker")


@dataclass
class Prepared:
    readiness: OrgReadiness
    plans: list[RunPlan]
    estimated_calls: int
    budget: dict[str, int] = field(default_factory=dict)
    # When each run was planned: a lease another worker held since then makes its plan stale.
    planned_at: dict[str, datetime] = field(default_factory=dict)

    @property
    def total_changes(self) -> int:
        """Records the plans change, over every run: what a cap (`max_changes`) is compared with."""
        return sum(p.total for p in self.plans)


class Preparer:
    def __init__(
        self,
        client: SalesforceClient,
        settings: Settings,
        leases: Leases,
        *,
        include_completed: bool = False,
        readiness_after: bool = True,
        clock: Clock = utc_now,
        progress: ProgressFactory | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._progress = progress
        self._client = client
        self._settings = settings
        self._leases = leases
        self._include_completed = include_completed
        self._readiness_after = readiness_after
        self._clock = clock
        # Large objects are read by Bulk API 2.0 query jobs, polled like ingest jobs under the same settings.
        polling = Polling.of(settings.write, sleep)
        self._bulk = BulkQueries(client, polling)

    def readiness(self) -> OrgReadiness:
        """Describe the Billing objects once; raises if the org lacks what the clean-up needs."""
        readiness = preflight.check_org(self._client)
        preflight.require_ready(readiness)
        return readiness

    def prepare(self, raw_run_ids: Sequence[str], *, readiness: OrgReadiness | None = None) -> Prepared:
        """Preflight, read and plan every run; read-only. Raises before anything is written."""
        readiness = readiness or self.readiness()
        run_ids = preflight.parse_run_ids(raw_run_ids, readiness.run_key_prefix)
        runs, limits = preflight.check_runs(self._client, run_ids, readiness, include_completed=self._include_completed)
        for run in runs:
            self.check_lease(run)
        planned_at: dict[str, datetime] = {}
        plans = []
        for run in runs:
            planned_at[run.id] = self._clock()
            plans.append(self.plan(run))
        write = self._settings.write
        estimate = sum(preflight.estimate_run(p, write, readiness_after=self._readiness_after) for p in plans)
        budget = preflight.check_budget(limits, estimate, self._settings.api_reserve)
        return Prepared(readiness, plans, estimate, budget, planned_at)

    def plan(self, run: InvoiceRun) -> RunPlan:
        shown = self._progress(f"reading {run.id}", None) if self._progress else None
        plan, read = plan_streaming(self._client, run, bulk=self._bulk, on_page=shown or (lambda _: None))
        log.info("plan.ready", run=run.id, records=read, changes=plan.total)
        return plan

    def fresh(self, plan: RunPlan, planned_at: datetime) -> RunPlan:
        """The plan again if another worker held the run's lease since it was made (it may have cleaned it)."""
        # A minute's margin covers the difference between this machine's clock and the org's.
        if not self._leases.touched_by_others_since(planned_at - timedelta(minutes=1)):
            return plan
        log.info("plan.stale", reason="another worker held the run since it was planned")
        current = preflight.read_runs(self._client, [plan.run.id]).get(plan.run.id, plan.run)
        return self.plan(current)

    def check_lease(self, run: InvoiceRun) -> None:
        """Refuse, before anything is written, a run another live worker is cleaning."""
        if run.cleanup_status == CleanUpStatus.STARTED:
            holder = self._leases.holder_other_than_me(run.id)
            if holder is not None:
                raise LeaseHeld(f"invoice run {run.id}: {self._leases.refusal(holder)}")
