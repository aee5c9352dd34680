"""The session classes litestar_db hands out: SQLAlchemy's, with two misuse guards.

* **Concurrent use** (one ``AsyncSession`` shared by ``asyncio.gather`` tasks): SQLAlchemy documents a session as
  not safe for concurrent tasks; misuse surfaces as ``IllegalStateChangeError`` at close time and a connection that
  never returns to the pool. :class:`AsyncSession` raises :class:`~litestar_db.errors.ConcurrentSessionUseError`
  at the second concurrent call instead, and :meth:`AsyncSession.close` waits for the operation still running, so
  the connection goes back clean.
* **IO outside the event-loop bridge** (a lazy relationship or an expired column read while a response is being
  serialised): instead of SQLAlchemy's generic ``MissingGreenlet``, :class:`LazyLoadError` names the attribute and
  suggests eager loading.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from sqlalchemy import Executable, Result
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.ext.asyncio import AsyncSession as _SAAsyncSession
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import in_greenlet

from litestar_db.errors import ConcurrentSessionUseError, DatabaseError, ResultClosedError

__all__ = ("AsyncSession", "LazyLoadError", "SyncSession", "make_sessionmaker")

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])
_CLOSE_WAIT_SECONDS = 30.0


class LazyLoadError(DatabaseError):
    """An attribute needed a query outside an awaited session call (e.g. during response serialisation).

    Load it eagerly (``selectinload``/``joinedload``, or ``await session.refresh(obj, ["attr"])``) inside the handler.
    """

    default_detail = "Attribute loaded lazily outside the session; load it eagerly inside the handler"


class SyncSession(Session):
    """The synchronous session behind :class:`AsyncSession`; routing subclasses extend this one."""

    def execute(
        self,
        statement: Executable,
        params: Any = None,
        *,
        execution_options: Any = EMPTY_DICT,
        bind_arguments: dict[str, Any] | None = None,
        _parent_execute_state: Any = None,
        _add_event: Any = None,
    ) -> Result[Any]:
        """SQLAlchemy's ``Session.execute``; outside the async bridge a lazy load raises :class:`LazyLoadError`.

        SQLAlchemy's lazy loaders and expired-attribute loads call this method. Every awaited call of
        :class:`AsyncSession` runs it inside SQLAlchemy's greenlet; a call from anywhere else (an attribute read
        while a response is serialised) could only fail with SQLAlchemy's generic ``MissingGreenlet``. Checked
        here rather than in a ``do_orm_execute`` listener, whose mere presence makes SQLAlchemy build an
        ``ORMExecuteState`` for every ORM statement.

        Raises:
            LazyLoadError: a relationship or expired/deferred column load outside an awaited session call.
        """
        if not in_greenlet() and isinstance(statement, Executable):  # else SQLAlchemy's ArgumentError follows
            _refuse_implicit_io(
                ORMExecuteState(self, statement, params, execution_options, bind_arguments or {}, None, [])
            )
        return super().execute(
            statement,
            params,
            execution_options=execution_options,
            bind_arguments=bind_arguments,
            _parent_execute_state=_parent_execute_state,
            _add_event=_add_event,
        )

    def drop_bind_connection(self, bind: object, *, invalidate: bool = False) -> None:
        """Take ``bind``'s connection out of the session transaction and give it back to its pool.

        Used when a connection carries nothing to commit (an autocommit or READ ONLY replica connection the session
        moved away from) or cannot commit (a broken replica connection). SQLAlchemy has no public call to drop one
        bind's connection from a session transaction, hence ``SessionTransaction._connections``.

        Args:
            bind: The engine whose connection is dropped (no-op when the session holds none).
            invalidate: Discard the connection instead of pooling it (it is broken).
        """
        transaction = self._transaction
        while transaction is not None:
            entry = transaction._connections.pop(bind, None)  # type: ignore[call-overload]
            if entry is not None:
                transaction._connections.pop(entry[0], None)
                with contextlib.suppress(Exception):  # a broken connection is discarded all the same
                    if invalidate:
                        entry[0].invalidate()
                    entry[0].close()
            transaction = transaction._parent


def _refuse_implicit_io(state: ORMExecuteState) -> None:
    """Raise :class:`LazyLoadError` naming what ``state`` (a statement run outside the async bridge) would load."""
    path = state.loader_strategy_path
    prop = getattr(path, "prop", None) if path is not None else None
    if state.is_relationship_load and prop is not None:
        msg = (
            f"{prop} was loaded lazily outside an awaited session call (for example while the response was being "
            f"serialised). Load it eagerly in the query (selectinload({prop}) / joinedload) or "
            f"`await session.refresh(obj, [{prop.key!r}])` inside the handler."
        )
        raise LazyLoadError(msg)
    if state.is_column_load:
        descriptions = getattr(state.statement, "column_descriptions", None) or [{}]
        entity = descriptions[0].get("entity")
        cls_name = entity.__name__ if isinstance(entity, type) else "object"
        msg = (
            f"{cls_name} (expired or deferred columns) was loaded lazily outside an awaited session call (for "
            f"example while the response was being serialised). Load the columns inside the handler "
            f"(`await session.refresh(obj)`, or undefer() them in the query)."
        )
        raise LazyLoadError(msg)
    # not a lazy load: SQLAlchemy's own MissingGreenlet follows


def _guarded(method: _F) -> _F:
    """``method`` of SQLAlchemy's ``AsyncSession``, refusing a second concurrent call (see :class:`AsyncSession`).

    One coroutine per call and no bound-method or ``super()`` objects: these wrap every awaited session call.
    """

    async def guarded(self: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        claimed = self._claim()
        if claimed is None:
            claimed = await self._take_turn()
        try:
            return await method(self, *args, **kwargs)
        finally:
            if claimed:
                self._release()

    functools.update_wrapper(guarded, method)
    return cast("_F", guarded)


class AsyncSession(_SAAsyncSession):
    """SQLAlchemy's ``AsyncSession`` that refuses concurrent use and closes cleanly after it.

    Raises:
        ConcurrentSessionUseError: a second awaited call started while one was still running (unless
            :attr:`may_take_turns` lets its task wait for its turn).
    """

    sync_session_class = SyncSession
    may_take_turns: Callable[[asyncio.Task[Any] | None], bool] | None = None
    """Tasks whose awaited calls wait for a running call to finish instead of raising
    :class:`~litestar_db.errors.ConcurrentSessionUseError` (one call at a time, in arrival order). The Litestar
    layer sets it on request sessions for the tasks in which Litestar resolves sibling dependencies concurrently;
    ``None`` (the default) refuses every concurrent call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ltdb_owner: asyncio.Task[Any] | None = None
        """The task running an awaited call, ``None`` when idle."""
        self._ltdb_idle: asyncio.Future[None] | None = None
        """Created by :meth:`close` only when it has to wait for a running call (no allocation per call)."""
        self._ltdb_closed = False

    def _claim(self) -> bool | None:
        """Mark the current task as running an awaited call.

        Returns:
            ``True`` when this call claimed the session, ``False`` on re-entry from the same task
            (``scalars()`` calls ``execute()``), ``None`` when another task's call is running and this task may
            wait for its turn (:meth:`_take_turn`).

        Raises:
            ConcurrentSessionUseError: another task's call is still running.
        """
        task = asyncio.current_task()
        owner = self._ltdb_owner
        if owner is None:
            self._ltdb_owner = task
            return True
        if owner is task:
            return False
        may_take_turns = self.may_take_turns
        if may_take_turns is not None and may_take_turns(task):
            return None
        raise ConcurrentSessionUseError

    async def _take_turn(self) -> bool:
        """Wait until no call is running, then claim the session for the current task.

        Returns:
            ``True`` (the session is claimed).
        """
        while self._ltdb_owner is not None:
            if self._ltdb_idle is None:
                self._ltdb_idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._ltdb_idle)
        self._ltdb_owner = asyncio.current_task()
        return True

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        """Await ``awaitable`` as one guarded call (a fetch from a streamed result uses the connection too)."""
        try:
            claimed = self._claim()
            if claimed is None:
                claimed = await self._take_turn()
        except BaseException:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: no "coroutine was never awaited" warning
            raise
        try:
            return await awaitable
        finally:
            if claimed:
                self._release()

    def _release(self) -> None:
        self._ltdb_owner = None
        idle = self._ltdb_idle
        if idle is not None:
            self._ltdb_idle = None
            if not idle.done():
                idle.set_result(None)

    execute = _guarded(_SAAsyncSession.execute)
    scalar = _guarded(_SAAsyncSession.scalar)  # type: ignore[arg-type,assignment]  # mypy loses its overloads
    scalars = _guarded(_SAAsyncSession.scalars)
    get = _guarded(_SAAsyncSession.get)
    get_one = _guarded(_SAAsyncSession.get_one)
    flush = _guarded(_SAAsyncSession.flush)
    refresh = _guarded(_SAAsyncSession.refresh)
    merge = _guarded(_SAAsyncSession.merge)
    delete = _guarded(_SAAsyncSession.delete)
    commit = _guarded(_SAAsyncSession.commit)
    rollback = _guarded(_SAAsyncSession.rollback)

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        """SQLAlchemy's ``stream()``; the result raises ``ResultClosedError`` if read after the session closed.

        Returns:
            An ``AsyncResult`` proxy.
        """
        _leave_autocommit(self)
        result = await _stream(self, *args, **kwargs)
        return _ClosableResult(result, self)

    async def stream_scalars(self, *args: Any, **kwargs: Any) -> Any:
        """SQLAlchemy's ``stream_scalars()``, guarded like :meth:`stream`.

        Returns:
            An ``AsyncScalarResult`` proxy.
        """
        _leave_autocommit(self)
        result = await _stream_scalars(self, *args, **kwargs)
        return _ClosableResult(result, self)

    async def close(self) -> None:
        """Close the session; if a (misused) concurrent operation is still running, wait for it first."""
        if self._ltdb_owner is not None and self._ltdb_owner is not asyncio.current_task():
            if self._ltdb_idle is None:
                self._ltdb_idle = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(asyncio.shield(self._ltdb_idle), _CLOSE_WAIT_SECONDS)
        self._ltdb_closed = True
        await super().close()


