"""What one run's clean-up did. The phases record it as they go, in a `Tally`, so a stop at any point leaves a
true account; `RunCleaner.clean` returns it as one frozen `CleanResult`, which the worker turns into the report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from sfcleanup.billing import RULE_BY_PHASE, Phase
from sfcleanup.drift import Drifted
from sfcleanup.errors import ExitCode
from sfcleanup.outcomes import Failure, Held
from sfcleanup.plan import RunPlan
from sfcleanup.report import RunResult, VerifyCount


@dataclass(frozen=True)
class Ending:
    """How a run's clean-up ended: its result, exit code and why."""

    status: RunResult
    exit_code: ExitCode = ExitCode.CLEAN
    message: str | None = None
    # The kind of stop (the error's class name): a busy run, a spent API limit, a signal...
    stopped_by: str | None = None
    # The stop concerns every run (daily limit, reserve, authentication, a signal): the rest are not started.
    ends_invocation: bool = False


@dataclass(frozen=True)
class ObjectTally:
    """One object's records in a run's clean-up. The field order is the journal's `end` entry's."""

    planned: int = 0
    updated: int = 0
    failed: int = 0
    # Not written: something it depends on (a line or invoice that billed it) did not reach its target.
    held: int = 0
    anomalies: int = 0


def unaccounted(verify: Mapping[str, VerifyCount]) -> dict[str, int]:
    """Per object, eligible records verification found beyond anomalies, failures and held records."""
    return {sobject: v.unaccounted for sobject, v in verify.items() if v.unaccounted}


@dataclass(frozen=True)
class CleanResult:
    """One run's clean-up, start to end: the plan it followed (re-read if another worker had the run
    meanwhile), what it wrote, held back and verified, and how it ended."""

    plan: RunPlan
    ending: Ending
    objects: Mapping[str, ObjectTally]
    run_status: str | None
    cleanup_status: str | None
    journal: str | None = None
    failures: tuple[Failure, ...] = ()
    held: tuple[Held, ...] = ()
    eligible_left: Mapping[str, int] = field(default_factory=dict)
    verify: Mapping[str, VerifyCount] = field(default_factory=dict)
    error_logs: int = 0
    # `run --plan`: planned records not written because they changed since the plan, and, per object, records
    # eligible now that the plan did not hold (left for the next plan).
    drifted: tuple[Drifted, ...] = ()
    new_since_plan: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Tally:
    """What the clean-up of one run has done so far: written by the phases as they go, and by the lifecycle
    from the journal after a stop (the journal is the record that survives a phase cut short)."""

    plan: RunPlan
    run_status: str | None
    cleanup_status: str | None
    journal: str | None = None
    # Per object: rows the org applied.
    updated: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    eligible_left: dict[str, int] = field(default_factory=dict)
    verify: dict[str, VerifyCount] = field(default_factory=dict)
    error_logs: int = 0
    drifted: list[Drifted] = field(default_factory=list)
    new_since_plan: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: RunPlan, journal: str | None = None) -> Tally:
        """Nothing done yet: the run as planned."""
        return cls(plan, plan.run.status, plan.run.cleanup_status, journal)

    def objects(self) -> dict[str, ObjectTally]:
        """Per object: planned, updated, failed, held and anomalies."""
        anomalies = self.plan.anomalies_by_object()
        failed = Counter(f.sobject for f in self.failures)
        held = Counter(h.sobject for h in self.held)
        out = {}
        for phase in Phase:
            sobject = RULE_BY_PHASE[phase].sobject
            out[sobject] = ObjectTally(
                planned=len(self.plan.changes[phase]),
                updated=self.updated.get(sobject, 0),
                failed=failed[sobject],
                held=held[sobject],
                anomalies=anomalies.get(sobject, 0),
            )
        return out

    @property
    def unaccounted(self) -> dict[str, int]:
        return unaccounted(self.verify)

    @property
    def unfinished(self) -> bool:
        """Records the clean-up planned and did not bring to their target: failed, held or drifted."""
        return bool(self.failures or self.held or self.drifted)

    def result(self, ending: Ending) -> CleanResult:
        return CleanResult(
            plan=self.plan,
            ending=ending,
            objects=self.objects(),
            run_status=self.run_status,
            cleanup_status=self.cleanup_status,
            journal=self.journal,
            failures=tuple(self.failures),
            held=tuple(self.held),
            eligible_left=dict(self.eligible_left),
            verify=dict(self.verify),
            error_logs=self.error_logs,
            drifted=tuple(self.drifted),
            new_since_plan=dict(self.new_since_plan),
        )
