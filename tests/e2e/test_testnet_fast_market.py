"""The testnet profile in a fast market: the loopback Binance server walks its price in a zig-zag
that crosses a grid level about every half second, while the bot polls every 2 s (the profile's
default), so several levels fill between two looks at the venue. Whatever the order in which the
bot learns of them, the grid must stay a grid.

The checks read the venue's own records (the server's matching engine: every order it was sent and
every trade) and `status --json`; the bot's log is only used to know when it is done, and for the
'counter-order skipped' warning. Nothing here depends on how fast the bot is: the market moves for a
fixed number of ticks, then the test waits (under a hang guard) until the bot has booked every trade
the venue made and come back for more, then stops it with Ctrl-C."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from support.binance_server import FakeBinance, SymbolSpec, running_fake_binance
from support.binance_server.price_path import ZigZag, drive
from support.binance_server.streams import MarketStreamServer, running_market_streams
from support.binance_server.ws_api import UserDataServer, running_user_data_server

from .conftest import HANG_GUARD_S, BotProcess, Cli

SYMBOL = "BTC/USDT"
LOWER, UPPER, LEVELS = 29000, 31000, 21  # geometric (the profile's spacing): levels ~100 USDT apart
GRID = {
    "GRID__LOWER": str(LOWER),
    "GRID__UPPER": str(UPPER),
    "GRID__LEVELS": str(LEVELS),
    "GRID__INVESTMENT": "500",
}
START_PRICE = Decimal("30000.00")
STEP = SymbolSpec().step_size


def level_price(index: float) -> Decimal:
    """Where level `index` of the geometric ladder lies (a half index is between two levels)."""
    return Decimal(str(round(LOWER * (UPPER / LOWER) ** (index / (LEVELS - 1)), 2)))


# Legs of 2 to 8 levels between turning points half-way between levels, inside a 3 % band (the
# bot's "volatile" threshold), at 200 USDT/s: a level crossed every ~0.5 s, a price every 0.1 s.
TURNS = tuple(level_price(i) for i in (7.5, 13.5, 8.5, 14.5, 6.5, 12.5, 9.5, 13.5, 7.5, 11.5))
PATH = ZigZag(START_PRICE, TURNS, speed=Decimal("200"), tick_s=0.1)
MARKET_TICKS = 200  # 20 s of market: ~40 level crossings
MIN_GRID_FILLS = 10  # the scenario is vacuous below this

CLIENT_ID = re.compile(r"^gb-(?P<run>[0-9a-f]+)-(?:L(?P<level>\d{3})|M)-(?P<seq>\d{5})$")


def env_for(server: FakeBinance) -> dict[str, str]:
    return {
        "EXCHANGE__REST_URL": server.base_url,
        "EXCHANGE__API_KEY": "test-api-key",
        "EXCHANGE__API_SECRET": "test-api-secret",
        "EXCHANGE__POLL_INTERVAL_S": "2",
        **GRID,
    }


@pytest.fixture
async def server() -> AsyncIterator[FakeBinance]:
    async with running_fake_binance(prices={SYMBOL: START_PRICE}) as fake:
        yield fake


@dataclass(frozen=True, slots=True)
class GridOrder:
    """An order of the grid as the venue holds it."""

    order_id: str
    client_order_id: str
    level: int
    side: str
    amount: Decimal
    status: str
    created_at: datetime
    filled_at: datetime | None  # its last trade

    def __str__(self) -> str:
        return f"{self.client_order_id} ({self.side} L{self.level}, {self.amount}, {self.status})"


def grid_level(client_order_id: str) -> int | None:
    """The ladder level in a grid client order id (gb-<run>-L003-00001 -> 3); None otherwise."""
    match = CLIENT_ID.match(client_order_id)
    if match is None or match["level"] is None:
        return None
    return int(match["level"])


def venue_grid_orders(server: FakeBinance) -> list[GridOrder]:
    book = server.book(SYMBOL)
    last_trade: dict[str, datetime] = {}
    for fill in book.engine.trades():
        last_trade[fill.order_id] = fill.timestamp
    orders = []
    for order in book.orders():
        level = grid_level(order.client_order_id)
        if level is None:
            continue
        orders.append(
            GridOrder(
                order.order_id,
                order.client_order_id,
                level,
                order.side.value,
                order.amount,
                order.status.value,
                order.created_at,
                last_trade.get(order.order_id),
            )
        )
    return orders


def open_orders_by_level(server: FakeBinance) -> dict[int, list[str]]:
    by_level: dict[int, list[str]] = defaultdict(list)
    for order in server.book(SYMBOL).engine.open_orders():
        level = grid_level(order.client_order_id)
        if level is not None:
            by_level[level].append(order.client_order_id)
    return by_level


def crowded_levels(server: FakeBinance) -> dict[int, list[str]]:
    return {level: ids for level, ids in open_orders_by_level(server).items() if len(ids) > 1}


async def wait_until(
    condition: Callable[[], bool], bot: BotProcess, what: str, guard_s: float = HANG_GUARD_S
) -> bool:
    """Wait for a condition on the venue's state; False if the bot exits or the hang guard runs
    out first (the caller reports what it found either way)."""

    async def poll() -> None:
        while not condition():
            if bot.proc.returncode is not None:
                raise AssertionError(f"the bot exited while waiting for {what}; last output:{bot.tail()}")
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), guard_s)
    except TimeoutError:
        return False
    return True


async def settle(server: FakeBinance, bot: BotProcess) -> bool:
    """Wait until the bot has booked every trade the venue made and has asked the venue for
    trades again since (so every fill's decision, counter-order included, is over: the feed asks
    for more only when the bot is done with the previous batch). False if it never gets there."""
    engine = server.book(SYMBOL).engine

    def booked_all() -> bool:
        return bot.names().count("fill") >= len(engine.trades())

    while True:
        if not await wait_until(booked_all, bot, "the bot to book every venue trade"):
            return False
        mark, trades = len(server.requests), len(engine.trades())

        def polled_again(mark: int = mark, trades: int = trades) -> bool:
            asked = any(  # the fill feed's poll, not an order's own trades (orderId)
                r.path.endswith("/myTrades") and "orderId" not in r.params for r in server.requests[mark:]
            )
            return asked or len(engine.trades()) != trades

        if not await wait_until(polled_again, bot, "the bot to poll its trades again"):
            return False
        if booked_all() and len(engine.trades()) == trades:
            return True


def match_counters(
    orders: list[GridOrder], initial_ids: set[str]
) -> tuple[list[tuple[GridOrder, GridOrder | None]], list[GridOrder]]:
    """Pair every filled grid order with its counter-order by the timeline: the earliest order of
    the opposite side one level on (up after a buy, down after a sell), placed after the fill and
    not yet taken. Returns (filled order, counter or None) for every fill that needs one, and the
    orders placed after the start that no fill accounts for."""
    counters = [o for o in orders if o.order_id not in initial_ids]
    taken: set[str] = set()
    pairs: list[tuple[GridOrder, GridOrder | None]] = []
    filled = sorted((o for o in orders if o.status == "filled"), key=lambda o: (o.filled_at, int(o.order_id)))
    for parent in filled:
        assert parent.filled_at is not None
        target = parent.level + 1 if parent.side == "buy" else parent.level - 1
        if not 0 <= target < LEVELS:
            continue  # the ends of the ladder have no level beyond
        side = "sell" if parent.side == "buy" else "buy"
        child = next(
            (
                c
                for c in sorted(counters, key=lambda c: int(c.order_id))
                if c.order_id not in taken
                and c.level == target
                and c.side == side
                and c.created_at >= parent.filled_at
            ),
            None,
        )
        if child is not None:
            taken.add(child.order_id)
        pairs.append((parent, child))
    orphans = [c for c in counters if c.order_id not in taken]
    return pairs, orphans


def _some(items: Iterable[Any], count: int = 6) -> str:
    shown = [str(item) for item in itertools.islice(items, count + 1)]
    more = "" if len(shown) <= count else ", ..."
    return "; ".join(shown[:count]) + more


async def test_fast_market_every_fill_gets_exactly_one_counter_and_status_matches_the_venue(
    cli: Cli, server: FakeBinance
) -> None:
    """Fills by REST polling (no WebSocket server): several levels fill between two polls."""
    env = {**env_for(server), "EXCHANGE__WS_API_URL": "ws://127.0.0.1:9/ws-api/v3"}  # nothing listens
    problems = await fast_market(cli, server, env, settle=settle)
    assert_no_problems(problems)


async def test_fast_market_over_websockets_dropped_every_few_seconds(cli: Cli, server: FakeBinance) -> None:
    """Prices and fills over the loopback server's WebSockets, every connection dropped every
    3 s and refused for 1 s, so orders fill while the bot hears nothing: the catch-up after each
    reconnect must book them exactly once, and the stream's copies must not count twice."""
    async with running_market_streams(server) as streams, running_user_data_server(server) as ws_api:
        env = {
            **env_for(server),
            "EXCHANGE__WS_URL": streams.url,
            "EXCHANGE__WS_API_URL": ws_api.url,
            "EXCHANGE__WS_SILENCE_S": "5",
        }
        outages = Outages(streams, ws_api)
        problems = await fast_market(cli, server, env, settle=settle_streamed, during=outages.run)
    caught_up = outages.bot_events_named("order updates: caught up over REST")
    if outages.count < 4:
        problems.append(f"only {outages.count} outages: the scenario did not exercise reconnects")
    if not caught_up:
        problems.append("no catch-up after a reconnect found a fill: no order filled while the bot was away")
    if outages.fell_back:
        problems.append(f"the bot fell back to REST polling: {outages.fell_back}")
    polled = [r for r in server.requests_to("myTrades") if "orderId" not in r.params]
    if len(polled) > 3 * outages.count + 3:
        problems.append(f"{len(polled)} myTrades requests for {outages.count} outages: the bot polled")
    assert_no_problems(problems)


