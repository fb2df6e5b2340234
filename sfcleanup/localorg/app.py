"""The local org's application: authentication, API accounting, faults, latency and routing.

`LocalOrg.handle` is the one entry point; the in-process requests adapter and the HTTPS server both call it,
so both ways in behave identically.
"""

from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sfcleanup.localorg import records
from sfcleanup.localorg.faults import FaultInjector, FaultProfile
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, error_body
from sfcleanup.localorg.locks import LockManager
from sfcleanup.localorg.records import RowError
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.stats import Stats
from sfcleanup.localorg.store import Store

DATA_PREFIX = re.compile(r"^/services/data/v(?P<version>\d{2,3}\.0)(?P<rest>/.*)?$")
MIN_VERSION = 50.0
LATEST_VERSION = "62.0"
# The versions `GET /services/data/` lists; any other version in a URL is a resource that does not exist (404).
LISTED_VERSIONS = frozenset(f"{v}.0" for v in range(int(MIN_VERSION), int(float(LATEST_VERSION)) + 1))
# "In each REST call, the maximum length for the combined URI and headers is 16,384 bytes": 414 when the URI alone
# is longer, 431 when URI and headers together are (Salesforce knowledge article 000386264).
MAX_URI_AND_HEADERS = 16_384
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

Handler = Callable[["LocalOrg", "RequestContext", HttpRequest, "re.Match[str]"], HttpResponse]


@dataclass
class RequestContext:
    """Per-request state: who holds locks, what the request costs in simulated time, which API version."""

    owner: int
    version: str
    sleep_ms: float = 0.0
    records_written: int = 0
    touched: list[str] = field(default_factory=list)
    # Seconds this request has spent waiting for record locks: the lock wait is one budget per request.
    lock_wait_spent_s: float = 0.0
    # Set once the session is accepted: only then does the answer carry Sforce-Limit-Info.
    authorised: bool = False


@dataclass(frozen=True)
class Credentials:
    """What the token endpoint accepts. JWT bearer needs `jwt_certificate_pem` (the connected app's cert)."""

    consumer_key: str = "sfcleanup-local-consumer"
    consumer_secret: str = "sfcleanup-local-secret"  # noqa: S105 - the local org's documented rehearsal secret
    username: str = "integration@sfcleanup.local"
    password: str = "rehearsal"  # noqa: S105 - the local org's documented rehearsal password
    jwt_certificate_pem: bytes | None = None


