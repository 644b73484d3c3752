"""The circuit breaker, driven by a hand-moved simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs

from adapters.binance.circuit_breaker import BreakerState, CircuitBreaker
from adapters.binance.errors import CircuitOpen
from adapters.clock import SimulatedClock
from domain.errors import ExchangeUnavailable


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC), auto_advance=False)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.before_call()
        breaker.record_failure()


def test_opens_after_five_failures_within_thirty_seconds(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    clock.advance(29)
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="circuit open") as raised:
        breaker.before_call()
    assert isinstance(raised.value, ExchangeUnavailable)


def test_failures_spread_over_more_than_thirty_seconds_do_not_open_it(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    for _ in range(10):
        fail(breaker, 1)
        clock.advance(8)  # at most four failures fall inside any 30 s
    assert breaker.state is BreakerState.CLOSED


def test_a_success_resets_the_failure_count(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    fail(breaker, 4)
    breaker.record_success()
    fail(breaker, 4)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_after_sixty_seconds_lets_exactly_one_probe_through(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    fail(breaker, 5)
    clock.advance(59.9)
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.advance(0.1)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second caller while the probe is out
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()


def test_a_failed_probe_opens_the_circuit_for_another_minute(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    fail(breaker, 5)
    clock.advance(60)
    fail(breaker, 1)
    assert breaker.state is BreakerState.OPEN
    clock.advance(59)
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.advance(1)
    breaker.before_call()


def test_a_probe_that_ends_without_a_verdict_frees_the_slot(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    fail(breaker, 5)
    clock.advance(60)
    breaker.before_call()
    breaker.release()
    breaker.before_call()  # another probe may go


def test_every_transition_is_logged(clock: SimulatedClock) -> None:
    breaker = CircuitBreaker(clock)
    with capture_logs() as logs:
        fail(breaker, 5)
        clock.advance(60)
        breaker.before_call()
        breaker.record_success()
    transitions = [(e["previous"], e["state"]) for e in logs if e["event"] == "binance.circuit.transition"]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
