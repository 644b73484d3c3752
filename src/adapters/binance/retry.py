"""Which failures are worth another attempt, and how long to wait between attempts.

Only transient trouble is retried: network errors, timeouts, 5xx. Refusals (auth, filters,
balance, unknown order) would fail the same way again; a rate limit is handled by the limiter,
which already holds every request back until Retry-After; maintenance lasts longer than any
backoff; an open circuit means "stop calling".

Start-up is the exception: until the venue has answered once the bot has nothing to do but wait,
so there a rate limit is waited out (`rate_limit_wait_s`) and an unreachable venue is tried again
and again (`backoff_s`, with a longer cap).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from adapters.binance.errors import CircuitOpen, UnderMaintenance
from domain.errors import ExchangeUnavailable, OrderStateUnknown, RateLimited
from domain.ports import Clock

log = structlog.get_logger(__name__)

T = TypeVar("T")

MAX_ATTEMPTS = 5
BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 30.0
BACKOFF_JITTER_S = 1.0
STARTUP_BACKOFF_MAX_S = 60.0


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, ExchangeUnavailable) and not isinstance(
        error, CircuitOpen | UnderMaintenance | OrderStateUnknown
    )


def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "binance.retry",
        attempt=state.attempt_number,
        wait_s=round(wait, 3),
        error=str(error),
        error_type=type(error).__name__,
    )


class RetryPolicy:
    """Exponential backoff with jitter (1 s, 2 s, 4 s ... capped at 30 s, plus up to 1 s random),
    at most `max_attempts` attempts, sleeping through the Clock port."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_attempts: int = MAX_ATTEMPTS,
        initial_s: float = BACKOFF_INITIAL_S,
        max_s: float = BACKOFF_MAX_S,
        jitter_s: float = BACKOFF_JITTER_S,
    ) -> None:
        self._clock = clock
        self.max_attempts = max_attempts
        self._wait = wait_exponential_jitter(initial=initial_s, max=max_s, jitter=jitter_s)

    def retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            sleep=self._clock.sleep,
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=_log_retry,
            reraise=True,
        )

    async def run(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Call `attempt` until it succeeds, fails for good, or attempts run out (the last error
        is re-raised as is)."""
        # Fast path: the first attempt runs without tenacity's machinery, which costs about as
        # much as the rest of the adapter's own work per call. Only a retryable failure hands
        # over to tenacity, which gets that failure as its own first attempt, then backs off.
        try:
            return await attempt()
        except Exception as error:
            if not is_retryable(error) or self.max_attempts <= 1:
                raise
            first_failure: list[Exception] = [error]

        async def call() -> T:  # tenacity awaits only what it recognises as a coroutine function
            if first_failure:
                raise first_failure.pop()
            return await attempt()

        result: T = await self.retrying()(call)
        return result


def backoff_s(
    failures: int,
    *,
    initial_s: float = BACKOFF_INITIAL_S,
    max_s: float = STARTUP_BACKOFF_MAX_S,
    jitter_s: float = BACKOFF_JITTER_S,
) -> float:
    """The wait after the `failures`-th failure in a row, as tenacity's wait_exponential_jitter
    computes it: initial * 2^(failures-1) plus up to `jitter_s` at random, at most `max_s`."""
    exponent = min(max(failures, 1) - 1, 64)  # 2**64 s is past any cap already
    return min(initial_s * 2.0**exponent + random.uniform(0, jitter_s), max_s)


def rate_limit_wait_s(error: RateLimited, *, blocked_for_s: float) -> float | None:
    """How long a start-up call waits out a 429 or a 418 ban: to its end, i.e. the venue's
    Retry-After, the ban's end or the limiter's own hold (which has a default when the venue
    named no time), whichever is longest. None when none of them is known: back off then."""
    wait = max(error.retry_after or 0.0, blocked_for_s)
    return wait if wait > 0 else None
