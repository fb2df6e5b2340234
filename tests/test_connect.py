"""Logging in with each auth mode against the local org's OAuth endpoint, and the errors a user can make."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from pydantic import SecretStr

from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.errors import ConfigError
from sfcleanup.localorg.adapter import mount
from sfcleanup.localorg.app import Credentials, LocalOrg
from sfcleanup.salesforce.client import SalesforceClient
from sfcleanup.salesforce.connect import build_connector
from sfcleanup.salesforce.retry import no_wait_policy
from tests.support import KeyPair


def _key_and_cert(tmp_path: Path) -> tuple[Path, bytes]:
    pair = KeyPair()
    return pair.write_key(tmp_path), pair.certificate_pem


def _connect(org: LocalOrg, settings: OrgSettings) -> SalesforceClient:
    http = mount(requests.Session(), org)
    return SalesforceClient(build_connector(settings, http), api_version="62.0", retry=no_wait_policy(), timeout_s=5)


def test_jwt_bearer_login(tmp_path: Path) -> None:
    """A JWT signed with the connected app's key gets a token the org accepts for API calls."""
    key_file, cert = _key_and_cert(tmp_path)
    org = LocalOrg(credentials=Credentials(jwt_certificate_pem=cert))
    settings = OrgSettings(
        consumer_key=org.credentials.consumer_key, username=org.credentials.username, private_key_file=key_file
    )
    assert settings.auth is AuthMode.JWT
    client = _connect(org, settings)
    assert client.limits()["DailyApiRequests"]["Max"] > 0


def test_jwt_with_a_key_the_app_does_not_know_is_refused(tmp_path: Path) -> None:
    """A JWT signed with another key is refused with the org's invalid_grant, as a configuration error."""
    key_file, _ = _key_and_cert(tmp_path)
    (tmp_path / "other").mkdir()
    _, other_cert = _key_and_cert(tmp_path / "other")
    org = LocalOrg(credentials=Credentials(jwt_certificate_pem=other_cert))
    settings = OrgSettings(consumer_key=org.credentials.consumer_key, username="x@y", private_key_file=key_file)
    with pytest.raises(ConfigError, match="invalid_grant"):
        _connect(org, settings)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "cannot be read"), (b"not a key", "not an unencrypted PEM private key")],
)
def test_unreadable_or_malformed_private_key(tmp_path: Path, content: bytes | None, message: str) -> None:
    """A missing or malformed key file is named in a one-line error before anything is sent."""
    key_file = tmp_path / "k.pem"
    if content is not None:
        key_file.write_bytes(content)
    settings = OrgSettings(consumer_key="k", username="u@x", private_key_file=key_file)
    with pytest.raises(ConfigError, match=message):
        _connect(LocalOrg(), settings)


def test_client_credentials_login() -> None:
    """Client credentials against the org's My Domain URL get a working token."""
    org = LocalOrg()
    settings = OrgSettings(
        login_url=org.instance_url,
        consumer_key=org.credentials.consumer_key,
        consumer_secret=SecretStr(org.credentials.consumer_secret),
    )
    assert _connect(org, settings).limits()


def test_client_credentials_need_my_domain() -> None:
    """Client credentials with login.salesforce.com are refused with how to fix it."""
    settings = OrgSettings(consumer_key="k", consumer_secret=SecretStr("s"))
    with pytest.raises(ConfigError, match="My Domain"):
        _connect(LocalOrg(), settings)


def test_password_login_and_wrong_password() -> None:
    """The legacy username-password flow works with the right password and says authentication failure otherwise."""
    org = LocalOrg()
    good = OrgSettings(
        login_url=org.instance_url,
        consumer_key=org.credentials.consumer_key,
        consumer_secret=SecretStr(org.credentials.consumer_secret),
        username=org.credentials.username,
        password=SecretStr(org.credentials.password),
    )
    assert good.auth is AuthMode.PASSWORD
    assert _connect(org, good).limits()
    bad = good.model_copy(update={"password": SecretStr("wrong")})
    with pytest.raises(ConfigError, match="authentication failure"):
        _connect(org, bad)


def test_token_mode_and_bad_token() -> None:
    """A given token works as is; a wrong one fails at the first call as an authentication stop."""
    org = LocalOrg()
    good = OrgSettings(instance_url=org.instance_url, access_token=SecretStr(org.access_token))
    assert good.auth is AuthMode.TOKEN
    assert _connect(org, good).limits()
    from sfcleanup.errors import AuthFailed

    bad = OrgSettings(instance_url=org.instance_url, access_token=SecretStr("00Dbad!token"))
    with pytest.raises(AuthFailed):
        _connect(org, bad).limits()


def test_token_mode_needs_https() -> None:
    """An http:// instance URL is refused: TLS is always on."""
    settings = OrgSettings(instance_url="http://acme.my.salesforce.com", access_token=SecretStr("t"))
    with pytest.raises(ConfigError, match="https"):
        _connect(LocalOrg(), settings)


def test_sf_cli_mode_without_sf_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """--target-org without the sf CLI on PATH says what to install or use instead."""
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ConfigError, match="Salesforce CLI"):
        _connect(LocalOrg(), OrgSettings(target_org="prod"))


def test_missing_required_setting_names_it() -> None:
    """A mode chosen without its keys names the missing key and its environment variable."""
    with pytest.raises(ConfigError, match=r"org\.username.*SFCLEANUP_ORG__"):
        _connect(LocalOrg(), OrgSettings(auth=AuthMode.JWT, consumer_key="k", private_key_file=Path("k")))
