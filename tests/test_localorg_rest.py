"""The local org's REST endpoints, driven by unmodified simple-salesforce over the in-process adapter.

Each answer is compared with a recorded Salesforce body in `tests/fixtures/localorg/` by shape (same keys, same
JSON types, the documented `errorCode`/`statusCode`), never by volatile values. Those recordings are written out
by hand from the REST API Developer Guide's examples; large resources (describe, limits, describe global, OAuth
token) are trimmed to the keys the project reads, and a `null` in a recording stands for "null or any scalar".
Final state is always read back from `org.store`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from simple_salesforce import format_soql
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sfcleanup import ids
from sfcleanup.localorg import adapter, schema
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.localorg.store import Store
from tests.support import demo_store

FIXTURES = Path(__file__).parent / "fixtures" / "localorg"
LIMIT_INFO = re.compile(r"^api-usage=(\d+)/(\d+)$")


# --- recorded shapes ------------------------------------------------------------------------------------------
def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def shape_problems(actual: Any, recording: Any, *, exact: bool = False, path: str = "$") -> list[str]:
    """How `actual` differs in shape from `recording`: missing keys, other JSON types (and extra keys if exact).

    A list in the recording lists the shapes its items may take: every actual item must fit one of them.
    """
    if recording is None:
        return [] if not isinstance(actual, dict | list) else [f"{path}: expected a scalar or null"]
    if isinstance(recording, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {_kind(actual)}"]
        problems = [f"{path}: missing key {key!r}" for key in recording if key not in actual]
        if exact:
            problems += [f"{path}: unexpected key {key!r}" for key in actual if key not in recording]
        for key, value in recording.items():
            if key in actual:
                problems += shape_problems(actual[key], value, exact=exact, path=f"{path}.{key}")
        return problems
    if isinstance(recording, list):
        if not isinstance(actual, list):
            return [f"{path}: expected an array, got {_kind(actual)}"]
        if not recording:
            return []
        problems = []
        for index, item in enumerate(actual):
            candidates = [shape_problems(item, r, exact=exact, path=f"{path}[{index}]") for r in recording]
            if all(candidates):
                problems += min(candidates, key=len)
        return problems
    if actual is not None and _kind(actual) != _kind(recording):
        return [f"{path}: expected {_kind(recording)}, got {_kind(actual)}"]
    return []


def assert_shape(actual: Any, recording: Any, *, exact: bool = False) -> None:
    if isinstance(recording, str):
        recording = recorded(recording)
    problems = shape_problems(actual, recording, exact=exact)
    assert not problems, problems


def assert_error(body: Any, code: str, recording_key: str | None = None) -> None:
    """A whole-request error: Salesforce's array of {message, errorCode, fields?}, with this errorCode."""
    assert isinstance(body, list) and body, body
    for entry in body:
        assert set(entry) <= {"message", "errorCode", "fields"}, entry
        assert isinstance(entry["message"], str) and entry["message"]
    assert body[0]["errorCode"] == code, body
    assert_shape(body, recorded("errors.json")[recording_key or code])


def assert_row_error(row: dict[str, Any], code: str) -> None:
    """A row result's error: {statusCode, message, fields}, never the whole-request `errorCode`."""
    assert row["success"] is False and row["errors"], row
    assert row["errors"][0]["statusCode"] == code, row
    for error in row["errors"]:
        assert set(error) == {"statusCode", "message", "fields"}, error


# --- clients and records ---------------------------------------------------------------------------------------
def connect(org: LocalOrg, token: str | None = None) -> Salesforce:
    session = requests.Session()
    adapter.mount(session, org)
    return Salesforce(instance_url=org.instance_url, session_id=token or org.access_token, session=session)


def raw(org: LocalOrg, token: str | None = None) -> requests.Session:
    """A plain requests session on the org, for status codes and bodies simple-salesforce does not show."""
    session = requests.Session()
    adapter.mount(session, org)
    session.headers["Authorization"] = f"Bearer {token or org.access_token}"
    return session


def spec(name: str) -> SObjectSpec:
    found = schema.sobject(name)
    assert found is not None
    return found


def row(org: LocalOrg, sobject: str, record_id: str) -> dict[str, Any]:
    found = org.store.get(spec(sobject), record_id)
    assert found is not None
    return found


def open_lines(org: LocalOrg, limit: int) -> list[str]:
    """Draft or Error invoice lines on invoices that are not Posted: ones the Billing guard lets change."""
    rows = org.store.conn.execute(
        "SELECT l.Id FROM blng__InvoiceLine__c l JOIN blng__Invoice__c i ON i.Id = l.blng__Invoice__c "
        "WHERE l.blng__InvoiceLineStatus__c IN ('Draft', 'Error') AND i.blng__InvoiceStatus__c "
        "IN ('Draft', 'Error', 'Initiated') AND l.IsDeleted = 0 ORDER BY l._rowid LIMIT ?",
        (limit,),
    ).fetchall()
    assert len(rows) == limit
    return [r[0] for r in rows]


def posted_invoice_with_line(org: LocalOrg) -> tuple[str, str]:
    found = org.store.conn.execute(
        "SELECT i.Id, l.Id FROM blng__Invoice__c i JOIN blng__InvoiceLine__c l ON l.blng__Invoice__c = i.Id "
        "WHERE i.blng__InvoiceStatus__c = 'Posted' AND l.blng__InvoiceLineStatus__c = 'Draft' LIMIT 1"
    ).fetchone()
    return found[0], found[1]


def draft_invoice(org: LocalOrg) -> str:
    found = org.store.conn.execute("SELECT Id FROM blng__Invoice__c WHERE blng__InvoiceStatus__c = 'Draft'")
    return str(found.fetchone()[0])


