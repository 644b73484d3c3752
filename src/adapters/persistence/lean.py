"""The hot writes of a SQLite unit of work, run on the driver connection instead of through
SQLAlchemy's per-statement machinery.

The grid books every fill in one unit of work (the filled order updated, the counter-order and the
fill added, the run updated, one commit) between the fill arriving and its counter-order being
sent. Through an AsyncSession those five calls cost ~1 ms of SQLAlchemy work (session and
transaction state, execution context, result, a greenlet hop each) around ~0.1 ms of SQLite work.
Here each hot Core statement is compiled once per dialect into its SQL text, the order of its
positional parameters and the bind processors of its columns (the same compiled statement and the
same processors SQLAlchemy would use: the column text is identical), and run on the unit of work's
aiosqlite connection, inline with its BUSY retry (see `database._InlineSqliteConnection`).

The transaction is shared: the first lean write begins it on the driver (`BEGIN IMMEDIATE`, as
`database._begin_immediate` does) unless SQLAlchemy already did; a read through the session later
in the same unit of work joins it instead of beginning its own (`joins_lean_transaction`), so it
sees the lean writes, and one COMMIT or ROLLBACK ends both.

Errors leave as SQLAlchemy's own exceptions (`DBAPIError.instance`, as SQLAlchemy wraps them), so
the repositories' handling (a duplicate becomes ValueError, the rest `database_errors`) is the
same on both paths, message for message.
"""

from __future__ import annotations

import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiosqlite
from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert, Update

_Processor = Callable[[Any], Any]

# The SQLAlchemy connections on which a lean unit of work has begun a transaction on the driver:
# SQLAlchemy's own begin on them joins it (see `joins_lean_transaction`). Keyed by the Connection
# object, not the DBAPI connection: an in-memory database shares its one DBAPI connection with the
# engine's other users, which must not join a unit of work's transaction.
_LEAN_OPEN: weakref.WeakSet[Connection] = weakref.WeakSet()


def joins_lean_transaction(connection: Connection) -> bool:
    """Whether SQLAlchemy, beginning a transaction on `connection`, must join the one a lean unit
    of work began on its driver instead of emitting BEGIN."""
    return connection in _LEAN_OPEN


@dataclass(frozen=True, slots=True)
class LeanStatement:
    """A Core INSERT or UPDATE compiled for one dialect: SQL text and positional parameters."""

    sql: str
    binds: tuple[tuple[str, _Processor | None], ...]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The values in the statement's order, through their columns' bind processors."""
        return tuple(values[key] if process is None else process(values[key]) for key, process in self.binds)


class NotLean(ValueError):
    """The statement needs SQLAlchemy's execution (defaults, RETURNING, expanding parameters)."""


def precompile(statement: Insert | Update, keys: Sequence[str], dialect: Dialect) -> LeanStatement:
    """Compile `statement` for parameters named `keys` the way SQLAlchemy's execution does.

    Refuses (NotLean) what the lean path cannot reproduce: Python-side column defaults,
    RETURNING, parameters rendered at execution, escaped or tuple-typed parameters, a dialect that
    does not take positional parameters."""
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    positions = compiled.positiontup
    if (
        not compiled.positional
        or positions is None
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.effective_returning
        or compiled._result_columns  # rows returned (RETURNING): effective_returning can miss it
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
        or not set(positions) <= set(keys)
    ):
        raise NotLean(f"cannot run {compiled.string!r} without SQLAlchemy's execution")
    processors = compiled._bind_processors
    binds: list[tuple[str, _Processor | None]] = []
    for key in positions:
        process = processors.get(key)
        if process is not None and not callable(process):
            raise NotLean(f"parameter {key} of {compiled.string!r} has a tuple type")
        binds.append((key, cast("_Processor | None", process)))
    return LeanStatement(compiled.string, tuple(binds))


