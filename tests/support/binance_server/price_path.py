"""Scripted market moves for the stand-in: a deterministic zig-zag the server walks on its own, so
an e2e test (or `python -m support.binance_server --zigzag ...`) gets a market that crosses grid
levels at a known pace without any randomness.

The path is a list of turning points walked in straight legs, in a cycle, at `speed` price units
per second, sampled every `tick_s` seconds of wall time: with levels `gap` apart, a level is
crossed about every `gap / speed` seconds."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from support.binance_server.app import FakeBinance


@dataclass(frozen=True, slots=True)
class ZigZag:
    """From `start`, straight to each of `turns` in turn (then from the first again), `speed` price
    units per second, one price every `tick_s` seconds, snapped to `tick_size`."""

    start: Decimal
    turns: tuple[Decimal, ...]
    speed: Decimal
    tick_s: float = 0.1
    tick_size: Decimal = Decimal("0.01")

    def __post_init__(self) -> None:
        if not self.turns:
            raise ValueError("a zig-zag needs at least one turning point")
        if self.speed <= 0 or self.tick_s <= 0:
            raise ValueError("speed and tick_s must be positive")
        if min(self.start, *self.turns) <= 0:
            raise ValueError("prices must be positive")

    @property
    def step(self) -> Decimal:
        """The price move of one tick."""
        return self.speed * Decimal(str(self.tick_s))

    def prices(self) -> Iterator[Decimal]:
        """The endless sequence of prices, one per tick (each turning point is hit exactly)."""
        here = self.start
        for target in itertools.cycle(self.turns):
            while here != target:
                if abs(target - here) <= self.step:
                    here = target
                else:
                    here += self.step if target > here else -self.step
                yield self._snap(here)

    def _snap(self, price: Decimal) -> Decimal:
        return (price / self.tick_size).to_integral_value(rounding=ROUND_HALF_EVEN) * self.tick_size


def parse_turns(text: str) -> tuple[Decimal, ...]:
    """'29500,30500,29800' -> the turning points (for the command line)."""
    return tuple(Decimal(part) for part in text.split(",") if part.strip())


async def drive(
    server: FakeBinance,
    symbol: str,
    prices: Iterator[Decimal] | Sequence[Decimal],
    *,
    tick_s: float,
    after_each: Callable[[Decimal], None] | None = None,
) -> int:
    """Walk `server`'s market along `prices`, one every `tick_s` seconds, until they run out or the
    task is cancelled. `after_each(price)` runs after every move (for invariant checks).
    Returns the number of moves made."""
    moves = 0
    for price in prices:
        server.set_price(symbol, price)
        moves += 1
        if after_each is not None:
            after_each(price)
        await asyncio.sleep(tick_s)
    return moves
