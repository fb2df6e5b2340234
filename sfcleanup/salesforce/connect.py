"""Getting an access token: OAuth JWT bearer, client credentials, a given token, the sf CLI, the legacy
username-password flow, and the embedded local org. Each returns an OrgSession; nothing here logs a secret.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import certifi
import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr
from requests.adapters import HTTPAdapter

from sfcleanup.config import AuthMode, OrgSettings
from sfcleanup.errors import AuthFailed, ConfigError, Misconfigured, TransientExhausted
from sfcleanup.salesforce.classify import misconfigured

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SANDBOX_AUDIENCE = "https://test.salesforce.com"
PRODUCTION_AUDIENCE = "https://login.salesforce.com"


@dataclass(frozen=True)
class OrgSession:
    instance_url: str
    access_token: SecretStr
    # The running user's Id, when the login answer named it (the identity URL's last part).
    user_id: str | None = None


@dataclass
class Connector:
    """Logs in (again, when a session expires) with one auth mode, over one HTTP session."""

    settings: OrgSettings
    http: requests.Session
    login: Callable[[], OrgSession]

    @property
    def can_refresh(self) -> bool:
        return self.settings.auth not in (AuthMode.TOKEN, AuthMode.SF_CLI)


def _token_request(http: requests.Session, login_url: str, form: dict[str, str], timeout: float) -> OrgSession:
    url = login_url.rstrip("/") + "/services/oauth2/token"
    try:
        response = http.post(url, data=form, timeout=timeout)
    except requests.RequestException as exc:
        problem = misconfigured(exc)
        if problem is not None:
            raise Misconfigured(f"cannot log in at {login_url}: {problem}") from None
        reason = type(exc).__name__
        raise TransientExhausted(f"cannot reach {login_url} to log in ({reason}); run again later") from None
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error", f"HTTP {response.status_code}") if isinstance(body, dict) else "bad response"
        description = body.get("error_description", "") if isinstance(body, dict) else ""
        raise AuthFailed(
            f"login to {login_url} refused: {error}: {description}; check the connected app, user and credentials"
        )
    return OrgSession(str(body["instance_url"]), SecretStr(str(body["access_token"])), _user_of(body.get("id")))


def _user_of(identity_url: object) -> str | None:
    """OAuth token answers carry `id`, the identity URL `https://login.../id/<org id>/<user id>`."""
    if not isinstance(identity_url, str) or "/id/" not in identity_url:
        return None
    return identity_url.rstrip("/").rsplit("/", 1)[-1] or None


def _audience(login_url: str) -> str:
    host = urlsplit(login_url).hostname or ""
    return SANDBOX_AUDIENCE if host == "test.salesforce.com" or ".sandbox." in host else PRODUCTION_AUDIENCE


def _private_key(path: Path) -> RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"org.private_key_file {path} cannot be read: {exc.strerror}") from None
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"org.private_key_file {path} is not an unencrypted PEM private key; export the connected app's key "
            "with `openssl rsa -in key.pem -out key.pem`"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        # Salesforce's JWT bearer flow accepts RS256 only.
        raise ConfigError(
            f"org.private_key_file {path} is not an RSA key; Salesforce signs JWT bearer logins with RS256 only: "
            "use the RSA key whose certificate the connected app holds"
        )
    return key


def _require(settings: OrgSettings, *names: str) -> None:
    missing = [name for name in names if getattr(settings, name) in (None, "")]
    if missing:
        raise ConfigError(
            f"auth mode {settings.auth} needs org.{', org.'.join(missing)} (or SFCLEANUP_ORG__{missing[0].upper()})"
        )


def _text(value: str | SecretStr | Path | None) -> str:
    """A required setting's value, after _require has checked it is there."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value is None else str(value)


def jwt_login(settings: OrgSettings, http: requests.Session) -> OrgSession:
    _require(settings, "consumer_key", "username", "private_key_file")
    key = _private_key(Path(_text(settings.private_key_file)))
    claims = {
        "iss": _text(settings.consumer_key),
        "sub": _text(settings.username),
        "aud": _audience(settings.login_url),
        "exp": int(time.time()) + 180,
    }
    assertion = jwt.encode(claims, key, algorithm="RS256")
    form = {"grant_type": JWT_GRANT, "assertion": assertion}
    return _token_request(http, settings.login_url, form, settings.timeout_s)


def client_credentials_login(settings: OrgSettings, http: requests.Session) -> OrgSession:
    _require(settings, "consumer_key", "consumer_secret")
    if urlsplit(settings.login_url).hostname in ("login.salesforce.com", "test.salesforce.com"):
        raise ConfigError("client credentials need the org's My Domain URL as org.login_url, not login/test")
    form = {
        "grant_type": "client_credentials",
        "client_id": _text(settings.consumer_key),
        "client_secret": _text(settings.consumer_secret),
    }
    return _token_request(http, settings.login_url, form, settings.timeout_s)


