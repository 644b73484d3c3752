"""Settings of the Binance spot REST adapter, already validated and unwrapped by the composition root."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

API_PATH = "/api/v3"


@dataclass(frozen=True, slots=True)
class BinanceConfig:
    """`rest_url` is the venue root (e.g. "https://testnet.binance.vision"); the adapter appends /api/v3.

    The key and secret are plain strings here: `__repr__` redacts them so that a config object
    that ends up in a log line or a traceback never shows them.
    """

    api_key: str
    api_secret: str
    rest_url: str
    recv_window_ms: int = 5000
    request_timeout_s: float = 10.0
    weight_budget_fraction: Decimal = Decimal("0.8")
    markets_ttl_s: float = 86400.0
    time_resync_s: float = 300.0

    def __post_init__(self) -> None:
        if not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url must start with http:// or https://, got {self.rest_url!r}")
        if not 0 < self.recv_window_ms <= 60000:
            raise ValueError("recv_window_ms must be in (0, 60000] (Binance's maximum)")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")
        if not Decimal(0) < self.weight_budget_fraction <= Decimal(1):
            raise ValueError("weight_budget_fraction must be in (0, 1]")
        if self.markets_ttl_s <= 0 or self.time_resync_s <= 0:
            raise ValueError("markets_ttl_s and time_resync_s must be positive")

    @property
    def api_url(self) -> str:
        return self.rest_url.rstrip("/") + API_PATH

    def __repr__(self) -> str:
        return (
            f"BinanceConfig(api_key={_redact(self.api_key)}, api_secret={_redact(self.api_secret)}, "
            f"rest_url={self.rest_url!r}, recv_window_ms={self.recv_window_ms}, "
            f"request_timeout_s={self.request_timeout_s}, "
            f"weight_budget_fraction={self.weight_budget_fraction}, markets_ttl_s={self.markets_ttl_s}, "
            f"time_resync_s={self.time_resync_s})"
        )

    __str__ = __repr__


def _redact(secret: str) -> str:
    return "'***'" if secret else "''"
