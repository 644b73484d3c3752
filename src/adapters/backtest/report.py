"""What a backtest gives its user: the figures, and the curves behind the picture.

Money is exact (Decimal from the books and the engine's balances). The equity curve (the
account's value at each candle's close) is computed with numpy floats to find the largest
drawdown quickly; the drawdown reported is then recomputed exactly at the peak and the trough
found.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from adapters.backtest.columns import PRICE_UNIT, CandleColumns, DataIssues, price_of
from adapters.backtest.path import POINTS_PER_CANDLE
from application.backtest import BacktestResult, Snapshot
from domain.models import ZERO, Side

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CENT = Decimal("0.01")
_PCT = Decimal("0.01")
FloatArray = npt.NDArray[np.float64]


def _utc(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _money(value: Decimal) -> str:
    """Exact, without an exponent or trailing zeros (8 places at most)."""
    text = f"{value.quantize(Decimal('0.00000001')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _pct(fraction: Decimal) -> str:
    return f"{(fraction * 100).quantize(_PCT):f}"


@dataclass(frozen=True, slots=True)
class Curves:
    """Per candle: the close, the grid account's value and the value of holding."""

    times_ms: npt.NDArray[np.int64]
    close: FloatArray
    equity: FloatArray
    hold: FloatArray


@dataclass(frozen=True, slots=True)
class BacktestReport:
    symbol: str
    base_asset: str
    quote_asset: str
    period_start: datetime
    period_end: datetime
    candles: int
    levels: tuple[Decimal, ...]
    quantity: Decimal
    start_price: Decimal
    last_close: Decimal
    grid_fills: int
    fills: int
    completed_cycles: int
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    fees_paid: Decimal  # in quote: base fees valued at their fill's price
    start_balances: dict[str, Decimal]
    final_balances: dict[str, Decimal]
    start_equity: Decimal
    final_equity: Decimal
    return_fraction: Decimal
    hold_return_fraction: Decimal
    max_drawdown: Decimal  # in quote, peak to trough
    max_drawdown_fraction: Decimal
    time_in_grid_fraction: Decimal
    halted: str | None
    halted_at: datetime | None
    points_stepped: int
    points: int
    issues: DataIssues
    source: str

    def as_json(self) -> dict[str, object]:
        """The report as JSON values: decimals as strings, counts as ints, times as ISO 8601 UTC."""
        issues = self.issues
        return {
            "symbol": self.symbol,
            "source": self.source,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "candles": self.candles,
            "levels": len(self.levels),
            "lower": str(self.levels[0]),
            "upper": str(self.levels[-1]),
            "quantity_per_level": str(self.quantity),
            "start_price": str(self.start_price),
            "last_close": str(self.last_close),
            "grid_fills": self.grid_fills,
            "fills": self.fills,
            "completed_cycles": self.completed_cycles,
            "realized_pnl": _money(self.realized_pnl),
            "unrealized_pnl": _money(self.unrealized_pnl),
            "fees_paid": _money(self.fees_paid),
            "start_balances": {k: _money(v) for k, v in sorted(self.start_balances.items())},
            "final_balances": {k: _money(v) for k, v in sorted(self.final_balances.items())},
            "start_equity": _money(self.start_equity),
            "final_equity": _money(self.final_equity),
            "return_pct": _pct(self.return_fraction),
            "hold_return_pct": _pct(self.hold_return_fraction),
            "max_drawdown": _money(self.max_drawdown),
            "max_drawdown_pct": _pct(self.max_drawdown_fraction),
            "time_in_grid_pct": _pct(self.time_in_grid_fraction),
            "halted": self.halted,
            "halted_at": None if self.halted_at is None else self.halted_at.isoformat(),
            "data_issues": {
                "gaps": issues.gaps,
                "missing_minutes": issues.missing_minutes,
                "largest_gap_minutes": issues.largest_gap_minutes,
                "duplicates_dropped": issues.duplicates_dropped,
                "out_of_order": issues.out_of_order,
                "examples": list(issues.examples),
            },
        }

    def lines(self) -> list[str]:
        """The report for a terminal: one figure per line, aligned."""
        q = self.quote_asset
        issues = self.issues
        rows = [
            ("period", f"{self.period_start:%Y-%m-%d %H:%M} .. {self.period_end:%Y-%m-%d %H:%M} UTC"),
            ("data", f"{self.source}: {self.candles:,} candles"),
            (
                "grid",
                f"{len(self.levels)} levels {self.levels[0]} .. {self.levels[-1]}, "
                f"{self.quantity} {self.base_asset} per level, started at {self.start_price}",
            ),
            ("grid fills", f"{self.grid_fills:,} (all fills {self.fills:,})"),
            ("completed cycles", f"{self.completed_cycles:,}"),
            ("realized PnL", f"{self.realized_pnl.quantize(_CENT):,} {q}"),
            (
                "unrealized PnL",
                f"{self.unrealized_pnl.quantize(_CENT):,} {q} (at the last close {self.last_close})",
            ),
            ("fees paid", f"{self.fees_paid.quantize(_CENT):,} {q}"),
            (
                "final balances",
                ", ".join(f"{_money(v)} {k}" for k, v in sorted(self.final_balances.items())),
            ),
            ("equity", f"{self.start_equity.quantize(_CENT):,} -> {self.final_equity.quantize(_CENT):,} {q}"),
            ("return", f"{_pct(self.return_fraction)}% (holding: {_pct(self.hold_return_fraction)}%)"),
            (
                "max drawdown",
                f"{_pct(self.max_drawdown_fraction)}% ({self.max_drawdown.quantize(_CENT):,} {q})",
            ),
            ("time in the grid", f"{_pct(self.time_in_grid_fraction)}% of candles closed inside it"),
        ]
        if self.halted is not None and self.halted_at is not None:
            rows.append(("halted", f"{self.halted_at:%Y-%m-%d %H:%M} UTC: {self.halted}"))
        if not issues.clean:
            rows.append(
                (
                    "data issues",
                    f"{issues.gaps} gap(s), {issues.missing_minutes:,} minute(s) missing "
                    f"(largest {issues.largest_gap_minutes:,}); {issues.duplicates_dropped} duplicate row(s) "
                    f"dropped; {issues.out_of_order} row(s) out of order, sorted",
                )
            )
            rows.extend(("", example) for example in issues.examples)
        width = max(len(name) for name, _ in rows)
        return [f"{name:<{width}}  {value}" for name, value in rows]


