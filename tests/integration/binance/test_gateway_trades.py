"""This account's trades through the gateway: one order's own trades, and walking the whole trade
history page by page, with real ccxt against the loopback stand-in."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import adapters.binance.gateway as gateway_module
from adapters.clock import SimulatedClock
from domain.errors import InvalidResponse
from domain.models import Fill, OrderRequest, OrderType, Side

from .venue import SYMBOL

Venue = Callable[..., Any]  # the `venue` fixture: `async with venue() as (server, gateway)`


def buy(client_order_id: str, price: str, amount: str = "0.001") -> OrderRequest:
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal(amount), client_order_id, Decimal(price))


async def test_an_order_s_own_trades_come_back_by_its_venue_id_for_weight_5(venue: Venue) -> None:
    async with venue() as (server, gateway):
        first = await gateway.place_order(buy("grid-a", "29000"))
        second = await gateway.place_order(buy("grid-b", "28500", "0.002"))
        server.set_price(SYMBOL, Decimal("28400"))  # fills both
        weight_before = server.used_weight

        trades = await gateway.fetch_order_trades(SYMBOL, first.order_id)

        assert [(t.order_id, t.client_order_id, t.side) for t in trades] == [
            (first.order_id, "grid-a", Side.BUY)
        ]
        assert (trades[0].price, trades[0].amount) == (Decimal("29000"), Decimal("0.001"))
        assert trades[0].fee == Decimal("0.000001") and trades[0].fee_asset == "BTC"
        # One request: myTrades by orderId, which Binance weighs 5 instead of 20.
        assert server.used_weight - weight_before == 5
        sent = server.requests_to("myTrades")[-1].params
        assert (sent["orderId"], sent["limit"], "fromId" in sent) == (first.order_id, "1000", False)

        other = await gateway.fetch_order_trades(SYMBOL, second.order_id)
        assert [(t.client_order_id, t.amount) for t in other] == [("grid-b", Decimal("0.002"))]
        all_trades = await gateway.fetch_my_trades(SYMBOL)
        assert sorted(all_trades, key=lambda t: t.order_id) == [*trades, *other]


async def test_an_order_without_trades_yet_has_none(venue: Venue) -> None:
    async with venue() as (server, gateway):
        resting = await gateway.place_order(buy("grid-c", "29000"))
        assert await gateway.fetch_order_trades(SYMBOL, resting.order_id) == []
        assert await gateway.fetch_order_trades(SYMBOL, "987654") == []  # unknown to the venue
        with pytest.raises(ValueError, match="order ids are integers"):
            await gateway.fetch_order_trades(SYMBOL, "not-a-number")
        assert len(server.requests_to("myTrades")) == 2


async def test_an_order_with_a_full_page_of_trades_is_walked_from_its_first_trade(
    venue: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Binance answers an orderId query with the order's *newest* page: an order with a full
    # page may have older trades. A page of 1 makes every filled order such an order here.
    monkeypatch.setattr(gateway_module, "MY_TRADES_PAGE", 1)
    async with venue() as (server, gateway):
        earlier = await gateway.place_order(buy("grid-d", "29000"))
        server.set_price(SYMBOL, Decimal("28900"))
        placed = await gateway.place_order(buy("grid-e", "28800"))
        server.set_price(SYMBOL, Decimal("28700"))

        trades = await gateway.fetch_order_trades(SYMBOL, placed.order_id)

        assert [(t.order_id, t.client_order_id) for t in trades] == [(placed.order_id, "grid-e")]
        trade_id = int(trades[0].trade_id)
        sent = [r.params for r in server.requests_to("myTrades")]
        assert [(p["orderId"], p.get("fromId"), p["limit"]) for p in sent] == [
            (placed.order_id, None, "1"),  # the newest page: full
            (placed.order_id, "0", "1"),  # so from the first trade on
            (placed.order_id, str(trade_id + 1), "1"),  # until a page is not full
        ]
        assert [t.order_id for t in await gateway.fetch_order_trades(SYMBOL, earlier.order_id)] == [
            earlier.order_id
        ]


async def test_trades_of_another_order_in_an_order_s_answer_are_refused_not_booked(venue: Venue) -> None:
    async with venue() as (server, gateway):
        mine = await gateway.place_order(buy("grid-f", "29000"))
        await gateway.place_order(buy("grid-g", "28500"))
        fills = server.set_price(SYMBOL, Decimal("28400"))
        stray_trade = next(f for f in fills if f.order_id != mine.order_id)
        wrong_answer: Any = [server.book(SYMBOL).trade_json(stray_trade)]
        server.fail_next("myTrades", status=200, body=wrong_answer)

        with pytest.raises(InvalidResponse, match=f"trades of orders \\['{stray_trade.order_id}'\\]"):
            await gateway.fetch_order_trades(SYMBOL, mine.order_id)
        assert [t.client_order_id for t in await gateway.fetch_order_trades(SYMBOL, mine.order_id)] == [
            "grid-f"
        ]


async def test_paging_on_from_the_last_id_walks_every_trade_once(venue: Venue, clock: SimulatedClock) -> None:
    """More than a page (1000) of trades, booked on the venue by orders this gateway never saw:
    each call returns at most one page, and paging on from the last id returned until a call
    returns nothing yields every trade exactly once, with its client order id."""
    total = 1100
    async with venue() as (server, gateway):
        engine = server.book(SYMBOL).engine
        for i in range(total):
            side = Side.BUY if i % 2 == 0 else Side.SELL
            order = OrderRequest(SYMBOL, side, OrderType.MARKET, Decimal("0.0002"), f"hist-{i}")
            engine.place(order, clock.now())

        walked: list[Fill] = []
        pages: list[int] = []
        last: str | None = "0"  # before the first trade: None would mean "the newest page"
        while True:
            page = await gateway.fetch_my_trades(SYMBOL, since_trade_id=last)
            if not page:
                break
            pages.append(len(page))
            walked.extend(page)
            last = page[-1].trade_id

        assert pages == [1000, total - 1000]
        assert [int(t.trade_id) for t in walked] == list(range(1, total + 1))
        assert [t.client_order_id for t in walked] == [f"hist-{i}" for i in range(total)]
        from_ids = [r.params["fromId"] for r in server.requests_to("myTrades")]
        assert from_ids == ["1", "1001", str(total + 1)]

        # Without a since id, Binance gives its newest page, not the oldest.
        newest = await gateway.fetch_my_trades(SYMBOL)
        assert [int(t.trade_id) for t in newest] == list(range(total - 999, total + 1))
