"""Unit-of-work rules: begin or savepoint, commit/rollback, translation, retries.

Nesting follows Django's ``atomic``: the outermost block owns the transaction, an inner block on the same
session becomes a ``SAVEPOINT`` that rolls back alone when it raises. Retries re-run the *whole* block with a
fresh session (a plain ``async with`` cannot re-run its body).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession as SAAsyncSession
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from litestar_db.errors import (
    AmbiguousCommitError,
    ConnectionLostError,
    DatabaseError,
    TransactionConflictError,
    is_retryable,
    translate_error,
)

if TYPE_CHECKING:
    from litestar_db.database import Database
    from litestar_db.session import AsyncSession

__all__ = (
    "ATTEMPT_KEY",
    "atomic",
    "commit",
    "commit_observer",
    "current_unit",
    "observe_commits",
    "restore_unit",
    "run_in_transaction",
    "transactional",
    "unit_of",
)

logger = logging.getLogger("litestar_db")
commit_observer: ContextVar[list[bool] | None] = ContextVar("litestar_db_commit_observer", default=None)
"""Set by a caller that needs to know whether the code it runs committed (the Litestar request, to send a
read-your-writes token after a commit made outside the request session, e.g. by :func:`transactional`)."""
current_unit: ContextVar[tuple[Callable[[], AsyncSession | None], asyncio.Task[Any] | None, bool] | None] = ContextVar(
    "litestar_db_current_unit", default=None
)
"""The unit of work open in this task: ``(get_session, owner_task, is_request)``. A ``transaction()`` opened by
``owner_task`` joins it as a SAVEPOINT (Django's nested ``atomic``); ``is_request`` marks the Litestar request's
transaction, whose session is created on first use and committed by the request. ``get_session`` returns ``None``
once that unit is over (a background task or a streamed body after the response started)."""
ATTEMPT_KEY = "litestar_db.attempt"
"""``session.info`` key holding the 1-based attempt number inside :func:`run_in_transaction`."""
_T = TypeVar("_T")
_S = TypeVar("_S", bound=SAAsyncSession)


async def commit(session: SAAsyncSession, retry_after: int | None = None) -> None:
    """Commit ``session``; a connection lost *during* COMMIT becomes :class:`AmbiguousCommitError`.

    Raises:
        AmbiguousCommitError: the outcome of the commit is unknown (never retried).
        DatabaseError: any other translated failure (e.g. a deferred unique violation → ``ConflictError``).
    """
    try:
        await session.commit()  # observe_commits reports it to commit_observer
    except Exception as exc:
        # A failed COMMIT can leave the server transaction open (SQLite keeps it after a deferred foreign-key
        # failure): roll back explicitly so nothing of it survives on the pooled connection.
        try:
            await session.rollback()
        except Exception:  # the connection is gone; closing the session invalidates it
            logger.debug("rollback after failed commit failed", exc_info=True)
        err = translate_error(exc, retry_after=retry_after)
        lost_before = isinstance(exc, sa_exc.PendingRollbackError)  # invalidated earlier: COMMIT never reached it
        if isinstance(err, ConnectionLostError) and not lost_before:
            raise AmbiguousCommitError(retry_after=retry_after) from exc
        if err is not None and err is not exc:
            raise err from exc
        raise


@asynccontextmanager
async def atomic(session: _S, isolation_level: str | None = None, *, savepoint: bool = False) -> AsyncIterator[_S]:
    """Run the block in a transaction on ``session``, or in a SAVEPOINT when one is already open.

    Commits (or releases the savepoint) on normal exit, rolls back on exception. Never raises SQLAlchemy's
    "A transaction is already begun": an open (or auto-begun) transaction is nested into, not restarted.

    Args:
        session: The session to use.
        isolation_level: For the outermost block only (PostgreSQL cannot change it mid-transaction).
        savepoint: Always a SAVEPOINT, beginning the session's transaction first if needed (a block inside a
            transaction someone else commits: the Litestar request's).

    Yields:
        ``session``.

    Raises:
        ValueError: ``isolation_level`` given for a block nested in an open transaction.
    """
    if savepoint or session.in_transaction():
        if isolation_level is not None:
            msg = (
                "isolation_level can only be set on the outermost transaction (PostgreSQL sets it at BEGIN); "
                "in a request, set the route's opt={'db_isolation_level': ...}"
            )
            raise ValueError(msg)
        await _begin_for_savepoint(session)
        nested = await session.begin_nested()
        try:
            yield session
            if nested.is_active:
                await nested.commit()  # flushes what the block left pending: a constraint may fail only here
        except BaseException:
            # ACTIVE, or DEACTIVE after a failed flush (is_active is False then, but the SAVEPOINT must still be
            # rolled back, else the whole session stays in "pending rollback")
            if nested.is_active or session.sync_session.get_nested_transaction() is nested.sync_transaction:
                await nested.rollback()
            raise
        return
    await session.begin()
    if isolation_level is not None:
        await session.connection(execution_options={"isolation_level": isolation_level.upper()})
    try:
        yield session
    except BaseException:
        if session.in_transaction():
            await session.rollback()
        raise
    await commit(session)


async def run_in_transaction(
    db: Database,
    fn: Callable[[AsyncSession], Awaitable[_T]],
    *,
    retries: int = 3,
    isolation_level: str | None = None,
    backoff_seconds: float = 0.02,
    max_backoff_seconds: float = 1.0,
) -> _T:
    """Run ``fn(session)`` in a transaction, re-running it with a fresh session when that may succeed.

    Retried on serialization failure (40001), deadlock (40P01) and a connection lost before COMMIT, with
    exponential backoff and full jitter (tenacity's ``wait_random_exponential``). Never retried after an
    ambiguous commit, nor once ``fn`` itself committed part of its work (``await session.commit()``), which a
    retry would repeat. The 1-based attempt number is in ``session.info[ATTEMPT_KEY]``; retries are counted in
    ``get_stats().transactions_retried``.

    Args:
        db: The database.
        fn: The unit of work; it must be safe to run again from the start.
        retries: Extra attempts after the first.
        isolation_level: e.g. ``"SERIALIZABLE"``.
        backoff_seconds: First backoff (seconds); doubles each attempt.
        max_backoff_seconds: Cap of one backoff (seconds).

    Returns:
        What ``fn`` returned on the successful attempt.

    Raises:
        TransactionConflictError: 40001/40P01 persisted through every attempt (409 with ``Retry-After``).
        DatabaseError: any other translated database failure.
    """
    retry_after = db.config.health.retry_after_seconds
    committed = [False]  # a COMMIT during the current attempt (observe_commits: its session or any other connection)

    def may_retry(exc: BaseException) -> bool:
        # re-running a unit that already committed part of its work would repeat what it committed
        return not committed[0] and is_retryable(exc)

    def before_sleep(state: RetryCallState) -> None:
        db.counters_retried()
        logger.info("retrying unit of work (attempt %d): %s", state.attempt_number + 1, state.outcome)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(retries + 1),
        wait=wait_random_exponential(multiplier=backoff_seconds, max=max_backoff_seconds),
        retry=retry_if_exception(may_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                async with db.session() as session:
                    session.info[ATTEMPT_KEY] = attempt.retry_state.attempt_number
                    committed[0] = False
                    outer_observer = commit_observer.get()
                    observer_token = commit_observer.set(committed)
                    # transaction() blocks opened by the unit join it as SAVEPOINTs (same task only)
                    token = current_unit.set(unit_of(session))
                    try:
                        async with atomic(session, isolation_level):
                            result = await fn(session)
                    finally:
                        current_unit.reset(token)
                        commit_observer.reset(observer_token)
                        if outer_observer is not None and committed[0]:
                            outer_observer[0] = True  # the request's read-your-writes token still sees it
                return result
    except DatabaseError as exc:
        if isinstance(exc, TransactionConflictError) and exc.retry_after is None:
            exc.retry_after = retry_after
        raise
    raise AssertionError("unreachable")  # pragma: no cover


async def _begin_for_savepoint(session: SAAsyncSession) -> None:
    """Make sure a SAVEPOINT will sit inside a real transaction of ``session``.

    * a lazy-begin session still reading in autocommit opens its real transaction first (a SAVEPOINT on an
      autocommit connection fails: "SAVEPOINT can only be used in transaction blocks");
    * on SQLite the driver sends ``BEGIN`` only before a write, and a SAVEPOINT outside a transaction starts one that
      its RELEASE commits (SQLite's documented behaviour): the block would be committed on its own, so ``BEGIN``
      is sent first.
    """
    from litestar_db.lazy_begin import LazyBeginSession

    sync = session.sync_session
    if isinstance(sync, LazyBeginSession):
        sync.leave_autocommit()
    if session.bind is not None and session.bind.dialect.name == "sqlite":
        conn = await session.connection()
        raw = await conn.get_raw_connection()
        if not raw.driver_connection.in_transaction:  # type: ignore[union-attr]
            await conn.exec_driver_sql("BEGIN")


def observe_commits(engine: AsyncEngine) -> None:
    """Report every COMMIT that ``engine`` sends to :data:`commit_observer`, however it was made: a session, a
    Core connection (``Database.connection()``, the ``db_engine`` dependency) or a raw ``engine.begin()``.

    Wraps the dialect's ``do_commit`` on the first connection, after the statement statistics have installed theirs
    (pool ``connect`` listeners run in the order they were added). No ``ConnectionEvents`` listener is added.
    """
    dialect = engine.sync_engine.dialect

    def install(dbapi_conn: Any, record: Any) -> None:
        base_commit = dialect.do_commit

        def do_commit(dbapi_connection: Any) -> None:
            base_commit(dbapi_connection)
            observer = commit_observer.get()
            # a READ ONLY transaction (asyncpg adapter's ``readonly``: a read_only route on the primary) wrote nothing
            if observer is not None and not getattr(dbapi_connection, "readonly", False):
                observer[0] = True

        dialect.do_commit = do_commit  # type: ignore[method-assign]

    event.listen(engine.sync_engine.pool, "connect", install, once=True)


def restore_unit(token: Token[Any]) -> None:
    """Reset :data:`current_unit` to what it was before ``token``'s ``set``.

    A ``transaction()`` block in a generator dependency is resumed for its clean-up in another task (Litestar cleans
    up several generator dependencies in an anyio task group), whose context is a copy: there the reset is
    impossible (``ValueError``) and unnecessary; the entry left in the first context names a session that is closed
    by then, which ``Database.transaction`` does not join.
    """
    with contextlib.suppress(ValueError):  # "created in a different Context"
        current_unit.reset(token)


def _same(session: AsyncSession) -> AsyncSession:
    return session


def unit_of(session: AsyncSession) -> tuple[Callable[[], AsyncSession], asyncio.Task[Any] | None, bool]:
    """The :data:`current_unit` entry of a block that owns ``session`` in the current task.

    Returns:
        ``(get_session, owner_task, is_request=False)``.
    """
    return functools.partial(_same, session), asyncio.current_task(), False


def transactional(
    *,
    retries: int = 3,
    isolation_level: str | None = None,
    session_arg: str = "db_session",
    database: Database | None = None,
) -> Callable[[Callable[..., Awaitable[_T]]], Callable[..., Awaitable[_T]]]:
    """Decorator form of :func:`run_in_transaction` for handlers and service functions.

    Each attempt calls the function with a fresh session passed as ``session_arg`` (replacing whatever the caller or
    dependency injection supplied), in its own transaction, committed before the function's result is returned.
    In a Litestar handler the injected request session is then left unused (it never checks out a connection).

    Example:
        ``@post("/transfer")`` over ``@transactional(retries=5, isolation_level="SERIALIZABLE")`` over
        ``async def transfer(data: Transfer, db_session: AsyncSession) -> Receipt``.

    Args:
        retries: Extra attempts after the first.
        isolation_level: Isolation level of every attempt.
        session_arg: Keyword argument receiving the session.
        database: The database; the registered default (:func:`litestar_db.get_database`) when ``None``.

    Returns:
        The decorator.
    """

    def decorate(fn: Callable[..., Awaitable[_T]]) -> Callable[..., Awaitable[_T]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> _T:
            from litestar_db.registry import get_database

            db = database or get_database()

            async def unit(session: AsyncSession) -> _T:
                return await fn(*args, **{**kwargs, session_arg: session})

            return await run_in_transaction(db, unit, retries=retries, isolation_level=isolation_level)

        return wrapper

    return decorate