def _leave_autocommit(session: AsyncSession) -> None:
    """A streamed result is a server-side cursor, which PostgreSQL opens only inside a transaction: a lazy-begin
    session (:mod:`litestar_db.lazy_begin`) still reading in autocommit opens its real transaction first."""
    leave = getattr(session.sync_session, "leave_autocommit", None)
    if leave is not None:
        leave()


_stream = _guarded(_SAAsyncSession.stream)
_stream_scalars = _guarded(_SAAsyncSession.stream_scalars)


class _ClosableResult:
    """Proxy of a streamed result: refuses reads once its session has closed, and makes every fetch a guarded call
    of the session (the cursor uses the session's connection, so a fetch takes its turn like any other call).

    Without it the driver reports "cursor cannot be created outside of a transaction" or
    "PreparedStatement.fetch(): the underlying connection is closed", far from the mistake, and a fetch next to
    another task's query fails with asyncpg's "another operation is in progress".
    """

    __slots__ = ("_result", "_session")

    def __init__(self, result: Any, session: AsyncSession) -> None:
        self._result = result
        self._session = session

    def _check(self) -> None:
        if self._session._ltdb_closed:
            raise ResultClosedError

    def __getattr__(self, name: str) -> Any:
        self._check()
        attr = getattr(self._result, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._check()
            out = attr(*args, **kwargs)
            if inspect.isawaitable(out):  # fetchone(), all(), close(), ...: IO on the session's connection
                return self._session._call(out)
            # scalars()/mappings()/partitions() return further result objects: keep guarding them
            return _ClosableResult(out, self._session) if hasattr(out, "fetchmany") else out

        return call

    def __aiter__(self) -> _ClosableResult:
        return self

    async def __anext__(self) -> Any:
        self._check()
        return await self._session._call(self._result.__anext__())


def make_sessionmaker(
    bind: AsyncEngine, sync_session_class: type[SyncSession] = SyncSession
) -> async_sessionmaker[AsyncSession]:
    """A session factory with litestar_db's rules (primary, lazy-begin and routing sessions all use it).

    ``expire_on_commit=False`` keeps objects readable after commit (no implicit IO while a response is serialised);
    ``close_resets_only=False`` makes a closed session unusable instead of silently reopening it (which would check
    out a connection nobody returns); :class:`AsyncSession` guards against concurrent use.

    Args:
        bind: The engine sessions use by default.
        sync_session_class: The sync session class (a subclass of :class:`SyncSession` that routes statements).

    Returns:
        An :class:`~sqlalchemy.ext.asyncio.async_sessionmaker` of :class:`AsyncSession`.
    """
    return async_sessionmaker(
        bind,
        class_=AsyncSession,
        sync_session_class=sync_session_class,
        expire_on_commit=False,
        close_resets_only=False,
    )
