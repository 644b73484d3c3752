"""The REST-polling feeds over an in-memory gateway, on a simulated clock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.clock import SimulatedClock
from adapters.polling import PollingMarketDataFeed, PollingOrderUpdateFeed
from domain.errors import AuthenticationError, ExchangeUnavailable, RateLimited
from domain.models import Balance, Fill, Order, OrderRequest, Side, Ticker
from domain.rules import MarketRules

START = datetime(2026, 1, 1, tzinfo=UTC)


def fill(trade_id: int) -> Fill:
    return Fill(
        trade_id=str(trade_id),
        order_id="1",
        client_order_id="c1",
        symbol="BTC/USDT",
        side=Side.BUY,
        price=Decimal("30000"),
        amount=Decimal("0.001"),
        fee=Decimal("0"),
        fee_asset="BTC",
        timestamp=START,
    )


class FakeGateway:
    """Answers from scripted queues; records the `since` ids it was asked for."""

    def __init__(self) -> None:
        self.tickers: list[Ticker | Exception] = []
        self.trades: list[Sequence[Fill] | Exception] = []
        self.since_asked: list[str | None] = []

    async def fetch_ticker(self, symbol: str) -> Ticker:
        item = (
            self.tickers.pop(0) if self.tickers else Ticker(symbol, Decimal(1), Decimal(2), Decimal(1), START)
        )
        if isinstance(item, Exception):
            raise item
        return item

    async def fetch_my_trades(self, symbol: str, since_trade_id: str | None = None) -> Sequence[Fill]:
        self.since_asked.append(since_trade_id)
        item = self.trades.pop(0) if self.trades else []
        if isinstance(item, Exception):
            raise item
        # Like the venue: strictly after since_trade_id.
        return [f for f in item if since_trade_id is None or int(f.trade_id) > int(since_trade_id)]

    async def market_rules(self, symbol: str) -> MarketRules:
        raise NotImplementedError

    async def fetch_balances(self) -> Mapping[str, Balance]:
        raise NotImplementedError

    async def place_order(self, request: OrderRequest) -> Order:
        raise NotImplementedError

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        raise NotImplementedError

    async def fetch_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        raise NotImplementedError

    async def fetch_open_orders(self, symbol: str) -> Sequence[Order]:
        raise NotImplementedError

    async def fetch_order_trades(self, symbol: str, order_id: str) -> Sequence[Fill]:
        raise NotImplementedError


def ticker(last: int) -> Ticker:
    return Ticker("BTC/USDT", Decimal(last - 1), Decimal(last + 1), Decimal(last), START)


async def test_tickers_are_polled_every_interval_and_transient_failures_skipped() -> None:
    clock = SimulatedClock(START)
    gateway = FakeGateway()
    gateway.tickers = [ticker(100), ExchangeUnavailable("down"), RateLimited("slow down"), ticker(103)]
    feed = PollingMarketDataFeed(gateway, clock, interval_s=2.0)
    seen: list[tuple[float, Decimal]] = []
    async for item in feed.tickers("BTC/USDT"):
        seen.append((clock.monotonic(), item.last))
        if len(seen) == 2:
            feed.close()
    assert seen == [(0.0, Decimal(100)), (6.0, Decimal(103))]


async def test_a_permanent_failure_ends_the_ticker_stream_with_it() -> None:
    gateway = FakeGateway()
    gateway.tickers = [AuthenticationError("bad key", code=-2015)]
    feed = PollingMarketDataFeed(gateway, SimulatedClock(START))
    with pytest.raises(AuthenticationError):
        async for _ in feed.tickers("BTC/USDT"):
            pass


async def test_closing_ends_the_stream_even_during_a_wait() -> None:
    clock = SimulatedClock(START, auto_advance=False)  # time never moves: the wait never ends by itself
    feed = PollingMarketDataFeed(FakeGateway(), clock, interval_s=3600)
    stream = feed.tickers("BTC/USDT")
    first = await anext(stream)
    assert first.last == Decimal(1)
    pending = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    feed.close()
    with pytest.raises(StopAsyncIteration):
        await pending


async def test_each_fill_is_yielded_once_and_polling_resumes_from_the_last_id() -> None:
    clock = SimulatedClock(START)
    gateway = FakeGateway()
    gateway.trades = [[fill(5), fill(6)], ExchangeUnavailable("down"), [fill(6), fill(7)], [], [fill(8)]]
    feed = PollingOrderUpdateFeed(gateway, clock, interval_s=2.0, since_trade_id="4")
    seen: list[str] = []
    async for item in feed.fills("BTC/USDT"):
        seen.append(item.trade_id)
        if item.trade_id == "8":
            feed.close()
    assert seen == ["5", "6", "7", "8"]
    assert gateway.since_asked == ["4", "6", "6", "7", "7"]
    assert feed.last_trade_id("BTC/USDT") == "8"


async def test_without_a_starting_id_the_first_poll_delivers_what_the_venue_has() -> None:
    gateway = FakeGateway()
    gateway.trades = [[fill(2), fill(1)]]
    feed = PollingOrderUpdateFeed(gateway, SimulatedClock(START))
    seen = []
    async for item in feed.fills("BTC/USDT"):
        seen.append(item.trade_id)
        if len(seen) == 2:
            feed.close()
    assert seen == ["1", "2"]
