"""The user data stream's promise, decided in FillLedger: every trade of the account is passed on
exactly once, however the stream drops, delivers late or in batches, and however catch-ups fail
half way or overlap the stream.

The stateful test drives a model of the venue and of the connection protocol of
BinanceUserStream (subscribe, then catch up; on a drop the undelivered stream events are lost),
with the real ledger in the middle. Its invariant: nothing passed on twice, nothing passed on that
the venue did not trade; and once the feed settles (a connection whose catch-up reaches the
present, its stream delivered), everything the venue traded has been passed on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from structlog.testing import capture_logs

from adapters.binance.streams import RepeatedWarning
from adapters.binance.user_stream import FillLedger
from adapters.clock import SimulatedClock
from domain.errors import ExchangeUnavailable
from domain.models import Fill, Side

PAGE = 3  # a small page, so that catch-ups walk several pages
START = datetime(2026, 1, 1, tzinfo=UTC)


def trade(number: int) -> Fill:
    return Fill(
        trade_id=str(number),
        order_id=str(1000 + number // 2),
        client_order_id=f"grid-{number // 2}",
        symbol="BTC/USDT",
        side=Side.BUY if number % 2 else Side.SELL,
        price=Decimal("30000.00") + number,
        amount=Decimal("0.001"),
        fee=Decimal("0.000001"),
        fee_asset="BTC",
        timestamp=START + timedelta(seconds=number),
    )


class Venue:
    """myTrades: from an id, or the newest page without one; may fail after some pages. The page
    starts *at* the id (Binance's fromId is inclusive; the gateway asks for id + 1, but the ledger
    must not count on it), newest trades last, shuffled within the page."""

    def __init__(self) -> None:
        self.trades: list[Fill] = []
        self.fail_after: int | None = None
        self.pages = 0
        self.known: Callable[[], set[str]] = set  # what the ledger has seen, to count its duplicates
        self.expected_duplicates = 0

    async def fetch(self, since: str | None) -> Sequence[Fill]:
        if self.fail_after is not None and self.pages >= self.fail_after:
            raise ExchangeUnavailable("the venue is down")
        self.pages += 1
        if since is None:
            page = list(self.trades[-PAGE:])
        else:
            page = [t for t in self.trades if int(t.trade_id) >= int(since)][:PAGE]
        known = self.known()
        self.expected_duplicates += sum(
            1 for t in page if t.trade_id in known and (since is None or int(t.trade_id) > int(since))
        )
        return list(reversed(page))


def drain(ledger: FillLedger) -> list[str]:
    out = [fill.trade_id for fill in ledger.out]
    ledger.out.clear()
    return out


class UserStreamProtocol(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.venue = Venue()
        self.ledger = FillLedger()
        # the feed starts at a known mark (the bot's catch-up covers what came before it)
        self.ledger.complete_to = "0"
        self.venue.known = lambda: {*self.passed_on, *(f.trade_id for f in self.ledger.out)}
        self.next_id = 1
        self.connected = False
        self.synced = False
        self.in_flight: list[Fill] = []  # on the wire, not yet read
        self.passed_on: list[str] = []

    def teardown(self) -> None:
        self.loop.close()

    # -- the venue trades ---------------------------------------------------------------------
    @rule(count=st.integers(1, 5))
    def trades_happen(self, count: int) -> None:
        for _ in range(count):
            fill = trade(self.next_id)
            self.next_id += 1
            self.venue.trades.append(fill)
            if self.connected:
                self.in_flight.append(fill)

    # -- the connection -------------------------------------------------------------------------
    @precondition(lambda self: not self.connected)
    @rule()
    def subscribe(self) -> None:
        self.connected, self.synced = True, False

    @precondition(lambda self: self.connected)
    @rule(count=st.integers(1, 6))
    def stream_delivers(self, count: int) -> None:
        """Late and in batches: whatever was on the wire, in order."""
        for fill in self.in_flight[:count]:
            self.venue.expected_duplicates += fill.trade_id in self.venue.known()
            self.ledger.offer(fill, streamed=True)
        del self.in_flight[:count]
        self.collect()

    @precondition(lambda self: self.connected)
    @rule()
    def drops(self) -> None:
        """What was on the wire is lost."""
        self.in_flight.clear()
        self.connected = self.synced = False

    @rule(fail_after=st.none() | st.integers(0, 3))
    def catches_up(self, fail_after: int | None) -> None:
        """A catch-up (after a subscribe, or a poll while down), which may fail part way."""
        self.venue.fail_after, self.venue.pages = fail_after, 0
        before = len(self.passed_on)
        try:
            found = self.loop.run_until_complete(self.ledger.catch_up(self.venue.fetch, page_size=PAGE))
        except ExchangeUnavailable:
            found = None
        else:
            if self.connected:
                self.synced = True
        self.venue.fail_after = None
        self.collect()
        if found is not None:
            assert found == len(self.passed_on) - before

    @precondition(lambda self: self.connected)
    @rule(count=st.integers(1, 6))
    def stream_delivers_during_a_catch_up(self, count: int) -> None:
        """The stream brings fills while the catch-up's request is out (right after a subscribe)."""
        fetch = self.venue.fetch
        held: list[str] = []

        async def fetch_while_streaming(since: str | None) -> Sequence[Fill]:
            held.extend(self.stream_delivers_quietly(count if not held else 0))
            return await fetch(since)

        self.venue.pages = 0
        before = len(self.passed_on)
        self.loop.run_until_complete(self.ledger.catch_up(fetch_while_streaming, page_size=PAGE))
        # The catch-up reached the present, so it brought every held fill the ledger did not know:
        # the held copy, let out after it, is the duplicate.
        self.venue.expected_duplicates += len(held)
        self.synced = True
        self.collect()
        new = self.passed_on[before:]
        assert new == sorted(new, key=int)  # in the venue's order, though the stream came first

    def stream_delivers_quietly(self, count: int) -> list[str]:
        """Offer `count` fills from the wire; returns those the ledger did not know yet."""
        unknown = []
        for fill in self.in_flight[:count]:
            if fill.trade_id in self.venue.known():
                self.venue.expected_duplicates += 1
            else:
                unknown.append(fill.trade_id)
            self.ledger.offer(fill, streamed=True)
        del self.in_flight[:count]
        return unknown

    @rule(data=st.data())
    def a_fill_comes_again(self, data: st.DataObject) -> None:
        """The stream and a catch-up bring the same trade, or a server sends one twice."""
        if not self.venue.trades:
            return
        again = data.draw(st.sampled_from(self.venue.trades))
        seen = again.trade_id in self.passed_on
        self.venue.expected_duplicates += seen
        assert self.ledger.offer(again, streamed=True) is not seen
        self.collect()

    @rule()
    def settles(self) -> None:
        """A connection that stays up: its catch-up reaches the present, its stream is read."""
        if not self.connected:
            self.subscribe()
        self.catches_up(None)
        self.stream_delivers(len(self.in_flight))
        assert sorted(self.passed_on, key=int) == [t.trade_id for t in self.venue.trades]

    def collect(self) -> None:
        self.passed_on.extend(drain(self.ledger))

    @invariant()
    def each_trade_once_and_only_real_ones(self) -> None:
        assert len(self.passed_on) == len(set(self.passed_on))
        assert set(self.passed_on) <= {t.trade_id for t in self.venue.trades}

    @invariant()
    def the_counts_tell_what_happened(self) -> None:
        ledger = self.ledger
        assert ledger.streamed + ledger.caught_up + ledger.at_start == len(self.passed_on)
        assert ledger.duplicates == self.venue.expected_duplicates


