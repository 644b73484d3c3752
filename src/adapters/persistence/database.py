"""Opening the database: engine, schema, and the SQLite settings a bot on one file needs.

Every SQLite-specific step is taken only when the URL's dialect is sqlite; any other async
SQLAlchemy URL (e.g. `postgresql+asyncpg://...`) goes through the same code unchanged.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import aiosqlite
import structlog
from sqlalchemy import Connection, event, insert, inspect, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from adapters.persistence.lean import LeanSqlite, joins_lean_transaction
from adapters.persistence.tables import metadata, schema_info
from adapters.persistence.uow import SingleConnectionGate, SqlAlchemyUnitOfWork
from domain.errors import ConfigurationError

_log = structlog.get_logger(__name__)

URL_SETTING = "DATABASE__URL"
SCHEMA_VERSION = 1  # raise it with every change to tables.py, with a migration for older files
_EXAMPLES = "e.g. sqlite+aiosqlite:///data/gridbot.db or postgresql+asyncpg://user:password@host/gridbot"

# How long a statement waits for another process's lock (e.g. a second bot's, or `status`)
# before it fails with "database is locked". The wait happens off the event loop: see
# `_InlineSqliteConnection`.
BUSY_TIMEOUT_MS = 5000

# synchronous=NORMAL under WAL: a commit is written to the WAL but not fsynced; the WAL is
# fsynced at each checkpoint. A committed unit of work survives the process being killed (the
# WAL is in the OS's page cache, and the next opening replays it); a power cut or kernel crash
# may lose the last commits before the checkpoint, never corrupting the file. That is what the
# bot promises: after such a loss its start-up catch-up books the trades again from the venue's
# history (`GridBot._catch_up`, from the last trade id booked). FULL would fsync every commit
# (~0.5 ms more per unit of work on the reference machine).
# wal_autocheckpoint=0: the WAL is copied into the file by `_Checkpointer`, in a worker thread,
# not by whichever commit crosses SQLite's 1,000-page mark (which would block the event loop
# for the checkpoint's fsyncs: 10-20 ms on the reference machine).
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA wal_autocheckpoint=0",
)
CHECKPOINT_EVERY_COMMITS = 100  # a fill's unit of work writes ~6-10 pages: ~1,000 pages, as SQLite would


class Database:
    """An open database: hands out units of work, one fresh session each.

    On SQLite every unit of work runs on one connection, opened with the database and kept
    until `close()`: no pool checkout, reset or connection set-up per unit of work. The units of
    work take turns on it (`SingleConnectionGate`), which also makes the process a single writer.
    `engine` stays usable for work outside units of work (the grid lease, `status`): it has its
    own connections, and SQLite's locks keep them apart from this one.
    """

    engine: AsyncEngine

    def __init__(
        self,
        engine: AsyncEngine,
        connection: AsyncConnection | None = None,
        checkpointer: _Checkpointer | None = None,
    ) -> None:
        self.engine = engine
        self._connection = connection
        self._checkpointer = checkpointer
        # An in-memory SQLite database is one shared connection too: the same gate applies.
        single_connection = connection is not None or isinstance(engine.sync_engine.pool, StaticPool)
        self._gate = SingleConnectionGate() if single_connection else None
        self._sessions = async_sessionmaker(
            connection if connection is not None else engine, expire_on_commit=False, autoflush=False
        )
        self._savepoints = engine.dialect.name != "sqlite"
        # The fill's hot writes skip SQLAlchemy's execution on the kept SQLite connection (lean.py).
        self._lean = None
        if (
            connection is not None
            and engine.dialect.name == "sqlite"
            and engine.dialect.driver == "aiosqlite"
        ):
            on_commit = None if checkpointer is None else checkpointer.committed
            self._lean = LeanSqlite(connection, engine.dialect, on_commit)

    def uow(self) -> SqlAlchemyUnitOfWork:
        return SqlAlchemyUnitOfWork(
            self._sessions, gate=self._gate, savepoints=self._savepoints, lean=self._lean
        )

    async def close(self) -> None:
        try:
            if self._checkpointer is not None:
                await self._checkpointer.close()
            if self._connection is not None:
                await self._connection.close()
        finally:
            await self.engine.dispose()


class _Checkpointer:
    """Copies a WAL database's log into its file every CHECKPOINT_EVERY_COMMITS commits, in a
    worker thread on a connection of its own (PASSIVE: it never waits for, nor blocks, the bot's
    connections). Listens to the engine's commits; its failures are logged, never raised: a WAL
    that is not checkpointed only grows, and SQLite checkpoints it when the last connection
    closes."""

    def __init__(self, path: str, every: int = CHECKPOINT_EVERY_COMMITS) -> None:
        self._path = path
        self._every = every
        self._commits = 0
        self._running: asyncio.Future[None] | None = None

    def committed(self, _connection: Any = None) -> None:
        self._commits += 1
        if self._commits < self._every or self._running is not None:
            return
        self._commits = 0
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        self._running.add_done_callback(self._done)

    def _checkpoint(self) -> None:
        with closing(sqlite3.connect(self._path, timeout=BUSY_TIMEOUT_MS / 1000)) as connection:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").close()

    def _done(self, future: asyncio.Future[None]) -> None:
        self._running = None
        if not future.cancelled() and future.exception() is not None:
            _log.warning("WAL checkpoint failed", reason=str(future.exception()))

    async def close(self) -> None:
        if self._running is not None:
            await asyncio.wait([self._running])


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
    kept, checkpointer = None, None
    if is_sqlite:
        try:
            kept = await engine.connect()
            # The file's path as SQLite resolved it ("" for a database in memory).
            found = await kept.exec_driver_sql("SELECT file FROM pragma_database_list WHERE name = 'main'")
            path = str(found.scalar() or "")
            await kept.rollback()
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise ConfigurationError(
                URL_SETTING, f"cannot open the database {shown}: {_reason(exc)}"
            ) from exc
        if journal_mode == "wal" and path:
            checkpointer = _Checkpointer(path)
            event.listen(engine.sync_engine, "commit", checkpointer.committed)
    _log.debug("database opened", url=shown, dialect=engine.dialect.name, journal_mode=journal_mode)
    return Database(engine, kept, checkpointer)


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


class _InlineSqliteConnection(aiosqlite.Connection):
    """An aiosqlite connection whose calls run on the event loop's own thread.

    aiosqlite hands every call (cursor, execute, fetch, close: three or four per statement) to
    its worker thread and wakes the loop with the result: about 75 µs each on the reference
    machine, far more under load, against 1-30 µs for the SQLite work itself on a local file in
    WAL mode (no fsync on commit). So calls run inline, with SQLite's busy timeout at 0: a call
    that finds another connection's lock (SQLITE_BUSY) does not block the loop but is run again
    in the worker thread, waiting up to BUSY_TIMEOUT_MS there. Only calls that SQLite leaves
    untouched when it answers BUSY are run again (execute, commit, rollback); others raise.

    What still blocks the loop: SQLite's automatic WAL checkpoint (the only fsync, about every
    1,000 pages written) inside the commit that triggers it.
    """

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or getattr(fn, "__name__", "") not in _RETRIED_WHEN_BUSY:
                raise
        in_worker_thread: Callable[..., Awaitable[Any]] = super()._execute
        return await in_worker_thread(self._patiently, fn, *args, **kwargs)

    def _patiently(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """In the worker thread: `fn` with SQLite waiting for the lock up to BUSY_TIMEOUT_MS."""
        connection = self._conn
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}").close()
        try:
            return fn(*args, **kwargs)
        finally:
            connection.execute("PRAGMA busy_timeout=0").close()


_RETRIED_WHEN_BUSY = frozenset({"execute", "commit", "rollback"})


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc)


def _connect_inline(database: str, *, iter_chunk_size: int = 64, **kwargs: Any) -> _InlineSqliteConnection:
    """Like `aiosqlite.connect`, for `_InlineSqliteConnection` (SQLAlchemy's aiosqlite dialect
    calls it with the arguments it derived from the URL)."""
    # Made in the worker thread, used from the loop's: sqlite3 must not refuse that. Waiting for
    # a lock happens in `_patiently`, never inline.
    kwargs.update(check_same_thread=False, timeout=0)

    def connector() -> sqlite3.Connection:
        connection: sqlite3.Connection = sqlite3.connect(database, **kwargs)
        return connection

    connection = _InlineSqliteConnection(connector, iter_chunk_size)
    # Like SQLAlchemy's own connect: the worker thread must not keep the process alive.
    thread: Any = getattr(connection, "_thread", connection)  # aiosqlite < 0.22: the connection is the thread
    thread.daemon = True
    return connection


def _use_inline_connections(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
    cparams["async_creator_fn"] = _connect_inline


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
        if engine.dialect.driver == "aiosqlite":
            event.listen(engine.sync_engine, "do_connect", _use_inline_connections)
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

    A lean unit of work (lean.py) may have begun it on the driver already: SQLAlchemy joins it.
    """
    if joins_lean_transaction(connection):
        return
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


__all__ = ["URL_SETTING", "Database", "connect_database", "is_in_memory", "open_database", "sqlite_url_for"]
