"""In-memory fakes of the ports, for application tests: no I/O, no mocks, fully inspectable."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Self

from domain.errors import DuplicateOrder, ExchangeUnavailable, InsufficientFunds, InvalidOrder, OrderNotFound
from domain.models import (
    ZERO,
    Balance,
    BookedFill,
    BotRun,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Ticker,
    TrackedOrder,
)
from domain.rules import MarketRules, venue_filter_message

RULES = MarketRules(
    symbol="BTC/USDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal("5"),
    max_num_orders=200,
)


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        self.advance(seconds)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


# ---------------------------------------------------------------- persistence
@dataclass
class Store:
    runs: dict[str, BotRun] = field(default_factory=dict)
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    fills: list[BookedFill] = field(default_factory=list)
    commits: int = 0


class _Orders:
    def __init__(self, data: dict[str, TrackedOrder]) -> None:
        self.data = data

    async def add(self, order: TrackedOrder) -> None:
        assert order.client_order_id not in self.data, f"duplicate client order id {order.client_order_id}"
        self.data[order.client_order_id] = order

    async def update(self, order: TrackedOrder) -> None:
        assert order.client_order_id in self.data
        self.data[order.client_order_id] = order

    async def get(self, client_order_id: str) -> TrackedOrder | None:
        return self.data.get(client_order_id)

    async def list_active(self, run_id: str) -> Sequence[TrackedOrder]:
        return [o for o in self.data.values() if o.run_id == run_id and o.status.is_active]

    async def list_for_run(self, run_id: str) -> Sequence[TrackedOrder]:
        return [o for o in self.data.values() if o.run_id == run_id]

    async def child_of(self, parent_client_order_id: str) -> TrackedOrder | None:
        return next(
            (o for o in self.data.values() if o.parent_client_order_id == parent_client_order_id), None
        )

    async def count_for_level(self, run_id: str, level: int) -> int:
        return sum(1 for o in self.data.values() if o.run_id == run_id and o.level == level)


class _Fills:
    def __init__(self, data: list[BookedFill]) -> None:
        self.data = data

    async def add(self, booked: BookedFill) -> None:
        assert not any(
            b.run_id == booked.run_id and b.fill.trade_id == booked.fill.trade_id for b in self.data
        )
        self.data.append(booked)

    async def exists(self, run_id: str, trade_id: str) -> bool:
        return any(b.run_id == run_id and b.fill.trade_id == trade_id for b in self.data)

    async def remove(self, run_id: str, trade_id: str) -> None:
        """Like the SQL repository: removing a fill that is not booked raises ValueError."""
        for index, booked in enumerate(self.data):
            if booked.run_id == run_id and booked.fill.trade_id == trade_id:
                del self.data[index]
                return
        raise ValueError(f"fill {trade_id} is not booked for run {run_id}: nothing to remove")

    async def list_for_run(self, run_id: str) -> Sequence[BookedFill]:
        return [b for b in self.data if b.run_id == run_id]

    async def count(self, run_id: str) -> int:
        return len(await self.list_for_run(run_id))

    async def realized_pnl(self, run_id: str) -> Decimal:
        return sum((b.realized_pnl for b in self.data if b.run_id == run_id), ZERO)

    async def last_trade_id(self, run_id: str) -> str | None:
        ids = [int(b.fill.trade_id) for b in self.data if b.run_id == run_id and b.fill.trade_id.isdigit()]
        return str(max(ids)) if ids else None


class _Runs:
    def __init__(self, data: dict[str, BotRun]) -> None:
        self.data = data

    async def add(self, run: BotRun) -> None:
        self.data[run.run_id] = run

    async def update(self, run: BotRun) -> None:
        self.data[run.run_id] = run

    async def get(self, run_id: str) -> BotRun | None:
        return self.data.get(run_id)

    async def starting_with(self, prefix: str, *, limit: int = 2) -> Sequence[BotRun]:
        return sorted((r for r in self.data.values() if r.run_id.startswith(prefix)), key=lambda r: r.run_id)[
            :limit
        ]

    async def latest(
        self, symbol: str | None = None, *, exclude_fingerprint: str | None = None
    ) -> BotRun | None:
        runs = [
            r
            for r in self.data.values()
            if (symbol is None or r.symbol == symbol) and r.grid_fingerprint != exclude_fingerprint
        ]
        return max(runs, key=lambda r: r.started_at, default=None)

    async def recent(
        self, *, limit: int, fingerprint: str | None = None, exclude_fingerprint: str | None = None
    ) -> Sequence[BotRun]:
        runs = [
            r
            for r in self.data.values()
            if (fingerprint is None or r.grid_fingerprint == fingerprint)
            and r.grid_fingerprint != exclude_fingerprint
        ]
        return sorted(runs, key=lambda r: (r.started_at, r.run_id), reverse=True)[:limit]


class InMemoryUnitOfWork:
    """Copies the store on entry and publishes the copy only on commit, like a transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def __aenter__(self) -> Self:
        self._runs = dict(self._store.runs)
        self._orders = dict(self._store.orders)
        self._fills = list(self._store.fills)
        self.runs = _Runs(self._runs)
        self.orders = _Orders(self._orders)
        self.fills = _Fills(self._fills)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def commit(self) -> None:
        self._store.runs, self._store.orders, self._store.fills = self._runs, self._orders, self._fills
        self._store.commits += 1

    async def rollback(self) -> None:
        return None


