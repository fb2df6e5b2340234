"""What the worker needs of Salesforce, as Protocols: `SalesforceClient` satisfies them all, and a test fake
satisfies the part its code under test uses (`DescribeApi` for preflight's org check, `LeaseApi` for leases).

Rows and bodies are Salesforce's JSON as it came (`shapes.Record`, `shapes.JsonValue`); the code that reads
them parses them into models (`shapes`, `models`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import requests

from sfcleanup.salesforce.composite import SubResult
from sfcleanup.salesforce.shapes import Fields, JsonObject, JsonValue, Record
from sfcleanup.salesforce.usage import ApiUsage

# (sobject, record id, fields): one single-record PATCH.
Update = tuple[str, str, Fields]
# One Composite subrequest, as `composite.subrequest` builds it.
Subrequest = Mapping[str, object]


class DescribeApi(Protocol):
    def get_many(self, what: str, paths: list[str]) -> list[JsonValue]: ...


class QueryApi(Protocol):
    def query_all(self, soql: str) -> list[Record]: ...


class LeaseApi(QueryApi, Protocol):
    @property
    def api_version(self) -> str: ...

    def org_now(self) -> datetime: ...

    def create_record(self, sobject: str, fields: Fields) -> str: ...

    def update_record(self, sobject: str, record_id: str, fields: Fields) -> None: ...

    def composite_rounds(
        self, what: str, subrequests: Sequence[Subrequest], *, attempts: int | None = None
    ) -> list[SubResult]: ...


class SalesforceApi(LeaseApi, DescribeApi, Protocol):
    @property
    def usage(self) -> ApiUsage: ...

    def keep_reserve(self, fraction: float) -> None: ...

    def user_id(self) -> str | None: ...

    def prefetch(self, what: str, paths: list[str]) -> None: ...

    def limits(self) -> JsonObject: ...

    def describe(self, sobject: str) -> JsonObject: ...

    def query_page(self, soql: str, *, batch_size: int = 2000) -> tuple[list[Record], bool]: ...

    def query_pages(self, soql: str, *, batch_size: int = 2000) -> Iterator[list[Record]]: ...

    def composite(
        self, subrequests: Sequence[Subrequest], *, all_or_none: bool = False, collate: bool = True
    ) -> list[SubResult]: ...

    def update_many(self, what: str, updates: Sequence[Update], *, best_effort: Sequence[Update] = ()) -> None: ...

    def create_records(self, records: Sequence[Fields]) -> list[Record]: ...

    def get_url(self, what: str, url: str) -> requests.Response: ...

    def download(self, what: str, path: str, target: Path) -> Path: ...
