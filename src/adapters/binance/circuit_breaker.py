"""A circuit breaker for the venue: after repeated transient failures, stop calling for a while.

Hammering an exchange that is down wastes the rate-limit budget and delays the moment the bot
notices the outage; failing fast lets the application pause the grid instead. Only failures of
the retryable kind (network, timeout, 5xx) count: a refused order proves the venue is up.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

import structlog

from adapters.binance.errors import CircuitOpen
from domain.ports import Clock

log = structlog.get_logger(__name__)

# Differences of float clock readings can miss an exact deadline by one ulp.
_EPSILON_S = 1e-6


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed -> open after `failure_threshold` failures within `window_s`; open -> half-open after
    `reset_timeout_s`, letting exactly one probe call through; the probe's success closes the
    circuit, its failure opens it again for another `reset_timeout_s`."""

    def __init__(
        self,
        clock: Clock,
        *,
        failure_threshold: int = 5,
        window_s: float = 30.0,
        reset_timeout_s: float = 60.0,
        name: str = "binance",
    ) -> None:
        self._clock = clock
        self._threshold = failure_threshold
        self._window_s = window_s
        self._reset_timeout_s = reset_timeout_s
        self._name = name
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._reported = BreakerState.CLOSED

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            current = BreakerState.CLOSED
        elif self._clock.monotonic() - self._opened_at >= self._reset_timeout_s - _EPSILON_S:
            current = BreakerState.HALF_OPEN
        else:
            current = BreakerState.OPEN
        self._report(current)
        return current

    def before_call(self) -> None:
        """Raise CircuitOpen unless a call may go out now. In half-open state only one probe may."""
        if self._opened_at is None and self._reported is BreakerState.CLOSED:
            return  # closed, and known to be: the per-call fast path
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return
        assert self._opened_at is not None
        retry_in = max(0.0, self._opened_at + self._reset_timeout_s - self._clock.monotonic())
        raise CircuitOpen(
            f"circuit open for {self._name}: {self._threshold} transient failures within "
            f"{self._window_s:g}s; next probe in {retry_in:.0f}s"
        )

    def record_success(self) -> None:
        if (
            self._opened_at is None
            and not self._failures
            and not self._probe_in_flight
            and self._reported is BreakerState.CLOSED
        ):
            return  # nothing to reset: the per-call fast path
        self._probe_in_flight = False
        self._failures.clear()
        self._opened_at = None
        self._report(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A transient failure (network, timeout, 5xx)."""
        now = self._clock.monotonic()
        if self._probe_in_flight or self._opened_at is not None:
            # The probe failed (or a call that started before the circuit opened): open again.
            self._probe_in_flight = False
            self._opened_at = now
            self._report(BreakerState.OPEN)
            return
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self._window_s:
            self._failures.popleft()
        if len(self._failures) >= self._threshold:
            self._failures.clear()
            self._opened_at = now
            self._report(BreakerState.OPEN)

    def release(self) -> None:
        """A call ended without telling anything about the venue (cancelled, or refused before
        sending): free the probe slot without changing the state."""
        self._probe_in_flight = False

    def _report(self, state: BreakerState) -> None:
        if state is self._reported:
            return
        level = log.warning if state is BreakerState.OPEN else log.info
        level(
            "binance.circuit.transition", breaker=self._name, previous=str(self._reported), state=str(state)
        )
        self._reported = state
