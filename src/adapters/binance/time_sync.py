"""Keeping signed requests' timestamps on the venue's clock.

Binance rejects a signed request whose `timestamp` is 1 s ahead of its clock or older than
recvWindow (-1021). The offset is measured at start and every `resync_s`, and after any -1021.
ccxt signs with `milliseconds() - options['timeDifference']`, so the measured difference is
handed to ccxt there. The difference is taken against the local time *after* the answer
(`after - serverTime`, as ccxt's own loadTimeDifference does): the timestamp then lags the venue
by up to half a round trip and is never ahead of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog

from domain.ports import Clock

log = structlog.get_logger(__name__)


def time_difference_ms(local_after_ms: int, server_ms: int) -> int:
    """What ccxt subtracts from its local clock to get the venue's."""
    return local_after_ms - server_ms


class TimeSync:
    """Decides when to resync (by the Clock port's monotonic time) and records the offset."""

    def __init__(self, clock: Clock, *, resync_s: float) -> None:
        self._clock = clock
        self._resync_s = resync_s
        self._synced_at: float | None = None
        self.difference_ms = 0

    @property
    def due(self) -> bool:
        return self._synced_at is None or self._clock.monotonic() - self._synced_at >= self._resync_s

    async def sync(
        self,
        fetch_server_ms: Callable[[], Awaitable[int]],
        local_ms: Callable[[], int],
        apply: Callable[[int], None],
        *,
        reason: str,
    ) -> int:
        """Measure the offset with one server-time request, hand it to `apply`, and return it."""
        server_ms = await fetch_server_ms()
        difference = time_difference_ms(local_ms(), server_ms)
        apply(difference)
        previous, self.difference_ms = self.difference_ms, difference
        self._synced_at = self._clock.monotonic()
        log.info(
            "binance.time.synced",
            reason=reason,
            local_minus_server_ms=difference,
            change_ms=difference - previous,
        )
        return difference
