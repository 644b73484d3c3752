"""Every refusal reaches ccxt as the exception BINANCE_FACTS.md (section 3) predicts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt
import pytest

from support.binance_server import FakeBinance

from .helpers import make_exchange


async def _markets_loaded(exchange: Any) -> Any:
    await exchange.load_markets()
    return exchange


async def test_lot_size_failure_is_invalid_order(exchange: Any, server: FakeBinance) -> None:
    await _markets_loaded(exchange)
    exchange.markets["BTC/USDT"]["precision"]["amount"] = 1e-08  # let ccxt send what the venue refuses

    with pytest.raises(ccxt.InvalidOrder, match="Filter failure: LOT_SIZE"):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.000015, 30000)

    assert server.requests[-1].status == 400
    assert server.book("BTC/USDT").engine.open_orders() == []


async def test_notional_failure_is_bad_request_with_code_1013(exchange: Any) -> None:
    await _markets_loaded(exchange)

    with pytest.raises(ccxt.BadRequest, match='"code":-1013,"msg":"Filter failure: NOTIONAL"'):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.0001, 30000)


async def test_insufficient_balance_is_insufficient_funds(exchange: Any) -> None:
    await _markets_loaded(exchange)

    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance for requested action"):
        await exchange.create_order("BTC/USDT", "limit", "buy", 1, 29000)


async def test_duplicate_client_order_id_is_invalid_order(exchange: Any) -> None:
    await _markets_loaded(exchange)
    await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 29000, {"clientOrderId": "same"})

    with pytest.raises(ccxt.InvalidOrder, match=r"Duplicate order sent\."):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 28000, {"clientOrderId": "same"})


async def test_querying_an_unknown_order_is_order_not_found_2013(exchange: Any, server: FakeBinance) -> None:
    await _markets_loaded(exchange)

    with pytest.raises(ccxt.OrderNotFound, match="-2013"):
        await exchange.fetch_order("999", "BTC/USDT")


async def test_canceling_an_unknown_order_is_order_not_found_2011(exchange: Any) -> None:
    await _markets_loaded(exchange)

    with pytest.raises(ccxt.OrderNotFound, match=r'"code":-2011,"msg":"Unknown order sent\."'):
        await exchange.cancel_order("999", "BTC/USDT")


async def test_canceling_a_filled_order_is_order_not_found(exchange: Any) -> None:
    await _markets_loaded(exchange)
    filled = await exchange.create_order("BTC/USDT", "market", "buy", 0.001)

    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await exchange.cancel_order(filled["id"], "BTC/USDT")


async def test_cancel_all_with_nothing_open_is_order_not_found(exchange: Any) -> None:
    await _markets_loaded(exchange)

    with pytest.raises(ccxt.OrderNotFound, match="-2011"):
        await exchange.cancel_all_orders("BTC/USDT")


@pytest.mark.parametrize(
    ("api_key", "secret", "code", "status"),
    [
        ("unknown-key", "test-api-secret", -2015, 401),
        ("bad key with spaces", "test-api-secret", -2014, 401),
        ("test-api-key", "wrong-secret", -1022, 400),
    ],
)
async def test_authentication_failures(
    server: FakeBinance, api_key: str, secret: str, code: int, status: int
) -> None:
    client = make_exchange(server.api_url, api_key=api_key, secret=secret)
    try:
        with pytest.raises(ccxt.AuthenticationError, match=str(code)):
            await client.fetch_balance()
    finally:
        await client.close()

    assert server.requests[-1].status == status


async def test_missing_api_key_is_rejected_with_2015(raw: Any) -> None:
    reply = await raw.request("GET", "account", query=raw.signed_query())

    assert reply.status == 401
    assert reply.body == {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}


async def test_server_clock_behind_the_client_is_invalid_nonce(exchange: Any, server: FakeBinance) -> None:
    server.time_offset_ms = -5_000

    with pytest.raises(ccxt.InvalidNonce, match="1000ms ahead of the server's time"):
        await exchange.fetch_balance()


async def test_server_clock_ahead_of_the_client_is_invalid_nonce(exchange: Any, server: FakeBinance) -> None:
    server.time_offset_ms = 15_000  # ccxt sends recvWindow=10000

    with pytest.raises(ccxt.InvalidNonce, match="outside of the recvWindow"):
        await exchange.fetch_balance()


async def test_forced_429_is_ddos_protection_with_retry_after(exchange: Any, server: FakeBinance) -> None:
    server.force_rate_limit(429, retry_after=7)

    with pytest.raises(ccxt.DDoSProtection, match="429"):
        await exchange.fetch_ticker("BTC/USDT")

    assert exchange.last_response_headers["Retry-After"] == "7"


async def test_forced_418_is_ddos_protection_with_retry_after(exchange: Any, server: FakeBinance) -> None:
    server.force_rate_limit(418, retry_after=120)

    with pytest.raises(ccxt.DDoSProtection, match="418"):
        await exchange.fetch_time()

    assert exchange.last_response_headers["Retry-After"] == "120"


async def test_maintenance_is_on_maintenance(exchange: Any, server: FakeBinance) -> None:
    server.maintenance = True

    with pytest.raises(ccxt.OnMaintenance):
        await exchange.fetch_time()

    assert server.requests[-1].status == 503
    assert issubclass(ccxt.OnMaintenance, ccxt.ExchangeNotAvailable)


async def test_injected_503_is_exchange_not_available_and_then_recovers(
    exchange: Any, server: FakeBinance
) -> None:
    server.fail_next("ticker/24hr", status=503, times=2)

    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await exchange.fetch_ticker("BTC/USDT")
    ticker = await exchange.fetch_ticker("BTC/USDT")

    assert ticker["last"] == pytest.approx(30000)


async def test_injected_body_is_sent_verbatim(exchange: Any, server: FakeBinance) -> None:
    server.fail_next("/api/v3/time", status=400, body={"code": -1121, "msg": "Invalid symbol."})

    with pytest.raises(ccxt.BadSymbol):
        await exchange.fetch_time()


async def test_failure_after_processing_leaves_the_order_placed(exchange: Any, server: FakeBinance) -> None:
    await _markets_loaded(exchange)
    server.fail_next_after_processing("order", method="POST")

    with pytest.raises(ccxt.OperationFailed, match="-1000"):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 29000, {"clientOrderId": "lost-1"})

    found = await exchange.fetch_order(None, "BTC/USDT", {"origClientOrderId": "lost-1"})
    assert found["status"] == "open"


async def test_dropped_connection_is_a_network_error_and_nothing_happens(
    exchange: Any, server: FakeBinance
) -> None:
    await _markets_loaded(exchange)
    server.drop_next("order", method="POST")

    with pytest.raises(ccxt.NetworkError):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 29000)

    assert server.book("BTC/USDT").engine.open_orders() == []
    assert server.requests[-1].status is None


async def test_set_balance_changes_what_the_account_can_afford(exchange: Any, server: FakeBinance) -> None:
    await _markets_loaded(exchange)
    server.set_balance("USDT", Decimal("10"))

    with pytest.raises(ccxt.InsufficientFunds):
        await exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 29000)
    balance = await exchange.fetch_balance()
    assert balance["free"]["USDT"] == pytest.approx(10)
