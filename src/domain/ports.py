"""The seams between the core and the world. Adapters implement these; the application uses
only these. Every method raises only `domain.errors` types."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Protocol, Self

from domain.models import (
    Balance,
    BookedFill,
    BotRun,
    Fill,
    Order,
    OrderRequest,
    RunStatus,
    Ticker,
    TrackedOrder,
)
from domain.risk import MarketState
from domain.rules import MarketRules


class Clock(Protocol):
    """Time as the bot sees it. The simulated clock jumps instead of sleeping."""

    def now(self) -> datetime:
        """Current UTC time (timezone-aware)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class ExchangeGateway(Protocol):
    """Request/response access to one venue's spot market."""

    async def market_rules(self, symbol: str) -> MarketRules: ...

    async def fetch_ticker(self, symbol: str) -> Ticker: ...

    async def fetch_balances(self) -> Mapping[str, Balance]: ...

    async def place_order(self, request: OrderRequest) -> Order:
        """Place an order. Raises InvalidOrder / InsufficientFunds / DuplicateOrder on refusal,
        OrderStateUnknown when the outcome cannot be known (look it up by client order id)."""
        ...

    async def cancel_order(self, symbol: str, order_id: str) -> Order: ...

    async def fetch_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        """Look an order up by venue id or by client order id. Raises OrderNotFound."""
        ...

    async def fetch_open_orders(self, symbol: str) -> Sequence[Order]: ...

    async def fetch_my_trades(self, symbol: str, since_trade_id: str | None = None) -> Sequence[Fill]:
        """Trades of this account on `symbol`, oldest first, strictly after `since_trade_id`
        when given (for catching up after a gap). May return one page only (Binance: 1000):
        callers page on from the last id returned until a call returns nothing."""
        ...

    async def fetch_order_trades(self, symbol: str, order_id: str) -> Sequence[Fill]:
        """The trades of one order (by venue order id), oldest first; empty when the venue has
        none (yet): on Binance an order can show FILLED before its trades are queryable."""
        ...


class MarketDataFeed(Protocol):
    """Push stream of market events for one symbol."""

    def tickers(self, symbol: str) -> AsyncIterator[Ticker]:
        """Yields tickers until the feed is closed. A consumer must finish handling one ticker
        before asking for the next: simulated feeds rely on that to stay deterministic."""
        ...


class OrderUpdateFeed(Protocol):
    """Push stream of this account's fills for one symbol."""

    def fills(self, symbol: str) -> AsyncIterator[Fill]:
        """Yields fills until the feed is closed; a fill may be delivered more than once (e.g.
        by a stream and by a REST catch-up), consumers de-duplicate by trade id."""
        ...


class OrderRepository(Protocol):
    async def add(self, order: TrackedOrder) -> None: ...

    async def update(self, order: TrackedOrder) -> None: ...

    async def get(self, client_order_id: str) -> TrackedOrder | None: ...

    async def list_active(self, run_id: str) -> Sequence[TrackedOrder]:
        """Orders of the run in PENDING, OPEN or PARTIALLY_FILLED, oldest first."""
        ...

    async def list_for_run(self, run_id: str) -> Sequence[TrackedOrder]: ...

    async def child_of(self, parent_client_order_id: str) -> TrackedOrder | None:
        """The counter-order placed for a filled order, if any."""
        ...

    async def count_for_level(self, run_id: str, level: int) -> int:
        """How many orders the run has placed at this grid level (for deterministic client ids)."""
        ...


class FillRepository(Protocol):
    async def add(self, booked: BookedFill) -> None: ...

    async def exists(self, run_id: str, trade_id: str) -> bool: ...

    async def remove(self, run_id: str, trade_id: str) -> None:
        """Forget a booked fill: only an inferred fill, when the real trades replace it."""
        ...

    async def list_for_run(self, run_id: str) -> Sequence[BookedFill]: ...

    async def count(self, run_id: str) -> int: ...

    async def realized_pnl(self, run_id: str) -> Decimal: ...

    async def last_trade_id(self, run_id: str) -> str | None:
        """The highest venue trade id booked for the run (trade ids are numeric on Binance)."""
        ...