def password_login(settings: OrgSettings, http: requests.Session) -> OrgSession:
    _require(settings, "consumer_key", "consumer_secret", "username", "password")
    form = {
        "grant_type": "password",
        "client_id": _text(settings.consumer_key),
        "client_secret": _text(settings.consumer_secret),
        "username": _text(settings.username),
        "password": _text(settings.password) + _text(settings.security_token),
    }
    return _token_request(http, settings.login_url, form, settings.timeout_s)


def token_login(settings: OrgSettings) -> OrgSession:
    _require(settings, "instance_url", "access_token")
    instance_url = _text(settings.instance_url).rstrip("/")
    if urlsplit(instance_url).scheme != "https":
        raise ConfigError(f"org.instance_url {instance_url} must start with https://")
    return OrgSession(instance_url, SecretStr(_text(settings.access_token)))


def sf_cli_login(settings: OrgSettings) -> OrgSession:
    _require(settings, "target_org")
    sf = shutil.which("sf")
    if sf is None:
        raise ConfigError(
            "--target-org needs the Salesforce CLI (`sf`) on PATH; or pass --instance-url and --access-token"
        )
    # An argument list, no shell: the alias cannot inject a command.
    result = subprocess.run(  # noqa: S603
        [sf, "org", "display", "--target-org", _text(settings.target_org), "--json"],
        capture_output=True,
        text=True,
        timeout=settings.timeout_s,
        check=False,
    )
    try:
        details = json.loads(result.stdout)["result"]
        return OrgSession(str(details["instanceUrl"]), SecretStr(str(details["accessToken"])))
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"`sf org display --target-org {settings.target_org}` did not return an org; run `sf org login` first"
        ) from None


def build_connector(settings: OrgSettings, http: requests.Session) -> Connector:
    """The connector for the configured auth mode; a missing mode is a configuration error."""
    match settings.auth:
        case AuthMode.JWT:
            return Connector(settings, http, lambda: jwt_login(settings, http))
        case AuthMode.CLIENT_CREDENTIALS:
            return Connector(settings, http, lambda: client_credentials_login(settings, http))
        case AuthMode.PASSWORD:
            return Connector(settings, http, lambda: password_login(settings, http))
        case AuthMode.TOKEN:
            return Connector(settings, http, lambda: token_login(settings))
        case AuthMode.SF_CLI:
            return Connector(settings, http, lambda: sf_cli_login(settings))
        case AuthMode.LOCAL:
            raise ConfigError("the local org is connected with sfcleanup.salesforce.local, not build_connector")
        case None:
            raise ConfigError(
                "no Salesforce credentials: set org.auth and its keys in --config, or pass --instance-url and "
                "--access-token, --target-org ALIAS, or --org local"
            )


class _TrustAdapter(HTTPAdapter):
    """Verifies against one CA bundle on every request.

    requests lets REQUESTS_CA_BUNDLE override `session.verify` (psf/requests#3829), and simple-salesforce
    passes no `verify`, so the bundle is applied here, at the transport, where nothing overrides it.
    """

    def __init__(self, bundle: str) -> None:
        super().__init__()
        self._bundle = bundle

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(request, stream=stream, timeout=timeout, verify=self._bundle, cert=cert, proxies=proxies)


def _combined_bundle(extra: Path) -> str:
    """The public CAs, REQUESTS_CA_BUNDLE's (if set) and --ca-bundle's, in one file: all stay trusted."""
    parts = [Path(certifi.where())]
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(variable)
        if value and Path(value).is_file():
            parts.append(Path(value))
    parts.append(extra)
    handle = tempfile.NamedTemporaryFile("w", prefix="sfcleanup-ca-", suffix=".pem", delete=False)  # noqa: SIM115
    with handle:
        for part in parts:
            handle.write(part.read_text(encoding="utf-8").rstrip() + "\n")
    atexit.register(_remove, handle.name)
    return handle.name


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()


def http_session(settings: OrgSettings) -> requests.Session:
    """TLS verification is always on; REQUESTS_CA_BUNDLE is honoured, and --ca-bundle adds a CA to it."""
    session = requests.Session()
    if settings.ca_bundle is not None:
        if not settings.ca_bundle.is_file():
            raise ConfigError(f"org.ca_bundle {settings.ca_bundle} does not exist")
        session.mount("https://", _TrustAdapter(_combined_bundle(settings.ca_bundle)))
    return session
