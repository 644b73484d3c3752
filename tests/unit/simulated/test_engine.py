"""The matching engine's rules, one by one, as a trader would notice them."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

import pytest

from adapters.simulated.engine import MatchingEngine
from domain.errors import (
    DuplicateOrder,
    ExchangeError,
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    OrderNotFound,
)
from domain.models import Balance, OrderRequest, OrderStatus, OrderType, Side
from domain.rules import MarketRules

from .builders import RULES, SYMBOL, T0, at, limit, make_engine, market

BUY, SELL = Side.BUY, Side.SELL
D = Decimal


def free(engine: MatchingEngine, asset: str) -> Decimal:
    return engine.balances()[asset].free


def locked(engine: MatchingEngine, asset: str) -> Decimal:
    return engine.balances()[asset].locked


# -- ids, resting and locking ------------------------------------------------------------------


def test_order_and_trade_ids_are_sequential_strings_never_reused() -> None:
    engine = make_engine()
    first, _ = engine.place(limit(BUY, "29000", "0.01"), T0)
    second, _ = engine.place(limit(BUY, "28000", "0.01"), T0)
    engine.cancel(T0, order_id=second.order_id)
    third, fills = engine.place(market(BUY, "0.001"), T0)
    fourth_fills = engine.move_to(D("28999"), at(1))

    assert [first.order_id, second.order_id, third.order_id] == ["1", "2", "3"]
    assert [fill.trade_id for fill in fills + fourth_fills] == ["1", "2"]


def test_a_refused_order_takes_no_id() -> None:
    engine = make_engine()
    with pytest.raises(InsufficientFunds):
        engine.place(limit(BUY, "29000", "5"), T0)
    order, _ = engine.place(limit(BUY, "29000", "0.01"), T0)
    assert order.order_id == "1"


def test_a_resting_buy_locks_its_quote_and_a_resting_sell_its_base() -> None:
    engine = make_engine()
    buy, fills = engine.place(limit(BUY, "29000", "0.01"), T0)
    engine.place(limit(SELL, "31000", "0.25"), T0)

    assert fills == []
    assert buy.status is OrderStatus.OPEN
    assert engine.balances()["USDT"] == Balance("USDT", D("9710.00"), D("290.00"))
    assert engine.balances()["BTC"] == Balance("BTC", D("0.75"), D("0.25"))
    assert [order.order_id for order in engine.open_orders()] == ["1", "2"]


def test_an_empty_client_order_id_gets_one_from_the_venue() -> None:
    engine = make_engine()
    order, _ = engine.place(limit(BUY, "29000", "0.01", client_order_id=""), T0)
    assert order.client_order_id == "sim-1"
    assert engine.order(client_order_id="sim-1") == order


# -- fills when the price moves ----------------------------------------------------------------


def test_moving_down_fills_resting_buys_at_their_own_limit_highest_first_as_maker() -> None:
    engine = make_engine()
    low, _ = engine.place(limit(BUY, "29700", "0.01"), T0)
    mid_old, _ = engine.place(limit(BUY, "29800", "0.01"), T0)
    high, _ = engine.place(limit(BUY, "29900", "0.01"), T0)
    mid_new, _ = engine.place(limit(BUY, "29800", "0.01"), T0)

    fills = engine.move_to(D("29750"), at(5))

    assert [fill.order_id for fill in fills] == [high.order_id, mid_old.order_id, mid_new.order_id]
    assert [fill.price for fill in fills] == [D("29900"), D("29800"), D("29800")]
    assert all(fill.is_maker and fill.timestamp == at(5) for fill in fills)
    assert [order.order_id for order in engine.open_orders()] == [low.order_id]
    assert engine.last_price == D("29750")


def test_moving_up_fills_resting_sells_at_their_own_limit_lowest_first() -> None:
    engine = make_engine()
    far, _ = engine.place(limit(SELL, "30300", "0.01"), T0)
    near, _ = engine.place(limit(SELL, "30100", "0.01"), T0)
    engine.place(limit(SELL, "30500", "0.01"), T0)

    fills = engine.move_to(D("30300"), at(1))

    assert [(fill.order_id, fill.price) for fill in fills] == [
        (near.order_id, D("30100")),
        (far.order_id, D("30300")),
    ]
    assert len(engine.open_orders()) == 1


def test_a_move_the_other_way_fills_nothing() -> None:
    engine = make_engine()
    engine.place(limit(BUY, "29000", "0.01"), T0)
    engine.place(limit(SELL, "31000", "0.01"), T0)
    assert engine.move_to(D("30900"), at(1)) == []
    assert engine.move_to(D("29100"), at(2)) == []
    assert len(engine.open_orders()) == 2


def test_a_resting_buy_filled_by_a_move_pays_the_maker_fee_in_base() -> None:
    engine = make_engine()
    order, _ = engine.place(limit(BUY, "29000", "0.01"), T0)

    (fill,) = engine.move_to(D("29000"), at(1))

    assert (fill.fee, fill.fee_asset, fill.is_maker) == (D("0.00001"), "BTC", True)
    assert engine.balances()["BTC"] == Balance("BTC", D("1.00999"))
    assert engine.balances()["USDT"] == Balance("USDT", D("9710.00"))
    filled = engine.order(order_id=order.order_id)
    assert filled.status is OrderStatus.FILLED
    assert (filled.filled, filled.average_price, filled.fee, filled.fee_asset) == (
        D("0.01"),
        D("29000"),
        D("0.00001"),
        "BTC",
    )


def test_a_resting_sell_filled_by_a_move_pays_the_maker_fee_in_quote() -> None:
    engine = make_engine()
    engine.place(limit(SELL, "31000", "0.01"), T0)

    (fill,) = engine.move_to(D("31500"), at(1))

    assert (fill.price, fill.fee, fill.fee_asset) == (D("31000"), D("0.31"), "USDT")
    assert free(engine, "USDT") == D("10309.69")
    assert engine.balances()["BTC"] == Balance("BTC", D("0.99"))


def test_a_gap_fills_crossed_orders_at_the_new_price_which_is_better_for_their_owner() -> None:
    engine = make_engine()
    engine.place(limit(BUY, "29000", "0.01"), T0)
    engine.place(limit(SELL, "31000", "0.01"), T0)

    (buy_fill,) = engine.move_to(D("28500"), at(1), gap=True)
    (sell_fill,) = engine.move_to(D("31600"), at(2), gap=True)

    assert buy_fill.price == D("28500")
    assert sell_fill.price == D("31600")
    # The buy locked 290 USDT but paid only 285: the 5 saved went back to free.
    assert free(engine, "USDT") == D("10000") - D("285") + D("316") - D("0.316")
    assert locked(engine, "USDT") == 0


def test_the_first_price_ever_just_sets_the_market_price() -> None:
    engine = make_engine(last_price=None)
    assert engine.move_to(D("30000"), T0) == []
    assert engine.last_price == D("30000")


def test_orders_resting_before_any_price_that_the_first_price_crosses_fill_at_it() -> None:
    engine = make_engine(last_price=None)
    buy, no_fills = engine.place(limit(BUY, "29000", "0.01"), T0)
    engine.place(limit(BUY, "27000", "0.01"), T0)

    assert no_fills == []  # no market price: a limit order rests
    (fill,) = engine.move_to(D("28000"), at(1))
    assert (fill.order_id, fill.price, fill.is_maker) == (buy.order_id, D("28000"), True)


# -- fills at placement ------------------------------------------------------------------------


def test_a_marketable_limit_buy_fills_at_once_as_taker_at_the_last_price() -> None:
    engine = make_engine()
    order, (fill,) = engine.place(limit(BUY, "31000", "0.01"), T0)

    assert order.status is OrderStatus.FILLED
    assert (fill.price, fill.is_maker, fill.fee, fill.fee_asset) == (D("30000"), False, D("0.00002"), "BTC")
    # It had to afford 310 at its limit but spends 300 at the last price; nothing stays locked.
    assert engine.balances()["USDT"] == Balance("USDT", D("9700.00"))
    assert engine.balances()["BTC"] == Balance("BTC", D("1.00998"))
    assert engine.open_orders() == []


def test_a_marketable_limit_sell_fills_at_once_at_the_last_price() -> None:
    engine = make_engine()
    order, (fill,) = engine.place(limit(SELL, "29000", "0.01"), T0)
    assert (order.status, order.average_price, fill.price) == (OrderStatus.FILLED, D("30000"), D("30000"))
    assert (fill.fee, fill.fee_asset) == (D("0.6"), "USDT")
    assert free(engine, "USDT") == D("10299.4")


def test_a_limit_at_exactly_the_last_price_is_marketable() -> None:
    engine = make_engine()
    _, fills = engine.place(limit(BUY, "30000", "0.01"), T0)
    assert len(fills) == 1


def test_market_orders_fill_at_the_last_price_with_the_taker_fee_in_the_asset_received() -> None:
    engine = make_engine()
    buy, (buy_fill,) = engine.place(market(BUY, "0.1"), T0)
    _, (sell_fill,) = engine.place(market(SELL, "0.05"), at(1))

    assert (buy.status, buy.price, buy.type) == (OrderStatus.FILLED, None, OrderType.MARKET)
    assert (buy_fill.price, buy_fill.fee, buy_fill.fee_asset) == (D("30000"), D("0.0002"), "BTC")
    assert (sell_fill.price, sell_fill.fee, sell_fill.fee_asset) == (D("30000"), D("3"), "USDT")
    assert free(engine, "BTC") == D("1") + D("0.1") - D("0.0002") - D("0.05")
    assert free(engine, "USDT") == D("10000") - D("3000") + D("1500") - D("3")


def test_fees_are_rounded_up_to_eight_decimals() -> None:
    engine = make_engine(maker_fee="0.00075", taker_fee="0.001")
    engine.place(limit(BUY, "29000", "0.00123"), T0)
    (buy_fill,) = engine.move_to(D("29000"), at(1))  # maker: 0.0000009225 BTC
    engine.move_to(D("30000.01"), at(1))
    _, (sell_fill,) = engine.place(market(SELL, "0.00017"), at(2))  # taker: 0.0051000017 USDT

    assert buy_fill.fee == D("0.00000093")
    assert sell_fill.fee == D("0.00510001")


def test_a_zero_fee_rate_charges_nothing() -> None:
    engine = make_engine(maker_fee="0", taker_fee="0")
    _, (fill,) = engine.place(market(BUY, "0.01"), T0)
    assert fill.fee == 0
    assert free(engine, "BTC") == D("1.01")


# -- cancel --------------------------------------------------------------------------------------


def test_cancel_releases_the_locked_funds() -> None:
    engine = make_engine()
    buy, _ = engine.place(limit(BUY, "29000", "0.01"), T0)
    sell, _ = engine.place(limit(SELL, "31000", "0.5"), T0)

    canceled = engine.cancel(at(1), order_id=buy.order_id)
    engine.cancel(at(1), client_order_id=sell.client_order_id)

    assert canceled.status is OrderStatus.CANCELED
    assert engine.balances()["USDT"] == Balance("USDT", D("10000.00"))
    assert engine.balances()["BTC"] == Balance("BTC", D("1.0"))
    assert engine.open_orders() == []
    assert engine.move_to(D("20000"), at(2)) == []  # a canceled order never fills


def test_cancel_all_cancels_every_open_order_oldest_first() -> None:
    engine = make_engine()
    ids = [engine.place(limit(BUY, price, "0.01"), T0)[0].order_id for price in ("29000", "28000", "29500")]

    canceled = engine.cancel_all(at(1))

    assert [order.order_id for order in canceled] == ids
    assert all(order.status is OrderStatus.CANCELED for order in canceled)
    assert locked(engine, "USDT") == 0
    assert engine.cancel_all(at(2)) == []


# -- lookups -------------------------------------------------------------------------------------


def test_orders_are_found_by_venue_id_or_client_id() -> None:
    engine = make_engine()
    order, _ = engine.place(limit(BUY, "29000", "0.01", client_order_id="grid-1"), T0)
    assert engine.order(order_id="1") == order
    assert engine.order(client_order_id="grid-1") == order
    assert engine.order(order_id="1", client_order_id="grid-1") == order


def test_a_reused_client_id_finds_the_latest_order() -> None:
    engine = make_engine()
    engine.place(limit(BUY, "29000", "0.01", client_order_id="again"), T0)
    engine.cancel(T0, client_order_id="again")
    newer, _ = engine.place(limit(BUY, "28000", "0.01", client_order_id="again"), T0)
    assert engine.order(client_order_id="again") == newer


def test_trades_since_an_id_are_strictly_after_it_oldest_first() -> None:
    engine = make_engine()
    for price in ("29900", "29800", "29700"):
        engine.place(limit(BUY, price, "0.01"), T0)
    engine.move_to(D("29000"), at(1))

    assert [fill.trade_id for fill in engine.trades()] == ["1", "2", "3"]
    assert [fill.trade_id for fill in engine.trades("1")] == ["2", "3"]
    assert engine.trades("3") == []


def test_an_order_s_trades_are_found_by_its_venue_id() -> None:
    engine = make_engine()
    first, _ = engine.place(limit(BUY, "29900", "0.01"), T0)
    resting, _ = engine.place(limit(BUY, "29000", "0.01"), T0)
    taken, taken_fills = engine.place(market(SELL, "0.02"), T0)
    first_fills = engine.move_to(D("29800"), at(1))

    assert engine.order_trades(first.order_id) == first_fills
    assert engine.order_trades(taken.order_id) == taken_fills
    assert [fill.trade_id for fill in taken_fills + first_fills] == ["1", "2"]
    assert engine.order_trades(resting.order_id) == []  # still resting: no trade yet
    assert engine.order_trades("999") == []  # unknown: no trade, no error


def test_the_ticker_is_a_one_tick_spread_around_the_last_price() -> None:
    ticker = make_engine().ticker(at(3))
    assert (ticker.symbol, ticker.bid, ticker.last, ticker.ask, ticker.timestamp) == (
        SYMBOL,
        D("29999.99"),
        D("30000"),
        D("30000.01"),
        at(3),
    )


def test_there_is_no_ticker_before_a_price() -> None:
    with pytest.raises(ExchangeUnavailable, match="no market price yet"):
        make_engine(last_price=None).ticker(T0)


# -- refusals ------------------------------------------------------------------------------------


def _with_open_orders(*requests: OrderRequest, rules: MarketRules = RULES) -> Callable[[], MatchingEngine]:
    def build() -> MatchingEngine:
        engine = make_engine(rules=rules)
        for request in requests:
            engine.place(request, T0)
        return engine

    return build


_TWO_ORDER_RULES = MarketRules(
    symbol=SYMBOL,
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=D("0.01"),
    step_size=D("0.00001"),
    max_num_orders=2,
)

REFUSALS = [
    pytest.param(
        make_engine,
        limit(BUY, "29000", "0.000015"),
        InvalidOrder,
        "Filter failure: LOT_SIZE",
        -1013,
        id="lot-size",
    ),
    pytest.param(
        make_engine,
        limit(BUY, "29000.005", "0.01"),
        InvalidOrder,
        "Filter failure: PRICE_FILTER",
        -1013,
        id="tick",
    ),
    pytest.param(
        make_engine,
        limit(BUY, "29000", "0.0001"),
        InvalidOrder,
        "Filter failure: NOTIONAL",
        -1013,
        id="notional",
    ),
    pytest.param(
        make_engine,
        market(SELL, "0.0001"),
        InvalidOrder,
        "Filter failure: NOTIONAL",
        -1013,
        id="market-notional",
    ),
    pytest.param(
        _with_open_orders(limit(BUY, "29000", "0.01"), limit(SELL, "31000", "0.01"), rules=_TWO_ORDER_RULES),
        limit(BUY, "28000", "0.01"),
        InvalidOrder,
        "Filter failure: MAX_NUM_ORDERS",
        -1013,
        id="max-num-orders",
    ),
    pytest.param(
        _with_open_orders(limit(BUY, "29000", "0.01", client_order_id="dup")),
        limit(BUY, "28000", "0.01", client_order_id="dup"),
        DuplicateOrder,
        "Duplicate order sent.",
        -2010,
        id="duplicate",
    ),
    pytest.param(
        make_engine,
        limit(BUY, "29000", "0.5"),
        InsufficientFunds,
        "Account has insufficient balance for requested action.",
        -2010,
        id="buy-funds",
    ),
    pytest.param(
        _with_open_orders(limit(SELL, "31000", "0.6")),
        limit(SELL, "32000", "0.5"),
        InsufficientFunds,
        "Account has insufficient balance for requested action.",
        -2010,
        id="sell-funds-locked",
    ),
    pytest.param(
        make_engine,
        market(BUY, "0.34"),
        InsufficientFunds,
        "Account has insufficient balance for requested action.",
        -2010,
        id="market-buy-funds",
    ),
    pytest.param(
        lambda: make_engine(last_price=None),
        market(BUY, "0.01"),
        InvalidOrder,
        "No market price to fill against.",
        -1013,
        id="market-no-price",
    ),
    pytest.param(
        make_engine,
        OrderRequest(
            symbol="ETH/USDT",
            side=BUY,
            type=OrderType.LIMIT,
            amount=D("1"),
            price=D("2000"),
            client_order_id="x",
        ),
        InvalidOrder,
        "Invalid symbol.",
        -1121,
        id="symbol",
    ),
]


@pytest.mark.parametrize(("build", "request_", "error", "message", "code"), REFUSALS)
def test_a_refused_order_raises_the_venue_error_and_changes_nothing(
    build: Callable[[], MatchingEngine],
    request_: OrderRequest,
    error: type[ExchangeError],
    message: str,
    code: int,
) -> None:
    engine = build()
    before = engine.snapshot()

    with pytest.raises(error) as raised:
        engine.place(request_, at(9))

    assert type(raised.value) is error
    assert (raised.value.message, raised.value.code) == (message, code)
    assert engine.snapshot() == before


def test_a_client_id_is_free_again_once_its_order_is_closed() -> None:
    engine = make_engine()
    engine.place(limit(BUY, "29000", "0.01", client_order_id="level-3"), T0)
    engine.move_to(D("28000"), at(1))
    order, _ = engine.place(limit(BUY, "27000", "0.01", client_order_id="level-3"), at(2))
    assert order.status is OrderStatus.OPEN


def test_looking_up_an_unknown_order_is_order_not_found_2013() -> None:
    engine = make_engine()
    for lookup in ({"order_id": "42"}, {"client_order_id": "nope"}):
        with pytest.raises(OrderNotFound) as raised:
            engine.order(**lookup)
        assert (raised.value.message, raised.value.code) == ("Order does not exist.", -2013)


def test_a_lookup_needs_an_id() -> None:
    with pytest.raises(InvalidOrder) as raised:
        make_engine().order()
    assert raised.value.code == -1102


def test_cancelling_an_unknown_or_closed_order_is_order_not_found_2011_and_changes_nothing() -> None:
    engine = make_engine()
    filled, _ = engine.place(market(BUY, "0.01"), T0)
    canceled, _ = engine.place(limit(BUY, "29000", "0.01"), T0)
    engine.cancel(T0, order_id=canceled.order_id)
    engine.place(limit(BUY, "28000", "0.01"), T0)
    before = engine.snapshot()

    for lookup in (
        {"order_id": "99"},
        {"order_id": filled.order_id},
        {"client_order_id": canceled.client_order_id},
    ):
        with pytest.raises(OrderNotFound) as raised:
            engine.cancel(at(1), **lookup)
        assert (raised.value.message, raised.value.code) == ("Unknown order sent.", -2011)
    assert engine.snapshot() == before


@pytest.mark.parametrize(
    ("maker", "taker"), [("-0.001", "0.001"), ("0.001", "1")], ids=["negative-maker", "taker-of-100%"]
)
def test_fee_rates_outside_zero_to_one_are_refused(maker: str, taker: str) -> None:
    with pytest.raises(ValueError, match="fee"):
        make_engine(maker_fee=maker, taker_fee=taker)


# -- snapshot ------------------------------------------------------------------------------------


def _busy_engine() -> MatchingEngine:
    engine = make_engine()
    engine.place(limit(BUY, "29500", "0.01", client_order_id="b1"), T0)
    engine.place(limit(BUY, "29000", "0.02", client_order_id="b2"), at(1))
    engine.place(limit(SELL, "30500", "0.03", client_order_id="s1"), at(2))
    engine.place(market(BUY, "0.004"), at(3))
    canceled, _ = engine.place(limit(SELL, "32000", "0.01"), at(4))
    engine.cancel(at(5), order_id=canceled.order_id)
    engine.move_to(D("29400"), at(6))  # fills b1
    engine.place(limit(SELL, "30400", "0.01", client_order_id="s2"), at(7))
    return engine


def test_snapshot_round_trips_exactly_through_json() -> None:
    engine = _busy_engine()
    snapshot = engine.snapshot()
    restored = MatchingEngine.restore(json.loads(json.dumps(snapshot)))

    assert restored.snapshot() == snapshot
    assert restored.balances() == engine.balances()
    assert restored.open_orders() == engine.open_orders()
    assert restored.trades() == engine.trades()
    for order_id in ("1", "4"):  # b1 (filled by a move) and the market buy
        assert restored.order_trades(order_id) == engine.order_trades(order_id) != []
    assert restored.rules == engine.rules
    assert locked(restored, "USDT") == D("580.00")  # b2 still rests
    assert locked(restored, "BTC") == D("0.04")  # s1 and s2 still rest


def test_a_restored_engine_carries_on_exactly_like_the_original() -> None:
    original = _busy_engine()
    restored = MatchingEngine.restore(json.loads(json.dumps(original.snapshot())))

    for engine in (original, restored):
        engine.place(limit(BUY, "28000", "0.01", client_order_id="b3"), at(8))
    path = [("30450", False), ("30600", False), ("28500", True), ("27000", False)]
    results = [
        [engine.move_to(D(price), at(9 + i), gap=gap) for i, (price, gap) in enumerate(path)]
        for engine in (original, restored)
    ]

    assert results[0] == results[1]
    assert sum(len(fills) for fills in results[0]) == 4
    assert original.snapshot() == restored.snapshot()


def test_restoring_a_malformed_snapshot_is_a_value_error() -> None:
    snapshot = _busy_engine().snapshot()
    snapshot["orders"][0]["price"] = 29500.0  # a float where a decimal string belongs
    with pytest.raises(ValueError, match="malformed matching-engine snapshot"):
        MatchingEngine.restore(snapshot)
    with pytest.raises(ValueError, match="malformed"):
        MatchingEngine.restore({"version": 1})
