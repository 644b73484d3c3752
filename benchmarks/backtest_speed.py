"""Full-stack speed over real candles: the grid bot (application), the matching engine, and a real
SQLite file (WAL, one unit of work per decision), driven by the simulated clock as fast as the CPU
allows. Prints figures; asserts nothing. Deterministic: two runs give the same fills and profit.

    .venv/bin/python benchmarks/backtest_speed.py [--candles N] [--db memory|file]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from adapters.clock import SimulatedClock
from adapters.logging import configure_logging
from adapters.persistence.database import open_database, sqlite_url_for
from adapters.simulated.engine import MatchingEngine
from adapters.simulated.exchange import SimulatedExchange
from adapters.simulated.price_source import CandlePriceSource, load_candles
from application.grid_bot import GridBot, GridBotConfig
from domain.grid import GridParams, Spacing
from domain.risk import RiskLimits
from domain.rules import MarketRules

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "BTCUSDT-1m.json"
RULES = MarketRules(
    symbol="BTC/USDT",
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    min_notional=Decimal("5"),
    max_num_orders=200,
)


@dataclass(frozen=True)
class Ladder:
    """The grid at the end of the run, as a trader would check it."""

    levels: int
    live: int  # grid orders resting (or held) at the end
    owed: int
    largest_sell: Decimal  # in units of the level quantity
    levels_doubled: int  # levels holding two live orders (must be 0)


async def backtest(candle_count: int | None, url: str) -> tuple[int, int, Decimal, float, int, Ladder]:
    candles = load_candles(DATA)[:candle_count]
    start = candles[0].open_time
    clock = SimulatedClock(start)
    fee = Decimal("0.001")
    engine = MatchingEngine(
        RULES, {"USDT": Decimal("20000"), "BTC": Decimal("0")}, maker_fee=fee, taker_fee=fee
    )
    exchange = SimulatedExchange(
        engine, CandlePriceSource(candles), clock, follow_timestamps=True, min_subscribers=2
    )
    grid = GridParams(Decimal("23000"), Decimal("55000"), 50, Spacing.GEOMETRIC, Decimal("10000"))
    config = GridBotConfig(
        symbol="BTC/USDT",
        exchange="backtest",
        grid=grid,
        limits=RiskLimits(investment=grid.investment, max_open_orders=100),
        maker_fee=fee,
        taker_fee=fee,
    )
    async with open_database(url) as database:
        bot = GridBot(
            config,
            gateway=exchange,
            market_feed=exchange,
            order_feed=exchange,
            uow_factory=database.uow,
            clock=clock,
        )
        driver = asyncio.create_task(exchange.run())
        await exchange.wait_ready()
        began = time.perf_counter()
        outcome = await bot.run(asyncio.Event())
        elapsed = time.perf_counter() - began
        await driver
        core = bot.core
        grid_orders = core.grid_orders()
        async with database.uow() as uow:
            every = await uow.orders.list_for_run(outcome.run_id)
        sells = [o.amount for o in every if o.side.value == "sell" and o.level >= 0]
        per_level = Counter(o.level for o in grid_orders)
        ladder = Ladder(
            levels=len(core.config.levels),
            live=len(grid_orders),
            owed=len(core.owed_orders()),
            largest_sell=max(sells, default=Decimal(0)) / core.config.quantity,
            levels_doubled=sum(1 for n in per_level.values() if n > 1),
        )
    return len(candles), outcome.fills, outcome.realized_pnl, elapsed, exchange.steps, ladder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candles", type=int, default=None, help="first N candles (default: all 13,681)")
    parser.add_argument("--db", choices=["file", "memory"], default="file")
    args = parser.parse_args()
    configure_logging(level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        url = (
            sqlite_url_for(Path(tmp) / "bt.sqlite3") if args.db == "file" else "sqlite+aiosqlite:///:memory:"
        )
        candles, fills, pnl, elapsed, steps, ladder = asyncio.run(backtest(args.candles, url))
    print(f"candles            {candles:>10,}   (real 1-minute candles, {steps:,} price steps)")
    print(f"fills booked       {fills:>10,}")
    print(f"realized profit    {pnl.quantize(Decimal('0.01')):>10} USDT")
    print(f"wall time          {elapsed:>10.2f} s   ({args.db} SQLite)")
    print(f"throughput         {candles / elapsed:>10,.0f} candles/s   {fills / elapsed:,.0f} fills/s")
    print(f"market time/wall   {candles * 60 / elapsed:>10,.0f} x real time")
    print(
        f"ladder at the end  {ladder.live:>10} grid orders for {ladder.levels} levels "
        f"(whole: {ladder.levels - 1}), {ladder.owed} owed, {ladder.levels_doubled} levels doubled"
    )
    print(f"largest sell       {ladder.largest_sell:>10.3f} x the level quantity")
    print(f"started            {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
