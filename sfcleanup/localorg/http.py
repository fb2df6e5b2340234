"""The transport-neutral request and response of the local org, and Salesforce's error body shapes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: bytes = b""
    # The request target as sent (path and query string), for the URI length limit.
    target: str = ""

    @classmethod
    def build(cls, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> HttpRequest:
        parts = urlsplit(url)
        return cls(
            method=method.upper(),
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in headers.items()},
            body=body or b"",
            target=parts.path + ("?" + parts.query if parts.query else ""),
        )

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The JSON body; raises BadRequest with Salesforce's JSON_PARSER_ERROR when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8") if self.body else "null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadRequest(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: {exc}") from exc


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Set when the org should drop the connection instead of answering (fault injection).
    reset_connection: bool = False

    @classmethod
    def json(cls, status: int, payload: Any) -> HttpResponse:
        return cls(
            status,
            json.dumps(payload, separators=(",", ":")).encode(),
            {"Content-Type": "application/json;charset=UTF-8"},
        )

    @classmethod
    def csv(cls, status: int, text: str, extra: Mapping[str, str] | None = None) -> HttpResponse:
        return cls(status, text.encode(), {"Content-Type": "text/csv", **(extra or {})})

    @classmethod
    def empty(cls, status: int = 204) -> HttpResponse:
        return cls(status)


def error_body(error_code: str, message: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Whole-request errors: a JSON array of {message, errorCode, fields?}."""
    entry: dict[str, Any] = {"message": message, "errorCode": error_code}
    if fields is not None:
        entry["fields"] = fields
    return [entry]


class BadRequest(Exception):
    """A whole-request error; the app turns it into Salesforce's error array."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def response(self) -> HttpResponse:
        return HttpResponse.json(self.status, error_body(self.error_code, self.message, self.fields))


def not_found() -> BadRequest:
    return BadRequest(404, "NOT_FOUND", "The requested resource does not exist")
