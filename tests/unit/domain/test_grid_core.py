"""The grid core's guards, one story each: what a trader would see (orders placed, owed, crossed,
held, refused, replaced; what is booked; position and realized profit).

The stateful test (test_grid_core_stateful.py) checks the promises under any story; these pin
each guard down with a small, fixed one, so that a guard no test misses is one the mutation pass
(`make mutation`, benchmarks/MUTATION.md) proves. Direct core calls, no mocks.

The ladder: levels 100, 110, 120, 130, 140, 0.1 BTC a level, the price at 120 (level 2 empty),
buys at 100 and 110, sells at 130 and 140 carrying 11.5 USDT of cost each.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from domain.grid import NO_LEFTOVER, Leftover, PlannedOrder, client_order_id
from domain.grid_core import (
    CancelOrder,
    CoreConfig,
    Decision,
    GridCore,
    Note,
    PlaceOrder,
    venue_order_key,
)
from domain.models import (
    ZERO,
    BookedFill,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    TrackedOrder,
)
from domain.risk import MarketState, MarketStateThresholds, RiskLimits, StopDecision

from .factories import MAKER_FEE, TAKER_FEE, btc_usdt_rules

RULES = btc_usdt_rules()
RUN_ID = "0123456789abcdef"
LEVELS = tuple(Decimal(p) for p in ("100", "110", "120", "130", "140"))
Q = Decimal("0.1")
START = Decimal("120")
SELL_COST = Decimal("11.5")  # what the 0.1 BTC each starting sell carries cost
T0 = datetime(2026, 1, 1, tzinfo=UTC)
D = Decimal
CENT = D("0.01")  # a tight spread
# The log lines the core asks for: the shell logs each note as log.<severity>(event, **fields);
# operators alert on the severities and the e2e tests wait on the events and read their fields.
NOTES: dict[str, tuple[str, set[str]]] = {
    "order placed": ("info", {"order", "side", "level", "price", "amount"}),
    "fill": (
        "info",
        {
            "order",
            "side",
            "level",
            "price",
            "amount",
            "fee",
            "fee_asset",
            "realized_pnl",
            "total_realized_pnl",
            "inferred",
        },
    ),
    "order held": ("info", {"order", "level", "rule", "reason"}),
    "order refused by a risk rule": ("error", {"order", "rule", "reason"}),
    "venue refused the order": ("error", {"order", "level", "reason"}),
    "order not sent; will retry": ("warning", {"order", "reason"}),
    "market state changed": ("warning", {"previous", "state", "price"}),
    "counter-order owed: its level still holds an order": ("info", {"order", "level", "side", "holder"}),
    "owed counter-order goes out: its level is free": ("info", {"order", "level"}),
    "withdrawing an order to cross it with an owed counter-order": ("info", {"order"}),
    "withdrawal found the order gone: the counter-order stays owed": ("info", {"order"}),
    "a buy and a sell at one level cancel out: crossed": (
        "info",
        {"level", "withdrawn", "sell_to", "buy_to"},
    ),
    "the venue reused a trade id booked for another order (was it reset?): not booked": (
        "error",
        {"trade_id", "order", "booked_on"},
    ),
    "order gone; what it had left is under the market's minimum: countered as executed": (
        "warning",
        {"order", "level", "executed", "reason"},
    ),
    "order gone; what it had left is under the market's minimum: kept at what it executed until its trades come": (
        "warning",
        {"order", "level", "executed", "reason"},
    ),
    "order gone from the venue; placing what it had left again": (
        "warning",
        {"order", "replacement", "level", "amount", "reason"},
    ),
    "order filled while away; its trades are missing: inferring": ("warning", {"order"}),
    "fill of no active order of this grid ignored": ("debug", {"trade_id"}),
    "trade already booked": ("debug", {"trade_id", "order"}),
    "fill of an order never sent ignored": ("error", {"order", "trade_id"}),
    "fill past the order's amount ignored": ("error", {"order", "trade_id", "booked", "amount"}),
    "no counter-order at the end of the ladder": ("info", {"level", "side"}),
    "halted: no counter-order": ("info", {"level"}),
    "risk stop: halting the grid": ("warning", {"reason"}),
    "grid closed: cancelling its orders": ("warning", {"reason"}),
}
BUY, SELL = Side.BUY, Side.SELL


def cid(level: int, seq: int = 0) -> str:
    return client_order_id(RUN_ID, level, seq)


def ladder() -> list[PlannedOrder]:
    return [
        PlannedOrder(0, BUY, LEVELS[0], Q),
        PlannedOrder(1, BUY, LEVELS[1], Q),
        PlannedOrder(3, SELL, LEVELS[3], Q, SELL_COST),
        PlannedOrder(4, SELL, LEVELS[4], Q, SELL_COST),
    ]


def placed(decision: Decision) -> list[str]:
    return [c.order.client_order_id for c in decision.commands if isinstance(c, PlaceOrder)]


def cancels(decision: Decision) -> list[str]:
    return [c.order.client_order_id for c in decision.commands if isinstance(c, CancelOrder)]


def state(desk: Desk) -> MarketState:
    return desk.core.market_state


def events(decision: Decision) -> list[str]:
    return [n.event for n in decision.notes]


class Desk:
    """A grid core, the books a shell would persist from its decisions, and a venue's clock."""

    def __init__(self, *, taker_fee: Decimal = TAKER_FEE, **limits: object) -> None:
        risk: dict[str, object] = {"investment": D("100000"), "max_open_orders": 50, **limits}
        self.config = CoreConfig(
            run_id=RUN_ID,
            symbol=RULES.symbol,
            rules=RULES,
            levels=LEVELS,
            quantity=Q,
            limits=RiskLimits(**risk),  # type: ignore[arg-type]
            maker_fee=MAKER_FEE,
            taker_fee=taker_fee,
        )
        self.core = GridCore(self.config)
        self.now = T0
        self.orders: dict[str, TrackedOrder] = {}
        self.fills: dict[str, BookedFill] = {}
        self.every_order: dict[str, TrackedOrder] = {}
        self.notes: list[Note] = []
        self._trade_ids = itertools.count(1)
        self.core.observe(self.ticker(START))

    # ------------------------------------------------------------------ the clock and the market
    def tick(self, seconds: int = 1) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now

    def ticker(self, price: Decimal, *, spread: Decimal = CENT) -> Ticker:
        return Ticker(RULES.symbol, price - spread, price + spread, price, self.now)

    # ------------------------------------------------------------------ the shell's part
    def book(self, decision: Decision) -> Decision:
        """Persist a decision as the shell does: retracted fills out, new fills in, orders put.
        What it books is of this run and stamped with the event's time (every event here happens
        at `now`), and every note names a log method the shell can call."""
        for note in decision.notes:
            assert note.event in NOTES, note
            assert (note.severity, set(note.fields)) == NOTES[note.event], note
            assert all(v is not None and v != "None" for v in note.fields.values()), note
            self.notes.append(note)
        for trade_id in decision.retracted:
            assert trade_id in self.fills, f"retracted {trade_id}, never booked"
            del self.fills[trade_id]
        for booked in decision.fills:
            assert booked.fill.trade_id not in self.fills, f"{booked.fill.trade_id} booked twice"
            assert booked.run_id == RUN_ID
            if booked.fill.is_inferred and booked.fill.trade_id not in decision.retracted:  # a new estimate
                assert (booked.fill.timestamp, booked.fill.symbol) == (self.now, RULES.symbol)
            self.fills[booked.fill.trade_id] = booked
        for order in decision.added.values():
            assert order.created_at == self.now, order
        for order in [*decision.added.values(), *decision.updated.values()]:
            assert (order.run_id, order.symbol, order.updated_at) == (RUN_ID, RULES.symbol, self.now), order
            self.orders[order.client_order_id] = order
            self.every_order[order.client_order_id] = order
        return decision

    def accept(self, decision: Decision) -> Decision:
        """Book a decision, then have the venue accept every order it places."""
        return self.answer(self.book(decision))

    def answer(self, decision: Decision) -> Decision:
        """The venue accepts every order a booked decision places."""
        for command in decision.commands:
            if isinstance(command, PlaceOrder):
                order_id = f"x{command.order.client_order_id[-9:]}"
                self.book(
                    self.core.accepted(command.order.client_order_id, order_id, OrderStatus.OPEN, self.now)
                )
        return decision

    def start(self) -> Decision:
        return self.accept(self.core.lay(ladder(), self.now))

    def on_ticker(self, price: Decimal, *, spread: Decimal = CENT) -> Decision:
        self.tick()
        return self.book(self.core.on_ticker(self.ticker(price, spread=spread)))

    # ------------------------------------------------------------------ the venue's news
    def trade(
        self,
        order_cid: str,
        amount: Decimal | None = None,
        *,
        price: Decimal | None = None,
        trade_id: str | None = None,
        at: datetime | None = None,
        fee: Decimal | None = None,
    ) -> Fill:
        """A trade of an order at its own price (maker fee in the asset received)."""
        order = self.core.order(order_cid) or self.orders[order_cid]
        amount = order.amount if amount is None else amount
        price = order.price if price is None else price
        assert price is not None
        if fee is None:
            fee = amount * MAKER_FEE if order.side is BUY else amount * price * MAKER_FEE
        return Fill(
            trade_id=trade_id or str(next(self._trade_ids)),
            order_id=order.exchange_order_id or "",
            client_order_id=order_cid,
            symbol=RULES.symbol,
            side=order.side,
            price=price,
            amount=amount,
            fee=fee,
            fee_asset=RULES.base_asset if order.side is BUY else RULES.quote_asset,
            timestamp=at or self.tick(),
        )

    def deliver(self, *fills: Fill) -> Decision:
        return self.book(self.core.apply_fills(list(fills), self.now))

    def fill(self, order_cid: str, amount: Decimal | None = None, **kwargs: object) -> Decision:
        return self.deliver(self.trade(order_cid, amount, **kwargs))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ what a trader checks
    def status(self, order_cid: str) -> OrderStatus:
        return self.orders[order_cid].status

    def grid(self) -> dict[int, tuple[Side, OrderStatus]]:
        return {o.level: (o.side, o.status) for o in self.core.grid_orders()}

    def owed(self) -> list[tuple[int, Side]]:
        return [(o.level, o.side) for o in self.core.owed_orders()]

    def booked_amount(self, order_cid: str) -> Decimal:
        return sum((b.fill.amount for b in self.fills.values() if b.fill.client_order_id == order_cid), ZERO)

    def position_from_books(self) -> Decimal:
        total = ZERO
        for b in self.fills.values():
            f = b.fill
            if f.side is BUY:
                total += f.amount - (f.fee if f.fee_asset == RULES.base_asset else ZERO)
            else:
                total -= f.amount
        return total

    def realized_from_books(self) -> Decimal:
        return sum((b.realized_pnl for b in self.fills.values()), ZERO)

    def assert_books_match(self) -> None:
        """Rule 7: the core's position and realized profit are the sums over what it booked."""
        assert self.core.position == self.position_from_books()
        assert self.core.realized == self.realized_from_books()
        assert self.core.fills_booked == len(self.fills)


@pytest.fixture
def desk() -> Desk:
    d = Desk()
    d.start()
    return d


# ================================================================================ the ladder
def test_lay_sends_the_ladder_nearest_the_market_first() -> None:
    desk = Desk()
    decision = desk.core.lay(ladder(), desk.now)
    # 110 and 130 are 10 away, 100 and 140 are 20 away; a tie goes to the lower level.
    assert placed(decision) == [cid(1), cid(3), cid(0), cid(4)]
    assert all(o.status is OrderStatus.PENDING for o in decision.added.values())
    assert decision.added[cid(3)].cost_basis == SELL_COST
    assert decision.added[cid(0)].type is OrderType.LIMIT
    assert decision.leftover is None


def test_lay_keeps_the_start_crumb() -> None:
    desk = Desk()
    crumb = Leftover(D("0.00000500"), D("0.0006"))
    decision = desk.core.lay(ladder(), desk.now, crumb)
    assert decision.leftover == crumb
    assert desk.core.leftover == crumb
    assert decision.needs_booking


def test_accepted_orders_are_open_and_placing_them_again_changes_nothing(desk: Desk) -> None:
    assert desk.grid() == {
        0: (BUY, OrderStatus.OPEN),
        1: (BUY, OrderStatus.OPEN),
        3: (SELL, OrderStatus.OPEN),
        4: (SELL, OrderStatus.OPEN),
    }
    venue_id = desk.orders[cid(1)].exchange_order_id
    again = desk.core.accepted(cid(1), "another-id", OrderStatus.OPEN, desk.tick())
    assert again.updated[cid(1)].exchange_order_id == venue_id  # the first venue id stands
    assert "order placed" not in events(again)
    assert desk.core.accepted("gb-unknown", "x", OrderStatus.OPEN, desk.now).needs_booking is False


