"""The grid's decisions as a pure, synchronous state machine.

The core holds the ladder (each level's one occupant, live or held, plus the counter-orders
owed to it), the inventory, the carried crumb of base and the realized profit. It takes events
(fills, an order accepted, refused or gone, a send with an unknown outcome, a price) with their
times, and answers each with a `Decision`: the orders and fills to book, and the commands to
execute (place, cancel). It does no I/O, reads no clock and never awaits: the application's
shell persists a decision, then executes its commands and reports their outcomes back as events.

The promises it keeps (each one tested in tests/unit/domain/test_grid_core_*.py):
1. Fills are applied in venue order (trade time, then trade id) within what is delivered
   together; a trade seen twice is booked once.
2. An order's booked quantity never exceeds its amount.
3. Every completed grid fill yields exactly one counter-order, one level away. When that level
   still has an occupant, the counter-order is *owed*: it goes out the moment the level frees.
   It is never dropped and never merged into another order.
4. No level ever has two occupants (live or held orders).
5. Orders held back (market state, venue down, order-count limit, budget) go out nearest the
   market first, once the hold clears.
6. At rest, the book holds levels - 1 grid orders.
7. The books match the venue: position and realized profit are sums over the booked fills.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any, Protocol

from returns.result import Failure

from domain.grid import (
    FEE_QUANTUM,
    NO_LEFTOVER,
    Leftover,
    PlannedOrder,
    client_order_id,
    counter_order_carrying,
    sell_profit,
)
from domain.models import (
    INFERRED_TRADE_PREFIX,
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
from domain.risk import (
    Exposure,
    MarketState,
    MarketStateThresholds,
    RiskLimits,
    StopDecision,
    check_new_order,
    classify_market,
    evaluate_stop,
)
from domain.rules import MarketRules

MARKET_LEVEL = -1  # orders outside the ladder: the start's purchase, a stop's sale

# Refusals that pass with time (the market calms, an order fills, a sell brings quote back): the
# order is held, not refused, and goes out when the hold clears.
HOLD_RULES = frozenset({"MARKET_STATE", "MAX_OPEN_ORDERS", "MAX_NUM_ORDERS", "INVESTMENT"})


# ---------------------------------------------------------------------------------- commands
@dataclass(frozen=True, slots=True)
class PlaceOrder:
    order: TrackedOrder
    look_up_first: bool = False  # an earlier send had an unknown outcome: find it by client id first

    def request(self) -> OrderRequest:
        o = self.order
        return OrderRequest(o.symbol, o.side, o.type, o.amount, o.client_order_id, o.price)


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order: TrackedOrder


Command = PlaceOrder | CancelOrder


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth a log line: `event` is the message, `fields` its context."""

    event: str
    severity: str = "info"  # a structlog method name: debug, info, warning, error
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class Decision:
    """What one event changed: persist `added`/`updated` orders, `fills` and `retracted` fills
    (and `leftover` when set) in one unit of work, *then* execute `commands` in order."""

    added: dict[str, TrackedOrder] = field(default_factory=dict)
    updated: dict[str, TrackedOrder] = field(default_factory=dict)
    fills: list[BookedFill] = field(default_factory=list)
    retracted: list[str] = field(default_factory=list)  # trade ids of inferred fills now replaced
    commands: list[Command] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    leftover: Leftover | None = None  # the carried crumb, when it changed
    halted: StopDecision | None = None  # set when a risk rule stopped the grid in this decision

    def put(self, order: TrackedOrder) -> None:
        if order.client_order_id in self.added:
            self.added[order.client_order_id] = order
        else:
            self.updated[order.client_order_id] = order

    def add(self, order: TrackedOrder) -> None:
        self.added[order.client_order_id] = order

    def note(self, event: str, severity: str = "info", /, **fields: object) -> None:
        self.notes.append(Note(event, severity, fields))

    @property
    def needs_booking(self) -> bool:
        return bool(self.added or self.updated or self.fills or self.retracted or self.leftover is not None)

    def merge(self, other: Decision) -> None:
        for order in other.added.values():
            self.add(order)
        for order in other.updated.values():
            self.put(order)
        self.fills.extend(other.fills)
        self.retracted.extend(other.retracted)
        self.commands.extend(other.commands)
        self.notes.extend(other.notes)
        if other.leftover is not None:
            self.leftover = other.leftover
        if other.halted is not None:
            self.halted = other.halted


# ---------------------------------------------------------------------------------- config
@dataclass(frozen=True, slots=True)
class CoreConfig:
    run_id: str
    symbol: str
    rules: MarketRules
    levels: tuple[Decimal, ...]
    quantity: Decimal  # base per level
    limits: RiskLimits
    maker_fee: Decimal
    taker_fee: Decimal
    thresholds: MarketStateThresholds = field(default_factory=MarketStateThresholds)
    volatility_window_s: float = 900.0


class PriceWindow(Protocol):
    """The prices the market state is read from: those seen over the last `volatility_window_s`
    of market time. The core pushes each price it observes, then asks for the window's extremes."""

    def push(self, at: datetime, price: Decimal) -> None: ...

    def extremes(self) -> tuple[Decimal, Decimal] | None:
        """(lowest, highest) price in the window; None when it holds none."""
        ...


class RecentPrices:
    """The window as the live bot keeps it: every price pushed, dropped once older than the
    window (measured from the latest price's time)."""

    def __init__(self, window_s: float) -> None:
        self._window = timedelta(seconds=window_s)
        self._prices: deque[tuple[datetime, Decimal]] = deque()

    def push(self, at: datetime, price: Decimal) -> None:
        self._prices.append((at, price))
        horizon = at - self._window
        while self._prices[0][0] < horizon:
            self._prices.popleft()

    def extremes(self) -> tuple[Decimal, Decimal] | None:
        if not self._prices:
            return None
        prices = [p for _, p in self._prices]
        return min(prices), max(prices)


def venue_order_key(fill: Fill) -> tuple[datetime, int, str]:
    """Venue order: trade time, then trade id (numerically when it is a number, as on Binance)."""
    tid = fill.trade_id
    return (fill.timestamp, int(tid), "") if tid.isdigit() else (fill.timestamp, -1, tid)


