"""What the telemetry alerts on, driven on a simulated clock: start and stop with PnL, halts, the
circuit breaker, bans, a quiet feed, errors that stop the bot, and the daily summary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from adapters.clock import SimulatedClock
from adapters.monitoring.probe import VenueProbe
from adapters.monitoring.telemetry import BotTelemetry
from domain.models import RunStatus, Ticker
from domain.ports import Alert, GridSnapshot
from domain.risk import MarketState

START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
SNAPSHOT = GridSnapshot(
    run_id="0123456789abcdef0123456789abcdef",
    symbol="BTC/USDT",
    exchange="simulated",
    started_at=START,
    market_state=MarketState.NORMAL,
    last_price=Decimal("30000"),
    open_orders=15,
    fills=3,
    realized_pnl=Decimal("1.5"),
    position=Decimal("0.01"),
    position_cost=Decimal("290"),
)


def telemetry(**kwargs: object) -> tuple[BotTelemetry, SimulatedClock, list[Alert]]:
    clock = SimulatedClock(START, auto_advance=False)
    sent: list[Alert] = []
    return BotTelemetry(clock, alert=sent.append, **kwargs), clock, sent  # type: ignore[arg-type]


def test_start_and_stop_are_alerted_with_the_figures() -> None:
    bot, _, sent = telemetry()
    bot.run_started(SNAPSHOT, resumed=False)
    bot.run_stopped(
        replace(SNAPSHOT, fills=5, realized_pnl=Decimal("2.25")),
        status=RunStatus.STOPPED,
        reason="stop requested",
    )
    assert [(a.key, a.title) for a in sent] == [
        ("start", "grid started: BTC/USDT on simulated"),
        ("stop", "grid stopped: stop requested"),
    ]
    assert "run 0123456789ab" in sent[0].text
    assert "fills 5, realized PnL 2.25 USDT, position 0.01 BTC, equity change 12.25 USDT" in sent[1].text


def test_a_risk_halt_is_critical_and_its_stop_a_warning() -> None:
    bot, _, sent = telemetry()
    bot.run_started(SNAPSHOT, resumed=True)
    bot.halted("stop-loss: price 26900 at or under 27000")
    bot.run_stopped(SNAPSHOT, status=RunStatus.HALTED, reason="stop-loss: price 26900 at or under 27000")
    assert sent[0].title == "grid resumed: BTC/USDT on simulated"
    assert (sent[1].key, sent[1].severity) == ("halt", "critical")
    assert sent[1].title == "risk halt: stop-loss: price 26900 at or under 27000"
    assert (sent[2].key, sent[2].severity) == ("stop", "warning")


def test_the_circuit_opening_and_closing_and_a_ban_are_alerted_once_each() -> None:
    breaker = ["closed"]
    throttled = {429: 0, 418: 0}
    bot, _, sent = telemetry(
        probe=VenueProbe(
            breaker_state=lambda: breaker[0], throttled=lambda: throttled, banned_for=lambda: 300.0
        )
    )
    bot.run_started(SNAPSHOT, resumed=False)
    bot.check()
    breaker[0] = "open"
    bot.check()
    bot.check()
    breaker[0] = "half_open"
    bot.check()
    breaker[0] = "closed"
    throttled[418] = 1
    bot.check()
    bot.check()
    assert [a.key for a in sent] == ["start", "circuit_open", "circuit_closed", "ban"]
    assert sent[-1].severity == "critical"
    assert sent[-1].text == "every request is held back for 300 s"


def test_a_feed_quiet_for_longer_than_the_threshold_is_alerted_and_so_is_its_return() -> None:
    bot, clock, sent = telemetry(feed_down_after_s=60)
    bot.run_started(SNAPSHOT, resumed=False)
    clock.advance(60)
    bot.check()
    assert [a.key for a in sent] == ["start"]
    clock.advance(30)
    bot.check()
    bot.check()
    assert sent[-1].key == "feed_down"
    assert sent[-1].title == "feed down: no price for 90 s"
    clock.advance(30)
    bot.price_seen(Ticker("BTC/USDT", Decimal("29999"), Decimal("30001"), Decimal("30000"), START))
    bot.check()
    assert (sent[-1].key, sent[-1].title) == ("feed_up", "feed back after 120 s")


def test_an_error_that_stops_the_bot_is_alerted() -> None:
    bot, _, sent = telemetry()
    bot.bot_failed(RuntimeError("the database is locked"))
    assert [(a.key, a.severity, a.text) for a in sent] == [("fatal", "critical", "the database is locked")]
    assert bot.health().body["reason"] == "failed: the database is locked"


def test_the_daily_summary_goes_out_when_the_clock_passes_midnight() -> None:
    bot, clock, sent = telemetry(feed_down_after_s=86_400)
    bot.run_started(SNAPSHOT, resumed=False)  # 22:00 with 3 fills and 1.5 realized
    clock.advance(3600)
    bot.changed(replace(SNAPSHOT, fills=10, realized_pnl=Decimal("4")))
    bot.check()
    assert [a.key for a in sent] == ["start"]
    clock.advance(3600)  # 00:00 the next day
    bot.check()
    bot.check()
    summary = sent[-1]
    assert summary.key == "daily_summary:2026-03-01"
    assert summary.title == "daily summary for 2026-03-01: BTC/USDT on simulated"
    assert summary.text.startswith("fills that day 7, realized that day 2.5, price 30000")
    assert len(sent) == 2
