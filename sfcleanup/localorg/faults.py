"""Reproducible faults and latency for the local org, configured by flags or a TOML profile.

Every random decision draws from one seeded RNG, so a fault test replays the same sequence each time it runs
with the same requests in the same order.
"""

from __future__ import annotations

import random
import threading
import tomllib
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sfcleanup.localorg import schema

T = TypeVar("T")


class LatencyModel(BaseModel):
    """Time a real org takes, as seen by a worker in a cloud region near it.

    The `cloud` defaults: about 60 ms for a round trip and request handling, 1.5 ms per record written through
    REST (triggers of the Billing package included), 0.25 ms per record processed by a Bulk API 2.0 job
    (spread over its parallel batches), and 0.01 ms per record read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_ms: float = Field(default=0.0, ge=0)
    write_ms_per_record: float = Field(default=0.0, ge=0)
    bulk_ms_per_record: float = Field(default=0.0, ge=0)
    read_ms_per_record: float = Field(default=0.0, ge=0)

    @classmethod
    def cloud(cls) -> LatencyModel:
        return cls(request_ms=60.0, write_ms_per_record=1.5, bulk_ms_per_record=0.25, read_ms_per_record=0.01)


class FieldRewrite(BaseModel):
    """A test device: an org automation (trigger, flow) that rewrites a field whenever a write sets it.

    Whatever a write sends for `object`.`field` (or only when it sends `when`), the org stores `value` instead, on
    every write path, the write still answering success: what the worker's canary batch exists to catch.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    sobject: str = Field(alias="object")
    field: str
    value: str | None
    when: str | None = None

    @model_validator(mode="after")
    def _in_schema(self) -> FieldRewrite:
        spec = schema.sobject(self.sobject)
        if spec is None or spec.field(self.field) is None:
            raise ValueError(f"{self.sobject}.{self.field} is not a field of the local org's schema")
        return self


class FaultProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    latency: LatencyModel = LatencyModel()
    # Salesforce waits 10 s for a held row lock; tests shorten it.
    lock_wait_s: float = Field(default=10.0, ge=0)
    lock_failure_rate: float = Field(default=0.0, ge=0, le=1)
    unavailable_rate: float = Field(default=0.0, ge=0, le=1)
    # After an injected 503, this many following requests fail too (a burst).
    unavailable_burst: int = Field(default=0, ge=0)
    reset_after_write_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    concurrent_limit_rate: float = Field(default=0.0, ge=0, le=1)
    session_expiry_after_calls: int | None = Field(default=None, ge=1)
    daily_api_limit: int = Field(default=100_000, ge=1)
    daily_api_used: int = Field(default=0, ge=0)
    bulk_job_failure_rate: float = Field(default=0.0, ge=0, le=1)
    # Share of a bulk job's rows left unprocessed (the job still ends JobComplete): partial results.
    bulk_unprocessed_rate: float = Field(default=0.0, ge=0, le=1)
    # Opt-in automations that rewrite what a write sets (`[[rewrites]]` in TOML); see FieldRewrite.
    rewrites: tuple[FieldRewrite, ...] = ()
    # Other users' and Bulk API 1.0 query jobs the org lists beside its own user's (GET jobs/query).
    foreign_query_jobs: int = Field(default=40, ge=0)
    # A test device: the job lists put every other user's job before the org's own user's (each group still in
    # no particular order), so with enough foreign jobs the worker's jobs are not on the first page.
    own_jobs_listed_last: bool = False
    # --- strictness (docs/localorg-fidelity.md): on by default, each stricter than or equal to Salesforce --------
    # Seconds the org's clock is ahead of (positive) or behind (negative) the client's, on every timestamp it
    # writes or reports: a worker must never compare its own clock with the org's.
    clock_skew_s: float = -45.0
    # Share of query pages cut shorter than the batch size asked for ("batchSize is a hint, not a guarantee").
    short_page_rate: float = Field(default=0.25, ge=0, le=1)
    # Calls the org still serves past the daily maximum before it answers 403: the limit is not enforced in
    # real time, so Sforce-Limit-Info can show api-usage above the maximum.
    daily_limit_lag_calls: int = Field(default=3, ge=0)
    # Seconds a Bulk API 2.0 batch may take before it fails (then is retried, then fails the job).
    bulk_batch_limit_s: float = Field(default=300.0, gt=0)

    @classmethod
    def from_toml(cls, path: Path) -> FaultProfile:
        with path.open("rb") as handle:
            return cls.model_validate(tomllib.load(handle))


class FaultInjector:
    """Thread-safe draws against the profile's rates."""

    def __init__(self, profile: FaultProfile) -> None:
        self.profile = profile
        self._rng = random.Random(profile.seed)
        self._lock = threading.Lock()
        self._burst_left = 0
        # Ordering decisions (composite execution order, page sizes, result order, job listings) draw from their
        # own stream of the same seed, so adding them left the fault sequences of existing profiles unchanged.
        self._order_rng = random.Random(f"order-{profile.seed}")

    def draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def shuffle(self, items: list[T]) -> None:
        """Put `items` in a seeded random order, in place."""
        with self._lock:
            self._order_rng.shuffle(items)

    def below(self, rate: float) -> bool:
        """An ordering draw (not a fault): True with probability `rate`."""
        if rate <= 0:
            return False
        with self._lock:
            return self._order_rng.random() < rate

    def integer(self, low: int, high: int) -> int:
        """A seeded integer in [low, high]."""
        with self._lock:
            return self._order_rng.randint(low, high)

    def unavailable(self) -> bool:
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                return True
            if self.profile.unavailable_rate > 0 and self._rng.random() < self.profile.unavailable_rate:
                self._burst_left = self.profile.unavailable_burst
                return True
            return False
