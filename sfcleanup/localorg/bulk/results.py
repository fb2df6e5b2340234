"""The result files of a Bulk API 2.0 ingest job: successfulResults, failedResults and unprocessedrecords."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from typing import IO

from sfcleanup.localorg.bulk.jobs import IngestJob
from sfcleanup.localorg.records import RowError


# --- result files ----------------------------------------------------------------------------------------------
class Results:
    """The job's three result files as Salesforce writes them: the sf__ columns, then the uploaded columns."""

    def __init__(self, job: IngestJob, header: list[str]) -> None:
        # Parallel batches write through one set of files.
        self.lock = threading.Lock()
        self._files = [job.result_path(name).open("w", encoding="utf-8", newline="") for name in RESULT_NAMES]
        delimiter, eol = job.delimiter, job.eol
        self._success, self._failed = (
            csv.writer(handle, delimiter=delimiter, lineterminator=eol, quoting=csv.QUOTE_ALL)
            for handle in self._files[:2]
        )
        self._unprocessed = csv.writer(self._files[2], delimiter=delimiter, lineterminator=eol)
        names = [_minimal(name, delimiter) for name in header]
        self._files[0].write(delimiter.join(['"sf__Id"', '"sf__Created"', *names]) + eol)
        self._files[1].write(delimiter.join(['"sf__Id"', '"sf__Error"', *names]) + eol)
        self._unprocessed.writerow(header)

    def success(self, record_id: str, created: bool, cells: Sequence[str]) -> None:
        self._success.writerow([record_id, "true" if created else "false", *cells])

    def failure(self, record_id: str | None, error: RowError, cells: Sequence[str]) -> None:
        self._failed.writerow([record_id or "", error_text(error), *cells])

    def unprocessed(self, rows: Iterable[Sequence[str]]) -> None:
        with self.lock:
            self._unprocessed.writerows(rows)

    def close(self) -> None:
        for handle in self._files:
            handle.close()


RESULT_NAMES = ("success", "failed", "unprocessed")


def _minimal(name: str, delimiter: str) -> str:
    """A header name CSV-quoted only where it must be, as it was uploaded."""
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="").writerow([name])
    return buffer.getvalue()


def error_text(error: RowError) -> str:
    """Salesforce's sf__Error: `STATUS_CODE:message:fields --`, or `STATUS_CODE:message:--` without fields."""
    fields = ",".join(error.fields)
    return f"{error.status_code}:{error.message}:{fields + ' ' if fields else ''}--"


def open_upload(job: IngestJob) -> IO[str]:
    # utf-8-sig: spreadsheet tools put a byte-order mark before the header; Salesforce ignores it.
    return job.upload_path.open(encoding="utf-8-sig", newline="")


def upload_records(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    return (cells for cells in reader if cells)  # a blank line is not a record


def abandon(job: IngestJob) -> None:
    """Results of a job that processes nothing: every uploaded row is unprocessed."""
    if not job.uploaded:
        Results(job, []).close()
        return
    with open_upload(job) as source:
        reader = csv.reader(source, delimiter=job.delimiter)
        with closing(Results(job, next(reader, []))) as results:
            results.unprocessed(upload_records(reader))
