"""What the grid shell tells its observer (metrics, health, alerts), kept out of the shell itself.

The shell calls this at a few points (an event came, a decision was booked, an order went out or
was cancelled, the run started or stopped); this turns them into `BotObserver` calls, tracks the
run's position cost from its booked fills, and times each event to the orders it led to on the
clock port.
"""

from __future__ import annotations

from collections.abc import Iterable

from application.status import position_of
from domain.grid_core import Decision, GridCore
from domain.models import ZERO, BookedFill, BotRun, OrderStatus, RunStatus, Ticker, TrackedOrder
from domain.ports import BotObserver, Clock, GridSnapshot, NoObserver

TICK_TO_ORDER = "tick_to_order"
FILL_TO_COUNTER_ORDER = "fill_to_counter_order"

# The core's notes that refuse an order, and the field holding the rule (venue refusals have none).
_REFUSAL_NOTES = {"venue refused the order", "order refused by a risk rule"}


class RunReporter:
    def __init__(self, observer: BotObserver | None, clock: Clock, exchange: str) -> None:
        self.observer: BotObserver = observer or NoObserver()
        self.active = observer is not None
        self._clock = clock
        self._exchange = exchange
        self._run: BotRun | None = None
        self._resumed = False
        self._cost = ZERO  # quote paid for the base the run holds (see application.status.Position)
        self._inferred: dict[str, tuple[str, BookedFill]] = {}  # trade id -> its booking, while provisional
        self._trigger: tuple[str, float] | None = None  # the event being handled, and when it came

    # ------------------------------------------------------------------ run
    def begin(self, run: BotRun, core: GridCore, fills: Iterable[BookedFill], *, resumed: bool) -> None:
        """The run's core is built (`fills`: what its books held already); before its first decision.
        Followed with or without an observer: the heartbeat log line reports the same snapshot."""
        self._run = run
        self._resumed = resumed
        booked = list(fills)
        self._cost = position_of(run.symbol, booked, {}).cost
        for fill in booked:
            self._remember_inferred(fill)

    def started(self, core: GridCore) -> None:
        """The grid is laid (or resumed and reconciled) and trading."""
        if self.active and self._run is not None:
            self.observer.run_started(self.snapshot(core), resumed=self._resumed)

    def stopped(self, core: GridCore, status: RunStatus, reason: str) -> None:
        if self.active and self._run is not None:
            self.observer.run_stopped(self.snapshot(core), status=status, reason=reason)

    def snapshot(self, core: GridCore) -> GridSnapshot:
        run = self._run
        assert run is not None
        ticker = core.last_ticker
        return GridSnapshot(
            run_id=run.run_id,
            symbol=run.symbol,
            exchange=self._exchange,
            started_at=run.started_at,
            market_state=core.market_state,
            last_price=None if ticker is None else ticker.last,
            open_orders=len(core.grid_orders()),
            fills=core.fills_booked,
            realized_pnl=core.realized,
            position=core.position,
            position_cost=self._cost,
            halt_reason=None if core.halt is None else core.halt.reason,
        )

    # ------------------------------------------------------------------ events
    def event(self, ticker: Ticker | None) -> None:
        """An event came in: a price (ticker) or fills (None)."""
        if not self.active:
            return
        self._trigger = (
            TICK_TO_ORDER if ticker is not None else FILL_TO_COUNTER_ORDER,
            self._clock.monotonic(),
        )
        if ticker is not None:
            self.observer.price_seen(ticker)

    def handled(self, core: GridCore | None) -> None:
        if not self.active:
            return
        self._trigger = None
        if self._run is not None and core is not None:
            self.observer.changed(self.snapshot(core))

    def venue_error(self, error: Exception) -> None:
        self.observer.venue_error(error)

    def decided(self, decision: Decision) -> None:
        """A decision was booked: its fills, refusals and halt."""
        if self._run is None:
            return
        for trade_id in decision.retracted:
            retracted = self._inferred.pop(trade_id, None)
            if retracted is not None:
                self._cost -= position_of(self._run.symbol, [retracted[1]], {}).cost
        for booked in decision.fills:
            self._cost += position_of(self._run.symbol, [booked], {}).cost
            self._remember_inferred(booked)
            self.observer.fill_booked(booked)
        for order in decision.updated.values():
            if order.status is OrderStatus.REJECTED:
                self.observer.order_refused(order, _refusal_reason(decision, order.client_order_id))
        if decision.halted is not None:
            self.observer.halted(decision.halted.reason)

    def placed(self, order: TrackedOrder) -> None:
        if not self.active:
            return
        self.observer.order_placed(order)
        if self._trigger is not None and order.level >= 0:
            kind, since = self._trigger
            self.observer.latency(kind, max(0.0, self._clock.monotonic() - since))

    def cancelled(self, order: TrackedOrder) -> None:
        self.observer.order_cancelled(order)

    def _remember_inferred(self, booked: BookedFill) -> None:
        if booked.fill.is_inferred:
            self._inferred[booked.fill.trade_id] = (booked.fill.client_order_id, booked)


def _refusal_reason(decision: Decision, client_order_id: str) -> str:
    for note in decision.notes:
        if note.event in _REFUSAL_NOTES and note.fields.get("order") == client_order_id:
            return str(note.fields.get("rule", "venue"))
    return "other"
