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
from application.status import grid_status

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
