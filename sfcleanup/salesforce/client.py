"""The worker's one door to Salesforce: every call goes through `_call`, which counts it, retries what is
transient, logs in again once on an expired session, and translates failures into sfcleanup's errors.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, TypeVar

import requests
import structlog
from simple_salesforce.api import Salesforce
from simple_salesforce.util import exception_handler

from sfcleanup import logs
from sfcleanup.errors import (
    AmbiguousWrite,
    ApiError,
    AuthFailed,
    BudgetReserveReached,
    ConfigError,
    DailyLimitReached,
    SfCleanupError,
    TransientExhausted,
)
from sfcleanup.salesforce import composite
from sfcleanup.salesforce.classify import Classified, Verdict, classify
from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import RetryPolicy

T = TypeVar("T")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
log = structlog.get_logger("sfcleanup.salesforce")
# (sobject, record id, fields): one single-record PATCH.
Update = tuple[str, str, dict[str, Any]]


def _restful(sf: Salesforce, path: str, **kwargs: Any) -> Any:
    """simple-salesforce types restful's result as optional; an empty body only comes back from a 204."""
    return sf.restful(path, **kwargs)


class ApiUsage:
    """Calls this worker made, and the org's daily usage as the last `Sforce-Limit-Info` header reported it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.used: int | None = None
        self.max: int | None = None
        # The org's clock minus this machine's, from the last HTTP Date header (whole seconds).
        self.clock_offset: timedelta | None = None

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: sees every HTTP response, whichever API made it."""
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        offset = _clock_offset(response.headers.get("Date"))
        with self._lock:
            if "/services/oauth2/" not in (response.url or ""):
                self.calls += 1
            if match:
                self.used, self.max = int(match.group(1)), int(match.group(2))
            if offset is not None:
                self.clock_offset = offset


def _clock_offset(date_header: str | None) -> timedelta | None:
    if not date_header:
        return None
    try:
        org_time = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if org_time.tzinfo is None:
        return None
    return org_time - datetime.now(UTC)


