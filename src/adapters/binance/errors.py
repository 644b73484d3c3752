"""Translation of ccxt exceptions into the domain's error types.

ccxt's own classes are a lossy guide: it raises DDoSProtection for a -2015 once any private call
has succeeded, ExchangeNotAvailable for a 404, and keeps only the message (not the code) when it
matched by message. So the Binance body (`{"code": -2010, "msg": "..."}`), the HTTP status and the
headers decide first; ccxt's class is the fallback. The body comes from the HTTP reply our client
attaches to the exception (see client.py), else from the exception text.

This module never imports ccxt: classes are recognised by name along the MRO, so that importing
the adapter package stays cheap for profiles that never talk to Binance.
"""

from __future__ import annotations

import errno
import json
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from domain.errors import (
    AuthenticationError,
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    InvalidResponse,
    OrderNotFound,
    RateLimited,
)

CODE_UNKNOWN = -1000
CODE_TOO_MANY_REQUESTS = -1003
CODE_INVALID_TIMESTAMP = -1021
CODE_INVALID_SIGNATURE = -1022
CODE_INVALID_MESSAGE = -1013
CODE_NEW_ORDER_REJECTED = -2010
CODE_CANCEL_REJECTED = -2011
CODE_NO_SUCH_ORDER = -2013
CODE_BAD_API_KEY_FMT = -2014
CODE_REJECTED_MBX_KEY = -2015
CODE_SERVICE_SHUTTING_DOWN = -1016

_AUTH_CODES = frozenset({CODE_INVALID_SIGNATURE, CODE_BAD_API_KEY_FMT, CODE_REJECTED_MBX_KEY, -1002})
_NOT_FOUND_CODES = frozenset({CODE_CANCEL_REJECTED, CODE_NO_SUCH_ORDER})
# Venue-side trouble: "unknown error", "disconnected", "unexpected response", "timeout", "busy".
_UNAVAILABLE_CODES = frozenset({CODE_UNKNOWN, -1001, -1006, -1007, -1008, CODE_SERVICE_SHUTTING_DOWN})
_RATE_CODES = frozenset({CODE_TOO_MANY_REQUESTS, -1015})

_REPLY_ATTRIBUTE = "_gridbot_http_reply"
_SIGNATURE = re.compile(r"(signature=)[0-9a-zA-Z%]+")
_DDOS_STATUS = re.compile(r"^\S+ (418|429) ")
_HTTP_STATUS = re.compile(r"\b(?:GET|POST|PUT|DELETE) \S+ (\d{3}) ")
_BANNED_UNTIL = re.compile(r"banned until (\d{10,})")
# ccxt's message for a transport failure: "binance GET https://host:port/api/v3/path?query".
_REQUEST_URL = re.compile(r"\b(?:GET|POST|PUT|DELETE) (https?://\S+)")
# "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)" -> "wrong version number".
_SSL_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


class CircuitOpen(ExchangeUnavailable):
    """The adapter's circuit breaker refuses calls for a while: nothing was sent."""


class UnderMaintenance(ExchangeUnavailable):
    """The venue answered that it is in maintenance (HTTP 503 or a maintenance message)."""


@dataclass(frozen=True, slots=True)
class HttpReply:
    """The HTTP answer behind a ccxt exception."""

    status: int
    reason: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


def attach_reply(exc: BaseException, reply: HttpReply) -> None:
    setattr(exc, _REPLY_ATTRIBUTE, reply)


def reply_of(exc: BaseException) -> HttpReply | None:
    reply = getattr(exc, _REPLY_ATTRIBUTE, None)
    return reply if isinstance(reply, HttpReply) else None


