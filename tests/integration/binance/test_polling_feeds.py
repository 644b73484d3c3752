"""The REST-polling feeds over the real gateway and the loopback venue."""

from __future__ import annotations

from decimal import Decimal

from adapters.clock import SimulatedClock
from adapters.polling import PollingMarketDataFeed, PollingOrderUpdateFeed
from domain.models import OrderRequest, OrderType, Side

from .venue import SYMBOL


def buy(client_order_id: str, price: str) -> OrderRequest:
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal("0.001"), client_order_id, Decimal(price))


async def test_the_ticker_feed_follows_the_market(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        feed = PollingMarketDataFeed(gateway, clock, interval_s=2.0)
        seen: list[tuple[float, Decimal]] = []
        async for ticker in feed.tickers(SYMBOL):
            seen.append((clock.monotonic(), ticker.last))
            if len(seen) == 1:
                server.set_price(SYMBOL, Decimal("30100"))
                server.fail_next("ticker/24hr", status=500, times=5)  # an outage: skipped, not fatal
            else:
                feed.close()
        assert [price for _, price in seen] == [Decimal("30000"), Decimal("30100")]
        assert seen[1][0] > seen[0][0] + 2  # the outage cost at least one interval


async def test_the_fill_feed_yields_each_fill_once(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        await gateway.place_order(buy("level-1", "29000"))
        await gateway.place_order(buy("level-2", "28000"))
        server.set_price(SYMBOL, Decimal("28900"))  # fills level-1

        feed = PollingOrderUpdateFeed(gateway, clock, interval_s=2.0)
        seen: list[str] = []
        async for fill in feed.fills(SYMBOL):
            seen.append(fill.client_order_id)
            if len(seen) == 1:
                server.set_price(SYMBOL, Decimal("27900"))  # fills level-2, seen on a later poll
            else:
                feed.close()
        assert seen == ["level-1", "level-2"]
        from_ids = [r.params.get("fromId") for r in server.requests_to("myTrades")]
        assert from_ids[0] is None
        assert from_ids[1:] == ["2"] * (len(from_ids) - 1)  # always after trade 1, the last one seen
