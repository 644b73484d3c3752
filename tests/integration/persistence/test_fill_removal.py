"""Retracting a booked fill: an inferred fill goes when the venue's real trades replace it, and
the run's books (listing, count, profit, catch-up point) no longer count it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from adapters.persistence import Database, open_database, sqlite_url_for
from domain.models import INFERRED_TRADE_PREFIX, Side

from .builders import a_fill, a_run, at

INFERRED = f"{INFERRED_TRADE_PREFIX}555"


async def _given_runs(db: Database, *run_ids: str) -> None:
    async with db.uow() as uow:
        for run_id in run_ids:
            await uow.runs.add(a_run(run_id))
        await uow.commit()


async def test_an_inferred_fill_replaced_by_the_real_trades_leaves_the_books(db_path: Path) -> None:
    url = sqlite_url_for(db_path)
    async with open_database(url) as db:
        await _given_runs(db, "run-1")
        async with db.uow() as uow:
            await uow.fills.add(a_fill("7", timestamp=at(0)))
            await uow.fills.add(
                a_fill(INFERRED, side=Side.SELL, timestamp=at(10), realized_pnl=Decimal("1.50"))
            )
            await uow.commit()

        # One unit of work: retract the inferred fill, book the venue's two real trades.
        async with db.uow() as uow:
            await uow.fills.remove("run-1", INFERRED)
            await uow.fills.add(a_fill("8", side=Side.SELL, timestamp=at(9), realized_pnl=Decimal("0.75")))
            await uow.fills.add(a_fill("9", side=Side.SELL, timestamp=at(9), realized_pnl=Decimal("0.70")))
            await uow.commit()

    async with open_database(url) as reopened, reopened.uow() as uow:
        assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-1")] == ["7", "8", "9"]
        assert not await uow.fills.exists("run-1", INFERRED)
        assert await uow.fills.count("run-1") == 3
        assert await uow.fills.realized_pnl("run-1") == Decimal("1.45")
        assert await uow.fills.last_trade_id("run-1") == "9"


async def test_the_same_trade_id_can_be_booked_again_once_removed(db: Database) -> None:
    await _given_runs(db, "run-1")
    async with db.uow() as uow:
        await uow.fills.add(a_fill(INFERRED, realized_pnl=Decimal("2")))
        await uow.fills.remove("run-1", INFERRED)
        await uow.fills.add(a_fill(INFERRED, realized_pnl=Decimal("3")))
        await uow.commit()

    async with db.uow() as uow:
        assert [b.realized_pnl for b in await uow.fills.list_for_run("run-1")] == [Decimal("3")]


async def test_only_that_run_s_fill_is_removed(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    async with db.uow() as uow:
        await uow.fills.add(a_fill(INFERRED, "run-1"))
        await uow.fills.add(a_fill(INFERRED, "run-2"))
        await uow.fills.add(a_fill("8", "run-1"))
        await uow.commit()

    async with db.uow() as uow:
        await uow.fills.remove("run-1", INFERRED)
        await uow.commit()

    async with db.uow() as uow:
        assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-1")] == ["8"]
        assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-2")] == [INFERRED]


async def test_a_removal_without_commit_is_rolled_back(db: Database) -> None:
    await _given_runs(db, "run-1")
    async with db.uow() as uow:
        await uow.fills.add(a_fill(INFERRED))
        await uow.commit()

    async with db.uow() as uow:
        await uow.fills.remove("run-1", INFERRED)
        assert not await uow.fills.exists("run-1", INFERRED)  # gone inside the unit of work

    async with db.uow() as uow:
        assert await uow.fills.exists("run-1", INFERRED)


async def test_removing_a_fill_that_is_not_booked_is_refused_and_the_unit_stays_usable(db: Database) -> None:
    await _given_runs(db, "run-1", "run-2")
    async with db.uow() as uow:
        await uow.fills.add(a_fill(INFERRED, "run-2"))
        with pytest.raises(ValueError, match=f"fill {INFERRED} is not booked for run run-1"):
            await uow.fills.remove("run-1", INFERRED)
        with pytest.raises(ValueError, match="fill 404 is not booked for run run-2"):
            await uow.fills.remove("run-2", "404")
        await uow.fills.add(a_fill("5", "run-1"))
        await uow.commit()

    async with db.uow() as uow:
        assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-1")] == ["5"]
        assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-2")] == [INFERRED]