@dataclass(frozen=True, slots=True)
class VenueFailure:
    """Everything we could read about one failed call."""

    status: int | None
    code: int | None
    message: str
    kinds: frozenset[str]  # names of the ccxt classes along the exception's MRO
    retry_after: float | None = None
    banned_until_ms: int | None = None
    # Why the venue could not be reached at all (no HTTP answer), in plain words; see network_reason.
    network: str | None = None

    @property
    def is_maintenance(self) -> bool:
        return (
            self.status == 503
            or self.code == CODE_SERVICE_SHUTTING_DOWN
            or "OnMaintenance" in self.kinds
            or "maintenance" in self.message.lower()
        )


def sanitize(text: str) -> str:
    """Drop request signatures from a message before it is logged or raised."""
    return _SIGNATURE.sub(r"\1***", text)


def _ccxt_kinds(exc: BaseException) -> frozenset[str]:
    return frozenset(cls.__name__ for cls in type(exc).__mro__ if cls.__module__.startswith("ccxt"))


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, what it was raised from or while handling, and the OS error an aiohttp connector
    error wraps (its `os_error` / `certificate_error`), breadth first, each once."""
    found: list[BaseException] = []
    todo = [exc]
    while todo and len(found) < 32:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        for name in ("__cause__", "__context__", "os_error", "certificate_error"):
            linked = getattr(current, name, None)
            if isinstance(linked, BaseException):
                todo.append(linked)
    return found


def _class_names(chain: list[BaseException]) -> frozenset[str]:
    return frozenset(cls.__name__ for exc in chain for cls in type(exc).__mro__)


def _endpoint(chain: list[BaseException]) -> tuple[str, int | None] | None:
    """Host and port of the connection that failed: aiohttp's connector error names them, else
    the URL in ccxt's message does. Never the URL itself (its query may be signed)."""
    for exc in chain:
        host = getattr(exc, "host", None)
        if type(exc).__module__.startswith("aiohttp") and isinstance(host, str) and host:
            port = getattr(exc, "port", None)
            return host, port if isinstance(port, int) else None
    for exc in chain:
        match = _REQUEST_URL.search(str(exc))
        if match is None:
            continue
        parts = urlsplit(match.group(1))
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.hostname:
            return parts.hostname, port or (443 if parts.scheme == "https" else 80)
    return None


def _errno_in(chain: list[BaseException], kind: type[OSError], code: int) -> bool:
    return any(isinstance(exc, kind) or (isinstance(exc, OSError) and exc.errno == code) for exc in chain)


def network_reason(exc: BaseException, *, timeout_s: float | None = None) -> str | None:
    """Why a request got no HTTP answer at all, in plain words, from the exception chain ccxt and
    aiohttp build: "DNS lookup failed (host: ...)", "connection refused (host:port)",
    "timed out after N s (host:port)", "TLS/SSL handshake failed (host:port: ...)", and a few
    rarer ones. None when the chain shows no transport failure (the venue answered something)."""
    chain = _chain(exc)
    names = _class_names(chain)
    endpoint = _endpoint(chain)
    host = None if endpoint is None else endpoint[0]
    address = None
    if endpoint is not None:
        shown = f"[{host}]" if host is not None and ":" in host else host
        address = shown if endpoint[1] is None else f"{shown}:{endpoint[1]}"

    def detail(*parts: str | None) -> str:
        kept = [part for part in parts if part]
        return f" ({': '.join(kept)})" if kept else ""

    dns = next((e for e in chain if isinstance(e, socket.gaierror)), None)
    if dns is not None or "ClientConnectorDNSError" in names:
        return "DNS lookup failed" + detail(host, None if dns is None else dns.strerror)
    # ssl's own error (certificate errors included), not aiohttp's wrapper of it.
    tls = next(
        (e for e in chain if isinstance(e, ssl.SSLError) and not type(e).__module__.startswith("aiohttp")),
        None,
    )
    if tls is not None or "ClientSSLError" in names:
        why = None if tls is None else _SSL_NOISE.sub("", str(tls))
        return "TLS/SSL handshake failed" + detail(address, why or None)
    if any(isinstance(e, TimeoutError) for e in chain) or "RequestTimeout" in names:
        after = "" if timeout_s is None else f" after {timeout_s:g} s"
        return "timed out" + after + detail(address)
    if _errno_in(chain, ConnectionRefusedError, errno.ECONNREFUSED):
        return "connection refused" + detail(address)
    if _errno_in(chain, ConnectionResetError, errno.ECONNRESET):
        return "connection reset by the venue" + detail(address)
    if "ServerDisconnectedError" in names:
        return "the venue closed the connection without answering" + detail(address)
    os_error = next((e for e in chain if isinstance(e, OSError)), None)
    if os_error is not None:
        return "network error" + detail(address, os_error.strerror or type(os_error).__name__)
    if "ClientConnectionError" in names:
        return "connection failed" + detail(address)
    return None


