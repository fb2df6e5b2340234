"""The one door every call to Salesforce goes through (`_call`): it checks the API reserve, runs the call
under the retry policy, logs in again once on an expired session, and translates failures into sfcleanup's
errors. `SalesforceClient` adds the calls themselves on top.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import requests
import structlog
from simple_salesforce.api import Salesforce
from simple_salesforce.util import exception_handler

from sfcleanup import logs
from sfcleanup.clock import Clock, utc_now
from sfcleanup.errors import (
    AmbiguousWrite,
    ApiError,
    AuthFailed,
    BudgetReserveReached,
    ConfigError,
    DailyLimitReached,
    Misconfigured,
    SfCleanupError,
    TransientExhausted,
)
from sfcleanup.salesforce.classify import Classified, Verdict, classify
from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import RetryPolicy
from sfcleanup.salesforce.usage import ApiUsage

T = TypeVar("T")
log = structlog.get_logger("sfcleanup.salesforce")


@dataclass(frozen=True)
class RequestBody:
    """What a REST call sends besides its method and URL."""

    json: object = None
    params: dict[str, str] | None = None
    # A file is streamed from disk, opened afresh for every attempt.
    data: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)


Body = RequestBody | None


class Door:
    def __init__(
        self,
        connector: Connector,
        *,
        api_version: str,
        retry: RetryPolicy,
        timeout_s: float,
        clock: Clock = utc_now,
    ) -> None:
        self._connector = connector
        self._clock = clock
        self.api_version = api_version
        self._retry = retry
        self._timeout = timeout_s
        self.usage = ApiUsage(clock)
        self._reserve = 0.0
        self._user_id: str | None = None
        self._user_id_asked = False
        # Answers read ahead of their readers (`SalesforceClient.prefetch`), by path, each handed out once.
        self._prefetched: dict[str, SubResult] = {}
        self.http = connector.http
        self.http.hooks["response"].append(self.usage.observe)
        self._sf = self._open(connector.login())

    def _open(self, session: OrgSession) -> Salesforce:
        # Every token this client holds, the first and each one a re-login brings, is masked in the logs.
        logs.register_secret(session.access_token.get_secret_value())
        self.instance_url = session.instance_url
        self._user_id = session.user_id or self._user_id
        return Salesforce(
            instance_url=session.instance_url,
            session_id=session.access_token.get_secret_value(),
            session=self.http,
            version=self.api_version,
            object_pairs_hook=dict,
        )

    @property
    def sf(self) -> Salesforce:
        return self._sf

    def _relogin(self) -> None:
        if not self._connector.can_refresh:
            raise AuthFailed(
                "the org refused the access token (wrong, or expired: a given token cannot be renewed); get a new "
                "token and run again"
            )
        try:
            self._sf = self._open(self._connector.login())
        except ConfigError as exc:
            raise AuthFailed(f"the session expired and logging in again failed: {exc}") from None
        log.info("salesforce.relogin")

    def keep_reserve(self, fraction: float) -> None:
        """Stop (resumable) before any call once the org's daily usage leaves less than `fraction` of its
        allowance, as the latest Sforce-Limit-Info header reports it."""
        self._reserve = fraction

    def _check_reserve(self, what: str) -> None:
        used, maximum = self.usage.used, self.usage.max
        if self._reserve <= 0 or used is None or not maximum:
            return
        floor = math.ceil(maximum * self._reserve)
        if maximum - used <= floor:
            raise BudgetReserveReached(
                f"{what}: the org has {maximum - used} of {maximum} daily API calls left, at the "
                f"{self._reserve:.0%} reserve kept for the rest of the business; run again later to continue"
            )

    def _call(self, what: str, fn: Callable[[Salesforce], T], *, write: bool = False) -> T:
        """Run one API call under the retry policy; a lost connection on a write raises AmbiguousWrite."""
        self._check_reserve(what)
        relogged = False
        while True:
            try:
                return self._retry.run(
                    lambda: fn(self._sf),
                    retry_connection_lost=not write,
                    on_retry=lambda exc, n: log.warning(
                        "salesforce.retry", call=what, attempt=n, reason=classify(exc).message[:200]
                    ),
                )
            except Exception as exc:
                verdict = classify(exc)
                if verdict.verdict is Verdict.EXPIRED_SESSION and not relogged:
                    self._relogin()
                    relogged = True
                    continue
                raise self._translate(what, exc, write=write) from None

    def _translate(self, what: str, exc: Exception, *, write: bool) -> Exception:
        return self._error(what, classify(exc), write=write)

    @staticmethod
    def _error(what: str, found: Classified, *, write: bool) -> SfCleanupError:
        """sfcleanup's error for a verdict: of a whole request, or of one Composite subrequest."""
        match found.verdict:
            case Verdict.DAILY_LIMIT:
                return DailyLimitReached(
                    f"the org's daily API limit is spent ({found.message}); run again when the 24-hour window rolls"
                )
            case Verdict.MISCONFIGURED:
                return Misconfigured(f"{what}: cannot use the org's URL: {found.message}")
            case Verdict.EXPIRED_SESSION:
                return AuthFailed(f"{what}: session refused after logging in again: {found.message}")
            case Verdict.CONNECTION_LOST if write:
                return AmbiguousWrite(f"{what}: {found.message} after the request was sent")
            case Verdict.CONNECTION_LOST | Verdict.TRANSIENT:
                return TransientExhausted(f"{what}: still failing after retries: {found.message}; run again later")
            case Verdict.FATAL:
                return ApiError(
                    f"{what}: {found.error_code or 'error'}: {found.message}",
                    status=found.status,
                    error_code=found.error_code,
                )

    def org_now(self) -> datetime:
        """The org's time now, as far as this worker can tell: its own clock corrected by the last Date header."""
        offset = self.usage.clock_offset
        return self._clock() + (offset or timedelta(0))

    def user_id(self) -> str | None:
        """The running user's Id: from the login answer, else from the documented `/services/oauth2/userinfo`;
        None when neither says (a given token without the openid scope, for example)."""
        if self._user_id is None and not self._user_id_asked:
            self._user_id_asked = True
            try:
                info = self._call("userinfo", lambda sf: self._send(sf, "userinfo", "GET", self._userinfo_url()))
                self._user_id = str(info.json().get("user_id") or "") or None
            except Misconfigured:
                raise  # an untrusted certificate or a host that does not resolve fails every other call too
            except (SfCleanupError, ValueError) as exc:
                # Expected with a token without the openid scope; a refused token fails the next call by itself.
                log.debug("salesforce.userinfo_unavailable", reason=str(exc)[:200])
        return self._user_id

    def _userinfo_url(self) -> str:
        return f"{self.instance_url}/services/oauth2/userinfo"

    def _send(
        self,
        sf: Salesforce,
        what: str,
        method: str,
        url: str,
        *,
        body: Body = None,
        stream: bool = False,
    ) -> requests.Response:
        headers = {"Authorization": f"Bearer {sf.session_id}", **(body.headers if body else {})}
        if body is not None and isinstance(body.data, Path):  # streamed from disk, opened afresh for every attempt
            with body.data.open("rb") as handle:
                response = self.http.request(
                    method,
                    url,
                    headers=headers,
                    timeout=self._timeout,
                    json=body.json,
                    params=body.params,
                    data=handle,
                    stream=stream,
                )
        else:
            response = self.http.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                json=body.json if body else None,
                params=body.params if body else None,
                stream=stream,
            )
        if response.status_code >= 300:
            exception_handler(response, what)
        return response

    def _url(self, path: str) -> str:
        return f"{self.instance_url}/services/data/v{self.api_version}/{path}"

    def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        write: bool = False,
        json: object = None,
        params: Mapping[str, str] | None = None,
        data: Path | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Any REST call under /services/data/vXX.X/ (Bulk API 2.0), through the same door as the rest."""
        body = RequestBody(json, dict(params) if params else None, data, dict(headers or {}))
        return self._call(what, lambda sf: self._send(sf, what, method, self._url(path), body=body), write=write)

    def get_url(self, what: str, url: str) -> requests.Response:
        """A GET of a URL the org handed out (a `nextRecordsUrl`, absolute or from the instance's root)."""
        full = url if url.startswith("https://") else f"{self.instance_url}/{url.lstrip('/')}"
        return self._call(what, lambda sf: self._send(sf, what, "GET", full))

    def download(self, what: str, path: str, target: Path) -> Path:
        """Stream a GET's body to `target`. The whole download is one attempt: a body cut off half-way is
        retried like any lost read, from the start, so `target` never keeps a partial file."""

        def fetch(sf: Salesforce) -> Path:
            response = self._send(sf, what, "GET", self._url(path), stream=True)
            with target.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    handle.write(chunk)
            return target

        return self._call(what, fetch)
