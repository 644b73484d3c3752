"""The grid bot use case against in-memory fakes: what a trader would see in the venue and the books."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from application.grid_bot import GridBot, GridBotConfig, RunOutcome, quote_locked_by
from domain.errors import ConfigurationError
from domain.grid import GridParams, Spacing
from domain.models import OrderRequest, OrderStatus, OrderType, RunStatus, Side, TrackedOrder
from domain.risk import RiskLimits

from .fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store


def make_config(**risk: object) -> GridBotConfig:
    grid = GridParams(Decimal("28000"), Decimal("32000"), 9, Spacing.ARITHMETIC, Decimal("1000"))
    return GridBotConfig(
        symbol="BTC/USDT",
        exchange="fake",
        grid=grid,
        limits=RiskLimits(investment=grid.investment, **risk),  # type: ignore[arg-type]
        maker_fee=Decimal("0.001"),
        taker_fee=Decimal("0.001"),
    )


@dataclass
class Harness:
    store: Store
    venue: FakeVenue
    clock: FakeClock
    bot: GridBot
    stop: asyncio.Event
    task: asyncio.Task[RunOutcome]

    async def settle(self) -> None:
        """Let the bot drain every event the venue produced (no wall-clock wait)."""
        for _ in range(200):
            await asyncio.sleep(0)

    async def move(self, price: str) -> None:
        self.venue.move_to(Decimal(price))
        await self.settle()

    async def finish(self) -> RunOutcome:
        self.stop.set()
        return await self.task

    def orders(self, *statuses: OrderStatus) -> list:
        return [o for o in self.store.orders.values() if not statuses or o.status in statuses]

    def open_levels(self) -> dict[int, Side]:
        return {o.level: o.side for o in self.store.orders.values() if o.status.is_active and o.level >= 0}


async def start_bot(
    store: Store,
    venue: FakeVenue,
    clock: FakeClock,
    config: GridBotConfig | None = None,
    feeds: Callable[[], Mapping[str, Mapping[str, object]]] | None = None,
) -> Harness:
    bot = GridBot(
        config or make_config(),
        gateway=venue,
        market_feed=venue,
        order_feed=venue,
        uow_factory=lambda: InMemoryUnitOfWork(store),
        clock=clock,
        feeds=feeds,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    harness = Harness(store, venue, clock, bot, stop, task)
    await harness.settle()
    return harness


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    clock = FakeClock()
    h = await start_bot(Store(), FakeVenue(clock), clock)
    yield h
    if not h.task.done():
        h.stop.set()
        await h.task


async def test_start_lays_the_ladder_around_the_price(harness: Harness) -> None:
    # levels 28000, 28500, ..., 32000; price 30000 is level 4: empty.
    levels = harness.open_levels()
    assert levels == {
        0: Side.BUY,
        1: Side.BUY,
        2: Side.BUY,
        3: Side.BUY,
        5: Side.SELL,
        6: Side.SELL,
        7: Side.SELL,
        8: Side.SELL,
    }
    venue_open = {o.client_order_id for o in await harness.venue.fetch_open_orders("BTC/USDT")}
    assert venue_open == {o.client_order_id for o in harness.orders(OrderStatus.OPEN)}
    # the base for the four sells was bought at market first, and covers them after the fee
    market = [r for r in harness.venue.placed if r.type is OrderType.MARKET]
    assert len(market) == 1 and market[0].side is Side.BUY
    sells = [o for o in harness.orders(OrderStatus.OPEN) if o.side is Side.SELL]
    assert sum(o.amount for o in sells) <= market[0].amount * Decimal("0.999")
    assert all(o.cost_basis > 0 for o in sells)


async def test_buy_fill_places_sell_one_level_up_for_what_was_received(harness: Harness) -> None:
    await harness.move("29500")  # crosses the buy at level 3 (29500)
    filled = [o for o in harness.orders(OrderStatus.FILLED) if o.level == 3]
    assert len(filled) == 1
    sell = next(
        o for o in harness.orders(OrderStatus.OPEN) if o.parent_client_order_id == filled[0].client_order_id
    )
    assert (sell.level, sell.side, sell.price) == (4, Side.SELL, Decimal("30000.00"))
    received = filled[0].amount - (filled[0].amount * Decimal("0.001")).quantize(Decimal("0.00000001"))
    assert sell.amount == (received // Decimal("0.00001")) * Decimal("0.00001")
    # the empty level is now the level of the latest fill
    assert 3 not in harness.open_levels()


async def test_completed_cycle_realizes_profit_net_of_fees(harness: Harness) -> None:
    await harness.move("29500")
    await harness.move("30000")  # the counter-sell at level 4 fills
    outcome = await harness.finish()
    sells = [b for b in harness.store.fills if b.fill.side is Side.SELL]
    assert len(sells) == 1
    sell = sells[0].fill
    sell_order = harness.store.orders[sell.client_order_id]
    assert sells[0].realized_pnl == sell.price * sell.amount - sell.fee - sell_order.cost_basis
    assert sells[0].realized_pnl > 0
    # the sell carries the base the buy received (plus crumbs carried from before) at what it cost
    buy = next(
        b for b in harness.store.fills if b.fill.side is Side.BUY and b.fill.price == Decimal("29500.00")
    )
    assert sell.amount >= ((buy.fill.amount - buy.fill.fee) // Decimal("0.00001")) * Decimal("0.00001")
    assert sell_order.cost_basis >= buy.fill.price * sell.amount * Decimal("0.999")
    assert outcome.realized_pnl == sells[0].realized_pnl
    # and the buy at level 3 is back
    assert harness.open_levels()[3] is Side.BUY


async def test_a_fill_seen_twice_is_booked_and_countered_once(harness: Harness) -> None:
    fills = harness.venue.move_to(Decimal("29500"))
    await harness.settle()
    for fill in fills:  # the same trade again, e.g. from a REST catch-up after a stream reconnect
        harness.venue._fill_queue.put_nowait(fill)
    await harness.settle()
    assert sum(1 for b in harness.store.fills if b.fill.trade_id == fills[0].trade_id) == 1
    children = [
        o for o in harness.store.orders.values() if o.parent_client_order_id == fills[0].client_order_id
    ]
    assert len(children) == 1


async def test_restart_resumes_the_same_grid_without_placing_twice() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    first = await start_bot(store, venue, clock)
    outcome = await first.finish()
    assert outcome.status is RunStatus.STOPPED
    placed_before = len(venue.placed)
    venue.move_to(Decimal("29000"))  # fills while the bot is down: levels 3 and 2
    second = await start_bot(store, venue, clock)
    assert second.bot.run_id == outcome.run_id
    new_requests = venue.placed[placed_before:]
    # only the two counter-sells, nothing of the ladder again
    assert [(r.side, r.price) for r in new_requests] == [
        (Side.SELL, Decimal("30000.00")),
        (Side.SELL, Decimal("29500.00")),
    ] or sorted((r.side, r.price) for r in new_requests) == [
        (Side.SELL, Decimal("29500.00")),
        (Side.SELL, Decimal("30000.00")),
    ]
    assert len(store.fills) == 3  # initial purchase + the two buys caught up
    await second.finish()
    assert store.runs[outcome.run_id].status is RunStatus.STOPPED


async def test_order_sent_before_a_crash_is_adopted_not_placed_again() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    first = await start_bot(store, venue, clock)
    venue.fail_after_place = 1  # the venue takes the counter-order but the answer is lost
    venue.move_to(Decimal("29500"), ticker=False)
    await first.settle()
    pending = first.orders(OrderStatus.PENDING)
    assert len(pending) == 1
    first.task.cancel()  # the process dies before it could look the order up
    with pytest.raises(asyncio.CancelledError):
        await first.task
    placed = len(venue.placed)
    second = await start_bot(store, venue, clock)
    assert len(venue.placed) == placed  # looked up by client order id, not sent again
    adopted = store.orders[pending[0].client_order_id]
    assert adopted.status is OrderStatus.OPEN and adopted.exchange_order_id is not None
    await second.finish()


async def test_venue_outage_defers_the_order_until_the_venue_answers(harness: Harness) -> None:
    harness.venue.fail_next_place = 2  # the counter-order fails, and so does the retry on that tick
    await harness.move("29500")
    assert len(harness.orders(OrderStatus.PENDING)) == 1
    await harness.move("29600")  # the next ticker: the venue answers again
    assert harness.orders(OrderStatus.PENDING) == []
    assert harness.open_levels()[4] is Side.SELL


async def test_stop_loss_cancels_the_grid_and_sells_its_base() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    h = await start_bot(store, venue, clock, make_config(stop_loss=Decimal("27500"), sell_on_stop=True))
    venue.move_to(Decimal("27400"))  # every buy fills on the way down, then the stop fires
    await h.settle()
    outcome = await h.task
    assert outcome.status is RunStatus.HALTED and "stop-loss" in outcome.reason
    assert await venue.fetch_open_orders("BTC/USDT") == []
    last = venue.placed[-1]
    assert (last.side, last.type) == (Side.SELL, OrderType.MARKET)
    assert store.runs[outcome.run_id].status is RunStatus.HALTED
    assert all(not o.status.is_active for o in store.orders.values())


async def test_take_profit_halts_without_selling_when_not_asked() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    h = await start_bot(store, venue, clock, make_config(take_profit=Decimal("32500")))
    venue.move_to(Decimal("32600"))
    await h.settle()
    outcome = await h.task
    assert outcome.status is RunStatus.HALTED and "take-profit" in outcome.reason
    assert not any(r.type is OrderType.MARKET and r.side is Side.SELL for r in venue.placed)


async def test_price_outside_the_grid_is_a_configuration_error() -> None:
    clock = FakeClock()
    bot = GridBot(
        make_config(),
        gateway=(venue := FakeVenue(clock, price=Decimal("35000"))),
        market_feed=venue,
        order_feed=venue,
        uow_factory=lambda: InMemoryUnitOfWork(Store()),
        clock=clock,
    )
    with pytest.raises(ConfigurationError) as caught:
        await bot.run(asyncio.Event())
    assert caught.value.key == "GRID__UPPER"  # the price is above the grid
    assert "outside the grid" in caught.value.problem
    assert venue.placed == []


async def test_not_enough_quote_is_refused_before_any_order() -> None:
    clock = FakeClock()
    venue = FakeVenue(clock, quote=Decimal("100"))
    bot = GridBot(
        make_config(),
        gateway=venue,
        market_feed=venue,
        order_feed=venue,
        uow_factory=lambda: InMemoryUnitOfWork(Store()),
        clock=clock,
    )
    with pytest.raises(ConfigurationError) as caught:
        await bot.run(asyncio.Event())
    assert caught.value.key == "GRID__INVESTMENT" and "100 USDT" in caught.value.problem
    assert venue.placed == []


async def test_changed_grid_closes_the_old_one_and_starts_afresh() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    first = await start_bot(store, venue, clock)
    old = await first.finish()
    wider = replace(
        make_config(),
        grid=GridParams(Decimal("27000"), Decimal("33000"), 7, Spacing.GEOMETRIC, Decimal("900")),
    )
    second = await start_bot(store, venue, clock, wider)
    assert second.bot.run_id != old.run_id
    assert store.runs[old.run_id].stop_reason == "superseded by a grid with new parameters"
    assert not any(o.status.is_active for o in store.orders.values() if o.run_id == old.run_id)
    await second.finish()


async def test_lost_answer_is_resolved_by_client_order_id_in_the_same_run(harness: Harness) -> None:
    harness.venue.fail_after_place = 1
    await harness.move("29500")  # the counter-sell reaches the venue, its answer does not
    counter = next(o for o in harness.store.orders.values() if o.level == 4 and o.side is Side.SELL)
    assert counter.status is OrderStatus.OPEN and counter.exchange_order_id is not None
    assert sum(1 for r in harness.venue.placed if r.client_order_id == counter.client_order_id) == 1


async def test_an_invalid_new_grid_leaves_the_running_one_untouched() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    first = await start_bot(store, venue, clock)
    old = await first.finish()
    open_before = await venue.fetch_open_orders("BTC/USDT")
    tiny = replace(
        make_config(),
        grid=GridParams(Decimal("28000"), Decimal("32000"), 9, Spacing.ARITHMETIC, Decimal("20")),
    )
    bot = GridBot(
        tiny,
        gateway=venue,
        market_feed=venue,
        order_feed=venue,
        uow_factory=lambda: InMemoryUnitOfWork(store),
        clock=clock,
    )
    with pytest.raises(ConfigurationError) as caught:
        await bot.run(asyncio.Event())
    assert caught.value.key == "GRID__INVESTMENT"
    assert await venue.fetch_open_orders("BTC/USDT") == open_before
    assert store.runs[old.run_id].status is RunStatus.STOPPED
    assert store.runs[old.run_id].stop_reason == "stop requested"


async def test_start_rides_out_a_short_outage_with_backoff_on_the_clock() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    venue.unavailable_reads = 2
    started_at = clock.monotonic()
    h = await start_bot(store, venue, clock)
    assert len(h.open_levels()) == 8  # the ladder is laid once the venue answers
    assert clock.monotonic() - started_at >= 1  # it waited (on the clock port) between attempts
    await h.finish()


async def test_a_stop_interrupted_by_an_outage_completes_on_the_next_ticker() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    h = await start_bot(
        store, venue, clock, replace(make_config(take_profit=Decimal("32500")), start_attempts=1)
    )
    h.venue.unavailable_reads = 1  # the first cancel of the stop fails
    h.venue.move_to(Decimal("32600"), ticker=False)
    h.venue._ticker_queue.put_nowait(h.venue._ticker())
    await h.settle()
    h.venue.move_to(Decimal("32700"))  # the next ticker finishes the stop
    await h.settle()
    outcome = await h.task
    assert outcome.status is RunStatus.HALTED
    assert await venue.fetch_open_orders("BTC/USDT") == []


def bot_for(store: Store, venue: FakeVenue, clock: FakeClock, config: GridBotConfig) -> GridBot:
    return GridBot(
        config,
        gateway=venue,
        market_feed=venue,
        order_feed=venue,
        uow_factory=lambda: InMemoryUnitOfWork(store),
        clock=clock,
    )


def with_investment(investment: str, levels: int = 7) -> GridBotConfig:
    grid = GridParams(Decimal("27000"), Decimal("33000"), levels, Spacing.GEOMETRIC, Decimal(investment))
    return replace(make_config(), grid=grid, limits=RiskLimits(investment=grid.investment))


async def test_a_new_grid_the_funds_cannot_carry_leaves_the_old_grid_resting_and_resumable() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock, quote=Decimal("1500"))
    old = await (await start_bot(store, venue, clock)).finish()
    resting = await venue.fetch_open_orders("BTC/USDT")
    books = {cid: o.status for cid, o in store.orders.items()}
    with pytest.raises(ConfigurationError) as refused:
        await bot_for(store, venue, clock, with_investment("5000")).run(asyncio.Event())
    assert refused.value.key == "GRID__INVESTMENT"
    assert "the old grid's buys would free" in refused.value.problem
    assert await venue.fetch_open_orders("BTC/USDT") == resting  # nothing cancelled on the venue
    assert {cid: o.status for cid, o in store.orders.items()} == books  # nor in the books
    assert store.runs[old.run_id].status is RunStatus.STOPPED
    again = await start_bot(store, venue, clock)  # the old settings resume the old grid
    assert again.bot.run_id == old.run_id
    assert len(again.open_levels()) == 8
    await again.finish()


async def test_funds_the_old_grid_holds_count_toward_the_new_one() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock, quote=Decimal("1500"))
    old = await (await start_bot(store, venue, clock)).finish()
    free = venue.balances["USDT"]
    locked = sum(
        o.remaining * (o.price or 0) for o in await venue.fetch_open_orders("BTC/USDT") if o.side is Side.BUY
    )
    assert free < Decimal("800") < free + locked  # the new grid fits only once the old one is gone
    new = await start_bot(store, venue, clock, with_investment("800"))
    assert new.bot.run_id != old.run_id
    assert store.runs[old.run_id].stop_reason == "superseded by a grid with new parameters"
    assert len(new.open_levels()) == 6
    await new.finish()


async def test_a_grid_change_says_the_old_grids_base_is_left_to_the_user() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    old = await (await start_bot(store, venue, clock)).finish()
    [bought] = [b.fill for b in store.fills if b.run_id == old.run_id]  # the base for its sells
    with capture_logs() as logs:
        await (await start_bot(store, venue, clock, with_investment("900"))).finish()
    [left] = [e for e in logs if e["event"].startswith("the previous grid's base stays in the account")]
    assert (left["run_id"], left["asset"]) == (old.run_id, "BTC")
    assert Decimal(left["base"]) == bought.amount - bought.fee > 0


async def test_a_stop_while_the_start_waits_out_the_venue_ends_the_run_cleanly_with_nothing_sent() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    venue.unavailable_reads = 10_000  # the venue is down for as long as anyone waits
    bot = bot_for(store, venue, clock, make_config())
    stop = asyncio.Event()
    task = asyncio.create_task(bot.run(stop))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()  # still waiting it out
    stop.set()
    assert await asyncio.wait_for(task, timeout=5) is None
    assert venue.placed == [] and store.runs == {}


async def test_a_grid_is_not_laid_beside_open_orders_these_books_never_placed() -> None:
    clock = FakeClock()
    venue = FakeVenue(clock)
    other_bot = OrderRequest(
        "BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.01"), "gb-0badc0ffee00-L002-00000", Decimal("29000")
    )
    await venue.place_order(other_bot)  # another bot's order, on the same account
    bot = bot_for(Store(), venue, clock, make_config())
    with pytest.raises(ConfigurationError) as refused:
        await bot.run(asyncio.Event())
    assert refused.value.key == "DATABASE__URL"
    assert (
        "1 open grid order(s)" in refused.value.problem and other_bot.client_order_id in refused.value.problem
    )
    assert venue.placed == [other_bot]  # nothing of a second grid was sent


async def test_a_running_grid_replaces_an_order_cancelled_on_the_venue_side_within_a_minute(
    harness: Harness,
) -> None:
    victim = next(o for o in harness.orders(OrderStatus.OPEN) if o.level == 2)
    assert victim.exchange_order_id is not None
    await harness.venue.cancel_order("BTC/USDT", victim.exchange_order_id)  # by hand, on the venue
    await harness.move("30010")
    assert harness.store.orders[victim.client_order_id].status is OrderStatus.OPEN  # not noticed yet
    harness.clock.advance(61)
    await harness.move("30020")
    assert harness.store.orders[victim.client_order_id].status is OrderStatus.CANCELED
    successor = next(o for o in harness.orders(OrderStatus.OPEN) if o.level == 2)
    assert successor.parent_client_order_id == victim.client_order_id
    on_venue = {o.client_order_id for o in await harness.venue.fetch_open_orders("BTC/USDT")}
    assert successor.client_order_id in on_venue and len(on_venue) == 8


async def test_a_running_grid_books_a_fill_its_feed_never_delivered_within_a_minute(harness: Harness) -> None:
    harness.venue.hold_news = True  # the feed loses this fill
    [fill] = harness.venue.move_to(Decimal("29400"))
    harness.venue.undelivered.clear()
    await harness.settle()
    harness.clock.advance(61)
    await harness.move("29410")
    assert [b.fill.trade_id for b in harness.store.fills if b.fill.trade_id == fill.trade_id] == [
        fill.trade_id
    ]
    counter = [o for o in harness.store.orders.values() if o.parent_client_order_id == fill.client_order_id]
    assert len(counter) == 1 and counter[0].side is Side.SELL


def test_only_buys_the_venue_confirmed_count_as_funds_a_grid_change_frees() -> None:
    """What cancelling the old grid frees is the quote the venue holds for its unfilled buys; an
    order never confirmed (PENDING) or never sent (OWED) holds nothing, and a sell holds base."""
    t0 = FakeClock().now()

    def order(status: OrderStatus, side: Side = Side.BUY, filled: str = "0") -> TrackedOrder:
        return TrackedOrder(
            "run", f"gb-{status.value}-{side.value}", "BTC/USDT", side, OrderType.LIMIT,
            Decimal("0.01"), Decimal("29000"), 1, status, t0, t0, filled=Decimal(filled),
        )  # fmt: skip

    orders = [
        order(OrderStatus.OPEN),  # 290
        order(OrderStatus.PARTIALLY_FILLED, filled="0.004"),  # 0.006 left: 174
        order(OrderStatus.PENDING),
        order(OrderStatus.OWED),
        order(OrderStatus.FILLED, filled="0.01"),
        order(OrderStatus.OPEN, Side.SELL),
    ]
    assert quote_locked_by(orders) == Decimal("464.00")