def test_a_ticker_with_nothing_held_places_nothing(desk: Desk) -> None:
    decision = desk.on_ticker(D("121"))
    assert decision.commands == []
    assert not decision.needs_booking


def test_a_place_command_sends_the_order_as_booked(desk: Desk) -> None:
    order = desk.orders[cid(1)]
    assert PlaceOrder(order).request() == OrderRequest(
        RULES.symbol, BUY, OrderType.LIMIT, Q, cid(1), D("110")
    )


def test_only_a_booked_pending_order_is_still_wanted_on_the_venue(desk: Desk) -> None:
    desk.book(desk.core.gone(cid(1), desk.tick(), reason="lost"))
    assert desk.core.wants_placed(cid(1, 1))
    assert not desk.core.wants_placed(cid(0))  # open already
    assert not desk.core.wants_placed(cid(1))  # gone
    assert not desk.core.wants_placed("gb-nobody")


def test_an_order_reported_open_again_keeps_its_partial_fill(desk: Desk) -> None:
    desk.fill(cid(1), D("0.04"))
    again = desk.book(desk.core.accepted(cid(1), "x", OrderStatus.OPEN, desk.tick()))  # a reconciliation
    assert again.updated[cid(1)].status is OrderStatus.PARTIALLY_FILLED
    assert again.updated[cid(1)].filled == D("0.04")


def test_a_fill_before_the_acceptance_gives_the_order_its_venue_id() -> None:
    desk = Desk()
    desk.book(desk.core.lay(ladder(), desk.now))
    early = Fill(
        "5", "v-77", cid(1), RULES.symbol, BUY, D("110"), D("0.04"), D("0.00004"), "BTC", desk.tick()
    )
    decision = desk.deliver(early)
    assert decision.updated[cid(1)].exchange_order_id == "v-77"
    assert decision.updated[cid(1)].status is OrderStatus.PARTIALLY_FILLED


# ================================================================================ fills and counters
def test_a_filled_buy_places_a_sell_one_level_up_for_the_base_received(desk: Desk) -> None:
    decision = desk.fill(cid(1))
    sell = decision.added[cid(2)]
    assert (sell.side, sell.price, sell.level) == (SELL, D("120"), 2)
    assert sell.amount == D("0.0999")  # 0.1 bought, 0.0001 BTC fee
    assert sell.cost_basis == D("11.00")
    assert sell.parent_client_order_id == cid(1)
    assert placed(decision) == [cid(2)]
    assert desk.status(cid(1)) is OrderStatus.FILLED
    assert desk.core.position == D("0.0999")
    assert desk.core.realized == ZERO
    assert desk.core.leftover == NO_LEFTOVER
    desk.assert_books_match()


def test_a_filled_sell_books_its_profit_and_places_a_buy_one_level_down(desk: Desk) -> None:
    decision = desk.fill(cid(3))
    buy = decision.added[cid(2)]
    assert (buy.side, buy.price, buy.amount, buy.cost_basis) == (BUY, D("120"), Q, ZERO)
    assert buy.parent_client_order_id == cid(3)
    # 13 USDT for 0.1 BTC, 0.013 USDT fee, 11.5 USDT of cost
    assert [b.realized_pnl for b in decision.fills] == [D("1.487")]
    assert desk.core.realized == D("1.487")
    assert desk.core.position == D("-0.1")
    desk.assert_books_match()


def test_a_sell_filled_in_parts_books_the_profit_of_each_part_on_its_share_of_the_cost(desk: Desk) -> None:
    desk.fill(cid(3), D("0.04"))
    assert desk.status(cid(3)) is OrderStatus.PARTIALLY_FILLED
    assert desk.orders[cid(3)].filled == D("0.04")
    # 5.2 - 0.0052 fee - 4.6 cost
    assert desk.core.realized == D("0.5948")
    desk.fill(cid(3), D("0.06"))
    assert desk.core.realized == D("1.487")
    desk.assert_books_match()


def test_a_crumb_under_the_step_is_carried_into_the_next_sell(desk: Desk) -> None:
    decision = desk.fill(cid(1), fee=D("0.000015"))  # 0.099985 received: 0.09998 sellable
    sell = decision.added[cid(2)]
    assert sell.amount == D("0.09998")
    assert decision.leftover == desk.core.leftover
    assert desk.core.leftover.base == D("0.000005")
    assert desk.core.leftover.cost == D("11.0") - sell.cost_basis
    assert desk.core.leftover.cost > 0


def test_a_buy_filled_in_parts_is_countered_once_it_completes(desk: Desk) -> None:
    first = desk.fill(cid(1), D("0.04"))
    assert placed(first) == []
    assert desk.status(cid(1)) is OrderStatus.PARTIALLY_FILLED
    assert 1 in desk.grid()  # still on its level
    second = desk.fill(cid(1), D("0.06"))
    assert placed(second) == [cid(2)]
    assert second.added[cid(2)].amount == D("0.0999")
    assert 1 not in desk.grid()


def test_a_buy_whose_fee_is_paid_in_another_asset_sells_all_it_bought(desk: Desk) -> None:
    bnb = desk.trade(cid(1))
    decision = desk.deliver(replace(bnb, fee=D("0.0005"), fee_asset="BNB"))
    assert decision.added[cid(2)].amount == Q
    assert desk.core.position == Q
    desk.assert_books_match()


# ================================================================================ rule 1: each trade once, venue order
def test_a_trade_delivered_twice_in_one_batch_is_booked_once(desk: Desk) -> None:
    fill = desk.trade(cid(1), D("0.04"))
    decision = desk.deliver(fill, fill)
    assert [b.fill.trade_id for b in decision.fills] == [fill.trade_id]
    assert "trade already booked" in events(decision)
    assert desk.orders[cid(1)].filled == D("0.04")
    assert desk.core.position == D("0.04") - D("0.00004")
    desk.assert_books_match()


def test_a_trade_delivered_again_in_a_later_batch_is_booked_once_and_countered_once(desk: Desk) -> None:
    first = desk.trade(cid(1), D("0.04"))
    rest = desk.trade(cid(1), D("0.06"))
    desk.deliver(first)
    decision = desk.deliver(first, rest)
    assert [b.fill.trade_id for b in decision.fills] == [rest.trade_id]
    assert placed(decision) == [cid(2)]
    again = desk.deliver(first, rest)  # the order is done: old news changes nothing
    assert again.fills == []
    assert again.commands == []
    assert desk.core.fills_booked == 2
    desk.assert_books_match()


def test_reversed_delivery_books_and_decides_as_in_order_delivery() -> None:
    """The price falls through 110 then 100: the buy at 110 fills before the one at 100. Delivered
    in reverse, the core still applies them in venue order: the 110 buy frees its level before
    the 100 buy's counter-sell needs it."""

    def run(reverse: bool) -> tuple[Desk, Decision]:
        desk = Desk()
        desk.start()
        at = desk.tick()
        fills = [desk.trade(cid(1), at=at, trade_id="9"), desk.trade(cid(0), at=at, trade_id="10")]
        return desk, desk.deliver(*(reversed(fills) if reverse else fills))

    in_order, forward = run(reverse=False)
    reversed_, backward = run(reverse=True)
    assert [b.fill.trade_id for b in backward.fills] == ["9", "10"]  # 9 before 10, as numbers
    assert placed(backward) == placed(forward) == [cid(2), cid(1, 1)]  # 120 is nearer 120
    assert cancels(backward) == cancels(forward) == []
    assert reversed_.orders == in_order.orders
    assert reversed_.fills == in_order.fills
    assert backward.added[cid(1, 1)].side is SELL
    assert reversed_.owed() == []


def test_venue_order_is_trade_time_then_trade_id() -> None:
    desk = Desk()
    desk.start()
    at = desk.now
    later = at + timedelta(milliseconds=1)
    a = desk.trade(cid(1), trade_id="10", at=at)
    b = desk.trade(cid(1), trade_id="9", at=later)
    c = desk.trade(cid(1), trade_id="11", at=at)
    inferred = desk.trade(cid(1), trade_id="inferred-x-0", at=at)
    assert sorted([b, c, a, inferred], key=venue_order_key) == [inferred, a, c, b]


def test_a_trade_id_that_is_not_a_number_sorts_before_numbered_ones_at_the_same_time() -> None:
    desk = Desk()
    desk.start()
    zero = desk.trade(cid(1), trade_id="0", at=desk.now)
    text = desk.trade(cid(1), trade_id="inferred-x-0", at=desk.now)
    assert sorted([zero, text], key=venue_order_key) == [text, zero]


# ================================================================================ rule 2: never past the amount
def test_a_fill_past_the_order_amount_is_ignored(desk: Desk) -> None:
    desk.fill(cid(1), D("0.06"))
    decision = desk.fill(cid(1), D("0.06"))
    assert decision.fills == []
    assert "fill past the order's amount ignored" in events(decision)
    assert desk.orders[cid(1)].filled == D("0.06")
    assert desk.status(cid(1)) is OrderStatus.PARTIALLY_FILLED
    assert placed(decision) == []
    done = desk.fill(cid(1), D("0.04"))  # exactly what is left completes it
    assert desk.status(cid(1)) is OrderStatus.FILLED
    assert placed(done) == [cid(2)]
    desk.assert_books_match()


def test_fills_of_unknown_orders_are_ignored(desk: Desk) -> None:
    stray = Fill("77", "nobody", "gb-other-run", RULES.symbol, BUY, D("110"), Q, ZERO, "BTC", desk.now)
    decision = desk.deliver(stray)
    assert decision.fills == []
    assert desk.core.fills_booked == 0


def test_a_trade_without_client_id_is_matched_by_the_venue_order_id(desk: Desk) -> None:
    """A trade that names the venue's order id but not our client id is that order's trade: it
    completes the order, is countered, and is booked under the order's client id (so a restart
    finds it)."""
    fill = desk.trade(cid(1))
    anonymous = Fill(
        fill.trade_id,
        fill.order_id,
        "",
        RULES.symbol,
        BUY,
        fill.price,
        fill.amount,
        fill.fee,
        "BTC",
        fill.timestamp,
    )
    decision = desk.deliver(anonymous)
    assert [(b.fill.trade_id, b.fill.client_order_id) for b in decision.fills] == [(fill.trade_id, cid(1))]
    assert desk.status(cid(1)) is OrderStatus.FILLED
    assert placed(decision) == [cid(2)]
    assert desk.deliver(anonymous).fills == []  # and once only
    assert desk.core.position == D("0.0999")


# ================================================================================ rule 3: owed counter-orders
def _desk_with_a_buy_under_each_sell() -> Desk:
    """Buys at 100, 110, 120 and sells at 130, 140, all open: a filled buy at 120 owes its
    counter-sell to 130, where a sell already rests."""
    desk = Desk()
    planned = [
        PlannedOrder(0, BUY, LEVELS[0], Q),
        PlannedOrder(1, BUY, LEVELS[1], Q),
        PlannedOrder(2, BUY, LEVELS[2], Q),
        PlannedOrder(3, SELL, LEVELS[3], Q, SELL_COST),
        PlannedOrder(4, SELL, LEVELS[4], Q, SELL_COST),
    ]
    desk.accept(desk.core.lay(planned, desk.now))
    return desk


def test_a_counter_order_is_owed_while_its_level_holds_an_order_and_goes_out_when_it_frees() -> None:
    desk = _desk_with_a_buy_under_each_sell()
    decision = desk.fill(cid(2))
    owed = decision.added[cid(3, 1)]
    assert owed.status is OrderStatus.OWED
    assert (owed.side, owed.amount, owed.parent_client_order_id) == (SELL, D("0.0999"), cid(2))
    assert placed(decision) == []
    assert cancels(decision) == []  # a sell behind a sell: nothing to cross
    assert desk.owed() == [(3, SELL)]
    assert desk.grid()[3] == (SELL, OrderStatus.OPEN)
    # The sell at 130 fills: the level frees and the owed sell takes it at once.
    freed = desk.fill(cid(3))
    assert freed.updated[cid(3, 1)].status is OrderStatus.PENDING
    assert cid(3, 1) in placed(freed)
    assert desk.owed() == []
    assert desk.grid()[3] == (SELL, OrderStatus.PENDING)
    assert "owed counter-order goes out: its level is free" in events(freed)


def test_owed_counter_orders_go_out_oldest_first_one_per_free_level() -> None:
    desk = _desk_with_a_buy_under_each_sell()
    desk.fill(cid(2))  # owes a sell at 130
    desk.fill(cid(3), D("0.05"))  # the sell at 130 is half filled: still there
    assert desk.owed() == [(3, SELL)]
    decision = desk.fill(cid(3), D("0.05"))
    assert placed(decision).count(cid(3, 1)) == 1
    assert desk.owed() == []


