"""One classifier for everything Salesforce or the network can throw at the worker.

It reads the HTTP status and Salesforce's `errorCode` (whole requests) or `statusCode` (rows), and decides:
retry, re-authenticate, stop cleanly, or give up on this request. Foreign exceptions are translated here and
nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import requests
from simple_salesforce.exceptions import SalesforceError
from urllib3.exceptions import NameResolutionError


class Verdict(StrEnum):
    TRANSIENT = "transient"  # 5xx, concurrent-request limit: back off and retry
    CONNECTION_LOST = "connection_lost"  # reset or timeout: a read retries; a write may have been applied
    EXPIRED_SESSION = "expired_session"  # 401: log in again once
    DAILY_LIMIT = "daily_limit"  # nothing will succeed until the 24-hour window rolls: stop, resumable
    # The host name does not resolve, or its certificate is not trusted: a setting to fix, not a fault to wait
    # out, so no retry (retrying would only spend the deadline before saying so).
    MISCONFIGURED = "misconfigured"
    FATAL = "fatal"  # a request that retrying will not fix


class RowVerdict(StrEnum):
    LOCKED = "locked"  # UNABLE_TO_LOCK_ROW: re-queue the row, in smaller batches, later
    FAILED = "failed"  # validation, picklist, deleted...: record it, go on


RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
RETRYABLE_ROW_CODES = frozenset({"UNABLE_TO_LOCK_ROW"})


@dataclass(frozen=True)
class Classified:
    verdict: Verdict
    status: int | None
    error_code: str | None
    message: str


def first_error(content: object) -> tuple[str | None, str]:
    """Salesforce's whole-request error body is a JSON array of {message, errorCode}; OAuth uses {error}."""
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode"), str(content[0].get("message", ""))
    if isinstance(content, dict):
        return content.get("errorCode") or content.get("error"), str(
            content.get("message") or content.get("error_description") or ""
        )
    return None, str(content)[:200]


# A body cut off mid-stream (ChunkedEncodingError) is as much a lost connection as a reset before the answer.
_CONNECTION_LOST = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
)


def classify_status(status: int, content: object) -> Classified:
    """The verdict on one HTTP answer: a whole request's, or one Composite subrequest's."""
    code, message = first_error(content)
    if status == 401:
        return Classified(Verdict.EXPIRED_SESSION, status, code, message)
    if status == 403 and code == "REQUEST_LIMIT_EXCEEDED":
        # Same code for both limits; only the message tells the daily allowance from concurrency.
        verdict = Verdict.DAILY_LIMIT if "TotalRequests" in message else Verdict.TRANSIENT
        return Classified(verdict, status, code, message)
    if status in RETRYABLE_STATUS or code in RETRYABLE_ROW_CODES:
        # A single-record write refused on a lock is as retryable as a row in a collection.
        return Classified(Verdict.TRANSIENT, status, code, message)
    return Classified(Verdict.FATAL, status, code, message)


def misconfigured(exc: BaseException) -> str | None:
    """What is wrong with the address or trust settings, when `exc` says so; None for a fault worth a retry."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "its TLS certificate is not trusted (pass the CA that signed it with --ca-bundle, or fix the URL)"
    cause: object = exc.args[0] if isinstance(exc, requests.exceptions.ConnectionError) and exc.args else None
    if isinstance(getattr(cause, "reason", None), NameResolutionError):
        return "its host name does not resolve (check the My Domain or instance URL)"
    return None


def classify(exc: BaseException) -> Classified:
    problem = misconfigured(exc)
    if problem is not None:
        return Classified(Verdict.MISCONFIGURED, None, None, problem)
    if isinstance(exc, _CONNECTION_LOST):
        return Classified(Verdict.CONNECTION_LOST, None, None, f"{type(exc).__name__}: connection lost")
    if isinstance(exc, SalesforceError):
        return classify_status(int(exc.status), exc.content)
    return Classified(Verdict.FATAL, None, None, f"{type(exc).__name__}: {exc}")


def classify_row(status_code: str | None) -> RowVerdict:
    return RowVerdict.LOCKED if status_code in RETRYABLE_ROW_CODES else RowVerdict.FAILED
