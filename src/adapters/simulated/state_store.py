"""The simulated exchange's state in an SQLite file of its own, written at every change.

Why: the bot's database remembers what the exchange told it. An exchange that forgot (its state
was saved only on a clean exit, so a `kill -9` lost it) came back behind the bot: orders were
placed twice and trade ids reused, so the bot dropped real fills as duplicates. Here every change
is committed, in one transaction, before anyone can see it (the caller writes before it returns
or publishes), so a kill at any instant leaves the file at a state that really happened.

- Writes are incremental: the engine's change journal (`MatchingEngine.unsaved_changes()`) names
  the orders and trades that changed; the book row and the balances are rewritten each time.
  WAL journal with `synchronous=NORMAL`: a commit survives the process being killed (not a power
  cut, which this simulator does not need to survive).
- One book per symbol, side by side (every row is keyed by symbol): switching the bot to another
  pair starts that pair's own book and keeps the others.
- One process at a time: an OS file lock (`<file>.lock`, filelock) held while the store is open.
  The holder's pid is in the `meta` table so that a second process can name it. The OS drops the
  lock when its holder dies, even by SIGKILL.
- A legacy JSON state (the format of the old JSON store, one engine snapshot) is imported once,
  and the JSON file renamed to `<name>.imported`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import structlog
from filelock import FileLock, Timeout

from adapters.crashpoints import crash_point
from adapters.simulated.engine import SNAPSHOT_VERSION, MatchingEngine, fill_to_json, order_to_json

log = structlog.get_logger(__name__)

SCHEMA_VERSION = "1"
_SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS books (
    symbol TEXT PRIMARY KEY, rules TEXT NOT NULL, maker_fee TEXT NOT NULL, taker_fee TEXT NOT NULL,
    last_price TEXT, next_order_id INTEGER NOT NULL, next_trade_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS balances (
    symbol TEXT NOT NULL, asset TEXT NOT NULL, free TEXT NOT NULL, locked TEXT NOT NULL,
    PRIMARY KEY (symbol, asset));
CREATE TABLE IF NOT EXISTS orders (
    symbol TEXT NOT NULL, order_id INTEGER NOT NULL, client_order_id TEXT NOT NULL, side TEXT NOT NULL,
    type TEXT NOT NULL, amount TEXT NOT NULL, price TEXT, status TEXT NOT NULL, created_at TEXT NOT NULL,
    filled TEXT NOT NULL, average_price TEXT, fee TEXT NOT NULL, fee_asset TEXT,
    PRIMARY KEY (symbol, order_id));
CREATE TABLE IF NOT EXISTS trades (
    symbol TEXT NOT NULL, trade_id INTEGER NOT NULL, order_id INTEGER NOT NULL,
    client_order_id TEXT NOT NULL, side TEXT NOT NULL, price TEXT NOT NULL, amount TEXT NOT NULL,
    fee TEXT NOT NULL, fee_asset TEXT NOT NULL, timestamp TEXT NOT NULL, is_maker INTEGER NOT NULL,
    PRIMARY KEY (symbol, trade_id));
"""
# Order and trade rows have the columns of the engine's snapshot records (order_to_json, fill_to_json).
_UPSERT_ORDER = """INSERT OR REPLACE INTO orders (symbol, order_id, client_order_id, side, type, amount,
    price, status, created_at, filled, average_price, fee, fee_asset) VALUES (:symbol, :order_id,
    :client_order_id, :side, :type, :amount, :price, :status, :created_at, :filled, :average_price,
    :fee, :fee_asset)"""
_INSERT_TRADE = """INSERT INTO trades (symbol, trade_id, order_id, client_order_id, side, price, amount,
    fee, fee_asset, timestamp, is_maker) VALUES (:symbol, :trade_id, :order_id, :client_order_id,
    :side, :price, :amount, :fee, :fee_asset, :timestamp, :is_maker)"""
_UPSERT_BALANCE = "INSERT OR REPLACE INTO balances (symbol, asset, free, locked) VALUES (?, ?, ?, ?)"


class StateFileError(Exception):
    """The state file cannot be used. The message is one line and names the file."""


