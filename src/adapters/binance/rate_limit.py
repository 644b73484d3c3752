"""Client-side accounting of Binance's request-weight and order-count limits.

Binance counts in fixed windows aligned to the clock (the minute, the 10 seconds, the UTC day) and
bans an IP that keeps going after a 429. So every request's weight is booked *before* it is sent,
and a request that would take a window past the budget (80% by default) waits for the next window
instead. The venue's own count, returned in `X-MBX-USED-WEIGHT-1M` and `X-MBX-ORDER-COUNT-10S/-1D`,
corrects ours (it also sees other processes on the same IP). A 429/418 stops every request until
its `Retry-After` has passed.

`RateLimiter` keeps a pure core (`reserve`, `observe_headers`, `block_until`: plain numbers in,
plain numbers out) and one thin async method (`acquire`) that sleeps through the Clock port.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import structlog

from adapters.binance.errors import HttpReply
from domain.errors import InvalidResponse
from domain.ports import Clock

log = structlog.get_logger(__name__)


class LimitKind(StrEnum):
    REQUEST_WEIGHT = "REQUEST_WEIGHT"
    ORDERS = "ORDERS"
    RAW_REQUESTS = "RAW_REQUESTS"


_MIN_WAIT_S = 0.001
_INTERVAL_SECONDS = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_INTERVAL_LETTER = {"SECOND": "s", "MINUTE": "m", "HOUR": "h", "DAY": "d"}


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """One entry of exchangeInfo `rateLimits`."""

    kind: LimitKind
    interval: str  # SECOND / MINUTE / HOUR / DAY
    interval_num: int
    limit: int

    @property
    def window_s(self) -> int:
        return _INTERVAL_SECONDS[self.interval] * self.interval_num

    @property
    def header(self) -> str | None:
        """The response header carrying the venue's count for this window (lower case)."""
        suffix = f"{self.interval_num}{_INTERVAL_LETTER[self.interval]}"
        if self.kind is LimitKind.REQUEST_WEIGHT:
            return f"x-mbx-used-weight-{suffix}"
        if self.kind is LimitKind.ORDERS:
            return f"x-mbx-order-count-{suffix}"
        return None

    def __str__(self) -> str:
        return f"{self.kind} {self.limit}/{self.interval_num} {self.interval}"


# Used until exchangeInfo has been read (current documented values, BINANCE_FACTS section 2).
DEFAULT_RULES: tuple[RateLimitRule, ...] = (
    RateLimitRule(LimitKind.REQUEST_WEIGHT, "MINUTE", 1, 6000),
    RateLimitRule(LimitKind.ORDERS, "SECOND", 10, 50),
    RateLimitRule(LimitKind.ORDERS, "DAY", 1, 160000),
    RateLimitRule(LimitKind.RAW_REQUESTS, "MINUTE", 5, 61000),
)


def parse_rate_limits(exchange_info: Mapping[str, object]) -> tuple[RateLimitRule, ...]:
    """`rateLimits` of an exchangeInfo answer. A malformed entry raises InvalidResponse: guessing a
    limit risks an IP ban."""
    raw = exchange_info.get("rateLimits")
    if not isinstance(raw, list):
        raise InvalidResponse("exchangeInfo: field 'rateLimits' is missing or not a list")
    rules: list[RateLimitRule] = []
    for index, entry in enumerate(raw):
        where = f"exchangeInfo.rateLimits[{index}]"
        if not isinstance(entry, Mapping):
            raise InvalidResponse(f"{where} is not an object")
        kind_raw, interval = entry.get("rateLimitType"), entry.get("interval")
        number, limit = entry.get("intervalNum"), entry.get("limit")
        if kind_raw not in LimitKind.__members__:
            log.warning("binance.rate_limit.unknown_type", entry=entry)
            continue
        if interval not in _INTERVAL_SECONDS:
            raise InvalidResponse(f"{where}: field 'interval' is {interval!r}")
        if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
            raise InvalidResponse(f"{where}: field 'intervalNum' is {number!r}")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise InvalidResponse(f"{where}: field 'limit' is {limit!r}")
        rules.append(RateLimitRule(LimitKind(str(kind_raw)), str(interval), number, limit))
    if not any(rule.kind is LimitKind.REQUEST_WEIGHT for rule in rules):
        raise InvalidResponse("exchangeInfo.rateLimits has no REQUEST_WEIGHT limit")
    return tuple(rules)


@dataclass(frozen=True, slots=True)
class RequestCost:
    weight: int
    orders: int = 0


def _symbols_count(params: Mapping[str, object]) -> int | None:
    symbols = params.get("symbols")
    if symbols is None:
        return None
    if isinstance(symbols, list | tuple):
        return len(symbols)
    try:
        decoded = json.loads(str(symbols))
    except ValueError:
        return None
    return len(decoded) if isinstance(decoded, list) else None


