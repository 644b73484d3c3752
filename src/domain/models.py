"""Value objects of the trading domain. Every price, quantity and amount is a `Decimal`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

ZERO = Decimal("0")
INFERRED_TRADE_PREFIX = "inferred-"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class OrderStatus(StrEnum):
    """Lifecycle of an order. PENDING exists only on our side: written before the order is sent,
    so that a crash between sending and recording can be reconciled by client order id."""

    PENDING = "pending"
    OWED = "owed"  # a counter-order waiting for its level to free; never sent while owed
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_active(self) -> bool:
        return self in _ACTIVE

    @property
    def is_final(self) -> bool:
        return not self.is_active


_ACTIVE = frozenset({OrderStatus.PENDING, OrderStatus.OWED, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})


def split_symbol(symbol: str) -> tuple[str, str]:
    """'BTC/USDT' -> ('BTC', 'USDT'). The domain always writes symbols as BASE/QUOTE."""
    base, sep, quote = symbol.partition("/")
    if not sep or not base or not quote:
        raise ValueError(f"symbol must look like BASE/QUOTE, got {symbol!r}")
    return base, quote


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What we ask the venue to do. `price` is None for market orders."""

    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    client_order_id: str
    price: Decimal | None = None

    @property
    def notional(self) -> Decimal | None:
        return None if self.price is None else self.price * self.amount


@dataclass(frozen=True, slots=True)
class Order:
    """An order as the venue reports it."""

    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    status: OrderStatus
    created_at: datetime
    filled: Decimal = ZERO
    average_price: Decimal | None = None
    fee: Decimal = ZERO
    fee_asset: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution (a trade) of an order. The fee is charged in `fee_asset`."""

    trade_id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal
    fee_asset: str
    timestamp: datetime
    is_maker: bool = True

    @property
    def quote_amount(self) -> Decimal:
        return self.price * self.amount

    @property
    def is_inferred(self) -> bool:
        """Inferred from an order's executed quantity because its trades were not available yet;
        replaced by the real trades when they appear, never added to them."""
        return self.trade_id.startswith(INFERRED_TRADE_PREFIX)


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    bid: Decimal
    ask: Decimal
    last: Decimal
    timestamp: datetime

    @property
    def mid(self) -> Decimal:
        return (self.bid + self.ask) / 2

    @property
    def spread(self) -> Decimal:
        """Relative spread, (ask - bid) / mid; zero for a crossed or empty book."""
        mid = self.mid
        if mid <= 0 or self.ask <= self.bid:
            return ZERO
        return (self.ask - self.bid) / mid


@dataclass(frozen=True, slots=True)
class MarketTrade:
    """One public trade on the venue (any two traders): a point of the market's price path.
    `trade_id` increases along the venue's tape; `buyer_is_maker` tells the aggressor's side."""

    symbol: str
    trade_id: int
    price: Decimal
    amount: Decimal
    timestamp: datetime
    buyer_is_maker: bool = False


@dataclass(frozen=True, slots=True)
class BookTop:
    """The best bid and ask with their quantities; `update_id` increases with every book change."""

    symbol: str
    update_id: int
    bid: Decimal
    bid_amount: Decimal
    ask: Decimal
    ask_amount: Decimal


@dataclass(frozen=True, slots=True)
class Candle:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = ZERO

    def __post_init__(self) -> None:
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError(
                f"candle at {self.open_time.isoformat()} is inconsistent: "
                f"o={self.open} h={self.high} l={self.low} c={self.close}"
            )

    def path(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """The price path assumed inside the candle: open -> low -> high -> close on a rising
        (or flat) candle, open -> high -> low -> close on a falling one."""
        if self.close >= self.open:
            return (self.open, self.low, self.high, self.close)
        return (self.open, self.high, self.low, self.close)


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class TrackedOrder:
    """An order as the bot books it: the venue's view plus the grid's own bookkeeping.

    `level` is the grid level (-1 for orders outside the ladder, e.g. the initial base purchase
    or a manual trade). `cost_basis` is the quote spent to acquire the base a sell carries
    (zero for buys): realized profit of a sell is its net proceeds minus this.
    """

    run_id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal
    price: Decimal | None
    level: int
    status: OrderStatus
    created_at: datetime
    updated_at: datetime
    exchange_order_id: str | None = None
    filled: Decimal = ZERO
    cost_basis: Decimal = ZERO
    parent_client_order_id: str | None = None

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.filled


@dataclass(frozen=True, slots=True)
class BookedFill:
    """A fill as booked by the bot, with the profit it realized (sells only; zero for buys)."""

    run_id: str
    fill: Fill
    realized_pnl: Decimal = ZERO


MANUAL_FINGERPRINT = "manual"  # the grid fingerprint of a one-order run made by `trade`


class RunStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # stopped by the user (signal, --duration): resumable
    HALTED = "halted"  # stopped by a risk rule: not resumed automatically


@dataclass(frozen=True, slots=True)
class BotRun:
    run_id: str
    symbol: str
    exchange: str
    status: RunStatus
    started_at: datetime
    grid_fingerprint: str
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    params: dict[str, str] = field(default_factory=dict)
