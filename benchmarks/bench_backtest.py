"""Backtest speed (issue 8): candles/s over a year of 1-minute candles for 10, 50 and 200 levels,
the fast path beside the candle-by-candle (plain) path and beside backtrader running the same grid
rule on the same candles; then the whole `python -m bootstrap backtest --json` command on a year
file (start-up, loading, run, report) with its peak memory. Prints figures; asserts nothing.

    .venv/bin/python benchmarks/bench_backtest.py [--levels 10,50,200] [--sample 50000] [--full]

The plain path and backtrader run ~100x slower than the fast path, so by default they run on the
first `--sample` candles of the year (candles/s is comparable; the output says so); `--full` runs
them over the whole year (the plain path about 90 s per level count, backtrader up to ~20 minutes
for 200 levels, at a few hundred candles/s). The fast path is also run on that
sample, and its fills and realized PnL are checked against the plain path's there.

backtrader is the benchmark-only extra (`pip install 'gridbot[bench]'`); without it, its columns
are skipped.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import numpy as np

from adapters.backtest.columns import PRICE_UNIT, CandleColumns, price_of
from adapters.backtest.data import synthetic_candles
from bootstrap.backtest import Outcome, run_backtest
from bootstrap.settings import Settings, load_settings
from domain.grid import nearest_level

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "config" / "default.toml"
YEAR = 525_600
INVESTMENT = "10000"


def grid_env(columns: CandleColumns, levels: int) -> dict[str, str]:
    """A grid over the whole range of the candles (so the price never leaves it), `levels` levels."""
    lower = (price_of(int(columns.low.min())) * Decimal("0.99")).to_integral_value(ROUND_FLOOR)
    upper = (price_of(int(columns.high.max())) * Decimal("1.01")).to_integral_value(ROUND_CEILING)
    return {
        "GRID__LOWER": str(lower),
        "GRID__UPPER": str(upper),
        "GRID__LEVELS": str(levels),
        "GRID__SPACING": "geometric",
        "GRID__INVESTMENT": INVESTMENT,
        "RISK__MAX_OPEN_ORDERS": "200",
    }


def settings_for(env: dict[str, str]) -> Settings:
    return load_settings(PROFILE, env_file=None, overrides=env)


def first(columns: CandleColumns, n: int) -> CandleColumns:
    if n >= len(columns):
        return columns
    return columns.between(None, int(columns.open_time_ms[n]))


def timed_run(
    settings: Settings, columns: CandleColumns, *, fast: bool, runs: int = 1
) -> tuple[float, Outcome]:
    """The best run time (the loop alone, as the command reports it) of `runs` runs."""
    best, outcome = float("inf"), None
    for _ in range(runs):
        outcome = run_backtest(settings, columns, fast=fast)
        best = min(best, outcome.seconds)
    assert outcome is not None
    return best, outcome


# --------------------------------------------------------------------------- backtrader
@dataclass
class BtResult:
    seconds: float
    fills: int
    candles: int


def run_backtrader(columns: CandleColumns, levels: tuple[Decimal, ...], quantity: Decimal) -> BtResult | None:
    """The same grid in backtrader: limit buys at the levels under the start price, sells above
    (the level nearest the start left empty, as the grid core does; the sells' base bought at
    market first); a filled buy at level i places a sell at level i+1, a filled sell at level i a
    buy at level i-1. Same fees (0.1%). Its fills need not equal ours one for one: backtrader
    fills a counter-order from the next bar on, our engine within the same candle's path."""
    try:
        import backtrader as bt
    except ImportError:
        return None

    n = len(columns)
    times = columns.open_time_ms.astype(np.float64) / 1000.0
    opens, highs, lows, closes = (
        a.astype(np.float64) / PRICE_UNIT for a in (columns.open, columns.high, columns.low, columns.close)
    )
    epoch = 719163.0  # backtrader's float date of 1970-01-01 (matplotlib's day count)

    class Feed(bt.feeds.DataBase):  # type: ignore[misc]
        """The candles from numpy arrays, one bar per call (backtrader's own per-bar path)."""

        def start(self) -> None:
            super().start()
            self._i = 0

        def _load(self) -> bool:
            i = self._i
            if i >= n:
                return False
            self.lines.datetime[0] = epoch + times[i] / 86400.0
            self.lines.open[0] = opens[i]
            self.lines.high[0] = highs[i]
            self.lines.low[0] = lows[i]
            self.lines.close[0] = closes[i]
            self.lines.volume[0] = 1.0
            self.lines.openinterest[0] = 0.0
            self._i = i + 1
            return True

    prices = [float(level) for level in levels]
    q = float(quantity)
    empty = nearest_level(levels, price_of(int(columns.open[0])))

    class Grid(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            self.started = False
            self.where: dict[int, tuple[str, int]] = {}  # order ref -> (side, level)
            self.fills = 0

        def _buy(self, i: int) -> None:
            self.where[self.buy(size=q, price=prices[i], exectype=bt.Order.Limit).ref] = ("buy", i)

        def _sell(self, i: int) -> None:
            self.where[self.sell(size=q, price=prices[i], exectype=bt.Order.Limit).ref] = ("sell", i)

        def next(self) -> None:
            if self.started:
                return
            self.started = True
            sells = range(empty + 1, len(prices))
            if sells:
                self.buy(size=q * len(sells))  # the sells' base, at market
            for i in range(empty):
                self._buy(i)
            for i in sells:
                self._sell(i)

        def notify_order(self, order: Any) -> None:
            if order.status != order.Completed:
                return
            self.fills += 1
            side_level = self.where.pop(order.ref, None)
            if side_level is None:
                return
            side, i = side_level
            if side == "buy" and i + 1 < len(prices):
                self._sell(i + 1)
            elif side == "sell" and i > 0:
                self._buy(i - 1)

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.broker.setcash(float(INVESTMENT))
    cerebro.broker.setcommission(commission=0.001)
    cerebro.adddata(Feed())
    cerebro.addstrategy(Grid)
    began = time.perf_counter()
    strategy = cerebro.run()[0]
    return BtResult(time.perf_counter() - began, strategy.fills, n)


# --------------------------------------------------------------------------- the whole command
def write_year_csv(path: Path) -> CandleColumns:
    """A Binance-format kline CSV of a synthetic year (load_candles_speed.py's writer)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from load_candles_speed import START_MS, write_year

    write_year(path, YEAR)
    return synthetic_candles(seed=1, count=YEAR, start_ms=START_MS)  # what write_year wrote


# Runs the command and reports its wall time and peak RSS. A small launcher process starts it:
# Linux counts in a child's ru_maxrss the memory of the process it was forked from, so forking it
# from this (large) benchmark process would report this process's size.
LAUNCHER = """
import json, os, resource, subprocess, sys, time
began = time.perf_counter()
code = subprocess.call(sys.argv[1:], stdout=open(os.environ["BENCH_OUT"], "wb"))
wall = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
print(json.dumps({"code": code, "wall": wall, "peak": peak}))
"""


def whole_command(csv: Path, env: dict[str, str], runs: int) -> tuple[list[float], int, dict[str, Any]]:
    """Wall times of `python -m bootstrap backtest --data csv --json` and its peak RSS (bytes)."""
    import json

    walls, peak, report = [], 0, {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        child_env = {**os.environ, **env, "BENCH_OUT": str(out)}
        command = [sys.executable, "-m", "bootstrap", "backtest", "--data", str(csv), "--json"]
        for _ in range(runs):
            launched = subprocess.run(
                [sys.executable, "-c", LAUNCHER, *command],
                cwd=ROOT,
                env=child_env,
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(launched.stdout)
            if figures["code"] != 0:
                raise SystemExit(f"the command failed (exit {figures['code']})")
            walls.append(figures["wall"])
            peak = max(peak, figures["peak"])
            report = json.loads(out.read_text())
    return walls, peak, report


# --------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="10,50,200", help="level counts, comma-separated")
    parser.add_argument(
        "--sample", type=int, default=50_000, help="candles for the plain path and backtrader"
    )
    parser.add_argument("--full", action="store_true", help="plain path and backtrader over the whole year")
    parser.add_argument("--runs", type=int, default=3, help="runs of the fast path and of the whole command")
    parser.add_argument("--no-command", action="store_true", help="skip the whole-command timing")
    args = parser.parse_args()

    year = synthetic_candles(count=YEAR)
    sample_n = YEAR if args.full else min(args.sample, YEAR)
    sample = first(year, sample_n)
    load = os.getloadavg()
    print(
        f"{year.source}: {len(year):,} candles; plain path and backtrader on "
        f"{'the whole year' if sample_n == YEAR else f'the first {sample_n:,} candles'}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; Python {sys.version.split()[0]}",
        flush=True,
    )
    header = (
        f"{'levels':>6}  {'fast c/s':>11}  {'fills':>6}  {'plain c/s':>10}  {'bt c/s':>8}  "
        f"{'fast/plain':>10}  {'fast/bt':>8}  {'bt fills':>8}  same fills & PnL as plain (on the sample)"
    )
    print(header, flush=True)
    for levels in (int(text) for text in args.levels.split(",")):
        settings = settings_for(grid_env(year, levels))
        fast_s, fast = timed_run(settings, year, fast=True, runs=args.runs)
        fast_rate = len(year) / fast_s
        plain_s, plain = timed_run(settings, sample, fast=False)
        plain_rate = len(sample) / plain_s
        _, fast_sample = timed_run(settings, sample, fast=True)
        same = (
            fast_sample.report.grid_fills == plain.report.grid_fills
            and fast_sample.report.fills == plain.report.fills
            and fast_sample.report.realized_pnl == plain.report.realized_pnl
            and fast_sample.report.final_balances == plain.report.final_balances
        )
        check = (
            f"{'yes' if same else 'NO'}: {plain.report.grid_fills:,} grid fills, "
            f"{plain.report.realized_pnl.quantize(Decimal('0.01')):,} USDT"
            + (
                ""
                if same
                else f" (fast: {fast_sample.report.grid_fills:,}, {fast_sample.report.realized_pnl:,})"
            )
        )
        bt = run_backtrader(sample, fast.result.levels, fast.result.quantity)
        bt_rate = None if bt is None else bt.candles / bt.seconds
        print(
            f"{levels:>6}  {fast_rate:>11,.0f}  {fast.report.grid_fills:>6,}  {plain_rate:>10,.0f}  "
            f"{'-' if bt_rate is None else f'{bt_rate:,.0f}':>8}  {fast_rate / plain_rate:>9,.0f}x  "
            f"{'-' if bt_rate is None else f'{fast_rate / bt_rate:,.0f}x':>8}  "
            f"{'-' if bt is None else f'{bt.fills:,}':>8}  {check}",
            flush=True,
        )
    print(
        "fast c/s: the year, best of runs, the loop alone (as the command's 'run time'); fills: the "
        "year's grid fills; plain, bt: on the sample; bt fills: all of backtrader's fills there",
        flush=True,
    )

    if args.no_command:
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "BTCUSDT-1m-2025.csv"
        written = write_year_csv(csv)
        env = grid_env(written, 50)
        walls, peak, report = whole_command(csv, env, args.runs)
        print(
            f"\nwhole command, {csv.name} ({csv.stat().st_size / 1e6:.0f} MB, {report['candles']:,} candles), "
            f"50 levels {env['GRID__LOWER']}..{env['GRID__UPPER']} geometric: "
            f"python -m bootstrap backtest --data FILE --json",
            flush=True,
        )
        print(
            f"  wall time {min(walls):.2f} s best, {statistics.median(walls):.2f} s median of {len(walls)}; "
            f"peak RSS {peak / 2**20:.0f} MiB; {report['grid_fills']:,} grid fills, "
            f"realized PnL {report['realized_pnl']} USDT",
            flush=True,
        )


if __name__ == "__main__":
    main()