def test_a_fill_of_an_owed_order_is_ignored() -> None:
    desk = _desk_with_a_buy_under_each_sell()
    desk.fill(cid(2))
    owed = desk.core.order(cid(3, 1))
    assert owed is not None
    fill = Fill("99", "x", cid(3, 1), RULES.symbol, SELL, D("130"), D("0.01"), ZERO, "USDT", desk.tick())
    decision = desk.deliver(fill)
    assert decision.fills == []
    assert "fill of an order never sent ignored" in events(decision)
    assert desk.owed() == [(3, SELL)]


def test_owed_counter_orders_at_one_level_go_out_one_by_one() -> None:
    desk = _desk_with_a_buy_under_each_sell()
    desk.fill(cid(2))  # owes a sell to 130
    desk.book(desk.core.lay([PlannedOrder(3, SELL, LEVELS[3], Q, SELL_COST)], desk.now))  # and another
    assert desk.owed() == [(3, SELL), (3, SELL)]
    first = desk.answer(desk.fill(cid(3)))
    assert placed(first) == [cid(2, 1), cid(3, 1)]  # the sell's own counter-buy, and the oldest owed
    assert desk.owed() == [(3, SELL)]
    second = desk.fill(cid(3, 1))
    assert cid(3, 2) in placed(second)
    assert desk.owed() == [(2, BUY)]  # the filled sell's counter-buy waits behind the buy at 120


def test_an_owed_order_at_one_level_does_not_stop_a_withdrawal_at_another() -> None:
    desk = _desk_with_a_buy_under_each_sell()
    desk.fill(cid(2))  # owes a sell to 130, behind a sell: nothing to withdraw there
    decision = desk.fill(cid(0))  # owes a sell to 110, facing a buy: withdrawn
    assert cancels(decision) == [cid(1)]


# ================================================================================ crossing
def _desk_in_maintenance_with_a_held_buy_at_110(desk: Desk) -> None:
    desk.book(desk.core.venue_unavailable(desk.tick()))
    assert desk.core.market_state is MarketState.MAINTENANCE
    decision = desk.book(desk.core.gone(cid(1), desk.tick(), reason="cancelled by hand"))
    assert placed(decision) == []  # the replacement is held: no orders in maintenance
    assert desk.grid()[1] == (BUY, OrderStatus.PENDING)


def test_a_held_order_of_the_other_side_is_crossed_at_once(desk: Desk) -> None:
    _desk_in_maintenance_with_a_held_buy_at_110(desk)
    held_buy = cid(1, 1)
    decision = desk.fill(cid(0))  # the buy at 100 fills: its sell goes to 110, which holds a held buy
    assert decision.updated[held_buy].status is OrderStatus.CANCELED
    assert cancels(decision) == []  # never sent: nothing to cancel on the venue
    # The sell moves up to 120 with the counter's amount and cost, the buy down to 100.
    sell = next(o for o in desk.core.grid_orders() if o.level == 2)
    buy = next(o for o in desk.core.grid_orders() if o.level == 0)
    assert (sell.side, sell.price, sell.amount, sell.cost_basis) == (SELL, D("120"), D("0.0999"), D("10.00"))
    assert (buy.side, buy.price, buy.amount) == (BUY, D("100"), Q)
    assert sell.parent_client_order_id == cid(0)
    assert buy.parent_client_order_id == held_buy
    assert 1 not in desk.grid()
    assert desk.owed() == []
    assert "a buy and a sell at one level cancel out: crossed" in events(decision)
    # Back from maintenance, both go out, nearest the market first.
    back = desk.on_ticker(D("118"))
    assert placed(back) == [sell.client_order_id, buy.client_order_id]


def test_a_held_sell_crossed_by_a_counter_buy_moves_up_with_its_own_cost() -> None:
    desk = Desk()
    desk.start()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.book(desk.core.gone(cid(3), desk.tick(), reason="cancelled by hand"))  # held sell at 130
    decision = desk.fill(cid(4))  # the sell at 140 fills: its buy goes to 130
    assert decision.updated[cid(3, 1)].status is OrderStatus.CANCELED
    sell = next(o for o in desk.core.grid_orders() if o.level == 4)
    buy = next(o for o in desk.core.grid_orders() if o.level == 2)
    assert (sell.side, sell.price, sell.amount, sell.cost_basis) == (SELL, D("140"), Q, SELL_COST)
    assert sell.parent_client_order_id == cid(3, 1)
    assert (buy.side, buy.price, buy.amount, buy.parent_client_order_id) == (BUY, D("120"), Q, cid(4))


def test_a_live_order_of_the_other_side_is_withdrawn_and_crossed_after_a_clean_cancel(desk: Desk) -> None:
    decision = desk.fill(cid(0))  # its sell is owed to 110, where a buy rests
    assert decision.added[cid(1, 1)].status is OrderStatus.OWED
    assert cancels(decision) == [cid(1)]
    assert placed(decision) == []
    again = desk.on_ticker(START)
    assert cancels(again) == []  # asked once
    crossed = desk.accept(desk.core.cancelled(cid(1), ZERO, desk.tick()))
    assert crossed.updated[cid(1)].status is OrderStatus.CANCELED
    assert crossed.updated[cid(1, 1)].status is OrderStatus.CANCELED  # the owed sell is used up
    assert set(crossed.added) == {cid(2), cid(0, 1)}  # crossed as it is: no successor
    sell, buy = crossed.added[cid(2)], crossed.added[cid(0, 1)]
    assert (sell.price, sell.amount, sell.cost_basis, sell.parent_client_order_id) == (
        D("120"),
        D("0.0999"),
        D("10.00"),
        cid(1, 1),
    )
    assert (buy.price, buy.amount, buy.parent_client_order_id) == (D("100"), Q, cid(1))
    assert desk.owed() == []
    assert desk.grid() == {
        0: (BUY, OrderStatus.OPEN),
        2: (SELL, OrderStatus.OPEN),
        3: (SELL, OrderStatus.OPEN),
        4: (SELL, OrderStatus.OPEN),
    }
    assert set(placed(crossed)) == {cid(0, 1), cid(2)}


def test_a_withdrawal_that_finds_the_order_no_longer_open_is_not_crossed(desk: Desk) -> None:
    desk.fill(cid(0))
    decision = desk.book(desk.core.cancelled(cid(1), None, desk.tick()))
    assert decision.commands == []
    assert not decision.needs_booking
    assert desk.owed() == [(1, SELL)]
    assert desk.grid()[1] == (BUY, OrderStatus.OPEN)
    assert cancels(desk.on_ticker(START)) == []  # not asked again
    # Its fills arrive: the buy completes, the level frees, the owed sell goes out; the buy's own
    # counter-sell goes to 120.
    done = desk.fill(cid(1))
    assert cid(1, 1) in placed(done)
    assert cid(2) in placed(done)
    assert desk.owed() == []


def test_a_withdrawal_that_reports_fills_crosses_what_the_order_had_left(desk: Desk) -> None:
    """The buy at 110 executed 0.03 before the cancel: what it had left (0.07) is crossed with the
    owed sell, so the sell moves to 120 and a buy of 0.07 goes to 100. That buy carries the 0.03's
    book: its counter-sell sells both, even when the 0.03's trade arrives after the cancel."""
    desk.fill(cid(0))  # owes its sell to 110, withdraws the buy there
    decision = desk.accept(desk.core.cancelled(cid(1), D("0.03"), desk.tick()))
    assert last_note(desk, "order gone from the venue; placing what it had left again")["reason"] == (
        "withdrawn after filling in part"
    )
    assert decision.updated[cid(1)].status is OrderStatus.CANCELED
    assert decision.updated[cid(1, 1)].status is OrderStatus.CANCELED  # the owed sell, used up
    successor = decision.added[cid(1, 2)]
    assert (successor.amount, successor.status, successor.parent_client_order_id) == (
        D("0.07"),
        OrderStatus.CANCELED,
        cid(1),
    )
    assert placed(decision) == [cid(2), cid(0, 1)]
    assert (decision.added[cid(2)].side, decision.added[cid(2)].amount) == (SELL, D("0.0999"))
    assert (decision.added[cid(0, 1)].side, decision.added[cid(0, 1)].amount) == (BUY, D("0.07"))
    assert desk.owed() == []
    late = desk.fill(cid(1), D("0.03"))  # the 0.03's trade, after the cancel
    assert [b.fill.amount for b in late.fills] == [D("0.03")]
    assert late.commands == []
    done = desk.fill(cid(0, 1))
    [sell] = done.added.values()
    assert (sell.level, sell.side, sell.amount, sell.cost_basis) == (1, SELL, D("0.0999"), D("10.3"))
    # Every BTC bought is on a sell or carried: none is stranded.
    on_sells = sum((o.amount for o in desk.core.grid_orders() if o.side is SELL and o.level in (1, 2)), ZERO)
    assert on_sells + desk.core.leftover.base == desk.core.position


def test_a_late_fill_of_a_withdrawn_order_after_its_remainder_completed_is_carried(desk: Desk) -> None:
    desk.fill(cid(0))
    desk.accept(desk.core.cancelled(cid(1), D("0.03"), desk.tick()))
    desk.answer(desk.fill(cid(0, 1)))  # the remainder's buy at 100 completes first: countered
    late = desk.fill(cid(1), D("0.03"))
    assert late.commands == [] and late.added == {}
    assert late.leftover == desk.core.leftover == Leftover(D("0.02997"), D("3.30"))


def test_a_cancel_outcome_of_an_order_not_being_withdrawn_decides_nothing(desk: Desk) -> None:
    decision = desk.book(desk.core.cancelled(cid(1), ZERO, desk.tick()))
    assert decision.commands == [] and not decision.needs_booking
    assert desk.grid()[1] == (BUY, OrderStatus.OPEN)


def test_an_order_that_completes_while_withdrawn_frees_its_level(desk: Desk) -> None:
    desk.fill(cid(0))
    done = desk.fill(cid(1))  # filled before the cancel reached it
    assert cid(1, 1) in placed(done)
    late = desk.book(desk.core.cancelled(cid(1), None, desk.tick()))
    assert late.commands == [] and not late.needs_booking


def test_an_owed_buy_one_level_under_the_top_withdraws_the_sell_there(desk: Desk) -> None:
    decision = desk.fill(cid(4))  # its buy is owed to 130, where a sell rests
    assert desk.owed() == [(3, BUY)]
    assert cancels(decision) == [cid(3)]
    crossed = desk.accept(desk.core.cancelled(cid(3), ZERO, desk.tick()))
    sell, buy = crossed.added[cid(4, 1)], crossed.added[cid(2)]
    assert (sell.price, sell.amount, sell.cost_basis, sell.parent_client_order_id) == (
        D("140"),
        Q,
        SELL_COST,
        cid(3),
    )
    assert (buy.price, buy.amount, buy.parent_client_order_id) == (D("120"), Q, cid(3, 1))


def test_an_owed_order_at_an_end_does_not_stop_a_withdrawal_further_in(desk: Desk) -> None:
    end = desk.book(desk.core.lay([PlannedOrder(0, SELL, LEVELS[0], Q, SELL_COST)], desk.now))
    assert desk.owed() == [(0, SELL)]
    assert cancels(end) == []  # the bottom: nothing to cross with
    inner = desk.book(desk.core.lay([PlannedOrder(1, SELL, LEVELS[1], Q, SELL_COST)], desk.now))
    assert cancels(inner) == [cid(1)]


def test_a_second_counter_owed_to_a_crossed_level_takes_the_level() -> None:
    desk = Desk()
    desk.start()
    desk.fill(cid(0))  # owes a sell to 110, withdraws the buy there
    desk.book(desk.core.lay([PlannedOrder(1, SELL, LEVELS[1], Q, SELL_COST)], desk.now))  # owed behind it
    assert desk.owed() == [(1, SELL), (1, SELL)]
    crossed = desk.book(desk.core.cancelled(cid(1), ZERO, desk.tick()))
    assert placed(crossed) == [cid(2), cid(1, 2), cid(0, 1)]
    assert desk.owed() == []
    assert desk.grid()[1] == (SELL, OrderStatus.PENDING)


def test_a_counter_sell_at_the_top_facing_a_held_buy_is_owed_not_crossed() -> None:
    desk = Desk()
    desk.accept(
        desk.core.lay([PlannedOrder(3, BUY, LEVELS[3], Q), PlannedOrder(4, BUY, LEVELS[4], Q)], desk.now)
    )
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.book(desk.core.gone(cid(4), desk.tick(), reason="lost"))  # held again at 140
    decision = desk.fill(cid(3))
    assert decision.added[cid(4, 2)].status is OrderStatus.OWED
    assert desk.owed() == [(4, SELL)]
    assert desk.grid()[4] == (BUY, OrderStatus.PENDING)


