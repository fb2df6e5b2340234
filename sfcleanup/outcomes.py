"""What became of the records a clean-up wrote or held back: the words the writers, the journal, the report,
the Error Logs and undo share. Plain frozen values; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from sfcleanup.changes import Change


class RowOutcome(StrEnum):
    """One record's answer from the org, as journaled."""

    UPDATED = "updated"
    # Found applied when read back after the answer to its write was lost.
    CONFIRMED = "confirmed"
    FAILED = "failed"
    # Could not be locked: re-queued and retried later in the phase.
    LOCKED = "locked"

    @property
    def applied(self) -> bool:
        return self in (RowOutcome.UPDATED, RowOutcome.CONFIRMED)


@dataclass(frozen=True)
class Failure:
    """A record the clean-up could not bring to its target, with the org's error code."""

    id: str
    sobject: str
    code: str
    message: str


@dataclass(frozen=True)
class Held:
    """A record held back, so it is not released while something that billed it is still billable."""

    id: str
    sobject: str
    # The record it waits for directly.
    waits_for: str
    reason: str


@dataclass(frozen=True, slots=True)
class RowResult:
    """One record's normalised answer, whichever writer sent it."""

    change: Change
    outcome: RowOutcome
    code: str | None = None
    message: str | None = None

    def failure(self) -> Failure:
        return Failure(self.change.id, self.change.sobject, self.code or "UNKNOWN", self.message or "")


@dataclass(frozen=True)
class JobFailure:
    """A Bulk API job that did not end JobComplete: kept apart from its rows' failures, which are retried or
    reported one by one."""

    job: str
    state: str
    error: str | None


@dataclass
class PhaseResult:
    """What one writer did for one phase."""

    updated: int = 0
    failures: list[Failure] = field(default_factory=list)
    job_failures: list[JobFailure] = field(default_factory=list)

    def merge(self, more: PhaseResult) -> None:
        self.updated += more.updated
        self.failures += more.failures
        self.job_failures += more.job_failures
