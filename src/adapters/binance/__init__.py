"""Binance spot over REST through ccxt: the ExchangeGateway adapter.

Importing this package does not import ccxt; `open_binance_gateway` does, when it is called.
"""

from adapters.binance.config import BinanceConfig
from adapters.binance.gateway import BinanceGateway, open_binance_gateway

__all__ = ["BinanceConfig", "BinanceGateway", "open_binance_gateway"]
