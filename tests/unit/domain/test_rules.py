"""Binance filters as the domain applies them: what a trader sees when an order is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

from domain.errors import Rejection
from domain.models import OrderRequest, OrderType, Side
from domain.rules import MarketRules, venue_filter_message
from unit.domain.factories import btc_usdt_rules

D = Decimal

TICKS = st.sampled_from([D("0.01"), D("0.5"), D("1"), D("0.0001"), D("0.00000001")])
STEPS = st.sampled_from([D("0.00001"), D("0.001"), D("1"), D("0.1")])


@st.composite
def prices(draw: st.DrawFn) -> Decimal:
    """Positive prices with up to 8 decimals, as a venue or a user might write them."""
    return D(draw(st.integers(1, 10**15))).scaleb(-8)


CENT = D("0.01")
BTC_STEP = D("0.00001")


def rules_with(tick: Decimal = CENT, step: Decimal = BTC_STEP) -> MarketRules:
    return MarketRules("BTC/USDT", "BTC", "USDT", tick_size=tick, step_size=step)


def limit(side: Side, amount: str, price: str, symbol: str = "BTC/USDT") -> OrderRequest:
    return OrderRequest(symbol, side, OrderType.LIMIT, D(amount), "cid-1", D(price))


def market(side: Side, amount: str) -> OrderRequest:
    return OrderRequest("BTC/USDT", side, OrderType.MARKET, D(amount), "cid-1")


def rejected_rule(result: object) -> str:
    assert isinstance(result, Failure), f"expected a rejection, got {result}"
    rejection = result.failure()
    assert isinstance(rejection, Rejection)
    return rejection.rule


# -- snapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("100.005", "100.00"),  # tie: to the even cent
        ("100.015", "100.02"),  # tie: to the even cent
        ("100.0051", "100.01"),
        ("100.0049", "100.00"),
        ("100", "100.00"),
    ],
)
def test_snap_price_rounds_half_even_to_the_tick(price: str, expected: str) -> None:
    assert btc_usdt_rules().snap_price(D(price)) == D(expected)


@given(price=prices(), tick=TICKS)
def test_snap_price_lands_on_the_nearest_tick(price: Decimal, tick: Decimal) -> None:
    snapped = rules_with(tick=tick).snap_price(price)
    assert snapped % tick == 0
    assert abs(snapped - price) <= tick / 2


@given(price=prices(), tick=TICKS)
def test_snap_price_safe_never_worse_for_the_side(price: Decimal, tick: Decimal) -> None:
    rules = rules_with(tick=tick)
    buy = rules.snap_price_safe(price, Side.BUY)
    sell = rules.snap_price_safe(price, Side.SELL)
    # A buy never pays more, a sell never asks less, and neither moves by a whole tick or more.
    assert buy <= price < buy + tick
    assert sell - tick < price <= sell
    assert buy % tick == 0
    assert sell % tick == 0


@given(amount=prices(), step=STEPS)
def test_floor_amount_never_exceeds_the_input_and_lands_on_step(amount: Decimal, step: Decimal) -> None:
    rules = rules_with(step=step)
    floored = rules.floor_amount(amount)
    assert floored <= amount < floored + step
    assert floored % step == 0
    ceiled = rules.ceil_amount(amount)
    assert ceiled - step < amount <= ceiled
    assert ceiled % step == 0


def test_zero_tick_and_step_leave_values_untouched() -> None:
    rules = rules_with(tick=D("0"), step=D("0"))
    assert rules.snap_price(D("123.456789")) == D("123.456789")
    assert rules.snap_price_safe(D("123.456789"), Side.BUY) == D("123.456789")
    assert rules.floor_amount(D("0.123456789")) == D("0.123456789")


def test_negative_tick_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="tick size"):
        rules_with(tick=D("-0.01"))


# -- filters ----------------------------------------------------------------------------------


def test_a_valid_limit_order_passes_every_filter() -> None:
    request = limit(Side.BUY, "0.001", "65000.01")
    assert btc_usdt_rules().check_order(request) == Success(request)


@pytest.mark.parametrize(
    ("request_", "rule"),
    [
        (limit(Side.BUY, "0.001", "65000.005"), "PRICE_FILTER"),  # off the tick
        (limit(Side.BUY, "0.001", "0"), "PRICE_FILTER"),
        (limit(Side.BUY, "0.001", "-1"), "PRICE_FILTER"),
        (OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, D("0.001"), "c"), "PRICE_FILTER"),  # no price
        (limit(Side.BUY, "0.000015", "65000"), "LOT_SIZE"),  # off the step
        (limit(Side.BUY, "0", "65000"), "LOT_SIZE"),
        (limit(Side.BUY, "0.000001", "65000"), "LOT_SIZE"),  # under min qty
        (limit(Side.SELL, "9000.1", "1"), "LOT_SIZE"),  # over max qty
        (limit(Side.BUY, "0.00007", "65000"), "NOTIONAL"),  # 4.55 USDT < 5
        (limit(Side.SELL, "8000", "1200"), "NOTIONAL"),  # 9.6M > 9M
        (limit(Side.BUY, "0.001", "65000", symbol="ETH/USDT"), "SYMBOL"),
    ],
)
def test_each_filter_rejects_with_its_rule_id(request_: OrderRequest, rule: str) -> None:
    result = btc_usdt_rules().check_order(request_)
    assert rejected_rule(result) == rule
    rejection = result.failure()
    assert venue_filter_message(rejection) == f"Filter failure: {rule}"


def test_notional_rejection_names_the_value_and_minimum_in_quote() -> None:
    result = btc_usdt_rules().check_order(limit(Side.BUY, "0.00007", "65000"))
    assert isinstance(result, Failure)
    assert "4.55 USDT" in result.failure().reason
    assert "minimum 5 USDT" in result.failure().reason


def test_min_and_max_price_bound_the_price_filter() -> None:
    rules = btc_usdt_rules(min_price=D("0.01"), max_price=D("1000000"))
    assert rejected_rule(rules.check_price(D("1000000.01"))) == "PRICE_FILTER"
    assert rules.check_price(D("1000000")) == Success(D("1000000"))
    rules = btc_usdt_rules(min_price=D("10"))
    assert rejected_rule(rules.check_price(D("9.99"))) == "PRICE_FILTER"
    assert rules.check_price(D("10")) == Success(D("10"))


def test_notional_exactly_at_the_minimum_passes() -> None:
    assert btc_usdt_rules().check_notional(D("50000"), D("0.0001")) == Success(D("5.0000"))


def test_market_order_notional_is_checked_against_the_reference_price() -> None:
    rules = btc_usdt_rules()
    tiny = market(Side.BUY, "0.00007")
    assert rejected_rule(rules.check_order(tiny, reference_price=D("65000"))) == "NOTIONAL"
    assert rules.check_order(tiny, reference_price=D("80000")) == Success(tiny)  # 5.6 USDT
    # Without a reference price the venue's average is unknown: only quantity filters apply.
    assert rules.check_order(tiny) == Success(tiny)


def test_market_orders_obey_the_market_lot_size() -> None:
    rules = btc_usdt_rules(market_max_qty=D("100"))
    big = market(Side.SELL, "150")
    assert rejected_rule(rules.check_order(big, reference_price=D("60000"))) == "LOT_SIZE"
    # The limit lot size (9000) still allows it as a limit order.
    assert rules.check_amount(D("150"), OrderType.LIMIT) == Success(D("150"))


def test_max_num_orders_counts_the_order_being_added() -> None:
    rules = btc_usdt_rules()
    assert rules.check_open_orders(199) == Success(199)
    assert rejected_rule(rules.check_open_orders(200)) == "MAX_NUM_ORDERS"


def test_zero_parameters_disable_their_checks() -> None:
    rules = MarketRules("BTC/USDT", "BTC", "USDT", tick_size=D("0"), step_size=D("0"))
    odd = limit(Side.BUY, "0.000000123", "12345.6789")  # off any tick/step, tiny notional
    assert rules.check_order(odd) == Success(odd)
    assert rules.check_order(market(Side.BUY, "123456"), reference_price=D("99999")).map(
        lambda r: r.amount
    ) == (Success(D("123456")))
    assert rules.check_open_orders(10_000) == Success(10_000)


def test_quantity_filter_is_checked_before_price() -> None:
    """Both broken: the venue reports the lot size first, and so do we (stable diagnostics)."""
    result = btc_usdt_rules().check_order(limit(Side.BUY, "0.000015", "65000.005"))
    assert rejected_rule(result) == "LOT_SIZE"


@given(price=prices(), tick=TICKS, amount=prices(), step=STEPS)
def test_snapped_values_always_pass_their_own_filters(
    price: Decimal, tick: Decimal, amount: Decimal, step: Decimal
) -> None:
    rules = rules_with(tick=tick, step=step)
    snapped = rules.snap_price_safe(price, Side.SELL)
    floored = rules.floor_amount(amount)
    assert rules.check_price(snapped) == Success(snapped)
    if floored > 0:
        assert rules.check_amount(floored) == Success(floored)
