"""The Binance adapter's trouble as /health, /metrics and the alerts see it (the probe the
composition root builds), through the real adapter against the loopback Binance server."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.clock import SimulatedClock
from adapters.monitoring.telemetry import BotTelemetry
from bootstrap.venues import binance_probe
from domain.errors import ExchangeUnavailable, RateLimited
from domain.ports import Alert, GridSnapshot
from domain.risk import MarketState

from .venue import SYMBOL

SNAPSHOT = GridSnapshot(
    run_id="r" * 32,
    symbol=SYMBOL,
    exchange="binance-testnet",
    started_at=datetime(2026, 3, 2, tzinfo=UTC),
    market_state=MarketState.NORMAL,
    last_price=Decimal("30000"),
    open_orders=8,
    fills=0,
    realized_pnl=Decimal(0),
    position=Decimal(0),
    position_cost=Decimal(0),
)


def samples(telemetry: BotTelemetry) -> dict[str, float]:
    text = generate_latest(telemetry.registry).decode()
    return {
        s.name + "".join(f"[{k}={v}]" for k, v in sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_ban_makes_health_503_counts_the_418_and_alerts(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, gateway):
        sent: list[Alert] = []
        telemetry = BotTelemetry(clock, alert=sent.append, probe=binance_probe(gateway))
        telemetry.run_started(SNAPSHOT, resumed=False)
        server.force_rate_limit(418, retry_after=120)
        with pytest.raises(RateLimited):
            await gateway.fetch_balances()
        health = telemetry.health()
        assert not health.ok
        assert health.body["status"] == "banned"
        assert health.body["reason"] == "banned by the venue (HTTP 418) for another 120 s"
        assert samples(telemetry)["gridbot_venue_throttled_total[status=418]"] == 1
        assert samples(telemetry)["gridbot_request_weight_used"] > 0
        telemetry.check()
        assert [(a.key, a.severity) for a in sent] == [("start", "info"), ("ban", "critical")]


async def test_an_open_circuit_makes_health_503_and_its_opening_and_closing_are_alerted(
    venue, clock: SimulatedClock
) -> None:
    async with venue() as (server, gateway):
        sent: list[Alert] = []
        telemetry = BotTelemetry(clock, alert=sent.append, probe=binance_probe(gateway))
        telemetry.run_started(SNAPSHOT, resumed=False)
        server.fail_next("ticker/24hr", status=500, times=5)
        with pytest.raises(ExchangeUnavailable):
            await gateway.fetch_ticker(SYMBOL)
        health = telemetry.health()
        assert (health.ok, health.body["status"]) == (False, "circuit_open")
        metrics = samples(telemetry)
        assert metrics["gridbot_circuit_breaker_state[state=open]"] == 1
        assert metrics["gridbot_errors_total[source=venue][type=ExchangeUnavailable]"] == 5
        telemetry.check()

        await clock.sleep(60)  # the circuit half-opens; a probe call succeeds and closes it
        assert (await gateway.fetch_ticker(SYMBOL)).symbol == SYMBOL
        telemetry.price_seen(await gateway.fetch_ticker(SYMBOL))
        telemetry.check()
        assert telemetry.health().ok
        assert [a.key for a in sent] == ["start", "circuit_open", "circuit_closed"]
