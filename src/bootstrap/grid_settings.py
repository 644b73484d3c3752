"""The domain's grid, risk and market-state parameters from the settings: one place for what the
live bot and a backtest both read."""

from __future__ import annotations

from bootstrap.settings import Settings
from domain.grid import GridParams, Spacing
from domain.risk import MarketStateThresholds, RiskLimits


def grid_params(settings: Settings) -> GridParams:
    grid = settings.grid
    return GridParams(
        lower=grid.lower,
        upper=grid.upper,
        levels=grid.levels,
        spacing=Spacing(grid.spacing),
        investment=grid.investment,
    )


def risk_limits(settings: Settings) -> RiskLimits:
    risk = settings.risk
    return RiskLimits(
        investment=settings.grid.investment,
        max_open_orders=risk.max_open_orders,
        stop_loss=risk.stop_loss,
        take_profit=risk.take_profit,
        sell_on_stop=risk.sell_on_stop,
    )


def market_thresholds(settings: Settings) -> MarketStateThresholds:
    risk = settings.risk
    return MarketStateThresholds(
        volatile_range=risk.volatile_range,
        panic_range=risk.panic_range,
        volatile_spread=risk.volatile_spread,
        panic_spread=risk.panic_spread,
    )
