"""What a request handler sees of the org, and the route table the app is built with.

Handlers (auth, rest, collections, composite, bulk) take an `Org`, the typed view of the org they need, and never
import the app: the app (`app.LocalOrg`) implements `Org` and is given its `Router` when it is constructed, so the
dependency runs one way, app -> routes -> handlers -> this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sfcleanup.localorg.bulk.jobs import BulkState
from sfcleanup.localorg.chains import ChainBatch
from sfcleanup.localorg.faults import FaultInjector, FaultProfile
from sfcleanup.localorg.http import BadRequest, HttpRequest, HttpResponse, error_body
from sfcleanup.localorg.locators import QueryLocators
from sfcleanup.localorg.locks import LockManager
from sfcleanup.localorg.records import RowError
from sfcleanup.localorg.schema import SObjectSpec
from sfcleanup.localorg.stats import Stats
from sfcleanup.localorg.store import Store

MIN_VERSION = 50.0
LATEST_VERSION = "62.0"
# The versions `GET /services/data/` lists; any other version in a URL is a resource that does not exist (404).
LISTED_VERSIONS = frozenset(f"{v}.0" for v in range(int(MIN_VERSION), int(float(LATEST_VERSION)) + 1))


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


class Org(Protocol):
    """The org as its handlers see it. Attributes are read at each use: tests swap `profile` on a live org."""

    store: Store
    profile: FaultProfile
    faults: FaultInjector
    credentials: Credentials
    instance_url: str
    sleep: Callable[[float], None]
    locks: LockManager
    stats: Stats
    # Handler state the org owns: open query locators and the Bulk API 2.0 jobs.
    locators: QueryLocators
    bulk: BulkState

    @property
    def api_remaining(self) -> int: ...

    def now(self) -> datetime: ...

    def issue_token(self) -> str: ...

    def lock_row(
        self, ctx: RequestContext, spec: SObjectSpec, record_id: str, chains: ChainBatch | None = None
    ) -> RowError | None: ...

    def wrote(self, ctx: RequestContext, count: int = 1) -> None: ...

    def route(self, ctx: RequestContext, req: HttpRequest) -> HttpResponse:
        """Run a subrequest of an already authorised and counted call (composite)."""
        ...


Handler = Callable[[Org, RequestContext, HttpRequest, "re.Match[str]"], HttpResponse]


@dataclass(frozen=True)
class Route:
    methods: frozenset[str]
    pattern: re.Pattern[str]
    handler: Handler
    # False for the token endpoint and the version list: no session, no API call counted.
    needs_auth: bool = True

    @classmethod
    def of(cls, methods: str, pattern: str, handler: Handler, *, needs_auth: bool = True) -> Route:
        """`methods` space-separated, `pattern` a regular expression over the path."""
        return cls(frozenset(methods.split()), re.compile(pattern), handler, needs_auth)


@dataclass(frozen=True)
class Router:
    """The URL map: the first route whose pattern matches the path answers (405 if it does not take the method)."""

    routes: tuple[Route, ...]

    @classmethod
    def of(cls, *groups: Iterable[Route]) -> Router:
        return cls(tuple(route for group in groups for route in group))

    def find(self, req: HttpRequest) -> tuple[Route, re.Match[str]] | HttpResponse:
        for route in self.routes:
            match = route.pattern.match(req.path)
            if match is None:
                continue
            if req.method not in route.methods:
                return HttpResponse.json(
                    405, error_body("METHOD_NOT_ALLOWED", f"HTTP Method '{req.method}' not allowed.")
                )
            return route, match
        return BadRequest(404, "NOT_FOUND", "The requested resource does not exist").response()