def an_account(org: LocalOrg) -> str:
    return str(org.store.conn.execute("SELECT Id FROM Account ORDER BY _rowid LIMIT 1").fetchone()[0])


def line_status(org: LocalOrg, line_id: str) -> str:
    return str(row(org, "blng__InvoiceLine__c", line_id)["blng__InvoiceLineStatus__c"])


def cancel(line_id: str) -> dict[str, Any]:
    return {
        "attributes": {"type": "blng__InvoiceLine__c"},
        "id": line_id,
        "blng__InvoiceLineStatus__c": "Cancelled",
    }


class Clock:
    """A store clock the test moves by hand: the store stamps whole seconds."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def org(demo: tuple[LocalOrg, ScenarioInfo]) -> LocalOrg:
    return demo[0]


@pytest.fixture
def sf(org: LocalOrg) -> Salesforce:
    return connect(org)


# --- versions, limits, API accounting -------------------------------------------------------------------------
def test_versions_list_needs_no_token_and_is_not_an_api_call(org: LocalOrg) -> None:
    """GET /services/data/ lists the versions without a token and does not count against the daily limit."""
    answer = requests.Session()
    adapter.mount(answer, org)
    response = answer.get(f"{org.instance_url}/services/data/")
    assert response.status_code == 200
    assert_shape(response.json(), "versions.json", exact=True)
    versions = [entry["version"] for entry in response.json()]
    assert versions[0] == "50.0" and "59.0" in versions and versions[-1] == "62.0"
    assert org.api_used == 0


def test_limits_report_daily_api_requests_counting_down(sf: Salesforce, org: LocalOrg) -> None:
    """`sf.limits()` gives DailyApiRequests Max/Remaining, and Remaining falls by one per API call made."""
    first = sf.limits()
    assert_shape(first, "limits.json")
    sf.query("SELECT Id FROM Account LIMIT 1")
    second = sf.limits()
    assert second["DailyApiRequests"]["Max"] == first["DailyApiRequests"]["Max"] == org.profile.daily_api_limit
    assert second["DailyApiRequests"]["Remaining"] == first["DailyApiRequests"]["Remaining"] - 2
    assert second["DailyApiRequests"]["Remaining"] == org.profile.daily_api_limit - org.api_used
    assert sf.api_usage["api-usage"].used == org.api_used == 3


def test_every_authorised_api_response_carries_sforce_limit_info(org: LocalOrg) -> None:
    """Every answer to an authorised API call, success or error, has `Sforce-Limit-Info: api-usage=USED/MAX`;
    the token endpoint, the version list, a 401 and paths outside the API have none."""
    session = raw(org)
    base = f"{org.instance_url}/services/data/v62.0"
    answers = [
        session.get(f"{base}/limits"),
        session.get(f"{base}/query", params={"q": "SELECT Id FROM Account LIMIT 2"}),
        session.get(f"{base}/query", params={"q": "SELECT FROM"}),
        session.get(f"{base}/sobjects/Nope__c/describe"),
        session.patch(f"{base}/sobjects/Account/{an_account(org)}", data=b"{oops"),
    ]
    for answer in answers:
        match = LIMIT_INFO.match(answer.headers.get("Sforce-Limit-Info", ""))
        assert match is not None, (answer.request.method, answer.url, answer.headers)
        assert int(match.group(2)) == org.profile.daily_api_limit
    assert [a.status_code for a in answers] == [200, 200, 400, 404, 400]
    # A counted call reports itself in the usage it returns.
    assert answers[0].headers["Sforce-Limit-Info"] == f"api-usage=1/{org.profile.daily_api_limit}"
    unsessioned = [
        session.get(f"{org.instance_url}/services/data/"),
        session.get(f"{base}/limits", headers={"Authorization": "Bearer wrong"}),
        session.post(f"{org.instance_url}/services/oauth2/token", data={"grant_type": "nope"}),
        session.get(f"{org.instance_url}/_localorg/stats"),
        session.get(f"{org.instance_url}/no/such/path"),
    ]
    assert [a.status_code for a in unsessioned] == [200, 401, 400, 200, 404]
    assert not any("Sforce-Limit-Info" in a.headers for a in unsessioned)


def test_daily_limit_spent_refuses_every_call_with_total_requests_exceeded() -> None:
    """Once the daily allowance and the enforcement lag are used, each call gets 403 REQUEST_LIMIT_EXCEEDED and
    changes nothing; usage reads above the maximum."""
    store, _ = demo_store()
    org = LocalOrg(store, faults=FaultProfile(daily_api_limit=5))
    sf = connect(org)
    for _ in range(5 + org.profile.daily_limit_lag_calls):
        sf.query("SELECT COUNT() FROM Account")
    before = org.store.snapshot()
    line = open_lines(org, 1)[0]
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.blng__InvoiceLine__c.update(line, {"blng__InvoiceLineStatus__c": "Cancelled"})
    assert refused.value.status == 403
    assert_error(refused.value.content, "REQUEST_LIMIT_EXCEEDED")
    assert refused.value.content[0]["message"] == "TotalRequests Limit exceeded."
    assert org.store.snapshot() == before
    assert org.api_used == 8 and org.api_remaining == 0
    answer = raw(org).get(f"{org.instance_url}/services/data/v62.0/limits")
    assert answer.status_code == 403 and answer.headers["Sforce-Limit-Info"] == "api-usage=8/5"


def test_stats_endpoint_is_not_an_api_call(sf: Salesforce, org: LocalOrg) -> None:
    """/_localorg/stats reports the counters without counting itself as an API call."""
    sf.query("SELECT Id FROM Account LIMIT 1")
    session = raw(org)
    first = session.get(f"{org.instance_url}/_localorg/stats").json()
    second = session.get(f"{org.instance_url}/_localorg/stats").json()
    assert first["api_calls"] == second["api_calls"] == 1
    assert second["api_usage"] == {"used": 1, "max": org.profile.daily_api_limit}
    assert org.api_used == 1


# --- describe -------------------------------------------------------------------------------------------------
def test_describe_invoice_gives_fields_types_picklists_and_relationships(sf: Salesforce) -> None:
    """Invoice describe: field types, "Cancelled" labelled "Canceled", updateable flags, references."""
    described = sf.blng__Invoice__c.describe()
    assert described["name"] == "blng__Invoice__c" and described["keyPrefix"] == "a1B"
    fields = {f["name"]: f for f in described["fields"]}
    status = fields["blng__InvoiceStatus__c"]
    assert_shape(status, "describe_field_picklist.json")
    assert status["type"] == "picklist" and status["restrictedPicklist"] is True and status["updateable"] is True
    values = {v["value"]: v["label"] for v in status["picklistValues"]}
    assert values["Cancelled"] == "Canceled"
    assert "Canceled" not in values and {"Draft", "Error", "Initiated", "Posted", "Post In progress"} <= set(values)
    account = fields["blng__Account__c"]
    assert_shape(account, "describe_field_reference.json")
    assert account["type"] == "reference" and account["referenceTo"] == ["Account"]
    assert account["relationshipName"] == "blng__Account__r" and account["cascadeDelete"] is True
    assert account["updateable"] is False  # master-detail: not re-parentable
    assert fields["blng__InvoiceRunCreatedBy__c"]["referenceTo"] == ["blng__InvoiceRun__c"]
    total = fields["blng__TotalAmount__c"]
    assert total["type"] == "currency" and total["updateable"] is False
    assert fields["Id"]["type"] == "id" and fields["Id"]["updateable"] is False
    assert fields["LastModifiedDate"]["type"] == "datetime" and fields["blng__InvoiceDate__c"]["type"] == "date"


def test_describe_global_lists_every_object_with_its_key_prefix(sf: Salesforce) -> None:
    """`sf.describe()` lists every sObject of the org with name, label and key prefix."""
    described = sf.describe()
    assert_shape(described, "describe_global.json")
    prefixes = {s["name"]: s["keyPrefix"] for s in described["sobjects"]}
    assert prefixes == {s.name: s.key_prefix for s in schema.SOBJECTS}
    urls = [s["urls"]["sobject"] for s in described["sobjects"]]
    assert all(url.startswith(f"/services/data/v{sf.sf_version}/sobjects/") for url in urls), urls


def test_describe_unknown_object_is_not_found(sf: Salesforce, org: LocalOrg) -> None:
    """Describing an object the org does not have answers 404 NOT_FOUND."""
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.blng__Nope__c.describe()
    assert missing.value.status == 404
    assert_error(missing.value.content, "NOT_FOUND")


# --- query ----------------------------------------------------------------------------------------------------
def _sources_query(info: ScenarioInfo) -> str:
    return format_soql(
        "SELECT Id, blng__InvoiceRunProcessingStatus__c FROM OrderItem WHERE blng__InvoiceRun__c = {} "
        "AND blng__InvoiceRunProcessingStatus__c IN {} ORDER BY Id",
        info.runs["failed_run"],
        ["Error", "In Progress"],
    )


def _stored_sources(org: LocalOrg, info: ScenarioInfo) -> set[str]:
    rows = org.store.conn.execute(
        "SELECT Id FROM OrderItem WHERE blng__InvoiceRun__c = ? AND IsDeleted = 0 "
        "AND blng__InvoiceRunProcessingStatus__c IN ('Error', 'In Progress')",
        (info.runs["failed_run"],),
    )
    return {r[0] for r in rows}


def test_query_pages_by_batch_size_with_query_more(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """batchSize=200 pages the demo's 452 failing order products in pages of at most 200 (some shorter: the
    size is a hint), following nextRecordsUrl until done."""
    org, info = demo
    sf = connect(org)
    options = {"Sforce-Query-Options": "batchSize=200"}
    pages = [sf.query(_sources_query(info), headers=options)]
    while not pages[-1]["done"]:
        pages.append(sf.query_more(pages[-1]["nextRecordsUrl"], identifier_is_url=True, headers=options))
    sizes = [len(p["records"]) for p in pages]
    assert sum(sizes) == 452 and all(0 < size <= 200 for size in sizes) and len(pages) >= 3
    assert {p["totalSize"] for p in pages} == {452}
    for page in pages[:-1]:
        assert_shape(page, "query_page.json", exact=True)
        assert page["nextRecordsUrl"].startswith(f"/services/data/v{sf.sf_version}/query/")
    assert_shape(pages[-1], "query_last_page.json", exact=True)
    found = [r["Id"] for p in pages for r in p["records"]]
    assert found == sorted(found) and set(found) == _stored_sources(org, info)
    assert all(r["attributes"]["url"].endswith(f"/OrderItem/{r['Id']}") for p in pages for r in p["records"])


def test_query_all_follows_every_page(demo: tuple[LocalOrg, ScenarioInfo]) -> None:
    """`sf.query_all` with a small batch size gathers all pages: every matching record once."""
    org, info = demo
    sf = connect(org)
    result = sf.query_all(_sources_query(info), headers={"Sforce-Query-Options": "batchSize=200"})
    assert result["done"] is True and result["totalSize"] == 452
    assert {r["Id"] for r in result["records"]} == _stored_sources(org, info)
    assert org.api_used == 3  # one query and two query_more calls


def test_query_more_with_an_unknown_locator_is_refused(sf: Salesforce) -> None:
    """A locator the org never issued answers 400 INVALID_QUERY_LOCATOR."""
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query_more("01g5gffffffffffff-200")
    assert_error(refused.value.content, "INVALID_QUERY_LOCATOR")


def test_query_all_endpoint_includes_deleted_records(sf: Salesforce, org: LocalOrg) -> None:
    """A deleted record is gone from query but returned by queryAll with IsDeleted true."""
    created = sf.Account.create({"Name": "Soon gone"})["id"]
    assert sf.Account.delete(created) == 204
    soql = format_soql("SELECT Id, IsDeleted FROM Account WHERE Id = {}", created)
    assert sf.query(soql)["totalSize"] == 0
    everything = sf.query_all(soql, include_deleted=True)
    assert everything["totalSize"] == 1 and everything["records"][0]["IsDeleted"] is True
    assert row(org, "Account", created)["IsDeleted"] == 1


def test_parent_path_fields_come_back_as_nested_records(sf: Salesforce, org: LocalOrg) -> None:
    """Parent paths (line -> invoice -> account) come back nested, with the request's API version in every url."""
    line_id = open_lines(org, 1)[0]
    result = sf.query(
        format_soql(
            "SELECT Id, blng__Invoice__r.blng__InvoiceStatus__c, blng__Invoice__r.blng__Account__r.Name "
            "FROM blng__InvoiceLine__c WHERE Id = {}",
            line_id,
        )
    )
    assert_shape(result, "query_parent_path.json", exact=True)
    record = result["records"][0]
    invoice = row(org, "blng__Invoice__c", row(org, "blng__InvoiceLine__c", line_id)["blng__Invoice__c"])
    assert record["blng__Invoice__r"]["blng__InvoiceStatus__c"] == invoice["blng__InvoiceStatus__c"]
    assert (
        record["blng__Invoice__r"]["blng__Account__r"]["Name"]
        == row(org, "Account", invoice["blng__Account__c"])["Name"]
    )
    urls = [
        record["attributes"]["url"],
        record["blng__Invoice__r"]["attributes"]["url"],
        record["blng__Invoice__r"]["blng__Account__r"]["attributes"]["url"],
    ]
    assert all(url.startswith(f"/services/data/v{sf.sf_version}/sobjects/") for url in urls), urls


