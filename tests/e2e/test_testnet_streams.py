"""The testnet profile with its market data over the loopback server's WebSocket streams
(EXCHANGE__WS_URL) and fills over its WebSocket API (EXCHANGE__WS_API_URL): prices arrive as
trades, and with a stream up no ticker is polled; `status` tells which feeds are live. The server
drops the bot's connections now and then; the standby carries the market meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from support.binance_server import FakeBinance, running_fake_binance
from support.binance_server.streams import MarketStreamServer, running_market_streams
from support.binance_server.ws_api import UserDataServer, running_user_data_server

from .conftest import HANG_GUARD_S, Cli

SYMBOL = "BTC/USDT"
GRID = {"GRID__LOWER": "28000", "GRID__UPPER": "32000", "GRID__LEVELS": "9", "GRID__INVESTMENT": "500"}


@pytest.fixture
async def venue() -> AsyncIterator[tuple[FakeBinance, MarketStreamServer, UserDataServer]]:
    async with (
        running_fake_binance() as fake,
        running_market_streams(fake) as streams,
        running_user_data_server(fake) as ws_api,
    ):
        yield fake, streams, ws_api


async def test_prices_come_over_the_streams_and_no_ticker_is_polled(
    cli: Cli, venue: tuple[FakeBinance, MarketStreamServer, UserDataServer]
) -> None:
    fake, streams, ws_api = venue
    env = {
        "EXCHANGE__REST_URL": fake.base_url,
        "EXCHANGE__WS_URL": streams.url + "/ws",  # a URL copied from the docs works too
        "EXCHANGE__WS_API_URL": ws_api.url,
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__POLL_INTERVAL_S": "0.2",
        **GRID,
    }
    async with cli.bot("--config", "config/testnet.toml", "run", extra_env=env) as bot:
        placed: list[dict[str, Any]] = []
        await bot.until(
            lambda e: e["event"] == "order placed" and placed.append(e) is None and len(placed) == 9
        )
        first, _ = await asyncio.wait_for(streams.wait_for_clients(2), HANG_GUARD_S)
        polled_at_start = len(fake.requests_to("ticker/24hr"))
        buys = sorted(Decimal(e["price"]) for e in placed if e["side"] == "buy" and e["price"] != "market")
        streams.drop([first])  # the standby carries the next move
        fake.set_price(SYMBOL, buys[-1])
        await bot.until(
            lambda e: e["event"] == "fill" and e["side"] == "buy" and Decimal(e["price"]) == buys[-1]
        )
        await bot.until(lambda e: e["event"] == "order placed" and e["side"] == "sell")
        await asyncio.wait_for(streams.wait_for_clients(2, opened=3), HANG_GUARD_S)  # the dropped one is back
        running = await cli.astatus("--config", "config/testnet.toml", extra_env=env)
        code = await bot.stop()
    assert code == 0, bot.tail()
    assert len(fake.requests_to("ticker/24hr")) == polled_at_start  # streams up: no ticker polled
    assert all(client.path == "/stream" for client in streams.clients)
    assert "market data: no stream; falling back to REST polling" not in bot.names()
    feeds = running["run"]["feeds"]  # what `status` says of a running bot's feeds
    assert feeds["market_data"]["mode"] == "streams" and feeds["market_data"]["last_message_at"]
    assert feeds["order_updates"]["mode"] == "stream" and feeds["order_updates"]["last_error"] is None
    assert feeds["noted_at"]
