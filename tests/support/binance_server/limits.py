"""Binance's rate limiters as the docs describe them (rest-api.md, LIMITS).

Fixed windows aligned on the server clock (a 1-minute window resets at each whole minute), per
IP for REQUEST_WEIGHT and RAW_REQUESTS, per account for ORDERS. Breaking the weight limit gives
429 with `Retry-After` (seconds until the window resets); sending again before that moment gets
the IP banned, 418 with `Retry-After` until the ban ends. Bans double for repeat offenders, from
2 minutes up to 3 days, as the docs say they scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from support.binance_server.wire import Refusal

RateLimitType = Literal["REQUEST_WEIGHT", "ORDERS", "RAW_REQUESTS"]
Interval = Literal["SECOND", "MINUTE", "HOUR", "DAY"]

_INTERVAL_MS: dict[str, int] = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000, "DAY": 86_400_000}
FIRST_BAN_MS = 120_000
LONGEST_BAN_MS = 3 * 86_400_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One entry of exchangeInfo's `rateLimits`."""

    rate_limit_type: RateLimitType
    interval: Interval
    interval_num: int
    limit: int

    @property
    def window_ms(self) -> int:
        return _INTERVAL_MS[self.interval] * self.interval_num

    @property
    def header_suffix(self) -> str:
        """The `(intervalNum)(intervalLetter)` part of the headers, e.g. "1M" or "10S"."""
        return f"{self.interval_num}{self.interval[0]}"

    def describe(self) -> str:
        return f"{self.interval_num} {self.interval}"

    def as_json(self) -> dict[str, object]:
        return {
            "rateLimitType": self.rate_limit_type,
            "interval": self.interval,
            "intervalNum": self.interval_num,
            "limit": self.limit,
        }


def default_rate_limits(weight_limit: int = 6000) -> tuple[RateLimit, ...]:
    """The limits the docs show (and the spot testnet returned in 2026)."""
    return (
        RateLimit("REQUEST_WEIGHT", "MINUTE", 1, weight_limit),
        RateLimit("ORDERS", "SECOND", 10, 50),
        RateLimit("ORDERS", "DAY", 1, 160_000),
        RateLimit("RAW_REQUESTS", "MINUTE", 5, 61_000),
    )