def test_count_and_grouped_count_match_the_store(sf: Salesforce, org: LocalOrg) -> None:
    """COUNT() gives totalSize and no records; COUNT(Id) GROUP BY gives AggregateResult rows with expr0."""
    counted = sf.query("SELECT COUNT() FROM blng__Invoice__c")
    assert_shape(counted, "query_count.json", exact=True)
    assert counted["totalSize"] == org.store.count(spec("blng__Invoice__c")) and counted["records"] == []
    grouped = sf.query("SELECT blng__InvoiceStatus__c, COUNT(Id) FROM blng__Invoice__c GROUP BY blng__InvoiceStatus__c")
    assert_shape(grouped, "query_aggregate.json", exact=True)
    by_status = {r["blng__InvoiceStatus__c"]: r["expr0"] for r in grouped["records"]}
    assert by_status == org.store.group_counts("blng__Invoice__c", "blng__InvoiceStatus__c")
    assert grouped["totalSize"] == len(by_status)


@pytest.mark.parametrize(
    ("soql", "code", "recording"),
    [
        ("SELECT Id FROM", "MALFORMED_QUERY", None),
        ("SELEC Id FROM Account", "MALFORMED_QUERY", None),
        ("SELECT Foo FROM Account", "INVALID_FIELD", None),
        ("SELECT Id FROM Account WHERE blng__Nope__c = 'x'", "INVALID_FIELD", None),
        ("SELECT Id FROM Nope__c", "INVALID_TYPE", "MALFORMED_QUERY"),
    ],
)
def test_bad_soql_answers_400_with_the_error_array(sf: Salesforce, soql: str, code: str, recording: str | None) -> None:
    """Unparseable SOQL is MALFORMED_QUERY, an unknown field INVALID_FIELD, an unknown object INVALID_TYPE: 400."""
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query(soql)
    assert refused.value.status == 400
    assert_error(refused.value.content, code, recording)


