"""Sweep: find every run that needs clean-up and clean each in turn, with the same safety as `run`.

A run needs clean-up when it ended in a failed state (read from the org's status values) and its CleanUp
Status is not Completed. One run that cannot be cleaned now (another worker holds it, it started again, a
fault on it outlasted the retries) does not stop the others; what stops every run (the daily API limit, the
reserve, authentication, a signal) does. A person at a terminal confirms the runs shown (`preview`), and
exactly those are applied (`apply_preview`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import structlog

from sfcleanup import billing, queries
from sfcleanup.errors import ConfigError, ExitCode, SfCleanupError, StopRun
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


def _not_started(run: InvoiceRun, message: str, stopped_by: str | None = None) -> RunOutcome:
    log.warning("sweep.skipped", run=run.id, reason=message)
    return RunOutcome(
        id=run.id,
        name=run.name,
        run_status=run.status,
        status=RunResult.NOT_STARTED,
        objects={},
        transitions={},
        cleanup_status=run.cleanup_status,
        message=message,
        exit_code=ExitCode.STOPPED,
        stopped_by=stopped_by,
    )


def _prepare_one(worker: Worker, run: InvoiceRun, readiness: OrgReadiness) -> Prepared | RunOutcome:
    """The run's plan, or why it cannot be cleaned now (another worker holds it, it started again, a fault
    on it outlasted the retries); raises only what stops every run (daily limit, reserve, authentication)."""
    try:
        return worker.prepare([run.id], readiness=readiness)
    except SfCleanupError as exc:
        if exc.ends_invocation:
            raise
        return _not_started(run, f"skipped: {exc}", type(exc).__name__)


Step = Callable[[InvoiceRun], Prepared | RunOutcome]


@dataclass
class SweepPreview:
    """The runs a sweep found and planned, shown to a person; applying it applies exactly these plans."""

    runs: list[InvoiceRun]
    steps: dict[str, Prepared | RunOutcome]
    report: Report


def sweep(worker: Worker, options: SweepOptions) -> Report:
    """Find the runs that need clean-up and clean each in turn (plan it, apply it), or only plan them."""
    # Deferred from here on, so that a signal after the runs are known still ends in a report of each of them.
    with worker.interrupts.deferred():
        readiness = worker.readiness()
        runs = find_runs(worker, readiness, options)
        log.info("sweep.found", runs=len(runs), dry_run=options.dry_run)
        return _each(
            worker, readiness, runs, lambda run: _prepare_one(worker, run, readiness), apply=not options.dry_run
        )


def preview(worker: Worker, options: SweepOptions) -> SweepPreview:
    """Find and plan the runs, writing nothing, and keep the plans for `apply_preview`."""
    steps: dict[str, Prepared | RunOutcome] = {}
    with worker.interrupts.deferred():
        readiness = worker.readiness()
        runs = find_runs(worker, readiness, options)
        log.info("sweep.found", runs=len(runs), dry_run=True)

        def step(run: InvoiceRun) -> Prepared | RunOutcome:
            steps[run.id] = _prepare_one(worker, run, readiness)
            return steps[run.id]

        return SweepPreview(runs, steps, _each(worker, readiness, runs, step, apply=False))


def apply_preview(worker: Worker, shown: SweepPreview) -> Report:
    """Clean exactly the runs a person saw and confirmed, with the plans they saw: the org is not asked
    again which runs need clean-up, so a run that failed since is left for the next sweep."""

    def step(run: InvoiceRun) -> Prepared | RunOutcome:
        return shown.steps.get(run.id) or _not_started(run, "not started: it was not planned in the preview")

    with worker.interrupts.deferred():
        return _each(worker, worker.readiness(), shown.runs, step, apply=True)


def _each(worker: Worker, readiness: OrgReadiness, runs: list[InvoiceRun], prepare: Step, *, apply: bool) -> Report:
    """Each run in turn. A run that cannot progress is reported and the next one tried; a stop that concerns
    every run (daily limit, reserve, authentication, a signal) leaves the rest not started."""
    outcomes: list[RunOutcome] = []
    total = Prepared(readiness, [], 0)
    halted: str | None = None
    for run in runs:
        if halted is None and worker.interrupts.received:
            halted = f"{worker.interrupts.received} received"
        if halted is not None:
            outcomes.append(_not_started(run, f"not started: {halted}"))
            continue
        try:
            with worker.interrupts.immediate():
                step = prepare(run)
        except KeyboardInterrupt:
            # A signal while reading and planning: nothing was being written, so it stopped at once.
            halted = f"{worker.interrupts.received or 'SIGINT'} received"
            outcomes.append(_not_started(run, f"not started: {halted}", "Interrupted"))
            continue
        except StopRun as exc:
            halted = str(exc)
            outcomes.append(_not_started(run, f"not started: {exc}", type(exc).__name__))
            continue
        if isinstance(step, RunOutcome):
            outcomes.append(step)
            continue
        total.estimated_calls += step.estimated_calls
        total.budget = step.budget
        if not apply:
            outcomes += [worker.outcome_of(p, RunResult.PLANNED) for p in step.plans]
            continue
        cleaned = worker.clean_all(step)
        outcomes += cleaned
        stop = next((o for o in cleaned if o.ends_invocation), None)
        if stop is not None:
            halted = f"the sweep stopped at run {stop.id}: {stop.message}"
    return worker.report("sweep" if apply else "sweep-dry-run", total, outcomes)
