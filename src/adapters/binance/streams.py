"""Binance spot market data over WebSocket streams: the MarketDataFeed adapter.

One combined stream (`<root>/stream?streams=<sym>@trade/<sym>@bookTicker/<sym>@kline_1m`) per
connection, and two connections side by side: a *primary* and a *standby*. Both deliver; every
event is taken once, from whichever connection brings it first (trades by trade id, book tops by
update id, candles by open time, event time and last trade id: older or equal ones are dropped). So when one
connection drops, the other is already carrying the market: nothing is missed and nothing is
seen twice.

Each connection:
* answers the server's pings with their payload (the `websockets` library does it) and pings the
  server itself, so a dead TCP path is noticed;
* is replaced when no data came for `silence_s` (a stalled server still answers pings);
* is reconnected after a drop with exponential backoff and jitter, forever;
* is recycled on plan before Binance's 24 h connection limit (`max_age_s`), only while the other
  connection is up, and the two are staggered so that they never recycle together.

When no connection has been up for `fallback_after_s`, prices come from `poll` (REST) every
`poll_interval_s` instead, until a stream is back: one log line when falling back, one when back
on streams. With a stream up nothing is polled.

Consumers: `tickers(symbol)` (the grid bot: the latest ticker, conflated, so a slow consumer
always gets the newest price and never a backlog) and `trades()` (paper trading: every trade, in
tape order, each a point of the price path; in fallback, each new polled price).

A ticker goes out on every trade; a book or candle update sends one only when none went out for a
second (so a quiet market still shows a live price, and a busy book does not flood the bot).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import structlog
import websockets
from websockets.asyncio.client import ClientConnection, connect

from adapters.binance.stream_parsing import (
    KlineUpdate,
    MalformedMessage,
    ServerShutdown,
    StreamParser,
)
from domain.errors import ExchangeError
from domain.models import BookTop, Candle, MarketTrade, Ticker
from domain.ports import Clock

if TYPE_CHECKING:
    from domain.ports import MarketDataFeed

log = structlog.get_logger(__name__)

STREAMS = ("trade", "bookTicker", "kline_1m")
BINANCE_MAX_CONNECTION_S = 24 * 3600.0
HEARTBEAT_S = 1.0  # a book or candle update sends a ticker when none went out for this long
TRADE_BACKLOG = 100_000  # trades kept for a slow trades() consumer before the oldest are dropped
_KEEPALIVE_S = 20.0  # our own pings, as often as Binance's


def stream_root(url: str) -> str:
    """The streams root from EXCHANGE__WS_URL; a URL copied from the docs with its `/ws` or
    `/stream` tail is taken for its root."""
    root = url.rstrip("/")
    for tail in ("/ws", "/stream"):
        if root.endswith(tail):
            return root[: -len(tail)]
    return root


def stream_names(symbol: str) -> list[str]:
    wire = symbol.replace("/", "").lower()
    return [f"{wire}@{name}" for name in STREAMS]


def combined_url(root: str, symbol: str) -> str:
    return f"{stream_root(root)}/stream?streams={'/'.join(stream_names(symbol))}"


def raw_url(root: str, stream: str) -> str:
    return f"{stream_root(root)}/ws/{stream}"


@dataclass(frozen=True, slots=True)
class StreamTimings:
    silence_s: float = 30.0  # no data for this long: the connection is dead
    max_age_s: float = BINANCE_MAX_CONNECTION_S - 3600.0  # recycled on plan after this long
    fallback_after_s: float = 5.0  # no connection up for this long: poll REST
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    open_timeout_s: float = 10.0
    standby: bool = True

    def __post_init__(self) -> None:
        for name in ("silence_s", "max_age_s", "fallback_after_s", "backoff_initial_s", "open_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be under backoff_initial_s")


class _Connection:
    """One of the two connections: its socket while up, and what the watchdog reads."""

    __slots__ = ("age_limit_s", "attempts", "kill_reason", "last_data", "name", "opened", "socket")

    def __init__(self, name: str, age_limit_s: float) -> None:
        self.name = name
        self.age_limit_s = age_limit_s
        self.socket: ClientConnection | None = None
        self.opened = 0.0
        self.last_data = 0.0
        self.kill_reason: str | None = None
        self.attempts = 0

    @property
    def up(self) -> bool:
        return self.socket is not None

    def kill(self, reason: str) -> None:
        socket = self.socket
        if socket is not None and self.kill_reason is None:
            self.kill_reason = reason
            socket.transport.abort()


class BinanceMarketStreams:
    """domain.ports.MarketDataFeed over Binance's public streams, with REST polling as fallback.
    Start `run()` as a background task; `close()` ends it and every iterator."""

    def __init__(
        self,
        url: str,
        symbol: str,
        clock: Clock,
        *,
        poll: Callable[[], Awaitable[Ticker]] | None = None,
        poll_interval_s: float = 2.0,
        timings: StreamTimings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.symbol = symbol
        self.url = combined_url(url, symbol)
        self._clock = clock
        self._poll = poll
        self._poll_interval_s = poll_interval_s
        self._timings = timings = timings or StreamTimings()
        self._rng = rng or random.Random()
        self._parser = StreamParser(symbol)
        # Staggered so that the two never recycle at the same moment.
        self._connections = [_Connection("primary", timings.max_age_s)]
        if timings.standby:
            self._connections.append(_Connection("standby", timings.max_age_s * 1.02 + 60.0))
        self._closed = asyncio.Event()
        # de-duplication high-water marks
        self._last_trade_id = -1
        self._last_update_id = -1
        self._last_kline: tuple[int, int, int] = (-1, -1, -1)
        # what the market looks like
        self._book: BookTop | None = None
        self._last_price: Decimal | None = None
        self._ticker: Ticker | None = None
        self._ticker_ready = asyncio.Event()
        self._last_emit = 0.0
        self.candle: Candle | None = None
        self._trades: deque[MarketTrade] = deque(maxlen=TRADE_BACKLOG)
        self._trades_ready = asyncio.Event()
        self._trades_wanted = False
        self._polled_id = 0
        # what status and logs tell
        self.mode = "connecting"  # "streams", "rest_polling" or "connecting"
        self._last_spoke: float | None = None  # monotonic time of the last message or poll
        self.fell_back_at: datetime | None = None
        self.messages = 0
        self.duplicates = 0
        self.malformed = 0
        self.reconnects = 0
        self.polls = 0
        self._down_since = 0.0
        self._mode_changed = asyncio.Event()
        self._poll_failures = RepeatedWarning(clock)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        self._ticker_ready.set()
        self._trades_ready.set()
        self._mode_changed.set()
        for connection in self._connections:
            connection.kill("closing")

    async def run(self) -> None:
        """Keep the connections (and the fallback) going until close()."""
        self._down_since = self._clock.monotonic()
        log.info("market data: connecting to streams", url=self.url, connections=len(self._connections))
        tasks = [
            asyncio.create_task(self._keep(connection), name=f"market-stream-{connection.name}")
            for connection in self._connections
        ]
        tasks.append(asyncio.create_task(self._watch(), name="market-stream-watchdog"))
        tasks.append(asyncio.create_task(self._fallback(), name="market-stream-fallback"))
        try:
            await self._closed.wait()
        finally:
            self.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def last_message_at(self) -> datetime | None:
        """When the feed last heard from the market (a stream message or a poll)."""
        spoke = max([c.last_data for c in self._connections if c.last_data] + [self._last_spoke or 0.0])
        if not spoke:
            return None
        return self._clock.now() - timedelta(seconds=self._clock.monotonic() - spoke)

    def state(self) -> dict[str, object]:
        """Which feed is live, when it last spoke, when it fell back: for logs and health."""
        return {
            "mode": self.mode,
            "connections_up": sum(1 for c in self._connections if c.up),
            "last_message_at": _iso(self.last_message_at),
            "fell_back_at": None if self.fell_back_at is None else self.fell_back_at.isoformat(),
            "reconnects": self.reconnects,
            "malformed": self.malformed,
        }

    # -- consumers ------------------------------------------------------------------------------
    async def tickers(self, symbol: str) -> AsyncIterator[Ticker]:
        if symbol != self.symbol:
            raise ValueError(f"this feed streams {self.symbol}, not {symbol}")
        while not self.closed:
            await self._ticker_ready.wait()
            self._ticker_ready.clear()
            ticker = self._ticker
            if ticker is not None and not self.closed:
                yield ticker

    async def trades(self) -> AsyncIterator[MarketTrade]:
        """Every trade from now on, oldest first (in fallback: each new polled price, as a trade
        with a negative id)."""
        self._trades_wanted = True
        try:
            while not self.closed:
                while self._trades:
                    yield self._trades.popleft()
                    if self.closed:
                        return
                self._trades_ready.clear()
                await self._trades_ready.wait()
        finally:
            self._trades_wanted = False

    # -- one connection -------------------------------------------------------------------------
    async def _keep(self, connection: _Connection) -> None:
        timings = self._timings
        while not self.closed:
            reason = await self._session(connection)
            if self.closed:
                return
            planned = reason.startswith(("planned", "server shutdown"))
            # A drop is a warning; a planned recycle, and the retries of a failing streak, are not.
            say = log.warning if not planned and connection.attempts == 0 else log.info
            if planned:
                delay = 0.0
            else:
                delay = jittered_backoff(
                    timings.backoff_initial_s, timings.backoff_max_s, connection.attempts, self._rng
                )
                connection.attempts += 1
            say(
                "market stream down; reconnecting",
                connection=connection.name,
                reason=reason,
                retry_in_s=round(delay, 3),
                other_up=any(c.up for c in self._connections if c is not connection),
            )
            if delay > 0:
                await self._sleep(delay)
            self.reconnects += 1

    async def _session(self, connection: _Connection) -> str:
        """One connection from open to drop; returns why it ended."""
        try:
            async with connect(
                self.url,
                open_timeout=self._timings.open_timeout_s,
                ping_interval=_KEEPALIVE_S,
                ping_timeout=_KEEPALIVE_S,
                close_timeout=1.0,
                max_queue=1024,
                compression=None,
            ) as socket:
                now = self._clock.monotonic()
                connection.socket, connection.opened, connection.last_data = socket, now, now
                connection.kill_reason = None
                log.info("market stream connected", connection=connection.name)
                self._connection_up()
                handle = self._handle
                async for message in socket:
                    connection.last_data = self._clock.monotonic()
                    if handle(message) is _SHUTDOWN:
                        return "server shutdown notice"
                    if connection.attempts:
                        connection.attempts = 0
            return connection.kill_reason or "closed by the server"
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            return connection.kill_reason or describe_ws_error(exc)
        finally:
            connection.socket = None
            connection.kill_reason = None
            self._connection_down()

    # -- messages -------------------------------------------------------------------------------
    def _handle(self, message: bytes | str) -> object:
        """Decode one message and pass on what is new. Never raises on bad input."""
        self.messages += 1
        parser = self._parser
        try:
            payload = parser.payload(message)
            # Copies the other connection already brought are dropped before anything is built.
            kind = payload.get("e")
            if kind == "trade":
                trade_id = payload.get("t")
                if type(trade_id) is int and trade_id <= self._last_trade_id:
                    self.duplicates += 1
                    return None
            elif kind is None:
                update_id = payload.get("u")
                if type(update_id) is int and update_id <= self._last_update_id:
                    self.duplicates += 1
                    return None
            event = parser.event(payload)
        except MalformedMessage as exc:
            self.malformed += 1
            log.warning("market stream: message skipped", reason=str(exc), skipped=self.malformed)
            return None
        if isinstance(event, MarketTrade):
            self._on_trade(event)
        elif isinstance(event, BookTop):
            self._on_book(event)
        elif isinstance(event, KlineUpdate):
            self._on_kline(event)
        elif isinstance(event, ServerShutdown):
            log.info("market stream: the server announced a shutdown")
            return _SHUTDOWN
        return None

    def _on_trade(self, trade: MarketTrade) -> None:
        if trade.trade_id <= self._last_trade_id:
            self.duplicates += 1
            return
        self._last_trade_id = trade.trade_id
        self._last_price = trade.price
        book = self._book
        if book is None:
            bid = ask = trade.price
        else:
            bid, ask = book.bid, book.ask
        self._emit(Ticker(self.symbol, bid, ask, trade.price, trade.timestamp))
        if self._trades_wanted:
            self._trades.append(trade)
            self._trades_ready.set()

    def _on_book(self, book: BookTop) -> None:
        if book.update_id <= self._last_update_id:
            self.duplicates += 1
            return
        self._last_update_id = book.update_id
        self._book = book
        self._heartbeat()

    def _on_kline(self, update: KlineUpdate) -> None:
        key = (int(update.candle.open_time.timestamp() * 1000), update.event_time_ms, update.last_trade_id)
        if key <= self._last_kline:
            self.duplicates += 1
            return
        self._last_kline = key
        self.candle = update.candle
        if self._last_price is None:
            self._last_price = update.candle.close
        self._heartbeat()

    def _heartbeat(self) -> None:
        last = self._last_price
        if last is None or self._clock.monotonic() - self._last_emit < HEARTBEAT_S:
            return
        now = self._clock.now()
        book = self._book
        bid, ask = (last, last) if book is None else (book.bid, book.ask)
        self._emit(Ticker(self.symbol, bid, ask, last, now))

    def _emit(self, ticker: Ticker) -> None:
        self._ticker = ticker
        self._last_emit = self._clock.monotonic()
        self._ticker_ready.set()

    # -- watchdog and fallback ------------------------------------------------------------------
    async def _watch(self) -> None:
        timings = self._timings
        period = min(timings.silence_s, timings.max_age_s, timings.fallback_after_s) / 4
        while not self.closed:
            await self._sleep(min(period, 1.0))
            now = self._clock.monotonic()
            for connection in self._connections:
                if not connection.up:
                    continue
                if now - connection.last_data > timings.silence_s:
                    connection.kill(f"no data for {timings.silence_s:g} s")
                elif now - connection.opened > connection.age_limit_s:
                    others_up = any(c.up for c in self._connections if c is not connection)
                    if others_up or len(self._connections) == 1:
                        connection.kill(f"planned reconnect after {connection.age_limit_s:g} s")

    def _connection_up(self) -> None:
        if self.mode != "streams":
            previous, self.mode = self.mode, "streams"
            if previous == "rest_polling":
                log.warning(
                    "market data: back on streams; REST polling stopped",
                    fell_back_at=None if self.fell_back_at is None else self.fell_back_at.isoformat(),
                    polls=self.polls,
                )
            else:
                log.info("market data: streams live", url=self.url)
            self._mode_changed.set()

    def _connection_down(self) -> None:
        if self.closed or any(c.up for c in self._connections):
            return
        if self.mode == "streams":  # the last connection up just dropped
            self._down_since = self._clock.monotonic()
            self.mode = "connecting"
            self._mode_changed.set()

    async def _fallback(self) -> None:
        """Poll while no stream has been up for fallback_after_s."""
        await poll_while_down(
            self,
            self._clock,
            live_mode="streams",
            fallback_after_s=self._timings.fallback_after_s,
            poll_interval_s=self._poll_interval_s,
            poll=None if self._poll is None else self._poll_once,
            announce=self._announce_fallback,
            closed=self._closed,
        )

    def _announce_fallback(self, down_s: float) -> None:
        log.warning(
            "market data: no stream; falling back to REST polling",
            down_s=round(down_s, 1),
            last_message_at=_iso(self.last_message_at),
            poll_interval_s=self._poll_interval_s,
        )

    async def _poll_once(self) -> None:
        assert self._poll is not None
        try:
            ticker = await self._poll()
        except ExchangeError as exc:
            self._poll_failures.warn("market data: REST poll failed", reason=str(exc))
            return
        self._poll_failures.ok()
        if self.mode != "rest_polling" or self.closed:
            return  # a stream came back while the poll was out: it is newer
        self.polls += 1
        self._last_spoke = self._clock.monotonic()
        moved = ticker.last != self._last_price
        self._last_price = ticker.last
        self._emit(ticker)
        if moved and self._trades_wanted:
            self._polled_id -= 1
            self._trades.append(
                MarketTrade(self.symbol, self._polled_id, ticker.last, Decimal(0), ticker.timestamp)
            )
            self._trades_ready.set()

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the clock port; close() ends it early."""
        await sleep_unless(self._clock, seconds, self._closed)


