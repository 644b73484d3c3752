"""Placing and cancelling an order by hand, against the in-memory venue and books."""

from __future__ import annotations

from decimal import Decimal

import pytest
from returns.result import Failure, Result, Success

from application.status import grid_status, manual_trades
from application.trade import (
    NotAManualOrder,
    TradeIntent,
    TradeResult,
    cancel_manual_order,
    place_trade,
    plan_trade,
)
from domain.errors import Rejection
from domain.models import OrderStatus, OrderType, Side

from .fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store
from .test_grid_bot import start_bot

D = Decimal


def intent(side: Side, amount: str, price: str | None = None) -> TradeIntent:
    kind = OrderType.MARKET if price is None else OrderType.LIMIT
    return TradeIntent("BTC/USDT", side, kind, D(amount), None if price is None else D(price))


async def trade(
    store: Store, venue: FakeVenue, clock: FakeClock, what: TradeIntent
) -> Result[TradeResult, Rejection]:
    return await place_trade(
        what, gateway=venue, uow_factory=lambda: InMemoryUnitOfWork(store), clock=clock, exchange="fake"
    )


async def test_a_market_trade_books_its_fills_and_shows_in_the_manual_view_not_as_the_grid() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    grid = await (await start_bot(store, venue, clock)).finish()
    result = await trade(store, venue, clock, intent(Side.BUY, "0.01"))
    assert isinstance(result, Success)
    placed = result.unwrap()
    booked = [b.fill for b in store.fills if b.run_id == placed.run_id]
    assert booked == list(placed.fills) and sum(f.amount for f in booked) == D("0.01")
    status = await grid_status(lambda: InMemoryUnitOfWork(store))
    assert status.run is not None and status.run.run_id == grid.run_id  # the grid stays in view
    [manual] = await manual_trades(lambda: InMemoryUnitOfWork(store), limit=10)
    assert (manual.order.status, manual.order.filled, len(manual.fills)) == (OrderStatus.FILLED, D("0.01"), 1)
    assert manual.average_price == D("30000")


async def test_a_trade_the_balance_cannot_pay_is_refused_before_sending_naming_what_is_free() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock, quote=D("100"))
    result = await trade(store, venue, clock, intent(Side.BUY, "0.01", "20000"))  # 200 USDT
    assert isinstance(result, Failure)
    assert (result.failure().rule, result.failure().reason) == (
        "BALANCE",
        "the order needs 200 USDT, the account has 100 USDT free",
    )
    sell = await trade(store, venue, clock, intent(Side.SELL, "0.01", "40000"))  # no BTC held
    assert (
        isinstance(sell, Failure)
        and sell.failure().reason == "the order needs 0.01 BTC, the account has 0 BTC free"
    )
    assert venue.placed == [] and store.orders == {}


async def test_a_dry_run_plans_the_order_as_it_would_be_sent_and_sends_nothing() -> None:
    venue = FakeVenue(FakeClock())
    planned = await plan_trade(intent(Side.BUY, "0.0123456", "29999.999"), gateway=venue)
    assert isinstance(planned, Success)
    plan = planned.unwrap()
    assert (plan.request.amount, plan.request.price) == (D("0.01234"), D("29999.99"))  # step, safe tick
    assert (plan.needs, plan.needs_asset, plan.available) == (
        D("0.01234") * D("29999.99"),
        "USDT",
        D("10000"),
    )
    assert venue.placed == []


async def test_cancel_takes_the_exchange_id_books_the_cancel_and_refuses_a_grid_order() -> None:
    clock = FakeClock()
    store, venue = Store(), FakeVenue(clock)
    placed = (await trade(store, venue, clock, intent(Side.BUY, "0.01", "20000"))).unwrap()
    uow = lambda: InMemoryUnitOfWork(store)  # noqa: E731
    result = await cancel_manual_order(
        placed.order.order_id, symbol="BTC/USDT", gateway=venue, uow_factory=uow, clock=clock
    )
    assert result.order.status is OrderStatus.CANCELED
    assert store.orders[placed.order.client_order_id].status is OrderStatus.CANCELED
    with pytest.raises(NotAManualOrder, match="already canceled"):
        await cancel_manual_order(
            placed.order.client_order_id, symbol="BTC/USDT", gateway=venue, uow_factory=uow, clock=clock
        )
    await (await start_bot(store, venue, clock)).finish()
    grid_order = next(o for o in store.orders.values() if o.level >= 0 and o.status.is_active)
    with pytest.raises(NotAManualOrder, match="stop --cancel-orders"):
        await cancel_manual_order(
            grid_order.client_order_id, symbol="BTC/USDT", gateway=venue, uow_factory=uow, clock=clock
        )
    assert store.orders[grid_order.client_order_id].status.is_active
