"""VenueCalls.retrying: bounded (stopping) and patient (starting) retries of a venue call (issue 7).

The venue is the in-memory FakeVenue with scripted failures in front of its ticker; time is the
simulated clock (it jumps over every wait), driven by hand where a test must act mid-wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.clock import SimulatedClock
from application.grid_venue import VenueCalls
from domain.errors import ExchangeError, ExchangeUnavailable, InvalidOrder, RateLimited
from domain.models import Ticker

from .fakes import FakeClock, FakeVenue

START = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SYMBOL = "BTC/USDT"
RETRYING = "venue call failed; retrying"


class ScriptedVenue(FakeVenue):
    """FakeVenue whose next ticker reads fail with the scripted errors, in order."""

    def __init__(self, failures: Sequence[ExchangeError] = ()) -> None:
        super().__init__(FakeClock(START))
        self.failures = list(failures)
        self.calls = 0

    async def fetch_ticker(self, symbol: str) -> Ticker:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return await super().fetch_ticker(symbol)


def venue_calls(venue: ScriptedVenue, clock: SimulatedClock, attempts: int = 6) -> VenueCalls:
    return VenueCalls(venue, clock, SYMBOL, attempts)


def retry_lines(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == RETRYING]


async def test_patient_waits_out_each_rate_limit_for_its_retry_after() -> None:
    clock = SimulatedClock(START)
    venue = ScriptedVenue(
        [RateLimited("Too many requests", code=-1003, retry_after=7), RateLimited("banned", retry_after=3)]
    )
    calls = venue_calls(venue, clock)
    with capture_logs() as logs:
        ticker = await calls.retrying("fetch_ticker", lambda: venue.fetch_ticker(SYMBOL), patient=True)
    assert ticker.symbol == SYMBOL
    assert clock.monotonic() == 10  # 7 s, then 3 s: exactly what the venue asked
    lines = retry_lines(logs)
    assert [(line["call"], line["attempt"], line["wait_s"]) for line in lines] == [
        ("fetch_ticker", 1, 7),
        ("fetch_ticker", 2, 3),
    ]
    assert lines[0]["reason"] == "Too many requests (code -1003)"
    assert all(line["log_level"] == "warning" for line in lines)


async def test_patient_backs_off_on_a_rate_limit_that_names_no_time() -> None:
    clock = SimulatedClock(START)
    venue = ScriptedVenue([RateLimited("Too much request weight used", code=-1003)])
    with capture_logs() as logs:
        await venue_calls(venue, clock).retrying(
            "fetch_ticker", lambda: venue.fetch_ticker(SYMBOL), patient=True
        )
    (line,) = retry_lines(logs)
    assert 1 <= line["wait_s"] <= 2  # the first exponential step, with jitter
    assert 1 <= clock.monotonic() <= 2


async def test_patient_retries_an_unavailable_venue_for_ever_with_capped_backoff() -> None:
    clock = SimulatedClock(START)
    outage = 25  # far more than the bounded attempts (6)
    venue = ScriptedVenue([ExchangeUnavailable("connection refused (127.0.0.1:9)")] * outage)
    with capture_logs() as logs:
        ticker = await venue_calls(venue, clock).retrying(
            "fetch_ticker", lambda: venue.fetch_ticker(SYMBOL), patient=True
        )
    assert ticker.symbol == SYMBOL
    assert venue.calls == outage + 1
    lines = retry_lines(logs)
    assert [line["attempt"] for line in lines] == list(range(1, outage + 1))  # one line per failure
    assert all(line["reason"] == "connection refused (127.0.0.1:9)" for line in lines)
    waits = [line["wait_s"] for line in lines]
    assert 1 <= waits[0] <= 2 and 2 <= waits[1] <= 3 and 4 <= waits[2] <= 5
    assert max(waits) <= 60 and waits[-1] == 60  # capped at a minute
    assert clock.monotonic() == pytest.approx(sum(waits), abs=0.01)


async def test_patient_raises_a_refusal_at_once() -> None:
    clock = SimulatedClock(START)
    venue = ScriptedVenue([InvalidOrder("Filter failure: NOTIONAL", code=-1013)])
    with pytest.raises(InvalidOrder):
        await venue_calls(venue, clock).retrying(
            "fetch_ticker", lambda: venue.fetch_ticker(SYMBOL), patient=True
        )
    assert venue.calls == 1 and clock.monotonic() == 0


async def test_bounded_retries_stop_after_the_configured_attempts_as_before() -> None:
    clock = SimulatedClock(START)
    venue = ScriptedVenue([ExchangeUnavailable("venue down")] * 10)
    with capture_logs() as logs, pytest.raises(ExchangeUnavailable, match="venue down"):
        await venue_calls(venue, clock, attempts=3).retrying(
            "cancel_order", lambda: venue.fetch_ticker(SYMBOL)
        )
    assert venue.calls == 3
    lines = retry_lines(logs)
    assert [(line["call"], line["attempt"]) for line in lines] == [("cancel_order", 1), ("cancel_order", 2)]
    waits = [line["wait_s"] for line in lines]
    assert 1 <= waits[0] <= 2 and 2 <= waits[1] <= 3


async def test_bounded_retries_do_not_wait_out_a_long_retry_after() -> None:
    # Stopping must not hang on a ban: the bounded mode backs off as it always did.
    clock = SimulatedClock(START)
    venue = ScriptedVenue([RateLimited("banned", retry_after=3600)] * 2)
    with pytest.raises(RateLimited):
        await venue_calls(venue, clock, attempts=2).retrying(
            "cancel_order", lambda: venue.fetch_ticker(SYMBOL)
        )
    assert venue.calls == 2
    assert clock.monotonic() <= 2


class SignallingClock(SimulatedClock):
    """A simulated clock that moves only by hand and says when somebody went to sleep on it."""

    def __init__(self) -> None:
        super().__init__(START, auto_advance=False)
        self.sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await super().sleep(seconds)


async def test_cancelling_a_patient_wait_ends_it_at_once() -> None:
    clock = SignallingClock()
    venue = ScriptedVenue([RateLimited("banned", retry_after=3600)])
    task = asyncio.create_task(
        venue_calls(venue, clock).retrying("fetch_ticker", lambda: venue.fetch_ticker(SYMBOL), patient=True)
    )
    await clock.sleeping.wait()
    assert clock.next_deadline() == START.replace(hour=10, minute=30)  # an hour away
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert venue.calls == 1 and clock.monotonic() == 0


async def test_cancelling_a_patient_call_in_flight_is_not_retried() -> None:
    clock = SimulatedClock(START)
    started = asyncio.Event()
    calls = 0

    async def hangs() -> Ticker:
        nonlocal calls
        calls += 1
        started.set()
        await asyncio.Event().wait()  # an answer that never comes
        raise AssertionError("unreachable")

    task = asyncio.create_task(
        venue_calls(ScriptedVenue(), clock).retrying("fetch_ticker", hangs, patient=True)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
