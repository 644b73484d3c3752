"""Small builders shared by the simulated-exchange tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from adapters.simulated.engine import MatchingEngine
from domain.models import OrderRequest, OrderType, Side
from domain.rules import MarketRules

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOL = "BTC/USDT"
TESTS_DIR = Path(__file__).resolve().parents[2]
DATA_FILE = TESTS_DIR / "data" / "BTCUSDT-1m.json"
SAMPLE_FILE = TESTS_DIR.parent / "config" / "data" / "BTCUSDT-1m-sample.json"

RULES = MarketRules(
    symbol=SYMBOL,
    base_asset="BTC",
    quote_asset="USDT",
    tick_size=Decimal("0.01"),
    step_size=Decimal("0.00001"),
    min_qty=Decimal("0.00001"),
    max_qty=Decimal("9000"),
    min_price=Decimal("0.01"),
    max_price=Decimal("1000000"),
    min_notional=Decimal("5"),
    max_num_orders=10,
)

_client_ids = itertools.count(1)


def make_engine(
    *,
    quote: str = "10000",
    base: str = "1",
    maker_fee: str = "0.001",
    taker_fee: str = "0.002",
    last_price: str | None = "30000",
    rules: MarketRules = RULES,
) -> MatchingEngine:
    return MatchingEngine(
        rules,
        {"BTC": Decimal(base), "USDT": Decimal(quote)},
        maker_fee=Decimal(maker_fee),
        taker_fee=Decimal(taker_fee),
        last_price=None if last_price is None else Decimal(last_price),
    )


def limit(side: Side, price: str, amount: str, client_order_id: str | None = None) -> OrderRequest:
    return OrderRequest(
        symbol=SYMBOL,
        side=side,
        type=OrderType.LIMIT,
        amount=Decimal(amount),
        price=Decimal(price),
        client_order_id=f"c{next(_client_ids)}" if client_order_id is None else client_order_id,
    )


def market(side: Side, amount: str, client_order_id: str | None = None) -> OrderRequest:
    return OrderRequest(
        symbol=SYMBOL,
        side=side,
        type=OrderType.MARKET,
        amount=Decimal(amount),
        client_order_id=f"c{next(_client_ids)}" if client_order_id is None else client_order_id,
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
