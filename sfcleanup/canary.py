"""The canary batch: each phase first writes a few records, reads them back and compares what the org holds with
what was sent, before it sends the rest.

A trigger, a flow or a validation rule that rewrites the values (or a field that silently does not stick) answers
"success" to every write; without this step a clean-up would only learn of it from `verify`, after rewriting every
record of the run. The read-back travels in the canary's own write call (a query after the writes), so the canary
costs a phase at most one call: the one that could otherwise have carried its records with the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice

from sfcleanup.billing import Rule
from sfcleanup.changes import Change, ChangeSet, Values, Without
from sfcleanup.errors import StopRun
from sfcleanup.journal import Journal
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.read import current_values


@dataclass(frozen=True)
class Mismatch:
    """A field of a canary record whose stored value is not the one sent."""

    sobject: str
    id: str
    field: str
    sent: str | None
    stored: str | None

    def describe(self) -> str:
        return f"{self.sobject} {self.id} {self.field}: sent {self.sent!r}, the org holds {self.stored!r}"


class CanaryMismatch(StopRun):
    """The org does not hold what the canary batch sent: something in the org rewrites it. Every run would meet
    the same automation, so the invocation ends."""

    ends_invocation = True


def split(changes: ChangeSet, size: int) -> tuple[list[Change], ChangeSet]:
    """The first `size` changes (in lock-point order), and the rest of the phase."""
    canary = list(islice(iter(changes), size))
    return canary, Without(changes, [c.id for c in canary])


def compare(
    client: SalesforceClient,
    rule: Rule,
    canary: Sequence[Change],
    failed: Collection[str],
    read_back: Mapping[str, Values | None],
) -> list[Mismatch]:
    """List every field of the canary records that were written (not those that failed) the org does not hold as
    sent. A record the org no longer shows is a mismatch of its own.

    `read_back` holds what the write calls themselves read after writing (`CompositeWriter.apply_and_read_back`);
    only a record it lacks (confirmed by reading after a lost answer, or its call's query did not answer) is read
    here, with a query of its own."""
    written = [c for c in canary if c.id not in failed]
    if not written:
        return []
    stored = dict(read_back)
    unread = [c.id for c in written if c.id not in stored]
    if unread:
        stored.update(current_values(client, rule, unread))
    mismatches = []
    for change in written:
        row = stored.get(change.id)
        for name, sent in change.after.items():
            held = row.get(name) if row is not None else "(record not found)"
            if held != sent:
                mismatches.append(Mismatch(change.sobject, change.id, name, sent, None if held is None else str(held)))
    return mismatches


def stop_on_mismatch(journal: Journal, phase: str, mismatches: Sequence[Mismatch]) -> None:
    """Journal every mismatch and stop the run before the rest of the phase is sent (exit 3)."""
    if not mismatches:
        return
    for mismatch in mismatches:
        journal.note(
            "canary.mismatch",
            phase=phase,
            object=mismatch.sobject,
            id=mismatch.id,
            field=mismatch.field,
            sent=mismatch.sent,
            stored=mismatch.stored,
        )
    more = f" (and {len(mismatches) - 1} more in the journal)" if len(mismatches) > 1 else ""
    raise CanaryMismatch(
        f"canary batch: {mismatches[0].describe()}{more}; a trigger, flow or validation rule in the org rewrites "
        "what the clean-up writes, so the rest of the phase was not sent: find the automation, then run again"
    )