class Outages:
    """Every `every_s`, refuse new connections and drop every WebSocket connection of the bot;
    accept again `down_s` later."""

    def __init__(self, streams: MarketStreamServer, ws_api: UserDataServer) -> None:
        self.streams, self.ws_api = streams, ws_api
        self.count = 0
        self.bot: BotProcess | None = None
        self.fell_back: list[str] = []

    async def run(self, bot: BotProcess, every_s: float = 3.0, down_s: float = 1.0) -> None:
        self.bot = bot
        await asyncio.wait_for(self.ws_api.wait_for_subscriptions(1), HANG_GUARD_S)
        try:
            while True:
                await asyncio.sleep(every_s - down_s)  # the outages keep a rhythm: nothing is waited for
                self.streams.refusing = self.ws_api.refusing = True
                self.streams.drop()
                self.ws_api.drop()
                self.count += 1
                await asyncio.sleep(down_s)
                self.streams.refusing = self.ws_api.refusing = False
        finally:
            self.streams.refusing = self.ws_api.refusing = False
            self.fell_back = [str(e["event"]) for e in bot.events if "falling back" in str(e.get("event"))]

    def bot_events_named(self, name: str) -> list[dict[str, Any]]:
        return [] if self.bot is None else [e for e in self.bot.events if e.get("event") == name]


