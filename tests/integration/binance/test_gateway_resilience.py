"""Rate limits, outages, clock skew and lost answers, as the real adapter lives through them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from adapters.clock import SimulatedClock
from domain.errors import ExchangeUnavailable, OrderStateUnknown, RateLimited
from domain.models import OrderRequest, OrderStatus, OrderType, Side

from .venue import SYMBOL


def buy(client_order_id: str, price: str = "29000") -> OrderRequest:
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal("0.001"), client_order_id, Decimal(price))


# -- rate limits ----------------------------------------------------------------------------------
async def test_a_burst_waits_instead_of_passing_80_percent_of_the_weight_limit(
    venue, clock: SimulatedClock
) -> None:
    async with venue(weight_limit=300) as (server, gateway):  # budget: 240 per minute
        peak = 0
        for _ in range(25):  # 25 x 20 = 500 weight: more than two minutes' budget
            await gateway.fetch_balances()
            peak = max(peak, server.used_weight)
        assert peak <= 240
        assert all(r.status == 200 for r in server.requests)  # never a 429
        assert clock.monotonic() >= 120  # it waited (on the simulated clock) for two new windows
        assert gateway.state == "normal"


async def test_a_429_holds_every_request_back_until_retry_after(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        server.force_rate_limit(429, retry_after=5)
        with pytest.raises(RateLimited) as raised:
            await gateway.fetch_ticker(SYMBOL)
        assert raised.value.retry_after == 5
        assert raised.value.code == -1003
        limited_at = server.requests[-1].time_ms
        assert gateway.state == "rate_limited"

        ticker = await gateway.fetch_ticker(SYMBOL)
        assert ticker.symbol == SYMBOL
        next_request = server.requests[-1]
        assert next_request.time_ms - limited_at >= 5000  # nothing was sent inside the window
        assert [r.status for r in server.requests[-2:]] == [429, 200]
        assert gateway.state == "normal"


async def test_a_418_ban_is_honoured_and_logged_loudly(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        server.force_rate_limit(418, retry_after=120)
        with capture_logs() as logs, pytest.raises(RateLimited, match="IP banned") as raised:
            await gateway.fetch_balances()
        assert raised.value.retry_after == 120
        assert any(e["event"] == "binance.ip_banned" and e["log_level"] == "critical" for e in logs)
        assert gateway.state == "rate_limited"
        banned_at = server.requests[-1].time_ms

        await gateway.fetch_balances()
        assert server.requests[-1].time_ms - banned_at >= 120_000
        assert [r.status for r in server.requests if r.status != 200] == [418]


# -- transient failures ---------------------------------------------------------------------------
async def test_5xx_answers_are_retried_with_backoff(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        server.fail_next("ticker/24hr", status=502, times=2)
        ticker = await gateway.fetch_ticker(SYMBOL)
        assert ticker.last == Decimal("30000")
        assert [r.status for r in server.requests_to("ticker/24hr")] == [502, 502, 200]
        assert 3 <= clock.monotonic() <= 5  # 1 s then 2 s, each with up to 1 s of jitter


async def test_a_dropped_connection_is_retried(venue) -> None:
    async with venue() as (server, gateway):
        server.drop_next("ticker/24hr")
        ticker = await gateway.fetch_ticker(SYMBOL)
        assert ticker.symbol == SYMBOL
        assert [r.status for r in server.requests_to("ticker/24hr")] == [None, 200]


async def test_the_circuit_opens_after_repeated_failures_and_closes_after_a_probe(
    venue, clock: SimulatedClock
) -> None:
    async with venue() as (server, gateway):
        server.fail_next("ticker/24hr", status=500, times=5)
        with pytest.raises(ExchangeUnavailable):
            await gateway.fetch_ticker(SYMBOL)
        assert len(server.requests_to("ticker/24hr")) == 5
        assert gateway.state == "circuit_open"

        sent = len(server.requests)
        with pytest.raises(ExchangeUnavailable, match="circuit open"):
            await gateway.fetch_ticker(SYMBOL)
        assert len(server.requests) == sent  # refused without calling the venue

        await clock.sleep(60)
        assert (await gateway.fetch_ticker(SYMBOL)).symbol == SYMBOL
        assert gateway.state == "normal"


async def test_maintenance_flips_the_state_and_back(venue) -> None:
    async with venue() as (server, gateway):
        server.maintenance = True
        with pytest.raises(ExchangeUnavailable, match="maintenance"):
            await gateway.fetch_ticker(SYMBOL)
        assert gateway.state == "maintenance"
        assert len(server.requests_to("ticker/24hr")) == 1  # not hammered with retries

        server.maintenance = False
        await gateway.fetch_ticker(SYMBOL)
        assert gateway.state == "normal"


# -- clock skew -----------------------------------------------------------------------------------
@pytest.mark.parametrize("offset_ms", [20_000, -3_000])
async def test_a_skewed_server_clock_triggers_a_resync_and_one_retry(venue, offset_ms: int) -> None:
    async with venue() as (server, gateway):
        server.time_offset_ms = offset_ms
        balances = await gateway.fetch_balances()
        assert "USDT" in balances
        assert [(r.path, r.status) for r in server.requests[-3:]] == [
            ("/api/v3/account", 400),
            ("/api/v3/time", 200),
            ("/api/v3/account", 200),
        ]


# -- placement when the answer is lost ------------------------------------------------------------
async def test_a_5xx_after_the_order_was_placed_does_not_place_it_twice(venue) -> None:
    async with venue() as (server, gateway):
        server.fail_next_after_processing("order", status=500, method="POST")
        order = await gateway.place_order(buy("lost-answer"))
        assert order.client_order_id == "lost-answer"
        assert order.status is OrderStatus.OPEN
        assert len(server.requests_to("order", "POST")) == 1
        lookup = server.requests_to("order", "GET")
        assert [r.params["origClientOrderId"] for r in lookup] == ["lost-answer"]
        assert [o.client_order_id for o in await gateway.fetch_open_orders(SYMBOL)] == ["lost-answer"]


async def test_a_placement_that_never_arrived_is_sent_again_once(venue) -> None:
    async with venue() as (server, gateway):
        server.drop_next("order", method="POST")
        order = await gateway.place_order(buy("dropped"))
        assert order.client_order_id == "dropped"
        assert [r.status for r in server.requests_to("order", "POST")] == [None, 200]
        assert [r.status for r in server.requests_to("order", "GET")] == [400]  # looked up first: -2013
        assert len(await gateway.fetch_open_orders(SYMBOL)) == 1


async def test_a_placement_whose_fate_stays_unknown_says_so(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        server.fail_next_after_processing("order", status=500, method="POST")
        server.fail_next("order", status=502, times=4, method="GET")  # every lookup fails too
        with pytest.raises(OrderStateUnknown, match="look it up by client order id"):
            await gateway.place_order(buy("in-limbo"))
        assert len(server.requests_to("order", "POST")) == 1  # never re-sent blindly
        assert len(server.requests_to("order", "GET")) == 4

        await clock.sleep(60)  # five transient failures opened the circuit; let it half-open
        found = await gateway.fetch_order(SYMBOL, client_order_id="in-limbo")
        assert found.status is OrderStatus.OPEN
