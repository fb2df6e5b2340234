"""Packing changes into API calls so that the children of one lock point travel together.

Salesforce locks a record's master-detail parents (the invoice, the account) while writing it. Two requests
writing children of one account at once make each other fail with UNABLE_TO_LOCK_ROW. So a group (the
records sharing a lock point) is never split over two calls unless it alone is larger than a call, and then
its parts go in consecutive calls, one after the other.

Everything here is lazy: changes come in lock-point order (a ChangeSet iterates that way; `in_group_order`
sorts a list) and calls are yielded as they fill, so a run of any size is packed in constant memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby

from sfcleanup.changes import Change

Call = list[list[Change]]  # the collections of one composite call


def in_group_order(changes: Iterable[Change]) -> list[Change]:
    return sorted(changes, key=lambda c: (c.group, c.id))


def groups(changes: Iterable[Change]) -> Iterator[list[Change]]:
    """Consecutive runs of one group; `changes` must already be in group order."""
    for _, members in groupby(changes, key=lambda c: c.group):
        yield list(members)


def _chunks(items: list[Change], size: int) -> Call:
    return [items[i : i + size] for i in range(0, len(items), size)]


def pack(changes: Iterable[Change], *, per_collection: int, collections_per_call: int) -> Iterator[Call]:
    """Calls of up to `collections_per_call` collections of up to `per_collection` records each."""
    capacity = per_collection * collections_per_call
    current: list[Change] = []
    for group in groups(changes):
        if current and len(current) + len(group) > capacity:
            yield _chunks(current, per_collection)
            current = []
        current.extend(group)
        while len(current) > capacity:
            yield _chunks(current[:capacity], per_collection)
            current = current[capacity:]
    if current:
        yield _chunks(current, per_collection)


def one_group_per_call(changes: Iterable[Change], *, per_collection: int) -> Iterator[Call]:
    """The last lock retry: one parent at a time, so nothing this worker sends competes with itself."""
    for group in groups(changes):
        yield _chunks(group, per_collection)