async def settle_streamed(server: FakeBinance, bot: BotProcess) -> bool:
    """Wait until the bot has booked every trade the venue made. The stop that follows waits for
    the decision in progress, counter-order included, and books anything left."""
    engine = server.book(SYMBOL).engine
    return await wait_until(
        lambda: bot.names().count("fill") >= len(engine.trades()), bot, "the bot to book every venue trade"
    )


def assert_no_problems(problems: list[str]) -> None:
    if problems:
        pytest.fail("the grid broke in a fast market:\n- " + "\n- ".join(problems), pytrace=False)


async def fast_market(
    cli: Cli,
    server: FakeBinance,
    env: dict[str, str],
    *,
    settle: Callable[[FakeBinance, BotProcess], Awaitable[bool]],
    during: Callable[[BotProcess], Awaitable[None]] | None = None,
) -> list[str]:
    """Run the bot through the zig-zag market; returns what went wrong (nothing, if the grid held)."""
    engine = server.book(SYMBOL).engine
    crowded_during_run: dict[tuple[str, ...], str] = {}  # each crowding once, as first seen

    def watch(price: Decimal) -> None:
        for level, ids in sorted(crowded_levels(server).items()):
            crowded_during_run.setdefault(tuple(ids), f"L{level:03d} held {ids} at price {price}")

    async with cli.bot("--config", "config/testnet.toml", "run", extra_env=env) as bot:
        started = await bot.until(lambda e: e["event"] == "grid started")
        ladder_placed = await wait_until(
            lambda: len(open_orders_by_level(server)) == LEVELS - 1, bot, "the ladder to be placed"
        )
        assert ladder_placed, f"hang guard: the ladder never stood on the venue; last output:{bot.tail()}"
        initial_ids = {o.order_id for o in venue_grid_orders(server)}

        market = asyncio.create_task(
            drive(
                server,
                SYMBOL,
                itertools.islice(PATH.prices(), MARKET_TICKS),
                tick_s=PATH.tick_s,
                after_each=watch,
            )
        )
        chaos = None if during is None else asyncio.create_task(during(bot))
        try:
            await asyncio.wait_for(market, HANG_GUARD_S)
        finally:
            if chaos is not None:
                chaos.cancel()
                await asyncio.gather(chaos, return_exceptions=True)
        settled = await settle(server, bot)
        code = await bot.stop()

    status = await cli.astatus("--config", "config/testnet.toml", extra_env=env)
    orders = venue_grid_orders(server)
    trades = engine.trades()
    initial_buys = [o.amount for o in orders if o.order_id in initial_ids and o.side == "buy"]
    quantity = Decimal(str(started.get("quantity") or max(initial_buys)))  # the per-level quantity
    problems: list[str] = []

    if code != 0:
        problems.append(f"the bot exited with {code}; last output:{bot.tail()}")
    if not settled:
        problems.append(
            f"the bot never caught up with the venue: it logged {bot.names().count('fill')} fills, "
            f"the venue made {len(trades)} trades"
        )

    grid_fills = [o for o in orders if o.status == "filled"]
    if len(grid_fills) < MIN_GRID_FILLS:
        problems.append(f"only {len(grid_fills)} grid orders filled: the scenario did not exercise the grid")

    pairs, orphans = match_counters(orders, initial_ids)
    missing = [parent for parent, child in pairs if child is None]
    if missing:
        problems.append(
            f"{len(missing)} of {len(pairs)} grid fills got no counter-order on the venue: {_some(missing)}"
        )
    if orphans:
        problems.append(
            f"{len(orphans)} orders placed after the start answer no fill (a second counter-order for "
            f"one fill, or one on the wrong level/side): {_some(orphans)}"
        )

    skipped = [e for e in bot.events if "counter-order skipped" in str(e.get("event"))]
    if skipped:
        problems.append(
            f"the log says 'counter-order skipped' {len(skipped)} times, at "
            f"{_some((e.get('timestamp') for e in skipped), 4)}"
        )

    if crowded_during_run:
        problems.append(
            f"{len(crowded_during_run)} times a level held two open orders on the venue while the market "
            f"moved: {_some(crowded_during_run.values(), 4)}"
        )
    crowded_at_end = crowded_levels(server)
    if crowded_at_end:
        problems.append(f"levels holding two open orders at the end: {crowded_at_end}")

    merged = [o for o in orders if o.side == "sell" and o.amount > quantity + STEP]
    if merged:
        problems.append(
            f"{len(merged)} sells carry more than one level's quantity ({quantity} + one step {STEP}): "
            f"{_some(merged)}"
        )

    venue_open = {
        o.client_order_id for o in engine.open_orders() if grid_level(o.client_order_id) is not None
    }
    status_open = {o["client_order_id"] for o in status["open_orders"]}
    if status_open != venue_open:
        problems.append(
            f"status --json lists {len(status_open)} open orders, the venue holds {len(venue_open)}: "
            f"only in status {sorted(status_open - venue_open)}, only on the venue {sorted(venue_open - status_open)}"
        )
    if status["fills"] != len(trades):
        problems.append(f"status --json counts {status['fills']} fills, the venue made {len(trades)} trades")

    if problems:
        telling = [
            f"{e.get('timestamp')} {e.get('event')} {e.get('order', '')} L{e.get('grid_level', '')}"
            for e in bot.events
            if any(word in str(e.get("event")) for word in ("cross", "owed", "withdraw", "counter"))
        ]
        problems.append("the bot's crossing and owed-order lines: " + ("; ".join(telling) or "none"))
        problems.append(
            f"(market: {MARKET_TICKS} ticks of {PATH.tick_s} s through {[str(t) for t in TURNS]}; "
            f"venue: {len(orders)} grid orders, {len(grid_fills)} filled, {len(trades)} trades, "
            f"{len(venue_open)} open; per-level quantity {quantity})"
        )
    return problems
