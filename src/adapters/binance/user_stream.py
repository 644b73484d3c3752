"""This account's fills over Binance's WebSocket API user data stream: the OrderUpdateFeed adapter.

One connection to the WebSocket API (`EXCHANGE__WS_API_URL`), subscribed with
`userDataStream.subscribe.signature` (HMAC-signed, no listenKey: those are retired). Every
`executionReport` of execution type TRADE for the symbol is a fill, passed on at once.

No fill is lost and none is passed on twice:
* **Catch-up after every (re)connect.** Once subscribed, the account's trades since the last
  trade id known to be complete are fetched over REST (`myTrades` from that id, page by page
  until current) and passed on. The subscription comes first, so a trade is either in the
  catch-up or on the stream, or both.
* **De-duplication.** Every trade id passed on is remembered (the last `SEEN_IDS`): a fill seen on
  the stream and again in a catch-up, or twice in catch-ups, goes out once. The grid core books a
  trade once besides; this keeps its queue clean.
* **REST polling as the fallback.** When no subscription has been up for `fallback_after_s`, the
  same catch-up runs every `poll_interval_s` until the stream is back; one log line when falling
  back, one when back. With the stream up nothing is polled.

Liveness: the `websockets` library answers the server's pings (with their payload) and pings the
server itself, so a dead TCP path is noticed. A quiet account sends nothing, so silence alone
proves nothing: after `quiet_s` without a message a `ping` request goes out, and a connection
that does not answer within `answer_timeout_s` (a stalled server) is replaced. A `serverShutdown`
event, an `eventStreamTerminated`, and the approach of Binance's 24 h connection limit
(`max_age_s`) each lead to a prompt reconnect. Reconnects back off exponentially with jitter,
forever.

Which trade id is "complete": a catch-up, once it has reached the present, makes everything up
to its last trade id complete. Only a catch-up moves that mark (see FillLedger): the next catch-up
fetches what the stream brought since, and those come out as already seen. A hypothesis stateful
test found the alternative (trusting the stream's last id at a drop) losing a fill delivered out
of order.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import orjson
import structlog
import websockets
from websockets.asyncio.client import ClientConnection, connect

from adapters.binance.streams import (
    RepeatedWarning,
    describe_ws_error,
    jittered_backoff,
    poll_while_down,
    sleep_unless,
)
from adapters.binance.user_events import (
    Answer,
    MalformedEvent,
    ServerShutdown,
    StreamTerminated,
    UserEvent,
    UserEventParser,
    sign,
)
from domain.errors import ExchangeError
from domain.models import Fill
from domain.ports import Clock

if TYPE_CHECKING:
    from domain.ports import OrderUpdateFeed

log = structlog.get_logger(__name__)

BINANCE_MAX_CONNECTION_S = 24 * 3600.0
FULL_TRADES_PAGE = 1000  # a Binance myTrades page holds at most 1000 trades: a full page means more
SEEN_IDS = 100_000  # trade ids remembered for de-duplication
_KEEPALIVE_S = 20.0  # our own WebSocket pings, as often as Binance's
_CLOCK_SKEW = -1021  # "Timestamp for this request is outside of the recvWindow"

FetchTrades = Callable[[str | None], Awaitable[Sequence[Fill]]]


class Credentials:
    """The API key and secret that sign the subscription; the secret never shows in a repr or
    a log."""

    __slots__ = ("_secret", "api_key")

    def __init__(self, api_key: str, api_secret: str) -> None:
        if not api_key or not api_secret:
            raise ValueError("an API key and secret are required for the user data stream")
        self.api_key = api_key
        self._secret = api_secret

    def signed(self, params: dict[str, object]) -> dict[str, object]:
        return {**params, "signature": sign(params, self._secret)}

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.api_key[:4]!r}…, api_secret=<redacted>)"


@dataclass(frozen=True, slots=True)
class UserStreamTimings:
    answer_timeout_s: float = 10.0  # a request (subscribe, ping) unanswered this long: dead
    quiet_s: float = 30.0  # nothing heard this long: ask the server with a `ping` request
    max_age_s: float = BINANCE_MAX_CONNECTION_S - 3600.0  # reconnected on plan after this long
    fallback_after_s: float = 5.0  # no subscription up for this long: poll REST
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0
    open_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in (
            "answer_timeout_s",
            "quiet_s",
            "max_age_s",
            "fallback_after_s",
            "backoff_initial_s",
            "open_timeout_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be under backoff_initial_s")


class SubscriptionRefused(Exception):
    """The server answered the subscription with an error."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(
            f"{answer.error_message or 'refused'} (code {answer.error_code}, HTTP {answer.status})"
        )
        self.code = answer.error_code


