"""Process lifecycle for the commands: resources up, the use case, resources down (always)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TypeVar, cast

import structlog
from returns.result import Failure

from adapters.persistence.database import is_in_memory
from adapters.persistence.lease import GridLease
from application.grid_bot import GridBot, RunOutcome
from application.trade import TradeIntent, place_trade
from bootstrap.container import build_container
from bootstrap.monitoring import Monitoring, open_monitoring
from bootstrap.settings import Settings
from bootstrap.venues import Venue
from domain.errors import ConfigurationError, DomainError
from domain.models import OrderType, Side
from domain.ports import Clock

log = structlog.get_logger(__name__)
T = TypeVar("T")


async def _stop_after(clock: Clock, seconds: float, stop: asyncio.Event) -> None:
    await clock.sleep(seconds)
    log.info("duration reached: stopping", seconds=seconds)
    stop.set()


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, sig, stop)


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    if stop.is_set():
        return
    log.info("signal received: stopping cleanly", signal=sig.name)
    stop.set()


async def run_bot(
    settings: Settings, *, duration: float | None = None, stopped_early: Callable[[], bool] | None = None
) -> RunOutcome | None:
    """Run the grid until a signal, --duration, a risk stop or the end of market data.
    Open orders stay on the venue when the user stops the bot: the next start resumes them.

    Order of start-up: the database (opened, schema checked), then this grid's lease (one bot per
    grid), then the venue. So every local problem is reported before the first venue call, and a
    second bot never sends anything. Ctrl-C and --duration are honoured from the start, also
    while the venue is waited out. None when stopped before the grid started."""
    if is_in_memory(settings.database.url):
        raise ConfigurationError(
            "DATABASE__URL",
            "an in-memory database forgets the grid's books when the bot stops, while its orders stay "
            "on the exchange: name a file (e.g. sqlite+aiosqlite:///var/gridbot.sqlite3)",
        )
    container = build_container(settings)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    if stopped_early is not None and stopped_early():  # Ctrl-C came while the bot was loading
        log.info("signal received: stopping cleanly")
        stop.set()
    clock = container.clock()
    background: list[asyncio.Task[None]] = []
    lease: GridLease | None = None
    lost: list[str] = []
    monitoring: Monitoring | None = None
    telling = contextlib.AsyncExitStack()  # the health endpoint and alerts, closed last
    try:
        database = await container.database()  # type: ignore[misc]
        lease = GridLease(database.engine, grid_lease_name(settings), clock)
        await lease.acquire()

        def on_lost(reason: str) -> None:
            lost.append(reason)
            stop.set()

        background.append(asyncio.create_task(lease.keep(on_lost), name="grid-lease"))
        monitoring = await telling.enter_async_context(open_monitoring(settings, clock))
        if duration is not None:
            background.append(asyncio.create_task(_stop_after(clock, duration, stop), name="duration"))
        opening = cast("Awaitable[Venue]", container.venue())  # a Resource: awaited, it opens
        venue = await _unless_stopped(opening, stop)
        if venue is None:
            log.warning("stopped before the grid started")
            return None
        monitoring.attach_venue(venue)
        bot: GridBot = await container.grid_bot(observer=monitoring.observer)  # type: ignore[misc]
        log.info(
            "bot starting",
            exchange=venue.name,
            symbol=settings.trading.symbol,
            database=_safe_url(settings.database.url),
            duration=duration,
        )
        venue_tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(job()) for job in venue.background]
        background.extend(venue_tasks)
        if venue.ready is not None:
            await venue.ready()  # e.g. the simulated market has published its first price
        bot_task = asyncio.create_task(bot.run(stop), name="grid-bot")
        watched = {bot_task, *venue_tasks}
        while True:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if bot_task in done:
                outcome = bot_task.result()
                if lost:
                    raise DomainError(f"stopped: {lost[0]}")
                return outcome
            for task in done:
                watched.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    stop.set()  # a venue task crashed: stop the bot, then report the crash
                    await asyncio.gather(bot_task, return_exceptions=True)
                    task.result()
    except Exception as exc:
        if monitoring is not None:
            monitoring.bot_failed(exc)  # alerted before the endpoint and alerts close
        raise
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if lease is not None and lease.held:
            await lease.release()
        await telling.aclose()
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


async def _unless_stopped(opening: Awaitable[T], stop: asyncio.Event) -> T | None:
    """`opening`'s result, or None if `stop` is set first (then `opening` is cancelled)."""
    task = asyncio.ensure_future(opening)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


def grid_lease_name(settings: Settings) -> str:
    """What one bot at a time may trade: the account (venue, and API key on Binance) and symbol."""
    exchange = settings.exchange
    if exchange.kind in ("simulated", "paper"):
        account: str = exchange.kind  # the simulated exchange's own account (paper: live prices)
    else:
        key = exchange.api_key.get_secret_value() if exchange.api_key is not None else ""
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]  # names the key without showing it
        account = f"binance-{'testnet' if exchange.testnet else 'live'}-{digest}"
    return f"{account}/{settings.trading.symbol}"


def _safe_url(url: str) -> str:
    """A database URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def _decimal_arg(name: str, text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ConfigurationError(name, f"must be a number, got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise ConfigurationError(name, f"must be a positive number, got {text!r}")
    return value


async def place_one_trade(settings: Settings, args: argparse.Namespace) -> int:
    side = Side(args.side)
    order_type = OrderType(args.order_type)
    amount = _decimal_arg("--amount", args.amount)
    price = _decimal_arg("--price", args.price) if args.price is not None else None
    if order_type is OrderType.LIMIT and price is None:
        raise ConfigurationError("--price", "is required for --type limit")
    if order_type is OrderType.MARKET and price is not None:
        raise ConfigurationError("--price", "only applies to --type limit")
    container = build_container(settings)
    try:
        await container.init_resources()  # type: ignore[misc]
        venue = await container.venue()  # type: ignore[misc]
        database = await container.database()  # type: ignore[misc]
        result = await place_trade(
            TradeIntent(settings.trading.symbol, side, order_type, amount, price),
            gateway=venue.gateway,
            uow_factory=database.uow,
            clock=container.clock(),
            exchange=venue.name,
        )
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown
    if isinstance(result, Failure):
        rejection = result.failure()
        sys.stderr.write(f"error: order not sent: {rejection.rule}: {rejection.reason}\n")
        return 1
    trade = result.unwrap()
    order = trade.order
    fields = {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "status": order.status.value,
        "amount": f"{trade.sent_amount.normalize():f}",
        "price": None if trade.sent_price is None else f"{trade.sent_price.normalize():f}",
        "filled": f"{order.filled.normalize():f}",
        "average_price": None if order.average_price is None else f"{order.average_price.normalize():f}",
        "fee": f"{order.fee.normalize():f}",
        "fee_asset": order.fee_asset,
    }
    if args.json:
        sys.stdout.write(json.dumps(fields, indent=2) + "\n")
    else:
        width = max(len(k) for k in fields)
        sys.stdout.write(
            "".join(
                f"{k.replace('_', ' '):<{width}}  {v if v is not None else '-'}\n" for k, v in fields.items()
            )
        )
    return 0