class LocalOrg:
    def __init__(
        self,
        store: Store | None = None,
        *,
        faults: FaultProfile | None = None,
        credentials: Credentials | None = None,
        access_token: str | None = None,
        instance_url: str = "https://sfcleanup-local.my.salesforce.com",
        sleep: Callable[[float], None] = time.sleep,
        state_path: Path | None = None,
    ) -> None:
        self.store = store or Store(state_path)
        self.profile = faults or FaultProfile()
        if self.profile.clock_skew_s:
            self.store.clock = _skewed(self.store.clock, self.profile.clock_skew_s)
        self.faults = FaultInjector(self.profile)
        self.credentials = credentials or Credentials()
        self.instance_url = instance_url
        self.sleep = sleep
        self.locks = LockManager(self.profile.lock_wait_s)
        self.stats = Stats()
        self.api_used = self.profile.daily_api_used
        self._counter_lock = threading.Lock()
        self._owners = itertools.count(1)
        self._tokens: dict[str, int] = {}
        self.access_token = access_token or self.issue_token()
        if access_token:
            self._tokens[access_token] = 0
        self.locators: dict[str, Any] = {}
        self.bulk_jobs: dict[str, Any] = {}
        # Imported here: the routes import this module for typing.
        from sfcleanup.localorg.routes import ROUTES

        self._routes = ROUTES

    # --- authentication -------------------------------------------------------------------------------
    def issue_token(self) -> str:
        token = "00D5g0000000001!" + secrets.token_urlsafe(32)
        with self._counter_lock:
            self._tokens[token] = 0
        return token

    def issued_tokens(self) -> list[str]:
        """Every access token this org has handed out and not yet expired (for tests that hunt for leaks)."""
        with self._counter_lock:
            return list(self._tokens)

    def _authorised(self, req: HttpRequest) -> bool:
        header = req.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return False
        with self._counter_lock:
            calls = self._tokens.get(token)
            if calls is None:
                return False
            expiry = self.profile.session_expiry_after_calls
            if expiry is not None and calls >= expiry:
                del self._tokens[token]
                return False
            self._tokens[token] = calls + 1
        return True

    # --- accounting ---------------------------------------------------------------------------------
    def now(self) -> datetime:
        return self.store.clock()

    def limit_info(self) -> str:
        return f"api-usage={self.api_used}/{self.profile.daily_api_limit}"

    def _count_call(self, endpoint: str) -> bool:
        """Count one API call; False when the daily allowance is already spent.

        Salesforce counts calls asynchronously, so a few calls past the maximum still succeed before the 403: usage
        in Sforce-Limit-Info can read above the maximum (`daily_limit_lag_calls`).
        """
        with self._counter_lock:
            if self.api_used >= self.profile.daily_api_limit + self.profile.daily_limit_lag_calls:
                return False
            self.api_used += 1
        self.stats.api_call(endpoint)
        return True

    @property
    def api_remaining(self) -> int:
        return max(0, self.profile.daily_api_limit - self.api_used)

    # --- record locks ---------------------------------------------------------------------------------
    def lock_row(self, ctx: RequestContext, spec: SObjectSpec, record_id: str) -> RowError | None:
        """Lock a record and its parents for this request, or say why the row cannot be written."""
        if self.faults.draw(self.profile.lock_failure_rate):
            self.stats.add("lock_failures")
            return _unable_to_lock(record_id)
        keys = records.lock_keys(spec, record_id, self.store)
        # One wait budget per request, as Salesforce fails a DML statement after one lock timeout. Waiting the
        # full lock_wait_s again for every row made N children of a locked parent wait N times as long, and the
        # later rows succeeded once the holder let go, so one request came back half failed, half applied.
        budget = max(0.0, self.profile.lock_wait_s - ctx.lock_wait_spent_s)
        attempt = self.locks.try_acquire(ctx.owner, keys, wait_s=budget)
        ctx.lock_wait_spent_s += attempt.waited_s
        if not attempt.acquired:
            self.stats.add("lock_failures")
            return _unable_to_lock(record_id)
        if attempt.waited:
            self.stats.add("lock_waits")
        return None

    def wrote(self, ctx: RequestContext, count: int = 1) -> None:
        ctx.records_written += count
        ctx.sleep_ms += count * self.profile.latency.write_ms_per_record
        self.stats.add("records_written", count)

    # --- entry point ----------------------------------------------------------------------------------
    def handle(self, req: HttpRequest) -> HttpResponse:
        too_large = _oversized(req)
        if too_large is not None:
            return too_large
        ctx = RequestContext(owner=next(self._owners), version=LATEST_VERSION)
        try:
            response = self._dispatch(ctx, req)
            if ctx.sleep_ms > 0:
                self.sleep(ctx.sleep_ms / 1000.0)
        finally:
            self.locks.release_all(ctx.owner)
        if ctx.authorised:
            # Salesforce documents the header on REST API responses; the token endpoint, the unauthenticated
            # version list and a 401 are answered without an org session to count against.
            response.headers.setdefault("Sforce-Limit-Info", self.limit_info())
        return response

    def _find(self, req: HttpRequest) -> tuple[Handler, re.Match[str], bool] | HttpResponse:
        for methods, pattern, handler, needs_auth in self._routes:
            match = pattern.match(req.path)
            if match is None:
                continue
            if req.method not in methods:
                return HttpResponse.json(
                    405, error_body("METHOD_NOT_ALLOWED", f"HTTP Method '{req.method}' not allowed.")
                )
            return handler, match, needs_auth
        return BadRequest(404, "NOT_FOUND", "The requested resource does not exist").response()

    def _dispatch(self, ctx: RequestContext, req: HttpRequest) -> HttpResponse:
        if req.path.rstrip("/") == "/_localorg/stats":
            return HttpResponse.json(200, self.stats_snapshot())
        found = self._find(req)
        if isinstance(found, HttpResponse):
            return found
        handler, match, needs_auth = found
        if not needs_auth:
            return self._run(handler, ctx, req, match)
        return self._api_call(handler, ctx, req, match)

    def route(self, ctx: RequestContext, req: HttpRequest) -> HttpResponse:
        """Run a subrequest of an already authorised and counted call (composite)."""
        found = self._find(req)
        if isinstance(found, HttpResponse):
            return found
        handler, match, _ = found
        return self._run(handler, ctx, req, match)

    def _api_call(self, handler: Handler, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
        version = match.groupdict().get("version")
        if version is not None:
            if version not in LISTED_VERSIONS:
                return BadRequest(404, "NOT_FOUND", "The requested resource does not exist").response()
            ctx.version = version
        if not self._authorised(req):
            return HttpResponse.json(401, error_body("INVALID_SESSION_ID", "Session expired or invalid"))
        ctx.authorised = True
        ctx.sleep_ms += self.profile.latency.request_ms
        if self.faults.draw(self.profile.timeout_rate):
            self.stats.add("faults_timeout")
            return HttpResponse(0, reset_connection=True, headers={"X-LocalOrg-Fault": "timeout"})
        if self.faults.unavailable():
            self.stats.add("faults_unavailable")
            return HttpResponse.json(
                503, error_body("SERVER_UNAVAILABLE", "Server is temporarily unavailable. Please try again later.")
            )
        if self.faults.draw(self.profile.concurrent_limit_rate):
            self.stats.add("faults_concurrent_limit")
            return HttpResponse.json(
                403,
                error_body(
                    "REQUEST_LIMIT_EXCEEDED",
                    "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
                ),
            )
        if not self._count_call(handler.__name__):
            return HttpResponse.json(403, error_body("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        response = self._run(handler, ctx, req, match)
        if (
            req.method in WRITE_METHODS
            and response.status < 300
            and self.faults.draw(self.profile.reset_after_write_rate)
        ):
            self.stats.add("faults_reset_after_write")
            return HttpResponse(0, reset_connection=True, headers={"X-LocalOrg-Fault": "reset"})
        return response

    def _run(self, handler: Handler, ctx: RequestContext, req: HttpRequest, match: re.Match[str]) -> HttpResponse:
        try:
            return handler(self, ctx, req, match)
        except BadRequest as exc:
            return exc.response()

    def stats_snapshot(self) -> dict[str, Any]:
        snapshot = self.stats.snapshot()
        snapshot["api_usage"] = {"used": self.api_used, "max": self.profile.daily_api_limit}
        return snapshot


def _unable_to_lock(record_id: str) -> RowError:
    return RowError("UNABLE_TO_LOCK_ROW", f"unable to obtain exclusive access to this record or 1 records: {record_id}")


def _skewed(clock: Callable[[], datetime], skew_s: float) -> Callable[[], datetime]:
    offset = timedelta(seconds=skew_s)

    def skewed() -> datetime:
        return clock() + offset

    return skewed


def _oversized(req: HttpRequest) -> HttpResponse | None:
    """414 for a URI longer than the limit, 431 for URI and headers together longer than it."""
    uri = len(req.target.encode())
    if uri > MAX_URI_AND_HEADERS:
        return HttpResponse(414, b"URI Too Long", {"Content-Type": "text/plain"})
    headers = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in req.headers.items())
    if uri + headers > MAX_URI_AND_HEADERS:
        return HttpResponse(431, b"Request Header Fields Too Large", {"Content-Type": "text/plain"})
    return None