class LeanSqlite:
    """What a Database on SQLite gives its units of work for the lean path: the connection they
    all run on (kept open by the Database), its statements compiled once, and who to tell of a
    commit made on the driver (SQLAlchemy's commit event does not see it)."""

    def __init__(
        self, connection: AsyncConnection, dialect: Dialect, on_commit: Callable[[], None] | None = None
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self._on_commit = on_commit
        self._statements: dict[tuple[Insert | Update, tuple[str, ...]], LeanStatement] = {}

    def statement(self, statement: Insert | Update, values: Mapping[str, Any]) -> LeanStatement:
        key = (statement, tuple(values))
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = precompile(statement, key[1], self.dialect)
        return found

    def committed(self) -> None:
        if self._on_commit is not None:
            self._on_commit()

    async def driver(self) -> aiosqlite.Connection:
        """The aiosqlite connection under the kept SQLAlchemy connection."""
        sync = self.connection.sync_connection
        if sync is not None and not sync.closed and not sync.invalidated:
            raw = sync.connection  # checked out for the connection's life: no I/O
        else:
            raw = await self.connection.get_raw_connection()  # raises if closed, reconnects if invalidated
        return cast("aiosqlite.Connection", raw.driver_connection)

    def transaction(self, session: AsyncSession) -> LeanTransaction:
        return LeanTransaction(self, session)


class LeanTransaction:
    """One unit of work's transaction on SQLite, shared by its lean writes and its session."""

    def __init__(self, lean: LeanSqlite, session: AsyncSession) -> None:
        self._lean = lean
        self._session = session
        self._driver: aiosqlite.Connection | None = None
        self._began = False  # this unit of work began the transaction on the driver

    async def execute(self, statement: Insert | Update, values: Mapping[str, Any]) -> int:
        """Run `statement` with `values` in the unit of work's transaction; the rows it matched."""
        prepared = self._lean.statement(statement, values)
        try:
            parameters = prepared.parameters(values)
        except Exception as exc:  # a column type refused a value: SQLAlchemy's StatementError
            raise self._wrapped(exc, prepared.sql, values) from exc
        driver = await self._begin(prepared.sql, parameters)
        try:
            cursor = await driver.execute(prepared.sql, parameters)
            try:
                rowcount: int = cursor.rowcount
            finally:
                await cursor.close()
        except Exception as exc:
            raise self._wrapped(exc, prepared.sql, parameters) from exc
        return rowcount

    async def commit(self) -> None:
        """One COMMIT for the lean writes and the session's work alike: through the session if it
        took part (SQLAlchemy began the transaction, or joined it), else on the driver."""
        if self._session.in_transaction():
            await self._session.commit()
        if self._began and await self._call("commit", _commit_if_open):
            self._lean.committed()
        self._ended()

    async def rollback(self) -> None:
        """Drop everything since the last commit: the lean writes and the session's work alike."""
        try:
            if self._session.in_transaction():
                await self._session.rollback()
        finally:
            began = self._began
            self._ended()
            if began:
                await self._call("rollback", _rollback_if_open)

    async def close(self) -> None:
        """Leave the unit of work: roll back what is open, release the session.

        A session that holds no transaction (never used, or used and committed) holds no
        connection either, and closing it only empties an identity map that Core statements never
        fill: that close (~30 µs) is skipped."""
        used = self._session.in_transaction()
        try:
            await self.rollback()
        finally:
            if used:
                await self._session.close()

    async def _begin(self, sql: str, parameters: Sequence[Any]) -> aiosqlite.Connection:
        driver = self._driver
        if driver is None:
            try:
                driver = self._driver = await self._lean.driver()
            except SQLAlchemyError:
                raise
            except Exception as exc:
                raise self._wrapped(exc, sql, parameters) from exc
        try:
            if self._began or self._lean.connection.in_transaction():
                if not driver.in_transaction:
                    # SQLite ended it itself (it rolls back on e.g. a full disk or an I/O error): a
                    # write now would commit on its own, apart from the unit of work's earlier ones.
                    raise sqlite3.OperationalError("the unit of work's transaction was rolled back by SQLite")
                return driver
            cursor = await driver.execute("BEGIN IMMEDIATE")
            await cursor.close()
        except Exception as exc:
            raise self._wrapped(exc, "BEGIN IMMEDIATE", ()) from exc
        self._began = True
        sync = self._lean.connection.sync_connection
        if sync is not None:
            _LEAN_OPEN.add(sync)
        return driver

    def _ended(self) -> None:
        self._began = False
        sync = self._lean.connection.sync_connection
        if sync is not None:
            _LEAN_OPEN.discard(sync)

    async def _call(self, name: str, call: Callable[[aiosqlite.Connection], Awaitable[bool]]) -> bool:
        driver = self._driver
        if driver is None:
            return False
        try:
            return await call(driver)
        except Exception as exc:
            raise self._wrapped(exc, name.upper(), ()) from exc

    def _wrapped(self, exc: Exception, sql: str, parameters: Any) -> BaseException:
        """`exc` as SQLAlchemy raises it from an execution: a DBAPIError subclass for a driver
        error (IntegrityError, OperationalError...), a StatementError for anything else."""
        if isinstance(exc, ValueError) and str(exc).lower() in ("no active connection", "connection closed"):
            exc = sqlite3.OperationalError(str(exc))  # as SQLAlchemy's aiosqlite adapter says it
        return DBAPIError.instance(sql, parameters, exc, sqlite3.Error, dialect=self._lean.dialect)


async def _commit_if_open(driver: aiosqlite.Connection) -> bool:
    """COMMIT unless the session's commit already ended the transaction; whether it did."""
    if not driver.in_transaction:
        return False
    await driver.commit()
    return True


async def _rollback_if_open(driver: aiosqlite.Connection) -> bool:
    if not driver.in_transaction:
        return False
    await driver.rollback()
    return True