# ---------------------------------------------------------------- venue
class FakeVenue:
    """A tiny venue: resting limit orders fill at their price when `move_to` crosses them, market
    orders fill at the last price; fees in the received asset. Also both feeds."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        price: Decimal = Decimal("30000"),
        quote: Decimal = Decimal("10000"),
        fee: Decimal = Decimal("0.001"),
    ) -> None:
        self.clock = clock
        self.price = price
        self.fee = fee
        self.balances: dict[str, Decimal] = {"USDT": quote, "BTC": ZERO}
        self.orders: dict[str, Order] = {}
        self.trades: list[Fill] = []
        self.placed: list[OrderRequest] = []
        self.fail_next_place = 0
        self.fail_after_place = 0
        self.unavailable_reads = 0  # the next n tickers / order-book reads raise ExchangeUnavailable
        # Orders whose trades the trade queries do not return yet, as on Binance, where an order
        # can show FILLED before its trades are queryable; the fills feed still delivers them.
        self.hide_trades_of: set[str] = set()
        # With hold_news, fills wait in `undelivered` until the test delivers them (late, batched,
        # reordered, twice) with deliver().
        self.hold_news = False
        self.trades_page_size = 0  # >0: fetch_my_trades returns at most this many (Binance: 1000)
        self.trade_pages_served = 0
        self.undelivered: list[Fill] = []
        self._ids = itertools.count(1)
        self._trade_ids = itertools.count(1)
        self._fill_queue: asyncio.Queue[Fill | None] = asyncio.Queue()
        self._ticker_queue: asyncio.Queue[Ticker | None] = asyncio.Queue()

    # gateway
    async def market_rules(self, symbol: str) -> MarketRules:
        return RULES

    async def fetch_ticker(self, symbol: str) -> Ticker:
        self._maybe_unavailable()
        return self._ticker()

    def _maybe_unavailable(self) -> None:
        if self.unavailable_reads:
            self.unavailable_reads -= 1
            raise ExchangeUnavailable("venue down")

    async def fetch_balances(self) -> Mapping[str, Balance]:
        return {a: Balance(a, v) for a, v in self.balances.items()}

    async def place_order(self, request: OrderRequest) -> Order:
        if self.fail_next_place:
            self.fail_next_place -= 1
            raise ExchangeUnavailable("venue down")
        if any(
            o.client_order_id == request.client_order_id and o.status.is_active for o in self.orders.values()
        ):
            raise DuplicateOrder("Duplicate order sent.", code=-2010)
        verdict = RULES.check_order(request, reference_price=self.price)
        if not verdict.value_or(None):
            raise InvalidOrder(venue_filter_message(verdict.failure()), code=-1013)
        cost = (request.price or self.price) * request.amount
        if request.side is Side.BUY and cost > self.balances["USDT"]:
            raise InsufficientFunds("Account has insufficient balance for requested action.", code=-2010)
        if request.side is Side.SELL and request.amount > self.balances["BTC"]:
            raise InsufficientFunds("Account has insufficient balance for requested action.", code=-2010)
        self.placed.append(request)
        order = Order(
            order_id=str(next(self._ids)),
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            amount=request.amount,
            price=request.price,
            status=OrderStatus.OPEN,
            created_at=self.clock.now(),
        )
        self._lock_funds(order)
        self.orders[order.order_id] = order
        if request.type is OrderType.MARKET or self._marketable(request):
            order = self._fill(order, self.price, maker=False)  # a taker, at the market, as the engine does
        if self.fail_after_place:
            self.fail_after_place -= 1
            raise ExchangeUnavailable("answer lost")
        return order

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        self._maybe_unavailable()
        order = self.orders.get(order_id)
        if order is None or not order.status.is_active:
            raise OrderNotFound("Unknown order sent.", code=-2011)
        self._unlock_funds(order)
        order = replace(order, status=OrderStatus.CANCELED)
        self.orders[order_id] = order
        return order

    async def fetch_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        for order in reversed(list(self.orders.values())):
            if order.order_id == order_id or (client_order_id and order.client_order_id == client_order_id):
                return order
        raise OrderNotFound("Order does not exist.", code=-2013)

    async def fetch_open_orders(self, symbol: str) -> Sequence[Order]:
        return [o for o in self.orders.values() if o.status.is_active]

    async def fetch_my_trades(self, symbol: str, since_trade_id: str | None = None) -> Sequence[Fill]:
        since = int(since_trade_id) if since_trade_id else 0
        newer = [t for t in self._queryable_trades() if int(t.trade_id) > since]
        self.trade_pages_served += 1
        return newer[: self.trades_page_size] if self.trades_page_size else newer

    async def fetch_order_trades(self, symbol: str, order_id: str) -> Sequence[Fill]:
        return [t for t in self._queryable_trades() if t.order_id == order_id]

    def _queryable_trades(self) -> list[Fill]:
        return [t for t in self.trades if t.order_id not in self.hide_trades_of]

    # feeds
    async def fills(self, symbol: str) -> AsyncIterator[Fill]:
        while (fill := await self._fill_queue.get()) is not None:
            yield fill

    async def tickers(self, symbol: str) -> AsyncIterator[Ticker]:
        while (ticker := await self._ticker_queue.get()) is not None:
            yield ticker

    def deliver(self, fills: Sequence[Fill]) -> None:
        """Push fills onto the feed, in the order given (duplicates included)."""
        for fill in fills:
            if fill in self.undelivered:
                self.undelivered.remove(fill)
            self._fill_queue.put_nowait(fill)

    def _marketable(self, request: OrderRequest) -> bool:
        if request.price is None:
            return False
        if request.side is Side.BUY:
            return request.price >= self.price
        return request.price <= self.price

    def close(self) -> None:
        self._fill_queue.put_nowait(None)
        self._ticker_queue.put_nowait(None)

    # test controls
    def move_to(self, price: Decimal, *, ticker: bool = True) -> list[Fill]:
        fills: list[Fill] = []
        for order in sorted(self.orders.values(), key=lambda o: o.price or ZERO, reverse=price < self.price):
            if not order.status.is_active or order.price is None:
                continue
            if (order.side is Side.BUY and price <= order.price) or (
                order.side is Side.SELL and price >= order.price
            ):
                self._fill(order, order.price, maker=True)
                fills.append(self.trades[-1])
        self.price = price
        if ticker:
            self._ticker_queue.put_nowait(self._ticker())
        return fills

    def _ticker(self) -> Ticker:
        return Ticker(
            "BTC/USDT",
            self.price - Decimal("0.01"),
            self.price + Decimal("0.01"),
            self.price,
            self.clock.now(),
        )

    def _lock_funds(self, order: Order) -> None:
        if order.side is Side.BUY:
            self.balances["USDT"] -= (order.price or self.price) * order.amount
        else:
            self.balances["BTC"] -= order.amount

    def _unlock_funds(self, order: Order) -> None:
        if order.side is Side.BUY:
            self.balances["USDT"] += (order.price or self.price) * order.amount
        else:
            self.balances["BTC"] += order.amount

    def _fill(self, order: Order, price: Decimal, *, maker: bool) -> Order:
        if order.side is Side.BUY:
            fee = (order.amount * self.fee).quantize(Decimal("0.00000001"))
            self.balances["USDT"] += ((order.price or self.price) - price) * order.amount
            self.balances["BTC"] += order.amount - fee
            fee_asset = "BTC"
        else:
            fee = (price * order.amount * self.fee).quantize(Decimal("0.00000001"))
            self.balances["USDT"] += price * order.amount - fee
            fee_asset = "USDT"
        fill = Fill(
            str(next(self._trade_ids)),
            order.order_id,
            order.client_order_id,
            order.symbol,
            order.side,
            price,
            order.amount,
            fee,
            fee_asset,
            self.clock.now(),
            maker,
        )
        self.trades.append(fill)
        if self.hold_news:
            self.undelivered.append(fill)
        else:
            self._fill_queue.put_nowait(fill)
        filled = replace(
            order,
            status=OrderStatus.FILLED,
            filled=order.amount,
            average_price=price,
            fee=fee,
            fee_asset=fee_asset,
        )
        self.orders[order.order_id] = filled
        return filled
