"""The grid use case keeps the grid's promises whatever the news does: a hypothesis stateful test.

The bot runs for real (its feeds, its decision lock, its books in the in-memory unit of work)
against the in-memory venue, which fills marketable orders at placement as the engine does. The
venue's fills reach the bot late, in batches, out of order and twice; the venue goes down; the
bot is stopped and started again (catching up, reconciling, inferring fills whose trades lag).
After every step: no trade booked twice, no order booked past its amount, no level with two live
orders, every completed grid fill countered exactly once. Once the price rests and the news is
in: a whole ladder, and books that match the venue.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from application.grid_bot import GridBot, GridBotConfig, RunOutcome
from domain.grid import GridParams, Spacing
from domain.models import ZERO, OrderStatus, Side
from domain.risk import RiskLimits

from .fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store

LOWER, UPPER = Decimal("28000"), Decimal("32000")


def level_of(cid: str) -> int:
    tag = cid.split("-")[2]
    return -1 if tag == "M" else int(tag[1:])


class BotStory(RuleBasedStateMachine):
    @initialize(
        levels=st.integers(min_value=4, max_value=10), start_step=st.integers(min_value=5, max_value=95)
    )
    def start(self, levels: int, start_step: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock()
        price = (LOWER + (UPPER - LOWER) * start_step / 100).quantize(Decimal("0.01"))
        self.venue = FakeVenue(self.clock, price=price, quote=Decimal("100000"))
        self.venue.hold_news = True
        self.store = Store()
        grid = GridParams(LOWER, UPPER, levels, Spacing.ARITHMETIC, Decimal("5000"))
        self.levels = levels
        self.config = GridBotConfig(
            symbol="BTC/USDT",
            exchange="fake",
            grid=grid,
            limits=RiskLimits(investment=Decimal("1000000"), max_open_orders=50),
            maker_fee=Decimal("0.001"),
            taker_fee=Decimal("0.001"),
        )
        self.delivered: list = []
        self._launch()

    def _launch(self) -> None:
        bot = GridBot(
            self.config,
            gateway=self.venue,
            market_feed=self.venue,
            order_feed=self.venue,
            uow_factory=lambda: InMemoryUnitOfWork(self.store),
            clock=self.clock,
        )
        self.stop = asyncio.Event()
        self.task: asyncio.Task[RunOutcome] = self.loop.create_task(bot.run(self.stop))
        self._settle()
        assert not self.task.done() or self.task.exception() is None, self.task.exception()

    def _settle(self) -> None:
        async def drain() -> None:
            for _ in range(300):
                await asyncio.sleep(0)

        self.loop.run_until_complete(drain())
        if self.task.done() and self.task.exception() is not None:
            raise self.task.exception()  # type: ignore[misc]

    def teardown(self) -> None:
        if hasattr(self, "task") and not self.task.done():
            self.stop.set()
            self.venue.close()
            self.loop.run_until_complete(asyncio.gather(self.task, return_exceptions=True))
        if hasattr(self, "loop"):
            self.loop.close()

    @property
    def run_id(self) -> str:
        return next(iter(self.store.runs))

    # ------------------------------------------------------------------ the story
    @rule(to=st.integers(min_value=-4, max_value=104))
    def price_moves(self, to: int) -> None:
        self.venue.move_to((LOWER + (UPPER - LOWER) * to / 100).quantize(Decimal("0.01")), ticker=False)

    @rule()
    def a_ticker_arrives(self) -> None:
        self.clock.advance(1)
        self.venue._ticker_queue.put_nowait(self.venue._ticker())
        self._settle()

    @precondition(lambda self: bool(self.venue.undelivered))
    @rule(picks=st.lists(st.integers(min_value=0, max_value=63), min_size=1, max_size=6))
    def some_news_arrives_in_any_order(self, picks: list[int]) -> None:
        waiting = self.venue.undelivered
        batch = [waiting[i % len(waiting)] for i in picks]
        self.delivered.extend(batch)
        self.venue.deliver(batch)
        self._settle()

    @precondition(lambda self: bool(self.delivered))
    @rule(picks=st.lists(st.integers(min_value=0, max_value=63), min_size=1, max_size=3))
    def old_news_arrives_again(self, picks: list[int]) -> None:
        self.venue.deliver([self.delivered[i % len(self.delivered)] for i in picks])
        self._settle()

    @rule(n=st.integers(min_value=1, max_value=3))
    def the_venue_refuses_service(self, n: int) -> None:
        """The next placements fail with the venue unavailable (nothing reaches the venue)."""
        self.venue.fail_next_place = n

    @rule()
    def an_answer_is_lost(self) -> None:
        """The next placement reaches the venue, but its answer does not come back."""
        self.venue.fail_after_place = 1

    @precondition(lambda self: bool(self.venue.undelivered))
    @rule(pick=st.integers(min_value=0, max_value=63))
    def trades_lag_behind_the_order(self, pick: int) -> None:
        """An order's trades are not queryable yet, though the venue shows it filled."""
        fill = self.venue.undelivered[pick % len(self.venue.undelivered)]
        self.venue.hide_trades_of.add(fill.order_id)

    @rule()
    def the_lagging_trades_appear(self) -> None:
        self.venue.hide_trades_of.clear()

    @rule()
    def the_bot_is_restarted(self) -> None:
        """A clean stop and a start: the undelivered news is lost with the old feed subscription."""
        self.stop.set()
        self.loop.run_until_complete(self.task)
        self.venue.undelivered.clear()  # the new bot must catch up from the venue itself
        self._launch()

    # ------------------------------------------------------------------ after every step
    @invariant()
    def no_trade_is_booked_twice(self) -> None:
        ids = Counter(b.fill.trade_id for b in self.store.fills)
        assert not [t for t, n in ids.items() if n > 1], ids

    @invariant()
    def no_order_is_booked_past_its_amount(self) -> None:
        booked: Counter[str] = Counter()
        for b in self.store.fills:
            booked[b.fill.client_order_id] += b.fill.amount  # type: ignore[assignment]
        for cid, amount in booked.items():
            assert amount <= self.store.orders[cid].amount, cid

    @invariant()
    def no_level_holds_two_live_orders(self) -> None:
        venue_open = Counter(
            level_of(o.client_order_id) for o in self.venue.orders.values() if o.status.is_active
        )
        assert all(n == 1 for level, n in venue_open.items() if level >= 0), venue_open
        booked_live = Counter(
            o.level
            for o in self.store.orders.values()
            if o.status in (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
            and o.level >= 0
        )
        assert all(n == 1 for n in booked_live.values()), booked_live

    @invariant()
    def every_completed_grid_fill_is_countered_once(self) -> None:
        if not self.store.runs:
            return
        children = Counter(
            o.parent_client_order_id for o in self.store.orders.values() if o.parent_client_order_id
        )
        for order in self.store.orders.values():
            if order.level < 0 or order.status is not OrderStatus.FILLED:
                continue
            at_end = (order.side is Side.BUY and order.level == self.levels - 1) or (
                order.side is Side.SELL and order.level == 0
            )
            assert children[order.client_order_id] == (0 if at_end else 1), order.client_order_id

    # ------------------------------------------------------------------ at rest
    @rule()
    def the_price_rests_and_all_news_arrives(self) -> None:
        self.venue.hide_trades_of.clear()
        self.venue.fail_next_place = self.venue.fail_after_place = 0
        for _ in range(4 * self.levels + 10):
            self.clock.advance(3600)  # past the volatility window: the market calms
            batch = list(self.venue.undelivered)
            self.delivered.extend(batch)
            self.venue.deliver(batch)
            self.venue._ticker_queue.put_nowait(self.venue._ticker())
            self._settle()
            if not self.venue.undelivered:
                break
        run = self.run_id
        active = [
            o for o in self.store.orders.values() if o.run_id == run and o.status.is_active and o.level >= 0
        ]
        assert not [o for o in active if o.status is OrderStatus.OWED], "owed orders at rest"
        assert len(active) == self.levels - 1, f"{len(active)} grid orders at rest for {self.levels} levels"
        venue_open = {o.client_order_id for o in self.venue.orders.values() if o.status.is_active}
        assert venue_open == {o.client_order_id for o in active}
        # The books match the venue: every trade of the run is booked, once, and the base the books
        # say the run holds is what the trades give.
        run_trades = [t for t in self.venue.trades if t.client_order_id.startswith(f"gb-{run[:12]}")]
        assert sorted(b.fill.trade_id for b in self.store.fills) == sorted(t.trade_id for t in run_trades)
        base = sum(
            (
                t.amount - (t.fee if t.fee_asset == "BTC" else ZERO) if t.side is Side.BUY else -t.amount
                for t in run_trades
            ),
            ZERO,
        )
        booked_base = sum(
            (
                b.fill.amount - (b.fill.fee if b.fill.fee_asset == "BTC" else ZERO)
                if b.fill.side is Side.BUY
                else -b.fill.amount
                for b in self.store.fills
            ),
            ZERO,
        )
        assert booked_base == base


BotStory.TestCase.settings = settings(
    max_examples=int(os.environ.get("GRID_STORIES", "40")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_the_grid_bot_keeps_its_promises = BotStory.TestCase


@pytest.mark.slow
class TestManyMoreStories(BotStory.TestCase):  # type: ignore[name-defined,misc]
    """The same promises over many more stories: CI's slow run (make test-slow)."""

    settings = settings(BotStory.TestCase.settings, max_examples=800)