@dataclass(slots=True)
class _Book:
    """The fills booked against one order, with what they add up to."""

    fills: list[BookedFill] = field(default_factory=list)
    countered: bool = False  # its counter-order was decided (placed, owed, or none at an end)

    def has(self, trade_id: str) -> bool:
        return any(b.fill.trade_id == trade_id for b in self.fills)

    @property
    def inferred(self) -> list[BookedFill]:
        return [b for b in self.fills if b.fill.is_inferred]

    @property
    def amount(self) -> Decimal:
        return sum((b.fill.amount for b in self.fills), ZERO)

    def amount_of(self, cid: str) -> Decimal:
        """What one order of the book executed (a book may hold a predecessor's fills too)."""
        return sum((b.fill.amount for b in self.fills if b.fill.client_order_id == cid), ZERO)

    @property
    def quote(self) -> Decimal:
        return sum((b.fill.quote_amount for b in self.fills), ZERO)

    def base_fee(self, base_asset: str) -> Decimal:
        return sum((b.fill.fee for b in self.fills if b.fill.fee_asset == base_asset), ZERO)


_LIVE = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)


class _OrderTable(dict[str, TrackedOrder]):
    """The active orders by client id, keeping what the hot paths ask for at every change instead
    of scanning: the grid orders booked PENDING (not sent yet, or being sent), and the count and
    quote at stake of the grid orders the venue confirmed (OPEN or PARTIALLY_FILLED)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[str, TrackedOrder] = {}
        self.live_count = 0
        self.live_quote = ZERO

    @staticmethod
    def at_stake(order: TrackedOrder) -> Decimal:
        return (order.price or ZERO) * order.remaining if order.side is Side.BUY else order.cost_basis

    def _leave(self, order: TrackedOrder) -> None:
        if order.level < 0:
            return
        if order.status is OrderStatus.PENDING:
            del self.pending[order.client_order_id]
        elif order.status in _LIVE:
            self.live_count -= 1
            self.live_quote -= self.at_stake(order)

    def _enter(self, order: TrackedOrder) -> None:
        if order.level < 0:
            return
        if order.status is OrderStatus.PENDING:
            self.pending[order.client_order_id] = order
        elif order.status in _LIVE:
            self.live_count += 1
            self.live_quote += self.at_stake(order)

    def __setitem__(self, cid: str, order: TrackedOrder) -> None:
        previous = self.get(cid)
        if previous is not None:
            self._leave(previous)
        super().__setitem__(cid, order)
        self._enter(order)

    def __delitem__(self, cid: str) -> None:
        self._leave(self[cid])
        super().__delitem__(cid)

    def pop(self, cid: str, *default: Any) -> Any:
        if cid in self:
            order = super().pop(cid)
            self._leave(order)
            return order
        return super().pop(cid, *default)


class GridCore:
    """One run's grid. Build it with `GridCore.new` for a fresh grid or `GridCore.restore` from
    the books after a restart; then feed it events."""

    def __init__(self, config: CoreConfig, window: PriceWindow | None = None) -> None:
        """`window`: where the market state's prices come from; by default the prices observed
        (a backtest that skips quiet stretches gives one that reads them from its data)."""
        self.config = config
        self._orders = _OrderTable()  # active orders of the run, grid and market
        self._books: dict[str, _Book] = {}  # fills of active orders, and of orders still provisional
        self._provisional: dict[str, TrackedOrder] = {}  # finished orders whose books hold inferred fills
        self._occupant: dict[int, str] = {}  # level -> client id of its live or held order
        self._trade_owner: dict[str, str] = {}  # trade id -> client id of the order it is booked on
        self._owed: dict[int, deque[str]] = {}  # level -> owed counter-orders, oldest first
        self._in_flight: set[str] = set()  # place commands issued, outcome not reported yet
        self._attempted: set[str] = set()  # sent with an unknown outcome: look up before resending
        self._held: dict[str, str] = {}  # client id -> why it is held (to log a hold once)
        # Orders that left the ladder unfinished (gone, withdrawn, cancelled by a halt): their late fills
        # are still booked. A successor placed for what one had left shares its book.
        self._retired: dict[str, TrackedOrder] = {}
        self._successor: dict[str, str] = {}
        self._owed_books: dict[str, _Book] = {}  # owed orders that carry a predecessor's fills
        self._unconfirmed: set[str] = set()  # cancels asked for and not confirmed yet
        self._withdrawing: set[str] = set()  # live orders being cancelled to cross with an owed counter
        self._no_withdraw: set[str] = set()  # withdrawals that found fills: left to fill
        self._seq: dict[int, int] = {}
        self.leftover: Leftover = NO_LEFTOVER
        self.realized = ZERO
        self.position = ZERO  # base held per the books: bought net of base fees, minus sold
        self.fills_booked = 0
        self.halt: StopDecision | None = None
        self.market_state = MarketState.NORMAL
        self.last_ticker: Ticker | None = None
        self._venue_available = True
        self._window = window if window is not None else RecentPrices(config.volatility_window_s)

    # ---------------------------------------------------------------------- building
    @classmethod
    def restore(
        cls,
        config: CoreConfig,
        *,
        active: Iterable[TrackedOrder],
        fills: Iterable[BookedFill],
        every_order: Iterable[TrackedOrder],
        leftover: Leftover,
    ) -> GridCore:
        """The core of a run from its books: its active orders (OWED included), every fill it
        booked, every order it ever made (for client id sequences) and its carried crumb. Orders
        still PENDING may have been sent before a crash: they are looked up before any resend."""
        core = cls(config)
        core.leftover = leftover
        known: dict[str, TrackedOrder] = {}
        for order in every_order:
            known[order.client_order_id] = order
            core._seq[order.level] = core._seq.get(order.level, 0) + 1
        by_order: dict[str, list[BookedFill]] = {}
        for booked in fills:
            core._trade_owner[booked.fill.trade_id] = booked.fill.client_order_id
            core.fills_booked += 1
            core.realized += booked.realized_pnl
            core.position += core._base_delta(booked.fill)
            by_order.setdefault(booked.fill.client_order_id, []).append(booked)
        for order in sorted(active, key=lambda o: (o.created_at, o.client_order_id)):
            core._orders[order.client_order_id] = order
            book = _Book(list(by_order.get(order.client_order_id, [])))
            core._books[order.client_order_id] = book
            # A successor of orders that were gone in part shares their book (see `gone`).
            child, parent = order, known.get(order.parent_client_order_id or "")
            while (
                parent is not None
                and parent.status is OrderStatus.CANCELED
                and (parent.level, parent.side) == (child.level, child.side)
            ):
                book.fills[:0] = by_order.get(parent.client_order_id, [])
                core._books[parent.client_order_id] = book
                core._retired[parent.client_order_id] = parent
                core._successor[parent.client_order_id] = child.client_order_id
                child, parent = parent, known.get(parent.parent_client_order_id or "")
            if order.status is OrderStatus.PENDING:
                core._attempted.add(order.client_order_id)
            if order.level < 0:
                continue
            if order.status is OrderStatus.OWED:
                core._owed.setdefault(order.level, deque()).append(order.client_order_id)
            elif order.level not in core._occupant:
                core._occupant[order.level] = order.client_order_id
        for cid, booked_fills in by_order.items():
            finished = known.get(cid)
            if (
                cid not in core._orders
                and finished is not None
                and any(b.fill.is_inferred for b in booked_fills)
            ):
                # A finished order whose real trades had not arrived: kept until they do.
                core._books[cid] = _Book(booked_fills, countered=True)
                core._provisional[cid] = finished
        return core

    def _next_id(self, level: int) -> str:
        seq = self._seq.get(level, 0)
        self._seq[level] = seq + 1
        return client_order_id(self.config.run_id, level, seq)

    def _new_order(
        self,
        planned: PlannedOrder,
        status: OrderStatus,
        at: datetime,
        parent: str | None,
        order_type: OrderType = OrderType.LIMIT,
    ) -> TrackedOrder:
        return TrackedOrder(
            run_id=self.config.run_id,
            client_order_id=self._next_id(planned.level),
            symbol=self.config.symbol,
            side=planned.side,
            type=order_type,
            amount=planned.amount,
            price=planned.price if order_type is OrderType.LIMIT else None,
            level=planned.level,
            status=status,
            created_at=at,
            updated_at=at,
            cost_basis=planned.cost_basis,
            parent_client_order_id=parent,
        )

    def lay(
        self, planned: Iterable[PlannedOrder], at: datetime, leftover: Leftover | None = None
    ) -> Decision:
        """The start's ladder (buys below the empty level, sells above it), held until released."""
        decision = Decision()
        if leftover is not None:
            self.leftover = leftover
            decision.leftover = leftover
        for item in planned:
            self._occupy_or_owe(item, at, None, decision)
        self._release(at, decision)
        return decision

    def market_order(self, side: Side, amount: Decimal, at: datetime, cost_basis: Decimal = ZERO) -> Decision:
        """An order at market outside the ladder (the start's purchase, a stop's sale)."""
        planned = PlannedOrder(MARKET_LEVEL, side, ZERO, amount, cost_basis)
        order = self._new_order(planned, OrderStatus.PENDING, at, None, OrderType.MARKET)
        self._orders[order.client_order_id] = order
        self._books[order.client_order_id] = _Book()
        self._in_flight.add(order.client_order_id)
        decision = Decision()
        decision.add(order)
        decision.commands.append(PlaceOrder(order))
        return decision

    # ---------------------------------------------------------------------- queries
    @property
    def active_orders(self) -> list[TrackedOrder]:
        return list(self._orders.values())

    def order(self, client_order_id: str) -> TrackedOrder | None:
        return self._orders.get(client_order_id) or self._retired.get(client_order_id)

    def grid_orders(self) -> list[TrackedOrder]:
        """The ladder's orders that are not owed: at most one per level."""
        return [self._orders[cid] for cid in self._occupant.values()]

    def provisional_orders(self) -> list[TrackedOrder]:
        """Finished orders booked (partly) with inferred fills, waiting for their real trades."""
        return list(self._provisional.values())

    def owed_orders(self) -> list[TrackedOrder]:
        return [self._orders[cid] for queue in self._owed.values() for cid in queue]

    def waits_on_prices(self) -> bool:
        """Whether an order waits for what a price alone can change: held for the market state,
        or not yet sent. (An order held for the budget or the order count waits for a fill.) A
        driver that skips the quiet stretches of a price path must step through every price
        while this holds."""
        return any(
            cid not in self._in_flight and self._held.get(cid, "MARKET_STATE") == "MARKET_STATE"
            for cid in self._orders.pending
        )

    def wants_placed(self, cid: str) -> bool:
        """Whether a place command issued earlier still stands (an event since may have withdrawn it)."""
        order = self._orders.get(cid)
        return order is not None and order.status is OrderStatus.PENDING

    def may_be_on_venue(self, order: TrackedOrder) -> bool:
        """Sent, being sent, or possibly sent before a crash or a lost answer."""
        cid = order.client_order_id
        return order.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED) or (
            order.status is OrderStatus.PENDING and (cid in self._attempted or cid in self._in_flight)
        )

    def exposure(self) -> Exposure:
        """The grid orders that may be on the venue (see `may_be_on_venue`), what they put at
        stake (a buy its unfilled quote, a sell its base's cost), and the carried crumb's cost."""
        table = self._orders
        sent = [o for cid, o in table.pending.items() if cid in self._attempted or cid in self._in_flight]
        in_use = table.live_quote + sum((table.at_stake(o) for o in sent), ZERO)
        return Exposure(
            open_orders=table.live_count + len(sent),
            quote_in_use=in_use + self.leftover.cost,
            realized_pnl=self.realized,
        )

    # ---------------------------------------------------------------------- events: orders
    def accepted(self, cid: str, exchange_order_id: str, status: OrderStatus, at: datetime) -> Decision:
        """The venue has the order (placed, or found by its client id after an unknown outcome)."""
        decision = Decision()
        self._in_flight.discard(cid)
        self._attempted.discard(cid)
        self._held.pop(cid, None)
        order = self._orders.get(cid)
        if order is None:
            return decision
        if status in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
            order = replace(order, exchange_order_id=exchange_order_id)
            self._orders[cid] = order
            return self.gone(cid, at, reason=f"the venue reports it {status.value}")
        changed = replace(
            order,
            exchange_order_id=order.exchange_order_id or exchange_order_id,
            status=OrderStatus.OPEN if order.status is OrderStatus.PENDING else order.status,
            updated_at=at,
        )
        self._orders[cid] = changed
        decision.put(changed)
        if order.status is not OrderStatus.PENDING:
            return decision
        decision.note(
            "order placed",
            order=cid,
            side=order.side.value,
            level=order.level,
            price="market" if order.price is None else order.price,
            amount=order.amount,
        )
        return decision

    def refused(self, cid: str, reason: str, at: datetime) -> Decision:
        """The venue refused the order for good (a filter, insufficient funds): the level frees."""
        decision = Decision()
        self._in_flight.discard(cid)
        self._attempted.discard(cid)
        order = self._orders.get(cid)
        if order is None:
            return decision
        decision.note("venue refused the order", "error", order=cid, level=order.level, reason=reason)
        self._finish(replace(order, status=OrderStatus.REJECTED, updated_at=at), decision)
        self._release(at, decision)
        return decision

    def send_unknown(self, cid: str, reason: str, at: datetime, *, venue_down: bool) -> Decision:
        """A send whose outcome is unknown (timeout, 5xx, rate limit): the order stays PENDING and
        is looked up by its client id before any resend, so it is never placed twice."""
        decision = Decision()
        self._in_flight.discard(cid)
        if cid in self._orders:
            self._attempted.add(cid)
            decision.note("order not sent; will retry", "warning", order=cid, reason=reason)
        if venue_down:
            self._set_venue_available(available=False, at=at, decision=decision)
        return decision

    def _retire(self, cid: str, retired: TrackedOrder, decision: Decision) -> None:
        """Take an order off the ladder into the retired set, whose late fills are still booked."""
        del self._orders[cid]
        self._held.pop(cid, None)
        self._retired[cid] = retired
        decision.put(retired)

    def gone(self, cid: str, at: datetime, *, reason: str, filled: Decimal | None = None) -> Decision:
        """An order the venue no longer has open: cancelled elsewhere, lost, withdrawn. `filled` is
        what the venue says it executed, when known. A grid order is placed again, at its level, for
        what it had left; the successor shares its book, so the counter-order covers both. Fills of
        the gone order still on their way are booked when they come."""
        decision = Decision()
        self._in_flight.discard(cid)
        self._attempted.discard(cid)
        order = self._orders.get(cid)
        if order is None:
            return decision
        book = self._books[cid]
        executed = max(book.amount_of(cid), filled or ZERO)
        if executed >= order.amount:
            self._no_withdraw.add(cid)  # it filled: its fills complete it when they come
            return decision
        remaining = order.amount - executed
        if (
            executed > 0
            and order.level >= 0
            and order.price is not None
            and self.halt is None
            and isinstance(
                self.config.rules.check_order(
                    OrderRequest(order.symbol, order.side, order.type, remaining, cid, order.price)
                ),
                Failure,
            )
        ):
            # What it had left is under the market's minimum: no successor could carry it. The
            # order ends at what it executed and gets its counter-order for that; a sell's unsold
            # rest stays with the grid as carried base.
            if order.side is Side.SELL:
                share = remaining / order.amount
                self.leftover = Leftover(
                    self.leftover.base + remaining, self.leftover.cost + order.cost_basis * share
                )
                decision.leftover = self.leftover
            waiting = book.amount_of(cid) < executed
            decision.note(
                "order gone; what it had left is under the market's minimum: "
                + ("kept at what it executed until its trades come" if waiting else "countered as executed"),
                "warning",
                order=cid,
                level=order.level,
                executed=str(executed),
                reason=reason,
            )
            if waiting:
                # The venue reported the execution before its trades came: the order stays on its
                # level at what it executed, and its trades complete it when they come.
                shrunk = replace(
                    order,
                    amount=executed,
                    cost_basis=(order.cost_basis * executed / order.amount).quantize(FEE_QUANTUM),
                    updated_at=at,
                )
                self._orders[cid] = shrunk
                self._no_withdraw.add(cid)
                decision.put(shrunk)
                return decision
            retired = replace(order, status=OrderStatus.CANCELED, updated_at=at)
            self._retire(cid, retired, decision)
            self._complete(retired, book, at, decision)
            self._release(at, decision)
            return decision
        self._retire(cid, replace(order, status=OrderStatus.CANCELED, updated_at=at), decision)
        if order.level >= 0 and order.price is not None and self.halt is None:
            again = PlannedOrder(
                order.level,
                order.side,
                order.price,
                remaining,
                (order.cost_basis * remaining / order.amount).quantize(FEE_QUANTUM),
            )
            replacement = self._new_order(again, OrderStatus.PENDING, at, cid)
            self._orders[replacement.client_order_id] = replacement
            self._books[replacement.client_order_id] = book
            self._successor[cid] = replacement.client_order_id
            self._occupant[order.level] = replacement.client_order_id
            decision.add(replacement)
            decision.note(
                "order gone from the venue; placing what it had left again",
                "warning",
                order=cid,
                replacement=replacement.client_order_id,
                level=order.level,
                amount=str(remaining),
                reason=reason,
            )
        else:
            self._free_level(order.level, cid, at, decision)
        self._release(at, decision)
        return decision

    def cancelled(self, cid: str, filled: Decimal | None, at: datetime) -> Decision:
        """The outcome of a cancel the core asked for: `filled` is what the venue says the order
        executed, None when the venue no longer had it open (then its fills, if any, are on their
        way). A grid order withdrawn so that an owed counter-order could take its level is crossed
        with that counter-order once the venue confirms it executed nothing."""
        decision = Decision()
        self._unconfirmed.discard(cid)
        if cid not in self._withdrawing:
            return decision
        self._withdrawing.discard(cid)
        holder = self._orders.get(cid)
        if holder is None:
            return decision  # it completed meanwhile: its fills freed the level
        if filled is None:
            self._no_withdraw.add(cid)  # not open any more: its fills will free the level
            decision.note("withdrawal found the order gone: the counter-order stays owed", order=cid)
            return decision
        if filled > 0 or self._books[cid].amount > 0:
            return self.gone(cid, at, reason="withdrawn after filling in part", filled=filled)
        queue = self._owed.get(holder.level, deque())
        owed_id = next((o for o in queue if self._orders[o].side is not holder.side), None)
        if owed_id is not None:
            self._cross_with_owed(holder, owed_id, at, decision)
        self._release(at, decision)
        return decision

    def _cross_with_owed(self, holder: TrackedOrder, owed_id: str, at: datetime, decision: Decision) -> None:
        queue = self._owed[holder.level]
        queue.remove(owed_id)
        if not queue:
            del self._owed[holder.level]
        owed = self._orders.pop(owed_id)
        decision.put(replace(owed, status=OrderStatus.CANCELED, updated_at=at))
        planned = PlannedOrder(owed.level, owed.side, owed.price or ZERO, owed.amount, owed.cost_basis)
        self._cross(holder, planned, owed_id, at, decision, self._owed_books.pop(owed_id, None))

    def _owed_against(self, holder: TrackedOrder) -> str | None:
        """The first counter-order owed to `holder`'s level of the other side, if any (inside
        the ladder: at its ends there is no level to move to)."""
        queue = self._owed.get(holder.level)
        if not queue or not 0 < holder.level < len(self.config.levels) - 1:
            return None
        return next((o for o in queue if self._orders[o].side is not holder.side), None)

    def _resolve_owed(self, at: datetime, decision: Decision) -> None:
        """An owed counter-order facing an order of the other side on its level: the two cancel
        out, so a held holder is crossed with it at once and a live one is withdrawn first."""
        for level in list(self._owed):
            holder_id = self._occupant.get(level)
            if holder_id is None:
                continue
            holder = self._orders[holder_id]
            owed_id = self._owed_against(holder)
            if owed_id is None:
                continue
            if self._is_held(holder):
                self._cross_with_owed(holder, owed_id, at, decision)
            elif (
                holder_id not in self._withdrawing
                and holder_id not in self._no_withdraw
                and self.may_be_on_venue(holder)
            ):
                self._withdrawing.add(holder_id)
                decision.commands.append(CancelOrder(holder))
                decision.note("withdrawing an order to cross it with an owed counter-order", order=holder_id)

    def unconfirmed_cancels(self) -> list[TrackedOrder]:
        """Cancels a halt asked for that the venue has not confirmed (e.g. an outage cut them)."""
        return [self._retired[cid] for cid in sorted(self._unconfirmed)]

    def deferred(self, cid: str) -> None:
        """A place command was not carried out (the venue went down before it): held again."""
        self._in_flight.discard(cid)

    def never_sent(self, cid: str) -> None:
        """A PENDING order the venue does not know: it was never sent, so it needs no look-up."""
        self._attempted.discard(cid)

    # ---------------------------------------------------------------------- events: fills
    def apply_fills(self, fills: Sequence[Fill], at: datetime) -> Decision:
        """Book fills delivered together, in venue order, each trade once; counter what completes."""
        decision = Decision()
        for fill in sorted(fills, key=venue_order_key):
            self._apply(fill, at, decision)
        self._release(at, decision)
        return decision

    def infer_fill(self, cid: str, price: Decimal, at: datetime) -> Decision:
        """The venue says the order filled but its trades are not available yet: book what is
        missing as one inferred fill (a conservative fee estimate), to be replaced by the real
        trades when they appear."""
        order = self._orders.get(cid)
        decision = Decision()
        if order is None or order.exchange_order_id is None:
            return decision
        missing = order.amount - self._books[cid].amount_of(cid)
        if missing <= 0:
            return decision
        fill = self._inferred(order, missing, price, at)
        decision.note("order filled while away; its trades are missing: inferring", "warning", order=cid)
        self._apply(fill, at, decision)
        self._release(at, decision)
        return decision

    def _inferred(self, order: TrackedOrder, amount: Decimal, price: Decimal, at: datetime) -> Fill:
        """The estimate of an order's missing trades; its id names what was real when it was made,
        so an estimate made again after some real trades arrive has an id of its own."""
        real = order.amount - amount
        rules = self.config.rules
        rate = max(self.config.maker_fee, self.config.taker_fee)
        if order.side is Side.BUY:
            fee, fee_asset = (amount * rate).quantize(FEE_QUANTUM, rounding=ROUND_CEILING), rules.base_asset
        else:
            fee = (amount * price * rate).quantize(FEE_QUANTUM, rounding=ROUND_CEILING)
            fee_asset = rules.quote_asset
        return Fill(
            trade_id=f"{INFERRED_TRADE_PREFIX}{order.exchange_order_id}-{real.normalize():f}",
            order_id=order.exchange_order_id or "",
            client_order_id=order.client_order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            amount=amount,
            fee=fee,
            fee_asset=fee_asset,
            timestamp=at,
        )

    def _find(self, fill: Fill) -> TrackedOrder | None:
        cid = fill.client_order_id
        for pool in (self._orders, self._provisional, self._retired):
            if cid in pool:
                return pool[cid]
        for pool in (self._orders, self._provisional, self._retired):
            for order in pool.values():
                if order.exchange_order_id is not None and order.exchange_order_id == fill.order_id:
                    return order
        return None

    def _apply(self, fill: Fill, at: datetime, decision: Decision) -> None:
        order = self._find(fill)
        if order is None:
            decision.note("fill of no active order of this grid ignored", "debug", trade_id=fill.trade_id)
            return
        cid = order.client_order_id
        if fill.client_order_id != cid:  # found by the venue's order id: it is this order's trade
            fill = replace(fill, client_order_id=cid)
        book = self._books.setdefault(cid, _Book())
        if book.has(fill.trade_id):
            decision.note("trade already booked", "debug", trade_id=fill.trade_id, order=cid)
            return
        owner = self._trade_owner.get(fill.trade_id)
        if owner is not None and owner != cid:
            # A trade id is the venue's promise of one trade; seen again on another order, the venue
            # has forgotten its history (a testnet reset): the books cannot follow it.
            decision.note(
                "the venue reused a trade id booked for another order (was it reset?): not booked",
                "error",
                trade_id=fill.trade_id,
                order=cid,
                booked_on=owner,
            )
            return
        if order.status is OrderStatus.OWED:
            decision.note("fill of an order never sent ignored", "error", order=cid, trade_id=fill.trade_id)
            return
        replaced: list[BookedFill] = []
        before = _Book(list(book.fills))
        if not fill.is_inferred and book.inferred:
            replaced = book.inferred  # real trades replace inferred ones, never add to them
            for booked in replaced:
                self._unbook(book, booked, decision)
        if book.amount_of(cid) + fill.amount > order.amount:
            decision.note(
                "fill past the order's amount ignored",
                "error",
                order=cid,
                trade_id=fill.trade_id,
                booked=str(book.amount_of(cid)),
                amount=str(order.amount),
            )
            for booked in replaced:  # keep the books whole: put the estimate back
                self._book(book, booked, decision)
            return
        booked = self._booked(order, fill)
        self._book(book, booked, decision)
        if replaced:
            missing = order.amount - book.amount_of(cid)
            if missing > 0 and order.status is OrderStatus.FILLED:
                # Only some real trades are in: the estimate still stands for the rest.
                self._book(
                    book,
                    self._booked(order, self._inferred(order, missing, fill.price, at)),
                    decision,
                )
            self._settle_replacement(order, before, book, decision)
        filled = book.amount_of(cid)
        status = OrderStatus.FILLED if filled >= order.amount else OrderStatus.PARTIALLY_FILLED
        if order.status is OrderStatus.CANCELED:
            status = OrderStatus.FILLED if filled >= order.amount else OrderStatus.CANCELED
        changed = replace(
            order,
            filled=filled,
            status=status,
            updated_at=at,
            exchange_order_id=order.exchange_order_id or fill.order_id,
        )
        decision.put(changed)
        self._in_flight.discard(cid)
        self._attempted.discard(cid)
        if cid in self._retired:
            self._retired[cid] = changed
            successor = self._successor.get(cid)
            if order.side is Side.BUY and order.level >= 0 and (successor is None or book.countered):
                # Base no order of the ladder will sell: carried into the next sell (or a stop's sale).
                self._carry(booked, decision)
            return
        if cid in self._provisional:
            if not book.inferred:
                self._provisional.pop(cid)
                self._books.pop(cid, None)
            else:
                self._provisional[cid] = changed
            return
        self._orders[cid] = changed
        decision.note(
            "fill",
            order=cid,
            side=fill.side.value,
            level=order.level,
            price=fill.price,
            amount=fill.amount,
            fee=fill.fee,
            fee_asset=fill.fee_asset,
            realized_pnl=booked.realized_pnl,
            total_realized_pnl=self.realized,
            inferred=fill.is_inferred,
        )
        if status is OrderStatus.FILLED:
            self._complete(changed, book, at, decision)

    def _booked(self, order: TrackedOrder, fill: Fill) -> BookedFill:
        pnl = ZERO
        if order.side is Side.SELL and order.amount > 0:
            pnl = sell_profit(
                price=fill.price,
                amount=fill.amount,
                fee=fill.fee,
                fee_asset_is_quote=fill.fee_asset == self.config.rules.quote_asset,
                cost_basis=(order.cost_basis * fill.amount / order.amount).quantize(FEE_QUANTUM),
            )
        return BookedFill(self.config.run_id, fill, pnl)

    def _base_delta(self, fill: Fill) -> Decimal:
        if fill.side is Side.SELL:
            return -fill.amount
        return fill.amount - (fill.fee if fill.fee_asset == self.config.rules.base_asset else ZERO)

    def _book(self, book: _Book, booked: BookedFill, decision: Decision) -> None:
        self._trade_owner[booked.fill.trade_id] = booked.fill.client_order_id
        book.fills.append(booked)
        decision.fills.append(booked)
        self.realized += booked.realized_pnl
        self.position += self._base_delta(booked.fill)
        self.fills_booked += 1

    def _unbook(self, book: _Book, booked: BookedFill, decision: Decision) -> None:
        book.fills.remove(booked)  # (its trade id stays owned: an estimate's id never comes again)
        if booked in decision.fills:
            decision.fills.remove(booked)
        else:
            decision.retracted.append(booked.fill.trade_id)
        self.realized -= booked.realized_pnl
        self.position -= self._base_delta(booked.fill)
        self.fills_booked -= 1

    def _carry(self, booked: BookedFill, decision: Decision) -> None:
        fill = booked.fill
        received = fill.amount - (fill.fee if fill.fee_asset == self.config.rules.base_asset else ZERO)
        self.leftover = Leftover(self.leftover.base + received, self.leftover.cost + fill.quote_amount)
        decision.leftover = self.leftover

    def _settle_replacement(self, order: TrackedOrder, was: _Book, book: _Book, decision: Decision) -> None:
        """A countered buy's counter-sell was sized on the estimate: what the real trades gave more
        (or less) goes to the carried crumb."""
        if order.side is not Side.BUY or not book.countered or order.level < 0:
            return
        base = self.config.rules.base_asset
        delta_base = (book.amount - book.base_fee(base)) - (was.amount - was.base_fee(base))
        delta_cost = book.quote - was.quote
        if delta_base or delta_cost:
            self.leftover = Leftover(self.leftover.base + delta_base, self.leftover.cost + delta_cost)
            decision.leftover = self.leftover

    def _complete(self, order: TrackedOrder, book: _Book, at: datetime, decision: Decision) -> None:
        """An order filled completely: it leaves the ladder, and a grid order gets its counter."""
        cid = order.client_order_id
        self._orders.pop(cid, None)
        if book.inferred:
            self._provisional[cid] = order
        else:
            self._books.pop(cid, None)
        if order.level < 0:
            return
        self._free_level(order.level, cid, at, decision)
        if book.countered:
            return
        book.countered = True
        rules = self.config.rules
        planned, leftover = counter_order_carrying(
            self.config.levels,
            filled_side=order.side,
            filled_level=order.level,
            filled_amount=book.amount,
            filled_quote=book.quote,
            fee=book.base_fee(rules.base_asset),
            fee_asset_is_base=True,
            quantity=self.config.quantity,
            rules=rules,
            carried=self.leftover,
        )
        if leftover != self.leftover:
            self.leftover = leftover
            decision.leftover = leftover
        if planned is None:
            decision.note(
                "no counter-order at the end of the ladder", level=order.level, side=order.side.value
            )
            return
        if self.halt is not None:
            decision.note("halted: no counter-order", level=order.level)
            return
        self._occupy_or_owe(planned, at, cid, decision)

    def _occupy_or_owe(
        self,
        planned: PlannedOrder,
        at: datetime,
        parent: str | None,
        decision: Decision,
        book: _Book | None = None,
    ) -> None:
        """Put an order on its level, or owe it when the level holds one. A level holding an order
        of the other side is a buy and a sell at one price, which cancel out: a held one is crossed
        at once, a live one is withdrawn first (and crossed once the venue confirms)."""
        holder_id = self._occupant.get(planned.level)
        if holder_id is None:
            order = self._new_order(planned, OrderStatus.PENDING, at, parent)
            self._orders[order.client_order_id] = order
            self._books[order.client_order_id] = book or _Book()
            self._occupant[planned.level] = order.client_order_id
            decision.add(order)
            return
        holder = self._orders[holder_id]
        crossable = holder.side is not planned.side and 0 < planned.level < len(self.config.levels) - 1
        if crossable and self._is_held(holder):
            self._cross(holder, planned, parent, at, decision, book)
            return
        owed = self._new_order(planned, OrderStatus.OWED, at, parent)
        self._orders[owed.client_order_id] = owed
        if book is not None:
            self._owed_books[owed.client_order_id] = book
        self._owed.setdefault(planned.level, deque()).append(owed.client_order_id)
        decision.add(owed)
        decision.note(
            "counter-order owed: its level still holds an order",
            order=owed.client_order_id,
            level=planned.level,
            side=planned.side.value,
            holder=holder_id,
        )

    def _is_held(self, order: TrackedOrder) -> bool:
        """Booked but certainly not on the venue (never sent, not being sent), and not held back
        by a risk rule: a buy the market state keeps back is not crossed, or every counter-sell of
        a falling market would climb the ladder through the held buys. It waits, owed, instead."""
        cid = order.client_order_id
        return (
            order.status is OrderStatus.PENDING
            and cid not in self._attempted
            and cid not in self._in_flight
            and cid not in self._held
        )

    def _cross(
        self,
        holder: TrackedOrder,
        planned: PlannedOrder,
        parent: str | None,
        at: datetime,
        decision: Decision,
        planned_book: _Book | None = None,
    ) -> None:
        """A buy and a sell at one level cancel out, with no trade: the sell's base moves one level
        up (same amount, same cost) and the buy moves one level down (same amount), as if both had
        filled at the level's price. The ladder is then the one the grid rule gives. An order that
        carries a predecessor's fills (see `gone`) takes its book along."""
        level = planned.level
        # Taken along even while empty: a predecessor's fills may still be on their way to it.
        holder_book = self._books.get(holder.client_order_id)
        self._finish(replace(holder, status=OrderStatus.CANCELED, updated_at=at), decision)
        moved_holder_parent = holder.client_order_id
        parents: tuple[str | None, str | None]
        books: tuple[_Book | None, _Book | None]
        if holder.side is Side.SELL:
            sell = PlannedOrder(
                level + 1, Side.SELL, self.config.levels[level + 1], holder.amount, holder.cost_basis
            )
            buy = PlannedOrder(level - 1, Side.BUY, self.config.levels[level - 1], planned.amount)
            parents = (moved_holder_parent, parent)
            books = (holder_book, planned_book)
        else:
            sell = PlannedOrder(
                level + 1, Side.SELL, self.config.levels[level + 1], planned.amount, planned.cost_basis
            )
            buy = PlannedOrder(level - 1, Side.BUY, self.config.levels[level - 1], holder.amount)
            parents = (parent, moved_holder_parent)
            books = (planned_book, holder_book)
        decision.note(
            "a buy and a sell at one level cancel out: crossed",
            level=level,
            withdrawn=holder.client_order_id,
            sell_to=level + 1,
            buy_to=level - 1,
        )
        self._occupy_or_owe(sell, at, parents[0], decision, books[0])
        self._occupy_or_owe(buy, at, parents[1], decision, books[1])

    def _finish(self, order: TrackedOrder, decision: Decision, *, keep_level: bool = False) -> None:
        """An order leaves the ladder without completing (refused, gone)."""
        cid = order.client_order_id
        self._orders.pop(cid, None)
        self._books.pop(cid, None)
        self._held.pop(cid, None)
        decision.put(order)
        if not keep_level:
            self._free_level(order.level, cid, order.updated_at, decision)

    def _free_level(self, level: int, cid: str, at: datetime, decision: Decision) -> None:
        if level < 0 or self._occupant.get(level) != cid:
            return
        del self._occupant[level]
        queue = self._owed.get(level)
        if not queue:
            return
        owed_id = queue.popleft()
        if not queue:
            del self._owed[level]
        owed = replace(self._orders[owed_id], status=OrderStatus.PENDING, updated_at=at)
        self._orders[owed_id] = owed
        self._books[owed_id] = self._owed_books.pop(owed_id) if owed_id in self._owed_books else _Book()
        self._occupant[level] = owed_id
        decision.put(owed)
        decision.note("owed counter-order goes out: its level is free", order=owed_id, level=level)

    # ---------------------------------------------------------------------- events: market
    def observe(self, ticker: Ticker) -> Decision:
        """A price seen outside the event flow (at start): recorded, and nothing released."""
        decision = Decision()
        self._venue_available = True
        self._observe(ticker, decision)
        return decision

    def on_ticker(self, ticker: Ticker) -> Decision:
        """A price: the venue answers again, the market state is re-read on market time, the
        stops are checked, and held orders go out if they may."""
        decision = Decision()
        self._venue_available = True
        self._observe(ticker, decision)
        if self.halt is not None:
            return decision
        stop = evaluate_stop(ticker.last, self.config.limits)
        if stop is not None:
            self._halt(stop, ticker.timestamp, decision)
            return decision
        self._release(ticker.timestamp, decision)
        return decision

    def venue_unavailable(self, at: datetime) -> Decision:
        decision = Decision()
        self._set_venue_available(available=False, at=at, decision=decision)
        return decision

    def _set_venue_available(self, *, available: bool, at: datetime, decision: Decision) -> None:
        if available == self._venue_available:
            return
        self._venue_available = available
        if self.last_ticker is not None:
            self._classify(self.last_ticker.last, self.last_ticker.spread, decision)

    def _observe(self, ticker: Ticker, decision: Decision) -> None:
        self.last_ticker = ticker
        self._window.push(ticker.timestamp, ticker.last)
        self._classify(ticker.last, ticker.spread, decision)

    def _classify(self, price: Decimal, spread: Decimal, decision: Decision) -> None:
        state = classify_market(
            self._window.extremes() or (),
            spread,
            venue_available=self._venue_available,
            thresholds=self.config.thresholds,
        )
        if state is not self.market_state:
            decision.note(
                "market state changed",
                "warning",
                previous=self.market_state.value,
                state=state.value,
                price=str(price),
            )
            self.market_state = state

    def _release(self, at: datetime, decision: Decision) -> None:
        """Send held orders that the rules now allow, nearest the market first. Nothing goes out
        while the venue is not answering, not even a look-up of an order sent before."""
        if self.halt is not None:
            return
        self._resolve_owed(at, decision)
        if self.market_state is MarketState.MAINTENANCE:
            return
        held = [
            o
            for cid, o in self._orders.pending.items()
            if cid not in self._in_flight and cid not in self._withdrawing
        ]
        if not held:
            return
        reference = self.last_ticker.last if self.last_ticker is not None else None
        if reference is not None:
            held.sort(key=lambda o: (abs((o.price or reference) - reference), o.level))
        else:  # no price yet: in the order they were booked
            position = {cid: i for i, cid in enumerate(self._orders)}
            held.sort(key=lambda o: position[o.client_order_id])
        exposure = self.exposure()  # kept up to date below as orders go out
        for order in held:
            cid = order.client_order_id
            if cid not in self._attempted:  # an order that may be live already needs no approval
                verdict = check_new_order(
                    PlaceOrder(order).request(),
                    rules=self.config.rules,
                    limits=self.config.limits,
                    exposure=exposure,
                    market_state=self.market_state,
                    reference_price=reference,
                )
                if isinstance(verdict, Failure):
                    refusal = verdict.failure()
                    if refusal.rule in HOLD_RULES:
                        if self._held.get(cid) != refusal.rule:
                            self._held[cid] = refusal.rule
                            decision.note(
                                "order held",
                                order=cid,
                                level=order.level,
                                rule=refusal.rule,
                                reason=refusal.reason,
                            )
                        continue
                    decision.note(
                        "order refused by a risk rule",
                        "error",
                        order=cid,
                        rule=refusal.rule,
                        reason=refusal.reason,
                    )
                    self._finish(replace(order, status=OrderStatus.REJECTED, updated_at=at), decision)
                    continue
                owed_id = self._owed_against(order)
                if owed_id is not None:
                    # Its hold lifted with a counter-order of the other side owed to its level: the
                    # two cancel out (crossed, not sent); the ladder changed, so the release starts over.
                    self._cross_with_owed(order, owed_id, at, decision)
                    self._release(at, decision)
                    return
            self._held.pop(cid, None)
            if cid not in self._attempted:  # now counted as live (an attempted one was already)
                exposure = replace(
                    exposure,
                    open_orders=exposure.open_orders + 1,
                    quote_in_use=exposure.quote_in_use + _OrderTable.at_stake(order),
                )
            self._in_flight.add(cid)
            decision.commands.append(PlaceOrder(order, look_up_first=cid in self._attempted))

    # ---------------------------------------------------------------------- stop
    def close(self, reason: str, at: datetime) -> Decision:
        """The user closes the grid (`stop --cancel-orders`): every order is cancelled as by a risk
        stop, nothing is sold, and the run ends halted (it is not resumed)."""
        decision = Decision()
        if self.halt is None:
            stop = StopDecision(reason, sell_base=False)
            self._halt(stop, at, decision, event="grid closed: cancelling its orders")
        return decision

    def _halt(
        self, stop: StopDecision, at: datetime, decision: Decision, event: str = "risk stop: halting the grid"
    ) -> None:
        """A risk rule fired: every order of the grid is cancelled (owed and held ones at once)."""
        self.halt = stop
        decision.halted = stop
        decision.note(event, "warning", reason=stop.reason)
        for cid, order in list(self._orders.items()):
            if order.level < 0:
                continue
            cancelled = replace(order, status=OrderStatus.CANCELED, updated_at=at)
            self._orders.pop(cid)
            decision.put(cancelled)
            if self.may_be_on_venue(order):
                self._retired[cid] = cancelled
                self._unconfirmed.add(cid)
                decision.commands.append(CancelOrder(order))
            else:
                self._books.pop(cid, None)
        self._occupant.clear()
        self._owed.clear()
        self._in_flight.clear()

    def base_to_sell(self) -> tuple[Decimal, Decimal]:
        """After a halt's cancels: the base the grid's cancelled sells and the crumb held, and what
        it cost, floored to the step (what a stop's market sale sells)."""
        base = self.leftover.base
        cost = self.leftover.cost
        for order in self._retired.values():
            if order.side is Side.SELL and order.amount > 0 and order.client_order_id not in self._successor:
                remaining = order.amount - self._books.get(order.client_order_id, _Book()).amount_of(
                    order.client_order_id
                )
                base += remaining
                cost += order.cost_basis * remaining / order.amount
        amount = self.config.rules.floor_amount(base)
        if base <= 0 or amount <= 0:
            return ZERO, ZERO
        return amount, (cost * amount / base).quantize(FEE_QUANTUM)
