"""The domain's error types.

Adapters translate every venue or library failure into one of these, keeping the venue's own
message, so no ccxt/websockets/sqlalchemy exception ever reaches the application.
Expected business outcomes (a filter or risk rule rejecting an order) are `Rejection` values
inside a `returns.Result`, not exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass


class DomainError(Exception):
    """Base of every error the domain and its ports speak of."""


class ExchangeError(DomainError):
    """The venue refused or failed a request. `code` is the venue's error code when it gave one."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message if self.code is None else f"{self.message} (code {self.code})"


class AuthenticationError(ExchangeError):
    """API key missing, malformed, revoked, lacking permission, or signature invalid."""


class InsufficientFunds(ExchangeError):
    """The account lacks the free balance the order needs."""


class OrderNotFound(ExchangeError):
    """The venue knows no such order (unknown id, or already gone)."""


class InvalidOrder(ExchangeError):
    """The order breaks a market filter or is otherwise malformed (e.g. Binance -1013)."""


class DuplicateOrder(InvalidOrder):
    """An order with this client order id is already known to the venue."""


class RateLimited(ExchangeError):
    """Request weight or order-count limit reached; `retry_after` seconds if the venue said."""

    def __init__(self, message: str, *, code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class ExchangeUnavailable(ExchangeError):
    """Network failure, timeout, 5xx, maintenance or an open circuit breaker: retry later."""


class OrderStateUnknown(ExchangeUnavailable):
    """The venue failed while placing an order: it may or may not exist. Look it up by client id."""


class InvalidResponse(ExchangeError):
    """The venue answered with a payload that is missing fields or holds non-numeric values."""


class StorageError(DomainError):
    """The bot's own database failed (locked, disk full, corrupt): nothing was booked."""


class ConfigurationError(DomainError):
    """A setting is invalid. `key` names the offending setting as a user writes it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class GridInUse(DomainError):
    """Another bot process holds this grid (same account and symbol, same database)."""


class DeliveryFailed(DomainError):
    """An alert did not reach its channel (network failure, timeout, or a non-2xx answer)."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a rule refused an order. `rule` is a stable identifier (e.g. 'LOT_SIZE', 'MAX_OPEN_ORDERS')."""

    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"
