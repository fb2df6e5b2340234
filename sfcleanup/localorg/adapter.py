"""The in-process way in: a requests transport adapter that hands each request to a LocalOrg, no socket.

Mount it on the session given to simple_salesforce.Salesforce(session=...); every https:// URL then reaches
the local org, whatever its host.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.response import HTTPResponse

from sfcleanup.localorg.app import LocalOrg
from sfcleanup.localorg.http import HttpRequest

_REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class LocalOrgAdapter(BaseAdapter):
    def __init__(self, org: LocalOrg) -> None:
        super().__init__()
        self.org = org

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        body = request.body
        raw_body = body.encode() if isinstance(body, str) else (body or b"")
        if not isinstance(raw_body, bytes):  # a file-like or generator body (streamed upload)
            raw_body = b"".join(_chunks(raw_body))
        incoming = HttpRequest.build(request.method or "GET", request.url or "", dict(request.headers), raw_body)
        answer = self.org.handle(incoming)
        if answer.reset_connection:
            if answer.headers.get("X-LocalOrg-Fault") == "timeout":
                raise requests.exceptions.ReadTimeout("local org: simulated read timeout", request=request)
            raise requests.exceptions.ConnectionError("local org: connection reset by peer", request=request)
        response = requests.Response()
        response.status_code = answer.status
        response.reason = _REASONS.get(answer.status, "")
        response.headers = CaseInsensitiveDict(answer.headers)
        response.raw = HTTPResponse(body=BytesIO(answer.body), preload_content=False, status=answer.status)
        response._content = answer.body
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        """Nothing to release: the org outlives the session."""


def _chunks(body: Any) -> list[bytes]:
    if hasattr(body, "read"):
        data = body.read()
        return [data.encode() if isinstance(data, str) else data]
    return [part.encode() if isinstance(part, str) else part for part in body]


def mount(session: requests.Session, org: LocalOrg) -> requests.Session:
    session.mount("https://", LocalOrgAdapter(org))
    return session