class RunRepository(Protocol):
    async def add(self, run: BotRun) -> None: ...

    async def update(self, run: BotRun) -> None: ...

    async def get(self, run_id: str) -> BotRun | None: ...

    async def starting_with(self, prefix: str, *, limit: int = 2) -> Sequence[BotRun]:
        """Runs whose id starts with `prefix` (the short ids of logs and client order ids), at
        most `limit` of them."""
        ...

    async def latest(
        self, symbol: str | None = None, *, exclude_fingerprint: str | None = None
    ) -> BotRun | None:
        """The most recently started run (of `symbol`), skipping runs with `exclude_fingerprint`
        (e.g. one-order manual trades, which must never be taken for a grid)."""
        ...

    async def recent(
        self, *, limit: int, fingerprint: str | None = None, exclude_fingerprint: str | None = None
    ) -> Sequence[BotRun]:
        """At most `limit` runs, newest first: only those with `fingerprint` when given, without
        those with `exclude_fingerprint` when given."""
        ...


class UnitOfWork(Protocol):
    """One atomic decision's worth of persistence. Rolls back unless `commit()` was called."""

    orders: OrderRepository
    fills: FillRepository
    runs: RunRepository

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


# --------------------------------------------------------------------------- telling the world
@dataclass(frozen=True, slots=True)
class GridSnapshot:
    """A running grid at a glance, as health checks, metrics and alerts report it."""

    run_id: str
    symbol: str
    exchange: str
    started_at: datetime
    market_state: MarketState
    last_price: Decimal | None
    open_orders: int
    fills: int  # fills the books hold for the run
    realized_pnl: Decimal
    position: Decimal  # base the run holds per its books
    position_cost: Decimal  # quote paid for that base
    halt_reason: str | None = None

    @property
    def unrealized_pnl(self) -> Decimal | None:
        if self.last_price is None:
            return None
        return self.position * self.last_price - self.position_cost

    @property
    def equity_change(self) -> Decimal:
        """Realized plus unrealized profit (the base valued at the last price)."""
        return self.realized_pnl + (self.unrealized_pnl or Decimal(0))


class BotObserver(Protocol):
    """What the grid use case tells the world beside its logs, at each decision: metrics, health
    and alerts listen here. Calls must return at once and never raise: trading does not wait on
    an observer."""

    def run_started(self, snapshot: GridSnapshot, *, resumed: bool) -> None: ...

    def price_seen(self, ticker: Ticker) -> None: ...

    def order_placed(self, order: TrackedOrder) -> None: ...

    def order_refused(self, order: TrackedOrder, reason: str) -> None:
        """`reason` is a short label: the risk rule (e.g. MAX_OPEN_ORDERS), or "venue"."""
        ...

    def order_cancelled(self, order: TrackedOrder) -> None: ...

    def fill_booked(self, booked: BookedFill) -> None: ...

    def latency(self, kind: str, seconds: float) -> None:
        """Clock time from an event to the order it led to: "tick_to_order" (a price released a
        held order) or "fill_to_counter_order"."""
        ...

    def venue_error(self, error: Exception) -> None:
        """A transient venue failure the running grid carried on through."""
        ...

    def halted(self, reason: str) -> None: ...

    def changed(self, snapshot: GridSnapshot) -> None:
        """The grid after an event was handled."""
        ...

    def run_stopped(self, snapshot: GridSnapshot, *, status: RunStatus, reason: str) -> None: ...


class NoObserver:
    """The observer when nobody listens."""

    def run_started(self, snapshot: GridSnapshot, *, resumed: bool) -> None:
        pass

    def price_seen(self, ticker: Ticker) -> None:
        pass

    def order_placed(self, order: TrackedOrder) -> None:
        pass

    def order_refused(self, order: TrackedOrder, reason: str) -> None:
        pass

    def order_cancelled(self, order: TrackedOrder) -> None:
        pass

    def fill_booked(self, booked: BookedFill) -> None:
        pass

    def latency(self, kind: str, seconds: float) -> None:
        pass

    def venue_error(self, error: Exception) -> None:
        pass

    def halted(self, reason: str) -> None:
        pass

    def changed(self, snapshot: GridSnapshot) -> None:
        pass

    def run_stopped(self, snapshot: GridSnapshot, *, status: RunStatus, reason: str) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Alert:
    """A message for the bot's user. `key` names what it is about (e.g. "circuit_open"): alerts
    with one key are de-duplicated and rate-limited together."""

    key: str
    title: str
    text: str = ""
    severity: str = "info"  # info, warning or critical
    at: datetime | None = None


class Notifier(Protocol):
    """One alert channel (a webhook, a chat)."""

    name: str

    async def send(self, alert: Alert) -> None:
        """Deliver one alert; raises DeliveryFailed when the channel did not take it."""
        ...
