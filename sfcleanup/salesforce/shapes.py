"""Salesforce's answers the worker reads fields of, as frozen models parsed where they arrive: an object's
describe, the daily API allowance, Bulk API 2.0 job information. Unknown keys are ignored: the org may send
more than the worker reads."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

# {"DailyApiRequests": {"Max": ..., "Remaining": ...}}: the part of GET /limits the worker uses.
Limits = Mapping[str, Mapping[str, int]]


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