# --- single-record CRUD ---------------------------------------------------------------------------------------
def test_create_read_update_delete_one_record() -> None:
    """Create answers 201 {id, success, errors}; PATCH 204 moves LastModifiedDate; after DELETE the id is gone."""
    clock = Clock()
    org = LocalOrg(Store(clock=clock))
    sf = connect(org)
    created = sf.Account.create({"Name": "Acme"})
    assert_shape(created, "sobject_create.json", exact=True)
    new_id = created["id"]
    assert len(new_id) == 18 and ids.is_valid(new_id) and new_id.startswith(spec("Account").key_prefix)
    fetched = sf.Account.get(new_id)
    assert_shape(fetched, "sobject_record.json", exact=True)
    assert fetched["Name"] == "Acme" and fetched["IsDeleted"] is False

    clock.tick(90)
    assert sf.Account.update(new_id, {"Name": "Acme Ltd"}) == 204
    stored = row(org, "Account", new_id)
    assert stored["Name"] == "Acme Ltd"
    # The org's clock runs clock_skew_s (-45 s by default) off the client's: every stamp it writes is skewed.
    assert stored["LastModifiedDate"] == stored["SystemModstamp"] == "2026-11-26T07:00:45.000+0000"
    assert stored["CreatedDate"] == "2026-11-26T06:59:15.000+0000"

    assert sf.Account.delete(new_id) == 204
    assert row(org, "Account", new_id)["IsDeleted"] == 1
    for attempt in (
        lambda: sf.Account.get(new_id),
        lambda: sf.Account.update(new_id, {"Name": "ghost"}),
        lambda: sf.Account.delete(new_id),
    ):
        with pytest.raises(SalesforceResourceNotFound) as gone:
            attempt()
        assert_error(gone.value.content, "ENTITY_IS_DELETED")
    assert row(org, "Account", new_id)["Name"] == "Acme Ltd"


