"""Binance WebSocket API messages of the user data stream -> what the feed acts on, at the boundary.

A message is one JSON text: an answer to a request (`{"id", "status", "result" | "error"}`), a
subscription event (`{"subscriptionId": n, "event": {...}}`) or a connection event
(`{"event": {"e": "serverShutdown"}}`). An `executionReport` whose execution type is TRADE is a
fill of this account: it becomes a domain `Fill`, with Decimals from Binance's strings. Other
order events (NEW, CANCELED, EXPIRED, ...) and account events are recognised and passed over.
Anything malformed raises `MalformedEvent`, whose text says what was wrong; the feed logs it and
goes on.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Final

import orjson

from adapters.binance.parsing import millis_to_datetime
from domain.models import Fill, Side

_SIDES: Final[dict[object, Side]] = {"BUY": Side.BUY, "SELL": Side.SELL}


class MalformedEvent(ValueError):
    """A user data message the feed cannot use; the text says why."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one of our requests (subscribe, ping)."""

    request_id: object
    status: int
    result: object
    error_code: int | None = None
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True, slots=True)
class StreamTerminated:
    """The subscription ended on the server's side (`eventStreamTerminated`): subscribe again."""

    subscription_id: int | None


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """The server is about to go down: reconnect now."""


@dataclass(frozen=True, slots=True)
class OtherEvent:
    """An event this feed does not act on (a new or cancelled order, a balance change, another
    symbol's trade)."""

    kind: str


UserEvent = Fill | Answer | StreamTerminated | ServerShutdown | OtherEvent


def sign(params: Mapping[str, object], secret: str) -> str:
    """HMAC-SHA256 (hex) of the params sorted by name, as `name=value&...` (Binance's WebSocket
    API signing; `signature` itself is left out)."""
    payload = "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "signature")
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class UserEventParser:
    """Parses the user data messages of one account for one symbol ("BTC/USDT")."""

    __slots__ = ("symbol", "wire_symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.wire_symbol = symbol.replace("/", "")

    def parse(self, message: bytes | str) -> UserEvent:
        try:
            data = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"not JSON: {_clip(message)}") from exc
        if not isinstance(data, dict):
            raise MalformedEvent(f"not a JSON object: {_clip(message)}")
        event = data.get("event")
        if event is None:
            if "status" in data:
                return _answer(data)
            raise MalformedEvent(f"neither an answer nor an event: {_clip(message)}")
        if not isinstance(event, dict):
            raise MalformedEvent(f"'event' is not an object: {_clip(message)}")
        kind = event.get("e")
        if kind == "executionReport":
            return self._execution(event)
        if kind == "eventStreamTerminated":
            subscription = data.get("subscriptionId")
            return StreamTerminated(subscription if isinstance(subscription, int) else None)
        if kind == "serverShutdown":
            return ServerShutdown()
        if not isinstance(kind, str):
            raise MalformedEvent(f"event without a type: {_clip(message)}")
        return OtherEvent(kind)

    def _execution(self, event: dict[str, object]) -> Fill | OtherEvent:
        execution = event.get("x")
        if execution != "TRADE":
            if not isinstance(execution, str):
                raise MalformedEvent("executionReport: field 'x' is missing")
            return OtherEvent(f"executionReport {execution}")
        symbol = event.get("s")
        if not isinstance(symbol, str):
            raise MalformedEvent("executionReport: field 's' (symbol) is missing")
        if symbol != self.wire_symbol:
            return OtherEvent(f"executionReport TRADE of {symbol}")
        trade_id = _int(event, "t")
        where = f"executionReport trade {trade_id}"
        side = _SIDES.get(event.get("S"))
        if side is None:
            raise MalformedEvent(f"{where}: field 'S' is not BUY or SELL: {event.get('S')!r}")
        fee_asset = event.get("N")
        fee = _decimal(event, "n", where)
        if not isinstance(fee_asset, str):
            if fee != 0:
                raise MalformedEvent(f"{where}: a commission of {fee} without its asset ('N')")
            fee_asset = ""
        maker = event.get("m")
        if not isinstance(maker, bool):
            raise MalformedEvent(f"{where}: field 'm' is not true or false")
        client_order_id = event.get("c")
        if not isinstance(client_order_id, str) or not client_order_id:
            raise MalformedEvent(f"{where}: field 'c' (client order id) is missing")
        amount = _decimal(event, "l", where)
        price = _decimal(event, "L", where)
        if amount <= 0 or price <= 0:
            raise MalformedEvent(f"{where}: a trade of {amount} at {price}")
        return Fill(
            trade_id=str(trade_id),
            order_id=str(_int(event, "i", where)),
            client_order_id=client_order_id,
            symbol=self.symbol,
            side=side,
            price=price,
            amount=amount,
            fee=fee,
            fee_asset=fee_asset,
            timestamp=millis_to_datetime(_int(event, "T", where)),
            is_maker=maker,
        )


def _answer(data: dict[str, object]) -> Answer:
    status = data.get("status")
    if not isinstance(status, int) or isinstance(status, bool):
        raise MalformedEvent(f"an answer with status {status!r}")
    error = data.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        message = error.get("msg")
        return Answer(
            data.get("id"),
            status,
            None,
            code if isinstance(code, int) else None,
            message if isinstance(message, str) else "",
        )
    return Answer(data.get("id"), status, data.get("result"))


def _int(event: Mapping[str, object], name: str, where: str = "executionReport") -> int:
    value = event.get(name)
    if type(value) is not int:
        raise MalformedEvent(f"{where}: field {name!r} is not an integer: {value!r}")
    return value


def _decimal(event: Mapping[str, object], name: str, where: str) -> Decimal:
    raw = event.get(name)
    if not isinstance(raw, str):
        raise MalformedEvent(f"{where}: field {name!r} is not a decimal string: {raw!r}")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise MalformedEvent(f"{where}: field {name!r} is not a number: {raw!r}") from None
    if not value.is_finite():
        raise MalformedEvent(f"{where}: field {name!r} is not finite: {raw!r}")
    return value


def _clip(message: bytes | str, limit: int = 120) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return text if len(text) <= limit else text[:limit] + "…"
