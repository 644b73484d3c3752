"""The `backtest` command: settings and candles in, a report (and a picture, and books) out.

Only what a backtest needs is imported: no ccxt, no asyncio stack, no database unless --db.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adapters.backtest.columns import CandleColumns
from adapters.backtest.path import POINTS_PER_CANDLE, CandlePath
from adapters.backtest.report import BacktestReport, Curves, build_report, fills_for_plot
from adapters.simulated.engine import MatchingEngine
from application.backtest import RUN_ID, Backtest, BacktestConfig, BacktestResult
from bootstrap.grid_settings import grid_params, market_thresholds, risk_limits
from bootstrap.settings import Settings, load_settings, simulated_rules
from domain.errors import ConfigurationError

if TYPE_CHECKING:
    from tqdm import tqdm

SYNTHETIC_CANDLES = 525_600  # a year of minutes


def parse_when(text: str, *, end: bool) -> int:
    """A --from/--to value in ms since the epoch, UTC: a date (as --to, the end of that day) or an
    ISO 8601 date and time (naive times are UTC)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC) + (
                timedelta(days=1) if end else timedelta()
            )
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
    except ValueError:
        raise ConfigurationError(
            "--to" if end else "--from", f"expected a date (2024-03-01) or a date and time, got {text!r}"
        ) from None
    return int(moment.timestamp() * 1000)


def load_columns(
    settings: Settings, data: str | None, start_ms: int | None, end_ms: int | None
) -> CandleColumns:
    """The candles of --data (or a seeded synthetic year), cut to [--from, --to)."""
    from adapters.backtest.data import load_candles, synthetic_candles

    if data is None:
        columns = synthetic_candles(
            seed=settings.simulator.seed,
            count=SYNTHETIC_CANDLES,
            start_price=settings.simulator.start_price,
        )
    else:
        columns = load_candles(Path(data))
    if start_ms is not None or end_ms is not None:
        columns = columns.between(start_ms, end_ms)
    if len(columns) == 0:
        raise ConfigurationError(
            "--from/--to", f"no candle of {columns.source} falls in the period asked for"
        )
    return columns


def backtest_config(settings: Settings) -> BacktestConfig:
    trading = settings.trading
    return BacktestConfig(
        symbol=trading.symbol,
        rules=simulated_rules(settings),
        grid=grid_params(settings),
        limits=risk_limits(settings),
        maker_fee=trading.maker_fee,
        taker_fee=trading.taker_fee,
        thresholds=market_thresholds(settings),
        volatility_window_s=settings.risk.volatility_window_s,
    )


def start_balances(settings: Settings) -> dict[str, Decimal]:
    base, quote = settings.trading.symbol.split("/")
    account = settings.backtest
    return {
        quote: settings.grid.investment if account.quote_balance is None else account.quote_balance,
        base: account.base_balance,
    }


@dataclass(frozen=True, slots=True)
class Outcome:
    result: BacktestResult
    report: BacktestReport
    curves: Curves
    seconds: float  # the run alone (not loading the data)


def run_backtest(
    settings: Settings,
    columns: CandleColumns,
    *,
    fast: bool = True,
    run_id: str = RUN_ID,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    config = backtest_config(settings)
    balances = start_balances(settings)
    sim = settings.simulator
    engine = MatchingEngine(config.rules, balances, maker_fee=sim.maker_fee, taker_fee=sim.taker_fee)
    began = time.perf_counter()
    backtest = Backtest(config, engine, CandlePath(columns), fast=fast, progress=progress, run_id=run_id)
    result = backtest.run()
    seconds = time.perf_counter() - began
    base, quote = settings.trading.symbol.split("/")
    report, curves = build_report(
        result,
        columns,
        symbol=settings.trading.symbol,
        base_asset=base,
        quote_asset=quote,
        start_balances=balances,
    )
    return Outcome(result, report, curves, seconds)


# --------------------------------------------------------------------------- sweep jobs
@dataclass(frozen=True, slots=True)
class BacktestJob:
    """One backtest of a sweep, as sent to a worker process (or a Dask worker): everything in it
    pickles, and the worker loads the settings and the data itself."""

    profile: str
    overrides: tuple[tuple[str, str], ...]
    data: str | None
    start_ms: int | None
    end_ms: int | None


def backtest_job(
    job: BacktestJob,
    *,
    load: Callable[[Settings, str | None, int | None, int | None], CandleColumns] = load_columns,
) -> dict[str, Any]:
    """Run one job; its report as JSON values, with the settings it overrode under "settings".
    A job whose settings do not work gives {"settings": ..., "error": "KEY: problem"}.
    `load` gets the candles (`load_columns`'s arguments); a sweep's workers pass a cached one."""
    overrides = dict(job.overrides)
    try:
        settings = load_settings(Path(job.profile), overrides=overrides)
        columns = load(settings, job.data, job.start_ms, job.end_ms)
        outcome = run_backtest(settings, columns)
    except ConfigurationError as exc:
        return {"settings": overrides, "error": f"{exc.key}: {exc.problem}"}
    return {"settings": overrides, **outcome.report.as_json()}


# --------------------------------------------------------------------------- the command
def _progress_bar(total_candles: int, *, quiet: bool) -> tuple[Callable[[int], None] | None, tqdm | None]:
    """A progress bar on a terminal, shown once a run has taken a second (none when quiet or when
    stderr is not a terminal)."""
    if quiet or not sys.stderr.isatty():
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total_candles, delay=1.0, unit=" candles", unit_scale=True, file=sys.stderr, leave=False)
    done = [0]

    def advance(k: int) -> None:
        candle = k // POINTS_PER_CANDLE
        if candle > done[0]:
            bar.update(candle - done[0])
            done[0] = candle

    return advance, bar


