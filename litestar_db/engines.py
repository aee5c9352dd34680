"""Engine construction: one :class:`~sqlalchemy.ext.asyncio.AsyncEngine` per server from the config."""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.base import OptionEngine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from litestar_db.config import DatabaseConfig, PoolConfig
from litestar_db.instrument import InstrumentedQueuePool

__all__ = (
    "connection_options_engine",
    "create_engine_for",
    "engine_kwargs",
    "isolation_level_engine",
)


def _pgbouncer_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def engine_kwargs(config: DatabaseConfig, url: URL, pool: PoolConfig, *, null_pool: bool = False) -> dict[str, Any]:
    """Keyword arguments for :func:`~sqlalchemy.ext.asyncio.create_async_engine`.

    PostgreSQL sessions get ``application_name``, ``standard_conforming_strings=on`` and, when configured,
    ``statement_timeout`` (milliseconds, as PostgreSQL's setting expects) as server settings; PgBouncer mode turns
    off asyncpg's statement caches and names each prepared statement uniquely (SQLAlchemy's documented recipe for
    transaction pooling).

    Args:
        config: The database config.
        url: Target server URL (primary or replica).
        pool: Pool settings for this server.
        null_pool: Open a fresh connection per checkout (used by health probes and migrations).

    Returns:
        Keyword arguments, ``url`` excluded.
    """
    kwargs: dict[str, Any] = {
        "echo": config.echo,
        "echo_pool": pool.echo_pool,
        "pool_reset_on_return": pool.reset_on_return,
    }
    if url.get_backend_name() == "sqlite":
        memory = url.database in (None, "", ":memory:")
        if memory:
            kwargs["poolclass"] = StaticPool
        elif null_pool:
            kwargs["poolclass"] = NullPool
        else:
            kwargs.update(pool_size=max(pool.min_size, 1), max_overflow=pool.overflow, pool_timeout=pool.timeout)
            kwargs["poolclass"] = InstrumentedQueuePool
        kwargs["connect_args"] = {"timeout": config.connection.connect_timeout}
        if config.isolation_level:
            kwargs["isolation_level"] = config.isolation_level
        return kwargs
    # standard_conforming_strings: PostgreSQL's default since 9.1, pinned because the statement classifier reads
    # SQL text that way (a backslash escapes only in E'...')
    server_settings = {
        "application_name": config.connection.application_name or "litestar_db",
        "standard_conforming_strings": "on",
    }
    connect_args: dict[str, Any] = {"server_settings": server_settings, "timeout": config.connection.connect_timeout}
    if config.statement_timeout is not None:
        server_settings["statement_timeout"] = str(int(config.statement_timeout * 1000))
    if config.connection.command_timeout is not None:
        # the client-side bound (asyncpg's per-call timeout) for a server that stops answering (frozen, network
        # blackhole), where the server-side timeout never fires: asyncio.TimeoutError, answered as 503
        connect_args["command_timeout"] = config.connection.command_timeout
    if config.connection.pgbouncer:
        connect_args.update(statement_cache_size=0, prepared_statement_cache_size=0)
        connect_args["prepared_statement_name_func"] = _pgbouncer_statement_name
    kwargs["connect_args"] = connect_args
    if null_pool:
        kwargs["poolclass"] = NullPool
    else:
        kwargs.update(
            poolclass=InstrumentedQueuePool,
            pool_size=pool.min_size,
            max_overflow=pool.overflow,
            pool_timeout=pool.timeout,
            pool_recycle=pool.recycle,
            pool_pre_ping=pool.pre_ping,
        )
    if config.isolation_level:
        kwargs["isolation_level"] = config.isolation_level
    return kwargs


def create_engine_for(
    config: DatabaseConfig,
    url: URL,
    pool: PoolConfig,
    *,
    null_pool: bool = False,
    server_settings: dict[str, str] | None = None,
) -> AsyncEngine:
    """Create an engine for ``url`` (no connection is opened until first use).

    Args:
        config: The database config.
        url: Target server URL (primary or replica).
        pool: Pool settings for this server.
        null_pool: Open a fresh connection per checkout (used by health probes and migrations).
        server_settings: More PostgreSQL settings for every connection (e.g. ``default_transaction_read_only``).

    Returns:
        The engine; SQLite engines enforce foreign keys (``PRAGMA foreign_keys=ON``) like PostgreSQL does.
    """
    kwargs = engine_kwargs(config, url, pool, null_pool=null_pool)
    if server_settings:
        connect_args = kwargs["connect_args"]
        kwargs["connect_args"] = {
            **connect_args,
            "server_settings": {**connect_args["server_settings"], **server_settings},
        }
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    elif pool.pre_ping and engine.dialect.driver == "asyncpg":
        # this engine's dialect; bounded like a new connection, so a frozen server cannot hang a checkout
        ping = functools.partial(_asyncpg_ping, timeout=config.connection.connect_timeout)
        engine.sync_engine.dialect.do_ping = ping  # type: ignore[method-assign]
    return engine


