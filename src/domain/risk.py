"""Risk rules: which orders may go out, when the grid stops, and what state the market is in.

Refusals are `Result` failures (expected outcomes the caller must handle), never exceptions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from returns.result import Failure, Result, Success

from domain.errors import Rejection
from domain.models import ZERO, OrderRequest, Side
from domain.rules import MarketRules


class MarketState(StrEnum):
    NORMAL = "normal"
    VOLATILE = "volatile"
    PANIC = "panic"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class MarketStateThresholds:
    """Relative price range over the observation window, and relative bid/ask spread."""

    volatile_range: Decimal = Decimal("0.02")
    panic_range: Decimal = Decimal("0.05")
    volatile_spread: Decimal = Decimal("0.002")
    panic_spread: Decimal = Decimal("0.01")


def classify_market(
    recent_prices: Sequence[Decimal],
    spread: Decimal,
    *,
    venue_available: bool = True,
    thresholds: MarketStateThresholds = MarketStateThresholds(),
) -> MarketState:
    """Maintenance when the venue is unavailable; otherwise the worse of what the price range over the
    window and the current spread say."""
    if not venue_available:
        return MarketState.MAINTENANCE
    price_range = ZERO
    if recent_prices:
        low, high = min(recent_prices), max(recent_prices)
        if low > 0:
            price_range = (high - low) / low
    if price_range >= thresholds.panic_range or spread >= thresholds.panic_spread:
        return MarketState.PANIC
    if price_range >= thresholds.volatile_range or spread >= thresholds.volatile_spread:
        return MarketState.VOLATILE
    return MarketState.NORMAL


@dataclass(frozen=True, slots=True)
class RiskLimits:
    investment: Decimal  # quote the user committed
    max_open_orders: int = 50
    stop_loss: Decimal | None = None  # price at or under which the grid stops
    take_profit: Decimal | None = None  # price at or over which the grid stops
    sell_on_stop: bool = False  # sell the grid's base at market when it stops


@dataclass(frozen=True, slots=True)
class Exposure:
    """What the grid has at stake now: quote locked in open buys plus the cost of base it holds."""

    open_orders: int
    quote_in_use: Decimal
    realized_pnl: Decimal = ZERO


def check_new_order(
    request: OrderRequest,
    *,
    rules: MarketRules,
    limits: RiskLimits,
    exposure: Exposure,
    market_state: MarketState,
    reference_price: Decimal | None = None,
) -> Result[OrderRequest, Rejection]:
    """Whether `request` may be sent: market filters first, then the bot's own limits."""
    if market_state is MarketState.MAINTENANCE:
        return Failure(Rejection("MARKET_STATE", "the venue is under maintenance: no new orders"))
    if market_state is MarketState.PANIC and request.side is Side.BUY:
        return Failure(Rejection("MARKET_STATE", "the market is in panic: no new buys"))
    filters = rules.check_order(request, reference_price)
    if isinstance(filters, Failure):
        return filters
    if exposure.open_orders + 1 > limits.max_open_orders:
        return Failure(
            Rejection(
                "MAX_OPEN_ORDERS",
                f"{exposure.open_orders} orders are open, RISK__MAX_OPEN_ORDERS allows {limits.max_open_orders}",
            )
        )
    venue_cap = rules.check_open_orders(exposure.open_orders)
    if isinstance(venue_cap, Failure):
        return Failure(venue_cap.failure())
    if request.side is Side.BUY:
        price = request.price if request.price is not None else reference_price
        if price is not None:
            # Losses shrink what the grid may spend: the quote it holds is the investment plus realized profit.
            budget = limits.investment + exposure.realized_pnl
            needed = exposure.quote_in_use + price * request.amount
            if needed > budget:
                return Failure(
                    Rejection(
                        "INVESTMENT",
                        f"the buy would put {needed} {rules.quote_asset} at stake, "
                        f"over the committed {budget} {rules.quote_asset}",
                    )
                )
    return Success(request)


@dataclass(frozen=True, slots=True)
class StopDecision:
    reason: str
    sell_base: bool


def evaluate_stop(price: Decimal, limits: RiskLimits) -> StopDecision | None:
    """Stop-loss under, take-profit over: either stops the grid (cancel orders, optionally sell base)."""
    if limits.stop_loss is not None and price <= limits.stop_loss:
        return StopDecision(f"stop-loss: price {price} at or under {limits.stop_loss}", limits.sell_on_stop)
    if limits.take_profit is not None and price >= limits.take_profit:
        return StopDecision(
            f"take-profit: price {price} at or over {limits.take_profit}", limits.sell_on_stop
        )
    return None
