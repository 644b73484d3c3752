"""The SQLAlchemy unit of work: one AsyncSession per `async with`, rolled back unless committed."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Self

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.crashpoints import crash_point
from adapters.persistence.lean import LeanSqlite, LeanTransaction
from adapters.persistence.repositories import (
    SqlAlchemyFillRepository,
    SqlAlchemyOrderRepository,
    SqlAlchemyRunRepository,
    database_errors,
)
from domain.ports import FillRepository, OrderRepository, RunRepository

if TYPE_CHECKING:
    from domain.ports import UnitOfWork

_log = structlog.get_logger(__name__)


class SingleConnectionGate:
    """Admits one unit of work at a time to a database that has one shared connection.

    An in-memory SQLite database lives inside a single connection, so two units of work open
    at once would share (and commit or roll back) one transaction. Queuing them keeps them
    apart; a unit of work opened inside another by the same task would wait forever, so that
    is refused instead.
    """

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[object] | None = None

    async def acquire(self) -> None:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise RuntimeError(
                "a unit of work is already open in this task: finish it before opening another"
            )
        await self._lock.acquire()
        self._holder = task

    def release(self) -> None:
        self._holder = None
        self._lock.release()


class SqlAlchemyUnitOfWork:
    """`async with uow: ...; await uow.commit()`. Leaving the block without commit() rolls back.

    The object may be entered again after it was left (each time with a fresh session), but not
    while it is open, and never from two tasks at once: ask the factory for one per task.

    With `lean` (SQLite), the hot writes run on the driver connection and the transaction is
    begun, committed and rolled back there unless the session took part (see lean.py).
    """

    orders: OrderRepository
    fills: FillRepository
    runs: RunRepository

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        gate: SingleConnectionGate | None = None,
        savepoints: bool = True,
        lean: LeanSqlite | None = None,
    ) -> None:
        self._sessions = sessions
        self._gate = gate
        self._savepoints = savepoints  # False where a refused insert leaves the transaction usable
        self._lean = lean
        self._session: AsyncSession | None = None
        self._transaction: LeanTransaction | None = None

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this unit of work is already open: ask the factory for a new one")
        if self._gate is not None:
            await self._gate.acquire()
        session = self._sessions()
        self._session = session
        savepoints = self._savepoints
        lean = self._transaction = None if self._lean is None else self._lean.transaction(session)
        self.orders = SqlAlchemyOrderRepository(session, savepoints=savepoints, lean=lean)
        self.fills = self._fills = SqlAlchemyFillRepository(session, savepoints=savepoints, lean=lean)
        self.runs = SqlAlchemyRunRepository(session, savepoints=savepoints, lean=lean)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._open_session()
        transaction = self._transaction
        self._session = self._transaction = None
        try:
            with database_errors("rolling back the unit of work"):
                if transaction is not None:
                    await transaction.close()
                else:
                    try:
                        await session.rollback()
                    finally:
                        await session.close()
        except Exception as cleanup_error:
            if exc is None:
                raise
            # The body's own error matters more; keep it, but leave a trace of this one.
            _log.warning("unit of work cleanup failed", error=str(cleanup_error))
        finally:
            if self._gate is not None:
                self._gate.release()

    async def commit(self) -> None:
        if self._fills.added:
            crash_point("booking_fills")  # a kill here: the whole batch is rolled back, none half-booked
        with database_errors("committing the unit of work"):
            session = self._open_session()
            await (session.commit() if self._transaction is None else self._transaction.commit())

    async def rollback(self) -> None:
        with database_errors("rolling back the unit of work"):
            session = self._open_session()
            await (session.rollback() if self._transaction is None else self._transaction.rollback())

    def _open_session(self) -> AsyncSession:
        if self._session is None:
            raise RuntimeError("the unit of work is not open: use it inside `async with`")
        return self._session


if TYPE_CHECKING:
    _conforms: type[UnitOfWork] = SqlAlchemyUnitOfWork
