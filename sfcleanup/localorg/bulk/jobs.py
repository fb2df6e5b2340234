"""Bulk API 2.0 jobs of the local org: their limits, states and records, and `BulkState`, what one org's jobs
share (the org owns one as `org.bulk`)."""

from __future__ import annotations

import itertools
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sfcleanup.localorg import idgen
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.soql import CompiledQuery

BATCH_RECORDS = 10_000
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_RECORDS = 50_000
NULL_VALUE = "#N/A"
JOB_KEY_PREFIX = "750"
USER_ID = idgen.record_id("005", 1)
# How long a results request waits for an aborted job's thread to finish the batch it is in.
RESULTS_WAIT_S = 60.0
FAILED_JOB_MESSAGE = "InternalServerError : The job failed while processing its batches"
# Batches of one job processed at once ("Bulk API 2.0 processes batches in parallel"; how many is not documented).
PARALLEL_BATCHES = 4
# "Salesforce automatically retries failed batches up to a maximum of 20 times" (Understanding Bulk API 2.0 Ingest).
BATCH_RETRIES = 20
BATCH_TIMEOUT_MESSAGE = "InternalServerError : A batch could not be processed within the time limit after 20 retries"

INGEST_OPERATIONS = frozenset({"insert", "update", "upsert", "delete", "hardDelete"})
QUERY_OPERATIONS = frozenset({"query", "queryAll"})
DELIMITERS = {"BACKQUOTE": "`", "CARET": "^", "COMMA": ",", "PIPE": "|", "SEMICOLON": ";", "TAB": "\t"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
RESULT_FILES = {"successfulresults": "success", "failedresults": "failed", "unprocessedrecords": "unprocessed"}

# Lock owners of job batches: far above the request counter, so a batch never shares an owner with a request.
FIRST_BATCH_OWNER = 1 << 40


class JobState(StrEnum):
    OPEN = "Open"
    UPLOAD_COMPLETE = "UploadComplete"
    IN_PROGRESS = "InProgress"
    JOB_COMPLETE = "JobComplete"
    FAILED = "Failed"
    ABORTED = "Aborted"


FINISHED = frozenset({JobState.JOB_COMPLETE, JobState.FAILED, JobState.ABORTED})
ABORTABLE = frozenset({JobState.OPEN, JobState.UPLOAD_COMPLETE, JobState.IN_PROGRESS})
DELETABLE = frozenset({JobState.UPLOAD_COMPLETE, JobState.JOB_COMPLETE, JobState.FAILED, JobState.ABORTED})


# --- jobs -----------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class Job:
    id: str
    operation: str
    sobject: SObjectSpec
    api_version: str
    line_ending: str
    column_delimiter: str
    created_date: str
    state: JobState
    modstamp: str
    error_message: str | None = None
    processed: int = 0
    processing_ms: int = 0
    retries: int = 0

    @property
    def delimiter(self) -> str:
        return DELIMITERS[self.column_delimiter]

    @property
    def eol(self) -> str:
        return LINE_ENDINGS[self.line_ending]

    def info(self, *, detail: bool) -> dict[str, Any]:
        """Job info as Salesforce returns it; `detail` adds what only GET of one job shows."""
        return {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject.name,
            "createdById": USER_ID,
            "createdDate": self.created_date,
            "systemModstamp": self.modstamp,
            "state": str(self.state),
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }

    def _details(self, job_type: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "jobType": job_type,
            "numberRecordsProcessed": self.processed,
            "retries": self.retries,
            "totalProcessingTime": self.processing_ms,
        }
        if self.error_message:
            out["errorMessage"] = self.error_message
        return out


@dataclass(kw_only=True)
class IngestJob(Job):
    directory: Path
    external_id: str | None = None
    uploaded: bool = False
    failed: int = 0
    fails: bool = False
    deleted: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def upload_path(self) -> Path:
        return self.directory / "upload.csv"

    def result_path(self, name: str) -> Path:
        return self.directory / f"{name}.csv"

    def info(self, *, detail: bool) -> dict[str, Any]:
        out = super().info(detail=detail)
        if self.external_id:
            out["externalIdFieldName"] = self.external_id
        out["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if detail:
            out |= self._details("V2Ingest")
            out["numberRecordsFailed"] = self.failed
            out["apiActiveProcessingTime"] = self.processing_ms
            out["apexProcessingTime"] = 0
        return out


@dataclass(kw_only=True)
class QueryJob(Job):
    compiled: CompiledQuery
    rowids: list[int]

    def info(self, *, detail: bool) -> dict[str, Any]:
        out = super().info(detail=detail)
        if detail:
            out |= self._details("V2Query")
        return out


# --- org-level state ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ForeignJob:
    """A job of another user or of Bulk API 1.0: listed, never otherwise reachable through this org's API."""

    info: dict[str, Any]
    pk_chunking: bool


# Open job list locators kept per org; the oldest are dropped first.
MAX_JOB_LISTS = 16


@dataclass(eq=False)
class BulkState:
    """What an org's jobs share: the lock over job fields, the jobs, the job counter, the temp directory, the
    processing threads, and the job lists (GET jobs/ingest, jobs/query): the foreign jobs, made once, and open
    list locators."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    jobs: dict[str, Job] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    batch_owners: Iterator[int] = field(default_factory=lambda: itertools.count(FIRST_BATCH_OWNER))
    threads: list[threading.Thread] = field(default_factory=list)
    # Keyed by "is a query job list".
    foreign: dict[bool, list[ForeignJob]] = field(default_factory=dict)
    job_lists: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _tempdir: tempfile.TemporaryDirectory[str] | None = None

    def job_directory(self, job_id: str) -> Path:
        with self.lock:
            if self._tempdir is None:
                self._tempdir = tempfile.TemporaryDirectory(prefix="sfcleanup-bulk-")
            path = Path(self._tempdir.name) / job_id
        path.mkdir()
        return path

    def keep_job_list(self, key: str, entries: list[dict[str, Any]]) -> None:
        with self.lock:
            self.job_lists[key] = entries
            while len(self.job_lists) > MAX_JOB_LISTS:
                del self.job_lists[next(iter(self.job_lists))]

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no ingest job is processing; False if one still is after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        threads = list(self.threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def close(self, timeout: float = 30.0) -> None:
        """Let running jobs finish, then delete every job's files; their results are no longer served."""
        self.wait_idle(timeout)
        with self.lock:
            if self._tempdir is not None:
                self._tempdir.cleanup()
                self._tempdir = None
