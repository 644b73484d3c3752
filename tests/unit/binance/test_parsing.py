"""Raw Binance payloads -> domain values: exact decimals, and loud failures on bad fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.binance.parsing import (
    parse_balances,
    parse_market_rules,
    parse_order,
    parse_ticker,
    parse_trade,
)
from domain.errors import InvalidResponse
from domain.models import OrderStatus, OrderType, Side

# Real BTCUSDT filters from the spot testnet (2026-06-15), as in BINANCE_FACTS section 4.
TESTNET_BTCUSDT = {
    "symbol": "BTCUSDT",
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "filters": [
        {
            "filterType": "PRICE_FILTER",
            "minPrice": "0.01000000",
            "maxPrice": "1000000.00000000",
            "tickSize": "0.01000000",
        },
        {
            "filterType": "LOT_SIZE",
            "minQty": "0.00001000",
            "maxQty": "9000.00000000",
            "stepSize": "0.00001000",
        },
        {"filterType": "ICEBERG_PARTS", "limit": 100},
        {
            "filterType": "MARKET_LOT_SIZE",
            "minQty": "0.00000000",
            "maxQty": "165.02219723",
            "stepSize": "0.00000000",
        },
        {
            "filterType": "PERCENT_PRICE_BY_SIDE",
            "bidMultiplierUp": "2",
            "bidMultiplierDown": "0.5",
            "askMultiplierUp": "2",
            "askMultiplierDown": "0.5",
            "avgPriceMins": 5,
        },
        {
            "filterType": "NOTIONAL",
            "minNotional": "5.00000000",
            "applyMinToMarket": True,
            "maxNotional": "9000000.00000000",
            "applyMaxToMarket": False,
            "avgPriceMins": 5,
        },
        {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
    ],
}


def test_market_rules_come_from_the_raw_filters_as_exact_decimals() -> None:
    rules = parse_market_rules("BTC/USDT", TESTNET_BTCUSDT)
    assert rules.symbol == "BTC/USDT"
    assert (rules.base_asset, rules.quote_asset) == ("BTC", "USDT")
    assert rules.tick_size == Decimal("0.01")
    assert rules.step_size == Decimal("0.00001")
    assert (rules.min_qty, rules.max_qty) == (Decimal("0.00001"), Decimal("9000"))
    assert (rules.min_price, rules.max_price) == (Decimal("0.01"), Decimal("1000000"))
    assert (rules.min_notional, rules.max_notional) == (Decimal("5"), Decimal("9000000"))
    assert rules.max_num_orders == 200
    assert rules.market_max_qty == Decimal("165.02219723")


def test_older_symbols_with_min_notional_are_understood() -> None:
    info = dict(TESTNET_BTCUSDT)
    info["filters"] = [
        f for f in TESTNET_BTCUSDT["filters"] if f["filterType"] not in ("NOTIONAL", "MAX_NUM_ORDERS")
    ] + [
        {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000", "applyToMarket": True, "avgPriceMins": 5}
    ]
    rules = parse_market_rules("BTC/USDT", info)
    assert rules.min_notional == Decimal("10")
    assert rules.max_notional == 0
    assert rules.max_num_orders == 0


@pytest.mark.parametrize(
    ("filter_type", "field", "value", "named"),
    [
        ("PRICE_FILTER", "tickSize", None, "tickSize"),
        ("PRICE_FILTER", "tickSize", "abc", "tickSize"),
        ("LOT_SIZE", "stepSize", 0.001, "stepSize"),  # a float already lost the exact value
        ("LOT_SIZE", "minQty", "NaN", "minQty"),
        ("NOTIONAL", "minNotional", "five", "minNotional"),
    ],
)
def test_a_bad_filter_field_is_named_never_zeroed(
    filter_type: str, field: str, value: object, named: str
) -> None:
    filters = []
    for original in TESTNET_BTCUSDT["filters"]:
        entry = dict(original)
        if entry["filterType"] == filter_type:
            if value is None:
                del entry[field]
            else:
                entry[field] = value
        filters.append(entry)
    with pytest.raises(InvalidResponse, match=named):
        parse_market_rules("BTC/USDT", {**TESTNET_BTCUSDT, "filters": filters})


def test_a_missing_price_filter_is_refused() -> None:
    filters = [f for f in TESTNET_BTCUSDT["filters"] if f["filterType"] != "PRICE_FILTER"]
    with pytest.raises(InvalidResponse, match="PRICE_FILTER"):
        parse_market_rules("BTC/USDT", {**TESTNET_BTCUSDT, "filters": filters})


TICKER = {
    "symbol": "BTCUSDT",
    "lastPrice": "30000.10000000",
    "bidPrice": "30000.00000000",
    "askPrice": "30000.20000000",
    "closeTime": 1700000000123,
}


def test_ticker() -> None:
    ticker = parse_ticker("BTC/USDT", TICKER)
    assert (ticker.bid, ticker.ask, ticker.last) == (Decimal("30000"), Decimal("30000.2"), Decimal("30000.1"))
    assert ticker.timestamp == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


@pytest.mark.parametrize("field", ["bidPrice", "askPrice", "lastPrice", "closeTime"])
def test_a_ticker_missing_a_field_is_refused(field: str) -> None:
    payload = {k: v for k, v in TICKER.items() if k != field}
    with pytest.raises(InvalidResponse, match=field):
        parse_ticker("BTC/USDT", payload)


def test_balances() -> None:
    balances = parse_balances(
        {
            "balances": [
                {"asset": "BTC", "free": "0.50000000", "locked": "0.10000000"},
                {"asset": "USDT", "free": "100.5", "locked": "0"},
            ]
        }
    )
    assert balances["BTC"].total == Decimal("0.6")
    assert balances["USDT"].free == Decimal("100.5")


def test_a_balance_with_a_non_numeric_amount_is_refused() -> None:
    with pytest.raises(InvalidResponse, match="free"):
        parse_balances({"balances": [{"asset": "BTC", "free": "", "locked": "0"}]})


QUERY = {
    "symbol": "BTCUSDT",
    "orderId": 28,
    "orderListId": -1,
    "clientOrderId": "grid-1",
    "price": "29000.00000000",
    "origQty": "0.00100000",
    "executedQty": "0.00040000",
    "cummulativeQuoteQty": "11.60000000",
    "status": "PARTIALLY_FILLED",
    "timeInForce": "GTC",
    "type": "LIMIT",
    "side": "BUY",
    "time": 1700000000000,
    "updateTime": 1700000001000,
    "isWorking": True,
    "workingTime": 1700000000000,
}


def test_a_queried_order() -> None:
    order = parse_order("BTC/USDT", QUERY)
    assert order.order_id == "28"
    assert order.client_order_id == "grid-1"
    assert (order.side, order.type, order.status) == (Side.BUY, OrderType.LIMIT, OrderStatus.PARTIALLY_FILLED)
    assert (order.amount, order.price, order.filled) == (
        Decimal("0.001"),
        Decimal("29000"),
        Decimal("0.0004"),
    )
    assert order.average_price == Decimal("29000")
    assert order.created_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("NEW", OrderStatus.OPEN),
        ("PARTIALLY_FILLED", OrderStatus.PARTIALLY_FILLED),
        ("FILLED", OrderStatus.FILLED),
        ("CANCELED", OrderStatus.CANCELED),
        ("REJECTED", OrderStatus.REJECTED),
        ("EXPIRED", OrderStatus.EXPIRED),
        ("EXPIRED_IN_MATCH", OrderStatus.EXPIRED),
    ],
)
def test_binance_statuses(raw: str, status: OrderStatus) -> None:
    assert parse_order("BTC/USDT", {**QUERY, "status": raw}).status is status


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(InvalidResponse, match="status"):
        parse_order("BTC/USDT", {**QUERY, "status": "HALF_BAKED"})


@pytest.mark.parametrize("field", ["origQty", "executedQty", "price", "side", "type", "status", "orderId"])
def test_an_order_missing_a_field_is_refused(field: str) -> None:
    with pytest.raises(InvalidResponse, match=field):
        parse_order("BTC/USDT", {k: v for k, v in QUERY.items() if k != field})


def test_a_full_market_placement_with_fills_and_fees() -> None:
    order = parse_order(
        "BTC/USDT",
        {
            "symbol": "BTCUSDT",
            "orderId": 29,
            "orderListId": -1,
            "clientOrderId": "grid-2",
            "transactTime": 1700000000000,
            "price": "0.00000000",
            "origQty": "0.00200000",
            "executedQty": "0.00200000",
            "cummulativeQuoteQty": "60.00100000",
            "status": "FILLED",
            "timeInForce": "GTC",
            "type": "MARKET",
            "side": "BUY",
            "workingTime": 1700000000000,
            "fills": [
                {
                    "price": "30000.00",
                    "qty": "0.001",
                    "commission": "0.000001",
                    "commissionAsset": "BTC",
                    "tradeId": 1,
                },
                {
                    "price": "30001.00",
                    "qty": "0.001",
                    "commission": "0.000001",
                    "commissionAsset": "BTC",
                    "tradeId": 2,
                },
            ],
        },
    )
    assert order.price is None
    assert order.average_price == Decimal("30000.5")
    assert (order.fee, order.fee_asset) == (Decimal("0.000002"), "BTC")


def test_a_cancel_answer_keeps_the_original_client_order_id() -> None:
    order = parse_order(
        "BTC/USDT",
        {
            "symbol": "BTCUSDT",
            "origClientOrderId": "grid-1",
            "orderId": 28,
            "orderListId": -1,
            "clientOrderId": "cancel-77",
            "transactTime": 1700000005000,
            "price": "29000.00000000",
            "origQty": "0.00100000",
            "executedQty": "0.00000000",
            "cummulativeQuoteQty": "0.00000000",
            "status": "CANCELED",
            "timeInForce": "GTC",
            "type": "LIMIT",
            "side": "SELL",
        },
    )
    assert order.client_order_id == "grid-1"
    assert order.status is OrderStatus.CANCELED
    assert order.average_price is None


TRADE = {
    "symbol": "BTCUSDT",
    "id": 28457,
    "orderId": 100234,
    "orderListId": -1,
    "price": "4.00000100",
    "qty": "12.00000000",
    "quoteQty": "48.000012",
    "commission": "10.10000000",
    "commissionAsset": "BNB",
    "time": 1499865549590,
    "isBuyer": True,
    "isMaker": False,
    "isBestMatch": True,
}


def test_a_trade_becomes_a_fill() -> None:
    fill = parse_trade("BNB/BTC", TRADE, "grid-9")
    assert (fill.trade_id, fill.order_id, fill.client_order_id) == ("28457", "100234", "grid-9")
    assert (fill.side, fill.is_maker) == (Side.BUY, False)
    assert (fill.price, fill.amount, fill.fee, fill.fee_asset) == (
        Decimal("4.000001"),
        Decimal("12"),
        Decimal("10.1"),
        "BNB",
    )


@pytest.mark.parametrize("field", ["price", "qty", "commission", "commissionAsset", "time", "isBuyer"])
def test_a_trade_missing_a_field_is_refused(field: str) -> None:
    with pytest.raises(InvalidResponse, match=field):
        parse_trade("BNB/BTC", {k: v for k, v in TRADE.items() if k != field}, "grid-9")
