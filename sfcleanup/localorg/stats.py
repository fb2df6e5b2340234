"""Counters of the local org, readable in-process and at /_localorg/stats (which is not an API call)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._counters: Counter[str] = Counter()

    def api_call(self, endpoint: str) -> None:
        with self._lock:
            self._calls[endpoint] += 1

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counters[name]

    @property
    def api_calls(self) -> int:
        with self._lock:
            return sum(self._calls.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "api_calls": sum(self._calls.values()),
                "api_calls_by_endpoint": dict(sorted(self._calls.items())),
                **dict(sorted(self._counters.items())),
            }
