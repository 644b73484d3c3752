"""The Binance spot REST gateway (domain.ports.ExchangeGateway) on top of ccxt.

Every call goes: circuit breaker -> (time resync when due) -> ccxt -> error mapping, inside a
retry loop for transient failures; the rate limiter sits inside ccxt's request path (client.py).
Placement is the one call that is never blindly retried: after a failure whose outcome is
unknown it looks the order up by client order id first.

Start-up (`start`, run by `open_binance_gateway`) is patient instead: until exchangeInfo and the
server time have been read, a 429/418 is waited out to its end and an unreachable venue is tried
again with backoff, for as long as it takes (or until the task is cancelled), one log line per
wait. Those calls bypass the retry policy and the circuit breaker, which serve the running bot.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from adapters.binance.circuit_breaker import BreakerState, CircuitBreaker
from adapters.binance.client import CcxtBinance, create_client
from adapters.binance.config import BinanceConfig
from adapters.binance.errors import CircuitOpen, UnderMaintenance, is_clock_skew, map_exception, reply_of
from adapters.binance.parsing import (
    as_list,
    as_payload,
    parse_balances,
    parse_market_rules,
    parse_order,
    parse_ticker,
    parse_trade,
)
from adapters.binance.rate_limit import LimiterHooks, LimitKind, RateLimiter, parse_rate_limits
from adapters.binance.retry import RetryPolicy, backoff_s, is_retryable, rate_limit_wait_s
from adapters.binance.time_sync import TimeSync
from domain.errors import (
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    InvalidResponse,
    OrderNotFound,
    OrderStateUnknown,
    RateLimited,
)
from domain.models import Balance, Fill, Order, OrderRequest, OrderType, Ticker
from domain.ports import Clock, ExchangeGateway
from domain.rules import MarketRules

log = structlog.get_logger(__name__)

T = TypeVar("T")

MY_TRADES_PAGE = 1000  # Binance's maximum `limit` for myTrades: one page of trades
_CLIENT_ID_CACHE_SIZE = 10_000
_MIN_SLEEP_S = 0.001  # the shortest top-up sleep: a simulated clock rounds shorter ones to nothing


def _plain(value: Decimal) -> str:
    """A decimal as ccxt expects it: positional notation, never '1E-7'."""
    return format(value, "f")


class BinanceGateway:
    """Implements domain.ports.ExchangeGateway for Binance spot. Build it with
    `open_binance_gateway`, which also opens and closes the ccxt client."""

    def __init__(
        self,
        client: CcxtBinance,
        config: BinanceConfig,
        clock: Clock,
        *,
        limiter: RateLimiter,
        breaker: CircuitBreaker | None = None,
        retry: RetryPolicy | None = None,
        hooks: LimiterHooks | None = None,
    ) -> None:
        self._client = client
        self._hooks = hooks
        self.errors: dict[str, int] = {}  # failed calls by domain error type (metrics)
        self._config = config
        self._clock = clock
        self._limiter = limiter
        self._breaker = breaker or CircuitBreaker(clock)
        self._retry = retry or RetryPolicy(clock)
        self._time = TimeSync(clock, resync_s=config.time_resync_s)
        self._markets_loaded_at: float | None = None
        self._markets_lock = asyncio.Lock()
        self._maintenance = False
        self._reported_state = "normal"
        self._client_ids: OrderedDict[str, str] = OrderedDict()

    # -- health ---------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """One of "normal", "rate_limited", "circuit_open" (half-open included) or "maintenance",
        for health checks and logs."""
        if self._breaker.state is not BreakerState.CLOSED:
            return "circuit_open"
        if self._limiter.blocked_for(self._clock.now().timestamp()) > 0:
            return "rate_limited"
        if self._maintenance:
            return "maintenance"
        return "normal"

    @property
    def breaker_state(self) -> str:
        """The circuit breaker's state: "closed", "open" or "half_open"."""
        return self._breaker.state.value

    def weight_used(self) -> int:
        """Request weight used in the current window (the largest of the weight windows)."""
        used = self._limiter.used(LimitKind.REQUEST_WEIGHT, self._clock.now().timestamp())
        return max(used.values(), default=0)

    def throttled(self) -> dict[int, int]:
        """How many 429 and 418 answers the venue gave so far."""
        return dict(self._hooks.throttled) if self._hooks is not None else {429: 0, 418: 0}

    def banned_for(self) -> float:
        """Seconds left of a 418 ban (0 when not banned)."""
        if self._hooks is None:
            return 0.0
        return max(0.0, self._hooks.banned_until - self._clock.now().timestamp())

    def venue_time_ms(self) -> int:
        """Now on the venue's clock (as measured at start and on every resync), in ms: the
        timestamp a signed WebSocket API request carries."""
        return int(self._client.milliseconds()) - self._time.difference_ms

    async def resync_time(self) -> None:
        """Measure the venue's clock again (after a -1021 from the WebSocket API)."""
        await self._invoke(lambda: self._sync_time("websocket api -1021"))

    def _report_state(self) -> None:
        state = self.state
        if state != self._reported_state:
            log.warning("binance.state", previous=self._reported_state, state=state)
            self._reported_state = state

    def _set_maintenance(self, on: bool, reason: str = "") -> None:
        if on != self._maintenance:
            if on:
                log.warning("binance.maintenance.started", reason=reason)
            else:
                log.info("binance.maintenance.ended")
            self._maintenance = on

    # -- the call pipeline ----------------------------------------------------------------------
    async def _invoke(self, fn: Callable[[], Awaitable[T]]) -> T:
        """One ccxt call; any exception becomes a domain error (the ccxt one is kept as cause)."""
        try:
            result = await fn()
        except Exception as exc:  # CancelledError is a BaseException: it passes untouched
            error = self._failure(exc)
            if error is exc:
                raise
            raise error from exc
        if self._maintenance:
            self._set_maintenance(False)
        return result

    def _failure(self, exc: Exception) -> ExchangeError:
        """The domain error for what a ccxt call raised, noted for the maintenance flag."""
        if isinstance(exc, ExchangeError):
            error = exc
        else:
            error = map_exception(
                exc,
                now_ms=self._client.milliseconds() - self._time.difference_ms,
                timeout_s=self._config.request_timeout_s,
            )
        self._note_failure(error)
        return error

    def _note_failure(self, error: ExchangeError) -> None:
        kind = type(error).__name__
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if isinstance(error, UnderMaintenance):
            self._set_maintenance(True, str(error))
        elif not isinstance(error, ExchangeUnavailable):
            self._set_maintenance(False)  # the venue answered normally, if negatively

    async def _sync_time(self, reason: str) -> None:
        async def server_ms() -> int:
            value: object = await self._invoke(self._client.fetch_time)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InvalidResponse(f"time: field 'serverTime' is not an integer: {value!r}")
            return value

        def apply(difference_ms: int) -> None:
            self._client.options["timeDifference"] = difference_ms

        await self._time.sync(server_ms, self._client.milliseconds, apply, reason=reason)

    async def _attempt(self, fn: Callable[[], Awaitable[T]], *, signed: bool) -> T:
        """One attempt through the circuit breaker, with the -1021 resync-and-retry-once rule."""
        self._breaker.before_call()
        recorded = False
        try:
            if signed and self._time.due:
                await self._sync_time("scheduled")
            # `_invoke` inlined: one coroutine frame less on every call's await chain.
            try:
                result = await fn()
            except Exception as exc:  # CancelledError is a BaseException: it passes untouched
                error = self._failure(exc)
                if not is_clock_skew(error):
                    if error is exc:
                        raise
                    raise error from exc
                log.warning("binance.time.rejected", error=str(error))
                await self._sync_time("-1021")
                result = await self._invoke(fn)
            else:
                if self._maintenance:
                    self._set_maintenance(False)
        except ExchangeError as error:
            if is_retryable(error):
                self._breaker.record_failure()
            elif isinstance(error, UnderMaintenance):
                self._breaker.release()
            else:
                self._breaker.record_success()  # a refusal still proves the venue is up
            recorded = True
            self._report_state()
            raise
        else:
            self._breaker.record_success()
            recorded = True
            if self._reported_state != "normal":
                self._report_state()
            return result
        finally:
            if not recorded:
                self._breaker.release()
                self._report_state()

    def _call(self, fn: Callable[[], Awaitable[T]], *, signed: bool = False) -> Awaitable[T]:
        # A plain function handing back the retry loop's awaitable: no coroutine frame of its own.
        return self._retry.run(lambda: self._attempt(fn, signed=signed))

    # -- start-up ---------------------------------------------------------------------------------
    async def _patiently(self, call: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A start-up call, tried until the venue answers it. A 429/418 is waited out to its end
        (`rate_limit_wait_s`); an unreachable venue (network, timeout, TLS, 5xx, maintenance) is
        tried again with exponential backoff and jitter, capped at a minute, forever. Each wait is
        one log line naming the call, the wait and the reason; nothing is sent while it lasts. A
        refusal (bad key, unreadable answer) is raised: waiting would not mend it. Cancelling the
        task ends a wait at once (it sleeps on the Clock port)."""
        attempt = backoffs = 0
        while True:
            attempt += 1
            try:
                return await self._invoke(fn)
            except RateLimited as error:
                now = self._clock.now().timestamp()
                known = rate_limit_wait_s(error, blocked_for_s=self._limiter.blocked_for(now))
                if known is None:
                    backoffs += 1
                    wait = backoff_s(backoffs)
                else:
                    backoffs = 0  # the venue answered: it is reachable
                    wait = known
                # The limiter holds every request back for as long, whoever asks.
                self._limiter.block_until(now + wait)
                cause = error.__cause__
                reply = reply_of(cause) if cause is not None else None
                log.warning(
                    "venue rate limited at start-up; waiting",
                    call=call,
                    status=None if reply is None else reply.status,
                    attempt=attempt,
                    wait_s=round(wait, 3),
                    reason=str(error),
                )
            except ExchangeUnavailable as error:
                backoffs += 1
                wait = backoff_s(backoffs)
                log.warning(
                    "venue unreachable at start-up; retrying",
                    call=call,
                    attempt=attempt,
                    wait_s=round(wait, 3),
                    reason=str(error),
                )
            await self._clock.sleep(wait)
            # The limiter's hold may end a hair later than `wait` (float clock readings): top up
            # quietly rather than have the next request log a wait of its own.
            while (rest := self._limiter.blocked_for(self._clock.now().timestamp())) > 0:
                await self._clock.sleep(max(rest, _MIN_SLEEP_S))

    async def start(self) -> None:
        """Load markets and rate limits (one exchangeInfo request) and measure the clock offset,
        patiently: this returns once the venue has answered both (see `_patiently`)."""
        await self._ensure_markets(at_start=True)
        await self._patiently("time", lambda: self._sync_time("start"))
        log.info(
            "binance.gateway.started",
            rest_url=self._config.rest_url,
            rate_limits=", ".join(str(r) for r in self._limiter.rules),
        )

    def _markets_fresh(self) -> bool:
        loaded_at = self._markets_loaded_at
        return loaded_at is not None and self._clock.monotonic() - loaded_at < self._config.markets_ttl_s

    async def _ensure_markets(self, *, at_start: bool = False) -> None:
        if self._markets_fresh():
            return
        async with self._markets_lock:
            if self._markets_fresh():
                return  # another task reloaded them while this one waited
            loaded_at = self._markets_loaded_at
            reload = loaded_at is not None
            if at_start:
                await self._patiently("exchangeInfo", lambda: self._client.load_markets(reload=reload))
            else:
                await self._call(lambda: self._client.load_markets(reload=reload))
            info = self._client.gridbot_exchange_info
            if info is None:
                raise InvalidResponse("exchangeInfo was not received")
            self._limiter.set_rules(parse_rate_limits(info))
            self._markets_loaded_at = self._clock.monotonic()
            log.info("binance.markets.loaded", markets=len(self._client.markets or {}), reload=reload)

    def _market(self, symbol: str) -> Mapping[str, Any]:
        markets = self._client.markets or {}
        market = markets.get(symbol)
        if market is None:
            raise ExchangeError(f"unknown symbol {symbol!r} on Binance spot", code=-1121)
        return as_payload(market, f"market[{symbol}]")

    async def market_rules(self, symbol: str) -> MarketRules:
        if not self._markets_fresh():
            await self._ensure_markets()
        market = self._market(symbol)
        return parse_market_rules(symbol, as_payload(market.get("info"), f"market[{symbol}].info"))

    # -- market data and account ----------------------------------------------------------------
    async def fetch_ticker(self, symbol: str) -> Ticker:
        self._market(symbol)
        result = await self._call(lambda: self._client.fetch_ticker(symbol))
        return parse_ticker(symbol, _info(result, f"ticker[{symbol}]"))

    async def fetch_balances(self) -> Mapping[str, Balance]:
        result = await self._call(lambda: self._client.fetch_balance(self._signed_params()), signed=True)
        return parse_balances(_info(result, "account"))

    # -- orders -----------------------------------------------------------------------------------
    def _signed_params(self, **extra: object) -> dict[str, Any]:
        return {"recvWindow": self._config.recv_window_ms, **extra}

    def _remember(self, order: Order) -> Order:
        self._client_ids[order.order_id] = order.client_order_id
        self._client_ids.move_to_end(order.order_id)
        while len(self._client_ids) > _CLIENT_ID_CACHE_SIZE:
            self._client_ids.popitem(last=False)
        return order

    def _order_from(self, symbol: str, result: object) -> Order:
        return self._remember(parse_order(symbol, _info(result, "order")))

    async def place_order(self, request: OrderRequest) -> Order:
        """Place once, even across failures: after a failure whose outcome is unknown (5xx,
        timeout, dropped connection) the order is looked up by its client order id before any new
        attempt; if the outcome stays unknown, OrderStateUnknown is raised."""
        if not request.client_order_id:
            raise ValueError(
                "refusing to place an order without a client order id: it could not be recovered"
            )
        if request.type is OrderType.LIMIT and request.price is None:
            raise InvalidOrder(f"limit order {request.client_order_id} has no price")
        if not self._markets_fresh():
            await self._ensure_markets()
        self._market(request.symbol)
        cid = request.client_order_id
        uncertain: list[ExchangeError] = []

        async def lookup() -> Order | None:
            try:
                found = await self._attempt(
                    lambda: self._client.fetch_order(
                        None, request.symbol, self._signed_params(origClientOrderId=cid)
                    ),
                    signed=True,
                )
            except OrderNotFound:
                log.info("binance.order.absent_after_failure", client_order_id=cid)
                return None
            order = self._order_from(request.symbol, found)
            log.warning("binance.order.recovered_after_failure", client_order_id=cid, order_id=order.order_id)
            return order

        async def attempt() -> Order:
            if uncertain:
                existing = await lookup()
                if existing is not None:
                    return existing
            try:
                result = await self._attempt(lambda: self._create(request), signed=True)
            except DuplicateOrder:
                if uncertain:
                    existing = await lookup()
                    if existing is not None:
                        return existing
                raise
            except ExchangeUnavailable as error:
                if not isinstance(error, CircuitOpen):
                    uncertain.append(error)
                    log.warning("binance.order.outcome_unknown", client_order_id=cid, error=str(error))
                raise
            order = self._order_from(request.symbol, result)
            log.debug(  # the grid logs "order placed" with its level; this is the wire's view
                "binance.order.placed",
                client_order_id=cid,
                order_id=order.order_id,
                side=str(order.side),
                amount=str(order.amount),
                price=None if order.price is None else str(order.price),
                status=str(order.status),
            )
            return order

        try:
            return await self._retry.run(attempt)
        except (InvalidOrder, InsufficientFunds):
            raise  # definitive refusals of a (re)placement: nothing was placed
        except ExchangeError as error:
            if uncertain and not isinstance(error, OrderStateUnknown):
                raise OrderStateUnknown(
                    f"order {cid}: placement failed and its outcome is unknown ({error}); "
                    "look it up by client order id",
                    code=error.code,
                ) from error
            raise

    def _create(self, request: OrderRequest) -> Awaitable[dict[str, Any]]:
        params = self._signed_params(clientOrderId=request.client_order_id)
        price: str | None = None
        if request.type is OrderType.LIMIT:
            assert request.price is not None
            price = _plain(request.price)
            params["timeInForce"] = "GTC"
        return self._client.create_order(
            request.symbol, str(request.type), str(request.side), _plain(request.amount), price, params
        )

    async def cancel_order(self, symbol: str, order_id: str) -> Order:
        self._market(symbol)
        result = await self._call(
            lambda: self._client.cancel_order(order_id, symbol, self._signed_params()), signed=True
        )
        order = self._order_from(symbol, result)
        log.info("binance.order.cancelled", order_id=order.order_id, client_order_id=order.client_order_id)
        return order

    async def fetch_order(
        self, symbol: str, *, order_id: str | None = None, client_order_id: str | None = None
    ) -> Order:
        if order_id is None and client_order_id is None:
            raise ValueError("fetch_order needs an order id or a client order id")
        self._market(symbol)
        params = self._signed_params()
        if client_order_id is not None:
            params["origClientOrderId"] = client_order_id
        result = await self._call(lambda: self._client.fetch_order(order_id, symbol, params), signed=True)
        return self._order_from(symbol, result)

    async def fetch_open_orders(self, symbol: str) -> Sequence[Order]:
        self._market(symbol)
        result = await self._call(
            lambda: self._client.fetch_open_orders(symbol, None, None, self._signed_params()), signed=True
        )
        return [self._order_from(symbol, entry) for entry in as_list(result, "openOrders")]

    async def fetch_my_trades(self, symbol: str, since_trade_id: str | None = None) -> Sequence[Fill]:
        """Trades after `since_trade_id` (Binance's `fromId` is inclusive, hence +1), oldest first,
        at most one page (MY_TRADES_PAGE): call again from the last id for more, until a call
        returns nothing. Without `since_trade_id` Binance answers with its *newest* page, so a
        walk through the whole history starts from since_trade_id="0", not from None."""
        self._market(symbol)
        params = self._signed_params()
        if since_trade_id is not None:
            params["fromId"] = _venue_id(since_trade_id, "trade") + 1
        return await self._trades_page(symbol, params)

    async def fetch_order_trades(self, symbol: str, order_id: str) -> Sequence[Fill]:
        """Every trade of one order, oldest first; empty when Binance has none (yet: an order
        can show FILLED before its trades are queryable). One request (weight 5) for an order
        with fewer trades than a page; a full page means there may be older ones, so the order
        is then walked from its first trade with `orderId` + `fromId`."""
        self._market(symbol)
        venue_order_id = _venue_id(order_id, "order")
        params = self._signed_params(orderId=venue_order_id)
        fills = await self._trades_page(symbol, params, order_id=venue_order_id)
        if len(fills) < MY_TRADES_PAGE:
            return fills
        # Binance's answer without fromId is the *newest* page: walk forwards from the start.
        walked: list[Fill] = []
        from_id = 0
        while True:
            page = await self._trades_page(symbol, {**params, "fromId": from_id}, order_id=venue_order_id)
            walked.extend(page)
            if len(page) < MY_TRADES_PAGE:
                return walked
            next_id = int(page[-1].trade_id) + 1
            if next_id <= from_id:
                raise InvalidResponse(f"myTrades of order {order_id}: fromId={from_id} did not move on")
            from_id = next_id

    async def _trades_page(
        self, symbol: str, params: dict[str, Any], *, order_id: int | None = None
    ) -> list[Fill]:
        """One myTrades request (at most MY_TRADES_PAGE trades), sorted by trade id. With
        `order_id`, a trade of any other order is refused: booking it as this order's would
        corrupt the books."""
        result = await self._call(
            lambda: self._client.fetch_my_trades(symbol, None, MY_TRADES_PAGE, params), signed=True
        )
        raw_trades = [
            as_payload(_info(entry, "myTrades[]"), "myTrades[]") for entry in as_list(result, "myTrades")
        ]
        if order_id is not None:
            strays = sorted({str(raw.get("orderId")) for raw in raw_trades} - {str(order_id)})
            if strays:
                raise InvalidResponse(f"myTrades for order {order_id} returned trades of orders {strays}")
        client_ids = await self._client_ids_for(symbol, raw_trades)
        fills = []
        for raw in raw_trades:
            trade_order_id = str(raw.get("orderId"))
            fills.append(parse_trade(symbol, raw, client_ids[trade_order_id]))
        return sorted(fills, key=lambda fill: int(fill.trade_id))

    async def _client_ids_for(
        self, symbol: str, raw_trades: Sequence[Mapping[str, object]]
    ) -> dict[str, str]:
        """Binance's trade list lacks the client order id: take it from orders this gateway has
        seen, and look up the others (one query per unknown order, then cached)."""
        result: dict[str, str] = {}
        for raw in raw_trades:
            order_id = raw.get("orderId")
            if order_id is None:
                raise InvalidResponse("myTrades[]: field 'orderId' is missing")
            key = str(order_id)
            if key in result:
                continue
            known = self._client_ids.get(key)
            if known is None:
                known = (await self.fetch_order(symbol, order_id=key)).client_order_id
            result[key] = known
        return result


def _venue_id(value: str, kind: str) -> int:
    """A Binance order or trade id as the integer the API takes."""
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Binance {kind} ids are integers, got {value!r}") from None


def _info(result: object, where: str) -> Mapping[str, object]:
    """The raw Binance payload ccxt keeps under `info` in its unified structures."""
    if type(result) is dict:  # the usual case: skip building the error labels
        info = result.get("info")
        if type(info) is dict:
            return info
    payload = as_payload(result, where)
    return as_payload(payload.get("info"), f"{where}.info")


@asynccontextmanager
async def open_binance_gateway(config: BinanceConfig, clock: Clock) -> AsyncIterator[BinanceGateway]:
    """The gateway with its ccxt client (one per process): markets, rate limits and clock offset
    are loaded before it is handed out, however long the venue takes to answer (rate limits are
    waited out, an unreachable venue is retried; cancel the task to give up); the client is
    closed on exit."""
    limiter = RateLimiter(clock, budget_fraction=config.weight_budget_fraction)
    hooks = LimiterHooks(limiter, clock)
    client = create_client(config, hooks, clock)
    try:
        gateway = BinanceGateway(client, config, clock, limiter=limiter, hooks=hooks)
        await gateway.start()
        yield gateway
    finally:
        await client.close()


if TYPE_CHECKING:

    def _satisfies_port(gateway: BinanceGateway) -> ExchangeGateway:
        return gateway
