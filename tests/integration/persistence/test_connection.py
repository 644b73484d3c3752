"""How a SQLite database is driven for speed, and what that must not cost: one connection kept
for the database's life, WAL, statements run on the event loop's thread, the WAL copied into
the file off the loop; and still, a committed unit of work survives a SIGKILL, a lock held by
another process is waited for without freezing the loop, and a rollback drops everything."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from adapters.persistence import Database, open_database, sqlite_url_for
from adapters.persistence.database import CHECKPOINT_EVERY_COMMITS
from domain.models import OrderStatus

from .builders import a_fill, a_run, an_order, at


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return str(connection.execute("PRAGMA journal_mode").fetchone()[0])


async def test_a_database_file_is_in_wal_mode(db: Database, db_path: Path) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    assert _journal_mode(db_path) == "wal"  # persistent: any other connection sees it too


async def test_units_of_work_reuse_one_connection(db: Database) -> None:
    checkouts: list[object] = []
    connects: list[object] = []
    event.listen(db.engine.sync_engine.pool, "checkout", lambda *args: checkouts.append(args))
    event.listen(db.engine.sync_engine, "connect", lambda *args: connects.append(args))
    for i in range(5):
        async with db.uow() as uow:
            if i == 0:
                await uow.runs.add(a_run())
            else:
                await uow.orders.add(an_order(f"gb-{i}"))
            await uow.commit()
        async with db.uow() as uow:
            assert await uow.runs.get("run-1") is not None
    assert checkouts == []
    assert connects == []


_TESTS_DIR = Path(__file__).resolve().parents[2]
_COMMIT_THEN_HANG = textwrap.dedent(
    """
    import asyncio, sys
    from adapters.persistence import open_database
    sys.path.insert(0, sys.argv[2])
    from integration.persistence.builders import a_fill, a_run, an_order

    async def main() -> None:
        async with open_database(sys.argv[1]) as db:
            async with db.uow() as uow:
                await uow.runs.add(a_run())
                await uow.orders.add(an_order())
                await uow.fills.add(a_fill("42"))
                await uow.commit()
            async with db.uow() as uow:
                await uow.orders.add(an_order("gb-uncommitted"))
                print("committed", flush=True)
                await asyncio.sleep(60)  # killed here, inside an open unit of work

    asyncio.run(main())
    """
)


async def test_a_committed_unit_of_work_survives_sigkill(db_path: Path) -> None:
    url = sqlite_url_for(db_path)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _COMMIT_THEN_HANG,
        url,
        str(_TESTS_DIR),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert child.stdout is not None
        lines: list[bytes] = []
        while not lines or lines[-1] not in (b"committed\n", b""):  # log lines come first
            lines.append(await asyncio.wait_for(child.stdout.readline(), timeout=60))
        assert lines[-1] == b"committed\n", b"".join(lines).decode()
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), timeout=30)
    assert child.returncode == -signal.SIGKILL

    async with open_database(url) as second, second.uow() as uow:
        assert await uow.runs.get("run-1") == a_run()
        assert await uow.orders.get("gb-1") == an_order()
        assert await uow.fills.list_for_run("run-1") == [a_fill("42")]
        assert await uow.orders.get("gb-uncommitted") is None


async def test_leaving_without_commit_drops_every_kind_of_work(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        await uow.commit()
    async with db.uow() as uow:
        await uow.orders.update(
            an_order(status=OrderStatus.FILLED, filled=an_order().amount, updated_at=at(5))
        )
        await uow.fills.add(a_fill("7"))
        await uow.orders.add(an_order("gb-2", parent_client_order_id="gb-1"))
        await uow.runs.update(a_run(params={"leftover_base": "0.001"}))
        # leaves without commit
    async with db.uow() as uow:
        assert await uow.orders.get("gb-1") == an_order()
        assert await uow.orders.get("gb-2") is None
        assert await uow.fills.count("run-1") == 0
        assert await uow.runs.get("run-1") == a_run()


async def test_a_refused_insert_backs_out_alone_and_the_rest_commits(db: Database) -> None:
    """No savepoint on SQLite: a refused statement must still leave the unit of work whole."""
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.fills.add(a_fill("1"))
        await uow.commit()
    async with db.uow() as uow:
        await uow.orders.add(an_order())
        with pytest.raises(ValueError, match="already booked"):
            await uow.fills.add(a_fill("1"))
        with pytest.raises(ValueError, match="unknown run"):
            await uow.orders.add(an_order("gb-ghost", run_id="ghost"))
        await uow.fills.add(a_fill("2"))
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.get("gb-1") == an_order()
        assert await uow.orders.get("gb-ghost") is None
        assert [b.fill.trade_id for b in await uow.fills.list_for_run("run-1")] == ["1", "2"]


def _hold_write_lock(path: Path, held: threading.Event, seconds: float) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
    finally:
        connection.close()


async def test_a_lock_held_elsewhere_is_waited_for_without_freezing_the_loop(
    db: Database, db_path: Path
) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(db_path, held, 0.5))
    holder.start()
    try:
        await asyncio.to_thread(held.wait, 10)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        started = time.monotonic()
        async with db.uow() as uow:
            await uow.orders.add(an_order())
            await uow.commit()
        waited = time.monotonic() - started
        ticking.cancel()
    finally:
        await asyncio.to_thread(holder.join)
    assert waited >= 0.2  # it did wait for the other connection's lock ...
    assert ticks >= 5  # ... while the loop went on running
    async with db.uow() as uow:
        assert await uow.orders.get("gb-1") is not None


async def test_the_wal_is_copied_into_the_file_off_the_commits(
    db: Database, db_path: Path, tmp_path: Path
) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    for i in range(CHECKPOINT_EVERY_COMMITS + 1):
        async with db.uow() as uow:
            await uow.fills.add(a_fill(str(i)))
            await uow.commit()

    def fills_in_file_alone() -> Any:
        copy = tmp_path / "file-alone.db"  # the database file without its -wal
        shutil.copyfile(db_path, copy)
        with sqlite3.connect(copy) as connection:
            try:
                return connection.execute("SELECT count(*) FROM fills").fetchone()[0]
            except sqlite3.OperationalError:  # no table yet: nothing checkpointed
                return 0
            finally:
                os.remove(copy)

    for _ in range(600):  # the checkpoint runs in a worker thread: up to 30 s
        if (count := fills_in_file_alone()) >= CHECKPOINT_EVERY_COMMITS - 1:
            break
        await asyncio.sleep(0.05)
    assert count >= CHECKPOINT_EVERY_COMMITS - 1


async def test_an_in_memory_database_still_works_with_one_connection() -> None:
    async with open_database("sqlite+aiosqlite://") as db:
        async with db.uow() as uow:
            await uow.runs.add(a_run())
            await uow.orders.add(an_order())
            await uow.commit()
        async with db.uow() as uow:
            await uow.orders.add(an_order("gb-2"))
        async with db.uow() as uow:
            assert await uow.orders.get("gb-1") == an_order()
            assert await uow.orders.get("gb-2") is None
