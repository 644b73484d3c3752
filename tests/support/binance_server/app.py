"""A Binance-spot-compatible REST server on loopback, for tests and benchmarks.

It speaks /api/v3 closely enough that the real ccxt client works against it unchanged
(BINANCE_FACTS.md lists what ccxt sends and how it maps answers to exceptions): HMAC-signed
requests with the docs' timing rule, the docs' error bodies and HTTP statuses, request weights
and the X-MBX-* headers, 429 then 418 bans. Orders go through the project's own
`MatchingEngine`, one per symbol, so the stand-in and the simulated exchange agree on every fill.

Knobs for tests (`set_price`, `fail_next`, `drop_next`, `force_rate_limit`, `maintenance`,
`time_offset_ms`, ...) inject faults deterministically; the server's clock is an injectable
function, so tests roll rate-limit windows by moving time instead of sleeping.

Limits of the model: orders are LIMIT (GTC, IOC, FOK), LIMIT_MAKER and MARKET (quantity or
quoteOrderQty); no stop, iceberg, OCO or amend. Fills are the engine's (full fills at the
order's limit or the last price), so IOC/FOK either fill at once or expire untouched. The book
from /depth is synthetic (`book_qty` on every tick around the engine's bid and ask); 24 h and
kline volumes count only this account's fills; no public trades endpoints (trades, aggTrades).
With several symbols each engine checks funds against its own copy of a shared asset (the
account view adds every engine's change up, so what /account reports stays right).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web
from returns.result import Failure

from adapters.simulated.engine import MatchingEngine
from domain.errors import ExchangeError, InsufficientFunds, InvalidOrder, OrderNotFound
from domain.models import ZERO, Balance, Fill, Order, OrderRequest, OrderType, Side
from domain.rules import venue_filter_message
from support.binance_server import wire
from support.binance_server.book import OrderMeta, SymbolBook, to_datetime
from support.binance_server.limits import RateLimit, RateLimiter, Throttled, default_rate_limits
from support.binance_server.market import DAY_MS, KLINE_INTERVALS_MS, SymbolSpec
from support.binance_server.wire import ApiError, JsonObject, Params, Refusal, fmt

log = structlog.get_logger(__name__)

API_PREFIX = "/api/v3/"
DEFAULT_BALANCES: Mapping[str, Decimal] = {"USDT": Decimal("10000"), "BTC": Decimal("1")}
DEFAULT_PRICES: Mapping[str, Decimal] = {"BTC/USDT": Decimal("30000.00")}
MAX_RECV_WINDOW = Decimal("60000")
DEFAULT_RECV_WINDOW = Decimal("5000")
_API_KEY_RE = re.compile(r"^[A-Za-z0-9._-]{1,256}$")
_TIME_IN_FORCE = frozenset({"GTC", "IOC", "FOK"})
_RESP_TYPES = frozenset({"ACK", "RESULT", "FULL"})
MAX_RECORDED_REQUESTS = 100_000  # a benchmark's millions of requests must not grow the log forever


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def _normalise_path(path: str) -> str:
    """'order' and '/api/v3/order' name the same endpoint for the fault knobs."""
    return path if path.startswith("/") else API_PREFIX + path


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One change of an API-placed order, for the user data stream (ws_api.py): `kind` is the
    executionReport's execution type (NEW, TRADE, CANCELED, EXPIRED). `order` is the engine's
    order after the whole operation; `fill` is the trade of a TRADE; `cancel_client_id` the
    cancel request's own id; `working` whether the order rested on the book."""

    kind: str
    book: SymbolBook
    order: Order
    meta: OrderMeta
    now_ms: int
    working: bool
    fill: Fill | None = None
    cancel_client_id: str | None = None


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server saw it, for assertions. `status` is None for a dropped one."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    time_ms: int
    status: int | None


@dataclass(slots=True)
class _Fault:
    path: str
    method: str | None
    times: int
    status: int = 503
    body: JsonObject | None = None
    retry_after: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return self.path == path and (self.method is None or self.method == method)


@dataclass(slots=True)
class _Answer:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a non-JSON body, as a load balancer in front of the API would send


@dataclass(frozen=True, slots=True)
class _Context:
    method: str
    path: str
    params: Params
    raw_query: str
    raw_body: str
    headers: Mapping[str, str]
    ip: str
    now_ms: int


Handler = Callable[["_Context"], Awaitable[_Answer]]
Weigher = Callable[[Params], int]


@dataclass(frozen=True, slots=True)
class _Route:
    handler: Handler
    weight: Weigher
    signed: bool


def _fixed(weight: int) -> Weigher:
    return lambda _params: weight


def _depth_weight(params: Params) -> int:
    raw = params.optional("limit")
    limit = int(raw) if raw is not None and raw.isdigit() else 100
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


def _symbols_count(params: Params) -> int | None:
    raw = params.optional("symbols")
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        return 1
    return len(parsed) if isinstance(parsed, list) else 1


def _ticker_24h_weight(params: Params) -> int:
    if "symbol" in params:
        return 2
    count = _symbols_count(params)
    if count is None or count > 100:
        return 80
    return 2 if count <= 20 else 40


