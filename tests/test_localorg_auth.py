"""The local org's OAuth token endpoint and bearer tokens, through unmodified simple-salesforce logins.

simple-salesforce posts every login to `https://<domain>.salesforce.com/services/oauth2/token`; the adapter
mounted on the session routes that to the org, whatever the host.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from sfcleanup.localorg import adapter
from sfcleanup.localorg.app import Credentials, LocalOrg
from sfcleanup.localorg.faults import FaultProfile
from sfcleanup.localorg.store import Store
from tests.support import KeyPair, demo_store
from tests.test_localorg_rest import assert_error, assert_shape, connect

TOKEN_PATH = "/services/oauth2/token"
LOGIN_URL = "https://login.salesforce.com" + TOKEN_PATH


@pytest.fixture(scope="module")
def app_key() -> KeyPair:
    return KeyPair()


@pytest.fixture(scope="module")
def other_key() -> KeyPair:
    return KeyPair()


def make_org(app_key: KeyPair, faults: FaultProfile | None = None) -> LocalOrg:
    store, _ = demo_store()
    return LocalOrg(store, faults=faults, credentials=Credentials(jwt_certificate_pem=app_key.certificate_pem))


@pytest.fixture
def org(app_key: KeyPair) -> LocalOrg:
    return make_org(app_key)


def session_on(org: LocalOrg) -> requests.Session:
    session = requests.Session()
    adapter.mount(session, org)
    return session


def jwt_login(
    org: LocalOrg, private_pem: str, *, consumer_key: str | None = None, username: str | None = None
) -> Salesforce:
    return Salesforce(
        username=username or org.credentials.username,
        consumer_key=consumer_key or org.credentials.consumer_key,
        privatekey=private_pem,
        session=session_on(org),
    )


def assertion(org: LocalOrg, key: KeyPair, **claims: Any) -> str:
    payload = {
        "iss": org.credentials.consumer_key,
        "sub": org.credentials.username,
        "aud": "https://login.salesforce.com",
        "exp": int((datetime.now(UTC) + timedelta(minutes=3)).timestamp()),
        **claims,
    }
    return jwt.encode(payload, key.private_pem, algorithm="RS256")


def count_accounts(sf: Salesforce) -> int:
    return int(sf.query("SELECT COUNT() FROM Account")["totalSize"])


# --- JWT bearer -----------------------------------------------------------------------------------------------
def test_jwt_login_gives_a_working_session(org: LocalOrg, app_key: KeyPair) -> None:
    """A JWT signed by the connected app's key logs in: a new token for the org's instance that queries."""
    sf = jwt_login(org, app_key.private_pem)
    assert sf.session_id != org.access_token
    assert f"https://{sf.sf_instance}" == org.instance_url
    assert count_accounts(sf) == 51


def test_jwt_signed_by_another_key_is_invalid_grant(org: LocalOrg, other_key: KeyPair) -> None:
    """A JWT whose signature does not verify against the app's certificate is refused with invalid_grant."""
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        jwt_login(org, other_key.private_pem)
    assert refused.value.code == "invalid_grant"


def test_jwt_for_another_consumer_key_is_invalid_client_id(org: LocalOrg, app_key: KeyPair) -> None:
    """A JWT whose issuer is not the connected app's consumer key is refused with invalid_client_id."""
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        jwt_login(org, app_key.private_pem, consumer_key="someone-elses-app")
    assert refused.value.code == "invalid_client_id"


def test_expired_jwt_is_invalid_grant(org: LocalOrg, app_key: KeyPair) -> None:
    """A JWT past its `exp` is refused with 400 invalid_grant in OAuth's {error, error_description} body."""
    expired = assertion(org, app_key, exp=int((datetime.now(UTC) - timedelta(minutes=5)).timestamp()))
    answer = session_on(org).post(
        LOGIN_URL, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": expired}
    )
    assert answer.status_code == 400
    assert_shape(answer.json(), "oauth_error.json", exact=True)
    assert answer.json()["error"] == "invalid_grant"


