"""Opening the real adapter against the loopback Binance stand-in.

The stand-in reads its time from the same simulated clock as the adapter (ccxt signs with it
too), so rate-limit windows, Retry-After and backoffs pass without anybody waiting on wall time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from adapters.binance import BinanceConfig, BinanceGateway, open_binance_gateway
from adapters.clock import SimulatedClock
from support.binance_server import FakeBinance, running_fake_binance

START = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)
API_KEY = "test-api-key"
API_SECRET = "test-api-secret"
SYMBOL = "BTC/USDT"


def millis(clock: SimulatedClock) -> Callable[[], int]:
    return lambda: int(clock.now().timestamp() * 1000)


def config_for(server: FakeBinance, **overrides: Any) -> BinanceConfig:
    return replace(
        BinanceConfig(api_key=API_KEY, api_secret=API_SECRET, rest_url=server.base_url), **overrides
    )


@asynccontextmanager
async def open_venue(
    clock: SimulatedClock, *, config: dict[str, Any] | None = None, **server_kwargs: Any
) -> AsyncIterator[tuple[FakeBinance, BinanceGateway]]:
    async with (
        running_fake_binance(now_ms=millis(clock), **server_kwargs) as server,
        open_binance_gateway(config_for(server, **(config or {})), clock) as gateway,
    ):
        yield server, gateway
