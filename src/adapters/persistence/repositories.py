"""Repositories over one AsyncSession: domain dataclasses in, domain dataclasses out.

Rows never leave this module; every SQLAlchemy failure leaves as a `ValueError` (the caller
asked for something impossible: a duplicate, an unknown run, a NaN) or a `PersistenceError`
(the database itself failed).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from decimal import Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, RowMapping, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Delete, Update

from adapters.persistence.tables import bot_runs, fills, orders
from domain.errors import StorageError
from domain.models import (
    ZERO,
    BookedFill,
    BotRun,
    Fill,
    OrderStatus,
    OrderType,
    RunStatus,
    Side,
    TrackedOrder,
)

if TYPE_CHECKING:
    from adapters.persistence.lean import LeanTransaction

_ACTIVE_STATUSES = tuple(status.value for status in OrderStatus if status.is_active)
_NUMERIC_TRADE_ID = re.compile(r"[0-9]{1,19}")
_BIGINT_MAX = 2**63 - 1
# Wide enough that a run's profit never rounds; Inexact is trapped so it can never do so silently.
_PNL_CONTEXT = Context(prec=200, traps=[Inexact, InvalidOperation, Overflow, DivisionByZero])


class PersistenceError(StorageError):
    """The database failed (locked, unreachable, disk full, corrupt): not a mistake of the caller."""


@contextmanager
def database_errors(action: str) -> Iterator[None]:
    """Translate SQLAlchemy's exceptions into the caller's vocabulary, keeping the driver's message."""
    try:
        yield
    except StatementError as exc:
        # A column type refused a value (naive datetime, NaN, float for money): a caller mistake.
        if isinstance(exc.orig, ValueError | TypeError):
            raise ValueError(f"{action}: {exc.orig}") from exc
        raise PersistenceError(f"{action} failed: {exc.orig if exc.orig is not None else exc}") from exc
    except SQLAlchemyError as exc:
        raise PersistenceError(f"{action} failed: {exc}") from exc


def trade_sequence(trade_id: str) -> int | None:
    """The trade id as an integer when it is one (Binance's are), for ordering; None otherwise."""
    if not _NUMERIC_TRADE_ID.fullmatch(trade_id):
        return None
    number = int(trade_id)
    return number if number <= _BIGINT_MAX else None


async def _execute_counted(
    session: AsyncSession, statement: Update | Delete, params: Mapping[str, Any] | None = None
) -> int:
    """Run an UPDATE or DELETE and say how many rows it matched."""
    result = cast("CursorResult[Any]", await session.execute(statement, params))
    return result.rowcount


@asynccontextmanager
async def _savepoint_if(needed: bool, session: AsyncSession) -> AsyncIterator[None]:
    """A savepoint around one insert, so that a refused insert leaves the unit of work usable.

    PostgreSQL aborts the whole transaction on any error without one. SQLite does not need it: a
    refused statement (a constraint, ON CONFLICT ABORT) backs out that statement alone and the
    transaction stays open, so there the two extra round trips (SAVEPOINT, RELEASE) are skipped.
    """
    if needed:
        async with session.begin_nested():
            yield
    else:
        yield


def needs_savepoints(session: AsyncSession) -> bool:
    """Whether a refused statement aborts the whole transaction on this session's database."""
    bind = session.bind
    return bind is None or bind.dialect.name != "sqlite"


