"""`GET jobs/ingest` and `GET jobs/query`: every job in the org, as Salesforce lists them.

"Retrieves detailed information about all jobs in the org. Job records are returned in an indeterminate order"
and "Get All Jobs returns up to 1000 result rows per request, along with a nextRecordsUrl" (Get Information About
All Ingest Jobs). All jobs means other users' jobs and Bulk API 1.0 ("Classic") jobs too: the org holds a few
hundred such foreign jobs from the start, so a worker that looks for its own job in the list must filter by id
(or by createdById), follow nextRecordsUrl and stop on `done`, never take the first or the last entry.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from sfcleanup.localorg import idgen
from sfcleanup.localorg.bulk.jobs import JOB_KEY_PREFIX, USER_ID, ForeignJob, Job, QueryJob
from sfcleanup.localorg.context import Org
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse
from sfcleanup.sftime import format_datetime

PAGE_SIZE = 1000
FOREIGN_INGEST_JOBS = 1_150
# Foreign query jobs: `FaultProfile.foreign_query_jobs` (40 unless a test asks for more).
# Job numbers of foreign jobs: far above the org's own counter, so their ids never meet.
_FOREIGN_NUMBERS = 1 << 32
_OTHER_USERS = tuple(idgen.record_id("005", n) for n in range(2, 9))
_OBJECTS = ("Account", "Contact", "Opportunity", "Order", "OrderItem", "blng__Invoice__c", "Lead")
_OPERATIONS = ("insert", "update", "upsert", "delete")


def _foreign_jobs(org: Org, query: bool) -> list[ForeignJob]:
    state = org.bulk
    with state.lock:
        cached: list[ForeignJob] | None = state.foreign.get(query)
    if cached is not None:
        return cached
    made: list[ForeignJob] = []
    now = org.now()
    count = org.profile.foreign_query_jobs if query else FOREIGN_INGEST_JOBS
    for n in range(count):
        classic = org.faults.below(0.4)
        created = now - timedelta(minutes=org.faults.integer(1, 60 * 24 * 6))
        modstamp = created + timedelta(seconds=org.faults.integer(0, 3600))
        info: dict[str, Any] = {
            "id": idgen.record_id(JOB_KEY_PREFIX, _FOREIGN_NUMBERS + (2 * n if query else 2 * n + 1)),
            "operation": "query" if query else _OPERATIONS[org.faults.integer(0, len(_OPERATIONS) - 1)],
            "object": _OBJECTS[org.faults.integer(0, len(_OBJECTS) - 1)],
            "createdById": _OTHER_USERS[org.faults.integer(0, len(_OTHER_USERS) - 1)],
            "createdDate": format_datetime(created),
            "systemModstamp": format_datetime(max(modstamp, created)),
            "state": ("Closed" if classic else "JobComplete") if org.faults.below(0.9) else "Aborted",
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(org.faults.integer(50, 62)),
            "jobType": "Classic" if classic else ("V2Query" if query else "V2Ingest"),
            "lineEnding": "LF",
            "columnDelimiter": "COMMA",
        }
        if not classic and not query:
            info["contentUrl"] = f"services/data/v{info['apiVersion']}/jobs/ingest/{info['id']}/batches"
        made.append(ForeignJob(info, pk_chunking=classic and org.faults.below(0.2)))
    with state.lock:
        kept: list[ForeignJob] = state.foreign.setdefault(query, made)
    return kept


def _own(org: Org, kind: type[Job], job_type: str) -> list[dict[str, Any]]:
    with org.bulk.lock:
        return [
            {**job.info(detail=False), "jobType": job_type} for job in org.bulk.jobs.values() if isinstance(job, kind)
        ]


def listing(org: Org, req: HttpRequest, kind: type[Job], version: str) -> HttpResponse:
    """One page of the job list; the first request fixes the membership and the (seeded random) order."""
    path = "query" if kind is QueryJob else "ingest"
    locator = req.param("queryLocator")
    if locator is None:
        entries = _entries(org, req, kind)
        key = secrets.token_hex(8)
        start = 0
    else:
        key, _, position = locator.rpartition("-")
        found = org.bulk.job_lists.get(key)
        if found is None or not position.isdigit():
            raise BadRequest(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        entries, start = found, int(position)
    end = start + PAGE_SIZE
    done = end >= len(entries)
    if not done:
        org.bulk.keep_job_list(key, entries)
    next_url = None if done else f"/services/data/v{version}/jobs/{path}?queryLocator={key}-{end}"
    return HttpResponse.json(200, {"done": done, "records": entries[start:end], "nextRecordsUrl": next_url})


def _entries(org: Org, req: HttpRequest, kind: type[Job]) -> list[dict[str, Any]]:
    query = kind is QueryJob
    own_type = "V2Query" if query else "V2Ingest"
    allowed = {"Classic", own_type} | (set() if query else {"BigObjectIngest"})
    job_type = req.param("jobType")
    if job_type is not None and job_type not in allowed:
        raise BadRequest(400, "INVALID_INPUT", f"Invalid value for jobType: {job_type}")
    pk_only = (req.param("isPkChunkingEnabled") or "").lower() == "true"
    foreign = [job for job in _foreign_jobs(org, query) if job.pk_chunking or not pk_only]
    entries = [job.info for job in foreign] + ([] if pk_only else _own(org, kind, own_type))
    if job_type is not None:
        entries = [entry for entry in entries if entry["jobType"] == job_type]
    org.faults.shuffle(entries)
    if org.profile.own_jobs_listed_last:
        # The test device (FaultProfile.own_jobs_listed_last): a stable sort keeps each group's shuffled order.
        entries.sort(key=lambda entry: entry["createdById"] == USER_ID)
    return entries
