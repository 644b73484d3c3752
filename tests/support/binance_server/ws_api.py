"""The Binance WebSocket API's user data stream on loopback (the `websockets` library's asyncio
server), beside the REST stand-in and fed by its order events (`FakeBinance.order_listeners`).

One path, `/ws-api/v3`, as Binance serves it. Requests are {"id", "method", "params"} text
frames, answered {"id", "status", "result"} or {"id", "status", "error": {"code", "msg"}}
(no `rateLimits`). Methods: `ping`, `time`, `userDataStream.subscribe.signature` (HMAC-SHA256
over the params sorted by name, the docs' timing rule on the REST side's clock, key and secret),
`userDataStream.unsubscribe` (an `eventStreamTerminated` per closed subscription),
`session.status` and `session.subscriptions`.

Every subscription gets the account's events wrapped as {"subscriptionId": n, "event": {...}}:
an `executionReport` for each order event (NEW on placement, TRADE per fill, at placement or
when `set_price` crosses a resting order, CANCELED, EXPIRED for an IOC/FOK that did not fill),
then one `outboundAccountPosition` with the symbol's two assets. They are pushed when they
happen, so they may reach the client before the REST answer of the request that caused them;
events while nobody is subscribed are not kept for later (clients catch up over REST).

Knobs for tests, as on `MarketStreamServer`: server pings with a payload (`ping`, or every
`ping_interval_s`, closing a connection that does not pong within `pong_timeout_s`), drops
(`drop`), a stall (`stall`), raw text (`send_raw`), the `serverShutdown` notice, refusing new
connections (`refusing`), and `hold` / `release` to deliver account events late, in one batch,
optionally reversed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from domain.models import ZERO, OrderType, Side
from support.binance_server import wire
from support.binance_server.app import DEFAULT_RECV_WINDOW, MAX_RECV_WINDOW, FakeBinance, OrderEvent
from support.binance_server.sockets import SocketServer
from support.binance_server.wire import JsonObject, Refusal, fmt

log = structlog.get_logger(__name__)

PATH = "/ws-api/v3"
INVALID_JSON = Refusal(400, -1135, "Invalid JSON Request")
SUBSCRIPTION_ACTIVE = Refusal(400, -2035, "User Data Stream subscription already active.")
_EXPIRY_REASONS = {"IOC": "UNFILLED_IOC_QUANTITY_EXPIRED", "FOK": "UNFILLED_FOK_ORDER_EXPIRED"}


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.msg)
        self.refusal = refusal


@dataclass(eq=False)
class UserDataClient:
    """One connection as the server sees it. `sent` counts every frame sent, `events_sent` the
    account events among them (executionReport, outboundAccountPosition)."""

    number: int
    socket: ServerConnection
    connected_ms: int
    outbox: asyncio.Queue[tuple[str, bool]] = field(default_factory=asyncio.Queue)
    subscriptions: set[int] = field(default_factory=set)
    next_subscription: int = 0
    stalled: bool = False
    pongs: list[bytes] = field(default_factory=list)
    sent: int = 0
    events_sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open(self) -> bool:
        return not self.done.is_set()


class UserDataServer(SocketServer[UserDataClient]):
    def __init__(
        self, fake: FakeBinance, *, ping_interval_s: float | None = None, pong_timeout_s: float = 60.0
    ) -> None:
        super().__init__(fake, ping_interval_s=ping_interval_s, pong_timeout_s=pong_timeout_s)
        self.subscriptions_opened = 0
        self._held = False
        self._pending: list[tuple[UserDataClient, int, str]] = []
        self._execution_id = 0

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await self._listen(host, port, PATH)
        self.fake.order_listeners.append(self._on_orders)
        log.info("fake_binance.ws_api.started", url=url)
        return url

    async def stop(self) -> None:
        if self._on_orders in self.fake.order_listeners:
            self.fake.order_listeners.remove(self._on_orders)
        await self._close()

    @property
    def url(self) -> str:
        """The full WebSocket API URL, as EXCHANGE__WS_API_URL takes it."""
        if self._url is None:
            raise RuntimeError("the WebSocket API server is not started")
        return self._url

    # -- knobs --------------------------------------------------------------------------------------
    async def wait_for_pongs(self, client: UserDataClient, count: int) -> list[bytes]:
        """Wait until `client` has answered `count` server pings in all; returns their payloads."""
        while len(client.pongs) < count:
            await self._next_change()
        return client.pongs

    def active_subscriptions(self) -> int:
        return sum(len(client.subscriptions) for client in self.live())

    async def wait_for_subscriptions(self, count: int, *, opened: int | None = None) -> list[UserDataClient]:
        """Wait until `count` subscriptions are active on open connections (and, with `opened`,
        until that many were ever opened); returns the open connections that have one."""
        while self.active_subscriptions() < count or (
            opened is not None and self.subscriptions_opened < opened
        ):
            await self._next_change()
        return [client for client in self.live() if client.subscriptions]

    def send_raw(self, text: str, clients: Iterable[UserDataClient] | None = None) -> None:
        for client in list(self.live() if clients is None else clients):
            client.outbox.put_nowait((text, False))

    def shutdown_notice(self, event_time_ms: int = 0) -> None:
        event = {"e": "serverShutdown", "E": event_time_ms or self.fake.server_time_ms()}
        self.send_raw(json.dumps({"event": event}))

    def hold(self) -> None:
        """Keep account events back (queued, not sent) until `release`."""
        self._held = True

    def release(self, *, reverse: bool = False) -> int:
        """Send the events kept back by `hold` (in reverse order with `reverse`) to the
        subscriptions still active, and stop holding; returns how many were sent."""
        self._held = False
        pending, self._pending = self._pending, []
        if reverse:
            pending.reverse()
        sent = 0
        for client, subscription, text in pending:
            if client.open and subscription in client.subscriptions:
                client.outbox.put_nowait((text, True))
                sent += 1
        return sent

    @property
    def held(self) -> int:
        """How many events `hold` keeps back now."""
        return len(self._pending)

    # -- account events -----------------------------------------------------------------------------
    def _on_orders(self, events: Sequence[OrderEvent]) -> None:
        payloads = [self.execution_report(event) for event in events]
        payloads.append(self._account_position(events[-1]))
        for client in self.live():
            for payload in payloads:
                for subscription in sorted(client.subscriptions):
                    text = json.dumps({"subscriptionId": subscription, "event": payload})
                    if self._held:
                        self._pending.append((client, subscription, text))
                    else:
                        client.outbox.put_nowait((text, True))

    def execution_report(self, event: OrderEvent) -> JsonObject:
        """The executionReport of one order event, every documented field of a plain order."""
        order, meta, fill = event.order, event.meta, event.fill
        self._execution_id += 1
        if fill is not None:
            trades = [
                trade
                for trade in event.book.engine.order_trades(order.order_id)
                if int(trade.trade_id) <= int(fill.trade_id)
            ]
            filled = sum((trade.amount for trade in trades), ZERO)
            quote = sum((trade.price * trade.amount for trade in trades), ZERO)
            status = "FILLED" if filled >= order.amount else "PARTIALLY_FILLED"
        elif event.kind == "NEW":
            filled = quote = ZERO
            status = "NEW"
        else:
            filled = order.filled
            quote = (order.average_price or ZERO) * order.filled
            status = event.kind
        price = order.price if order.price is not None and order.type is OrderType.LIMIT else ZERO
        canceled = event.kind == "CANCELED"
        on_book = event.working and status in ("NEW", "PARTIALLY_FILLED")
        report: JsonObject = {
            "e": "executionReport",
            "E": event.now_ms,
            "s": event.book.spec.wire_symbol,
            "c": event.cancel_client_id if canceled and event.cancel_client_id else order.client_order_id,
            "S": "BUY" if order.side is Side.BUY else "SELL",
            "o": meta.wire_type,
            "f": meta.time_in_force,
            "q": fmt(order.amount),
            "p": fmt(price),
            "P": fmt(ZERO),
            "F": fmt(ZERO),
            "g": -1,
            "C": order.client_order_id if canceled else "",
            "x": event.kind,
            "X": status,
            "r": "NONE",
            "i": int(order.order_id),
            "l": fmt(fill.amount) if fill is not None else fmt(ZERO),
            "z": fmt(filled),
            "L": fmt(fill.price) if fill is not None else fmt(ZERO),
            "n": fmt(fill.fee) if fill is not None else "0",
            "N": fill.fee_asset if fill is not None else None,
            "T": event.now_ms,
            "t": int(fill.trade_id) if fill is not None else -1,
            "I": self._execution_id,
            "w": on_book,
            "m": fill.is_maker if fill is not None else False,
            "M": fill is not None,
            "O": meta.created_ms,
            "Z": fmt(quote),
            "Y": fmt(fill.price * fill.amount) if fill is not None else fmt(ZERO),
            "Q": fmt(meta.orig_quote_qty),
            "V": "NONE",
        }
        if event.working:
            report["W"] = meta.created_ms
        if event.kind == "EXPIRED":
            report["eR"] = _EXPIRY_REASONS.get(meta.time_in_force, "INSUFFICIENT_LIQUIDITY")
        return report

    def _account_position(self, event: OrderEvent) -> JsonObject:
        balances = self.fake.balances()
        rules = event.book.engine.rules
        rows = []
        for asset in (rules.base_asset, rules.quote_asset):
            balance = balances.get(asset)
            free, locked = (balance.free, balance.locked) if balance is not None else (ZERO, ZERO)
            rows.append({"a": asset, "f": fmt(free), "l": fmt(locked)})
        return {"e": "outboundAccountPosition", "E": event.now_ms, "u": event.now_ms, "B": rows}

    # -- requests -----------------------------------------------------------------------------------
    def _answer(self, client: UserDataClient, message: str | bytes) -> None:
        ident: Any = None
        try:
            try:
                request = json.loads(message)
            except (ValueError, UnicodeDecodeError):
                raise _Refused(INVALID_JSON) from None
            if not isinstance(request, dict):
                raise _Refused(INVALID_JSON)
            ident = request.get("id")
            method = request.get("method")
            if not isinstance(method, str) or not method:
                raise _Refused(wire.mandatory("method"))
            params = request.get("params") or {}
            if not isinstance(params, dict):
                raise _Refused(wire.mandatory("params"))
            result = self._call(client, method.removeprefix("v3/"), params)
        except _Refused as refused:
            answer: JsonObject = {
                "id": ident,
                "status": refused.refusal.status,
                "error": refused.refusal.body(),
            }
        else:
            answer = {"id": ident, "status": 200, "result": result}
        client.outbox.put_nowait((json.dumps(answer), False))

    def _call(self, client: UserDataClient, method: str, params: dict[str, Any]) -> Any:
        now = self.fake.server_time_ms()
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": now}
        if method == "userDataStream.subscribe.signature":
            self._authenticate(params, now)
            if client.subscriptions:
                raise _Refused(SUBSCRIPTION_ACTIVE)  # one subscription per account and connection
            number = client.next_subscription
            client.next_subscription += 1
            client.subscriptions.add(number)
            self.subscriptions_opened += 1
            self._changed.set()
            return {"subscriptionId": number}
        if method == "userDataStream.unsubscribe":
            raw = params.get("subscriptionId")
            if raw is None:
                closing = sorted(client.subscriptions)
            elif isinstance(raw, int) and not isinstance(raw, bool):
                closing = [raw] if raw in client.subscriptions else []
            else:
                raise _Refused(wire.illegal_chars("subscriptionId", "^[0-9]{1,5}$"))
            for number in closing:
                client.subscriptions.discard(number)
                event = {"e": "eventStreamTerminated", "E": now}
                client.outbox.put_nowait((json.dumps({"subscriptionId": number, "event": event}), False))
            self._changed.set()
            return {}
        if method == "session.status":
            return {
                "apiKey": None,
                "authorizedSince": None,
                "connectedSince": client.connected_ms,
                "returnRateLimits": False,
                "serverTime": now,
                "userDataStream": bool(client.subscriptions),
            }
        if method == "session.subscriptions":
            return [{"subscriptionId": number} for number in sorted(client.subscriptions)]
        raise _Refused(
            wire.illegal_chars(
                "method",
                "^(v3/)?(ping|time|session\\.status|session\\.subscriptions|"
                "userDataStream\\.subscribe\\.signature|userDataStream\\.unsubscribe)$",
            )
        )

    def _authenticate(self, params: dict[str, Any], now_ms: int) -> None:
        """SIGNED request security as the docs give it: mandatory parameters, the API key, the
        HMAC-SHA256 signature over the sorted params, then the timing rule."""
        for name in ("apiKey", "timestamp", "signature"):
            if params.get(name) in (None, ""):
                raise _Refused(wire.mandatory(name))
        key, signature, timestamp = params["apiKey"], params["signature"], params["timestamp"]
        if isinstance(timestamp, str) and timestamp.isdigit():
            timestamp = int(timestamp)
        if not isinstance(timestamp, int) or isinstance(timestamp, bool):
            raise _Refused(wire.illegal_chars("timestamp", "^[0-9]{1,20}$"))
        recv_window = DEFAULT_RECV_WINDOW
        if params.get("recvWindow") is not None:
            try:
                recv_window = Decimal(param_text(params["recvWindow"]))
            except InvalidOperation:
                raise _Refused(wire.illegal_chars("recvWindow", wire.DECIMAL_PATTERN)) from None
            if recv_window > MAX_RECV_WINDOW:
                raise _Refused(
                    Refusal(
                        400,
                        -1102,
                        f"'recvWindow' contains unexpected value. Cannot be greater than {MAX_RECV_WINDOW}.",
                    )
                )
        if not isinstance(key, str) or not hmac.compare_digest(key.encode(), self.fake.api_key.encode()):
            raise _Refused(wire.REJECTED_API_KEY)
        expected = sign(self.fake.api_secret, params)
        if not isinstance(signature, str) or not hmac.compare_digest(expected, signature.lower()):
            raise _Refused(wire.BAD_SIGNATURE)
        # Timestamps may come in microseconds (16 digits) as well as milliseconds.
        stamp_ms = Decimal(timestamp) / 1000 if timestamp >= 10**14 else Decimal(timestamp)
        if stamp_ms >= now_ms + 1000:
            raise _Refused(wire.TIMESTAMP_AHEAD)
        if now_ms - stamp_ms > recv_window:
            raise _Refused(wire.TIMESTAMP_OUTSIDE_WINDOW)

    # -- connections --------------------------------------------------------------------------------
    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refusing:
            return connection.respond(503, "Service Unavailable\n")
        if urlsplit(request.path).path != PATH:
            return connection.respond(404, "Not Found\n")
        return None

    async def _serve(self, socket: ServerConnection) -> None:
        client = UserDataClient(len(self.clients) + 1, socket, self.fake.server_time_ms())
        self.clients.append(client)
        self._changed.set()
        jobs = [asyncio.create_task(self._send(client)), asyncio.create_task(self._read(client))]
        if self.ping_interval_s is not None:
            jobs.append(asyncio.create_task(self._keepalive(client, self.ping_interval_s)))
        try:
            await socket.wait_closed()
        finally:
            client.done.set()
            self._changed.set()
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    async def _send(self, client: UserDataClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text, is_event = await client.outbox.get()
                if client.stalled:
                    continue
                await client.socket.send(text)
                client.sent += 1
                if is_event:
                    client.events_sent += 1

    async def _read(self, client: UserDataClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in client.socket:
                self._answer(client, message)

    async def _pong_timeout(self, client: UserDataClient) -> None:
        log.info("fake_binance.ws_api.pong_timeout", client=client.number)
        await super()._pong_timeout(client)


def param_text(value: object) -> str:
    """A JSON parameter value as it appears in the signature payload."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def signature_payload(params: dict[str, Any]) -> str:
    """Every parameter but `signature`, sorted by name, as `name=value` joined by `&`."""
    return "&".join(
        f"{name}={param_text(value)}" for name, value in sorted(params.items()) if name != "signature"
    )


def sign(secret: str, params: dict[str, Any]) -> str:
    """The HMAC-SHA256 hex signature of `params` (the docs' "SIGNED request example (HMAC)")."""
    return hmac.new(secret.encode(), signature_payload(params).encode(), hashlib.sha256).hexdigest()


@asynccontextmanager
async def running_user_data_server(fake: FakeBinance, **kwargs: Any) -> AsyncIterator[UserDataServer]:
    """A started `UserDataServer` for `fake` (keyword arguments go to its constructor)."""
    server = UserDataServer(fake, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
