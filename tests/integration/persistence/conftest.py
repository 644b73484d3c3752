from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.persistence import Database, open_database, sqlite_url_for


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "gridbot.db"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with open_database(sqlite_url_for(db_path)) as database:
        yield database
