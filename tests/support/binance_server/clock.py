"""A hand-driven millisecond clock for `FakeBinance(now_ms=...)`."""

from __future__ import annotations

import time


class ManualClock:
    """Server time that moves only when a test says so, so rate-limit windows roll without
    sleeping. Starts at the beginning of the current wall-clock minute unless told otherwise.

    ccxt signs with its own wall clock, so a frozen server clock drifts away from the
    timestamps it sends (signed calls then fail with -1021 after a second). With
    `follow_wall_clock=True` the clock runs with the wall clock and `advance` adds an offset on
    top; an offset beyond ccxt's recvWindow (10 s) makes signed calls fail the timing rule, as
    a skewed clock would on Binance, while public calls go on."""

    def __init__(self, start_ms: int | None = None, *, follow_wall_clock: bool = False) -> None:
        wall = time.time_ns() // 1_000_000
        self._follow = follow_wall_clock
        self._origin_wall = wall
        if start_ms is not None:
            self._start = start_ms
        elif follow_wall_clock:
            self._start = wall
        else:
            self._start = wall - wall % 60_000
        self._offset = 0

    def __call__(self) -> int:
        running = time.time_ns() // 1_000_000 - self._origin_wall if self._follow else 0
        return self._start + running + self._offset

    def advance(self, milliseconds: int) -> None:
        self._offset += milliseconds

    def advance_to_next_minute(self) -> None:
        """Jump to the first millisecond of the next whole minute (a new weight window)."""
        now = self()
        self.advance(60_000 - now % 60_000)
