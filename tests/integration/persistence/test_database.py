"""Opening the database: SQLite tuned for a long-running bot, and every bad DATABASE__URL
reported as a configuration error naming that setting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from adapters.persistence import Database, open_database, sqlite_url_for
from domain.errors import ConfigurationError

from .builders import a_run


async def _pragma(db: Database, name: str) -> object:
    async with db.engine.connect() as connection:
        return (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(db: Database) -> None:
    assert await _pragma(db, "journal_mode") == "wal"
    assert await _pragma(db, "foreign_keys") == 1
    assert await _pragma(db, "synchronous") == 1  # NORMAL: see database.py (safe against a kill)
    # Waiting for another process's lock happens off the event loop, not in SQLite's busy
    # handler: see test_connection.py's lock test.
    assert await _pragma(db, "busy_timeout") == 0
    assert await _pragma(db, "wal_autocheckpoint") == 0  # checkpoints run in a worker thread


async def test_the_directory_of_the_database_file_is_created(tmp_path: Path) -> None:
    path = tmp_path / "does" / "not" / "exist" / "yet.db"
    async with open_database(sqlite_url_for(path)) as db, db.uow() as uow:
        await uow.runs.add(a_run())
        await uow.commit()
    assert path.is_file()


async def test_a_relative_sqlite_path_is_created_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with open_database("sqlite+aiosqlite:///state/bot.db"):
        pass
    assert (tmp_path / "state" / "bot.db").is_file()


async def test_sqlite_url_for_survives_awkward_characters(tmp_path: Path) -> None:
    path = tmp_path / "my bots?" / "100% grid#1.db"
    url = sqlite_url_for(path)
    assert url.startswith("sqlite+aiosqlite:///")
    async with open_database(url):
        pass
    assert path.is_file()


def test_sqlite_url_for_makes_relative_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_url_for(Path("data/bot.db")) == f"sqlite+aiosqlite:///{tmp_path.resolve()}/data/bot.db"


def _driver_missing(module: str) -> bool:
    return importlib.util.find_spec(module) is None


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("definitely not a url", "not a database URL"),
        ("", "not a database URL"),
        ("postgresql+asyncpg://grid:hunter2@db:five432/gridbot", "not a database URL"),
        ("nosuchdb://host/db", "unknown database dialect or driver 'nosuchdb'"),
        ("sqlite:///bot.db", "'sqlite' is not an asyncio driver"),
        pytest.param(
            "postgresql+asyncpg://grid:hunter2@127.0.0.1/gridbot",
            "driver of 'postgresql+asyncpg' is not installed",
            marks=pytest.mark.skipif(not _driver_missing("asyncpg"), reason="asyncpg is installed"),
        ),
    ],
)
async def test_an_unusable_url_is_a_configuration_error_naming_the_setting(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        async with open_database(url):
            pass
    assert caught.value.key == "DATABASE__URL"
    assert says in str(caught.value)
    assert "hunter2" not in str(caught.value)


async def test_a_directory_that_cannot_be_created_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError) as caught:
        async with open_database(sqlite_url_for(blocker / "bot.db")):
            pass
    assert caught.value.key == "DATABASE__URL"
    assert "cannot create the directory" in caught.value.problem


async def test_a_path_that_is_a_directory_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "bot.db").mkdir()
    with pytest.raises(ConfigurationError) as caught:
        async with open_database(sqlite_url_for(tmp_path / "bot.db")):
            pass
    assert caught.value.key == "DATABASE__URL"
    assert "is a directory, not a database file" in caught.value.problem


async def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    path.write_bytes(b"this is a spreadsheet, honest" * 100)
    with pytest.raises(ConfigurationError) as caught:
        async with open_database(sqlite_url_for(path)):
            pass
    assert caught.value.key == "DATABASE__URL"
    assert "not a database" in caught.value.problem


async def test_an_in_memory_database_works_for_quick_runs() -> None:
    async with open_database("sqlite+aiosqlite:///:memory:") as db:
        async with db.uow() as uow:
            await uow.runs.add(a_run())
            await uow.commit()
        async with db.uow() as uow:
            assert await uow.runs.get("run-1") == a_run()


async def test_a_database_of_another_schema_version_is_refused_naming_the_setting(db_path: Path) -> None:
    async with open_database(sqlite_url_for(db_path)) as database, database.engine.begin() as connection:
        await connection.exec_driver_sql("UPDATE schema_info SET version = 99")
    with pytest.raises(ConfigurationError) as refused:
        async with open_database(sqlite_url_for(db_path)):
            pass
    assert refused.value.key == "DATABASE__URL"
    assert "has schema version 99, this version of the bot uses 1" in refused.value.problem


async def test_a_database_whose_tables_differ_is_refused_before_anything_is_written(db_path: Path) -> None:
    import sqlite3

    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as connection:  # an orders table from some other program
        connection.execute("CREATE TABLE orders (client_order_id TEXT PRIMARY KEY, note TEXT)")
    with pytest.raises(ConfigurationError) as refused:
        async with open_database(sqlite_url_for(db_path)):
            pass
    assert "has a table orders without column run_id" in refused.value.problem
    with sqlite3.connect(db_path) as connection:
        assert connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'schema_info'"
        ).fetchone() == (0,)


async def test_a_database_from_before_the_version_stamp_is_stamped_and_kept(db_path: Path) -> None:
    async with open_database(sqlite_url_for(db_path)) as database:
        async with database.uow() as uow:
            await uow.runs.add(a_run())
            await uow.commit()
        async with database.engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE schema_info")
    async with open_database(sqlite_url_for(db_path)) as database, database.uow() as uow:
        assert await uow.runs.get(a_run().run_id) is not None
    async with open_database(sqlite_url_for(db_path)) as database, database.engine.connect() as connection:
        assert (await connection.exec_driver_sql("SELECT version FROM schema_info")).scalar() == 1
