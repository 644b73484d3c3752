"""Process lifecycle for the commands: resources up, the use case, resources down (always)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, cast

import structlog
from returns.result import Failure

from adapters.clock import SystemClock
from adapters.logging import bind_process_context, clear_process_context, release_held_lines
from adapters.persistence.database import Database, is_in_memory, open_database
from adapters.persistence.lease import GridLease, live_holder
from application.grid_bot import GridBot, RunOutcome
from application.status import run_named
from application.trade import PlannedTrade, TradeIntent, cancel_manual_order, place_trade, plan_trade
from bootstrap.container import build_container
from bootstrap.monitoring import Monitoring, open_monitoring
from bootstrap.settings import ReadSettings, Settings
from bootstrap.venues import Venue
from domain.errors import ConfigurationError, DomainError, ExchangeUnavailable, GridInUse, Rejection
from domain.models import MANUAL_FINGERPRINT, BotRun, Fill, OrderType, RunStatus, Side
from domain.money import format_money
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


def _close_on_signal(bot: GridBot) -> None:
    """SIGUSR1 (from `stop --cancel-orders`): the bot closes its grid, cancelling and booking its
    orders, and stops; the run ends halted."""
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _on_close_signal, bot)


def _on_close_signal(bot: GridBot) -> None:
    log.warning("SIGUSR1 received: closing the grid (cancelling its orders)")
    bot.request_close(CLOSE_REASON)


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
        _close_on_signal(bot)
        log.info("bot starting", exchange=venue.name, symbol=settings.trading.symbol, duration=duration)
        log.info("books kept in", database=_safe_url(settings.database.url))
        venue_tasks: list[asyncio.Task[None]] = [asyncio.ensure_future(job()) for job in venue.background]
        background.extend(venue_tasks)
        if venue.ready is not None:
            await venue.ready()  # e.g. the simulated market has published its first price
        bot_task = asyncio.create_task(bot.run(stop), name="grid-bot")
        background.append(asyncio.create_task(_once_trading(bot), name="grid-trading"))
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
        clear_process_context("run_id")
        if lease is not None and lease.held:
            await lease.release()
        await telling.aclose()
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


async def _once_trading(bot: GridBot) -> None:
    """Once the grid trades, every line carries its run id (the venue's tasks too), and the lines
    held back while it started are printed (a start that fails prints only its `error:` line)."""
    await bot.started.wait()
    bind_process_context(run_id=bot.run_id)
    release_held_lines()


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


def grid_lease_name(settings: Settings | ReadSettings) -> str:
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


def _trade_intent(settings: Settings, args: argparse.Namespace) -> TradeIntent:
    side = Side(args.side)
    order_type = OrderType(args.order_type)
    amount = _decimal_arg("--amount", args.amount)
    price = _decimal_arg("--price", args.price) if args.price is not None else None
    if order_type is OrderType.LIMIT and price is None:
        raise ConfigurationError("--price", "is required for --type limit")
    if order_type is OrderType.MARKET and price is not None:
        raise ConfigurationError("--price", "only applies to --type limit")
    return TradeIntent(settings.trading.symbol, side, order_type, amount, price)


ONE_SHOT_PATIENCE = 3  # a one-shot command waits this many request timeouts for the venue to open


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[tuple[Venue, Database, Clock]]:
    """The venue and the database for a one-shot command, closed on the way out."""
    container = build_container(settings)
    # A bot waits out a venue that is down for as long as it takes; a one-shot command (trade,
    # cancel) is someone at a terminal or a script: it gives up and says so.
    patience_s = ONE_SHOT_PATIENCE * settings.exchange.request_timeout_s
    try:
        try:
            async with asyncio.timeout(patience_s):
                await container.init_resources()  # type: ignore[misc]
                venue = await container.venue()  # type: ignore[misc]
        except TimeoutError:
            raise ExchangeUnavailable(
                f"the exchange did not answer within {patience_s:g} s "
                f"({ONE_SHOT_PATIENCE} x EXCHANGE__REQUEST_TIMEOUT_S); nothing was sent"
            ) from None
        database = await container.database()  # type: ignore[misc]
        yield venue, database, container.clock()
    finally:
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown


def _write_fields(fields: dict[str, Any], *, as_json: bool, title: str | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(fields, indent=2) + "\n")
        return
    shown = {k: v for k, v in fields.items() if not isinstance(v, list | dict)}
    width = max(len(k) for k in shown)
    lines = [title] if title else []
    lines += [f"{k.replace('_', ' '):<{width}}  {v if v is not None else '-'}" for k, v in shown.items()]
    sys.stdout.write("\n".join(lines) + "\n")


def _fill_fields(fill: Fill) -> dict[str, Any]:
    return {
        "trade_id": fill.trade_id,
        "price": format_money(fill.price),
        "amount": format_money(fill.amount),
        "fee": format_money(fill.fee),
        "fee_asset": fill.fee_asset,
    }


async def place_one_trade(settings: Settings, args: argparse.Namespace) -> int:
    """`trade`: one order, checked, sent and booked with its fills; `--dry-run` stops before sending."""
    intent = _trade_intent(settings, args)
    async with _opened(settings) as (venue, database, clock):
        if args.dry_run:
            planned = await plan_trade(intent, gateway=venue.gateway)
            if isinstance(planned, Failure):
                return _not_sent(planned.failure())
            return _show_plan(planned.unwrap(), as_json=args.json)
        result = await place_trade(
            intent, gateway=venue.gateway, uow_factory=database.uow, clock=clock, exchange=venue.name
        )
    if isinstance(result, Failure):
        return _not_sent(result.failure())
    trade = result.unwrap()
    order = trade.order
    fields = {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": order.side.value,
        "type": order.type.value,
        "status": order.status.value,
        "amount": format_money(trade.sent_amount),
        "price": None if trade.sent_price is None else format_money(trade.sent_price),
        "filled": format_money(order.filled),
        "average_price": None if order.average_price is None else format_money(order.average_price),
        "fee": format_money(order.fee),
        "fee_asset": order.fee_asset,
        "fills_booked": len(trade.fills),
        "fills": [_fill_fields(f) for f in trade.fills],
    }
    _write_fields(fields, as_json=args.json)
    return 0


def _not_sent(rejection: Rejection) -> int:
    sys.stderr.write(f"error: order not sent: {rejection.rule}: {rejection.reason}\n")
    return 1


def _show_plan(plan: PlannedTrade, *, as_json: bool) -> int:
    request = plan.request
    fields = {
        "dry_run": True,
        "symbol": request.symbol,
        "side": request.side.value,
        "type": request.type.value,
        "amount": format_money(request.amount),
        "price": None if request.price is None else format_money(request.price),
        "reference_price": None if plan.reference_price is None else format_money(plan.reference_price),
        "client_order_id": request.client_order_id,
        "needs": f"{format_money(plan.needs)} {plan.needs_asset}",
        "available": f"{format_money(plan.available)} {plan.needs_asset}",
    }
    title = "Dry run: the order passes the market's filters and the balance check; nothing was sent."
    _write_fields(fields, as_json=as_json, title=title)
    return 0


async def cancel_one_order(settings: Settings, reference: str, *, as_json: bool) -> int:
    """`cancel ORDER`: one manual order, by client order id or the venue's order id."""
    async with _opened(settings) as (venue, database, clock):
        result = await cancel_manual_order(
            reference,
            symbol=settings.trading.symbol,
            gateway=venue.gateway,
            uow_factory=database.uow,
            clock=clock,
        )
    order = result.order
    fields = {
        "order_id": order.order_id,
        "client_order_id": result.was.client_order_id,
        "side": order.side.value,
        "status": order.status.value,
        "amount": format_money(order.amount),
        "price": None if order.price is None else format_money(order.price),
        "filled": format_money(order.filled),
        "fills_booked": len(result.fills),
    }
    _write_fields(fields, as_json=as_json)
    return 0


# --------------------------------------------------------------------------- stop
CLOSE_REASON = "closed with `stop --cancel-orders`"
STOP_POLL_S = 0.2


async def stop_grid(
    settings: Settings | ReadSettings, args: argparse.Namespace, full: Callable[[], Settings]
) -> int:
    """`stop`: the bot running the grid is signalled (SIGTERM, or SIGUSR1 to close the grid: it
    cancels its own orders and books them) and waited for; with no bot running, `--cancel-orders`
    closes the grid from here, once confirmed with `--yes`. `full()` loads the complete settings,
    which only cancelling on the venue needs."""
    key = settings.exchange.api_key
    if settings.exchange.kind == "binance" and (key is None or not key.get_secret_value().strip()):
        raise ConfigurationError(
            "EXCHANGE__API_KEY",
            "`stop` needs it to find the bot running this account's grid (its lease names the key)",
        )
    clock = SystemClock()
    lease_name = grid_lease_name(settings)
    async with open_database(settings.database.url) as database:
        run = await _grid_run(database, settings.trading.symbol, args.run_id)
        holder = await live_holder(database.engine, lease_name, clock)
        signalled = False
        if holder is not None:
            if holder.host != socket.gethostname():
                raise GridInUse(
                    f"process {holder.pid} on {holder.host} runs this grid; `stop` signals only bots on "
                    "this machine: stop it there"
                )
            sig = signal.SIGUSR1 if args.cancel_orders else signal.SIGTERM
            os.kill(holder.pid, sig)
            sys.stdout.write(
                f"Asked process {holder.pid} to {'close the grid (cancel its orders) and ' if args.cancel_orders else ''}stop ({sig.name}).\n"
            )
            signalled = True
            waited = 0.0
            while await live_holder(database.engine, lease_name, clock) is not None:
                if waited >= args.wait:
                    sys.stderr.write(f"error: process {holder.pid} has not stopped after {args.wait:g} s\n")
                    return 1
                await asyncio.sleep(STOP_POLL_S)
                waited += STOP_POLL_S
        async with database.uow() as uow:
            run = await uow.runs.get(run.run_id) or run
            active = await uow.orders.list_active(run.run_id)
            if run.status is RunStatus.RUNNING and not signalled:  # left by a bot that was killed
                run = replace(
                    run, status=RunStatus.STOPPED, stopped_at=clock.now(), stop_reason="stopped with `stop`"
                )
                await uow.runs.update(run)
                await uow.commit()
    if not args.cancel_orders or not active:
        sys.stdout.write(_run_line(run, len(active)))
        return 0
    if not signalled and not args.yes:
        sys.stderr.write(
            f"error: run {run.run_id[:12]} is {run.status.value} and its {len(active)} orders rest on the exchange, "
            "where the next `run` resumes them; cancelling them closes the grid for good: add --yes\n"
        )
        return EXIT_USAGE
    outcome = await close_grid(full(), run)
    async with open_database(settings.database.url) as database, database.uow() as uow:
        closed = await uow.runs.get(outcome.run_id) or run
        left = await uow.orders.list_active(outcome.run_id)
    sys.stdout.write(_run_line(closed, len(left)))
    return 0


EXIT_USAGE = 2


def _run_line(run: BotRun, open_orders: int) -> str:
    reason = f": {run.stop_reason}" if run.stop_reason else ""
    return f"Run {run.run_id[:12]} is {run.status.value}{reason}; {open_orders} open order(s) in the books.\n"


async def _grid_run(database: Database, symbol: str, run_id: str | None) -> BotRun:
    async with database.uow() as uow:
        run = (
            await run_named(uow, run_id)
            if run_id
            else await uow.runs.latest(symbol, exclude_fingerprint=MANUAL_FINGERPRINT)
        )
    if run is None:
        raise DomainError(
            f"no run with id {run_id!r} (or starting with it) in this database"
            if run_id
            else f"no grid run of {symbol} in this database"
        )
    if run.grid_fingerprint == MANUAL_FINGERPRINT:
        raise DomainError(f"run {run.run_id[:12]} is a manual trade, not a grid: `cancel ORDER` cancels it")
    return run


async def close_grid(settings: Settings, run: BotRun) -> RunOutcome:
    """Close a grid no bot runs: this process takes the grid's lease (so no bot starts meanwhile),
    then the grid bot cancels the run's orders and books what they filled (GridBot.close)."""
    container = build_container(settings)
    clock = container.clock()
    lease: GridLease | None = None
    try:
        database = await container.database()  # type: ignore[misc]
        lease = GridLease(database.engine, grid_lease_name(settings), clock)
        await lease.acquire()
        venue = await container.venue()  # type: ignore[misc]
        if venue.name != run.exchange:
            raise ConfigurationError(
                "BOT_CONFIG",
                f"run {run.run_id[:12]} trades on {run.exchange}; this profile's venue is {venue.name}",
            )
        bot: GridBot = await container.grid_bot()  # type: ignore[misc]
        return await bot.close(run, CLOSE_REASON)
    finally:
        if lease is not None and lease.held:
            await lease.release()
        shutdown = container.shutdown_resources()
        if shutdown is not None:
            await shutdown
