"""What the stand-in's two WebSocket servers (the market streams and the WebSocket API) share: the
listening socket, the list of connections, and the test knobs on them (waiting for connections,
server-side drops, stalls, server pings and the keepalive that cuts a peer that does not pong)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Generic, Protocol, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from support.binance_server.app import FakeBinance


class Connection(Protocol):
    """One connection as a server sees it."""

    number: int
    socket: ServerConnection
    stalled: bool
    pongs: list[bytes]

    @property
    def open(self) -> bool: ...


C = TypeVar("C", bound=Connection)


class SocketServer(Generic[C]):
    """A `websockets` asyncio server on loopback with its connections (`clients`) and knobs."""

    def __init__(self, fake: FakeBinance, *, ping_interval_s: float | None, pong_timeout_s: float) -> None:
        self.fake = fake
        self.ping_interval_s = ping_interval_s
        self.pong_timeout_s = pong_timeout_s
        self.clients: list[C] = []
        self.refusing = False
        self._server: Server | None = None
        self._url: str | None = None
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------------------------
    async def _listen(self, host: str, port: int, path: str = "") -> str:
        self._server = await serve(
            self._serve, host, port, process_request=self._admit, compression=None, ping_interval=None
        )
        bound = next(iter(self._server.sockets)).getsockname()
        self._url = f"ws://{host}:{bound[1]}{path}"
        return self._url

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, socket: ServerConnection) -> None:
        raise NotImplementedError

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        raise NotImplementedError

    # -- knobs --------------------------------------------------------------------------------------
    def live(self) -> list[C]:
        return [client for client in self.clients if client.open]

    async def wait_for_clients(self, count: int, *, opened: int | None = None) -> list[C]:
        """Wait until `count` connections are open (and, with `opened`, until that many were
        ever opened); returns the open ones."""
        while len(self.live()) < count or (opened is not None and len(self.clients) < opened):
            await self._next_change()
        return self.live()

    async def _next_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def drop(self, clients: Iterable[C] | None = None, *, clean: bool = False) -> None:
        """Server-side disconnect: abort the TCP connection, or with `clean` a close frame (1001)."""
        for client in list(self.live() if clients is None else clients):
            if clean:
                self._spawn(client.socket.close(1001, "going away"))
            else:
                client.socket.transport.abort()

    def stall(self, clients: Iterable[C] | None = None) -> None:
        """From now on send nothing to these connections (all open ones by default), answers
        included; they stay open and still answer pings."""
        for client in list(self.live() if clients is None else clients):
            client.stalled = True

    async def ping(self, client: C, payload: bytes, *, within: float = 10.0) -> bool:
        """Ping with `payload`; True when a pong with the same payload came back in time."""
        try:
            waiter = await client.socket.ping(payload)
            await asyncio.wait_for(waiter, within)
        except (TimeoutError, ConnectionClosed):
            return False
        client.pongs.append(payload)
        self._changed.set()
        return True

    async def _keepalive(self, client: C, interval_s: float) -> None:
        """Binance's keepalive: a ping with a payload every interval; no pong in time, cut."""
        while True:
            await asyncio.sleep(interval_s)
            payload = str(self.fake.server_time_ms()).encode()
            if not await self.ping(client, payload, within=self.pong_timeout_s):
                await self._pong_timeout(client)
                return

    async def _pong_timeout(self, client: C) -> None:
        # A peer that does not pong would not answer a close frame either: cut it.
        client.socket.transport.abort()

    def _spawn(self, job: Any) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