def test_an_order_held_by_a_risk_rule_is_not_crossed_until_its_hold_lifts() -> None:
    """A buy the panic holds waits, and the counter-sell is owed behind it. When the panic passes,
    the buy is an order never sent: it and the owed sell cancel out (crossed, the sell one level
    up, the buy one level down), instead of the buy going out for a pointless round trip."""
    desk = Desk()
    desk.on_ticker(START, spread=D("1"))  # panic: buys held
    desk.accept(desk.core.lay(ladder(), desk.now))
    desk.book(desk.core.lay([PlannedOrder(1, SELL, LEVELS[1], Q, SELL_COST)], desk.now))
    assert desk.owed() == [(1, SELL)]  # the buy at 110 is held by the panic: not crossed
    desk.tick(1000)
    calm = desk.book(desk.core.on_ticker(desk.ticker(D("104"))))
    assert cid(1) not in placed(calm)
    assert calm.updated[cid(1)].status is OrderStatus.CANCELED
    assert "a buy and a sell at one level cancel out: crossed" in events(calm)
    assert desk.grid()[2] == (SELL, OrderStatus.PENDING)  # the owed sell, one level up
    assert desk.owed() == [(0, BUY)]  # the buy, one level down, behind the buy at 100


def test_a_buy_sent_after_its_hold_lifted_but_put_off_is_crossed_at_once() -> None:
    """The panic passes and the held buy at 110 goes out; the venue goes down before it is sent.
    It is no longer held by a risk rule, only never sent: a counter-sell owed to its level
    crosses it at once."""
    desk = Desk()
    desk.on_ticker(START, spread=D("1"))  # panic: buys held
    desk.accept(desk.core.lay(ladder(), desk.now))
    desk.tick(1000)
    calm = desk.book(desk.core.on_ticker(desk.ticker(D("104"))))
    assert placed(calm) == [cid(0), cid(1)]
    desk.book(desk.core.accepted(cid(0), "x0", OrderStatus.OPEN, desk.now))
    desk.core.deferred(cid(1))  # its send was put off: never sent
    crossed = desk.fill(cid(0), price=D("100"))
    assert crossed.updated[cid(1)].status is OrderStatus.CANCELED
    assert cancels(crossed) == []


def test_a_buy_whose_send_was_put_off_is_crossed_at_once() -> None:
    """A buy whose send was put off (the venue went down before it) was never sent, so the
    counter-sell owed to its level crosses it at once, without a cancel."""
    desk = Desk()
    laid = desk.book(desk.core.lay(ladder(), desk.now))
    for command in laid.commands:
        assert isinstance(command, PlaceOrder)
        order = command.order.client_order_id
        if order == cid(1):
            desk.core.deferred(order)  # its send was put off: never sent
        else:
            desk.book(desk.core.accepted(order, f"x{order[-9:]}", OrderStatus.OPEN, desk.now))
    crossed = desk.fill(cid(0), price=D("100"))
    assert crossed.updated[cid(1)].status is OrderStatus.CANCELED
    assert cancels(crossed) == []


def _a_buy_at_110_withdrawn_after_filling_0_03(desk: Desk) -> Decision:
    """A sell is owed to 110 (laid there), the buy at 110 is withdrawn and executed 0.03 first:
    what it had left (0.07) crosses the owed sell and goes down to 100, carrying the 0.03's book."""
    desk.book(desk.core.lay([PlannedOrder(1, SELL, LEVELS[1], Q, SELL_COST)], desk.now))
    desk.fill(cid(1), D("0.03"))
    return desk.accept(desk.core.cancelled(cid(1), D("0.03"), desk.tick()))


def test_a_crossed_remainder_owed_behind_an_order_keeps_its_book_until_it_goes_out(desk: Desk) -> None:
    crossed = _a_buy_at_110_withdrawn_after_filling_0_03(desk)
    assert crossed.added[cid(0, 1)].status is OrderStatus.OWED  # 100 still holds the first buy
    released = desk.answer(desk.fill(cid(0)))
    assert cid(0, 1) in placed(released)
    done = desk.fill(cid(0, 1))
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis) == (
        1,
        D("0.0999"),
        D("10.3"),
    )  # 0.03 at 110, 0.07 at 100


def _a_buy_at_130_filled_0_03_with_a_sell_owed_behind_it() -> Desk:
    """A sell rests at 120 and a buy at 130; a sell is owed to 130; the buy has filled 0.03."""
    desk = Desk()
    desk.accept(
        desk.core.lay(
            [PlannedOrder(2, SELL, LEVELS[2], Q, SELL_COST), PlannedOrder(3, BUY, LEVELS[3], Q)], desk.now
        )
    )
    desk.book(desk.core.lay([PlannedOrder(3, SELL, LEVELS[3], Q, D("12"))], desk.now))
    desk.fill(cid(3), D("0.03"))
    return desk


def test_a_crossed_remainder_crossing_again_keeps_its_book() -> None:
    """The remainder's way down meets a live sell at 120: owed, the sell withdrawn, crossed again."""
    desk = _a_buy_at_130_filled_0_03_with_a_sell_owed_behind_it()
    desk.accept(desk.core.cancelled(cid(3), D("0.03"), desk.tick()))
    assert desk.owed() == [(2, BUY)]
    assert cancels(desk.on_ticker(START)) == [cid(2)]
    desk.accept(desk.core.cancelled(cid(2), ZERO, desk.tick()))
    done = desk.fill(cid(1), D("0.07"))
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis) == (
        2,
        D("0.0999"),
        D("11.6"),
    )  # 0.03 at 130, 0.07 at 110


def test_a_crossed_remainder_meeting_a_held_order_crosses_it_with_its_book() -> None:
    desk = _a_buy_at_130_filled_0_03_with_a_sell_owed_behind_it()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.book(desk.core.gone(cid(2), desk.tick(), reason="lost"))  # held again at 120
    desk.book(desk.core.cancelled(cid(3), D("0.03"), desk.tick()))
    assert desk.owed() == []
    desk.accept(desk.core.on_ticker(desk.ticker(START)))
    done = desk.fill(cid(1), D("0.07"))
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis) == (2, D("0.0999"), D("11.6"))


# ================================================================================ rule 5: holds
def test_panic_holds_buys_only_and_releases_them_nearest_the_market_first() -> None:
    desk = Desk()
    desk.on_ticker(START, spread=D("1"))  # a 1.7% spread: panic
    assert desk.core.market_state is MarketState.PANIC
    decision = desk.accept(desk.core.lay(ladder(), desk.now))
    assert placed(decision) == [cid(3), cid(4)]
    held = [n for n in decision.notes if n.event == "order held"]
    assert [n.fields["order"] for n in held] == [cid(1), cid(0)]
    assert {n.fields["rule"] for n in held} == {"MARKET_STATE"}
    quiet = desk.on_ticker(START, spread=D("1"))
    assert placed(quiet) == []
    assert "order held" not in events(quiet)  # a hold is noted once
    desk.tick(900)  # past the volatility window: only the new price counts
    calm = desk.on_ticker(D("104"))
    assert state(desk) is MarketState.NORMAL
    assert placed(calm) == [cid(0), cid(1)]  # 100 is nearer 104 than 110 is


def test_maintenance_holds_every_order_until_the_venue_answers() -> None:
    desk = Desk()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    decision = desk.core.lay(ladder(), desk.now)
    assert placed(decision) == []
    assert desk.core.venue_unavailable(desk.tick()).notes == []  # already down: no news
    back = desk.on_ticker(START)
    assert desk.core.market_state is MarketState.NORMAL
    assert placed(back) == [cid(1), cid(3), cid(0), cid(4)]


def test_a_send_with_the_venue_down_puts_the_grid_in_maintenance(desk: Desk) -> None:
    desk.book(desk.core.gone(cid(1), desk.tick(), reason="lost"))  # placed again: cid(1, 1) in flight
    decision = desk.book(desk.core.send_unknown(cid(1, 1), "503", desk.tick(), venue_down=True))
    assert desk.core.market_state is MarketState.MAINTENANCE
    assert "market state changed" in events(decision)


def test_observe_records_the_price_and_releases_nothing() -> None:
    desk = Desk()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.core.lay(ladder(), desk.now)
    decision = desk.core.observe(desk.ticker(D("119")))
    assert decision.commands == []
    assert desk.core.market_state is MarketState.NORMAL
    assert desk.core.last_ticker is not None and desk.core.last_ticker.last == D("119")


def test_the_order_count_limit_holds_the_farthest_orders_and_releases_them_nearest_first() -> None:
    desk = Desk(max_open_orders=3)
    decision = desk.accept(desk.core.lay(ladder(), desk.now))
    assert placed(decision) == [cid(1), cid(3), cid(0)]
    assert [n.fields["rule"] for n in decision.notes if n.event == "order held"] == ["MAX_OPEN_ORDERS"]
    freed = desk.book(desk.core.refused(cid(3), "insufficient balance", desk.tick()))
    assert placed(freed) == [cid(4)]


def test_the_order_count_limit_releases_the_tie_by_the_lower_level() -> None:
    desk = Desk(max_open_orders=2)
    desk.accept(desk.core.lay(ladder(), desk.now))
    freed = desk.book(desk.core.refused(cid(3), "insufficient balance", desk.tick()))
    assert placed(freed) == [cid(0)]  # 100 and 140 are both 20 from 120


def test_the_budget_holds_buys_beyond_it_and_releases_them_when_quote_comes_back() -> None:
    # 11 (buy at 110) + 11.5 (the sell at 130's cost) leaves 9.99 of 32.49: no room for 100 * 0.1.
    desk = Desk(investment=D("32.49"))
    decision = desk.accept(desk.core.lay(ladder(), desk.now))
    assert placed(decision) == [cid(1), cid(3), cid(4)]  # a sell spends no quote
    assert [n.fields["rule"] for n in decision.notes if n.event == "order held"] == ["INVESTMENT"]
    assert desk.core.exposure().quote_in_use == D("34.0")
    assert desk.core.exposure().open_orders == 3
    # The sell at 130 fills: 11.5 of cost comes back with 1.487 of profit. Its buy at 120 (12)
    # still does not fit; the buy at 100 (10) now does.
    sold = desk.fill(cid(3))
    assert placed(sold) == [cid(0)]
    assert [(n.fields["order"], n.fields["rule"]) for n in sold.notes if n.event == "order held"] == [
        (cid(2), "INVESTMENT")
    ]


def test_the_budget_is_exactly_enough() -> None:
    desk = Desk(investment=D("32.5"))
    assert placed(desk.core.lay(ladder(), desk.now)) == [cid(1), cid(3), cid(0), cid(4)]


def test_realized_profit_widens_the_budget() -> None:
    desk = Desk(investment=D("44.49"))
    desk.accept(desk.core.lay(ladder(), desk.now))
    # The sell at 130 fills: its buy at 120 needs 12 on top of 10 + 11 + 11.5; 44.49 + 1.487 holds it.
    sold = desk.fill(cid(3))
    assert placed(sold) == [cid(2)]


def test_exposure_counts_orders_that_may_be_on_the_venue_and_the_crumb(desk: Desk) -> None:
    exposure = desk.core.exposure()
    assert exposure.open_orders == 4
    assert exposure.quote_in_use == D("10.0") + D("11.0") + 2 * SELL_COST
    desk.fill(cid(1), D("0.04"))
    assert desk.core.exposure().quote_in_use == D("10.0") + D("6.60") + 2 * SELL_COST
    desk.fill(cid(1), D("0.06"), fee=D("0.000015"))
    crumb = desk.core.leftover.cost
    assert crumb > 0
    # The buy at 110 is gone; its sell at 120 is in flight, carrying its cost.
    sell = desk.core.order(cid(2))
    assert sell is not None
    assert desk.core.exposure().quote_in_use == D("10.0") + 2 * SELL_COST + sell.cost_basis + crumb
    assert desk.core.exposure().realized_pnl == ZERO


def test_a_held_order_is_not_exposure_but_an_order_sent_with_an_unknown_outcome_is() -> None:
    desk = Desk()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.core.lay(ladder(), desk.now)
    assert desk.core.exposure().open_orders == 0
    desk.on_ticker(START)
    assert desk.core.exposure().open_orders == 4  # in flight
    desk.book(desk.core.send_unknown(cid(1), "timeout", desk.tick(), venue_down=False))
    assert desk.core.exposure().open_orders == 4  # it may be on the venue


def test_a_price_exactly_one_window_old_still_counts() -> None:
    desk = Desk()
    desk.tick(900)  # the start's 120 is now exactly one window old
    desk.book(desk.core.on_ticker(desk.ticker(D("100"))))
    assert state(desk) is MarketState.PANIC
    desk.tick()
    desk.book(desk.core.on_ticker(desk.ticker(D("100"))))
    assert state(desk) is MarketState.NORMAL