class SqliteStateStore:
    """The open state file: books by symbol, written under an OS lock. Build it with `open()`."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: FileLock) -> None:
        self.path = path
        self._db = connection
        self._lock = lock

    @classmethod
    def open(cls, path: Path) -> SqliteStateStore:
        """Lock the file, create it and its schema (or import a legacy JSON state) and write this
        process's pid: everything that can fail about the file fails here, before the bot runs."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateFileError(f"cannot write {path}: {exc.strerror or exc}") from None
        lock = FileLock(f"{path}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise StateFileError(
                f"{path} is in use by another bot process (pid {_holder_pid(path)})"
            ) from None
        except OSError as exc:
            raise StateFileError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            _import_legacy_json(path)
            connection = _connect(path)
            try:
                with _transaction(connection) as db:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('pid', ?)", (str(os.getpid()),))
            except sqlite3.Error as exc:
                connection.close()
                raise StateFileError(f"cannot write {path}: {exc}") from None
        except BaseException:
            lock.release()
            raise
        return cls(path, connection, lock)

    def close(self) -> None:
        self._db.close()
        self._lock.release()

    def symbols(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT symbol FROM books ORDER BY symbol")]

    def load(self, symbol: str) -> MatchingEngine | None:
        """The saved book of `symbol`, or None when there is none yet."""
        return _load(self._db, symbol, self.path)

    def save_book(self, engine: MatchingEngine) -> None:
        """Write a whole book: a new one, or one imported. The file must not hold it yet."""
        _insert_book(self._db, engine)

    def save_changes(self, engine: MatchingEngine) -> None:
        """Write what changed since the engine's last save, in one transaction. A price step
        without fills rewrites the book row only (last price and counters)."""
        changes = engine.unsaved_changes()
        symbol = engine.rules.symbol
        with _transaction(self._db) as db:
            updated = db.execute(
                "UPDATE books SET last_price = ?, next_order_id = ?, next_trade_id = ? WHERE symbol = ?",
                (
                    None if changes.last_price is None else str(changes.last_price),
                    changes.next_order_id,
                    changes.next_trade_id,
                    symbol,
                ),
            )
            if updated.rowcount != 1:
                raise RuntimeError(f"{symbol} has no book in {self.path}: save_book() it first")
            crash_point("sim_write")
            if changes.orders or changes.trades:
                db.executemany(
                    _UPSERT_BALANCE,
                    [(symbol, b.asset, str(b.free), str(b.locked)) for b in changes.balances.values()],
                )
                db.executemany(_UPSERT_ORDER, [order_to_json(order) for order in changes.orders])
                db.executemany(_INSERT_TRADE, [fill_to_json(fill) for fill in changes.trades])
        engine.mark_saved()


def read_book(path: Path, symbol: str) -> MatchingEngine | None:
    """The last committed book of `symbol`, read without the lock (a look from outside, e.g. by a
    test while the owner runs). None when the file or the book does not exist."""
    if not path.exists():
        return None
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return _load(connection, symbol, path)
    finally:
        connection.close()


def _insert_book(connection: sqlite3.Connection, engine: MatchingEngine) -> None:
    snapshot = engine.snapshot()
    symbol = engine.rules.symbol
    with _transaction(connection) as db:
        db.execute(
            "INSERT INTO books VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                symbol,
                json.dumps(snapshot["rules"], sort_keys=True),
                snapshot["maker_fee"],
                snapshot["taker_fee"],
                snapshot["last_price"],
                snapshot["next_order_id"],
                snapshot["next_trade_id"],
            ),
        )
        crash_point("sim_write")
        db.executemany(
            _UPSERT_BALANCE,
            [(symbol, asset, v["free"], v["locked"]) for asset, v in snapshot["balances"].items()],
        )
        db.executemany(_UPSERT_ORDER, snapshot["orders"])
        db.executemany(_INSERT_TRADE, snapshot["trades"])
    engine.mark_saved()


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _connect(path: Path) -> sqlite3.Connection:
    """Open the file as a state database (creating it), refusing anything else."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        header = b""
    except OSError as exc:
        raise StateFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    if header and header != _SQLITE_HEADER:
        raise StateFileError(
            f"{path} is not a simulator state file (neither SQLite nor a legacy JSON state); "
            "move it away or set another file"
        )
    connection = sqlite3.connect(path, isolation_level=None)  # transactions are explicit
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "meta" not in tables:
            raise StateFileError(
                f"{path} is an SQLite database of something else (tables: {', '.join(sorted(tables))}); "
                "set another file"
            )
        if tables:
            row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None or row[0] != SCHEMA_VERSION:
                raise StateFileError(f"{path} has an unknown schema version {row and row[0]!r}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        if not tables:
            with _transaction(connection) as db:
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
    except StateFileError:
        connection.close()
        raise
    except sqlite3.OperationalError as exc:
        connection.close()
        raise StateFileError(f"cannot write {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise StateFileError(f"{path} is not a usable simulator state file ({exc}); move it away") from None
    return connection


def _load(connection: sqlite3.Connection, symbol: str, path: Path) -> MatchingEngine | None:
    """A book's rows as an engine snapshot, rebuilt by `MatchingEngine.restore` (which checks it)."""
    connection.row_factory = sqlite3.Row
    book = connection.execute("SELECT * FROM books WHERE symbol = ?", (symbol,)).fetchone()
    if book is None:
        return None
    balances = connection.execute("SELECT asset, free, locked FROM balances WHERE symbol = ?", (symbol,))
    orders = connection.execute("SELECT * FROM orders WHERE symbol = ? ORDER BY order_id", (symbol,))
    trades = connection.execute("SELECT * FROM trades WHERE symbol = ? ORDER BY trade_id", (symbol,))
    snapshot: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "rules": json.loads(book["rules"]),
        "maker_fee": book["maker_fee"],
        "taker_fee": book["taker_fee"],
        "last_price": book["last_price"],
        "next_order_id": book["next_order_id"],
        "next_trade_id": book["next_trade_id"],
        "balances": {row["asset"]: {"free": row["free"], "locked": row["locked"]} for row in balances},
        "orders": [dict(row) for row in orders],
        "trades": [dict(row) for row in trades],
    }
    try:
        return MatchingEngine.restore(snapshot)
    except ValueError as exc:
        raise StateFileError(f"{path}: the {symbol} book is corrupt: {exc}") from None


