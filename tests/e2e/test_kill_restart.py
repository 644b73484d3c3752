"""Kill the bot anywhere, start it again: nothing lost, doubled or stranded.

The bot runs as a user runs it (`python -m bootstrap run`, a real subprocess, real files) and is
SIGKILLed at the crash points of `adapters.crashpoints`: between deciding on an order and sending
it, between sending it and recording the answer, while a batch of fills is being booked, and (on
the default profile) half way through the simulated exchange's own write. It is started again
after each kill, and at the end the price is made to rest: then the books must match the venue's
own records to the last digit and the ladder must be whole (see books.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from adapters.simulated.state_store import read_book
from support.binance_server import FakeBinance, running_fake_binance
from support.binance_server.price_path import ZigZag, drive

from .books import check_books_match_venue, check_ladder_whole, read_books
from .conftest import HANG_GUARD_S, Cli

pytestmark = pytest.mark.slow

KILLED = -9  # the process died of SIGKILL: the crash point was reached


async def killed_at(cli: Cli, spec: str, *args: str, extra_env: dict[str, str]) -> None:
    """Run the bot until GRIDBOT_CRASH_AT=`spec` kills it."""
    code, _, err = await cli.arun(*args, "run", extra_env={**extra_env, "GRIDBOT_CRASH_AT": spec})
    assert code == KILLED, f"the bot was not killed at {spec} (exit {code}):\n{err[-3000:]}"
    assert "Traceback" not in err


async def rests_and_stops(cli: Cli, *args: str, extra_env: dict[str, str]) -> None:
    """A start after the last kill, the price at rest: reconcile, then a clean Ctrl-C."""
    async with cli.bot(*args, "run", extra_env=extra_env) as bot:
        resumed = await bot.until(lambda e: e["event"] in ("reconciled", "grid started"))
        assert resumed["event"] == "reconciled", "the grid was resumed, not started again"
        assert await bot.stop() == 0
    assert not [line for line in bot.other_lines if "Traceback" in line], bot.tail()


# --------------------------------------------------------------------------- default profile
FAST_MARKET = {"SIMULATOR__STEP_INTERVAL_S": "0.01", "SIMULATOR__VOLATILITY": "0.003"}
AT_REST = {"SIMULATOR__VOLATILITY": "0", "SIMULATOR__REVERSION": "0"}
# The ladder is 15 orders and a market buy: a 20th send is a counter-order.
DEFAULT_KILLS = (
    "before_send:20",
    "after_send:6",
    "booking_fills:3",
    "sim_write:40",
    "booking_fills:2,before_send:4",
)


async def test_default_profile_killed_anywhere_comes_back_whole(cli: Cli) -> None:
    for spec in DEFAULT_KILLS:
        await killed_at(cli, spec, extra_env=FAST_MARKET)
        venue = read_book(cli.workdir / "var" / "simulated-exchange.sqlite3", "BTC/USDT")
        assert venue is not None  # the state file is whole after every kill
    await rests_and_stops(cli, extra_env=AT_REST)
    venue = read_book(cli.workdir / "var" / "simulated-exchange.sqlite3", "BTC/USDT")
    assert venue is not None
    books = read_books(cli.workdir / "var" / "gridbot.sqlite3")
    assert len(books.fills) >= 10, "the scenario needs fills to mean anything"
    check_books_match_venue(books, venue, {"USDT": Decimal("10000"), "BTC": Decimal("0")})
    check_ladder_whole(books, venue, levels=16)


# --------------------------------------------------------------------------- testnet profile
TESTNET = ("--config", "config/testnet.toml")
START = Decimal("30000.00")
LOWER, UPPER, LEVELS = 29000, 31000, 11
TURNS = (Decimal("29650.00"), Decimal("30350.00"), Decimal("29750.00"), Decimal("30250.00"))
TESTNET_KILLS = ("before_send:14", "after_send:3", "booking_fills:2", "before_send:2", "after_send:2")


@pytest.fixture
async def server() -> AsyncIterator[FakeBinance]:
    async with running_fake_binance(prices={"BTC/USDT": START}) as fake:
        yield fake


async def test_testnet_profile_killed_anywhere_comes_back_whole(cli: Cli, server: FakeBinance) -> None:
    env = {
        "EXCHANGE__REST_URL": server.base_url,
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__POLL_INTERVAL_S": "0.2",
        "GRID__LOWER": str(LOWER),
        "GRID__UPPER": str(UPPER),
        "GRID__LEVELS": str(LEVELS),
        "GRID__INVESTMENT": "500",
    }
    path = ZigZag(START, TURNS * 50, speed=Decimal("400"), tick_s=0.05)
    market = asyncio.create_task(drive(server, "BTC/USDT", path.prices(), tick_s=path.tick_s))
    try:
        for spec in TESTNET_KILLS:
            await killed_at(cli, spec, *TESTNET, extra_env=env)
    finally:
        market.cancel()
        await asyncio.gather(market, return_exceptions=True)
    await asyncio.wait_for(rests_and_stops(cli, *TESTNET, extra_env=env), HANG_GUARD_S)
    books = read_books(cli.workdir / "var" / "gridbot-testnet.sqlite3")
    venue = server.book("BTC/USDT").engine
    assert len(books.fills) >= 5, "the scenario needs fills to mean anything"
    check_books_match_venue(books, venue, {"USDT": Decimal("10000"), "BTC": Decimal("1")})
    check_ladder_whole(books, venue, levels=LEVELS)