def command(
    settings: Settings,
    *,
    data: str | None,
    start: str | None,
    end: str | None,
    as_json: bool,
    plot: str | None,
    db: str | None,
    plain: bool,
) -> int:
    """`backtest` with no sweep: one run, its report on stdout."""
    start_ms = None if start is None else parse_when(start, end=False)
    end_ms = None if end is None else parse_when(end, end=True)
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise ConfigurationError("--to", "must be after --from")
    if plot is not None:
        _check_plot_path(Path(plot))
    columns = load_columns(settings, data, start_ms, end_ms)
    advance, bar = _progress_bar(len(columns), quiet=as_json)
    run_id = uuid.uuid4().hex if db is not None else RUN_ID
    try:
        outcome = run_backtest(settings, columns, fast=not plain, run_id=run_id, progress=advance)
    finally:
        if bar is not None:
            bar.close()
    if plot is not None:
        _write_plot(outcome, settings, Path(plot))
    if db is not None:
        _keep_books(db, settings, outcome, run_id)
    if as_json:
        import json

        sys.stdout.write(json.dumps(outcome.report.as_json(), indent=2) + "\n")
        return 0
    lines = outcome.report.lines()
    rate = len(columns) / outcome.seconds if outcome.seconds > 0 else float("inf")
    lines.append(
        f"{'run time':<16}  {outcome.seconds:.2f} s ({rate:,.0f} candles/s; "
        f"{outcome.report.points_stepped:,} of {outcome.report.points:,} price points stepped)"
    )
    if plot is not None:
        lines.append(f"{'picture':<16}  {plot}")
    if db is not None:
        lines.append(f"{'books':<16}  run {run_id} in {db}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _check_plot_path(path: Path) -> None:
    """A bad --plot is refused before the run, not after it."""
    if path.suffix.lower() not in (".png", ".html"):
        raise ConfigurationError("--plot", f"the file name must end in .png or .html, got {path.name!r}")
    if not path.parent.is_dir():
        raise ConfigurationError("--plot", f"directory {str(path.parent)!r} does not exist")


def _write_plot(outcome: Outcome, settings: Settings, path: Path) -> None:
    from adapters.backtest.plot import PlotData, write_plot

    report, curves = outcome.report, outcome.curves
    buys, sells = fills_for_plot(outcome.result)
    title = (
        f"{report.symbol} grid, {len(report.levels)} levels {report.levels[0]} .. {report.levels[-1]} "
        f"({settings.grid.spacing}), {report.period_start:%Y-%m-%d} .. {report.period_end:%Y-%m-%d}"
    )
    data = PlotData(
        title=title,
        times_ms=curves.times_ms,
        close=curves.close,
        equity=curves.equity,
        hold=curves.hold,
        buys=buys,
        sells=sells,
        levels=tuple(float(level) for level in report.levels),
        quote_asset=report.quote_asset,
    )
    try:
        write_plot(data, path)
    except ValueError as exc:
        raise ConfigurationError("--plot", str(exc)) from None


def _keep_books(url: str, settings: Settings, outcome: Outcome, run_id: str) -> None:
    """The run, its orders and its fills in the database at `url` (`status --run-id` shows them)."""
    import asyncio

    from adapters.persistence.database import open_database
    from domain.models import BotRun, RunStatus

    report, result = outcome.report, outcome.result
    grid = settings.grid
    run = BotRun(
        run_id=run_id,
        symbol=report.symbol,
        exchange="backtest",
        status=RunStatus.HALTED if result.halted else RunStatus.STOPPED,
        started_at=report.period_start,
        stopped_at=report.period_end,
        grid_fingerprint=grid_params(settings).fingerprint(report.symbol),
        params={
            "levels": ",".join(str(level) for level in report.levels),
            "quantity": str(report.quantity),
            "start_price": str(report.start_price),
            "investment": str(grid.investment),
            "spacing": grid.spacing,
            "last_price": str(report.last_close),
            "data": report.source,
        },
        stop_reason=result.halted or "end of data",
    )

    async def write() -> None:
        async with open_database(url) as database, database.uow() as uow:
            await uow.runs.add(run)
            for order in result.orders.values():
                await uow.orders.add(order)
            for booked in result.fills:
                await uow.fills.add(booked)
            await uow.commit()

    asyncio.run(write())


def overrides_from(specs: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(specs.items()))