class FillLedger:
    """Every fill passed on once, and the mark up to which every trade has been passed on.

    `offer` takes a fill from the stream or a catch-up and queues it unless its trade id was seen.
    `catch_up` walks the venue's trades from the mark to the present and moves the mark to the last
    one. Only a catch-up moves the mark: what the stream brought is not proof that nothing before
    it was missed (a fill delivered out of order would hide the gap), so the next catch-up fetches
    the stream's fills again, and they are dropped here as seen."""

    __slots__ = (
        "_holding",
        "_lock",
        "_order",
        "_seen",
        "at_start",
        "caught_up",
        "complete_to",
        "duplicates",
        "out",
        "ready",
        "started",
        "streamed",
    )

    def __init__(self, *, remember: int = SEEN_IDS) -> None:
        self.out: deque[Fill] = deque()
        self.ready = asyncio.Event()
        self._seen: set[tuple[str, str]] = set()
        self._order: deque[tuple[str, str]] = deque(maxlen=remember)
        self.complete_to: str | None = None  # every trade up to this id has been passed on
        self._lock = asyncio.Lock()  # one catch-up at a time: the mark only moves forward
        self.streamed = 0  # passed on from the stream
        self.caught_up = 0  # passed on from a catch-up (or a poll) from the mark
        self.at_start = 0  # passed on from the first catch-up, which has no mark: the newest page
        self.started = False  # a catch-up has reached the present
        self._holding: list[Fill] | None = None  # streamed fills held while a catch-up runs
        self.duplicates = 0  # offered again, not passed on

    def offer(self, fill: Fill, *, streamed: bool) -> bool:
        """Queue `fill` unless it was seen; True when it is new. A streamed fill that comes while a
        catch-up runs is held until the catch-up is done, then passed on after the older trades
        the catch-up brings: the grid hears of its fills in the venue's order."""
        if streamed and self._holding is not None:
            self._holding.append(fill)
            return (fill.trade_id, fill.order_id) not in self._seen
        return self._pass_on(fill, streamed=streamed)

    def _pass_on(self, fill: Fill, *, streamed: bool) -> bool:
        # A trade is known by its order too: after a venue reset (the testnet's, monthly) trade
        # ids start over, and the grid core must see such a trade to say so.
        key = (fill.trade_id, fill.order_id)
        if key in self._seen:
            self.duplicates += 1
            return False
        if len(self._order) == self._order.maxlen:
            self._seen.discard(self._order[0])
        self._order.append(key)
        self._seen.add(key)
        if streamed:
            self.streamed += 1
        elif self.started:
            self.caught_up += 1
        else:
            self.at_start += 1
        self.out.append(fill)
        self.ready.set()
        return True

    async def catch_up(self, fetch: FetchTrades, *, page_size: int = FULL_TRADES_PAGE) -> int:
        """Offer every trade after the mark, page by page, until a page is not full; returns how
        many were new. A failure (ExchangeError) keeps what the pages before it brought. Catch-ups
        run one at a time, each from where the last one ended, so the mark only moves forward."""
        async with self._lock:
            self._holding = []
            try:
                found = 0
                while True:
                    since = self.complete_to
                    page = await fetch(since)
                    fresh = newer_than(page, since)
                    for fill in fresh:
                        if self._pass_on(fill, streamed=False):
                            found += 1
                    if fresh:
                        self.complete_to = fresh[-1].trade_id
                    if len(page) < page_size or not fresh:
                        self.started = True
                        return found
            finally:
                held, self._holding = self._holding, None
                for fill in sorted(held, key=lambda fill: int(fill.trade_id)):
                    self._pass_on(fill, streamed=True)


