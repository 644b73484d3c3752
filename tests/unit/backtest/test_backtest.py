"""The backtest loop (application.backtest) over the real matching engine and candle path.

What a trader relies on: the fast path (quiet stretches skipped) gives exactly the plain path's
fills, balances and PnL; hand-computed cases come out as computed by hand; on real candles the
fills are the grid rule's, as a short independent loop computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.backtest.columns import CandleColumns, units_of
from adapters.backtest.data import load_candles
from adapters.backtest.path import CandlePath
from adapters.simulated.engine import MatchingEngine
from application.backtest import Backtest, BacktestConfig, BacktestResult
from domain.grid import GridParams, Spacing, grid_levels, nearest_level
from domain.models import Side
from domain.risk import MarketStateThresholds, RiskLimits
from domain.rules import MarketRules

DATA = Path(__file__).resolve().parents[2] / "data" / "BTCUSDT-1m.json"
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
CALM = MarketStateThresholds(
    volatile_range=Decimal("0.98"),
    panic_range=Decimal("0.99"),
    volatile_spread=Decimal("0.98"),
    panic_spread=Decimal("0.99"),
)
Candle = tuple[str, str, str, str]  # open, high, low, close
T0 = 1_700_000_000_000 - 1_700_000_000_000 % 60_000


def columns(candles: Sequence[Candle], *, minutes: Sequence[int] | None = None) -> CandleColumns:
    """Candles one minute apart (or at the given minutes, for gaps)."""
    at = list(range(len(candles))) if minutes is None else list(minutes)
    arrays = [np.array([units_of(Decimal(c[i])) for c in candles], dtype=np.int64) for i in range(4)]
    return CandleColumns(np.array([T0 + m * 60_000 for m in at], dtype=np.int64), *arrays, source="test")


def config(
    lower: str,
    upper: str,
    levels: int,
    *,
    investment: str = "10000",
    spacing: Spacing = Spacing.ARITHMETIC,
    fee: str = "0.001",
    thresholds: MarketStateThresholds = CALM,
    stop_loss: str | None = None,
    take_profit: str | None = None,
    sell_on_stop: bool = False,
    window_s: float = 900.0,
) -> BacktestConfig:
    grid = GridParams(Decimal(lower), Decimal(upper), levels, spacing, Decimal(investment))
    return BacktestConfig(
        symbol="BTC/USDT",
        rules=RULES,
        grid=grid,
        limits=RiskLimits(
            investment=grid.investment,
            max_open_orders=200,
            stop_loss=None if stop_loss is None else Decimal(stop_loss),
            take_profit=None if take_profit is None else Decimal(take_profit),
            sell_on_stop=sell_on_stop,
        ),
        maker_fee=Decimal(fee),
        taker_fee=Decimal(fee),
        thresholds=thresholds,
        volatility_window_s=window_s,
    )


def run(
    cfg: BacktestConfig, data: CandleColumns, *, fast: bool = True
) -> tuple[BacktestResult, MatchingEngine]:
    engine = MatchingEngine(
        RULES,
        {"USDT": cfg.grid.investment, "BTC": Decimal(0)},
        maker_fee=cfg.maker_fee,
        taker_fee=cfg.taker_fee,
    )
    return Backtest(cfg, engine, CandlePath(data), fast=fast).run(), engine


def story(result: BacktestResult) -> list[tuple[str, str, str, Decimal, Decimal, Decimal, Decimal]]:
    """Every fill as a trader would check it: when, what, at what price, how much, fee, profit."""
    return [
        (
            b.fill.timestamp.isoformat(),
            b.fill.client_order_id,
            b.fill.side.value,
            b.fill.price,
            b.fill.amount,
            b.fill.fee,
            b.realized_pnl,
        )
        for b in result.fills
    ]


def assert_same_outcome(cfg: BacktestConfig, data: CandleColumns) -> BacktestResult:
    fast, fast_engine = run(cfg, data, fast=True)
    plain, plain_engine = run(cfg, data, fast=False)
    assert story(fast) == story(plain)
    assert fast_engine.balances() == plain_engine.balances()
    assert fast.realized_pnl == plain.realized_pnl
    assert (fast.halted, fast.halted_at) == (plain.halted, plain.halted_at)
    assert (fast.grid_fills, fast.completed_cycles) == (plain.grid_fills, plain.completed_cycles)
    assert [(s.quote, s.base) for s in fast.snapshots][-1] == [(s.quote, s.base) for s in plain.snapshots][-1]
    assert fast.points_stepped <= plain.points_stepped
    return fast


# ---------------------------------------------------------------------------- fast == plain
def test_fast_and_plain_agree_on_real_candles_with_the_market_state_holding_orders() -> None:
    data = load_candles(DATA)
    cfg = config(
        "20000",
        "56000",
        37,
        thresholds=MarketStateThresholds(volatile_range=Decimal("0.02"), panic_range=Decimal("0.03")),
    )
    result = assert_same_outcome(cfg, data)
    assert result.grid_fills > 100
    assert (
        any(event == "order held" for _, event in result.notes) or result.points_stepped > result.grid_fills
    )


def test_the_books_match_the_engine_after_holds_owed_orders_and_crossings() -> None:
    """A tight grid in a jumpy market: buys held in panic, counter-orders owed, live orders
    withdrawn to cross them (some placed after the withdrawal was decided). At the end, the
    engine rests exactly the orders the books hold live, and its base is what the books say."""
    whole = load_candles(DATA)
    data = whole.between(None, int(whole.open_time_ms[2500]))
    cfg = config(
        "22000",
        "30000",
        41,
        thresholds=MarketStateThresholds(volatile_range=Decimal("0.01"), panic_range=Decimal("0.015")),
    )
    engine = MatchingEngine(
        RULES,
        {"USDT": cfg.grid.investment, "BTC": Decimal(0)},
        maker_fee=cfg.maker_fee,
        taker_fee=cfg.taker_fee,
    )
    backtest = Backtest(cfg, engine, CandlePath(data), fast=True)
    result = backtest.run()
    events = {event for _, event in result.notes}
    assert result.grid_fills > 200
    live = {
        o.client_order_id
        for o in backtest.core.active_orders
        if o.status.value in ("open", "partially_filled")
    }
    assert {o.client_order_id for o in engine.open_orders()} == live
    base = engine.balances()["BTC"]
    assert base.free + base.locked == backtest.core.position
    assert not any(severity == "error" for severity, _ in result.notes), events


def test_fast_and_plain_agree_on_real_candles_with_a_geometric_grid_and_a_stop_that_fires() -> None:
    data = load_candles(DATA)
    cfg = config("23000", "45000", 50, spacing=Spacing.GEOMETRIC, take_profit="47000", sell_on_stop=True)
    result = assert_same_outcome(cfg, data)
    assert result.halted is not None and "take-profit" in result.halted


candle_prices = st.integers(min_value=900, max_value=1100)


@st.composite
def paths(draw: st.DrawFn) -> tuple[list[Candle], list[int]]:
    """Candles that wander, jump (gaps between closes and opens), cross several levels at once,
    and skip minutes."""
    count = draw(st.integers(min_value=2, max_value=60))
    candles: list[Candle] = []
    minutes: list[int] = []
    minute = 0
    close = draw(candle_prices)
    for _ in range(count):
        open_ = close if draw(st.booleans()) else draw(candle_prices)
        close = draw(candle_prices)
        high = max(open_, close) + draw(st.integers(0, 40))
        low = max(1, min(open_, close) - draw(st.integers(0, 40)))
        candles.append((str(open_), str(high), str(low), str(close)))
        minutes.append(minute)
        minute += draw(st.sampled_from([1, 1, 1, 2, 7, 30]))
    return candles, minutes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=paths(),
    levels=st.integers(min_value=3, max_value=12),
    stop=st.sampled_from([None, "850", "880"]),
    take=st.sampled_from([None, "1150", "1120"]),
    sell_on_stop=st.booleans(),
    ranges=st.sampled_from([(Decimal("0.98"), Decimal("0.99")), (Decimal("0.02"), Decimal("0.05"))]),
    window_s=st.sampled_from([60.0, 100.0, 900.0]),
    spacing=st.sampled_from(list(Spacing)),
)
def test_fast_and_plain_agree_on_any_path(
    path: tuple[list[Candle], list[int]],
    levels: int,
    stop: str | None,
    take: str | None,
    sell_on_stop: bool,
    ranges: tuple[Decimal, Decimal],
    window_s: float,
    spacing: Spacing,
) -> None:
    candles, minutes = path
    first = Decimal(candles[0][0])
    lower, upper = "900", "1100"
    if not Decimal(lower) <= first <= Decimal(upper):
        return
    thresholds = MarketStateThresholds(volatile_range=ranges[0], panic_range=ranges[1])
    cfg = config(
        lower,
        upper,
        levels,
        investment="100000",
        spacing=spacing,
        thresholds=thresholds,
        stop_loss=stop,
        take_profit=take,
        sell_on_stop=sell_on_stop,
        window_s=window_s,
    )
    assert_same_outcome(cfg, columns(candles, minutes=minutes))


# ---------------------------------------------------------------------------- by hand
def test_a_price_oscillating_between_two_levels_n_times_completes_n_cycles() -> None:
    """Levels 900, 950, ..., 1100; the price starts at 1010 (level 2, 1000, stays empty) and goes
    down to 950 and back up to 1000 five times. Without fees each cycle earns the level gap times
    the quantity."""
    start = ("1010", "1010", "1010", "1010")
    down = ("1000", "1000", "950", "950")  # falling candle: open, high, low, close
    up = ("950", "1000", "950", "1000")  # rising
    cfg = config("900", "1100", 5, investment="5000", fee="0")
    result, engine = run(cfg, columns([start, *[c for _ in range(5) for c in (down, up)]]))
    q = result.quantity
    assert result.completed_cycles == 5
    assert result.realized_pnl == 5 * Decimal(50) * q
    # The rest of the ladder never moved: one buy at 900, sells at 1050 and 1100, and a buy back at 950.
    resting = sorted((o.side.value, o.price) for o in engine.open_orders())
    assert resting == [
        ("buy", Decimal(900)),
        ("buy", Decimal(950)),
        ("sell", Decimal(1050)),
        ("sell", Decimal(1100)),
    ]


def test_each_cycle_with_fees_earns_the_gap_less_both_fees() -> None:
    """With a 0.1% fee and 0.01 BTC per level (an investment of 38.74 USDT gives that), a buy at
    950 receives 0.00999 BTC after its fee in base; its counter-sell at 1000 sells those for
    9.99 USDT less 0.00999 USDT of fee, against the 9.5 USDT the buy cost: 0.48001 per cycle."""
    start = ("1010", "1010", "1010", "1010")
    down = ("1000", "1000", "950", "950")
    up = ("950", "1000", "950", "1000")
    cfg = config("900", "1100", 5, investment="38.74", fee="0.001")
    result, _ = run(cfg, columns([start, *[c for _ in range(3) for c in (down, up)]]))
    assert result.quantity == Decimal("0.01")
    cycle_sells = [b for b in result.fills if b.fill.side is Side.SELL and b.fill.price == 1000]
    assert result.completed_cycles == len(cycle_sells) == 3
    for booked in cycle_sells:
        assert booked.fill.amount == Decimal("0.00999")
        assert booked.fill.fee == Decimal("0.00999")
        assert booked.realized_pnl == Decimal("0.48001")
    assert result.realized_pnl == 3 * Decimal("0.48001")


def test_a_candle_gapping_through_several_buys_fills_them_all_at_its_open() -> None:
    """A candle opening at 905, under the buys at 950, 1000 and 1050 (the grid started at 1080):
    all three fill at 905, the gap's price, never worse for the buyer."""
    cfg = config("900", "1150", 6, investment="10000", fee="0")
    data = columns([("1080", "1080", "1080", "1080"), ("905", "910", "905", "910")])
    result, _ = run(cfg, data)
    buys = [b.fill for b in result.fills if b.fill.side is Side.BUY and b.fill.price != Decimal(1080)]
    assert [f.price for f in buys] == [Decimal(905)] * 3
    assert result.grid_fills == 3
    assert_same_outcome(cfg, data)


