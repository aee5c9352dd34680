"""Feeding :class:`~litestar_db.stats.EngineCounters` without SQLAlchemy's per-connection event cost.

SQLAlchemy joins an engine's ``ConnectionEvents`` listeners into every new ``Connection`` (one per request) and
builds a joined listener collection per event fired; with any such listener attached that costs about 40-55 us of
CPU per request on a 2-core machine, whatever the listener does (``benchmarks/README.md``). So the per-statement
figures come from the dialect's own hooks instead, which SQLAlchemy calls whether or not events are attached:

* statements and slow statements: the dialect's ``do_execute``/``do_executemany``/``do_execute_no_params`` on this
  engine's dialect instance, timed around each cursor execution (a bulk INSERT sent in several
  ``insertmanyvalues`` batches counts once per batch, as ``before/after_cursor_execute`` did);
* commits and rollbacks: the dialect's ``do_commit``/``do_rollback``, minus the pool's reset-on-return (told apart
  by the pool's ``reset`` event, which fires just before it). They count the COMMITs and ROLLBACKs sent: none for
  a connection in DBAPI autocommit (a lazy-begin read), and a transaction lost with its connection (invalidated,
  server gone) is counted in ``connections_invalidated``;
* errors: ``handle_error`` (a ``DialectEvents`` hook: it also sees connection failures);
* pool figures: pool events (``connect``, ``invalidate``, ``soft_invalidate``) and :class:`InstrumentedQueuePool`
  for what no event reports (checkouts waiting for a connection, checkouts that timed out).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, Pool, PoolResetState, QueuePool

from litestar_db.stats import EngineCounters

__all__ = ("InstrumentedQueuePool", "instrument_engine")


class InstrumentedQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's asyncio queue pool, also counting waiting checkouts and checkout timeouts.

    No pool event fires *before* a checkout, so these two figures come from ``_do_get`` (the method pool classes
    implement to hand out a connection). A checkout counts as waiting from the moment the pool is at
    ``max_size`` (every connection lent, no overflow left) until it gets a connection or gives up after
    ``pool.timeout`` seconds (HikariCP's ``pendingThreads`` and ``connectionTimeout`` count). Outside that case a
    checkout never suspends, so the figure is exact for any observer on the event loop.
    """

    _sqla_logger_namespace = "sqlalchemy.pool.impl.InstrumentedQueuePool"  # log under sqlalchemy.* like its base

    counters: EngineCounters | None = None
    """Where the figures go; set by :func:`instrument_engine` and carried over by :meth:`recreate`."""

    def _do_get(self) -> ConnectionPoolEntry:
        counters = self.counters
        if counters is None or not (-1 < self._max_overflow <= self._overflow):
            return super()._do_get()
        counters.waiting += 1
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            counters.checkout_timeouts += 1
            raise
        finally:
            counters.waiting -= 1

    def recreate(self) -> QueuePool:
        """A fresh pool with the same settings (``engine.dispose()``), still feeding the same counters.

        Returns:
            The new pool.
        """
        new = super().recreate()
        if isinstance(new, InstrumentedQueuePool):
            new.counters = self.counters
        return new


def _count_statements(engine: AsyncEngine, counters: EngineCounters, reset_on_return: str | None) -> None:
    # the dialect instance is the engine's own (execution_options() engines share it, other engines do not)
    dialect = engine.sync_engine.dialect

    def timed(execute: Callable[..., None]) -> Callable[..., None]:
        def run(cursor: Any, statement: str, *args: Any) -> None:
            started = time.perf_counter()
            execute(cursor, statement, *args)
            counters.record_statement(statement, time.perf_counter() - started)

        return run

    base_commit, base_rollback = dialect.do_commit, dialect.do_rollback
    pool_reset = [False]  # set by the pool's reset event right before its reset-on-return rollback/commit

    def on_reset(dbapi_conn: Any, record: Any, state: PoolResetState) -> None:
        # SQLAlchemy's Pool._reset: a rollback unless the Connection already ended its transaction; always a commit
        pool_reset[0] = state.asyncio_safe and (
            reset_on_return == "commit" or (reset_on_return == "rollback" and not state.transaction_was_reset)
        )

    def sends_nothing(dbapi_connection: Any) -> bool:
        """A pool reset, or a connection in DBAPI autocommit (whose commit/rollback the driver skips)."""
        if pool_reset[0]:
            pool_reset[0] = False
            return True
        try:
            return bool(dialect.detect_autocommit_setting(dbapi_connection))
        except NotImplementedError:  # the dialect cannot tell: count it
            return False

    def do_commit(dbapi_connection: Any) -> None:
        if not sends_nothing(dbapi_connection):
            counters.commits += 1
        base_commit(dbapi_connection)

    def do_rollback(dbapi_connection: Any) -> None:
        if not sends_nothing(dbapi_connection):
            counters.rollbacks += 1
        base_rollback(dbapi_connection)

    def on_error(context: ExceptionContext) -> None:
        if context.statement is not None:
            counters.queries += 1
        counters.errors += 1

    def install(dbapi_conn: Any, record: Any) -> None:
        # after the first connection's dialect initialisation (server version, schema, its closing rollback):
        # those are not the application's statements, and ConnectionEvents never saw them either
        dialect.do_execute = timed(dialect.do_execute)  # type: ignore[method-assign]
        dialect.do_executemany = timed(dialect.do_executemany)  # type: ignore[method-assign]
        dialect.do_execute_no_params = timed(dialect.do_execute_no_params)  # type: ignore[method-assign]
        dialect.do_commit = do_commit  # type: ignore[method-assign]
        dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    event.listen(engine.sync_engine.pool, "connect", install, once=True)
    event.listen(engine.sync_engine.pool, "reset", on_reset)
    event.listen(engine.sync_engine, "handle_error", on_error)


def instrument_engine(
    engine: AsyncEngine, counters: EngineCounters, *, statements: bool = True, reset_on_return: str | None = "rollback"
) -> None:
    """Feed ``counters`` from ``engine``, its dialect and its pool.

    Adds no ``ConnectionEvents`` listener (see the module docstring), so SQLAlchemy's per-connection event
    dispatch stays off.

    Args:
        engine: The engine to observe (instrument it once, before first use).
        counters: Where the figures go.
        statements: Also count statements, errors, slow queries (at or above ``counters.slow_threshold``
            seconds), commits and rollbacks; pool figures are always kept.
        reset_on_return: The pool's ``reset_on_return`` (``"rollback"``, ``"commit"`` or ``None``), so that its
            resets are not counted as the application's rollbacks or commits.
    """
    pool: Pool = engine.sync_engine.pool
    if isinstance(pool, InstrumentedQueuePool):
        pool.counters = counters
        counters.pool_instrumented = True

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        counters.connections_created += 1

    def on_invalidate(dbapi_conn: Any, record: Any, exc: BaseException | None) -> None:
        counters.connections_invalidated += 1

    event.listen(pool, "connect", on_connect)
    event.listen(pool, "invalidate", on_invalidate)
    event.listen(pool, "soft_invalidate", on_invalidate)
    if statements:
        _count_statements(engine, counters, reset_on_return)