def test_the_market_state_uses_the_grid_thresholds() -> None:
    desk = Desk()
    desk.core = GridCore(replace(desk.config, thresholds=MarketStateThresholds(panic_spread=D("0.5"))))
    desk.core.observe(desk.ticker(START, spread=D("1")))
    assert state(desk) is MarketState.VOLATILE  # a 1.7% spread: panic by default, not here


def test_an_order_a_risk_rule_refuses_does_not_hold_up_the_others() -> None:
    desk = Desk()
    tiny = PlannedOrder(2, SELL, LEVELS[2], D("0.00001"), D("0.001"))  # at the market, under 5 USDT
    decision = desk.book(desk.core.lay([tiny, *ladder()], desk.now))
    assert decision.added[cid(2)].status is OrderStatus.REJECTED
    assert placed(decision) == [cid(1), cid(3), cid(0), cid(4)]


# ================================================================================ refusals and losses
def test_a_refused_order_frees_its_level_and_releases_the_counter_owed_to_it() -> None:
    desk = Desk()
    planned = [PlannedOrder(2, BUY, LEVELS[2], Q), PlannedOrder(3, SELL, LEVELS[3], Q, SELL_COST)]
    lay = desk.core.lay(planned, desk.now)
    assert placed(lay) == [cid(2), cid(3)]
    desk.book(lay)
    desk.book(desk.core.accepted(cid(2), "x2", OrderStatus.OPEN, desk.now))  # the sell's answer is late
    owes = desk.fill(cid(2))
    assert desk.owed() == [(3, SELL)]
    assert cancels(owes) == []
    refused = desk.book(desk.core.refused(cid(3), "insufficient balance", desk.tick()))
    assert refused.updated[cid(3)].status is OrderStatus.REJECTED
    assert placed(refused) == [cid(3, 1)]
    assert desk.owed() == []
    assert "venue refused the order" in events(refused)
    assert desk.core.refused(cid(3), "again", desk.tick()).commands == []


def test_an_order_a_risk_rule_refuses_frees_its_level() -> None:
    desk = Desk()
    tiny = PlannedOrder(1, BUY, LEVELS[1], D("0.00001"))  # 0.0011 USDT: under the 5 USDT minimum
    decision = desk.book(desk.core.lay([tiny], desk.now))
    assert placed(decision) == []
    assert decision.added[cid(1)].status is OrderStatus.REJECTED  # booked and refused in one go
    refusal = next(n for n in decision.notes if n.event == "order refused by a risk rule")
    assert (refusal.severity, refusal.fields["order"], refusal.fields["rule"]) == (
        "error",
        cid(1),
        "NOTIONAL",
    )
    assert desk.grid() == {}


def test_a_gone_order_is_placed_again_for_what_it_had_left(desk: Desk) -> None:
    desk.fill(cid(3), D("0.04"))
    decision = desk.book(desk.core.gone(cid(3), desk.tick(), reason="expired"))
    assert decision.updated[cid(3)].status is OrderStatus.CANCELED
    again = decision.added[cid(3, 1)]
    assert (again.side, again.price, again.level) == (SELL, D("130"), 3)
    assert again.amount == D("0.06")
    assert again.cost_basis == D("6.9")  # 0.6 of 11.5
    assert placed(decision) == [cid(3, 1)]
    assert desk.core.gone(cid(3), desk.tick(), reason="twice").commands == []


def test_a_gone_order_is_succeeded_by_its_remainder_and_countered_for_both() -> None:
    desk = Desk()
    desk.start()
    desk.fill(cid(1), D("0.04"))
    decision = desk.accept(desk.core.gone(cid(1), desk.tick(), reason="lost"))
    successor = decision.added[cid(1, 1)]
    assert (successor.amount, successor.parent_client_order_id) == (D("0.06"), cid(1))
    done = desk.fill(cid(1, 1))
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis, sell.parent_client_order_id) == (
        2,
        D("0.0999"),
        D("11.00"),
        cid(1, 1),
    )


def test_a_gone_order_that_filled_is_left_to_its_fills(desk: Desk) -> None:
    decision = desk.core.gone(cid(1), desk.tick(), reason="filled", filled=Q)
    assert decision.commands == [] and not decision.needs_booking
    assert desk.grid()[1] == (BUY, OrderStatus.OPEN)
    assert placed(desk.fill(cid(1))) == [cid(2)]


def test_late_fills_of_a_gone_order_are_booked_to_the_book_its_successor_shares(desk: Desk) -> None:
    desk.accept(desk.core.gone(cid(1), desk.tick(), reason="lost", filled=D("0.04")))
    late = desk.fill(cid(1), D("0.04"))
    assert late.commands == [] and late.leftover is None  # its successor's counter will sell it
    assert late.updated[cid(1)].status is OrderStatus.CANCELED
    assert desk.fill(cid(1), D("0.07")).fills == []  # never past its amount
    done = desk.fill(cid(1, 1))
    assert done.added[cid(2)].amount == D("0.0999")


def test_an_order_the_venue_reports_cancelled_on_acceptance_is_placed_again() -> None:
    desk = Desk()
    decision = desk.book(desk.core.lay(ladder(), desk.now))
    gone = desk.book(desk.core.accepted(cid(1), "x1", OrderStatus.EXPIRED, desk.tick()))
    assert gone.updated[cid(1)].status is OrderStatus.CANCELED
    assert gone.updated[cid(1)].exchange_order_id == "x1"
    assert placed(gone) == [cid(1, 1)]
    assert placed(decision)[0] == cid(1)


def test_a_market_order_gone_is_not_placed_again() -> None:
    desk = Desk()
    buy = desk.book(desk.core.market_order(BUY, D("0.2"), desk.now))
    order = buy.added[client_order_id(RUN_ID, -1, 0)]
    decision = desk.book(desk.core.gone(order.client_order_id, desk.tick(), reason="expired"))
    assert decision.added == {}
    assert decision.commands == []


def test_an_order_found_filled_is_not_withdrawn_for_an_owed_counter(desk: Desk) -> None:
    desk.core.gone(cid(1), desk.tick(), reason="filled", filled=Q)  # its trades are not in yet
    decision = desk.fill(cid(0))  # owes a sell to 110
    assert desk.owed() == [(1, SELL)]
    assert cancels(decision) == []  # it filled: its trades will free the level


def test_a_withdrawal_with_fills_booked_crosses_only_what_was_left(desk: Desk) -> None:
    desk.fill(cid(0))
    desk.fill(cid(1), D("0.02"))
    decision = desk.accept(desk.core.cancelled(cid(1), ZERO, desk.tick()))  # the venue says 0, the books 0.02
    assert decision.added[cid(0, 1)].amount == D("0.08")
    done = desk.fill(cid(0, 1))
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis) == (1, D("0.0999"), D("10.2"))


# ================================================================================ unknown outcomes
def test_a_send_with_an_unknown_outcome_is_looked_up_before_it_is_sent_again(desk: Desk) -> None:
    desk.book(desk.core.gone(cid(1), desk.tick(), reason="lost"))
    decision = desk.book(desk.core.send_unknown(cid(1, 1), "timeout", desk.tick(), venue_down=False))
    assert "order not sent; will retry" in events(decision)
    assert desk.core.market_state is MarketState.NORMAL
    retry = desk.on_ticker(START)
    assert [
        (c.order.client_order_id, c.look_up_first) for c in retry.commands if isinstance(c, PlaceOrder)
    ] == [(cid(1, 1), True)]
    found = desk.core.accepted(cid(1, 1), "x9", OrderStatus.OPEN, desk.tick())
    assert found.updated[cid(1, 1)].status is OrderStatus.OPEN
    assert desk.on_ticker(START).commands == []


def test_an_order_found_never_sent_is_sent_without_a_look_up(desk: Desk) -> None:
    desk.book(desk.core.gone(cid(1), desk.tick(), reason="lost"))
    desk.book(desk.core.send_unknown(cid(1, 1), "timeout", desk.tick(), venue_down=False))
    desk.core.never_sent(cid(1, 1))
    retry = desk.on_ticker(START)
    assert [
        (c.order.client_order_id, c.look_up_first) for c in retry.commands if isinstance(c, PlaceOrder)
    ] == [(cid(1, 1), False)]


def test_an_order_sent_with_an_unknown_outcome_goes_out_in_a_panic(desk: Desk) -> None:
    """It may be live already: it needs no approval, only a look-up."""
    desk.book(desk.core.gone(cid(1), desk.tick(), reason="lost"))
    desk.book(desk.core.send_unknown(cid(1, 1), "timeout", desk.tick(), venue_down=False))
    retry = desk.on_ticker(START, spread=D("1"))
    assert desk.core.market_state is MarketState.PANIC
    assert placed(retry) == [cid(1, 1)]


def test_a_deferred_place_is_sent_at_the_next_release(desk: Desk) -> None:
    desk.book(desk.core.gone(cid(1), desk.tick(), reason="lost"))
    assert desk.on_ticker(START).commands == []  # in flight: not sent twice
    desk.core.deferred(cid(1, 1))
    assert placed(desk.on_ticker(START)) == [cid(1, 1)]


def test_an_unknown_outcome_of_an_order_no_longer_active_is_ignored(desk: Desk) -> None:
    decision = desk.core.send_unknown("gb-nobody", "timeout", desk.tick(), venue_down=False)
    assert decision.notes == []


# ================================================================================ inferred fills
def _inferred_desk() -> Desk:
    desk = Desk(taker_fee=D("0.002"))  # the estimate takes the higher fee
    desk.start()
    return desk


def test_an_inferred_fill_books_the_missing_amount_with_the_higher_fee_and_counters_it() -> None:
    desk = _inferred_desk()
    decision = desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    [booked] = decision.fills
    assert booked.fill.is_inferred
    assert booked.fill.amount == Q
    assert booked.fill.fee == D("0.0002")  # 0.2% of 0.1 BTC, in BTC
    assert booked.fill.fee_asset == "BTC"
    assert booked.fill.order_id == desk.orders[cid(1)].exchange_order_id
    sell = decision.added[cid(2)]
    assert sell.amount == D("0.0998")
    assert placed(decision) == [cid(2)]
    assert desk.core.position == D("0.0998")
    assert desk.status(cid(1)) is OrderStatus.FILLED
    assert [o.client_order_id for o in desk.core.provisional_orders()] == [cid(1)]
    desk.fill(cid(1))
    assert desk.core.provisional_orders() == []


def test_an_inferred_sell_fee_is_in_quote_rounded_up() -> None:
    desk = _inferred_desk()
    desk.fill(cid(3), D("0.03333"))
    decision = desk.book(desk.core.infer_fill(cid(3), D("130.01"), desk.tick()))
    [booked] = decision.fills
    assert booked.fill.amount == D("0.06667")
    assert booked.fill.fee == D("0.01733554")  # 0.06667 * 130.01 * 0.002 = 0.0173355334, rounded up
    assert booked.fill.fee_asset == "USDT"
    assert booked.fill.price == D("130.01")
    assert booked.fill.trade_id.endswith("-0.03333")  # names what was real when it was made


def test_an_inferred_buy_fee_is_rounded_up() -> None:
    desk = Desk(taker_fee=D("0.0015"))
    desk.start()
    desk.fill(cid(1), D("0.03333"))
    [booked] = desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick())).fills
    assert booked.fill.fee == D("0.00010001")  # 0.06667 * 0.0015 = 0.000100005, rounded up


def test_an_order_without_a_venue_id_or_nothing_missing_is_not_inferred(desk: Desk) -> None:
    held = Desk()
    held.book(held.core.lay(ladder(), held.now))  # sent, not yet accepted: no venue id
    assert held.core.infer_fill(cid(1), D("110"), held.now).fills == []
    assert desk.core.infer_fill("gb-nobody", D("110"), desk.now).fills == []
    partial = Desk()
    partial.start()
    partial.fill(cid(1), D("0.04"))
    [inferred] = partial.book(partial.core.infer_fill(cid(1), D("110"), partial.tick())).fills
    assert inferred.fill.amount == D("0.06")


def test_real_trades_replace_an_inferred_fill_without_a_second_counter_order() -> None:
    desk = _inferred_desk()
    inferred = desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    estimate = inferred.fills[0].fill.trade_id
    assert desk.core.leftover == NO_LEFTOVER
    real = desk.fill(cid(1))  # 0.0001 BTC fee, not the 0.0002 estimated
    assert real.retracted == [estimate]
    assert [b.fill.is_inferred for b in real.fills] == [False]
    assert placed(real) == []  # countered already
    assert real.added == {}
    assert desk.core.position == D("0.0999")
    # The sell was sized on the estimate (0.0998): the real trades gave 0.0001 BTC more, at no
    # extra cost; it goes to the carried crumb.
    assert real.leftover == Leftover(D("0.0001"), ZERO)
    assert desk.core.leftover == Leftover(D("0.0001"), ZERO)
    desk.assert_books_match()
    assert desk.deliver(desk.trade(cid(1), trade_id="late-dup")).fills == []  # it is done now