# Shared instances (RequestCost is frozen): the common requests cost no allocation.
_COST_ORDER = RequestCost(1, orders=1)
_COSTS = {weight: RequestCost(weight) for weight in (1, 2, 4, 5, 6, 20, 25, 40, 50, 80, 250)}
_FIXED_GET_WEIGHTS = {"exchangeInfo": 20, "account": 20, "order": 4, "klines": 2, "rateLimit/order": 40}


def _cost(weight: int) -> RequestCost:
    cost = _COSTS.get(weight)
    return RequestCost(weight) if cost is None else cost


def request_cost(method: str, path: str, params: Mapping[str, object]) -> RequestCost:
    """Weight of one spot REST request (docs as of 2026-07, BINANCE_FACTS section 5)."""
    method = method.upper()
    path = path.strip("/")
    if method == "POST" and path == "order":
        return _COST_ORDER
    if method == "GET":
        if path == "ticker/24hr":
            if "symbol" in params:
                return _cost(2)
            count = _symbols_count(params)
            if count is None:
                return _cost(80)
            return _cost(2 if count <= 20 else 40 if count <= 100 else 80)
        if path == "ticker/bookTicker":
            return _cost(2 if "symbol" in params else 4)
        if path == "depth":
            limit_raw = params.get("limit", 100)
            limit = int(str(limit_raw)) if str(limit_raw).isdigit() else 100
            return _cost(5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250)
        if path == "openOrders":
            return _cost(6 if "symbol" in params else 80)
        if path == "myTrades":
            return _cost(5 if "orderId" in params else 20)
        fixed = _FIXED_GET_WEIGHTS.get(path)
        if fixed is not None:
            return _cost(fixed)
    return _cost(1)


@dataclass(slots=True)
class _Window:
    rule: RateLimitRule
    budget: int
    index: int = -1
    used: int = 0
    # Derived from the rule once: these are read on every request.
    header: str | None = field(default=None, init=False)
    seconds: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.header = self.rule.header
        self.seconds = self.rule.window_s

    def roll(self, now: float) -> None:
        index = math.floor(now / self.seconds)
        if index != self.index:
            self.index, self.used = index, 0

    def seconds_to_next(self, now: float) -> float:
        return (self.index + 1) * self.seconds - now

    def amount(self, cost: RequestCost) -> int:
        kind = self.rule.kind
        if kind is LimitKind.REQUEST_WEIGHT:
            return cost.weight
        if kind is LimitKind.ORDERS:
            return cost.orders
        return 1


