"""The org's sessions: every access token it issued and not yet expired, with the API calls each has made."""

from __future__ import annotations

import secrets
import threading

ORG_ID_PREFIX = "00D5g0000000001!"


class Sessions:
    def __init__(self) -> None:
        self._calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = ORG_ID_PREFIX + secrets.token_urlsafe(32)
        self.accept(token)
        return token

    def accept(self, token: str) -> None:
        """Accept a token given from outside (`--token`), as if this org had issued it."""
        with self._lock:
            self._calls[token] = 0

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._calls)

    def use(self, token: str, expiry_after_calls: int | None) -> bool:
        """Count one call on `token`; False when it is unknown, or expired (it is then forgotten)."""
        with self._lock:
            calls = self._calls.get(token)
            if calls is None:
                return False
            if expiry_after_calls is not None and calls >= expiry_after_calls:
                del self._calls[token]
                return False
            self._calls[token] = calls + 1
        return True