def test_real_trades_at_another_price_move_the_crumb_cost() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    real = desk.fill(cid(1), price=D("109.5"), fee=D("0.0002"))
    assert real.leftover == Leftover(ZERO, D("-0.05"))


def test_some_real_trades_leave_an_estimate_for_the_rest() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    part = desk.fill(cid(1), D("0.04"))
    assert len(part.retracted) == 1
    assert [(b.fill.amount, b.fill.is_inferred) for b in part.fills] == [
        (D("0.04"), False),
        (D("0.06"), True),
    ]
    assert part.fills[1].fill.trade_id.endswith("-0.04")
    assert placed(part) == []
    assert sum((b.fill.amount for b in desk.fills.values()), ZERO) == Q
    rest = desk.fill(cid(1), D("0.06"))
    assert [b.fill.is_inferred for b in rest.fills] == [False]
    assert not any(b.fill.is_inferred for b in desk.fills.values())
    assert placed(rest) == []
    # The crumb took what the real fees left over the estimate: 0.0002 estimated, 0.0001 paid.
    assert desk.core.leftover == Leftover(D("0.0001"), ZERO)
    assert desk.core.position == D("0.0999")
    desk.assert_books_match()


def test_all_real_trades_in_one_batch_replace_the_estimate_once() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    batch = desk.deliver(desk.trade(cid(1), D("0.04")), desk.trade(cid(1), D("0.06")))
    assert len(batch.retracted) == 1
    assert [b.fill.is_inferred for b in batch.fills] == [False, False]
    assert desk.core.leftover == Leftover(D("0.0001"), ZERO)
    desk.assert_books_match()


def test_a_real_trade_past_the_amount_keeps_the_estimate() -> None:
    desk = _inferred_desk()
    inferred = desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    decision = desk.fill(cid(1), D("0.2"))
    assert "fill past the order's amount ignored" in events(decision)
    assert desk.booked_amount(cid(1)) == Q
    assert inferred.fills[0].fill.trade_id in desk.fills
    assert desk.core.position == D("0.0998")
    desk.assert_books_match()


def test_a_real_sell_replacing_an_estimate_moves_realized_profit_not_the_crumb() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(3), D("130"), desk.tick()))
    assert desk.core.realized == D("13") - D("0.026") - SELL_COST
    real = desk.fill(cid(3))
    assert real.leftover is None
    assert desk.core.realized == D("1.487")
    desk.assert_books_match()


def test_an_inferred_buy_at_the_top_of_the_ladder_settles_into_the_crumb() -> None:
    desk = Desk(taker_fee=D("0.002"))
    desk.accept(desk.core.lay([PlannedOrder(4, BUY, LEVELS[4], Q)], desk.now))
    desk.book(desk.core.infer_fill(cid(4), D("140"), desk.tick()))
    assert desk.core.leftover == Leftover(D("0.0998"), D("14.0"))
    desk.fill(cid(4))
    assert desk.core.leftover == Leftover(D("0.0999"), D("14.0"))


def test_a_real_sell_at_another_price_than_estimated_moves_profit_not_the_crumb() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(3), D("130"), desk.tick()))
    real = desk.fill(cid(3), price=D("130.5"))
    assert real.leftover is None
    assert desk.core.leftover == NO_LEFTOVER
    assert desk.core.realized == D("13.05") - D("0.01305") - SELL_COST
    desk.assert_books_match()


def test_real_trades_of_an_inferred_buy_at_the_bottom_settle_into_the_crumb() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(0), D("100"), desk.tick()))
    real = desk.fill(cid(0))
    assert real.leftover == Leftover(D("0.0001"), ZERO)


# ================================================================================ ends of the ladder
def test_the_ends_of_the_ladder_get_no_counter_order() -> None:
    desk = Desk()
    planned = [PlannedOrder(0, SELL, LEVELS[0], Q, SELL_COST), PlannedOrder(4, BUY, LEVELS[4], Q)]
    desk.accept(desk.core.lay(planned, desk.now))
    low = desk.fill(cid(0))
    assert low.added == {} and placed(low) == []
    note = next(n for n in low.notes if n.event == "no counter-order at the end of the ladder")
    assert note.fields == {"level": 0, "side": "sell"}
    high = desk.fill(cid(4))
    assert high.added == {} and placed(high) == []
    assert "no counter-order at the end of the ladder" in events(high)
    assert desk.core.leftover == Leftover(D("0.0999"), D("14.0"))  # the top buy's base is carried
    assert high.leftover == desk.core.leftover


def test_an_owed_order_at_an_end_level_is_not_crossed() -> None:
    """Crossing moves the sell a level up and the buy a level down: impossible at the ends."""
    desk = Desk()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.core.lay([PlannedOrder(4, BUY, LEVELS[4], Q), PlannedOrder(3, BUY, LEVELS[3], Q)], desk.now)
    desk.on_ticker(D("150"))
    desk.book(desk.core.accepted(cid(3), "x3", OrderStatus.OPEN, desk.now))
    desk.book(desk.core.accepted(cid(4), "x4", OrderStatus.OPEN, desk.now))
    decision = desk.fill(cid(3))  # its sell is owed to 140, which holds a buy
    assert desk.owed() == [(4, SELL)]
    assert cancels(decision) == []


def test_an_owed_order_at_the_bottom_facing_a_held_order_waits() -> None:
    desk = Desk()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.core.lay(
        [PlannedOrder(0, SELL, LEVELS[0], Q, SELL_COST), PlannedOrder(1, SELL, LEVELS[1], Q)], desk.now
    )
    # Both held; the sell at 110 is sent and fills: its buy is owed to 100, held by a held sell.
    desk.on_ticker(D("105"))
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.book(desk.core.accepted(cid(1), "x1", OrderStatus.OPEN, desk.now))
    desk.book(desk.core.gone(cid(0), desk.tick(), reason="lost"))  # held again at 100
    desk.fill(cid(1))
    assert desk.owed() == [(0, BUY)]
    assert desk.grid()[0] == (SELL, OrderStatus.PENDING)


# ================================================================================ the stop
def test_a_stop_cancels_every_grid_order_and_books_late_fills_without_counters() -> None:
    desk = Desk(stop_loss=D("95"), sell_on_stop=True)
    desk.start()
    desk.fill(cid(0))  # owes its sell to 110 (and withdraws the buy there)
    assert desk.owed() == [(1, SELL)]
    halt = desk.on_ticker(D("94"))
    assert halt.halted is not None and halt.halted.sell_base
    assert "stop-loss" in halt.halted.reason
    assert desk.core.halt is halt.halted
    assert sorted(cancels(halt)) == sorted([cid(1), cid(3), cid(4)])
    assert {o.status for o in halt.updated.values()} == {OrderStatus.CANCELED}
    assert cid(1, 1) in halt.updated  # the owed sell is cancelled at once, never sent
    assert desk.core.grid_orders() == [] and desk.core.owed_orders() == []
    assert [o.client_order_id for o in desk.core.unconfirmed_cancels()] == sorted([cid(1), cid(3), cid(4)])
    desk.book(desk.core.cancelled(cid(3), ZERO, desk.tick()))
    assert cid(3) not in [o.client_order_id for o in desk.core.unconfirmed_cancels()]
    # A sell cancelled by the stop had filled in part before: booked, no counter.
    late = desk.fill(cid(4), D("0.04"))
    assert [b.fill.amount for b in late.fills] == [D("0.04")]
    assert late.updated[cid(4)].status is OrderStatus.CANCELED
    assert late.added == {} and late.commands == []
    assert desk.core.order(cid(4)) is not None
    full = desk.fill(cid(3))
    assert full.updated[cid(3)].status is OrderStatus.FILLED
    assert full.added == {} and full.commands == []
    desk.assert_books_match()
    # What the stop sells: the cancelled sells' unsold base (0.06 of the one at 140) at its cost.
    assert desk.core.base_to_sell() == (D("0.06"), D("6.90000000"))
    # A halted grid decides nothing more.
    assert desk.on_ticker(D("120")).commands == []
    assert desk.on_ticker(D("90")).halted is None


def test_a_stop_sale_is_a_market_order_outside_the_ladder() -> None:
    desk = Desk(take_profit=D("150"))
    desk.start()
    halt = desk.on_ticker(D("151"))
    assert halt.halted is not None and not halt.halted.sell_base
    assert "take-profit" in halt.halted.reason
    amount, cost = desk.core.base_to_sell()
    assert (amount, cost) == (D("0.2"), D("23.00000000"))
    sale = desk.book(desk.core.market_order(SELL, amount, desk.tick(), cost))
    order = sale.added[client_order_id(RUN_ID, -1, 0)]
    assert (order.type, order.price, order.level, order.cost_basis) == (OrderType.MARKET, None, -1, cost)
    assert placed(sale) == [order.client_order_id]
    desk.book(desk.core.accepted(order.client_order_id, "xm", OrderStatus.OPEN, desk.tick()))
    sold = desk.fill(order.client_order_id, price=D("151"))
    assert sold.added == {} and sold.commands == []
    assert desk.core.realized == D("30.2") - D("0.0302") - D("23")


def test_a_halt_cancels_held_orders_without_a_venue_command() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.core.lay(ladder(), desk.now)
    halt = desk.on_ticker(D("90"))
    assert halt.commands == []
    assert len(halt.updated) == 4
    assert desk.core.unconfirmed_cancels() == []
    assert desk.core.base_to_sell() == (ZERO, ZERO)


def test_a_gone_order_after_a_stop_is_not_placed_again() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.start()
    desk.on_ticker(D("90"))
    assert desk.core.gone(cid(3), desk.tick(), reason="cancelled").added == {}


def test_base_to_sell_adds_the_crumb_and_floors_to_the_step() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.core.lay(
        [PlannedOrder(3, SELL, LEVELS[3], Q, SELL_COST)], desk.now, Leftover(D("0.000015"), D("0.0018"))
    )
    desk.book(desk.core.accepted(cid(3), "x3", OrderStatus.OPEN, desk.now))
    desk.on_ticker(D("90"))
    amount, cost = desk.core.base_to_sell()
    assert amount == D("0.10001")
    assert cost == ((SELL_COST + D("0.0018")) * D("0.10001") / D("0.100015")).quantize(D("0.00000001"))


def test_base_to_sell_of_a_crumb_under_the_step_is_nothing() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.core.lay([], desk.now, Leftover(D("0.000005"), D("0.0006")))
    desk.on_ticker(D("90"))
    assert desk.core.base_to_sell() == (ZERO, ZERO)


def test_a_halt_with_a_counter_pending_places_none() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.start()
    desk.on_ticker(D("90"))
    late = desk.fill(cid(0))
    assert late.added == {}


def test_a_stop_leaves_a_market_order_alone_and_cancels_the_grid() -> None:
    desk = Desk(stop_loss=D("95"))
    purchase = desk.book(desk.core.market_order(BUY, D("0.2"), desk.now))
    order = purchase.added[client_order_id(RUN_ID, -1, 0)]
    assert (order.status, order.type, order.price) == (OrderStatus.PENDING, OrderType.MARKET, None)
    desk.start()
    halt = desk.on_ticker(D("90"))
    assert sorted(cancels(halt)) == sorted([cid(0), cid(1), cid(3), cid(4)])
    assert order.client_order_id not in halt.updated


def test_a_late_fill_of_a_buy_at_the_bottom_cancelled_by_a_stop_is_carried() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.start()
    desk.on_ticker(D("94"))
    late = desk.fill(cid(0))
    assert late.leftover == desk.core.leftover == Leftover(D("0.0999"), D("10.0"))


def test_a_late_fill_of_a_buy_cancelled_by_a_stop_carries_all_it_bought_when_the_fee_is_elsewhere() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.start()
    desk.on_ticker(D("94"))
    desk.deliver(replace(desk.trade(cid(1)), fee=D("0.0005"), fee_asset="BNB"))
    assert desk.core.leftover == Leftover(Q, D("11.0"))


# ================================================================================ restore
def _story_to_restore() -> Desk:
    """Open, owed, provisional, sent-with-unknown-outcome and crumb-carrying orders at once."""
    desk = Desk(taker_fee=D("0.002"))
    desk.start()
    desk.fill(cid(0), fee=D("0.000015"))  # a sell owed to 110 (a crumb is carried)
    desk.book(desk.core.infer_fill(cid(3), D("130"), desk.tick()))  # provisional; buy at 120
    desk.book(desk.core.gone(cid(4), desk.tick(), reason="lost"))  # placed again ...
    desk.book(desk.core.send_unknown(cid(4, 1), "timeout", desk.tick(), venue_down=False))  # ... maybe
    return desk