@dataclass(slots=True)
class RateLimiter:
    """Books request weight and order counts per window and says how long a request must wait.

    Times are epoch seconds (`clock.now().timestamp()`), because Binance's windows are aligned to
    the UTC minute / day, not to when we started.
    """

    clock: Clock
    budget_fraction: Decimal = Decimal("0.8")
    rules: Sequence[RateLimitRule] = DEFAULT_RULES
    _windows: list[_Window] = field(default_factory=list, init=False)
    # Per-request views of _windows, derived in set_rules: lower-case header -> windows it
    # corrects, and the windows counting weight / orders / raw requests.
    _by_header: dict[str, list[_Window]] = field(default_factory=dict, init=False)
    _weight_windows: tuple[_Window, ...] = field(default=(), init=False)
    _order_windows: tuple[_Window, ...] = field(default=(), init=False)
    _raw_windows: tuple[_Window, ...] = field(default=(), init=False)
    _blocked_until: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.set_rules(self.rules)

    # -- pure core ------------------------------------------------------------------------------
    def set_rules(self, rules: Sequence[RateLimitRule]) -> None:
        """Adopt the venue's limits, keeping what was already used in the current windows."""
        previous = {(w.rule.kind, w.rule.window_s): w for w in self._windows}
        windows = []
        for rule in rules:
            budget = max(1, int(Decimal(rule.limit) * self.budget_fraction))
            window = _Window(rule, budget)
            old = previous.get((rule.kind, rule.window_s))
            if old is not None:
                window.index, window.used = old.index, old.used
            windows.append(window)
        self.rules = tuple(rules)
        self._windows = windows
        by_header: dict[str, list[_Window]] = {}
        for window in windows:
            if window.header is not None:
                by_header.setdefault(window.header, []).append(window)
        self._by_header = by_header
        self._weight_windows = tuple(w for w in windows if w.rule.kind is LimitKind.REQUEST_WEIGHT)
        self._order_windows = tuple(w for w in windows if w.rule.kind is LimitKind.ORDERS)
        self._raw_windows = tuple(w for w in windows if w.rule.kind is LimitKind.RAW_REQUESTS)

    def reserve(self, cost: RequestCost, now: float) -> float:
        """Book `cost` and return 0.0 if it fits in every window's budget now; otherwise book
        nothing and return the seconds to wait before asking again."""
        if now < self._blocked_until:
            return self._blocked_until - now
        # Runs before every request: windows are grouped by what they count (set_rules), and
        # a window that books nothing for this request is not even rolled.
        wait = 0.0
        for windows, amount in (
            (self._weight_windows, cost.weight),
            (self._order_windows, cost.orders),
            (self._raw_windows, 1),
        ):
            if not amount:
                continue
            for window in windows:
                index = math.floor(now / window.seconds)
                if index != window.index:
                    window.index, window.used = index, 0
                # A request bigger than the whole budget may still go into an empty window.
                if window.used + amount > window.budget and window.used > 0:
                    wait = max(wait, (index + 1) * window.seconds - now)
        if wait > 0:
            return wait
        weight, orders = cost.weight, cost.orders
        if weight:
            for window in self._weight_windows:
                window.used += weight
        if orders:
            for window in self._order_windows:
                window.used += orders
        for window in self._raw_windows:
            window.used += 1
        return 0.0

    def observe_headers(self, headers: Mapping[str, str], now: float) -> None:
        """Correct our counts with the venue's. Ours may be higher (requests still in flight), so
        the larger of the two is kept."""
        by_header = self._by_header
        for key, raw in headers.items():
            # Most headers are not Binance's: one character decides for them.
            if key[:1] not in ("x", "X"):
                continue
            windows = by_header.get(key) or by_header.get(key.lower())
            if not windows:
                continue
            try:
                venue_count = int(raw)
            except ValueError:
                log.warning("binance.rate_limit.bad_header", header=key.lower(), value=raw)
                continue
            for window in windows:
                window.roll(now)
                window.used = max(window.used, venue_count)

    def block_until(self, until: float) -> None:
        """Stop every request until `until` (epoch seconds): the venue said 429/418."""
        self._blocked_until = max(self._blocked_until, until)

    def blocked_for(self, now: float) -> float:
        return max(0.0, self._blocked_until - now)

    def used(self, kind: LimitKind, now: float) -> dict[str, int]:
        """Used amount per window of `kind`, e.g. {'REQUEST_WEIGHT 6000/1 MINUTE': 120}."""
        result = {}
        for window in self._windows:
            if window.rule.kind is kind:
                window.roll(now)
                result[str(window.rule)] = window.used
        return result

    # -- the async edge -------------------------------------------------------------------------
    async def acquire(self, cost: RequestCost) -> None:
        """Wait (through the Clock port) until `cost` fits, then book it."""
        while True:
            now = self.clock.now().timestamp()
            wait = self.reserve(cost, now)
            if wait <= 0:
                return
            log.info(
                "binance.rate_limit.wait", seconds=round(wait, 3), weight=cost.weight, orders=cost.orders
            )
            # At least a millisecond: a float reading a hair before a window edge must not spin.
            await self.clock.sleep(max(wait, _MIN_WAIT_S))


DEFAULT_BLOCK_S = 60.0


class LimiterHooks:
    """Connects the limiter to every request the ccxt client makes (client.RequestHooks)."""

    def __init__(self, limiter: RateLimiter, clock: Clock) -> None:
        self._limiter = limiter
        self._clock = clock
        self.throttled: dict[int, int] = {429: 0, 418: 0}  # answers of each status so far (metrics)
        self.banned_until = 0.0  # epoch seconds: the end of the latest 418 ban

    async def before_request(self, method: str, path: str, params: Mapping[str, object]) -> None:
        cost = request_cost(method, path, params)
        # Usually the cost fits at once: book it here, and enter the waiting loop only if not.
        if self._limiter.reserve(cost, self._clock.now().timestamp()) > 0:
            await self._limiter.acquire(cost)

    def after_response(self, reply: HttpReply) -> None:
        now = self._clock.now().timestamp()
        self._limiter.observe_headers(reply.headers, now)
        if reply.status not in (418, 429):
            return
        retry_after = _seconds(reply.header("Retry-After"))
        wait = DEFAULT_BLOCK_S if retry_after is None else retry_after
        self._limiter.block_until(now + wait)
        self.throttled[reply.status] += 1
        if reply.status == 418:
            self.banned_until = max(self.banned_until, now + wait)
            log.critical(
                "binance.ip_banned",
                status=418,
                retry_after_s=wait,
                body=(reply.body or "")[:300],
                hint="the IP kept sending after 429s; every request is held back until the ban ends",
            )
        else:
            log.warning("binance.rate_limited", status=429, retry_after_s=wait, body=(reply.body or "")[:300])


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