def _asyncpg_ping(dbapi_connection: Any, timeout: float | None = None) -> bool:
    """``pool.pre_ping`` on asyncpg in one round trip: ``SELECT 1`` over the simple-query protocol.

    SQLAlchemy's asyncpg ping runs ``;`` as a prepared statement inside ``BEGIN`` … ``ROLLBACK``, three round trips
    per checkout, so that it works behind pgbouncer in transaction mode (SQLAlchemy issue #10226). A simple query
    prepares nothing and is its own implicit transaction, so it is safe there too, in one round trip.

    Returns:
        ``True`` (SQLAlchemy's ``Dialect.do_ping`` contract).

    Raises:
        sqlalchemy.dialects.postgresql.asyncpg.AsyncAdapt_asyncpg_dbapi.Error: the driver's error, translated by
            the adapter as its own ping does, so the pool can tell a dead connection (which it replaces).
    """
    try:  # AdaptedConnection.run_async: SQLAlchemy's bridge for pool hooks
        dbapi_connection.run_async(functools.partial(_select_one, deadline=timeout))
    except Exception as error:
        dbapi_connection._handle_exception(error)
    return True


async def _select_one(driver_connection: Any, deadline: float | None = None) -> None:
    """``SELECT 1`` with no arguments (asyncpg's simple-query protocol), within ``deadline`` seconds."""
    async with asyncio.timeout(deadline):
        await driver_connection.execute("SELECT 1")


def _sqlite_on_connect(dbapi_conn: Any, record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class _ConnectionOptionsEngine(OptionEngine):
    """An engine proxy (same pool, dialect, compiled cache and listeners) whose connections get its options (an
    isolation level, ``postgresql_readonly``, …) one connection at a time."""

    def __init__(self, proxied: Engine, connection_options: dict[str, Any]) -> None:
        super().__init__(proxied, {})
        self._ltdb_options = connection_options

    def connect(self) -> Connection:
        # Connection.execution_options(isolation_level=...): SQLAlchemy's documented per-connection way; the
        # characteristics are reset when the connection goes back to the pool
        return super().connect().execution_options(**self._ltdb_options)

    def execution_options(self, **opt: Any) -> _ConnectionOptionsEngine:
        """Another proxy with ``opt`` added (``OptionEngine`` would bypass :meth:`connect` and lose the options)."""
        return _ConnectionOptionsEngine(self._proxied, {**self._ltdb_options, **opt})


def connection_options_engine(engine: Engine, **options: Any) -> Engine:
    """``engine`` (sync) handing out connections with ``options`` set on each (``isolation_level``,
    ``postgresql_readonly``, …; options of a proxy given as ``engine`` are kept). Same pool as ``engine``.

    ``engine.execution_options(...)`` does the same for connection characteristics through an ``engine_connect``
    listener, which switches on SQLAlchemy's per-connection event dispatch for every connection of that engine
    (~20 us of CPU per request); setting them on each new connection does not.

    Returns:
        The proxy :class:`~sqlalchemy.engine.Engine`.
    """
    if isinstance(engine, _ConnectionOptionsEngine):
        return engine.execution_options(**options)
    return _ConnectionOptionsEngine(engine, options)


def isolation_level_engine(engine: AsyncEngine, isolation_level: str) -> AsyncEngine:
    """``engine`` handing out connections at ``isolation_level`` (``"AUTOCOMMIT"``: DBAPI autocommit, no BEGIN);
    see :func:`connection_options_engine`.

    Args:
        engine: The engine whose pool is shared.
        isolation_level: A PostgreSQL/SQLite isolation level name, upper case, or ``"AUTOCOMMIT"``.

    Returns:
        An :class:`~sqlalchemy.ext.asyncio.AsyncEngine` over the proxy.
    """
    return AsyncEngine(connection_options_engine(engine.sync_engine, isolation_level=isolation_level))
