"""Binance market-stream payloads -> domain events, at the boundary.

One message is one JSON text: a combined-stream envelope `{"stream": ..., "data": {...}}` or a raw
payload. Prices and quantities come from Binance's strings as exact Decimals. Anything else (bad
JSON, a missing or non-numeric field, another symbol, an event this feed did not ask for) raises
`MalformedMessage`; the feed logs it and goes on. Control answers (`{"result": null, "id": 1}`)
and the `serverShutdown` notice are recognised and returned as such.

Written for speed (every market message of the bot passes here): orjson decodes, fields are read
directly, and only a failure pays for a helpful message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Final

import orjson

from domain.models import BookTop, Candle, MarketTrade

_EPOCH_MS: Final = 1000


class MalformedMessage(ValueError):
    """A stream message the feed cannot use; the text says why."""


@dataclass(frozen=True, slots=True)
class KlineUpdate:
    """One push of the current candle (`@kline_<interval>`): the candle so far, whether it has
    closed, the push's event time and the candle's last trade id (two connections push the same
    update with the same both)."""

    symbol: str
    candle: Candle
    closed: bool
    event_time_ms: int
    last_trade_id: int


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The server is about to go down: reconnect now."""

    event_time_ms: int


class ControlAnswer:
    """An answer to a SUBSCRIBE / LIST_SUBSCRIPTIONS request; not market data."""


CONTROL_ANSWER: Final = ControlAnswer()

StreamEvent = MarketTrade | BookTop | KlineUpdate | ServerShutdown | ControlAnswer


_last_time: tuple[int, datetime] = (0, datetime.fromtimestamp(0, tz=UTC))


def _ms(value: object) -> datetime:
    """Epoch milliseconds as a UTC datetime; consecutive events often share a millisecond, and a
    datetime costs more to build than to reuse."""
    global _last_time  # noqa: PLW0603 - a one-entry cache of an immutable value
    if type(value) is not int:
        raise TypeError(f"not an integer time: {value!r}")
    cached = _last_time
    if cached[0] == value:
        return cached[1]
    moment = datetime.fromtimestamp(value / _EPOCH_MS, tz=UTC)
    _last_time = (value, moment)
    return moment


def _dec(value: object) -> Decimal:
    if type(value) is not str:
        raise TypeError(f"not a decimal string: {value!r}")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"not finite: {value!r}")
    return number


def _positive(value: object) -> Decimal:
    number = _dec(value)
    if number <= 0:
        raise ValueError(f"not positive: {value!r}")
    return number


class StreamParser:
    """Parses the messages of one symbol's streams. `symbol` is the domain's BTC/USDT."""

    __slots__ = ("_wire", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._wire = symbol.replace("/", "").upper()

    def parse(self, message: bytes | str) -> StreamEvent:
        return self.event(self.payload(message))

    @staticmethod
    def payload(message: bytes | str) -> dict[str, object]:
        """The event object of one message (unwrapped from a combined-stream envelope)."""
        try:
            decoded = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise MalformedMessage(f"not JSON: {exc}") from None
        if type(decoded) is not dict:
            raise MalformedMessage(f"not a JSON object: {type(decoded).__name__}")
        payload = decoded.get("data", decoded) if "stream" in decoded else decoded
        if type(payload) is not dict:
            raise MalformedMessage("the stream envelope holds no object")
        return payload

    def event(self, payload: dict[str, object]) -> StreamEvent:
        """The domain event of one payload (see `payload`)."""
        try:
            return self._event(payload)
        except MalformedMessage:
            raise
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            kind = payload.get("e", "bookTicker" if "u" in payload else "?")
            reason = f"field {exc.args[0]!r} is missing" if isinstance(exc, KeyError) else str(exc)
            raise MalformedMessage(f"{kind} event: {reason}") from None

    def _event(self, data: dict[str, object]) -> StreamEvent:
        kind = data.get("e")
        if kind == "trade":
            self._check_symbol(data["s"])
            trade_id = data["t"]
            if type(trade_id) is not int:
                raise TypeError(f"trade id is not an integer: {trade_id!r}")
            return MarketTrade(
                self.symbol,
                trade_id,
                _positive(data["p"]),
                _dec(data["q"]),
                _ms(data["T"]),
                data.get("m") is True,
            )
        if kind is None and "u" in data:  # bookTicker carries no event type
            self._check_symbol(data["s"])
            update_id = data["u"]
            if type(update_id) is not int:
                raise TypeError(f"update id is not an integer: {update_id!r}")
            # The most frequent message: its four decimals are read inline.
            b, bq, a, aq = data["b"], data["B"], data["a"], data["A"]
            if type(b) is not str or type(bq) is not str or type(a) is not str or type(aq) is not str:
                raise TypeError(f"a bookTicker price or quantity is not a decimal string: {data!r}")
            bid, bid_qty, ask, ask_qty = Decimal(b), Decimal(bq), Decimal(a), Decimal(aq)
            if not (bid.is_finite() and bid_qty.is_finite() and ask.is_finite() and ask_qty.is_finite()):
                raise ValueError(f"a bookTicker value is not finite: {data!r}")
            return BookTop(self.symbol, update_id, bid, bid_qty, ask, ask_qty)
        if kind == "kline":
            self._check_symbol(data["s"])
            k = data["k"]
            if type(k) is not dict:
                raise TypeError("kline payload 'k' is not an object")
            event_time = data["E"]
            if type(event_time) is not int:
                raise TypeError(f"event time is not an integer: {event_time!r}")
            candle = Candle(
                _ms(k["t"]),
                _positive(k["o"]),
                _positive(k["h"]),
                _positive(k["l"]),
                _positive(k["c"]),
                _dec(k["v"]),
            )
            last_trade_id = k.get("L", -1)
            if type(last_trade_id) is not int:
                raise TypeError(f"last trade id is not an integer: {last_trade_id!r}")
            return KlineUpdate(self.symbol, candle, k["x"] is True, event_time, last_trade_id)
        if kind == "serverShutdown":
            event_time = data.get("E")
            return ServerShutdown(event_time if type(event_time) is int else 0)
        if kind is None and "id" in data and ("result" in data or "error" in data):
            return CONTROL_ANSWER
        raise MalformedMessage(f"unexpected event {kind!r}" if kind is not None else "unexpected message")

    def _check_symbol(self, wire: object) -> None:
        if wire != self._wire:
            raise MalformedMessage(f"symbol {wire!r} is not this feed's {self._wire}")
