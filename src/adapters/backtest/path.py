"""Candles as the price path a backtest walks, with the vectorized search that lets it skip.

Candle rule (the same as `adapters.simulated.price_source.CandlePriceSource`): each candle is
four points: its open at its open time (a gap from the previous close: crossed orders fill at
the open), then its two extremes in path order (open -> low -> high -> close when close >= open,
else open -> high -> low -> close) at +15 s and +30 s, then its close at +45 s.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import numpy as np

from adapters.backtest.columns import PRICE_SCALE, CandleColumns, IntArray, price_of
from application.backtest import PathPoint

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
POINTS_PER_CANDLE = 4
_STEP_MS = 15_000
_OFFSETS = (0, _STEP_MS, 2 * _STEP_MS, 3 * _STEP_MS)  # a candle's points after its open time, in ms
_FIRST_CHUNK = 256  # points the search looks at first; it looks 4x further each time it finds nothing
_LARGEST_CHUNK = 1 << 20
_NEVER_BELOW = -1  # bounds no price reaches (prices are positive and fit in int64)
_NEVER_ABOVE = np.iinfo(np.int64).max


def _units(price: Decimal, rounding: str) -> int:
    return int(price.scaleb(PRICE_SCALE).to_integral_value(rounding=rounding))


class CandlePath:
    """The points of `columns`, as int64 arrays (prices in units of 10**-PRICE_SCALE)."""

    def __init__(self, columns: CandleColumns) -> None:
        rising = columns.close >= columns.open
        prices: IntArray = np.empty(len(columns) * POINTS_PER_CANDLE, dtype=np.int64)
        prices[0::4] = columns.open
        prices[1::4] = np.where(rising, columns.low, columns.high)
        prices[2::4] = np.where(rising, columns.high, columns.low)
        prices[3::4] = columns.close
        self.prices = prices
        self.open_times: IntArray = columns.open_time_ms  # a point's time is its candle's plus an offset
        self.columns = columns

    def time_ms(self, k: int) -> int:
        candle, step = divmod(k, POINTS_PER_CANDLE)
        return int(self.open_times[candle]) + _OFFSETS[step]

    def first_at_or_after(self, ms: int) -> int:
        """The first point whose time is at or after `ms` (len(self) when none is)."""
        # Candle c's last point is at open + 45 s: the first candle reaching `ms` holds the point.
        candle = int(self.open_times.searchsorted(ms - _OFFSETS[-1]))
        if candle >= len(self.open_times):
            return len(self)
        into = ms - int(self.open_times[candle])
        step = 0 if into <= 0 else -(-into // _STEP_MS)  # ceil: the first offset at or after it
        return candle * POINTS_PER_CANDLE + step

    def __len__(self) -> int:
        return int(self.prices.shape[0])

    def point(self, k: int) -> PathPoint:
        return PathPoint(
            _EPOCH + timedelta(milliseconds=self.time_ms(k)),
            price_of(int(self.prices[k])),
            gap=k % POINTS_PER_CANDLE == 0,
        )

    def next_reach(self, after: int, *, at_or_below: Decimal | None, at_or_above: Decimal | None) -> int:
        """The first point after `after` at or below / at or above the bounds; len(self) if none.
        Searched in chunks that grow fourfold, so a reach nearby costs little and a long quiet
        stretch costs a few vectorized passes."""
        n = len(self)
        if at_or_below is None and at_or_above is None:
            return n
        # A price p (whole units) is at or below b when p <= floor(b), at or above a when p >= ceil(a).
        below = _NEVER_BELOW if at_or_below is None else _units(at_or_below, ROUND_FLOOR)
        above = _NEVER_ABOVE if at_or_above is None else _units(at_or_above, ROUND_CEILING)
        prices = self.prices
        start, size = after + 1, _FIRST_CHUNK
        while start < n:
            end = min(n, start + size)
            segment = prices[start:end]
            hits = (segment <= below) | (segment >= above)
            first = int(hits.argmax())
            if hits[first]:
                return start + first
            start, size = end, min(size * 4, _LARGEST_CHUNK)
        return n

    def window(self, window_s: float) -> ColumnWindow:
        return ColumnWindow(self, window_s)


class ColumnWindow:
    """The market-state window read straight from the path: the points of the last `window_s`
    of market time up to the current one (`seek`), as the core's own window would hold them had
    it seen every point. The core's pushes are not needed: the points are all here."""

    def __init__(self, path: CandlePath, window_s: float) -> None:
        self._path = path
        self._prices = path.prices
        self._window_ms = window_s * 1000.0
        self._k = 0

    def seek(self, k: int) -> None:
        self._k = k

    def push(self, at: datetime, price: Decimal) -> None:
        """Nothing to keep: the window reads the path's points (see `seek`)."""

    def extremes(self) -> tuple[Decimal, Decimal] | None:
        k = self._k
        # The points kept are those at or after (the current point's time - the window).
        horizon = math.ceil(self._path.time_ms(k) - self._window_ms)  # times are whole milliseconds
        start = self._path.first_at_or_after(horizon)
        recent: list[int] = self._prices[start : k + 1].tolist()  # a few dozen: quicker in Python
        return price_of(min(recent)), price_of(max(recent))
