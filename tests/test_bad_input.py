"""The bad-input catalogue, through the command line against an org served over HTTPS: each case gets a
one-line, actionable message and exit code 2, and nothing in the org changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sfcleanup.cli import main
from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.https import LocalOrgServer
from sfcleanup.localorg.seed import ScenarioInfo
from tests.support import demo_store


@pytest.fixture
def served() -> Iterator[tuple[LocalOrgServer, ScenarioInfo]]:
    store, info = demo_store()
    with LocalOrgServer(LocalOrg(store)) as server:
        yield server, info


def _run(server: LocalOrgServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> list[str]:
    monkeypatch.setenv("SFCLEANUP_ORG__ACCESS_TOKEN", server.org.access_token)
    return [
        *args,
        "--instance-url",
        server.instance_url,
        "--ca-bundle",
        str(server.ca_bundle),
        "--journal-dir",
        str(tmp_path / "j"),
        "--log-level",
        "error",
    ]


def _refused(
    argv: list[str], server: LocalOrgServer, capsys: pytest.CaptureFixture[str], message: str, code: int = 2
) -> None:
    before = server.org.store.snapshot()
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1
    assert server.org.store.snapshot() == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "injection",
    [
        "a1A5g0000000001EAA' OR Name != '",
        "a1A5g0000000001EAA) OR (Id != null",
        "' OR Id != null --",
        "a1A5g0000000001E\\'",
    ],
)
def test_soql_injection_attempts(
    served: tuple[LocalOrgServer, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    injection: str,
) -> None:
    """A run id carrying SOQL is rejected as not an id, before any query is built from it."""
    server, _ = served
    _refused(_run(server, monkeypatch, tmp_path, "run", injection, "--yes"), server, capsys, "is not a Salesforce id")


@pytest.mark.slow
def test_missing_picklist_value_in_the_org(
    served: tuple[LocalOrgServer, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An org whose admin never added CleanUp Status "Completed with errors" is named, with where to add it."""
    server, info = served
    server.org.store.removed_picklist_values[("blng__InvoiceRun__c", "blng__CleanUpStatus__c")] = frozenset(
        {"Completed with errors"}
    )
    argv = _run(server, monkeypatch, tmp_path, "run", info.runs["failed_run"], "--yes")
    _refused(argv, server, capsys, "'Completed with errors' is missing from blng__InvoiceRun__c.blng__CleanUpStatus__c")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot be read"),
        (b"-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n", "not an unencrypted PEM"),
    ],
)
def test_unreadable_or_malformed_private_key(
    served: tuple[LocalOrgServer, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    message: str,
) -> None:
    """A JWT key file that is missing or not a key is named before anything is sent."""
    server, info = served
    key = tmp_path / "k.pem"
    if content is not None:
        key.write_bytes(content)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[org]\nconsumer_key = "k"\nusername = "u@x"\nprivate_key_file = "{key}"\n'
        f'login_url = "{server.instance_url}"\nca_bundle = "{server.ca_bundle}"\n'
    )
    _refused(["run", info.runs["failed_run"], "--yes", "--config", str(config)], server, capsys, message)


@pytest.mark.slow
def test_missing_required_setting(
    served: tuple[LocalOrgServer, ScenarioInfo], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JWT chosen without a user name says which key (and environment variable) is missing."""
    server, info = served
    config = tmp_path / "c.toml"
    config.write_text(f'[org]\nauth = "jwt"\nconsumer_key = "k"\nprivate_key_file = "{tmp_path / "k.pem"}"\n')
    _refused(["run", info.runs["failed_run"], "--yes", "--config", str(config)], server, capsys, "org.username")


@pytest.mark.slow
def test_wrong_token_is_a_mistake_to_fix(
    served: tuple[LocalOrgServer, ScenarioInfo],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A token the org does not know exits 2 (waiting will not fix it) and says to get a new one."""
    server, info = served
    argv = _run(server, monkeypatch, tmp_path, "run", info.runs["failed_run"], "--yes")
    monkeypatch.setenv("SFCLEANUP_ORG__ACCESS_TOKEN", "00D5g0000000001!not-a-token")
    _refused(argv, server, capsys, "new token", code=2)
