"""What the bot asks of its books: active orders, counter-orders, level counts, the latest run,
where to resume trade catch-up, and the realized profit."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, localcontext

from adapters.persistence import Database
from domain.models import OrderStatus, Side

from .builders import T0, a_fill, a_run, an_order, at


async def _given_runs(db: Database, *run_ids: str) -> None:
    async with db.uow() as uow:
        for run_id in run_ids:
            await uow.runs.add(a_run(run_id))
        await uow.commit()


async def test_list_active_gives_pending_open_and_partial_orders_oldest_first(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    async with db.uow() as uow:
        # Booked out of time order on purpose.
        await uow.orders.add(an_order("c-open", status=OrderStatus.OPEN, created_at=at(30)))
        await uow.orders.add(an_order("c-pending", status=OrderStatus.PENDING, created_at=at(10)))
        await uow.orders.add(an_order("c-partial", status=OrderStatus.PARTIALLY_FILLED, created_at=at(20)))
        for final in (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED):
            await uow.orders.add(an_order(f"c-{final.value}", status=final, created_at=at(0)))
        await uow.orders.add(an_order("other-run", "run-2", created_at=at(0)))
        await uow.commit()

    async with db.uow() as uow:
        active = await uow.orders.list_active("run-1")
        everything = await uow.orders.list_for_run("run-1")

    assert [o.client_order_id for o in active] == ["c-pending", "c-partial", "c-open"]
    assert len(everything) == 7
    assert [o.created_at for o in everything] == sorted(o.created_at for o in everything)


async def test_an_order_leaves_the_active_list_once_filled(db: Database) -> None:
    await _given_runs(db, "run-1")
    async with db.uow() as uow:
        await uow.orders.add(an_order("gb-1"))
        await uow.commit()
    async with db.uow() as uow:
        await uow.orders.update(an_order("gb-1", status=OrderStatus.FILLED, filled=an_order().amount))
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.list_active("run-1") == []


async def test_child_of_finds_the_counter_order_of_a_filled_order(db: Database) -> None:
    await _given_runs(db, "run-1")
    async with db.uow() as uow:
        await uow.orders.add(an_order("buy-3", level=3, status=OrderStatus.FILLED))
        await uow.orders.add(an_order("buy-2", level=2))
        await uow.orders.add(
            an_order("sell-4", side=Side.SELL, level=4, parent_client_order_id="buy-3", created_at=at(5))
        )
        await uow.commit()

    async with db.uow() as uow:
        child = await uow.orders.child_of("buy-3")
        assert child is not None
        assert child.client_order_id == "sell-4"
        assert await uow.orders.child_of("buy-2") is None
        assert await uow.orders.child_of("never-placed") is None


async def test_child_of_prefers_the_latest_counter_order_when_one_was_replaced(db: Database) -> None:
    await _given_runs(db, "run-1")
    async with db.uow() as uow:
        await uow.orders.add(an_order("buy-3", status=OrderStatus.FILLED))
        await uow.orders.add(
            an_order("sell-4a", parent_client_order_id="buy-3", status=OrderStatus.REJECTED, created_at=at(1))
        )
        await uow.orders.add(an_order("sell-4b", parent_client_order_id="buy-3", created_at=at(2)))
        await uow.commit()

    async with db.uow() as uow:
        child = await uow.orders.child_of("buy-3")
    assert child is not None
    assert child.client_order_id == "sell-4b"


async def test_count_for_level_counts_every_order_the_run_placed_there(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    async with db.uow() as uow:
        await uow.orders.add(an_order("a", level=3, status=OrderStatus.FILLED))
        await uow.orders.add(an_order("b", level=3, status=OrderStatus.CANCELED))
        await uow.orders.add(an_order("c", level=3))
        await uow.orders.add(an_order("d", level=4))
        await uow.orders.add(an_order("e", "run-2", level=3))
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.orders.count_for_level("run-1", 3) == 3
        assert await uow.orders.count_for_level("run-1", 4) == 1
        assert await uow.orders.count_for_level("run-1", 5) == 0
        assert await uow.orders.count_for_level("run-2", 3) == 1


async def test_latest_is_the_most_recently_started_run_optionally_per_symbol(db: Database) -> None:
    async with db.uow() as uow:
        assert await uow.runs.latest() is None
        await uow.runs.add(a_run("btc-old", symbol="BTC/USDT", started_at=T0))
        await uow.runs.add(a_run("eth", symbol="ETH/USDT", started_at=T0 + timedelta(hours=2)))
        await uow.runs.add(a_run("btc-new", symbol="BTC/USDT", started_at=T0 + timedelta(hours=1)))
        await uow.commit()

    async with db.uow() as uow:
        latest = await uow.runs.latest()
        latest_btc = await uow.runs.latest("BTC/USDT")
        latest_sol = await uow.runs.latest("SOL/USDT")

    assert latest is not None
    assert latest.run_id == "eth"
    assert latest_btc is not None
    assert latest_btc.run_id == "btc-new"
    assert latest_sol is None


async def test_last_trade_id_is_the_numerically_highest_booked_for_the_run(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    async with db.uow() as uow:
        assert await uow.fills.last_trade_id("run-1") is None
        # Booked out of order (a REST catch-up after the stream), and "10" > "9" as numbers.
        for trade_id, seconds in (("10", 3), ("9", 1), ("100", 2), ("11", 4)):
            await uow.fills.add(a_fill(trade_id, timestamp=at(seconds)))
        await uow.fills.add(a_fill("5000", "run-2"))
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.fills.last_trade_id("run-1") == "100"
        assert await uow.fills.last_trade_id("run-2") == "5000"


async def test_last_trade_id_ignores_ids_that_are_not_numbers(db: Database) -> None:
    await _given_runs(db, "run-1")
    async with db.uow() as uow:
        await uow.fills.add(a_fill("sim-9", timestamp=at(1)))
        assert await uow.fills.last_trade_id("run-1") is None
        await uow.fills.add(a_fill("7", timestamp=at(0)))
        await uow.fills.add(a_fill("zz", timestamp=at(2)))
        assert await uow.fills.last_trade_id("run-1") == "7"


async def test_fills_are_listed_oldest_first_and_counted_per_run(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    async with db.uow() as uow:
        await uow.fills.add(a_fill("3", timestamp=at(30)))
        await uow.fills.add(a_fill("1", timestamp=at(10)))
        await uow.fills.add(a_fill("2b", timestamp=at(20)))
        await uow.fills.add(a_fill("2a", timestamp=at(20)))  # same instant: booking order decides
        await uow.fills.add(a_fill("1", "run-2"))
        await uow.commit()

    async with db.uow() as uow:
        listed = [b.fill.trade_id for b in await uow.fills.list_for_run("run-1")]
        assert listed == ["1", "2b", "2a", "3"]
        assert await uow.fills.count("run-1") == 4
        assert await uow.fills.count("run-2") == 1
        assert await uow.fills.count("run-3") == 0
        assert await uow.fills.exists("run-1", "2a")
        assert not await uow.fills.exists("run-1", "4")
        assert not await uow.fills.exists("run-3", "1")


async def test_realized_pnl_is_the_exact_sum_of_the_run_s_fills(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    profits = [
        Decimal("123456789.123456789"),
        Decimal("0.000000000000000001"),
        Decimal("-0.5"),
        Decimal("987654321987654321.987654321987654321"),
    ]
    async with db.uow() as uow:
        assert await uow.fills.realized_pnl("run-1") == Decimal("0")
        for i, profit in enumerate(profits):
            await uow.fills.add(a_fill(str(i), side=Side.SELL, realized_pnl=profit))
        await uow.fills.add(a_fill("x", "run-2", realized_pnl=Decimal("1000")))
        await uow.commit()

    async with db.uow() as uow:
        total = await uow.fills.realized_pnl("run-1")

    # 36 significant digits: the default 28-digit context would have rounded this sum.
    assert total == Decimal("987654322111111110.611111110987654322")
    with localcontext() as ctx:
        ctx.prec = 100
        assert total == sum(profits, Decimal("0"))


async def test_runs_are_found_by_the_start_of_their_id_with_like_wildcards_taken_literally(
    db: Database,
) -> None:
    async with db.uow() as uow:
        for run_id in ("abc123def", "abc124xyz", "a_c999", "a%c000", "zzz"):
            await uow.runs.add(a_run(run_id))
        await uow.commit()
    async with db.uow() as uow:
        assert [r.run_id for r in await uow.runs.starting_with("abc123")] == ["abc123def"]
        assert [r.run_id for r in await uow.runs.starting_with("abc")] == ["abc123def", "abc124xyz"]
        assert [r.run_id for r in await uow.runs.starting_with("abc", limit=1)] == ["abc123def"]
        assert [r.run_id for r in await uow.runs.starting_with("a_c")] == ["a_c999"]  # not "abc..."
        assert [r.run_id for r in await uow.runs.starting_with("a%")] == ["a%c000"]
        assert await uow.runs.starting_with("nope") == []
