"""Sweep: find every run that needs clean-up and clean each in turn, with the same safety as `run`.

A run needs clean-up when it ended in a failed state (read from the org's status values) and its CleanUp
Status is not Completed. One run that cannot be cleaned now (another worker holds it, it started again) does
not stop the others; the daily API limit does.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from sfcleanup import billing, queries
from sfcleanup.errors import ConfigError, ExitCode, SfCleanupError, StopRun
from sfcleanup.lease import LeaseHeld
from sfcleanup.models import InvoiceRun
from sfcleanup.preflight import OrgReadiness
from sfcleanup.report import Report, RunOutcome, RunResult
from sfcleanup.worker import Prepared, Worker

log = structlog.get_logger("sfcleanup.sweep")
MAX_RUNS_LIMIT = 2000


@dataclass(frozen=True)
class SweepOptions:
    since_days: int | None = None
    max_runs: int = 50
    dry_run: bool = False

    def __post_init__(self) -> None:
        if self.since_days is not None and not 1 <= self.since_days <= 3650:
            raise ConfigError(f"--since {self.since_days}: give a number of days from 1 to 3650")
        if not 1 <= self.max_runs <= MAX_RUNS_LIMIT:
            raise ConfigError(f"--max-runs {self.max_runs}: give a number from 1 to {MAX_RUNS_LIMIT}")


def find_runs(worker: Worker, readiness: OrgReadiness, options: SweepOptions) -> list[InvoiceRun]:
    states = sorted(billing.FAILED_RUN_STATES & (readiness.run_status_values or billing.FAILED_RUN_STATES))
    if options.since_days is None:
        soql = queries.render("sweep_runs", states=states, limit=options.max_runs)
    else:
        soql = queries.render("sweep_runs_since", states=states, days=options.since_days, limit=options.max_runs)
    return [InvoiceRun.model_validate(r) for r in worker.client.query_all(soql)]


def _skipped(run: InvoiceRun, exc: SfCleanupError) -> RunOutcome:
    log.warning("sweep.skipped", run=run.id, reason=str(exc))
    return RunOutcome(
        id=run.id,
        name=run.name,
        run_status=run.status,
        status=RunResult.NOT_STARTED,
        objects={},
        transitions={},
        cleanup_status=run.cleanup_status,
        message=f"skipped: {exc}",
        exit_code=ExitCode.STOPPED,
        stopped_by=type(exc).__name__,
    )


# Stops that concern one run only: the sweep goes on with the next run.
PER_RUN_STOPS = frozenset({LeaseHeld.__name__})


def sweep(worker: Worker, options: SweepOptions) -> Report:
    readiness = worker.readiness()
    runs = find_runs(worker, readiness, options)
    log.info("sweep.found", runs=len(runs), dry_run=options.dry_run)
    outcomes: list[RunOutcome] = []
    total = Prepared(readiness, [], 0)
    for index, run in enumerate(runs):
        try:
            prepared = worker.prepare([run.id], readiness=readiness)
        except (LeaseHeld, ConfigError) as exc:
            outcomes.append(_skipped(run, exc))
            continue
        except StopRun as exc:
            # The daily limit, the budget reserve, authentication: nothing else will succeed now.
            outcomes += [_skipped(r, exc) for r in runs[index:]]
            break
        total.estimated_calls += prepared.estimated_calls
        total.budget = prepared.budget
        if options.dry_run:
            outcomes += [worker.outcome_of(p, RunResult.PLANNED) for p in prepared.plans]
            continue
        cleaned = worker.clean_all(prepared)
        outcomes += cleaned
        halted = [o for o in cleaned if o.status is RunResult.STOPPED and o.stopped_by not in PER_RUN_STOPS]
        if halted:
            reason = StopRun(f"the sweep stopped at run {halted[0].id}")
            outcomes += [_skipped(r, reason) for r in runs[index + 1 :]]
            break
    return worker.report("sweep-dry-run" if options.dry_run else "sweep", total, outcomes)
