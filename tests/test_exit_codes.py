"""One test per row of the exit-code table (README "Exit codes", docs/runbook.md): 0 clean; 1 rows failed or
verification found records unaccounted for; 2 a mistake a person must fix (nothing written); 3 a stop a later
re-run gets past by itself. Each error case prints one line on stderr and no traceback, and the org is
unchanged where nothing may be written."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from sfcleanup import billing
from sfcleanup.cli import main
from sfcleanup.lease import Leases
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.https import LocalOrgServer
from sfcleanup.localorg.seed import ScenarioInfo
from sfcleanup.localorg.store import Store
from sfcleanup.salesforce.local import open_local_org
from tests.support import KeyPair, Terminal, demo_store, local_args, make_client, sobject_spec, state_snapshot

INSTANCE = "https://acme.my.salesforce.com"
RUN_ID = "a1A5g0000000001EAA"


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """What the user reads on stderr: exactly one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture(autouse=True)
def _no_host_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("SFCLEANUP_")]:
        monkeypatch.delenv(name)


# --- 0 ---------------------------------------------------------------------------------------------------


def test_0_clean(org_file: tuple[Path, ScenarioInfo], tmp_path: Path) -> None:
    """A run cleaned to the end exits 0."""
    state, info = org_file
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--yes")) == 0


# --- 1 ---------------------------------------------------------------------------------------------------


def _post_an_invoice_of(state: Path, run_id: str) -> None:
    """Someone posts one of the run's draft invoices while the prompt waits: its lines can no longer change."""
    store = Store(state)
    try:
        invoice = next(
            r
            for r in store.snapshot()["blng__Invoice__c"]
            if r["blng__InvoiceRunCreatedBy__c"] == run_id and r["blng__InvoiceStatus__c"] == "Draft"
        )
        store.update(sobject_spec("blng__Invoice__c"), str(invoice["Id"]), {"blng__InvoiceStatus__c": "Posted"})
    finally:
        store.close()


