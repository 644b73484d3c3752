"""The hot writes on SQLite (orders.add/update, fills.add, runs.update, begin/commit/rollback) run on
the driver connection, not through SQLAlchemy's execution (lean.py). They must write exactly what
the SQLAlchemy path writes, fail exactly as it fails, and share one transaction with the session's
reads and writes."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker

from adapters.persistence import (
    Database,
    PersistenceError,
    SqlAlchemyUnitOfWork,
    open_database,
    sqlite_url_for,
)
from adapters.persistence.lean import NotLean, precompile
from adapters.persistence.repositories import _INSERT_FILL, _INSERT_ORDER, _UPDATE_ORDER, _UPDATE_RUN
from adapters.persistence.tables import fills, metadata
from domain.models import OrderStatus, OrderType, RunStatus, Side
from domain.ports import UnitOfWork, UnitOfWorkFactory

from .builders import a_fill, a_run, an_order, at


@dataclass
class Paths:
    """One database booked through the lean path (the Database's own units of work), one through
    SQLAlchemy's execution alone (a unit of work without `lean`, on the same kind of engine)."""

    lean: Database
    plain: Database
    lean_path: Path
    plain_path: Path

    def plain_uow(self) -> SqlAlchemyUnitOfWork:
        sessions = async_sessionmaker(self.plain.engine, expire_on_commit=False, autoflush=False)
        return SqlAlchemyUnitOfWork(sessions, savepoints=False)

    def factories(self) -> tuple[UnitOfWorkFactory, UnitOfWorkFactory]:
        return self.lean.uow, self.plain_uow


@pytest.fixture
async def paths(tmp_path: Path) -> AsyncIterator[Paths]:
    lean_path, plain_path = tmp_path / "lean.db", tmp_path / "plain.db"
    async with (
        open_database(sqlite_url_for(lean_path)) as lean,
        open_database(sqlite_url_for(plain_path)) as plain,
    ):
        yield Paths(lean, plain, lean_path, plain_path)


def _rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table as SQLite stores it: values and their storage classes."""
    with sqlite3.connect(path) as connection:
        found: dict[str, list[tuple[Any, ...]]] = {}
        for table in metadata.sorted_tables:
            names = [column.name for column in table.columns]
            typed = ", ".join(f'"{name}", typeof("{name}")' for name in names)
            rows = connection.execute(f"SELECT {typed} FROM {table.name} ORDER BY 1").fetchall()
            found[table.name] = [tuple(zip(names, row[0::2], row[1::2], strict=True)) for row in rows]
        return found


_PARIS = timezone(timedelta(hours=2))


async def _book_everything(uow_factory: UnitOfWorkFactory) -> None:
    """Every hot write with values that a bind processor changes: Decimals in exponent form and
    with trailing zeros, an offset datetime, None, a non-numeric and an over-long trade id, a
    maker flag of each kind, unicode params."""
    async with uow_factory() as uow:
        await uow.runs.add(a_run())
        await uow.runs.add(a_run("run-2", status=RunStatus.STOPPED))
        await uow.orders.add(an_order())
        await uow.orders.add(
            an_order(
                "gb-market",
                type=OrderType.MARKET,
                side=Side.SELL,
                price=None,
                amount=Decimal("1E-8"),
                created_at=datetime(2024, 5, 1, 14, 0, 0, tzinfo=_PARIS),
                updated_at=datetime(2024, 5, 1, 14, 0, 0, 1, tzinfo=_PARIS),
                exchange_order_id="9" * 30,
                parent_client_order_id="gb-1",
                cost_basis=Decimal("-12.3400"),
            )
        )
        await uow.fills.add(a_fill("1001", realized_pnl=Decimal("0.11985")))
        await uow.fills.add(
            a_fill(
                "tr-x",
                side=Side.SELL,
                price=Decimal("64250.0100"),
                amount=Decimal("1.5E+3"),
                fee=Decimal("0E-8"),
                timestamp=datetime(2024, 5, 1, 13, 0, 0, 999999, tzinfo=_PARIS),
                is_maker=False,
                realized_pnl=Decimal("-3.000000001"),
            )
        )
        await uow.fills.add(a_fill(str(2**63), run_id="run-2"))  # above BIGINT: no trade_seq
        await uow.commit()
    async with uow_factory() as uow:
        await uow.orders.update(
            an_order(
                status=OrderStatus.FILLED,
                filled=Decimal("0.00150000"),
                updated_at=at(7),
                exchange_order_id="77",
            )
        )
        await uow.runs.update(
            a_run(
                status=RunStatus.STOPPED,
                stopped_at=datetime(2024, 5, 2, 1, 2, 3, tzinfo=_PARIS),
                stop_reason="stopped by the user — ok",
                params={"levels": "10", "leftover_base": "0.000001", "note": "ünïcode ✓"},
            )
        )
        await uow.commit()


async def test_the_lean_path_writes_exactly_what_sqlalchemy_writes(paths: Paths) -> None:
    lean, plain = paths.factories()
    await _book_everything(lean)
    await _book_everything(plain)

    lean_rows, plain_rows = _rows(paths.lean_path), _rows(paths.plain_path)
    assert lean_rows["orders"] and lean_rows["fills"] and lean_rows["bot_runs"]
    for table in metadata.sorted_tables:
        for lean_row, plain_row in zip(lean_rows[table.name], plain_rows[table.name], strict=True):
            for lean_column, plain_column in zip(lean_row, plain_row, strict=True):
                assert lean_column == plain_column, table.name


async def test_what_the_lean_path_wrote_reads_back_as_booked(db: Database) -> None:
    market = an_order(
        "gb-2",
        type=OrderType.MARKET,
        price=None,
        amount=Decimal("1E-8"),
        created_at=datetime(2024, 5, 1, 14, 0, 0, tzinfo=_PARIS),
    )
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(market)
        await uow.fills.add(a_fill("7", is_maker=False, realized_pnl=Decimal("-0.5")))
        await uow.runs.update(a_run(params={"last_price": "64000.5"}))
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.get("gb-2") == market
        assert await uow.fills.list_for_run("run-1") == [
            a_fill("7", is_maker=False, realized_pnl=Decimal("-0.5"))
        ]
        assert await uow.runs.get("run-1") == a_run(params={"last_price": "64000.5"})


async def test_a_fill_booking_sends_nothing_through_sqlalchemy(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        await uow.commit()
    through_sqlalchemy: list[str] = []
    event.listen(
        db.engine.sync_engine, "before_cursor_execute", lambda *args: through_sqlalchemy.append(args[2])
    )
    async with db.uow() as uow:
        await uow.orders.update(an_order(status=OrderStatus.FILLED, filled=an_order().amount))
        await uow.orders.add(an_order("gb-2", parent_client_order_id="gb-1"))
        await uow.fills.add(a_fill("1"))
        await uow.runs.update(a_run(params={"last_price": "1"}))
        await uow.commit()
    assert through_sqlalchemy == []
    async with db.uow() as uow:
        assert await uow.fills.count("run-1") == 1
    assert len(through_sqlalchemy) == 2  # BEGIN IMMEDIATE and the read: reads stay on SQLAlchemy


# -- errors: the same exception, with the same message, on both paths -------------------------------


Step = Callable[[UnitOfWork], Awaitable[None]]


async def _outcome(uow_factory: UnitOfWorkFactory, step: Step) -> tuple[type[BaseException], str] | None:
    async with uow_factory() as uow:
        try:
            await step(uow)
        except Exception as exc:
            return type(exc), str(exc)
    return None


async def _seed(uow: UnitOfWork) -> None:
    await uow.runs.add(a_run())
    await uow.runs.add(a_run("run-2"))
    await uow.orders.add(an_order())
    await uow.fills.add(a_fill("1"))
    await uow.commit()


async def _add_order(uow: UnitOfWork, **fields: Any) -> None:
    await uow.orders.add(an_order(**fields))


async def _add_fill(uow: UnitOfWork, **fields: Any) -> None:
    await uow.fills.add(a_fill(**fields))


async def _update_order(uow: UnitOfWork, **fields: Any) -> None:
    await uow.orders.update(an_order(**fields))


async def _update_run(uow: UnitOfWork, **fields: Any) -> None:
    await uow.runs.update(a_run(**fields))


_NAIVE = datetime(2024, 5, 1, 12, 0, 0)  # refused, on purpose

_FAILURES: dict[str, tuple[Step, type[BaseException], str]] = {
    "duplicate order": (_add_order, ValueError, "order gb-1 is already booked"),
    "duplicate fill": (
        lambda uow: _add_fill(uow, trade_id="1"),
        ValueError,
        "fill 1 is already booked for run run-1",
    ),
    "order of an unknown run": (
        lambda uow: _add_order(uow, client_order_id="gb-9", run_id="ghost"),
        ValueError,
        "order gb-9 belongs to unknown run ghost: add the run first",
    ),
    "fill of an unknown run": (
        lambda uow: _add_fill(uow, trade_id="2", run_id="ghost"),
        ValueError,
        "fill 2 belongs to unknown run ghost: add the run first",
    ),
    "update of an unknown order": (
        lambda uow: _update_order(uow, client_order_id="gb-9"),
        ValueError,
        "order gb-9 is not booked: add() it before update()",
    ),
    "update of another run's order": (
        lambda uow: _update_order(uow, run_id="run-2"),
        ValueError,
        "order gb-1 belongs to run run-1, not run-2",
    ),
    "update of an unknown run": (
        lambda uow: _update_run(uow, run_id="ghost"),
        ValueError,
        "run ghost is not booked: add() it before update()",
    ),
    "naive datetime": (
        lambda uow: _add_order(uow, client_order_id="gb-9", created_at=_NAIVE),
        ValueError,
        "booking order gb-9: naive datetime",
    ),
    "float money": (
        lambda uow: _add_fill(uow, trade_id="2", price=1.5),
        ValueError,
        "booking fill 2 for run run-1: money columns take a Decimal, got float 1.5",
    ),
    "NaN money": (
        lambda uow: _update_order(uow, filled=Decimal("NaN")),
        ValueError,
        "updating order gb-1: money columns take a finite Decimal, got NaN",
    ),
    "params that are not str to str": (
        lambda uow: _update_run(uow, params={"levels": 10}),
        ValueError,
        "params of run run-1 must map str to str",
    ),
}


@pytest.mark.parametrize("case", sorted(_FAILURES))
async def test_a_refused_write_fails_as_on_the_sqlalchemy_path(paths: Paths, case: str) -> None:
    step, expected_type, expected_message = _FAILURES[case]
    lean, plain = paths.factories()
    for factory in (lean, plain):
        assert await _outcome(factory, _seed) is None
    lean_outcome = await _outcome(lean, step)
    plain_outcome = await _outcome(plain, step)
    assert lean_outcome == plain_outcome
    assert lean_outcome is not None
    assert lean_outcome[0] is expected_type
    assert lean_outcome[1].startswith(expected_message)


def _add_trigger(path: Path, sql: str) -> None:
    """Change the schema behind the database's back (a trigger, a table) to make a write fail."""
    with sqlite3.connect(path) as connection:
        connection.execute(sql)


async def test_a_constraint_of_another_kind_is_a_value_error_naming_it(paths: Paths) -> None:
    for path in (paths.lean_path, paths.plain_path):
        _add_trigger(
            path,
            "CREATE TRIGGER no_sells BEFORE INSERT ON orders WHEN NEW.side = 'sell' "
            "BEGIN SELECT RAISE(ABORT, 'no sells today'); END",
        )
    lean, plain = paths.factories()
    outcomes = []
    for factory in (lean, plain):
        assert await _outcome(factory, _seed) is None
        outcomes.append(
            await _outcome(factory, lambda uow: _add_order(uow, client_order_id="gb-9", side=Side.SELL))
        )
    assert outcomes[0] == outcomes[1] == (ValueError, "booking order gb-9: no sells today")


async def test_a_database_failure_is_a_persistence_error_with_the_drivers_message(paths: Paths) -> None:
    for path in (paths.lean_path, paths.plain_path):
        _add_trigger(path, "CREATE TRIGGER broken AFTER INSERT ON fills BEGIN SELECT no_such_function(); END")
    lean, plain = paths.factories()
    outcomes = []
    for factory in (lean, plain):
        async with factory() as uow:
            await uow.runs.add(a_run())
            await uow.commit()
        outcomes.append(await _outcome(factory, lambda uow: _add_fill(uow, trade_id="5")))
    assert (
        outcomes[0]
        == outcomes[1]
        == (
            PersistenceError,
            "booking fill 5 for run run-1 failed: no such function: no_such_function",
        )
    )


async def test_a_failed_commit_is_a_persistence_error_and_keeps_nothing(db: Database, db_path: Path) -> None:
    _add_trigger(
        db_path,
        "CREATE TABLE checks (id INTEGER PRIMARY KEY, "
        "order_id TEXT REFERENCES orders(client_order_id) DEFERRABLE INITIALLY DEFERRED)",
    )
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    # A deferred foreign key is checked at COMMIT: the lean COMMIT fails.
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "CREATE TRIGGER dangling AFTER INSERT ON fills BEGIN INSERT INTO checks (order_id) VALUES ('nope'); END"
        )
    async with db.uow() as uow:
        await uow.orders.add(an_order())
        await uow.fills.add(a_fill("1"))
        with pytest.raises(
            PersistenceError, match="committing the unit of work failed: FOREIGN KEY constraint failed"
        ):
            await uow.commit()
    async with db.uow() as uow:
        assert await uow.orders.get("gb-1") is None
        assert await uow.fills.count("run-1") == 0
        await uow.orders.add(an_order())  # and the connection is usable again
        await uow.commit()


