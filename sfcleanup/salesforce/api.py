"""What the worker needs of Salesforce, as Protocols: `SalesforceClient` satisfies them all, and a test fake
satisfies the part its code under test uses (`DescribeApi` for preflight's org check, `LeaseApi` for leases).

Rows and bodies are Salesforce's JSON as it came; the code that reads them parses them into models.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import requests

from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.usage import ApiUsage

# (sobject, record id, fields): one single-record PATCH.
Update = tuple[str, str, dict[str, Any]]


class DescribeApi(Protocol):
    def get_many(self, what: str, paths: list[str]) -> list[Any]: ...


class QueryApi(Protocol):
    def query_all(self, soql: str) -> list[dict[str, Any]]: ...


class LeaseApi(QueryApi, Protocol):
    @property
    def api_version(self) -> str: ...

    def org_now(self) -> datetime: ...

    def create_record(self, sobject: str, fields: dict[str, Any]) -> str: ...

    def update_record(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None: ...

    def composite_rounds(
        self, what: str, subrequests: list[dict[str, Any]], *, attempts: int | None = None
    ) -> list[SubResult]: ...


class SalesforceApi(LeaseApi, DescribeApi, Protocol):
    @property
    def usage(self) -> ApiUsage: ...

    def keep_reserve(self, fraction: float) -> None: ...

    def user_id(self) -> str | None: ...

    def limits(self) -> dict[str, Any]: ...

    def describe(self, sobject: str) -> dict[str, Any]: ...

    def query_page(self, soql: str, *, batch_size: int = 2000) -> tuple[list[dict[str, Any]], bool]: ...

    def query_pages(self, soql: str, *, batch_size: int = 2000) -> Iterator[list[dict[str, Any]]]: ...

    def composite(self, subrequests: list[dict[str, Any]], *, all_or_none: bool = False) -> list[SubResult]: ...

    def update_many(self, what: str, updates: Sequence[Update], *, best_effort: Sequence[Update] = ()) -> None: ...

    def create_records(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]: ...

    def get_url(self, what: str, url: str) -> requests.Response: ...

    def download(self, what: str, path: str, target: Path) -> Path: ...
