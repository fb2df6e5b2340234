"""Composite API answers, decoded once: every subrequest's result found by its referenceId and judged by the
one classifier.

Salesforce documents that with `collateSubrequests` (the default from v49) independent subrequests run in no
guaranteed order, and nothing promises that `compositeResponse` lists them in request order: a result is
matched to its request by `referenceId` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from sfcleanup.salesforce.classify import Classified, Verdict, classify_status


@dataclass(frozen=True)
class SubResult:
    """One subrequest's answer; `failure` is the classifier's verdict when it did not succeed."""

    reference: str
    status: int
    body: object
    failure: Classified | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def subrequest(
    method: str,
    url: str,
    index: int,
    body: object = None,
    *,
    prefix: str = "r",
    headers: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """One subrequest; its referenceId (letters, digits and underscores only) is `prefix` and `index`.

    `headers` go in its `httpHeaders`: "any header supported by the requested resource" except Accept,
    Authorization and Content-Type, which it inherits (REST API Developer Guide, "Composite Request Body",
    Composite Subrequest); a query's `Sforce-Query-Options` for one.
    """
    request: dict[str, object] = {"method": method, "url": url, "referenceId": f"{prefix}{index}"}
    if body is not None:
        request["body"] = body
    if headers:
        request["httpHeaders"] = dict(headers)
    return request


def query_path(soql: str) -> str:
    """The Query resource's path for `soql`, under /services/data/vXX.X/: what `get_many` and `prefetch` take."""
    return "query/?" + urlencode({"q": soql})


def _judge(ref: str, entry: Mapping[str, object] | None) -> SubResult:
    if entry is None:
        missing = Classified(Verdict.FATAL, None, None, f"the Composite answer has no result for {ref}")
        return SubResult(ref, 0, None, missing)
    code = entry.get("httpStatusCode")
    status = int(code) if isinstance(code, int | str) and code else 500
    body = entry.get("body")
    return SubResult(ref, status, body, classify_status(status, body) if status >= 300 else None)


def decode(subrequests: Sequence[Mapping[str, object]], answer: object) -> list[SubResult]:
    """The results in the order of `subrequests`, each found by its referenceId, whatever order they came in."""
    entries = answer.get("compositeResponse") if isinstance(answer, dict) else None
    by_reference = {str(entry.get("referenceId")): entry for entry in entries or [] if isinstance(entry, dict)}
    return [
        _judge(str(request["referenceId"]), by_reference.get(str(request["referenceId"]))) for request in subrequests
    ]


def is_query(url: str) -> bool:
    """A Query or QueryAll subrequest, whose answer may be one page of several."""
    path = url.split("?", 1)[0].rstrip("/")
    return path.endswith(("/query", "/queryAll"))
