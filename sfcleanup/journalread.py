"""A journal read as a stream: its lines checked one at a time, its record lines turned into one compact
`Record` per record, so a reader that summarises a run of millions of records holds what it keeps of them,
never the journal.

The checks are those of `journal.read_entries`, with the same messages and precedence: a damaged or torn line
anywhere is reported before an empty journal, a damaged record line, or entries of several runs. A stream
therefore raises at its end for what only the end shows; whoever reads one publishes nothing before that.
Each record's shape (the types `entries.RecordEntry` demands) is checked here too, directly rather than by a
model per record, and reported last, where parsing the entries afterwards would have found it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from pydantic import ValidationError

from sfcleanup.changes import Values
from sfcleanup.entries import RecordEntry
from sfcleanup.journalformat import OUTCOME_ROWS, PENDING_ROWS, JournalError, unpack
from sfcleanup.outcomes import RowOutcome
from sfcleanup.scratch import Sent, Unanswered

REQUIRED_KEYS = frozenset({"type", "run_id", "invocation", "at"})
_OUTCOMES = {outcome.value: outcome for outcome in RowOutcome}
_TEXT = frozenset({str, type(None)})
_HEADER = ("invocation", "phase", "batch", "object")


class Record(NamedTuple):
    """A `pending` or `outcome` entry with the fields and types of `entries.RecordEntry`."""

    type: str
    invocation: str
    phase: str
    batch: str
    sobject: str
    id: str
    group: str | None
    before: Values
    after: Values
    outcome: RowOutcome | None = None
    code: str | None = None
    message: str | None = None


Entry = dict[str, object] | Record


def lines(path: Path, *, allow_truncated: bool = False) -> Iterator[dict[str, object]]:
    """Each line's entry, checked: JSON, and an sfcleanup entry. A torn last line is refused unless allowed,
    because a journal that ends early may not record the last batch's outcome."""
    try:
        with path.open(encoding="utf-8", newline="\n") as handle:
            # Split as str.splitlines splits the whole text, so that line numbers in messages stay the same.
            texts = (text for chunk in handle for text in chunk.splitlines())
            number, text = 1, next(texts, None)
            while text is not None:
                following = next(texts, None)
                try:
                    entry = json.loads(text)
                except json.JSONDecodeError:
                    if following is None and allow_truncated:
                        return
                    where = "is truncated at its last line" if following is None else f"has a damaged line {number}"
                    hint = "; pass --allow-truncated to use what it records" if following is None else ""
                    raise JournalError(f"journal {path} {where}{hint}") from None
                if not isinstance(entry, dict) or not entry.keys() >= REQUIRED_KEYS:
                    raise JournalError(f"{path} line {number} is not an sfcleanup journal entry")
                yield entry
                number, text = number + 1, following
    except OSError as exc:
        raise JournalError(f"journal {path} cannot be read: {exc.strerror}") from None


class Stream:
    """Every entry of a journal, checked, with one `Record` per record whatever the format wrote; iterate
    once. `run_id` is the journal's run once the stream is exhausted."""

    def __init__(self, path: Path, *, allow_truncated: bool = False) -> None:
        self.path = path
        self.allow_truncated = allow_truncated
        self.run_id = ""

    def __iter__(self) -> Iterator[Entry]:
        rows = _Rows()
        try:
            yield from self._read(rows)
        finally:
            rows.close()

    def _read(self, rows: _Rows) -> Iterator[Entry]:
        runs: dict[str, None] = {}
        damaged: str | None = None  # the first row that does not fit its line
        misshapen: str | None = None  # the first value of the wrong type
        read = 0
        for entry in lines(self.path, allow_truncated=self.allow_truncated):
            read += 1
            if damaged is not None:
                continue  # a damaged line further on is still the first thing to report
            try:
                items, problem = rows.expand(entry)
            except JournalError as exc:
                damaged = str(exc)
                continue
            misshapen = misshapen or problem
            if items:
                runs.setdefault(str(entry["run_id"]))
                if misshapen is None:
                    yield from items
        if not read:
            raise JournalError(f"journal {self.path} is empty")
        if damaged is not None:
            raise JournalError(f"journal {self.path} has a damaged record line: {damaged}")
        if len(runs) > 1:
            raise JournalError(f"journal {self.path} mixes entries of several runs ({', '.join(sorted(runs))})")
        if misshapen is not None:
            raise JournalError(f"journal {self.path} has a damaged record line: {misshapen}")
        self.run_id = next(iter(runs), "")


