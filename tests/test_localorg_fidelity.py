"""Conformance of the local org with Salesforce's documented or recorded behaviour, one probe per strict rule.

Each test names its source (docs/localorg-fidelity.md has the full table). Shapes are compared with the
recordings in tests/fixtures/localorg/, written from the documentation examples and from recorded responses.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceOperationError

from sfcleanup import ids
from sfcleanup.localorg import bulk
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.bulk.jobs import USER_ID
from sfcleanup.localorg.faults import FaultProfile, LatencyModel
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.store import Store
from tests.support import demo_store
from tests.test_localorg_rest import (
    _patch_line,
    assert_error,
    assert_shape,
    connect,
    open_lines,
    raw,
    recorded,
)

V = "62.0"


@pytest.fixture
def org(demo: tuple[LocalOrg, ScenarioInfo]) -> Iterator[LocalOrg]:
    yield demo[0]
    bulk.close(demo[0])


@pytest.fixture
def sf(org: LocalOrg) -> Salesforce:
    return connect(org)


def composite(sf: Salesforce, subrequests: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    answer: dict[str, Any] = sf.restful("composite", method="POST", json={**options, "compositeRequest": subrequests})
    return answer


def post_composite(org: LocalOrg, payload: dict[str, Any]) -> requests.Response:
    return raw(org).post(f"{org.instance_url}/services/data/v{V}/composite", json=payload)


def get(url: str, ref: str) -> dict[str, Any]:
    return {"method": "GET", "url": url, "referenceId": ref}


# --- 1. Composite serves only documented subrequests ----------------------------------------------------------
@pytest.mark.parametrize(
    "resource",
    ["limits", "composite", "composite/batch", "jobs/ingest", "tooling/query?q=SELECT+Id+FROM+ApexClass", "search"],
)
def test_composite_answers_not_found_for_an_undocumented_subrequest(sf: Salesforce, resource: str) -> None:
    """Only sObject, query/queryAll and collections resources run in Composite; anything else is 404 NOT_FOUND."""
    answer = composite(sf, [get(f"/services/data/v{V}/{resource}", "other")])
    [entry] = answer["compositeResponse"]
    assert entry["httpStatusCode"] == 404 and entry["referenceId"] == "other"
    assert_shape(entry, recorded("composite_subrequest_error.json"))
    assert_error(entry["body"], "NOT_FOUND")


def test_undocumented_subrequest_rolls_back_the_composite_under_all_or_none(sf: Salesforce, org: LocalOrg) -> None:
    """allOrNone: a `limits` subrequest fails and a line cancelled in the same call is rolled back."""
    [line] = open_lines(org, 1)
    before = org.store.snapshot()
    answer = composite(
        sf, [_patch_line(V, line, "cancel"), get(f"/services/data/v{V}/limits", "limits")], allOrNone=True
    )
    entries = {e["referenceId"]: e for e in answer["compositeResponse"]}
    assert entries["limits"]["httpStatusCode"] == 404
    assert entries["cancel"]["httpStatusCode"] == 400
    assert entries["cancel"]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert org.store.snapshot() == before


def test_query_more_and_collections_are_served_as_subrequests(sf: Salesforce, org: LocalOrg) -> None:
    """The documented subrequests (sObject rows, query, queryAll, collections) all answer 2xx."""
    [line] = open_lines(org, 1)
    answer = composite(
        sf,
        [
            get(f"/services/data/v{V}/query?q=SELECT+Id+FROM+Account+LIMIT+1", "q"),
            get(f"/services/data/v{V}/queryAll?q=SELECT+Id+FROM+Account+LIMIT+1", "qa"),
            get(f"/services/data/v{V}/sobjects/blng__InvoiceLine__c/{line}", "row"),
            get(f"/services/data/v{V}/sobjects/Account/describe", "describe"),
        ],
    )
    assert {e["referenceId"]: e["httpStatusCode"] for e in answer["compositeResponse"]} == {
        "q": 200,
        "qa": 200,
        "row": 200,
        "describe": 200,
    }


@pytest.mark.parametrize("reference", ["1st", "a-b", "ref.x", "", "_x", "réf"])
def test_reference_id_outside_the_documented_alphabet_is_a_400(org: LocalOrg, reference: str) -> None:
    """A referenceId must be letters, digits and underscores (leading letter: assumed); otherwise the whole call
    is refused."""
    answer = post_composite(org, {"compositeRequest": [get(f"/services/data/v{V}/limits", reference)]})
    assert answer.status_code == 400


def test_duplicate_reference_id_is_a_400(org: LocalOrg) -> None:
    """Two subrequests with one referenceId are refused whole (assumed): results could not be told apart."""
    sub = get(f"/services/data/v{V}/query?q=SELECT+Id+FROM+Account+LIMIT+1", "same")
    assert post_composite(org, {"compositeRequest": [sub, sub]}).status_code == 400


@pytest.mark.parametrize("header", ["Authorization", "accept", "Content-Type"])
def test_inherited_header_on_a_subrequest_is_a_top_level_400(org: LocalOrg, header: str) -> None:
    """ "Don't specify these headers in a subrequest. If you do, the top-level request fails and returns 400.\""""
    sub = {**get(f"/services/data/v{V}/sobjects/Account/describe", "d"), "httpHeaders": {header: "x"}}
    answer = post_composite(org, {"compositeRequest": [sub]})
    assert answer.status_code == 400
    assert_error(answer.json(), "INVALID_INPUT", "JSON_PARSER_ERROR")


