"""The simulated exchange: one matching engine for the mock profile, paper trading, backtests and
the loopback Binance test server, plus the price paths that drive it."""

from adapters.simulated.engine import MatchingEngine
from adapters.simulated.exchange import FaultConfig, SimulatedExchange
from adapters.simulated.price_source import (
    CandleFilePriceSource,
    CandlePriceSource,
    PricePoint,
    PriceSource,
    SyntheticPriceSource,
    load_candles,
    parse_candles,
)
from adapters.simulated.state_store import SqliteStateStore

__all__ = [
    "CandleFilePriceSource",
    "CandlePriceSource",
    "FaultConfig",
    "MatchingEngine",
    "PricePoint",
    "PriceSource",
    "SimulatedExchange",
    "SqliteStateStore",
    "SyntheticPriceSource",
    "load_candles",
    "parse_candles",
]
