"""Salesforce's answers as the client hands them on (JSON), and as the frozen models the worker parses them
into: an object's describe, the daily API allowance, Bulk API 2.0 job information, aggregate counts. Unknown
keys are ignored: the org may send more than the worker reads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

from pydantic import BaseModel, ConfigDict, Field

# Salesforce's JSON as it came, before anything is made of it: whoever reads it parses it into a model.
JsonValue: TypeAlias = str | int | float | bool | list["JsonValue"] | dict[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]
# One record as a query lists it (field name -> value, relationships nested): read, never written to.
Record: TypeAlias = dict[str, object]
# One page of a query's records, and whether it was the query's last (`done`).
QueryPage: TypeAlias = tuple[list[Record], bool]
# A record's fields as the worker sends them in a write body.
Fields: TypeAlias = Mapping[str, object]

# {"DailyApiRequests": {"Max": ..., "Remaining": ...}}: the part of GET /limits the worker uses.
Limits = Mapping[str, Mapping[str, int]]


def query_records(page: object) -> list[Record]:
    """The records of one query answer (`{"records": [...]}`); none when the answer is not one."""
    records = page.get("records") if isinstance(page, dict) else None
    return [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []


def text_fields(record: Record, names: Iterable[str]) -> dict[str, str | None]:
    """Fields of a record that Salesforce sends as text (picklists, Ids, dates), None where one is empty."""
    return {name: None if (value := record.get(name)) is None else str(value) for name in names}


class _Shape(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class PicklistValue(_Shape):
    value: str
    active: bool | None = True


class FieldDescribe(_Shape):
    name: str
    updateable: bool | None = False
    picklist_values: tuple[PicklistValue, ...] | None = Field((), alias="picklistValues")

    def active_values(self) -> frozenset[str]:
        return frozenset(v.value for v in self.picklist_values or () if v.active)


class SObjectDescribe(_Shape):
    key_prefix: str | None = Field(None, alias="keyPrefix")
    createable: bool = False
    fields: tuple[FieldDescribe, ...] = ()

    def by_name(self) -> dict[str, FieldDescribe]:
        return {f.name: f for f in self.fields}


class SaveError(_Shape):
    status_code: str | None = Field(None, alias="statusCode")
    message: str | None = None


class SaveResult(_Shape):
    """One row of an sObject Collections answer."""

    success: bool | None = False
    errors: tuple[SaveError, ...] | None = ()

    def first_error(self) -> SaveError:
        return self.errors[0] if self.errors else SaveError()


class DailyApiRequests(_Shape):
    max: int = Field(0, alias="Max")
    remaining: int = Field(0, alias="Remaining")


class _LimitsBody(_Shape):
    daily: DailyApiRequests = Field(default_factory=DailyApiRequests, alias="DailyApiRequests")


def daily_limits(body: object) -> dict[str, dict[str, int]]:
    """GET /limits reduced to the daily API allowance."""
    daily = _LimitsBody.model_validate(body or {}).daily
    return {"DailyApiRequests": {"Max": daily.max, "Remaining": daily.remaining}}


class BulkJobInfo(_Shape):
    """One Bulk API 2.0 ingest job, as its own GET or the jobs listing shows it."""

    id: str
    state: str | None = None
    job_type: str | None = Field(None, alias="jobType")
    created_by: str | None = Field(None, alias="createdById")
    sobject: str | None = Field(None, alias="object")
    operation: str | None = None
    created_date: str | None = Field(None, alias="createdDate")
    processed: int | None = Field(None, alias="numberRecordsProcessed")
    failed: int | None = Field(None, alias="numberRecordsFailed")
    error: str | None = Field(None, alias="errorMessage")


class BulkJobPage(_Shape):
    records: tuple[BulkJobInfo, ...] = ()
    done: bool = True
    next_url: str | None = Field(None, alias="nextRecordsUrl")


class _QueryRows(_Shape):
    records: tuple[Record, ...] = ()


class _Count(_Shape):
    n: int = 0


def counts_by_value(answer: object, field: str) -> dict[str, int]:
    """An aggregate query's answer (`SELECT field, COUNT(Id) n ... GROUP BY field`): records per value."""
    return {str(row.get(field)): _Count.model_validate(row).n for row in _QueryRows.model_validate(answer).records}
