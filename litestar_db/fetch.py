"""Session-free reads: what :meth:`Database.fetch_all <litestar_db.Database.fetch_all>`, ``fetch_one`` and
``scalar`` run.

A plain read that calls no function with possible side effects (:func:`litestar_db._classify.is_autocommit_read`)
on asyncpg needs no ORM session and no transaction:
under PostgreSQL's ``READ COMMITTED`` one statement takes one snapshot by itself. Such a read runs, on the engine
the read/write split picks (a replica, else the primary), in one of two ways:

* **Driver path** - the statement *object* was read before (a module-level ``select(...)`` with ``bindparam()``
  values, like a prepared statement): it was compiled once, and each call sends the compiled SQL with the
  parameters straight to the asyncpg connection checked out of the engine's pool. One round trip, no SQLAlchemy
  execution context, no result processing. Only for statements whose types need no bind or result processing in
  SQLAlchemy (integers, text, booleans, timestamps, JSON, ... on asyncpg), without expanding ``IN`` parameters,
  on an engine without ``before/after_cursor_execute`` listeners (tracing sees every statement).
* **Core path** - any other plain read (a statement built per call): ``AsyncConnection.execute`` on an
  ``AUTOCOMMIT`` connection, so SQLAlchemy's statement cache compiles it and its result processors run.

Writes, and statements whose effect the classifier cannot judge, are refused with
:class:`~litestar_db.errors.ReadOnlyError` before anything is sent. Everything else - reads calling a function
that may have side effects, ORM entity selects, SQLite, PgBouncer in transaction mode (outside a transaction
asyncpg's prepare and execute may reach different servers) - runs in a read-only session
(:meth:`Database.read_replica <litestar_db.Database.read_replica>`), where PostgreSQL refuses writes.

All three paths route alike (ejected or lagging replicas skipped, fallback to the primary as configured, a replica
connection error re-runs the read once on another host; inside a request, the request's routing:
:data:`litestar_db.replicas.read_routing`) and translate driver errors into :mod:`litestar_db.errors`. No
Litestar import here.
"""

from __future__ import annotations

import contextlib
import functools
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable, Select
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.type_api import TypeEngine

from litestar_db._classify import statement_kind
from litestar_db.engines import isolation_level_engine
from litestar_db.errors import (
    ConnectionLostError,
    DatabaseError,
    DatabaseUnavailableError,
    ReadOnlyError,
    translate_error,
)
from litestar_db.routing import _is_connection_error

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import Compiled

    from litestar_db.replicas import ReplicaRouter
    from litestar_db.routing import ReplicaState
    from litestar_db.session import AsyncSession
    from litestar_db.stats import EngineCounters

__all__ = ("Reader", "shape_rows")

Rows = tuple[Sequence[str], Sequence[Sequence[Any]]]
"""Column names and the rows (tuples, SQLAlchemy rows or asyncpg records, positional)."""
_MAX_PLANS = 1000
_SEEN = object()  # read once: compiled on the second read of the same object
_SESSION = object()  # selects ORM entities, or not on asyncpg: run in a read-only session


class _Plan:
    """A statement compiled once for the driver path: SQL text and the bind names in ``$n`` order."""

    __slots__ = ("columns", "compiled", "names", "sql")

    def __init__(self, compiled: Compiled, names: Sequence[str], columns: list[str]) -> None:
        self.compiled = compiled
        self.sql = compiled.string
        self.names = names
        self.columns = columns
        """The result keys a session gives (from :func:`_result_keys`, or from the first, Core, execution)."""

    def arguments(self, params: Mapping[str, Any] | None) -> list[Any]:
        """Positional arguments: ``params`` over the statement's own bound values (SQLAlchemy's
        ``construct_params``, which raises when a ``bindparam()`` has no value)."""
        values = self.compiled.construct_params(params)
        assert values is not None
        return [values[name] for name in self.names]


