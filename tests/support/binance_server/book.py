"""One symbol's trading state on the stand-in: the project's own matching engine plus the
bookkeeping Binance shows on the wire and the engine does not keep (timeInForce, update
times, the quote quantity a market order was sent with, IOC/FOK expiry)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from adapters.simulated.engine import MatchingEngine
from domain.models import ZERO, Fill, Order, OrderStatus, OrderType, Side
from support.binance_server.market import PriceTape, SymbolSpec
from support.binance_server.wire import JsonObject, fmt

_WIRE_STATUS: Mapping[OrderStatus, str] = {
    OrderStatus.PENDING: "NEW",
    OrderStatus.OPEN: "NEW",
    OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
    OrderStatus.FILLED: "FILLED",
    OrderStatus.CANCELED: "CANCELED",
    OrderStatus.REJECTED: "REJECTED",
    OrderStatus.EXPIRED: "EXPIRED",
}


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(slots=True)
class OrderMeta:
    """What Binance reports about an order beyond the engine's `Order`."""

    wire_type: str
    time_in_force: str
    orig_quote_qty: Decimal
    created_ms: int
    update_ms: int
    expired: bool = False


def wire_id(engine_id: str) -> int:
    """The engine numbers orders and trades "1", "2", ...: Binance's integer ids as they are."""
    return int(engine_id)


class SymbolBook:
    def __init__(
        self,
        spec: SymbolSpec,
        engine: MatchingEngine,
        *,
        start_ms: int,
        initial_free: Mapping[str, Decimal],
    ) -> None:
        self.spec = spec
        self.engine = engine
        price = engine.last_price
        if price is None:
            raise ValueError(f"{spec.symbol}: the stand-in needs a starting price")
        self.tape = PriceTape(start_ms, price)
        # Free balances the engine started from: the account view adds up every engine's change.
        self.initial_free = dict(initial_free)
        self.update_id = 1
        self._meta: dict[str, OrderMeta] = {}

    def register(
        self, order: Order, *, wire_type: str, time_in_force: str, orig_quote_qty: Decimal, now_ms: int
    ) -> OrderMeta:
        meta = OrderMeta(
            wire_type=wire_type,
            time_in_force=time_in_force,
            orig_quote_qty=orig_quote_qty,
            created_ms=to_ms(order.created_at),
            update_ms=now_ms,
        )
        self._meta[order.order_id] = meta
        self.update_id += 1
        return meta

    def orders(self) -> list[Order]:
        """Every order placed through the API (any status), oldest first: the venue's order history."""
        return [self.engine.order(order_id=order_id) for order_id in sorted(self._meta, key=int)]

    def meta(self, order: Order) -> OrderMeta:
        """The wire bookkeeping of `order`; defaults for an order placed on the engine directly."""
        meta = self._meta.get(order.order_id)
        if meta is None:
            created = to_ms(order.created_at)
            meta = OrderMeta(
                wire_type="LIMIT" if order.type is OrderType.LIMIT else "MARKET",
                time_in_force="GTC",
                orig_quote_qty=ZERO,
                created_ms=created,
                update_ms=created,
            )
            self._meta[order.order_id] = meta
        return meta

    def absorb_fills(self, fills: Iterable[Fill], now_ms: int) -> None:
        """Stamp the orders the fills touched and count the trades in the tape's volume."""
        fills = list(fills)
        for fill in fills:
            meta = self._meta.get(fill.order_id)
            if meta is not None:
                meta.update_ms = now_ms
        if fills:
            # Resting orders fill at their own limit while the market sits at the engine's last
            # price: the tape follows the market, the fills only add volume.
            self.update_id += 1
            self.tape.record_fills(now_ms, fills)

    # -- wire formats -----------------------------------------------------------------------------
    def _common(self, order: Order, meta: OrderMeta) -> JsonObject:
        cumulative_quote = (order.average_price or ZERO) * order.filled
        status = "EXPIRED" if meta.expired else _WIRE_STATUS[order.status]
        return {
            "symbol": self.spec.wire_symbol,
            "orderId": wire_id(order.order_id),
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": fmt(order.price if order.price is not None and order.type is OrderType.LIMIT else ZERO),
            "origQty": fmt(order.amount),
            "executedQty": fmt(order.filled),
            "origQuoteOrderQty": fmt(meta.orig_quote_qty),
            "cummulativeQuoteQty": fmt(cumulative_quote),
            "status": status,
            "timeInForce": meta.time_in_force,
            "type": meta.wire_type,
            "side": "BUY" if order.side is Side.BUY else "SELL",
        }

    def fill_json(self, fill: Fill) -> JsonObject:
        return {
            "price": fmt(fill.price),
            "qty": fmt(fill.amount),
            "commission": fmt(fill.fee),
            "commissionAsset": fill.fee_asset,
            "tradeId": wire_id(fill.trade_id),
        }

    def new_order_json(
        self, order: Order, meta: OrderMeta, fills: Iterable[Fill], *, resp_type: str, now_ms: int
    ) -> JsonObject:
        """POST /api/v3/order answer in the ACK, RESULT or FULL layout."""
        ack: JsonObject = {
            "symbol": self.spec.wire_symbol,
            "orderId": wire_id(order.order_id),
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "transactTime": now_ms,
        }
        if resp_type == "ACK":
            return ack
        result = {**ack, **self._common(order, meta)}
        result["workingTime"] = meta.created_ms
        result["selfTradePreventionMode"] = "NONE"
        if resp_type == "RESULT":
            return result
        result["fills"] = [self.fill_json(fill) for fill in fills]
        return result

    def query_json(self, order: Order, meta: OrderMeta) -> JsonObject:
        """GET /api/v3/order and /api/v3/openOrders layout."""
        body = self._common(order, meta)
        body.update(
            {
                "stopPrice": fmt(ZERO),
                "icebergQty": fmt(ZERO),
                "time": meta.created_ms,
                "updateTime": meta.update_ms,
                "isWorking": True,
                "workingTime": meta.created_ms,
                "selfTradePreventionMode": "NONE",
            }
        )
        return body

    def cancel_json(self, order: Order, meta: OrderMeta, *, cancel_client_id: str, now_ms: int) -> JsonObject:
        """DELETE /api/v3/order layout: `clientOrderId` is the cancel request's own id."""
        body = self._common(order, meta)
        body["origClientOrderId"] = order.client_order_id
        body["clientOrderId"] = cancel_client_id
        body["transactTime"] = now_ms
        body["selfTradePreventionMode"] = "NONE"
        return body

    def trade_json(self, fill: Fill) -> JsonObject:
        return {
            "symbol": self.spec.wire_symbol,
            "id": wire_id(fill.trade_id),
            "orderId": wire_id(fill.order_id),
            "orderListId": -1,
            "price": fmt(fill.price),
            "qty": fmt(fill.amount),
            "quoteQty": fmt(fill.price * fill.amount),
            "commission": fmt(fill.fee),
            "commissionAsset": fill.fee_asset,
            "time": to_ms(fill.timestamp),
            "isBuyer": fill.side is Side.BUY,
            "isMaker": fill.is_maker,
            "isBestMatch": True,
        }
