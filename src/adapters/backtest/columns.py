"""Candles as columns: what a backtest reads, held as numpy arrays of integers.

Prices are exact: each is an int64 count of 10**-PRICE_SCALE (so 42000.01 is 4_200_001_000_000).
Binance prints at most 8 decimals, so nothing a kline file holds is rounded; prices up to about
92 billion fit. Open times are int64 milliseconds since the epoch, strictly increasing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import numpy.typing as npt

PRICE_SCALE = 8
PRICE_UNIT = 10**PRICE_SCALE
MINUTE_MS = 60_000

IntArray = npt.NDArray[np.int64]


@functools.lru_cache(maxsize=65536)  # a backtest asks for the same few thousand prices again and again
def price_of(units: int) -> Decimal:
    """The exact Decimal of a price held in units of 10**-PRICE_SCALE, without trailing zeros
    past the decimal point (42000.01, not 42000.01000000; 42000, not 4.2E+4)."""
    whole, frac = divmod(int(units), PRICE_UNIT)
    if frac == 0:
        return Decimal(whole)
    digits = f"{frac:0{PRICE_SCALE}d}".rstrip("0")
    return Decimal(f"{whole}.{digits}")


def units_of(price: Decimal) -> int:
    """A Decimal price in units of 10**-PRICE_SCALE; refuses a price with more decimals."""
    scaled = price.scaleb(PRICE_SCALE)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"price {price} has more than {PRICE_SCALE} decimals")
    return int(scaled)


@dataclass(frozen=True, slots=True)
class DataIssues:
    """What was wrong with the rows and what was done about it; reported, never silent."""

    gaps: int = 0  # places where one or more minutes are missing between two candles
    missing_minutes: int = 0  # minutes missing in all
    largest_gap_minutes: int = 0
    largest_gap_at_ms: int | None = None  # open time of the candle after the largest gap
    duplicates_dropped: int = 0  # rows with an open time already seen (the first one is kept)
    out_of_order: int = 0  # rows whose open time was before the previous row's (sorted into place)
    examples: tuple[str, ...] = ()  # a few lines a user can read, e.g. "row 1204: duplicate of row 1203"

    @property
    def clean(self) -> bool:
        return not (self.gaps or self.duplicates_dropped or self.out_of_order)


@dataclass(frozen=True, slots=True)
class CandleColumns:
    """1-minute candles in time order, one row per index across the arrays."""

    open_time_ms: IntArray
    open: IntArray
    high: IntArray
    low: IntArray
    close: IntArray
    source: str  # the file's name, or "synthetic (seed N)"
    issues: DataIssues = field(default_factory=DataIssues)

    def __len__(self) -> int:
        return int(self.open_time_ms.shape[0])

    def between(self, start_ms: int | None, end_ms: int | None) -> CandleColumns:
        """The candles opening in [start_ms, end_ms) (either end open when None)."""
        times = self.open_time_ms
        lo = 0 if start_ms is None else int(np.searchsorted(times, start_ms, side="left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(times, end_ms, side="left"))
        return CandleColumns(
            times[lo:hi],
            self.open[lo:hi],
            self.high[lo:hi],
            self.low[lo:hi],
            self.close[lo:hi],
            self.source,
            self.issues,
        )
