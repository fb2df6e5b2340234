"""Journal entries read back, parsed into frozen models where the code acts on them: a record's pending
write or its outcome, and the notes that follow a Bulk API job. `journal.read_entries` checks the file; this
module gives the entries their shape, so no raw JSON travels into undo, resume or the recount."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ConfigDict, Field

from sfcleanup.changes import Change, Values
from sfcleanup.outcomes import RowOutcome

JOB_NOTE = "bulk.job"


class RecordEntry(BaseModel):
    """A `pending` or `outcome` entry: one record's write, and for an outcome what the org answered."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    type: str
    invocation: str
    phase: str
    batch: str
    sobject: str = Field(alias="object")
    id: str
    group: str | None = None
    before: Values
    after: Values
    outcome: RowOutcome | None = None
    code: str | None = None
    message: str | None = None

    def change(self) -> Change:
        return Change(self.sobject, self.id, self.group or self.id, self.before, self.after)


class JobNote(BaseModel):
    """A `bulk.job` note: a Bulk API job created (with what it carries), or a later state of it."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)
    job: str
    state: str
    phase: str | None = None
    batch: str | None = None
    sobject: str | None = Field(None, alias="object")


def records(entries: Iterable[dict[str, object]], *, kind: str | None = None) -> Iterator[RecordEntry]:
    """The pending and outcome entries (or only those of `kind`), parsed."""
    for entry in entries:
        if entry.get("type") in ("pending", "outcome") and kind in (None, entry.get("type")):
            yield RecordEntry.model_validate(entry)


def job_notes(entries: Iterable[dict[str, object]]) -> Iterator[JobNote]:
    for entry in entries:
        if entry.get("type") == "note" and entry.get("event") == JOB_NOTE:
            yield JobNote.model_validate(entry)
