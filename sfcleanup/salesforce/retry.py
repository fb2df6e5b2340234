"""The one retry policy: jittered exponential backoff under an attempt cap and a deadline (tenacity).

Only what `classify` calls transient is retried here. Lost connections are retried for reads only; writes
handle them themselves (re-read before re-sending). Tests pass `sleep` so backoff costs no time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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


def no_wait_policy(max_attempts: int = 6) -> RetryPolicy:
    """For tests and rehearsals: same decisions, no waiting."""
    return RetryPolicy(max_attempts=max_attempts, initial_s=0.0, max_backoff_s=0.0, sleep=lambda _: None)
