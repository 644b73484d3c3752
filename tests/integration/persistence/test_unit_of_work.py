"""The unit of work: nothing is kept without commit(), what is committed survives a restart,
and concurrent units of work from separate tasks neither lose nor see each other's work."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.persistence import Database, open_database, sqlite_url_for
from domain.models import OrderStatus
from domain.ports import UnitOfWorkFactory

from .builders import a_fill, a_run, an_order, at


async def test_leaving_without_commit_keeps_nothing(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        await uow.fills.add(a_fill())

    async with db.uow() as uow:
        assert await uow.runs.get("run-1") is None
        assert await uow.orders.get("gb-1") is None
        assert await uow.fills.count("run-1") == 0


async def test_an_error_inside_the_block_propagates_and_keeps_nothing(db: Database) -> None:
    async def failing_handler() -> None:
        async with db.uow() as uow:
            await uow.runs.add(a_run())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await failing_handler()

    async with db.uow() as uow:
        assert await uow.runs.get("run-1") is None


async def test_rollback_discards_only_the_work_before_it(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run("discarded"))
        await uow.rollback()
        await uow.runs.add(a_run("kept"))
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.runs.get("discarded") is None
        assert await uow.runs.get("kept") is not None


async def test_work_after_a_commit_is_dropped_unless_committed_again(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
        await uow.orders.add(an_order())

    async with db.uow() as uow:
        assert await uow.runs.get("run-1") is not None
        assert await uow.orders.get("gb-1") is None


async def test_committed_work_survives_a_restart(db_path: Path) -> None:
    url = sqlite_url_for(db_path)
    async with open_database(url) as first, first.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        await uow.fills.add(a_fill("42"))
        await uow.commit()

    async with open_database(url) as second, second.uow() as uow:
        assert await uow.runs.get("run-1") == a_run()
        assert await uow.orders.get("gb-1") == an_order()
        assert await uow.fills.list_for_run("run-1") == [a_fill("42")]


async def test_database_uow_is_a_unit_of_work_factory(db: Database) -> None:
    factory: UnitOfWorkFactory = db.uow
    async with factory() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    async with factory() as uow:
        assert await uow.runs.get("run-1") is not None


async def test_a_fill_is_booked_once_per_run(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run("run-1"))
        await uow.runs.add(a_run("run-2"))
        await uow.fills.add(a_fill("1001", "run-1"))
        with pytest.raises(ValueError, match=r"^fill 1001 is already booked for run run-1$"):
            await uow.fills.add(a_fill("1001", "run-1", amount=a_fill().fill.amount * 2))
        # The same venue trade may belong to another run, and the unit of work is still usable.
        await uow.fills.add(a_fill("1001", "run-2"))
        await uow.commit()

    async with db.uow() as uow:
        assert await uow.fills.list_for_run("run-1") == [a_fill("1001", "run-1")]
        assert await uow.fills.count("run-2") == 1


async def test_a_duplicate_is_refused_even_across_units_of_work(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.fills.add(a_fill("1001"))
        await uow.commit()

    async with db.uow() as uow:
        with pytest.raises(ValueError, match="already booked"):
            await uow.fills.add(a_fill("1001"))


async def test_duplicate_orders_and_runs_are_refused(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        with pytest.raises(ValueError, match=r"^run run-1 is already booked$"):
            await uow.runs.add(a_run())
        with pytest.raises(ValueError, match=r"^order gb-1 is already booked$"):
            await uow.orders.add(an_order())


async def test_orders_and_fills_of_an_unknown_run_are_refused(db: Database) -> None:
    async with db.uow() as uow:
        with pytest.raises(ValueError, match="unknown run ghost"):
            await uow.orders.add(an_order(run_id="ghost"))
        with pytest.raises(ValueError, match="unknown run ghost"):
            await uow.fills.add(a_fill(run_id="ghost"))


async def test_updating_what_was_never_added_is_an_error(db: Database) -> None:
    async with db.uow() as uow:
        with pytest.raises(ValueError, match="order gb-1 is not booked"):
            await uow.orders.update(an_order())
        with pytest.raises(ValueError, match="run run-1 is not booked"):
            await uow.runs.update(a_run())


async def test_an_order_cannot_move_to_another_run(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run("run-1"))
        await uow.runs.add(a_run("run-2"))
        await uow.orders.add(an_order(run_id="run-1"))
        with pytest.raises(ValueError, match="belongs to run run-1, not run-2"):
            await uow.orders.update(an_order(run_id="run-2", status=OrderStatus.FILLED))


async def test_one_unit_of_work_cannot_be_opened_twice_at_once(db: Database) -> None:
    uow = db.uow()
    async with uow:
        with pytest.raises(RuntimeError, match="already open"):
            await uow.__aenter__()
    # ... but once left, it can be used again, with a fresh session.
    async with uow:
        await uow.runs.add(a_run())
        await uow.commit()
    async with db.uow() as check:
        assert await check.runs.get("run-1") is not None


async def _book_fills(
    factory: UnitOfWorkFactory, run_id: str, trade_ids: list[str], go: asyncio.Event
) -> None:
    await go.wait()
    for trade_id in trade_ids:
        async with factory() as uow:
            # The usual pattern of a fill handler: look, then book, in one unit of work.
            if not await uow.fills.exists(run_id, trade_id):
                await uow.fills.add(a_fill(trade_id, run_id))
                await uow.orders.add(an_order(f"gb-{trade_id}", run_id, created_at=at(int(trade_id))))
            await uow.commit()


async def test_units_of_work_from_concurrent_tasks_all_land(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()

    go = asyncio.Event()
    # Overlapping trade ids: both tasks try to book 10..19, each exactly once in the end.
    first = asyncio.create_task(_book_fills(db.uow, "run-1", [str(i) for i in range(20)], go))
    second = asyncio.create_task(_book_fills(db.uow, "run-1", [str(i) for i in range(10, 30)], go))
    go.set()
    await asyncio.gather(first, second)

    async with db.uow() as uow:
        assert await uow.fills.count("run-1") == 30
        assert len(await uow.orders.list_for_run("run-1")) == 30
        assert await uow.fills.last_trade_id("run-1") == "29"


async def test_two_databases_on_one_file_share_committed_work(db_path: Path) -> None:
    """Two engines on one file, as two bot processes would have."""
    url = sqlite_url_for(db_path)
    async with open_database(url) as one, open_database(url) as two:
        async with one.uow() as uow:
            await uow.runs.add(a_run())
            await uow.commit()
        go = asyncio.Event()
        tasks = [
            asyncio.create_task(_book_fills(one.uow, "run-1", [str(i) for i in range(0, 15)], go)),
            asyncio.create_task(_book_fills(two.uow, "run-1", [str(i) for i in range(15, 30)], go)),
        ]
        go.set()
        await asyncio.gather(*tasks)
        async with two.uow() as uow:
            assert await uow.fills.count("run-1") == 30


async def test_uncommitted_work_is_invisible_to_a_concurrent_unit_of_work(db: Database) -> None:
    added = asyncio.Event()
    reader_started = asyncio.Event()

    async def writer() -> None:
        async with db.uow() as uow:
            await uow.runs.add(a_run())
            added.set()
            await reader_started.wait()
            # leaves without commit

    async def reader() -> object:
        await added.wait()
        reader_started.set()
        async with db.uow() as uow:
            return await uow.runs.get("run-1")

    _, seen = await asyncio.gather(writer(), reader())
    assert seen is None


async def test_an_in_memory_database_keeps_concurrent_units_of_work_apart() -> None:
    """An in-memory database is one connection; a rollback in one task must not drop another's work."""
    async with open_database("sqlite+aiosqlite://") as db:
        async with db.uow() as uow:
            await uow.runs.add(a_run())
            await uow.commit()
        writer_inside = asyncio.Event()

        async def committer() -> None:
            async with db.uow() as uow:
                await uow.fills.add(a_fill("1"))
                writer_inside.set()
                await uow.commit()

        async def abandoner() -> None:
            await writer_inside.wait()
            async with db.uow() as uow:
                await uow.fills.add(a_fill("2"))
                # leaves without commit

        await asyncio.gather(committer(), abandoner())
        async with db.uow() as uow:
            assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-1")] == ["1"]

        # Opening a second unit of work inside the first, in one task, would wait forever: refused.
        async with db.uow():
            with pytest.raises(RuntimeError, match="already open in this task"):
                async with db.uow():
                    pass
