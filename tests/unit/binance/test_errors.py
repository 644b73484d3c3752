"""ccxt exceptions -> domain errors, with the venue's message and code kept.

Exceptions are built as ccxt 4.5.90 builds them (message formats from binance.handle_errors and
the base class's HTTP-status fallback), optionally with the HTTP reply our client pins on them.
"""

from __future__ import annotations

import ccxt
import pytest

from adapters.binance.errors import (
    HttpReply,
    UnderMaintenance,
    attach_reply,
    describe_failure,
    is_clock_skew,
    map_exception,
)
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


def with_reply(exc: Exception, status: int, body: str, headers: dict[str, str] | None = None) -> Exception:
    attach_reply(exc, HttpReply(status, "reason", headers or {}, body))
    return exc


def body(code: int, msg: str) -> str:
    return f'{{"code":{code},"msg":"{msg}"}}'


@pytest.mark.parametrize(
    ("exc", "expected", "code", "message"),
    [
        # -1013 filter failures: ccxt raises InvalidOrder for LOT_SIZE / PRICE_FILTER, BadRequest else.
        (
            ccxt.InvalidOrder(
                "binance order amount should be evenly divisible by lot size "
                + body(-1013, "Filter failure: LOT_SIZE")
            ),
            InvalidOrder,
            -1013,
            "Filter failure: LOT_SIZE",
        ),
        (
            ccxt.BadRequest("binance " + body(-1013, "Filter failure: NOTIONAL")),
            InvalidOrder,
            -1013,
            "Filter failure: NOTIONAL",
        ),
        # -2010: insufficient balance (ccxt matched the message, so its text lacks the code).
        (
            with_reply(
                ccxt.InsufficientFunds("binance Account has insufficient balance for requested action."),
                400,
                body(-2010, "Account has insufficient balance for requested action."),
            ),
            InsufficientFunds,
            -2010,
            "Account has insufficient balance for requested action.",
        ),
        (
            ccxt.InsufficientFunds("binance Account has insufficient balance for requested action."),
            InsufficientFunds,
            None,
            "binance Account has insufficient balance for requested action.",
        ),
        (
            ccxt.InvalidOrder("binance " + body(-2010, "Duplicate order sent.")),
            DuplicateOrder,
            -2010,
            "Duplicate order sent.",
        ),
        (
            ccxt.InvalidOrder("binance " + body(-2010, "Market is closed.")),
            InvalidOrder,
            -2010,
            "Market is closed.",
        ),
        (
            ccxt.OrderNotFound("binance " + body(-2011, "Unknown order sent.")),
            OrderNotFound,
            -2011,
            "Unknown order sent.",
        ),
        (
            ccxt.OrderNotFound("binance " + body(-2013, "Order does not exist.")),
            OrderNotFound,
            -2013,
            "Order does not exist.",
        ),
        (
            ccxt.AuthenticationError("binance " + body(-1022, "Signature for this request is not valid.")),
            AuthenticationError,
            -1022,
            "Signature for this request is not valid.",
        ),
        (
            ccxt.AuthenticationError("binance " + body(-2014, "API-key format invalid.")),
            AuthenticationError,
            -2014,
            "API-key format invalid.",
        ),
        # ccxt turns -2015 into DDoSProtection once a private call has succeeded: the code decides.
        (
            ccxt.DDoSProtection("binance " + body(-2015, "Invalid API-key, IP, or permissions for action.")),
            AuthenticationError,
            -2015,
            "Invalid API-key, IP, or permissions for action.",
        ),
        (
            ccxt.PermissionDenied("binance This action is disabled on this account."),
            AuthenticationError,
            None,
            None,
        ),
        (ccxt.RequestTimeout("binance GET http://127.0.0.1:1/api/v3/time"), ExchangeUnavailable, None, None),
        (
            ccxt.ExchangeNotAvailable("binance GET http://127.0.0.1:1/api/v3/time"),
            ExchangeUnavailable,
            None,
            None,
        ),
        (ccxt.NetworkError("binance connection reset"), ExchangeUnavailable, None, None),
        (
            with_reply(
                ccxt.OperationFailed(
                    "binance " + body(-1000, "An unknown error occurred while processing the request.")
                ),
                500,
                body(-1000, "An unknown error occurred while processing the request."),
            ),
            ExchangeUnavailable,
            -1000,
            "An unknown error occurred while processing the request.",
        ),
        (
            ccxt.ExchangeNotAvailable("binance POST http://127.0.0.1:1/api/v3/order 502 Bad Gateway <html>"),
            ExchangeUnavailable,
            None,
            None,
        ),
        (
            ccxt.InvalidNonce(
                "binance " + body(-1021, "Timestamp for this request is outside of the recvWindow.")
            ),
            ExchangeError,
            -1021,
            None,
        ),
        (
            ccxt.BadSymbol("binance " + body(-1121, "Invalid symbol.")),
            ExchangeError,
            -1121,
            "Invalid symbol.",
        ),
        (
            ccxt.ExchangeError("binance " + body(-1099, "Not found, authenticated, or authorized")),
            ExchangeError,
            -1099,
            None,
        ),
        (ccxt.BadResponse("binance returned an empty body"), InvalidResponse, None, None),
    ],
)
def test_ccxt_exceptions_become_domain_errors(
    exc: Exception, expected: type, code: int | None, message: str | None
) -> None:
    error = map_exception(exc)
    assert type(error) is expected
    assert error.code == code
    if message is not None:
        assert error.message == message


