"""Small builders for the persistence tests: a valid entity by default, any field overridable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from domain.models import BookedFill, BotRun, Fill, OrderStatus, OrderType, RunStatus, Side, TrackedOrder

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def a_run(run_id: str = "run-1", **overrides: object) -> BotRun:
    fields: dict[str, object] = {
        "run_id": run_id,
        "symbol": "BTC/USDT",
        "exchange": "simulated",
        "status": RunStatus.RUNNING,
        "started_at": T0,
        "grid_fingerprint": "levels=10;lower=60000;upper=70000",
        "params": {"levels": "10", "lower": "60000", "upper": "70000"},
    }
    fields.update(overrides)
    return BotRun(**fields)  # type: ignore[arg-type]


def an_order(client_order_id: str = "gb-1", run_id: str = "run-1", **overrides: object) -> TrackedOrder:
    fields: dict[str, object] = {
        "run_id": run_id,
        "client_order_id": client_order_id,
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "type": OrderType.LIMIT,
        "amount": Decimal("0.00150000"),
        "price": Decimal("64250.01"),
        "level": 3,
        "status": OrderStatus.OPEN,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(overrides)
    return TrackedOrder(**fields)  # type: ignore[arg-type]


def a_fill(trade_id: str = "1001", run_id: str = "run-1", **overrides: object) -> BookedFill:
    realized_pnl = overrides.pop("realized_pnl", Decimal("0"))
    fields: dict[str, object] = {
        "trade_id": trade_id,
        "order_id": "555",
        "client_order_id": "gb-1",
        "symbol": "BTC/USDT",
        "side": Side.BUY,
        "price": Decimal("64250.01"),
        "amount": Decimal("0.0015"),
        "fee": Decimal("0.0000015"),
        "fee_asset": "BTC",
        "timestamp": T0,
        "is_maker": True,
    }
    fields.update(overrides)
    return BookedFill(run_id=run_id, fill=Fill(**fields), realized_pnl=realized_pnl)  # type: ignore[arg-type]