def test_1_rows_failed(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows the org refuses (an invoice posted after planning) finish the run with exit 1 and a failures CSV."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    monkeypatch.setattr("sys.stdin", Terminal("y\n", lambda: _post_an_invoice_of(state, run_id)))
    assert main(local_args(state, tmp_path, "run", run_id)) == 1
    csv = next((tmp_path / "j").glob("failures-*.csv")).read_text()
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION" in csv


def test_1_verify_mismatch(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record put back into a from-state after planning is found by verification: exit 1."""
    state, info = org_file
    run_id = info.runs["failed_run"]

    def straggler() -> None:
        store = Store(state)
        try:
            record = next(
                r
                for r in store.snapshot()["OrderItem"]
                if r["blng__InvoiceRun__c"] == run_id and r[billing.PROCESSING_STATUS] == "Completed"
            )
            store.update(sobject_spec("OrderItem"), str(record["Id"]), {billing.PROCESSING_STATUS: "Error"})
        finally:
            store.close()

    monkeypatch.setattr("sys.stdin", Terminal("y\n", straggler))
    assert main(local_args(state, tmp_path, "run", run_id)) == 1


# --- 2 ---------------------------------------------------------------------------------------------------


def test_2_bad_run_id(org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped run id: exit 2, one line, nothing written."""
    state, _ = org_file
    before = state_snapshot(state)
    assert main(local_args(state, tmp_path, "run", "not-an-id", "--yes")) == 2
    assert "not-an-id" in _one_line(capsys)
    assert state_snapshot(state) == before


@responses.activate
def test_2_wrong_or_expired_token_given_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The org answers 401 to a token given by hand: it cannot be renewed, so exit 2 and a new token asked for."""
    for method in (responses.GET, responses.POST):
        responses.add(
            method,
            re.compile(re.escape(INSTANCE) + "/.*"),
            status=401,
            json=[{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}],
        )
    argv = ["plan", RUN_ID, "--instance-url", INSTANCE, "--access-token", "00Dx!expired", "--journal-dir"]
    assert main([*argv, str(tmp_path / "j")]) == 2
    assert "get a new token" in _one_line(capsys)
    # Refused, never retried, nothing written: the user id asked of userinfo (a token without the openid scope
    # may be refused there alone), then the org's identity, each once.
    asked = [(call.request.method, str(call.request.url).split("?")[0]) for call in responses.calls]
    assert len(asked) == len(set(asked)) <= 2
    assert [url for method, url in asked if method == "POST"] in ([], [f"{INSTANCE}/services/data/v62.0/composite"])
    assert not {"PATCH", "PUT", "DELETE"} & {method for method, _ in asked}


def test_2_my_domain_that_does_not_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A login URL whose host does not resolve fails at once (no retries logged) with exit 2. `.invalid` never
    resolves (RFC 6761)."""
    key = KeyPair().write_key(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(
        '[org]\nauth = "jwt"\nlogin_url = "https://acme-typo.my.salesforce.invalid"\nconsumer_key = "k"\n'
        f'username = "u@acme.com"\nprivate_key_file = "{key}"\n'
    )
    assert main(["plan", RUN_ID, "--config", str(config), "--log-level", "info"]) == 2
    err = capsys.readouterr().err
    assert "does not resolve" in err and "salesforce.retry" not in err


def test_2_instance_url_that_does_not_resolve(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same for an instance URL given with a token: no 25 s of retries, exit 2."""
    argv = ["plan", RUN_ID, "--instance-url", "https://acme.my.salesforce.invalid", "--access-token", "00Dx!t"]
    assert main([*argv, "--log-level", "info"]) == 2
    err = capsys.readouterr().err
    assert "does not resolve" in err and "salesforce.retry" not in err


@responses.activate
def test_2_refused_login(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The login endpoint refuses the JWT (a certificate replaced on the connected app): exit 2, one line."""
    responses.add(
        responses.POST,
        "https://login.salesforce.com/services/oauth2/token",
        status=400,
        json={"error": "invalid_grant", "error_description": "invalid assertion"},
    )
    key = KeyPair().write_key(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(f'[org]\nauth = "jwt"\nconsumer_key = "k"\nusername = "u@acme.com"\nprivate_key_file = "{key}"\n')
    assert main(["plan", RUN_ID, "--config", str(config)]) == 2
    assert "invalid_grant" in _one_line(capsys)


@pytest.fixture
def served() -> Iterator[tuple[LocalOrgServer, ScenarioInfo]]:
    store, info = demo_store()
    with LocalOrgServer(LocalOrg(store, faults=FaultProfile(daily_api_limit=1_000, daily_api_used=850))) as server:
        yield server, info


def test_2_untrusted_certificate(
    served: tuple[LocalOrgServer, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server whose certificate no trusted CA signed (no --ca-bundle for the local org's test CA): exit 2
    at once, naming --ca-bundle, nothing written."""
    server, info = served
    before = server.org.store.snapshot()
    argv = ["run", info.runs["failed_run"], "--yes", "--instance-url", server.instance_url]
    assert main([*argv, "--access-token", server.org.access_token, "--journal-dir", str(tmp_path / "j")]) == 2
    assert "--ca-bundle" in _one_line(capsys)
    assert server.org.store.snapshot() == before


def test_2_journal_folder_that_cannot_be_written(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal folder that cannot be made (its parent is a file): exit 2 before anything is read or written."""
    state, info = org_file
    before = state_snapshot(state)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = [*local_args(state, tmp_path, "run", info.runs["failed_run"], "--yes"), "--journal-dir", str(blocker / "j")]
    assert main(argv) == 2
    assert "journal folder" in _one_line(capsys)
    assert state_snapshot(state) == before


def test_2_unreadable_state_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--state` naming a file that is not a local org: exit 2, one line naming the file."""
    state = tmp_path / "notes.txt"
    state.write_text("not a database\n" * 100)
    assert main(local_args(state, tmp_path, "plan", RUN_ID)) == 2
    assert "notes.txt" in _one_line(capsys)
    assert state.read_text() == "not a database\n" * 100


def test_2_json_on_a_terminal_without_yes(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`--json` never prompts, even on a terminal: without --yes it refuses with exit 2 and writes nothing."""
    state, info = org_file
    before = state_snapshot(state)
    monkeypatch.setattr("sys.stdin", Terminal("y\n", lambda: None))
    assert main(local_args(state, tmp_path, "run", info.runs["failed_run"], "--json")) == 2
    assert "--yes" in capsys.readouterr().err
    assert state_snapshot(state) == before


# --- 3 ---------------------------------------------------------------------------------------------------


def test_3_api_reserve(
    served: tuple[LocalOrgServer, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The org's daily API usage is inside the reserve: stopped before writing, exit 3, run again later."""
    server, info = served
    argv = ["run", info.runs["failed_run"], "--yes", "--instance-url", server.instance_url]
    argv += ["--access-token", server.org.access_token, "--ca-bundle", str(server.ca_bundle)]
    assert main([*argv, "--journal-dir", str(tmp_path / "j"), "--log-level", "error"]) == 3
    assert "run later" in _one_line(capsys)


def test_3_another_worker_holds_the_run(
    org_file: tuple[Path, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run another live worker is cleaning is refused with exit 3: the lease times out or is released."""
    state, info = org_file
    run_id = info.runs["failed_run"]
    org, _ = open_local_org(state)
    client = make_client(org)
    Leases(client, "worker-elsewhere", 900).acquire(run_id)
    client.update_record(billing.INVOICE_RUN, run_id, {billing.CLEANUP_STATUS: "Started"})
    org.store.close()
    assert main(local_args(state, tmp_path, "run", run_id, "--yes")) == 3
    assert "worker-elsewhere" in _one_line(capsys)


def test_3_a_fault_that_outlasts_the_retries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing answers at a host that resolves (connection refused): retried, then exit 3."""
    monkeypatch.setenv("SFCLEANUP_RETRY__MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SFCLEANUP_RETRY__BACKOFF_INITIAL_S", "0")
    monkeypatch.setenv("SFCLEANUP_RETRY__BACKOFF_MAX_S", "0")
    argv = ["plan", RUN_ID, "--instance-url", "https://127.0.0.1:9", "--access-token", "00Dx!t"]
    assert main([*argv, "--log-level", "error"]) == 3
    assert "run again later" in _one_line(capsys)


def test_3_unexpected_error_names_the_traceback_file(
    org_file: tuple[Path, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug outside any run prints one line naming the file that holds the traceback and the journal folder."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("sfcleanup.worker.Worker.preview", broken)
    state, info = org_file
    assert main(local_args(state, tmp_path, "plan", info.runs["failed_run"])) == 3
    line = _one_line(capsys)
    traceback_file = Path(re.search(r"traceback in (\S+);", line).group(1))  # type: ignore[union-attr]
    assert "RuntimeError: a bug" in traceback_file.read_text() and str(tmp_path / "j") in line


# --- the tables ------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def _table(path: Path, heading: str) -> list[list[str]]:
    """The rows of the first table after `heading`, as cells."""
    text = path.read_text(encoding="utf-8")
    after = text[text.index(heading) :]
    rows = []
    for line in after.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]  # past the header and its rule


def test_readme_and_runbook_tables_match_and_each_row_has_a_test() -> None:
    """README "Exit codes" and the runbook's table list the same causes per code, and each README row names a
    test of this file (or another) that exists."""
    readme = _table(ROOT / "README.md", "### Exit codes")
    runbook = _table(ROOT / "docs/runbook.md", "## Exit codes: what the on-call engineer does")
    # Row by row for 0, 1 and 2; the runbook explains the causes of 3 in a list below its table.
    assert [row[0] for row in readme if row[0] != "3"] == [row[0] for row in runbook if row[0] != "3"]
    assert {row[0] for row in readme} == {row[0] for row in runbook} == {"0", "1", "2", "3"}
    names = {name for name in globals() if name.startswith("test_")}
    for row in readme:
        local = re.findall(r"`::(test_\w+)`", row[3])
        elsewhere = re.findall(r"`(tests/\w+\.py)(?:::(test_\w+))?`", row[3])
        assert local or elsewhere, row
        assert set(local) <= names, set(local) - names
        for file, name in elsewhere:
            text = (ROOT / file).read_text(encoding="utf-8")
            assert not name or f"def {name}(" in text, (file, name)