def test_ids_carry_the_key_prefix_of_their_object(sf: Salesforce, org: LocalOrg) -> None:
    """Every created id is a valid 18-character id starting with its object's key prefix."""
    account = sf.Account.create({"Name": "Prefixed"})["id"]
    run = sf.blng__InvoiceRun__c.create({"Name": "Run", "blng__Status__c": "Started"})["id"]
    invoice = sf.blng__Invoice__c.create({"Name": "INV", "blng__Account__c": account})["id"]
    for sobject, new_id in (("Account", account), ("blng__InvoiceRun__c", run), ("blng__Invoice__c", invoice)):
        assert len(new_id) == 18 and ids.to18(new_id[:15]) == new_id
        assert new_id[:3] == spec(sobject).key_prefix
        assert row(org, sobject, new_id)["Id"] == new_id


@pytest.mark.parametrize(
    "bad_id",
    [
        "001-not-an-id",  # not an id at all
        "0015g0000000001XYZ",  # checksum does not match
        "a1B5g0000000001EAA",  # a valid id of another object (invoice) on the Account endpoint
        "0015g00000000zzAAI",  # well formed, no such record
    ],
)
def test_bad_record_ids_in_the_url_are_not_found(sf: Salesforce, org: LocalOrg, bad_id: str) -> None:
    """A malformed, foreign or unknown id in a record URL answers 404 NOT_FOUND, for reads and writes alike."""
    before = org.store.snapshot()
    for attempt in (
        lambda: sf.Account.get(bad_id),
        lambda: sf.Account.update(bad_id, {"Name": "x"}),
        lambda: sf.Account.delete(bad_id),
    ):
        with pytest.raises(SalesforceResourceNotFound) as missing:
            attempt()
        assert_error(missing.value.content, "NOT_FOUND")
    assert org.store.snapshot() == before


def test_malformed_reference_value_is_malformed_id(sf: Salesforce, org: LocalOrg) -> None:
    """A reference field given a value that is not an id answers 400 MALFORMED_ID naming the field."""
    before = org.store.snapshot()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.blng__Invoice__c.create({"Name": "INV", "blng__Account__c": "001-not-an-id"})
    assert_error(refused.value.content, "MALFORMED_ID")
    assert refused.value.content[0]["fields"] == ["blng__Account__c"]
    assert org.store.snapshot() == before


def test_unknown_field_is_invalid_field(sf: Salesforce, org: LocalOrg) -> None:
    """Creating or updating with a field the object does not have answers 400 INVALID_FIELD."""
    before = org.store.snapshot()
    for attempt in (
        lambda: sf.Account.create({"Name": "x", "Foo__c": 1}),
        lambda: sf.Account.update(an_account(org), {"Foo__c": 1}),
    ):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            attempt()
        assert_error(refused.value.content, "INVALID_FIELD", "INVALID_FIELD_ON_WRITE")
    assert org.store.snapshot() == before


