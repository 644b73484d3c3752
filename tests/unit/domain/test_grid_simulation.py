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

from hypothesis import assume, event, example, given, settings
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
    PROFILES,
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
    # The leftover base such a sell carries on top of what its buy received, and that base's share
    # of the leftover's cost at the leftover's unit cost: the crumb was bought elsewhere, at another
    # price, so the cycle's promise is made over the rest of the sell.
    crumb: Leftover = NO_LEFTOVER


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

    def place(self, planned: PlannedOrder, *, from_grid_buy: bool, crumb: Leftover = NO_LEFTOVER) -> bool:
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
        self.orders[planned.level] = Resting(planned, from_grid_buy, crumb)
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
        crumb = NO_LEFTOVER
        if order.side is Side.BUY:
            received = fee_after(order.amount, MAKER_FEE)
            carried = self.leftover
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
            if counter is not None and counter.amount > received:
                # Topped up from the leftover: never by more than this buy's own base fee.
                assert counter.amount - received <= order.amount - received
                crumb_base = counter.amount - received
                crumb = Leftover(crumb_base, carried.cost * crumb_base / carried.base)
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
                # The base the cycle bought itself sells at a profit; a crumb carried along may add
                # its own gain or loss (it cost what the leftover paid for it), nothing more.
                topped = resting.crumb
                own_profit = proceeds * (order.amount - topped.base) / order.amount - (
                    order.cost_basis - topped.cost
                )
                assert own_profit > 0, (
                    f"a completed cycle into level {order.level} lost {own_profit} on its own base "
                    f"(profit {profit}, carrying {topped.base} leftover base that cost {topped.cost})"
                )
                if profit <= 0:
                    event("a cycle lost only what a dearer carried crumb cost")
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
        self.place(counter, from_grid_buy=order.side is Side.BUY, crumb=crumb)

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
def crumb_heavy_cases(draw: st.DrawFn) -> GridCase:
    """Grids where the leftover base is a large share of every sell and the cycles are thin: a
    whole-unit step, a few units per level (the start's purchase, rounded up to a unit, leaves most
    of a unit over), and levels snapped one to three ticks apart, just wider than the fees."""
    profile = draw(st.sampled_from([p for p in PROFILES if p.rules.step_size == 1]))
    rules = profile.rules
    # Adjacent levels `gap` ticks and up to 0.9 tick more apart: snapped, `gap` or `gap + 1` ticks.
    gap = draw(st.integers(1, 3))
    raw_gap_tenths = 10 * gap + draw(st.integers(0, 9))
    # A gap of `gap` ticks is 0.21%..0.67% of the price: just over the 0.2% round trip.
    least, most = max(profile.min_center_ticks, 150 * gap), min(profile.max_center_ticks, 475 * gap)
    center = draw(st.integers(least, max(least, most)))
    levels = draw(st.integers(3, 40))
    span = raw_gap_tenths * (levels - 1) // 10
    lower_ticks = center - span * draw(st.integers(20, 80)) // 100
    lower, upper = lower_ticks * rules.tick_size, (lower_ticks + span) * rules.tick_size
    per_level = rules.ceil_amount(max(rules.min_qty, rules.min_notional / lower) * Decimal("1.01")) + 2
    investment = (per_level * upper * levels * draw(st.integers(100, 400)) / 100).quantize(Decimal("0.01"))
    start_ticks = draw(st.integers(lower_ticks, lower_ticks + span))
    params = GridParams(lower, upper, levels, draw(st.sampled_from(Spacing)), investment)
    return GridCase(rules, params, start_ticks * rules.tick_size)


@st.composite
def grid_and_path(
    draw: st.DrawFn, cases: st.SearchStrategy[GridCase] | None = None
) -> tuple[GridCase, list[Decimal]]:
    case = draw(cases if cases is not None else grid_cases())
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


# Whole-unit tick and step (BNB/USDT): levels 396 and 397 snap one tick apart, 4 BNB per level, and
# the start buys 65 BNB for 64.064 needed, leaving a 0.935 BNB crumb that cost 398.40 a unit. The
# drop fills the buys at 396 and 394; the rise sells at 396 and 397, each topping up its 3.996 BNB
# with 0.004 BNB of that crumb. Pooling the crumb's cost into the sell at 397 made it lose 0.69.
WHOLE_UNIT_STEP_CRUMB = (
    GridCase(
        MarketRules(
            symbol="BNB/USDT",
            base_asset="BNB",
            quote_asset="USDT",
            tick_size=Decimal("1"),
            step_size=Decimal("1"),
            min_qty=Decimal("1"),
            min_notional=Decimal("5"),
            max_num_orders=200,
        ),
        GridParams(Decimal("394"), Decimal("425"), 19, Spacing.ARITHMETIC, Decimal("32300")),
        Decimal("398"),
    ),
    [Decimal("382"), Decimal("397")],
)


@settings(max_examples=200, deadline=None)
@given(scenario=grid_and_path())
@example(scenario=WHOLE_UNIT_STEP_CRUMB)
def test_the_grid_keeps_its_promises_over_any_price_path(scenario: tuple[GridCase, list[Decimal]]) -> None:
    run_the_path(scenario)


@settings(max_examples=200, deadline=None)
@given(scenario=grid_and_path(crumb_heavy_cases()))
def test_a_leftover_bought_elsewhere_never_costs_a_cycle_its_profit(
    scenario: tuple[GridCase, list[Decimal]],
) -> None:
    """The regime of the example above, searched on purpose: the general grids rarely reach it."""
    run_the_path(scenario)


def run_the_path(scenario: tuple[GridCase, list[Decimal]]) -> None:
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


def started(params: GridParams, start: Decimal, rules: MarketRules | None = None) -> GridSimulation:
    case = GridCase(rules or btc_usdt_rules(), params, start)
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


def test_a_leftover_bought_at_start_tops_up_a_cycle_at_its_own_cost() -> None:
    """The example above, by the numbers. The start buys 65 BNB at 398 for the 16 sells' 64: 64.935
    arrive, and the 0.935 BNB over cost 398.40 a unit. A buy of 4 BNB at 396 receives 3.996; its
    sell at 397 sells 4, the last 0.004 from the leftover at 398.40: it cost 1584 + 1.59."""
    case, path = WHOLE_UNIT_STEP_CRUMB
    sim = started(case.params, case.start_price, case.rules)
    assert (sim.plan.quantity, sim.plan.base_to_buy) == (Decimal("4"), Decimal("65"))
    start_unit_cost = Decimal("25870") / Decimal("64.935")
    assert sim.leftover.base == Decimal("0.935")
    for price in path:
        sim.move_to(price)
    # The sells at 396 and 397 of the buys at 394 and 396, each topped up with 0.004 of the leftover.
    assert sim.sell_profits == [Decimal("4.82240641"), Decimal("0.81840641")]
    # What is left of the leftover still costs what the start paid a unit (the 16 initial sells
    # rounded their costs to 8 places).
    assert sim.leftover.base == Decimal("0.927")
    assert abs(sim.leftover.cost - sim.leftover.base * start_unit_cost) < Decimal("0.000001")
