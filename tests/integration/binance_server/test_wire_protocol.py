"""The wire details ccxt hides: where signed parameters may travel, the timing rule, response
layouts and the docs' parameter errors, checked with raw HTTP."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Any

import pytest

from support.binance_server import FakeBinance, ManualClock

from .helpers import API_KEY, API_SECRET

KEY = {"X-MBX-APIKEY": API_KEY}
LIMIT_BUY = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "29000",
}


def _signature(payload: str) -> str:
    return hmac.new(API_SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()


# -- request security ------------------------------------------------------------------------------
async def test_signature_covers_query_string_then_body(raw: Any, server: FakeBinance) -> None:
    query = f"symbol=BTCUSDT&side=BUY&type=LIMIT&timestamp={server.server_time_ms()}"
    body = "timeInForce=GTC&quantity=0.001&price=29000"
    signed_body = f"{body}&signature={_signature(query + body)}"

    reply = await raw.request("POST", "order", query=query, body=signed_body, headers=KEY)

    assert reply.status == 200
    assert reply.body["status"] == "NEW"


async def test_signature_is_not_case_sensitive(raw: Any, server: FakeBinance) -> None:
    payload = f"timestamp={server.server_time_ms()}"

    reply = await raw.request(
        "GET", "account", query=f"{payload}&signature={_signature(payload).upper()}", headers=KEY
    )

    assert reply.status == 200


async def test_tampered_parameters_break_the_signature(raw: Any) -> None:
    signed = raw.signed_query({"symbol": "BTCUSDT"})

    reply = await raw.request("GET", "openOrders", query=signed.replace("BTCUSDT", "ETHUSDT"), headers=KEY)

    assert (reply.status, reply.body) == (
        400,
        {"code": -1022, "msg": "Signature for this request is not valid."},
    )


async def test_microsecond_timestamps_are_accepted(raw: Any, server: FakeBinance) -> None:
    reply = await raw.request(
        "GET", "account", query=raw.sign({"timestamp": str(server.server_time_ms() * 1000)}), headers=KEY
    )

    assert reply.status == 200


@pytest.mark.parametrize(
    ("skew_ms", "recv_window", "expected"),
    [
        (999, None, 200),
        (1000, None, "Timestamp for this request was 1000ms ahead of the server's time."),
        (-5000, None, 200),
        (-5001, None, "Timestamp for this request is outside of the recvWindow."),
        (-59_000, "60000", 200),
    ],
)
async def test_timing_rule(
    clocked_raw: Any, clocked_server: FakeBinance, skew_ms: int, recv_window: str | None, expected: int | str
) -> None:
    params = {"recvWindow": recv_window} if recv_window else {}
    query = clocked_raw.sign({**params, "timestamp": str(clocked_server.server_time_ms() + skew_ms)})

    reply = await clocked_raw.request("GET", "account", query=query, headers=KEY)

    if expected == 200:
        assert reply.status == 200
    else:
        assert (reply.status, reply.body) == (400, {"code": -1021, "msg": expected})


async def test_recv_window_over_a_minute_is_refused(raw: Any) -> None:
    reply = await raw.signed("GET", "account", {"recvWindow": "60001"})

    assert reply.status == 400
    assert reply.body["code"] == -1102


async def test_malformed_api_key_is_2014(raw: Any) -> None:
    reply = await raw.request("GET", "account", query=raw.signed_query(), headers={"X-MBX-APIKEY": "k#y"})

    assert (reply.status, reply.body) == (401, {"code": -2014, "msg": "API-key format invalid."})


async def test_public_endpoints_need_no_key(raw: Any) -> None:
    assert (await raw.public("ping")).body == {}
    assert "serverTime" in (await raw.public("time")).body


# -- parameters --------------------------------------------------------------------------------
async def test_query_string_wins_over_body(raw: Any, server: FakeBinance) -> None:
    stamp = server.server_time_ms()
    query = f"symbol=BTCUSDT&side=SELL&type=LIMIT&timestamp={stamp}"
    body = "side=BUY&timeInForce=GTC&quantity=0.001&price=35000"
    signed_body = f"{body}&signature={_signature(query + body)}"

    reply = await raw.request("POST", "order", query=query, body=signed_body, headers=KEY)

    assert reply.body["side"] == "SELL"


@pytest.mark.parametrize(
    ("change", "code", "message"),
    [
        ({"symbol": "DOGEUSDT"}, -1121, "Invalid symbol."),
        ({"side": "HOLD"}, -1117, "Invalid side."),
        ({"type": "BANANA"}, -1116, "Invalid orderType."),
        ({"type": "STOP_LOSS"}, -2010, "Stop loss orders are not supported for this symbol."),
        ({"timeInForce": "GTX"}, -1115, "Invalid timeInForce."),
        ({"price": ""}, -1102, "Mandatory parameter 'price' was not sent, was empty/null, or malformed."),
        ({"quantity": "1e-3"}, -1100, None),
        ({"newClientOrderId": "has space"}, -1100, None),
        ({"price": "29000.005"}, -1013, "Filter failure: PRICE_FILTER"),
        ({"quantity": "100000"}, -1013, "Filter failure: LOT_SIZE"),
    ],
)
async def test_order_parameter_errors(
    raw: Any, change: dict[str, str], code: int, message: str | None
) -> None:
    reply = await raw.signed("POST", "order", {**LIMIT_BUY, **change}, in_body=True)

    assert reply.status == 400
    assert reply.body["code"] == code
    if message is not None:
        assert reply.body["msg"] == message


async def test_market_order_needs_quantity_or_quote_quantity(raw: Any) -> None:
    reply = await raw.signed("POST", "order", {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"})

    assert reply.body == {
        "code": -1102,
        "msg": "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
    }


async def test_duplicate_query_parameters_are_refused(raw: Any) -> None:
    reply = await raw.public("depth", "symbol=BTCUSDT&symbol=BTCUSDT")

    assert reply.body["code"] == -1101


async def test_unknown_endpoint_is_404_with_a_json_body(raw: Any) -> None:
    reply = await raw.public("nope")

    assert reply.status == 404
    assert reply.headers["X-MBX-USED-WEIGHT-1M"] == "1"


# -- order layouts --------------------------------------------------------------------------------
async def test_full_response_layout(raw: Any) -> None:
    reply = await raw.signed(
        "POST",
        "order",
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.002"},
        in_body=True,
    )

    body = reply.body
    assert body["orderId"] == 1
    assert body["orderListId"] == -1
    assert body["status"] == "FILLED"
    assert body["type"] == "MARKET"
    assert body["timeInForce"] == "GTC"
    assert body["price"] == "0.00000000"
    assert body["origQty"] == "0.00200000"
    assert body["executedQty"] == "0.00200000"
    assert body["cummulativeQuoteQty"] == "60.00000000"
    assert body["selfTradePreventionMode"] == "NONE"
    assert body["workingTime"] == body["transactTime"]
    assert body["fills"] == [
        {
            "price": "30000.00000000",
            "qty": "0.00200000",
            "commission": "0.00000200",
            "commissionAsset": "BTC",
            "tradeId": 1,
        }
    ]


async def test_ack_response_layout(raw: Any) -> None:
    reply = await raw.signed("POST", "order", {**LIMIT_BUY, "newOrderRespType": "ACK"}, in_body=True)

    assert set(reply.body) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


async def test_limit_maker_that_would_take_is_refused(raw: Any) -> None:
    reply = await raw.signed(
        "POST",
        "order",
        {**LIMIT_BUY, "type": "LIMIT_MAKER", "price": "30000", "timeInForce": ""},
        in_body=True,
    )

    assert reply.body == {"code": -2010, "msg": "Order would immediately match and take."}


async def test_ioc_limit_that_cannot_fill_expires(raw: Any, server: FakeBinance) -> None:
    reply = await raw.signed("POST", "order", {**LIMIT_BUY, "timeInForce": "IOC"}, in_body=True)

    assert reply.body["status"] == "EXPIRED"
    assert server.book("BTCUSDT").engine.open_orders() == []
    assert server.balances()["USDT"].locked == 0


async def test_query_and_open_orders_layout(raw: Any) -> None:
    placed = (await raw.signed("POST", "order", {**LIMIT_BUY, "newClientOrderId": "q-1"}, in_body=True)).body

    queried = (await raw.signed("GET", "order", {"symbol": "BTCUSDT", "origClientOrderId": "q-1"})).body
    open_orders = (await raw.signed("GET", "openOrders", {"symbol": "BTCUSDT"})).body

    assert queried["orderId"] == placed["orderId"]
    assert queried["isWorking"] is True
    assert queried["time"] == queried["updateTime"] == placed["transactTime"]
    assert open_orders == [queried]


async def test_cancel_by_client_order_id_answers_with_the_cancel_id(raw: Any) -> None:
    await raw.signed("POST", "order", {**LIMIT_BUY, "newClientOrderId": "c-1"}, in_body=True)

    reply = await raw.signed(
        "DELETE", "order", {"symbol": "BTCUSDT", "origClientOrderId": "c-1", "newClientOrderId": "undo-1"}
    )

    assert reply.body["status"] == "CANCELED"
    assert (reply.body["origClientOrderId"], reply.body["clientOrderId"]) == ("c-1", "undo-1")


async def test_order_id_and_client_id_must_agree(raw: Any) -> None:
    placed = (await raw.signed("POST", "order", {**LIMIT_BUY, "newClientOrderId": "a-1"}, in_body=True)).body

    reply = await raw.signed(
        "GET", "order", {"symbol": "BTCUSDT", "orderId": str(placed["orderId"]), "origClientOrderId": "b-2"}
    )

    assert reply.status == 400
    assert reply.body["code"] == -2039


async def test_test_order_validates_without_placing(raw: Any, server: FakeBinance) -> None:
    ok = await raw.signed("POST", "order/test", LIMIT_BUY, in_body=True)
    refused = await raw.signed("POST", "order/test", {**LIMIT_BUY, "quantity": "0.0001"}, in_body=True)
    rates = await raw.signed(
        "POST", "order/test", {**LIMIT_BUY, "computeCommissionRates": "true"}, in_body=True
    )

    assert ok.body == {}
    assert refused.body == {"code": -1013, "msg": "Filter failure: NOTIONAL"}
    assert rates.body["standardCommissionForOrder"] == {"maker": "0.00100000", "taker": "0.00100000"}
    assert server.book("BTCUSDT").engine.open_orders() == []


async def test_my_trades_by_order_and_time(raw: Any, server: FakeBinance) -> None:
    market_buy = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    first = (await raw.signed("POST", "order", market_buy, in_body=True)).body
    await raw.signed("POST", "order", market_buy, in_body=True)

    by_order = (
        await raw.signed("GET", "myTrades", {"symbol": "BTCUSDT", "orderId": str(first["orderId"])})
    ).body
    limited = (await raw.signed("GET", "myTrades", {"symbol": "BTCUSDT", "limit": "1"})).body

    assert [trade["id"] for trade in by_order] == [1]
    assert by_order[0]["quoteQty"] == "30.00000000"
    assert by_order[0]["isBuyer"] is True
    assert by_order[0]["isMaker"] is False
    assert [trade["id"] for trade in limited] == [2]  # the most recent ones without fromId


# -- market data ----------------------------------------------------------------------------------
async def test_depth_is_a_book_around_the_last_price(raw: Any) -> None:
    book = (await raw.public("depth", "symbol=BTCUSDT&limit=3")).body

    assert book["bids"] == [
        ["29999.99000000", "1.00000000"],
        ["29999.98000000", "1.00000000"],
        ["29999.97000000", "1.00000000"],
    ]
    assert book["asks"][0] == ["30000.01000000", "1.00000000"]


async def test_price_and_book_tickers(raw: Any) -> None:
    price = (await raw.public("ticker/price", "symbol=BTCUSDT")).body
    books = (await raw.public("ticker/bookTicker", 'symbols=["BTCUSDT"]')).body

    assert price == {"symbol": "BTCUSDT", "price": "30000.00000000"}
    assert books == [
        {
            "symbol": "BTCUSDT",
            "bidPrice": "29999.99000000",
            "bidQty": "1.00000000",
            "askPrice": "30000.01000000",
            "askQty": "1.00000000",
        }
    ]


async def test_klines_show_the_price_path(
    clocked_raw: Any, clocked_server: FakeBinance, clock: ManualClock
) -> None:
    for price in ("30100", "29900", "30050"):
        clock.advance(1_000)
        clocked_server.set_price("BTCUSDT", Decimal(price))

    klines = (await clocked_raw.public("klines", "symbol=BTCUSDT&interval=1m&limit=2")).body

    assert len(klines) == 2
    previous, current = klines
    assert previous[1:5] == ["30000.00000000"] * 4
    assert current[1:5] == ["30000.00000000", "30100.00000000", "29900.00000000", "30050.00000000"]
    assert current[0] - previous[0] == 60_000
    assert current[6] - current[0] == 59_999


async def test_unknown_kline_interval(raw: Any) -> None:
    reply = await raw.public("klines", "symbol=BTCUSDT&interval=7m")

    assert reply.body == {"code": -1120, "msg": "Invalid interval."}
