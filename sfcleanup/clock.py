"""The one place worker code reads the time of day: everything that needs it takes a `Clock`, defaulting to
`utc_now`, so tests and rehearsals can pass their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
