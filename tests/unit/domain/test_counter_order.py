"""What the grid does after a fill, what a cycle earns, and how it names its orders."""

from __future__ import annotations

import re
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from domain.grid import (
    GridParams,
    PlannedOrder,
    Spacing,
    client_order_id,
    counter_order,
    fee_after,
    grid_levels,
    sell_profit,
)
from domain.models import Side
from domain.rules import MarketRules
from unit.domain.factories import MAKER_FEE, PROFILES, btc_usdt_rules

D = Decimal

LEVELS = grid_levels(D("90000"), D("110000"), 11, Spacing.ARITHMETIC, D("0.01")).unwrap()
RULES = btc_usdt_rules()
QUANTITY = D("0.001")
BINANCE_CLIENT_ID = re.compile(r"^[a-zA-Z0-9-_]{1,36}$")


def after_buy(level: int, amount: Decimal, rules: MarketRules = RULES) -> PlannedOrder | None:
    """The counter-order of a buy at `level` that paid the maker fee in base, as Binance charges it."""
    fee = amount - fee_after(amount, MAKER_FEE)
    return counter_order(
        LEVELS,
        filled_side=Side.BUY,
        filled_level=level,
        filled_amount=amount,
        filled_quote=LEVELS[level] * amount,
        fee=fee,
        fee_asset_is_base=True,
        quantity=QUANTITY,
        rules=rules,
    )


def after_sell(level: int, amount: Decimal) -> PlannedOrder | None:
    return counter_order(
        LEVELS,
        filled_side=Side.SELL,
        filled_level=level,
        filled_amount=amount,
        filled_quote=LEVELS[level] * amount,
        fee=(LEVELS[level] * amount) - fee_after(LEVELS[level] * amount, MAKER_FEE),
        fee_asset_is_base=False,
        quantity=QUANTITY,
        rules=RULES,
    )


# -- fees -------------------------------------------------------------------------------------


@given(amount=st.integers(1, 10**12).map(lambda n: D(n).scaleb(-8)), rate_bp=st.integers(0, 100))
def test_the_fee_is_rounded_up_to_eight_places(amount: Decimal, rate_bp: int) -> None:
    rate = D(rate_bp).scaleb(-4)
    left = fee_after(amount, rate)
    fee = amount - left
    assert fee >= amount * rate  # the venue never undercharges
    assert fee - amount * rate < D("0.00000001")
    assert fee % D("0.00000001") == 0


# -- counter orders ---------------------------------------------------------------------------


def test_a_buy_places_a_sell_one_level_up_for_the_base_received() -> None:
    sell = after_buy(4, QUANTITY)
    assert sell is not None
    assert (sell.side, sell.level, sell.price) == (Side.SELL, 5, LEVELS[5])
    # 0.001 BTC minus the 0.000001 BTC fee is 0.000999 BTC, of which 0.00099 is sellable on the step.
    assert sell.amount == D("0.00099")
    # It carries the cost of exactly the base it sells: 99/99.9 of what the buy paid.
    assert sell.cost_basis == (LEVELS[4] * QUANTITY * D("0.00099") / D("0.000999")).quantize(D("0.00000001"))


@given(
    level=st.integers(0, len(LEVELS) - 2),
    units=st.integers(1, 10**6),
    profile_index=st.integers(0, len(PROFILES) - 1),
)
def test_a_filled_buy_sells_only_what_it_received(level: int, units: int, profile_index: int) -> None:
    rules = PROFILES[profile_index].rules
    amount = units * rules.step_size
    received = fee_after(amount, MAKER_FEE)
    sell = after_buy(level, amount, rules)
    if rules.floor_amount(received) == 0:
        assert sell is None  # nothing sellable on the step: no order rather than an invalid one
        return
    assert sell is not None
    assert sell.level == level + 1
    assert sell.price == LEVELS[level + 1]
    assert sell.amount <= received < sell.amount + rules.step_size
    assert sell.amount % rules.step_size == 0
    paid = LEVELS[level] * amount
    assert abs(sell.cost_basis - paid * sell.amount / received) <= D("0.000000005")
    assert sell.cost_basis <= paid


@given(level=st.integers(1, len(LEVELS) - 1), units=st.integers(1, 10**5))
def test_a_filled_sell_buys_back_the_grid_quantity_one_level_down(level: int, units: int) -> None:
    buy = after_sell(level, units * RULES.step_size)
    assert buy == PlannedOrder(level - 1, Side.BUY, LEVELS[level - 1], QUANTITY)


def test_no_counter_order_beyond_the_ends_of_the_ladder() -> None:
    assert after_buy(len(LEVELS) - 1, QUANTITY) is None
    assert after_sell(0, QUANTITY) is None


