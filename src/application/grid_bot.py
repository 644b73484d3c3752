"""Use case: run the grid bot on one symbol, resume it after a restart, stop it on a risk rule.

Decisions are serialized (one lock) and each is one unit of work, written *before* the venue is
asked: an order is booked PENDING under a deterministic client order id, then sent, then marked
OPEN. A crash anywhere in between leaves a PENDING row that the next start looks up on the venue
by client order id, so no order is ever placed twice. Fills are the single source of truth for
execution: an order becomes FILLED only through booked fills, each booked once by trade id and
countered once (the counter-order is found again through its parent's client order id).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import structlog
from returns.result import Failure
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from domain.errors import (
    ConfigurationError,
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
    RateLimited,
)
from domain.grid import (
    FEE_QUANTUM,
    NO_LEFTOVER,
    GridParams,
    GridPlan,
    Leftover,
    PlannedOrder,
    client_order_id,
    counter_order_carrying,
    initial_sells,
    leftover_after_initial_sells,
    plan_grid,
    sell_profit,
)
from domain.models import (
    MANUAL_FINGERPRINT,
    ZERO,
    BookedFill,
    BotRun,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    RunStatus,
    Side,
    Ticker,
    TrackedOrder,
)
from domain.ports import (
    Clock,
    ExchangeGateway,
    MarketDataFeed,
    OrderUpdateFeed,
    UnitOfWork,
    UnitOfWorkFactory,
)
from domain.risk import (
    Exposure,
    MarketState,
    MarketStateThresholds,
    RiskLimits,
    StopDecision,
    check_new_order,
    classify_market,
    evaluate_stop,
)
from domain.rules import MarketRules

T = TypeVar("T")
_TRANSIENT = (ExchangeUnavailable, RateLimited)

log = structlog.get_logger(__name__)

# Refusals that pass with time (the market calms, an order fills, a sell brings quote back): the order
# stays PENDING and is tried again on the next ticker instead of leaving a hole in the ladder.
_DEFERRABLE_RULES = frozenset({"MARKET_STATE", "MAX_OPEN_ORDERS", "MAX_NUM_ORDERS", "INVESTMENT"})


def _money(value: Decimal) -> str:
    """A Decimal for a log line: 8 places at most, no exponent, no trailing zeros."""
    return f"{value.quantize(FEE_QUANTUM).normalize():f}"


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
    ) -> None:
        self._config = config
        self._gateway = gateway
        self._market_feed = market_feed
        self._order_feed = order_feed
        self._uow = uow_factory
        self._clock = clock
        self._lock = asyncio.Lock()
        self._log = log.bind(symbol=config.symbol, exchange=config.exchange)
        self._rules: MarketRules | None = None
        self._run: BotRun | None = None
        self._levels: tuple[Decimal, ...] = ()
        self._quantity = ZERO
        self._leftover: Leftover = NO_LEFTOVER  # base under one step, carried into the next sell
        self._active: dict[str, TrackedOrder] = {}
        self._attempted: set[str] = set()  # PENDING orders whose send had an unknown outcome
        self._prices: deque[tuple[datetime, Decimal]] = deque()
        self._last_ticker: Ticker | None = None
        self._state = MarketState.NORMAL
        self._venue_available = True
        self._realized = ZERO
        self._fills = 0
        self._halt: StopDecision | None = None
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------------ public
    @property
    def run_id(self) -> str | None:
        return None if self._run is None else self._run.run_id

    async def run(self, stop: asyncio.Event) -> RunOutcome:
        """Start or resume the grid, then react to fills and prices until `stop` is set, a feed
        ends, or a risk rule halts the grid."""
        # The consumers subscribe first, so no fill of the orders placed at start is missed; they
        # wait on the decision lock until the start is done.
        consumers = [
            asyncio.create_task(self._consume_fills(), name="grid-fills"),
            asyncio.create_task(self._consume_tickers(), name="grid-tickers"),
        ]
        waiters = [
            asyncio.create_task(stop.wait(), name="grid-stop"),
            asyncio.create_task(self._stopped.wait(), name="grid-halt"),
        ]
        reason = "stop requested"
        try:
            async with self._lock:
                await asyncio.sleep(0)
                await self.start()
            done, _ = await asyncio.wait([*consumers, *waiters], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in consumers:
                    task.result()  # re-raise a consumer's crash
                    reason = "market data ended" if task is consumers[1] else "order updates ended"
        finally:
            for task in [*consumers, *waiters]:
                task.cancel()
            await asyncio.gather(*consumers, *waiters, return_exceptions=True)
        return await self._finish(reason)

    async def start(self) -> None:
        """Resume the latest run on this venue if it has the same grid, else start a new one.
        The caller holds the decision lock."""
        symbol = self._config.symbol
        rules = await self._retrying("market_rules", lambda: self._gateway.market_rules(symbol))
        self._rules = rules
        ticker = await self._retrying("fetch_ticker", lambda: self._gateway.fetch_ticker(symbol))
        self._observe(ticker)
        fingerprint = self._config.grid.fingerprint(self._config.symbol)
        async with self._uow() as uow:
            latest = await uow.runs.latest(self._config.symbol, exclude_fingerprint=MANUAL_FINGERPRINT)
        resumable = (
            latest is not None
            and latest.exchange == self._config.exchange
            and latest.status in (RunStatus.RUNNING, RunStatus.STOPPED)
        )
        if latest is not None and resumable and latest.grid_fingerprint == fingerprint:
            await self._resume(latest)
            return
        plan = self._plan(rules, ticker)  # a bad new grid must not cost the old one its orders
        if latest is not None and resumable:
            await self._retire(latest, "superseded by a grid with new parameters")
        await self._new_run(rules, ticker, plan)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """A venue call that must succeed for the bot to go on (start, reconcile, stop): transient
        failures are retried with exponential backoff and jitter on the clock port, then re-raised."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_TRANSIENT),
            stop=stop_after_attempt(self._config.start_attempts),
            wait=wait_exponential_jitter(initial=1, max=30),
            sleep=self._clock.sleep,
            reraise=True,
            before_sleep=lambda state: self._log.warning(
                "venue call failed; retrying",
                call=what,
                attempt=state.attempt_number,
                reason=str(state.outcome.exception()) if state.outcome else "",
            ),
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable: tenacity re-raises the last error")

    # ------------------------------------------------------------------ start
    def _plan(self, rules: MarketRules, ticker: Ticker) -> GridPlan:
        cfg = self._config
        planned = plan_grid(cfg.grid, rules, ticker.last, maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee)
        if isinstance(planned, Failure):
            rejection = planned.failure()
            raise ConfigurationError(rejection.rule, rejection.reason)
        return planned.unwrap()

    async def _new_run(self, rules: MarketRules, ticker: Ticker, plan: GridPlan) -> None:
        cfg = self._config
        price = ticker.last
        balances = await self._retrying("fetch_balances", self._gateway.fetch_balances)
        quote_free = balances[rules.quote_asset].free if rules.quote_asset in balances else ZERO
        quote_needed = plan.quote_for_buys + plan.base_to_buy * ticker.ask
        if quote_free < quote_needed:
            raise ConfigurationError(
                "GRID__INVESTMENT",
                f"the grid needs {quote_needed.quantize(FEE_QUANTUM).normalize():f} {rules.quote_asset} free, "
                f"the account has {quote_free.normalize():f} {rules.quote_asset}",
            )
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
            },
        )
        async with self._uow() as uow:
            await uow.runs.add(run)
            await uow.commit()
        self._run, self._levels, self._quantity = run, plan.levels, plan.quantity
        self._log = self._log.bind(run_id=run.run_id)
        self._log.info(
            "grid started",
            lower=str(plan.levels[0]),
            upper=str(plan.levels[-1]),
            levels=len(plan.levels),
            quantity=str(plan.quantity),
            price=str(price),
            empty_level=plan.empty_level,
            buys=len(plan.buys),
            sells=len(plan.sell_levels),
        )
        sells: tuple[PlannedOrder, ...] = ()
        if plan.base_to_buy > 0:
            base_received, quote_spent = await self._buy_inventory(plan.base_to_buy, price)
            sells = initial_sells(plan, base_received, quote_spent)
            await self._keep_leftover(leftover_after_initial_sells(sells, base_received, quote_spent))
        await self._book_new_orders([*plan.buys, *sells], parent=None)
        await self._flush_pending()

    async def _buy_inventory(self, amount: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """Market-buy the base the initial sells need; returns (base received after fee, quote spent)."""
        order = await self._track_and_send_market(Side.BUY, amount, cost_basis=ZERO)
        if order is None or order.filled <= 0:
            raise ExchangeError("the initial purchase of the grid's base inventory did not fill")
        avg = order.average_price or price
        quote_spent = order.filled * avg
        base_fee = order.fee if order.fee_asset == self._rules_or_raise().base_asset else ZERO
        if order.fee_asset is None:
            base_fee = (order.filled * self._config.taker_fee).quantize(FEE_QUANTUM)
        self._log.info(
            "base inventory bought",
            amount=str(order.filled),
            average_price=str(avg),
            fee=str(base_fee),
        )
        return order.filled - base_fee, quote_spent

    async def _resume(self, run: BotRun) -> None:
        """Reconcile what the database says with what the venue reports, then carry on."""
        self._run = run
        self._log = self._log.bind(run_id=run.run_id)
        self._levels = tuple(Decimal(p) for p in run.params["levels"].split(","))
        self._quantity = Decimal(run.params["quantity"])
        self._leftover = Leftover(
            Decimal(run.params.get("leftover_base", "0")), Decimal(run.params.get("leftover_cost", "0"))
        )
        async with self._uow() as uow:
            active = await uow.orders.list_active(run.run_id)
            self._realized = await uow.fills.realized_pnl(run.run_id)
            self._fills = await uow.fills.count(run.run_id)
            if run.status is not RunStatus.RUNNING:
                run = replace(run, status=RunStatus.RUNNING, stopped_at=None, stop_reason=None)
                await uow.runs.update(run)
                await uow.commit()
        self._run = run
        self._active = {o.client_order_id: o for o in active}
        self._log.info("resuming grid", active_orders=len(active), fills=self._fills)
        caught_up = await self._catch_up()
        venue_open = {
            o.client_order_id: o for o in await self._gateway.fetch_open_orders(self._config.symbol)
        }
        lost: list[TrackedOrder] = []
        for tracked in list(self._active.values()):
            on_venue = venue_open.get(tracked.client_order_id)
            if on_venue is not None:
                await self._mark_sent(tracked, on_venue)
            elif tracked.status is OrderStatus.PENDING:
                self._attempted.add(tracked.client_order_id)  # maybe sent before a crash
            elif not await self._settle_missing(tracked):
                lost.append(tracked)
        if lost:
            await self._replace_lost(lost)
        self._log.info(
            "reconciled", fills_caught_up=caught_up, open_on_venue=len(venue_open), replaced=len(lost)
        )
        await self._flush_pending()

    async def _catch_up(self) -> int:
        """Book the trades the venue has that the database lacks (after a restart or a gap)."""
        run = self._run_or_raise()
        async with self._uow() as uow:
            since = await uow.fills.last_trade_id(run.run_id)
        booked = 0
        symbol = self._config.symbol
        trades = await self._retrying("fetch_my_trades", lambda: self._gateway.fetch_my_trades(symbol, since))
        for fill in trades:
            booked += await self._apply_fill(fill)
        return booked

    async def _settle_missing(self, tracked: TrackedOrder) -> bool:
        """An order we hold open is not open on the venue: book its fill if it filled. Returns
        False when it is gone without filling (cancelled elsewhere, or the venue lost it)."""
        try:
            order = await self._gateway.fetch_order(
                self._config.symbol, client_order_id=tracked.client_order_id
            )
        except OrderNotFound:
            return False
        if order.status is OrderStatus.FILLED or order.filled >= tracked.amount:
            synthetic = self._fill_from_order(order, tracked)
            if synthetic is not None:
                self._log.warning(
                    "order filled while away; its trades were missing", order=tracked.client_order_id
                )
                await self._apply_fill(synthetic)
            return True
        return not order.status.is_final

    def _fill_from_order(self, order: Order, tracked: TrackedOrder) -> Fill | None:
        missing = tracked.amount - tracked.filled
        if missing <= 0:
            return None
        return Fill(
            trade_id=f"order-{order.order_id}",
            order_id=order.order_id,
            client_order_id=tracked.client_order_id,
            symbol=tracked.symbol,
            side=tracked.side,
            price=order.average_price or tracked.price or ZERO,
            amount=missing,
            fee=order.fee,
            fee_asset=order.fee_asset or self._received_asset(tracked.side),
            timestamp=self._clock.now(),
        )

    async def _replace_lost(self, lost: Iterable[TrackedOrder]) -> None:
        now = self._clock.now()
        replacements: list[PlannedOrder] = []
        async with self._uow() as uow:
            for tracked in lost:
                gone = replace(tracked, status=OrderStatus.CANCELED, updated_at=now)
                await uow.orders.update(gone)
                self._active.pop(tracked.client_order_id, None)
                if tracked.level >= 0 and tracked.price is not None:
                    replacements.append(
                        PlannedOrder(
                            tracked.level, tracked.side, tracked.price, tracked.remaining, tracked.cost_basis
                        )
                    )
                self._log.warning(
                    "order gone from the venue; placing it again",
                    order=tracked.client_order_id,
                    level=tracked.level,
                    side=tracked.side.value,
                )
            await uow.commit()
        await self._book_new_orders(replacements, parent=None)

    async def _retire(self, run: BotRun, reason: str) -> None:
        """Cancel what an older grid on this venue left open, then close it."""
        async with self._uow() as uow:
            active = await uow.orders.list_active(run.run_id)
        now = self._clock.now()
        for tracked in active:
            await self._cancel_on_venue(tracked)
        async with self._uow() as uow:
            for tracked in active:
                await uow.orders.update(replace(tracked, status=OrderStatus.CANCELED, updated_at=now))
            await uow.runs.update(replace(run, status=RunStatus.STOPPED, stopped_at=now, stop_reason=reason))
            await uow.commit()
        log.warning("previous grid closed", run_id=run.run_id, reason=reason, cancelled=len(active))

    # ------------------------------------------------------------------ events
    async def _consume_fills(self) -> None:
        async for fill in self._order_feed.fills(self._config.symbol):
            async with self._lock:
                try:
                    await self._apply_fill(fill)
                except _TRANSIENT as exc:  # booked or not, the fill comes again (feed or catch-up)
                    self._venue_unavailable(exc)

    async def _consume_tickers(self) -> None:
        async for ticker in self._market_feed.tickers(self._config.symbol):
            async with self._lock:
                try:
                    await self._on_ticker(ticker)
                except _TRANSIENT as exc:  # the next ticker tries again
                    self._venue_unavailable(exc)

    def _venue_unavailable(self, exc: Exception) -> None:
        self._log.warning("venue unavailable; carrying on", reason=str(exc))
        self._set_venue_available(available=not isinstance(exc, ExchangeUnavailable))

    async def _on_ticker(self, ticker: Ticker) -> None:
        self._venue_available = True  # a fresh price is the venue answering again
        self._observe(ticker)
        if self._halt is not None:
            if not self._stopped.is_set():  # an outage interrupted the stop: finish it
                await self._stop_grid(self._halt)
            return
        decision = evaluate_stop(ticker.last, self._config.limits)
        if decision is not None:
            await self._stop_grid(decision)
            return
        if any(o.status is OrderStatus.PENDING for o in self._active.values()):
            await self._flush_pending()

    def _observe(self, ticker: Ticker) -> None:
        self._last_ticker = ticker
        self._prices.append((ticker.timestamp, ticker.last))
        horizon = ticker.timestamp - timedelta(seconds=self._config.volatility_window_s)
        while self._prices and self._prices[0][0] < horizon:
            self._prices.popleft()
        state = classify_market(
            [price for _, price in self._prices],
            ticker.spread,
            venue_available=self._venue_available,
            thresholds=self._config.thresholds,
        )
        if state is not self._state:
            self._log.warning(
                "market state changed", previous=self._state.value, state=state.value, price=str(ticker.last)
            )
            self._state = state

    async def _apply_fill(self, fill: Fill) -> int:
        """Book a fill once and, when it completes a grid order, book its counter-order. Returns 1
        when the fill was new, 0 when it was already booked or is not this run's."""
        run = self._run_or_raise()
        tracked = self._active.get(fill.client_order_id) or self._find_by_exchange_id(fill.order_id)
        child: TrackedOrder | None = None
        async with self._uow() as uow:
            if await uow.fills.exists(run.run_id, fill.trade_id):
                return 0
            if tracked is None:
                tracked = await uow.orders.get(fill.client_order_id) if fill.client_order_id else None
            if tracked is None or tracked.run_id != run.run_id:
                self._log.debug("fill of an order outside this grid ignored", trade_id=fill.trade_id)
                return 0
            pnl = ZERO
            if tracked.side is Side.SELL:
                share = fill.amount / tracked.amount if tracked.amount > 0 else ZERO
                pnl = sell_profit(
                    price=fill.price,
                    amount=fill.amount,
                    fee=fill.fee,
                    fee_asset_is_quote=fill.fee_asset == self._rules_or_raise().quote_asset,
                    cost_basis=(tracked.cost_basis * share).quantize(FEE_QUANTUM),
                )
            filled = tracked.filled + fill.amount
            status = OrderStatus.FILLED if filled >= tracked.amount else OrderStatus.PARTIALLY_FILLED
            now = self._clock.now()
            updated = replace(
                tracked,
                filled=filled,
                status=status,
                updated_at=now,
                exchange_order_id=tracked.exchange_order_id or fill.order_id,
            )
            await uow.orders.update(updated)
            await uow.fills.add(BookedFill(run.run_id, fill, pnl))
            if status is OrderStatus.FILLED and tracked.level >= 0:
                child = await self._counter_for(uow, updated, fill)
            await uow.commit()
        self._fills += 1
        self._realized += pnl
        if status is OrderStatus.FILLED:
            self._active.pop(tracked.client_order_id, None)
        else:
            self._active[tracked.client_order_id] = updated
        self._log.info(
            "fill",
            side=fill.side.value,
            level=tracked.level,
            price=str(fill.price),
            amount=str(fill.amount),
            fee=f"{fill.fee} {fill.fee_asset}",
            realized_pnl=_money(pnl),
            total_realized_pnl=_money(self._realized),
        )
        if child is not None:
            self._active[child.client_order_id] = child
            await self._send(child)
        return 1

    async def _counter_for(
        self, unit: UnitOfWork, filled: TrackedOrder, last_fill: Fill
    ) -> TrackedOrder | None:
        if await unit.orders.child_of(filled.client_order_id) is not None:
            return None
        rules = self._rules_or_raise()
        single = last_fill.amount == filled.amount
        fee = last_fill.fee if single else (filled.amount * self._config.maker_fee).quantize(FEE_QUANTUM)
        quote = last_fill.quote_amount if single else filled.amount * (filled.price or last_fill.price)
        planned, leftover = counter_order_carrying(
            self._levels,
            filled_side=filled.side,
            filled_level=filled.level,
            filled_amount=filled.amount,
            filled_quote=quote,
            fee=fee,
            fee_asset_is_base=last_fill.fee_asset == rules.base_asset,
            quantity=self._quantity,
            rules=rules,
            carried=self._leftover,
        )
        occupied = planned is not None and any(
            o.level == planned.level
            for o in self._active.values()
            if o.client_order_id != filled.client_order_id
        )
        if planned is not None and occupied:
            self._log.warning("level already holds an order: counter-order skipped", level=planned.level)
            if planned.side is Side.SELL:  # the base stays with the grid, to go with a later sell
                leftover = Leftover(leftover.base + planned.amount, leftover.cost + planned.cost_basis)
            planned = None
        if leftover != self._leftover:
            await self._keep_leftover(leftover, unit)
        if planned is None:
            self._log.info("no counter-order", level=filled.level, side=filled.side.value)
            return None
        seq = await unit.orders.count_for_level(filled.run_id, planned.level)
        child = self._tracked_from_plan(planned, seq, parent=filled.client_order_id)
        await unit.orders.add(child)
        return child

    async def _keep_leftover(self, leftover: Leftover, unit: UnitOfWork | None = None) -> None:
        """Remember the unsellable crumb of base with the run, in the caller's unit of work if any."""
        run = self._run_or_raise()
        params = {**run.params, "leftover_base": str(leftover.base), "leftover_cost": str(leftover.cost)}
        updated = replace(run, params=params)
        if unit is not None:
            await unit.runs.update(updated)
        else:
            async with self._uow() as uow:
                await uow.runs.update(updated)
                await uow.commit()
        self._run, self._leftover = updated, leftover

    # ------------------------------------------------------------------ orders
    def _tracked_from_plan(self, planned: PlannedOrder, seq: int, *, parent: str | None) -> TrackedOrder:
        return self._new_pending(
            planned.side,
            OrderType.LIMIT,
            planned.amount,
            price=planned.price,
            level=planned.level,
            seq=seq,
            cost_basis=planned.cost_basis,
            parent=parent,
        )

    def _new_pending(
        self,
        side: Side,
        order_type: OrderType,
        amount: Decimal,
        *,
        price: Decimal | None,
        level: int,
        seq: int,
        cost_basis: Decimal,
        parent: str | None = None,
    ) -> TrackedOrder:
        """A PENDING order of this run under its deterministic client order id (level, seq)."""
        run = self._run_or_raise()
        now = self._clock.now()
        return TrackedOrder(
            run_id=run.run_id,
            client_order_id=client_order_id(run.run_id, level, seq),
            symbol=self._config.symbol,
            side=side,
            type=order_type,
            amount=amount,
            price=price,
            level=level,
            status=OrderStatus.PENDING,
            created_at=now,
            updated_at=now,
            cost_basis=cost_basis,
            parent_client_order_id=parent,
        )

    async def _book_new_orders(self, planned: Iterable[PlannedOrder], *, parent: str | None) -> None:
        run = self._run_or_raise()
        async with self._uow() as uow:
            booked = []
            for item in planned:
                seq = await uow.orders.count_for_level(run.run_id, item.level)
                tracked = self._tracked_from_plan(item, seq, parent=parent)
                await uow.orders.add(tracked)
                booked.append(tracked)
            await uow.commit()
        for tracked in booked:
            self._active[tracked.client_order_id] = tracked

    async def _track_and_send_market(
        self, side: Side, amount: Decimal, *, cost_basis: Decimal
    ) -> Order | None:
        run = self._run_or_raise()
        async with self._uow() as uow:
            seq = await uow.orders.count_for_level(run.run_id, -1)
            tracked = self._new_pending(
                side, OrderType.MARKET, amount, price=None, level=-1, seq=seq, cost_basis=cost_basis
            )
            await uow.orders.add(tracked)
            await uow.commit()
        self._active[tracked.client_order_id] = tracked
        return await self._send(tracked)

    async def _flush_pending(self) -> None:
        for tracked in [o for o in self._active.values() if o.status is OrderStatus.PENDING]:
            if self._halt is not None:
                return
            await self._send(tracked)

    def _exposure(self) -> Exposure:
        live = [o for o in self._active.values() if o.status is not OrderStatus.PENDING and o.level >= 0]
        in_use = sum(
            ((o.price or ZERO) * o.remaining if o.side is Side.BUY else o.cost_basis for o in live), ZERO
        )
        return Exposure(
            open_orders=len(live), quote_in_use=in_use + self._leftover.cost, realized_pnl=self._realized
        )

    async def _send(self, tracked: TrackedOrder) -> Order | None:
        """Send a PENDING order unless a rule defers or refuses it. Returns the venue's view."""
        rules = self._rules_or_raise()
        request = OrderRequest(
            symbol=tracked.symbol,
            side=tracked.side,
            type=tracked.type,
            amount=tracked.amount,
            client_order_id=tracked.client_order_id,
            price=tracked.price,
        )
        reference = self._last_ticker.last if self._last_ticker else None
        if tracked.level >= 0:
            verdict = check_new_order(
                request,
                rules=rules,
                limits=self._config.limits,
                exposure=self._exposure(),
                market_state=self._state,
                reference_price=reference,
            )
            if isinstance(verdict, Failure):
                refusal = verdict.failure()
                if refusal.rule in _DEFERRABLE_RULES:
                    self._log.info(
                        "order deferred",
                        order=tracked.client_order_id,
                        rule=refusal.rule,
                        reason=refusal.reason,
                    )
                    return None
                await self._update(tracked, status=OrderStatus.REJECTED)
                self._log.error(
                    "order refused by a risk rule",
                    order=tracked.client_order_id,
                    rule=refusal.rule,
                    reason=refusal.reason,
                )
                return None
        try:
            if tracked.client_order_id in self._attempted:
                order = await self._lookup_or_none(tracked.client_order_id)
                if order is not None:
                    await self._mark_sent(tracked, order)
                    return order
            order = await self._gateway.place_order(request)
        except DuplicateOrder:
            order = await self._gateway.fetch_order(tracked.symbol, client_order_id=tracked.client_order_id)
        except (InvalidOrder, InsufficientFunds) as exc:
            await self._update(tracked, status=OrderStatus.REJECTED)
            self._log.error("venue refused the order", order=tracked.client_order_id, reason=str(exc))
            return None
        except (ExchangeUnavailable, RateLimited) as exc:
            self._attempted.add(tracked.client_order_id)
            self._set_venue_available(available=not isinstance(exc, ExchangeUnavailable))
            self._log.warning("order not sent; will retry", order=tracked.client_order_id, reason=str(exc))
            return None
        self._set_venue_available(available=True)
        self._attempted.discard(tracked.client_order_id)
        await self._mark_sent(tracked, order)
        self._log.info(
            "order placed",
            order=tracked.client_order_id,
            side=tracked.side.value,
            level=tracked.level,
            price=str(tracked.price) if tracked.price is not None else "market",
            amount=str(tracked.amount),
        )
        return order

    async def _lookup_or_none(self, cid: str) -> Order | None:
        try:
            return await self._gateway.fetch_order(self._config.symbol, client_order_id=cid)
        except OrderNotFound:
            return None

    async def _mark_sent(self, tracked: TrackedOrder, order: Order) -> None:
        """Record the venue's id and that the order rests. Execution itself arrives as fills."""
        current = self._active.get(tracked.client_order_id, tracked)
        status = current.status
        if order.status in (OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED):
            status = order.status
        elif current.status is OrderStatus.PENDING:
            status = OrderStatus.OPEN
        await self._update(current, status=status, exchange_order_id=order.order_id)

    async def _update(self, tracked: TrackedOrder, **changes: object) -> TrackedOrder:
        updated = replace(tracked, updated_at=self._clock.now(), **changes)  # type: ignore[arg-type]
        async with self._uow() as uow:
            await uow.orders.update(updated)
            await uow.commit()
        if updated.status.is_active:
            self._active[updated.client_order_id] = updated
        else:
            self._active.pop(updated.client_order_id, None)
        return updated

    async def _cancel_on_venue(self, tracked: TrackedOrder) -> None:
        try:
            order_id = tracked.exchange_order_id
            if order_id is None and tracked.status is OrderStatus.PENDING:
                order = await self._retrying(
                    "fetch_order", lambda: self._lookup_or_none(tracked.client_order_id)
                )
                order_id = order.order_id if order is not None and order.status.is_active else None
            if order_id is not None:
                known_id = order_id
                await self._retrying(
                    "cancel_order", lambda: self._gateway.cancel_order(tracked.symbol, known_id)
                )
        except OrderNotFound:
            pass  # already gone: nothing to cancel

    def _set_venue_available(self, *, available: bool) -> None:
        if available == self._venue_available:
            return
        self._venue_available = available
        if self._last_ticker is not None:
            self._observe(self._last_ticker)

    # ------------------------------------------------------------------ stop
    async def _stop_grid(self, decision: StopDecision) -> None:
        """A risk rule fired: cancel the grid's orders and, if configured, sell its base."""
        self._halt = decision
        self._log.warning("risk stop: halting the grid", reason=decision.reason)
        to_cancel = list(self._active.values())
        base_to_sell = ZERO
        cost = ZERO
        for tracked in to_cancel:
            await self._cancel_on_venue(tracked)
            await self._update(tracked, status=OrderStatus.CANCELED)
            if tracked.side is Side.SELL and tracked.level >= 0:
                base_to_sell += tracked.remaining
                cost += tracked.cost_basis * (tracked.remaining / tracked.amount)
        self._log.info("grid orders cancelled", count=len(to_cancel))
        base_to_sell += self._leftover.base
        cost += self._leftover.cost
        if decision.sell_base and base_to_sell > 0:
            amount = self._rules_or_raise().floor_amount(base_to_sell)
            if amount > 0:
                self._halt = None  # allow this one last order through _send
                order = await self._track_and_send_market(
                    Side.SELL, amount, cost_basis=cost.quantize(FEE_QUANTUM)
                )
                self._halt = decision
                await self._catch_up()  # book the sale now: the feeds stop with the grid
                self._log.info(
                    "grid base sold", amount=str(amount), status=order.status.value if order else "not sent"
                )
        self._stopped.set()

    async def _finish(self, reason: str) -> RunOutcome:
        run = self._run_or_raise()
        status = RunStatus.HALTED if self._halt is not None else RunStatus.STOPPED
        final_reason = self._halt.reason if self._halt is not None else reason
        async with self._uow() as uow:
            latest = await uow.runs.get(run.run_id) or run
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
            realized_pnl=_money(realized),
            open_orders=len(self._active),
        )
        return RunOutcome(run.run_id, status, final_reason, fills, realized)

    # ------------------------------------------------------------------ helpers
    def _find_by_exchange_id(self, order_id: str) -> TrackedOrder | None:
        for tracked in self._active.values():
            if tracked.exchange_order_id == order_id:
                return tracked
        return None

    def _received_asset(self, side: Side) -> str:
        rules = self._rules_or_raise()
        return rules.base_asset if side is Side.BUY else rules.quote_asset

    def _rules_or_raise(self) -> MarketRules:
        if self._rules is None:
            raise RuntimeError("market rules are not loaded: start() first")
        return self._rules

    def _run_or_raise(self) -> BotRun:
        if self._run is None:
            raise RuntimeError("no run: start() first")
        return self._run
