"""The Composite boundary on documented behaviour only: answers matched by referenceId whatever their order,
queries inside Composite read to the end, `/limits` never inside Composite, and subrequests judged one by one.

The fake org here is strict where Salesforce does not promise order: it answers compositeResponse entries in
reverse and hands out query pages shorter than asked.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
import structlog
from pydantic import SecretStr

from sfcleanup import billing, logs, preflight
from sfcleanup.changes import Change
from sfcleanup.config import AuthMode, OrgSettings, WriteSettings
from sfcleanup.errors import ApiError, TransientExhausted
from sfcleanup.journal import Journal
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.read import remaining_by_status
from sfcleanup.salesforce.retry import RetryPolicy, no_wait_policy
from sfcleanup.salesforce.write import CompositeWriter

INSTANCE = "https://acme.my.salesforce.com"
API = f"{INSTANCE}/services/data/v62.0"
Answer = Callable[[dict[str, Any]], tuple[int, Any]]
LOCKED = [{"errorCode": "UNABLE_TO_LOCK_ROW", "message": "unable to obtain exclusive access to this record"}]
UNAVAILABLE = [{"errorCode": "SERVER_UNAVAILABLE", "message": "Server unavailable"}]


def _client(retry: RetryPolicy | None = None) -> SalesforceClient:
    connector = Connector(
        OrgSettings(auth=AuthMode.TOKEN), requests.Session(), lambda: OrgSession(INSTANCE, SecretStr("t0ken-first"))
    )
    return SalesforceClient(connector, api_version="62.0", retry=retry or no_wait_policy(), timeout_s=5)


class ShuffledComposite:
    """A Composite endpoint that answers each subrequest with `answer` and lists the results in reverse."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        body = json.loads(request.body or b"{}")
        self.bodies.append(body)
        entries = []
        for sub in body["compositeRequest"]:
            status, payload = self.answer(sub)
            entries.append(
                {"body": payload, "httpHeaders": {}, "httpStatusCode": status, "referenceId": sub["referenceId"]}
            )
        return 200, {}, json.dumps({"compositeResponse": entries[::-1]})

    def register(self) -> ShuffledComposite:
        responses.add_callback(responses.POST, f"{API}/composite", callback=self)
        return self


def _echo_path(sub: dict[str, Any]) -> tuple[int, Any]:
    return 200, {"path": sub["url"].rsplit("/v62.0/", 1)[1]}


@responses.activate
def test_get_many_matches_shuffled_results_by_reference_id() -> None:
    """Results listed in another order than the subrequests still come back, each for its own path."""
    ShuffledComposite(_echo_path).register()
    paths = [f"sobjects/{name}/describe/" for name in ("A__c", "B__c", "C__c")]
    assert [b["path"] for b in _client().get_many("describe", paths)] == paths


@responses.activate
def test_short_query_page_inside_composite_is_followed() -> None:
    """A query subrequest answered with one short page is read to its end with plain GETs of nextRecordsUrl."""

    def answer(sub: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"done": False, "nextRecordsUrl": "/services/data/v62.0/query/01gQ-1", "records": [{"n": 1}]}

    ShuffledComposite(answer).register()
    responses.get(
        f"{API}/query/01gQ-1",
        json={"done": False, "nextRecordsUrl": "/services/data/v62.0/query/01gQ-2", "records": [{"n": 2}]},
    )
    responses.get(f"{API}/query/01gQ-2", json={"done": True, "records": [{"n": 3}]})
    (page,) = _client().get_many("runs", ["query/?q=SELECT+Id+FROM+blng__InvoiceRun__c"])
    assert [r["n"] for r in page["records"]] == [1, 2, 3]
    assert page["done"] is True


@responses.activate
def test_verify_counts_are_matched_to_their_objects_by_reference_id() -> None:
    """The four verify counts, answered in reverse, are each attributed to the object whose query asked for them."""

    def answer(sub: dict[str, Any]) -> tuple[int, Any]:
        sobject = next(name for name in billing.RULE_BY_OBJECT if f"FROM+{name}" in sub["url"])
        status_field = billing.RULE_BY_OBJECT[sobject].status_field
        return 200, {"done": True, "records": [{status_field: sobject, "n": len(sobject)}]}

    ShuffledComposite(answer).register()
    counts = remaining_by_status(_client(), "a1A5g0000000001EAA")
    assert counts == {sobject: {sobject: len(sobject)} for sobject in counts}
    assert len(counts) == 4


def _change(n: int, group: str) -> Change:
    rule = billing.RULE_BY_OBJECT[billing.INVOICE]
    return Change(
        rule.sobject, f"a1B5g00000000{n:02d}AAA", group, {rule.status_field: "Draft"}, {rule.status_field: "Cancelled"}
    )


