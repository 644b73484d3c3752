"""What a venue adapter can tell about its own health, for /health and /metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass


def _zero() -> float:
    return 0.0


def _none() -> int:
    return 0


def _empty() -> Mapping[str, int]:
    return {}


def _no_throttling() -> Mapping[int, int]:
    return {429: 0, 418: 0}


@dataclass(frozen=True, slots=True)
class VenueProbe:
    """Read at each health check and scrape; the defaults suit a venue with no such machinery
    (the simulated exchange: no circuit breaker, no request weight)."""

    state: Callable[[], str] = lambda: "normal"  # normal, rate_limited, circuit_open or maintenance
    breaker_state: Callable[[], str] = lambda: "closed"  # closed, open or half_open
    banned_for: Callable[[], float] = _zero  # seconds left of a 418 ban
    weight_used: Callable[[], int] = _none  # request weight used in the current window
    throttled: Callable[[], Mapping[int, int]] = _no_throttling  # 429 and 418 answers so far
    reconnects: Callable[[], int] = _none  # feeds back after a failure
    errors: Callable[[], Mapping[str, int]] = _empty  # failed venue calls by error type
    # which market-data feed is live (streams or REST polling), when it last spoke, when it fell back
    market_data: Callable[[], Mapping[str, object] | None] = lambda: None
    order_updates: Callable[[], Mapping[str, object] | None] = lambda: None
