"""A plan's changes: one record's transition, the changes of one phase (`ChangeSet`), what they wait for
(`Dependencies`), and where a planner puts them (`PlanSink`). The in-memory implementations live here; the
on-disk ones in `planstore`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sfcleanup.billing import Phase, Rule

Values = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class Change:
    sobject: str
    id: str
    # The lock point the record shares with its siblings (the account): a batch keeps a group together.
    group: str
    before: Values
    after: Values


class ChangeSet(Protocol):
    """The changes of one phase, iterated in lock-point order (group, then id)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Change]: ...

    def get_many(self, record_ids: Sequence[str]) -> dict[str, Change]:
        """The changes of those of `record_ids` that are in the set, by id."""
        ...

    def transitions(self, status_field: str) -> dict[str, int]: ...


def _order(change: Change) -> tuple[str, str]:
    return change.group, change.id


class MemoryChanges:
    """A ChangeSet held in memory: small runs and tests."""

    def __init__(self, changes: Sequence[Change]) -> None:
        self._changes = tuple(sorted(changes, key=_order))
        self._by_id = {c.id: c for c in self._changes}

    def __len__(self) -> int:
        return len(self._changes)

    def __iter__(self) -> Iterator[Change]:
        return iter(self._changes)

    def __bool__(self) -> bool:
        return bool(self._changes)

    def get_many(self, record_ids: Sequence[str]) -> dict[str, Change]:
        return {i: self._by_id[i] for i in record_ids if i in self._by_id}

    def transitions(self, status_field: str) -> dict[str, int]:
        counts = Counter(f"{c.before[status_field]} -> {c.after[status_field]}" for c in self._changes)
        return dict(sorted(counts.items()))


class Dependencies(Protocol):
    """What the planned changes wait for (see `PlanSink.depend`)."""

    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        """The changes of `phase` that wait for a record in `blocked`, each with one record it waits for."""
        ...


class NoDependencies:
    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        return {}


class Without:
    """A ChangeSet less the records held back (`held` is a subset of `changes`)."""

    def __init__(self, changes: ChangeSet, held: Collection[str]) -> None:
        self._changes = changes
        self._held = frozenset(held)

    def __len__(self) -> int:
        return len(self._changes) - len(self._held)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[Change]:
        return (c for c in self._changes if c.id not in self._held)

    def get_many(self, record_ids: Sequence[str]) -> dict[str, Change]:
        return self._changes.get_many([i for i in record_ids if i not in self._held])

    def transitions(self, status_field: str) -> dict[str, int]:
        counts = Counter(f"{c.before[status_field]} -> {c.after[status_field]}" for c in self)
        return dict(sorted(counts.items()))


def change_for(rule: Rule, record_id: str, group: str, current: Values) -> Change:
    """The transition of one record under `rule`, with the before values of every field it writes."""
    before = {name: current.get(name) for name in rule.fields}
    after: Values = {rule.status_field: rule.to_state, **{name: None for name in rule.cleared}}
    return Change(rule.sobject, record_id, group, before, after)


class PlanSink(Protocol):
    """Where a planner's decisions go: the changes of each phase, and what each change waits for."""

    def add(self, phase: Phase, change: Change) -> None: ...

    def depend(self, record_id: str, on: str) -> None:
        """`record_id` may be written only once `on` (a record of an earlier phase) reached its target."""
        ...


class MemorySink:
    """Collects a plan in memory: small runs and tests."""

    def __init__(self) -> None:
        self.changes: dict[Phase, list[Change]] = {phase: [] for phase in Phase}
        self.edges: dict[str, set[str]] = {}

    def add(self, phase: Phase, change: Change) -> None:
        self.changes[phase].append(change)

    def depend(self, record_id: str, on: str) -> None:
        self.edges.setdefault(record_id, set()).add(on)


class MemoryDependencies:
    """What each planned change waits for, held in memory."""

    def __init__(self, edges: Mapping[str, set[str]], changes: Mapping[Phase, ChangeSet]) -> None:
        self._edges = edges
        self._changes = changes

    def waiting(self, phase: Phase, blocked: Collection[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for change in self._changes[phase]:
            waits = sorted(self._edges.get(change.id, set()) & set(blocked))
            if waits:
                out[change.id] = waits[0]
        return out

    def of(self, record_id: str) -> frozenset[str]:
        return frozenset(self._edges.get(record_id, ()))