_SHUTDOWN = object()


def jittered_backoff(initial_s: float, max_s: float, attempts: int, rng: random.Random) -> float:
    """The wait before reconnect attempt `attempts` + 1: exponential, capped, and jittered to half
    to whole, so two connections never retry in step."""
    return min(max_s, initial_s * 2.0**attempts) * (0.5 + rng.random() / 2)


class FallingBack(Protocol):
    """A feed with a stream and a REST fallback, as `poll_while_down` drives it."""

    mode: str  # its live mode, "connecting" or "rest_polling"
    fell_back_at: datetime | None
    _down_since: float  # monotonic time the stream went down
    _mode_changed: asyncio.Event

    @property
    def closed(self) -> bool: ...


async def poll_while_down(
    feed: FallingBack,
    clock: Clock,
    *,
    live_mode: str,
    fallback_after_s: float,
    poll_interval_s: float,
    poll: Callable[[], Awaitable[object]] | None,
    announce: Callable[[float], None],
    closed: asyncio.Event,
) -> None:
    """The fallback of a stream feed: idle while it is live; once it has been down for
    `fallback_after_s`, switch to "rest_polling" (`announce` says so, with how long it was down)
    and `poll` every `poll_interval_s` until a stream is back. Without `poll`, just wait."""
    while not feed.closed:
        if feed.mode == live_mode:
            feed._mode_changed.clear()
            await feed._mode_changed.wait()
            continue
        waited = clock.monotonic() - feed._down_since
        if feed.mode == "connecting" and waited < fallback_after_s:
            await sleep_unless(clock, min(fallback_after_s - waited, 0.25), closed)
            continue
        if poll is None:
            await sleep_unless(clock, 0.25, closed)
            continue
        if feed.mode != "rest_polling":
            feed.mode = "rest_polling"
            feed.fell_back_at = clock.now()
            announce(waited)
        await poll()
        if feed.mode == "rest_polling":
            feed._mode_changed.clear()
            await sleep_unless(clock, poll_interval_s, closed, feed._mode_changed)


