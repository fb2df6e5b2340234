"""Record locks held for the length of a request, as Salesforce holds them for a transaction.

A write locks the record and its master-detail parents. A request that needs a lock another request holds
waits up to `wait_s` in all (the app keeps that budget per request); if it is still held the row fails with
UNABLE_TO_LOCK_ROW. Locks are re-entrant per
request, so many children of one parent in one request do not contend with each other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    acquired: bool
    waited: bool
    waited_s: float


# The answer to every uncontended acquire; Attempt is frozen, so one instance serves them all.
_TAKEN = Attempt(True, False, 0.0)


class LockManager:
    def __init__(
        self,
        wait_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        on_wait: Callable[[], None] = lambda: None,
    ) -> None:
        self.wait_s = wait_s
        self._monotonic = monotonic
        # Called (holding the manager's mutex) when a request starts waiting: tests learn of a wait without polling.
        self._on_wait = on_wait
        self._owners: dict[str, int] = {}
        self._held: dict[int, set[str]] = {}
        # A plain Lock under the Condition: `with self._mutex` is a C-level enter, where `with self._cond` runs
        # Python code, and every written row takes this lock once. Nothing here re-enters it.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self.waits = 0
        self.timeouts = 0

    def acquire(self, owner: int, keys: Iterable[str]) -> bool:
        """Take every key for `owner`, waiting for other owners up to `wait_s`; all or nothing."""
        return self.try_acquire(owner, keys).acquired

    def try_acquire(self, owner: int, keys: Iterable[str], wait_s: float | None = None) -> Attempt:
        """Like `acquire`, waiting up to `wait_s` (default: the manager's), and saying whether and how long it waited.

        The caller learns about its own wait here: comparing the shared `waits` counter before and after, as the
        app did, also counted waits of other threads that happened in between.
        """
        wanted = set(keys)
        started = self._monotonic()
        deadline = started + (self.wait_s if wait_s is None else wait_s)
        waited = False
        owners = self._owners
        with self._mutex:
            while True:
                # Plain loops: all() over a generator cost more than the rest of an uncontended acquire.
                for key in wanted:
                    if owners.get(key, owner) != owner:
                        break
                else:
                    for key in wanted:
                        owners[key] = owner
                    held = self._held.get(owner)
                    if held is None:
                        self._held[owner] = wanted
                    else:
                        held |= wanted
                    return Attempt(True, True, self._monotonic() - started) if waited else _TAKEN
                remaining = deadline - self._monotonic()
                if remaining <= 0:
                    self.timeouts += 1
                    return Attempt(False, waited, self._monotonic() - started if waited else 0.0)
                if not waited:
                    self.waits += 1
                    waited = True
                    self._on_wait()
                self._cond.wait(remaining)

    def release_all(self, owner: int) -> None:
        with self._cond:
            released = self._held.pop(owner, set())
            for key in released:
                del self._owners[key]
            if released:
                self._cond.notify_all()
