"""How many writes to keep in flight: additive increase, multiplicative decrease, from what the org answers.

The level starts slowly and grows fast: one more for every clean call (no lock failures beyond what the tolerated
share explains, no latency per record well above the best seen, no push-back) until the first sign of trouble,
as TCP's slow start does; after that, one more for every `level` clean calls. It halves on a call whose lock
failures the tolerated share cannot explain, or on a push-back: a 503 or a concurrent-request 403, which the
door retries but the level must not ignore. A level carried over from an earlier phase has left slow start
already if it met trouble there. It never leaves [floor, ceiling]: the ceiling is Salesforce's documented limit
of 25 concurrent long-running requests (production orgs and sandboxes) unless a lower one is asked for. Which
calls may run together is not decided here: calls that share a lock point never do, whatever the level
(`write._send_all`).

Pure: observations in, a level out. The caller measures time and counts rows; nothing here sleeps or reads a
clock, so its tests need neither.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

# "Production orgs and sandboxes: 25" concurrent long-running API requests (API Request Limits and Allocations).
CONCURRENT_REQUEST_LIMIT = 25


@dataclass(frozen=True)
class Observation:
    """One call as it came back: its rows, those refused on a lock, its time per row, and whether the org pushed
    back (503, concurrent-request 403) while it ran."""

    rows: int
    locked: int = 0
    seconds_per_row: float | None = None
    pushed_back: bool = False


@dataclass(frozen=True)
class Tuning:
    floor: int = 1
    ceiling: int = CONCURRENT_REQUEST_LIMIT
    # A call whose share of locked rows is above this counts as contention (the org's own lock failures on a
    # busy org run at a few percent whatever the level; only more than that says the level is too high). A small
    # call is judged with the binomial spread of that share: 2 of a 15-row retry round is chance, not contention.
    tolerated_lock_share: float = 0.10
    spread: float = 2.0
    # Latency per row above this multiple of the best seen means the org is saturated: stop growing.
    latency_slack: float = 1.5
    decrease: float = 0.5


class Concurrency:
    def __init__(self, start: int, tuning: Tuning | None = None) -> None:
        self._tuning = tuning or Tuning()
        self._level = self._clamp(start)
        # Clean calls seen at the current level: `level` of them earn one more.
        self._clean = 0
        self._slow_start = True
        self._best: float | None = None
        self.highest = self._level
        self.lowest = self._level
        self.decreases = 0

    @property
    def level(self) -> int:
        return self._level

    def _clamp(self, value: int) -> int:
        return min(self._tuning.ceiling, max(self._tuning.floor, value))

    def _contended(self, seen: Observation) -> bool:
        """More locked rows than the tolerated share explains: above its mean by `spread` standard deviations."""
        if seen.rows <= 0 or seen.locked <= 0:
            return False
        share = self._tuning.tolerated_lock_share
        expected = seen.rows * share
        return seen.locked > expected + self._tuning.spread * math.sqrt(expected * (1.0 - share))

    def observe(self, seen: Observation) -> None:
        tuning = self._tuning
        contended = self._contended(seen)
        saturated = (
            seen.seconds_per_row is not None
            and self._best is not None
            and seen.seconds_per_row > self._best * tuning.latency_slack
        )
        if seen.pushed_back or contended:
            self._level = self._clamp(int(self._level * tuning.decrease))
            self._clean = 0
            self._slow_start = False
            self.decreases += 1
        elif saturated:
            self._slow_start = False
        elif seen.rows > 0:
            self._clean += 1
            if self._slow_start or self._clean >= self._level:
                self._level = self._clamp(self._level + 1)
                self._clean = 0
        if seen.seconds_per_row is not None and seen.locked == 0 and not seen.pushed_back:
            self._best = seen.seconds_per_row if self._best is None else min(self._best, seen.seconds_per_row)
        self.highest = max(self.highest, self._level)
        self.lowest = min(self.lowest, self._level)


_shared: weakref.WeakKeyDictionary[object, dict[str, Concurrency]] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def shared(owner: object, kind: str, start: int, tuning: Tuning | None = None) -> Concurrency:
    """The level of `kind` ("composite", "bulk jobs") kept for as long as `owner` (the session's client) lives:
    what one phase learned of the org, the next starts from. Tied to the owner, so two sessions never share."""
    with _shared_lock:
        levels = _shared.setdefault(owner, {})
        if kind not in levels:
            levels[kind] = Concurrency(start, tuning)
        return levels[kind]
