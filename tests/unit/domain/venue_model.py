"""A small synchronous venue for driving the grid core in tests: resting limit orders, marketable
orders filled at placement (as takers, at the market), resting ones filled at their own price when
the price reaches them, fees in the asset received, increasing trade ids and times. No I/O.

It also runs the core's commands (the shell's job in production), so a test only moves the price
and decides when, how and in what order the venue's news reaches the core.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.grid import FEE_QUANTUM
from domain.grid_core import CancelOrder, Decision, GridCore
from domain.models import ZERO, Fill, OrderStatus, OrderType, Side, Ticker, TrackedOrder
from domain.rules import MarketRules

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class VenueOrder:
    order_id: str
    client_order_id: str
    side: Side
    price: Decimal | None
    amount: Decimal
    filled: Decimal = ZERO
    status: OrderStatus = OrderStatus.OPEN


@dataclass
class ModelVenue:
    rules: MarketRules
    price: Decimal
    fee: Decimal = Decimal("0.001")
    orders: dict[str, VenueOrder] = field(default_factory=dict)  # by client order id
    trades: list[Fill] = field(default_factory=list)
    undelivered: list[Fill] = field(default_factory=list)  # trades the core has not heard of yet
    now: datetime = T0
    lose_next_answer: bool = False  # the next placement happens, but its answer is lost
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _trade_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---------------------------------------------------------------- the market
    def tick(self) -> None:
        self.now += timedelta(seconds=1)

    def ticker(self) -> Ticker:
        tick = self.rules.tick_size
        return Ticker(self.rules.symbol, self.price - tick, self.price + tick, self.price, self.now)

    def move_to(self, price: Decimal) -> None:
        """The price walks to `price`; resting orders it reaches fill at their own price, in the
        order the walk reaches them."""
        self.tick()
        rising = price > self.price
        resting = [o for o in self.orders.values() if o.status is OrderStatus.OPEN and o.price is not None]
        resting.sort(key=lambda o: o.price or ZERO, reverse=not rising)
        for order in resting:
            assert order.price is not None
            if (order.side is Side.SELL and order.price <= price) or (
                order.side is Side.BUY and order.price >= price
            ):
                self._fill(order, order.price, maker=True)
        self.price = price

    def touch(self, client_order_id: str, share: Decimal) -> None:
        """The price walks up to a resting order and just touches it: thin liquidity fills it in
        part at its own price (what the walk passed on the way fills as usual)."""
        order = self.orders[client_order_id]
        assert order.price is not None and order.status is OrderStatus.OPEN
        tick = self.rules.tick_size
        self.move_to(order.price + tick if order.side is Side.BUY else order.price - tick)
        part = self.rules.floor_amount((order.amount - order.filled) * share)
        if part > 0 and order.status is OrderStatus.OPEN:
            self._fill(order, order.price, maker=True, amount=part)
        self.price = order.price

    def _fill(self, order: VenueOrder, price: Decimal, *, maker: bool, amount: Decimal | None = None) -> None:
        amount = order.amount - order.filled if amount is None else amount
        if order.side is Side.BUY:
            fee, asset = (amount * self.fee).quantize(FEE_QUANTUM), self.rules.base_asset
        else:
            fee, asset = (amount * price * self.fee).quantize(FEE_QUANTUM), self.rules.quote_asset
        self.now += timedelta(milliseconds=1)
        fill = Fill(
            str(next(self._trade_ids)),
            order.order_id,
            order.client_order_id,
            self.rules.symbol,
            order.side,
            price,
            amount,
            fee,
            asset,
            self.now,
            maker,
        )
        order.filled += amount
        if order.filled == order.amount:
            order.status = OrderStatus.FILLED
        self.trades.append(fill)
        self.undelivered.append(fill)

    # ---------------------------------------------------------------- the core's commands
    def place(self, order: TrackedOrder) -> VenueOrder:
        assert order.client_order_id not in self.orders, f"placed twice: {order.client_order_id}"
        placed = VenueOrder(
            str(next(self._ids)), order.client_order_id, order.side, order.price, order.amount
        )
        self.orders[order.client_order_id] = placed
        if order.type is OrderType.MARKET:
            self._fill(placed, self.price, maker=False)
        elif order.price is not None and (
            (order.side is Side.BUY and order.price >= self.price)
            or (order.side is Side.SELL and order.price <= self.price)
        ):
            self._fill(placed, self.price, maker=False)  # marketable: fills at once, at the market
        return placed

    def execute(self, core: GridCore, decision: Decision, log: list[Decision]) -> None:
        """Carry out a decision's commands as the shell would, and every decision that follows."""
        pending = [decision]
        while pending:
            current = pending.pop(0)
            log.append(current)
            for command in current.commands:
                if isinstance(command, CancelOrder):
                    venue_order = self.orders.get(command.order.client_order_id)
                    filled: Decimal | None = None
                    if venue_order is not None and venue_order.status is OrderStatus.OPEN:
                        venue_order.status = OrderStatus.CANCELED
                        filled = venue_order.filled
                    pending.append(core.cancelled(command.order.client_order_id, filled, self.now))
                    continue
                cid = command.order.client_order_id
                if not core.wants_placed(cid):
                    core.deferred(cid)
                    continue
                if command.look_up_first and cid in self.orders:
                    found = self.orders[cid]
                    pending.append(core.accepted(cid, found.order_id, OrderStatus.OPEN, self.now))
                    continue
                if command.look_up_first:
                    core.never_sent(cid)
                placed = self.place(command.order)
                if self.lose_next_answer:
                    self.lose_next_answer = False
                    pending.append(core.send_unknown(cid, "answer lost", self.now, venue_down=False))
                    continue
                pending.append(core.accepted(cid, placed.order_id, OrderStatus.OPEN, self.now))

    # ---------------------------------------------------------------- what a user checks
    def resting(self) -> list[VenueOrder]:
        return [o for o in self.orders.values() if o.status is OrderStatus.OPEN]

    def base_from_trades(self) -> Decimal:
        total = ZERO
        for t in self.trades:
            if t.side is Side.BUY:
                total += t.amount - (t.fee if t.fee_asset == self.rules.base_asset else ZERO)
            else:
                total -= t.amount
        return total
