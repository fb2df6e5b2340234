"""The client's error classes and retry decisions, against recorded Salesforce bodies served by `responses`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from pydantic import SecretStr

from sfcleanup import billing
from sfcleanup.changes import Change
from sfcleanup.config import AuthMode, OrgSettings, WriteSettings
from sfcleanup.errors import AmbiguousWrite, ApiError, AuthFailed, DailyLimitReached, TransientExhausted
from sfcleanup.journal import Journal, read_entries
from sfcleanup.salesforce.classify import RowVerdict, Verdict, classify, classify_row
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import no_wait_policy
from sfcleanup.salesforce.write import CompositeWriter

FIXTURES = Path(__file__).parent / "fixtures" / "salesforce"
INSTANCE = "https://acme.my.salesforce.com"
API = f"{INSTANCE}/services/data/v62.0"


def body(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def make_client(*, refreshable: bool = False, attempts: int = 4) -> tuple[SalesforceClient, list[int]]:
    logins: list[int] = []

    def login() -> OrgSession:
        logins.append(1)
        return OrgSession(INSTANCE, SecretStr(f"token-{len(logins)}"))

    auth = AuthMode.CLIENT_CREDENTIALS if refreshable else AuthMode.TOKEN
    connector = Connector(OrgSettings(auth=auth), requests.Session(), login)
    client = SalesforceClient(connector, api_version="62.0", retry=no_wait_policy(attempts), timeout_s=5)
    return client, logins


@responses.activate
def test_query_pages_follow_next_records_url() -> None:
    """A query returns every page, following nextRecordsUrl to the end, with the batch size header sent."""
    responses.get(f"{API}/query/", json=body("query_page_1.json"))
    responses.get(f"{API}/query/01g5gABCDEF-2", json=body("query_page_2.json"))
    client, _ = make_client()
    records = client.query_all("SELECT Id FROM blng__Invoice__c")
    assert [r["Id"][-6:] for r in records] == ["001AAA", "002AAA", "003AAA"]
    assert responses.calls[0].request.headers["Sforce-Query-Options"] == "batchSize=2000"
    assert client.usage.calls == 2


@responses.activate
def test_503_is_retried_then_succeeds() -> None:
    """SERVER_UNAVAILABLE is transient: the call is retried and its eventual answer returned."""
    responses.get(f"{API}/limits/", status=503, json=body("server_unavailable.json"))
    responses.get(f"{API}/limits/", json={"DailyApiRequests": {"Max": 100, "Remaining": 90}})
    client, _ = make_client()
    assert client.limits()["DailyApiRequests"]["Remaining"] == 90
    assert len(responses.calls) == 2


@responses.activate
def test_concurrent_limit_403_is_retried() -> None:
    """The concurrent-request 403 is retried with backoff, not treated as the daily limit."""
    responses.get(f"{API}/limits/", status=403, json=body("concurrent_limit.json"))
    responses.get(f"{API}/limits/", json={"DailyApiRequests": {"Max": 100, "Remaining": 90}})
    client, _ = make_client()
    assert client.limits()["DailyApiRequests"]["Max"] == 100


@responses.activate
def test_daily_limit_403_stops_without_retrying() -> None:
    """The daily-limit 403 stops the worker at once, as a resumable stop."""
    responses.get(f"{API}/limits/", status=403, json=body("daily_limit.json"))
    client, _ = make_client()
    with pytest.raises(DailyLimitReached, match="daily API limit"):
        client.limits()
    assert len(responses.calls) == 1


@responses.activate
def test_persistent_503_becomes_a_resumable_stop() -> None:
    """A 503 that outlasts every attempt ends as TransientExhausted (exit 3), after exactly max_attempts calls."""
    responses.get(f"{API}/limits/", status=503, json=body("server_unavailable.json"))
    client, _ = make_client(attempts=3)
    with pytest.raises(TransientExhausted):
        client.limits()
    assert len(responses.calls) == 3


@responses.activate
def test_expired_session_logs_in_again_once() -> None:
    """A 401 makes a refreshable connector log in again, and the call is repeated with the new token."""
    responses.get(f"{API}/limits/", status=401, json=body("invalid_session.json"))
    responses.get(f"{API}/limits/", json={"DailyApiRequests": {"Max": 1, "Remaining": 1}})
    client, logins = make_client(refreshable=True)
    client.limits()
    assert len(logins) == 2
    assert responses.calls[1].request.headers["Authorization"] == "Bearer token-2"


@responses.activate
def test_expired_given_token_is_an_auth_stop() -> None:
    """A given access token cannot be renewed: the 401 stops with a message saying to get a new token."""
    responses.get(f"{API}/limits/", status=401, json=body("invalid_session.json"))
    client, _ = make_client()
    with pytest.raises(AuthFailed, match="new token"):
        client.limits()


@responses.activate
def test_bad_query_is_a_fatal_api_error() -> None:
    """A malformed query is not retried and surfaces Salesforce's error code."""
    responses.get(f"{API}/query/", status=400, json=body("malformed_query.json"))
    client, _ = make_client()
    with pytest.raises(ApiError, match="MALFORMED_QUERY"):
        client.query_all("SELECT Id FORM Account")
    assert len(responses.calls) == 1


