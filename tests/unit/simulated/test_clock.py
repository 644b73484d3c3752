"""The clocks. Nothing here waits on wall time: the simulated clock jumps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from adapters.clock import SimulatedClock, SystemClock

from .builders import T0, at

AutoClock = Callable[[], SimulatedClock]


@pytest.fixture(params=["run-queue", "yield-count"])
def auto_clock(request: pytest.FixtureRequest) -> AutoClock:
    """Both ways of telling that the loop has settled: asyncio's run queue, or a yield count."""
    settle_yields = None if request.param == "run-queue" else 8
    return lambda: SimulatedClock(T0, settle_yields=settle_yields)


async def test_the_system_clock_tells_aware_utc_time_and_a_monotonic_count() -> None:
    clock = SystemClock()
    now = clock.now()
    first = clock.monotonic()
    await clock.sleep(0)
    assert now.tzinfo is UTC
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)
    assert clock.monotonic() >= first


def test_the_simulated_clock_starts_at_its_start_in_utc() -> None:
    clock = SimulatedClock(datetime(2024, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == T0
    assert clock.now().tzinfo is UTC
    assert clock.monotonic() == 0.0


def test_a_naive_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedClock(datetime(2024, 1, 1))


def test_advance_moves_now_and_monotonic_forward() -> None:
    clock = SimulatedClock(T0, auto_advance=False)
    clock.advance(1.5)
    clock.advance(0.25)
    assert clock.now() == at(1.75)
    assert clock.monotonic() == 1.75


def test_time_never_goes_backwards() -> None:
    clock = SimulatedClock(T0, auto_advance=False)
    clock.advance(10)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    clock.advance_to(at(5))
    assert clock.now() == at(10)


async def test_without_auto_advance_only_advance_wakes_sleepers_whose_deadline_has_come() -> None:
    clock = SimulatedClock(T0, auto_advance=False)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(f"{name}@{clock.monotonic():g}")

    tasks = [asyncio.create_task(sleeper("short", 2)), asyncio.create_task(sleeper("long", 5))]
    for _ in range(20):
        await asyncio.sleep(0)
    assert woke == []  # nobody moves time but advance()

    clock.advance(3)
    for _ in range(5):
        await asyncio.sleep(0)
    assert woke == ["short@3"]
    assert clock.next_deadline() == at(5)

    clock.advance(2)
    await asyncio.gather(*tasks)
    assert woke == ["short@3", "long@5"]
    assert clock.next_deadline() is None


async def test_with_auto_advance_a_long_sleep_ends_at_once_at_the_right_time(auto_clock: AutoClock) -> None:
    clock = auto_clock()
    started = time.monotonic()
    await clock.sleep(86_400 * 30)
    assert clock.now() == T0 + timedelta(days=30)
    assert time.monotonic() - started < 1  # a month of market time, no wall-time wait


async def test_a_long_sleep_does_not_jump_past_the_short_sleeps_of_a_looping_task(
    auto_clock: AutoClock,
) -> None:
    clock = auto_clock()
    log: list[tuple[str, float]] = []

    async def ticker() -> None:
        for _ in range(10):
            await clock.sleep(1)
            log.append(("A", clock.monotonic()))

    async def sleeper() -> None:
        await clock.sleep(5)
        log.append(("B", clock.monotonic()))

    await asyncio.gather(ticker(), sleeper())

    # Both are due at 5 and wake in the same jump, B first because it went to sleep first.
    assert log[3:6] == [("A", 4.0), ("B", 5.0), ("A", 5.0)]
    assert [t for name, t in log if name == "A"] == [float(n) for n in range(1, 11)]
    assert clock.monotonic() == 10.0


async def test_a_task_busy_with_other_awaits_between_sleeps_is_not_overtaken(auto_clock: AutoClock) -> None:
    clock = auto_clock()
    queue: asyncio.Queue[int] = asyncio.Queue()
    seen: list[tuple[int, float]] = []

    async def producer() -> None:
        for n in range(5):
            await clock.sleep(1)
            await queue.put(n)
            await queue.join()  # wait for the consumer, which itself yields a few times

    async def consumer() -> None:
        for _ in range(5):
            n = await queue.get()
            for _ in range(3):
                await asyncio.sleep(0)
            seen.append((n, clock.monotonic()))
            queue.task_done()

    async def timer() -> float:
        await clock.sleep(3.5)
        return clock.monotonic()

    *_, fired_at = await asyncio.gather(producer(), consumer(), timer())

    assert seen == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 5.0)]
    assert fired_at == 3.5


async def test_sleepers_due_together_wake_in_the_order_they_went_to_sleep(auto_clock: AutoClock) -> None:
    clock = auto_clock()
    order: list[str] = []

    async def sleeper(name: str) -> None:
        await clock.sleep(2)
        order.append(name)

    await asyncio.gather(sleeper("first"), sleeper("second"), sleeper("third"))
    assert order == ["first", "second", "third"]
    assert clock.monotonic() == 2.0


async def test_a_cancelled_sleeper_no_longer_pulls_time_forward(auto_clock: AutoClock) -> None:
    clock = auto_clock()
    doomed = asyncio.create_task(clock.sleep(100))
    await asyncio.sleep(0)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed

    await clock.sleep(1)
    assert clock.monotonic() == 1.0
    assert clock.next_deadline() is None


async def test_hold_keeps_time_still_until_released(auto_clock: AutoClock) -> None:
    clock = auto_clock()
    sleeper = asyncio.create_task(clock.sleep(60))
    with clock.hold():
        for _ in range(50):
            await asyncio.sleep(0)
        assert not sleeper.done()
        assert clock.monotonic() == 0.0
    await sleeper
    assert clock.monotonic() == 60.0


async def test_zero_and_negative_sleeps_return_without_moving_time() -> None:
    clock = SimulatedClock(T0)
    await clock.sleep(0)
    await clock.sleep(-3)
    assert clock.monotonic() == 0.0


async def test_the_same_program_on_a_simulated_clock_gives_the_same_timeline_every_time(
    auto_clock: AutoClock,
) -> None:
    async def program() -> list[tuple[str, float]]:
        clock = auto_clock()
        log: list[tuple[str, float]] = []

        async def worker(name: str, period: float, times: int) -> None:
            for _ in range(times):
                await clock.sleep(period)
                log.append((name, clock.monotonic()))

        await asyncio.gather(worker("fast", 0.3, 20), worker("slow", 1.7, 4), worker("odd", 2.2, 3))
        return log

    first, second = await program(), await program()
    assert first == second
    assert [t for _, t in first] == sorted(t for _, t in first)  # events come out in time order


async def test_on_asyncio_time_waits_for_any_chain_of_work_however_long() -> None:
    clock = SimulatedClock(T0)
    handled: list[float] = []

    async def slow_handler() -> None:
        for _ in range(10):
            await clock.sleep(1)
            for _ in range(200):  # far more hand-offs than any yield count would wait for
                await asyncio.sleep(0)
            handled.append(clock.monotonic())

    async def long_sleeper() -> float:
        await clock.sleep(5.5)
        return clock.monotonic()

    _, woke_at = await asyncio.gather(slow_handler(), long_sleeper())
    assert handled == [float(n) for n in range(1, 11)]
    assert woke_at == 5.5
