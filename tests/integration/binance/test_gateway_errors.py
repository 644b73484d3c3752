"""Each Binance refusal reaches the caller as the domain error it means, with the venue's words."""

from __future__ import annotations

from decimal import Decimal

import pytest

from adapters.binance import open_binance_gateway
from adapters.clock import SimulatedClock
from domain.errors import (
    AuthenticationError,
    DuplicateOrder,
    ExchangeError,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
)
from domain.models import OrderRequest, OrderType, Side

from .venue import SYMBOL, config_for


def buy(client_order_id: str, amount: str = "0.001", price: str = "29000") -> OrderRequest:
    return OrderRequest(SYMBOL, Side.BUY, OrderType.LIMIT, Decimal(amount), client_order_id, Decimal(price))


async def test_filter_failure_is_an_invalid_order(venue) -> None:
    async with venue() as (server, gateway):
        with pytest.raises(InvalidOrder) as raised:
            await gateway.place_order(buy("tiny", amount="0.0001"))  # 2.9 USDT < 5 USDT minimum
        assert raised.value.code == -1013
        assert raised.value.message == "Filter failure: NOTIONAL"
        assert len(server.requests_to("order", "POST")) == 1  # refusals are not retried


async def test_insufficient_balance(venue) -> None:
    async with venue() as (server, gateway):
        server.set_balance("USDT", Decimal("10"))
        with pytest.raises(InsufficientFunds) as raised:
            await gateway.place_order(buy("too-big"))
        assert raised.value.code == -2010
        assert "insufficient balance" in raised.value.message


async def test_duplicate_client_order_id(venue) -> None:
    async with venue() as (_server, gateway):
        await gateway.place_order(buy("same-id"))
        with pytest.raises(DuplicateOrder) as raised:
            await gateway.place_order(buy("same-id", price="28000"))
        assert raised.value.code == -2010
        assert len(await gateway.fetch_open_orders(SYMBOL)) == 1


async def test_unknown_orders(venue) -> None:
    async with venue() as (_server, gateway):
        with pytest.raises(OrderNotFound) as cancel:
            await gateway.cancel_order(SYMBOL, "424242")
        assert cancel.value.code == -2011
        with pytest.raises(OrderNotFound) as query:
            await gateway.fetch_order(SYMBOL, client_order_id="never-placed")
        assert query.value.code == -2013
        assert query.value.message == "Order does not exist."


async def test_a_wrong_secret_is_an_authentication_error(venue, clock: SimulatedClock) -> None:
    async with venue() as (server, _):
        async with open_binance_gateway(config_for(server, api_secret="not-the-secret"), clock) as gateway:
            with pytest.raises(AuthenticationError) as raised:
                await gateway.fetch_balances()
        assert raised.value.code == -1022


@pytest.mark.parametrize(("api_key", "code"), [("not the key!", -2014), ("another-key", -2015)])
async def test_bad_api_keys_are_authentication_errors(
    venue, clock: SimulatedClock, api_key: str, code: int
) -> None:
    async with venue() as (server, _):
        async with open_binance_gateway(config_for(server, api_key=api_key), clock) as gateway:
            with pytest.raises(AuthenticationError) as raised:
                await gateway.fetch_balances()
        assert raised.value.code == code


async def test_a_revoked_key_after_a_successful_call_is_still_an_authentication_error(venue) -> None:
    # ccxt raises DDoSProtection for -2015 once a private call has succeeded; that must not
    # become a rate limit that the bot waits out forever.
    async with venue() as (server, gateway):
        await gateway.fetch_balances()
        server.fail_next(
            "account",
            status=401,
            body={"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."},
        )
        with pytest.raises(AuthenticationError) as raised:
            await gateway.fetch_balances()
        assert raised.value.code == -2015
        assert gateway.state == "normal"


async def test_an_unknown_symbol(venue) -> None:
    async with venue() as (_server, gateway):
        with pytest.raises(ExchangeError, match="unknown symbol"):
            await gateway.fetch_ticker("DOGE/EUR")
