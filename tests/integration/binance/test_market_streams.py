"""The market-data adapter over real WebSockets on loopback: `BinanceMarketStreams` against the
stand-in's stream server, which publishes every market move of the REST stand-in's engine.

Real sockets must be waited on, so these tests run on the system clock; every wait is on an
event (a trade arriving, a connection opening) under a generous hang guard, and nothing asserts
how long anything took."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import structlog

from adapters.binance.streams import BinanceMarketStreams, StreamTimings, combined_url
from adapters.clock import SystemClock
from domain.errors import ExchangeUnavailable
from domain.models import MarketTrade, Ticker
from support.binance_server import FakeBinance
from support.binance_server.streams import MarketStreamServer, running_market_streams

from .sockets import guarded, wait_until

SYMBOL = "BTC/USDT"

FAST = StreamTimings(
    silence_s=1.0, fallback_after_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2, open_timeout_s=2.0
)


@pytest.fixture
async def streams(fake: FakeBinance) -> AsyncIterator[MarketStreamServer]:
    async with running_market_streams(fake) as server:
        yield server


class Collected:
    """What the feed hands out, followed from a background task."""

    def __init__(self, feed: BinanceMarketStreams) -> None:
        self.feed = feed
        self.trades: list[MarketTrade] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        async for trade in self.feed.trades():
            self.trades.append(trade)
            self._arrived.set()

    async def until(self, predicate: Callable[[list[MarketTrade]], bool], what: str) -> None:
        async def wait() -> None:
            while not predicate(self.trades):
                self._arrived.clear()
                await self._arrived.wait()

        await guarded(wait(), what)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def running_feed(url: str, **kwargs: Any) -> AsyncIterator[tuple[BinanceMarketStreams, Collected]]:
    kwargs.setdefault("timings", FAST)
    feed = BinanceMarketStreams(url, SYMBOL, SystemClock(), **kwargs)
    collected = Collected(feed)
    task = asyncio.create_task(feed.run())
    try:
        yield feed, collected
    finally:
        feed.close()
        await collected.stop()
        await guarded(task, "the feed's shutdown")


def ids(trades: list[MarketTrade]) -> list[int]:
    return [trade.trade_id for trade in trades]


async def test_the_combined_stream_is_parsed_into_trades_and_tickers(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    async with running_feed(streams.url) as (feed, collected):
        await guarded(streams.wait_for_clients(2), "both connections")
        fake.set_price(SYMBOL, Decimal("30100"))
        fake.set_price(SYMBOL, Decimal("30100.50"))
        await collected.until(lambda t: len(t) == 2, "two trades")
        tickers: list[Ticker] = []
        await guarded(_first_ticker(feed, tickers), "a ticker")  # the latest: a slow reader skips ahead
    trade = collected.trades[1]
    assert trade.price == Decimal("30100.50")  # exact, from the payload's string
    assert trade.amount == Decimal("0.01")
    assert trade.symbol == SYMBOL
    assert trade.timestamp.tzinfo is not None
    assert tickers[0].last == Decimal("30100.50")
    assert tickers[0].bid < tickers[0].ask  # the book top came from bookTicker (an earlier move's at least)
    assert feed.candle is not None and feed.candle.close == Decimal("30100.50")  # kline_1m
    paths = {client.path for client in streams.clients}
    assert paths == {"/stream"}
    assert all(
        client.streams == {"btcusdt@trade", "btcusdt@bookTicker", "btcusdt@kline_1m"}
        for client in streams.clients
    )


async def _first_ticker(feed: BinanceMarketStreams, into: list[Ticker]) -> None:
    async for ticker in feed.tickers(SYMBOL):
        into.append(ticker)
        return


def test_the_ws_url_is_a_root_and_a_docs_url_is_taken_for_its_root() -> None:
    expected = "wss://x.test:9443/stream?streams=btcusdt@trade/btcusdt@bookTicker/btcusdt@kline_1m"
    assert combined_url("wss://x.test:9443", SYMBOL) == expected
    assert combined_url("wss://x.test:9443/ws", SYMBOL) == expected
    assert combined_url("wss://x.test:9443/stream/", SYMBOL) == expected


async def test_a_raw_stream_path_serves_bare_payloads(fake: FakeBinance, streams: MarketStreamServer) -> None:
    from websockets.asyncio.client import connect

    async with connect(streams.url + "/ws/btcusdt@trade") as socket:
        await guarded(streams.wait_for_clients(1), "the raw connection")
        fake.set_price(SYMBOL, Decimal("30001"))
        message = json.loads(await guarded(socket.recv(), "a raw trade"))
    assert message["e"] == "trade"
    assert Decimal(message["p"]) == Decimal("30001")
    assert "stream" not in message


async def test_the_feed_reconnects_after_a_server_side_drop(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    async with running_feed(
        streams.url,
        timings=StreamTimings(silence_s=5.0, backoff_initial_s=0.05, backoff_max_s=0.2, standby=False),
    ) as (feed, collected):
        await guarded(streams.wait_for_clients(1), "the connection")
        fake.set_price(SYMBOL, Decimal("30010"))
        await collected.until(lambda t: len(t) == 1, "a trade before the drop")
        streams.drop()
        await guarded(streams.wait_for_clients(1, opened=2), "the reconnection")
        fake.set_price(SYMBOL, Decimal("30020"))
        await collected.until(lambda t: len(t) == 2, "a trade after the reconnection")
    assert [t.price for t in collected.trades] == [Decimal("30010"), Decimal("30020")]
    assert feed.reconnects >= 1


async def test_a_malformed_message_is_logged_and_skipped(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    async with running_feed(streams.url, timings=StreamTimings(silence_s=5.0, standby=False)) as (
        feed,
        collected,
    ):
        await guarded(streams.wait_for_clients(1), "the connection")
        with structlog.testing.capture_logs() as logs:
            streams.send_raw("{not json")
            streams.send_raw(
                json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade", "s": "BTCUSDT", "t": 1}})
            )
            streams.send_raw(
                json.dumps(
                    {
                        "stream": "btcusdt@trade",
                        "data": {"e": "trade", "s": "BTCUSDT", "t": 2, "p": "abc", "q": "1", "T": 1},
                    }
                )
            )
            streams.send_raw(
                json.dumps(
                    {
                        "stream": "ethusdt@trade",
                        "data": {"e": "trade", "s": "ETHUSDT", "t": 3, "p": "1", "q": "1", "T": 1},
                    }
                )
            )
            streams.send_raw(json.dumps({"e": "depthUpdate"}))
            fake.set_price(SYMBOL, Decimal("30030"))
            await collected.until(lambda t: len(t) == 1, "the good trade after the bad ones")
    assert feed.malformed == 5
    assert [t.price for t in collected.trades] == [Decimal("30030")]
    skipped = [entry for entry in logs if entry["event"] == "market stream: message skipped"]
    assert len(skipped) == 5
    assert any("'p'" in entry["reason"] or "abc" in entry["reason"] for entry in skipped)
    assert feed.reconnects == 0  # never fatal, not even to the connection


async def test_pings_are_answered_with_their_payload(fake: FakeBinance, streams: MarketStreamServer) -> None:
    async with running_feed(streams.url, timings=StreamTimings(silence_s=5.0, standby=False)):
        (client,) = await guarded(streams.wait_for_clients(1), "the connection")
        assert await streams.ping(client, b"1700000000000")
        assert await streams.ping(client, b"another payload")
    assert client.pongs == [b"1700000000000", b"another payload"]


async def test_a_stalled_connection_is_detected_and_replaced(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    async with running_feed(
        streams.url,
        timings=StreamTimings(silence_s=0.5, backoff_initial_s=0.05, backoff_max_s=0.2, standby=False),
    ) as (_, collected):
        (stalled,) = await guarded(streams.wait_for_clients(1), "the connection")
        streams.stall()
        fake.set_price(SYMBOL, Decimal("30040"))  # never reaches the stalled connection
        await guarded(streams.wait_for_clients(1, opened=2), "the replacement connection")
        assert not stalled.open  # the feed closed it
        fake.set_price(SYMBOL, Decimal("30050"))
        await collected.until(lambda t: len(t) == 1, "a trade on the new connection")
    assert [t.price for t in collected.trades] == [Decimal("30050")]


async def test_the_standby_takes_over_with_no_duplicate_and_no_gap(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    async with running_feed(
        streams.url, timings=StreamTimings(silence_s=5.0, backoff_initial_s=0.5, backoff_max_s=1.0)
    ) as (feed, collected):
        first, _ = await guarded(streams.wait_for_clients(2), "primary and standby")
        for step in range(5):
            fake.set_price(SYMBOL, Decimal(30000 + step))
        await collected.until(lambda t: len(t) == 5, "trades on both connections")
        streams.drop([first])
        await guarded(first.done.wait(), "the drop")
        for step in range(5, 10):  # the dropped one is still backing off: only the standby carries these
            fake.set_price(SYMBOL, Decimal(30000 + step))
        await collected.until(lambda t: len(t) == 10, "trades through the standby")
        await guarded(streams.wait_for_clients(2, opened=3), "the dropped connection back")
        for step in range(10, 15):
            fake.set_price(SYMBOL, Decimal(30000 + step))
        await collected.until(lambda t: len(t) == 15, "trades on both again")
    assert ids(collected.trades) == list(range(1, 16))  # every trade once, in tape order
    assert [t.price for t in collected.trades] == [Decimal(30000 + step) for step in range(15)]
    assert feed.duplicates > 0  # both connections delivered; the copies were dropped


async def test_a_planned_reconnect_happens_while_the_other_connection_covers(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    timings = StreamTimings(silence_s=5.0, max_age_s=0.3, backoff_initial_s=0.05, backoff_max_s=0.2)
    async with running_feed(streams.url, timings=timings) as (_, collected):
        with structlog.testing.capture_logs() as logs:
            await guarded(streams.wait_for_clients(2, opened=4), "connections recycled on plan")
        fake.set_price(SYMBOL, Decimal("30060"))
        await collected.until(lambda t: len(t) == 1, "a trade after the recycling")
    planned = [
        e
        for e in logs
        if e["event"] == "market stream down; reconnecting" and e["reason"].startswith("planned")
    ]
    assert planned
    assert all(entry["other_up"] for entry in planned)  # never both down for a planned one


async def test_without_streams_prices_are_polled_and_streams_win_back(fake: FakeBinance) -> None:
    polled: list[int] = []

    async def poll() -> Ticker:
        polled.append(1)
        if len(polled) == 2:
            raise ExchangeUnavailable("REST hiccup")  # logged, and the next poll goes on
        price = fake.book(SYMBOL).engine.last_price
        assert price is not None
        return Ticker(SYMBOL, price, price, price, datetime.now(UTC))

    async with running_market_streams(fake) as streams:
        streams.refusing = True
        with structlog.testing.capture_logs() as logs:
            async with running_feed(streams.url, poll=poll, poll_interval_s=0.05) as (feed, collected):
                fake.set_price(SYMBOL, Decimal("30070"))
                await collected.until(lambda t: any(x.price == Decimal("30070") for x in t), "a polled price")
                assert feed.mode == "rest_polling"
                streams.refusing = False
                await wait_until(lambda: feed.mode == "streams", "the streams back")
                polls = feed.polls
                fake.set_price(SYMBOL, Decimal("30080"))
                await collected.until(lambda t: t[-1].price == Decimal("30080"), "a streamed trade")
                assert feed.polls == polls  # nothing polled with a stream up
    events = [entry["event"] for entry in logs]
    assert events.count("market data: no stream; falling back to REST polling") == 1
    assert events.count("market data: back on streams; REST polling stopped") == 1
    assert collected.trades[-1].trade_id > 0  # a real trade id once on streams
    assert feed.state()["fell_back_at"] is not None


async def test_a_server_shutdown_notice_makes_the_feed_reconnect(
    fake: FakeBinance, streams: MarketStreamServer
) -> None:
    async with running_feed(streams.url, timings=StreamTimings(silence_s=5.0, standby=False)) as (
        _,
        collected,
    ):
        await guarded(streams.wait_for_clients(1), "the connection")
        streams.shutdown_notice()
        await guarded(streams.wait_for_clients(1, opened=2), "a new connection after the notice")
        fake.set_price(SYMBOL, Decimal("30090"))
        await collected.until(lambda t: len(t) == 1, "a trade on the new connection")
