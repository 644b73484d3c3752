"""Request weight, 429 then 418, and order counts, on a hand-driven server clock."""

from __future__ import annotations

from typing import Any

import ccxt.async_support as ccxt
import pytest

from support.binance_server import FakeBinance, ManualClock, running_fake_binance

from .helpers import make_exchange

LIMIT_ORDER = {
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "timeInForce": "GTC",
    "quantity": "0.001",
    "price": "29000",
}


async def test_weight_header_counts_each_endpoints_weight(
    clocked_raw: Any, clocked_server: FakeBinance
) -> None:
    seen = []
    for endpoint, query in [
        ("ping", ""),
        ("time", ""),
        ("depth", "symbol=BTCUSDT"),
        ("ticker/24hr", "symbol=BTCUSDT"),
    ]:
        reply = await clocked_raw.public(endpoint, query)
        seen.append(int(reply.headers["X-MBX-USED-WEIGHT-1M"]))

    assert seen == [1, 2, 7, 9]
    assert clocked_server.used_weight == 9


async def test_weight_resets_when_the_clock_passes_the_minute(
    clocked_raw: Any, clocked_server: FakeBinance, clock: ManualClock
) -> None:
    await clocked_raw.public("exchangeInfo")
    clock.advance(59_999)
    assert (await clocked_raw.public("ping")).headers["X-MBX-USED-WEIGHT-1M"] == "21"

    clock.advance(1)

    assert (await clocked_raw.public("ping")).headers["X-MBX-USED-WEIGHT-1M"] == "1"
    assert clocked_server.used_weight == 1


async def test_signed_requests_count_weight_too(clocked_raw: Any) -> None:
    reply = await clocked_raw.signed("GET", "account")

    assert reply.status == 200
    assert reply.headers["X-MBX-USED-WEIGHT-1M"] == "20"


async def test_over_the_limit_is_429_then_418_until_the_ban_ends(
    clocked_raw: Any, clock: ManualClock
) -> None:
    # weight limit 100: five exchangeInfo calls (20 each) fit, the sixth does not
    for _ in range(5):
        assert (await clocked_raw.public("exchangeInfo")).status == 200
    clock.advance(15_000)

    throttled = await clocked_raw.public("exchangeInfo")

    assert throttled.status == 429
    assert throttled.body["code"] == -1003
    assert "current limit is 100 request weight per 1 MINUTE" in throttled.body["msg"]
    assert throttled.headers["Retry-After"] == "45"  # until the minute window resets

    banned = await clocked_raw.public("ping")

    assert banned.status == 418
    assert banned.body["code"] == -1003
    assert "IP banned until" in banned.body["msg"]
    assert banned.headers["Retry-After"] == "120"

    clock.advance(119_000)
    assert (await clocked_raw.public("ping")).status == 418
    clock.advance(1_000)
    assert (await clocked_raw.public("ping")).status == 200


async def test_waiting_out_a_429_avoids_the_ban(clocked_raw: Any, clock: ManualClock) -> None:
    for _ in range(6):
        last = await clocked_raw.public("exchangeInfo")
    assert last.status == 429

    clock.advance(int(last.headers["Retry-After"]) * 1000)

    reply = await clocked_raw.public("ping")
    assert reply.status == 200
    assert reply.headers["X-MBX-USED-WEIGHT-1M"] == "1"


async def test_forced_rate_limit_lasts_until_server_time_passes_retry_after(
    clocked_raw: Any, clocked_server: FakeBinance, clock: ManualClock
) -> None:
    clocked_server.force_rate_limit(429, retry_after=5)

    first = await clocked_raw.public("ping")
    clock.advance(4_000)
    second = await clocked_raw.public("ping")
    clock.advance(1_000)
    third = await clocked_raw.public("ping")

    assert (first.status, first.headers["Retry-After"]) == (429, "5")
    assert (second.status, second.headers["Retry-After"]) == (429, "1")
    assert third.status == 200


async def test_accepted_orders_carry_order_count_headers(clocked_raw: Any) -> None:
    first = await clocked_raw.signed("POST", "order", LIMIT_ORDER, in_body=True)
    second = await clocked_raw.signed("POST", "order", {**LIMIT_ORDER, "price": "28000"}, in_body=True)
    rejected = await clocked_raw.signed("POST", "order", {**LIMIT_ORDER, "quantity": "1"}, in_body=True)

    assert (first.headers["X-MBX-ORDER-COUNT-10S"], first.headers["X-MBX-ORDER-COUNT-1D"]) == ("1", "1")
    assert (second.headers["X-MBX-ORDER-COUNT-10S"], second.headers["X-MBX-ORDER-COUNT-1D"]) == ("2", "2")
    assert rejected.status == 400
    assert "X-MBX-ORDER-COUNT-10S" not in rejected.headers


async def test_too_many_orders_in_ten_seconds_is_429_with_1015(clocked_raw: Any, clock: ManualClock) -> None:
    for index in range(50):
        reply = await clocked_raw.signed(
            "POST", "order", {**LIMIT_ORDER, "price": str(20000 + index)}, in_body=True
        )
        assert reply.status == 200

    refused = await clocked_raw.signed("POST", "order", {**LIMIT_ORDER, "price": "19000"}, in_body=True)

    assert refused.status == 429
    assert refused.body["code"] == -1015
    assert refused.body["msg"] == "Too many new orders; current limit is 50 orders per 10 SECOND."
    assert refused.headers["Retry-After"] == "10"
    clock.advance(10_000)
    accepted = await clocked_raw.signed("POST", "order", {**LIMIT_ORDER, "price": "19000"}, in_body=True)
    assert accepted.headers["X-MBX-ORDER-COUNT-10S"] == "1"
    assert accepted.headers["X-MBX-ORDER-COUNT-1D"] == "51"


async def test_weight_of_queries_without_a_symbol_follows_the_docs(clocked_raw: Any) -> None:
    used = []
    for endpoint in ("ticker/24hr", "ticker/bookTicker", "ticker/price"):
        reply = await clocked_raw.public(endpoint)
        assert reply.status == 200
        used.append(int(reply.headers["X-MBX-USED-WEIGHT-1M"]))

    assert used == [80, 84, 88]


async def test_ccxt_sees_the_weight_roll_over(clock: ManualClock) -> None:
    async with running_fake_binance(now_ms=clock) as server:
        client = make_exchange(server.api_url)
        try:
            await client.fetch_ticker("BTC/USDT")  # loads the markets first: 20 + 2
            before = client.last_response_headers["X-MBX-USED-WEIGHT-1M"]
            clock.advance_to_next_minute()
            await client.fetch_ticker("BTC/USDT")
            after = client.last_response_headers["X-MBX-USED-WEIGHT-1M"]
        finally:
            await client.close()

    assert (before, after) == ("22", "2")


async def test_a_wall_following_clock_keeps_ccxt_signing_until_it_is_skewed() -> None:
    clock = ManualClock(follow_wall_clock=True)
    async with running_fake_binance(now_ms=clock) as server:
        client = make_exchange(server.api_url)
        try:
            balance = await client.fetch_balance()
            clock.advance(15_000)
            with pytest.raises(ccxt.InvalidNonce):
                await client.fetch_balance()
        finally:
            await client.close()

    assert balance["free"]["BTC"] == pytest.approx(1)