def _result_keys(statement: Executable) -> object:
    """The result keys a session gives an ORM-enabled ``select()`` of columns (``count``, not the SQL label
    ``count_1``: what ``column_descriptions`` names), ``None`` when a session gives SQLAlchemy Core's keys (a Core
    ``select()`` or ``text()``: taken from the first, Core, execution), or ``_SESSION`` for a ``select()`` of ORM
    entities (only a session builds those objects). One pass over ``column_descriptions``."""
    # The session's own test for an ORM statement (Session.execute): the ORM compile-state plugin
    if not isinstance(statement, Select) or statement._propagate_attrs.get("compile_state_plugin") != "orm":
        return None
    keys = []
    for description in statement.column_descriptions:
        if not isinstance(description["type"], TypeEngine):
            return _SESSION
        keys.append(description["name"])
    return keys


def _compile_plan(statement: Executable, engine: AsyncEngine, keys: list[str]) -> _Plan | None:
    """The driver-path plan of ``statement``, or ``None`` when SQLAlchemy must process its values."""
    dialect = engine.sync_engine.dialect
    if statement.get_execution_options() or engine.get_execution_options():
        return None  # e.g. a schema_translate_map, applied only by SQLAlchemy's execution
    if isinstance(statement, Select):
        result_types = [c.type for c in statement.selected_columns]
    elif isinstance(statement, TextClause):
        result_types = []
    else:
        return None
    compiled = statement.compile(dialect=dialect)
    names = getattr(compiled, "positiontup", None)
    if names is None or compiled.post_compile_params or compiled.literal_execute_params or compiled.escaped_bind_names:
        return None  # SQLAlchemy rewrites the SQL per execution, or renames the parameters
    for bind in compiled.binds.values():
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            return None
    for type_ in result_types:
        # The column's type code is unknown before a first execution; the dialect types that branch on it (the
        # PostgreSQL numerics) refuse None, which makes the statement ineligible, as it should.
        try:
            if type_.dialect_impl(dialect).result_processor(dialect, None) is not None:
                return None
        except Exception:
            return None
    return _Plan(compiled, list(names), keys)


def _observed(engine: AsyncEngine) -> bool:
    """Whether ``before_cursor_execute`` or ``after_cursor_execute`` listeners watch ``engine`` (tracing such as
    OpenTelemetry's SQLAlchemy instrumentation, query logging): the driver path bypasses SQLAlchemy's cursor
    execution, so such an engine's reads stay on the Core path, where the listeners see every statement."""
    dispatch = engine.sync_engine.dispatch
    return bool(dispatch.before_cursor_execute) or bool(dispatch.after_cursor_execute)