def test_a_stop_loss_fires_on_the_candle_that_crosses_it_and_sells_the_base() -> None:
    cfg = config("900", "1100", 5, stop_loss="880", sell_on_stop=True, fee="0")
    quiet = ("1010", "1012", "1008", "1010")
    crash = ("1000", "1000", "870", "875")  # its path reaches 870, under the stop
    data = columns([quiet, quiet, quiet, crash, quiet])
    result, engine = run(cfg, data)
    assert result.halted is not None and "stop-loss" in result.halted
    assert result.halted_at is not None and result.halted_at // 4 == 3  # the crash candle
    assert engine.open_orders() == []
    assert engine.balances()["BTC"].free == 0  # the grid's base was sold at market
    assert result.fills[-1].fill.side is Side.SELL


def test_a_take_profit_fires_on_the_candle_that_crosses_it() -> None:
    cfg = config("900", "1100", 5, take_profit="1150", fee="0")
    quiet = ("1010", "1012", "1008", "1010")
    data = columns([quiet, quiet, ("1010", "1160", "1005", "1100"), quiet])
    result, _ = run(cfg, data)
    assert result.halted is not None and "take-profit" in result.halted
    assert result.halted_at is not None and result.halted_at // 4 == 2


# ---------------------------------------------------------------------------- the grid rule
def grid_rule_fills(data: CandleColumns, levels: Sequence[Decimal]) -> list[tuple[str, int]]:
    """The grid rule (ARCHITECTURE.md), independently: the level nearest the first price stays
    empty, buys below, sells above; a buy filled at i puts a sell at i+1, a sell filled at i a buy
    at i-1. The price walks each candle's path (open, then low and high in path order, then close)."""
    start = Decimal(int(data.open[0])) / 10**8
    empty = nearest_level(levels, start)
    orders = dict.fromkeys(range(empty), "buy") | dict.fromkeys(range(empty + 1, len(levels)), "sell")
    fills: list[tuple[str, int]] = []
    path = CandlePath(data)
    last = path.point(0).price
    for k in range(1, len(path)):
        price = path.point(k).price
        if price < last:
            for i in sorted(
                (i for i, side in orders.items() if side == "buy" and levels[i] >= price), reverse=True
            ):
                del orders[i]
                fills.append(("buy", i))
                if i + 1 < len(levels):
                    orders[i + 1] = "sell"
        elif price > last:
            for i in sorted(i for i, side in orders.items() if side == "sell" and levels[i] <= price):
                del orders[i]
                fills.append(("sell", i))
                if i > 0:
                    orders[i - 1] = "buy"
        last = price
    return fills


def test_on_real_candles_the_fills_are_the_grid_rules() -> None:
    data = load_candles(DATA)
    cfg = config("20000", "56000", 37, investment="10000")
    result, _ = run(cfg, data)
    levels = grid_levels(Decimal(20000), Decimal(56000), 37, Spacing.ARITHMETIC, RULES.tick_size).unwrap()
    expected = grid_rule_fills(data, levels)
    grid = [b for b in result.fills if result.orders[b.fill.client_order_id].level >= 0]
    assert [(b.fill.side.value, result.orders[b.fill.client_order_id].level) for b in grid] == expected
    assert len(expected) > 150


def test_a_run_is_deterministic() -> None:
    data = load_candles(DATA)
    cfg = config("20000", "56000", 37)
    first, _ = run(cfg, data)
    second, _ = run(replace(cfg), data)
    assert story(first) == story(second)