UserStreamProtocol.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestUserStreamProtocol = UserStreamProtocol.TestCase


def test_a_failed_catch_up_keeps_what_its_pages_brought() -> None:
    venue = Venue()
    venue.trades = [trade(n) for n in range(1, 8)]
    venue.fail_after = 2
    ledger = FillLedger()
    ledger.complete_to = "0"
    with pytest.raises(ExchangeUnavailable):
        asyncio.run(ledger.catch_up(venue.fetch, page_size=PAGE))
    assert drain(ledger) == ["1", "2", "3", "4", "5"]  # pages 1-3 and 3-5 (fromId is inclusive)
    assert ledger.complete_to == "5"  # the next catch-up starts after the last page it got
    venue.fail_after = None
    assert asyncio.run(ledger.catch_up(venue.fetch, page_size=PAGE)) == 2
    assert drain(ledger) == ["6", "7"]


def test_a_catch_up_asks_until_a_page_is_not_full() -> None:
    venue = Venue()
    venue.trades = [trade(n) for n in range(1, 5)]
    ledger = FillLedger()
    ledger.complete_to = "0"
    assert asyncio.run(ledger.catch_up(venue.fetch, page_size=PAGE)) == 4
    assert venue.pages == 2  # 1-3 (full), then 3-4 (not full: done)
    assert asyncio.run(ledger.catch_up(venue.fetch, page_size=PAGE)) == 0
    assert venue.pages == 3  # one request finds the present
    assert drain(ledger) == ["1", "2", "3", "4"]
    assert (ledger.at_start, ledger.caught_up, ledger.streamed) == (4, 0, 0)  # the first catch-up