class RepeatedWarning:
    """A failure that repeats (a poll every 2 s against a venue that is down) is logged as a
    warning the first time, then at most once every `every_s` with how many were not logged; a
    success (`ok`) starts over."""

    __slots__ = ("_clock", "_every_s", "_last", "_unlogged")

    def __init__(self, clock: Clock, every_s: float = 60.0) -> None:
        self._clock = clock
        self._every_s = every_s
        self._last: float | None = None
        self._unlogged = 0

    def warn(self, event: str, **fields: object) -> None:
        now = self._clock.monotonic()
        if self._last is not None and now - self._last < self._every_s:
            self._unlogged += 1
            return
        if self._unlogged:
            fields["repeated"] = self._unlogged
        log.warning(event, **fields)
        self._last, self._unlogged = now, 0

    def ok(self) -> None:
        self._last, self._unlogged = None, 0


async def sleep_unless(clock: Clock, seconds: float, *events: asyncio.Event | None) -> None:
    """Sleep `seconds` on the clock port, or less when one of `events` is set meanwhile."""
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(clock.sleep(seconds))]
    waiters.extend(asyncio.ensure_future(event.wait()) for event in events if event is not None)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def describe_ws_error(exc: BaseException) -> str:
    """Why a WebSocket connection failed or ended, in a few words for a log line."""
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return f"handshake refused: HTTP {exc.response.status_code}"
    if isinstance(exc, websockets.exceptions.ConnectionClosed):
        return f"connection closed ({exc})"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"


if TYPE_CHECKING:

    def _satisfies_port(feed: BinanceMarketStreams) -> MarketDataFeed:
        return feed
