"""The one retry policy: jittered exponential backoff under an attempt cap and a deadline (tenacity).

Only what `classify` calls transient is retried here. Lost connections are retried for reads only; writes
handle them themselves (re-read before re-sending). Tests pass `sleep` so backoff costs no time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_random_exponential

from sfcleanup.salesforce.classify import Verdict, classify

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    deadline_s: float = 300.0
    initial_s: float = 1.0
    max_backoff_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def run(
        self,
        fn: Callable[[], T],
        *,
        retry_connection_lost: bool,
        on_retry: Callable[[BaseException, int], None] | None = None,
    ) -> T:
        """Call `fn`, retrying transient failures; the last exception propagates when retries run out."""
        retryable = {Verdict.TRANSIENT} | ({Verdict.CONNECTION_LOST} if retry_connection_lost else set())

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc, state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.deadline_s),
            wait=wait_random_exponential(multiplier=self.initial_s, max=self.max_backoff_s),
            retry=retry_if_exception(lambda exc: classify(exc).verdict in retryable),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def backoff(self, attempt: int) -> float:
        """The pause after a caller's own round number `attempt` (subrequests refused transiently)."""
        return min(self.max_backoff_s, self.initial_s * 2.0**attempt)

    def rounds(self, attempts: int | None = None, *, on_retry: Callable[[int], None] | None = None) -> Iterator[int]:
        """Round numbers for work a caller sends again in part itself (the subrequests of a Composite call that
        were refused transiently), with this policy's pause before each further round; the caller stops
        early when nothing is left to send."""
        for attempt in range(1, (attempts or self.max_attempts) + 1):
            if attempt > 1:
                if on_retry is not None:
                    on_retry(attempt - 1)
                self.sleep(self.backoff(attempt - 1))
            yield attempt


# A write that handles a lost answer itself reads back what the org applied and sends the rest again, at
# most this many more times: a Composite write (by Id, safe to compare), or a create proven absent (a Bulk
# job, a lease record) before it is asked for again.
WRITE_RESENDS = 3
CREATE_RESENDS = 2


def sends(resends: int) -> range:
    """Attempt numbers for a write that handles a lost answer itself: the first send and up to `resends` more,
    without a pause (reading back what was applied took its time)."""
    return range(1, resends + 2)


def no_wait_policy(max_attempts: int = 6) -> RetryPolicy:
    """For tests and rehearsals: same decisions, no waiting."""
    return RetryPolicy(max_attempts=max_attempts, initial_s=0.0, max_backoff_s=0.0, sleep=lambda _: None)
