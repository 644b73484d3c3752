"""The real ccxt client trades against the stand-in exactly as it would against Binance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from support.binance_server import FakeBinance, SymbolSpec, running_fake_binance

from .helpers import RawClient, make_exchange


async def test_load_markets_gives_btc_usdt_with_the_real_filters(exchange: Any, server: FakeBinance) -> None:
    markets = await exchange.load_markets()

    market = markets["BTC/USDT"]
    assert market["spot"] is True
    assert market["active"] is True
    assert market["precision"]["price"] == pytest.approx(0.01)
    assert market["precision"]["amount"] == pytest.approx(0.00001)
    assert market["limits"]["cost"]["min"] == pytest.approx(5)
    assert [(r.method, r.path) for r in server.requests] == [("GET", "/api/v3/exchangeInfo")]


async def test_exchange_info_serves_the_configured_symbols_and_rate_limits(
    session: aiohttp.ClientSession,
) -> None:
    eth = SymbolSpec(symbol="ETH/USDT", tick_size=Decimal("0.1"), step_size=Decimal("0.001"))
    prices = {"BTC/USDT": Decimal("30000"), "ETH/USDT": Decimal("2000")}
    async with running_fake_binance(symbols=[SymbolSpec(), eth], prices=prices) as server:
        client = make_exchange(server.api_url)
        try:
            markets = await client.load_markets()
        finally:
            await client.close()
        info = (await RawClient(session, server).public("exchangeInfo")).body

    assert markets["ETH/USDT"]["precision"]["price"] == pytest.approx(0.1)
    assert markets["ETH/USDT"]["precision"]["amount"] == pytest.approx(0.001)
    assert markets["BTC/USDT"]["precision"]["price"] == pytest.approx(0.01)
    limits = {(x["rateLimitType"], x["intervalNum"], x["interval"], x["limit"]) for x in info["rateLimits"]}
    assert limits == {
        ("REQUEST_WEIGHT", 1, "MINUTE", 6000),
        ("ORDERS", 10, "SECOND", 50),
        ("ORDERS", 1, "DAY", 160000),
        ("RAW_REQUESTS", 5, "MINUTE", 61000),
    }


async def test_ticker_follows_the_price_the_test_sets(exchange: Any, server: FakeBinance) -> None:
    server.set_price("BTC/USDT", Decimal("31000.50"))

    ticker = await exchange.fetch_ticker("BTC/USDT")

    assert ticker["last"] == pytest.approx(31000.50)
    assert ticker["bid"] < ticker["last"] < ticker["ask"]
    assert ticker["high"] == pytest.approx(31000.50)
    assert ticker["low"] == pytest.approx(30000)


async def test_balance_starts_with_the_default_account(exchange: Any) -> None:
    balance = await exchange.fetch_balance()

    assert balance["free"]["USDT"] == pytest.approx(10000)
    assert balance["free"]["BTC"] == pytest.approx(1)


async def test_resting_limit_buy_fills_when_the_price_comes_down(exchange: Any, server: FakeBinance) -> None:
    await exchange.load_markets()
    order = await exchange.create_order("BTC/USDT", "limit", "buy", 0.01, 29000)
    assert order["status"] == "open"
    locked = await exchange.fetch_balance()
    assert locked["used"]["USDT"] == pytest.approx(290)

    fills = server.set_price("BTC/USDT", Decimal("28900"))

    assert len(fills) == 1
    filled = await exchange.fetch_order(order["id"], "BTC/USDT")
    assert filled["status"] == "closed"
    assert filled["filled"] == pytest.approx(0.01)
    trades = await exchange.fetch_my_trades("BTC/USDT")
    assert len(trades) == 1
    trade = trades[0]
    assert trade["order"] == order["id"]
    assert trade["price"] == pytest.approx(29000)
    assert trade["takerOrMaker"] == "maker"
    assert trade["fee"] == {"currency": "BTC", "cost": pytest.approx(0.00001)}
    balance = await exchange.fetch_balance()
    assert balance["total"]["BTC"] == pytest.approx(1.00999)
    assert balance["total"]["USDT"] == pytest.approx(9710)


async def test_order_found_by_id_and_by_client_order_id(exchange: Any) -> None:
    await exchange.load_markets()
    placed = await exchange.create_order(
        "BTC/USDT", "limit", "sell", 0.001, 35000, {"clientOrderId": "grid-7"}
    )

    by_id = await exchange.fetch_order(placed["id"], "BTC/USDT")
    by_client_id = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "grid-7"})

    assert by_id["clientOrderId"] == "grid-7"
    assert by_client_id["id"] == placed["id"]
    assert by_client_id["price"] == pytest.approx(35000)


async def test_cancel_releases_the_order_and_its_funds(exchange: Any) -> None:
    await exchange.load_markets()
    placed = await exchange.create_order("BTC/USDT", "limit", "sell", 0.5, 35000)

    canceled = await exchange.cancel_order(placed["id"], "BTC/USDT")

    assert canceled["status"] == "canceled"
    assert await exchange.fetch_open_orders("BTC/USDT") == []
    balance = await exchange.fetch_balance()
    assert balance["free"]["BTC"] == pytest.approx(1)


async def test_cancel_all_orders_cancels_every_open_order(exchange: Any) -> None:
    await exchange.load_markets()
    for price in (28000, 28500):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, price)

    canceled = await exchange.cancel_all_orders("BTC/USDT")

    assert sorted(order["status"] for order in canceled) == ["canceled", "canceled"]
    assert await exchange.fetch_open_orders("BTC/USDT") == []


async def test_market_order_fills_at_once_as_taker(exchange: Any) -> None:
    await exchange.load_markets()

    order = await exchange.create_order("BTC/USDT", "market", "sell", 0.01)

    assert order["status"] == "closed"
    assert order["average"] == pytest.approx(30000)
    assert order["fee"] == {"currency": "USDT", "cost": pytest.approx(0.3)}
    assert order["info"]["fills"][0]["tradeId"] == 1


async def test_market_buy_by_quote_amount(exchange: Any) -> None:
    await exchange.load_markets()

    order = await exchange.create_order("BTC/USDT", "market", "buy", None, None, {"quoteOrderQty": 60})

    assert order["filled"] == pytest.approx(0.002)
    assert order["info"]["origQuoteOrderQty"] == "60.00000000"


async def test_my_trades_from_id_returns_that_trade_and_later_ones(
    exchange: Any, server: FakeBinance
) -> None:
    await exchange.load_markets()
    for _ in range(3):
        await exchange.create_order("BTC/USDT", "market", "buy", 0.001)

    trades = await exchange.fetch_my_trades("BTC/USDT", params={"fromId": 2})

    assert [trade["id"] for trade in trades] == ["2", "3"]
    assert server.requests[-1].params["fromId"] == "2"


async def test_generated_client_order_ids_are_unique(raw: Any) -> None:
    ids = set()
    for _ in range(3):
        reply = await raw.signed(
            "POST",
            "order",
            {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
            in_body=True,
        )
        assert reply.status == 200
        ids.add(reply.body["clientOrderId"])

    assert len(ids) == 3
    assert all(len(client_id) == 22 for client_id in ids)
