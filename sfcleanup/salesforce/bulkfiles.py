"""The files of a Bulk API 2.0 ingest job: the CSV that goes up, in lock-point order, and the result files that
come back, read in slices so memory stays flat."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from sfcleanup.billing import Rule
from sfcleanup.changes import Change
from sfcleanup.salesforce.bulk import RESULT_KINDS, JobState, read_rows

# CSV: an empty cell leaves a field as it is; this value sets it to null.
NULL = "#N/A"
CHUNK = 2000
R = TypeVar("R")


def _cell(value: str | None) -> str:
    return NULL if value is None else value


def write_csv(path: Path, rule: Rule, changes: Iterable[Change]) -> int:
    """Id plus the rule's fields, one row per change, in the order given (lock point by lock point)."""
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["Id", *rule.fields])
        for change in changes:
            writer.writerow([change.id, *(_cell(change.after[f]) for f in rule.fields)])
            count += 1
    return count


def groups_of(changes: Iterator[Change]) -> Iterator[list[Change]]:
    """Consecutive runs of one lock point (the changes come in lock-point order)."""
    for _, members in itertools.groupby(changes, key=lambda c: c.group):
        yield list(members)


def chunks(rows: Iterator[R], size: int = CHUNK) -> Iterator[list[R]]:
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


def result_kinds(final: JobState, records: int | None) -> list[str]:
    """The result files worth a call: a complete job that processed every row it was given has no unprocessed
    rows, and one that counts no failed row has no failed results."""
    complete = final.state == "JobComplete" and records is not None and final.processed >= records
    return [
        kind
        for kind in RESULT_KINDS
        if not complete or kind == "successfulResults" or (kind == "failedResults" and final.failed > 0)
    ]


def rows_of(files: dict[str, Path], kind: str) -> Iterator[dict[str, str]]:
    return read_rows(files[kind]) if kind in files else iter(())


def column_of(files: dict[str, Path], kind: str, column: str) -> Iterator[str]:
    """One column of a result file, row by row: what `rows_of` gives as row[column], read without a dict a row
    (a blank line is no row; a short row's missing cell is empty)."""
    if kind not in files:
        return
    with files[kind].open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None:
            return
        index = header.index(column) if column in header else None
        for cells in rows:
            if not cells:
                continue
            if index is None:
                raise KeyError(column)
            yield cells[index] if index < len(cells) else ""
