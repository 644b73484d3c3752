"""Alert delivery that never holds trading up: a bounded queue, drained by a background task.

- De-duplication: an alert whose key was sent less than `repeat_after_s` ago (clock time) is
  suppressed; the next one of that key that goes out says how many were.
- A global cap: at most `max_per_minute` alerts a minute; over it, alerts are suppressed (and
  counted) the same way, so a flapping connection cannot flood the chat.
- The queue holds at most `queue_size` alerts; when full, the oldest is dropped (one log line).
- Each channel is tried `attempts` times with exponential backoff on the clock port; a channel
  that still fails gets one warning line, and the other channels are not held up by it.
- `flush()` gives the queue a short, bounded time at shutdown, so the stop alert goes out.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from domain.errors import DeliveryFailed
from domain.ports import Alert, Clock, Notifier

log = structlog.get_logger(__name__)

MINUTE_S = 60.0


class AlertDispatcher:
    def __init__(
        self,
        channels: Sequence[Notifier],
        clock: Clock,
        *,
        repeat_after_s: float = 600.0,
        max_per_minute: int = 20,
        queue_size: int = 100,
        attempts: int = 4,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._channels = tuple(channels)
        self._clock = clock
        self._repeat_after_s = repeat_after_s
        self._max_per_minute = max_per_minute
        self._attempts = attempts
        self._backoff_max_s = backoff_max_s
        self._queue: deque[Alert] = deque()
        self._queue_size = queue_size
        self._last_sent: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._recent: deque[float] = deque()  # when the alerts of the last minute were accepted
        self._wake = asyncio.Event()
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.delivered = 0  # alerts every channel took (for logs and tests)

    # ------------------------------------------------------------------ accepting
    def submit(self, alert: Alert) -> bool:
        """Queue `alert` unless it repeats one sent lately or the minute's cap is reached. Never
        blocks and never raises. True when it was queued."""
        now = self._clock.monotonic()
        last = self._last_sent.get(alert.key)
        if last is not None and now - last < self._repeat_after_s:
            self._suppress(alert, "repeated")
            return False
        while self._recent and now - self._recent[0] >= MINUTE_S:
            self._recent.popleft()
        if len(self._recent) >= self._max_per_minute:
            self._suppress(alert, "over the cap per minute")
            return False
        self._recent.append(now)
        self._last_sent[alert.key] = now
        suppressed = self._suppressed.pop(alert.key, 0)
        if suppressed:
            note = (
                f"({suppressed} similar alert{'s' if suppressed > 1 else ''} suppressed since the last one)"
            )
            alert = replace(alert, text=f"{alert.text}\n{note}" if alert.text else note)
        if len(self._queue) >= self._queue_size:
            dropped = self._queue.popleft()
            log.warning(
                "alert queue full; the oldest alert is dropped", alert=dropped.key, title=dropped.title
            )
        self._queue.append(alert)
        self._idle.clear()
        self._wake.set()
        return True

    def _suppress(self, alert: Alert, why: str) -> None:
        self._suppressed[alert.key] = self._suppressed.get(alert.key, 0) + 1
        log.debug("alert suppressed", alert=alert.key, why=why)

    # ------------------------------------------------------------------ delivering
    async def run(self) -> None:
        """Deliver queued alerts until cancelled."""
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            alert = self._queue.popleft()
            self._busy = True
            try:
                results = await asyncio.gather(*(self._deliver(channel, alert) for channel in self._channels))
                if all(results):
                    self.delivered += 1
            finally:
                self._busy = False

    async def _deliver(self, channel: Notifier, alert: Alert) -> bool:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(DeliveryFailed),
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(initial=1, max=self._backoff_max_s),
            sleep=self._clock.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    await channel.send(alert)
        except DeliveryFailed as exc:
            log.warning(
                "alert not delivered",
                channel=channel.name,
                alert=alert.key,
                attempts=self._attempts,
                reason=str(exc),
            )
            return False
        except Exception as exc:  # a broken channel must not end the delivery of the others
            log.warning("alert not delivered", channel=channel.name, alert=alert.key, reason=repr(exc))
            return False
        return True

    async def flush(self, timeout_s: float) -> None:
        """Wait, at most `timeout_s` (event-loop time: a shutdown bound, not market time), for the
        queue to drain; then log what is left undelivered."""
        if not self._queue and not self._busy:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        left = len(self._queue) + (1 if self._busy else 0)
        if left:
            log.warning("alerts not delivered at shutdown", count=left, timeout_s=timeout_s)