# -- one transaction shared by the lean writes and the session --------------------------------------


async def test_the_session_reads_what_the_lean_path_wrote_in_the_same_unit_of_work(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    async with db.uow() as uow:
        await uow.orders.add(an_order())  # begins the transaction on the driver
        await uow.fills.add(a_fill("1"))
        assert await uow.orders.get("gb-1") == an_order()  # the session joins it
        assert await uow.fills.exists("run-1", "1")
        await uow.orders.add(an_order("gb-2"))
        await uow.commit()  # one COMMIT, through the session, for both
    async with db.uow() as uow:
        assert [order.client_order_id for order in await uow.orders.list_for_run("run-1")] == ["gb-1", "gb-2"]
        assert await uow.fills.count("run-1") == 1


async def test_lean_writes_join_a_transaction_the_session_began(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())  # not a hot write: through the session, which begins
        await uow.orders.add(an_order())
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.runs.get("run-1") == a_run()
        assert await uow.orders.get("gb-1") == an_order()


async def _write_then_fail(db: Database, *, session_first: bool) -> None:
    async with db.uow() as uow:
        if session_first:
            await uow.fills.remove("run-1", "1")  # the session begins
            await uow.orders.update(an_order(status=OrderStatus.CANCELED))
        else:
            await uow.orders.update(an_order(status=OrderStatus.CANCELED))  # the driver begins
            await uow.fills.remove("run-1", "1")
        await uow.runs.add(a_run("run-2"))
        await uow.fills.add(a_fill("2"))
        raise RuntimeError("boom")


@pytest.mark.parametrize("session_first", [True, False])
async def test_an_error_in_the_body_drops_lean_and_session_writes_alike(
    db: Database, session_first: bool
) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        await uow.fills.add(a_fill("1"))
        await uow.commit()
    with pytest.raises(RuntimeError, match="boom"):
        await _write_then_fail(db, session_first=session_first)
    async with db.uow() as uow:
        assert await uow.orders.get("gb-1") == an_order()
        assert await uow.fills.exists("run-1", "1")
        assert not await uow.fills.exists("run-1", "2")
        assert await uow.runs.get("run-2") is None


async def test_rollback_drops_the_lean_writes_and_later_work_commits(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    async with db.uow() as uow:
        await uow.orders.add(an_order())
        await uow.fills.add(a_fill("1"))
        await uow.rollback()
        await uow.orders.add(an_order("gb-2"))
        await uow.commit()
        await uow.fills.add(a_fill("3"))  # after the commit: dropped when the block is left
    async with db.uow() as uow:
        assert await uow.orders.get("gb-1") is None
        assert await uow.orders.get("gb-2") == an_order("gb-2")
        assert await uow.fills.count("run-1") == 0


async def test_a_duplicate_backs_out_alone_on_the_lean_path(db: Database) -> None:
    async with db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.orders.add(an_order())
        await uow.commit()
    async with db.uow() as uow:
        await uow.fills.add(a_fill("1"))
        with pytest.raises(ValueError, match="already booked"):
            await uow.orders.add(an_order())
        await uow.orders.add(an_order("gb-2"))
        await uow.commit()
    async with db.uow() as uow:
        assert await uow.fills.count("run-1") == 1
        assert await uow.orders.get("gb-2") == an_order("gb-2")


async def test_an_in_memory_database_takes_the_lean_path_too() -> None:
    async with open_database("sqlite+aiosqlite://") as db:
        async with db.uow() as uow:
            await uow.runs.add(a_run())
            await uow.orders.add(an_order())
            await uow.fills.add(a_fill("1"))
            await uow.commit()
        async with db.uow() as uow:
            await uow.orders.add(an_order("gb-2"))
        async with db.uow() as uow:
            assert await uow.orders.get("gb-1") == an_order()
            assert await uow.orders.get("gb-2") is None
            assert await uow.fills.count("run-1") == 1


def test_the_hot_statements_compile_lean_and_what_needs_sqlalchemy_is_refused(db: Database) -> None:
    dialect = db.engine.dialect
    order = precompile(_INSERT_ORDER, ["client_order_id", "run_id", "amount"], dialect)
    assert order.sql == "INSERT INTO orders (client_order_id, run_id, amount) VALUES (?, ?, ?)"
    assert [key for key, _ in order.binds] == ["client_order_id", "run_id", "amount"]
    update = precompile(_UPDATE_ORDER, ["status", "key_client_order_id", "key_run_id"], dialect)
    assert update.sql == "UPDATE orders SET status=? WHERE orders.client_order_id = ? AND orders.run_id = ?"
    assert precompile(_UPDATE_RUN, ["params", "key_run_id"], dialect).parameters(
        {"params": {"a": "b"}, "key_run_id": "run-1"}
    ) == ('{"a": "b"}', "run-1")
    with pytest.raises(NotLean):
        precompile(_INSERT_FILL.returning(fills.c.id), ["run_id"], dialect)
    with pytest.raises(NotLean):  # a WHERE parameter the values do not name
        precompile(_UPDATE_RUN, ["params"], dialect)
