"""Market data and fills by REST polling, over any ExchangeGateway.

Used until WebSocket streams exist, and as their fallback when a stream is down. Transient venue
trouble (ExchangeUnavailable, RateLimited) is logged and the poll tried again at the next interval;
anything else (bad keys, corrupt answers) ends the stream with that error. Iterators end when
`close()` is called, even in the middle of a wait.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import structlog

from domain.errors import ExchangeUnavailable, RateLimited
from domain.models import Fill, Ticker
from domain.ports import Clock, ExchangeGateway

log = structlog.get_logger(__name__)

T = TypeVar("T")

# A Binance myTrades page holds at most 1000 trades: a full page means more are waiting.
FULL_TRADES_PAGE = 1000


class _Poller:
    def __init__(self, clock: Clock, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self._clock = clock
        self._interval_s = interval_s
        self._closed = asyncio.Event()
        self.errors: dict[str, int] = {}  # transient failures by error type (metrics)
        self.reconnects = 0  # polls that succeeded after a failed one
        self._failing = False

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()

    async def _pause(self) -> None:
        """Wait one interval on the Clock port, or less if the feed is closed meanwhile."""
        if self.closed:
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(self._interval_s))
        closer = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({sleeper, closer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pending = [task for task in (sleeper, closer) if not task.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _poll(self, what: str, symbol: str, fetch: Callable[[], Awaitable[T]]) -> T | None:
        """One poll; None after a transient failure (already logged)."""
        try:
            result = await fetch()
        except (ExchangeUnavailable, RateLimited) as error:
            log.warning("polling.transient_failure", feed=what, symbol=symbol, error=str(error))
            kind = type(error).__name__
            self.errors[kind] = self.errors.get(kind, 0) + 1
            self._failing = True
            return None
        if self._failing:
            self._failing = False
            self.reconnects += 1
        return result


class PollingMarketDataFeed(_Poller):
    """domain.ports.MarketDataFeed: one ticker per interval."""

    def __init__(self, gateway: ExchangeGateway, clock: Clock, *, interval_s: float = 2.0) -> None:
        super().__init__(clock, interval_s)
        self._gateway = gateway

    async def tickers(self, symbol: str) -> AsyncIterator[Ticker]:
        while not self.closed:
            ticker = await self._poll("tickers", symbol, lambda: self._gateway.fetch_ticker(symbol))
            if ticker is not None and not self.closed:
                yield ticker
            await self._pause()


class PollingOrderUpdateFeed(_Poller):
    """domain.ports.OrderUpdateFeed: this account's fills, via fetch_my_trades from the last trade
    id seen. Each fill is yielded once per feed (and symbol)."""

    def __init__(
        self,
        gateway: ExchangeGateway,
        clock: Clock,
        *,
        interval_s: float = 2.0,
        since_trade_id: str | None = None,
    ) -> None:
        super().__init__(clock, interval_s)
        self._gateway = gateway
        self._since_trade_id = since_trade_id
        self._last_seen: dict[str, str | None] = {}

    def last_trade_id(self, symbol: str) -> str | None:
        return self._last_seen.get(symbol, self._since_trade_id)

    async def _fetch_since_last(self, symbol: str) -> Sequence[Fill]:
        return await self._gateway.fetch_my_trades(symbol, self.last_trade_id(symbol))

    async def fills(self, symbol: str) -> AsyncIterator[Fill]:
        while not self.closed:
            batch = await self._poll("fills", symbol, functools.partial(self._fetch_since_last, symbol))
            fresh = [] if batch is None else newer_than(batch, self.last_trade_id(symbol))
            for fill in fresh:
                if self.closed:
                    return
                self._last_seen[symbol] = fill.trade_id
                yield fill
            if batch is None or len(batch) < FULL_TRADES_PAGE:
                await self._pause()


def trade_key(trade_id: str) -> tuple[int, str]:
    """Order trade ids numerically when they are numbers (Binance), else as text."""
    return (int(trade_id), "") if trade_id.isdigit() else (0, trade_id)


def newer_than(batch: Sequence[Fill], last: str | None) -> list[Fill]:
    """The fills of `batch` after trade `last` (all of them without one), oldest first."""
    ordered = sorted(batch, key=lambda fill: trade_key(fill.trade_id))
    if last is None:
        return ordered
    return [fill for fill in ordered if trade_key(fill.trade_id) > trade_key(last)]


if TYPE_CHECKING:
    from domain.ports import MarketDataFeed, OrderUpdateFeed

    def _satisfies_ports(
        market: PollingMarketDataFeed, orders: PollingOrderUpdateFeed
    ) -> tuple[MarketDataFeed, OrderUpdateFeed]:
        return market, orders
