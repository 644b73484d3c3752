"""Process lifecycle for the commands: resources up, the use case, resources down (always)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from decimal import Decimal, InvalidOperation

import structlog
from returns.result import Failure

from application.grid_bot import GridBot, RunOutcome
from application.trade import TradeIntent, place_trade
from bootstrap.container import build_container
from bootstrap.settings import Settings
from domain.errors import ConfigurationError
from domain.models import OrderType, Side
from domain.ports import Clock

log = structlog.get_logger(__name__)


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


async def run_bot(settings: Settings, *, duration: float | None = None) -> RunOutcome | None:
    """Run the grid until a signal, --duration, a risk stop or the end of market data.
    Open orders stay on the venue when the user stops the bot: the next start resumes them."""
    container = build_container(settings)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    background: list[asyncio.Task[None]] = []
    try:
        await container.init_resources()  # type: ignore[misc]
        venue = await container.venue()  # type: ignore[misc]
        bot: GridBot = await container.grid_bot()  # type: ignore[misc]
        clock = container.clock()
        log.info(
            "bot starting",
            exchange=venue.name,
            symbol=settings.trading.symbol,
            database=_safe_url(settings.database.url),
            duration=duration,
        )
        background = [asyncio.create_task(job(), name="venue") for job in venue.background]
        if venue.ready is not None:
            await venue.ready()  # e.g. the simulated market has published its first price
        if duration is not None:
            background.append(asyncio.create_task(_stop_after(clock, duration, stop), name="duration"))
        bot_task = asyncio.create_task(bot.run(stop), name="grid-bot")
        watched = {bot_task, *background}
        while True:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if bot_task in done:
                return bot_task.result()
            for task in done:
                watched.discard(task)
                if not task.cancelled() and task.exception() is not None:
                    stop.set()  # a venue task crashed: stop the bot, then report the crash
                    await asyncio.gather(bot_task, return_exceptions=True)
                    task.result()
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


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
