"""Packing changes into API calls so that the children of one lock point travel together.

Salesforce locks a record's master-detail parents (the invoice, the account) while writing it. Two requests
writing children of one account at once make each other fail with UNABLE_TO_LOCK_ROW. So a group (the
records sharing a lock point) is never split over two calls unless it alone is larger than a call, and then
its parts go in consecutive calls, one after the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

from sfcleanup.plan import Change

Call = list[list[Change]]  # the collections of one composite call


def groups(changes: Iterable[Change]) -> Iterator[list[Change]]:
    """Consecutive runs of one group, after a stable sort by group."""
    ordered = sorted(changes, key=lambda c: c.group)
    for _, members in groupby(ordered, key=lambda c: c.group):
        yield list(members)


def _chunks(items: Sequence[Change], size: int) -> list[list[Change]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def pack(changes: Iterable[Change], *, per_collection: int, collections_per_call: int) -> list[Call]:
    """Calls of up to `collections_per_call` collections of up to `per_collection` records each."""
    capacity = per_collection * collections_per_call
    calls: list[list[Change]] = []
    current: list[Change] = []
    for group in groups(changes):
        if current and len(current) + len(group) > capacity:
            calls.append(current)
            current = []
        current.extend(group)
        while len(current) > capacity:
            calls.append(current[:capacity])
            current = current[capacity:]
    if current:
        calls.append(current)
    return [_chunks(call, per_collection) for call in calls]


def one_group_per_call(changes: Iterable[Change], *, per_collection: int) -> list[Call]:
    """The last lock retry: one parent at a time, so nothing this worker sends competes with itself."""
    return [_chunks(group, per_collection) for group in groups(changes)]
