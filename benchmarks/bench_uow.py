"""Cost of one unit of work on a SQLite file (SQLAlchemy async + aiosqlite, the bot's own
`Database`): the one the grid books for every fill, and a read-only one. Prints figures; asserts
nothing.

    .venv/bin/python benchmarks/bench_uow.py [--iterations N] [--warmup N] [--db file|memory]

The fill's unit of work is the grid's own `application.grid_books.book` with the decision the core
makes for a filled grid order (see `GridBot._carry_out`): the filled order updated, its fill
added, the counter-order added, the run's params (leftover crumb, last price) updated, one
commit. The read-only one is the catch-up's `fills.last_trade_id`.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.persistence import Database, open_database, sqlite_url_for
from application.grid_books import book
from domain.grid import Leftover
from domain.grid_core import Decision
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

RUN_ID = "bench-run"
SYMBOL = "BTC/USDT"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
PRICE = Decimal("30000.00")
STEP = Decimal("150.00")
AMOUNT = Decimal("0.00100")


def a_run() -> BotRun:
    return BotRun(
        run_id=RUN_ID,
        symbol=SYMBOL,
        exchange="simulated",
        status=RunStatus.RUNNING,
        started_at=T0,
        grid_fingerprint="levels=50;lower=23000;upper=55000",
        params={"levels": "50", "lower": "23000", "upper": "55000", "quote": "10000"},
    )


def grid_order(i: int, now: datetime) -> TrackedOrder:
    """The i-th order of the chain: buys and sells alternate, each the counter-order of the last."""
    side = Side.BUY if i % 2 == 0 else Side.SELL
    return TrackedOrder(
        run_id=RUN_ID,
        client_order_id=f"gb-{i:08d}",
        symbol=SYMBOL,
        side=side,
        type=OrderType.LIMIT,
        amount=AMOUNT,
        price=PRICE if side is Side.BUY else PRICE + STEP,
        level=20 if side is Side.BUY else 21,
        status=OrderStatus.OPEN,
        created_at=now,
        updated_at=now,
        exchange_order_id=str(1_000_000 + i),
        cost_basis=Decimal("0") if side is Side.BUY else Decimal("30.03"),
        parent_client_order_id=f"gb-{i - 1:08d}" if i > 0 else None,
    )


def fill_decision(filled: TrackedOrder, i: int, now: datetime) -> Decision:
    """What the core decides when `filled` fills whole: the order booked filled, its fill (with
    the realized profit of a sell), the counter-order, and the carried crumb."""
    decision = Decision()
    decision.put(replace(filled, status=OrderStatus.FILLED, filled=filled.amount, updated_at=now))
    fee = filled.amount * Decimal("0.001") if filled.side is Side.BUY else Decimal("0.03015")
    decision.fills.append(
        BookedFill(
            run_id=RUN_ID,
            fill=Fill(
                trade_id=str(5_000_000 + i),
                order_id=filled.exchange_order_id or "",
                client_order_id=filled.client_order_id,
                symbol=SYMBOL,
                side=filled.side,
                price=filled.price or PRICE,
                amount=filled.amount,
                fee=fee,
                fee_asset="BTC" if filled.side is Side.BUY else "USDT",
                timestamp=now,
                is_maker=True,
            ),
            realized_pnl=Decimal("0") if filled.side is Side.BUY else Decimal("0.11985"),
        )
    )
    decision.add(grid_order(i + 1, now))
    decision.leftover = Leftover(Decimal("0.000001") * (i % 7), Decimal("0.03") * (i % 7))
    return decision


def figures(label: str, seconds: list[float]) -> None:
    ms = [s * 1e3 for s in seconds]
    q = statistics.quantiles(ms, n=100)
    print(
        f"{label:<44} p50 {statistics.median(ms):6.3f} ms  p99 {q[98]:6.3f} ms  "
        f"mean {statistics.fmean(ms):6.3f} ms  ({len(ms)} runs)"
    )


async def timed(n: int, step: Callable[[int], Awaitable[None]], start: int = 0) -> list[float]:
    seconds: list[float] = []
    for i in range(start, start + n):
        begin = time.perf_counter()
        await step(i)
        seconds.append(time.perf_counter() - begin)
    return seconds


async def count_statements(db: Database) -> Callable[[], int]:
    """Count the SQL statements SQLite runs on the units of work's connection (BEGIN, SAVEPOINT,
    COMMIT, ROLLBACK included) from now on. Counted by SQLite itself (its trace callback), not by
    SQLAlchemy's events: the hot writes on SQLite do not go through SQLAlchemy's execution."""
    sent = [0]

    def traced(_sql: str) -> None:
        sent[0] += 1

    kept = db._connection  # the one connection all units of work run on (SQLite)
    assert kept is not None, "counting needs a SQLite database"
    driver: Any = (await kept.get_raw_connection()).driver_connection
    sqlite_connection: sqlite3.Connection = driver._conn  # the aiosqlite connection's sqlite3 one
    sqlite_connection.set_trace_callback(traced)
    return lambda: sent[0]


async def bench(url: str, iterations: int, warmup: int) -> None:
    async with open_database(url) as db:
        run = a_run()
        async with db.uow() as uow:
            await uow.runs.add(run)
            await uow.orders.add(grid_order(0, T0))
            await uow.commit()
        resting = grid_order(0, T0)

        async def fill(i: int) -> None:
            nonlocal run, resting
            now = T0 + timedelta(seconds=i + 1)
            run = await book(db.uow, run, fill_decision(resting, i, now), PRICE)
            resting = grid_order(i + 1, now)

        async def read(_i: int) -> None:
            async with db.uow() as uow:
                await uow.fills.last_trade_id(RUN_ID)

        await timed(warmup, fill)
        await timed(warmup, read)
        fills = await timed(iterations, fill, start=warmup)
        reads = await timed(iterations, read)
        figures("fill: update + add fill + add counter + run", fills)
        figures("read-only: fills.last_trade_id", reads)

        sent = await count_statements(db)
        before = sent()
        await fill(warmup + iterations)
        per_fill = sent() - before
        before = sent()
        await read(0)
        per_read = sent() - before
        print(f"round trips to SQLite per unit of work: fill {per_fill}, read-only {per_read}")
        async with db.uow() as uow:
            booked = await uow.fills.count(RUN_ID)
        print(f"fills booked: {booked}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--db", choices=("file", "memory"), default="file")
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, database: {args.db}")
    if args.db == "memory":
        asyncio.run(bench("sqlite+aiosqlite://", args.iterations, args.warmup))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(bench(sqlite_url_for(Path(folder) / "bench.db"), args.iterations, args.warmup))


if __name__ == "__main__":
    main()
