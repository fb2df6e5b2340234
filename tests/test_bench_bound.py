"""The benchmark's lower bound: its arithmetic on small inputs, worked out by hand."""

from __future__ import annotations

import pytest

from bench.bound import Limits, bulk_s, lower_bound, rest_s, rounds, scenario_bound
from sfcleanup.localorg.faults import LatencyModel

CLOUD = LatencyModel.cloud()


def test_rest_writes_cost_a_round_trip_per_wave_and_their_records_spread_over_the_slots() -> None:
    """2,000 records are 2 calls, one wave: 60 ms plus 2,000 x 1.5 ms / 25 = 120 ms."""
    assert rest_s(2000, CLOUD, Limits()) == pytest.approx(0.060 + 0.120)


def test_rest_calls_beyond_the_concurrency_limit_wait_for_a_second_wave() -> None:
    """With 2 slots, 3 calls of 1,000 records go in 2 waves: 120 ms plus 3,000 x 1.5 ms / 2."""
    assert rest_s(3000, CLOUD, Limits(concurrent=2)) == pytest.approx(0.120 + 2.25)


def test_a_bulk_job_costs_five_round_trips_and_a_quarter_millisecond_per_record_over_the_slots() -> None:
    """10,000 records: 5 x 60 ms plus 10,000 x 0.25 ms / 25 = 100 ms."""
    assert bulk_s(10_000, CLOUD, Limits()) == pytest.approx(0.300 + 0.100)


def test_lock_failures_send_what_failed_again_until_less_than_half_a_record_is_left() -> None:
    """At 10%, 100 records go out as 100, 10, 1 (0.1 is less than half a record)."""
    assert rounds(100, 0.1) == pytest.approx([100.0, 10.0, 1.0])
    assert rounds(100, 0.0) == [100.0]
    assert rounds(0, 0.5) == []


def test_the_bound_adds_the_read_each_stage_on_its_faster_route_and_the_fixed_round_trips() -> None:
    """Read 2,500 (3 x 60 ms + 1 ms), stage 1000 records at 10% (rounds 1000, 100, 10, 1 through REST), and
    4 fixed round trips."""
    bound = lower_bound(2500, [1000], 0.1)
    assert bound.read_s == pytest.approx(0.180 + 0.001)
    stage = sum(0.060 + n * 1.5 / 25 / 1000 for n in (1000, 100, 10, 1))
    assert bound.stages_s == pytest.approx((stage,))
    assert bound.fixed_s == pytest.approx(0.240)
    assert bound.seconds == pytest.approx(0.181 + stage + 0.240)


def test_a_large_stage_takes_the_bulk_route_when_it_is_faster() -> None:
    """100,000 records: Bulk 0.3 s + 1 s beats REST 4 waves x 60 ms + 6 s."""
    bound = lower_bound(0, [100_000], 0.0)
    assert bound.stages_s == pytest.approx((0.300 + 1.0,))
    assert bound.read_s == 0.0


def test_a_scenario_puts_lines_and_invoices_before_the_sources() -> None:
    """Stage 1 is lines plus invoices, stage 2 usage summaries plus order products."""
    cleanable = {"blng__InvoiceLine__c": 900, "blng__Invoice__c": 100, "blng__UsageSummary__c": 200, "OrderItem": 800}
    assert scenario_bound(cleanable, 0, 0.0).stages_s == pytest.approx(lower_bound(0, [1000, 1000], 0.0).stages_s)
