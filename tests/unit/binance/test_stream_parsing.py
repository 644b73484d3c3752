"""Market-stream payloads (the docs' own examples) into domain events, and what is refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from adapters.binance.stream_parsing import (
    CONTROL_ANSWER,
    KlineUpdate,
    MalformedMessage,
    ServerShutdown,
    StreamParser,
)
from adapters.binance.streams import BinanceMarketStreams
from adapters.clock import SimulatedClock
from domain.models import BookTop, MarketTrade

TRADE: dict[str, Any] = {
    "e": "trade",
    "E": 1672515782136,
    "s": "BNBBTC",
    "t": 12345,
    "p": "0.001",
    "q": "100",
    "T": 1672515782136,
    "m": True,
    "M": True,
}
BOOK: dict[str, Any] = {
    "u": 400900217,
    "s": "BNBBTC",
    "b": "25.35190000",
    "B": "31.21000000",
    "a": "25.36520000",
    "A": "40.66000000",
}
KLINE: dict[str, Any] = {
    "e": "kline",
    "E": 1672515782136,
    "s": "BNBBTC",
    "k": {
        "t": 1672515780000,
        "T": 1672515839999,
        "s": "BNBBTC",
        "i": "1m",
        "f": 100,
        "L": 200,
        "o": "0.0010",
        "c": "0.0020",
        "h": "0.0025",
        "l": "0.0005",  # the docs' example says 0.0015, above its own open: a candle cannot be
        "v": "1000",
        "n": 100,
        "x": False,
        "q": "1.0000",
        "V": "500",
        "Q": "0.500",
        "B": "123456",
    },
}
parser = StreamParser("BNB/BTC")


def combined(stream: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def test_a_trade_becomes_a_market_trade_with_exact_decimals() -> None:
    event = parser.parse(combined("bnbbtc@trade", TRADE))
    assert event == MarketTrade(
        "BNB/BTC",
        12345,
        Decimal("0.001"),
        Decimal("100"),
        datetime.fromtimestamp(1672515782.136, tz=UTC),
        True,
    )


def test_a_raw_payload_parses_as_its_envelope_does() -> None:
    assert parser.parse(json.dumps(TRADE)) == parser.parse(combined("bnbbtc@trade", TRADE))


def test_a_book_ticker_becomes_a_book_top() -> None:
    event = parser.parse(combined("bnbbtc@bookTicker", BOOK))
    assert event == BookTop(
        "BNB/BTC",
        400900217,
        Decimal("25.35190000"),
        Decimal("31.21000000"),
        Decimal("25.36520000"),
        Decimal("40.66000000"),
    )


def test_a_kline_becomes_the_candle_so_far() -> None:
    event = parser.parse(combined("bnbbtc@kline_1m", KLINE))
    assert isinstance(event, KlineUpdate)
    assert event.candle.open == Decimal("0.0010")
    assert event.candle.close == Decimal("0.0020")
    assert event.candle.volume == Decimal("1000")
    assert not event.closed
    assert (event.event_time_ms, event.last_trade_id) == (1672515782136, 200)


def test_control_answers_and_the_shutdown_notice_are_recognised() -> None:
    assert parser.parse(b'{"result": null, "id": 1}') is CONTROL_ANSWER
    notice = parser.parse(combined("!serverShutdown", {"e": "serverShutdown", "E": 1770123456789}))
    assert notice == ServerShutdown(1770123456789)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (combined("bnbbtc@trade", {**TRADE, "p": "abc"}), "trade event"),
        (
            combined("bnbbtc@trade", {**TRADE, "p": 0.001}),
            "not a decimal string",
        ),  # a float lost the exact value
        (combined("bnbbtc@trade", {**TRADE, "p": "NaN"}), "not finite"),
        (combined("bnbbtc@trade", {**TRADE, "p": "0"}), "not positive"),
        (combined("bnbbtc@trade", {k: v for k, v in TRADE.items() if k != "t"}), "'t' is missing"),
        (combined("bnbbtc@trade", {**TRADE, "t": "12"}), "not an integer"),
        (combined("ethbtc@trade", {**TRADE, "s": "ETHBTC"}), "not this feed's BNBBTC"),
        (combined("bnbbtc@bookTicker", {**BOOK, "b": "Infinity"}), "not finite"),
        (combined("bnbbtc@kline_1m", {**KLINE, "k": {**KLINE["k"], "h": "0.0001"}}), "inconsistent"),
        (combined("bnbbtc@depth", {"e": "depthUpdate", "s": "BNBBTC"}), "unexpected event 'depthUpdate'"),
        (b'{"hello": 1}', "unexpected message"),
    ],
)
def test_what_the_feed_cannot_use_is_refused_with_a_reason(message: bytes, why: str) -> None:
    with pytest.raises(MalformedMessage, match=why):
        parser.parse(message)


def test_the_feed_takes_each_event_once_whichever_connection_brings_it() -> None:
    feed = BinanceMarketStreams(
        "ws://127.0.0.1:9", "BNB/BTC", SimulatedClock(datetime(2026, 1, 1, tzinfo=UTC))
    )
    first, second = (
        combined("bnbbtc@trade", TRADE),
        combined("bnbbtc@trade", {**TRADE, "t": 12346, "p": "0.002"}),
    )
    for message in (first, first, second, first, second):  # the standby's copies, one late
        feed._handle(message)
    book = combined("bnbbtc@bookTicker", BOOK)
    feed._handle(book)
    feed._handle(book)
    kline = combined("bnbbtc@kline_1m", KLINE)
    feed._handle(kline)
    feed._handle(kline)
    assert feed.duplicates == 5
    assert feed.malformed == 0
    assert feed._ticker is not None and feed._ticker.last == Decimal("0.002")
