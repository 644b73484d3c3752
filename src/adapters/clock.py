"""Clocks implementing `domain.ports.Clock`: the real one, and a simulated one that jumps.

The simulated clock lets backtests and tests run months of market time in seconds: nobody
waits on the wall clock, time moves only when every task is waiting for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_MICROS = 1_000_000
_DEFAULT_SETTLE_YIELDS = 8


class SystemClock:
    """Wall-clock time for live, testnet and paper runs."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class SimulatedClock:
    """Market time that moves only when told to, or (auto_advance) when everyone sleeps.

    Auto-advance: a sleeper registers its deadline on a heap and waits. A helper task lets the
    event loop settle: with asyncio's own loop it waits until no other task is ready to run;
    on other loops, or when `settle_yields` is given, it yields that many times (default 8),
    starting over whenever a task slept or woke meanwhile. Then time jumps to the earliest
    pending deadline and every sleeper due at that moment wakes, in the order it went to
    sleep. So a task that wakes and sleeps again in a loop is never overtaken by a longer
    sleep elsewhere. Time never goes backwards.

    Limitation: the clock only sees work that runs on the event loop. While a task awaits a
    thread (e.g. aiosqlite) or a socket, other sleepers may move time forward; wrap such
    waits in `hold()` when the order of events must not depend on thread or network timing.

    Without auto_advance only `advance()` moves time (tests drive it by hand).
    """

    def __init__(
        self, start: datetime, *, auto_advance: bool = True, settle_yields: int | None = None
    ) -> None:
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("SimulatedClock needs a timezone-aware start time")
        if settle_yields is not None and settle_yields < 1:
            raise ValueError("settle_yields must be at least 1")
        self._start = start.astimezone(UTC)
        self._auto_advance = auto_advance
        self._settle_yields = settle_yields
        self._elapsed_us = 0
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._activity = 0
        self._holds = 0
        self._release_waiters: list[asyncio.Future[None]] = []
        self._advancer: asyncio.Task[None] | None = None

    # -- the Clock port --------------------------------------------------------------------
    def now(self) -> datetime:
        return self._start + timedelta(microseconds=self._elapsed_us)

    def monotonic(self) -> float:
        """Seconds since the start of the simulation."""
        return self._elapsed_us / _MICROS

    async def sleep(self, seconds: float) -> None:
        duration_us = max(0, round(seconds * _MICROS))
        if duration_us == 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (self._elapsed_us + duration_us, next(self._sequence), waiter))
        self._activity += 1
        if self._auto_advance:
            advancer = self._advancer
            if advancer is None or advancer.done() or advancer.get_loop() is not loop:
                self._advancer = loop.create_task(self._advance_when_idle(), name="simulated-clock-advancer")
        # Cancelling this task cancels `waiter`, which leaves a dead entry that advancing skips.
        await waiter

    # -- driving time ------------------------------------------------------------------------
    @property
    def auto_advance(self) -> bool:
        return self._auto_advance

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` and wake every sleeper due by then."""
        if seconds < 0:
            raise ValueError(f"time never goes backwards: cannot advance by {seconds} s")
        self._move_to(self._elapsed_us + round(seconds * _MICROS))

    def advance_to(self, moment: datetime) -> None:
        """Move time forward to `moment` (a no-op if it is not in the future)."""
        target_us = (moment - self._start) // timedelta(microseconds=1)
        self._move_to(max(self._elapsed_us, target_us))

    def next_deadline(self) -> datetime | None:
        """When the earliest pending sleeper is due, if any."""
        self._drop_dead_entries()
        if not self._heap:
            return None
        return self._start + timedelta(microseconds=self._heap[0][0])

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep auto-advance from moving time while the block runs (e.g. around a wait on a
        thread). Do not sleep on this clock inside the block: nothing could wake you."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if self._holds == 0:
                self._activity += 1
                waiters, self._release_waiters = self._release_waiters, []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    # -- internals ---------------------------------------------------------------------------
    async def _advance_when_idle(self) -> None:
        """Jump to the next deadline whenever the event loop has settled; end when nobody sleeps."""
        loop = asyncio.get_running_loop()
        # asyncio's own loop exposes its run queue: empty after our turn means nothing else can
        # run, exactly the moment to move time. Other loops get the yield-count heuristic.
        run_queue = getattr(loop, "_ready", None) if self._settle_yields is None else None
        if not isinstance(run_queue, deque):
            run_queue = None
        settle_yields = self._settle_yields or _DEFAULT_SETTLE_YIELDS
        while True:
            self._drop_dead_entries()
            if not self._heap:
                return
            if run_queue is not None:
                await asyncio.sleep(0)
                if run_queue:
                    continue  # other tasks can still run, and may sleep for less
            else:
                seen = self._activity
                for _ in range(settle_yields):
                    await asyncio.sleep(0)
                if self._activity != seen:
                    continue  # somebody slept or woke: let the system settle again
            if self._holds:
                release: asyncio.Future[None] = loop.create_future()
                self._release_waiters.append(release)
                await release
                continue
            self._drop_dead_entries()
            if self._heap:
                self._move_to(max(self._elapsed_us, self._heap[0][0]))

    def _move_to(self, target_us: int) -> None:
        self._elapsed_us = max(self._elapsed_us, target_us)
        woke = False
        while self._heap and self._heap[0][0] <= self._elapsed_us:
            _, _, waiter = heapq.heappop(self._heap)
            if not waiter.done():
                waiter.set_result(None)
                woke = True
        if woke:
            self._activity += 1

    def _drop_dead_entries(self) -> None:
        while self._heap and self._heap[0][2].done():
            heapq.heappop(self._heap)