def _restore(desk: Desk) -> GridCore:
    return GridCore.restore(
        desk.config,
        active=[o for o in desk.orders.values() if o.status.is_active],
        fills=list(desk.fills.values()),
        every_order=list(desk.every_order.values()),
        leftover=desk.core.leftover,
    )


def test_restore_rebuilds_the_ladder_the_owed_and_the_sums_from_the_books() -> None:
    desk = _story_to_restore()
    core = _restore(desk)
    assert {o.client_order_id for o in core.grid_orders()} == {
        o.client_order_id for o in desk.core.grid_orders()
    }
    assert [o.client_order_id for o in core.owed_orders()] == [cid(1, 1)]
    assert core.realized == desk.core.realized != ZERO
    assert core.position == desk.core.position
    assert core.fills_booked == desk.core.fills_booked == len(desk.fills)
    assert core.leftover == desk.core.leftover != NO_LEFTOVER
    assert core.exposure() == desk.core.exposure()


def test_restore_looks_up_orders_that_may_have_been_sent() -> None:
    desk = _story_to_restore()
    core = _restore(desk)
    decision = core.on_ticker(desk.ticker(START))
    sends = {c.order.client_order_id: c.look_up_first for c in decision.commands if isinstance(c, PlaceOrder)}
    assert sends[cid(4, 1)] is True
    assert sends[cid(2)] is True  # booked PENDING: it may have gone out before the crash


def test_restore_keeps_provisional_orders_until_their_real_trades_arrive() -> None:
    desk = _story_to_restore()
    core = _restore(desk)
    estimate = next(t for t, b in desk.fills.items() if b.fill.is_inferred)
    real = desk.trade(cid(3), at=desk.tick())
    decision = core.apply_fills([real], desk.now)
    assert decision.retracted == [estimate]
    assert decision.added == {}  # no second counter-order
    assert core.realized == D("1.487")
    again = core.apply_fills([real], desk.now)
    assert again.fills == []


def test_restore_continues_client_id_sequences() -> None:
    desk = _story_to_restore()
    core = _restore(desk)
    decision = core.gone(cid(4, 1), desk.tick(), reason="lost")
    assert cid(4, 2) in decision.added


def test_restore_owes_behind_the_first_occupant_and_withdraws_a_live_one_it_faces() -> None:
    desk = _story_to_restore()
    core = _restore(desk)
    decision = core.on_ticker(desk.ticker(START))
    assert cid(1) in cancels(decision)  # the owed sell at 110 faces a live buy: withdrawn again
    clean = core.cancelled(cid(1), ZERO, desk.tick())
    assert clean.updated[cid(1)].status is OrderStatus.CANCELED
    assert clean.updated[cid(1, 1)].status is OrderStatus.CANCELED


def test_restore_of_a_provisional_order_finished_with_only_real_fills_drops_it() -> None:
    desk = Desk()
    desk.start()
    desk.fill(cid(1))
    core = _restore(desk)
    assert core.apply_fills([desk.trade(cid(1), trade_id="1")], desk.now).fills == []


def _story_with_a_successor() -> Desk:
    """The buy at 110 executed 0.03 and then went: a successor for 0.07 shares its book. The
    successor fills 0.01 before a restart; 0.01 of the gone buy's trades is still on its way."""
    desk = Desk()
    desk.start()
    desk.fill(cid(1), D("0.02"))
    desk.accept(desk.core.gone(cid(1), desk.tick(), reason="lost", filled=D("0.03")))
    desk.fill(cid(1, 1), D("0.01"))
    return desk


def test_the_executed_part_of_a_gone_order_is_countered_when_its_remainder_cannot_be_placed() -> None:
    """The buy at 110 executed 0.06 and went; the 0.04 it had left is worth 4.4 USDT, under the
    5 USDT minimum, so no successor can carry it. The 0.06 bought must still be sold by a counter-
    order (or at least carried): today it is on no order and not in the crumb, and the level is
    left empty."""
    desk = Desk()
    desk.start()
    desk.fill(cid(1), D("0.06"))
    went = desk.accept(desk.core.gone(cid(1), desk.tick(), reason="expired"))
    assert "order gone; what it had left is under the market's minimum: countered as executed" in events(went)
    assert went.updated[cid(1)].status is OrderStatus.CANCELED  # it ends at the 0.06 it executed
    on_sells = sum((o.amount for o in desk.core.grid_orders() if o.side is SELL and o.level < 3), ZERO)
    assert on_sells + desk.core.leftover.base == desk.core.position == D("0.05994")


def test_a_gone_sell_whose_remainder_cannot_be_placed_carries_what_it_did_not_sell(desk: Desk) -> None:
    desk.fill(cid(3), D("0.07"))
    decision = desk.accept(desk.core.gone(cid(3), desk.tick(), reason="expired"))  # 0.03 left: 3.9 USDT
    assert decision.leftover == desk.core.leftover == Leftover(D("0.03"), D("3.45"))  # 0.3 of 11.5
    assert (decision.added[cid(2)].side, decision.added[cid(2)].amount) == (BUY, Q)
    assert placed(decision) == [cid(2)]


def test_a_gone_buy_at_the_bottom_whose_remainder_cannot_be_placed_is_countered(desk: Desk) -> None:
    desk.fill(cid(0), D("0.06"))
    decision = desk.accept(desk.core.gone(cid(0), desk.tick(), reason="expired"))  # 0.04 left: 4 USDT
    sell = decision.added[cid(1, 1)]
    assert (sell.side, sell.amount, sell.cost_basis) == (SELL, D("0.05994"), D("6.00"))


def test_the_executed_part_of_a_gone_order_is_countered_when_its_trades_come_after() -> None:
    """As above, but the venue reports the 0.06 executed (a cancel's answer, a look-up) before its
    trade is delivered: nothing is booked yet when the order goes. The order stays on its level at
    what it executed (no successor of 0.04, which the minimum would refuse), and the trade that
    comes after completes it and gets its counter-order."""
    desk = Desk()
    desk.start()
    went = desk.accept(desk.core.gone(cid(1), desk.tick(), reason="expired", filled=D("0.06")))
    assert events(went) == [
        "order gone; what it had left is under the market's minimum: kept at what it executed until its trades come"
    ]
    kept = went.updated[cid(1)]
    assert (kept.amount, kept.status, kept.level) == (D("0.06"), OrderStatus.OPEN, 1)
    assert placed(went) == [] and went.added == {}  # no successor for the 0.04
    done = desk.fill(cid(1), D("0.06"))
    [sell] = done.added.values()
    assert (sell.level, sell.side, sell.amount, sell.parent_client_order_id) == (
        2,
        SELL,
        D("0.05994"),
        cid(1),
    )
    on_sells = sum((o.amount for o in desk.core.grid_orders() if o.side is SELL and o.level < 3), ZERO)
    assert on_sells + desk.core.leftover.base == desk.core.position == D("0.05994")


def test_a_gone_sell_whose_trades_come_after_realizes_its_executed_part_at_that_part_of_its_cost(
    desk: Desk,
) -> None:
    went = desk.accept(desk.core.gone(cid(3), desk.tick(), reason="expired", filled=D("0.07")))
    kept = went.updated[cid(3)]
    assert (kept.amount, kept.cost_basis) == (D("0.07"), D("8.05"))  # 0.7 of 11.5
    assert desk.core.leftover == Leftover(D("0.03"), D("3.45"))  # the unsold 0.03 is carried
    done = desk.fill(cid(3), D("0.07"))
    [booked] = done.fills
    assert booked.realized_pnl == D("0.07") * LEVELS[3] - booked.fill.fee - D("8.05")
    [buy] = done.added.values()
    assert (buy.level, buy.side, buy.amount) == (2, BUY, Q)


def test_an_order_kept_for_its_trades_is_not_withdrawn_for_an_owed_counter_order(desk: Desk) -> None:
    desk.accept(desk.core.gone(cid(1), desk.tick(), reason="expired", filled=D("0.06")))
    owed = desk.book(desk.core.lay([PlannedOrder(1, SELL, LEVELS[1], Q, SELL_COST)], desk.tick()))
    assert desk.owed() == [(1, SELL)]
    assert cancels(owed) == []  # it is gone from the venue already: its trades free the level
    freed = desk.fill(cid(1), D("0.06"))
    assert desk.owed() == []
    assert desk.grid()[1] == (SELL, OrderStatus.PENDING) and placed(freed)


def test_restore_gives_a_successor_its_predecessor_book() -> None:
    desk = _story_with_a_successor()
    core = _restore(desk)
    late = core.apply_fills([desk.trade(cid(1), D("0.01"), at=desk.tick())], desk.now)
    assert late.leftover is None  # its successor's counter will sell it
    assert late.commands == []
    done = core.apply_fills([desk.trade(cid(1, 1), D("0.06"), at=desk.tick())], desk.now)
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis) == (2, D("0.0999"), D("11.00"))


def test_restore_follows_a_chain_of_successors() -> None:
    desk = _story_with_a_successor()
    desk.accept(desk.core.gone(cid(1, 1), desk.tick(), reason="lost again"))
    core = _restore(desk)
    assert desk.orders[cid(1, 2)].amount == D("0.06")
    done = core.apply_fills(
        [desk.trade(cid(1), D("0.01"), at=desk.tick()), desk.trade(cid(1, 2), D("0.06"), at=desk.tick())],
        desk.now,
    )
    [sell] = done.added.values()
    assert (sell.level, sell.amount, sell.cost_basis) == (2, D("0.0999"), D("11.00"))


def test_restore_does_not_join_the_book_of_a_parent_that_filled() -> None:
    desk = Desk()
    desk.start()
    desk.answer(desk.fill(cid(1)))  # its counter-sell at 120 is a child of another side
    desk.fill(cid(2), D("0.03"))
    core = _restore(desk)
    done = core.apply_fills([desk.trade(cid(2), D("0.0699"), at=desk.tick())], desk.now)
    assert [o.side for o in done.added.values()] == [BUY]
    assert core.realized == desk.core.realized + done.fills[0].realized_pnl


def test_restore_sums_every_sell_profit_and_restores_the_bottom_level() -> None:
    desk = Desk()
    desk.answer(desk.book(desk.core.market_order(BUY, D("0.2"), desk.now)))  # still open: outside the ladder
    desk.tick()
    desk.start()
    desk.answer(desk.fill(cid(3)))
    desk.answer(desk.fill(cid(4)))
    core = _restore(desk)
    assert core.realized == desk.core.realized == D("1.487") + D("2.486")
    assert {o.level for o in core.grid_orders()} == {0, 1, 2, 3}


def test_restore_keeps_only_orders_with_estimates_provisional() -> None:
    desk = _story_to_restore()
    core = _restore(desk)
    assert [o.client_order_id for o in core.provisional_orders()] == [cid(3)]


def test_restore_settles_a_provisional_buy_into_the_crumb() -> None:
    desk = _inferred_desk()
    desk.book(desk.core.infer_fill(cid(1), D("110"), desk.tick()))
    core = _restore(desk)
    real = core.apply_fills([desk.trade(cid(1), at=desk.tick())], desk.now)
    assert real.leftover == Leftover(D("0.0001"), ZERO)


# ================================================================================ the log
def last_note(desk: Desk, event: str) -> dict[str, object]:
    return dict(next(n.fields for n in reversed(desk.notes) if n.event == event))


