"""The bot's telemetry: a `BotObserver` that keeps Prometheus metrics (one registry per bot), says
whether the bot is healthy, and raises alerts on what its user must hear of.

Health, from the most to the least serious: the run's end (halted by a risk rule, stopped, failed),
then the venue's trouble (banned, rate-limited, circuit open, in maintenance or not answering),
then a market-data feed that has gone quiet for longer than `feed_down_after_s` on the clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adapters.monitoring.probe import VenueProbe
from domain.models import ZERO, BookedFill, RunStatus, Ticker, TrackedOrder
from domain.ports import Alert, Clock, GridSnapshot
from domain.risk import MarketState

log = structlog.get_logger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATES = ("closed", "half_open", "open")
CHECK_INTERVAL_S = 1.0  # how often (clock time) the watch loop looks for what to alert on


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    body: dict[str, Any]


def money(value: Decimal | None) -> str | None:
    """A Decimal for a JSON field or an alert: 8 places at most, no exponent, no trailing zeros."""
    if value is None:
        return None
    return f"{value.quantize(Decimal('1E-8')).normalize():f}"


class _VenueCollector(Collector):
    """Metrics read from the venue adapter at scrape time, and the errors the grid carried on through."""

    def __init__(self, telemetry: BotTelemetry) -> None:
        self._telemetry = telemetry

    def collect(self) -> Iterator[Any]:
        probe = self._telemetry.probe
        weight = GaugeMetricFamily(
            "gridbot_request_weight_used", "Request weight used in the venue's current window"
        )
        weight.add_metric([], probe.weight_used())
        yield weight
        throttled = CounterMetricFamily(
            "gridbot_venue_throttled", "Answers of 429 (rate limited) and 418 (IP banned)", labels=["status"]
        )
        for status, count in sorted(probe.throttled().items()):
            throttled.add_metric([str(status)], count)
        yield throttled
        reconnects = CounterMetricFamily("gridbot_reconnects", "Feeds that came back after a failure")
        reconnects.add_metric([], probe.reconnects())
        yield reconnects
        errors = CounterMetricFamily(
            "gridbot_errors",
            "Failures by type: of venue calls, and those the running grid carried on through",
            labels=["source", "type"],
        )
        for kind, count in sorted(probe.errors().items()):
            errors.add_metric(["venue", kind], count)
        for kind, count in sorted(self._telemetry.grid_errors.items()):
            errors.add_metric(["grid", kind], count)
        yield errors
        breaker = GaugeMetricFamily(
            "gridbot_circuit_breaker_state",
            "The venue circuit breaker's state (1 for the current one)",
            labels=["state"],
        )
        current = probe.breaker_state()
        for state in BREAKER_STATES:
            breaker.add_metric([state], 1 if state == current else 0)
        yield breaker


class BotTelemetry:
    """Implements `domain.ports.BotObserver`. `alert` receives the alerts (a dispatcher's submit)."""

    def __init__(
        self,
        clock: Clock,
        *,
        feed_down_after_s: float = 60.0,
        alert: Callable[[Alert], object] | None = None,
        probe: VenueProbe | None = None,
    ) -> None:
        self._clock = clock
        self._feed_down_after_s = feed_down_after_s
        self._alert_sink = alert
        self.probe = probe or VenueProbe()
        self.grid_errors: dict[str, int] = {}
        self.snapshot: GridSnapshot | None = None
        self._phase = "starting"  # starting, trading, halted, stopped, failed
        self._end_reason: str | None = None
        self._created = clock.monotonic()
        self._last_price_at: float | None = None
        self._status: tuple[str, str | None] = ("starting", None)
        self._status_since: datetime = clock.now()
        # what the watch loop saw last, to alert on changes only
        self._breaker = "closed"
        self._bans = 0
        self._feed_down_since: float | None = None
        self._day: date | None = None
        self._day_start: tuple[int, Decimal] = (0, ZERO)  # fills and realized PnL at the day's start

        self.registry = registry = CollectorRegistry()
        self._placed = Counter(
            "gridbot_orders_placed", "Orders the venue accepted", ["side"], registry=registry
        )
        self._cancelled = Counter(
            "gridbot_orders_cancelled", "Orders cancelled on the venue", registry=registry
        )
        self._refused = Counter(
            "gridbot_orders_refused",
            "Orders not sent or refused, by rule (or 'venue')",
            ["reason"],
            registry=registry,
        )
        self._fills = Counter("gridbot_fills", "Fills booked by this process", ["side"], registry=registry)
        self._fills_booked = Gauge(
            "gridbot_fills_booked", "Fills the books hold for the run (restarts included)", registry=registry
        )
        self._realized = Gauge(
            "gridbot_realized_pnl", "Realized profit of the run, in quote", registry=registry
        )
        self._position = Gauge("gridbot_position", "Base the run holds per its books", registry=registry)
        self._equity = Gauge(
            "gridbot_equity_change",
            "Realized plus unrealized profit, in quote (base at the last price)",
            registry=registry,
        )
        self._open_orders = Gauge("gridbot_open_orders", "Grid orders open or owed", registry=registry)
        self._last_price = Gauge("gridbot_last_price", "Last market price seen", registry=registry)
        self._latency = Histogram(
            "gridbot_order_latency_seconds",
            "Clock time from a price (tick_to_order) or a fill (fill_to_counter_order) to the order it led to",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._market_state = Enum(
            "gridbot_market_state",
            "The market state the grid trades in",
            states=[s.value for s in MarketState],
            registry=registry,
        )
        self._up = Gauge(
            "gridbot_trading", "1 while /health answers 200 (trading), else 0", registry=registry
        )
        registry.register(_VenueCollector(self))
        for side in ("buy", "sell"):
            self._placed.labels(side)
            self._fills.labels(side)
        for kind in ("tick_to_order", "fill_to_counter_order"):
            self._latency.labels(kind)

    # ------------------------------------------------------------------ BotObserver
    def run_started(self, snapshot: GridSnapshot, *, resumed: bool) -> None:
        self._phase = "trading"
        self._take(snapshot)
        self._last_price_at = self._clock.monotonic()
        self._day = self._clock.now().date()
        self._day_start = (snapshot.fills, snapshot.realized_pnl)
        verb = "resumed" if resumed else "started"
        self._alert(
            "start",
            f"grid {verb}: {snapshot.symbol} on {snapshot.exchange}",
            self._figures(snapshot, f"run {snapshot.run_id[:12]}"),
        )

    def price_seen(self, ticker: Ticker) -> None:
        self._last_price_at = self._clock.monotonic()
        self._last_price.set(float(ticker.last))

    def order_placed(self, order: TrackedOrder) -> None:
        self._placed.labels(order.side.value).inc()

    def order_refused(self, order: TrackedOrder, reason: str) -> None:
        self._refused.labels(reason).inc()

    def order_cancelled(self, order: TrackedOrder) -> None:
        self._cancelled.inc()

    def fill_booked(self, booked: BookedFill) -> None:
        self._fills.labels(booked.fill.side.value).inc()

    def latency(self, kind: str, seconds: float) -> None:
        self._latency.labels(kind).observe(seconds)

    def venue_error(self, error: Exception) -> None:
        kind = type(error).__name__
        self.grid_errors[kind] = self.grid_errors.get(kind, 0) + 1

    def halted(self, reason: str) -> None:
        self._phase = "halted"
        self._end_reason = reason
        self._alert("halt", f"risk halt: {reason}", "the grid's orders are being cancelled", "critical")

    def changed(self, snapshot: GridSnapshot) -> None:
        self._take(snapshot)

    def run_stopped(self, snapshot: GridSnapshot, *, status: RunStatus, reason: str) -> None:
        self._take(snapshot)
        self._phase = "halted" if status is RunStatus.HALTED else "stopped"
        self._end_reason = reason
        self._alert(
            "stop",
            f"grid {status.value}: {reason}",
            self._figures(snapshot, f"run {snapshot.run_id[:12]}"),
            "warning" if status is RunStatus.HALTED else "info",
        )

    # ------------------------------------------------------------------ beyond the grid
    def attach_venue(self, probe: VenueProbe) -> None:
        self.probe = probe

    def bot_failed(self, error: BaseException) -> None:
        """An error stopped the bot (the runner is about to exit with it)."""
        self._phase = "failed"
        self._end_reason = str(error) or type(error).__name__
        self._alert("fatal", "gridbot stopped by an error", self._end_reason, "critical")

    # ------------------------------------------------------------------ health
    def status(self) -> tuple[str, str | None]:
        """(status, reason): "trading" with no reason, or why the bot is not."""
        if self._phase in ("halted", "stopped", "failed"):
            label = "risk halt" if self._phase == "halted" else self._phase
            return self._phase, f"{label}: {self._end_reason}"
        trouble = self._venue_trouble()
        if trouble is None and self._phase == "starting":
            return "starting", "the grid is not trading yet"
        if trouble is None:
            return "trading", None
        if self._phase == "starting":
            return trouble[0], f"starting; {trouble[1]}"
        return trouble

    def _venue_trouble(self) -> tuple[str, str] | None:
        probe = self.probe
        banned = probe.banned_for()
        if banned > 0:
            return "banned", f"banned by the venue (HTTP 418) for another {banned:.0f} s"
        state = probe.state()
        if state == "rate_limited":
            return "rate_limited", "rate-limited by the venue (HTTP 429): requests held back"
        if state == "circuit_open":
            return "circuit_open", "circuit open: the venue failed repeatedly; calls are paused"
        snapshot = self.snapshot
        if state == "maintenance" or (
            snapshot is not None and snapshot.market_state is MarketState.MAINTENANCE
        ):
            return "maintenance", "venue in maintenance or not answering: no orders go out"
        quiet = self._quiet_for()
        if quiet > self._feed_down_after_s:
            return "feed_down", f"feed down: no price for {quiet:.0f} s"
        return None

    def _quiet_for(self) -> float:
        since = self._last_price_at if self._last_price_at is not None else self._created
        return max(0.0, self._clock.monotonic() - since)

    def health(self) -> Health:
        status, reason = self._current_status()
        snapshot = self.snapshot
        body: dict[str, Any] = {"status": status}
        if reason is not None:
            body["reason"] = reason
        body.update(
            {
                "run_id": None if snapshot is None else snapshot.run_id,
                "symbol": None if snapshot is None else snapshot.symbol,
                "exchange": None if snapshot is None else snapshot.exchange,
                "market_state": None if snapshot is None else snapshot.market_state.value,
                "last_price": None if snapshot is None else money(snapshot.last_price),
                "open_orders": None if snapshot is None else snapshot.open_orders,
                "fills": None if snapshot is None else snapshot.fills,
                "realized_pnl": None if snapshot is None else money(snapshot.realized_pnl),
                "since": self._status_since.isoformat(),
            }
        )
        feed = self.probe.market_data()
        if feed is not None:
            body["market_data"] = dict(feed)
        orders = self.probe.order_updates()
        if orders is not None:
            body["order_updates"] = dict(orders)
        return Health(status == "trading", body)

    def _current_status(self) -> tuple[str, str | None]:
        current = self.status()
        if current[0] != self._status[0]:
            self._status = current
            self._status_since = self._clock.now()
        self._up.set(1 if current[0] == "trading" else 0)
        return current

    # ------------------------------------------------------------------ the watch loop
    async def watch(self, interval_s: float = CHECK_INTERVAL_S) -> None:
        """Look for what to alert on every `interval_s` of clock time, until cancelled."""
        while True:
            self.check()
            await self._clock.sleep(interval_s)

    def check(self) -> None:
        """Alert on changes the grid does not report itself: the circuit breaker, bans, a quiet
        feed; and send the daily summary when the clock's date has moved on."""
        self._current_status()
        probe = self.probe
        breaker = probe.breaker_state()
        if breaker != self._breaker:
            if breaker == "open" and self._breaker == "closed":
                self._alert(
                    "circuit_open", "circuit open: the venue failed repeatedly", "calls are paused", "warning"
                )
            elif breaker == "closed":
                self._alert("circuit_closed", "circuit closed: the venue answers again")
            self._breaker = breaker
        bans = probe.throttled().get(418, 0)
        if bans > self._bans:
            self._bans = bans
            self._alert(
                "ban",
                "banned by the venue (HTTP 418)",
                f"every request is held back for {probe.banned_for():.0f} s",
                "critical",
            )
        self._check_feed()
        self._check_day()

    def _check_feed(self) -> None:
        if self._phase != "trading":
            return
        quiet = self._quiet_for()
        if quiet > self._feed_down_after_s and self._feed_down_since is None:
            self._feed_down_since = self._last_price_at
            self._alert("feed_down", f"feed down: no price for {quiet:.0f} s", severity="warning")
        elif quiet <= self._feed_down_after_s and self._feed_down_since is not None:
            down = max(0.0, (self._last_price_at or 0.0) - self._feed_down_since)
            self._feed_down_since = None
            self._alert("feed_up", f"feed back after {down:.0f} s")

    def _check_day(self) -> None:
        today = self._clock.now().date()
        snapshot = self.snapshot
        if self._day is None or today == self._day or snapshot is None:
            return
        fills, realized = self._day_start
        day_realized = snapshot.realized_pnl - realized
        self._alert(
            f"daily_summary:{self._day.isoformat()}",
            f"daily summary for {self._day.isoformat()}: {snapshot.symbol} on {snapshot.exchange}",
            self._figures(
                snapshot,
                f"fills that day {snapshot.fills - fills}, realized that day {money(day_realized)}",
            ),
        )
        self._day = today
        self._day_start = (snapshot.fills, snapshot.realized_pnl)

    # ------------------------------------------------------------------ helpers
    def _take(self, snapshot: GridSnapshot) -> None:
        self.snapshot = snapshot
        self._fills_booked.set(snapshot.fills)
        self._realized.set(float(snapshot.realized_pnl))
        self._position.set(float(snapshot.position))
        self._equity.set(float(snapshot.equity_change))
        self._open_orders.set(snapshot.open_orders)
        if snapshot.last_price is not None:
            self._last_price.set(float(snapshot.last_price))
        self._market_state.state(snapshot.market_state.value)

    @staticmethod
    def _figures(snapshot: GridSnapshot, first: str) -> str:
        quote = snapshot.symbol.split("/")[-1]
        base = snapshot.symbol.split("/")[0]
        parts = [
            first,
            f"price {money(snapshot.last_price) or 'unknown'}",
            f"open orders {snapshot.open_orders}",
            f"fills {snapshot.fills}",
            f"realized PnL {money(snapshot.realized_pnl)} {quote}",
            f"position {money(snapshot.position)} {base}",
            f"equity change {money(snapshot.equity_change)} {quote}",
        ]
        return ", ".join(parts)

    def _alert(self, key: str, title: str, text: str = "", severity: str = "info") -> None:
        if self._alert_sink is not None:
            self._alert_sink(Alert(key, title, text, severity, self._clock.now()))