# The hot statements are built once, values passed as parameters: SQLAlchemy then finds the
# compiled form in its cache at once, instead of building and keying a new statement per call.
# On SQLite the four writes of a fill's booking (_INSERT_ORDER, _UPDATE_ORDER, _INSERT_FILL,
# _UPDATE_RUN) skip SQLAlchemy's execution altogether: see lean.py.
_INSERT_ORDER = insert(orders)
_UPDATE_ORDER = update(orders).where(
    orders.c.client_order_id == bindparam("key_client_order_id"), orders.c.run_id == bindparam("key_run_id")
)
_GET_ORDER = select(orders).where(orders.c.client_order_id == bindparam("client_order_id"))
_INSERT_FILL = insert(fills)
_FILL_EXISTS = select(
    exists().where(fills.c.run_id == bindparam("run_id"), fills.c.trade_id == bindparam("trade_id"))
)
_LAST_TRADE_ID = (
    select(fills.c.trade_id)
    .where(fills.c.run_id == bindparam("run_id"), fills.c.trade_seq.is_not(None))
    .order_by(fills.c.trade_seq.desc(), fills.c.id.desc())
    .limit(1)
)
_INSERT_RUN = insert(bot_runs)
_UPDATE_RUN = update(bot_runs).where(bot_runs.c.run_id == bindparam("key_run_id"))
_GET_RUN = select(bot_runs).where(bot_runs.c.run_id == bindparam("run_id"))


async def _run_exists(session: AsyncSession, run_id: str) -> bool:
    found = await session.execute(select(exists().where(bot_runs.c.run_id == run_id)))
    return bool(found.scalar())


# -- orders ---------------------------------------------------------------------------------------


def _order_values(order: TrackedOrder) -> dict[str, Any]:
    return {
        "client_order_id": order.client_order_id,
        "run_id": order.run_id,
        "exchange_order_id": order.exchange_order_id,
        "symbol": order.symbol,
        "side": Side(order.side).value,
        "type": OrderType(order.type).value,
        "amount": order.amount,
        "price": order.price,
        "level": order.level,
        "status": OrderStatus(order.status).value,
        "filled": order.filled,
        "cost_basis": order.cost_basis,
        "parent_client_order_id": order.parent_client_order_id,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
    }


