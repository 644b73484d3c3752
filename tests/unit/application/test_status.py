"""`status` reports the run's position: base held, its cost, the last price, unrealized profit and
equity change, hand-computed from a few booked fills. Output is checked as a user reads it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from application.status import AmbiguousRunId, StatusReport, grid_status
from bootstrap.cli import render_status, status_to_dict
from domain.models import (
    BookedFill,
    BotRun,
    Fill,
    OrderStatus,
    OrderType,
    RunStatus,
    Side,
    TrackedOrder,
)

from .fakes import InMemoryUnitOfWork, Store

RUN_ID = "run-status-1"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def book(
    store: Store,
    seq: int,
    side: Side,
    level: int,
    price: str,
    amount: str,
    fee: str,
    fee_asset: str,
    *,
    cost_basis: str = "0",
    realized: str = "0",
) -> None:
    """A filled order of the run and its one booked fill, `seq` minutes after the start."""
    at = T0 + timedelta(minutes=seq)
    coid = f"gb-{RUN_ID}-{'M' if level < 0 else f'L{level:03d}'}-{seq:05d}"
    store.orders[coid] = TrackedOrder(
        run_id=RUN_ID,
        client_order_id=coid,
        symbol="BTC/USDT",
        side=side,
        type=OrderType.MARKET if level < 0 else OrderType.LIMIT,
        amount=Decimal(amount),
        price=None if level < 0 else Decimal(price),
        level=level,
        status=OrderStatus.FILLED,
        created_at=at,
        updated_at=at,
        exchange_order_id=str(seq),
        filled=Decimal(amount),
        cost_basis=Decimal(cost_basis),
    )
    fill = Fill(
        trade_id=str(seq),
        order_id=str(seq),
        client_order_id=coid,
        symbol="BTC/USDT",
        side=side,
        price=Decimal(price),
        amount=Decimal(amount),
        fee=Decimal(fee),
        fee_asset=fee_asset,
        timestamp=at,
    )
    store.fills.append(BookedFill(RUN_ID, fill, Decimal(realized)))


def store_with_run(**params: str) -> Store:
    run = BotRun(
        run_id=RUN_ID,
        symbol="BTC/USDT",
        exchange="simulated",
        status=RunStatus.STOPPED,
        started_at=T0,
        grid_fingerprint="fp",
        stopped_at=T0 + timedelta(hours=1),
        stop_reason="stop requested",
        params={"levels": "29000,29500,30000,30500,31000", **params},
    )
    return Store(runs={RUN_ID: run})


def grid_fills(store: Store) -> Store:
    """Three fills, by hand:

    1. initial purchase (level -1, market): 0.01001 BTC @ 30000, fee 0.00001 BTC
       -> base 0.01, cost 300.3 (30030 a BTC)
    2. grid buy: 0.002002 BTC @ 29500, fee 0.000002 BTC
       -> base +0.002 = 0.012, cost +59.059 = 359.359
    3. grid sell: 0.004 BTC @ 30500, fee 0.122 USDT, carrying 0.004 of the initial purchase
       (cost basis 0.004 x 30030 = 120.12): realized 122 - 0.122 - 120.12 = 1.758
       -> base 0.008, cost 359.359 - 120.12 = 239.239, average 239.239 / 0.008 = 29904.875
    """
    book(store, 1, Side.BUY, -1, "30000", "0.01001", "0.00001", "BTC")
    book(store, 2, Side.BUY, 1, "29500", "0.002002", "0.000002", "BTC")
    book(store, 3, Side.SELL, 3, "30500", "0.004", "0.122", "USDT", cost_basis="120.12", realized="1.758")
    return store


async def status_of(store: Store) -> StatusReport:
    return await grid_status(lambda: InMemoryUnitOfWork(store), symbol="BTC/USDT")


def text_lines(report: StatusReport) -> list[str]:
    return render_status(report).splitlines()


def as_json(report: StatusReport) -> dict[str, object]:
    result: dict[str, object] = json.loads(json.dumps(status_to_dict(report)))
    return result


async def test_position_is_valued_at_the_last_market_price_the_bot_recorded() -> None:
    report = await status_of(grid_fills(store_with_run(last_price="30100")))

    # unrealized: 0.008 x 30100 - 239.239 = 240.8 - 239.239 = 1.561; equity: 1.758 + 1.561
    shown = as_json(report)
    assert shown["realized_pnl"] == "1.758"
    assert shown["base_position"] == "0.008"
    assert shown["position_cost"] == "239.239"
    assert shown["average_cost"] == "29904.875"
    assert shown["last_price"] == "30100"
    assert shown["last_price_source"] == "market"
    assert shown["unrealized_pnl"] == "1.561"
    assert shown["equity_change"] == "3.319"

    lines = text_lines(report)
    assert "Realized   1.758 USDT" in lines
    assert "Position   0.008 BTC  (average cost 29904.875 USDT, cost 239.239 USDT)" in lines
    assert "Last price 30100 USDT  (last market price)" in lines
    assert "Unrealized 1.561 USDT" in lines
    assert "Equity     3.319 USDT  (realized + unrealized)" in lines
    assert "Fills      3  (completed cycles: 1)" in lines
    assert "Fees       0.000012 BTC, 0.122 USDT" in lines


async def test_without_a_recorded_market_price_the_latest_fill_prices_the_position() -> None:
    report = await status_of(grid_fills(store_with_run()))

    # the latest fill is the sell at 30500: 0.008 x 30500 - 239.239 = 244 - 239.239 = 4.761
    shown = as_json(report)
    assert shown["last_price"] == "30500"
    assert shown["last_price_source"] == "fill"
    assert shown["unrealized_pnl"] == "4.761"
    assert shown["equity_change"] == "6.519"
    assert "Last price 30500 USDT  (price of the latest fill)" in text_lines(report)


async def test_an_unreadable_recorded_price_falls_back_to_the_latest_fill() -> None:
    report = await status_of(grid_fills(store_with_run(last_price="n/a")))

    assert as_json(report)["last_price"] == "30500"


async def test_a_stop_sale_of_everything_leaves_no_position_and_equity_equal_to_realized() -> None:
    store = store_with_run(last_price="28900")
    # initial purchase with the fee in quote: 0.01 @ 30000 + 0.3 USDT -> base 0.01, cost 300.3
    book(store, 1, Side.BUY, -1, "30000", "0.01", "0.3", "USDT")
    # risk-stop sale of it all: 290 - 0.29 - 300.3 = -10.59 realized
    book(store, 2, Side.SELL, -1, "29000", "0.01", "0.29", "USDT", cost_basis="300.3", realized="-10.59")
    report = await status_of(store)

    shown = as_json(report)
    assert shown["base_position"] == "0"
    assert shown["position_cost"] == "0"
    assert shown["average_cost"] is None
    assert shown["last_price"] == "28900"
    assert shown["unrealized_pnl"] == "0"
    assert shown["equity_change"] == "-10.59"
    lines = text_lines(report)
    assert "Position   0 BTC" in lines
    assert "Unrealized 0 USDT" in lines
    assert "Equity     -10.59 USDT  (realized + unrealized)" in lines


async def test_a_run_with_no_fill_and_no_price_shows_the_price_as_unknown() -> None:
    report = await status_of(store_with_run())

    shown = as_json(report)
    assert shown["base_position"] == "0"
    assert shown["average_cost"] is None
    assert shown["last_price"] is None
    assert shown["last_price_source"] is None
    assert shown["unrealized_pnl"] is None
    assert shown["equity_change"] is None
    lines = text_lines(report)
    assert "Position   0 BTC" in lines
    assert "Last price unknown (no market price recorded, no fill yet)" in lines
    assert "Unrealized unknown" in lines
    assert "Equity     unknown" in lines


async def test_with_no_run_the_position_keys_are_present_and_empty() -> None:
    report = await status_of(Store())

    shown = as_json(report)
    assert shown["run"] is None
    assert shown["base_position"] == "0"
    assert shown["last_price"] is None
    assert shown["unrealized_pnl"] is None


async def test_a_run_is_found_by_the_short_id_of_the_logs_and_an_ambiguous_one_is_refused() -> None:
    store = store_with_run()
    short = RUN_ID[:8]
    found = await grid_status(lambda: InMemoryUnitOfWork(store), run_id=short)
    assert found.run is not None and found.run.run_id == RUN_ID
    twin = replace(store.runs[RUN_ID], run_id=short + "-twin")
    store.runs[twin.run_id] = twin
    with pytest.raises(AmbiguousRunId) as refused:
        await grid_status(lambda: InMemoryUnitOfWork(store), run_id=short)
    assert RUN_ID in str(refused.value) and twin.run_id in str(refused.value)
    exact = await grid_status(lambda: InMemoryUnitOfWork(store), run_id=RUN_ID)
    assert exact.run is not None and exact.run.run_id == RUN_ID
    nothing = await grid_status(lambda: InMemoryUnitOfWork(store), run_id="nosuchrun")
    assert nothing.run is None


async def test_status_json_lists_open_orders_by_price_and_gives_the_runs_grid() -> None:
    store = store_with_run(quantity="0.002", spacing="geometric", investment="500", start_price="30000")
    for level, price, side in ((4, "31000", Side.SELL), (0, "29000", Side.BUY), (3, "30500", Side.SELL)):
        cid = f"gb-{RUN_ID}-L{level:03d}-00009"
        store.orders[cid] = TrackedOrder(
            run_id=RUN_ID,
            client_order_id=cid,
            symbol="BTC/USDT",
            side=side,
            type=OrderType.LIMIT,
            amount=Decimal("0.002"),
            price=Decimal(price),
            level=level,
            status=OrderStatus.OPEN,
            created_at=T0,
            updated_at=T0,
        )
    shown = as_json(await status_of(store))
    assert [o["price"] for o in shown["open_orders"]] == ["29000", "30500", "31000"]
    assert shown["run"]["grid"] == {
        "levels": ["29000", "29500", "30000", "30500", "31000"],
        "quantity": "0.002",
        "start_price": "30000",
        "investment": "500",
        "spacing": "geometric",
    }