def test_the_log_lines_name_what_they_are_about() -> None:
    """Every note is checked against NOTES as it is booked; here each kind is produced once and
    the fields a reader uses carry the right values."""
    desk = Desk()
    desk.book(desk.core.market_order(BUY, D("0.2"), desk.now))
    desk.book(desk.core.accepted(client_order_id(RUN_ID, -1, 0), "xm", OrderStatus.OPEN, desk.now))
    assert last_note(desk, "order placed")["price"] == "market"
    desk.start()
    assert last_note(desk, "order placed") == {
        "order": cid(4),
        "side": "sell",
        "level": 4,
        "price": D("140"),
        "amount": D("0.1"),
    }
    desk.fill(cid(1), fee=D("0.000015"))
    fill = last_note(desk, "fill")
    assert (fill["order"], fill["side"], fill["level"], fill["price"], fill["amount"]) == (
        cid(1),
        "buy",
        1,
        D("110"),
        D("0.1"),
    )
    assert (fill["fee"], fill["fee_asset"], fill["inferred"]) == (D("0.000015"), "BTC", False)
    desk.answer(desk.fill(cid(3)))
    sold = last_note(desk, "fill")
    assert (sold["realized_pnl"], sold["total_realized_pnl"]) == (D("1.487"), D("1.487"))
    desk.fill(cid(0))  # its sell is owed to 110... which is free: placed
    desk.book(desk.core.lay([PlannedOrder(4, SELL, LEVELS[4], Q, SELL_COST)], desk.now))
    assert last_note(desk, "counter-order owed: its level still holds an order") == {
        "order": cid(4, 1),
        "level": 4,
        "side": "sell",
        "holder": cid(4),
    }
    desk.fill(cid(4), D("0.04"))
    desk.fill(cid(4), D("0.07"))
    assert last_note(desk, "fill past the order's amount ignored")["booked"] == "0.04"
    assert last_note(desk, "fill past the order's amount ignored")["amount"] == "0.1"
    desk.book(desk.core.gone(cid(4), desk.tick(), reason="expired"))
    gone = last_note(desk, "order gone from the venue; placing what it had left again")
    assert (gone["order"], gone["replacement"], gone["level"], gone["amount"], gone["reason"]) == (
        cid(4),
        cid(4, 2),
        4,
        "0.06",
        "expired",
    )
    desk.book(desk.core.refused(cid(4, 2), "insufficient balance", desk.tick()))
    assert last_note(desk, "venue refused the order")["reason"] == "insufficient balance"
    assert last_note(desk, "owed counter-order goes out: its level is free") == {
        "order": cid(4, 1),
        "level": 4,
    }
    desk.on_ticker(START, spread=D("1"))
    assert last_note(desk, "market state changed") == {"previous": "normal", "state": "panic", "price": "120"}
    desk.book(desk.core.lay([PlannedOrder(0, BUY, LEVELS[0], Q)], desk.now))
    held = last_note(desk, "order held")
    assert (held["order"], held["level"], held["rule"]) == (cid(0, 1), 0, "MARKET_STATE")
    assert {n.event for n in desk.notes} >= {
        "order placed",
        "fill",
        "counter-order owed: its level still holds an order",
        "fill past the order's amount ignored",
        "order gone from the venue; placing what it had left again",
        "venue refused the order",
        "owed counter-order goes out: its level is free",
        "market state changed",
        "order held",
    }


def test_the_log_lines_of_a_crossing_name_both_moves(desk: Desk) -> None:
    desk.fill(cid(0))
    assert last_note(desk, "withdrawing an order to cross it with an owed counter-order") == {"order": cid(1)}
    desk.book(desk.core.cancelled(cid(1), ZERO, desk.tick()))
    assert last_note(desk, "a buy and a sell at one level cancel out: crossed") == {
        "level": 1,
        "withdrawn": cid(1),
        "sell_to": 2,
        "buy_to": 0,
    }


def test_the_log_lines_of_news_that_changes_nothing(desk: Desk) -> None:
    fill = desk.trade(cid(1), D("0.04"))
    desk.deliver(fill, fill)
    assert last_note(desk, "trade already booked") == {"trade_id": fill.trade_id, "order": cid(1)}
    desk.deliver(replace(fill, trade_id="999", client_order_id="gb-x", order_id="nobody"))
    assert last_note(desk, "fill of no active order of this grid ignored") == {"trade_id": "999"}
    desk.book(desk.core.cancelled(cid(1), None, desk.tick()))  # not being withdrawn: nothing
    desk.fill(cid(0))
    desk.book(desk.core.cancelled(cid(1), None, desk.tick()))
    assert last_note(desk, "withdrawal found the order gone: the counter-order stays owed") == {
        "order": cid(1)
    }
    never = replace(fill, trade_id="1000", client_order_id=cid(1, 1), order_id="")
    desk.deliver(never)
    assert last_note(desk, "fill of an order never sent ignored") == {"order": cid(1, 1), "trade_id": "1000"}
    desk.book(desk.core.gone(cid(3), desk.tick(), reason="lost"))
    desk.book(desk.core.send_unknown(cid(3, 1), "timeout", desk.tick(), venue_down=False))
    assert last_note(desk, "order not sent; will retry") == {"order": cid(3, 1), "reason": "timeout"}
    desk.book(desk.core.infer_fill(cid(4), D("140"), desk.tick()))
    assert last_note(desk, "order filled while away; its trades are missing: inferring") == {"order": cid(4)}
    inferred = last_note(desk, "fill")
    assert (inferred["inferred"], inferred["fee"], inferred["fee_asset"]) == (True, D("0.014"), "USDT")
    desk.on_ticker(D("90"))


def test_the_log_lines_of_a_stop_and_of_the_ladder_ends() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.accept(desk.core.lay([PlannedOrder(0, SELL, LEVELS[0], Q, SELL_COST)], desk.now))
    desk.fill(cid(0))
    assert last_note(desk, "no counter-order at the end of the ladder") == {"level": 0, "side": "sell"}
    desk.on_ticker(D("94"))
    assert str(last_note(desk, "risk stop: halting the grid")["reason"]).startswith("stop-loss")


# ================================================================================ the time of what is booked
def _a_put_off_buy_facing_an_owed_sell(prepare: Callable[[Desk], object] | None = None) -> Desk:
    """The buy at 110 was never sent (the venue went down before its send): held, it faces the
    sell owed to 110. The next event, whatever it is, crosses them, at that event's time."""
    desk = Desk()
    desk.book(desk.core.lay(ladder(), desk.now))
    for level in (0, 3):
        desk.book(desk.core.accepted(cid(level), f"x{level}", OrderStatus.OPEN, desk.now))
    desk.fill(cid(0))  # its sell is owed to 110; the buy there, in flight, is withdrawn
    if prepare is not None:
        prepare(desk)
    desk.core.deferred(cid(1))
    return desk


EVENTS: dict[str, tuple[Callable[[Desk], object] | None, Callable[[Desk, datetime], Decision]]] = {
    "a ticker": (None, lambda desk, at: desk.core.on_ticker(desk.ticker(START))),
    "a trade": (None, lambda desk, at: desk.core.apply_fills([desk.trade(cid(3), D("0.01"), at=at)], at)),
    "an estimate": (None, lambda desk, at: desk.core.infer_fill(cid(3), D("130"), at)),
    "a refusal": (None, lambda desk, at: desk.core.refused(cid(4), "insufficient balance", at)),
    "a gone order": (None, lambda desk, at: desk.core.gone(cid(3), at, reason="lost")),
    "a gone order ending at what it executed": (
        lambda desk: desk.fill(cid(3), D("0.07")),  # 0.03 left at 130: under the minimum
        lambda desk, at: desk.core.gone(cid(3), at, reason="expired"),
    ),
    "the cancel outcome of that buy": (None, lambda desk, at: desk.core.cancelled(cid(1), ZERO, at)),
    "the cancel outcome of another withdrawal": (
        lambda desk: desk.fill(cid(4)),  # its buy is owed to 130: the sell there is withdrawn
        lambda desk, at: desk.core.cancelled(cid(3), ZERO, at),
    ),
}


@pytest.mark.parametrize("event", list(EVENTS))
def test_what_an_event_crosses_is_booked_at_the_event_time(event: str) -> None:
    prepare, happen = EVENTS[event]
    desk = _a_put_off_buy_facing_an_owed_sell(prepare)
    at = desk.tick()
    decision = desk.book(happen(desk, at))  # every order it puts carries `at`
    assert decision.updated[cid(1)].status is OrderStatus.CANCELED
    assert decision.updated[cid(1)].updated_at == at


def test_an_order_refused_when_the_venue_answers_again_is_booked_at_that_time() -> None:
    desk = Desk()
    desk.book(desk.core.venue_unavailable(desk.tick()))
    desk.book(desk.core.lay([PlannedOrder(1, BUY, LEVELS[1], D("0.00001"))], desk.now))
    back = desk.on_ticker(START)  # booked at the ticker's time
    assert back.updated[cid(1)].status is OrderStatus.REJECTED


# ================================================================================ decisions
def test_a_decision_merges_another_in_order() -> None:
    first, second = Decision(), Decision()
    a = TrackedOrder(
        RUN_ID, "a", RULES.symbol, BUY, OrderType.LIMIT, Q, D("1"), 0, OrderStatus.PENDING, T0, T0
    )
    b = TrackedOrder(RUN_ID, "b", RULES.symbol, BUY, OrderType.LIMIT, Q, D("1"), 0, OrderStatus.OPEN, T0, T0)
    first.add(a)
    second.put(b)
    second.add(b)
    second.leftover = Leftover(D("1"), D("2"))
    second.note("x", "warning", k=1)
    second.retracted.append("t")
    stop = StopDecision("stop-loss", sell_base=False)
    second.halted = stop
    first.merge(second)
    assert first.halted is stop
    first.merge(Decision())
    assert first.halted is stop
    assert list(first.added) == ["a", "b"]
    assert first.notes == [Note("x", "warning", {"k": 1})]
    assert first.leftover == Leftover(D("1"), D("2"))
    assert first.retracted == ["t"]
    first.put(replace_status(a, OrderStatus.OPEN))
    assert first.added["a"].status is OrderStatus.OPEN  # put of an added order stays an addition
    assert "a" not in first.updated
    empty = Decision()
    empty.merge(Decision())
    assert not empty.needs_booking


def replace_status(order: TrackedOrder, status: OrderStatus) -> TrackedOrder:
    from dataclasses import replace

    return replace(order, status=status)


def test_a_trade_id_the_venue_reuses_for_another_order_is_not_booked_and_is_reported(desk: Desk) -> None:
    """A venue that forgot its history (a testnet reset) numbers trades from 1 again: a trade id
    booked on one order arrives for another. It is reported, not booked (booking it would merge
    two trades, or, in the database, stop the bot at every start on the duplicate key)."""
    desk.fill(cid(1), trade_id="7")
    again = desk.deliver(desk.trade(cid(0), trade_id="7"))
    assert events(again) == [
        "the venue reused a trade id booked for another order (was it reset?): not booked"
    ]
    assert again.fills == [] and again.added == {}
    assert desk.core.order(cid(0)) is not None and desk.status(cid(0)) is OrderStatus.OPEN
    restored = _restore(desk)  # the rule survives a restart
    later = restored.apply_fills([desk.trade(cid(0), trade_id="7")], desk.tick())
    assert later.fills == [] and "was it reset?" in later.notes[0].event


# ================================================================================ closing by hand
def test_closing_the_grid_cancels_every_order_sells_nothing_and_ends_it(desk: Desk) -> None:
    reason = "closed with `stop --cancel-orders`"
    closed = desk.book(desk.core.close(reason, desk.tick()))
    assert events(closed) == ["grid closed: cancelling its orders"]
    assert closed.notes[0].fields == {"reason": reason}
    assert sorted(cancels(closed)) == sorted([cid(0), cid(1), cid(3), cid(4)])
    assert closed.halted == StopDecision(reason, sell_base=False)
    assert desk.core.halt == closed.halted
    assert desk.core.grid_orders() == []
    assert {desk.status(c) for c in (cid(0), cid(1), cid(3), cid(4))} == {OrderStatus.CANCELED}
    again = desk.core.close("closed twice", desk.tick())  # a second close decides nothing
    assert (again.commands, again.notes, again.halted, again.needs_booking) == ([], [], None, False)


def test_closing_a_grid_a_stop_halted_keeps_the_stops_reason() -> None:
    desk = Desk(stop_loss=D("95"))
    desk.start()
    desk.on_ticker(D("90"))
    closed = desk.core.close("closed by hand", desk.tick())
    assert (closed.commands, closed.halted) == ([], None)
    assert desk.core.halt is not None and desk.core.halt.reason.startswith("stop-loss")


# ================================================================================ a backtest's skipping
def test_the_core_waits_on_prices_only_for_orders_a_price_can_release() -> None:
    sent = Desk()
    sent.start()
    assert not sent.core.waits_on_prices()  # every order live: only a fill changes anything

    in_flight = Desk()
    in_flight.core.lay(ladder(), in_flight.now)
    assert not in_flight.core.waits_on_prices()  # being sent: their outcome is an event, not a price

    down = Desk()
    down.book(down.core.venue_unavailable(down.tick()))
    down.core.lay(ladder(), down.now)
    assert down.core.waits_on_prices()  # not sent yet: the next price may send them

    budget = Desk(investment=D("32.49"))
    budget.accept(budget.core.lay(ladder(), budget.now))
    assert not budget.core.waits_on_prices()  # held for the budget: only a fill frees quote

    panic = Desk()
    panic.start()
    panic.on_ticker(START, spread=D("2"))  # a wide spread: panic, no new buys
    panic.fill(cid(3))  # its counter-buy at 120 is held for the market state
    assert [n.fields["rule"] for n in panic.notes if n.event == "order held"] == ["MARKET_STATE"]
    assert panic.core.waits_on_prices()
    panic.answer(panic.on_ticker(START))  # calm again: the buy goes out
    assert not panic.core.waits_on_prices()
