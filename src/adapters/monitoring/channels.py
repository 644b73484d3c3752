"""Alert channels (`domain.ports.Notifier`) over HTTP with aiohttp: a generic JSON webhook, the
Telegram Bot API (sendMessage) and a Discord webhook.

A channel raises DeliveryFailed for a network failure, a timeout or a non-2xx answer; its message
never holds the channel's secret (the Telegram token is in the URL's path, a webhook URL is one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import aiohttp

from domain.errors import DeliveryFailed
from domain.ports import Alert

REQUEST_TIMEOUT_S = 10.0
DISCORD_MAX_CHARS = 2000
TELEGRAM_MAX_CHARS = 4096
_SEVERITY_MARK = {"info": "[info]", "warning": "[WARNING]", "critical": "[CRITICAL]"}


def render_text(alert: Alert) -> str:
    """An alert as one chat message: its severity and title, then its text."""
    head = f"{_SEVERITY_MARK.get(alert.severity, '[' + alert.severity + ']')} gridbot: {alert.title}"
    return f"{head}\n{alert.text}" if alert.text else head


@asynccontextmanager
async def http_session(timeout_s: float = REQUEST_TIMEOUT_S) -> AsyncIterator[aiohttp.ClientSession]:
    """One client session for every channel, closed on exit."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        yield session


class _HttpChannel:
    name = "http"

    def __init__(self, session: aiohttp.ClientSession, secrets: Sequence[str]) -> None:
        self._session = session
        self._secrets = sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    async def _post(self, url: str, payload: Mapping[str, object]) -> None:
        try:
            async with self._session.post(url, json=payload) as response:
                if 200 <= response.status < 300:
                    return
                body = (await response.text(errors="replace"))[:200]
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryFailed(self._scrub(f"{self.name}: {type(exc).__name__}: {exc}")) from None
        raise DeliveryFailed(self._scrub(f"{self.name}: HTTP {status}: {body}"))

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class WebhookNotifier(_HttpChannel):
    """A JSON POST of the alert's fields to any URL."""

    name = "webhook"

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        super().__init__(session, [url])
        self._url = url

    async def send(self, alert: Alert) -> None:
        await self._post(
            self._url,
            {
                "source": "gridbot",
                "key": alert.key,
                "severity": alert.severity,
                "title": alert.title,
                "text": alert.text,
                "at": None if alert.at is None else alert.at.isoformat(),
            },
        )


class TelegramNotifier(_HttpChannel):
    """The Bot API's sendMessage, plain text: POST {api_url}/bot{token}/sendMessage."""

    name = "telegram"

    def __init__(self, session: aiohttp.ClientSession, token: str, chat_id: str, api_url: str) -> None:
        super().__init__(session, [token])
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id

    async def send(self, alert: Alert) -> None:
        await self._post(
            self._url,
            {
                "chat_id": self._chat_id,
                "text": render_text(alert)[:TELEGRAM_MAX_CHARS],
                "disable_web_page_preview": True,
            },
        )


class DiscordNotifier(_HttpChannel):
    """A Discord webhook: POST {"content": ...}; mentions in the text never ping anyone."""

    name = "discord"

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        super().__init__(session, [url, url.rstrip("/").rsplit("/", 1)[-1]])
        self._url = url

    async def send(self, alert: Alert) -> None:
        await self._post(
            self._url,
            {"content": render_text(alert)[:DISCORD_MAX_CHARS], "allowed_mentions": {"parse": []}},
        )
