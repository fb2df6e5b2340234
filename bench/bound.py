"""The fastest a clean-up could be: a lower bound under the local org's latency model and Salesforce's limits.

The bound charges only what the latency model charges (`LatencyModel.cloud`: a round trip, and time per record
written through REST, processed by Bulk API 2.0, or read) and grants the client every freedom the platform
leaves it. Nothing a real client does is free of these costs, so no clean-up can beat the bound; how far a
contender stays above it is the part of its wall time the model does not explain (its own CPU, the org's CPU,
waiting on its own decisions).

The platform's limits the bound honours (cited in the README, "A lower bound"):

- **Concurrency**: at most `concurrent` units of org work at once. Salesforce documents 25 concurrent
  long-running API requests for production orgs and sandboxes (5 for Developer Edition); Bulk API 2.0 splits a
  job into 10,000-record batches "processed in parallel" without documenting how many at once, so the bound
  grants Bulk batches the same 25. Work spread perfectly over 25 slots takes a 25th of its serial time.
- **Records per call**: a Composite call carries at most 5 sObject Collections of 200 records (1,000 records).
- **Round trips a step cannot skip**: a Bulk API 2.0 ingest job is created, fed, closed, seen complete and its
  results read (5 round trips in sequence); a Bulk API 2.0 query job is created, seen complete and its results
  read (3); the fixed part of a safe clean-up reads the run, claims it, verifies and sets the final status (4).
- **Order**: the clean-up's safe order makes two stages. Lines and invoices are cancelled before any source is
  released (a source released while its line is open is billed twice), so stage 2 starts after stage 1 ends.
- **Lock failures**: at rate `r` a write attempt fails and must be sent again, so a stage of n records is sent in
  rounds of n, n*r, n*r^2, ... records until less than half a record is left; each round is a new request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from sfcleanup.localorg.faults import LatencyModel

# Composite: 5 sObject Collections of 200 records each in one call.
RECORDS_PER_CALL = 1000


@dataclass(frozen=True)
class Limits:
    concurrent: int = 25
    records_per_call: int = RECORDS_PER_CALL
    ingest_round_trips: int = 5
    query_round_trips: int = 3
    fixed_round_trips: int = 4


@dataclass(frozen=True)
class Bound:
    """The lower bound in seconds, and its parts (read, each write stage, the fixed round trips)."""

    read_s: float
    stages_s: tuple[float, ...]
    fixed_s: float

    @property
    def seconds(self) -> float:
        return self.read_s + sum(self.stages_s) + self.fixed_s


def rest_s(records: float, latency: LatencyModel, limits: Limits) -> float:
    """Writing `records` through Composite calls, `concurrent` at once: a round trip per wave of calls, and the
    per-record time spread over the slots."""
    if records <= 0:
        return 0.0
    calls = math.ceil(records / limits.records_per_call)
    waves = math.ceil(calls / limits.concurrent)
    return (waves * latency.request_ms + records * latency.write_ms_per_record / limits.concurrent) / 1000.0


def bulk_s(records: float, latency: LatencyModel, limits: Limits) -> float:
    """Writing `records` through Bulk API 2.0 ingest jobs: the job's round trips, and the per-record time spread
    over the slots."""
    if records <= 0:
        return 0.0
    trips = limits.ingest_round_trips * latency.request_ms
    return (trips + records * latency.bulk_ms_per_record / limits.concurrent) / 1000.0


def rounds(records: int, lock_failure_rate: float) -> list[float]:
    """Records sent in each round: all of them, then what failed on a lock, until less than half a record is left."""
    sent: list[float] = []
    left = float(records)
    while left >= 0.5:
        sent.append(left)
        if lock_failure_rate <= 0:
            break
        left *= lock_failure_rate
    return sent


def stage_s(records: int, lock_failure_rate: float, latency: LatencyModel, limits: Limits) -> float:
    """One stage: every round on whichever route is faster for its size."""
    return sum(min(rest_s(n, latency, limits), bulk_s(n, latency, limits)) for n in rounds(records, lock_failure_rate))


def read_s(records: int, latency: LatencyModel, limits: Limits) -> float:
    """Reading `records` in Bulk API 2.0 query jobs running at once: their round trips, the reading spread over
    the slots."""
    if records <= 0:
        return 0.0
    trips = limits.query_round_trips * latency.request_ms
    return (trips + records * latency.read_ms_per_record / limits.concurrent) / 1000.0


def lower_bound(
    read: int,
    stages: Sequence[int],
    lock_failure_rate: float,
    latency: LatencyModel | None = None,
    limits: Limits | None = None,
) -> Bound:
    """The bound for a clean-up that reads `read` records and writes `stages` records, one stage after another."""
    latency = latency or LatencyModel.cloud()
    limits = limits or Limits()
    return Bound(
        read_s=read_s(read, latency, limits),
        stages_s=tuple(stage_s(n, lock_failure_rate, latency, limits) for n in stages),
        fixed_s=limits.fixed_round_trips * latency.request_ms / 1000.0,
    )


# The objects of each stage, by the clean-up's safe order (see the module docstring).
STAGES: tuple[tuple[str, ...], ...] = (
    ("blng__InvoiceLine__c", "blng__Invoice__c"),
    ("blng__UsageSummary__c", "OrderItem"),
)


def scenario_bound(cleanable: dict[str, int], read: int, lock_failure_rate: float) -> Bound:
    """The bound for a scale scenario: its cleanable records per object in the two stages, `read` records read."""
    stages = [sum(cleanable.get(name, 0) for name in stage) for stage in STAGES]
    return lower_bound(read, stages, lock_failure_rate)
