"""Where Binance's data comes from, per profile: the URLs (EXCHANGE__REST_URL, EXCHANGE__WS_URL,
EXCHANGE__WS_API_URL, or the testnet's / live's own), the market stream feed and the user data
stream, each with its REST fallback.

The market streams serve the testnet/live venue and the paper venue; the user data stream only the
testnet/live venue (paper never signs anything). The adapters are imported inside the
builders: the default profile never loads them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bootstrap.settings import ExchangeSettings
from domain.models import Ticker
from domain.ports import Clock

if TYPE_CHECKING:
    from adapters.binance import BinanceGateway
    from adapters.binance.streams import BinanceMarketStreams
    from adapters.binance.user_stream import BinanceUserStream

TESTNET_REST = "https://testnet.binance.vision"
LIVE_REST = "https://api.binance.com"
TESTNET_WS = "wss://stream.testnet.binance.vision"
LIVE_WS = "wss://stream.binance.com:9443"
TESTNET_WS_API = "wss://ws-api.testnet.binance.vision/ws-api/v3"
LIVE_WS_API = "wss://ws-api.binance.com:443/ws-api/v3"
MIN_POLL_INTERVAL_S = 1.0  # a fallback ticker poll costs weight 2: at most 120 a minute of 6000


def rest_root(exchange: ExchangeSettings) -> str:
    return (exchange.rest_url or (TESTNET_REST if exchange.testnet else LIVE_REST)).rstrip("/")


def ws_root(exchange: ExchangeSettings) -> str:
    return (exchange.ws_url or (TESTNET_WS if exchange.testnet else LIVE_WS)).rstrip("/")


def ws_api_url(exchange: ExchangeSettings) -> str:
    return exchange.ws_api_url or (TESTNET_WS_API if exchange.testnet else LIVE_WS_API)


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


def user_stream(
    exchange: ExchangeSettings, symbol: str, clock: Clock, gateway: BinanceGateway
) -> BinanceUserStream:
    """The account's fills of `symbol` over the WebSocket API user data stream, signed with the
    account's keys and the gateway's measure of the venue's clock; the gateway's myTrades is its
    catch-up after every reconnect and its fallback while no stream is up."""
    from functools import partial

    from adapters.binance.user_stream import BinanceUserStream, Credentials, UserStreamTimings

    if exchange.api_key is None or exchange.api_secret is None:
        raise ValueError("the user data stream needs EXCHANGE__API_KEY and EXCHANGE__API_SECRET")
    return BinanceUserStream(
        ws_api_url(exchange),
        symbol,
        Credentials(exchange.api_key.get_secret_value(), exchange.api_secret.get_secret_value()),
        clock,
        fetch_trades=partial(gateway.fetch_my_trades, symbol),
        venue_time_ms=gateway.venue_time_ms,
        recv_window_ms=exchange.recv_window_ms,
        on_clock_skew=gateway.resync_time,
        poll_interval_s=max(exchange.poll_interval_s, MIN_POLL_INTERVAL_S),
        timings=UserStreamTimings(quiet_s=exchange.ws_silence_s),
    )
