"""Invariants of the matching engine across random sequences of orders, cancels and price moves."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.simulated.engine import MatchingEngine
from domain.errors import ExchangeError
from domain.models import Fill, OrderStatus, Side

from .builders import at, limit, make_engine, market

CENT = Decimal("0.01")
STEP = Decimal("0.00001")
START_BASE, START_QUOTE = Decimal("0.1"), Decimal("3000")

prices = st.integers(min_value=2_700_000, max_value=3_300_000).map(lambda cents: cents * CENT)
amounts = st.integers(min_value=20, max_value=30_000).map(lambda steps: steps * STEP)
operations = st.one_of(
    st.tuples(st.just("limit"), st.sampled_from(Side), prices, amounts),
    st.tuples(st.just("market"), st.sampled_from(Side), amounts),
    st.tuples(st.just("cancel"), st.integers(min_value=0, max_value=30)),
    st.tuples(st.just("move"), prices, st.booleans()),
)


def _apply(engine: MatchingEngine, operation: tuple[Any, ...], step: int) -> list[Fill]:
    now = at(step)
    match operation:
        case ("limit", side, price, amount):
            return engine.place(limit(side, str(price), str(amount)), now)[1]
        case ("market", side, amount):
            return engine.place(market(side, str(amount)), now)[1]
        case ("cancel", index):
            open_orders = engine.open_orders()
            if open_orders:
                engine.cancel(now, order_id=open_orders[index % len(open_orders)].order_id)
            return []
        case ("move", price, gap):
            return engine.move_to(price, now, gap=gap)
    raise AssertionError(f"unknown operation {operation!r}")


def _check_ledger(engine: MatchingEngine) -> None:
    balances = engine.balances()
    assert all(balance.free >= 0 and balance.locked >= 0 for balance in balances.values())

    trades = engine.trades()
    bought = sum((f.amount - f.fee for f in trades if f.side is Side.BUY), Decimal(0))
    sold = sum((f.amount for f in trades if f.side is Side.SELL), Decimal(0))
    spent = sum((f.price * f.amount for f in trades if f.side is Side.BUY), Decimal(0))
    received = sum((f.price * f.amount - f.fee for f in trades if f.side is Side.SELL), Decimal(0))
    assert balances["BTC"].total == START_BASE + bought - sold
    assert balances["USDT"].total == START_QUOTE - spent + received

    open_orders = engine.open_orders()
    assert all(order.status is OrderStatus.OPEN for order in open_orders)
    assert balances["USDT"].locked == sum(
        (o.price * o.amount for o in open_orders if o.side is Side.BUY and o.price is not None), Decimal(0)
    )
    assert balances["BTC"].locked == sum((o.amount for o in open_orders if o.side is Side.SELL), Decimal(0))


@settings(max_examples=150, deadline=None)
@given(st.lists(operations, max_size=40))
def test_balances_stay_non_negative_and_totals_move_exactly_by_trades_minus_fees(
    sequence: list[tuple[Any, ...]],
) -> None:
    engine = make_engine(quote=str(START_QUOTE), base=str(START_BASE))
    for step, operation in enumerate(sequence):
        trades_before = len(engine.trades())
        snapshot_before = engine.snapshot()
        try:
            fills = _apply(engine, operation, step)
        except ExchangeError:
            assert engine.snapshot() == snapshot_before, "a refused order must change nothing"
            continue
        assert engine.trades()[trades_before:] == fills
        _check_ledger(engine)

    restored = MatchingEngine.restore(json.loads(json.dumps(engine.snapshot())))
    assert restored.snapshot() == engine.snapshot()


@settings(max_examples=100, deadline=None)
@given(st.lists(operations, max_size=30), st.lists(st.tuples(prices, st.booleans()), min_size=1, max_size=10))
def test_resting_orders_never_fill_at_a_worse_price_than_their_limit(
    sequence: list[tuple[Any, ...]], path: list[tuple[Decimal, bool]]
) -> None:
    engine = make_engine(quote=str(START_QUOTE), base=str(START_BASE))
    for step, operation in enumerate(sequence):
        try:
            _apply(engine, operation, step)
        except ExchangeError:
            continue
    for step, (price, gap) in enumerate(path):
        last = engine.last_price
        for fill in engine.move_to(price, at(100 + step), gap=gap):
            order = engine.order(order_id=fill.order_id)
            assert order.price is not None
            if fill.side is Side.BUY:
                assert price <= fill.price <= order.price
            else:
                assert order.price <= fill.price <= price
            assert last is not None
            assert min(last, price) <= fill.price <= max(last, price)