def test_restricted_picklist_takes_the_api_value_not_the_label(sf: Salesforce, org: LocalOrg) -> None:
    """The label "Canceled" fails INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST; the API value "Cancelled" is written."""
    invoice = draft_invoice(org)
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.blng__Invoice__c.update(invoice, {"blng__InvoiceStatus__c": "Canceled"})
    assert_error(refused.value.content, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    assert refused.value.content[0]["fields"] == ["blng__InvoiceStatus__c"]
    assert row(org, "blng__Invoice__c", invoice)["blng__InvoiceStatus__c"] == "Draft"
    assert sf.blng__Invoice__c.update(invoice, {"blng__InvoiceStatus__c": "Cancelled"}) == 204
    assert row(org, "blng__Invoice__c", invoice)["blng__InvoiceStatus__c"] == "Cancelled"


def test_posted_invoice_cannot_be_changed_through_rest(sf: Salesforce, org: LocalOrg) -> None:
    """The Billing guard refuses a PATCH or DELETE of a Posted invoice with FIELD_CUSTOM_VALIDATION_EXCEPTION."""
    invoice, _ = posted_invoice_with_line(org)
    before = org.store.snapshot()
    for attempt in (
        lambda: sf.blng__Invoice__c.update(invoice, {"blng__InvoiceStatus__c": "Cancelled"}),
        lambda: sf.blng__Invoice__c.delete(invoice),
    ):
        with pytest.raises(SalesforceMalformedRequest) as refused:
            attempt()
        assert_error(refused.value.content, "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert org.store.snapshot() == before


# --- sObject collections --------------------------------------------------------------------------------------
def test_collections_patch_of_200_records_succeeds(sf: Salesforce, org: LocalOrg) -> None:
    """A collections PATCH of 200 records answers one successful row per record, in request order."""
    lines = open_lines(org, 200)
    results = sf.restful("composite/sobjects", method="PATCH", json={"records": [cancel(i) for i in lines]})
    assert [r["id"] for r in results] == lines
    assert all(r == {"id": i, "success": True, "errors": []} for r, i in zip(results, lines, strict=True))
    assert {line_status(org, i) for i in lines} == {"Cancelled"}
    assert org.api_used == 1


def test_collections_of_201_records_are_refused_whole(sf: Salesforce, org: LocalOrg) -> None:
    """201 records answer 400 EXCEEDED_ID_LIMIT and no record changes."""
    lines = open_lines(org, 201)
    before = org.store.snapshot()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite/sobjects", method="PATCH", json={"records": [cancel(i) for i in lines]})
    assert_error(refused.value.content, "EXCEEDED_ID_LIMIT")
    assert org.store.snapshot() == before


def test_collections_without_all_or_none_apply_the_good_rows(org: LocalOrg) -> None:
    """allOrNone false: HTTP 200, row results in request order, good rows applied, bad rows with a statusCode."""
    good_a, good_b = open_lines(org, 2)
    _, posted_line = posted_invoice_with_line(org)
    unknown_field = {**cancel(open_lines(org, 3)[2]), "Foo__c": 1}
    bad_picklist = {**cancel(open_lines(org, 4)[3]), "blng__InvoiceLineStatus__c": "Canceled"}
    rows = [
        cancel(good_a),
        cancel(posted_line),
        {"attributes": {"type": "blng__InvoiceLine__c"}, "id": "a1Cnot-an-id", "blng__InvoiceLineStatus__c": "X"},
        unknown_field,
        bad_picklist,
        {"attributes": {"type": "blng__Nope__c"}, "id": open_lines(org, 5)[4], "Name": "x"},
        cancel(good_b),
    ]
    answer = raw(org).patch(
        f"{org.instance_url}/services/data/v62.0/composite/sobjects", json={"allOrNone": False, "records": rows}
    )
    assert answer.status_code == 200
    results = answer.json()
    assert_shape(results, "collections_mixed.json", exact=True)
    assert [r.get("id") for r in results] == [good_a, posted_line, None, rows[3]["id"], rows[4]["id"], None, good_b]
    assert [r["success"] for r in results] == [True, False, False, False, False, False, True]
    for result, code in zip(
        results[1:6],
        [
            "FIELD_CUSTOM_VALIDATION_EXCEPTION",
            "MALFORMED_ID",
            "INVALID_FIELD",
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "INVALID_TYPE",
        ],
        strict=True,
    ):
        assert_row_error(result, code)
    assert line_status(org, good_a) == line_status(org, good_b) == "Cancelled"
    assert line_status(org, posted_line) == "Draft"
    assert line_status(org, rows[3]["id"]) != "Cancelled" and line_status(org, rows[4]["id"]) != "Cancelled"


def test_collections_all_or_none_rolls_back_every_row(sf: Salesforce, org: LocalOrg) -> None:
    """allOrNone true with one bad row: that row has its error, the others ALL_OR_NONE_OPERATION_ROLLED_BACK."""
    lines = open_lines(org, 4)
    rows = [cancel(i) for i in lines]
    rows[2]["blng__InvoiceLineStatus__c"] = "Canceled"
    before = org.store.snapshot()
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": rows})
    assert_shape(results, "collections_all_or_none.json", exact=True)
    assert [r["id"] for r in results] == lines
    assert_row_error(results[2], "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    for index in (0, 1, 3):
        assert_row_error(results[index], "ALL_OR_NONE_OPERATION_ROLLED_BACK")
    assert org.store.snapshot() == before


def test_collections_cannot_change_a_posted_invoice_or_its_lines(sf: Salesforce, org: LocalOrg) -> None:
    """The Billing guard fails a Posted invoice and its lines with FIELD_CUSTOM_VALIDATION_EXCEPTION; they stay."""
    invoice, line = posted_invoice_with_line(org)
    before = org.store.snapshot()
    results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={
            "records": [
                {"attributes": {"type": "blng__Invoice__c"}, "id": invoice, "blng__InvoiceStatus__c": "Cancelled"},
                cancel(line),
            ]
        },
    )
    for result in results:
        assert_row_error(result, "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert org.store.snapshot() == before


def test_collections_create_then_delete_by_ids(sf: Salesforce, org: LocalOrg) -> None:
    """Collections POST creates rows (new ids in order, failures without an id); DELETE ?ids= deletes them."""
    created = sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "records": [
                {"attributes": {"type": "Account"}, "Name": "First"},
                {"attributes": {"type": "Account"}, "Name": "Bad", "Foo__c": 1},
                {"attributes": {"type": "Account"}, "Name": "Second"},
            ]
        },
    )
    assert_shape(created, "collections_mixed.json", exact=True)
    assert [r["success"] for r in created] == [True, False, True] and "id" not in created[1]
    assert_row_error(created[1], "INVALID_FIELD")
    new_ids = [created[0]["id"], created[2]["id"]]
    assert [row(org, "Account", i)["Name"] for i in new_ids] == ["First", "Second"]
    assert all(i.startswith("001") and ids.is_valid(i) for i in new_ids)

    deleted = sf.restful("composite/sobjects", method="DELETE", params={"ids": ",".join([*new_ids, "001-bad"])})
    assert [r.get("id") for r in deleted] == [*new_ids, None]
    assert [r["success"] for r in deleted] == [True, True, False]
    assert_row_error(deleted[2], "MALFORMED_ID")
    assert [row(org, "Account", i)["IsDeleted"] for i in new_ids] == [1, 1]


# --- composite ------------------------------------------------------------------------------------------------
def _patch_line(version: str, line_id: str, reference: str, status: str = "Cancelled") -> dict[str, Any]:
    return {
        "method": "PATCH",
        "url": f"/services/data/v{version}/sobjects/blng__InvoiceLine__c/{line_id}",
        "referenceId": reference,
        "body": {"blng__InvoiceLineStatus__c": status},
    }


def test_composite_runs_25_subrequests_as_one_api_call(sf: Salesforce, org: LocalOrg) -> None:
    """25 subrequests all run, answer 204 each, and cost one API call."""
    lines = open_lines(org, 25)
    subrequests = [_patch_line(sf.sf_version, i, f"line{n}") for n, i in enumerate(lines)]
    answer = sf.restful("composite", method="POST", json={"compositeRequest": subrequests})
    assert [r["httpStatusCode"] for r in answer["compositeResponse"]] == [204] * 25
    assert sorted(r["referenceId"] for r in answer["compositeResponse"]) == sorted(f"line{n}" for n in range(25))
    assert {line_status(org, i) for i in lines} == {"Cancelled"}
    assert org.api_used == 1 and org.stats.snapshot()["api_calls_by_endpoint"] == {"composite": 1}


def test_composite_of_26_subrequests_is_refused_whole(sf: Salesforce, org: LocalOrg) -> None:
    """26 subrequests answer 400 and none of them runs."""
    lines = open_lines(org, 26)
    before = org.store.snapshot()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful(
            "composite",
            method="POST",
            json={"compositeRequest": [_patch_line(sf.sf_version, i, f"r{n}") for n, i in enumerate(lines)]},
        )
    assert_error(refused.value.content, "LIMIT_EXCEEDED")
    assert org.store.snapshot() == before


def test_composite_with_six_collection_or_query_subrequests_is_refused(sf: Salesforce, org: LocalOrg) -> None:
    """More than five collections or query subrequests in one composite answer 400 and change nothing."""
    lines = open_lines(org, 3)
    version = sf.sf_version
    heavy = [
        {
            "method": "PATCH",
            "url": f"/services/data/v{version}/composite/sobjects",
            "referenceId": f"c{n}",
            "body": {"records": [cancel(line)]},
        }
        for n, line in enumerate(lines)
    ] + [
        {"method": "GET", "url": f"/services/data/v{version}/query?q=SELECT+Id+FROM+Account", "referenceId": f"q{n}"}
        for n in range(3)
    ]
    before = org.store.snapshot()
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.restful("composite", method="POST", json={"compositeRequest": heavy})
    assert_error(refused.value.content, "LIMIT_EXCEEDED")
    assert org.store.snapshot() == before
    # Five are allowed.
    answer = sf.restful("composite", method="POST", json={"compositeRequest": heavy[1:]})
    assert [r["httpStatusCode"] for r in answer["compositeResponse"]] == [200] * 5
    assert [line_status(org, i) for i in lines] == [line_status(org, lines[0]), "Cancelled", "Cancelled"]


def test_composite_substitutes_references_from_earlier_subrequests(sf: Salesforce, org: LocalOrg) -> None:
    """`@{newAccount.id}` from a create is substituted into later URLs; the create answers 201 with Location."""
    version = sf.sf_version
    answer = sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                {
                    "method": "POST",
                    "url": f"/services/data/v{version}/sobjects/Account",
                    "referenceId": "newAccount",
                    "body": {"Name": "Acme"},
                },
                {
                    "method": "PATCH",
                    "url": f"/services/data/v{version}/sobjects/Account/@{{newAccount.id}}",
                    "referenceId": "renameAccount",
                    "body": {"Name": "Acme (renamed)"},
                },
                {
                    "method": "GET",
                    "url": f"/services/data/v{version}/sobjects/Account/@{{newAccount.id}}",
                    "referenceId": "readAccount",
                },
            ]
        },
    )
    assert_shape(answer, "composite_response.json")
    created, renamed, read = answer["compositeResponse"]
    for entry in answer["compositeResponse"]:
        assert set(entry) == {"body", "httpHeaders", "httpStatusCode", "referenceId"}
    new_id = created["body"]["id"]
    assert created["httpStatusCode"] == 201
    assert created["httpHeaders"] == {"Location": f"/services/data/v{version}/sobjects/Account/{new_id}"}
    assert renamed["httpStatusCode"] == 204 and renamed["body"] is None
    assert read["httpStatusCode"] == 200 and read["body"]["Name"] == "Acme (renamed)"
    assert row(org, "Account", new_id)["Name"] == "Acme (renamed)"
    assert org.api_used == 1


