"""The simulated exchange: one `MatchingEngine` behind the gateway and feed ports.

The driver walks the price path one point at a time: it moves the engine, hands each fill to
every fills() subscriber and waits until they have handled it, then hands the new ticker to
every tickers() subscriber and waits again. A subscriber counts as done with an item only when
it asks for the next one, so the next price step happens after the bot has reacted to the last
one: a simulated run is deterministic, whatever the speed of the machine.

`on_change`, when given, is called after every change of the engine and before anyone can see
it: before place/cancel return, before a price step's fills and ticker are published. The state
store hangs there, so that what the bot was told is on disk whatever happens next.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog

from adapters.clock import SimulatedClock
from adapters.simulated.engine import MatchingEngine
from adapters.simulated.price_source import PricePoint, PriceSource
from domain.errors import ExchangeUnavailable, InvalidOrder
from domain.models import Balance, Fill, Order, OrderRequest, Ticker
from domain.ports import Clock
from domain.rules import MarketRules

if TYPE_CHECKING:
    from domain.ports import ExchangeGateway, MarketDataFeed, OrderUpdateFeed

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_REJECT_SCALE = 1_000_000


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults injected into gateway calls: a latency on the clock, and a seeded share of calls
    that fail with ExchangeUnavailable before reaching the engine."""

    latency_seconds: float = 0.0
    reject_rate: Decimal = Decimal("0")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.latency_seconds < 0:
            raise ValueError(f"latency_seconds must not be negative, got {self.latency_seconds}")
        if not 0 <= self.reject_rate <= 1:
            raise ValueError(f"reject_rate must be within [0, 1], got {self.reject_rate}")


