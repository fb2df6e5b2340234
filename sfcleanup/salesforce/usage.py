"""What this worker spent of the org's API allowance, and how the org's clock differs from this machine's:
read off every HTTP response, whichever API made it."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import requests

from sfcleanup.clock import utc_now

_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")


class ApiUsage:
    """Calls this worker made, and the org's daily usage as the last `Sforce-Limit-Info` header reported it."""

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.calls = 0
        self.used: int | None = None
        self.max: int | None = None
        # The org's clock minus this machine's, from the last HTTP Date header (whole seconds).
        self.clock_offset: timedelta | None = None
        # Answers where the org pushed back (503 unavailable, 403 concurrent requests): the writers' concurrency
        # backs off on them even when a retry then succeeds.
        self.pushbacks = 0

    def observe(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """A requests response hook: sees every HTTP response, whichever API made it."""
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info", ""))
        offset = _clock_offset(response.headers.get("Date"), self._clock())
        with self._lock:
            if "/services/oauth2/" not in (response.url or ""):
                self.calls += 1
            if response.status_code in (403, 503):
                self.pushbacks += 1
            if match:
                self.used, self.max = int(match.group(1)), int(match.group(2))
            if offset is not None:
                self.clock_offset = offset


def _clock_offset(date_header: str | None, now: datetime) -> timedelta | None:
    if not date_header:
        return None
    try:
        org_time = parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if org_time.tzinfo is None:
        return None
    return org_time - now