def test_composite_all_or_none_halts_the_others_and_rolls_back(sf: Salesforce, org: LocalOrg) -> None:
    """allOrNone true: a failing subrequest keeps its error, every other one is PROCESSING_HALTED, nothing changes."""
    first, last = open_lines(org, 2)
    invoice, _ = posted_invoice_with_line(org)
    version = sf.sf_version
    before = org.store.snapshot()
    answer = sf.restful(
        "composite",
        method="POST",
        json={
            "allOrNone": True,
            "compositeRequest": [
                _patch_line(version, first, "first"),
                {
                    "method": "PATCH",
                    "url": f"/services/data/v{version}/sobjects/blng__Invoice__c/{invoice}",
                    "referenceId": "posted",
                    "body": {"blng__InvoiceStatus__c": "Cancelled"},
                },
                _patch_line(version, last, "last"),
            ],
        },
    )
    assert_shape(answer, "composite_halted.json", exact=True)
    entries = {e["referenceId"]: e for e in answer["compositeResponse"]}
    assert sorted(entries) == ["first", "last", "posted"]
    assert {e["httpStatusCode"] for e in entries.values()} == {400}
    assert_error(entries["posted"]["body"], "FIELD_CUSTOM_VALIDATION_EXCEPTION")
    assert [entries[r]["body"][0]["errorCode"] for r in ("first", "last")] == ["PROCESSING_HALTED"] * 2
    assert org.store.snapshot() == before