def test_a_quote_fee_leaves_the_whole_base_to_sell() -> None:
    """Fees paid in another asset (e.g. BNB) do not shrink the sell."""
    sell = counter_order(
        LEVELS,
        filled_side=Side.BUY,
        filled_level=2,
        filled_amount=QUANTITY,
        filled_quote=LEVELS[2] * QUANTITY,
        fee=D("0.0001"),
        fee_asset_is_base=False,
        quantity=QUANTITY,
        rules=RULES,
    )
    assert sell is not None
    assert sell.amount == QUANTITY
    assert sell.cost_basis == LEVELS[2] * QUANTITY


def test_a_buy_too_small_to_leave_one_step_places_nothing() -> None:
    assert after_buy(3, D("0.00001")) is None  # 0.00001 - fee rounds down to zero steps


# -- profit -----------------------------------------------------------------------------------


@given(
    lower_ticks=st.integers(100, 10**7),
    spacing_bp=st.integers(21, 1_000),
    units=st.integers(1_000, 10**6),
)
def test_a_buy_then_sell_cycle_earns_when_the_spacing_covers_the_fees(
    lower_ticks: int, spacing_bp: int, units: int
) -> None:
    rules = RULES
    low = lower_ticks * rules.tick_size
    high = rules.snap_price_safe(low * (10_000 + spacing_bp) / 10_000, Side.SELL)
    ladder = (low, high)
    amount = units * rules.step_size
    bought = fee_after(amount, MAKER_FEE)
    sell = counter_order(
        ladder,
        filled_side=Side.BUY,
        filled_level=0,
        filled_amount=amount,
        filled_quote=low * amount,
        fee=amount - bought,
        fee_asset_is_base=True,
        quantity=amount,
        rules=rules,
    )
    assert sell is not None
    proceeds = fee_after(sell.price * sell.amount, MAKER_FEE)
    profit = sell_profit(
        price=sell.price,
        amount=sell.amount,
        fee=sell.price * sell.amount - proceeds,
        fee_asset_is_quote=True,
        cost_basis=sell.cost_basis,
    )
    assert profit == proceeds - sell.cost_basis
    if high / low * (1 - MAKER_FEE) ** 2 > 1 + D("0.0001"):
        assert profit > 0


def test_sell_profit_with_a_base_fee_values_it_at_the_sell_price() -> None:
    profit = sell_profit(
        price=D("100000"), amount=D("0.001"), fee=D("0.000001"), fee_asset_is_quote=False, cost_basis=D("98")
    )
    assert profit == D("100") - D("0.1") - D("98")


def test_a_sell_under_its_cost_is_a_loss() -> None:
    profit = sell_profit(
        price=D("90000"), amount=D("0.001"), fee=D("0.09"), fee_asset_is_quote=True, cost_basis=D("100")
    )
    assert profit == D("-10.09")


# -- client order ids -------------------------------------------------------------------------

RUN_IDS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=1, max_size=40
)


@given(run_id=RUN_IDS, level=st.integers(-1, 10**6), seq=st.integers(0, 10**9 - 1))
def test_client_order_ids_fit_binance_and_are_stable(run_id: str, level: int, seq: int) -> None:
    cid = client_order_id(run_id, level, seq)
    assert BINANCE_CLIENT_ID.match(cid)
    assert len(cid) <= 36
    assert client_order_id(run_id, level, seq) == cid


def test_a_uuid_run_id_fits() -> None:
    cid = client_order_id("3f2b8c1e-9d4a-4c7b-8e2f-1a2b3c4d5e6f", 199, 99_999)
    assert BINANCE_CLIENT_ID.match(cid)


@given(
    run_id=RUN_IDS,
    a=st.tuples(st.integers(-1, 10**4), st.integers(0, 10**7)),
    b=st.tuples(st.integers(-1, 10**4), st.integers(0, 10**7)),
)
def test_distinct_level_and_sequence_give_distinct_ids(
    run_id: str, a: tuple[int, int], b: tuple[int, int]
) -> None:
    if a != b:
        assert client_order_id(run_id, *a) != client_order_id(run_id, *b)


def test_runs_are_told_apart_by_their_id() -> None:
    assert client_order_id("run-a", 3, 1) != client_order_id("run-b", 3, 1)


def test_grid_fingerprint_identifies_the_grid() -> None:
    params = GridParams(D("90000"), D("110000"), 11, Spacing.ARITHMETIC, D("1000"))
    same = GridParams(D("90000"), D("110000"), 11, Spacing.ARITHMETIC, D("1000"))
    other = GridParams(D("90000"), D("110000"), 12, Spacing.ARITHMETIC, D("1000"))
    assert params.fingerprint("BTC/USDT") == same.fingerprint("BTC/USDT")
    assert params.fingerprint("BTC/USDT") != other.fingerprint("BTC/USDT")
    assert params.fingerprint("BTC/USDT") != params.fingerprint("ETH/USDT")
