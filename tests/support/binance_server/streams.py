"""Binance market streams on loopback (the `websockets` library's asyncio server), beside the REST
stand-in and driven by the same matching engines: every market move of `FakeBinance.set_price`
is one public trade on `<sym>@trade` (at the new price, so the stream and the REST side's fills
agree: a resting order fills when a trade crosses it), plus a `<sym>@bookTicker` and a
`<sym>@kline_1m` update (from the engine's ticker and the REST side's price tape).

Paths as Binance serves them: combined `/stream?streams=a/b/c` (each payload wrapped as
{"stream": ..., "data": ...}) and raw `/ws/<stream>` (bare payloads). SUBSCRIBE, UNSUBSCRIBE and
LIST_SUBSCRIPTIONS are answered. Knobs for tests: server pings with a payload (`ping`, or every
`ping_interval_s`, closing a connection that does not pong within `pong_timeout_s`, as Binance
does), server-side drops (`drop`), a stall (`stall`: open, answering pings, sending nothing),
raw text (`send_raw`), the `serverShutdown` notice, and refusing new connections (`refusing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from support.binance_server.app import FakeBinance
from support.binance_server.book import SymbolBook, to_datetime
from support.binance_server.sockets import SocketServer
from support.binance_server.wire import JsonObject, fmt

log = structlog.get_logger(__name__)

KLINE_MS = 60_000


@dataclass(eq=False)
class StreamClient:
    """One connection as the server sees it."""

    number: int
    path: str
    streams: set[str]
    combined: bool
    socket: ServerConnection
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    stalled: bool = False
    pongs: list[bytes] = field(default_factory=list)
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open(self) -> bool:
        return not self.done.is_set()


class MarketStreamServer(SocketServer[StreamClient]):
    def __init__(
        self,
        fake: FakeBinance,
        *,
        ping_interval_s: float | None = None,
        pong_timeout_s: float = 60.0,
        trade_qty: Decimal = Decimal("0.01"),
    ) -> None:
        super().__init__(fake, ping_interval_s=ping_interval_s, pong_timeout_s=pong_timeout_s)
        self.trade_qty = trade_qty
        self.trade_ids: dict[str, int] = {}  # the public tape's last trade id, per wire symbol
        self._last_price: dict[str, Decimal] = {}

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await self._listen(host, port)
        self.fake.price_listeners.append(self._on_move)
        log.info("fake_binance.streams.started", url=url)
        return url

    async def stop(self) -> None:
        if self._on_move in self.fake.price_listeners:
            self.fake.price_listeners.remove(self._on_move)
        await self._close()

    @property
    def url(self) -> str:
        """The streams root, as EXCHANGE__WS_URL takes it."""
        if self._url is None:
            raise RuntimeError("the stream server is not started")
        return self._url

    # -- knobs --------------------------------------------------------------------------------------
    def send_raw(self, text: str, clients: Iterable[StreamClient] | None = None) -> None:
        for client in list(self.live() if clients is None else clients):
            client.outbox.put_nowait(text)

    def shutdown_notice(self, event_time_ms: int = 0) -> None:
        data = {"e": "serverShutdown", "E": event_time_ms or self.fake.server_time_ms()}
        for client in self.live():
            text = (
                json.dumps({"stream": "!serverShutdown", "data": data})
                if client.combined
                else json.dumps(data)
            )
            client.outbox.put_nowait(text)

    # -- publishing ---------------------------------------------------------------------------------
    def _on_move(self, book: SymbolBook, now_ms: int) -> None:
        wire = book.spec.wire_symbol
        price = book.engine.last_price
        if price is None:
            return
        lower = wire.lower()
        trade_id = self.trade_ids.get(wire, 0) + 1
        self.trade_ids[wire] = trade_id
        previous = self._last_price.get(wire, price)
        self._last_price[wire] = price
        payloads: dict[str, JsonObject] = {
            f"{lower}@trade": {
                "e": "trade",
                "E": now_ms,
                "s": wire,
                "t": trade_id,
                "p": fmt(price),
                "q": fmt(self.trade_qty),
                "T": now_ms,
                "m": price < previous,  # a fall: the seller took the bid
                "M": True,
            },
            f"{lower}@bookTicker": self._book_ticker(book, now_ms),
            f"{lower}@kline_1m": self._kline(book, now_ms, trade_id),
        }
        for client in self.clients:
            if not client.open or client.stalled:
                continue
            for stream, data in payloads.items():
                if stream in client.streams:
                    client.outbox.put_nowait(
                        json.dumps({"stream": stream, "data": data} if client.combined else data)
                    )

    @staticmethod
    def _book_ticker(book: SymbolBook, now_ms: int) -> JsonObject:
        ticker = book.engine.ticker(to_datetime(now_ms))
        return {
            "u": book.update_id,
            "s": book.spec.wire_symbol,
            "b": fmt(ticker.bid),
            "B": "1.00000000",
            "a": fmt(ticker.ask),
            "A": "1.00000000",
        }

    @staticmethod
    def _kline(book: SymbolBook, now_ms: int, last_trade_id: int) -> JsonObject:
        row = book.tape.klines(KLINE_MS, now_ms, start_ms=None, end_ms=None, limit=1)[0]
        wire = book.spec.wire_symbol
        return {
            "e": "kline",
            "E": now_ms,
            "s": wire,
            "k": {
                "t": row[0],
                "T": row[6],
                "s": wire,
                "i": "1m",
                "f": 0,
                "L": last_trade_id,
                "o": row[1],
                "c": row[4],
                "h": row[2],
                "l": row[3],
                "v": row[5],
                "n": row[8],
                "x": False,
                "q": row[7],
                "V": "0",
                "Q": "0",
                "B": "0",
            },
        }

    # -- connections --------------------------------------------------------------------------------
    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refusing:
            return connection.respond(503, "Service Unavailable\n")
        parts = urlsplit(request.path)
        if parts.path == "/stream":
            names = parse_qs(parts.query).get("streams", [""])[0]
            if not names:
                return connection.respond(400, "streams is required\n")
        elif not parts.path.startswith("/ws/") and parts.path != "/ws":
            return connection.respond(404, "Not Found\n")
        return None

    async def _serve(self, socket: ServerConnection) -> None:
        parts = urlsplit(socket.request.path if socket.request is not None else "/ws")
        if parts.path == "/stream":
            streams = set(parse_qs(parts.query).get("streams", [""])[0].split("/"))
            combined = True
        else:
            streams = {name for name in parts.path.removeprefix("/ws").strip("/").split("/") if name}
            combined = False
        client = StreamClient(len(self.clients) + 1, parts.path, streams, combined, socket)
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

    async def _send(self, client: StreamClient) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await client.outbox.get()
                if client.stalled:
                    continue
                await client.socket.send(text)
                client.sent += 1

    async def _read(self, client: StreamClient) -> None:
        """Control requests: SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS."""
        with contextlib.suppress(ConnectionClosed):
            async for message in client.socket:
                try:
                    request = json.loads(message)
                    method, ident = request["method"], request.get("id")
                except (ValueError, KeyError, TypeError):
                    client.outbox.put_nowait(json.dumps({"code": 3, "msg": "Invalid JSON"}))
                    continue
                params = request.get("params") or []
                if method == "SUBSCRIBE":
                    client.streams.update(params)
                    answer: object = None
                elif method == "UNSUBSCRIBE":
                    client.streams.difference_update(params)
                    answer = None
                elif method == "LIST_SUBSCRIPTIONS":
                    answer = sorted(client.streams)
                else:
                    client.outbox.put_nowait(
                        json.dumps({"code": 2, "msg": f"unknown method {method}", "id": ident})
                    )
                    continue
                client.outbox.put_nowait(json.dumps({"result": answer, "id": ident}))

    async def _pong_timeout(self, client: StreamClient) -> None:
        await client.socket.close(1008, "pong timeout")


@asynccontextmanager
async def running_market_streams(fake: FakeBinance, **kwargs: Any) -> AsyncIterator[MarketStreamServer]:
    """A started `MarketStreamServer` for `fake` (keyword arguments go to its constructor)."""
    server = MarketStreamServer(fake, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
