"""The answering commands on the testnet profile, against the suite's Binance-compatible server on
127.0.0.1: status and runs need no key; a dry run sends no order; a short balance says how much is
free; an order is cancelled by the exchange's id and booked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from support.binance_server import FakeBinance, running_fake_binance

from .conftest import Cli

TESTNET = ("--config", "config/testnet.toml")
GRID = {"GRID__LOWER": "28000", "GRID__UPPER": "32000", "GRID__LEVELS": "9", "GRID__INVESTMENT": "500"}


@pytest.fixture
async def server() -> AsyncIterator[FakeBinance]:
    async with running_fake_binance() as fake:
        yield fake


def keyed(server: FakeBinance) -> dict[str, str]:
    return {
        "EXCHANGE__REST_URL": server.base_url,
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__POLL_INTERVAL_S": "0.2",
        **GRID,
    }


async def test_status_and_runs_on_the_testnet_profile_need_no_key(cli: Cli, server: FakeBinance) -> None:
    no_key = {"GRID__LOWER": "99000", "GRID__UPPER": "99999"}  # nor a grid around the price
    async with cli.bot(*TESTNET, "run", extra_env=keyed(server)) as bot:
        started = await bot.until(lambda e: e["event"] == "grid started")
        await bot.until(lambda e: e["event"] == "order placed" and e.get("grid_level") == 8)
        code, out, err = await cli.arun(*TESTNET, "status", "--json", extra_env=no_key)
        assert code == 0, err
        assert json.loads(out)["run"]["held_by"]["pid"] == bot.proc.pid  # the one bot on this symbol
        assert await bot.stop() == 0
    requests_before = len(server.requests)
    code, out, err = await cli.arun(*TESTNET, "status", "--json", extra_env=no_key)
    assert code == 0, err
    assert json.loads(out)["run"]["run_id"] == started["run_id"]
    code, out, err = await cli.arun(*TESTNET, "runs", extra_env=no_key)
    assert code == 0 and started["run_id"][:12] in out, err
    assert len(server.requests) == requests_before  # the database only
    code, _, err = await cli.arun(*TESTNET, "stop", extra_env=no_key)  # finding the bot needs the key
    assert code == 2 and err.startswith("error: EXCHANGE__API_KEY: "), err
    assert json.loads((await cli.arun(*TESTNET, "status", "--json", extra_env=no_key))[1])["run"][
        "status"
    ] == ("stopped")


async def test_a_dry_run_sends_no_order_and_a_short_balance_says_what_is_free(
    cli: Cli, server: FakeBinance
) -> None:
    env = keyed(server)
    code, out, err = await cli.arun(
        *TESTNET, "trade", "--side", "buy", "--amount", "0.002", "--dry-run", "--json", extra_env=env
    )
    assert code == 0, err
    plan = json.loads(out)
    assert plan["dry_run"] is True and plan["amount"] == "0.002"
    free = Decimal(plan["available"].split()[0])
    assert server.requests_to("/api/v3/order", "POST") == []
    code, out, err = await cli.arun(*TESTNET, "trade", "--side", "buy", "--amount", "1", extra_env=env)
    assert code == 1 and out == ""
    [line] = err.splitlines()
    assert line.startswith("error: order not sent: BALANCE: the order needs ")
    assert line.endswith(f", the account has {free.normalize():f} USDT free")
    assert server.requests_to("/api/v3/order", "POST") == []


async def test_cancel_by_the_exchanges_order_id_cancels_on_the_venue_and_books_it(
    cli: Cli, server: FakeBinance
) -> None:
    env = keyed(server)
    code, out, err = await cli.arun(
        *TESTNET,
        "trade",
        "--side",
        "buy",
        "--amount",
        "0.001",
        "--type",
        "limit",
        "--price",
        "20000",
        "--json",
        extra_env=env,
    )
    assert code == 0, err
    placed = json.loads(out)
    code, out, err = await cli.arun(*TESTNET, "cancel", placed["order_id"], "--json", extra_env=env)
    assert code == 0, err
    assert json.loads(out)["status"] == "canceled"
    on_venue = server.book("BTC/USDT").engine.order(client_order_id=placed["client_order_id"])
    assert on_venue.status.value == "canceled"
    code, out, _ = await cli.arun(*TESTNET, "status", "--manual", "--json", extra_env=env)
    [manual] = json.loads(out)
    assert (manual["client_order_id"], manual["status"]) == (placed["client_order_id"], "canceled")
