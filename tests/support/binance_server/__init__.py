"""A Binance-spot-compatible REST server on 127.0.0.1 for integration tests, e2e runs and
benchmarks. See `app.py` for what it models; `running_fake_binance` is the usual entry point:

    async with running_fake_binance(prices={"BTC/USDT": Decimal("30000")}) as server:
        exchange.urls["api"]["public"] = exchange.urls["api"]["private"] = server.api_url
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from support.binance_server.app import FakeBinance, RecordedRequest
from support.binance_server.clock import ManualClock
from support.binance_server.limits import RateLimit, default_rate_limits
from support.binance_server.market import SymbolSpec

__all__ = [
    "FakeBinance",
    "ManualClock",
    "RateLimit",
    "RecordedRequest",
    "SymbolSpec",
    "default_rate_limits",
    "running_fake_binance",
]


@asynccontextmanager
async def running_fake_binance(
    *, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> AsyncIterator[FakeBinance]:
    """A started `FakeBinance` (keyword arguments go to its constructor), stopped on exit."""
    server = FakeBinance(**kwargs)
    await server.start(host, port)
    try:
        yield server
    finally:
        await server.stop()
