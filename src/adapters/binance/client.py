"""The ccxt client factory: ccxt.async_support.binance, spot only, pointed at our URL, with two hooks.

ccxt is imported here lazily (inside the factory): it costs about a second and 100 MB, and the
mock profile must never pay for it.

The subclass adds what ccxt lacks, per request rather than through `last_response_headers`
(shared by concurrent calls):
* `milliseconds` (what ccxt signs with) reads the Clock port;
* `fetch2` awaits the rate limiter before anything is signed, so a wait never stales a timestamp;
* `handle_errors` (ccxt calls it for every HTTP answer, success or not) reports status and headers
  to the limiter, and pins the HTTP reply (status, headers, body) on any exception ccxt raises, so
  errors.py can read the Binance code and Retry-After of *this* request;
* `publicGetExchangeInfo` keeps the raw exchangeInfo, whose `rateLimits` ccxt drops, so the one
  request `load_markets` makes also gives us the limits.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from adapters.binance.config import BinanceConfig
from adapters.binance.errors import HttpReply, attach_reply
from domain.ports import Clock

# ccxt loads every market type unless told otherwise: these options make load_markets() cost a
# single GET /api/v3/exchangeInfo (BINANCE_FACTS section 6).
SPOT_ONLY_OPTIONS: Mapping[str, object] = {
    "fetchMarkets": {"types": ["spot"]},
    "fetchCurrencies": False,
    "fetchMargins": False,
}


class RequestHooks(Protocol):
    async def before_request(self, method: str, path: str, params: Mapping[str, object]) -> None:
        """Called before a request is signed and sent; may wait."""
        ...

    def after_response(self, reply: HttpReply) -> None:
        """Called for every HTTP answer, before ccxt interprets it."""
        ...


class CcxtBinance(Protocol):
    """The part of ccxt's binance client the adapter uses (ccxt itself is untyped)."""

    markets: dict[str, Any] | None
    options: dict[str, Any]
    gridbot_exchange_info: dict[str, Any] | None

    def milliseconds(self) -> int: ...
    def market(self, symbol: str) -> dict[str, Any]: ...
    async def load_markets(self, reload: bool = False) -> dict[str, Any]: ...
    async def fetch_time(self, params: dict[str, Any] | None = None) -> int: ...
    async def fetch_ticker(self, symbol: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...
    async def fetch_balance(self, params: dict[str, Any] | None = None) -> dict[str, Any]: ...
    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: str,
        price: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...
    async def cancel_order(
        self, id: str, symbol: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...
    async def fetch_order(
        self, id: str | None, symbol: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...
    async def fetch_open_orders(
        self,
        symbol: str,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]: ...
    async def fetch_my_trades(
        self,
        symbol: str,
        since: int | None = None,
        limit: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]: ...
    async def close(self) -> None: ...


@functools.cache
def _client_class() -> Any:
    import ccxt.async_support as ccxt_async

    class GridbotBinance(ccxt_async.binance):  # type: ignore[misc]
        gridbot_hooks: RequestHooks | None = None
        gridbot_clock: Clock | None = None
        gridbot_exchange_info: dict[str, Any] | None = None
        _gridbot_reply: HttpReply | None = None

        def milliseconds(self) -> int:
            clock = self.gridbot_clock
            if clock is None:
                return int(super().milliseconds())
            return int(clock.now().timestamp() * 1000)

        async def fetch2(
            self,
            path: str,
            api: Any = None,
            method: str = "GET",
            params: Any = None,
            config: Any = None,
        ) -> Any:
            if params is None:
                params = {}
            hooks = self.gridbot_hooks
            if hooks is not None:
                await hooks.before_request(method, path, params if type(params) is dict else {})
            return await super().fetch2(
                path, ["public"] if api is None else api, method, params, {} if config is None else config
            )

        def handle_errors(
            self,
            code: int,
            reason: str,
            url: str,
            method: str,
            headers: Any,
            body: Any,
            response: Any,
            request_headers: Any,
            request_body: Any,
        ) -> Any:
            # Runs for every answer: the usual types (int, str, dict) pass through unconverted.
            reply = HttpReply(
                code if type(code) is int else int(code),
                reason if isinstance(reason, str) else str(reason or ""),
                headers if isinstance(headers, dict) else dict(headers or {}),
                body if isinstance(body, str) else None,
            )
            # handle_errors and handle_http_status_code run back to back with no await between
            # them, so this attribute cannot be overwritten by a concurrent request meanwhile.
            self._gridbot_reply = reply
            hooks = self.gridbot_hooks
            if hooks is not None:
                hooks.after_response(reply)
            try:
                return super().handle_errors(
                    code, reason, url, method, headers, body, response, request_headers, request_body
                )
            except Exception as exc:
                attach_reply(exc, reply)
                raise

        def handle_http_status_code(self, code: int, reason: str, url: str, method: str, body: Any) -> Any:
            try:
                return super().handle_http_status_code(code, reason, url, method, body)
            except Exception as exc:
                if self._gridbot_reply is not None:
                    attach_reply(exc, self._gridbot_reply)
                raise

        async def publicGetExchangeInfo(self, params: Any = None) -> Any:
            info = await super().publicGetExchangeInfo({} if params is None else params)
            if isinstance(info, dict):
                self.gridbot_exchange_info = info
            return info

    return GridbotBinance


def _quiet_ccxt_debug_log() -> None:
    """ccxt logs every request at DEBUG through the standard library, X-MBX-APIKEY header
    included; keep that logger above DEBUG whatever level the application chooses."""
    ccxt_log = logging.getLogger("ccxt")
    if ccxt_log.getEffectiveLevel() < logging.INFO:
        ccxt_log.setLevel(logging.INFO)


def create_client(config: BinanceConfig, hooks: RequestHooks, clock: Clock) -> CcxtBinance:
    """One configured ccxt client. ccxt's own rate limiter is off (we limit by the venue's
    headers) and so are ccxt's retries: nothing in ccxt sleeps. ccxt reads the time (for request
    timestamps) from `clock`, like the rest of the bot: the system clock in production, the
    simulated one in tests, against a venue that shares it."""
    _quiet_ccxt_debug_log()
    client: CcxtBinance = _client_class()(
        {
            "apiKey": config.api_key,
            "secret": config.api_secret,
            "enableRateLimit": False,
            "timeout": int(config.request_timeout_s * 1000),
            "options": {
                **SPOT_ONLY_OPTIONS,
                "recvWindow": config.recv_window_ms,
                "adjustForTimeDifference": False,
                "timeDifference": 0,
            },
        }
    )
    raw: Any = client
    raw.urls["api"]["public"] = config.api_url
    raw.urls["api"]["private"] = config.api_url
    # ccxt consults its spot-only error table only for api.binance.com / testnet URLs; make the
    # codes map the same way whatever the URL (BINANCE_FACTS section 3).
    raw.exceptions["exact"].update(raw.exceptions["spot"]["exact"])
    if config.api_url.startswith("http://"):
        # ccxt sleeps 250 ms in close() to let TLS transports shut down; plain HTTP has none.
        raw.timeout_on_exit = 0
    raw.gridbot_hooks = hooks
    raw.gridbot_clock = clock
    return client