@dataclass(slots=True)
class WindowCounter:
    """A count that resets at each window boundary of the server clock."""

    window_ms: int
    _window: int = -1
    _count: int = 0

    def value(self, now_ms: int) -> int:
        return self._count if now_ms // self.window_ms == self._window else 0

    def add(self, now_ms: int, amount: int) -> int:
        window = now_ms // self.window_ms
        if window != self._window:
            self._window, self._count = window, 0
        self._count += amount
        return self._count

    def resets_at(self, now_ms: int) -> int:
        return (now_ms // self.window_ms + 1) * self.window_ms


@dataclass(slots=True)
class _IpState:
    weight: dict[RateLimit, WindowCounter]
    raw: dict[RateLimit, WindowCounter]
    backoff_until_ms: int = 0
    banned_until_ms: int = 0
    bans: int = 0


def _retry_after_s(now_ms: int, until_ms: int) -> int:
    return max(1, -(-(until_ms - now_ms) // 1000))


@dataclass(frozen=True, slots=True)
class Throttled:
    """A 429/418 answer: the refusal plus the `Retry-After` seconds."""

    refusal: Refusal
    retry_after: int


@dataclass(slots=True)
class _Forced:
    status: int
    until_ms: int


@dataclass(slots=True)
class RateLimiter:
    limits: tuple[RateLimit, ...]
    _ips: dict[str, _IpState] = field(default_factory=dict)
    _orders: dict[RateLimit, WindowCounter] = field(default_factory=dict)
    _forced: _Forced | None = None

    def __post_init__(self) -> None:
        self._orders = {lim: WindowCounter(lim.window_ms) for lim in self._of_type("ORDERS")}

    def _of_type(self, kind: RateLimitType) -> list[RateLimit]:
        return [lim for lim in self.limits if lim.rate_limit_type == kind]

    def _ip(self, ip: str) -> _IpState:
        state = self._ips.get(ip)
        if state is None:
            state = _IpState(
                weight={lim: WindowCounter(lim.window_ms) for lim in self._of_type("REQUEST_WEIGHT")},
                raw={lim: WindowCounter(lim.window_ms) for lim in self._of_type("RAW_REQUESTS")},
            )
            self._ips[ip] = state
        return state

    # -- weight ---------------------------------------------------------------------------------
    def force(self, status: int, retry_after_s: int, now_ms: int) -> None:
        self._forced = _Forced(status, now_ms + retry_after_s * 1000)

    def admit(self, ip: str, weight: int, now_ms: int) -> Throttled | None:
        """Count one request of `weight`; None when it may proceed."""
        forced = self._forced
        if forced is not None:
            if now_ms < forced.until_ms:
                return Throttled(
                    self._throttle_refusal(forced.status, forced.until_ms),
                    _retry_after_s(now_ms, forced.until_ms),
                )
            self._forced = None
        state = self._ip(ip)
        if now_ms < state.banned_until_ms:
            return Throttled(
                self._ban_refusal(state.banned_until_ms), _retry_after_s(now_ms, state.banned_until_ms)
            )
        if now_ms < state.backoff_until_ms:
            ban_ms = min(FIRST_BAN_MS * 2**state.bans, LONGEST_BAN_MS)
            state.bans += 1
            state.banned_until_ms = now_ms + ban_ms
            state.backoff_until_ms = 0
            return Throttled(
                self._ban_refusal(state.banned_until_ms), _retry_after_s(now_ms, state.banned_until_ms)
            )
        for limit, counter in state.raw.items():
            if counter.add(now_ms, 1) > limit.limit:
                state.backoff_until_ms = counter.resets_at(now_ms)
                return Throttled(
                    Refusal(429, -1003, "Too many requests queued."),
                    _retry_after_s(now_ms, state.backoff_until_ms),
                )
        for limit, counter in state.weight.items():
            if counter.add(now_ms, weight) > limit.limit:
                state.backoff_until_ms = counter.resets_at(now_ms)
                refusal = Refusal(
                    429,
                    -1003,
                    f"Too much request weight used; current limit is {limit.limit} request weight per "
                    f"{limit.describe()}. Please use WebSocket Streams for live updates to avoid polling the API.",
                )
                return Throttled(refusal, _retry_after_s(now_ms, state.backoff_until_ms))
        return None

    def count_without_admitting(self, ip: str, weight: int, now_ms: int) -> None:
        """Requests the server answers without processing (injected faults) still use weight."""
        state = self._ip(ip)
        for counter in state.weight.values():
            counter.add(now_ms, weight)
        for counter in state.raw.values():
            counter.add(now_ms, 1)

    def _throttle_refusal(self, status: int, until_ms: int) -> Refusal:
        if status == 418:
            return self._ban_refusal(until_ms)
        weight = self._of_type("REQUEST_WEIGHT")
        limit = weight[0] if weight else RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 6000)
        return Refusal(
            status,
            -1003,
            f"Too much request weight used; current limit is {limit.limit} request weight per "
            f"{limit.describe()}. Please use WebSocket Streams for live updates to avoid polling the API.",
        )

    @staticmethod
    def _ban_refusal(until_ms: int) -> Refusal:
        return Refusal(
            418,
            -1003,
            f"Way too much request weight used; IP banned until {until_ms}. "
            "Please use WebSocket Streams for live updates to avoid bans.",
        )

    def weight_headers(self, ip: str, now_ms: int) -> dict[str, str]:
        state = self._ip(ip)
        headers = {
            f"X-MBX-USED-WEIGHT-{limit.header_suffix}": str(counter.value(now_ms))
            for limit, counter in state.weight.items()
        }
        minute = next((c for lim, c in state.weight.items() if lim.window_ms == 60_000), None)
        if minute is not None:
            headers["X-MBX-USED-WEIGHT"] = str(minute.value(now_ms))
        return headers

    def used_weight(self, now_ms: int, ip: str | None = None) -> int:
        """Weight used in the current 1-minute window, by `ip` or by every IP together."""
        states = [self._ip(ip)] if ip is not None else list(self._ips.values())
        return sum(
            counter.value(now_ms)
            for state in states
            for limit, counter in state.weight.items()
            if limit.window_ms == 60_000
        )

    # -- orders ---------------------------------------------------------------------------------
    def admit_order(self, now_ms: int) -> Throttled | None:
        """Refuse a new order when one more would break an ORDERS limit (429, -1015)."""
        for limit, counter in self._orders.items():
            if counter.value(now_ms) + 1 > limit.limit:
                refusal = Refusal(
                    429,
                    -1015,
                    f"Too many new orders; current limit is {limit.limit} orders per {limit.describe()}.",
                )
                return Throttled(refusal, _retry_after_s(now_ms, counter.resets_at(now_ms)))
        return None

    def count_order(self, now_ms: int) -> dict[str, str]:
        """Count an accepted order; the X-MBX-ORDER-COUNT-* headers to send with it."""
        return {
            f"X-MBX-ORDER-COUNT-{limit.header_suffix}": str(counter.add(now_ms, 1))
            for limit, counter in self._orders.items()
        }

    def order_counts(self, now_ms: int) -> list[tuple[RateLimit, int]]:
        return [(limit, counter.value(now_ms)) for limit, counter in self._orders.items()]
