"""The worker's one door to Salesforce: every call goes through `_call`, which counts it, retries what is
transient, logs in again once on an expired session, and translates failures into sfcleanup's errors.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests
import structlog
from simple_salesforce.api import Salesforce
from simple_salesforce.util import exception_handler

from sfcleanup.errors import (
    AmbiguousWrite,
    ApiError,
    AuthFailed,
    BudgetReserveReached,
    ConfigError,
    DailyLimitReached,
    TransientExhausted,
)
from sfcleanup.salesforce.classify import RETRYABLE_ROW_CODES, Verdict, classify, first_error
from sfcleanup.salesforce.connect import Connector, OrgSession
from sfcleanup.salesforce.retry import RetryPolicy

T = TypeVar("T")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
log = structlog.get_logger("sfcleanup.salesforce")


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

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """A requests response hook: sees every HTTP response, whichever API made it."""
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        with self._lock:
            if "/services/oauth2/" not in (response.url or ""):
                self.calls += 1
            if match:
                self.used, self.max = int(match.group(1)), int(match.group(2))


class SalesforceClient:
    def __init__(self, connector: Connector, *, api_version: str, retry: RetryPolicy, timeout_s: float) -> None:
        self._connector = connector
        self.api_version = api_version
        self._retry = retry
        self._timeout = timeout_s
        self.usage = ApiUsage()
        self._reserve = 0.0
        self.http = connector.http
        self.http.hooks["response"].append(self.usage.observe)
        self._sf = self._open(connector.login())

    def _open(self, session: OrgSession) -> Salesforce:
        self.instance_url = session.instance_url
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
        found = classify(exc)
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

    def request(self, what: str, method: str, path: str, *, write: bool = False, **kwargs: Any) -> requests.Response:
        """Any REST call under /services/data/vXX.X/ (Bulk API 2.0), through the same door as the rest."""

        extra_headers: dict[str, str] = kwargs.pop("headers", {})

        def send(sf: Salesforce) -> requests.Response:
            url = f"{self.instance_url}/services/data/v{self.api_version}/{path}"
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

        return self._call(what, send, write=write)

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

    def get_many(self, what: str, paths: list[str]) -> list[Any]:
        """Up to 25 GETs (at most 5 of them queries) in one Composite call: one API call instead of many."""
        subrequests = [
            {"method": "GET", "url": f"/services/data/v{self.api_version}/{path}", "referenceId": f"r{index}"}
            for index, path in enumerate(paths)
        ]
        body = {"allOrNone": False, "compositeRequest": subrequests}
        result: dict[str, Any] = self._call(
            what, lambda sf: _restful(sf, "composite", method="POST", json=body, timeout=self._timeout)
        )
        bodies = []
        for response in result["compositeResponse"]:
            if int(response.get("httpStatusCode", 500)) >= 400:
                code, message = first_error(response.get("body"))
                raise ApiError(
                    f"{what}: {code or 'error'}: {message}", status=response.get("httpStatusCode"), error_code=code
                )
            bodies.append(response.get("body"))
        return bodies

    def describe(self, sobject: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            f"describe {sobject}", lambda sf: _restful(sf, f"sobjects/{sobject}/describe/", timeout=self._timeout)
        )
        return result

    def limits(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("limits", lambda sf: _restful(sf, "limits/", timeout=self._timeout))
        return result

    # --- writes ---------------------------------------------------------------------------------------
    def composite(self, subrequests: list[dict[str, Any]], *, all_or_none: bool = False) -> list[dict[str, Any]]:
        body = {"allOrNone": all_or_none, "compositeRequest": subrequests}
        result: dict[str, Any] = self._call(
            "composite",
            lambda sf: _restful(sf, "composite", method="POST", json=body, timeout=self._timeout),
            write=True,
        )
        responses: list[dict[str, Any]] = result["compositeResponse"]
        return responses

    def update_record(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        """PATCH one record. Setting fixed values by Id is idempotent, so a lost answer is simply re-sent."""
        self._call(
            f"update {sobject}",
            lambda sf: _restful(
                sf, f"sobjects/{sobject}/{record_id}", method="PATCH", json=fields, timeout=self._timeout
            ),
        )

    def _composite_call(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            what, lambda sf: _restful(sf, "composite", method="POST", json=body, timeout=self._timeout)
        )
        return result

    def update_many(self, what: str, updates: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Several single-record PATCHes in one Composite call; like update_record, safe to send again.

        Subrequests refused on a row lock are sent again, alone, with the retry policy's backoff.
        """
        remaining = list(updates)
        for attempt in range(1, self._retry.max_attempts + 1):
            subrequests = [
                {
                    "method": "PATCH",
                    "url": f"/services/data/v{self.api_version}/sobjects/{sobject}/{record_id}",
                    "referenceId": f"u{index}",
                    "body": fields,
                }
                for index, (sobject, record_id, fields) in enumerate(remaining)
            ]
            result = self._composite_call(what, {"allOrNone": False, "compositeRequest": subrequests})
            locked = []
            for update, response in zip(remaining, result["compositeResponse"], strict=True):
                if int(response.get("httpStatusCode", 500)) < 300:
                    continue
                code, message = first_error(response.get("body"))
                if code not in RETRYABLE_ROW_CODES:
                    raise ApiError(
                        f"{what}: {code or 'error'}: {message}", status=response.get("httpStatusCode"), error_code=code
                    )
                locked.append(update)
            if not locked:
                return
            remaining = locked
            self._retry.sleep(min(self._retry.max_backoff_s, self._retry.initial_s * 2**attempt))
        raise TransientExhausted(f"{what}: records stayed locked through every retry; run again")

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
