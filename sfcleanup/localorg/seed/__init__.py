"""Seed scenarios for the local org: the same records, with the same ids and values, every time.

Seed into a fresh store: ids come from the store's own counter (`MAX(_rowid) + 1` per object), so a store that
already holds rows gives other ids. Every scenario is one call: `seed(store, name, records=..., now=...)`.
`now` (default: the store's clock) only moves the dates; it never changes which records exist.

The scenarios (`empty`, `demo`, `scale`), with their counts per object, state and run and where each trap is, are
described in docs/localorg-scenarios.md. `rows` holds what they share, `demo` and `scale` build one each.
"""

from __future__ import annotations

from datetime import datetime

from sfcleanup.localorg.seed.demo import seed_demo
from sfcleanup.localorg.seed.identity import seed_identity
from sfcleanup.localorg.seed.rows import OBJECTS, ScenarioInfo, whole_seconds
from sfcleanup.localorg.seed.scale import SCALE_DEFAULT_RECORDS, SCALE_MAX_RECORDS, SCALE_MIN_RECORDS, seed_scale
from sfcleanup.localorg.store import Store

__all__ = ["SCENARIOS", "ScenarioInfo", "check_records", "seed"]

SCENARIOS: tuple[str, ...] = ("empty", "demo", "scale")


def seed(
    store: Store,
    scenario: str,
    *,
    records: int | None = None,
    now: datetime | None = None,
    production: bool = False,
) -> ScenarioInfo:
    """Fill `store` with the named scenario and return its ids; see docs/localorg-scenarios.md for the contents.

    Every scenario gets the org's Organization and User records: a sandbox, or with `production` a production org.
    """
    size = check_records(scenario, records)
    moment = whole_seconds(now if now is not None else store.clock())
    seed_identity(store, production=production)
    if scenario == "empty":
        return ScenarioInfo("empty", counts={spec.name: 0 for spec in OBJECTS})
    if scenario == "demo":
        return seed_demo(store, moment)
    return seed_scale(store, size if size is not None else SCALE_DEFAULT_RECORDS, moment)


def check_records(scenario: str, records: int | None) -> int | None:
    """Validate a scenario name and its `records`, before anything is written; raises ValueError saying why."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: choose one of {', '.join(SCENARIOS)}")
    if records is None:
        return None
    if scenario != "scale":
        raise ValueError(f"the {scenario} scenario has a fixed size: records applies to the scale scenario only")
    # bool is an int in Python; `records=True` is a mistake, not 1 record.
    if isinstance(records, bool) or not isinstance(records, int):
        raise ValueError(f"records must be a whole number, not {records!r}")
    if not SCALE_MIN_RECORDS <= records <= SCALE_MAX_RECORDS:
        raise ValueError(
            f"records must be between {SCALE_MIN_RECORDS:,} and {SCALE_MAX_RECORDS:,} for the scale scenario,"
            f" not {records:,}"
        )
    return records
