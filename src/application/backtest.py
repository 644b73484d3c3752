"""Use case: backtest a grid over a price path, with the grid core the live bot uses.

The backtest drives the core (`domain.grid_core`) and the simulated exchange's matching engine in
a plain synchronous loop, with no event loop, no clock and no database: a price point moves the
engine, each fill it makes is handed to the core, the core's commands are carried out on the
engine at once, then the point's ticker goes to the core. Everything happens in the same order
as on the default profile, where the same engine and core run behind the async ports (the
simulated exchange hands each fill to the bot and waits until it has been handled, then the
ticker), so both give the same fills.

Two ways through a path, with the same results (tests compare them fill by fill):
* `plain`: every point, one after the other;
* `fast` (the default): the quiet stretches are skipped. A point can only change something when
  it reaches the best resting bid or ask, or a stop or take-profit price, or when an order waits
  for the market state to allow it. The path finds the next point that reaches a price (a
  vectorized search), the engine and the core are brought to the point before it, and that point
  is stepped as in `plain`. The market state the core reads there comes from the path's own
  prices over the volatility window, so it is the one `plain` would have.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from returns.result import Failure

from domain.errors import ConfigurationError, DomainError, InsufficientFunds, InvalidOrder, OrderNotFound
from domain.grid import (
    GridParams,
    initial_sells,
    leftover_after_initial_sells,
    plan_grid,
)
from domain.grid_core import (
    CancelOrder,
    CoreConfig,
    Decision,
    GridCore,
    PlaceOrder,
    PriceWindow,
)
from domain.models import (
    ZERO,
    Balance,
    BookedFill,
    Fill,
    Order,
    OrderRequest,
    OrderStatus,
    Side,
    Ticker,
    TrackedOrder,
)
from domain.risk import MarketStateThresholds, RiskLimits
from domain.rules import MarketRules

RUN_ID = "backtest"


class BacktestVenue(Protocol):
    """The matching engine as a backtest drives it (`adapters.simulated.engine.MatchingEngine`)."""

    def place(self, request: OrderRequest, now: datetime) -> tuple[Order, list[Fill]]: ...

    def cancel(
        self, now: datetime, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order: ...

    def move_to(self, price: Decimal, now: datetime, *, gap: bool = False) -> list[Fill]: ...

    def order(self, *, order_id: str | None = None, client_order_id: str | None = None) -> Order: ...

    def ticker(self, now: datetime) -> Ticker: ...

    def balances(self) -> dict[str, Balance]: ...

    def best_bid(self) -> Decimal | None: ...

    def best_ask(self) -> Decimal | None: ...


class SteppedWindow(PriceWindow, Protocol):
    """A price window read from the path's own points: `seek(k)` says which point is current."""

    def seek(self, k: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PathPoint:
    timestamp: datetime
    price: Decimal
    gap: bool  # a jump from the previous point (a candle's open): crossed orders fill at this price


class PricePath(Protocol):
    """The points a backtest walks through (for candles: the candle rule of the price sources)."""

    def __len__(self) -> int: ...

    def point(self, k: int) -> PathPoint: ...

    def next_reach(self, after: int, *, at_or_below: Decimal | None, at_or_above: Decimal | None) -> int:
        """The first point after `after` whose price is at or below `at_or_below` or at or above
        `at_or_above` (either may be None: no such bound); len(self) when there is none."""
        ...

    def window(self, window_s: float) -> SteppedWindow:
        """The prices of the `window_s` of market time up to the current point (see `seek`)."""
        ...


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    symbol: str
    rules: MarketRules
    grid: GridParams
    limits: RiskLimits
    maker_fee: Decimal  # the fee rates the grid plans with (the engine charges its own)
    taker_fee: Decimal
    thresholds: MarketStateThresholds = field(default_factory=MarketStateThresholds)
    volatility_window_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The account after the point `k` (what it holds changes only there)."""

    k: int
    quote: Decimal  # free + locked
    base: Decimal


@dataclass(slots=True)
class BacktestResult:
    levels: tuple[Decimal, ...]
    quantity: Decimal
    start_price: Decimal
    fills: list[BookedFill] = field(default_factory=list)  # every fill booked, in booking order
    grid_fills: int = 0  # fills of the grid's limit orders
    completed_cycles: int = 0  # grid sells filled in full: each closes a buy-then-sell cycle
    realized_pnl: Decimal = ZERO
    snapshots: list[Snapshot] = field(default_factory=list)  # after the start, then after each change
    halted: str | None = None  # the risk stop's reason, when one fired
    halted_at: int | None = None  # the point it fired on
    points_stepped: int = 0  # points the loop handled one by one (the rest were skipped)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (severity, event) of warnings and errors
    orders: dict[str, TrackedOrder] = field(default_factory=dict)  # every order made, as last booked


class Backtest:
    """One backtest: `run()` once."""

    def __init__(
        self,
        config: BacktestConfig,
        venue: BacktestVenue,
        path: PricePath,
        *,
        fast: bool = True,
        progress: Callable[[int], None] | None = None,
        run_id: str = RUN_ID,
    ) -> None:
        self._config = config
        self._run_id = run_id
        self._venue = venue
        self._path = path
        self._fast = fast
        self._progress = progress
        self._queue: deque[Fill] = deque()  # fills made, not yet handed to the core (the fill feed)
        self._window = path.window(config.volatility_window_s) if fast else None
        self._core: GridCore | None = None
        self._result: BacktestResult | None = None
        self._completed: set[str] = set()  # grid sells filled in full
        self._quote = config.rules.quote_asset
        self._base = config.rules.base_asset

    @property
    def core(self) -> GridCore:
        if self._core is None:
            raise RuntimeError("no grid: run() first")
        return self._core

    # ------------------------------------------------------------------ the loop
    def run(self) -> BacktestResult:
        path = self._path
        if len(path) == 0:
            raise ConfigurationError("data", "the price path holds no points")
        self._start()
        result = self._result_or_raise()
        last = len(path) - 1
        k = 0
        while k < last and result.halted is None:
            nxt = k + 1
            if self._fast and not self.core.waits_on_prices():
                bid, ask = self._triggers()
                reach = path.next_reach(k, at_or_below=bid, at_or_above=ask)
                if reach > last:  # nothing changes any more: the rest of the path is quiet
                    break
                if reach > nxt:
                    self._skip_to(reach - 1, k)
                nxt = reach
            self._step(nxt)
            k = nxt
            if self._progress is not None:
                self._progress(k)
        self._snapshot(last)
        return result

    def _triggers(self) -> tuple[Decimal | None, Decimal | None]:
        """The prices at which a point changes something: the best resting bid (or the stop-loss,
        whichever is higher) and the best resting ask (or the take-profit, whichever is lower)."""
        limits = self._config.limits
        bid, ask = self._venue.best_bid(), self._venue.best_ask()
        if limits.stop_loss is not None:
            bid = limits.stop_loss if bid is None else max(bid, limits.stop_loss)
        if limits.take_profit is not None:
            ask = limits.take_profit if ask is None else min(ask, limits.take_profit)
        return bid, ask

    def _skip_to(self, k: int, current: int) -> None:
        """Bring the engine and the core to point `k` over points that change nothing: no resting
        order is reached, no stop fires and no order waits on the market state. The engine only
        takes the price; the core sees the point's ticker, which sets its market state and last
        price as the points skipped would have."""
        if k <= current:
            return
        point = self._path.point(k)
        fills = self._venue.move_to(point.price, point.timestamp, gap=point.gap)
        if fills:  # the search said no point before k reaches an order: it would be a bug
            raise AssertionError(f"a skipped stretch filled {len(fills)} order(s) at point {k}")
        self._tick(k, point.timestamp)

    def _step(self, k: int) -> None:
        """One point: the engine moves (its fills go to the core one at a time, as the fill feed
        delivers them), then the point's ticker goes to the core."""
        point = self._path.point(k)
        result = self._result_or_raise()
        result.points_stepped += 1
        fills = self._venue.move_to(point.price, point.timestamp, gap=point.gap)
        self._queue.extend(fills)
        changed = bool(fills)
        changed |= self._drain(point.timestamp)
        if result.halted is None:
            changed |= self._tick(k, point.timestamp)
        if changed:
            self._snapshot(k)
        if self.core.halt is not None and result.halted is None:
            result.halted = self.core.halt.reason
            result.halted_at = k

    def _tick(self, k: int, at: datetime) -> bool:
        if self._window is not None:
            self._window.seek(k)
        changed = self._carry_out(self.core.on_ticker(self._venue.ticker(at)), at)
        return self._drain(at) or changed

    def _drain(self, at: datetime) -> bool:
        changed = False
        while self._queue:
            fill = self._queue.popleft()
            self._carry_out(self.core.apply_fills([fill], at), at)
            changed = True
        return changed

    # ------------------------------------------------------------------ start
    def _start(self) -> None:
        cfg = self._config
        first = self._path.point(0)
        at = first.timestamp
        self._venue.move_to(first.price, at, gap=True)
        ticker = self._venue.ticker(at)
        planned = plan_grid(
            cfg.grid, cfg.rules, ticker.last, maker_fee=cfg.maker_fee, taker_fee=cfg.taker_fee
        )
        if isinstance(planned, Failure):
            rejection = planned.failure()
            raise ConfigurationError(rejection.rule, rejection.reason)
        plan = planned.unwrap()
        balances = self._venue.balances()
        quote_free = balances[self._quote].free if self._quote in balances else ZERO
        needed = plan.quote_for_buys + plan.base_to_buy * ticker.last
        if quote_free < needed:
            raise ConfigurationError(
                "GRID__INVESTMENT",
                f"the grid needs {needed.normalize():f} {self._quote} at the first price {ticker.last}, "
                f"the backtest account starts with {quote_free.normalize():f} {self._quote}",
            )
        core_config = CoreConfig(
            run_id=self._run_id,
            symbol=cfg.symbol,
            rules=cfg.rules,
            levels=plan.levels,
            quantity=plan.quantity,
            limits=cfg.limits,
            maker_fee=cfg.maker_fee,
            taker_fee=cfg.taker_fee,
            thresholds=cfg.thresholds,
            volatility_window_s=cfg.volatility_window_s,
        )
        self._core = GridCore(core_config, self._window)
        self._result = BacktestResult(plan.levels, plan.quantity, ticker.last)
        if self._window is not None:
            self._window.seek(0)
        self._carry_out(self.core.observe(ticker), at)
        if plan.base_to_buy > 0:
            placed = self._carry_out_placed(self.core.market_order(Side.BUY, plan.base_to_buy, at), at)
            if placed is None or placed.filled <= 0:
                raise DomainError("the initial purchase of the grid's base inventory did not fill")
            price = placed.average_price or ticker.last
            base_fee = placed.fee if placed.fee_asset == self._base else ZERO
            received, spent = placed.filled - base_fee, placed.filled * price
            sells = initial_sells(plan, received, spent)
            leftover = leftover_after_initial_sells(sells, received, spent)
            self._carry_out(self.core.lay([*plan.buys, *sells], at, leftover), at)
        else:
            self._carry_out(self.core.lay(plan.buys, at), at)
        self._drain(at)
        self._snapshot(0)

    # ------------------------------------------------------------------ carrying out decisions
    def _carry_out(self, decision: Decision, at: datetime) -> bool:
        """Book a decision, then execute its commands on the engine; their outcomes are decisions
        too, handled in turn (the order the live shell keeps). True when anything was booked or sent."""
        return self._carry_out_all(decision, at)[0]

    def _carry_out_placed(self, decision: Decision, at: datetime) -> Order | None:
        placed = self._carry_out_all(decision, at)[1]
        return placed[0] if placed else None

    def _carry_out_all(self, decision: Decision, at: datetime) -> tuple[bool, list[Order]]:
        core = self.core
        changed = False
        placed: list[Order] = []
        pending = [decision]
        while pending:
            current = pending.pop(0)
            changed |= bool(current.fills or current.commands)
            self._record(current)
            outcome = Decision()
            for command in current.commands:
                if isinstance(command, CancelOrder):
                    outcome.merge(self._cancel(command, at))
                elif not core.wants_placed(command.order.client_order_id):
                    core.deferred(command.order.client_order_id)
                else:
                    result, order = self._place(command, at)
                    outcome.merge(result)
                    if order is not None:
                        placed.append(order)
            if current.halted is not None:
                self._after_halt(at)
            if outcome.needs_booking or outcome.commands or outcome.notes:
                pending.append(outcome)
        return changed, placed

    def _place(self, command: PlaceOrder, at: datetime) -> tuple[Decision, Order | None]:
        cid = command.order.client_order_id
        try:
            order, fills = self._venue.place(command.request(), at)
        except (InvalidOrder, InsufficientFunds) as exc:
            return self.core.refused(cid, str(exc), at), None
        self._queue.extend(fills)
        return self.core.accepted(cid, order.order_id, order.status, at), order

    def _cancel(self, command: CancelOrder, at: datetime) -> Decision:
        """Cancel as the live shell does (application.grid_venue): an order booked without the
        venue's id is looked up by its client id first (its send may have gone out since the
        decision), one the venue does not know was never sent, one it no longer has open has
        filled (its fills are on their way)."""
        order = command.order
        cid = order.client_order_id
        if order.status is OrderStatus.OWED:
            return self.core.cancelled(cid, None, at)
        order_id = order.exchange_order_id
        if order_id is None:
            try:
                order_id = self._venue.order(client_order_id=cid).order_id
            except OrderNotFound:
                self.core.never_sent(cid)
                return self.core.cancelled(cid, ZERO, at)
        try:
            filled: Decimal | None = self._venue.cancel(at, order_id=order_id).filled
        except OrderNotFound:
            filled = None
        return self.core.cancelled(cid, filled, at)

    def _after_halt(self, at: datetime) -> None:
        """A risk rule fired: the halt's cancels, then (when configured) the grid's base sold."""
        core = self.core
        for unconfirmed in core.unconfirmed_cancels():
            self._cancel(CancelOrder(unconfirmed), at)  # decides nothing more, as in the live shell
        halt = core.halt
        if halt is not None and halt.sell_base:
            amount, cost = core.base_to_sell()
            if amount > 0:
                sale = core.market_order(Side.SELL, amount, at, cost)
                self._record(sale)
                command = sale.commands[0]
                assert isinstance(command, PlaceOrder)
                result, _ = self._place(command, at)
                self._record(result)
                self._drain(at)

    def _record(self, decision: Decision) -> None:
        """What the report needs from a decision: its fills, grid fills, completed cycles, warnings."""
        result = self._result_or_raise()
        for order in (*decision.added.values(), *decision.updated.values()):
            result.orders[order.client_order_id] = order
            if order.level >= 0 and order.side is Side.SELL and order.status is OrderStatus.FILLED:
                self._completed.add(order.client_order_id)
        for booked in decision.fills:
            result.fills.append(booked)
            owner = result.orders.get(booked.fill.client_order_id)
            if owner is not None and owner.level >= 0:
                result.grid_fills += 1
        for note in decision.notes:
            if note.severity in ("warning", "error"):
                result.notes.append((note.severity, note.event))
        result.completed_cycles = len(self._completed)
        result.realized_pnl = self.core.realized

    def _snapshot(self, k: int) -> None:
        balances = self._venue.balances()
        quote = balances.get(self._quote)
        base = balances.get(self._base)
        self._result_or_raise().snapshots.append(
            Snapshot(
                k,
                (quote.free + quote.locked) if quote is not None else ZERO,
                (base.free + base.locked) if base is not None else ZERO,
            )
        )

    def _result_or_raise(self) -> BacktestResult:
        if self._result is None:
            raise RuntimeError("no result: run() first")
        return self._result
