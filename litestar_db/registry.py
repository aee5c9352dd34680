"""The registry of databases by alias, and the module-level shortcuts that use it.

:func:`initialize_database` creates and registers a :class:`~litestar_db.database.Database` (Django's
``django.db.connections`` idea, with one default alias); the Litestar plugin registers its own while the app runs.
:func:`session`, :func:`transaction`, :func:`connection`, :func:`read_replica` and :func:`primary` are the
registered database's methods of the same names. No Litestar import here.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncConnection

from litestar_db.config import DatabaseConfig
from litestar_db.database import Database
from litestar_db.session import AsyncSession

__all__ = (
    "cleanup_database",
    "connection",
    "get_database",
    "initialize_database",
    "primary",
    "read_replica",
    "register_database",
    "session",
    "transaction",
)

_registry: dict[str, Database] = {}


def initialize_database(config: DatabaseConfig, alias: str = "default") -> Database:
    """Create the :class:`Database` for ``config`` and register it under ``alias``.

    Returns:
        The new database.

    Raises:
        RuntimeError: a database is already registered under ``alias`` (call :func:`cleanup_database` first).
    """
    if alias in _registry:
        msg = f"a database is already registered as {alias!r}; call cleanup_database() first"
        raise RuntimeError(msg)
    db = Database(config)
    _registry[alias] = db
    return db


def register_database(db: Database, alias: str = "default") -> None:
    """Register an existing database under ``alias`` (used by the Litestar plugin's lifespan)."""
    _registry[alias] = db


def get_database(alias: str = "default") -> Database:
    """The database registered under ``alias``.

    Raises:
        RuntimeError: nothing is registered (the app has not started, or :func:`initialize_database` was not
            called).
    """
    try:
        return _registry[alias]
    except KeyError:
        msg = f"no database registered as {alias!r}: call initialize_database(config) or start the app first"
        raise RuntimeError(msg) from None


async def cleanup_database(alias: str = "default") -> None:
    """Dispose the database registered under ``alias`` and unregister it (no-op when none)."""
    db = _registry.pop(alias, None)
    if db is not None:
        await db.dispose()


def session() -> AbstractAsyncContextManager[AsyncSession]:
    """``get_database().session()``; see :meth:`Database.session`."""
    return get_database().session()


def transaction(isolation_level: str | None = None) -> AbstractAsyncContextManager[AsyncSession]:
    """``get_database().transaction(...)``; see :meth:`Database.transaction`."""
    return get_database().transaction(isolation_level)


def connection() -> AbstractAsyncContextManager[AsyncConnection]:
    """``get_database().connection()``; see :meth:`Database.connection`."""
    return get_database().connection()


def read_replica() -> AbstractAsyncContextManager[AsyncSession]:
    """``get_database().read_replica()``; see :meth:`Database.read_replica`."""
    return get_database().read_replica()


def primary() -> AbstractAsyncContextManager[AsyncSession]:
    """``get_database().primary()``; see :meth:`Database.primary`."""
    return get_database().primary()
