"""An HTTP server on 127.0.0.1 that records every POST it receives, for the alert channels' tests.

`failures` answers that many requests with a 500 first; `always_fail` answers every one with 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    path: str
    body: Any


@dataclass
class RecordingServer:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)  # the requests it answered with 2xx
    attempts: int = 0  # every request, failed or not
    failures: int = 0
    always_fail: bool = False
    status: int = 200  # the success status (Discord answers 204)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        raw = await request.text()
        self._changed.set()
        if self.always_fail or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            return web.Response(status=500, text="internal error")
        self.received.append(Received(request.path, json.loads(raw) if raw else None))
        if self.status == 204:
            return web.Response(status=204)
        return web.json_response({"ok": True}, status=self.status)

    async def wait_for(self, count: int, guard_s: float = 30.0) -> list[Received]:
        """The first `count` requests received (a hang guard, not a timing assertion)."""

        async def until() -> None:
            while len(self.received) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), guard_s)
        return self.received[:count]

    async def wait_for_attempts(self, count: int, guard_s: float = 30.0) -> None:
        async def until() -> None:
            while self.attempts < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(until(), guard_s)


@contextlib.asynccontextmanager
async def recording_server(**options: Any) -> AsyncIterator[RecordingServer]:
    server = RecordingServer(**options)
    app = web.Application()
    app.router.add_post("/{tail:.*}", server._handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.base_url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