class _Rows:
    """Record lines into records. A batch's pending rows are kept until their outcome: an outcome row then
    names only the answer (`journalformat`)."""

    def __init__(self) -> None:
        self._sent = Unanswered()
        self._batches: dict[tuple[str, str, str], int] = {}

    def close(self) -> None:
        self._sent.close()

    def expand(self, entry: dict[str, object]) -> tuple[list[Entry], str | None]:
        """The line's entries, and the first value in them of the wrong type; raises for a row that does not
        fit its line."""
        kind = entry.get("type")
        if kind in ("pending", "outcome"):
            return _format_1(entry)
        if kind not in (PENDING_ROWS, OUTCOME_ROWS):
            return [entry], None
        fields, rows = entry.get("fields"), entry.get("rows")
        if not isinstance(fields, list) or not isinstance(rows, list):
            raise JournalError("a record line has no fields or rows")
        names = [str(name) for name in fields]
        header = [entry.get(name) for name in _HEADER]
        wrong = [name for name, value in zip(_HEADER, header, strict=True) if type(value) is not str]
        problem = f"the {wrong[0]} of a record line is not text" if wrong else None
        invocation, phase, batch, sobject = (str(value) for value in header)
        number = self._batches.setdefault((invocation, batch, sobject), len(self._batches))
        sent: dict[str, Sent] = {}
        if kind == OUTCOME_ROWS:
            # The writer forgets what it sent once answered, so an answer without values names an unanswered row.
            sent = self._sent.take(number, (str(row[0]) for row in rows if isinstance(row, list) and row))
        out: list[Entry] = []
        for row in rows:
            if not isinstance(row, list) or not row:
                raise JournalError("a record row is not a list")
            if kind == PENDING_ROWS:
                if len(row) != 4:
                    raise JournalError("a pending row does not have four values")
                values = _values(row, names)
                self._sent.put(number, str(row[0]), values)
                record = Record("pending", invocation, phase, batch, sobject, *values)  # type: ignore[arg-type]
            else:
                record = _outcome(row, names, sent.pop(str(row[0]), None), (invocation, phase, batch, sobject))
            problem = problem or _shape(record, row)
            out.append(record)
        return out, problem


def _outcome(row: list[object], names: list[str], sent: Sent | None, header: tuple[str, str, str, str]) -> Record:
    if len(row) == 7:
        values = _values([row[0], *row[4:]], names)
    elif len(row) == 4 and sent is not None:
        values = sent
    else:
        raise JournalError(f"the outcome of {row[0]} names no values and follows no pending row of its batch")
    outcome, code, message = row[1:4]
    known = _OUTCOMES.get(outcome) if type(outcome) is str else None
    return Record("outcome", *header, *values, known, code, message)  # type: ignore[arg-type]


def _values(row: list[object], names: list[str]) -> Sent:
    record_id, group, before, after = row
    return record_id, group or record_id, unpack(before, names), unpack(after, names)


def _texts(packed: object) -> bool:
    """Packed values are text or null (values packed as an object are made text when unpacked)."""
    return type(packed) is not list or _TEXT.issuperset(map(type, packed))


def _text(value: object) -> bool:
    return value is None or type(value) is str


def _shape(record: Record, row: list[object]) -> str | None:
    """What `entries.RecordEntry` would refuse in a record made from a compact row."""
    if type(record.id) is not str or not _text(record.group):
        return f"the id or group of {record.id} is not text"
    if record.type == "outcome" and (record.outcome is None) != (row[1] is None):
        return f"the outcome of {record.id} is not one a writer journals"
    if not (_text(record.code) and _text(record.message)):
        return f"the error of {record.id} is not text"
    # An answer of four values took its values from a pending row, already checked.
    if (record.type == "pending" or len(row) == 7) and not (_texts(row[-2]) and _texts(row[-1])):
        return f"a value of {record.id} is neither text nor null"
    return None


def _format_1(entry: dict[str, object]) -> tuple[list[Entry], str | None]:
    """A line per record, as format 1 wrote it: parsed by the model, as before."""
    try:
        parsed = RecordEntry.model_validate(entry)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return [entry], f"{where} of a {entry.get('type')} entry: {first['msg']}"
    record = Record(
        parsed.type,
        parsed.invocation,
        parsed.phase,
        parsed.batch,
        parsed.sobject,
        parsed.id,
        parsed.group,
        parsed.before,
        parsed.after,
        parsed.outcome,
        parsed.code,
        parsed.message,
    )
    return [record], None
