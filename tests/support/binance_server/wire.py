"""Binance wire conventions: error bodies, decimal strings, parameter parsing.

Everything here follows the official spot REST docs (rest-api.md, errors.md): errors are
`{"code": -NNNN, "msg": "..."}`, decimals travel as strings with 8 fractional digits, and
parameter problems carry the docs' own messages so clients map them as they would in production.
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

EIGHT_PLACES = Decimal("0.00000001")
DECIMAL_PATTERN = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_DECIMAL_RE = re.compile(DECIMAL_PATTERN)
CLIENT_ORDER_ID_PATTERN = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_CLIENT_ORDER_ID_RE = re.compile(CLIENT_ORDER_ID_PATTERN)
_ID_ALPHABET = string.ascii_letters + string.digits

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    """An answer the venue gives instead of a result: HTTP status plus the JSON error body."""

    status: int
    code: int
    msg: str

    def body(self) -> JsonObject:
        return {"code": self.code, "msg": self.msg}


class ApiError(Exception):
    """Raised inside a handler to answer with `refusal`."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.msg)
        self.refusal = refusal


def fmt(value: Decimal) -> str:
    """A decimal as Binance prints it: fixed point, 8 fractional digits."""
    return f"{value.quantize(EIGHT_PLACES):f}"


def new_client_order_id() -> str:
    """A random-looking 22-character id like the ones Binance generates ("6gCrw2kRUAF9CvJDGP16IP")."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


# -- errors with the docs' wording --------------------------------------------------------------
def mandatory(name: str) -> Refusal:
    return Refusal(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def one_of(first: str, second: str) -> Refusal:
    return Refusal(400, -1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!")


def not_required(name: str) -> Refusal:
    return Refusal(400, -1106, f"Parameter '{name}' sent when not required.")


def illegal_chars(name: str, legal_range: str) -> Refusal:
    return Refusal(
        400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal_range}'."
    )


def invalid_value(name: str) -> Refusal:
    return Refusal(400, -1130, f"Data sent for parameter '{name}' is not valid.")


INVALID_SYMBOL = Refusal(400, -1121, "Invalid symbol.")
INVALID_SIDE = Refusal(400, -1117, "Invalid side.")
INVALID_ORDER_TYPE = Refusal(400, -1116, "Invalid orderType.")
INVALID_TIF = Refusal(400, -1115, "Invalid timeInForce.")
TIF_NOT_REQUIRED = Refusal(400, -1114, "TimeInForce parameter sent when not required.")
INVALID_INTERVAL = Refusal(400, -1120, "Invalid interval.")
DUPLICATE_PARAMETER = Refusal(400, -1101, "Duplicate values for a parameter detected.")
UNKNOWN_ORDER = Refusal(400, -2011, "Unknown order sent.")
NO_SUCH_ORDER = Refusal(400, -2013, "Order does not exist.")
CLIENT_ID_MISMATCH = Refusal(400, -2039, "Client order ID is not correct for this order ID.")
NOT_FOUND = Refusal(404, -1099, "Not found, authenticated, or authorized")
UNKNOWN_ERROR = Refusal(500, -1000, "An unknown error occurred while processing the request.")
MAINTENANCE = Refusal(503, 1, "System is under maintenance.")
BAD_API_KEY_FORMAT = Refusal(401, -2014, "API-key format invalid.")
REJECTED_API_KEY = Refusal(401, -2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = Refusal(400, -1022, "Signature for this request is not valid.")
TIMESTAMP_AHEAD = Refusal(400, -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
TIMESTAMP_OUTSIDE_WINDOW = Refusal(400, -1021, "Timestamp for this request is outside of the recvWindow.")
WOULD_TAKE = Refusal(400, -2010, "Order would immediately match and take.")

UNSUPPORTED_TYPE_MESSAGES: Mapping[str, str] = {
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}


# -- parameter access ---------------------------------------------------------------------------
class Params:
    """Request parameters from the query string and the form body (the query wins on duplicates)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def as_dict(self) -> dict[str, str]:
        return dict(self._values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._values.get(name, "") != ""

    def optional(self, name: str) -> str | None:
        value = self._values.get(name)
        return None if value is None or value == "" else value

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ApiError(mandatory(name))
        return value

    def decimal(self, name: str) -> Decimal | None:
        raw = self.optional(name)
        if raw is None:
            return None
        if not _DECIMAL_RE.match(raw):
            raise ApiError(illegal_chars(name, DECIMAL_PATTERN))
        try:
            return Decimal(raw)
        except InvalidOperation as exc:  # pragma: no cover - the pattern already rules this out
            raise ApiError(illegal_chars(name, DECIMAL_PATTERN)) from exc

    def integer(self, name: str) -> int | None:
        raw = self.optional(name)
        if raw is None:
            return None
        if not raw.lstrip("-").isdigit():
            raise ApiError(illegal_chars(name, "^-?[0-9]{1,20}$"))
        return int(raw)

    def limit(self, *, default: int, maximum: int) -> int:
        value = self.integer("limit")
        if value is None:
            return default
        if value <= 0:
            raise ApiError(invalid_value("limit"))
        return min(value, maximum)

    def boolean(self, name: str, *, default: bool = False) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.lower() not in {"true", "false"}:
            raise ApiError(invalid_value(name))
        return raw.lower() == "true"

    def symbols_list(self) -> list[str] | None:
        """The `symbols` parameter: a JSON array such as ["BTCUSDT","BNBUSDT"]."""
        raw = self.optional("symbols")
        if raw is None:
            return None
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(Refusal(400, -1135, "JSON sent for parameter 'symbols' is not valid")) from exc
        if not isinstance(parsed, list) or not all(isinstance(item, str) for item in parsed):
            raise ApiError(Refusal(400, -1135, "JSON sent for parameter 'symbols' is not valid"))
        if len(set(parsed)) != len(parsed):
            raise ApiError(Refusal(400, -1151, "Symbol is present multiple times in the list."))
        return parsed

    def client_order_id(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None and not _CLIENT_ORDER_ID_RE.match(value):
            raise ApiError(illegal_chars(name, CLIENT_ORDER_ID_PATTERN))
        return value