class Reader:
    """Runs plain reads without a session (see the module docstring); one per :class:`~litestar_db.Database`.

    Args:
        engine: The primary engine.
        counters: The primary's counters (statements, errors, reads routed to it).
        router: The read/write split, or ``None``.
        fast: Whether the driver and Core paths may be used (asyncpg, not behind PgBouncer in transaction mode).
        session: Opens the read-only session the other reads run in (``Database.read_replica``).
        translate: Raises the :mod:`litestar_db.errors` form of a driver error (returns for other errors).
        retry_after: Seconds for ``Retry-After`` on a lost connection.
        statement_stats: Count the driver path's statements (``DatabaseConfig.statement_stats``, as the dialect
            hooks of :mod:`litestar_db.instrument` do for the other paths).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        counters: EngineCounters,
        router: ReplicaRouter | None,
        *,
        fast: bool,
        session: Callable[[], AbstractAsyncContextManager[AsyncSession]],
        translate: Callable[[BaseException], None],
        retry_after: int | None = None,
        statement_stats: bool = True,
    ) -> None:
        self.engine = engine
        self.counters = counters
        self.router = router
        self.fast = fast
        self._session = session
        self._translate = translate
        self.retry_after = retry_after
        self.statement_stats = statement_stats
        self._plans: OrderedDict[int, tuple[weakref.ref[Executable], object, Any]] = OrderedDict()
        self._autocommit: dict[AsyncEngine, AsyncEngine] = {}

    async def rows(self, statement: Executable, params: Mapping[str, Any] | None) -> Rows:
        """Run ``statement`` (a plain read) and return its column names and rows.

        Raises:
            ReadOnlyError: ``statement`` writes, or whether it writes cannot be told (nothing is sent).
            DatabaseUnavailableError: no replica is available and fallback to the primary is off, or the
                connection was lost.
            DatabaseError: any other translated driver error.
        """
        kind = statement_kind(statement)
        if kind in ("write", "unknown"):
            what = type(statement).__name__
            msg = (
                f"Write attempted through fetch_all/fetch_one/scalar ({what}); nothing was sent to the database"
                if kind == "write"
                else f"fetch_all/fetch_one/scalar cannot tell whether this {what} writes (a Unicode-escaped name,"
                " an unterminated literal, a construct it does not judge): run it in a session"
            )
            raise ReadOnlyError(msg)
        # a function that may have side effects: the read-only session, where PostgreSQL refuses writes
        plan, keys = self._plan(statement) if self.fast and kind == "read" else (_SESSION, None)
        if plan is _SESSION:
            return await self._in_session(statement, params)
        arguments: list[Any] = []
        if isinstance(plan, _Plan):
            try:
                arguments = plan.arguments(params)
            except Exception:  # a missing or malformed parameter: SQLAlchemy raises its usual error on Core
                plan = None
        failed: tuple[ReplicaState, ...] = ()
        while True:
            replica = None if self.router is None else self.router.choose_for_read(failed)
            engine, counters = (self.engine, self.counters) if replica is None else (replica.engine, replica.counters)
            if self.router is not None:
                counters.routed_reads += 1
            try:
                if isinstance(plan, _Plan) and not _observed(engine):
                    return await self._on_driver(engine, counters, plan, arguments)
                rows = await self._on_core(engine, statement, params, keys)
                if rows[0] is not keys:  # Core's keys, now known
                    self._remember_keys(statement, rows[0])
                return rows
            except Exception as exc:
                if replica is not None and not failed and _is_connection_error(exc):
                    assert self.router is not None
                    self.router.replica_set.connection_failed(replica, exc)
                    failed = (replica,)
                    continue
                self._translate(exc)
                raise

    async def _in_session(self, statement: Executable, params: Mapping[str, Any] | None) -> Rows:
        async with self._session() as sess:
            result = await sess.execute(statement, params)
            return list(result.keys()), result.all()

    def _plan(self, statement: Executable) -> tuple[object, Any]:
        """How to run ``statement`` and its result keys (:func:`_result_keys`): ``_SESSION``, ``None`` (Core) or its
        :class:`_Plan` (driver), the plan compiled the second time one statement object is read."""
        key = id(statement)
        entry = self._plans.get(key)
        if entry is None or entry[0]() is not statement:
            keys = _result_keys(statement)
            plan = _SESSION if keys is _SESSION else _SEEN
            if len(self._plans) >= _MAX_PLANS:  # least recently used first: a plan keeps its statement alive
                self._plans.popitem(last=False)
            self._plans[key] = (weakref.ref(statement, functools.partial(self._forget, key)), plan, keys)
            return (_SESSION if plan is _SESSION else None), keys
        self._plans.move_to_end(key)
        _, plan, keys = entry
        if plan is _SEEN and keys is not None:  # Core keys are known once the first execution returned
            plan = _compile_plan(statement, self.engine, keys)
            self._plans[key] = (entry[0], plan, keys)
        return (None if plan is _SEEN else plan), keys

    def _remember_keys(self, statement: Executable, keys: Sequence[str]) -> None:
        """Keep the Core result keys of ``statement`` for its driver-path plan."""
        entry = self._plans.get(id(statement))
        if entry is not None and entry[0]() is statement and entry[1] is _SEEN:
            self._plans[id(statement)] = (entry[0], entry[1], list(keys))

    def _forget(self, key: int, _ref: object) -> None:
        self._plans.pop(key, None)

    async def _on_driver(
        self, engine: AsyncEngine, counters: EngineCounters, plan: _Plan, arguments: list[Any]
    ) -> Rows:
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            started = time.perf_counter()
            try:
                records = await driver.fetch(plan.sql, *arguments)
            except BaseException as exc:
                if self.statement_stats:
                    counters.queries += 1
                    counters.errors += 1
                err = _translate_driver_error(exc, self.retry_after)
                if err is None or isinstance(err, DatabaseUnavailableError):  # cancelled mid-query, or lost
                    with contextlib.suppress(Exception):  # discarded all the same
                        await conn.invalidate()
                if err is not None and err is not exc:
                    raise err from exc
                raise
            if self.statement_stats:
                counters.record_statement(plan.sql, time.perf_counter() - started)
        return plan.columns, records

    async def _on_core(
        self, engine: AsyncEngine, statement: Executable, params: Mapping[str, Any] | None, keys: list[str] | None
    ) -> Rows:
        autocommit = self._autocommit.get(engine)
        if autocommit is None:
            autocommit = self._autocommit[engine] = isolation_level_engine(engine, "AUTOCOMMIT")
        async with autocommit.connect() as conn:
            result = await conn.execute(statement, params)
            core_keys = list(result.keys())
            # an ORM-enabled select's keys are the session's, unless the server returns other columns (a "*")
            return (core_keys if keys is None or len(keys) != len(core_keys) else keys), result.all()


def _translate_driver_error(exc: BaseException, retry_after: int | None) -> DatabaseError | None:
    """:func:`~litestar_db.errors.translate_error` for an exception asyncpg raised on the driver path, where no
    SQLAlchemy adapter classified it first: a bad argument or an outdated type cache is a :class:`DatabaseError`,
    any other interface or internal client error (``connection is closed``) a lost connection; ``None`` for
    anything else (a cancellation)."""
    if not isinstance(exc, Exception):
        return None
    err = translate_error(exc, retry_after=retry_after)
    if err is None and isinstance(exc, asyncpg.DataError | asyncpg.exceptions.OutdatedSchemaCacheError):
        # a bad argument, or a type altered under asyncpg's cache (a migration): the statement failed, not the
        # connection (asyncpg has already dropped the stale cache, so the next read decodes with the new type)
        return DatabaseError()
    if err is None and isinstance(exc, asyncpg.InterfaceError | asyncpg.exceptions.InternalClientError):
        # e.g. "cannot switch to state 12; another operation is in progress" when the server's termination
        # notice arrived while the query was being sent: the connection's state is unknown, so it is lost
        return ConnectionLostError(retry_after=retry_after)
    return err


_POSITIONAL: dict[tuple[type, tuple[str, ...]], bool] = {}


def shape_rows(rows: Rows, into: type[Any] | None) -> list[Any]:
    """``rows`` as ``dict`` per row (``into=None``), or as instances of ``into`` (a msgspec Struct or dataclass
    built from the columns: positionally when its fields are the columns in order, else by keyword).

    Values are passed as the driver returned them, without msgspec's type conversion.
    """
    columns, data = rows
    if into is None:
        return [dict(zip(columns, row, strict=True)) for row in data]
    key = (into, tuple(columns))
    positional = _POSITIONAL.get(key)
    if positional is None:
        fields = getattr(into, "__struct_fields__", None)
        kw_only = getattr(getattr(into, "__struct_config__", None), "kw_only", True)
        positional = _POSITIONAL[key] = fields == key[1] and not kw_only
    if positional:
        return [into(*row) for row in data]
    return [into(**dict(zip(columns, row, strict=True))) for row in data]
