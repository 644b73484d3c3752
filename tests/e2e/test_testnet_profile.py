"""The testnet profile end to end: `python -m bootstrap --config config/testnet.toml ...` as a
subprocess, with EXCHANGE__REST_URL pointing at the Binance-compatible server on 127.0.0.1.

The server runs in the test's own event loop, so the CLI runs through asyncio's subprocess API and
the test follows the bot by its JSON log lines (no wall-clock sleeps, no wall-clock assertions)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from support.binance_server import FakeBinance, running_fake_binance

from .conftest import Cli

GRID = {"GRID__LOWER": "28000", "GRID__UPPER": "32000", "GRID__LEVELS": "9", "GRID__INVESTMENT": "500"}


@pytest.fixture
async def server() -> AsyncIterator[FakeBinance]:
    async with running_fake_binance() as fake:
        yield fake


def env_for(server: FakeBinance) -> dict[str, str]:
    return {
        "EXCHANGE__REST_URL": server.base_url,
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__POLL_INTERVAL_S": "0.2",
        **GRID,
    }


async def run_cli(cli: Cli, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await cli.arun("--config", "config/testnet.toml", *args, extra_env=env)


async def test_trade_places_one_order_prints_it_and_books_it(cli: Cli, server: FakeBinance) -> None:
    code, out, err = await run_cli(
        cli, env_for(server), "trade", "--side", "buy", "--amount", "0.0012345", "--json"
    )
    assert code == 0, err
    printed = json.loads(out)
    assert printed["status"] == "filled"
    assert printed["amount"] == "0.00123"  # snapped down to the step before sending
    assert Decimal(printed["filled"]) == Decimal("0.00123")
    assert Decimal(printed["fee"]) > 0
    assert printed["fee_asset"] == "BTC"
    # what the venue holds agrees, and the order is booked under its client order id
    venue_order = server.book("BTC/USDT").engine.order(client_order_id=printed["client_order_id"])
    assert venue_order.order_id == printed["order_id"]
    db = sqlite3.connect(cli.workdir / "var" / "gridbot-testnet.sqlite3")
    rows = db.execute(
        "SELECT status, exchange_order_id FROM orders WHERE client_order_id = ?",
        (printed["client_order_id"],),
    ).fetchall()
    assert rows == [("filled", printed["order_id"])]


async def test_limit_trade_price_goes_to_the_safe_tick(cli: Cli, server: FakeBinance) -> None:
    code, out, err = await run_cli(
        cli,
        env_for(server),
        "trade",
        "--side",
        "sell",
        "--amount",
        "0.001",
        "--type",
        "limit",
        "--price",
        "31000.123",
        "--json",
    )
    assert code == 0, err
    printed = json.loads(out)
    assert printed["price"] == "31000.13"  # a sell never asks less than the user named
    assert printed["status"] == "open"


async def test_order_under_min_notional_never_leaves_the_machine(cli: Cli, server: FakeBinance) -> None:
    code, _, err = await run_cli(cli, env_for(server), "trade", "--side", "buy", "--amount", "0.0001")
    assert code == 1
    assert "NOTIONAL" in err
    assert "under the minimum 5 USDT" in err
    assert server.requests_to("order", "POST") == []


async def test_venue_rejections_are_reported_in_plain_words(cli: Cli, server: FakeBinance) -> None:
    code, _, err = await run_cli(cli, env_for(server), "trade", "--side", "sell", "--amount", "50")
    assert code == 1  # checked against the free balance before sending
    assert err == "error: order not sent: BALANCE: the order needs 50 BTC, the account has 1 BTC free\n"
    assert server.requests_to("order", "POST") == []
    refusal = {"code": -2010, "msg": "Account has insufficient balance for requested action."}
    server.fail_next("/api/v3/order", status=400, body=refusal, method="POST")  # the venue disagrees
    code, _, err = await run_cli(cli, env_for(server), "trade", "--side", "sell", "--amount", "0.5")
    assert code == 1
    assert "not enough balance" in err
    assert "(code -2010)" in err
    assert "the order needs 0.5 BTC, the account has 1 BTC free" in err
    bad_key = {**env_for(server), "EXCHANGE__API_SECRET": "not-the-secret"}
    code, _, err = await run_cli(cli, bad_key, "trade", "--side", "buy", "--amount", "0.001")
    assert code == 1
    assert "the venue refused the API key" in err
    assert "not-the-secret" not in err
    assert "Traceback" not in err


async def test_grid_runs_on_the_testnet_profile_and_counters_a_fill(cli: Cli, server: FakeBinance) -> None:
    async with cli.bot("--config", "config/testnet.toml", "run", extra_env=env_for(server)) as bot:
        placed: list[dict[str, Any]] = []
        await bot.until(
            lambda e: e["event"] == "order placed" and placed.append(e) is None and len(placed) == 9
        )
        assert len(server.book("BTC/USDT").engine.open_orders()) == 8  # 9 levels, one empty
        buys = sorted(Decimal(e["price"]) for e in placed if e["side"] == "buy" and e["price"] != "market")
        server.set_price("BTC/USDT", buys[-1])  # the nearest buy fills on the venue
        await bot.until(
            lambda e: e["event"] == "fill" and e["side"] == "buy" and Decimal(e["price"]) == buys[-1]
        )
        counter = await bot.until(lambda e: e["event"] == "order placed" and e["side"] == "sell")
        assert Decimal(counter["price"]) > buys[-1]
        code = await bot.stop()
    assert code == 0, bot.tail()
    code, out, err = await run_cli(cli, env_for(server), "status", "--json")
    assert code == 0, err
    status = json.loads(out)
    assert status["run"]["exchange"] == "binance-testnet"
    assert status["run"]["status"] == "stopped"
    assert status["fills"] == 2  # the start purchase and the grid buy
    venue_open = {o.client_order_id for o in server.book("BTC/USDT").engine.open_orders()}
    assert {o["client_order_id"] for o in status["open_orders"]} == venue_open