class _Channel(Generic[_T]):
    """One subscriber's mailbox with a hand-shake: an item stays unfinished until the
    subscriber asks for the next one (like asyncio.Queue.task_done/join, plus closing)."""

    __slots__ = ("_idle_waiters", "_item_waiter", "_items", "_unfinished", "closed")

    def __init__(self) -> None:
        self._items: deque[_T] = deque()
        self._unfinished = 0
        self._item_waiter: asyncio.Future[None] | None = None
        self._idle_waiters: list[asyncio.Future[None]] = []
        self.closed = False

    @property
    def busy(self) -> bool:
        return self._unfinished > 0

    def push(self, item: _T) -> None:
        if self.closed:
            return
        self._items.append(item)
        self._unfinished += 1
        if self._item_waiter is not None and not self._item_waiter.done():
            self._item_waiter.set_result(None)

    async def get(self) -> _T | None:
        """The next item, or None once the channel is closed."""
        while not self._items:
            if self.closed:
                return None
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._item_waiter = waiter
            try:
                await waiter
            finally:
                self._item_waiter = None
        return self._items.popleft()

    def task_done(self) -> None:
        if self._unfinished == 0:
            return
        self._unfinished -= 1
        if self._unfinished == 0:
            self._wake_idle()

    async def wait_idle(self) -> None:
        while self._unfinished > 0:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self._unfinished = 0
        self._wake_idle()
        if self._item_waiter is not None and not self._item_waiter.done():
            self._item_waiter.set_result(None)

    def _wake_idle(self) -> None:
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class SimulatedExchange:
    """ExchangeGateway + MarketDataFeed + OrderUpdateFeed over one MatchingEngine.

    Pacing of the price path, before every point after the first:
    - `follow_timestamps=True`: sleep on the clock until the point's own timestamp (backtests:
      start a SimulatedClock at the source's first timestamp, and market time, order times and
      the bot's timers all agree);
    - otherwise `step_interval` seconds on the clock when > 0 (the mock profile's pace);
    - otherwise no pause at all.
    `min_subscribers`: before every point after the first, wait until that many feed
    subscriptions (tickers + fills) are open: a fast path cannot run ahead of a bot that is
    still starting, and the market pauses while the bot reconnects a dropped feed. With 0 the
    path goes on whether anyone listens or not. The first point is published at once, so that
    fetch_ticker has a price as soon as `wait_ready()` returns.
    """

    def __init__(
        self,
        engine: MatchingEngine,
        source: PriceSource,
        clock: Clock,
        *,
        step_interval: float = 0.0,
        faults: FaultConfig = FaultConfig(),
        follow_timestamps: bool = False,
        min_subscribers: int = 0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if step_interval < 0:
            raise ValueError(f"step_interval must not be negative, got {step_interval}")
        if min_subscribers < 0:
            raise ValueError(f"min_subscribers must not be negative, got {min_subscribers}")
        self.engine = engine
        self._source = source
        self._clock = clock
        self._step_interval = step_interval
        self._faults = faults
        self._follow_timestamps = follow_timestamps
        self._min_subscribers = min_subscribers
        self._on_change = on_change
        self._rng = random.Random(faults.seed)
        self._fail_next = 0
        self._ticker_channels: list[_Channel[Ticker]] = []
        self._fill_channels: list[_Channel[Fill]] = []
        self._closed = False
        self._closed_event = asyncio.Event()
        self._ready_event = asyncio.Event()
        self._subscribers_changed: asyncio.Future[None] | None = None
        self._running = False
        self._steps = 0
        self._market_time: datetime | None = None

    # -- control -----------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def steps(self) -> int:
        """How many price points the driver has published."""
        return self._steps

    async def run(self) -> None:
        """Drive the price path until the source ends or close() is called; then close()."""
        if self._running:
            raise RuntimeError("SimulatedExchange.run() is already running")
        self._running = True
        log.info("simulated exchange started", symbol=self.engine.rules.symbol)
        try:
            for index, point in enumerate(self._source.points()):
                if self._closed:
                    break
                if index:
                    await self._wait_for_subscribers()
                    await self._pace(point)
                    if self._closed:
                        break
                self._market_time = point.timestamp
                now = self._now()
                fills = self.engine.move_to(point.price, now, gap=point.gap)
                self._changed()
                await self._publish_step(fills, self.engine.ticker(now))
                self._steps += 1
                self._ready_event.set()
        finally:
            self._running = False
            self.close()
            log.info("simulated exchange stopped", steps=self._steps, last_price=str(self.engine.last_price))

    def market_clock(self) -> MarketClock:
        """A clock that tells the market's time (the current price point's), for a bot trading a
        replay: its orders, timers and logs then agree with the fills and tickers."""
        return MarketClock(self)

    def _now(self) -> datetime:
        """The venue's time is market time: the current price point's own timestamp (wall-clock
        time before the first point). Tickers, orders and fills all carry it, so the bot's
        time-based rules (the market-state window) run on market time whatever the pacing."""
        return self._market_time if self._market_time is not None else self._clock.now()

    async def wait_ready(self) -> None:
        """Return once the first price is published (or the exchange closed): start `run()` as a
        task, await this, then start the bot, whose first fetch_ticker then has a price."""
        if self._ready_event.is_set() or self._closed:
            return
        ready = asyncio.ensure_future(self._ready_event.wait())
        closing = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait((ready, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_all(ready, closing)

    def close(self) -> None:
        """End the driver and every open feed iterator. Gateway calls keep working."""
        self._closed = True
        self._closed_event.set()
        self.disconnect_feeds()

    def fail_next(self, n: int = 1) -> None:
        """Make the next `n` gateway calls raise ExchangeUnavailable (for tests)."""
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        self._fail_next += n

    def disconnect_feeds(self) -> None:
        """End every current feed iterator as if the stream dropped; undelivered items are lost."""
        channels: list[_Channel[Ticker]] | list[_Channel[Fill]]
        for channels in (self._ticker_channels, self._fill_channels):
            for channel in channels:
                channel.close()
            channels.clear()
        self._notify_subscribers()

    # -- ExchangeGateway ---------------------------------------------------------------------
    async def market_rules(self, symbol: str) -> MarketRules:
        await self._enter(symbol)
        return self.engine.rules

    async def fetch_ticker(self, symbol: str) -> Ticker:
        await self._enter(symbol)
        return self.engine.ticker(self._now())

    async def fetch_balances(self) -> Mapping[str, Balance]:
        await self._enter(None)
        return self.engine.balances()

    async def place_order(self, request: OrderRequest) -> Order:
        await self._enter(request.symbol)
        order, fills = self.engine.place(request, self._now())
        self._changed()
        self._push(self._fill_channels, fills)
        return order

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        await self._enter(symbol)
        canceled = self.engine.cancel(self._now(), order_id=order_id)
        self._changed()
        return canceled

    async def fetch_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        await self._enter(symbol)
        return self.engine.order(order_id=order_id, client_order_id=client_order_id)

    async def fetch_open_orders(self, symbol: str) -> Sequence[Order]:
        await self._enter(symbol)
        return self.engine.open_orders()

    async def fetch_my_trades(self, symbol: str, since_trade_id: str | None = None) -> Sequence[Fill]:
        await self._enter(symbol)
        return self.engine.trades(since_trade_id)

    async def fetch_order_trades(self, symbol: str, order_id: str) -> Sequence[Fill]:
        await self._enter(symbol)
        return self.engine.order_trades(order_id)

    # -- feeds -------------------------------------------------------------------------------
    def tickers(self, symbol: str) -> AsyncIterator[Ticker]:
        """Tickers from the next step on. Subscribes when first iterated."""
        self._require_symbol(symbol)
        return self._stream(self._ticker_channels)

    def fills(self, symbol: str) -> AsyncIterator[Fill]:
        """This account's fills from now on. Subscribes when first iterated."""
        self._require_symbol(symbol)
        return self._stream(self._fill_channels)

    async def _stream(self, channels: list[_Channel[_T]]) -> AsyncIterator[_T]:
        if self._closed:
            return
        channel: _Channel[_T] = _Channel()
        channels.append(channel)
        self._notify_subscribers()
        try:
            while True:
                item = await channel.get()
                if item is None:
                    return
                yield item
                channel.task_done()  # the consumer asked for more: it is done with `item`
        finally:
            channel.close()
            if channel in channels:
                channels.remove(channel)
                self._notify_subscribers()

    # -- internals ---------------------------------------------------------------------------
    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def _require_symbol(self, symbol: str) -> None:
        expected = self.engine.rules.symbol
        if symbol != expected:
            raise InvalidOrder(
                f"Invalid symbol. This simulated exchange trades {expected} only, not {symbol!r}.", code=-1121
            )

    async def _enter(self, symbol: str | None) -> None:
        """What every gateway call goes through: symbol check, then the configured faults."""
        if symbol is not None:
            self._require_symbol(symbol)
        if self._fail_next > 0:
            self._fail_next -= 1
            raise ExchangeUnavailable("Simulated exchange unavailable")
        if self._faults.latency_seconds > 0:
            await self._clock.sleep(self._faults.latency_seconds)
        if (
            self._faults.reject_rate > 0
            and self._rng.randrange(_REJECT_SCALE) < self._faults.reject_rate * _REJECT_SCALE
        ):
            raise ExchangeUnavailable("Simulated exchange unavailable")

    def _push(self, channels: Iterable[_Channel[_T]], items: Iterable[_T]) -> None:
        for item in items:
            for channel in channels:
                channel.push(item)

    async def _publish_step(self, fills: list[Fill], ticker: Ticker) -> None:
        if fills:
            self._push(self._fill_channels, fills)
            await self._wait_idle(include_tickers=False)
        self._push(self._ticker_channels, (ticker,))
        # Handling a ticker may place orders that fill at once: wait for those fills too.
        await self._wait_idle(include_tickers=True)

    async def _wait_idle(self, *, include_tickers: bool) -> None:
        while not self._closed:
            channels: list[_Channel[Any]] = [*self._fill_channels]
            if include_tickers:
                channels.extend(self._ticker_channels)
            busy = [channel for channel in channels if channel.busy]
            if not busy:
                return
            for channel in busy:
                await channel.wait_idle()

    def _subscriber_count(self) -> int:
        return len(self._ticker_channels) + len(self._fill_channels)

    def _notify_subscribers(self) -> None:
        waiter = self._subscribers_changed
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_for_subscribers(self) -> None:
        while not self._closed and self._subscriber_count() < self._min_subscribers:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._subscribers_changed = waiter
            try:
                await waiter
            finally:
                self._subscribers_changed = None

    async def _pace(self, point: PricePoint) -> None:
        if self._follow_timestamps:
            delay = (point.timestamp - self._clock.now()).total_seconds()
        else:
            delay = self._step_interval
        if delay <= 0:
            await asyncio.sleep(0)  # never hog the loop, even on a path without pauses
            return
        clock = self._clock
        if isinstance(clock, SimulatedClock) and clock.auto_advance:
            await clock.sleep(delay)  # ends as soon as everyone is idle: no need to race close()
            return
        sleeper = asyncio.ensure_future(clock.sleep(delay))
        closing = asyncio.ensure_future(self._closed_event.wait())
        try:
            await asyncio.wait((sleeper, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel_all(sleeper, closing)


class MarketClock:
    """Clock port on the simulated exchange's market time: `now()` is the current price point's
    timestamp (the wall clock's before the first point), `monotonic()` counts market seconds.
    Sleeping still waits on the underlying clock: a `--duration` or a retry's backoff is real time."""

    def __init__(self, exchange: SimulatedExchange) -> None:
        self._exchange = exchange
        self._origin = exchange._now()

    def now(self) -> datetime:
        return self._exchange._now()

    def monotonic(self) -> float:
        return (self._exchange._now() - self._origin).total_seconds()

    async def sleep(self, seconds: float) -> None:
        await self._exchange._clock.sleep(seconds)


async def _cancel_all(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


if TYPE_CHECKING:

    def _implements_ports(
        exchange: SimulatedExchange,
    ) -> tuple[ExchangeGateway, MarketDataFeed, OrderUpdateFeed]:
        return exchange, exchange, exchange
