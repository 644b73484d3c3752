"""Which failures are retried, and the backoff between attempts (on a simulated clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.binance.errors import CircuitOpen, UnderMaintenance
from adapters.binance.retry import RetryPolicy, is_retryable
from adapters.clock import SimulatedClock
from domain.errors import (
    AuthenticationError,
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    InvalidResponse,
    OrderNotFound,
    OrderStateUnknown,
    RateLimited,
)


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (ExchangeUnavailable("timeout"), True),
        (ExchangeUnavailable("HTTP 502", code=-1000), True),
        (AuthenticationError("bad key", code=-2015), False),
        (InvalidOrder("Filter failure: NOTIONAL", code=-1013), False),
        (DuplicateOrder("Duplicate order sent.", code=-2010), False),
        (InsufficientFunds("Account has insufficient balance", code=-2010), False),
        (OrderNotFound("Order does not exist.", code=-2013), False),
        (RateLimited("429", retry_after=5), False),
        (UnderMaintenance("System is under maintenance."), False),
        (CircuitOpen("circuit open"), False),
        (OrderStateUnknown("unknown"), False),
        (InvalidResponse("field 'price' is missing"), False),
        (ExchangeError("something else"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_transient_failures_are_retried(error: Exception, retryable: bool) -> None:
    assert is_retryable(error) is retryable


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def clock() -> SimulatedClock:
    return SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))


async def test_transient_failures_are_retried_with_exponential_backoff_and_jitter() -> None:
    sim = clock()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await SimulatedClock.sleep(sim, seconds)

    sim.sleep = sleep  # type: ignore[method-assign]
    flaky = Flaky([ExchangeUnavailable("down")] * 4)
    assert await RetryPolicy(sim).run(flaky) == "ok"
    assert flaky.calls == 5
    for wait, base in zip(waits, [1, 2, 4, 8], strict=True):
        assert base <= wait <= base + 1


async def test_backoff_is_capped_at_thirty_seconds() -> None:
    sim = clock()
    policy = RetryPolicy(sim, max_attempts=8)
    flaky = Flaky([ExchangeUnavailable("down")] * 7)
    await policy.run(flaky)
    # 1 + 2 + 4 + 8 + 16 + 30 + 30 (+ up to 1 s jitter each, the cap included)
    assert 91 <= sim.monotonic() <= 98


async def test_attempts_are_bounded_and_the_last_error_surfaces() -> None:
    flaky = Flaky([ExchangeUnavailable(f"down {i}") for i in range(10)])
    with pytest.raises(ExchangeUnavailable, match="down 4"):
        await RetryPolicy(clock()).run(flaky)
    assert flaky.calls == 5


@pytest.mark.parametrize(
    "error",
    [
        AuthenticationError("bad key", code=-2015),
        InvalidOrder("Filter failure: LOT_SIZE", code=-1013),
        InsufficientFunds("no money", code=-2010),
        OrderNotFound("Unknown order sent.", code=-2011),
    ],
)
async def test_refusals_are_not_retried(error: ExchangeError) -> None:
    sim = clock()
    flaky = Flaky([error])
    with pytest.raises(type(error)):
        await RetryPolicy(sim).run(flaky)
    assert flaky.calls == 1
    assert sim.monotonic() == 0
