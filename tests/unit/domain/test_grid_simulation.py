"""The grid over an arbitrary price path, driven by the domain functions alone.

A small bookkeeping simulation stands in for the bot: it plans the grid at the first price, buys the
sells' base at market (taker fee in base), lays the initial sells and buys, then on each price move
fills every crossed order at its own price (maker fee in the asset received) and places the
counter-order when `check_new_order` accepts it. Whatever the path, a trader must be able to count on
the invariants asserted in `GridSimulation.assert_invariants`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from returns.result import Failure

from domain.errors import Rejection
from domain.grid import (
    NO_LEFTOVER,
    GridParams,
    GridPlan,
    Leftover,
    PlannedOrder,
    Spacing,
    client_order_id,
    counter_order,
    counter_order_carrying,
    fee_after,
    initial_sells,
    leftover_after_initial_sells,
    plan_grid,
    sell_profit,
)
from domain.models import ZERO, OrderRequest, OrderType, Side
from domain.risk import Exposure, MarketState, RiskLimits, check_new_order
from domain.rules import MarketRules
from unit.domain.factories import (
    MAKER_FEE,
    TAKER_FEE,
    GridCase,
    assert_accepted,
    btc_usdt_rules,
    grid_cases,
)

RUN_ID = "sim-run-0001"


@dataclass
class Resting:
    order: PlannedOrder
    from_grid_buy: bool  # a sell placed by a filled grid buy closes a buy-then-sell cycle


@dataclass
class GridSimulation:
    case: GridCase
    plan: GridPlan
    limits: RiskLimits
    price: Decimal
    quote: Decimal  # free quote held for the grid
    base: Decimal = ZERO  # base held for the grid (reserved by sells or not)
    locked: Decimal = ZERO  # quote locked in open buys
    cost_held: Decimal = ZERO  # quote paid for the base held
    realized: Decimal = ZERO
    sell_profits: list[Decimal] = field(default_factory=list)
    orders: dict[int, Resting] = field(default_factory=dict)
    last_fill_level: int | None = None
    refusals: list[Rejection] = field(default_factory=list)
    seq: int = 0
    fills: int = 0
    leftover: Leftover = NO_LEFTOVER  # base under one step, carried into the next sell

    @property
    def rules(self) -> MarketRules:
        return self.case.rules

    def exposure(self) -> Exposure:
        return Exposure(len(self.orders), self.locked + self.cost_held, self.realized)

    def request(
        self, side: Side, order_type: OrderType, amount: Decimal, level: int, price: Decimal | None
    ) -> OrderRequest:
        self.seq += 1
        cid = client_order_id(RUN_ID, level, self.seq)
        return OrderRequest(self.rules.symbol, side, order_type, amount, cid, price)

    # -- start ----------------------------------------------------------------------------------
    def start(self) -> None:
        if self.plan.base_to_buy > 0:
            market_buy = self.request(Side.BUY, OrderType.MARKET, self.plan.base_to_buy, -1, None)
            assert_accepted(
                check_new_order(
                    market_buy,
                    rules=self.rules,
                    limits=self.limits,
                    exposure=self.exposure(),
                    market_state=MarketState.NORMAL,
                    reference_price=self.price,
                )
            )
            spent = self.plan.base_to_buy * self.price
            received = fee_after(self.plan.base_to_buy, TAKER_FEE)
            self.quote -= spent
            self.cost_held += spent
            self.base += received
            sells = initial_sells(self.plan, received, spent)
            self.leftover = leftover_after_initial_sells(sells, received, spent)
            assert [s.level for s in sells] == list(self.plan.sell_levels)
            for sell in sells:
                assert self.place(sell, from_grid_buy=False), "an initial sell was refused"
        for buy in self.plan.buys:
            assert self.place(buy, from_grid_buy=False), "an initial buy was refused"
        assert len(self.orders) == self.case.params.levels - 1
        assert self.plan.empty_level not in self.orders
        self.assert_invariants()

    def place(self, planned: PlannedOrder, *, from_grid_buy: bool) -> bool:
        request = self.request(planned.side, OrderType.LIMIT, planned.amount, planned.level, planned.price)
        verdict = check_new_order(
            request,
            rules=self.rules,
            limits=self.limits,
            exposure=self.exposure(),
            market_state=MarketState.NORMAL,
        )
        if isinstance(verdict, Failure):
            self.refusals.append(verdict.failure())
            return False
        assert_accepted(self.rules.check_order(request))
        assert planned.level not in self.orders, f"level {planned.level} already has an order"
        assert planned.price == self.plan.levels[planned.level]
        if planned.side is Side.BUY:
            self.quote -= planned.price * planned.amount
            self.locked += planned.price * planned.amount
        self.orders[planned.level] = Resting(planned, from_grid_buy)
        return True

    # -- price moves ----------------------------------------------------------------------------
    def move_to(self, new_price: Decimal) -> None:
        """Fill every order the move crosses, nearest the old price first, each at its own price."""
        while True:
            crossed = [
                r.order
                for r in self.orders.values()
                if (r.order.side is Side.BUY and r.order.price >= new_price)
                or (r.order.side is Side.SELL and r.order.price <= new_price)
            ]
            if not crossed:
                break
            self.fill(min(crossed, key=lambda o: abs(o.price - self.price)))
        self.price = new_price
        self.assert_invariants()

    def fill(self, order: PlannedOrder) -> None:
        resting = self.orders.pop(order.level)
        self.fills += 1
        notional = order.price * order.amount
        if order.side is Side.BUY:
            received = fee_after(order.amount, MAKER_FEE)
            self.locked -= notional
            self.cost_held += notional
            self.base += received
            counter, self.leftover = counter_order_carrying(
                self.plan.levels,
                filled_side=Side.BUY,
                filled_level=order.level,
                filled_amount=order.amount,
                filled_quote=notional,
                fee=order.amount - received,
                fee_asset_is_base=True,
                quantity=self.plan.quantity,
                rules=self.rules,
                carried=self.leftover,
            )
            assert self.leftover.base < self.rules.step_size or counter is None
        else:
            proceeds = fee_after(notional, MAKER_FEE)
            profit = sell_profit(
                price=order.price,
                amount=order.amount,
                fee=notional - proceeds,
                fee_asset_is_quote=True,
                cost_basis=order.cost_basis,
            )
            assert profit == proceeds - order.cost_basis
            if resting.from_grid_buy and self.cycle_clears_fees(order.level):
                assert profit > 0, f"a completed cycle into level {order.level} lost {profit}"
            self.base -= order.amount
            self.quote += proceeds
            self.cost_held -= order.cost_basis
            self.realized += profit
            self.sell_profits.append(profit)
            counter = counter_order(
                self.plan.levels,
                filled_side=Side.SELL,
                filled_level=order.level,
                filled_amount=order.amount,
                filled_quote=notional,
                fee=notional - proceeds,
                fee_asset_is_base=False,
                quantity=self.plan.quantity,
                rules=self.rules,
            )
        self.last_fill_level = order.level
        at_the_end = order.level == (len(self.plan.levels) - 1 if order.side is Side.BUY else 0)
        if counter is None:
            assert at_the_end, f"no counter-order for a {order.side} at level {order.level}"
            return
        step = 1 if order.side is Side.BUY else -1
        assert counter.level == order.level + step
        assert counter.side is order.side.opposite
        self.place(counter, from_grid_buy=order.side is Side.BUY)

    def cycle_clears_fees(self, sell_level: int) -> bool:
        """Whether the spacing into `sell_level` covers two maker fees with room for 8-place rounding."""
        levels = self.plan.levels
        ratio = levels[sell_level] / levels[sell_level - 1]
        return ratio * (1 - MAKER_FEE) ** 2 > 1 + Decimal("0.0001")

    # -- what a trader can count on -----------------------------------------------------------
    def assert_invariants(self) -> None:
        investment = self.case.params.investment
        sells = [r.order for r in self.orders.values() if r.order.side is Side.SELL]
        buys = [r.order for r in self.orders.values() if r.order.side is Side.BUY]
        # Never sells base it does not hold.
        assert self.base >= 0
        assert sum((s.amount for s in sells), ZERO) <= self.base
        # Never has more quote at stake than it was given plus what it earned.
        assert self.quote >= 0, f"overspent by {-self.quote}"
        assert self.locked + self.cost_held <= investment + self.realized
        # The books balance: free + locked + invested quote is the investment plus realized profit.
        assert self.quote + self.locked + self.cost_held == investment + self.realized
        assert self.locked == sum((b.price * b.amount for b in buys), ZERO)
        # Realized profit is the sum of the completed sells' profit.
        assert self.realized == sum(self.sell_profits, ZERO)
        # The ladder: at most one order per level (the dict key), never more than levels - 1,
        # the level of the latest fill stays empty, buys under the price and sells over it.
        assert len(self.orders) <= len(self.plan.levels) - 1
        if self.last_fill_level is not None:
            assert self.last_fill_level not in self.orders
        assert all(b.price < self.price for b in buys)
        assert all(s.price > self.price for s in sells)
        assert all(b.amount == self.plan.quantity for b in buys)
        # Only the budget may ever refuse a counter-order: the filters were checked at planning.
        assert {r.rule for r in self.refusals} <= {"INVESTMENT"}


@st.composite
def grid_and_path(draw: st.DrawFn) -> tuple[GridCase, list[Decimal]]:
    case = draw(grid_cases())
    tick = case.rules.tick_size
    lower, upper = case.params.lower, case.params.upper
    # Prices inside the range and up to 3% outside it, on the tick: jumps anywhere, mixed with small
    # moves of up to about three level gaps, which make the price oscillate through a few levels.
    low_ticks = int((lower * Decimal("0.97")) / tick)
    high_ticks = int((upper * Decimal("1.03")) / tick)
    gap_ticks = max(1, (high_ticks - low_ticks) // case.params.levels)
    moves = st.lists(
        st.one_of(
            st.tuples(st.just("jump"), st.integers(low_ticks, high_ticks)),
            st.tuples(st.just("step"), st.integers(-3 * gap_ticks, 3 * gap_ticks)),
        ),
        min_size=1,
        max_size=60,
    )
    position = int(case.start_price / tick)
    path: list[Decimal] = []
    for kind, value in draw(moves):
        position = value if kind == "jump" else min(high_ticks, max(low_ticks, position + value))
        path.append(position * tick)
    return case, path


@settings(max_examples=200, deadline=None)
@given(scenario=grid_and_path())
def test_the_grid_keeps_its_promises_over_any_price_path(scenario: tuple[GridCase, list[Decimal]]) -> None:
    case, path = scenario
    planned = plan_grid(case.params, case.rules, case.start_price, maker_fee=MAKER_FEE, taker_fee=TAKER_FEE)
    assume(not isinstance(planned, Failure))
    plan = planned.unwrap()
    sim = GridSimulation(
        case=case,
        plan=plan,
        limits=RiskLimits(investment=case.params.investment, max_open_orders=case.params.levels - 1),
        price=case.start_price,
        quote=case.params.investment,
    )
    sim.start()
    for price in path:
        sim.move_to(price)
    event(f"fills: {'0' if sim.fills == 0 else '1-20' if sim.fills <= 20 else '>20'}")
    event(f"counter-orders refused: {'none' if not sim.refusals else 'some'}")


def started(params: GridParams, start: Decimal) -> GridSimulation:
    case = GridCase(btc_usdt_rules(), params, start)
    plan = plan_grid(params, case.rules, start, maker_fee=MAKER_FEE, taker_fee=TAKER_FEE).unwrap()
    sim = GridSimulation(
        case=case,
        plan=plan,
        limits=RiskLimits(investment=params.investment, max_open_orders=params.levels - 1),
        price=start,
        quote=params.investment,
    )
    sim.start()
    return sim


def test_a_round_trip_across_the_whole_ladder_books_a_profit() -> None:
    """Down to the bottom and back to the top: every level bought once and sold one level up."""
    params = GridParams(Decimal("90000"), Decimal("110000"), 11, Spacing.ARITHMETIC, Decimal("2000"))
    sim = started(params, Decimal("100000"))
    sim.move_to(Decimal("89000"))
    assert sim.fills == 5  # the five buys
    assert sorted(sim.orders) == list(range(1, 11))  # all sells now; the bottom level is empty
    assert sim.last_fill_level == 0
    sim.move_to(Decimal("111000"))
    assert sim.fills == 15  # and ten sells
    assert sorted(sim.orders) == list(range(10))  # all buys; the top level is empty
    assert len(sim.sell_profits) == 10
    assert sim.realized > 0
    assert not sim.refusals


def test_a_price_oscillating_across_one_level_keeps_cycling() -> None:
    params = GridParams(Decimal("95000"), Decimal("105000"), 11, Spacing.ARITHMETIC, Decimal("1000"))
    sim = started(params, Decimal("100000"))
    for _ in range(100):
        sim.move_to(Decimal("98999"))
        sim.move_to(Decimal("100001"))
    assert not sim.refusals
    assert len(sim.sell_profits) == 100