def test_without_a_mark_the_first_catch_up_takes_the_newest_page() -> None:
    venue = Venue()
    venue.trades = [trade(n) for n in range(1, 6)]
    ledger = FillLedger()
    asyncio.run(ledger.catch_up(venue.fetch, page_size=PAGE))
    assert drain(ledger) == ["3", "4", "5"]
    assert ledger.complete_to == "5"
    assert (ledger.at_start, ledger.caught_up, ledger.started) == (3, 0, True)


def test_only_a_catch_up_moves_the_mark() -> None:
    """A fill the stream brought out of order (9 before 3..8) proves nothing about those before it."""
    venue = Venue()
    venue.trades = [trade(n) for n in range(1, 10)]
    ledger = FillLedger()
    ledger.complete_to = "2"
    ledger.offer(trade(9), streamed=True)
    assert ledger.complete_to == "2"
    asyncio.run(ledger.catch_up(venue.fetch, page_size=PAGE))
    assert drain(ledger) == ["9", "3", "4", "5", "6", "7", "8"]
    assert (ledger.complete_to, ledger.duplicates) == ("9", 1)


def test_the_memory_of_seen_trades_is_bounded() -> None:
    ledger = FillLedger(remember=3)
    ledger.started = True
    for number in range(1, 6):
        ledger.offer(trade(number), streamed=True)
    assert ledger.offer(trade(5), streamed=False) is False
    assert ledger.offer(trade(1), streamed=False) is True  # forgotten: far behind the mark anyway
    assert (ledger.streamed, ledger.caught_up, ledger.duplicates) == (5, 1, 1)


def test_fills_streamed_during_a_catch_up_go_out_after_the_older_ones_it_brings() -> None:
    """After a reconnect the stream may bring trade 9 while the catch-up is fetching 6..9: the
    grid hears 6, 7, 8, 9 in the venue's order, and 9 once."""
    venue = Venue()
    venue.trades = [trade(n) for n in range(1, 10)]
    ledger = FillLedger()
    ledger.complete_to = "5"
    ledger.started = True

    async def fetch(since: str | None) -> Sequence[Fill]:
        if since == "5":  # while the first page is out
            assert ledger.offer(trade(9), streamed=True) is True  # held, not yet out
            assert ledger.offer(trade(8), streamed=True) is True
            assert drain(ledger) == []
        return await venue.fetch(since)

    asyncio.run(ledger.catch_up(fetch, page_size=PAGE))
    assert drain(ledger) == ["6", "7", "8", "9"]
    assert (ledger.caught_up, ledger.streamed, ledger.duplicates) == (4, 0, 2)
    assert ledger.offer(trade(10), streamed=True) is True  # after the catch-up: out at once
    assert drain(ledger) == ["10"]


def test_a_failed_catch_up_still_lets_the_held_fills_out() -> None:
    venue = Venue()
    venue.trades = [trade(n) for n in range(1, 4)]
    venue.fail_after = 0
    ledger = FillLedger()
    ledger.complete_to = "0"

    async def fetch(since: str | None) -> Sequence[Fill]:
        ledger.offer(trade(3), streamed=True)
        return await venue.fetch(since)

    with pytest.raises(ExchangeUnavailable):
        asyncio.run(ledger.catch_up(fetch, page_size=PAGE))
    assert drain(ledger) == ["3"]


def test_a_trade_id_the_venue_reuses_for_another_order_is_passed_on() -> None:
    """After a venue reset trade ids start over: the grid core must see such a trade to say so."""
    ledger = FillLedger()
    ledger.started = True
    ledger.offer(trade(1), streamed=True)
    reused = replace(trade(1), order_id="9999", client_order_id="grid-other")
    assert ledger.offer(reused, streamed=True) is True
    assert ledger.offer(reused, streamed=False) is False
    assert (ledger.streamed, ledger.duplicates) == (2, 1)


def test_a_failure_that_repeats_is_logged_once_a_minute_with_the_count() -> None:
    clock = SimulatedClock(START)
    warning = RepeatedWarning(clock, every_s=60.0)
    with capture_logs() as logs:
        for _ in range(30):  # a poll every 2 s for a minute
            warning.warn("catch-up failed", reason="circuit open")
            clock.advance(2)
        warning.warn("catch-up failed", reason="circuit open")
        warning.ok()
        warning.warn("catch-up failed", reason="timeout")
    assert [(e["event"], e["reason"], e.get("repeated")) for e in logs] == [
        ("catch-up failed", "circuit open", None),
        ("catch-up failed", "circuit open", 29),
        ("catch-up failed", "timeout", None),  # after a success, the next failure is news
    ]
