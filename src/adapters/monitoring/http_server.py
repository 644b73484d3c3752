"""The health and metrics endpoint, served with aiohttp's server.

- `GET /health`: 200 and a small JSON while the bot trades; 503 and the same JSON with a `reason`
  when it does not (starting, halted, stopped, banned, rate-limited, circuit open, maintenance,
  feed down).
- `GET /metrics`: the bot's own Prometheus registry, in the text exposition format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.monitoring.telemetry import BotTelemetry
from domain.errors import ConfigurationError


def health_app(telemetry: BotTelemetry) -> web.Application:
    async def health(_request: web.Request) -> web.Response:
        result = telemetry.health()
        return web.Response(
            status=200 if result.ok else 503,
            text=json.dumps(result.body, indent=2) + "\n",
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(_request: web.Request) -> web.Response:
        telemetry.health()  # keeps gridbot_trading current
        return web.Response(
            body=generate_latest(telemetry.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


@asynccontextmanager
async def serve_health(telemetry: BotTelemetry, host: str, port: int) -> AsyncIterator[tuple[str, int]]:
    """Serve /health and /metrics on host:port (port 0: one the system picks) until exit; yields
    the address actually bound. A port that cannot be bound is a configuration error."""
    runner = web.AppRunner(health_app(telemetry), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigurationError(
                "HEALTH__PORT", f"cannot serve the health endpoint on {host}:{port}: {exc.strerror or exc}"
            ) from None
        bound_host, bound_port = runner.addresses[0][:2]
        yield str(bound_host), int(bound_port)
    finally:
        await runner.cleanup()
