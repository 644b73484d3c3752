"""The paper profile end to end: `python -m bootstrap --config config/paper.toml run` as a
subprocess against the loopback Binance stand-in: market rules from its REST `exchangeInfo`,
prices from its WebSocket trade stream, fills from the simulated exchange's engine. A key is in
the environment, as a user's `.env` may hold one; paper never sends it nor signs anything.

The stand-in runs in the test's own event loop; the test follows the bot by its JSON log lines
(no wall-clock sleeps, no wall-clock assertions)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from support.binance_server import FakeBinance, running_fake_binance
from support.binance_server.streams import MarketStreamServer, running_market_streams

from .conftest import HANG_GUARD_S, Cli

SYMBOL = "BTC/USDT"
GRID = {"GRID__LOWER": "28000", "GRID__UPPER": "32000", "GRID__LEVELS": "9", "GRID__INVESTMENT": "500"}


@pytest.fixture
async def venue() -> AsyncIterator[tuple[FakeBinance, MarketStreamServer]]:
    async with running_fake_binance() as fake, running_market_streams(fake) as streams:
        yield fake, streams


def env_for(fake: FakeBinance, streams: MarketStreamServer) -> dict[str, str]:
    return {
        "EXCHANGE__REST_URL": fake.base_url,
        "EXCHANGE__WS_URL": streams.url,
        "EXCHANGE__API_KEY": "a-key-paper-must-never-send",
        "EXCHANGE__API_SECRET": "a-secret-paper-must-never-use",
        **GRID,
    }


async def test_paper_trades_live_prices_on_the_engine_and_never_signs(
    cli: Cli, venue: tuple[FakeBinance, MarketStreamServer]
) -> None:
    fake, streams = venue
    env = env_for(fake, streams)
    async with cli.bot("--config", "config/paper.toml", "run", "--health-port", "0", extra_env=env) as bot:
        # the bot's primary and standby connections
        await asyncio.wait_for(streams.wait_for_clients(2), HANG_GUARD_S)
        fake.set_price(SYMBOL, Decimal("30000.00"))  # a trade at the price the book started from
        placed: list[dict[str, Any]] = []
        await bot.until(
            lambda e: e["event"] == "order placed" and placed.append(e) is None and len(placed) == 9
        )
        buys = sorted(Decimal(e["price"]) for e in placed if e["side"] == "buy" and e["price"] != "market")
        fake.set_price(SYMBOL, buys[-1])  # a trade at the nearest buy: the engine fills it
        await bot.until(
            lambda e: e["event"] == "fill" and e["side"] == "buy" and Decimal(e["price"]) == buys[-1]
        )
        counter = await bot.until(lambda e: e["event"] == "order placed" and e["side"] == "sell")
        sell_price = Decimal(counter["price"])
        assert sell_price > buys[-1]
        fake.set_price(SYMBOL, sell_price)  # and back up: the counter-sell fills, a cycle completes
        await bot.until(
            lambda e: e["event"] == "fill" and e["side"] == "sell" and Decimal(e["price"]) == sell_price
        )
        await bot.until(lambda e: e["event"] == "order placed" and e["side"] == "buy")
        listening = next(e for e in bot.events if e["event"] == "health endpoint listening")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{listening['port']}/health") as response,
        ):
            health = await response.json()
        code = await bot.stop()
    assert code == 0, bot.tail()
    assert health["exchange"] == "paper"
    assert health["market_data"]["mode"] == "streams"  # which feed is live
    assert health["market_data"]["connections_up"] == 2
    assert health["market_data"]["last_message_at"] is not None  # when it last spoke
    assert health["market_data"]["fell_back_at"] is None

    status = await cli.astatus("--config", "config/paper.toml", extra_env=env)
    assert status["run"]["exchange"] == "paper"
    assert status["run"]["status"] == "stopped"
    assert status["fills"] == 3  # the start purchase, the grid buy, its counter-sell
    assert status["completed_cycles"] == 1
    assert Decimal(status["realized_pnl"]) > 0
    assert len(status["open_orders"]) == 8  # 9 levels, one empty
    assert Decimal(status["last_price"]) == sell_price

    # Only public, unsigned market data reached the venue: no key, no signature, no order.
    assert fake.requests, "paper read the market rules from the stand-in"
    for request in fake.requests:
        assert request.method == "GET"
        assert request.path in {"/api/v3/exchangeInfo", "/api/v3/ticker/24hr"}, request.path
        assert "signature" not in request.params
        assert "X-MBX-APIKEY" not in {name.upper() for name in request.headers}
    assert fake.book(SYMBOL).engine.open_orders() == []  # nothing was placed on the venue


async def test_paper_falls_back_to_rest_prices_when_no_stream_can_be_had(
    cli: Cli, venue: tuple[FakeBinance, MarketStreamServer]
) -> None:
    fake, streams = venue
    streams.refusing = True
    fake.set_price(SYMBOL, Decimal("30000.00"))
    env = {**env_for(fake, streams), "EXCHANGE__POLL_INTERVAL_S": "1"}
    async with cli.bot("--config", "config/paper.toml", "run", extra_env=env) as bot:
        await bot.until(lambda e: e["event"] == "market data: no stream; falling back to REST polling")
        placed: list[dict[str, Any]] = []
        await bot.until(
            lambda e: e["event"] == "order placed" and placed.append(e) is None and len(placed) == 9
        )
        streams.refusing = False
        await bot.until(lambda e: e["event"] == "market data: back on streams; REST polling stopped")
        code = await bot.stop()
    assert code == 0, bot.tail()
    assert fake.requests_to("ticker/24hr"), "prices were polled while no stream was up"
    assert all("signature" not in request.params for request in fake.requests)


async def test_a_paper_trade_fills_on_the_engine_at_the_public_price(
    cli: Cli, venue: tuple[FakeBinance, MarketStreamServer]
) -> None:
    fake, streams = venue
    fake.set_price(SYMBOL, Decimal("30123.45"))
    code, out, err = await cli.arun(
        "--config",
        "config/paper.toml",
        "trade",
        "--side",
        "buy",
        "--amount",
        "0.001",
        "--json",
        extra_env=env_for(fake, streams),
    )
    assert code == 0, err
    printed = json.loads(out)
    assert printed["status"] == "filled"
    assert Decimal(printed["average_price"]) == Decimal("30123.45")  # the engine took the public price
    assert fake.book(SYMBOL).engine.open_orders() == [] and fake.book(SYMBOL).engine.trades() == []
    assert {request.path for request in fake.requests} <= {"/api/v3/exchangeInfo", "/api/v3/ticker/24hr"}
    assert all("signature" not in request.params for request in fake.requests)
