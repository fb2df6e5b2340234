"""A Bulk job whose create answer was lost is adopted only when the org's job list proves it is ours; the
list holds every user's jobs and Bulk 1.0 jobs, in no order, over several pages, on the org's own clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import requests
import responses
from pydantic import SecretStr

from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.salesforce.bulk import BulkApi
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import no_wait_policy

INSTANCE = "https://acme.my.salesforce.com"
JOBS = f"{INSTANCE}/services/data/v62.0/jobs/ingest/"
ME = "0055g0000000001AAA"
SOMEONE_ELSE = "0055g0000000002AAA"
OBJECT = "blng__InvoiceLine__c"
NEW_JOB = "7505g00000000NEWAAA"
# The org's clock runs an hour behind this machine's: only its own Date header says what time it is there.
ORG_NOW = datetime.now(UTC) - timedelta(hours=1)


def _api(user_id: str | None = ME) -> BulkApi:
    connector = Connector(
        OrgSettings(auth=AuthMode.TOKEN),
        requests.Session(),
        lambda: OrgSession(INSTANCE, SecretStr("t0ken"), user_id),
    )
    return BulkApi(SalesforceClient(connector, api_version="62.0", retry=no_wait_policy(), timeout_s=5))


def _job(job_id: str, **changes: Any) -> dict[str, Any]:
    stamp = ORG_NOW.strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    job = {
        "id": job_id,
        "operation": "update",
        "object": OBJECT,
        "createdById": ME,
        "createdDate": stamp,
        "state": "Open",
        "jobType": "V2Ingest",
        "contentType": "CSV",
    }
    return {**job, **changes}


def _list(*pages: list[dict[str, Any]]) -> None:
    """The job list, in pages linked by nextRecordsUrl, each answered with the org's Date."""
    headers = {"Date": format_datetime(ORG_NOW, usegmt=True)}
    for index, records in enumerate(pages):
        last = index == len(pages) - 1
        body = {"done": last, "records": records}
        if not last:
            body["nextRecordsUrl"] = f"/services/data/v62.0/jobs/ingest?queryLocator=page{index + 1}"
        url = JOBS if index == 0 else f"{INSTANCE}/services/data/v62.0/jobs/ingest?queryLocator=page{index}"
        responses.get(url, json=body, headers=headers)


def _lost_then_created() -> None:
    responses.post(JOBS, body=requests.exceptions.ConnectionError("reset"))
    responses.post(JOBS, json={"id": NEW_JOB, "state": "Open"})


def _creates() -> int:
    return sum(1 for call in responses.calls if call.request.method == "POST")


@responses.activate
def test_the_one_provable_job_on_a_later_page_is_adopted_despite_clock_skew() -> None:
    """Our job, on the second page among others' and Bulk 1.0 jobs, stamped by an org clock an hour behind,
    is adopted and no second job is created."""
    _lost_then_created()
    _list(
        [_job("750A", createdById=SOMEONE_ELSE), _job("750B", jobType="Classic")],
        [_job("750C", object="Account"), _job("750OURS")],
    )
    assert _api().create_job(OBJECT) == "750OURS"
    assert _creates() == 1


@responses.activate
def test_other_users_and_bulk_1_jobs_are_never_adopted() -> None:
    """Open update jobs on the object, but another user's or Bulk 1.0 ones, are left alone: a new job is made."""
    _lost_then_created()
    _list([_job("750A", createdById=SOMEONE_ELSE)], [_job("750B", jobType="Classic")])
    assert _api().create_job(OBJECT) == NEW_JOB
    assert _creates() == 2


@responses.activate
def test_a_job_older_than_the_request_is_not_adopted() -> None:
    """A job of ours created before the lost request was sent (by the org's clock) is not the one it made."""
    _lost_then_created()
    _list([_job("750OLD", createdDate=(ORG_NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000+0000"))])
    assert _api().create_job(OBJECT) == NEW_JOB


@responses.activate
def test_two_candidates_mean_no_adoption() -> None:
    """Two jobs that could each be ours: neither is adopted."""
    _lost_then_created()
    _list([_job("750X")], [_job("750Y")])
    assert _api().create_job(OBJECT) == NEW_JOB


@responses.activate
def test_without_the_running_users_id_nothing_is_adopted() -> None:
    """When neither the login nor userinfo names the running user, no job can be proven ours."""
    _lost_then_created()
    responses.get(f"{INSTANCE}/services/oauth2/userinfo", status=403, json={"error": "insufficient_scope"})
    _list([_job("750OURS")])
    assert _api(user_id=None).create_job(OBJECT) == NEW_JOB


@responses.activate
def test_the_running_user_comes_from_userinfo_when_the_login_did_not_say() -> None:
    """A given token carries no identity URL: the user's id is read from /services/oauth2/userinfo."""
    _lost_then_created()
    responses.get(f"{INSTANCE}/services/oauth2/userinfo", json={"user_id": ME})
    _list([_job("750OURS")])
    assert _api(user_id=None).create_job(OBJECT) == "750OURS"
    listed = [c.request.url for c in responses.calls if "jobs/ingest" in c.request.url and c.request.method == "GET"]
    assert "jobType=V2Ingest" in listed[0]
    assert json.loads(responses.calls[0].request.body)["operation"] == "update"