def _single_or_four(params: Params) -> int:
    return 2 if "symbol" in params else 4


def _strip_signature(raw: str) -> str:
    return "&".join(pair for pair in raw.split("&") if pair and not pair.startswith("signature="))


class FakeBinance:
    """The stand-in server. Create, `await start()`, point ccxt at `api_url`, `await stop()`."""

    def __init__(
        self,
        *,
        api_key: str = "test-api-key",
        api_secret: str = "test-api-secret",
        balances: Mapping[str, Decimal] | None = None,
        prices: Mapping[str, Decimal] | None = None,
        now_ms: Callable[[], int] | None = None,
        weight_limit: int = 6000,
        maker_fee: Decimal = Decimal("0.001"),
        taker_fee: Decimal = Decimal("0.001"),
        symbols: Sequence[SymbolSpec] | None = None,
        rate_limits: Sequence[RateLimit] | None = None,
        book_qty: Decimal = Decimal("1"),
    ) -> None:
        self._api_key = api_key
        self._api_secret = api_secret.encode()
        self._now_ms = now_ms or _wall_clock_ms
        self.time_offset_ms = 0
        self.maintenance = False
        self.requests: list[RecordedRequest] = []
        self.rate_limits: tuple[RateLimit, ...] = (
            tuple(rate_limits) if rate_limits is not None else default_rate_limits(weight_limit)
        )
        self._limiter = RateLimiter(self.rate_limits)
        self._book_qty = book_qty
        self._maker_fee = maker_fee
        self._taker_fee = taker_fee
        self._faults: deque[_Fault] = deque()
        self._after_faults: deque[_Fault] = deque()
        self._drops: deque[_Fault] = deque()
        self._account_free: dict[str, Decimal] = dict(DEFAULT_BALANCES if balances is None else balances)
        self._books: dict[str, SymbolBook] = {}
        self._build_books(symbols, DEFAULT_PRICES if prices is None else prices)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._routes = self._route_table()
        # Called after every market move (set_price) with the book and the server time: the
        # WebSocket market streams (streams.py) publish the move as a trade from here.
        self.price_listeners: list[Callable[[SymbolBook, int], None]] = []
        # Called with the order events of one operation (a placement, a cancel, a cancel-all, a
        # market move's fills), in the order they happened: the user data stream (ws_api.py).
        self.order_listeners: list[Callable[[Sequence[OrderEvent]], None]] = []

    def _build_books(self, symbols: Sequence[SymbolSpec] | None, prices: Mapping[str, Decimal]) -> None:
        specs = {spec.symbol: spec for spec in symbols or ()}
        for name in prices:
            symbol = self._domain_symbol_of(name, specs)
            specs.setdefault(symbol, SymbolSpec().for_symbol(symbol))
        if not specs:
            specs["BTC/USDT"] = SymbolSpec()
        start = self.server_time_ms()
        price_by_symbol = {self._domain_symbol_of(name, specs): price for name, price in prices.items()}
        for symbol, spec in specs.items():
            price = price_by_symbol.get(symbol)
            if price is None:
                raise ValueError(f"no starting price for {symbol}: pass prices={{{symbol!r}: Decimal(...)}}")
            engine = MatchingEngine(
                spec.market_rules(),
                self._account_free,
                maker_fee=self._maker_fee,
                taker_fee=self._taker_fee,
                last_price=price,
            )
            self._books[spec.wire_symbol] = SymbolBook(
                spec, engine, start_ms=start, initial_free=self._account_free
            )

    @staticmethod
    def _domain_symbol_of(name: str, specs: Mapping[str, SymbolSpec]) -> str:
        if "/" in name:
            return name
        for spec in specs.values():
            if spec.wire_symbol == name:
                return spec.symbol
        for quote in ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "TRY"):
            if name.endswith(quote) and len(name) > len(quote):
                return f"{name[: -len(quote)]}/{quote}"
        raise ValueError(f"cannot tell base from quote in {name!r}; write it as BASE/QUOTE")

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        self._runner = runner
        self._base_url = f"http://{host}:{bound[1]}"
        log.info("fake_binance.started", url=self._base_url, symbols=sorted(self._books))
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            log.info("fake_binance.stopped", url=self._base_url)

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeBinance is not started")
        return self._base_url

    @property
    def api_url(self) -> str:
        """What ccxt wants in urls['api']['public'] and urls['api']['private']."""
        return self.base_url + "/api/v3"

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def api_secret(self) -> str:
        return self._api_secret.decode()

    # -- clock --------------------------------------------------------------------------------------
    def server_time_ms(self) -> int:
        return self._now_ms() + self.time_offset_ms

    def _publish(self, events: Sequence[OrderEvent]) -> None:
        if events:
            for listener in list(self.order_listeners):
                listener(events)

    # -- test knobs -----------------------------------------------------------------------------
    def book(self, symbol: str) -> SymbolBook:
        """The symbol's state (its `engine` included), by "BTC/USDT" or "BTCUSDT"."""
        key = symbol.replace("/", "")
        try:
            return self._books[key]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}; known: {sorted(self._books)}") from None

    def set_price(self, symbol: str, price: Decimal, *, gap: bool = False) -> list[Fill]:
        """Move the market: resting orders the move crosses fill (as the engine decides)."""
        book = self.book(symbol)
        now = self.server_time_ms()
        fills = book.engine.move_to(price, to_datetime(now), gap=gap)
        book.tape.record_price(now, price)
        book.update_id += 1
        book.absorb_fills(fills, now)
        for listener in self.price_listeners:
            listener(book, now)
        self._publish(
            [
                OrderEvent("TRADE", book, order, book.meta(order), now, True, fill=fill)
                for fill in fills
                for order in [book.engine.order(order_id=fill.order_id)]
            ]
        )
        return fills

    def set_balance(self, asset: str, amount: Decimal) -> None:
        """Set the account's FREE balance of `asset` (funds locked by open orders stay locked).
        Rebuilds each engine from its snapshot: fetch `book(symbol).engine` again afterwards."""
        if amount < 0:
            raise ValueError(f"a balance must not be negative, got {amount}")
        self._account_free[asset] = amount
        for book in self._books.values():
            snapshot = book.engine.snapshot()
            entry = snapshot["balances"].setdefault(asset, {"free": "0", "locked": "0"})
            entry["free"] = str(amount)
            book.engine = MatchingEngine.restore(snapshot)
            book.initial_free[asset] = amount

    def balances(self) -> dict[str, Balance]:
        """The account as /account reports it: every engine's change added to the start balances."""
        free = dict(self._account_free)
        locked: dict[str, Decimal] = {}
        for book in self._books.values():
            for asset, balance in book.engine.balances().items():
                start = book.initial_free.get(asset, ZERO)
                free[asset] = free.get(asset, ZERO) + balance.free - start
                locked[asset] = locked.get(asset, ZERO) + balance.locked
        assets = sorted(set(free) | set(locked))
        return {asset: Balance(asset, free.get(asset, ZERO), locked.get(asset, ZERO)) for asset in assets}

    def fail_next(
        self,
        path: str,
        *,
        status: int = 503,
        times: int = 1,
        body: JsonObject | None = None,
        method: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next `times` requests to `path` with `status` without processing them.
        Without `body`, a 5xx comes as an HTML page with no Binance code (ccxt: ExchangeNotAvailable),
        a 418/429 as -1003, anything else as -1000. A 418/429 carries `Retry-After: retry_after`
        (seconds; 1 when not given)."""
        self._faults.append(_Fault(_normalise_path(path), method, times, status, body, retry_after))

    def fail_next_after_processing(
        self, path: str, *, status: int = 500, times: int = 1, method: str | None = None
    ) -> None:
        """Process the next request to `path` (an order IS placed), then answer `status` with -1000,
        so the client cannot know the outcome."""
        self._after_faults.append(_Fault(_normalise_path(path), method, times, status))

    def drop_next(self, path: str, *, times: int = 1, method: str | None = None) -> None:
        """Close the TCP connection of the next request to `path` without answering or processing."""
        self._drops.append(_Fault(_normalise_path(path), method, times))

    def force_rate_limit(self, status: int = 429, retry_after: int = 5) -> None:
        """Answer every request with `status` (429 or 418) until `retry_after` seconds of server time pass."""
        if status not in (418, 429):
            raise ValueError(f"status must be 418 or 429, got {status}")
        self._limiter.force(status, retry_after, self.server_time_ms())

    @property
    def used_weight(self) -> int:
        """Request weight used in the current minute (every IP together; tests have one)."""
        return self._limiter.used_weight(self.server_time_ms())

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        path = _normalise_path(path)
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def _record(self, recorded: RecordedRequest) -> None:
        if len(self.requests) >= MAX_RECORDED_REQUESTS:
            del self.requests[: MAX_RECORDED_REQUESTS // 2]
        self.requests.append(recorded)

    @staticmethod
    def _take(faults: deque[_Fault], method: str, path: str) -> _Fault | None:
        for fault in faults:
            if fault.matches(method, path):
                fault.times -= 1
                if fault.times <= 0:
                    faults.remove(fault)
                return fault
        return None

    # -- request pipeline ---------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        now = self.server_time_ms()
        raw_query = request.raw_path.partition("?")[2]
        raw_body = (await request.read()).decode("utf-8", errors="replace")
        ip = request.remote or "unknown"
        method, path = request.method, request.path
        headers = dict(request.headers)
        try:
            params: Params | Refusal = self._parse_params(raw_query, raw_body)
        except ApiError as error:
            params = error.refusal
        recorded_params = params.as_dict() if isinstance(params, Params) else {}

        if self._take(self._drops, method, path) is not None:
            log.info("fake_binance.drop", method=method, path=path)
            self._record(RecordedRequest(method, path, recorded_params, headers, now, None))
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)

        answer = await self._answer(request, method, path, params, raw_query, raw_body, headers, ip, now)
        answer.headers.update(self._limiter.weight_headers(ip, now))
        self._record(RecordedRequest(method, path, recorded_params, headers, now, answer.status))
        if answer.status >= 400:
            log.debug(
                "fake_binance.refused", method=method, path=path, status=answer.status, body=answer.body
            )
        if answer.text is not None:
            return web.Response(
                status=answer.status, text=answer.text, content_type="text/html", headers=answer.headers
            )
        return web.Response(
            status=answer.status,
            text=json.dumps(answer.body, separators=(",", ":")),
            content_type="application/json",
            charset="UTF-8",
            headers=answer.headers,
        )

    async def _answer(
        self,
        request: web.Request,
        method: str,
        path: str,
        params: Params | Refusal,
        raw_query: str,
        raw_body: str,
        headers: Mapping[str, str],
        ip: str,
        now: int,
    ) -> _Answer:
        route = self._routes.get((method, path))
        weight = route.weight(params) if route is not None and isinstance(params, Params) else 1
        if self.maintenance:
            return _refusal_answer(wire.MAINTENANCE)
        fault = self._take(self._faults, method, path)
        if fault is not None:
            self._limiter.count_without_admitting(ip, weight, now)
            log.info("fake_binance.injected_failure", method=method, path=path, status=fault.status)
            return self._fault_answer(fault)
        throttled = self._limiter.admit(ip, weight, now)
        if throttled is not None:
            log.info(
                "fake_binance.throttled", status=throttled.refusal.status, retry_after=throttled.retry_after
            )
            return _throttled_answer(throttled)
        if isinstance(params, Refusal):
            return _refusal_answer(params)
        if route is None:
            return _refusal_answer(wire.NOT_FOUND)
        context = _Context(method, path, params, raw_query, raw_body, request.headers, ip, now)
        try:
            if route.signed:
                self._authenticate(context)
            answer = await route.handler(context)
        except ApiError as error:
            answer = _refusal_answer(error.refusal)
        except Exception:
            log.exception("fake_binance.handler_failed", method=method, path=path)
            answer = _refusal_answer(wire.UNKNOWN_ERROR)
        after = self._take(self._after_faults, method, path)
        if after is not None:
            log.info("fake_binance.failure_after_processing", method=method, path=path, status=after.status)
            return _Answer(wire.UNKNOWN_ERROR.body(), status=after.status)
        return answer

    @staticmethod
    def _fault_answer(fault: _Fault) -> _Answer:
        retry_after = 1 if fault.retry_after is None else fault.retry_after
        headers = {"Retry-After": str(retry_after)} if fault.status in (418, 429) else {}
        if fault.body is not None:
            return _Answer(fault.body, status=fault.status, headers=headers)
        if fault.status >= 500:
            # What the load balancer sends when the API behind it is down: no Binance error code.
            try:
                reason = HTTPStatus(fault.status).phrase
            except ValueError:
                reason = "Error"
            page = f"<html><body><h1>{fault.status} {reason}</h1></body></html>"
            return _Answer(None, status=fault.status, headers=headers, text=page)
        if fault.status in (418, 429):
            return _Answer({"code": -1003, "msg": "Too many requests queued."}, fault.status, headers)
        return _Answer(wire.UNKNOWN_ERROR.body(), status=fault.status, headers=headers)

    @staticmethod
    def _parse_params(raw_query: str, raw_body: str) -> Params:
        query_pairs = parse_qsl(raw_query, keep_blank_values=True)
        query_names = [name for name, _ in query_pairs]
        if len(set(query_names)) != len(query_names):
            raise ApiError(wire.DUPLICATE_PARAMETER)
        values = dict(parse_qsl(raw_body, keep_blank_values=True))
        values.update(query_pairs)  # the query string wins on duplicates
        return Params(values)

    def _authenticate(self, ctx: _Context) -> None:
        """SIGNED endpoint security: API key, HMAC-SHA256 signature, then the timing rule."""
        key = ctx.headers.get("X-MBX-APIKEY")
        if key is None:
            raise ApiError(wire.REJECTED_API_KEY)
        if not _API_KEY_RE.match(key):
            raise ApiError(wire.BAD_API_KEY_FORMAT)
        if not hmac.compare_digest(key.encode(), self._api_key.encode()):
            raise ApiError(wire.REJECTED_API_KEY)
        signature = ctx.params.required("signature")
        timestamp = ctx.params.integer("timestamp")
        if timestamp is None:
            raise ApiError(wire.mandatory("timestamp"))
        recv_window = ctx.params.decimal("recvWindow")
        if recv_window is None:
            recv_window = DEFAULT_RECV_WINDOW
        if recv_window > MAX_RECV_WINDOW:
            raise ApiError(
                Refusal(
                    400,
                    -1102,
                    f"'recvWindow' contains unexpected value. Cannot be greater than {MAX_RECV_WINDOW}.",
                )
            )
        payload = _strip_signature(ctx.raw_query) + _strip_signature(ctx.raw_body)
        expected = hmac.new(self._api_secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(wire.BAD_SIGNATURE)
        # Timestamps may come in microseconds (16 digits) as well as milliseconds.
        stamp_ms = Decimal(timestamp) / 1000 if timestamp >= 10**14 else Decimal(timestamp)
        if stamp_ms >= ctx.now_ms + 1000:
            raise ApiError(wire.TIMESTAMP_AHEAD)
        if ctx.now_ms - stamp_ms > recv_window:
            raise ApiError(wire.TIMESTAMP_OUTSIDE_WINDOW)

    # -- routes -------------------------------------------------------------------------------------
    def _route_table(self) -> dict[tuple[str, str], _Route]:
        def public(handler: Handler, weight: Weigher) -> _Route:
            return _Route(handler, weight, signed=False)

        def signed(handler: Handler, weight: Weigher) -> _Route:
            return _Route(handler, weight, signed=True)

        p = API_PREFIX
        return {
            ("GET", p + "ping"): public(self._ping, _fixed(1)),
            ("GET", p + "time"): public(self._time, _fixed(1)),
            ("GET", p + "exchangeInfo"): public(self._exchange_info, _fixed(20)),
            ("GET", p + "depth"): public(self._depth, _depth_weight),
            ("GET", p + "klines"): public(self._klines, _fixed(2)),
            ("GET", p + "ticker/24hr"): public(self._ticker_24h, _ticker_24h_weight),
            ("GET", p + "ticker/price"): public(self._ticker_price, _single_or_four),
            ("GET", p + "ticker/bookTicker"): public(self._book_ticker, _single_or_four),
            ("GET", p + "account"): signed(self._account, _fixed(20)),
            ("POST", p + "order"): signed(self._new_order, _fixed(1)),
            ("POST", p + "order/test"): signed(
                self._test_order,
                lambda params: 20 if params.optional("computeCommissionRates") == "true" else 1,
            ),
            ("GET", p + "order"): signed(self._query_order, _fixed(4)),
            ("DELETE", p + "order"): signed(self._cancel_order, _fixed(1)),
            ("GET", p + "openOrders"): signed(
                self._open_orders, lambda params: 6 if "symbol" in params else 80
            ),
            ("DELETE", p + "openOrders"): signed(self._cancel_all, _fixed(1)),
            ("GET", p + "myTrades"): signed(self._my_trades, lambda params: 5 if "orderId" in params else 20),
            ("GET", p + "rateLimit/order"): signed(self._order_rate_limits, _fixed(40)),
        }

    def _book_param(self, params: Params) -> SymbolBook:
        symbol = params.required("symbol")
        book = self._books.get(symbol)
        if book is None:
            raise ApiError(wire.INVALID_SYMBOL)
        return book

    def _books_param(self, params: Params) -> list[SymbolBook] | None:
        """The books named by `symbol` or `symbols`; None when neither was sent (all symbols)."""
        if "symbol" in params:
            if params.optional("symbols") is not None:
                raise ApiError(Refusal(400, -1128, "Combination of optional parameters invalid."))
            return [self._book_param(params)]
        names = params.symbols_list()
        if names is None:
            return None
        books = [self._books.get(name) for name in names]
        if any(book is None for book in books):
            raise ApiError(wire.INVALID_SYMBOL)
        return [book for book in books if book is not None]

    # -- general and market data ----------------------------------------------------------------
    async def _ping(self, ctx: _Context) -> _Answer:
        return _Answer({})

    async def _time(self, ctx: _Context) -> _Answer:
        return _Answer({"serverTime": ctx.now_ms})

    async def _exchange_info(self, ctx: _Context) -> _Answer:
        books = self._books_param(ctx.params)
        chosen = list(self._books.values()) if books is None else books
        return _Answer(
            {
                "timezone": "UTC",
                "serverTime": ctx.now_ms,
                "rateLimits": [limit.as_json() for limit in self.rate_limits],
                "exchangeFilters": [],
                "symbols": [book.spec.exchange_info_json() for book in chosen],
            }
        )

    async def _depth(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        limit = ctx.params.limit(default=100, maximum=5000)
        ticker = book.engine.ticker(to_datetime(ctx.now_ms))
        tick = book.spec.tick_size
        qty = fmt(self._book_qty)
        bids = [[fmt(ticker.bid - i * tick), qty] for i in range(limit) if ticker.bid - i * tick > 0]
        asks = [[fmt(ticker.ask + i * tick), qty] for i in range(limit)]
        return _Answer({"lastUpdateId": book.update_id, "bids": bids, "asks": asks})

    async def _klines(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        interval = ctx.params.required("interval")
        interval_ms = KLINE_INTERVALS_MS.get(interval)
        if interval_ms is None:
            raise ApiError(wire.INVALID_INTERVAL)
        limit = ctx.params.limit(default=500, maximum=1000)
        start, end = ctx.params.integer("startTime"), ctx.params.integer("endTime")
        return _Answer(book.tape.klines(interval_ms, ctx.now_ms, start_ms=start, end_ms=end, limit=limit))

    def _ticker_24h_json(self, book: SymbolBook, now_ms: int) -> JsonObject:
        ticker = book.engine.ticker(to_datetime(now_ms))
        stats = book.tape.window_stats(now_ms - DAY_MS, now_ms)
        trades = [fill for fill in book.engine.trades() if now_ms - DAY_MS <= _fill_ms(fill) <= now_ms]
        qty = fmt(self._book_qty)
        return {
            "symbol": book.spec.wire_symbol,
            "priceChange": stats["priceChange"],
            "priceChangePercent": stats["priceChangePercent"],
            "weightedAvgPrice": stats["weightedAvgPrice"],
            "prevClosePrice": stats["prevClosePrice"],
            "lastPrice": fmt(ticker.last),
            "lastQty": stats["lastQty"],
            "bidPrice": fmt(ticker.bid),
            "bidQty": qty,
            "askPrice": fmt(ticker.ask),
            "askQty": qty,
            "openPrice": stats["openPrice"],
            "highPrice": stats["highPrice"],
            "lowPrice": stats["lowPrice"],
            "volume": stats["volume"],
            "quoteVolume": stats["quoteVolume"],
            "openTime": stats["openTime"],
            "closeTime": stats["closeTime"],
            "firstId": int(trades[0].trade_id) if trades else -1,
            "lastId": int(trades[-1].trade_id) if trades else -1,
            "count": len(trades),
        }

    async def _ticker_24h(self, ctx: _Context) -> _Answer:
        return self._per_symbol(ctx, lambda book: self._ticker_24h_json(book, ctx.now_ms))

    async def _ticker_price(self, ctx: _Context) -> _Answer:
        return self._per_symbol(
            ctx, lambda book: {"symbol": book.spec.wire_symbol, "price": fmt(book.engine.last_price or ZERO)}
        )

    async def _book_ticker(self, ctx: _Context) -> _Answer:
        def row(book: SymbolBook) -> JsonObject:
            ticker = book.engine.ticker(to_datetime(ctx.now_ms))
            qty = fmt(self._book_qty)
            return {
                "symbol": book.spec.wire_symbol,
                "bidPrice": fmt(ticker.bid),
                "bidQty": qty,
                "askPrice": fmt(ticker.ask),
                "askQty": qty,
            }

        return self._per_symbol(ctx, row)

    def _per_symbol(self, ctx: _Context, row: Callable[[SymbolBook], JsonObject]) -> _Answer:
        """An object for `symbol`, a list for `symbols` or for no symbol at all (as the docs say)."""
        books = self._books_param(ctx.params)
        if books is not None and "symbol" in ctx.params:
            return _Answer(row(books[0]))
        chosen = list(self._books.values()) if books is None else books
        return _Answer([row(book) for book in chosen])

    # -- account --------------------------------------------------------------------------------
    async def _account(self, ctx: _Context) -> _Answer:
        omit_zero = ctx.params.boolean("omitZeroBalances")
        balances = [
            {"asset": b.asset, "free": fmt(b.free), "locked": fmt(b.locked)}
            for b in self.balances().values()
            if not (omit_zero and b.total == 0)
        ]
        return _Answer(
            {
                "makerCommission": int(self._maker_fee * 10_000),
                "takerCommission": int(self._taker_fee * 10_000),
                "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {
                    "maker": fmt(self._maker_fee),
                    "taker": fmt(self._taker_fee),
                    "buyer": fmt(ZERO),
                    "seller": fmt(ZERO),
                },
                "canTrade": True,
                "canWithdraw": True,
                "canDeposit": True,
                "brokered": False,
                "requireSelfTradePrevention": False,
                "preventSor": False,
                "updateTime": ctx.now_ms,
                "accountType": "SPOT",
                "balances": balances,
                "permissions": ["SPOT"],
                "uid": 1,
            }
        )

    async def _order_rate_limits(self, ctx: _Context) -> _Answer:
        return _Answer(
            [{**limit.as_json(), "count": count} for limit, count in self._limiter.order_counts(ctx.now_ms)]
        )

    # -- orders ---------------------------------------------------------------------------------
    def _parse_new_order(
        self, ctx: _Context, book: SymbolBook
    ) -> tuple[OrderRequest, str, str, Decimal, str]:
        """Validate a new order's parameters as the venue does; returns the engine request, the
        wire type, the timeInForce, the quote quantity sent (or 0) and the response type."""
        p = ctx.params
        side_raw = p.required("side")
        if side_raw not in ("BUY", "SELL"):
            raise ApiError(wire.INVALID_SIDE)
        side = Side.BUY if side_raw == "BUY" else Side.SELL
        wire_type = p.required("type")
        if wire_type in wire.UNSUPPORTED_TYPE_MESSAGES:
            raise ApiError(Refusal(400, -2010, wire.UNSUPPORTED_TYPE_MESSAGES[wire_type]))
        if wire_type not in ("LIMIT", "LIMIT_MAKER", "MARKET"):
            raise ApiError(wire.INVALID_ORDER_TYPE)
        if p.optional("icebergQty") is not None:
            raise ApiError(Refusal(400, -2010, "Iceberg orders are not supported for this symbol."))
        if p.optional("trailingDelta") is not None:
            raise ApiError(Refusal(400, -2010, "Trailing stop orders are not supported for this symbol."))
        if p.optional("stopPrice") is not None:
            raise ApiError(wire.not_required("stopPrice"))
        resp_type = p.optional("newOrderRespType") or ("ACK" if wire_type == "LIMIT_MAKER" else "FULL")
        if resp_type not in _RESP_TYPES:
            raise ApiError(wire.invalid_value("newOrderRespType"))
        client_id = p.client_order_id("newClientOrderId") or wire.new_client_order_id()
        quantity, quote_qty, price = p.decimal("quantity"), p.decimal("quoteOrderQty"), p.decimal("price")
        tif = p.optional("timeInForce")

        if wire_type == "MARKET":
            if tif is not None:
                raise ApiError(wire.TIF_NOT_REQUIRED)
            if price is not None:
                raise ApiError(wire.not_required("price"))
            if quantity is None and quote_qty is None:
                raise ApiError(wire.one_of("quantity", "quoteOrderQty"))
            if quantity is not None and quote_qty is not None:
                raise ApiError(wire.not_required("quoteOrderQty"))
            if quantity is None:
                assert quote_qty is not None
                last = book.engine.last_price or ZERO
                quantity = book.engine.rules.floor_amount(quote_qty / last) if last > 0 else ZERO
            request = OrderRequest(book.spec.symbol, side, OrderType.MARKET, quantity, client_id)
            return request, wire_type, "GTC", quote_qty or ZERO, resp_type

        if wire_type == "LIMIT":
            if tif is None:
                raise ApiError(wire.mandatory("timeInForce"))
            if tif not in _TIME_IN_FORCE:
                raise ApiError(wire.INVALID_TIF)
        elif tif is not None:
            raise ApiError(wire.TIF_NOT_REQUIRED)
        if quote_qty is not None:
            raise ApiError(wire.not_required("quoteOrderQty"))
        if quantity is None:
            raise ApiError(wire.mandatory("quantity"))
        if price is None:
            raise ApiError(wire.mandatory("price"))
        request = OrderRequest(book.spec.symbol, side, OrderType.LIMIT, quantity, client_id, price)
        return request, wire_type, tif or "GTC", ZERO, resp_type

    async def _new_order(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        request, wire_type, tif, quote_qty, resp_type = self._parse_new_order(ctx, book)
        engine = book.engine
        last = engine.last_price
        if wire_type == "LIMIT_MAKER" and last is not None and request.price is not None:
            marketable = request.price >= last if request.side is Side.BUY else request.price <= last
            if marketable:
                raise ApiError(wire.WOULD_TAKE)
        throttled = self._limiter.admit_order(ctx.now_ms)
        if throttled is not None:
            return _throttled_answer(throttled)
        now = to_datetime(ctx.now_ms)
        try:
            order, fills = engine.place(request, now)
        except ExchangeError as error:
            raise ApiError(_engine_refusal(error, not_found=wire.UNKNOWN_ORDER)) from error
        meta = book.register(
            order, wire_type=wire_type, time_in_force=tif, orig_quote_qty=quote_qty, now_ms=ctx.now_ms
        )
        book.absorb_fills(fills, ctx.now_ms)
        if tif in ("IOC", "FOK") and order.status.is_active:
            # The engine fills in full or not at all, so both expire untouched when not marketable.
            order = engine.cancel(now, order_id=order.order_id)
            meta.expired = True
        working = order.status.is_active
        events = [OrderEvent("NEW", book, order, meta, ctx.now_ms, working)]
        events += [OrderEvent("TRADE", book, order, meta, ctx.now_ms, False, fill=fill) for fill in fills]
        if meta.expired:
            events.append(OrderEvent("EXPIRED", book, order, meta, ctx.now_ms, False))
        self._publish(events)
        headers = self._limiter.count_order(ctx.now_ms)
        return _Answer(
            book.new_order_json(order, meta, fills, resp_type=resp_type, now_ms=ctx.now_ms), headers=headers
        )

    async def _test_order(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        request, _, _, _, _ = self._parse_new_order(ctx, book)
        checked = book.engine.rules.check_order(request, reference_price=book.engine.last_price)
        if isinstance(checked, Failure):
            raise ApiError(Refusal(400, -1013, venue_filter_message(checked.failure())))
        if not ctx.params.boolean("computeCommissionRates"):
            return _Answer({})
        rates = {"maker": fmt(self._maker_fee), "taker": fmt(self._taker_fee)}
        zero = {"maker": fmt(ZERO), "taker": fmt(ZERO)}
        return _Answer(
            {
                "standardCommissionForOrder": rates,
                "specialCommissionForOrder": zero,
                "taxCommissionForOrder": zero,
                "discount": {
                    "enabledForAccount": False,
                    "enabledForSymbol": False,
                    "discountAsset": "BNB",
                    "discount": "0.25000000",
                },
            }
        )

    def _find_order(self, book: SymbolBook, params: Params, not_found: Refusal) -> tuple[Order, OrderMeta]:
        order_id = params.integer("orderId")
        client_id = params.optional("origClientOrderId")
        if order_id is None and client_id is None:
            raise ApiError(wire.one_of("origClientOrderId", "orderId"))
        try:
            if order_id is not None:
                order = book.engine.order(order_id=str(order_id))
                if client_id is not None and order.client_order_id != client_id:
                    raise ApiError(wire.CLIENT_ID_MISMATCH)
            else:
                order = book.engine.order(client_order_id=client_id)
        except OrderNotFound as error:
            raise ApiError(not_found) from error
        return order, book.meta(order)

    async def _query_order(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        order, meta = self._find_order(book, ctx.params, wire.NO_SUCH_ORDER)
        return _Answer(book.query_json(order, meta))

    async def _cancel_order(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        restriction = ctx.params.optional("cancelRestrictions")
        if restriction not in (None, "ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
            raise ApiError(Refusal(400, -1145, "Invalid cancelRestrictions"))
        cancel_id = ctx.params.client_order_id("newClientOrderId") or wire.new_client_order_id()
        order, meta = self._find_order(book, ctx.params, wire.UNKNOWN_ORDER)
        if not order.status.is_active or meta.expired:
            raise ApiError(wire.UNKNOWN_ORDER)
        status = "NEW" if order.filled == 0 else "PARTIALLY_FILLED"
        if restriction is not None and restriction != f"ONLY_{status}":
            raise ApiError(Refusal(400, -2011, "Order was not canceled due to cancel restrictions."))
        try:
            canceled = book.engine.cancel(to_datetime(ctx.now_ms), order_id=order.order_id)
        except ExchangeError as error:
            raise ApiError(_engine_refusal(error, not_found=wire.UNKNOWN_ORDER)) from error
        meta.update_ms = ctx.now_ms
        book.update_id += 1
        self._publish(
            [OrderEvent("CANCELED", book, canceled, meta, ctx.now_ms, True, cancel_client_id=cancel_id)]
        )
        return _Answer(book.cancel_json(canceled, meta, cancel_client_id=cancel_id, now_ms=ctx.now_ms))

    async def _cancel_all(self, ctx: _Context) -> _Answer:
        book = self._book_param(ctx.params)
        canceled = book.engine.cancel_all(to_datetime(ctx.now_ms))
        if not canceled:
            raise ApiError(wire.UNKNOWN_ORDER)
        cancel_id = wire.new_client_order_id()
        book.update_id += 1
        rows = []
        events = []
        for order in canceled:
            meta = book.meta(order)
            meta.update_ms = ctx.now_ms
            rows.append(book.cancel_json(order, meta, cancel_client_id=cancel_id, now_ms=ctx.now_ms))
            events.append(
                OrderEvent("CANCELED", book, order, meta, ctx.now_ms, True, cancel_client_id=cancel_id)
            )
        self._publish(events)
        return _Answer(rows)

    async def _open_orders(self, ctx: _Context) -> _Answer:
        books = [self._book_param(ctx.params)] if "symbol" in ctx.params else list(self._books.values())
        return _Answer(
            [
                book.query_json(order, book.meta(order))
                for book in books
                for order in book.engine.open_orders()
            ]
        )

    async def _my_trades(self, ctx: _Context) -> _Answer:
        p = ctx.params
        book = self._book_param(p)
        limit = p.limit(default=500, maximum=1000)
        order_id, from_id = p.integer("orderId"), p.integer("fromId")
        start, end = p.integer("startTime"), p.integer("endTime")
        if start is not None and end is not None and end - start > DAY_MS:
            raise ApiError(Refusal(400, -1127, "More than 24 hours between startTime and endTime."))
        if from_id is not None and (start is not None or end is not None):
            raise ApiError(Refusal(400, -1128, "Combination of optional parameters invalid."))
        fills = book.engine.trades()
        if order_id is not None:
            fills = [fill for fill in fills if fill.order_id == str(order_id)]
        if from_id is not None:
            fills = [fill for fill in fills if int(fill.trade_id) >= from_id][:limit]
        elif start is not None:
            fills = [f for f in fills if _fill_ms(f) >= start and (end is None or _fill_ms(f) <= end)][:limit]
        else:
            if end is not None:
                fills = [fill for fill in fills if _fill_ms(fill) <= end]
            fills = fills[-limit:]
        return _Answer([book.trade_json(fill) for fill in fills])


def _fill_ms(fill: Fill) -> int:
    return int(fill.timestamp.timestamp() * 1000)


def _refusal_answer(refusal: Refusal) -> _Answer:
    return _Answer(refusal.body(), status=refusal.status)


def _throttled_answer(throttled: Throttled) -> _Answer:
    return _Answer(
        throttled.refusal.body(),
        status=throttled.refusal.status,
        headers={"Retry-After": str(throttled.retry_after)},
    )


def _engine_refusal(error: ExchangeError, *, not_found: Refusal) -> Refusal:
    """The engine already speaks Binance (codes and messages); keep them, HTTP 400 as the venue."""
    if isinstance(error, OrderNotFound):
        return not_found
    if error.code is not None:
        return Refusal(400, error.code, error.message)
    if isinstance(error, InsufficientFunds):
        return Refusal(400, -2010, error.message)
    if isinstance(error, InvalidOrder):
        return Refusal(400, -1013, error.message)
    return Refusal(500, -1000, error.message)
