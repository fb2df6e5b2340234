"""Bulk API 2.0 query jobs for large reads: created before they are needed, so the org runs them while the
planner works, then read page by page (`maxRecords`, `Sforce-Locator`), each page streamed to disk and parsed
row by row, so memory stays flat whatever the size.

Bulk API 2.0 supports no ORDER BY and no LIMIT and promises no order, so a query job reads the whole of a
keyset query (its `Id > {after} ORDER BY Id LIMIT {limit}` tail removed) and nothing here relies on order.
Creating a query job writes nothing, so a lost answer is simply asked again (an orphan job only reads).
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import structlog
from simple_salesforce.format import format_soql

from sfcleanup import queries
from sfcleanup.errors import StopRun, TransientExhausted
from sfcleanup.salesforce.bulk import Polling
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.querystates import QueryJobStates

# An object with at least this many records to read goes through a Bulk API 2.0 query job (create, one poll
# and a page per PAGE_RECORDS: 3 calls up to 100,000 records); below it keyset pages of 2,000 through REST
# (1 call per 2,000, and a short page now and then) cost no more calls and no more time. See README "Scale".
BULK_READ_THRESHOLD = 5000
# Records per result page: each page is one call, streamed to disk, so its size costs no memory here.
PAGE_RECORDS = 100_000
KEYSET_TAIL = " AND Id > {after} ORDER BY Id LIMIT {limit}"
log = structlog.get_logger("sfcleanup.bulkquery")
# Records as the REST API gives them, a slice of a page at a time; a page downloaded, and the next one's locator.
Page = list[dict[str, object]]
Downloaded = tuple[Path, str | None]


def whole_query(name: str, run_id: str) -> str:
    """The keyset query `name` without its keyset tail: every record it pages through, in one statement."""
    text = queries.template(name)
    if not text.endswith(KEYSET_TAIL):
        raise ValueError(f"{name}.soql does not end with the keyset tail {KEYSET_TAIL!r}")
    rendered: str = format_soql(text.removesuffix(KEYSET_TAIL), run_id=run_id)
    return rendered


class Columns:
    """A result file's header, each column split once into where its cells go in a REST-shaped record."""

    def __init__(self, header: Sequence[str]) -> None:
        self._flat = [(index, column) for index, column in enumerate(header) if "." not in column]
        self._nested = [(index, column.split(".")) for index, column in enumerate(header) if "." in column]

    def record(self, cells: Sequence[str]) -> dict[str, object]:
        """One row as the REST API's record: dotted columns nested by relationship, an empty cell a null."""
        out: dict[str, object] = {name: cells[index] for index, name in self._flat if cells[index]}
        for index, (*path, name) in self._nested:
            value = cells[index]
            if not value:
                continue
            target = out
            for part in path:
                nested = target.setdefault(part, {})
                assert isinstance(nested, dict)  # a relationship name is never also a field name
                target = nested
            target[name] = value
        return out


def record(row: dict[str, str]) -> dict[str, object]:
    """A CSV row (column to cell) as the REST API's record (see Columns.record)."""
    return Columns(list(row)).record(list(row.values()))


@dataclass(frozen=True)
class QueryJob:
    id: str
    sobject: str