class SalesforceClient:
    def __init__(self, connector: Connector, *, api_version: str, retry: RetryPolicy, timeout_s: float) -> None:
        self._connector = connector
        self.api_version = api_version
        self._retry = retry
        self._timeout = timeout_s
        self.usage = ApiUsage()
        self._reserve = 0.0
        self._user_id: str | None = None
        self._user_id_asked = False
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
                "the session expired and a given access token cannot be renewed: get a new token and run again"
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
        return datetime.now(UTC) + (offset or timedelta(0))

    def user_id(self) -> str | None:
        """The running user's Id: from the login answer, else from the documented `/services/oauth2/userinfo`;
        None when neither says (a given token without the openid scope, for example)."""
        if self._user_id is None and not self._user_id_asked:
            self._user_id_asked = True
            try:
                info = self._call("userinfo", lambda sf: self._send(sf, "userinfo", "GET", self._userinfo_url()))
                self._user_id = str(info.json().get("user_id") or "") or None
            except (SfCleanupError, ValueError) as exc:
                log.info("salesforce.userinfo_unavailable", reason=str(exc)[:200])
        return self._user_id

    def _userinfo_url(self) -> str:
        return f"{self.instance_url}/services/oauth2/userinfo"

    def _send(self, sf: Salesforce, what: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        extra_headers: dict[str, str] = kwargs.pop("headers", {})
        headers = {"Authorization": f"Bearer {sf.session_id}", **extra_headers}
        upload = kwargs.get("data")
        if isinstance(upload, Path):  # streamed from disk, opened afresh for every attempt
            with upload.open("rb") as handle:
                options = {**kwargs, "data": handle}
                response = self.http.request(method, url, headers=headers, timeout=self._timeout, **options)
        else:
            response = self.http.request(method, url, headers=headers, timeout=self._timeout, **kwargs)
        if response.status_code >= 300:
            exception_handler(response, what)
        return response

    def _url(self, path: str) -> str:
        return f"{self.instance_url}/services/data/v{self.api_version}/{path}"

    def request(self, what: str, method: str, path: str, *, write: bool = False, **kwargs: Any) -> requests.Response:
        """Any REST call under /services/data/vXX.X/ (Bulk API 2.0), through the same door as the rest."""
        return self._call(what, lambda sf: self._send(sf, what, method, self._url(path), **dict(kwargs)), write=write)

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

    # --- reads ----------------------------------------------------------------------------------------
    def query_page(self, soql: str, *, batch_size: int = 2000) -> tuple[list[dict[str, Any]], bool]:
        """The first page of a query, and whether it was the whole result."""
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        page: dict[str, Any] = self._call("query", lambda sf: sf.query(soql, headers=headers, timeout=self._timeout))
        return list(page.get("records", [])), bool(page.get("done", True))

    def query_pages(self, soql: str, *, batch_size: int = 2000) -> Iterator[list[dict[str, Any]]]:
        headers = {"Sforce-Query-Options": f"batchSize={batch_size}"}
        page: dict[str, Any] = self._call("query", lambda sf: sf.query(soql, headers=headers, timeout=self._timeout))
        yield list(page.get("records", []))
        while not page.get("done", True):
            page = self._call("query_more", self._more(str(page["nextRecordsUrl"]), headers))
            yield list(page.get("records", []))

    def _more(self, next_url: str, headers: dict[str, str]) -> Callable[[Salesforce], Any]:
        return lambda sf: sf.query_more(next_url, identifier_is_url=True, headers=headers, timeout=self._timeout)

    def query_all(self, soql: str) -> list[dict[str, Any]]:
        return [record for page in self.query_pages(soql) for record in page]

    def _rest_of_query(self, page: dict[str, Any]) -> dict[str, Any]:
        """A query answer from inside a Composite call, with every further page read by plain GETs."""
        records = list(page.get("records", []))
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            page = self._call("query_more", self._more(str(page["nextRecordsUrl"]), {}))
            records += page.get("records", [])
        return {**page, "records": records, "done": True, "totalSize": len(records)}

    def get_many(self, what: str, paths: list[str]) -> list[Any]:
        """Up to 25 GETs (at most 5 of them queries) in one Composite call: one API call instead of many.

        Only sObject resources and queries belong here (Composite supports nothing else). Each result is
        matched by referenceId; a subrequest that failed transiently is asked again; a query is read to its end.
        """
        subrequests = [
            composite.subrequest("GET", f"/services/data/v{self.api_version}/{path}", index)
            for index, path in enumerate(paths)
        ]
        bodies = []
        for result in self.composite_rounds(what, subrequests):
            if result.failure is not None:
                raise self._error(what, result.failure, write=False)
            bodies.append(result.body)
        return bodies

    def describe(self, sobject: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            f"describe {sobject}", lambda sf: _restful(sf, f"sobjects/{sobject}/describe/", timeout=self._timeout)
        )
        return result

    def limits(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("limits", lambda sf: _restful(sf, "limits/", timeout=self._timeout))
        return result

    # --- composite ------------------------------------------------------------------------------------
    def _post_composite(
        self, what: str, subrequests: list[dict[str, Any]], *, write: bool, all_or_none: bool = False
    ) -> list[SubResult]:
        body = {"allOrNone": all_or_none, "compositeRequest": subrequests}
        answer = self._call(
            what, lambda sf: _restful(sf, "composite", method="POST", json=body, timeout=self._timeout), write=write
        )
        results = composite.decode(subrequests, answer)
        for result in results:
            if result.failure is not None and result.failure.verdict is Verdict.DAILY_LIMIT:
                raise self._error(what, result.failure, write=write)
        return results

    def composite(self, subrequests: list[dict[str, Any]], *, all_or_none: bool = False) -> list[SubResult]:
        """One Composite call of writes that are not safe to repeat blindly: a lost answer is AmbiguousWrite.

        The results come back in the order of `subrequests`, matched by referenceId.
        """
        return self._post_composite("composite", subrequests, write=True, all_or_none=all_or_none)

    def composite_rounds(
        self, what: str, subrequests: list[dict[str, Any]], *, attempts: int | None = None
    ) -> list[SubResult]:
        """Subrequests safe to repeat (GETs, PATCHes by Id), in one Composite call; those refused transiently
        (503, a row lock) are sent again, alone, with the retry policy's backoff. Queries are read to the end.

        Returns every subrequest's final result, in request order: the caller judges each on its own.
        """
        attempts = attempts or self._retry.max_attempts
        final: dict[str, SubResult] = {}
        pending = list(subrequests)
        for attempt in range(1, attempts + 1):
            retry: list[dict[str, Any]] = []
            for request, result in zip(pending, self._post_composite(what, pending, write=False), strict=True):
                final[result.reference] = result
                if result.failure is not None and result.failure.verdict is Verdict.TRANSIENT:
                    retry.append(request)
                elif result.ok and composite.is_query(str(request["url"])) and isinstance(result.body, dict):
                    final[result.reference] = SubResult(
                        result.reference, result.status, self._rest_of_query(result.body), None
                    )
            pending = retry
            if not pending or attempt == attempts:
                break
            log.warning("salesforce.subrequest_retry", call=what, attempt=attempt, subrequests=len(pending))
            self._retry.sleep(min(self._retry.max_backoff_s, self._retry.initial_s * 2**attempt))
        return [final[str(request["referenceId"])] for request in subrequests]

    # --- writes ---------------------------------------------------------------------------------------
    def update_record(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """PATCH one record. Setting fixed values by Id is idempotent, so a lost answer is simply re-sent."""
        self._call(
            f"update {sobject}",
            lambda sf: _restful(
                sf, f"sobjects/{sobject}/{record_id}", method="PATCH", json=fields, timeout=self._timeout
            ),
        )

    def _patches(self, updates: Sequence[Update]) -> list[dict[str, Any]]:
        return [
            composite.subrequest(
                "PATCH", f"/services/data/v{self.api_version}/sobjects/{sobject}/{record_id}", i, fields
            )
            for i, (sobject, record_id, fields) in enumerate(updates)
        ]

    def update_many(self, what: str, updates: Sequence[Update], *, best_effort: Sequence[Update] = ()) -> None:
        """Several single-record PATCHes in one Composite call; like update_record, safe to send again.

        Subrequests refused on a row lock are sent again, alone, with the retry policy's backoff. Each update
        is judged on its own result: one of `updates` that still fails raises; one of `best_effort` (bookkeeping,
        such as releasing a lease that times out anyway) is logged and left.
        """
        results = self.composite_rounds(what, self._patches([*updates, *best_effort]))
        for (sobject, record_id, _), result in zip(best_effort, results[len(updates) :], strict=True):
            if result.failure is not None:
                log.warning(
                    "salesforce.best_effort_update_failed",
                    call=what,
                    object=sobject,
                    record=record_id,
                    reason=f"{result.failure.error_code}: {result.failure.message}"[:200],
                )
        for result in results[: len(updates)]:
            if result.failure is not None:
                raise self._error(what, result.failure, write=False)

    def create_record(self, sobject: str, fields: dict[str, Any]) -> str:
        """POST one record; not safe to repeat: a lost answer is AmbiguousWrite, for the caller to read back."""
        result: dict[str, Any] = self._call(
            f"create {sobject}",
            lambda sf: _restful(sf, f"sobjects/{sobject}/", method="POST", json=fields, timeout=self._timeout),
            write=True,
        )
        return str(result["id"])

    def create_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """sObject Collections create (up to 200 records, each with attributes.type)."""
        result: list[dict[str, Any]] = self._call(
            "create",
            lambda sf: _restful(
                sf,
                "composite/sobjects",
                method="POST",
                json={"allOrNone": False, "records": records},
                timeout=self._timeout,
            ),
            write=True,
        )
        return result