def test_composite_reference_to_a_failed_subrequest_halts_only_its_dependents(sf: Salesforce, org: LocalOrg) -> None:
    """Without allOrNone, a subrequest whose reference failed gets its own 400; the others keep their answers."""
    done, _ = open_lines(org, 2)
    version = sf.sf_version
    answer = sf.restful(
        "composite",
        method="POST",
        json={
            "compositeRequest": [
                _patch_line(version, done, "done"),
                {
                    "method": "POST",
                    "url": f"/services/data/v{version}/sobjects/Account",
                    "referenceId": "badCreate",
                    "body": {"Foo__c": 1},
                },
                {
                    "method": "PATCH",
                    "url": f"/services/data/v{version}/sobjects/Account/@{{badCreate.id}}",
                    "referenceId": "dependent",
                    "body": {"Name": "never"},
                },
            ]
        },
    )
    entries = answer["compositeResponse"]
    assert [e["httpStatusCode"] for e in entries] == [204, 400, 400]
    assert_error(entries[1]["body"], "INVALID_FIELD", "INVALID_FIELD_ON_WRITE")
    assert entries[2]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert line_status(org, done) == "Cancelled"
    assert org.store.count(spec("Account")) == 51


# --- bad input changes nothing --------------------------------------------------------------------------------
BAD_INPUT: list[tuple[str, str, str, bytes | None, str, int, str]] = [
    # (what, method, path under /services/data/v62.0, body, token, status, errorCode)
    ("malformed JSON on PATCH", "PATCH", "/sobjects/Account/{account}", b'{"Name": ', "good", 400, "JSON_PARSER_ERROR"),
    ("malformed JSON on create", "POST", "/sobjects/Account", b'{"Name": "x",}', "good", 400, "JSON_PARSER_ERROR"),
    ("malformed JSON on collections", "PATCH", "/composite/sobjects", b"{not json", "good", 400, "JSON_PARSER_ERROR"),
    ("malformed JSON on composite", "POST", "/composite", b"[1,", "good", 400, "JSON_PARSER_ERROR"),
    ("collections body without records", "PATCH", "/composite/sobjects", b"{}", "good", 400, "JSON_PARSER_ERROR"),
    ("unknown object on create", "POST", "/sobjects/Nope__c", b'{"Name": "x"}', "good", 404, "NOT_FOUND"),
    ("unknown object on PATCH", "PATCH", "/sobjects/Nope__c/{account}", b'{"Name": "x"}', "good", 404, "NOT_FOUND"),
    ("malformed id", "PATCH", "/sobjects/Account/001-bad", b'{"Name": "x"}', "good", 404, "NOT_FOUND"),
    ("id of another object", "DELETE", "/sobjects/Account/{invoice}", None, "good", 404, "NOT_FOUND"),
    ("bad SOQL", "GET", "/query?q=SELEC+Id+FROM+Account", None, "good", 400, "MALFORMED_QUERY"),
    ("wrong token", "PATCH", "/sobjects/Account/{account}", b'{"Name": "x"}', "wrong", 401, "INVALID_SESSION_ID"),
    ("wrong token, delete", "DELETE", "/sobjects/Account/{account}", None, "wrong", 401, "INVALID_SESSION_ID"),
]


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "token", "status", "code"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT]
)
def test_bad_input_changes_nothing(
    org: LocalOrg, what: str, method: str, path: str, body: bytes | None, token: str, status: int, code: str
) -> None:
    """A request refused as a whole answers Salesforce's error array and leaves every record as it was."""
    before = org.store.snapshot()
    target = path.format(account=an_account(org), invoice=draft_invoice(org))
    session = raw(org, None if token == "good" else "00D5g0000000001!wrong")
    answer = session.request(
        method,
        f"{org.instance_url}/services/data/v62.0{target}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == status, answer.text
    assert_error(answer.json(), code, "MALFORMED_QUERY" if code == "MALFORMED_QUERY" else None)
    assert org.store.snapshot() == before


def test_wrong_token_raises_expired_session_in_simple_salesforce(org: LocalOrg) -> None:
    """simple-salesforce given a wrong token raises SalesforceExpiredSession (401 INVALID_SESSION_ID)."""
    sf = connect(org, token="00D5g0000000001!wrong")
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.query("SELECT Id FROM Account")
    assert expired.value.status == 401
    assert_error(expired.value.content, "INVALID_SESSION_ID")
    assert org.api_used == 0


def test_multi_select_picklist_is_written_as_a_set_of_restricted_values(sf: Salesforce, org: LocalOrg) -> None:
    """ "B;A" is stored and read back as "A;B"; one value the field lacks refuses the whole write, naming it."""
    created = sf.blng__InvoiceScheduler__c.create(
        {"Name": "Weekly", "blng__Type__c": "Weekly", "blng__InvoiceBatches__c": "Batch B;Batch A"}
    )
    scheduler = created["id"]
    assert sf.blng__InvoiceScheduler__c.get(scheduler)["blng__InvoiceBatches__c"] == "Batch A;Batch B"
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.blng__InvoiceScheduler__c.update(scheduler, {"blng__InvoiceBatches__c": "Batch A;Batch Z"})
    assert_error(refused.value.content, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
    assert refused.value.content[0]["message"].endswith("bad value for restricted picklist field: Batch Z")
    assert row(org, "blng__InvoiceScheduler__c", scheduler)["blng__InvoiceBatches__c"] == "Batch A;Batch B"


def test_checkbox_left_out_on_create_is_false(sf: Salesforce, org: LocalOrg) -> None:
    """SBQQ__Activated__c is not nillable and defaulted on create, as a checkbox is."""
    order = sf.query("SELECT Id FROM Order LIMIT 1")["records"][0]["Id"]
    created = sf.OrderItem.create({"OrderId": order, "Quantity": 1, "UnitPrice": 10})
    assert sf.OrderItem.get(created["id"])["SBQQ__Activated__c"] is False
    described = {f["name"]: f for f in sf.OrderItem.describe()["fields"]}
    assert described["SBQQ__Activated__c"]["defaultedOnCreate"] is True
    assert described["SBQQ__Activated__c"]["nillable"] is False
