"""The :class:`Database`: engines, session makers and the three levels of access, plus the module registry.

Three levels of access (the users' guide's vocabulary):

* :meth:`Database.session` - an ORM session; the caller commits, anything uncommitted is rolled back at exit.
* :meth:`Database.transaction` - commits on normal exit, rolls back on exception; nested blocks are SAVEPOINTs.
* :meth:`Database.connection` - a Core connection for raw SQL and bulk work, in a transaction committed at exit.

All three translate driver errors into :mod:`litestar_db.errors` and never leave a connection in a transaction.
The module-level shortcuts (:func:`litestar_db.session`, …) are in :mod:`litestar_db.registry`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.sql import Executable

from litestar_db._config_checks import normal_level
from litestar_db._monitoring import MonitoringMixin
from litestar_db.config import DatabaseConfig
from litestar_db.engines import create_engine_for, isolation_level_engine
from litestar_db.errors import translate_error
from litestar_db.fetch import Reader, shape_rows
from litestar_db.instrument import instrument_engine
from litestar_db.lazy_begin import LazyBeginSession
from litestar_db.replicas import ReplicaRouter
from litestar_db.session import AsyncSession, SyncSession, make_sessionmaker
from litestar_db.stats import EngineCounters
from litestar_db.transactions import (
    atomic,
    current_unit,
    observe_commits,
    restore_unit,
    run_in_transaction,
    unit_of,
)

if TYPE_CHECKING:
    from litestar_db.migrations import Migrations

__all__ = ("Database",)

logger = logging.getLogger("litestar_db")
_T = TypeVar("_T")
_OPENED_AT = "litestar_db.opened_at"


_PKG_DIR = str(Path(__file__).parent)


def _caller() -> str:
    """``file:line`` of the first frame outside contextlib and litestar_db (where the session was opened)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and (
        frame.f_code.co_filename.endswith("contextlib.py") or f"{_PKG_DIR}" in frame.f_code.co_filename
    ):
        frame = frame.f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class Database(MonitoringMixin):
    """Owns the primary engine (and replica engines), the session maker and the statistics.

    Creating a ``Database`` opens no connection; engines connect on first use, on the running event loop.

    Args:
        config: The validated :class:`~litestar_db.config.DatabaseConfig`.
    """

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.engine: AsyncEngine = create_engine_for(config, config.sqlalchemy_url(), config.pool)
        """The primary's engine (one pool shared by every session, the DI ``db_engine`` and migrations)."""
        self._counters: dict[str, EngineCounters] = {"primary": EngineCounters(config.slow_query_seconds)}
        instrument_engine(
            self.engine,
            self._counters["primary"],
            statements=config.statement_stats,
            reset_on_return=config.pool.reset_on_return,
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = self.make_sessionmaker(self.engine)
        """Factory of primary sessions (see :meth:`make_sessionmaker`)."""
        self._retried = 0
        self._probe_engine: AsyncEngine | None = None
        self._replica_probe_engines: dict[str, AsyncEngine] = {}
        self._closed = False
        self._migrations: Migrations | None = None
        rw = config.read_write
        self.router: ReplicaRouter | None = None
        """Replica engines, lag monitor and routing sessions; ``None`` unless the read/write split is enabled
        with at least one replica (then nothing on the request path looks at replicas)."""
        if rw.enable_read_write_split and rw.replicas:
            self.router = ReplicaRouter(config, self.engine, self._counters["primary"])
        # any commit on the primary is seen by whoever watches: a request (its read-your-writes token), a retried
        # unit of work (not re-run once it committed something)
        observe_commits(self.engine)
        self.lazy_sessionmaker: async_sessionmaker[AsyncSession] | None = None
        """Sessions for read-only requests: plain reads in autocommit until the first write
        (:mod:`litestar_db.lazy_begin`); ``None`` when the split is on, behind PgBouncer, or the isolation level is
        not READ COMMITTED."""
        level = normal_level(config.isolation_level or "READ COMMITTED")
        # Not behind PgBouncer in transaction mode: outside a transaction, asyncpg's prepare and execute may reach
        # different server connections ("prepared statement … does not exist").
        pgbouncer = config.connection.pgbouncer
        if config.request.lazy_begin and self.router is None and level == "READ COMMITTED" and not pgbouncer:
            autocommit = isolation_level_engine(self.engine, "AUTOCOMMIT").sync_engine
            session_class = type("LazyBeginSession", (LazyBeginSession,), {"autocommit_bind": autocommit})
            self.lazy_sessionmaker = self.make_sessionmaker(self.engine, session_class)
        self.reader = Reader(
            self.engine,
            self._counters["primary"],
            self.router,
            fast=self.engine.dialect.driver == "asyncpg" and not pgbouncer,
            session=self.read_replica,
            translate=self._raise_translated,
            retry_after=config.health.retry_after_seconds,
            statement_stats=config.statement_stats,
        )
        """Session-free plain reads behind :meth:`fetch_all`, :meth:`fetch_one`, :meth:`scalar`."""

    @property
    def migrations(self) -> Migrations:
        """Alembic operations on this database's primary: ``await db.migrations.upgrade()``, ``status()``, ….

        See :class:`litestar_db.migrations.Migrations`.
        """
        if self._migrations is None:
            from litestar_db.migrations import Migrations  # Alembic is imported only when migrations are used

            self._migrations = Migrations(self.config)
        return self._migrations

    @staticmethod
    def make_sessionmaker(
        bind: AsyncEngine, sync_session_class: type[SyncSession] = SyncSession
    ) -> async_sessionmaker[AsyncSession]:
        """A session factory with litestar_db's rules; see :func:`litestar_db.session.make_sessionmaker`.

        Returns:
            An :class:`~sqlalchemy.ext.asyncio.async_sessionmaker` of :class:`litestar_db.session.AsyncSession`.
        """
        return make_sessionmaker(bind, sync_session_class)

    # -- access ----------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """An ORM session on the primary; the caller commits.

        At exit anything uncommitted is rolled back (with a warning naming where the session was opened when
        it held unflushed or flushed changes) and the connection goes back to the pool.

        Yields:
            :class:`~sqlalchemy.ext.asyncio.AsyncSession`.

        Raises:
            DatabaseError: a translated driver error (see :mod:`litestar_db.errors`).
        """
        async with self._managed(self.sessionmaker()) as sess:
            yield sess

    @asynccontextmanager
    async def _managed(self, sess: AsyncSession) -> AsyncIterator[AsyncSession]:
        """Translate errors raised in the block and release ``sess`` at exit."""
        sess.info[_OPENED_AT] = _caller()
        try:
            yield sess
        except Exception as exc:
            self._raise_translated(exc)
            raise
        finally:
            await self._release(sess)

    async def _release(self, sess: AsyncSession) -> None:
        try:
            if sess.in_transaction() and (sess.new or sess.dirty or sess.deleted or sess.info.get("wrote")):
                logger.warning("rolling back uncommitted changes of the session opened at %s", sess.info[_OPENED_AT])
            await sess.close()
        except Exception:  # the connection is dead: make sure it is discarded, not pooled
            logger.debug("session close failed; invalidating", exc_info=True)
            await sess.invalidate()

    def _raise_translated(self, exc: BaseException) -> None:
        err = translate_error(exc, retry_after=self.config.health.retry_after_seconds)
        if err is not None:
            self.record_error(err)
            if err is not exc:
                raise err from exc

    @asynccontextmanager
    async def transaction(self, isolation_level: str | None = None) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: commit on normal exit, roll back on exception.

        A ``transaction()`` opened inside another one (same task) reuses its session and becomes a SAVEPOINT
        (Django's nested ``atomic``), so an inner failure rolls back only the inner changes. The same holds inside
        a :func:`~litestar_db.transactions.run_in_transaction` unit and, in a Litestar handler, inside the request
        transaction (Django's ``ATOMIC_REQUESTS``): the block is a SAVEPOINT in the request's session, committed or
        rolled back with the request.

        Args:
            isolation_level: ``"READ COMMITTED"``, ``"REPEATABLE READ"``, ``"SERIALIZABLE"`` (PostgreSQL
                semantics; SQLite supports ``"SERIALIZABLE"``). Outermost block only.

        Yields:
            :class:`~sqlalchemy.ext.asyncio.AsyncSession`.

        Raises:
            DatabaseError: a translated driver error, including a failing COMMIT.
            ValueError: ``isolation_level`` on a nested block (or inside a request).
        """
        current = current_unit.get()
        # Child tasks inherit the ContextVar: only the task that opened the outer block nests into it; any other
        # task (asyncio.gather, a task outliving the block) gets its own transaction.
        outer, request = None, False
        # a block asking for its own isolation level cannot join the request's transaction: it runs on its own
        if current is not None and current[1] is asyncio.current_task() and not (current[2] and isolation_level):
            outer, request = current[0](), current[2]
            if outer is not None and outer._ltdb_closed:  # a unit that ended in another task (see restore_unit)
                outer, request = None, False
        if outer is not None:
            # blocks inside this one nest into it (an isolation_level there is refused, as in any nested block)
            inner = current_unit.set(unit_of(outer)) if request else None
            try:
                async with atomic(outer, isolation_level, savepoint=request) as sess:
                    yield sess
            except Exception as exc:  # the savepoint is rolled back; raise the translated error like the outer block
                self._raise_translated(exc)
                raise
            finally:
                if inner is not None:
                    restore_unit(inner)
            return
        async with self.session() as sess:
            token = current_unit.set(unit_of(sess))
            try:
                async with atomic(sess, isolation_level):
                    yield sess
            finally:
                restore_unit(token)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection to the primary in a transaction, committed on normal exit.

        Results are buffered by SQLAlchemy's asyncio layer; read them inside the block all the same.

        Yields:
            :class:`~sqlalchemy.ext.asyncio.AsyncConnection`.

        Raises:
            DatabaseError: a translated driver error.
        """
        try:
            async with self.engine.begin() as conn:
                yield conn
        except Exception as exc:
            self._raise_translated(exc)
            raise

    @asynccontextmanager
    async def read_replica(self) -> AsyncIterator[AsyncSession]:
        """A read-only session on a replica (the primary while none is configured or available).

        With the read/write split on, reads go to a replica chosen by the configured strategy (ejected or lagging
        replicas excluded; a connection error re-runs the read once elsewhere), and a write raises
        :class:`~litestar_db.errors.ReadOnlyError` before anything is sent.

        Yields:
            :class:`~sqlalchemy.ext.asyncio.AsyncSession` whose transactions are ``READ ONLY`` on PostgreSQL.

        Raises:
            ReadOnlyError: a write was attempted.
            DatabaseError: a translated driver error.
        """
        if self.router is not None:
            routed = self.router.session("read_only", f"read_replica() block opened at {_caller()}")
            async with self._managed(routed) as sess:
                yield sess
            return
        async with self.session() as sess:
            if self.config.is_postgresql:
                await sess.connection(execution_options={"postgresql_readonly": True})
            yield sess

    def primary(self) -> AbstractAsyncContextManager[AsyncSession]:
        """An ORM session that always uses the primary, whatever the read/write split says.

        For reads that must see the latest committed data (e.g. right after a payment), like Rails'
        ``connected_to(role: :writing)``. Same contract as :meth:`session`.

        Returns:
            An async context manager yielding :class:`~sqlalchemy.ext.asyncio.AsyncSession`.
        """
        return self.session()

    async def fetch_all(
        self, statement: Executable, params: Mapping[str, Any] | None = None, *, into: type[_T] | None = None
    ) -> list[Any]:
        """Run a read outside any session and return every row (buffered; the connection is already back).

        On PostgreSQL a plain read runs in one round trip on a replica (or the primary), without BEGIN/COMMIT; a
        statement object read before (module-level, with ``bindparam()`` values) skips SQLAlchemy's execution
        layer altogether. See :mod:`litestar_db.fetch` for which path a statement takes.

        Args:
            statement: A ``select()`` or ``text()`` read; ``bindparam()`` values come from ``params``.
            params: Bind parameter values by name.
            into: A msgspec ``Struct`` (or dataclass) built per row from its columns; ``None``: a ``dict`` per row.

        Returns:
            One ``dict`` (keyed by column label) or ``into`` instance per row.

        Raises:
            ReadOnlyError: ``statement`` writes; nothing is sent.
            DatabaseUnavailableError: the connection was lost, or no replica is available while fallback to the
                primary is off.
            DatabaseError: any other translated driver error.
        """
        return shape_rows(await self.reader.rows(statement, params), into)

    async def fetch_one(
        self, statement: Executable, params: Mapping[str, Any] | None = None, *, into: type[_T] | None = None
    ) -> Any:
        """Like :meth:`fetch_all`, the first row only (``None`` when there is none).

        Returns:
            A ``dict``, an ``into`` instance, or ``None``.
        """
        columns, rows = await self.reader.rows(statement, params)
        return shape_rows((columns, rows[:1]), into)[0] if rows else None

    async def scalar(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Any:
        """Like :meth:`fetch_all`, the first column of the first row (``None`` when there is no row).

        Returns:
            A plain Python value.
        """
        _, rows = await self.reader.rows(statement, params)
        return rows[0][0] if rows else None

    async def run_in_transaction(
        self, fn: Callable[[AsyncSession], Awaitable[_T]], *, retries: int = 3, isolation_level: str | None = None
    ) -> _T:
        """Run ``fn(session)`` in a transaction, retried on 40001/40P01/connection loss before commit.

        See :func:`litestar_db.transactions.run_in_transaction`.

        Returns:
            ``fn``'s result.
        """
        return await run_in_transaction(self, fn, retries=retries, isolation_level=isolation_level)

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start background work on the running loop: probe the replicas once and start the lag monitor.

        Called by the Litestar plugin's lifespan; without it the monitor starts lazily with the first routed
        session. A no-op without replicas.
        """
        if self.router is not None:
            await self.router.start()

    async def dispose(self) -> None:
        """Stop the lag monitor and close every pooled connection of every engine (primary, replicas, probes)."""
        if self._closed:
            return
        self._closed = True
        if self.router is not None:
            await self.router.dispose()
        engines = [self.engine, *([self._probe_engine] if self._probe_engine else [])]
        engines += self._replica_probe_engines.values()
        await asyncio.gather(*(e.dispose() for e in engines), return_exceptions=True)
