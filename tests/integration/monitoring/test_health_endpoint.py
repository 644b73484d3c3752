"""/health and /metrics over real HTTP, against a grid bot running in this process on the in-memory
venue of the application tests (so the test can halt it, or make the venue fail, at will)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.monitoring.http_server import serve_health
from adapters.monitoring.probe import VenueProbe
from adapters.monitoring.telemetry import BotTelemetry
from application.grid_bot import GridBot, RunOutcome
from domain.models import RunStatus
from unit.application.fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store
from unit.application.test_grid_bot import make_config


@dataclass
class Running:
    store: Store
    venue: FakeVenue
    clock: FakeClock
    telemetry: BotTelemetry
    bot: GridBot
    task: asyncio.Task[RunOutcome]
    stop: asyncio.Event
    url: str
    http: aiohttp.ClientSession

    async def settle(self) -> None:
        for _ in range(200):
            await asyncio.sleep(0)

    async def move(self, price: str) -> None:
        self.venue.move_to(Decimal(price))
        await self.settle()

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.url}/health") as response:
            return response.status, await response.json()

    async def metrics(self) -> dict[str, float]:
        """Every sample of /metrics, parsed by the Prometheus client's own parser, by name and labels."""
        async with self.http.get(f"{self.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    store, clock = Store(), FakeClock()
    venue = FakeVenue(clock)
    telemetry = BotTelemetry(clock, feed_down_after_s=60)
    bot = GridBot(
        make_config(stop_loss=Decimal("27000")),
        gateway=venue,
        market_feed=venue,
        order_feed=venue,
        uow_factory=lambda: InMemoryUnitOfWork(store),
        clock=clock,
        observer=telemetry,
    )
    stop = asyncio.Event()
    async with serve_health(telemetry, "127.0.0.1", 0) as (host, port), aiohttp.ClientSession() as http:
        task = asyncio.create_task(bot.run(stop))
        harness = Running(store, venue, clock, telemetry, bot, task, stop, f"http://{host}:{port}", http)
        await harness.settle()
        try:
            yield harness
        finally:
            stop.set()
            venue.close()
            await asyncio.gather(task, return_exceptions=True)


async def test_health_is_200_while_trading_and_metrics_count_what_the_books_hold(running: Running) -> None:
    await running.move("29490")  # a buy fills on the way down; its counter-sell goes out
    await running.move("30000")  # and fills
    status, body = await running.health()
    assert status == 200
    assert body["status"] == "trading"
    assert "reason" not in body
    assert body["run_id"] == running.bot.run_id
    assert body["market_state"] == "normal"
    assert body["last_price"] == "30000"
    assert body["open_orders"] == 8  # 9 levels, one empty
    fills = running.store.fills
    assert body["fills"] == len(fills) == 3  # the start's market buy, a grid buy, its sell

    metrics = await running.metrics()
    assert metrics["gridbot_fills_booked"] == len(fills)
    buys = sum(1 for f in fills if f.fill.side.value == "buy")
    assert metrics["gridbot_fills_total{side=buy}"] == buys
    assert metrics["gridbot_fills_total{side=sell}"] == len(fills) - buys
    placed = [o for o in running.store.orders.values() if o.exchange_order_id is not None]
    assert metrics["gridbot_orders_placed_total{side=buy}"] + metrics[
        "gridbot_orders_placed_total{side=sell}"
    ] == len(placed)
    realized = sum((f.realized_pnl for f in fills), Decimal(0))
    assert Decimal(str(metrics["gridbot_realized_pnl"])) == realized.quantize(Decimal("1E-8"))
    assert metrics["gridbot_open_orders"] == 8
    assert metrics["gridbot_trading"] == 1
    assert metrics["gridbot_market_state{gridbot_market_state=normal}"] == 1
    assert metrics["gridbot_circuit_breaker_state{state=closed}"] == 1
    assert metrics["gridbot_order_latency_seconds_count{kind=fill_to_counter_order}"] >= 1


async def test_health_is_503_while_the_venue_does_not_answer_and_200_when_it_does_again(
    running: Running,
) -> None:
    running.venue.fail_next_place = 100  # every order is answered "unavailable"
    await running.move("29400")  # a buy fills: its counter-sell cannot go out
    status, body = await running.health()
    assert status == 503
    assert body["status"] == "maintenance"
    assert body["reason"].startswith("venue in maintenance or not answering")
    assert body["market_state"] == "maintenance"
    metrics = await running.metrics()
    assert metrics["gridbot_market_state{gridbot_market_state=maintenance}"] == 1
    assert metrics["gridbot_trading"] == 0

    running.venue.fail_next_place = 0
    await running.move("29500")
    status, body = await running.health()
    assert (status, body["status"]) == (200, "trading")


async def test_health_is_503_when_the_feed_goes_quiet(running: Running) -> None:
    running.clock.advance(61)  # no price for longer than feed_down_after_s
    status, body = await running.health()
    assert status == 503
    assert body["reason"] == "feed down: no price for 61 s"
    await running.move("30000")
    assert (await running.health())[0] == 200


async def test_health_is_503_with_the_risk_rule_once_a_stop_loss_halts_the_grid(running: Running) -> None:
    await running.move("26900")
    outcome = await running.task
    assert outcome.status is RunStatus.HALTED
    status, body = await running.health()
    assert status == 503
    assert body["status"] == "halted"
    assert body["reason"] == "risk halt: stop-loss: price 26900 at or under 27000"
    metrics = await running.metrics()
    assert metrics["gridbot_orders_cancelled_total"] >= 1
    assert metrics["gridbot_open_orders"] == 0


async def test_health_names_an_open_circuit_and_a_ban(running: Running) -> None:
    running.telemetry.attach_venue(VenueProbe(state=lambda: "circuit_open", breaker_state=lambda: "open"))
    status, body = await running.health()
    assert (status, body["status"]) == (503, "circuit_open")
    assert (await running.metrics())["gridbot_circuit_breaker_state{state=open}"] == 1
    running.telemetry.attach_venue(
        VenueProbe(state=lambda: "rate_limited", banned_for=lambda: 120.0, throttled=lambda: {429: 3, 418: 1})
    )
    status, body = await running.health()
    assert (status, body["status"]) == (503, "banned")
    assert body["reason"] == "banned by the venue (HTTP 418) for another 120 s"
    metrics = await running.metrics()
    assert metrics["gridbot_venue_throttled_total{status=418}"] == 1
    assert metrics["gridbot_venue_throttled_total{status=429}"] == 3