@responses.activate
def test_lost_connection_on_read_is_retried() -> None:
    """A reset connection on a read is retried: reading twice is harmless."""
    responses.get(f"{API}/limits/", body=requests.exceptions.ConnectionError("reset"))
    responses.get(f"{API}/limits/", json={"DailyApiRequests": {"Max": 1, "Remaining": 1}})
    client, _ = make_client()
    assert client.limits()["DailyApiRequests"]["Max"] == 1


@responses.activate
def test_lost_connection_on_write_is_ambiguous_not_retried() -> None:
    """A reset connection on a write is not blindly re-sent: it is reported as an ambiguous write."""
    responses.post(f"{API}/composite", body=requests.exceptions.ConnectionError("reset"))
    client, _ = make_client()
    with pytest.raises(AmbiguousWrite):
        client.composite([])
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        ("UNABLE_TO_LOCK_ROW", RowVerdict.LOCKED),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", RowVerdict.FAILED),
        ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", RowVerdict.FAILED),
        ("ENTITY_IS_DELETED", RowVerdict.FAILED),
        (None, RowVerdict.FAILED),
    ],
)
def test_row_classification(code: str | None, verdict: RowVerdict) -> None:
    """Only UNABLE_TO_LOCK_ROW is retried at row level; every other row error is recorded as a failure."""
    assert classify_row(code) is verdict


def test_foreign_exceptions_are_classified() -> None:
    """Timeouts count as lost connections; anything unknown is fatal."""
    assert classify(requests.exceptions.ReadTimeout()).verdict is Verdict.CONNECTION_LOST
    assert classify(ValueError("x")).verdict is Verdict.FATAL


def _change(n: int) -> Change:
    rule = billing.RULE_BY_OBJECT[billing.INVOICE]
    return Change(
        rule.sobject, f"a1B5g000000000{n}AAA", "acc1", {rule.status_field: "Draft"}, {rule.status_field: "Cancelled"}
    )


@responses.activate
def test_writer_records_row_outcomes_and_retries_only_locked_rows(tmp_path: Path) -> None:
    """Locked rows are re-sent alone; validation failures are recorded; the journal has every outcome."""
    responses.post(f"{API}/composite", json=body("composite_row_errors.json"))
    retry_answer = {
        "compositeResponse": [
            {
                "body": [{"id": _change(2).id, "success": True, "errors": []}],
                "httpHeaders": {},
                "httpStatusCode": 200,
                "referenceId": "c0",
            }
        ]
    }
    responses.post(f"{API}/composite", json=retry_answer)
    client, _ = make_client()
    rule = billing.RULE_BY_OBJECT[billing.INVOICE]
    with Journal(tmp_path, "run1") as journal:
        result = CompositeWriter(client, WriteSettings(), journal).apply(
            "invoices", rule, [_change(n) for n in (1, 2, 3)]
        )
    assert result.updated == 2
    assert [(f.id, f.code) for f in result.failures] == [(_change(3).id, "FIELD_CUSTOM_VALIDATION_EXCEPTION")]
    second = json.loads(responses.calls[1].request.body)
    assert [r["id"] for r in second["compositeRequest"][0]["body"]["records"]] == [_change(2).id]
    outcomes = [(e["id"], e["outcome"]) for e in read_entries(journal.path) if e["type"] == "outcome"]
    assert outcomes == [
        (_change(1).id, "updated"),
        (_change(2).id, "locked"),
        (_change(3).id, "failed"),
        (_change(2).id, "updated"),
    ]
