"""Risk rules: which orders go out, when the grid stops, and how the market is read."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

from domain.errors import Rejection
from domain.models import OrderRequest, OrderType, Side
from domain.risk import (
    Exposure,
    MarketState,
    MarketStateThresholds,
    RiskLimits,
    check_new_order,
    classify_market,
    evaluate_stop,
)
from unit.domain.factories import btc_usdt_rules

D = Decimal

RULES = btc_usdt_rules()
LIMITS = RiskLimits(investment=D("1000"), max_open_orders=10)
IDLE = Exposure(open_orders=0, quote_in_use=D("0"))


def buy(amount: str = "0.001", price: str = "60000") -> OrderRequest:
    return OrderRequest("BTC/USDT", Side.BUY, OrderType.LIMIT, D(amount), "cid", D(price))


def sell(amount: str = "0.001", price: str = "60000") -> OrderRequest:
    return OrderRequest("BTC/USDT", Side.SELL, OrderType.LIMIT, D(amount), "cid", D(price))


def check(
    request: OrderRequest,
    *,
    exposure: Exposure = IDLE,
    limits: RiskLimits = LIMITS,
    state: MarketState = MarketState.NORMAL,
    reference_price: Decimal | None = None,
) -> str | None:
    """The rule that refused the order, or None when it may go out."""
    result = check_new_order(
        request,
        rules=RULES,
        limits=limits,
        exposure=exposure,
        market_state=state,
        reference_price=reference_price,
    )
    if isinstance(result, Failure):
        rejection: Rejection = result.failure()
        return rejection.rule
    assert result == Success(request)
    return None


# -- check_new_order --------------------------------------------------------------------------


def test_an_ordinary_order_goes_out() -> None:
    assert check(buy()) is None
    assert check(sell()) is None


@pytest.mark.parametrize(
    ("request_", "rule"),
    [
        (buy(price="60000.001"), "PRICE_FILTER"),
        (buy(amount="0.000015"), "LOT_SIZE"),
        (buy(amount="0.00005"), "NOTIONAL"),
        (sell(amount="0.00005"), "NOTIONAL"),
    ],
)
def test_market_filters_refuse_first(request_: OrderRequest, rule: str) -> None:
    assert check(request_) == rule


def test_the_bot_limit_on_open_orders() -> None:
    assert check(sell(), exposure=Exposure(open_orders=9, quote_in_use=D("0"))) is None
    assert check(sell(), exposure=Exposure(open_orders=10, quote_in_use=D("0"))) == "MAX_OPEN_ORDERS"


def test_the_venue_limit_on_open_orders() -> None:
    limits = RiskLimits(investment=D("1000"), max_open_orders=500)
    assert check(sell(), limits=limits, exposure=Exposure(199, D("0"))) is None
    assert check(sell(), limits=limits, exposure=Exposure(200, D("0"))) == "MAX_NUM_ORDERS"


def test_a_buy_may_not_put_more_than_the_investment_at_stake() -> None:
    # 60 USDT order: 940 + 60 fits exactly, one more cent does not.
    assert check(buy(), exposure=Exposure(3, D("940"))) is None
    assert check(buy(), exposure=Exposure(3, D("940.01"))) == "INVESTMENT"


def test_realized_profit_raises_the_budget() -> None:
    assert check(buy(), exposure=Exposure(3, D("990"), realized_pnl=D("50"))) is None
    assert check(buy(), exposure=Exposure(3, D("990.01"), realized_pnl=D("50"))) == "INVESTMENT"


def test_realized_losses_shrink_the_budget() -> None:
    """After losing 20 USDT the grid holds 980: it must not reach into the rest of the account."""
    assert check(buy(), exposure=Exposure(3, D("920"), realized_pnl=D("-20"))) is None
    assert check(buy(), exposure=Exposure(3, D("930"), realized_pnl=D("-20"))) == "INVESTMENT"


def test_sells_are_not_bound_by_the_budget() -> None:
    assert check(sell(), exposure=Exposure(3, D("5000"))) is None


def test_a_market_buy_is_budgeted_at_the_reference_price() -> None:
    market_buy = OrderRequest("BTC/USDT", Side.BUY, OrderType.MARKET, D("0.001"), "cid")
    assert check(market_buy, exposure=Exposure(0, D("950")), reference_price=D("60000")) == "INVESTMENT"
    assert check(market_buy, exposure=Exposure(0, D("900")), reference_price=D("60000")) is None


def test_panic_stops_buys_but_lets_sells_out() -> None:
    assert check(buy(), state=MarketState.PANIC) == "MARKET_STATE"
    assert check(sell(), state=MarketState.PANIC) is None


def test_maintenance_stops_everything() -> None:
    assert check(buy(), state=MarketState.MAINTENANCE) == "MARKET_STATE"
    assert check(sell(), state=MarketState.MAINTENANCE) == "MARKET_STATE"


def test_a_volatile_market_still_trades() -> None:
    assert check(buy(), state=MarketState.VOLATILE) is None


@given(
    in_use_cents=st.integers(0, 200_000),
    pnl_cents=st.integers(-50_000, 50_000),
    units=st.integers(1, 2_000),
)
def test_an_accepted_buy_never_overspends(in_use_cents: int, pnl_cents: int, units: int) -> None:
    in_use = D(in_use_cents).scaleb(-2)
    pnl = D(pnl_cents).scaleb(-2)
    request = buy(amount=str(D(units).scaleb(-5) + D("0.0001")))
    limits = RiskLimits(investment=D("1000"), max_open_orders=50)
    verdict = check(request, exposure=Exposure(3, in_use, pnl), limits=limits)
    assert request.notional is not None
    fits = in_use + request.notional <= D("1000") + pnl
    assert (verdict is None) == fits
    assert verdict in {None, "INVESTMENT"}


# -- evaluate_stop ----------------------------------------------------------------------------


STOPS = RiskLimits(investment=D("1000"), stop_loss=D("80000"), take_profit=D("120000"), sell_on_stop=True)


@pytest.mark.parametrize(
    ("price", "kind"),
    [
        ("79999.99", "stop-loss"),
        ("80000", "stop-loss"),  # at the price exactly
        ("80000.01", None),
        ("100000", None),
        ("119999.99", None),
        ("120000", "take-profit"),  # at the price exactly
        ("150000", "take-profit"),
    ],
)
def test_stop_loss_and_take_profit_trigger_at_their_price(price: str, kind: str | None) -> None:
    decision = evaluate_stop(D(price), STOPS)
    if kind is None:
        assert decision is None
    else:
        assert decision is not None
        assert decision.reason.startswith(kind)
        assert price in decision.reason
        assert decision.sell_base is True


def test_no_stops_configured_never_stops() -> None:
    limits = RiskLimits(investment=D("1000"))
    assert evaluate_stop(D("0.01"), limits) is None
    assert evaluate_stop(D("10000000"), limits) is None


def test_stop_keeps_the_base_unless_asked_to_sell() -> None:
    decision = evaluate_stop(D("1"), RiskLimits(investment=D("1"), stop_loss=D("2")))
    assert decision is not None
    assert decision.sell_base is False


# -- classify_market --------------------------------------------------------------------------


def prices_with_range(range_pct: str) -> list[Decimal]:
    low = D("100000")
    return [low, low * (1 + D(range_pct) / 100), low]


@pytest.mark.parametrize(
    ("range_pct", "spread", "state"),
    [
        ("0", "0", MarketState.NORMAL),
        ("1.99", "0.0019", MarketState.NORMAL),
        ("2", "0", MarketState.VOLATILE),  # the threshold itself counts
        ("0", "0.002", MarketState.VOLATILE),
        ("4.99", "0.0099", MarketState.VOLATILE),
        ("5", "0", MarketState.PANIC),
        ("0", "0.01", MarketState.PANIC),
        ("1", "0.05", MarketState.PANIC),  # the worse signal wins
        ("7", "0.003", MarketState.PANIC),
    ],
)
def test_market_state_thresholds(range_pct: str, spread: str, state: MarketState) -> None:
    assert classify_market(prices_with_range(range_pct), D(spread)) is state


def test_an_unavailable_venue_is_maintenance_whatever_the_prices() -> None:
    assert (
        classify_market(prices_with_range("10"), D("0.5"), venue_available=False) is MarketState.MAINTENANCE
    )


def test_no_price_history_judges_by_the_spread_alone() -> None:
    assert classify_market([], D("0")) is MarketState.NORMAL
    assert classify_market([], D("0.02")) is MarketState.PANIC


def test_custom_thresholds_apply() -> None:
    calm = MarketStateThresholds(volatile_range=D("0.1"), panic_range=D("0.2"))
    assert classify_market(prices_with_range("7"), D("0"), thresholds=calm) is MarketState.NORMAL
    assert classify_market(prices_with_range("15"), D("0"), thresholds=calm) is MarketState.VOLATILE
