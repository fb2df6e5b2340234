"""The local org's application: authentication, API accounting, faults, latency and routing.

`LocalOrg.handle` is the one entry point; the in-process requests adapter and the HTTPS server both call it,
so both ways in behave identically.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sfcleanup.localorg import records
from sfcleanup.localorg.bulk.jobs import BulkState, Job
from sfcleanup.localorg.chains import ChainBatch
from sfcleanup.localorg.context import (
    LATEST_VERSION,
    LISTED_VERSIONS,
    Credentials,
    Handler,
    RequestContext,
    Router,
)
from sfcleanup.localorg.faults import FaultInjector, FaultProfile
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, error_body
from sfcleanup.localorg.locators import QueryLocators
from sfcleanup.localorg.locks import LockManager
from sfcleanup.localorg.records import RowError
from sfcleanup.localorg.routes import ROUTER
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.sessions import Sessions
from sfcleanup.localorg.stats import Stats
from sfcleanup.localorg.store import Store

# The app's public names: the org, what its token endpoint accepts, and a request's context (for tests).
__all__ = ["Credentials", "LocalOrg", "RequestContext"]

# "In each REST call, the maximum length for the combined URI and headers is 16,384 bytes": 414 when the URI alone
# is longer, 431 when URI and headers together are (Salesforce knowledge article 000386264).
MAX_URI_AND_HEADERS = 16_384
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


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
        router: Router = ROUTER,
    ) -> None:
        self.store = store or Store(state_path)
        self.profile = faults or FaultProfile()
        if self.profile.clock_skew_s:
            self.store.clock = _skewed(self.store.clock, self.profile.clock_skew_s)
        self.faults = FaultInjector(self.profile)
        self.store.rewrites = self.profile.rewrites
        self.credentials = credentials or Credentials()
        self.instance_url = instance_url
        self.sleep = sleep
        self.locks = LockManager(self.profile.lock_wait_s)
        self.stats = Stats()
        self.api_used = self.profile.daily_api_used
        self._counter_lock = threading.Lock()
        self._owners = itertools.count(1)
        self.sessions = Sessions()
        self.access_token = access_token or self.issue_token()
        if access_token:
            self.sessions.accept(access_token)
        # Handler state, owned here and typed: open REST query locators, and the Bulk API 2.0 jobs.
        self.locators = QueryLocators()
        self.bulk = BulkState()
        self._router = router

    @property
    def bulk_jobs(self) -> dict[str, Job]:
        """The org's Bulk API 2.0 jobs by id (tests delete one as Salesforce does after seven days)."""
        return self.bulk.jobs

    # --- authentication -------------------------------------------------------------------------------
    def issue_token(self) -> str:
        return self.sessions.issue()

    def issued_tokens(self) -> list[str]:
        """Every access token this org has handed out and not yet expired (for tests that hunt for leaks)."""
        return self.sessions.issued()

    def _authorised(self, req: HttpRequest) -> bool:
        header = req.header("authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return False
        return self.sessions.use(token, self.profile.session_expiry_after_calls)

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
    def lock_row(
        self, ctx: RequestContext, spec: SObjectSpec, record_id: str, chains: ChainBatch | None = None
    ) -> RowError | None:
        """Lock a record and its parents for this request, or say why the row cannot be written.

        `chains`: the request's lock chains read together (`Store.lock_chains`), when it locks many rows.
        """
        if self.faults.draw(self.profile.lock_failure_rate):
            self.stats.add("lock_failures")
            return _unable_to_lock(record_id)
        keys = records.lock_keys(spec, record_id, self.store) if chains is None else chains.keys(spec, record_id)
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

    def _dispatch(self, ctx: RequestContext, req: HttpRequest) -> HttpResponse:
        if req.path.rstrip("/") == "/_localorg/stats":
            return HttpResponse.json(200, self.stats_snapshot())
        found = self._router.find(req)
        if isinstance(found, HttpResponse):
            return found
        route, match = found
        if not route.needs_auth:
            return self._run(route.handler, ctx, req, match)
        return self._api_call(route.handler, ctx, req, match)

    def route(self, ctx: RequestContext, req: HttpRequest) -> HttpResponse:
        """Run a subrequest of an already authorised and counted call (composite)."""
        found = self._router.find(req)
        if isinstance(found, HttpResponse):
            return found
        route, match = found
        return self._run(route.handler, ctx, req, match)

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
