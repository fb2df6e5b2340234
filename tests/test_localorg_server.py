"""The HTTPS way in: unmodified simple-salesforce against LocalOrgServer, and `python -m ...server` as a process."""

from __future__ import annotations

import http.client
import json
import select
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests
from simple_salesforce.api import Salesforce

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.https import LocalOrgServer
from sfcleanup.localorg.seed import ScenarioInfo, seed
from sfcleanup.localorg.server import serve_main
from sfcleanup.localorg.store import Store
from tests.support import demo_store

REPO = Path(__file__).resolve().parents[1]
API = "/services/data/v62.0"


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override session.verify (psf/requests#3829), and
    # simple-salesforce passes no per-request verify: without this the test CA would be ignored.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def _client(server: LocalOrgServer, org: LocalOrg) -> Salesforce:
    session = requests.Session()
    session.verify = str(server.ca_bundle)
    return Salesforce(instance_url=server.instance_url, session_id=org.access_token, session=session)


@pytest.fixture
def demo_org() -> Iterator[tuple[LocalOrgServer, LocalOrg, ScenarioInfo]]:
    store, info = demo_store()
    org = LocalOrg(store)
    with LocalOrgServer(org) as server:
        yield server, org, info


def _names(org: LocalOrg, ids: list[str]) -> list[str]:
    marks = ", ".join("?" for _ in ids)
    rows = org.store.conn.execute(f"SELECT Name FROM Account WHERE Id IN ({marks}) ORDER BY Id", ids)  # noqa: S608
    return [row[0] for row in rows]


@pytest.mark.slow
def test_serves_loopback_https_and_points_org_at_itself(demo_org: tuple[LocalOrgServer, LocalOrg, Any]) -> None:
    """The server listens on 127.0.0.1 over TLS, and the org's instance URL (used by OAuth answers) is its URL."""
    server, org, _ = demo_org
    assert server.instance_url == f"https://127.0.0.1:{server.port}" == org.instance_url
    assert server.port > 0 and server.ca_bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
    answer = requests.post(
        f"{server.instance_url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": org.credentials.consumer_key,
            "client_secret": org.credentials.consumer_secret,
        },
        verify=str(server.ca_bundle),
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["instance_url"] == server.instance_url


@pytest.mark.slow
def test_simple_salesforce_query_limits_and_collections(demo_org: tuple[LocalOrgServer, LocalOrg, Any]) -> None:
    """Unmodified simple-salesforce queries, reads limits and PATCHes an sObject collection over real HTTPS."""
    server, org, _ = demo_org
    sf = _client(server, org)
    accounts = sf.query("SELECT Id FROM Account")
    assert accounts["totalSize"] == 51 and len(accounts["records"]) == 51
    assert sf.limits()["DailyApiRequests"]["Max"] == org.profile.daily_api_limit
    ids = [record["Id"] for record in accounts["records"][:2]]
    results = sf.restful(
        "composite/sobjects",
        method="PATCH",
        json={"allOrNone": False, "records": [{"attributes": {"type": "Account"}, "id": i, "Name": "X"} for i in ids]},
    )
    assert results is not None and [row["success"] for row in results] == [True, True]
    assert _names(org, ids) == ["X", "X"]


@pytest.mark.slow
def test_query_pages_over_one_kept_alive_connection(demo_org: tuple[LocalOrgServer, LocalOrg, Any]) -> None:
    """Responses carry Content-Length, so several requests (query, then its next page) share one connection,
    and close() returns promptly while that connection sits idle."""
    server, org, _ = demo_org
    context = ssl.create_default_context(cafile=str(server.ca_bundle))
    connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
    headers = {"Authorization": f"Bearer {org.access_token}", "Sforce-Query-Options": "batchSize=200"}
    connection.request("GET", f"{API}/query?q=SELECT+Id+FROM+OrderItem", headers=headers)
    first = connection.getresponse()
    page = json.loads(first.read())
    assert first.status == 200 and first.getheader("Content-Length") is not None
    assert 0 < len(page["records"]) <= 200 and not page["done"]
    socket_before = connection.sock
    connection.request("GET", page["nextRecordsUrl"], headers=headers)
    second = connection.getresponse()
    assert second.status == 200 and 0 < len(json.loads(second.read())["records"]) <= 200
    assert connection.sock is socket_before
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 3


@pytest.mark.slow
def test_chunked_request_body_is_read(demo_org: tuple[LocalOrgServer, LocalOrg, Any]) -> None:
    """A body sent with Transfer-Encoding: chunked (how requests streams uploads) reaches the org whole."""
    server, org, _ = demo_org
    response = requests.post(
        f"{server.instance_url}{API}/sobjects/Account",
        data=iter([b'{"Name": ', b'"Streamed', b' Customer"}']),
        headers={"Authorization": f"Bearer {org.access_token}", "Content-Type": "application/json"},
        verify=str(server.ca_bundle),
        timeout=10,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == 201
    assert _names(org, [response.json()["id"]]) == ["Streamed Customer"]


@pytest.mark.slow
def test_reset_after_write_drops_the_connection_after_applying() -> None:
    """With a reset-after-write fault the client gets a ConnectionError, yet the write is in the store; the
    next call works on a new connection."""
    store, _ = demo_store()
    org = LocalOrg(store, faults=FaultProfile(reset_after_write_rate=1.0))
    with LocalOrgServer(org) as server:
        sf = _client(server, org)
        ids = [record["Id"] for record in sf.query("SELECT Id FROM Account LIMIT 2")["records"]]
        records = [{"attributes": {"type": "Account"}, "id": i, "Name": "Applied"} for i in ids]
        with pytest.raises(requests.exceptions.ConnectionError):
            sf.restful("composite/sobjects", method="PATCH", json={"records": records})
        assert _names(org, ids) == ["Applied", "Applied"]
        assert sf.query("SELECT Id FROM Account LIMIT 1")["totalSize"] == 1


def test_bad_arguments_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad arguments print one error line on stderr and return 2, before anything is started."""
    for argv in (
        ["--lock-failure-rate", "2"],
        ["--scenario", "nope"],
        ["--scenario", "demo", "--records", "5000"],
        ["--scenario", "scale", "--records", "10"],
        ["--port", "70000"],
    ):
        assert serve_main(argv) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("sfcleanup localorg serve: error: "), argv


def _read_line(stream: IO[str], timeout: float) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "the server printed nothing in time"
    return stream.readline()


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sfcleanup.localorg.server", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _query(announcement: dict[str, str], soql: str) -> dict[str, Any]:
    response = requests.get(
        f"{announcement['instance_url']}{API}/query",
        params={"q": soql},
        headers={"Authorization": f"Bearer {announcement['access_token']}"},
        verify=announcement["ca_bundle"],
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _stop(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    return process.returncode, out, err


@pytest.mark.slow
def test_serve_process_announces_serves_and_stops_on_sigterm() -> None:
    """`python -m sfcleanup.localorg.server` prints one JSON line, answers over HTTPS with that CA bundle, logs
    nothing per request, and exits 0 on SIGTERM."""
    process = _start("--scenario", "demo", "--token", "test-token")
    try:
        announcement = json.loads(_read_line(process.stdout or sys.stdin, timeout=20))
        assert set(announcement) == {"instance_url", "access_token", "ca_bundle"}
        assert announcement["access_token"] == "test-token"
        assert announcement["instance_url"].startswith("https://127.0.0.1:")
        assert _query(announcement, "SELECT Id FROM blng__InvoiceRun__c")["totalSize"] == 4
        code, out, err = _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert (code, out, err) == (0, "", "")
    assert not Path(announcement["ca_bundle"]).exists()


@pytest.mark.slow
def test_serve_process_keeps_existing_state(tmp_path: Path) -> None:
    """With --state pointing at a file that already holds data, the server serves it and does not re-seed."""
    state = tmp_path / "org.sqlite3"
    store = Store(state)
    seed(store, "demo")
    store.close()
    process = _start("--scenario", "empty", "--state", str(state))
    try:
        announcement = json.loads(_read_line(process.stdout or sys.stdin, timeout=20))
        assert _query(announcement, "SELECT Id FROM Account")["totalSize"] == 51
        code, _, err = _stop(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert (code, err) == (0, "")