def _holder_pid(path: Path) -> str:
    """The pid the lock holder wrote, or 'unknown' (it may not have written it yet)."""
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return "unknown"
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'pid'").fetchone()
    except sqlite3.Error:
        return "unknown"
    finally:
        connection.close()
    return "unknown" if row is None else str(row[0])


def _legacy_json(path: Path) -> Path | None:
    """The legacy JSON state to import: the state file itself when it is one, or, while the state
    file does not exist yet, the `.json` file beside it (the old default was
    var/simulated-exchange.json, the new one var/simulated-exchange.sqlite3)."""
    if path.exists():
        candidate = path
    elif path.suffix != ".json":
        candidate = path.with_suffix(".json")
    else:
        return None
    try:
        with candidate.open("rb") as handle:
            start = handle.read(64).lstrip()
    except OSError:
        return None
    return candidate if start.startswith(b"{") else None


def _import_legacy_json(path: Path) -> None:
    """Import a legacy JSON state into `path`, once. The database is built beside it first and
    renamed into place last, after the JSON is renamed to `<name>.imported`: a crash part way
    leaves either the JSON to import again or a finished import to move into place."""
    building = path.with_name(f"{path.name}.importing")
    legacy = _legacy_json(path)
    if legacy is None:
        if building.exists() and not path.exists():
            building.replace(path)  # the last rename of a finished import was missed
        return
    try:
        engine = MatchingEngine.restore(json.loads(legacy.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StateFileError(f"{legacy}: cannot import this legacy JSON state: {exc}") from None
    imported = legacy.with_name(f"{legacy.name}.imported")
    try:
        building.unlink(missing_ok=True)
        connection = _connect(building)
        try:
            _insert_book(connection, engine)
        finally:
            connection.close()
        legacy.replace(imported)
        building.replace(path)
    except (OSError, sqlite3.Error) as exc:
        raise StateFileError(f"cannot write {path}: {exc}") from None
    log.info(
        "simulated exchange: legacy JSON state imported",
        symbol=engine.rules.symbol,
        state_file=str(path),
        json_renamed_to=str(imported),
    )
