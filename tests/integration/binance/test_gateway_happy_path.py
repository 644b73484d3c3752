"""What a trader sees through the gateway when the venue behaves."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from adapters.binance import open_binance_gateway
from adapters.clock import SimulatedClock
from domain.models import OrderRequest, OrderStatus, OrderType, Side

from .venue import API_KEY, API_SECRET, SYMBOL, config_for


def buy(client_order_id: str, amount: str = "0.001", price: str = "29000") -> OrderRequest:
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal(amount), client_order_id, Decimal(price))


async def test_start_costs_one_exchange_info_and_one_time_request(venue) -> None:
    async with venue() as (server, gateway):
        assert [(r.method, r.path) for r in server.requests] == [
            ("GET", "/api/v3/exchangeInfo"),
            ("GET", "/api/v3/time"),
        ]
        assert gateway.state == "normal"


async def test_rules_ticker_and_balances(venue) -> None:
    async with venue(prices={SYMBOL: Decimal("30000.00")}) as (_server, gateway):
        rules = await gateway.market_rules(SYMBOL)
        assert (rules.base_asset, rules.quote_asset) == ("BTC", "USDT")
        assert rules.tick_size == Decimal("0.01")
        assert rules.step_size == Decimal("0.00001")
        assert rules.min_notional == Decimal("5")
        assert rules.max_num_orders == 200

        ticker = await gateway.fetch_ticker(SYMBOL)
        assert ticker.last == Decimal("30000")
        assert ticker.bid < ticker.last < ticker.ask

        balances = await gateway.fetch_balances()
        assert balances["USDT"].free == Decimal("10000")
        assert balances["BTC"].free == Decimal("1")


async def test_limit_order_placed_fetched_and_cancelled(venue) -> None:
    async with venue() as (server, gateway):
        placed = await gateway.place_order(buy("grid-0001"))
        assert placed.status is OrderStatus.OPEN
        assert (placed.client_order_id, placed.amount, placed.price) == (
            "grid-0001",
            Decimal("0.001"),
            Decimal("29000"),
        )
        # What was sent: our client order id and recvWindow, never ccxt's broker id.
        sent = server.requests_to("order", "POST")[0].params
        assert sent["newClientOrderId"] == "grid-0001"
        assert sent["recvWindow"] == "5000"

        by_id = await gateway.fetch_order(SYMBOL, order_id=placed.order_id)
        by_client_id = await gateway.fetch_order(SYMBOL, client_order_id="grid-0001")
        assert by_id == by_client_id == placed
        assert [o.client_order_id for o in await gateway.fetch_open_orders(SYMBOL)] == ["grid-0001"]
        assert (await gateway.fetch_balances())["USDT"].locked == Decimal("29")

        cancelled = await gateway.cancel_order(SYMBOL, placed.order_id)
        assert cancelled.status is OrderStatus.CANCELED
        assert cancelled.client_order_id == "grid-0001"
        assert await gateway.fetch_open_orders(SYMBOL) == []


async def test_a_fill_is_seen_through_my_trades_after_the_price_moves(venue) -> None:
    async with venue() as (server, gateway):
        placed = await gateway.place_order(buy("grid-0002"))
        assert await gateway.fetch_my_trades(SYMBOL) == []
        server.set_price(SYMBOL, Decimal("28900"))

        fills = await gateway.fetch_my_trades(SYMBOL)
        assert len(fills) == 1
        fill = fills[0]
        assert (fill.order_id, fill.client_order_id, fill.side) == (placed.order_id, "grid-0002", Side.BUY)
        assert (fill.price, fill.amount) == (Decimal("29000"), Decimal("0.001"))
        assert fill.fee == Decimal("0.000001") and fill.fee_asset == "BTC"

        assert await gateway.fetch_my_trades(SYMBOL, since_trade_id=fill.trade_id) == []
        assert server.requests_to("myTrades")[-1].params["fromId"] == str(int(fill.trade_id) + 1)
        assert (await gateway.fetch_order(SYMBOL, order_id=placed.order_id)).status is OrderStatus.FILLED


async def test_trades_of_orders_placed_before_a_restart_get_their_client_order_id(
    venue, clock: SimulatedClock
) -> None:
    async with venue() as (server, first):
        placed = await first.place_order(buy("from-before-restart"))
        server.set_price(SYMBOL, Decimal("28900"))
        # A fresh gateway (a restarted bot) on the same venue has not seen that order.
        async with open_binance_gateway(config_for(server), clock) as restarted:
            fills = await restarted.fetch_my_trades(SYMBOL)
        assert [f.client_order_id for f in fills] == ["from-before-restart"]
        lookups = server.requests_to("order", "GET")
        assert [r.params["orderId"] for r in lookups] == [placed.order_id]


async def test_a_market_order(venue) -> None:
    async with venue() as (_server, gateway):
        order = await gateway.place_order(
            OrderRequest(SYMBOL, Side.BUY, OrderType.MARKET, Decimal("0.002"), "mkt-1")
        )
        assert order.status is OrderStatus.FILLED
        assert order.price is None
        assert order.filled == Decimal("0.002")
        assert order.average_price is not None


async def test_an_order_without_client_order_id_is_refused_before_sending(venue) -> None:
    async with venue() as (server, gateway):
        with pytest.raises(ValueError, match="client order id"):
            await gateway.place_order(buy(""))
        assert server.requests_to("order") == []


async def test_markets_are_cached_for_their_ttl_then_reloaded(venue, clock: SimulatedClock) -> None:
    async with venue(config={"markets_ttl_s": 3600.0}) as (server, gateway):
        await gateway.market_rules(SYMBOL)
        await clock.sleep(3599)
        await gateway.market_rules(SYMBOL)
        assert len(server.requests_to("exchangeInfo")) == 1
        await clock.sleep(1)
        await gateway.market_rules(SYMBOL)
        assert len(server.requests_to("exchangeInfo")) == 2


async def test_the_clock_offset_is_measured_again_after_the_resync_interval(
    venue, clock: SimulatedClock
) -> None:
    async with venue(config={"time_resync_s": 300.0}) as (server, gateway):
        await gateway.fetch_balances()
        assert len(server.requests_to("time")) == 1
        await clock.sleep(300)
        await gateway.fetch_balances()
        assert [r.path for r in server.requests[-2:]] == ["/api/v3/time", "/api/v3/account"]


async def test_the_api_key_never_reaches_the_logs_even_at_debug(venue, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with venue() as (server, gateway):
        await gateway.fetch_balances()
        await gateway.place_order(buy("logged"))
    assert server.requests_to("account")[0].headers["X-MBX-APIKEY"] == API_KEY
    assert API_KEY not in caplog.text
    assert API_SECRET not in caplog.text