def _json_object_in(text: str | None) -> Mapping[str, object] | None:
    """The first JSON object in `text` (ccxt puts the body at the end of its messages)."""
    if not text:
        return None
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            return value
        start = text.find("{", start + 1)
    # A one-element list such as [{"code":-2011,...}] (batch answers).
    list_start = text.find("[{")
    if list_start != -1:
        try:
            value, _ = decoder.raw_decode(text, list_start)
        except ValueError:
            return None
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            return value[0]
    return None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def describe_failure(exc: BaseException, *, timeout_s: float | None = None) -> VenueFailure:
    """Read status, Binance code and message, and Retry-After from a ccxt (or network) exception.
    A request that got no HTTP answer at all is described by `network_reason` (`timeout_s`, the
    request timeout, goes into a timeout's message)."""
    reply = reply_of(exc)
    text = str(exc)
    body = _json_object_in(reply.body if reply is not None and reply.body else None) or _json_object_in(text)
    code = _int_or_none(body.get("code")) if body is not None else None
    msg = body.get("msg") if body is not None else None
    status: int | None = reply.status if reply is not None else None
    if status is None:
        match = _DDOS_STATUS.match(text) or _HTTP_STATUS.search(text)
        status = int(match.group(1)) if match else None
    if isinstance(msg, str) and msg:
        message = msg
    elif reply is not None and reply.status >= 400:
        detail = (reply.body or "").strip()[:200]
        message = f"HTTP {reply.status} {reply.reason}" + (f": {detail}" if detail else "")
    else:
        message = text or type(exc).__name__
    network = network_reason(exc, timeout_s=timeout_s) if status is None else None
    if network is not None:
        message = network
    banned = _BANNED_UNTIL.search(message)
    return VenueFailure(
        status=status,
        code=code if code not in (None, 0, 200) else None,
        message=sanitize(message),
        kinds=_ccxt_kinds(exc),
        retry_after=_retry_after(reply.header("Retry-After")) if reply is not None else None,
        banned_until_ms=int(banned.group(1)) if banned else None,
        network=None if network is None else sanitize(network),
    )


def _is_filter_failure(message: str) -> bool:
    lowered = message.lower()
    return "filter failure" in lowered or "lot_size" in lowered or "price_filter" in lowered


