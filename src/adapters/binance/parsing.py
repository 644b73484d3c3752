"""Validation at the boundary: raw Binance payloads -> domain values.

Amounts and prices are read from the raw strings Binance sends (ccxt's `info`), never from
ccxt's float-converted unified fields. A missing or non-numeric field raises InvalidResponse
naming the field: a silent zero would make the bot trade on nonsense.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from domain.errors import InvalidResponse
from domain.models import ZERO, Balance, Fill, Order, OrderStatus, OrderType, Side, Ticker
from domain.rules import MarketRules

Payload = Mapping[str, object]
E = TypeVar("E")

STATUSES: Mapping[str, OrderStatus] = {
    "NEW": OrderStatus.OPEN,
    "PENDING_NEW": OrderStatus.OPEN,
    "PARTIALLY_FILLED": OrderStatus.PARTIALLY_FILLED,
    "FILLED": OrderStatus.FILLED,
    "CANCELED": OrderStatus.CANCELED,
    "PENDING_CANCEL": OrderStatus.OPEN,
    "REJECTED": OrderStatus.REJECTED,
    "EXPIRED": OrderStatus.EXPIRED,
    "EXPIRED_IN_MATCH": OrderStatus.EXPIRED,
}
ORDER_TYPES: Mapping[str, OrderType] = {
    "LIMIT": OrderType.LIMIT,
    "LIMIT_MAKER": OrderType.LIMIT,
    "MARKET": OrderType.MARKET,
}
SIDES: Mapping[str, Side] = {"BUY": Side.BUY, "SELL": Side.SELL}


def as_payload(value: object, where: str) -> Payload:
    if type(value) is dict:  # the usual case, and much cheaper than the ABC check below
        return value
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{where}: expected an object, got {type(value).__name__}")
    return value


def as_list(value: object, where: str) -> Sequence[object]:
    if not isinstance(value, list):
        raise InvalidResponse(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _missing(where: str, name: str) -> InvalidResponse:
    return InvalidResponse(f"{where}: field {name!r} is missing")


def decimal_field(data: Payload, name: str, where: str) -> Decimal:
    """A decimal from a string (Binance's format) or an int. Floats are refused: they have
    already lost the venue's exact value."""
    raw = data.get(name)
    # Exact type checks first: the usual str costs one comparison instead of the isinstance
    # chain (bool is an int subclass and must still be refused).
    if type(raw) is not str and type(raw) is not int:
        if raw is None:
            raise _missing(where, name)
        if isinstance(raw, bool) or not isinstance(raw, str | int):
            raise InvalidResponse(f"{where}: field {name!r} is not a decimal string: {raw!r}")
    try:
        # Decimal() itself ignores surrounding whitespace.
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidResponse(f"{where}: field {name!r} is not numeric: {raw!r}") from None
    if not value.is_finite():
        raise InvalidResponse(f"{where}: field {name!r} is not finite: {raw!r}")
    return value


def optional_decimal(data: Payload, name: str, where: str) -> Decimal | None:
    if data.get(name) is None:
        return None
    return decimal_field(data, name, where)


def int_field(data: Payload, name: str, where: str) -> int:
    raw = data.get(name)
    if type(raw) is int:
        return raw
    if raw is None:
        raise _missing(where, name)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    elif isinstance(raw, int) and not isinstance(raw, bool):
        return int(raw)
    raise InvalidResponse(f"{where}: field {name!r} is not an integer: {raw!r}")


def str_field(data: Payload, name: str, where: str) -> str:
    return _as_str(data.get(name), name, where)


def _as_str(raw: object, name: str, where: str) -> str:
    if type(raw) is str:
        if raw:
            return raw
        raise InvalidResponse(f"{where}: field {name!r} is empty")
    if raw is None:
        raise _missing(where, name)
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InvalidResponse(f"{where}: field {name!r} is not a string: {raw!r}")
    text = str(raw)
    if not text:
        raise InvalidResponse(f"{where}: field {name!r} is empty")
    return text


def bool_field(data: Payload, name: str, where: str) -> bool:
    raw = data.get(name)
    if not isinstance(raw, bool):
        raise InvalidResponse(f"{where}: field {name!r} is not a boolean: {raw!r}")
    return raw


def enum_field(data: Payload, name: str, where: str, mapping: Mapping[str, E]) -> E:
    raw = data.get(name)
    if type(raw) is str:
        found = mapping.get(raw)
        if found is not None:
            return found
    text = _as_str(raw, name, where)
    if text not in mapping:
        raise InvalidResponse(f"{where}: field {name!r} has an unknown value {text!r}")
    return mapping[text]


def millis_to_datetime(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def timestamp_field(data: Payload, names: Sequence[str], where: str) -> datetime:
    """The first of `names` present, as a UTC datetime from epoch milliseconds."""
    for name in names:
        raw = data.get(name)
        if raw is not None:
            return datetime.fromtimestamp(
                (raw if type(raw) is int else int_field(data, name, where)) / 1000, tz=UTC
            )
    raise InvalidResponse(f"{where}: field {' / '.join(repr(n) for n in names)} is missing")


# -- market rules ---------------------------------------------------------------------------------
def parse_market_rules(symbol: str, info: Payload) -> MarketRules:
    """MarketRules from one exchangeInfo `symbols[]` entry. PRICE_FILTER and LOT_SIZE are
    required; NOTIONAL (or the older MIN_NOTIONAL), MARKET_LOT_SIZE and MAX_NUM_ORDERS are used
    when present (a missing one disables its check, as a zero does on the venue)."""
    where = f"exchangeInfo[{symbol}]"
    filters: dict[str, Payload] = {}
    for index, raw in enumerate(as_list(info.get("filters"), f"{where}.filters")):
        entry = as_payload(raw, f"{where}.filters[{index}]")
        filters[str_field(entry, "filterType", f"{where}.filters[{index}]")] = entry
    if "PRICE_FILTER" not in filters:
        raise InvalidResponse(f"{where}: filter 'PRICE_FILTER' is missing")
    if "LOT_SIZE" not in filters:
        raise InvalidResponse(f"{where}: filter 'LOT_SIZE' is missing")
    price, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    price_where, lot_where = f"{where}.PRICE_FILTER", f"{where}.LOT_SIZE"

    min_notional = max_notional = ZERO
    if "NOTIONAL" in filters:
        notional = filters["NOTIONAL"]
        min_notional = optional_decimal(notional, "minNotional", f"{where}.NOTIONAL") or ZERO
        max_notional = optional_decimal(notional, "maxNotional", f"{where}.NOTIONAL") or ZERO
    elif "MIN_NOTIONAL" in filters:
        min_notional = decimal_field(filters["MIN_NOTIONAL"], "minNotional", f"{where}.MIN_NOTIONAL")
    market_max_qty = ZERO
    if "MARKET_LOT_SIZE" in filters:
        market_max_qty = decimal_field(filters["MARKET_LOT_SIZE"], "maxQty", f"{where}.MARKET_LOT_SIZE")
    max_num_orders = 0
    if "MAX_NUM_ORDERS" in filters:
        max_num_orders = int_field(filters["MAX_NUM_ORDERS"], "maxNumOrders", f"{where}.MAX_NUM_ORDERS")

    try:
        return MarketRules(
            symbol=symbol,
            base_asset=str_field(info, "baseAsset", where),
            quote_asset=str_field(info, "quoteAsset", where),
            tick_size=decimal_field(price, "tickSize", price_where),
            step_size=decimal_field(lot, "stepSize", lot_where),
            min_qty=decimal_field(lot, "minQty", lot_where),
            max_qty=decimal_field(lot, "maxQty", lot_where),
            min_price=decimal_field(price, "minPrice", price_where),
            max_price=decimal_field(price, "maxPrice", price_where),
            min_notional=min_notional,
            max_notional=max_notional,
            max_num_orders=max_num_orders,
            market_max_qty=market_max_qty,
        )
    except ValueError as exc:
        raise InvalidResponse(f"{where}: {exc}") from None


# -- market data and account ----------------------------------------------------------------------
def parse_ticker(symbol: str, info: Payload) -> Ticker:
    """A 24hr ticker (`GET /api/v3/ticker/24hr?symbol=...`)."""
    where = f"ticker[{symbol}]"
    return Ticker(
        symbol=symbol,
        bid=decimal_field(info, "bidPrice", where),
        ask=decimal_field(info, "askPrice", where),
        last=decimal_field(info, "lastPrice", where),
        timestamp=timestamp_field(info, ("closeTime",), where),
    )


def parse_balances(info: Payload) -> dict[str, Balance]:
    """`GET /api/v3/account` balances, keyed by asset."""
    balances: dict[str, Balance] = {}
    for index, raw in enumerate(as_list(info.get("balances"), "account.balances")):
        where = f"account.balances[{index}]"
        entry = as_payload(raw, where)
        asset = str_field(entry, "asset", where)
        balances[asset] = Balance(
            asset=asset,
            free=decimal_field(entry, "free", where),
            locked=decimal_field(entry, "locked", where),
        )
    return balances


# -- orders and trades ----------------------------------------------------------------------------
def _fees(info: Payload, where: str) -> tuple[Decimal, str | None]:
    """Commission of a FULL placement answer, when it was charged in a single asset."""
    raw_fills = info.get("fills")
    if not raw_fills:
        return ZERO, None
    total, assets = ZERO, set()
    for index, raw in enumerate(as_list(raw_fills, f"{where}.fills")):
        fill = as_payload(raw, f"{where}.fills[{index}]")
        total += decimal_field(fill, "commission", f"{where}.fills[{index}]")
        assets.add(str_field(fill, "commissionAsset", f"{where}.fills[{index}]"))
    if len(assets) != 1:
        return ZERO, None
    return total, assets.pop()


def parse_order(symbol: str, info: Payload) -> Order:
    """An order from a placement (FULL/RESULT), query, open-orders or cancel answer. A cancel
    answer carries the original id in `origClientOrderId` and no creation time (its
    `transactTime`, the cancel's time, stands in)."""
    order_id = str_field(info, "orderId", "order")
    where = f"order[{order_id}]"
    order_type = enum_field(info, "type", where, ORDER_TYPES)
    price = decimal_field(info, "price", where)
    filled = decimal_field(info, "executedQty", where)
    quote_filled = optional_decimal(info, "cummulativeQuoteQty", where)
    average = quote_filled / filled if filled > 0 and quote_filled is not None and quote_filled > 0 else None
    fee, fee_asset = _fees(info, where)
    client_order_id = info.get("origClientOrderId") or info.get("clientOrderId")
    return Order(
        order_id=order_id,
        client_order_id=_as_str(client_order_id, "clientOrderId", where),
        symbol=symbol,
        side=enum_field(info, "side", where, SIDES),
        type=order_type,
        amount=decimal_field(info, "origQty", where),
        price=None if order_type is OrderType.MARKET or price == 0 else price,
        status=enum_field(info, "status", where, STATUSES),
        created_at=timestamp_field(info, ("time", "workingTime", "transactTime"), where),
        filled=filled,
        average_price=average,
        fee=fee,
        fee_asset=fee_asset,
    )


def parse_trade(symbol: str, info: Payload, client_order_id: str) -> Fill:
    """One `GET /api/v3/myTrades` entry. Binance does not echo the client order id there: the
    caller supplies it."""
    trade_id = str_field(info, "id", "trade")
    where = f"trade[{trade_id}]"
    return Fill(
        trade_id=trade_id,
        order_id=str_field(info, "orderId", where),
        client_order_id=client_order_id,
        symbol=symbol,
        side=Side.BUY if bool_field(info, "isBuyer", where) else Side.SELL,
        price=decimal_field(info, "price", where),
        amount=decimal_field(info, "qty", where),
        fee=decimal_field(info, "commission", where),
        fee_asset=str_field(info, "commissionAsset", where),
        timestamp=timestamp_field(info, ("time",), where),
        is_maker=bool_field(info, "isMaker", where),
    )
