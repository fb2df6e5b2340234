"""Open REST query locators of one org: a query's membership, fixed when it ran, served page by page."""

from __future__ import annotations

import secrets
import threading

from sfcleanup.localorg.soql import CompiledQuery

# Open locators are kept so a page can be fetched again after a lost response; the oldest are dropped first.
MAX_OPEN_LOCATORS = 64


class Locator:
    """A query's membership, fixed when it ran, so pages stay consistent while records change."""

    def __init__(self, compiled: CompiledQuery, rowids: list[int], batch: int) -> None:
        self.key = f"01g5g{secrets.token_hex(6)}"
        self.compiled = compiled
        self.rowids = rowids
        self.batch = batch


class QueryLocators:
    """The org's open locators, at most MAX_OPEN_LOCATORS, oldest dropped first."""

    def __init__(self) -> None:
        self._open: dict[str, Locator] = {}
        self._lock = threading.Lock()

    def keep(self, locator: Locator) -> None:
        with self._lock:
            self._open[locator.key] = locator
            while len(self._open) > MAX_OPEN_LOCATORS:
                del self._open[next(iter(self._open))]

    def get(self, key: str) -> Locator | None:
        return self._open.get(key)