@responses.activate
def test_writer_pairs_collections_with_their_own_results_when_shuffled(tmp_path: Path) -> None:
    """Two collections in one call, answered in reverse: each record gets its own collection's row result."""
    failing = _change(3, "acc2").id

    def answer(sub: dict[str, Any]) -> tuple[int, Any]:
        rows = []
        for record in sub["body"]["records"]:
            ok = record["id"] != failing
            errors = [] if ok else [{"statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "no"}]
            rows.append({"id": record["id"], "success": ok, "errors": errors})
        return 200, rows

    ShuffledComposite(answer).register()
    changes = [_change(1, "acc1"), _change(2, "acc1"), _change(3, "acc2")]
    with Journal(tmp_path, "run1") as journal:
        result = CompositeWriter(_client(), WriteSettings(batch_size=2), journal).apply(
            "invoices", billing.RULE_BY_OBJECT[billing.INVOICE], changes
        )
    assert result.updated == 2
    assert [(f.id, f.code) for f in result.failures] == [(failing, "FIELD_CUSTOM_VALIDATION_EXCEPTION")]


@responses.activate
def test_limits_never_travel_inside_composite() -> None:
    """The runs are read with a plain query; the allowance comes from its Sforce-Limit-Info header, no Composite."""
    run = {"attributes": {"type": billing.INVOICE_RUN}, "Id": "a1A5g0000000001EAA", "blng__Status__c": "Failed"}
    responses.get(
        f"{API}/query/",
        json={"done": True, "totalSize": 1, "records": [run]},
        headers={"Sforce-Limit-Info": "api-usage=250/1000"},
    )
    runs, limits = preflight.read_runs_and_limits(_client(), ["a1A5g0000000001EAA"])
    assert list(runs) == ["a1A5g0000000001EAA"]
    assert limits["DailyApiRequests"] == {"Max": 1000, "Remaining": 750}
    assert all("/composite" not in call.request.url for call in responses.calls)


@responses.activate
def test_limits_come_from_a_plain_get_when_no_header_says() -> None:
    """Without a Sforce-Limit-Info header, the allowance is asked of GET /limits on its own."""
    responses.get(f"{API}/query/", json={"done": True, "totalSize": 0, "records": []})
    responses.get(f"{API}/limits/", json={"DailyApiRequests": {"Max": 5000, "Remaining": 4000}})
    _, limits = preflight.read_runs_and_limits(_client(), ["a1A5g0000000001EAA"])
    assert limits["DailyApiRequests"]["Remaining"] == 4000
    assert all("/composite" not in call.request.url for call in responses.calls)


@responses.activate
def test_finding_7_get_many_retries_a_503_subrequest() -> None:
    """A subrequest answered 503 is asked again, alone; the others are not asked twice."""
    asked: list[str] = []

    def answer(sub: dict[str, Any]) -> tuple[int, Any]:
        asked.append(sub["url"])
        if "B__c" in sub["url"] and asked.count(sub["url"]) == 1:
            return 503, UNAVAILABLE
        return _echo_path(sub)

    ShuffledComposite(answer).register()
    paths = [f"sobjects/{name}/describe/" for name in ("A__c", "B__c")]
    assert [b["path"] for b in _client().get_many("describe", paths)] == paths
    assert sorted(asked) == sorted([f"/services/data/v62.0/{paths[0]}", *[f"/services/data/v62.0/{paths[1]}"] * 2])


@responses.activate
def test_get_many_subrequest_refused_for_good_is_an_api_error() -> None:
    """A subrequest refused for a reason retrying will not fix raises ApiError with Salesforce's code."""
    ShuffledComposite(lambda sub: (404, [{"errorCode": "NOT_FOUND", "message": "gone"}])).register()
    with pytest.raises(ApiError, match="NOT_FOUND"):
        _client().get_many("describe", ["sobjects/A__c/describe/"])


@responses.activate
def test_finding_7_update_many_does_not_sleep_after_its_last_attempt() -> None:
    """Records locked through every attempt cost one pause between attempts, none after the last."""
    pauses: list[float] = []
    fake = ShuffledComposite(lambda sub: (400, LOCKED)).register()
    client = _client(RetryPolicy(max_attempts=3, initial_s=0.0, max_backoff_s=0.0, sleep=pauses.append))
    with pytest.raises(TransientExhausted):
        client.update_many("update status", [(billing.INVOICE_RUN, "a1A5g0000000001EAA", {"x": 1})])
    assert len(fake.bodies) == 3
    assert len(pauses) == 2


@responses.activate
def test_update_many_judges_each_update_on_its_own_result() -> None:
    """A best-effort update that stays locked is logged and left; the main update's success is what counts."""
    lease_id = "a1E5g0000000001AAA"

    def answer(sub: dict[str, Any]) -> tuple[int, Any]:
        return (400, LOCKED) if lease_id in sub["url"] else (204, None)

    fake = ShuffledComposite(answer).register()
    with structlog.testing.capture_logs() as captured:
        _client().update_many(
            "update status",
            [(billing.INVOICE_RUN, "a1A5g0000000001EAA", {billing.CLEANUP_STATUS: "Completed"})],
            best_effort=[(billing.ERROR_LOG, lease_id, {"blng__ErrorCode__c": "SFCLEANUP_LEASE_RELEASED"})],
        )
    assert any(e["event"] == "salesforce.best_effort_update_failed" and e["record"] == lease_id for e in captured)
    resent = [sub["url"] for body in fake.bodies[1:] for sub in body["compositeRequest"]]
    assert resent and all(lease_id in url for url in resent)


@responses.activate
def test_finding_7_tokens_from_a_relogin_are_masked_in_logs() -> None:
    """The token a re-login brings is masked in every later log line, like the first one."""
    tokens = iter(["00Dfirst!aaaaaaaaaaaa", "00Drelogin!bbbbbbbbbbbb"])
    connector = Connector(
        OrgSettings(auth=AuthMode.CLIENT_CREDENTIALS),
        requests.Session(),
        lambda: OrgSession(INSTANCE, SecretStr(next(tokens))),
    )
    client = SalesforceClient(connector, api_version="62.0", retry=no_wait_policy(), timeout_s=5)
    responses.get(f"{API}/limits/", status=401, json=[{"errorCode": "INVALID_SESSION_ID", "message": "expired"}])
    responses.get(f"{API}/limits/", json={"DailyApiRequests": {"Max": 1, "Remaining": 1}})
    client.limits()
    stream = io.StringIO()
    logs.configure("debug", "json", stream)
    structlog.get_logger().info("x", url="https://h/?sid=00Drelogin!bbbbbbbbbbbb")
    assert "bbbbbbbbbbbb" not in stream.getvalue()
