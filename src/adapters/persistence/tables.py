"""The schema, as SQLAlchemy Core tables, and the two column types that keep money and time exact.

Nothing here assumes SQLite: the same tables are created on PostgreSQL through the same URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

_MONEY_MAX_CHARS = 64


class ExactDecimal(TypeDecorator[Decimal]):
    """A Decimal stored as its own string form, so it comes back digit for digit.

    SQLite's NUMERIC goes through a float; a string column does not, on any backend.
    Sums and comparisons on these columns happen in Python, never in SQL.
    """

    impl = String(_MONEY_MAX_CHARS)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money columns take a Decimal, got {type(value).__name__} {value!r}")
        if not value.is_finite():
            raise ValueError(f"money columns take a finite Decimal, got {value}")
        text = f"{value:f}"  # exact, and readable in the database: 0.00000083, not 8.3E-7
        if len(text) > _MONEY_MAX_CHARS:
            raise ValueError(f"Decimal {text} is longer than {_MONEY_MAX_CHARS} characters")
        return text

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation as exc:
            raise ValueError(f"stored money value {value!r} is not a number") from exc
        if not number.is_finite():
            raise ValueError(f"stored money value {value!r} is not finite")
        return number


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC and always read back with tzinfo=UTC.

    SQLite keeps no offset, so naive input would be ambiguous: it is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"datetime columns take a datetime, got {type(value).__name__} {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused: pass a timezone-aware UTC datetime"
            )
        utc = value.astimezone(UTC)
        # SQLite's DATETIME would silently drop the offset; drop it ourselves, knowing it is UTC.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = MetaData()

_ID = 128  # ids from venues and from us; generous so PostgreSQL's VARCHAR limit never bites.

bot_runs = Table(
    "bot_runs",
    metadata,
    Column("run_id", String(_ID), primary_key=True),
    Column("symbol", String(32), nullable=False),
    Column("exchange", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("stopped_at", UtcDateTime(), nullable=True),
    Column("stop_reason", Text(), nullable=True),
    Column("grid_fingerprint", String(256), nullable=False),
    Column("params", JSON(), nullable=False),
    Index("ix_bot_runs_symbol_started_at", "symbol", "started_at"),
    Index("ix_bot_runs_started_at", "started_at"),
)

orders = Table(
    "orders",
    metadata,
    Column("client_order_id", String(_ID), primary_key=True),
    Column("run_id", String(_ID), ForeignKey("bot_runs.run_id"), nullable=False, index=True),
    Column("exchange_order_id", String(_ID), nullable=True, index=True),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("type", String(16), nullable=False),
    Column("amount", ExactDecimal(), nullable=False),
    Column("price", ExactDecimal(), nullable=True),
    Column("level", Integer(), nullable=False),
    Column("status", String(32), nullable=False),
    Column("filled", ExactDecimal(), nullable=False),
    Column("cost_basis", ExactDecimal(), nullable=False),
    Column("parent_client_order_id", String(_ID), nullable=True, index=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_orders_run_level", "run_id", "level"),
)

fills = Table(
    "fills",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("run_id", String(_ID), ForeignKey("bot_runs.run_id"), nullable=False),
    Column("trade_id", String(_ID), nullable=False),
    Column("order_id", String(_ID), nullable=False),
    Column("client_order_id", String(_ID), nullable=False, index=True),
    Column("symbol", String(32), nullable=False),
    Column("side", String(8), nullable=False),
    Column("price", ExactDecimal(), nullable=False),
    Column("amount", ExactDecimal(), nullable=False),
    Column("fee", ExactDecimal(), nullable=False),
    Column("fee_asset", String(32), nullable=False),
    Column("timestamp", UtcDateTime(), nullable=False),
    Column("is_maker", Boolean(), nullable=False),
    Column("realized_pnl", ExactDecimal(), nullable=False),
    Column("trade_seq", BigInteger(), nullable=True),
    UniqueConstraint("run_id", "trade_id", name="uq_fills_run_trade"),
    Index("ix_fills_run_trade_seq", "run_id", "trade_seq"),
)

# One row per grid a bot is running: who holds it and when it last said it is alive. A second bot
# for the same account and symbol finds the row fresh and refuses to start (see lease.py).
leases = Table(
    "leases",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("holder", String(_ID), nullable=False),
    Column("pid", Integer(), nullable=False),
    Column("host", String(256), nullable=False),
    Column("acquired_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
)

# The schema's version: a database written by another version of the bot is refused at start,
# with a line that says so, instead of failing half way through a run.
schema_info = Table(
    "schema_info",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("version", Integer(), nullable=False),
)
