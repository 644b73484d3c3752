"""Paper trading: the simulated exchange following a live market.

The same `MatchingEngine` and the same hand-shake as the default profile's SimulatedExchange, with
one difference: the price path is not a seeded walk or a file but the venue's public trades, as
they come. Each trade is a price point (the engine's rule: the price travels in a straight line
from the last one, resting orders it crosses fill at their own limit, as maker). A trade at the
last price moves nothing; it is passed on only when no price went out for a second, so a quiet
market still shows a live feed and a busy one does not make the bot re-read an unchanged price.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from decimal import Decimal

import structlog

from adapters.simulated.engine import MatchingEngine
from adapters.simulated.exchange import SimulatedExchange
from adapters.simulated.price_source import PricePoint
from domain.models import MarketTrade
from domain.ports import Clock

log = structlog.get_logger(__name__)

QUIET_REPEAT_S = 1.0


class _NoPath:
    def points(self) -> Iterator[PricePoint]:
        return iter(())


class PaperExchange(SimulatedExchange):
    """ExchangeGateway + MarketDataFeed + OrderUpdateFeed over one engine driven by live trades.
    `trades` opens the venue's trade stream (each call a fresh iterator)."""

    def __init__(
        self,
        engine: MatchingEngine,
        trades: Callable[[], AsyncIterator[MarketTrade]],
        clock: Clock,
        *,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(engine, _NoPath(), clock, on_change=on_change)
        self._trade_stream = trades
        self._last_step_at: float | None = None

    async def run(self) -> None:
        """Follow the trades until the stream ends or close() is called; then close()."""
        if self._running:
            raise RuntimeError("PaperExchange.run() is already running")
        self._running = True
        log.info("paper exchange following the market", symbol=self.engine.rules.symbol)
        try:
            async for trade in self._trade_stream():
                if self._closed:
                    break
                if trade.price == self.engine.last_price and not self._quiet_for_long():
                    continue
                await self._step(trade.price, trade.timestamp)
        finally:
            self._running = False
            self.close()
            log.info("paper exchange stopped", steps=self._steps, last_price=str(self.engine.last_price))

    def _quiet_for_long(self) -> bool:
        last = self._last_step_at
        return last is None or self._clock.monotonic() - last >= QUIET_REPEAT_S

    async def _step(self, price: Decimal, at: datetime) -> None:
        self._market_time = at
        now = self._now()
        fills = self.engine.move_to(price, now)
        self._changed()
        self._last_step_at = self._clock.monotonic()
        await self._publish_step(fills, self.engine.ticker(now))
        self._steps += 1
        self._ready_event.set()