def to_domain_error(failure: VenueFailure, *, now_ms: int | None = None) -> ExchangeError:
    """The domain error for a failure. Binance's status and code decide; ccxt's class is the
    fallback. Unknown failures become a plain ExchangeError (not retried)."""
    status, code, message, kinds = failure.status, failure.code, failure.message, failure.kinds
    retry_after = failure.retry_after
    if retry_after is None and failure.banned_until_ms is not None and now_ms is not None:
        retry_after = max(0.0, (failure.banned_until_ms - now_ms) / 1000)

    if failure.network is not None:
        return ExchangeUnavailable(message)  # nothing answered: DNS, refused, timeout, TLS...
    if status in (418, 429) or code in _RATE_CODES:
        prefix = "IP banned by Binance (HTTP 418): " if status == 418 else ""
        return RateLimited(prefix + message, code=code, retry_after=retry_after)
    if code is not None:
        if code in _AUTH_CODES:
            return AuthenticationError(message, code=code)
        if code == CODE_NEW_ORDER_REJECTED:
            lowered = message.lower()
            if "insufficient balance" in lowered:
                return InsufficientFunds(message, code=code)
            if "duplicate" in lowered:
                return DuplicateOrder(message, code=code)
            return InvalidOrder(message, code=code)
        if code in _NOT_FOUND_CODES:
            return OrderNotFound(message, code=code)
        if code == CODE_INVALID_MESSAGE:
            return InvalidOrder(message, code=code)
        if code in _UNAVAILABLE_CODES:
            return (
                UnderMaintenance(message, code=code)
                if failure.is_maintenance
                else ExchangeUnavailable(message, code=code)
            )
    if failure.is_maintenance:
        return UnderMaintenance(message, code=code)
    if status is not None and status >= 500:
        return ExchangeUnavailable(message, code=code)
    if code is None and status is not None and 400 <= status < 500:
        # A 4xx without a Binance body (WAF 403, a proxy's 404): ours to fix, not to retry.
        if status in (401, 407):
            return AuthenticationError(message)
        return ExchangeError(message)

    # ccxt's class, most specific first.
    if {"AuthenticationError", "PermissionDenied", "AccountSuspended"} & kinds:
        return AuthenticationError(message, code=code)
    if "InsufficientFunds" in kinds:
        return InsufficientFunds(message, code=code)
    if "DuplicateOrderId" in kinds:
        return DuplicateOrder(message, code=code)
    if "OrderNotFound" in kinds:
        return OrderNotFound(message, code=code)
    if "InvalidOrder" in kinds or ("BadRequest" in kinds and _is_filter_failure(message)):
        return InvalidOrder(message, code=code)
    if {"RateLimitExceeded", "DDoSProtection"} & kinds:
        return RateLimited(message, code=code, retry_after=retry_after)
    if "InvalidNonce" in kinds:
        return ExchangeError(message, code=code if code is not None else CODE_INVALID_TIMESTAMP)
    if {"NetworkError", "RequestTimeout", "ExchangeNotAvailable"} & kinds:
        return ExchangeUnavailable(message, code=code)
    if {"BadResponse", "NullResponse"} & kinds:
        return InvalidResponse(message, code=code)
    return ExchangeError(message, code=code)


def is_clock_skew(error: ExchangeError) -> bool:
    """Binance -1021: our timestamp is outside recvWindow; resync and try once more."""
    return error.code == CODE_INVALID_TIMESTAMP


def map_exception(
    exc: BaseException, *, now_ms: int | None = None, timeout_s: float | None = None
) -> ExchangeError:
    """Any exception out of a ccxt call -> a domain error. Network failures (no HTTP answer:
    DNS, refused, timeout, TLS, reset, whether ccxt wrapped them or not) are transient
    ExchangeUnavailable whose message says why in plain words (`network_reason`; `timeout_s` is
    the request timeout); anything else from inside ccxt means the venue sent something ccxt
    could not digest."""
    if isinstance(exc, ExchangeError):
        return exc
    if not _ccxt_kinds(exc):
        reason = network_reason(exc, timeout_s=timeout_s)
        if reason is not None:
            return ExchangeUnavailable(sanitize(reason))
        if isinstance(exc, TimeoutError | OSError | ConnectionError):
            return ExchangeUnavailable(f"network failure: {sanitize(str(exc)) or type(exc).__name__}")
        if type(exc).__module__.startswith("aiohttp"):
            return ExchangeUnavailable(f"HTTP client failure: {sanitize(str(exc)) or type(exc).__name__}")
        return InvalidResponse(f"unreadable venue answer ({type(exc).__name__}: {sanitize(str(exc))})")
    return to_domain_error(describe_failure(exc, timeout_s=timeout_s), now_ms=now_ms)