def build_report(
    result: BacktestResult,
    columns: CandleColumns,
    *,
    symbol: str,
    base_asset: str,
    quote_asset: str,
    start_balances: dict[str, Decimal],
) -> tuple[BacktestReport, Curves]:
    times = columns.open_time_ms
    first_open = price_of(int(columns.open[0]))
    last_close = price_of(int(columns.close[-1]))
    snaps = result.snapshots
    quote0 = start_balances.get(quote_asset, ZERO)
    base0 = start_balances.get(base_asset, ZERO)
    start_equity = quote0 + base0 * first_open
    final = snaps[-1]
    final_equity = final.quote + final.base * last_close
    total = final_equity - start_equity

    # The account at each candle's close: the latest snapshot taken at or before that point.
    close_points = np.arange(len(columns), dtype=np.int64) * POINTS_PER_CANDLE + (POINTS_PER_CANDLE - 1)
    snap_points = np.array([s.k for s in snaps], dtype=np.int64)
    which = np.searchsorted(snap_points, close_points, side="right") - 1
    which = np.maximum(which, 0)
    quote_f = np.array([float(s.quote) for s in snaps])[which]
    base_f = np.array([float(s.base) for s in snaps])[which]
    close_f = columns.close.astype(np.float64) / PRICE_UNIT
    equity = quote_f + base_f * close_f
    hold = float(start_equity) * close_f / (float(first_open))

    drawdown, drawdown_fraction = _max_drawdown(equity, which, columns, snaps)
    lower, upper = result.levels[0], result.levels[-1]
    inside = int(
        np.count_nonzero((columns.close >= int(lower.scaleb(8))) & (columns.close <= int(upper.scaleb(8))))
    )
    fees = sum(
        (b.fill.fee * b.fill.price if b.fill.fee_asset == base_asset else b.fill.fee for b in result.fills),
        ZERO,
    )
    final_balances = {quote_asset: final.quote, base_asset: final.base}
    halted_at = None if result.halted_at is None else _utc(int(times[result.halted_at // POINTS_PER_CANDLE]))
    report = BacktestReport(
        symbol=symbol,
        base_asset=base_asset,
        quote_asset=quote_asset,
        period_start=_utc(int(times[0])),
        period_end=_utc(int(times[-1]) + 60_000),
        candles=len(columns),
        levels=result.levels,
        quantity=result.quantity,
        start_price=result.start_price,
        last_close=last_close,
        grid_fills=result.grid_fills,
        fills=len(result.fills),
        completed_cycles=result.completed_cycles,
        realized_pnl=result.realized_pnl,
        unrealized_pnl=total - result.realized_pnl,
        fees_paid=fees,
        start_balances={quote_asset: quote0, base_asset: base0},
        final_balances=final_balances,
        start_equity=start_equity,
        final_equity=final_equity,
        return_fraction=total / start_equity if start_equity > 0 else ZERO,
        hold_return_fraction=last_close / first_open - 1,
        max_drawdown=drawdown,
        max_drawdown_fraction=drawdown_fraction,
        time_in_grid_fraction=Decimal(inside) / Decimal(len(columns)),
        halted=result.halted,
        halted_at=halted_at,
        points_stepped=result.points_stepped,
        points=len(columns) * POINTS_PER_CANDLE,
        issues=columns.issues,
        source=columns.source,
    )
    return report, Curves(times, close_f, equity, hold)


def _max_drawdown(
    equity: FloatArray, which: npt.NDArray[np.int64], columns: CandleColumns, snaps: list[Snapshot]
) -> tuple[Decimal, Decimal]:
    """The largest fall from a peak of the equity curve, exactly: found on floats, then the value
    at that peak and that trough recomputed from the exact balances and closes."""
    if equity.size == 0:
        return ZERO, ZERO
    peaks = np.maximum.accumulate(equity)
    with np.errstate(divide="ignore", invalid="ignore"):
        falls = np.where(peaks > 0, (peaks - equity) / peaks, 0.0)
    trough = int(falls.argmax())
    if falls[trough] <= 0:
        return ZERO, ZERO
    peak = int(equity[: trough + 1].argmax())

    def exact(candle: int) -> Decimal:
        snap = snaps[int(which[candle])]
        return snap.quote + snap.base * price_of(int(columns.close[candle]))

    high, low = exact(peak), exact(trough)
    return high - low, (high - low) / high if high > 0 else ZERO


def fills_for_plot(
    result: BacktestResult,
) -> tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]:
    """(buys, sells) as (time in ms, price) for the picture."""
    buys: list[tuple[int, float]] = []
    sells: list[tuple[int, float]] = []
    for booked in result.fills:
        fill = booked.fill
        ms = int((fill.timestamp - _EPOCH).total_seconds() * 1000)
        (buys if fill.side is Side.BUY else sells).append((ms, float(fill.price)))
    return tuple(buys), tuple(sells)
