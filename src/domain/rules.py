"""A market's trading rules (Binance spot filters) and the checks they imply.

Rules follow the current Binance filter semantics: `price % tickSize == 0` (PRICE_FILTER),
`quantity % stepSize == 0` (LOT_SIZE), `minNotional <= price*qty <= maxNotional` (NOTIONAL),
and MAX_NUM_ORDERS per symbol. A parameter of zero disables its check, as on the venue.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from returns.result import Failure, Result, Success

from domain.errors import Rejection
from domain.models import ZERO, OrderRequest, OrderType, Side


def _quantize_to_step(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return value
    units = (value / step).to_integral_value(rounding=rounding)
    return (units * step).quantize(step)


@dataclass(frozen=True, slots=True)
class MarketRules:
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal = ZERO
    max_qty: Decimal = ZERO
    min_price: Decimal = ZERO
    max_price: Decimal = ZERO
    min_notional: Decimal = ZERO
    max_notional: Decimal = ZERO
    max_num_orders: int = 0
    market_max_qty: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.tick_size < 0 or self.step_size < 0:
            raise ValueError("tick size and step size must not be negative")

    # -- snapping -----------------------------------------------------------------------------
    def snap_price(self, price: Decimal) -> Decimal:
        """Nearest price on the tick grid (half-even)."""
        return _quantize_to_step(price, self.tick_size, ROUND_HALF_EVEN)

    def snap_price_safe(self, price: Decimal, side: Side) -> Decimal:
        """The tick on the safe side for a limit order: a buy never pays more, a sell never
        asks less, than the price the caller named."""
        rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
        return _quantize_to_step(price, self.tick_size, rounding)

    def floor_amount(self, amount: Decimal) -> Decimal:
        """Amount truncated down to the step size: never more than the caller asked for."""
        return _quantize_to_step(amount, self.step_size, ROUND_DOWN)

    def ceil_amount(self, amount: Decimal) -> Decimal:
        return _quantize_to_step(amount, self.step_size, ROUND_CEILING)

    # -- checks -------------------------------------------------------------------------------
    def check_price(self, price: Decimal) -> Result[Decimal, Rejection]:
        if price <= 0:
            return Failure(Rejection("PRICE_FILTER", f"price {price} must be positive"))
        if self.min_price > 0 and price < self.min_price:
            return Failure(Rejection("PRICE_FILTER", f"price {price} is under the minimum {self.min_price}"))
        if self.max_price > 0 and price > self.max_price:
            return Failure(Rejection("PRICE_FILTER", f"price {price} is over the maximum {self.max_price}"))
        if self.tick_size > 0 and price % self.tick_size != 0:
            return Failure(
                Rejection("PRICE_FILTER", f"price {price} is not a multiple of tick {self.tick_size}")
            )
        return Success(price)

    def check_amount(
        self, amount: Decimal, order_type: OrderType = OrderType.LIMIT
    ) -> Result[Decimal, Rejection]:
        if amount <= 0:
            return Failure(Rejection("LOT_SIZE", f"quantity {amount} must be positive"))
        if self.min_qty > 0 and amount < self.min_qty:
            return Failure(Rejection("LOT_SIZE", f"quantity {amount} is under the minimum {self.min_qty}"))
        max_qty = (
            self.market_max_qty
            if order_type is OrderType.MARKET and self.market_max_qty > 0
            else self.max_qty
        )
        if max_qty > 0 and amount > max_qty:
            return Failure(Rejection("LOT_SIZE", f"quantity {amount} is over the maximum {max_qty}"))
        if self.step_size > 0 and amount % self.step_size != 0:
            return Failure(
                Rejection("LOT_SIZE", f"quantity {amount} is not a multiple of step {self.step_size}")
            )
        return Success(amount)

    def check_notional(self, price: Decimal, amount: Decimal) -> Result[Decimal, Rejection]:
        notional = price * amount
        if self.min_notional > 0 and notional < self.min_notional:
            return Failure(
                Rejection(
                    "NOTIONAL",
                    f"order value {notional.normalize():f} {self.quote_asset} is under the minimum "
                    f"{self.min_notional.normalize():f} {self.quote_asset}",
                )
            )
        if self.max_notional > 0 and notional > self.max_notional:
            return Failure(
                Rejection("NOTIONAL", f"order value {notional} is over the maximum {self.max_notional}")
            )
        return Success(notional)

    def check_order(
        self, request: OrderRequest, reference_price: Decimal | None = None
    ) -> Result[OrderRequest, Rejection]:
        """Every filter the venue would apply to `request`. Market orders are checked for
        notional against `reference_price` (the venue uses its average price)."""
        if request.symbol != self.symbol:
            return Failure(Rejection("SYMBOL", f"rules are for {self.symbol}, order is for {request.symbol}"))
        amount_ok = self.check_amount(request.amount, request.type)
        if isinstance(amount_ok, Failure):
            return Failure(amount_ok.failure())
        if request.type is OrderType.LIMIT:
            if request.price is None:
                return Failure(Rejection("PRICE_FILTER", "a limit order needs a price"))
            price_ok = self.check_price(request.price)
            if isinstance(price_ok, Failure):
                return Failure(price_ok.failure())
            notional_price: Decimal | None = request.price
        else:
            notional_price = reference_price
        if notional_price is not None:
            notional_ok = self.check_notional(notional_price, request.amount)
            if isinstance(notional_ok, Failure):
                return Failure(notional_ok.failure())
        return Success(request)

    def check_open_orders(self, open_orders: int) -> Result[int, Rejection]:
        """Whether one more order fits under MAX_NUM_ORDERS."""
        if self.max_num_orders > 0 and open_orders + 1 > self.max_num_orders:
            return Failure(
                Rejection(
                    "MAX_NUM_ORDERS",
                    f"{open_orders} orders are open, the market allows {self.max_num_orders}",
                )
            )
        return Success(open_orders)


def venue_filter_message(rejection: Rejection) -> str:
    """The message Binance sends for a filter failure (code -1013), e.g. 'Filter failure: LOT_SIZE'."""
    return f"Filter failure: {rejection.rule}"