def test_limits_on_subrequest_counts_are_top_level_400s(org: LocalOrg) -> None:
    """26 subrequests, or 6 query/collections subrequests, refuse the whole call."""
    query = get(f"/services/data/v{V}/query?q=SELECT+Id+FROM+Account+LIMIT+1", "q")
    describe = get(f"/services/data/v{V}/sobjects/Account/describe", "d")
    too_many = [{**describe, "referenceId": f"d{n}"} for n in range(26)]
    too_heavy = [{**query, "referenceId": f"q{n}"} for n in range(6)]
    assert post_composite(org, {"compositeRequest": too_many}).status_code == 400
    assert post_composite(org, {"compositeRequest": too_heavy}).status_code == 400


@pytest.mark.parametrize("version", ["99.0", "49.0", "62.5"])
def test_unlisted_version_in_a_subrequest_is_not_found(sf: Salesforce, version: str) -> None:
    """A subrequest url under a version the org does not list answers 404 NOT_FOUND."""
    [entry] = composite(sf, [get(f"/services/data/v{version}/sobjects/Account/describe", "d")])["compositeResponse"]
    assert entry["httpStatusCode"] == 404


# --- 2. Execution order -----------------------------------------------------------------------------------------
def test_independent_subrequests_run_and_answer_out_of_request_order(sf: Salesforce, org: LocalOrg) -> None:
    """collateSubrequests (default true): independent subrequests run in any order and the response array follows
    execution order, so only referenceId matches a result to its subrequest."""
    lines = open_lines(org, 25)
    subrequests = [_patch_line(V, line, f"line{n}") for n, line in enumerate(lines)]
    order = [e["referenceId"] for e in composite(sf, subrequests)["compositeResponse"]]
    assert sorted(order) == sorted(s["referenceId"] for s in subrequests)
    assert order != [s["referenceId"] for s in subrequests]


def test_collate_false_keeps_request_order(sf: Salesforce, org: LocalOrg) -> None:
    """ "If collation is disabled, then the subrequests are executed in the order in which they are received.\""""
    subrequests = [_patch_line(V, line, f"line{n}") for n, line in enumerate(open_lines(org, 25))]
    answer = composite(sf, subrequests, collateSubrequests=False)
    assert [e["referenceId"] for e in answer["compositeResponse"]] == [s["referenceId"] for s in subrequests]


