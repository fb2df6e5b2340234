"""The journal's compact record lines (format 2), and their expansion into one entry per record.

Format 1 wrote a line per record for `pending` and again for `outcome`, each repeating the run, the
invocation, the time, the phase, the batch, the object and every field name: about 1 KB per record. Format 2
writes one `pending_rows` line per batch and object, and one `outcome_rows` line per answer, with the field
names once and each record as a row:

- pending row: `[id, group or null when it is the id, before, after]`, where before and after are lists in
  the order of the line's `fields` (or objects, for a record whose fields differ);
- outcome row: `[id, outcome, code, message]`, plus `group, before, after` when they are not those of the
  record's pending row in the same invocation and batch (a Bulk API job adopted from an earlier invocation).

Nothing an audit or `undo` reads is dropped: `expand` turns both formats into the same per-record entries
(format 1's shape), so every reader sees one shape whatever wrote the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from sfcleanup.changes import Change, Values
from sfcleanup.outcomes import RowResult

FORMAT = 2
PENDING_ROWS = "pending_rows"
OUTCOME_ROWS = "outcome_rows"
_HEADER = ("run_id", "invocation", "at", "phase", "batch", "object")

Key = tuple[str, str, str, str]  # invocation, batch, object, record id


class JournalError(ValueError):
    """A journal that cannot be trusted as it is; the message says what is wrong and what to do."""


def fields_of(changes: Sequence[Change]) -> list[str]:
    """The field names of a batch's rows, in the order of the first record's before values."""
    return list(changes[0].before) if changes else []


def _pack(values: Values, fields: list[str]) -> list[str | None] | Values:
    return [values[name] for name in fields] if list(values) == fields else dict(values)


def unpack(packed: object, fields: list[str]) -> Values:
    if isinstance(packed, list) and len(packed) == len(fields):
        return dict(zip(fields, packed))  # noqa: B905 (lengths compared above)
    if isinstance(packed, dict):
        return {str(k): None if v is None else str(v) for k, v in packed.items()}
    raise JournalError("a record row does not match its line's fields")


def pending_row(change: Change, fields: list[str]) -> list[object]:
    group = None if change.group == change.id else change.group
    return [change.id, group, _pack(change.before, fields), _pack(change.after, fields)]


def outcome_row(result: RowResult, fields: list[str], sent: Change | None) -> list[object]:
    """The answer; the values too unless they are those this invocation journaled as pending for the batch."""
    row: list[object] = [result.change.id, result.outcome.value, result.code, result.message]
    if sent != result.change:
        row += pending_row(result.change, fields)[1:]
    return row


def by_object(changes: Iterable[Change]) -> dict[str, list[Change]]:
    grouped: dict[str, list[Change]] = {}
    for change in changes:
        grouped.setdefault(change.sobject, []).append(change)
    return grouped


def expand(entries: Iterable[dict[str, object]]) -> Iterator[dict[str, object]]:
    """Every entry as format 1 shaped it: a row line becomes one `pending` or `outcome` entry per record."""
    sent: dict[Key, dict[str, object]] = {}
    for entry in entries:
        kind = entry.get("type")
        if kind not in (PENDING_ROWS, OUTCOME_ROWS):
            yield entry
            continue
        header = {name: entry.get(name) for name in _HEADER}
        fields = entry.get("fields")
        rows = entry.get("rows")
        if not isinstance(fields, list) or not isinstance(rows, list):
            raise JournalError("a record line has no fields or rows")
        names = [str(name) for name in fields]
        for row in rows:
            if not isinstance(row, list) or not row:
                raise JournalError("a record row is not a list")
            key = (str(header["invocation"]), str(header["batch"]), str(header["object"]), str(row[0]))
            if kind == PENDING_ROWS:
                yield _pending(header, row, names, sent, key)
            else:
                yield _outcome(header, row, names, sent, key)


def _values(row: list[object], names: list[str]) -> dict[str, object]:
    record_id, group, before, after = row
    before_values, after_values = unpack(before, names), unpack(after, names)
    return {"id": record_id, "group": group or record_id, "before": before_values, "after": after_values}


def _pending(
    header: dict[str, object], row: list[object], names: list[str], sent: dict[Key, dict[str, object]], key: Key
) -> dict[str, object]:
    if len(row) != 4:
        raise JournalError("a pending row does not have four values")
    entry = {**header, "type": "pending", **_values(row, names)}
    sent[key] = entry
    return entry


def _outcome(
    header: dict[str, object], row: list[object], names: list[str], sent: dict[Key, dict[str, object]], key: Key
) -> dict[str, object]:
    # The writer forgets what it sent once answered, so an answer without values names an unanswered row.
    pending = sent.pop(key, None)
    if len(row) == 7:
        values = _values([row[0], *row[4:]], names)
    elif len(row) == 4 and pending is not None:
        values = {name: pending[name] for name in ("id", "group", "before", "after")}
    else:
        raise JournalError(f"the outcome of {row[0]} names no values and follows no pending row of its batch")
    return {**header, "type": "outcome", **values, "outcome": row[1], "code": row[2], "message": row[3]}
