"""The states of a run's Bulk API 2.0 query jobs, several told by one call when several are waiting.

"Get Information About All Query Jobs" (`GET /services/data/vXX.X/jobs/query`, Bulk API 2.0 and Bulk API
Developer Guide, developer.salesforce.com/docs/platform/api-asynch/guide/query-get-all-jobs.html) "gets
information about all query jobs in the org", Bulk API 1.0 jobs included, every user's; "job records are returned
in an indeterminate order", up to 1,000 a page, with `done` and `nextRecordsUrl`; each record has the job's `id`
and `state`. So one call can tell the states of every job of this run, but only if they happen to be on its first
page: a job not there is asked about on its own (`GET jobs/query/{id}`), as it was before; the list is never paged
through (an org can hold thousands of jobs, and a page costs a call like a job's own GET). `jobType=V2Query`
leaves Bulk API 1.0 jobs out, which only makes room on that page.

A job the list shows complete is remembered, so waiting for it later costs no call; any other state it shows is
only good for that moment, so the next look asks again. A failed or aborted job is asked about on its own,
for the error message only its own GET carries. A list that holds none of this run's jobs, or that the org
refuses, is not asked for again by this run: at most one call is spent on it in vain.
"""

from __future__ import annotations

import threading

import structlog

from sfcleanup.errors import ApiError
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.shapes import BulkJobInfo, BulkJobPage

COMPLETE = "JobComplete"
log = structlog.get_logger("sfcleanup.bulkquery")


class QueryJobStates:
    def __init__(self, client: SalesforceClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        # This run's jobs created and not yet waited for to the end; those of them a list showed complete.
        self._waiting: set[str] = set()
        self._complete: dict[str, BulkJobInfo] = {}
        self._listing = True

    def created(self, job_id: str) -> None:
        with self._lock:
            self._waiting.add(job_id)

    def done_with(self, job_id: str) -> None:
        """The job is no longer waited for (complete, ended, or given up): it no longer makes a list worth it."""
        with self._lock:
            self._waiting.discard(job_id)
            self._complete.pop(job_id, None)

    def look(self, job_id: str, what: str) -> BulkJobInfo:
        """The job's state now: from an earlier list that showed it complete (no call), from the org's job list
        when two or more of this run's jobs are still waiting (one call for all), else from its own GET."""
        with self._lock:
            known = self._complete.get(job_id)
            unknown = self._waiting - self._complete.keys()
            use_list = self._listing and job_id in unknown and len(unknown) >= 2
        if known is not None:
            return known
        if use_list:
            listed = self._list().get(job_id)
            if listed is not None and listed.state not in ("Failed", "Aborted"):
                return listed
        answer = self._client.request(what, "GET", f"jobs/query/{job_id}")
        return BulkJobInfo.model_validate(answer.json())

    def _list(self) -> dict[str, BulkJobInfo]:
        """This run's waiting jobs found on the first page of the org's query jobs, by id; those complete are
        remembered. A list the org refuses for good (a user not allowed to see other users' jobs, say) is not
        asked for again: each job is then asked about on its own."""
        try:
            answer = self._client.request("bulk query jobs", "GET", "jobs/query", params={"jobType": "V2Query"})
        except ApiError as exc:
            log.warning("bulkquery.job_list_refused", reason=str(exc)[:200])
            with self._lock:
                self._listing = False
            return {}
        page = BulkJobPage.model_validate(answer.json())
        with self._lock:
            found = {info.id: info for info in page.records if info.id in self._waiting}
            self._complete.update((job_id, info) for job_id, info in found.items() if info.state == COMPLETE)
            if not found:
                # None of ours among the first page's jobs: the org holds too many for a list to pay this run.
                self._listing = False
        return found
