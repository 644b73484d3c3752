"""Opening the database: engine, schema, and the SQLite settings a bot on one file needs.

Every SQLite-specific step is taken only when the URL's dialect is sqlite; any other async
SQLAlchemy URL (e.g. `postgresql+asyncpg://...`) goes through the same code unchanged.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, event, insert, inspect, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from adapters.persistence.tables import metadata, schema_info
from adapters.persistence.uow import SingleConnectionGate, SqlAlchemyUnitOfWork
from domain.errors import ConfigurationError

_log = structlog.get_logger(__name__)

URL_SETTING = "DATABASE__URL"
SCHEMA_VERSION = 1  # raise it with every change to tables.py, with a migration for older files
_EXAMPLES = "e.g. sqlite+aiosqlite:///data/gridbot.db or postgresql+asyncpg://user:password@host/gridbot"

# busy_timeout first, so that switching the journal mode waits for another process's lock.
_SQLITE_PRAGMAS = (
    "PRAGMA busy_timeout=5000",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
)


class Database:
    """An open database: hands out units of work, one fresh session each."""

    engine: AsyncEngine

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # An in-memory SQLite database is one shared connection: units of work must take turns.
        single_connection = isinstance(engine.sync_engine.pool, StaticPool)
        self._gate = SingleConnectionGate() if single_connection else None

    def uow(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(self._sessions, gate=self._gate)

    async def close(self) -> None:
        await self.engine.dispose()


def sqlite_url_for(path: Path) -> str:
    """The aiosqlite URL of a database file, with characters such as '?' or '%' escaped."""
    url = URL.create("sqlite+aiosqlite", database=str(path.expanduser().resolve()))
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def open_database(url: str, *, echo: bool = False) -> AsyncIterator[Database]:
    """Open (and create, if needed) the database at `url`; dispose of the engine on exit.

    Raises ConfigurationError naming DATABASE__URL when the URL is unreadable, its driver is
    missing or not async, or the database cannot be opened.
    """
    database = await connect_database(url, echo=echo)
    try:
        yield database
    finally:
        await database.close()


async def connect_database(url: str, *, echo: bool = False) -> Database:
    """Like `open_database`, for callers that manage the lifetime themselves (call `close()`)."""
    parsed = _parse(url)
    shown = parsed.render_as_string(hide_password=True)
    is_sqlite = parsed.get_backend_name() == "sqlite"
    if is_sqlite:
        _prepare_sqlite_directory(parsed)
    engine = _create_engine(parsed, echo=echo, is_sqlite=is_sqlite)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
            problem = await connection.run_sync(_schema_problem)
            if problem is not None:
                raise _OtherSchema(problem)  # inside the transaction: nothing is created or stamped
            journal_mode = None
            if is_sqlite:
                journal_mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
    except _OtherSchema as exc:
        await engine.dispose()
        raise ConfigurationError(
            URL_SETTING,
            f"the database {shown} {exc}; use another database, or the version of the bot that wrote it",
        ) from None
    except (SQLAlchemyError, OSError, TypeError, ValueError) as exc:
        await engine.dispose()
        raise ConfigurationError(URL_SETTING, f"cannot open the database {shown}: {_reason(exc)}") from exc
    _log.debug("database opened", url=shown, dialect=engine.dialect.name, journal_mode=journal_mode)
    return Database(engine)


class _OtherSchema(Exception):
    """The database holds tables of another version of the bot (the message says how)."""


def is_in_memory(url: str) -> bool:
    """Whether the URL names an SQLite database that lives only as long as the process."""
    parsed = _parse(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory"


def _schema_problem(connection: Connection) -> str | None:
    """Why the tables in the database are not this version's, or None (stamping a new database).

    A database from before the version stamp has the same tables: it is stamped, not refused."""
    existing = inspect(connection)
    for table in metadata.sorted_tables:
        have = {column["name"] for column in existing.get_columns(table.name)}
        missing = [column.name for column in table.columns if column.name not in have]
        if missing:
            return f"has a table {table.name} without column {', '.join(missing)} (another schema)"
    version = connection.execute(select(schema_info.c.version).where(schema_info.c.id == 1)).scalar()
    if version is None:
        connection.execute(insert(schema_info).values(id=1, version=SCHEMA_VERSION))
        return None
    if version != SCHEMA_VERSION:
        return f"has schema version {version}, this version of the bot uses {SCHEMA_VERSION}"
    return None


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        # The text is not echoed back: it may hold a password.
        raise ConfigurationError(
            URL_SETTING, f"not a database URL SQLAlchemy can read ({_EXAMPLES})"
        ) from exc


def _prepare_sqlite_directory(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:") or "uri" in url.query:
        return
    directory = Path(database).expanduser().absolute().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ConfigurationError(
            URL_SETTING, f"cannot create the directory {directory}: a file is in the way ({exc.filename})"
        ) from exc
    except OSError as exc:
        raise ConfigurationError(
            URL_SETTING,
            f"cannot create the directory {directory} for the SQLite database: {exc.strerror or exc}",
        ) from exc
    if not os.access(directory, os.W_OK | os.X_OK):
        # SQLite writes its -wal and -shm files next to the database.
        raise ConfigurationError(URL_SETTING, f"the directory {directory} is not writable")
    _check_sqlite_header(Path(database).expanduser().absolute())


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_sqlite_header(path: Path) -> None:
    """Refuse a file that is not a SQLite database before any connection is made (a failed
    aiosqlite connection leaves its worker thread behind)."""
    if path.is_dir():
        raise ConfigurationError(URL_SETTING, f"{path} is a directory, not a database file")
    try:
        with path.open("rb") as handle:
            head = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return  # created on first connect
    except OSError as exc:
        raise ConfigurationError(URL_SETTING, f"cannot read {path}: {exc.strerror or exc}") from exc
    if head and head != _SQLITE_HEADER:
        raise ConfigurationError(URL_SETTING, f"{path} is not a database (not a SQLite file)")


def _create_engine(url: URL, *, echo: bool, is_sqlite: bool) -> AsyncEngine:
    driver = url.drivername
    try:
        engine = create_async_engine(url, echo=echo, pool_pre_ping=not is_sqlite)
    except NoSuchModuleError as exc:
        raise ConfigurationError(URL_SETTING, f"unknown database dialect or driver {driver!r}") from exc
    except ImportError as exc:
        missing = exc.name or "its package"
        raise ConfigurationError(
            URL_SETTING, f"the driver of {driver!r} is not installed (missing module {missing})"
        ) from exc
    except InvalidRequestError as exc:
        raise ConfigurationError(
            URL_SETTING, f"{driver!r} is not an asyncio driver: use an async one ({_EXAMPLES})"
        ) from exc
    except (SQLAlchemyError, TypeError, ValueError) as exc:
        raise ConfigurationError(URL_SETTING, f"cannot use {driver!r}: {exc}") from exc
    if is_sqlite:
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
    return engine


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 driver (it skips it before SELECT and SAVEPOINT, which
    # breaks savepoints); `_begin_immediate` emits it instead.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def _begin_immediate(connection: Connection) -> None:
    """Take the write lock when the transaction starts, not when it first writes.

    In WAL mode a transaction that read and then tries to write after another one committed
    fails at once with SQLITE_BUSY (busy_timeout does not help); taking the lock up front makes
    concurrent units of work queue (up to busy_timeout) instead.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


__all__ = ["URL_SETTING", "Database", "connect_database", "is_in_memory", "open_database", "sqlite_url_for"]
