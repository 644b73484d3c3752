"""Market rules and hypothesis strategies shared by the domain tests.

Prices and quantities are drawn as whole multiples of the tick or step, so every `Decimal` is built
from integers and no float ever enters a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st
from returns.result import Failure, Result

from domain.errors import Rejection
from domain.grid import GridParams, Spacing
from domain.rules import MarketRules

MAKER_FEE = Decimal("0.001")
TAKER_FEE = Decimal("0.001")


def btc_usdt_rules(**overrides: object) -> MarketRules:
    """Binance BTCUSDT as it trades today (the grid's default market)."""
    fields: dict[str, object] = {
        "symbol": "BTC/USDT",
        "base_asset": "BTC",
        "quote_asset": "USDT",
        "tick_size": Decimal("0.01"),
        "step_size": Decimal("0.00001"),
        "min_qty": Decimal("0.00001"),
        "max_qty": Decimal("9000"),
        "min_notional": Decimal("5"),
        "max_notional": Decimal("9000000"),
        "max_num_orders": 200,
    }
    fields.update(overrides)
    return MarketRules(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True)
class MarketProfile:
    """A market's rules plus the price band its coin trades in, in ticks."""

    rules: MarketRules
    min_center_ticks: int
    max_center_ticks: int


def _rules(symbol: str, tick: str, step: str, min_qty: str, min_notional: str) -> MarketRules:
    base, quote = symbol.split("/")
    return MarketRules(
        symbol=symbol,
        base_asset=base,
        quote_asset=quote,
        tick_size=Decimal(tick),
        step_size=Decimal(step),
        min_qty=Decimal(min_qty),
        min_notional=Decimal(min_notional),
        max_num_orders=200,
    )


PROFILES: tuple[MarketProfile, ...] = (
    # BTC/USDT: 20k..120k USDT
    MarketProfile(btc_usdt_rules(), 2_000_000, 12_000_000),
    # A coarse tick with a 0.001 step, ETH-like prices: 500..5000
    MarketProfile(_rules("ETH/USDT", "0.5", "0.001", "0.001", "10"), 1_000, 10_000),
    # Whole-unit tick and whole-unit step: 100..2000
    MarketProfile(_rules("BNB/USDT", "1", "1", "1", "5"), 100, 2_000),
    # A cheap coin with a fine tick and whole-coin step: 0.05..0.9
    MarketProfile(_rules("DOGE/USDT", "0.0001", "1", "1", "1"), 500, 9_000),
    # A fine tick with a 0.001 step: 1..50
    MarketProfile(_rules("XYZ/USDT", "0.0001", "0.001", "0.001", "5"), 10_000, 500_000),
)

profiles = st.sampled_from(PROFILES)


@dataclass(frozen=True)
class GridCase:
    """A market, a grid that should be plannable on it, and a start price inside it."""

    rules: MarketRules
    params: GridParams
    start_price: Decimal


@st.composite
def grid_cases(draw: st.DrawFn) -> GridCase:
    """Grids whose spacing clears the round-trip fees and whose investment is a few times the least
    that fits the filters; `plan_grid` should accept almost all of them (tests `assume` the rest)."""
    profile = draw(profiles)
    rules = profile.rules
    tick = rules.tick_size
    center = draw(st.integers(profile.min_center_ticks, profile.max_center_ticks))
    # Range width 4%..60% of the center, split below/above it.
    width_bp = draw(st.integers(400, 6_000))
    below_share = draw(st.integers(20, 80))
    span = center * width_bp // 10_000
    lower_ticks = center - span * below_share // 100
    upper_ticks = lower_ticks + span
    lower, upper = lower_ticks * tick, upper_ticks * tick
    spacing = draw(st.sampled_from(Spacing))
    # At least ~0.4% between adjacent levels (fees take 0.2% per round trip), measured at the top.
    max_gaps = max(1, int((upper - lower) / (upper * Decimal("0.004"))))
    levels = draw(st.integers(2, min(max_gaps + 1, 40)))
    # Least per-level quantity that passes the filters, even for the sell after the maker fee.
    per_level = max(rules.min_qty, rules.step_size, rules.min_notional / lower) * Decimal("1.01")
    per_level = rules.ceil_amount(per_level) + 2 * rules.step_size
    factor = draw(st.integers(100, 3_000))
    investment = (per_level * upper * levels * factor / 100).quantize(Decimal("0.01"))
    start_ticks = draw(st.integers(lower_ticks, upper_ticks))
    return GridCase(
        rules=rules,
        params=GridParams(lower, upper, levels, spacing, investment),
        start_price=start_ticks * tick,
    )


def assert_accepted(result: Result[Any, Rejection]) -> None:
    """Fail with the rejection's own words, which name the rule."""
    assert not isinstance(result, Failure), f"refused: {result.failure()}"
