"""Each alert channel against a local HTTP server that records what it received (real sockets):
what arrives, and what happens when the server fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from structlog.testing import capture_logs

from adapters.clock import SimulatedClock
from adapters.monitoring.alerts import AlertDispatcher
from adapters.monitoring.channels import DiscordNotifier, TelegramNotifier, WebhookNotifier, http_session
from domain.ports import Alert, Notifier
from support.recording_server import RecordingServer, recording_server

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HALT = Alert(
    "halt", "risk halt: stop-loss: price 27000 at or under 27000", "orders cancelled", "critical", AT
)
TOKEN = "123456:secret-bot-token"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session() as opened:
        yield opened


@pytest.fixture
async def server() -> AsyncIterator[RecordingServer]:
    async with recording_server() as running:
        yield running


async def deliver(channels: list[Notifier], alert: Alert) -> AlertDispatcher:
    """Submit one alert and let the dispatcher deliver it (retries sleep on a simulated clock)."""
    dispatcher = AlertDispatcher(channels, SimulatedClock(AT))
    worker = asyncio.create_task(dispatcher.run())
    try:
        assert dispatcher.submit(alert)
        await dispatcher.flush(timeout_s=30)
    finally:
        worker.cancel()
    return dispatcher


async def test_webhook_posts_the_alert_as_json(
    session: aiohttp.ClientSession, server: RecordingServer
) -> None:
    await deliver([WebhookNotifier(session, f"{server.base_url}/hooks/gridbot")], HALT)
    [got] = server.received
    assert got.path == "/hooks/gridbot"
    assert got.body == {
        "source": "gridbot",
        "key": "halt",
        "severity": "critical",
        "title": HALT.title,
        "text": "orders cancelled",
        "at": "2026-03-01T12:00:00+00:00",
    }


async def test_telegram_sends_a_message_to_the_chat(
    session: aiohttp.ClientSession, server: RecordingServer
) -> None:
    await deliver([TelegramNotifier(session, TOKEN, "-100200300", server.base_url)], HALT)
    [got] = server.received
    assert got.path == f"/bot{TOKEN}/sendMessage"
    assert got.body["chat_id"] == "-100200300"
    assert got.body["text"] == f"[CRITICAL] gridbot: {HALT.title}\norders cancelled"


async def test_discord_posts_content_that_pings_nobody(session: aiohttp.ClientSession) -> None:
    async with recording_server(status=204) as server:  # Discord answers 204 No Content
        dispatcher = await deliver(
            [DiscordNotifier(session, f"{server.base_url}/api/webhooks/1/abcdef")], HALT
        )
    [got] = server.received
    assert got.path == "/api/webhooks/1/abcdef"
    assert got.body["content"].startswith("[CRITICAL] gridbot: risk halt")
    assert got.body["allowed_mentions"] == {"parse": []}
    assert dispatcher.delivered == 1


async def test_a_failed_delivery_is_retried(session: aiohttp.ClientSession) -> None:
    async with recording_server(failures=1) as server:
        with capture_logs() as logs:
            dispatcher = await deliver([WebhookNotifier(session, server.base_url)], HALT)
    assert server.attempts == 2
    assert [r.body["key"] for r in server.received] == ["halt"]
    assert dispatcher.delivered == 1
    assert not [e for e in logs if e["log_level"] == "warning"]


async def test_a_channel_that_always_fails_is_logged_once_and_holds_up_no_other(
    session: aiohttp.ClientSession, server: RecordingServer
) -> None:
    async with recording_server(always_fail=True) as broken:
        channels: list[Notifier] = [
            TelegramNotifier(session, TOKEN, "42", broken.base_url),
            WebhookNotifier(session, server.base_url),
        ]
        with capture_logs() as logs:
            await deliver(channels, HALT)
    assert broken.attempts == 4  # the first try and three retries
    assert [r.body["key"] for r in server.received] == ["halt"]
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(w["event"], w["channel"]) for w in warnings] == [("alert not delivered", "telegram")]
    assert "HTTP 500" in warnings[0]["reason"]
    assert TOKEN not in str(warnings)


async def test_an_unreachable_channel_is_a_logged_failure(session: aiohttp.ClientSession) -> None:
    async with recording_server() as gone:
        url = gone.base_url
    with capture_logs() as logs:
        dispatcher = await deliver([WebhookNotifier(session, url)], HALT)
    assert dispatcher.delivered == 0
    [warning] = [e for e in logs if e["log_level"] == "warning"]
    assert warning["event"] == "alert not delivered"
    assert "ClientConnectorError" in warning["reason"]
