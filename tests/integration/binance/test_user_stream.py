"""The order-update adapter over real WebSockets on loopback: `BinanceUserStream` against the
stand-in's WebSocket API, with the real ccxt gateway against the REST stand-in for its catch-up.
Both are driven by the same matching engines: an order placed over REST and crossed by
`set_price` is a TRADE executionReport on the stream and a row of myTrades.

Real sockets must be waited on, so these tests run on the system clock; every wait is on an
event (a fill arriving, a connection opening) under a generous hang guard, and nothing asserts
how long anything took."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.binance import BinanceConfig, BinanceGateway, open_binance_gateway
from adapters.binance.user_stream import BinanceUserStream, Credentials, UserStreamTimings
from adapters.clock import SystemClock
from domain.models import Fill, OrderRequest, OrderType, Side
from support.binance_server import FakeBinance
from support.binance_server.ws_api import UserDataServer, running_user_data_server

from .sockets import HANG_GUARD_S, guarded, wait_until

SYMBOL = "BTC/USDT"

FAST = UserStreamTimings(
    answer_timeout_s=1.0,
    quiet_s=0.5,
    fallback_after_s=0.5,
    backoff_initial_s=0.05,
    backoff_max_s=0.2,
    open_timeout_s=2.0,
)


@pytest.fixture
async def ws_api(fake: FakeBinance) -> AsyncIterator[UserDataServer]:
    async with running_user_data_server(fake) as server:
        yield server


@pytest.fixture
async def gateway(fake: FakeBinance) -> AsyncIterator[BinanceGateway]:
    config = BinanceConfig(api_key=fake.api_key, api_secret=fake.api_secret, rest_url=fake.base_url)
    async with open_binance_gateway(config, SystemClock()) as opened:
        yield opened


class Collected:
    """What the feed hands out, followed from a background task."""

    def __init__(self, feed: BinanceUserStream) -> None:
        self.fills: list[Fill] = []
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._collect(feed))

    async def _collect(self, feed: BinanceUserStream) -> None:
        async for fill in feed.fills(SYMBOL):
            self.fills.append(fill)
            self._arrived.set()

    @property
    def ids(self) -> list[str]:
        return [fill.trade_id for fill in self.fills]

    async def until(self, count: int, what: str) -> None:
        async def wait() -> None:
            while len(self.fills) < count:
                self._arrived.clear()
                await self._arrived.wait()

        await guarded(wait(), what)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@asynccontextmanager
async def running_feed(
    url: str, gateway: BinanceGateway, *, secret: str = "test-api-secret", **kwargs: Any
) -> AsyncIterator[tuple[BinanceUserStream, Collected]]:
    kwargs.setdefault("timings", FAST)
    feed = BinanceUserStream(
        url,
        SYMBOL,
        Credentials("test-api-key", secret),
        SystemClock(),
        fetch_trades=partial(gateway.fetch_my_trades, SYMBOL),
        venue_time_ms=gateway.venue_time_ms,
        on_clock_skew=gateway.resync_time,
        poll_interval_s=kwargs.pop("poll_interval_s", 0.2),
        **kwargs,
    )
    collected = Collected(feed)
    task = asyncio.create_task(feed.run())
    try:
        yield feed, collected
    finally:
        feed.close()
        await collected.stop()
        await guarded(task, "the feed's shutdown")


_orders = itertools.count(1)


async def buy(gateway: BinanceGateway, price: str, amount: str = "0.001") -> None:
    await gateway.place_order(
        OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal(amount), f"t-{next(_orders)}", Decimal(price))
    )


async def venue_trade_ids(gateway: BinanceGateway) -> list[str]:
    return [fill.trade_id for fill in await gateway.fetch_my_trades(SYMBOL, "0")]


async def test_fills_arrive_on_the_stream_exactly_as_rest_books_them(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway) as (feed, collected):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        await wait_until(lambda: feed.catch_ups >= 1, "the first catch-up")
        await buy(gateway, "29900")
        await buy(gateway, "29800", "0.002")
        fake.set_price(SYMBOL, Decimal("29700"))
        await collected.until(2, "two fills")
        assert feed.mode == "stream"
        assert (feed.ledger.streamed, feed.ledger.caught_up) == (2, 0)  # nothing polled
    # what the stream said is what the venue's trade list says, field for field
    assert collected.fills == list(await gateway.fetch_my_trades(SYMBOL, "0"))
    assert [f.price for f in collected.fills] == [Decimal("29900"), Decimal("29800")]
    assert [f.amount for f in collected.fills] == [Decimal("0.001"), Decimal("0.002")]


async def test_fills_made_while_disconnected_are_caught_up_exactly_once(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway, timings=FAST, poll_interval_s=30.0) as (feed, collected):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        await buy(gateway, "29900")
        fake.set_price(SYMBOL, Decimal("29890"))
        await collected.until(1, "the first fill, on the stream")
        ws_api.refusing = True
        ws_api.drop()
        await wait_until(lambda: feed.mode != "stream", "the drop noticed")
        await buy(gateway, "29800")
        await buy(gateway, "29700")
        fake.set_price(SYMBOL, Decimal("29600"))  # both fill while nobody listens
        ws_api.refusing = False
        await guarded(ws_api.wait_for_subscriptions(1, opened=2), "the resubscription")
        await collected.until(3, "the missed fills")
        await buy(gateway, "29500")
        fake.set_price(SYMBOL, Decimal("29400"))
        await collected.until(4, "a fill after the reconnect")
        assert feed.mode == "stream" and feed.reconnects >= 1
    assert sorted(collected.ids, key=int) == await venue_trade_ids(gateway)
    assert len(set(collected.ids)) == 4  # each once, though catch-ups fetched the first again


async def test_fills_held_back_and_delivered_reversed_go_out_once_each(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway) as (feed, collected):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        await wait_until(lambda: feed.catch_ups >= 1, "the first catch-up")
        ws_api.hold()
        for price in ("29900", "29800", "29700"):
            await buy(gateway, price)
        fake.set_price(SYMBOL, Decimal("29600"))
        assert ws_api.release(reverse=True) > 0
        await collected.until(3, "three fills, reversed")
        ws_api.drop()  # and a catch-up after the reconnect brings them all again
        await guarded(ws_api.wait_for_subscriptions(1, opened=2), "the resubscription")
        await wait_until(lambda: feed.catch_ups >= 2, "the catch-up after the drop")
    assert collected.ids == list(reversed(await venue_trade_ids(gateway)))  # as delivered, once each
    assert feed.ledger.duplicates >= 3


async def test_a_malformed_message_is_skipped_and_the_stream_goes_on(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway) as (feed, collected):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        ws_api.send_raw("{garbage")
        ws_api.send_raw(json.dumps({"subscriptionId": 0, "event": {"e": "executionReport", "x": "TRADE"}}))
        await buy(gateway, "29900")
        fake.set_price(SYMBOL, Decimal("29800"))
        await collected.until(1, "a fill after the garbage")
        assert feed.malformed == 2
        assert len(ws_api.clients) == 1  # the same connection throughout


async def test_the_servers_pings_are_answered_with_their_payload(
    ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway):
        [client] = await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        assert await ws_api.ping(client, b"1700000000000", within=HANG_GUARD_S)
        assert client.pongs == [b"1700000000000"]


async def test_a_stalled_connection_is_noticed_and_replaced(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway) as (feed, collected):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        ws_api.stall()  # open, answering WebSocket pings, but silent: our ping request goes unanswered
        await guarded(ws_api.wait_for_subscriptions(1, opened=2), "a fresh subscription")
        assert feed.last_drop == "no answer to a ping within 1 s"
        await buy(gateway, "29900")
        fake.set_price(SYMBOL, Decimal("29800"))
        await collected.until(1, "a fill on the new connection")
        assert len(ws_api.clients) == 2


async def test_the_shutdown_notice_leads_to_a_prompt_reconnect(
    ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway) as (feed, _):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription")
        ws_api.shutdown_notice()
        await guarded(ws_api.wait_for_subscriptions(1, opened=2), "a fresh subscription")
        await wait_until(lambda: feed.mode == "stream", "the stream back")
        assert feed.reconnects == 1


async def test_a_refused_subscription_falls_back_to_rest_polling_and_says_why(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    async with running_feed(ws_api.url, gateway, secret="not-the-secret") as (feed, collected):
        await wait_until(lambda: feed.mode == "rest_polling", "the fallback")
        assert "-1022" in str(feed.last_error)  # the signature was refused
        await buy(gateway, "29900")
        fake.set_price(SYMBOL, Decimal("29800"))
        await collected.until(1, "a fill found by polling")
        assert feed.state()["mode"] == "rest_polling" and feed.state()["fell_back_at"] is not None
    assert ws_api.active_subscriptions() == 0


async def test_a_clock_behind_the_venue_is_measured_again_and_the_subscription_succeeds(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    fake.time_offset_ms = 30_000  # the venue's clock runs 30 s ahead of the gateway's last measure
    async with running_feed(ws_api.url, gateway) as (feed, _):
        await guarded(ws_api.wait_for_subscriptions(1), "a subscription after the resync")
        assert "-1021" in str(feed.last_drop)  # the first attempt was refused, then the clock measured


async def test_no_server_at_all_means_rest_polling_and_the_stream_takes_over_when_it_comes(
    fake: FakeBinance, gateway: BinanceGateway
) -> None:
    server = UserDataServer(fake)
    await server.start()
    url = server.url
    port = int(url.split(":")[2].split("/")[0])
    await server.stop()  # the port is closed: connections are refused
    async with running_feed(url, gateway) as (feed, collected):
        await wait_until(lambda: feed.mode == "rest_polling", "the fallback")
        await buy(gateway, "29900")
        fake.set_price(SYMBOL, Decimal("29800"))
        await collected.until(1, "a fill found by polling")
        assert feed.ledger.caught_up == 1 and feed.ledger.at_start == 0  # the first poll found none
        late = UserDataServer(fake)
        await late.start(port=port)
        try:
            await guarded(late.wait_for_subscriptions(1), "the subscription once a server listens")
            await wait_until(lambda: feed.mode == "stream", "the stream taking over")
            polls = feed.polls
            await buy(gateway, "29700")
            fake.set_price(SYMBOL, Decimal("29600"))
            await collected.until(2, "a fill on the stream")
            assert feed.ledger.streamed == 1 and feed.polls == polls  # polling stopped
        finally:
            await late.stop()
    assert collected.ids == await venue_trade_ids(gateway)


async def test_the_connection_is_renewed_on_plan_before_the_venues_24_hour_limit(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    timings = UserStreamTimings(
        answer_timeout_s=1.0, quiet_s=0.5, max_age_s=0.3, fallback_after_s=5.0, open_timeout_s=2.0
    )
    async with running_feed(ws_api.url, gateway, timings=timings) as (feed, collected):
        await guarded(ws_api.wait_for_subscriptions(1, opened=3), "two planned renewals")
        assert feed.last_drop == "planned reconnect after 0.3 s"
        await wait_until(lambda: feed.mode == "stream", "the stream back")
        await buy(gateway, "29900")
        fake.set_price(SYMBOL, Decimal("29800"))
        await collected.until(1, "a fill after the renewals")
        assert feed.fell_back_at is None  # renewed at once, never fell back to polling


async def test_a_url_that_is_no_websocket_api_says_so_once_and_fills_are_polled(
    fake: FakeBinance, ws_api: UserDataServer, gateway: BinanceGateway
) -> None:
    wrong = ws_api.url.replace("/ws-api/v3", "/ws-api/v9")
    with capture_logs() as logs:
        async with running_feed(wrong, gateway) as (feed, collected):
            await wait_until(lambda: feed.reconnects >= 3, "a few attempts")
            await buy(gateway, "29900")
            fake.set_price(SYMBOL, Decimal("29800"))
            await collected.until(1, "a fill found by polling")
    hints = [e for e in logs if e["log_level"] == "error"]
    assert [(e["event"].split(":")[0], e["reason"]) for e in hints] == [
        ("order updates", "handshake refused: HTTP 404")
    ]
    assert "WebSocket API URL" in hints[0]["event"] and hints[0]["url"] == wrong
    assert feed.state()["last_error"] == "handshake refused: HTTP 404"
