"""The grid core's promises under any story of prices and news: hypothesis stateful tests.

The venue (tests/unit/domain/venue_model.py) fills orders as the price walks; its news reaches the
core late, in batches, out of order, twice, and with trades lagging behind an order's status.
After every step the core keeps rules 1-5 of `domain.grid_core`; once the price rests and all the
news is in, rules 6-7 hold too.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from returns.result import Failure

from domain.grid import GridParams, Spacing, initial_sells, leftover_after_initial_sells, plan_grid
from domain.grid_core import CoreConfig, Decision, GridCore
from domain.models import ZERO, BookedFill, OrderRequest, OrderStatus, Side, TrackedOrder
from domain.risk import RiskLimits

from .factories import MAKER_FEE, TAKER_FEE, btc_usdt_rules
from .venue_model import ModelVenue

RULES = btc_usdt_rules()
LOWER, UPPER = Decimal("28000"), Decimal("32000")


def level_of(cid: str) -> int:
    tag = cid.split("-")[2]
    return -1 if tag == "M" else int(tag[1:])


class GridStory(RuleBasedStateMachine):
    """One grid, one venue, and a story of prices and news told in any order."""

    @initialize(
        levels=st.integers(min_value=4, max_value=12),
        spacing=st.sampled_from(list(Spacing)),
        start_step=st.integers(min_value=1, max_value=99),
    )
    def start(self, levels: int, spacing: Spacing, start_step: int) -> None:
        start = (LOWER + (UPPER - LOWER) * start_step / 100).quantize(Decimal("0.01"))
        params = GridParams(LOWER, UPPER, levels, spacing, Decimal("5000"))
        plan = plan_grid(params, RULES, start, maker_fee=MAKER_FEE, taker_fee=TAKER_FEE).unwrap()
        self.plan = plan
        self.venue = ModelVenue(RULES, start)
        self.core = GridCore(
            CoreConfig(
                run_id="0123456789abcdef",
                symbol=RULES.symbol,
                rules=RULES,
                levels=plan.levels,
                quantity=plan.quantity,
                # A budget that never binds: holds come from the market state and the venue here.
                limits=RiskLimits(investment=Decimal("1000000"), max_open_orders=50),
                maker_fee=MAKER_FEE,
                taker_fee=TAKER_FEE,
            )
        )
        self.orders: dict[str, TrackedOrder] = {}
        self.booked: dict[str, BookedFill] = {}
        self.delivered: list = []
        base = plan.quantity * len(plan.sell_levels)
        sells = initial_sells(plan, base, base * start)
        self.core.observe(self.venue.ticker())
        self._run(
            self.core.lay(
                [*plan.buys, *sells], self.venue.now, leftover_after_initial_sells(sells, base, base * start)
            )
        )

    # ------------------------------------------------------------------ plumbing
    def _run(self, decision: Decision) -> None:
        log: list[Decision] = []
        self.venue.execute(self.core, decision, log)
        for made in log:
            for trade_id in made.retracted:
                assert trade_id in self.booked, f"retracted {trade_id}, which was never booked"
                del self.booked[trade_id]
            for booked in made.fills:
                assert booked.fill.trade_id not in self.booked, f"trade {booked.fill.trade_id} booked twice"
                self.booked[booked.fill.trade_id] = booked
            for order in [*made.added.values(), *made.updated.values()]:
                self.orders[order.client_order_id] = order

    def _deliver(self, fills: list) -> None:
        for fill in fills:
            if fill in self.venue.undelivered:
                self.venue.undelivered.remove(fill)
            self.delivered.append(fill)
        self._run(self.core.apply_fills(fills, self.venue.now))

    # ------------------------------------------------------------------ the story
    @rule(to=st.integers(min_value=-4, max_value=104))
    def price_moves(self, to: int) -> None:
        """The price walks somewhere in or around the grid; the news has not arrived yet."""
        self.venue.move_to((LOWER + (UPPER - LOWER) * to / 100).quantize(Decimal("0.01")))

    @precondition(lambda self: bool(self.venue.resting()))
    @rule(pick=st.integers(min_value=0, max_value=63), share=st.sampled_from(["0.25", "0.5", "0.9"]))
    def an_order_fills_in_part(self, pick: int, share: str) -> None:
        resting = self.venue.resting()
        self.venue.touch(resting[pick % len(resting)].client_order_id, Decimal(share))

    @rule()
    def a_ticker_arrives(self) -> None:
        self._run(self.core.on_ticker(self.venue.ticker()))

    @precondition(lambda self: bool(self.venue.undelivered))
    @rule(
        picks=st.lists(
            st.integers(min_value=0, max_value=63),
            min_size=1,
            max_size=6,
        )
    )
    def some_news_arrives_in_any_order(self, picks: list[int]) -> None:
        """A batch of trades, any of them, in any order (a poll, a reconnect, a catch-up page)."""
        waiting = self.venue.undelivered
        self._deliver(
            [waiting[i % len(waiting)] for i in picks]
        )  # the same trade may come twice in one batch

    @precondition(lambda self: bool(self.delivered))
    @rule(picks=st.lists(st.integers(min_value=0, max_value=63), min_size=1, max_size=4))
    def old_news_arrives_again(self, picks: list[int]) -> None:
        """Trades already delivered come again (a stream and a catch-up both report them)."""
        self._deliver([self.delivered[i % len(self.delivered)] for i in picks])

    @rule()
    def the_venue_goes_down(self) -> None:
        self._run(self.core.venue_unavailable(self.venue.now))

    @rule()
    def an_answer_is_lost(self) -> None:
        """The next order reaches the venue but its answer does not reach the bot."""
        self.venue.lose_next_answer = True

    @precondition(lambda self: bool(self.venue.undelivered))
    @rule(pick=st.integers(min_value=0, max_value=63))
    def an_order_shows_filled_before_its_trades(self, pick: int) -> None:
        """Reconciliation sees an order FILLED whose trades are not queryable yet: it infers them."""
        fill = self.venue.undelivered[pick % len(self.venue.undelivered)]
        order = self.core.order(fill.client_order_id)
        on_venue = self.venue.orders[fill.client_order_id]
        if order is None or order.exchange_order_id is None or not order.status.is_active:
            return
        if on_venue.status is not OrderStatus.FILLED:
            return  # only an order the venue reports FILLED is inferred
        self._run(self.core.infer_fill(fill.client_order_id, fill.price, self.venue.now))

    # ------------------------------------------------------------------ rules 1-5, after every step
    @invariant()
    def no_order_is_booked_past_its_amount(self) -> None:
        per_order: Counter[str] = Counter()
        amounts: dict[str, Decimal] = {}
        for booked in self.booked.values():
            cid = booked.fill.client_order_id
            amounts[cid] = amounts.get(cid, ZERO) + booked.fill.amount
        for cid, total in amounts.items():
            assert total <= self.orders[cid].amount, f"{cid}: booked {total} of {self.orders[cid].amount}"
        del per_order

    @invariant()
    def no_level_holds_two_live_orders(self) -> None:
        levels = [o.level for o in self.core.grid_orders()]
        assert len(levels) == len(set(levels)), f"two occupants on a level: {sorted(levels)}"
        resting = Counter(level_of(o.client_order_id) for o in self.venue.resting())
        doubled = {level: n for level, n in resting.items() if n > 1}
        assert not doubled, f"levels with two resting orders on the venue: {doubled}"

    @invariant()
    def every_completed_grid_fill_has_exactly_one_counter_order(self) -> None:
        children = Counter(o.parent_client_order_id for o in self.orders.values() if o.parent_client_order_id)
        top = len(self.plan.levels) - 1
        for order in self.orders.values():
            if order.level < 0 or order.status is not OrderStatus.FILLED:
                continue
            at_end = (order.side is Side.BUY and order.level == top) or (
                order.side is Side.SELL and order.level == 0
            )
            expected = 0 if at_end else 1
            assert children[order.client_order_id] == expected, (
                f"{order.client_order_id} ({order.side} at level {order.level}) has "
                f"{children[order.client_order_id]} counter-orders"
            )

    @invariant()
    def grid_orders_are_one_level_quantity(self) -> None:
        q, step = self.plan.quantity, RULES.step_size
        for order in self.orders.values():
            if order.level < 0:
                continue
            if order.side is Side.BUY:
                assert order.amount <= q, (
                    f"{order.client_order_id}: buy of {order.amount}, level quantity {q}"
                )
                if order.amount < q:  # see GridCore.gone
                    parent = self.orders.get(order.parent_client_order_id or "")
                    what_a_cancelled_buy_had_left = (
                        parent is not None
                        and parent.side is Side.BUY
                        and parent.status is OrderStatus.CANCELED
                    )
                    rest = OrderRequest(
                        order.symbol, Side.BUY, order.type, q - order.amount, "rest", order.price
                    )
                    shrunk_to_what_it_executed = isinstance(RULES.check_order(rest), Failure)
                    assert what_a_cancelled_buy_had_left or shrunk_to_what_it_executed, order
            else:
                # A sell carries its buy's base plus the carried crumbs; more than that only by the
                # unsold rest of a sell that went (GridCore.gone), which no order could sell alone.
                extra = OrderRequest(
                    order.symbol, Side.SELL, order.type, order.amount - q, "extra", order.price
                )
                assert order.amount > ZERO, order
                assert order.amount < q + step or isinstance(RULES.check_order(extra), Failure), (
                    f"{order.client_order_id}: sell of {order.amount} (q={q})"
                )

    @invariant()
    def what_is_at_stake_counts_every_order_that_may_be_on_the_venue(self) -> None:
        # The core keeps these sums as orders change; they must be what the orders add up to.
        live = [o for o in self.core.active_orders if o.level >= 0 and self.core.may_be_on_venue(o)]
        stake = sum(
            ((o.price or ZERO) * o.remaining if o.side is Side.BUY else o.cost_basis for o in live), ZERO
        )
        exposure = self.core.exposure()
        assert exposure.open_orders == len(live)
        assert exposure.quote_in_use == stake + self.core.leftover.cost

    @invariant()
    def the_core_counts_what_it_booked(self) -> None:
        assert self.core.realized == sum((b.realized_pnl for b in self.booked.values()), ZERO)
        assert self.core.fills_booked == len(self.booked)

    # ------------------------------------------------------------------ rules 6-7, at rest
    @rule()
    def the_price_rests_and_all_news_arrives(self) -> None:
        self.venue.now += timedelta(seconds=3600)  # past the volatility window: the market calms
        for _ in range(4 * len(self.plan.levels) + 10):
            if self.venue.undelivered:
                self._deliver(list(self.venue.undelivered))
            decision = self.core.on_ticker(self.venue.ticker())
            if not decision.commands and not self.venue.undelivered:
                break
            self._run(decision)
        assert not self.venue.undelivered
        grid = self.core.grid_orders()
        assert not self.core.owed_orders(), (
            f"owed at rest: {[o.client_order_id for o in self.core.owed_orders()]}"
        )
        assert len(grid) == len(self.plan.levels) - 1, (
            f"{len(grid)} grid orders at rest, levels {len(self.plan.levels)}"
        )
        live = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
        assert all(o.status in live for o in grid), [o.status for o in grid]
        assert len(self.venue.resting()) == len(self.plan.levels) - 1
        # The books match the venue: the base held per the books is what the trades give.
        assert self.core.position == self.venue.base_from_trades()
        assert not any(b.fill.is_inferred for b in self.booked.values())


GridStory.TestCase.settings = settings(
    max_examples=int(os.environ.get("GRID_STORIES", "150")),  # a deeper hunt: GRID_STORIES=5000
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_the_grid_core_keeps_its_promises = GridStory.TestCase


@pytest.mark.slow
class TestManyMoreStories(GridStory.TestCase):  # type: ignore[name-defined,misc]
    """The same promises over many more stories: CI's slow run (make test-slow)."""

    settings = settings(GridStory.TestCase.settings, max_examples=3000)
