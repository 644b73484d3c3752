"""Use case: run the grid bot on one symbol, resume it after a restart, stop it on a risk rule.

This is the shell around the grid core (`domain.grid_core`), which makes every decision. The
shell turns port events (fills, tickers, command outcomes) into core events, books each decision
in one unit of work *before* acting on it, then carries out its commands. Events are handled one
at a time (one lock). A crash anywhere leaves the books at a decision that was made: an order
booked PENDING but never confirmed is looked up by its client order id on the next start, so
none is ever placed twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TypeVar

import structlog
from returns.result import Failure

from application.grid_books import book, leftover_of, run_with
from application.grid_venue import TRANSIENT, VenueCalls
from application.observing import RunReporter
from application.status import FEEDS_PARAM
from domain.errors import ConfigurationError, ExchangeError, ExchangeUnavailable
from domain.grid import (
    CLIENT_ID_PREFIX,
    FEE_QUANTUM,
    GridParams,
    GridPlan,
    initial_sells,
    leftover_after_initial_sells,
    plan_grid,
)
from domain.grid_core import CancelOrder, CoreConfig, Decision, GridCore, PlaceOrder
from domain.models import (
    MANUAL_FINGERPRINT,
    ZERO,
    BookedFill,
    BotRun,
    Fill,
    Order,
    OrderStatus,
    RunStatus,
    Side,
    Ticker,
    TrackedOrder,
)
from domain.money import format_money
from domain.ports import (
    BotObserver,
    Clock,
    ExchangeGateway,
    MarketDataFeed,
    OrderUpdateFeed,
    UnitOfWorkFactory,
)
from domain.risk import MarketState, MarketStateThresholds, RiskLimits
from domain.rules import MarketRules

log = structlog.get_logger(__name__)

T = TypeVar("T")
FEED_FIELDS = ("mode", "last_message_at", "fell_back_at", "last_error")  # noted for `status`
CHASE_INTERVAL_S = 5.0  # how often the trades of orders booked with inferred fills are looked for
RECHECK_INTERVAL_S = 60.0  # how often a running grid compares its open orders with the venue's
RUN_ID_LOG_KEY = "run_id"  # bound in structlog's contextvars while a run is on: every line carries it


def quote_locked_by(orders: Iterable[TrackedOrder]) -> Decimal:
    """Quote the venue holds for these orders' unfilled buys: what cancelling them frees. Orders
    the venue never confirmed (PENDING, OWED) hold nothing for sure, so they are not counted."""
    return sum(
        (
            o.remaining * o.price
            for o in orders
            if o.side is Side.BUY
            and o.price is not None
            and o.status in (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
        ),
        ZERO,
    )


def _money(value: Decimal) -> str:
    """A Decimal in a message (log fields that are Decimals are written so by the log set-up)."""
    return format_money(value)


@dataclass(frozen=True, slots=True)
class GridBotConfig:
    symbol: str
    exchange: str  # which venue the run trades on, e.g. "simulated" or "binance-testnet"
    grid: GridParams
    limits: RiskLimits
    maker_fee: Decimal
    taker_fee: Decimal
    thresholds: MarketStateThresholds = field(default_factory=MarketStateThresholds)
    volatility_window_s: float = 900.0  # market time the market-state classification looks back over
    start_attempts: int = 6  # tries of a venue call the bot cannot go on without (1 s, 2 s, 4 s, ... apart)
    heartbeat_s: float = 300.0  # clock time between two heartbeat log lines (0: none)


@dataclass(frozen=True, slots=True)
class RunOutcome:
    run_id: str
    status: RunStatus
    reason: str
    fills: int
    realized_pnl: Decimal


class GridBot:
    def __init__(
        self,
        config: GridBotConfig,
        *,
        gateway: ExchangeGateway,
        market_feed: MarketDataFeed,
        order_feed: OrderUpdateFeed,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        observer: BotObserver | None = None,
        feeds: Callable[[], Mapping[str, Mapping[str, object]]] | None = None,
    ) -> None:
        self._config = config
        self._feeds = feeds  # the venue's feeds' states, noted in the run for `status`
        self._feed_modes: tuple[tuple[str, object], ...] | None = None
        self._report = RunReporter(observer, clock, config.exchange)  # metrics, health, alerts
        self._venue = VenueCalls(gateway, clock, config.symbol, config.start_attempts)
        self._gateway = gateway
        self._market_feed = market_feed
        self._order_feed = order_feed
        self._uow = uow_factory
        self._clock = clock
        self._lock = asyncio.Lock()
        self._log = log.bind(symbol=config.symbol, exchange=config.exchange)
        self._run: BotRun | None = None
        self._core: GridCore | None = None
        self._stopped = asyncio.Event()
        self._reading = asyncio.Event()  # set while the start waits on a venue read
        self._last_chase = float("-inf")
        self._last_recheck = float("-inf")
        self._last_heartbeat = float("-inf")
        self.started = asyncio.Event()  # set once the grid is laid or resumed, and trading
        self._close_requested = asyncio.Event()
        self._close_reason = "closed by the user"

    # ------------------------------------------------------------------ public
    @property
    def run_id(self) -> str | None:
        return None if self._run is None else self._run.run_id

    @property
    def core(self) -> GridCore:
        if self._core is None:
            raise RuntimeError("no grid: start() first")
        return self._core

    async def run(self, stop: asyncio.Event) -> RunOutcome | None:
        """Start or resume the grid, then react to fills and prices until `stop` is set, a feed
        ends, or a risk rule halts the grid. None when `stop` came before the grid had started
        (e.g. while the start waited out a rate limit): nothing was decided, so nothing is lost."""
        # The consumers subscribe first, so no fill of the orders placed at start is missed; they
        # wait on the decision lock until the start is done.
        consumers = [
            asyncio.create_task(self._consume_fills(), name="grid-fills"),
            asyncio.create_task(self._consume_tickers(), name="grid-tickers"),
        ]
        waiters = [
            asyncio.create_task(stop.wait(), name="grid-stop"),
            asyncio.create_task(self._stopped.wait(), name="grid-halt"),
            asyncio.create_task(self._close_when_asked(), name="grid-close"),
        ]
        reason = "stop requested"
        started = False
        try:
            async with self._lock:
                await asyncio.sleep(0)
                started = await self._start_unless_stopped(waiters[0])
            if started:
                self._report.started(self.core)
                self._last_heartbeat = self._clock.monotonic()
                self.started.set()
                done, _ = await asyncio.wait([*consumers, *waiters], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task in consumers:
                        task.result()  # re-raise a consumer's crash
                        reason = "market data ended" if task is consumers[1] else "order updates ended"
        finally:
            # Stop between events, never inside one: a decision half carried out would leave an order
            # placed but booked PENDING (safe, as after a crash, but a clean stop should be clean).
            async with self._lock:
                for task in [*consumers, *waiters]:
                    task.cancel()
                await asyncio.gather(*consumers, *waiters, return_exceptions=True)
        if not started:
            if self._run is None:
                self._log.warning("stopped before the grid started")
                return None
            return await self._finish("stopped while starting", catch_up=False)
        return await self._finish(reason)

    async def _start_unless_stopped(self, stop: asyncio.Task[object]) -> bool:
        """start(), unless `stop` completes while the start waits on a venue read (it may be
        waiting out a ban or an outage for a long time): then the start is abandoned, which is
        safe, as nothing is decided during a read. A stop that comes while the start is placing
        orders lets it finish, so the stop is a clean one. True when the start completed."""
        starting = asyncio.create_task(self.start(), name="grid-start")
        await asyncio.wait([starting, stop], return_when=asyncio.FIRST_COMPLETED)
        while not starting.done():
            if self._reading.is_set():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
                return False
            reading = asyncio.create_task(self._reading.wait())
            await asyncio.wait([starting, reading], return_when=asyncio.FIRST_COMPLETED)
            reading.cancel()
        starting.result()
        return True

    async def _read_patiently(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A venue read the start cannot go on without: waited out however long the venue is
        rate limited or down (a stop may abandon the start meanwhile: see _start_unless_stopped)."""
        self._reading.set()
        try:
            return await self._venue.retrying(what, call, patient=True)
        finally:
            self._reading.clear()

    async def _read(self, what: str, call: Callable[[], Awaitable[T]], *, patient: bool | None) -> T:
        """patient: waited out (starting); False: a few tries (stopping); None: one try, for a
        running grid, which hears of a failure as any event's (the next tick tries again)."""
        if patient:
            return await self._read_patiently(what, call)
        if patient is None:
            return await call()
        return await self._venue.retrying(what, call)

    async def start(self) -> None:
        """Resume the latest run on this venue if it has the same grid, else start a new one.
        A new grid is checked in full (range, filters, fees, funds) before an old one is touched:
        a refused change leaves the old grid resting and resumable. The caller holds the lock."""
        symbol = self._config.symbol
        rules = await self._read_patiently("market_rules", lambda: self._gateway.market_rules(symbol))
        ticker = await self._read_patiently("fetch_ticker", lambda: self._gateway.fetch_ticker(symbol))
        fingerprint = self._config.grid.fingerprint(symbol)
        async with self._uow() as uow:
            latest = await uow.runs.latest(symbol, exclude_fingerprint=MANUAL_FINGERPRINT)
            resumable = (
                latest is not None
                and latest.exchange == self._config.exchange
                and latest.status in (RunStatus.RUNNING, RunStatus.STOPPED)
            )
            old_orders = await uow.orders.list_active(latest.run_id) if latest and resumable else ()
        await self._refuse_strangers()
        if latest is not None and resumable and latest.grid_fingerprint == fingerprint:
            await self._resume(latest, rules, ticker)
            return
        plan = self._plan(rules, ticker)
        await self._check_funds(rules, ticker, plan, freed=quote_locked_by(old_orders))
        if latest is not None and resumable:
            await self._retire(latest, old_orders, "superseded by a grid with new parameters")
        await self._new_run(rules, ticker, plan)

    # ------------------------------------------------------------------ carrying out decisions
    async def _carry_out(self, decision: Decision) -> list[Order]:
        """Book a decision, log it, then execute its commands; their outcomes are decisions too,
        booked and executed in turn. Returns the venue's view of every order placed."""
        placed: list[Order] = []
        pending = [decision]
        while pending:
            current = pending.pop(0)
            await self._book(current)
            self._log_notes(current)
            self._report.decided(current)
            outcome = Decision()
            venue_down = False
            for command in current.commands:
                if isinstance(command, CancelOrder):
                    outcome.merge(await self._venue.cancel(self.core, command))
                    self._report.cancelled(command.order)
                elif venue_down or not self.core.wants_placed(command.order.client_order_id):
                    self.core.deferred(command.order.client_order_id)
                else:
                    result, order = await self._venue.place(self.core, command)
                    venue_down = self.core.market_state is MarketState.MAINTENANCE
                    outcome.merge(result)
                    if order is not None:
                        placed.append(order)
                        self._report.placed(command.order)
            if current.halted is not None:
                outcome.merge(await self._after_halt())
            if outcome.needs_booking or outcome.commands or outcome.notes:
                pending.append(outcome)
        return placed

    async def _book(self, decision: Decision) -> None:
        ticker = self.core.last_ticker
        self._run = await book(
            self._uow, self._run_or_raise(), decision, ticker.last if ticker is not None else None
        )

    def _log_notes(self, decision: Decision) -> None:
        for note in decision.notes:
            # "level" is the log line's own severity key: a grid level is logged as grid_level.
            fields = {"grid_level" if k == "level" else k: v for k, v in note.fields.items()}
            order_id = fields.get("order")
            if "grid_level" not in fields and isinstance(order_id, str) and self._core is not None:
                order = self._core.order(order_id)
                if order is not None:  # an order line names its level too
                    fields["grid_level"] = order.level
            getattr(self._log, note.severity)(note.event, **fields)

    def _bind_run(self) -> None:
        """Every log line of this task carries the run id from now on (structlog contextvars)."""
        if self._run is not None:
            structlog.contextvars.bind_contextvars(**{RUN_ID_LOG_KEY: self._run.run_id})

    def _heartbeat(self) -> bool:
        """Every `heartbeat_s` of clock time, one line saying how the grid stands (and its feeds).
        True when it was time."""
        every = self._config.heartbeat_s
        now = self._clock.monotonic()
        if every <= 0 or self._core is None or now - self._last_heartbeat < every:
            return False
        self._last_heartbeat = now
        snapshot = self._report.snapshot(self._core)
        feeds = {} if self._feeds is None else self._feeds()
        self._log.info(
            "heartbeat",
            price=snapshot.last_price,
            position=snapshot.position,
            realized_pnl=snapshot.realized_pnl,
            unrealized_pnl=snapshot.unrealized_pnl,
            open_orders=snapshot.open_orders,
            **{name: state.get("mode") for name, state in feeds.items()},
        )
        return True

    async def _note_feeds(self, *, heartbeat: bool) -> None:
        """Note the feeds' states in the run when one changes mode, and at every heartbeat, so that
        `status` can say which is live, when it last spoke and when it fell back."""
        if self._feeds is None or self._run is None:
            return
        feeds = self._feeds()
        modes = tuple(sorted((name, state.get("mode")) for name, state in feeds.items()))
        if modes == self._feed_modes and not heartbeat:
            return
        self._feed_modes = modes
        noted = {
            name: {key: state.get(key) for key in FEED_FIELDS if key in state}
            for name, state in feeds.items()
        }
        note = json.dumps({"noted_at": self._clock.now().isoformat(), "feeds": noted})
        run = replace(self._run, params={**self._run.params, FEEDS_PARAM: note})
        async with self._uow() as uow:
            await uow.runs.update(run)
            await uow.commit()
        self._run = run

    # ------------------------------------------------------------------ start
    def _core_config(
        self, run_id: str, rules: MarketRules, levels: tuple[Decimal, ...], quantity: Decimal
    ) -> CoreConfig:
        cfg = self._config
        return CoreConfig(
            run_id=run_id,
            symbol=cfg.symbol,
            rules=rules,
            levels=levels,
            quantity=quantity,
            limits=cfg.limits,
            maker_fee=cfg.maker_fee,
            taker_fee=cfg.taker_fee,
            thresholds=cfg.thresholds,
            volatility_window_s=cfg.volatility_window_s,
        )

    def _plan(self, rules: MarketRules, ticker: Ticker) -> GridPlan:
        cfg = self._config
        planned = plan_grid(cfg.grid, rules, ticker.last, maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee)
        if isinstance(planned, Failure):
            rejection = planned.failure()
            raise ConfigurationError(rejection.rule, rejection.reason)
        return planned.unwrap()

    async def _refuse_strangers(self) -> None:
        """Open orders of this bot's making that these books never placed belong to another bot on
        the same account, or to a database that was replaced: a grid laid beside them would stack a
        second ladder on the same levels."""
        symbol = self._config.symbol
        venue_open = await self._read_patiently(
            "fetch_open_orders", lambda: self._gateway.fetch_open_orders(symbol)
        )
        ours = [o.client_order_id for o in venue_open if o.client_order_id.startswith(CLIENT_ID_PREFIX)]
        async with self._uow() as uow:
            strangers = [cid for cid in ours if await uow.orders.get(cid) is None]
        if strangers:
            raise ConfigurationError(
                "DATABASE__URL",
                f"the exchange holds {len(strangers)} open grid order(s) on {symbol} that this database "
                f"never placed (e.g. {strangers[0]}): another bot's, or those of a database that was "
                "replaced; point DATABASE__URL at the database that placed them, or cancel them",
            )

    async def _check_funds(
        self, rules: MarketRules, ticker: Ticker, plan: GridPlan, *, freed: Decimal
    ) -> None:
        """The grid's quote must be free, counting what cancelling the old grid would free."""
        balances = await self._read_patiently("fetch_balances", self._gateway.fetch_balances)
        quote_free = balances[rules.quote_asset].free if rules.quote_asset in balances else ZERO
        quote_needed = plan.quote_for_buys + plan.base_to_buy * ticker.ask
        if quote_free + freed < quote_needed:
            counted = f" (counting {_money(freed)} the old grid's buys would free)" if freed > 0 else ""
            raise ConfigurationError(
                "GRID__INVESTMENT",
                f"the grid needs {_money(quote_needed)} {rules.quote_asset} free, "
                f"the account has {quote_free.normalize():f} {rules.quote_asset}{counted}",
            )

    async def _new_run(self, rules: MarketRules, ticker: Ticker, plan: GridPlan) -> None:
        cfg = self._config
        price = ticker.last
        now = self._clock.now()
        run = BotRun(
            run_id=uuid.uuid4().hex,
            symbol=cfg.symbol,
            exchange=cfg.exchange,
            status=RunStatus.RUNNING,
            started_at=now,
            grid_fingerprint=cfg.grid.fingerprint(cfg.symbol),
            params={
                "levels": ",".join(str(level) for level in plan.levels),
                "quantity": str(plan.quantity),
                "start_price": str(price),
                "investment": str(cfg.grid.investment),
                "spacing": cfg.grid.spacing.value,
                "last_price": str(price),
            },
        )
        async with self._uow() as uow:
            await uow.runs.add(run)
            await uow.commit()
        self._run = run
        self._last_recheck = self._clock.monotonic()
        self._core = GridCore(self._core_config(run.run_id, rules, plan.levels, plan.quantity))
        self._report.begin(run, self.core, (), resumed=False)
        self._bind_run()
        self._log_notes(self.core.observe(ticker))
        self._log.info(
            "grid started",
            lower=plan.levels[0],
            upper=plan.levels[-1],
            levels=len(plan.levels),
            quantity=plan.quantity,
            price=price,
            empty_level=plan.empty_level,
            buys=len(plan.buys),
            sells=len(plan.sell_levels),
        )
        if plan.base_to_buy > 0:
            base_received, quote_spent = await self._buy_inventory(plan.base_to_buy, price, rules)
            sells = initial_sells(plan, base_received, quote_spent)
            leftover = leftover_after_initial_sells(sells, base_received, quote_spent)
            await self._carry_out(self.core.lay([*plan.buys, *sells], self._clock.now(), leftover))
        else:
            await self._carry_out(self.core.lay(plan.buys, self._clock.now()))

    async def _buy_inventory(
        self, amount: Decimal, price: Decimal, rules: MarketRules
    ) -> tuple[Decimal, Decimal]:
        """Market-buy the base the initial sells need; returns (base received after fee, quote spent)."""
        placed = await self._carry_out(self.core.market_order(Side.BUY, amount, self._clock.now()))
        order = placed[0] if placed else None
        if order is None or order.filled <= 0:
            raise ExchangeError("the initial purchase of the grid's base inventory did not fill")
        avg = order.average_price or price
        quote_spent = order.filled * avg
        base_fee = order.fee if order.fee_asset == rules.base_asset else ZERO
        if order.fee_asset is None:
            base_fee = (order.filled * self._config.taker_fee).quantize(FEE_QUANTUM)
        self._log.info("base inventory bought", amount=order.filled, average_price=avg, fee=base_fee)
        return order.filled - base_fee, quote_spent

    async def _resume(self, run: BotRun, rules: MarketRules, ticker: Ticker) -> None:
        """Rebuild the core from the books, reconcile it with the venue, then carry on."""
        active, fills = await self._restore(run, rules, ticker, status=RunStatus.RUNNING)
        self._log.info("resuming grid", active_orders=len(active), fills=len(fills))
        caught_up = await self._catch_up(patient=True)
        replaced = await self._reconcile_orders(patient=True)
        self._last_recheck = self._clock.monotonic()
        self._log.info("reconciled", fills_caught_up=caught_up, replaced=replaced)
        await self._carry_out(self.core.on_ticker(ticker))

    async def _restore(
        self, run: BotRun, rules: MarketRules, ticker: Ticker, *, status: RunStatus
    ) -> tuple[Sequence[TrackedOrder], Sequence[BookedFill]]:
        """The core rebuilt from the run's books; the run booked with `status`."""
        levels = tuple(Decimal(p) for p in run.params["levels"].split(","))
        quantity = Decimal(run.params["quantity"])
        async with self._uow() as uow:
            active = await uow.orders.list_active(run.run_id)
            every_order = await uow.orders.list_for_run(run.run_id)
            fills = await uow.fills.list_for_run(run.run_id)
            if run.status is not status:
                run = replace(run, status=status, stopped_at=None, stop_reason=None)
                await uow.runs.update(run)
                await uow.commit()
        self._run = run
        self._bind_run()
        self._core = GridCore.restore(
            self._core_config(run.run_id, rules, levels, quantity),
            active=active,
            fills=fills,
            every_order=every_order,
            leftover=leftover_of(run),
        )
        self._report.begin(run, self.core, fills, resumed=True)
        self._log_notes(self.core.observe(ticker))
        return active, fills

    async def close(self, run: BotRun, reason: str) -> RunOutcome:
        """Close a grid no bot runs (`stop --cancel-orders`): cancel its orders on the venue, book
        what they and the others filled while no bot ran, and end the run halted (not resumed).
        The caller holds the grid's lease. A running bot closes its own grid: `request_close`."""
        symbol = self._config.symbol
        rules = await self._venue.retrying("market_rules", lambda: self._gateway.market_rules(symbol))
        ticker = await self._venue.retrying("fetch_ticker", lambda: self._gateway.fetch_ticker(symbol))
        async with self._lock:
            await self._restore(run, rules, ticker, status=run.status)
            await self._carry_out(self.core.close(reason, self._clock.now()))
            await self._catch_up()
        return await self._finish(reason, catch_up=False)

    def request_close(self, reason: str) -> None:
        """Close the running grid (a signal from `stop --cancel-orders`): cancel its orders and end
        the run halted, between two events."""
        self._close_reason = reason
        self._close_requested.set()

    async def _close_when_asked(self) -> None:
        await self._close_requested.wait()
        async with self._lock:
            if self._core is not None and self.core.halt is None:
                await self._carry_out(self.core.close(self._close_reason, self._clock.now()))

    async def _catch_up(self, *, patient: bool = False) -> int:
        """Book the trades the venue has that the books lack (after a restart or a gap), paging
        through the venue's trade history from the last booked trade until it is current."""
        run = self._run_or_raise()
        async with self._uow() as uow:
            since = await uow.fills.last_trade_id(run.run_id)
        symbol = self._config.symbol
        booked_before = self.core.fills_booked
        while True:
            page = await self._read(
                "fetch_my_trades",
                functools.partial(self._gateway.fetch_my_trades, symbol, since),
                patient=patient,
            )
            if not page:
                break
            await self._carry_out(self.core.apply_fills(page, self._clock.now()))
            last = max(page, key=lambda fill: int(fill.trade_id) if fill.trade_id.isdigit() else -1).trade_id
            if last == since:
                break
            since = last
        return self.core.fills_booked - booked_before

    async def _reconcile_orders(self, *, patient: bool | None) -> int:
        """Every order the books hold as possibly on the venue but the venue does not list as open:
        book its trades (inferring them only when the venue has none yet), or place it again if it
        is gone without filling. Returns how many orders were placed again."""
        symbol = self._config.symbol
        venue_open = {
            o.client_order_id: o
            for o in await self._read(
                "fetch_open_orders", lambda: self._gateway.fetch_open_orders(symbol), patient=patient
            )
        }
        replaced = 0
        for tracked in self.core.active_orders:
            if tracked.status is OrderStatus.OWED:
                continue
            cid = tracked.client_order_id
            on_venue = venue_open.get(cid)
            if on_venue is not None:
                if (tracked.exchange_order_id, tracked.status) != (on_venue.order_id, on_venue.status):
                    await self._carry_out(
                        self.core.accepted(cid, on_venue.order_id, on_venue.status, self._clock.now())
                    )
                continue
            if not self.core.may_be_on_venue(tracked):
                continue
            found = await self._read(
                "fetch_order", functools.partial(self._venue.look_up, cid), patient=patient
            )
            if found is None:
                if tracked.status is OrderStatus.PENDING:
                    self.core.never_sent(cid)  # booked, but the crash came before the send
                else:
                    await self._carry_out(
                        self.core.gone(cid, self._clock.now(), reason="unknown to the venue")
                    )
                    replaced += 1
                continue
            await self._settle(tracked, found, patient=patient)
            if (
                found.status.is_final
                and found.filled < tracked.amount
                and found.status is not OrderStatus.FILLED
            ):
                await self._carry_out(
                    self.core.gone(
                        cid, self._clock.now(), reason=f"the venue reports it {found.status.value}"
                    )
                )
                replaced += 1
        return replaced

    async def _settle(self, tracked: TrackedOrder, found: Order, *, patient: bool | None) -> None:
        """Book the trades of an order that is no longer open, from its own trade list first."""
        cid = tracked.client_order_id
        now = self._clock.now()
        await self._carry_out(self.core.accepted(cid, found.order_id, OrderStatus.OPEN, now))
        if found.filled <= 0:
            return
        symbol = self._config.symbol
        trades: Sequence[Fill] = await self._read(
            "fetch_order_trades",
            lambda: self._gateway.fetch_order_trades(symbol, found.order_id),
            patient=patient,
        )
        await self._carry_out(self.core.apply_fills(trades, now))
        current = self.core.order(cid)
        if found.status is OrderStatus.FILLED and current is not None and current.status.is_active:
            price = found.average_price or tracked.price or ZERO
            await self._carry_out(self.core.infer_fill(cid, price, now))

    async def _retire(self, run: BotRun, active: Sequence[TrackedOrder], reason: str) -> None:
        """Cancel what an older grid on this venue left open, then close it."""
        now = self._clock.now()
        for tracked in active:
            await self._venue.cancel_tracked(tracked)
        async with self._uow() as uow:
            for tracked in active:
                await uow.orders.update(replace(tracked, status=OrderStatus.CANCELED, updated_at=now))
            await uow.runs.update(replace(run, status=RunStatus.STOPPED, stopped_at=now, stop_reason=reason))
            fills = await uow.fills.list_for_run(run.run_id)
            await uow.commit()
        log.warning("previous grid closed", run_id=run.run_id, reason=reason, cancelled=len(active))
        base_asset = self._config.symbol.split("/")[0]
        base = sum(
            (
                b.fill.amount - (b.fill.fee if b.fill.fee_asset == base_asset else ZERO)
                if b.fill.side is Side.BUY
                else -b.fill.amount
                for b in fills
            ),
            ZERO,
        )
        if base > 0:
            log.warning(
                "the previous grid's base stays in the account; the new grid does not sell it",
                run_id=run.run_id,
                base=base,
                asset=base_asset,
            )

    # ------------------------------------------------------------------ events
    async def _consume_fills(self) -> None:
        async for fill in self._order_feed.fills(self._config.symbol):
            async with self._lock:
                await self._handle([fill], None)

    async def _consume_tickers(self) -> None:
        async for ticker in self._market_feed.tickers(self._config.symbol):
            async with self._lock:
                await self._handle((), ticker)

    async def _handle(self, fills: Iterable[Fill], ticker: Ticker | None) -> None:
        self._bind_run()  # the consumers' tasks began before the run was known
        self._report.event(ticker)
        try:
            if ticker is not None:
                if self.core.halt is not None:
                    if not self._stopped.is_set():  # an outage interrupted the stop: finish it
                        await self._carry_out(await self._after_halt())
                    return
                await self._carry_out(self.core.on_ticker(ticker))
                await self._chase_inferred()
                await self._recheck_orders()
                await self._note_feeds(heartbeat=self._heartbeat())
            else:
                await self._carry_out(self.core.apply_fills(list(fills), self._clock.now()))
        except TRANSIENT as exc:  # booked or not, the event comes again (feed, catch-up, next ticker)
            self._log.warning("venue unavailable; carrying on", reason=str(exc))
            self._report.venue_error(exc)
            if isinstance(exc, ExchangeUnavailable):
                self._log_notes(self.core.venue_unavailable(self._clock.now()))
        finally:
            self._report.handled(self._core)

    async def _recheck_orders(self) -> None:
        """Every RECHECK_INTERVAL_S (on the clock port), the open orders the books hold are compared
        with the venue's, as at a start: an order cancelled on the venue's side (by hand, by a
        venue reset) is placed again, one that filled unseen is booked. Between two feeds' news
        nothing else would notice."""
        if self._clock.monotonic() - self._last_recheck < RECHECK_INTERVAL_S:
            return
        self._last_recheck = self._clock.monotonic()
        replaced = await self._reconcile_orders(patient=None)
        if replaced:
            self._log.warning("orders missing from the venue were placed again", replaced=replaced)

    async def _chase_inferred(self) -> None:
        """Fills inferred at reconciliation are replaced by the real trades when they appear: while
        any are booked, look for their orders' trades every CHASE_INTERVAL_S (on the clock port)."""
        provisional = self.core.provisional_orders()
        if not provisional or self._clock.monotonic() - self._last_chase < CHASE_INTERVAL_S:
            return
        self._last_chase = self._clock.monotonic()
        symbol = self._config.symbol
        for order in provisional:
            if order.exchange_order_id is None:
                continue
            trades = await self._gateway.fetch_order_trades(symbol, order.exchange_order_id)
            real = [t for t in trades if not t.is_inferred]
            if real:
                await self._carry_out(self.core.apply_fills(real, self._clock.now()))

    # ------------------------------------------------------------------ stop
    async def _after_halt(self) -> Decision:
        """A risk rule fired: finish cancelling and, when configured, sell the grid's base."""
        core = self.core
        for unconfirmed in core.unconfirmed_cancels():
            await self._venue.cancel(core, CancelOrder(unconfirmed))  # a halt's cancels decide nothing more
        self._log.info("grid orders cancelled")
        decision = Decision()
        halt = core.halt
        if halt is not None and halt.sell_base and not self._stopped.is_set():
            amount, cost = core.base_to_sell()
            if amount > 0:
                sale = core.market_order(Side.SELL, amount, self._clock.now(), cost)
                await self._book(sale)
                command = sale.commands[0]
                assert isinstance(command, PlaceOrder)
                result, order = await self._venue.place(core, command)
                decision.merge(result)
                await self._book(decision)
                await self._catch_up()  # book the sale now: the feeds stop with the grid
                self._log.info(
                    "grid base sold", amount=amount, status=order.status.value if order else "not sent"
                )
                decision = Decision()
        self._stopped.set()
        return decision

    async def _finish(self, reason: str, *, catch_up: bool = True) -> RunOutcome:
        run = self._run_or_raise()
        self._bind_run()
        core = self.core
        if core.halt is None and catch_up:
            try:  # a clean stop books what has happened
                async with self._lock:
                    await self._catch_up()
            except ExchangeError as exc:
                self._log.warning("last catch-up failed; the next start books it", reason=str(exc))
        status = RunStatus.HALTED if core.halt is not None else RunStatus.STOPPED
        final_reason = core.halt.reason if core.halt is not None else reason
        ticker = core.last_ticker
        async with self._uow() as uow:
            latest = await uow.runs.get(run.run_id) or run
            latest = run_with(latest, last_price=ticker.last if ticker is not None else None)
            await uow.runs.update(
                replace(latest, status=status, stopped_at=self._clock.now(), stop_reason=final_reason)
            )
            fills = await uow.fills.count(run.run_id)
            realized = await uow.fills.realized_pnl(run.run_id)
            await uow.commit()
        self._log.info(
            "grid stopped",
            status=status.value,
            reason=final_reason,
            fills=fills,
            realized_pnl=realized,
            open_orders=len(core.grid_orders()),
            owed_orders=len(core.owed_orders()),
        )
        self._report.stopped(core, status, final_reason)
        structlog.contextvars.unbind_contextvars(RUN_ID_LOG_KEY)  # the run is over
        return RunOutcome(run.run_id, status, final_reason, fills, realized)

    def _run_or_raise(self) -> BotRun:
        if self._run is None:
            raise RuntimeError("no run: start() first")
        return self._run