def test_429_is_rate_limited_with_retry_after_from_the_reply() -> None:
    text = body(-1003, "Too much request weight used; current limit is 6000 request weight per 1 MINUTE.")
    exc = with_reply(
        ccxt.DDoSProtection("binance 429 Too Many Requests " + text), 429, text, {"Retry-After": "13"}
    )
    error = map_exception(exc)
    assert isinstance(error, RateLimited)
    assert error.retry_after == 13
    assert error.code == -1003
    assert "Too much request weight" in error.message


def test_429_without_a_reply_is_still_rate_limited() -> None:
    error = map_exception(
        ccxt.DDoSProtection("binance 429 Too Many Requests " + body(-1003, "Too many requests queued."))
    )
    assert isinstance(error, RateLimited)
    assert error.retry_after is None


def test_418_is_a_ban_with_its_end_read_from_the_message() -> None:
    text = body(
        -1003,
        "Way too much request weight used; IP banned until 1700000120000. Please use WebSocket Streams.",
    )
    error = map_exception(ccxt.DDoSProtection("binance 418 I'm a teapot " + text), now_ms=1_700_000_000_000)
    assert isinstance(error, RateLimited)
    assert "IP banned" in error.message
    assert error.retry_after == 120


def test_ccxt_rate_limit_exceeded_without_status_is_rate_limited() -> None:
    error = map_exception(ccxt.RateLimitExceeded("binance " + body(-1015, "Too many new orders.")))
    assert isinstance(error, RateLimited)
    assert error.code == -1015


@pytest.mark.parametrize(
    "exc",
    [
        with_reply(
            ccxt.OnMaintenance("binance System is under maintenance."),
            503,
            body(1, "System is under maintenance."),
        ),
        ccxt.ExchangeNotAvailable("binance GET http://127.0.0.1:1/api/v3/time 503 Service Unavailable "),
        ccxt.OnMaintenance("binance System is under maintenance."),
    ],
)
def test_maintenance_answers_are_recognised(exc: Exception) -> None:
    error = map_exception(exc)
    assert isinstance(error, UnderMaintenance)
    assert isinstance(error, ExchangeUnavailable)


def test_a_4xx_without_a_binance_body_is_not_treated_as_an_outage() -> None:
    # ccxt's HTTP fallback raises ExchangeNotAvailable for a 404; retrying a wrong URL helps nobody.
    exc = with_reply(
        ccxt.ExchangeNotAvailable("binance GET http://x/api/v3/nope 404 Not Found"), 404, "<html>nope</html>"
    )
    error = map_exception(exc)
    assert type(error) is ExchangeError
    assert "404" in error.message


@pytest.mark.parametrize(
    "exc",
    [TimeoutError(), ConnectionResetError("reset by peer"), OSError("no route")],
)
def test_network_exceptions_outside_ccxt_are_transient(exc: Exception) -> None:
    assert type(map_exception(exc)) is ExchangeUnavailable


def test_other_exceptions_from_inside_ccxt_mean_an_unreadable_answer() -> None:
    error = map_exception(KeyError("symbols"))
    assert isinstance(error, InvalidResponse)


def test_signatures_never_reach_the_message() -> None:
    exc = ccxt.RequestTimeout(
        "binance GET http://127.0.0.1:1/api/v3/account?timestamp=1&signature=abcdef0123"
    )
    assert "abcdef0123" not in map_exception(exc).message


def test_clock_skew_is_recognised_by_code() -> None:
    error = map_exception(
        ccxt.InvalidNonce(
            "binance " + body(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        )
    )
    assert is_clock_skew(error)
    assert not is_clock_skew(map_exception(ccxt.BadRequest("binance " + body(-1102, "Mandatory parameter"))))


def test_the_reply_pinned_on_the_exception_wins_over_its_text() -> None:
    exc = with_reply(ccxt.ExchangeError("binance something"), 400, body(-2013, "Order does not exist."))
    failure = describe_failure(exc)
    assert (failure.status, failure.code, failure.message) == (400, -2013, "Order does not exist.")
    assert isinstance(map_exception(exc), OrderNotFound)


def test_domain_errors_pass_through_unchanged() -> None:
    error = InvalidOrder("mine", code=-1013)
    assert map_exception(error) is error
