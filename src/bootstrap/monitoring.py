"""Wiring of the health and metrics endpoint and of the alerts, for `run`.

Nothing is built (and neither aiohttp nor prometheus_client imported) unless the settings ask for
an endpoint (`HEALTH__PORT`, `run --health-port`) or an alert channel (`ALERTS__...`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bootstrap.settings import Settings
from bootstrap.venues import Venue
from domain.ports import BotObserver, Clock, Notifier

if TYPE_CHECKING:
    import aiohttp

    from adapters.monitoring.telemetry import BotTelemetry

log = structlog.get_logger(__name__)

FLUSH_TIMEOUT_S = 5.0  # at shutdown, how long queued alerts (the stop alert) may take to go out


@dataclass
class Monitoring:
    telemetry: BotTelemetry | None = None

    @property
    def observer(self) -> BotObserver | None:
        return self.telemetry

    def attach_venue(self, venue: Venue) -> None:
        if self.telemetry is not None and venue.probe is not None:
            self.telemetry.attach_venue(venue.probe)

    def bot_failed(self, error: BaseException) -> None:
        if self.telemetry is not None:
            self.telemetry.bot_failed(error)


def alert_channels(settings: Settings, session: aiohttp.ClientSession) -> list[Notifier]:
    from adapters.monitoring.channels import DiscordNotifier, TelegramNotifier, WebhookNotifier

    alerts = settings.alerts
    channels: list[Notifier] = []
    if alerts.webhook_url is not None:
        channels.append(WebhookNotifier(session, alerts.webhook_url.get_secret_value()))
    if alerts.telegram_token is not None and alerts.telegram_chat_id is not None:
        channels.append(
            TelegramNotifier(
                session,
                alerts.telegram_token.get_secret_value(),
                alerts.telegram_chat_id,
                alerts.telegram_api_url,
            )
        )
    if alerts.discord_webhook_url is not None:
        channels.append(DiscordNotifier(session, alerts.discord_webhook_url.get_secret_value()))
    return channels


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def open_monitoring(settings: Settings, clock: Clock) -> AsyncIterator[Monitoring]:
    """The telemetry the grid reports to, its endpoint and its alert delivery; on exit the
    endpoint closes and queued alerts get a short, bounded flush."""
    health, alerts = settings.health, settings.alerts
    if health.port is None and not alerts.any_channel:
        yield Monitoring()
        return
    from adapters.monitoring.telemetry import BotTelemetry

    async with contextlib.AsyncExitStack() as stack:
        submit = None
        if alerts.any_channel:
            from adapters.monitoring.alerts import AlertDispatcher
            from adapters.monitoring.channels import http_session

            session = await stack.enter_async_context(http_session())
            channels = alert_channels(settings, session)
            dispatcher = AlertDispatcher(
                channels, clock, repeat_after_s=alerts.repeat_after_s, max_per_minute=alerts.max_per_minute
            )
            stack.push_async_callback(_cancel, asyncio.create_task(dispatcher.run(), name="alerts"))
            stack.push_async_callback(dispatcher.flush, FLUSH_TIMEOUT_S)
            submit = dispatcher.submit
            log.info("alerts on", channels=[channel.name for channel in channels])
        telemetry = BotTelemetry(clock, feed_down_after_s=health.feed_down_after_s, alert=submit)
        stack.push_async_callback(_cancel, asyncio.create_task(telemetry.watch(), name="telemetry"))
        if health.port is not None:
            from adapters.monitoring.http_server import serve_health

            host, port = await stack.enter_async_context(serve_health(telemetry, health.host, health.port))
            log.info("health endpoint listening", url=f"http://{host}:{port}/health", host=host, port=port)
        yield Monitoring(telemetry)