class BulkQueries:
    def __init__(
        self,
        client: SalesforceClient,
        polling: Polling | None = None,
        workdir: Path | None = None,
        page_records: int = PAGE_RECORDS,
    ) -> None:
        self._client = client
        self._polling = polling or Polling()
        self._workdir = workdir
        self._page_records = page_records
        self._states = QueryJobStates(client)

    def create(self, soql: str, sobject: str) -> QueryJob:
        body = {"operation": "query", "query": soql, "columnDelimiter": "COMMA", "lineEnding": "LF"}
        answer = self._client.request(f"bulk query {sobject}", "POST", "jobs/query", json=body)
        job = QueryJob(str(answer.json()["id"]), sobject)
        self._states.created(job.id)
        log.info("bulkquery.created", job=job.id, object=sobject)
        return job

    def wait(self, job: QueryJob) -> None:
        """Poll until the job is complete: at once (it was created a while ago), then backing off. While
        other jobs of this run wait too, one look at the org's job list answers for all (`QueryJobStates`)."""
        polling = self._polling
        deadline = polling.monotonic() + polling.deadline_s
        pause = polling.first_s
        try:
            while True:
                info = self._states.look(job.id, f"bulk query job {job.sobject}")
                if info.state == "JobComplete":
                    return
                if info.state in ("Failed", "Aborted"):
                    raise StopRun(f"the Bulk API query job {job.id} on {job.sobject} ended {info.state}: {info.error}")
                if polling.monotonic() + pause > deadline:
                    raise TransientExhausted(f"the Bulk API query job {job.id} is still {info.state}; run again")
                polling.sleep(pause)
                pause = min(pause * 2, polling.max_s)
        finally:
            self._states.done_with(job.id)

    def pages(self, job: QueryJob) -> Iterator[Page]:
        """The job's records page by page, waiting for it first; the next page downloads while the caller
        works through the current one. Each page is parsed from disk in slices of 2,000 records."""
        with tempfile.TemporaryDirectory(prefix="sfcleanup-bulkquery-", dir=self._workdir) as directory:
            yield from self._pages(job, Path(directory), None)

    @contextlib.contextmanager
    def ahead(self, jobs: Sequence[QueryJob]) -> Iterator[Callable[[QueryJob], Iterator[Page]]]:
        """`pages` for `jobs`, whose first pages download from now on, one after the other in the order given,
        while the caller works on something else: the org prepares the next object's records while the
        planner is busy with the one before. Each job's pages are to be read at most once."""
        with (
            tempfile.TemporaryDirectory(prefix="sfcleanup-bulkquery-", dir=self._workdir) as name,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sfcleanup-bulkquery-ahead") as pool,
        ):
            directory = Path(name)
            firsts = {job: pool.submit(contextvars.copy_context().run, self._first, job, directory) for job in jobs}
            try:
                yield lambda job: self._pages(job, directory, firsts.pop(job))
            finally:
                # Downloads nobody will read are not started; the one under way ends before its directory goes.
                pool.shutdown(wait=True, cancel_futures=True)

    def _pages(self, job: QueryJob, directory: Path, first: Future[Downloaded] | None) -> Iterator[Page]:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sfcleanup-bulkquery") as pool:
            ahead: Future[Downloaded] | None = first
            if ahead is None:
                ahead = pool.submit(contextvars.copy_context().run, self._first, job, directory)
            number = 0
            while ahead is not None:
                path, locator = ahead.result()
                number += 1
                ahead = None
                if locator:
                    ahead = pool.submit(contextvars.copy_context().run, self._fetch, job, directory, number, locator)
                yield from read_slices(path)
                path.unlink(missing_ok=True)

    def _first(self, job: QueryJob, directory: Path) -> Downloaded:
        self.wait(job)
        return self._fetch(job, directory, 0, None)

    def _fetch(self, job: QueryJob, directory: Path, number: int, locator: str | None) -> Downloaded:
        """Page `number` of the job's results to a file, and the locator of the next page (None: no more)."""
        target = directory / f"{job.id}-{number}.csv"
        params = {"maxRecords": str(self._page_records), **({"locator": locator} if locator else {})}
        what = f"bulk query results {job.sobject}"
        return target, self._client.download_page(what, f"jobs/query/{job.id}/results", params, target)


def read_slices(path: Path, size: int = 2000) -> Iterator[Page]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = next(rows, [])
        columns = Columns(header)
        chunk: Page = []
        for cells in rows:
            if not cells:
                continue
            if len(cells) < len(header):
                # As csv.DictReader reads a short row: the missing cells are empty.
                cells += [""] * (len(header) - len(cells))
            chunk.append(columns.record(cells))
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
