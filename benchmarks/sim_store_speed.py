"""Cost of one write of the simulated exchange's state store (SQLite file, WAL, synchronous=NORMAL):
the matching engine changes, then `SqliteStateStore.save_changes` commits what changed, as the
simulated exchange does before anyone sees the change. Prints µs per write; asserts nothing.

    .venv/bin/python benchmarks/sim_store_speed.py [--writes N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from adapters.simulated.engine import MatchingEngine
from adapters.simulated.state_store import SqliteStateStore
from domain.models import OrderRequest, OrderType, Side
from domain.rules import MarketRules

RULES = MarketRules(
    symbol="BTC/USDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal("5"),
    max_num_orders=100_000,
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def measure(
    label: str, writes: int, change: Callable[[int], None], store: SqliteStateStore, engine: MatchingEngine
) -> None:
    """Time `change(i)` + one write, `writes` times; report the write alone and both together."""
    write_us: list[float] = []
    total_us: list[float] = []
    for i in range(writes):
        start = time.perf_counter()
        change(i)
        changed = time.perf_counter()
        store.save_changes(engine)
        done = time.perf_counter()
        write_us.append((done - changed) * 1e6)
        total_us.append((done - start) * 1e6)
    q = statistics.quantiles(write_us, n=100)
    print(
        f"{label:<34} write: median {statistics.median(write_us):6.1f} µs, p99 {q[98]:7.1f} µs, "
        f"mean {statistics.fmean(write_us):6.1f} µs | engine change + write: median "
        f"{statistics.median(total_us):6.1f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=5000)
    writes = parser.parse_args().writes
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "simulated-exchange.sqlite3"
        store = SqliteStateStore.open(path)
        engine = MatchingEngine(
            RULES,
            {"USDT": Decimal("1000000000"), "BTC": Decimal("1000")},
            maker_fee=Decimal("0.001"),
            taker_fee=Decimal("0.001"),
            last_price=Decimal("30000"),
        )
        store.save_book(engine)
        clock = [T0]

        def now() -> datetime:
            clock[0] += timedelta(seconds=1)
            return clock[0]

        def price_step(i: int) -> None:
            engine.move_to(Decimal("30000") + Decimal(i % 2) / 100, now())

        def place_under(base: str) -> Callable[[int], None]:
            def place(i: int) -> None:  # rests: under the market
                price = Decimal(base) + Decimal(i) / 100
                engine.place(
                    OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, Decimal("0.001"), "", price), now()
                )

            return place

        def fill_one(i: int) -> None:  # the highest resting buy fills: one order + one trade
            engine.move_to(Decimal("20000") + Decimal(writes - 1 - i) / 100, now())

        def cancel(i: int) -> None:
            engine.cancel(now(), order_id=str(writes + i + 1))

        measure("price step, no fill (book row)", writes, price_step, store, engine)
        measure("place a resting order", writes, place_under("20000"), store, engine)
        measure("price step filling one order", writes, fill_one, store, engine)
        measure("place a resting order (again)", writes, place_under("10000"), store, engine)
        measure("cancel an order", writes, cancel, store, engine)
        store.close()
        size = path.stat().st_size
        print(f"file after {5 * writes} writes: {size / 1024:.0f} KiB ({writes} trades, {2 * writes} orders)")


if __name__ == "__main__":
    main()
