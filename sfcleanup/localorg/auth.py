"""OAuth 2.0 token endpoint: JWT bearer (RS256, checked against the connected app's certificate), client
credentials and the legacy username-password flow, with Salesforce's error bodies."""

from __future__ import annotations

import base64
import binascii
import re
import time
from urllib.parse import parse_qs

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from sfcleanup.localorg import schema
from sfcleanup.localorg.context import Org, RequestContext
from sfcleanup.localorg.http import HttpRequest, HttpResponse

_USER = schema.BY_NAME["user"]
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


def _oauth_error(error: str, description: str, status: int = 400) -> HttpResponse:
    return HttpResponse.json(status, {"error": error, "error_description": description})


def _identity(org: Org) -> tuple[str, str]:
    """The org's id and its user's id, as seeded (placeholders in a store seeded before they were)."""
    return (
        org.store.first_id("Organization") or "00D000000000001AAA",
        org.store.first_id("User") or "005000000000001AAA",
    )


def _granted(org: Org) -> HttpResponse:
    org_id, user_id = _identity(org)
    return HttpResponse.json(
        200,
        {
            "access_token": org.issue_token(),
            "instance_url": org.instance_url,
            "id": f"{org.instance_url}/id/{org_id}/{user_id}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "scope": "api",
        },
    )


def _jwt_grant(org: Org, assertion: str) -> HttpResponse:
    certificate = org.credentials.jwt_certificate_pem
    if certificate is None:
        return _oauth_error("invalid_client", "no certificate is configured for JWT bearer on this org")
    public_key = x509.load_pem_x509_certificate(certificate).public_key()
    if not isinstance(public_key, RSAPublicKey):
        return _oauth_error("invalid_client", "the connected app's certificate is not RSA")
    try:
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=["RS256"],
            audience=[*AUDIENCES, org.instance_url],
            options={"require": ["iss", "sub", "aud", "exp"]},
        )
    except jwt.ExpiredSignatureError:
        return _oauth_error("invalid_grant", "expired authorization code")
    except jwt.PyJWTError:
        return _oauth_error("invalid_grant", "invalid assertion")
    if claims["iss"] != org.credentials.consumer_key:
        return _oauth_error("invalid_client_id", "client identifier invalid")
    if claims["sub"] != org.credentials.username:
        return _oauth_error("invalid_grant", "user hasn't approved this consumer")
    return _granted(org)


def _basic_client(req: HttpRequest) -> tuple[str, str] | None:
    """Client id and secret from `Authorization: Basic` (RFC 6749 client_secret_basic), if it holds them."""
    scheme, _, encoded = (req.header("authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, colon, secret = decoded.partition(":")
    return (client_id, secret) if colon else None


def token(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
    form.update({k: v[0] for k, v in req.query.items() if k not in form})
    # Salesforce takes the client's credentials from the form or from HTTP Basic; simple-salesforce's
    # client-credentials login sends them only as Basic, which this endpoint used to refuse.
    basic = _basic_client(req)
    if basic is not None and "client_id" not in form:
        form["client_id"], form["client_secret"] = basic
    grant = form.get("grant_type", "")
    creds = org.credentials
    if grant == JWT_GRANT:
        return _jwt_grant(org, form.get("assertion", ""))
    if grant == "client_credentials":
        if form.get("client_id") != creds.consumer_key or form.get("client_secret") != creds.consumer_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        return _granted(org)
    if grant == "password":
        if form.get("client_id") != creds.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        # The username-password flow needs the consumer secret too; it used to be ignored, so a worker
        # configured with a wrong secret passed rehearsal and failed against a real org.
        if form.get("client_secret") != creds.consumer_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        if form.get("username") != creds.username or form.get("password") != creds.password:
            return _oauth_error("invalid_grant", "authentication failure")
        return _granted(org)
    return _oauth_error("unsupported_grant_type", "grant type not supported")


def userinfo(org: Org, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
    """The OpenID Connect UserInfo endpoint: who the session's user is, in the documented field names."""
    org_id, user_id = _identity(org)
    user = org.store.get_fields(_USER, user_id, ("Username",)) or {}
    username = str(user.get("Username") or org.credentials.username)
    return HttpResponse.json(
        200,
        {
            "sub": f"{org.instance_url}/id/{org_id}/{user_id}",
            "user_id": user_id,
            "organization_id": org_id,
            "preferred_username": username,
            "email": username,
            "active": True,
            "user_type": "STANDARD",
        },
    )
