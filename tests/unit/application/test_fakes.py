"""The fakes behave like the adapters they stand for: an order's own trades, trades the venue
does not show yet, and retracting a booked fill."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain.models import INFERRED_TRADE_PREFIX, BookedFill, Fill, OrderRequest, OrderType, Side

from .fakes import FakeClock, FakeVenue, InMemoryUnitOfWork, Store

SYMBOL = "BTC/USDT"


def buy(client_order_id: str, price: str) -> OrderRequest:
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal("0.001"), client_order_id, Decimal(price))


async def test_an_order_s_trades_are_found_by_its_venue_id() -> None:
    venue = FakeVenue(FakeClock())
    first = await venue.place_order(buy("a", "29900"))
    second = await venue.place_order(buy("b", "29800"))
    resting = await venue.place_order(buy("c", "29000"))
    venue.move_to(Decimal("29700"))

    assert [t.client_order_id for t in await venue.fetch_order_trades(SYMBOL, first.order_id)] == ["a"]
    assert [t.client_order_id for t in await venue.fetch_order_trades(SYMBOL, second.order_id)] == ["b"]
    assert await venue.fetch_order_trades(SYMBOL, resting.order_id) == []
    assert await venue.fetch_order_trades(SYMBOL, "404") == []


async def test_hidden_trades_are_filled_but_not_queryable_until_shown() -> None:
    venue = FakeVenue(FakeClock())
    hidden = await venue.place_order(buy("a", "29900"))
    shown = await venue.place_order(buy("b", "29800"))
    venue.hide_trades_of.add(hidden.order_id)
    fills = venue.move_to(Decimal("29700"))

    assert [f.order_id for f in fills] == [hidden.order_id, shown.order_id]  # the feed has both
    assert (await venue.fetch_order(SYMBOL, order_id=hidden.order_id)).filled == Decimal("0.001")
    assert await venue.fetch_order_trades(SYMBOL, hidden.order_id) == []
    assert [t.order_id for t in await venue.fetch_my_trades(SYMBOL)] == [shown.order_id]

    venue.hide_trades_of.clear()
    assert [t.order_id for t in await venue.fetch_order_trades(SYMBOL, hidden.order_id)] == [hidden.order_id]
    assert [t.order_id for t in await venue.fetch_my_trades(SYMBOL)] == [hidden.order_id, shown.order_id]


def _booked(trade_id: str, run_id: str = "run-1") -> BookedFill:
    fill = Fill(
        trade_id,
        "7",
        "a",
        SYMBOL,
        Side.SELL,
        Decimal("30000"),
        Decimal("0.001"),
        Decimal("0.03"),
        "USDT",
        datetime(2026, 1, 1, tzinfo=UTC),
        True,
    )
    return BookedFill(run_id, fill, Decimal("1"))


async def test_a_removed_fill_leaves_the_books_on_commit_only() -> None:
    store = Store()
    inferred = f"{INFERRED_TRADE_PREFIX}7"
    async with InMemoryUnitOfWork(store) as uow:
        await uow.fills.add(_booked(inferred))
        await uow.fills.add(_booked(inferred, "run-2"))
        await uow.commit()

    async with InMemoryUnitOfWork(store) as uow:
        await uow.fills.remove("run-1", inferred)
        assert not await uow.fills.exists("run-1", inferred)
    assert await _trade_ids(store, "run-1") == [inferred]  # not committed

    async with InMemoryUnitOfWork(store) as uow:
        await uow.fills.remove("run-1", inferred)
        await uow.fills.add(_booked("12"))
        await uow.commit()
    assert await _trade_ids(store, "run-1") == ["12"]
    assert await _trade_ids(store, "run-2") == [inferred]


async def test_removing_a_fill_that_is_not_booked_is_refused() -> None:
    async with InMemoryUnitOfWork(Store()) as uow:
        await uow.fills.add(_booked("5", "run-2"))
        with pytest.raises(ValueError, match="fill 5 is not booked for run run-1"):
            await uow.fills.remove("run-1", "5")


async def _trade_ids(store: Store, run_id: str) -> list[str]:
    async with InMemoryUnitOfWork(store) as uow:
        return [b.fill.trade_id for b in await uow.fills.list_for_run(run_id)]