def test_jwt_for_another_audience_is_invalid_grant(org: LocalOrg, app_key: KeyPair) -> None:
    """A JWT addressed to another audience than login/test.salesforce.com or the instance is refused."""
    other = assertion(org, app_key, aud="https://example.com")
    answer = session_on(org).post(
        LOGIN_URL, data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": other}
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


def test_jwt_needs_a_configured_certificate(app_key: KeyPair) -> None:
    """An org without a connected-app certificate refuses JWT bearer with invalid_client."""
    org = LocalOrg(Store())
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        jwt_login(org, app_key.private_pem)
    assert refused.value.code == "invalid_client"


# --- access token, client credentials, password ---------------------------------------------------------------
def test_access_token_login_uses_the_token_as_given(org: LocalOrg) -> None:
    """`Salesforce(instance_url=..., session_id=...)` with the org's token queries without any login call."""
    sf = connect(org)
    assert count_accounts(sf) == 51


def test_wrong_bearer_token_is_invalid_session_id(org: LocalOrg) -> None:
    """A token the org never issued answers 401 INVALID_SESSION_ID: SalesforceExpiredSession, nothing counted."""
    before = org.store.snapshot()
    sf = connect(org, token="00D5g0000000001!not-a-token")
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.Account.create({"Name": "Never"})
    assert expired.value.status == 401
    assert_error(expired.value.content, "INVALID_SESSION_ID")
    assert org.api_used == 0 and org.store.snapshot() == before


def test_client_credentials_login(org: LocalOrg) -> None:
    """simple-salesforce's client-credentials login (secret in HTTP Basic, My Domain URL) gets a working token."""
    sf = Salesforce(
        consumer_key=org.credentials.consumer_key,
        consumer_secret=org.credentials.consumer_secret,
        domain="sfcleanup-local.my",
        session=session_on(org),
    )
    assert count_accounts(sf) == 51


def test_client_credentials_in_the_form_body_answer_the_documented_token(org: LocalOrg) -> None:
    """Client id and secret posted in the form also work, and the answer has the documented token keys."""
    answer = session_on(org).post(
        org.instance_url + TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": org.credentials.consumer_key,
            "client_secret": org.credentials.consumer_secret,
        },
    )
    assert answer.status_code == 200
    assert_shape(answer.json(), "oauth_token.json")
    assert answer.json()["instance_url"] == org.instance_url and answer.json()["token_type"] == "Bearer"
    assert "Sforce-Limit-Info" not in answer.headers  # the token endpoint is not the REST API
    assert count_accounts(connect(org, token=answer.json()["access_token"])) == 51
    assert org.api_used == 1  # the token call itself is not an API call


@pytest.mark.parametrize(
    ("key", "secret"),
    [("sfcleanup-local-consumer", "wrong-secret"), ("someone-elses-app", "sfcleanup-local-secret")],
)
def test_client_credentials_with_a_wrong_secret_are_invalid_client(org: LocalOrg, key: str, secret: str) -> None:
    """A wrong consumer key or secret in HTTP Basic is refused with invalid_client."""
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(consumer_key=key, consumer_secret=secret, domain="sfcleanup-local.my", session=session_on(org))
    assert refused.value.code == "invalid_client"


def test_malformed_basic_credentials_are_invalid_client(org: LocalOrg) -> None:
    """An Authorization: Basic header that is not base64 of `id:secret` is refused, not a server error."""
    answer = session_on(org).post(
        org.instance_url + TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + base64.b64encode(b"no-colon-here").decode() + "!!"},
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"


def test_password_login(org: LocalOrg) -> None:
    """The legacy username-password flow with the right consumer key and secret gets a working token."""
    creds = org.credentials
    sf = Salesforce(
        username=creds.username,
        password=creds.password,
        consumer_key=creds.consumer_key,
        consumer_secret=creds.consumer_secret,
        session=session_on(org),
    )
    assert count_accounts(sf) == 51


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("password", "not-the-password", "invalid_grant"),
        ("username", "someone@else.example", "invalid_grant"),
        ("consumer_secret", "wrong-secret", "invalid_client"),
        ("consumer_key", "someone-elses-app", "invalid_client_id"),
    ],
)
def test_password_login_with_wrong_credentials_is_refused(org: LocalOrg, field: str, value: str, error: str) -> None:
    """A wrong password or user is invalid_grant, a wrong secret invalid_client, a wrong key invalid_client_id."""
    creds = org.credentials
    login = {
        "username": creds.username,
        "password": creds.password,
        "consumer_key": creds.consumer_key,
        "consumer_secret": creds.consumer_secret,
        field: value,
    }
    with pytest.raises(SalesforceAuthenticationFailed) as refused:
        Salesforce(**login, session=session_on(org))
    assert refused.value.code == error


def test_unknown_grant_type_is_unsupported(org: LocalOrg) -> None:
    """A grant type the endpoint does not know answers unsupported_grant_type."""
    answer = session_on(org).post(LOGIN_URL, data={"grant_type": "authorization_code", "code": "x"})
    assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"


# --- session expiry -------------------------------------------------------------------------------------------
def test_session_expires_after_n_calls_and_a_new_token_works(app_key: KeyPair) -> None:
    """With session_expiry_after_calls=3 the 4th call is 401; a token from the token endpoint then works."""
    org = make_org(app_key, FaultProfile(session_expiry_after_calls=3))
    sf = connect(org)
    assert [count_accounts(sf) for _ in range(3)] == [51, 51, 51]
    with pytest.raises(SalesforceExpiredSession) as expired:
        count_accounts(sf)
    assert_error(expired.value.content, "INVALID_SESSION_ID")
    fresh = session_on(org).post(
        LOGIN_URL,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion(org, app_key),
        },
    )
    assert fresh.status_code == 200
    renewed = connect(org, token=fresh.json()["access_token"])
    assert [count_accounts(renewed) for _ in range(3)] == [51, 51, 51]
    with pytest.raises(SalesforceExpiredSession):
        count_accounts(connect(org))  # the expired token stays expired
    assert org.api_used == 6


def test_jwt_client_logs_in_again_by_itself_when_its_session_expires(app_key: KeyPair) -> None:
    """simple-salesforce holding JWT credentials re-logs in on 401 INVALID_SESSION_ID and carries on."""
    org = make_org(app_key, FaultProfile(session_expiry_after_calls=2))
    sf = jwt_login(org, app_key.private_pem)
    first_token = sf.session_id
    assert [count_accounts(sf) for _ in range(5)] == [51] * 5
    assert sf.session_id != first_token
    assert org.api_used == 5
