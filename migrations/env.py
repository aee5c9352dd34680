"""Alembic environment (async) of the sample project.

Where the settings come from (one place, the project's config):

* ``litestar --app sample_project.app:app database …`` and ``Database.migrations`` pass an advanced-alchemy
  ``AlembicCommandConfig`` as ``context.config``: its ``engine`` (a NullPool engine on the *primary*, built from the
  app's ``DatabaseConfig``), ``db_url``, ``version_table_name`` (default ``alembic_version``) and options;
* ``Database.migrations`` also passes the connection that holds the migration lock as
  ``config.attributes["connection"]`` (Alembic cookbook, "Programmatic API use (connection sharing) with asyncio"),
  so nothing here starts an event loop;
* plain ``alembic`` (no advanced-alchemy config) falls back to ``DatabaseConfig.from_env()`` (``DATABASE_URL``).

Metadata is advanced-alchemy's ``metadata_registry`` (its naming convention names every constraint, e.g.
``uq_users_email``, ``ck_accounts_balance_non_negative``), filled by importing the sample models.

Each migration runs in its own transaction (``transaction_per_migration``): on PostgreSQL a migration that fails
is rolled back completely and the database stays at the previous revision.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import TYPE_CHECKING, Any

from advanced_alchemy.base import metadata_registry
from advanced_alchemy.types import GUID
from alembic import context
from sqlalchemy.ext.asyncio import AsyncEngine

import sample_project.models  # noqa: F401  (registers the tables in metadata_registry; import your models here)
from litestar_db.config import DatabaseConfig
from litestar_db.engines import create_engine_for

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy.engine import Connection

__all__ = ()

config = context.config
bind_key: str | None = getattr(config, "bind_key", None)
# Models on advanced-alchemy's base classes register in metadata_registry. Models on a DeclarativeBase of your own
# do not: use ``target_metadata = Base.metadata`` (your Base) instead, else autogenerate finds no tables.
target_metadata = metadata_registry.get(bind_key)


def compare_type(
    context: MigrationContext, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Alembic's type comparison, except for advanced-alchemy's ``GUID`` on SQLite: SQLite reflects its
    ``BINARY(16)`` storage as ``NUMERIC``, which would be reported as a change on every ``check``."""
    if context.dialect.name == "sqlite" and isinstance(metadata_type, GUID):
        return False
    return None  # default comparison


def _options() -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "version_table": getattr(config, "version_table_name", "alembic_version"),
        "version_table_schema": getattr(config, "version_table_schema", None),
        "version_table_pk": getattr(config, "version_table_pk", True),
        "render_as_batch": getattr(config, "render_as_batch", True),
        "compare_type": compare_type if getattr(config, "compare_type", True) else False,
        "user_module_prefix": getattr(config, "user_module_prefix", "sa."),
        "transaction_per_migration": True,
    }


def _engine() -> AsyncEngine:
    engine = getattr(config, "engine", None)
    if isinstance(engine, AsyncEngine):
        return engine
    db = DatabaseConfig.from_env()
    return create_engine_for(db, db.sqlalchemy_url(), db.pool, null_pool=True)


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (``--sql``) without connecting."""
    url = getattr(config, "db_url", None) or _engine().url
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **_options())
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the migrations on ``connection`` (sync side of an async connection)."""
    context.configure(connection=connection, **_options())
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    """Connect with the configured async engine and run the migrations."""
    engine = _engine()
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Use the caller's connection when given; else connect, never nesting ``asyncio.run`` in a running loop."""
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_async_migrations())
        return
    # A loop is running in this thread (an alembic command called synchronously from async code): run the
    # migrations on a worker thread with its own loop rather than fail with "asyncio.run() cannot be called".
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="alembic") as pool:
        pool.submit(asyncio.run, run_async_migrations()).result()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
