"""Secrets never leave: a full clean-up at debug log level with every auth mode, and refused logins, leave no
token, private key, password or client secret in stdout, stderr, logs, the journal, the report or errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sfcleanup.cli import main
from sfcleanup.localorg.app import Credentials, LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.https import LocalOrgServer
from tests.support import KeyPair, demo_store

SECRET = "s3cret-Consumer-Value-42"
PASSWORD = "Pa55word-Never-Logged"
SECURITY_TOKEN = "SecTok-Never-Logged"


def _key_and_cert(tmp_path: Path) -> tuple[Path, bytes, str]:
    pair = KeyPair()
    # A line from the middle of the key: any leak of the key would contain it.
    return pair.write_key(tmp_path), pair.certificate_pem, pair.private_pem.splitlines()[5]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LocalOrgServer, str, Path, str]]:
    key_file, cert, key_line = _key_and_cert(tmp_path)
    store, info = demo_store()
    run_id = info.runs["errors_run"]
    credentials = Credentials(consumer_secret=SECRET, password=PASSWORD + SECURITY_TOKEN, jwt_certificate_pem=cert)
    org = LocalOrg(store, faults=FaultProfile(lock_wait_s=0.05), credentials=credentials)
    with LocalOrgServer(org) as server:
        yield server, run_id, key_file, key_line


def _everything_written(tmp_path: Path, captured: pytest.CaptureFixture[str]) -> str:
    out = captured.readouterr()
    files = [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".jsonl", ".csv")
    ]
    return "\n".join([out.out, out.err, *files])


MODES = ["jwt", "client_credentials", "password", "token"]


def _config(
    mode: str, server: LocalOrgServer, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    org = server.org
    config = tmp_path / "sfcleanup.toml"
    lines = ["[org]", f'login_url = "{server.instance_url}"', f'ca_bundle = "{server.ca_bundle}"']
    if mode == "jwt":
        lines += [
            f'consumer_key = "{org.credentials.consumer_key}"',
            f'username = "{org.credentials.username}"',
            f'private_key_file = "{key_file}"',
        ]
    elif mode == "client_credentials":
        lines += [f'consumer_key = "{org.credentials.consumer_key}"']
        monkeypatch.setenv("SFCLEANUP_ORG__CONSUMER_SECRET", SECRET)
    elif mode == "password":
        lines += [f'consumer_key = "{org.credentials.consumer_key}"', f'username = "{org.credentials.username}"']
        monkeypatch.setenv("SFCLEANUP_ORG__CONSUMER_SECRET", SECRET)
        monkeypatch.setenv("SFCLEANUP_ORG__PASSWORD", PASSWORD)
        monkeypatch.setenv("SFCLEANUP_ORG__SECURITY_TOKEN", SECURITY_TOKEN)
    else:
        lines += [f'instance_url = "{server.instance_url}"']
        monkeypatch.setenv("SFCLEANUP_ORG__ACCESS_TOKEN", org.access_token)
    config.write_text("\n".join(lines) + "\n")
    return [
        "--config",
        str(config),
        "--journal-dir",
        str(tmp_path / "journal"),
        "--log-level",
        "debug",
        "--log-format",
        "json",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_full_clean_up_leaks_no_secret(
    served: tuple[LocalOrgServer, str, Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """A debug-level clean-up in this auth mode prints, logs and journals no secret it used or obtained."""
    server, run_id, key_file, key_line = served
    options = _config(mode, server, key_file, tmp_path, monkeypatch)
    assert main(["run", run_id, "--yes", "--json", *options]) == 0
    written = _everything_written(tmp_path, capsys)
    assert '"event"' in written and run_id in written  # the logs and the report were really captured
    tokens = server.org.issued_tokens()  # every token the org issued in this test, the worker's included
    for secret in [SECRET, PASSWORD, SECURITY_TOKEN, key_line, *tokens]:
        assert secret not in written


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["client_credentials", "password", "token"])
def test_refused_login_names_no_secret(
    served: tuple[LocalOrgServer, str, Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
) -> None:
    """When the org refuses the credentials, the one-line error (exit 2 or 3) shows none of them."""
    server, run_id, key_file, _ = served
    options = _config(mode, server, key_file, tmp_path, monkeypatch)
    wrong = {
        "client_credentials": "SFCLEANUP_ORG__CONSUMER_SECRET",
        "password": "SFCLEANUP_ORG__PASSWORD",
        "token": "SFCLEANUP_ORG__ACCESS_TOKEN",
    }[mode]
    monkeypatch.setenv(wrong, "Wrong-Secret-Value-99")
    assert main(["run", run_id, "--yes", *options]) in (2, 3)
    written = _everything_written(tmp_path, capsys)
    assert "sfcleanup:" in written
    for secret in [SECRET, PASSWORD, SECURITY_TOKEN, "Wrong-Secret-Value-99"]:
        assert secret not in written