def _order_from_row(row: RowMapping) -> TrackedOrder:
    return TrackedOrder(
        run_id=row["run_id"],
        client_order_id=row["client_order_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        type=OrderType(row["type"]),
        amount=row["amount"],
        price=row["price"],
        level=row["level"],
        status=OrderStatus(row["status"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        exchange_order_id=row["exchange_order_id"],
        filled=row["filled"],
        cost_basis=row["cost_basis"],
        parent_client_order_id=row["parent_client_order_id"],
    )


class SqlAlchemyOrderRepository:
    def __init__(
        self, session: AsyncSession, *, savepoints: bool | None = None, lean: LeanTransaction | None = None
    ) -> None:
        self._session = session
        self._savepoints = needs_savepoints(session) if savepoints is None else savepoints
        self._lean = lean  # on SQLite: add() and update() run on the driver, in the session's transaction

    async def add(self, order: TrackedOrder) -> None:
        action = f"booking order {order.client_order_id}"
        with database_errors(action):
            try:
                if self._lean is not None:
                    await self._lean.execute(_INSERT_ORDER, _order_values(order))
                else:
                    async with _savepoint_if(self._savepoints, self._session):
                        await self._session.execute(_INSERT_ORDER, _order_values(order))
            except IntegrityError as exc:
                if await self.get(order.client_order_id) is not None:
                    raise ValueError(f"order {order.client_order_id} is already booked") from exc
                if not await _run_exists(self._session, order.run_id):
                    raise ValueError(
                        f"order {order.client_order_id} belongs to unknown run {order.run_id}: add the run first"
                    ) from exc
                raise ValueError(f"{action}: {exc.orig}") from exc

    async def update(self, order: TrackedOrder) -> None:
        values = _order_values(order)
        values["key_client_order_id"] = values.pop("client_order_id")
        values["key_run_id"] = values.pop("run_id")
        with database_errors(f"updating order {order.client_order_id}"):
            if self._lean is not None:
                matched = await self._lean.execute(_UPDATE_ORDER, values)
            else:
                matched = await _execute_counted(self._session, _UPDATE_ORDER, values)
            if matched == 0:
                stored = await self.get(order.client_order_id)
                if stored is None:
                    raise ValueError(f"order {order.client_order_id} is not booked: add() it before update()")
                raise ValueError(
                    f"order {order.client_order_id} belongs to run {stored.run_id}, not {order.run_id}"
                )

    async def get(self, client_order_id: str) -> TrackedOrder | None:
        with database_errors(f"loading order {client_order_id}"):
            result = await self._session.execute(_GET_ORDER, {"client_order_id": client_order_id})
            row = result.mappings().one_or_none()
        return None if row is None else _order_from_row(row)

    async def list_active(self, run_id: str) -> Sequence[TrackedOrder]:
        with database_errors(f"listing active orders of run {run_id}"):
            result = await self._session.execute(
                select(orders)
                .where(orders.c.run_id == run_id, orders.c.status.in_(_ACTIVE_STATUSES))
                .order_by(orders.c.created_at, orders.c.client_order_id)
            )
            rows = result.mappings().all()
        return [_order_from_row(row) for row in rows]

    async def list_for_run(self, run_id: str) -> Sequence[TrackedOrder]:
        with database_errors(f"listing orders of run {run_id}"):
            result = await self._session.execute(
                select(orders)
                .where(orders.c.run_id == run_id)
                .order_by(orders.c.created_at, orders.c.client_order_id)
            )
            rows = result.mappings().all()
        return [_order_from_row(row) for row in rows]

    async def child_of(self, parent_client_order_id: str) -> TrackedOrder | None:
        """The most recently created counter-order (a rejected one may have been replaced)."""
        with database_errors(f"looking up the counter-order of {parent_client_order_id}"):
            result = await self._session.execute(
                select(orders)
                .where(orders.c.parent_client_order_id == parent_client_order_id)
                .order_by(orders.c.created_at.desc(), orders.c.client_order_id.desc())
                .limit(1)
            )
            row = result.mappings().one_or_none()
        return None if row is None else _order_from_row(row)

    async def count_for_level(self, run_id: str, level: int) -> int:
        with database_errors(f"counting orders of run {run_id} at level {level}"):
            result = await self._session.execute(
                select(func.count())
                .select_from(orders)
                .where(orders.c.run_id == run_id, orders.c.level == level)
            )
            return int(result.scalar_one())


# -- fills ----------------------------------------------------------------------------------------


def _fill_values(booked: BookedFill) -> dict[str, Any]:
    fill = booked.fill
    return {
        "run_id": booked.run_id,
        "trade_id": fill.trade_id,
        "order_id": fill.order_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": Side(fill.side).value,
        "price": fill.price,
        "amount": fill.amount,
        "fee": fill.fee,
        "fee_asset": fill.fee_asset,
        "timestamp": fill.timestamp,
        "is_maker": bool(fill.is_maker),
        "realized_pnl": booked.realized_pnl,
        "trade_seq": trade_sequence(fill.trade_id),
    }


def _fill_from_row(row: RowMapping) -> BookedFill:
    return BookedFill(
        run_id=row["run_id"],
        fill=Fill(
            trade_id=row["trade_id"],
            order_id=row["order_id"],
            client_order_id=row["client_order_id"],
            symbol=row["symbol"],
            side=Side(row["side"]),
            price=row["price"],
            amount=row["amount"],
            fee=row["fee"],
            fee_asset=row["fee_asset"],
            timestamp=row["timestamp"],
            is_maker=bool(row["is_maker"]),
        ),
        realized_pnl=row["realized_pnl"],
    )


class SqlAlchemyFillRepository:
    def __init__(
        self, session: AsyncSession, *, savepoints: bool | None = None, lean: LeanTransaction | None = None
    ) -> None:
        self._session = session
        self._savepoints = needs_savepoints(session) if savepoints is None else savepoints
        self._lean = lean  # on SQLite: add() runs on the driver, in the session's transaction
        self.added = 0  # fills added in this unit of work (the kill tests' `booking_fills` point)

    async def add(self, booked: BookedFill) -> None:
        self.added += 1
        trade_id, run_id = booked.fill.trade_id, booked.run_id
        action = f"booking fill {trade_id} for run {run_id}"
        with database_errors(action):
            try:
                if self._lean is not None:
                    await self._lean.execute(_INSERT_FILL, _fill_values(booked))
                else:
                    async with _savepoint_if(self._savepoints, self._session):
                        await self._session.execute(_INSERT_FILL, _fill_values(booked))
            except IntegrityError as exc:
                if await self.exists(run_id, trade_id):
                    raise ValueError(f"fill {trade_id} is already booked for run {run_id}") from exc
                if not await _run_exists(self._session, run_id):
                    raise ValueError(
                        f"fill {trade_id} belongs to unknown run {run_id}: add the run first"
                    ) from exc
                raise ValueError(f"{action}: {exc.orig}") from exc

    async def exists(self, run_id: str, trade_id: str) -> bool:
        with database_errors(f"looking up fill {trade_id} of run {run_id}"):
            result = await self._session.execute(_FILL_EXISTS, {"run_id": run_id, "trade_id": trade_id})
            return bool(result.scalar())

    async def remove(self, run_id: str, trade_id: str) -> None:
        """Delete the booked fill (an inferred one, replaced by the venue's real trades). A fill
        that is not booked for the run raises ValueError: removing nothing hides a wrong id."""
        with database_errors(f"removing fill {trade_id} of run {run_id}"):
            matched = await _execute_counted(
                self._session, delete(fills).where(fills.c.run_id == run_id, fills.c.trade_id == trade_id)
            )
        if matched == 0:
            raise ValueError(f"fill {trade_id} is not booked for run {run_id}: nothing to remove")

    async def list_for_run(self, run_id: str) -> Sequence[BookedFill]:
        """Oldest first; fills with the same timestamp keep the order they were booked in."""
        with database_errors(f"listing fills of run {run_id}"):
            result = await self._session.execute(
                select(fills).where(fills.c.run_id == run_id).order_by(fills.c.timestamp, fills.c.id)
            )
            rows = result.mappings().all()
        return [_fill_from_row(row) for row in rows]

    async def count(self, run_id: str) -> int:
        with database_errors(f"counting fills of run {run_id}"):
            result = await self._session.execute(
                select(func.count()).select_from(fills).where(fills.c.run_id == run_id)
            )
            return int(result.scalar_one())

    async def realized_pnl(self, run_id: str) -> Decimal:
        """Summed here, not in SQL: money is stored as text, and Decimal addition is exact."""
        with database_errors(f"summing realized profit of run {run_id}"):
            result = await self._session.execute(
                select(fills.c.realized_pnl).where(fills.c.run_id == run_id).order_by(fills.c.id)
            )
            amounts: list[Decimal] = list(result.scalars().all())
        with localcontext(_PNL_CONTEXT):
            try:
                return sum(amounts, ZERO)
            except Inexact as exc:
                raise ValueError(f"realized profit of run {run_id} cannot be summed exactly") from exc

    async def last_trade_id(self, run_id: str) -> str | None:
        """The numerically highest trade id booked for the run; None when no numeric id is booked."""
        with database_errors(f"looking up the last trade id of run {run_id}"):
            result = await self._session.execute(_LAST_TRADE_ID, {"run_id": run_id})
            trade_id: str | None = result.scalar_one_or_none()
        return trade_id


# -- runs -----------------------------------------------------------------------------------------


def _checked_params(params: Mapping[Any, Any], run_id: str) -> dict[str, str]:
    if not all(isinstance(key, str) and isinstance(value, str) for key, value in params.items()):
        raise ValueError(f"params of run {run_id} must map str to str, got {params!r}")
    return dict(params)


def _run_values(run: BotRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "symbol": run.symbol,
        "exchange": run.exchange,
        "status": RunStatus(run.status).value,
        "started_at": run.started_at,
        "stopped_at": run.stopped_at,
        "stop_reason": run.stop_reason,
        "grid_fingerprint": run.grid_fingerprint,
        "params": _checked_params(run.params, run.run_id),
    }


def _run_from_row(row: RowMapping) -> BotRun:
    params = row["params"]
    if not isinstance(params, Mapping):
        raise ValueError(f"stored params of run {row['run_id']} are not an object: {params!r}")
    return BotRun(
        run_id=row["run_id"],
        symbol=row["symbol"],
        exchange=row["exchange"],
        status=RunStatus(row["status"]),
        started_at=row["started_at"],
        grid_fingerprint=row["grid_fingerprint"],
        stopped_at=row["stopped_at"],
        stop_reason=row["stop_reason"],
        params=_checked_params(params, row["run_id"]),
    )


class SqlAlchemyRunRepository:
    def __init__(
        self, session: AsyncSession, *, savepoints: bool | None = None, lean: LeanTransaction | None = None
    ) -> None:
        self._session = session
        self._savepoints = needs_savepoints(session) if savepoints is None else savepoints
        self._lean = lean  # on SQLite: update() runs on the driver, in the session's transaction

    async def add(self, run: BotRun) -> None:
        values = _run_values(run)
        action = f"booking run {run.run_id}"
        with database_errors(action):
            try:
                async with _savepoint_if(self._savepoints, self._session):
                    await self._session.execute(_INSERT_RUN, values)
            except IntegrityError as exc:
                if await _run_exists(self._session, run.run_id):
                    raise ValueError(f"run {run.run_id} is already booked") from exc
                raise ValueError(f"{action}: {exc.orig}") from exc

    async def update(self, run: BotRun) -> None:
        values = _run_values(run)
        values["key_run_id"] = values.pop("run_id")
        with database_errors(f"updating run {run.run_id}"):
            if self._lean is not None:
                matched = await self._lean.execute(_UPDATE_RUN, values)
            else:
                matched = await _execute_counted(self._session, _UPDATE_RUN, values)
            if matched == 0:
                raise ValueError(f"run {run.run_id} is not booked: add() it before update()")

    async def get(self, run_id: str) -> BotRun | None:
        with database_errors(f"loading run {run_id}"):
            result = await self._session.execute(_GET_RUN, {"run_id": run_id})
            row = result.mappings().one_or_none()
        return None if row is None else _run_from_row(row)

    async def starting_with(self, prefix: str, *, limit: int = 2) -> Sequence[BotRun]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = (
            select(bot_runs)
            .where(bot_runs.c.run_id.like(f"{escaped}%", escape="\\"))
            .order_by(bot_runs.c.run_id)
            .limit(limit)
        )
        with database_errors(f"looking up runs starting with {prefix}"):
            result = await self._session.execute(query)
            return [_run_from_row(row) for row in result.mappings()]

    async def latest(
        self, symbol: str | None = None, *, exclude_fingerprint: str | None = None
    ) -> BotRun | None:
        """The most recently started run, optionally of one symbol and skipping one kind of run."""
        query = select(bot_runs)
        if symbol is not None:
            query = query.where(bot_runs.c.symbol == symbol)
        if exclude_fingerprint is not None:
            query = query.where(bot_runs.c.grid_fingerprint != exclude_fingerprint)
        query = query.order_by(bot_runs.c.started_at.desc(), bot_runs.c.run_id.desc()).limit(1)
        with database_errors("loading the latest run"):
            result = await self._session.execute(query)
            row = result.mappings().one_or_none()
        return None if row is None else _run_from_row(row)

    async def recent(
        self, *, limit: int, fingerprint: str | None = None, exclude_fingerprint: str | None = None
    ) -> Sequence[BotRun]:
        query = select(bot_runs)
        if fingerprint is not None:
            query = query.where(bot_runs.c.grid_fingerprint == fingerprint)
        if exclude_fingerprint is not None:
            query = query.where(bot_runs.c.grid_fingerprint != exclude_fingerprint)
        query = query.order_by(bot_runs.c.started_at.desc(), bot_runs.c.run_id.desc()).limit(limit)
        with database_errors("listing runs"):
            result = await self._session.execute(query)
            return [_run_from_row(row) for row in result.mappings()]