def test_a_referencing_subrequest_always_runs_after_its_reference(sf: Salesforce, org: LocalOrg) -> None:
    """An explicit `@{ref.…}` dependency forces order; the dependent sees the referenced result."""
    for attempt in range(5):
        created = {
            "method": "POST",
            "url": f"/services/data/v{V}/sobjects/Account",
            "referenceId": "acct",
            "body": {"Name": f"Ordered {attempt}"},
        }
        noise = [get(f"/services/data/v{V}/sobjects/Account/describe", f"n{n}") for n in range(8)]
        read = get(f"/services/data/v{V}/sobjects/Account/@{{acct.id}}", "readBack")
        order = [e["referenceId"] for e in composite(sf, [*noise[:4], created, *noise[4:], read])["compositeResponse"]]
        assert order.index("acct") < order.index("readBack")


def _create_account(name: str | int) -> dict[str, Any]:
    body = {"Name": name} if isinstance(name, str) else {"Foo__c": name}
    return {"method": "POST", "url": f"/services/data/v{V}/sobjects/Account", "referenceId": "acct", "body": body}


def test_a_reference_in_a_query_string_is_resolved_after_its_create(sf: Salesforce, org: LocalOrg) -> None:
    """Row 102: "You can reference the referenceId in either the body or URL of a subrequest": a query naming
    `@{acct.id}` in its WHERE runs after the create and finds the new record; one call."""
    used = org.api_used
    for attempt in range(5):
        noise = [get(f"/services/data/v{V}/sobjects/Account/describe", f"n{n}") for n in range(4)]
        query = get(f"/services/data/v{V}/query/?q=SELECT+Id,+Name+FROM+Account+WHERE+Id+%3D+%27@{{acct.id}}%27", "q")
        answer = composite(sf, [*noise[:2], _create_account(f"Listed {attempt}"), query, *noise[2:]])
        entries = {e["referenceId"]: e for e in answer["compositeResponse"]}
        assert entries["acct"]["httpStatusCode"] == 201 and entries["q"]["httpStatusCode"] == 200
        assert [r["Id"] for r in entries["q"]["body"]["records"]] == [entries["acct"]["body"]["id"]]
    assert org.api_used - used == 5


def test_a_query_whose_referenced_create_failed_is_halted(sf: Salesforce, org: LocalOrg) -> None:
    """Rows 63 and 102: the create fails, so the query naming it is not run (400 PROCESSING_HALTED)."""
    query = get(f"/services/data/v{V}/query/?q=SELECT+Id+FROM+Account+WHERE+Id+%3D+%27@{{acct.id}}%27", "q")
    before = org.store.snapshot()
    entries = {e["referenceId"]: e for e in composite(sf, [_create_account(1), query])["compositeResponse"]}
    assert_error(entries["acct"]["body"], "INVALID_FIELD", "INVALID_FIELD_ON_WRITE")
    assert entries["q"]["httpStatusCode"] == 400
    assert entries["q"]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert org.store.snapshot() == before


def test_a_percent_encoded_reference_is_not_resolved(sf: Salesforce) -> None:
    """Row 103 (assumed): `%40%7Bacct.id%7D` is text, not a reference: the query is refused on its Id filter."""
    query = get(f"/services/data/v{V}/query/?q=SELECT+Id+FROM+Account+WHERE+Id+%3D+%27%40%7Bacct.id%7D%27", "q")
    entries = {e["referenceId"]: e for e in composite(sf, [_create_account("Encoded"), query])["compositeResponse"]}
    assert entries["acct"]["httpStatusCode"] == 201
    assert entries["q"]["httpStatusCode"] == 400
    assert_error(entries["q"]["body"], "INVALID_QUERY_FILTER_OPERATOR")


# --- 3. Bulk API 2.0 ----------------------------------------------------------------------------------------------
def _all_jobs(session: requests.Session, org: LocalOrg, **params: Any) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {org.access_token}"}
    page = session.get(f"{org.instance_url}/services/data/v{V}/jobs/ingest", headers=auth, params=params).json()
    assert_shape(page, recorded("bulk_job_list.json"))
    jobs = list(page["records"])
    assert len(jobs) <= 1000
    while not page["done"]:
        page = session.get(org.instance_url + page["nextRecordsUrl"], headers=auth).json()
        assert len(page["records"]) <= 1000
        jobs.extend(page["records"])
    assert page["nextRecordsUrl"] is None
    return jobs


