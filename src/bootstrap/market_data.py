"""Where Binance's public market data comes from, per profile: the URLs (EXCHANGE__REST_URL,
EXCHANGE__WS_URL, or the testnet's / live's own) and the stream feed with its REST fallback.

Used by the testnet/live venue and by the paper venue. The adapters are imported inside the
builders: the default profile never loads them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bootstrap.settings import ExchangeSettings
from domain.models import Ticker
from domain.ports import Clock

if TYPE_CHECKING:
    from adapters.binance.streams import BinanceMarketStreams

TESTNET_REST = "https://testnet.binance.vision"
LIVE_REST = "https://api.binance.com"
TESTNET_WS = "wss://stream.testnet.binance.vision"
LIVE_WS = "wss://stream.binance.com:9443"
MIN_POLL_INTERVAL_S = 1.0  # a fallback ticker poll costs weight 2: at most 120 a minute of 6000


def rest_root(exchange: ExchangeSettings) -> str:
    return (exchange.rest_url or (TESTNET_REST if exchange.testnet else LIVE_REST)).rstrip("/")


def ws_root(exchange: ExchangeSettings) -> str:
    return (exchange.ws_url or (TESTNET_WS if exchange.testnet else LIVE_WS)).rstrip("/")


def market_streams(
    exchange: ExchangeSettings, symbol: str, clock: Clock, poll: Callable[[], Awaitable[Ticker]]
) -> BinanceMarketStreams:
    """The symbol's trade, bookTicker and kline_1m streams over a primary and a standby
    connection; `poll` (an unsigned-or-not REST ticker) is the fallback while no stream is up."""
    from adapters.binance.streams import BinanceMarketStreams, StreamTimings

    return BinanceMarketStreams(
        ws_root(exchange),
        symbol,
        clock,
        poll=poll,
        poll_interval_s=max(exchange.poll_interval_s, MIN_POLL_INTERVAL_S),
        timings=StreamTimings(silence_s=exchange.ws_silence_s),
    )