class _Session:
    """One connection, from open to drop."""

    __slots__ = ("catch_up", "kill_reason", "last_heard", "opened", "ping_sent", "socket")

    def __init__(self, socket: ClientConnection, now: float) -> None:
        self.socket = socket
        self.opened = now
        self.last_heard = now
        self.ping_sent: float | None = None
        self.kill_reason: str | None = None
        self.catch_up: asyncio.Task[bool] | None = None

    def kill(self, reason: str) -> None:
        if self.kill_reason is None:
            self.kill_reason = reason
            self.socket.transport.abort()


class BinanceUserStream:
    """domain.ports.OrderUpdateFeed over the WebSocket API user data stream of one symbol, with
    REST catch-up and fallback. Start `run()` as a background task; `close()` ends it and every
    iterator."""

    def __init__(
        self,
        url: str,
        symbol: str,
        credentials: Credentials,
        clock: Clock,
        *,
        fetch_trades: FetchTrades,
        venue_time_ms: Callable[[], int],
        recv_window_ms: int | None = None,
        on_clock_skew: Callable[[], Awaitable[object]] | None = None,
        poll_interval_s: float = 2.0,
        timings: UserStreamTimings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if poll_interval_s <= 0:
            raise ValueError("poll_interval_s must be positive")
        self.url = url
        self.symbol = symbol
        self._credentials = credentials
        self._clock = clock
        self._fetch_trades = fetch_trades
        self._venue_time_ms = venue_time_ms
        self._recv_window_ms = recv_window_ms
        self._on_clock_skew = on_clock_skew
        self._poll_interval_s = poll_interval_s
        self._timings = timings or UserStreamTimings()
        self._rng = rng or random.Random()
        self._parser = UserEventParser(symbol)
        self._request_ids = itertools.count(1)
        self._closed = asyncio.Event()
        self._session: _Session | None = None
        self._attempts = 0
        self.ledger = FillLedger()  # what goes out, once
        self._catch_up_failures = RepeatedWarning(clock)
        # what status and logs tell
        self.mode = "connecting"  # "stream", "rest_polling" or "connecting"
        self._down_since = 0.0
        self._mode_changed = asyncio.Event()
        self._last_heard: float | None = None
        self.fell_back_at: datetime | None = None
        self.last_error: str | None = None  # what keeps the stream down now
        self.last_drop: str | None = None  # why the last connection ended
        self.malformed = 0
        self.reconnects = 0
        self.catch_ups = 0
        self.polls = 0

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        self.ledger.ready.set()
        self._mode_changed.set()
        if self._session is not None:
            self._session.kill("closing")

    async def run(self) -> None:
        """Keep the subscription (and the fallback) going until close()."""
        self._down_since = self._clock.monotonic()
        log.info("order updates: connecting to the user data stream", url=self.url)
        tasks = [
            asyncio.create_task(self._keep(), name="user-stream"),
            asyncio.create_task(self._fallback(), name="user-stream-fallback"),
        ]
        try:
            await self._closed.wait()
        finally:
            self.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def state(self) -> dict[str, object]:
        """Which feed is live, when it last spoke, when it fell back: for logs and health."""
        heard = self._last_heard
        return {
            "mode": self.mode,
            "last_message_at": None
            if heard is None
            else (self._clock.now() - timedelta(seconds=self._clock.monotonic() - heard)).isoformat(),
            "fell_back_at": None if self.fell_back_at is None else self.fell_back_at.isoformat(),
            "reconnects": self.reconnects,
            "fills_streamed": self.ledger.streamed,
            "fills_caught_up": self.ledger.caught_up,
            "trades_read_at_start": self.ledger.at_start,
            "duplicates": self.ledger.duplicates,
            "malformed": self.malformed,
            "last_error": self.last_error,
            "last_drop": self.last_drop,
        }

    # -- the consumer -----------------------------------------------------------------------------
    async def fills(self, symbol: str) -> AsyncIterator[Fill]:
        if symbol != self.symbol:
            raise ValueError(f"this feed carries {self.symbol}, not {symbol}")
        ledger = self.ledger
        out = ledger.out
        while not self.closed:
            while out:
                yield out.popleft()
                if self.closed:
                    return
            ledger.ready.clear()
            await ledger.ready.wait()

    # -- the connection ---------------------------------------------------------------------------
    async def _keep(self) -> None:
        timings = self._timings
        while not self.closed:
            reason = await self._connect_once()
            if self.closed:
                return
            self.last_drop = reason
            planned = reason.startswith(("planned", "server shutdown", "subscription terminated"))
            if planned:
                delay = 0.0
            else:
                delay = jittered_backoff(
                    timings.backoff_initial_s, timings.backoff_max_s, self._attempts, self._rng
                )
                self._attempts += 1
            say = log.warning if not planned and self._attempts <= 1 else log.info
            say(
                "order updates: user data stream down; reconnecting",
                reason=reason,
                retry_in_s=round(delay, 3),
            )
            if reason.startswith("handshake refused: HTTP 4") and self._attempts == 1:
                log.error(
                    "order updates: the server refused the WebSocket connection: is the WebSocket API URL"
                    " right? (fills are polled over REST meanwhile)",
                    url=self.url,
                    reason=reason,
                )
            if delay > 0:
                await self._sleep(delay)
            self.reconnects += 1

    async def _connect_once(self) -> str:
        """One connection from open to drop; returns why it ended."""
        session: _Session | None = None
        try:
            async with connect(
                self.url,
                open_timeout=self._timings.open_timeout_s,
                ping_interval=_KEEPALIVE_S,
                ping_timeout=_KEEPALIVE_S,
                close_timeout=1.0,
                max_queue=None,
                compression=None,
            ) as socket:
                session = self._session = _Session(socket, self._clock.monotonic())
                if self.closed:
                    return "closing"
                await self._subscribe(session)
                self._attempts = 0
                self._stream_up()
                session.catch_up = asyncio.create_task(self._catch_up_after_connect())
                watchdog = asyncio.create_task(self._watch(session))
                try:
                    return await self._read(session) or session.kill_reason or "closed by the server"
                finally:
                    watchdog.cancel()
                    await asyncio.gather(watchdog, return_exceptions=True)
        except SubscriptionRefused as exc:
            self.last_error = f"subscription refused: {exc}"
            if exc.code == _CLOCK_SKEW and self._on_clock_skew is not None:
                try:
                    await self._on_clock_skew()
                except ExchangeError as skew:
                    log.warning("order updates: could not measure the venue's clock", reason=str(skew))
            return self.last_error
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as exc:
            reason = (None if session is None else session.kill_reason) or describe_ws_error(exc)
            self.last_error = reason
            return reason
        finally:
            self._session = None
            if session is not None:
                await self._end(session)

    async def _subscribe(self, session: _Session) -> None:
        params: dict[str, object] = {"apiKey": self._credentials.api_key, "timestamp": self._venue_time_ms()}
        if self._recv_window_ms is not None:
            params["recvWindow"] = self._recv_window_ms
        request_id = f"subscribe-{next(self._request_ids)}"
        request = {
            "id": request_id,
            "method": "userDataStream.subscribe.signature",
            "params": self._credentials.signed(params),
        }
        await session.socket.send(orjson.dumps(request).decode())
        deadline = self._clock.monotonic() + self._timings.answer_timeout_s
        while True:
            left = deadline - self._clock.monotonic()
            if left <= 0:
                raise TimeoutError("the subscription was not answered")
            event = self._heard(session, await asyncio.wait_for(session.socket.recv(), left))
            if isinstance(event, Answer) and event.request_id == request_id:
                if not event.ok:
                    raise SubscriptionRefused(event)
                subscription = event.result.get("subscriptionId") if isinstance(event.result, dict) else None
                log.info("order updates: user data stream subscribed", subscription_id=subscription)
                return

    async def _read(self, session: _Session) -> str | None:
        async for message in session.socket:
            event = self._heard(session, message)
            if isinstance(event, Fill):
                self.ledger.offer(event, streamed=True)
            elif isinstance(event, ServerShutdown):
                log.info("order updates: the server announced a shutdown")
                return "server shutdown notice"
            elif isinstance(event, StreamTerminated):
                return "subscription terminated by the server"
            elif isinstance(event, Answer) and not event.ok:
                log.warning(
                    "order updates: a request was refused", code=event.error_code, reason=event.error_message
                )
        return None

    def _heard(self, session: _Session, message: bytes | str) -> UserEvent | None:
        """A message came: the connection is alive. Returns it parsed, or None (logged and
        skipped) when it is malformed."""
        session.last_heard = self._last_heard = self._clock.monotonic()
        session.ping_sent = None
        try:
            return self._parser.parse(message)
        except MalformedEvent as exc:
            self.malformed += 1
            log.warning("order updates: message skipped", reason=str(exc), skipped=self.malformed)
            return None

    async def _watch(self, session: _Session) -> None:
        """Ask a quiet connection whether it is alive; replace it when it does not answer, and
        on plan before the 24 h limit."""
        timings = self._timings
        period = min(timings.quiet_s / 4, timings.answer_timeout_s / 4, 1.0)
        while True:
            await self._clock.sleep(period)
            now = self._clock.monotonic()
            if now - session.opened > timings.max_age_s:
                session.kill(f"planned reconnect after {timings.max_age_s:g} s")
                return
            if session.ping_sent is not None:
                if now - session.ping_sent > timings.answer_timeout_s:
                    session.kill(f"no answer to a ping within {timings.answer_timeout_s:g} s")
                    return
            elif now - session.last_heard > timings.quiet_s:
                session.ping_sent = now
                ping = {"id": f"ping-{next(self._request_ids)}", "method": "ping"}
                await session.socket.send(orjson.dumps(ping).decode())

    async def _end(self, session: _Session) -> None:
        task = session.catch_up
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if not self.closed and self.mode == "stream":
            self.mode = "connecting"
            self._down_since = self._clock.monotonic()
            self._mode_changed.set()

    def _stream_up(self) -> None:
        previous, self.mode = self.mode, "stream"
        self.last_error = None
        if previous == "rest_polling":
            log.warning(
                "order updates: back on the user data stream; REST polling stopped",
                fell_back_at=None if self.fell_back_at is None else self.fell_back_at.isoformat(),
                polls=self.polls,
            )
        self._mode_changed.set()

    # -- catch-up and fallback ------------------------------------------------------------------
    async def _catch_up_after_connect(self) -> bool:
        while not self.closed:
            if await self._catch_up("reconnect"):
                return True
            await self._sleep(self._poll_interval_s)
        return False

    async def _catch_up(self, why: str) -> bool:
        """Pass on every trade after the complete mark, page by page until current; True when it
        reached the present."""
        first = not self.ledger.started
        try:
            found = await self.ledger.catch_up(self._fetch_trades)
        except ExchangeError as exc:
            if self.mode != "stream":
                self.last_error = f"catch-up failed: {exc}"
            self._catch_up_failures.warn("order updates: catch-up over REST failed", reason=str(exc), why=why)
            return False
        self._catch_up_failures.ok()
        if self.mode == "stream":
            self.last_error = None
        self.catch_ups += 1
        if first:
            log.info(
                "order updates: the account's latest trades read at start (the grid books only its own)",
                trades=found,
                up_to_trade=self.ledger.complete_to,
            )
        elif found:
            log.info(
                "order updates: caught up over REST",
                fills=found,
                why=why,
                up_to_trade=self.ledger.complete_to,
            )
        return True

    async def _fallback(self) -> None:
        """Poll while no subscription has been up for fallback_after_s."""
        await poll_while_down(
            self,
            self._clock,
            live_mode="stream",
            fallback_after_s=self._timings.fallback_after_s,
            poll_interval_s=self._poll_interval_s,
            poll=self._poll,
            announce=self._announce_fallback,
            closed=self._closed,
        )

    async def _poll(self) -> None:
        self.polls += 1
        await self._catch_up("poll")

    def _announce_fallback(self, down_s: float) -> None:
        log.warning(
            "order updates: no user data stream; falling back to REST polling",
            down_s=round(down_s, 1),
            poll_interval_s=self._poll_interval_s,
            reason=self.last_error,
        )

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the clock port; close() ends it early."""
        await sleep_unless(self._clock, seconds, self._closed)


def newer_than(batch: Sequence[Fill], last: str | None) -> list[Fill]:
    """The fills of `batch` after trade `last` (all of them without one), oldest first. Binance's
    trade ids are integers, increasing per symbol."""
    ordered = sorted(batch, key=lambda fill: int(fill.trade_id))
    if last is None:
        return ordered
    mark = int(last)
    return [fill for fill in ordered if int(fill.trade_id) > mark]


if TYPE_CHECKING:

    def _satisfies_port(feed: BinanceUserStream) -> OrderUpdateFeed:
        return feed