def test_job_list_pages_by_1000_and_holds_other_users_and_bulk_1_jobs(org: LocalOrg) -> None:
    """GET jobs/ingest: 1,000 a page with nextRecordsUrl/done, other users' jobs and Classic (Bulk 1.0) jobs."""
    jobs = _all_jobs(raw(org), org)
    assert len(jobs) > 1000
    assert {job["jobType"] for job in jobs} == {"Classic", "V2Ingest"}
    assert any(job["createdById"] != USER_ID for job in jobs)
    assert len({job["id"] for job in jobs}) == len(jobs)
    classic = _all_jobs(raw(org), org, jobType="Classic")
    assert classic and {job["jobType"] for job in classic} == {"Classic"}


def test_job_list_order_is_not_creation_order(org: LocalOrg) -> None:
    """ "Job records are returned in an indeterminate order": not sorted by createdDate."""
    stamps = [job["createdDate"] for job in _all_jobs(raw(org), org)]
    assert stamps != sorted(stamps) and stamps != sorted(stamps, reverse=True)


def test_batch_past_the_processing_limit_fails_the_job(tmp_path: Any) -> None:
    """A batch that cannot be processed within the limit fails the job after 20 retries; its rows stay unprocessed."""
    store, _ = demo_store()
    latency = LatencyModel(bulk_ms_per_record=1000.0)
    org = LocalOrg(store, faults=FaultProfile(latency=latency, bulk_batch_limit_s=1.0), sleep=lambda _s: None)
    try:
        [line] = open_lines(org, 1)
        before = org.store.snapshot()
        upload = tmp_path / "lines.csv"
        upload.write_text(f"Id,blng__InvoiceLineStatus__c\n{line},Cancelled\n{line[:15]},Cancelled\n")
        with pytest.raises(SalesforceOperationError, match="time limit"):
            connect(org).bulk2.blng__InvoiceLine__c.update(csv_file=str(upload), wait=0)
        [mine] = [job for job in _all_jobs(raw(org), org) if job["createdById"] == USER_ID]
        job = raw(org).get(f"{org.instance_url}/services/data/v{V}/jobs/ingest/{mine['id']}").json()
        assert job["state"] == "Failed" and job["retries"] == 20 and job["numberRecordsProcessed"] == 0
        assert org.store.snapshot() == before
    finally:
        bulk.close(org)


# --- 4. Ids and time ----------------------------------------------------------------------------------------------
def test_ids_do_not_follow_creation_order_and_stay_valid(sf: Salesforce) -> None:
    """Ids carry no creation order (documented only as opaque keys); each is a valid 18-char id with the prefix."""
    created = [sf.Account.create({"Name": f"Acct {n}"})["id"] for n in range(20)]
    assert created != sorted(created)
    assert all(ids.is_valid(i) and i.startswith("001") for i in created)
    assert all(ids.to18(i[:15]) == i for i in created)


def test_records_share_created_date_seconds_and_the_clock_is_skewed(org: LocalOrg, sf: Salesforce) -> None:
    """Several records share one CreatedDate second; the org's clock is off the client's by clock_skew_s."""
    before = datetime.now(UTC)
    created = [sf.Account.create({"Name": f"Same second {n}"})["id"] for n in range(5)]
    stamps = [sf.Account.get(i)["CreatedDate"] for i in created]
    assert len(set(stamps)) < len(stamps)
    first = datetime.strptime(stamps[0], "%Y-%m-%dT%H:%M:%S.000%z")
    assert (first - before).total_seconds() == pytest.approx(org.profile.clock_skew_s, abs=5)


