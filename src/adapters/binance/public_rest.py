"""Binance's public REST market data, unsigned, without ccxt: for paper trading, which needs the
market rules (`exchangeInfo`) and, when no stream can be had, a polled ticker.

It holds no key and cannot sign, so nothing it sends can be a signed request. Requests go out
through the standard library in a worker thread (one at start, then one per poll interval at
most while streams are down), so paper trading does not pay for ccxt's import.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from urllib.parse import urlencode

import orjson

from adapters.binance.config import API_PATH
from adapters.binance.parsing import as_list, as_payload, parse_market_rules, parse_ticker
from domain.errors import ExchangeError, ExchangeUnavailable, InvalidResponse, RateLimited
from domain.models import Ticker
from domain.rules import MarketRules


class PublicBinanceRest:
    """GET-only access to /api/v3 market data under `rest_url` (e.g. https://api.binance.com)."""

    def __init__(self, rest_url: str, *, timeout_s: float = 10.0) -> None:
        if not rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must start with http:// or https://, got {rest_url!r}")
        self._api = rest_url.rstrip("/") + API_PATH
        self._timeout_s = timeout_s
        self.requests = 0

    async def market_rules(self, symbol: str) -> MarketRules:
        """The symbol's filters from `GET /api/v3/exchangeInfo?symbol=...` (weight 20)."""
        info = as_payload(await self._get("exchangeInfo", symbol=_wire(symbol)), "exchangeInfo")
        for raw in as_list(info.get("symbols"), "exchangeInfo.symbols"):
            entry = as_payload(raw, "exchangeInfo.symbols[]")
            if entry.get("symbol") == _wire(symbol):
                return parse_market_rules(symbol, entry)
        raise ExchangeError(f"unknown symbol {symbol!r} on Binance spot", code=-1121)

    async def fetch_ticker(self, symbol: str) -> Ticker:
        """`GET /api/v3/ticker/24hr?symbol=...` (weight 2)."""
        return parse_ticker(
            symbol, as_payload(await self._get("ticker/24hr", symbol=_wire(symbol)), "ticker")
        )

    async def _get(self, path: str, **params: str) -> object:
        url = f"{self._api}/{path}?{urlencode(params)}"
        self.requests += 1
        body = await asyncio.to_thread(self._fetch, url)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidResponse(f"GET {path}: the answer is not JSON") from None

    def _fetch(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310 - http(s) checked above
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as answer:  # noqa: S310 - http(s) checked above
                body: bytes = answer.read()
                return body
        except urllib.error.HTTPError as exc:
            raise _http_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ExchangeUnavailable(f"Binance public REST unreachable: {reason}") from None


def _wire(symbol: str) -> str:
    return symbol.replace("/", "").upper()


def _http_error(exc: urllib.error.HTTPError) -> ExchangeError:
    text = exc.read().decode("utf-8", errors="replace")[:300]
    code: int | None = None
    message = f"HTTP {exc.code}"
    try:
        body = orjson.loads(text)
        if isinstance(body, dict):
            code = body.get("code") if isinstance(body.get("code"), int) else None
            message = str(body.get("msg", message))
    except orjson.JSONDecodeError:
        pass
    if exc.code in (418, 429):
        retry_after = exc.headers.get("Retry-After")
        seconds = float(retry_after) if retry_after and retry_after.strip().isdigit() else None
        return RateLimited(message, code=code, retry_after=seconds)
    if exc.code >= 500:
        return ExchangeUnavailable(message, code=code)
    return ExchangeError(message, code=code)
