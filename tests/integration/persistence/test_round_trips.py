"""Every entity comes back exactly as it was booked: Decimals digit for digit, datetimes in UTC."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.persistence import Database
from domain.models import OrderStatus, OrderType, RunStatus, Side

from .builders import T0, a_fill, a_run, an_order

_ids = itertools.count()


async def test_a_run_round_trips_with_every_field(db: Database) -> None:
    run = a_run(
        status=RunStatus.HALTED,
        stopped_at=T0 + timedelta(hours=5),
        stop_reason="max drawdown 12.5% reached",
        params={"levels": "20", "spacing": "geometric", "note": "ünïcode ✓"},
    )
    async with db.uow() as uow:
        await uow.runs.add(run)
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.runs.get("run-1") == run
        assert await uow.runs.get("no-such-run") is None


async def test_an_order_round_trips_with_every_field(db: Database) -> None:
    limit_sell = an_order(
        "gb-2",
        side=Side.SELL,
        amount=Decimal("0.00150000"),
        price=Decimal("70000.10"),
        level=7,
        status=OrderStatus.PARTIALLY_FILLED,
        exchange_order_id="28457",
        filled=Decimal("0.00050000"),
        cost_basis=Decimal("96.375015"),
        parent_client_order_id="gb-1",
        updated_at=T0 + timedelta(seconds=3),
    )
    market_buy = an_order("gb-3", type=OrderType.MARKET, price=None, level=-1, status=OrderStatus.PENDING)
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(limit_sell)
        await uow.orders.add(market_buy)
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.orders.get("gb-2") == limit_sell
        assert await uow.orders.get("gb-3") == market_buy
        assert await uow.orders.get("gb-404") is None


async def test_an_updated_order_comes_back_with_its_new_state(db: Database) -> None:
    order = an_order()
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(order)
        await uow.commit()

    filled = an_order(
        status=OrderStatus.FILLED,
        exchange_order_id="991",
        filled=order.amount,
        updated_at=T0 + timedelta(minutes=2),
    )
    async with db.uow() as uow:
        await uow.orders.update(filled)
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.orders.get(order.client_order_id) == filled


async def test_a_fill_round_trips_with_every_field(db: Database) -> None:
    booked = a_fill(
        "7731",
        side=Side.SELL,
        price=Decimal("70000.10"),
        amount=Decimal("0.00150000"),
        fee=Decimal("0.10500015"),
        fee_asset="USDT",
        is_maker=False,
        realized_pnl=Decimal("8.52471485"),
        timestamp=T0 + timedelta(milliseconds=1),
    )
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.fills.add(booked)
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.fills.list_for_run("run-1") == [booked]


async def test_an_updated_run_comes_back_stopped(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()

    stopped = a_run(status=RunStatus.STOPPED, stopped_at=T0 + timedelta(days=1), stop_reason="SIGINT")
    async with db.uow() as uow:
        await uow.runs.update(stopped)
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.runs.get("run-1") == stopped


async def test_datetimes_in_any_offset_come_back_as_the_same_instant_in_utc(db: Database) -> None:
    tokyo = timezone(timedelta(hours=9))
    started = datetime(2024, 5, 2, 9, 30, 0, 654321, tzinfo=tokyo)
    async with db.uow() as uow:
        await uow.runs.add(a_run(started_at=started))
        await uow.commit()

    async with db.uow() as uow:
        run = await uow.runs.get("run-1")

    assert run is not None
    assert run.started_at == started
    assert run.started_at.tzinfo is UTC
    assert run.started_at == datetime(2024, 5, 2, 0, 30, 0, 654321, tzinfo=UTC)


async def test_a_naive_datetime_is_refused_with_a_clear_error(db: Database) -> None:
    async with db.uow() as uow:
        with pytest.raises(ValueError, match=r"naive datetime .* timezone-aware"):
            await uow.runs.add(a_run(started_at=datetime(2024, 5, 1, 12, 0)))


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), Decimal("-Infinity")])
async def test_non_finite_money_is_refused(db: Database, bad: Decimal) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        with pytest.raises(ValueError, match="finite Decimal"):
            await uow.orders.add(an_order(price=bad))
        # The refusal left the unit of work usable.
        await uow.orders.add(an_order("gb-ok"))
        await uow.commit()

    async with db.uow() as uow:
        assert [o.client_order_id for o in await uow.orders.list_for_run("run-1")] == ["gb-ok"]


async def test_a_float_is_refused_where_money_is_expected(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        with pytest.raises(ValueError, match="take a Decimal, got float"):
            await uow.orders.add(an_order(amount=0.1))


async def test_params_must_map_strings_to_strings(db: Database) -> None:
    async with db.uow() as uow:
        with pytest.raises(ValueError, match="must map str to str"):
            await uow.runs.add(a_run(params={"levels": 10}))


def _decimals_with_up_to_18_places() -> st.SearchStrategy[Decimal]:
    scaled = st.builds(
        lambda units, places: Decimal(units).scaleb(-places),
        st.integers(min_value=-(10**27), max_value=10**27),
        st.integers(min_value=0, max_value=18),
    )
    quantized = st.decimals(
        min_value=Decimal("-1e12"),
        max_value=Decimal("1e12"),
        places=18,
        allow_nan=False,
        allow_infinity=False,
    )
    return scaled | quantized


@pytest.fixture
async def run_db(db: Database) -> Database:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    return db


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_decimals_with_up_to_18_places())
@example(value=Decimal("0.000000000000000001"))
@example(value=Decimal("123456789.123456789"))
@example(value=Decimal("1E-18"))
@example(value=Decimal("-0.000000000000000000"))
@example(value=Decimal("99999999999999999999.999999999999999999"))
async def test_money_round_trips_digit_for_digit(run_db: Database, value: Decimal) -> None:
    n = next(_ids)
    order = an_order(f"gb-h{n}", amount=value, price=value, filled=value, cost_basis=value)
    booked = a_fill(
        f"h{n}",
        client_order_id=order.client_order_id,
        price=value,
        amount=value,
        fee=value,
        realized_pnl=value,
    )
    async with run_db.uow() as uow:
        await uow.orders.add(order)
        await uow.fills.add(booked)
        await uow.commit()

    async with run_db.uow() as uow:
        stored_order = await uow.orders.get(order.client_order_id)
        stored_fill = next(f for f in await uow.fills.list_for_run("run-1") if f.fill.trade_id == f"h{n}")

    assert stored_order == order
    assert stored_fill == booked
    # Equal is not enough: the very digits (and exponent) survive, e.g. 1.50 stays 1.50.
    assert stored_order is not None
    assert str(stored_order.price) == str(value)
    assert str(stored_fill.realized_pnl) == str(value)
