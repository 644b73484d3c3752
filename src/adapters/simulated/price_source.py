"""Price paths that drive the simulated exchange: a seeded synthetic walk, or candles replayed.

Candle rule: each candle becomes four points, open (a gap from the previous close) at its open
time, then its two extremes in `Candle.path()` order (low before high on a rising or flat
candle, high before low on a falling one) at +15 s and +30 s, then its close at +45 s. Prices
are exact Decimals from the file's own digits.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, NoReturn, Protocol

from domain.models import Candle

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_POINT_OFFSETS = (timedelta(0), timedelta(seconds=15), timedelta(seconds=30), timedelta(seconds=45))
_ROW_FIELDS = ("open time", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class PricePoint:
    """One step of a price path. `gap` marks a jump (orders crossed fill at this price)."""

    timestamp: datetime
    price: Decimal
    gap: bool = False


class PriceSource(Protocol):
    def points(self) -> Iterator[PricePoint]:
        """The path from its start; every call starts again and yields the same points."""
        ...


class SyntheticPriceSource:
    """A seeded random walk in whole ticks, pulled back toward the start price so that a grid
    around the start keeps trading. Same seed, same path, on every platform."""

    def __init__(
        self,
        *,
        start_price: Decimal,
        tick_size: Decimal,
        seed: int,
        volatility: Decimal,
        step_seconds: Decimal,
        start_time: datetime,
        reversion: Decimal = Decimal("0.01"),
        max_points: int | None = None,
    ) -> None:
        if tick_size <= 0:
            raise ValueError(f"tick_size must be positive, got {tick_size}")
        if start_price < tick_size:
            raise ValueError(f"start_price must be at least one tick ({tick_size}), got {start_price}")
        if volatility < 0:
            raise ValueError(f"volatility must not be negative, got {volatility}")
        if step_seconds <= 0:
            raise ValueError(f"step_seconds must be positive, got {step_seconds}")
        if not 0 <= reversion <= 1:
            raise ValueError(f"reversion must be within [0, 1], got {reversion}")
        if max_points is not None and max_points < 0:
            raise ValueError(f"max_points must not be negative, got {max_points}")
        if start_time.tzinfo is None:
            raise ValueError("start_time must be timezone-aware")
        self._tick = tick_size
        self._start_ticks = int((start_price / tick_size).to_integral_value(rounding=ROUND_HALF_EVEN))
        self._seed = seed
        # The noise is a float draw turned into whole ticks; prices are built from those ints only.
        self._volatility = float(volatility)
        self._reversion = reversion
        self._step = timedelta(microseconds=int(step_seconds * 1_000_000))
        self._start_time = start_time.astimezone(UTC)
        self._max_points = max_points

    def points(self) -> Iterator[PricePoint]:
        if self._max_points == 0:
            return
        rng = random.Random(self._seed)
        ticks = self._start_ticks
        timestamp = self._start_time
        yield PricePoint(timestamp, Decimal(ticks) * self._tick)
        produced = 1
        while self._max_points is None or produced < self._max_points:
            noise = round(rng.gauss(0.0, 1.0) * self._volatility * ticks)
            pull = int(
                (self._reversion * (self._start_ticks - ticks)).to_integral_value(rounding=ROUND_HALF_EVEN)
            )
            ticks = max(1, ticks + noise + pull)
            timestamp += self._step
            yield PricePoint(timestamp, Decimal(ticks) * self._tick)
            produced += 1


class CandlePriceSource:
    """Candles replayed as price points (see the candle rule above).

    `start_time_override` shifts every candle so that the first one opens at that moment.
    """

    def __init__(self, candles: Sequence[Candle], *, start_time_override: datetime | None = None) -> None:
        if not candles:
            raise ValueError("a candle price source needs at least one candle")
        if start_time_override is not None:
            if start_time_override.tzinfo is None:
                raise ValueError("start_time_override must be timezone-aware")
            shift = start_time_override - candles[0].open_time
            candles = [replace(candle, open_time=candle.open_time + shift) for candle in candles]
        self._candles: Sequence[Candle] = candles

    def candles(self) -> Iterator[Candle]:
        return iter(self._candles)

    def points(self) -> Iterator[PricePoint]:
        for candle in self._candles:
            for index, (offset, price) in enumerate(zip(_POINT_OFFSETS, candle.path(), strict=True)):
                yield PricePoint(candle.open_time + offset, price, gap=index == 0)


class CandleFilePriceSource(CandlePriceSource):
    """Candles from a JSON file. The file is read and checked at construction, so a bad file
    fails at start-up rather than halfway through a backtest."""

    def __init__(self, path: Path, *, start_time_override: datetime | None = None) -> None:
        super().__init__(load_candles(path), start_time_override=start_time_override)
        self.path = path


def load_candles(path: Path) -> list[Candle]:
    """Read a candle file (see `parse_candles`). Raises ValueError naming the file (and the row)
    when it is missing, unreadable or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: candle file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read candle file: {exc}") from None
    return parse_candles(text, source=str(path))


def parse_candles(text: str, *, source: str) -> list[Candle]:
    """Parse a JSON array of [open_time_ms, open, high, low, close, volume] rows, in time order,
    with exact Decimal prices. Errors are ValueErrors that start with `source` (a file name)."""
    try:
        rows = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError as exc:
        raise ValueError(f"{source}: invalid JSON: {exc}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{source}: expected a JSON array of candle rows, got {type(rows).__name__}")
    if not rows:
        raise ValueError(f"{source}: the file holds no candles")
    candles: list[Candle] = []
    previous_ms: int | None = None
    for index, row in enumerate(rows):
        try:
            open_ms, candle = _parse_row(row)
        except ValueError as exc:
            raise ValueError(f"{source} row {index}: {exc}") from None
        if previous_ms is not None and open_ms <= previous_ms:
            raise ValueError(
                f"{source} row {index}: open time {open_ms} is not after the previous row's {previous_ms}"
            )
        previous_ms = open_ms
        candles.append(candle)
    return candles


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number a candle can hold")


def _parse_row(row: Any) -> tuple[int, Candle]:
    if not isinstance(row, list):
        raise ValueError(f"expected an array of 6 numbers, got {type(row).__name__}")
    if len(row) != len(_ROW_FIELDS):
        raise ValueError(f"expected 6 numbers, got {len(row)}")
    for field_name, value in zip(_ROW_FIELDS, row, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise ValueError(f"{field_name} is not a number: {value!r}")
    open_ms = row[0]
    if not isinstance(open_ms, int) or open_ms < 0:
        raise ValueError(f"open time must be a non-negative integer of milliseconds, got {open_ms}")
    open_, high, low, close, volume = (Decimal(value) for value in row[1:])
    if min(open_, high, low, close) <= 0:
        raise ValueError("prices must be positive")
    if volume < 0:
        raise ValueError(f"volume must not be negative, got {volume}")
    candle = Candle(
        open_time=_EPOCH + timedelta(milliseconds=open_ms),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
    )
    return open_ms, candle
