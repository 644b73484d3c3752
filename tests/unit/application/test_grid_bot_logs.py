"""The grid bot's log lines as its user reads them: every line of a run names the run, order lines
name their order and level, and a heartbeat says how the grid stands every few minutes (of clock
time: the fake clock is advanced, nothing waits)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
import structlog

from adapters.logging import configure_logging
from application.status import feeds_of, grid_status
from bootstrap.cli import render_status

from .fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store
from .test_grid_bot import make_config, start_bot


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    yield out
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def events(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


async def test_every_line_of_a_run_carries_its_id_and_order_lines_their_order_and_level(
    log_lines: io.StringIO,
) -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    harness = await start_bot(store, venue, clock)
    await harness.move("29500")  # a buy fills, its sell goes out
    outcome = await harness.finish()
    lines = events(log_lines)
    started = next(i for i, e in enumerate(lines) if e["event"] == "grid started")
    assert all(e.get("run_id") == outcome.run_id for e in lines[started:]), lines
    order_lines = [e for e in lines if "order" in e]
    assert {"order placed", "fill"} <= {e["event"] for e in order_lines}
    for line in order_lines:
        order = store.orders[str(line["order"])]
        assert line["grid_level"] == order.level
    fill = next(e for e in lines if e["event"] == "fill" and e["grid_level"] == 3)
    assert (fill["side"], fill["price"], fill["fee_asset"]) == ("buy", "29500", "BTC")


async def test_a_heartbeat_every_five_minutes_gives_price_position_pnl_and_open_orders(
    log_lines: io.StringIO,
) -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    harness = await start_bot(store, venue, clock)
    await harness.move("29500")  # a buy fills
    clock.advance(299)
    await harness.move("29600")
    assert not [e for e in events(log_lines) if e["event"] == "heartbeat"]  # not yet five minutes
    clock.advance(1)
    await harness.move("29700")
    [beat] = [e for e in events(log_lines) if e["event"] == "heartbeat"]
    report = await grid_status(lambda: InMemoryUnitOfWork(store))
    position = report.position
    assert Decimal(str(beat["price"])) == Decimal("29700")
    assert Decimal(str(beat["position"])) == position.base > 0
    assert Decimal(str(beat["realized_pnl"])) == report.realized_pnl
    assert Decimal(str(beat["unrealized_pnl"])) == position.base * Decimal("29700") - position.cost
    assert beat["open_orders"] == len(report.open_orders) == 8
    clock.advance(299)
    await harness.move("29800")
    assert len([e for e in events(log_lines) if e["event"] == "heartbeat"]) == 1
    await harness.finish()


async def test_the_heartbeat_can_be_turned_off(log_lines: io.StringIO) -> None:
    clock = FakeClock()
    harness = await start_bot(Store(), FakeVenue(clock), clock, replace(make_config(), heartbeat_s=0))
    for price in ("29900", "29800", "29700"):
        clock.advance(3600)
        await harness.move(price)
    await harness.finish()
    assert not [e for e in events(log_lines) if e["event"] == "heartbeat"]


async def test_the_feeds_are_noted_for_status_when_one_changes_and_at_each_heartbeat(
    log_lines: io.StringIO,
) -> None:
    clock = FakeClock()
    store = Store()
    market = {"mode": "streams", "last_message_at": "2026-03-02T09:30:00+00:00", "fell_back_at": None}
    orders = {"mode": "stream", "last_message_at": None, "fell_back_at": None, "last_error": None}
    harness = await start_bot(
        store,
        FakeVenue(clock),
        clock,
        feeds=lambda: {"market_data": dict(market), "order_updates": dict(orders)},
    )
    await harness.move("29900")

    report = await grid_status(lambda: InMemoryUnitOfWork(store))
    note = feeds_of(report.run.params if report.run else {})
    assert note is not None
    assert note.feeds["market_data"]["mode"] == "streams" and note.feeds["order_updates"]["mode"] == "stream"
    assert "Feeds      market data streams (last message 09:30:00); order updates stream" in render_status(
        report
    )

    orders.update(
        mode="rest_polling", fell_back_at="2026-03-02T09:31:05+00:00", last_error="connection refused"
    )
    await harness.move("29950")  # a change of mode is noted at once
    report = await grid_status(lambda: InMemoryUnitOfWork(store))
    assert "order updates rest_polling (fell back 09:31:05, connection refused)" in render_status(report)
    noted = report.run.params["feeds"] if report.run else ""

    market["last_message_at"] = "2026-03-02T09:32:00+00:00"
    await harness.move("29960")  # no change of mode, no heartbeat: nothing written
    report = await grid_status(lambda: InMemoryUnitOfWork(store))
    assert report.run is not None and report.run.params["feeds"] == noted

    clock.advance(300)
    await harness.move("29970")  # the heartbeat notes the feeds, and names their modes
    report = await grid_status(lambda: InMemoryUnitOfWork(store))
    assert "last message 09:32:00" in render_status(report)
    [beat] = [e for e in events(log_lines) if e["event"] == "heartbeat"]
    assert (beat["market_data"], beat["order_updates"]) == ("streams", "rest_polling")

    await harness.finish()
    stopped = await grid_status(lambda: InMemoryUnitOfWork(store))
    assert "Feeds" not in render_status(stopped)  # a stopped run has no live feeds to show
