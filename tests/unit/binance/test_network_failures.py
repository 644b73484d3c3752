"""A venue that cannot be reached is described in plain words (issue 7).

The exceptions are the real classes (socket, ssl, aiohttp, ccxt), chained the way ccxt 4.5.90's
`fetch` chains them (`raise ExchangeNotAvailable('binance GET <url>') from <aiohttp error>`, and
aiohttp's connector error wraps the OS error). No network is used.
"""

from __future__ import annotations

import socket
import ssl

import aiohttp
import ccxt
import pytest
from aiohttp.client_reqrep import ConnectionKey

from adapters.binance.errors import HttpReply, attach_reply, describe_failure, map_exception, network_reason
from adapters.binance.retry import backoff_s, is_retryable, rate_limit_wait_s
from domain.errors import ExchangeError, ExchangeUnavailable, RateLimited

URL = "https://api.binance.com/api/v3/exchangeInfo"


def key(host: str = "api.binance.com", port: int = 443, *, tls: bool = True) -> ConnectionKey:
    return ConnectionKey(host, port, tls, tls, None, None, None)


def as_ccxt_raises(
    cause: BaseException, cls: type[Exception] = ccxt.ExchangeNotAvailable, url: str = URL
) -> Exception:
    """`cause` raised inside ccxt's fetch and re-raised as ccxt does it."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise cls(f"binance GET {url}") from inner
    except Exception as outer:
        return outer


def test_a_failed_dns_lookup_names_the_host() -> None:
    dns = aiohttp.ClientConnectorDNSError(
        key(), socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    )
    error = map_exception(as_ccxt_raises(dns))
    assert type(error) is ExchangeUnavailable
    assert error.message == "DNS lookup failed (api.binance.com: Name or service not known)"
    assert is_retryable(error)


def test_a_bare_gaierror_takes_the_host_from_the_request_url() -> None:
    # ccxt's own `except socket.gaierror` branch: no aiohttp error to name the host.
    gai = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    error = map_exception(as_ccxt_raises(gai, url="https://testnet.binance.vision/api/v3/time"))
    assert error.message == "DNS lookup failed (testnet.binance.vision: Temporary failure in name resolution)"


def test_a_refused_connection_names_host_and_port() -> None:
    refused = aiohttp.ClientConnectorError(
        key("127.0.0.1", 8443), ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 8443)")
    )
    error = map_exception(as_ccxt_raises(refused))
    assert type(error) is ExchangeUnavailable
    assert error.message == "connection refused (127.0.0.1:8443)"


def test_a_timeout_says_after_how_long() -> None:
    exc = as_ccxt_raises(TimeoutError(), cls=ccxt.RequestTimeout)
    assert map_exception(exc, timeout_s=10.0).message == "timed out after 10 s (api.binance.com:443)"
    assert map_exception(exc).message == "timed out (api.binance.com:443)"  # timeout unknown
    # aiohttp's own read timeout is a TimeoutError too.
    read = as_ccxt_raises(
        aiohttp.SocketTimeoutError("Timeout on reading data from socket"), ccxt.RequestTimeout
    )
    assert map_exception(read, timeout_s=0.5).message == "timed out after 0.5 s (api.binance.com:443)"


def test_a_failed_tls_handshake_says_why() -> None:
    wrong = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    error = map_exception(as_ccxt_raises(aiohttp.ClientConnectorSSLError(key(), wrong)))
    assert error.message == "TLS/SSL handshake failed (api.binance.com:443: wrong version number)"


def test_a_rejected_certificate_is_a_tls_failure() -> None:
    bad_cert = ssl.SSLCertVerificationError(
        1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)"
    )
    error = map_exception(as_ccxt_raises(aiohttp.ClientConnectorCertificateError(key(), bad_cert)))
    assert error.message == (
        "TLS/SSL handshake failed (api.binance.com:443: certificate verify failed: self-signed certificate)"
    )


@pytest.mark.parametrize(
    ("cause", "expected"),
    [
        (
            aiohttp.ClientConnectorError(key(), ConnectionResetError(104, "Connection reset by peer")),
            "connection reset by the venue (api.binance.com:443)",
        ),
        (
            aiohttp.ServerDisconnectedError(),
            "the venue closed the connection without answering (api.binance.com:443)",
        ),
        (
            aiohttp.ClientConnectorError(key(), OSError(113, "No route to host")),
            "network error (api.binance.com:443: No route to host)",
        ),
    ],
)
def test_rarer_transport_failures_are_named_too(cause: BaseException, expected: str) -> None:
    assert map_exception(as_ccxt_raises(cause)).message == expected


def test_aiohttp_errors_that_reach_us_unwrapped_are_described_alike() -> None:
    refused = aiohttp.ClientConnectorError(key("10.0.0.1", 443), ConnectionRefusedError(111, "refused"))
    assert map_exception(refused).message == "connection refused (10.0.0.1:443)"
    assert map_exception(TimeoutError(), timeout_s=3).message == "timed out after 3 s"


def test_a_transport_failure_ccxt_calls_a_plain_exchange_error_is_still_transient() -> None:
    # ccxt raises ExchangeError (not retryable) for aiohttp errors outside ClientConnectionError;
    # a connection reset under it is still an outage whose outcome is unknown.
    reset = ConnectionResetError(104, "Connection reset by peer")
    error = map_exception(as_ccxt_raises(reset, cls=ccxt.ExchangeError))
    assert type(error) is ExchangeUnavailable


def test_no_secret_reaches_the_reason() -> None:
    url = "https://user:hunter2@api.binance.com/api/v3/account?timestamp=1&signature=abcdef0123"
    error = map_exception(as_ccxt_raises(TimeoutError(), cls=ccxt.RequestTimeout, url=url), timeout_s=5)
    assert error.message == "timed out after 5 s (api.binance.com:443)"
    assert "hunter2" not in str(error) and "abcdef0123" not in str(error)


def test_an_http_answer_is_not_a_network_failure() -> None:
    # A 504 from a gateway in front of the venue: ccxt says RequestTimeout, but something answered.
    exc = ccxt.RequestTimeout("binance GET http://127.0.0.1:1/api/v3/time 504 Gateway Timeout ")
    failure = describe_failure(exc)
    assert failure.network is None and failure.status == 504
    replied = ccxt.ExchangeNotAvailable("binance GET http://127.0.0.1:1/api/v3/time")
    attach_reply(replied, HttpReply(502, "Bad Gateway", {}, "<html>502</html>"))
    assert describe_failure(replied).network is None
    assert network_reason(ccxt.InsufficientFunds("binance Account has insufficient balance")) is None
    assert type(map_exception(ccxt.ExchangeError("binance something odd"))) is ExchangeError


# -- how long start-up waits ---------------------------------------------------------------------
def test_backoff_doubles_from_one_second_with_up_to_a_second_of_jitter_and_caps_at_a_minute() -> None:
    for failures, low in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 32)]:
        for _ in range(20):
            assert low <= backoff_s(failures) <= low + 1
    assert {backoff_s(7), backoff_s(50), backoff_s(10_000)} == {60.0}


def test_a_rate_limit_is_waited_out_to_its_end() -> None:
    error = RateLimited("Too many requests", code=-1003, retry_after=3)
    assert rate_limit_wait_s(error, blocked_for_s=0) == 3
    assert rate_limit_wait_s(error, blocked_for_s=60) == 60  # the limiter holds longer: its hold wins
    nothing_said = RateLimited("Too much request weight used", code=-1003)
    assert rate_limit_wait_s(nothing_said, blocked_for_s=0) is None  # back off instead
