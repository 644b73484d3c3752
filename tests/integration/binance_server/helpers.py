"""Clients for the self-tests: the real ccxt client pointed at the stand-in, and a raw HTTP
client that signs requests itself (for what ccxt hides: headers, statuses, odd parameters)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import ccxt.async_support as ccxt

from support.binance_server import FakeBinance

API_KEY = "test-api-key"
API_SECRET = "test-api-secret"
SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False}


def make_exchange(api_url: str, *, api_key: str = API_KEY, secret: str = API_SECRET) -> Any:
    exchange = ccxt.binance(
        {"apiKey": api_key, "secret": secret, "enableRateLimit": False, "options": dict(SPOT_ONLY)}
    )
    exchange.urls["api"]["public"] = api_url
    exchange.urls["api"]["private"] = api_url
    exchange.timeout_on_exit = 0  # ccxt waits 250 ms on close() for TLS teardown; loopback is plain HTTP
    return exchange


@dataclass(frozen=True, slots=True)
class RawReply:
    status: int
    headers: Mapping[str, str]
    body: Any


class RawClient:
    """aiohttp against the stand-in, signing like the docs' HMAC example."""

    def __init__(self, session: aiohttp.ClientSession, server: FakeBinance) -> None:
        self._session = session
        self._server = server

    def sign(self, params: Mapping[str, str], *, secret: str = API_SECRET) -> str:
        query = urlencode(params)
        signature = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        return f"{query}&signature={signature}"

    def signed_query(self, params: Mapping[str, str] | None = None, *, timestamp: int | None = None) -> str:
        stamped = {
            **(params or {}),
            "timestamp": str(timestamp if timestamp is not None else self._server.server_time_ms()),
        }
        return self.sign(stamped)

    async def request(
        self,
        method: str,
        endpoint: str,
        *,
        query: str = "",
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RawReply:
        url = f"{self._server.api_url}/{endpoint}" + (f"?{query}" if query else "")
        sent_headers = dict(headers or {})
        if body is not None:
            sent_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        async with self._session.request(method, url, data=body, headers=sent_headers) as response:
            text = await response.text()
            return RawReply(response.status, dict(response.headers), json.loads(text, parse_float=Decimal))

    async def public(self, endpoint: str, query: str = "") -> RawReply:
        return await self.request("GET", endpoint, query=query)

    async def signed(
        self, method: str, endpoint: str, params: Mapping[str, str] | None = None, *, in_body: bool = False
    ) -> RawReply:
        payload = self.signed_query(params)
        headers = {"X-MBX-APIKEY": API_KEY}
        if in_body:
            return await self.request(method, endpoint, body=payload, headers=headers)
        return await self.request(method, endpoint, query=payload, headers=headers)