# --- 5. The envelope ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["63.0", "99.0", "49.0"])
def test_an_unlisted_api_version_is_not_found(org: LocalOrg, version: str) -> None:
    """An API version the org does not list in /services/data/ answers 404 NOT_FOUND."""
    answer = raw(org).get(f"{org.instance_url}/services/data/v{version}/limits")
    assert answer.status_code == 404
    assert answer.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def test_oversized_uri_is_414_and_oversized_headers_431(org: LocalOrg) -> None:
    """URI + headers are limited to 16,384 bytes: 414 for the URI alone, 431 with the headers."""
    session = raw(org)
    base = f"{org.instance_url}/services/data/v{V}/query"
    long_query = "SELECT Id FROM Account WHERE Name = '" + "x" * 16_400 + "'"
    assert session.get(base, params={"q": long_query}).status_code == 414
    near = "SELECT Id FROM Account WHERE Name = '" + "x" * 9_000 + "'"
    assert session.get(base, params={"q": near}, headers={"X-Padding": "y" * 8_000}).status_code == 431


def test_query_pages_are_sometimes_shorter_than_the_batch_size(org: LocalOrg, sf: Salesforce) -> None:
    """batchSize is a hint: some non-final pages hold fewer records; nextRecordsUrl/done still cover every row."""
    options = {"Sforce-Query-Options": "batchSize=200"}
    pages = [sf.query("SELECT Id FROM blng__InvoiceLine__c", headers=options)]
    while not pages[-1]["done"]:
        pages.append(sf.query_more(pages[-1]["nextRecordsUrl"], identifier_is_url=True, headers=options))
    assert any(len(p["records"]) < 200 for p in pages[:-1])
    assert sum(len(p["records"]) for p in pages) == pages[0]["totalSize"]


def test_same_id_twice_in_one_collections_call_fails_both_rows(org: LocalOrg) -> None:
    """The same id twice in one sObject Collections update: each row naming it fails with DUPLICATE_VALUE."""
    line, other = open_lines(org, 2)
    rows = [
        {"attributes": {"type": "blng__InvoiceLine__c"}, "id": i, "blng__InvoiceLineStatus__c": "Cancelled"}
        for i in (line, other, line[:15])
    ]
    results = raw(org).patch(f"{org.instance_url}/services/data/v{V}/composite/sobjects", json={"records": rows}).json()
    assert [r["success"] for r in results] == [False, True, False]
    assert {r["errors"][0]["statusCode"] for r in (results[0], results[2])} == {"DUPLICATE_VALUE"}


@pytest.mark.parametrize("literal", ["abc", "001", "0015g0000000001AAZ"])
def test_invalid_id_literal_in_soql_is_refused(sf: Salesforce, org: LocalOrg, literal: str) -> None:
    """`WHERE Id = 'abc'` answers INVALID_QUERY_FILTER_OPERATOR "invalid ID field: abc" (recorded error text)."""
    soql = "SELECT Id FROM Account WHERE Id = '" + literal + "'"  # noqa: S608 - a literal the test chose
    answer = raw(org).get(f"{org.instance_url}/services/data/v{V}/query", params={"q": soql})
    assert answer.status_code == 400
    assert_error(answer.json(), "INVALID_QUERY_FILTER_OPERATOR")
    assert answer.json()[0]["message"].endswith(f"invalid ID field: {literal}")


def test_daily_limit_usage_runs_past_the_maximum_before_the_403() -> None:
    """Enforcement lags: Sforce-Limit-Info can read above the maximum before REQUEST_LIMIT_EXCEEDED."""
    store = Store()
    seed(store, "empty")
    org = LocalOrg(store, faults=FaultProfile(daily_api_limit=3))
    session = raw(org)
    url = f"{org.instance_url}/services/data/v{V}/limits"
    answers = [session.get(url) for _ in range(3 + org.profile.daily_limit_lag_calls + 1)]
    assert answers[3].status_code == 200 and answers[3].headers["Sforce-Limit-Info"] == "api-usage=4/3"
    assert answers[-1].status_code == 403
    assert_error(answers[-1].json(), "REQUEST_LIMIT_EXCEEDED")
