"""The client-side rate limiter: budget per window, the venue's headers, 429/418 blocks."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapters.binance.errors import HttpReply
from adapters.binance.rate_limit import (
    LimiterHooks,
    LimitKind,
    RateLimiter,
    RateLimitRule,
    RequestCost,
    parse_rate_limits,
    request_cost,
)
from adapters.clock import SimulatedClock
from domain.errors import InvalidResponse

START = datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC)  # on a whole minute
T0 = START.timestamp()
WEIGHT_100 = (RateLimitRule(LimitKind.REQUEST_WEIGHT, "MINUTE", 1, 100),)


def limiter(rules=WEIGHT_100, fraction: str = "0.8") -> RateLimiter:
    return RateLimiter(SimulatedClock(START), budget_fraction=Decimal(fraction), rules=rules)


def test_exchange_info_rate_limits_are_read() -> None:
    rules = parse_rate_limits(
        {
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ]
        }
    )
    assert [(r.kind, r.window_s, r.limit) for r in rules] == [
        (LimitKind.REQUEST_WEIGHT, 60, 6000),
        (LimitKind.ORDERS, 10, 50),
        (LimitKind.ORDERS, 86400, 160000),
        (LimitKind.RAW_REQUESTS, 300, 61000),
    ]
    assert [r.header for r in rules] == [
        "x-mbx-used-weight-1m",
        "x-mbx-order-count-10s",
        "x-mbx-order-count-1d",
        None,
    ]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "rateLimits"),
        (
            {"rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1}]},
            "limit",
        ),
        (
            {
                "rateLimits": [
                    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": "x", "limit": 5}
                ]
            },
            "intervalNum",
        ),
        (
            {
                "rateLimits": [
                    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 5}
                ]
            },
            "REQUEST_WEIGHT",
        ),
    ],
)
def test_malformed_rate_limits_are_refused_not_guessed(payload: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidResponse, match=field):
        parse_rate_limits(payload)


@pytest.mark.parametrize(
    ("method", "path", "params", "expected"),
    [
        ("GET", "exchangeInfo", {}, RequestCost(20)),
        ("GET", "time", {}, RequestCost(1)),
        ("GET", "ticker/24hr", {"symbol": "BTCUSDT"}, RequestCost(2)),
        ("GET", "ticker/24hr", {}, RequestCost(80)),
        ("GET", "ticker/24hr", {"symbols": '["A","B"]'}, RequestCost(2)),
        ("GET", "account", {}, RequestCost(20)),
        ("POST", "order", {}, RequestCost(1, orders=1)),
        ("DELETE", "order", {}, RequestCost(1)),
        ("GET", "order", {}, RequestCost(4)),
        ("GET", "openOrders", {"symbol": "BTCUSDT"}, RequestCost(6)),
        ("GET", "openOrders", {}, RequestCost(80)),
        ("GET", "myTrades", {}, RequestCost(20)),
        ("GET", "myTrades", {"orderId": 3}, RequestCost(5)),
        ("GET", "depth", {"limit": 1000}, RequestCost(50)),
    ],
)
def test_request_weights_follow_the_docs(method, path, params, expected) -> None:
    assert request_cost(method, path, params) == expected


def test_requests_within_budget_go_at_once_and_are_counted() -> None:
    rl = limiter()
    for _ in range(4):
        assert rl.reserve(RequestCost(20), T0 + 1) == 0.0
    assert rl.used(LimitKind.REQUEST_WEIGHT, T0 + 1) == {"REQUEST_WEIGHT 100/1 MINUTE": 80}


def test_a_request_that_would_pass_80_percent_waits_for_the_next_minute() -> None:
    rl = limiter()
    for _ in range(4):
        rl.reserve(RequestCost(20), T0 + 15)
    wait = rl.reserve(RequestCost(1), T0 + 15)
    assert wait == pytest.approx(45.0)
    # Nothing was booked for the refused request; in the next minute it goes.
    assert rl.used(LimitKind.REQUEST_WEIGHT, T0 + 15) == {"REQUEST_WEIGHT 100/1 MINUTE": 80}
    assert rl.reserve(RequestCost(1), T0 + 60) == 0.0
    assert rl.used(LimitKind.REQUEST_WEIGHT, T0 + 60) == {"REQUEST_WEIGHT 100/1 MINUTE": 1}


def test_the_venues_count_corrects_ours_upwards_only() -> None:
    rl = limiter()
    rl.reserve(RequestCost(10), T0 + 1)
    rl.observe_headers({"X-MBX-USED-WEIGHT-1M": "75"}, T0 + 2)  # another process used weight
    assert rl.reserve(RequestCost(10), T0 + 3) > 0  # 75 + 10 > 80
    rl2 = limiter()
    rl2.reserve(RequestCost(30), T0 + 1)
    rl2.observe_headers({"x-mbx-used-weight-1m": "5"}, T0 + 2)  # answer to an earlier request
    assert rl2.used(LimitKind.REQUEST_WEIGHT, T0 + 2) == {"REQUEST_WEIGHT 100/1 MINUTE": 30}


def test_order_counts_are_limited_per_window_from_their_headers() -> None:
    rules = (
        RateLimitRule(LimitKind.REQUEST_WEIGHT, "MINUTE", 1, 6000),
        RateLimitRule(LimitKind.ORDERS, "SECOND", 10, 10),
    )
    rl = limiter(rules)
    for _ in range(8):
        assert rl.reserve(RequestCost(1, orders=1), T0 + 1) == 0.0
    assert rl.reserve(RequestCost(1, orders=1), T0 + 1) == pytest.approx(9.0)
    assert rl.reserve(RequestCost(4), T0 + 1) == 0.0  # a non-order request is not held back
    rl.observe_headers({"X-MBX-ORDER-COUNT-10S": "8"}, T0 + 10)
    assert rl.reserve(RequestCost(1, orders=1), T0 + 10) > 0


def test_new_limits_keep_what_was_used_this_minute() -> None:
    rl = limiter(rules=(RateLimitRule(LimitKind.REQUEST_WEIGHT, "MINUTE", 1, 6000),))
    rl.reserve(RequestCost(60), T0 + 1)
    rl.set_rules(WEIGHT_100)
    assert rl.reserve(RequestCost(30), T0 + 2) > 0  # 60 + 30 > 80


async def test_acquire_sleeps_on_the_clock_port_until_the_window_rolls() -> None:
    clock = SimulatedClock(START)
    rl = RateLimiter(clock, rules=WEIGHT_100)
    for _ in range(4):
        await rl.acquire(RequestCost(20))
    assert clock.monotonic() == 0
    await rl.acquire(RequestCost(20))
    assert clock.monotonic() == pytest.approx(60.0)


async def test_a_429_stops_every_request_until_retry_after() -> None:
    clock = SimulatedClock(START)
    rl = RateLimiter(clock, rules=WEIGHT_100)
    hooks = LimiterHooks(rl, clock)
    hooks.after_response(HttpReply(429, "Too Many Requests", {"Retry-After": "7"}, '{"code":-1003}'))
    assert rl.blocked_for(clock.now().timestamp()) == pytest.approx(7.0)
    await hooks.before_request("GET", "time", {})
    assert clock.monotonic() == pytest.approx(7.0)


async def test_a_418_ban_blocks_for_its_retry_after_and_is_logged_loudly() -> None:
    from structlog.testing import capture_logs

    clock = SimulatedClock(START)
    rl = RateLimiter(clock, rules=WEIGHT_100)
    hooks = LimiterHooks(rl, clock)
    with capture_logs() as logs:
        hooks.after_response(HttpReply(418, "I'm a teapot", {"retry-after": "120"}, "{}"))
    assert rl.blocked_for(clock.now().timestamp()) == pytest.approx(120.0)
    assert any(entry["log_level"] == "critical" and entry["event"] == "binance.ip_banned" for entry in logs)


def test_successful_answers_feed_the_limiter_through_the_hooks() -> None:
    clock = SimulatedClock(START)
    rl = RateLimiter(clock, rules=WEIGHT_100)
    LimiterHooks(rl, clock).after_response(HttpReply(200, "OK", {"X-MBX-USED-WEIGHT-1M": "42"}, "{}"))
    assert rl.used(LimitKind.REQUEST_WEIGHT, clock.now().timestamp()) == {"REQUEST_WEIGHT 100/1 MINUTE": 42}
    assert rl.blocked_for(clock.now().timestamp()) == 0
