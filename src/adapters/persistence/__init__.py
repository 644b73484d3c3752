"""Persistence adapter: SQLAlchemy 2 async repositories and unit of work (SQLite by default)."""

from adapters.persistence.database import Database, connect_database, open_database, sqlite_url_for
from adapters.persistence.repositories import PersistenceError
from adapters.persistence.uow import SqlAlchemyUnitOfWork

__all__ = [
    "Database",
    "PersistenceError",
    "SqlAlchemyUnitOfWork",
    "connect_database",
    "open_database",
    "sqlite_url_for",
]
