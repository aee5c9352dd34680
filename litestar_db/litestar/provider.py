"""The request's session: which one a request gets (plain, lazy-begin, read-only or routing), created on first use.

:class:`RequestSessionProvider` is the ``db_session`` dependency of :class:`~litestar_db.litestar.DatabasePlugin`;
:mod:`litestar_db.litestar.request` commits or rolls back what it hands out. Per-route ``opt`` keys:
``db_autocommit`` and ``db_isolation_level`` (below), ``db_routing`` (:mod:`litestar_db.litestar.guards`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar
from litestar.types import Scope
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from litestar_db._config_checks import ISOLATION_LEVELS, normal_level
from litestar_db._validation import check
from litestar_db.config import RequestConfig
from litestar_db.database import Database
from litestar_db.engines import isolation_level_engine
from litestar_db.litestar.guards import OPT_ROUTING, read_token, routing_mode
from litestar_db.read_only import ReadOnlySession, read_only_sessionmaker
from litestar_db.read_your_writes import ReadYourWrites
from litestar_db.replicas import ReplicaRouter
from litestar_db.routing import RoutingMode, RoutingSession
from litestar_db.session import AsyncSession

__all__ = ("OPT_AUTOCOMMIT", "OPT_ISOLATION_LEVEL", "RequestSessionProvider", "check_route_options")

OPT_AUTOCOMMIT = "db_autocommit"
"""Route ``opt`` key: ``False`` disables the automatic commit for that route."""
OPT_ISOLATION_LEVEL = "db_isolation_level"
"""Route ``opt`` key: isolation level of the request transaction (``"SERIALIZABLE"``, …)."""
STATE_KEY = "_litestar_db_unit"
"""``scope["state"]`` key of the request's :class:`RequestUnit`."""
_ROUTE_KEY = "_litestar_db_read_route"  # the route's read routing, computed once per request


class RequestUnit:
    """Per-request state, kept in the connection's ``scope["state"]`` (not in a ContextVar: Litestar resolves
    sibling dependencies in separate tasks, which would lose a ContextVar set in one of them)."""

    __slots__ = ("autocommit", "done", "session")

    def __init__(self, session: AsyncSession, autocommit: bool) -> None:
        self.session = session
        self.autocommit = autocommit
        self.done = False


# Litestar resolves sibling dependencies, and runs the clean-up of generator dependencies, concurrently: one anyio
# task each (litestar._kwargs.dependencies.resolve_dependency, litestar._kwargs.cleanup.DependencyCleanupGroup),
# named after the function it runs. Two such dependencies sharing ``db_session`` take turns on it.
_LITESTAR_DEPENDENCY_TASKS = ("litestar._kwargs.dependencies.", "litestar._kwargs.cleanup.")


def _in_litestar_dependency_task(task: asyncio.Task[Any] | None) -> bool:
    """Whether ``task`` is one in which Litestar resolves (or cleans up) a dependency."""
    return task is not None and task.get_name().startswith(_LITESTAR_DEPENDENCY_TASKS)


def _route_label(scope: Scope) -> str:
    """How a session's errors name the request's route: ``route GET /report (report)``."""
    return f"route {scope.get('method', '')} {scope['path']} ({scope['route_handler'].handler_name})"


class RequestSessionProvider:
    """Callable dependency provider of the request's :class:`~sqlalchemy.ext.asyncio.AsyncSession`."""

    __slots__ = ("_config", "_database", "_makers")

    def __init__(self, config: RequestConfig) -> None:
        self._config = config
        self._database: Database | None = None
        self._makers: dict[str, async_sessionmaker[AsyncSession]] = {}

    def bind(self, database: Database | None) -> None:
        """Attach the started database (called from the app lifespan), or detach it (``None``)."""
        self._database = database
        self._makers.clear()

    @property
    def bound(self) -> Database | None:
        """The started database, or ``None`` outside the app's lifespan."""
        return self._database

    @property
    def database(self) -> Database:
        """The started database.

        Raises:
            RuntimeError: the app's lifespan has not started the database.
        """
        if self._database is None:
            msg = "litestar_db: the database is not started (is DatabasePlugin registered and the app started?)"
            raise RuntimeError(msg)
        return self._database

    def _maker(self, isolation_level: str | None) -> async_sessionmaker[AsyncSession]:
        db = self.database
        if isolation_level is None:
            return db.sessionmaker
        level = isolation_level.upper()
        maker = self._makers.get(level)
        if maker is None:
            maker = self._makers[level] = db.make_sessionmaker(isolation_level_engine(db.engine, level))
        return maker

    def _read_only_maker(self, isolation_level: str | None) -> async_sessionmaker[AsyncSession]:
        """Sessions of ``read_only`` routes without the read/write split (:mod:`litestar_db.read_only`)."""
        key = f"read_only:{(isolation_level or '').upper()}"
        maker = self._makers.get(key)
        if maker is None:
            db = self.database
            bind = db.engine if isolation_level is None else isolation_level_engine(db.engine, isolation_level.upper())
            maker = self._makers[key] = read_only_sessionmaker(bind)
        return maker

    def joinable(self, scope: Scope) -> bool:
        """Whether ``transaction()`` blocks can join the request's transaction: the request commits it (not a
        ``db_autocommit=False`` route) and it is one (not an ``AUTOCOMMIT`` route)."""
        opt = scope["route_handler"].opt
        level = opt.get(OPT_ISOLATION_LEVEL)
        if level is not None and normal_level(level) == "AUTOCOMMIT":
            return False
        return bool(opt.get(OPT_AUTOCOMMIT, self._config.autocommit))

    def provide_session(self, scope: Scope) -> AsyncSession:
        """The request's session, created on first use.

        Returns:
            The same session for every dependency and the handler of one request.
        """
        state = scope["state"]
        unit: RequestUnit | None = state.get(STATE_KEY)
        if unit is None:
            opt = scope["route_handler"].opt
            autocommit = bool(opt.get(OPT_AUTOCOMMIT, self._config.autocommit))
            db = self.database
            router = db.router
            level = opt.get(OPT_ISOLATION_LEVEL)
            if router is None:
                lazy = db.lazy_sessionmaker
                if routing_mode(scope, opt, self._config.read_only_methods) == "read_only":
                    session = self._read_only_maker(level)()
                    sync = session.sync_session
                    assert isinstance(sync, ReadOnlySession)
                    sync.route_label = _route_label(scope)
                elif lazy is not None and level is None and scope.get("method") in self._config.read_only_methods:
                    session = lazy()
                else:
                    session = self._maker(level)()
            else:
                session = self._routed_session(router, scope, opt)
            session.may_take_turns = _in_litestar_dependency_task
            unit = RequestUnit(session, autocommit)
            state[STATE_KEY] = unit
        return unit.session

    def _route(
        self, router: ReplicaRouter, scope: Scope, opt: dict[str, Any]
    ) -> tuple[RoutingMode, ReadYourWrites | None]:
        """The route's routing mode and the client's verified read-your-writes token (``None`` on the primary)."""
        mode = routing_mode(scope, opt, self._config.read_only_methods)
        if opt.get(OPT_ISOLATION_LEVEL) is not None and mode == "replica":
            # an isolation level is a promise about every read of the request: one snapshot on one server
            mode = "primary"
        if mode == "primary":
            return mode, None
        rw = router.config.read_write
        return mode, router.verify_token(read_token(scope, rw.token_transport, rw.token_name))

    def _routed_session(self, router: ReplicaRouter, scope: Scope, opt: dict[str, Any]) -> AsyncSession:
        mode, token = self._route(router, scope, opt)
        level = opt.get(OPT_ISOLATION_LEVEL)
        maker = None
        if level is not None:
            key = f"routed:{level.upper()}"
            maker = self._makers.get(key)
            if maker is None:
                maker = self._makers[key] = router.maker_for(
                    isolation_level_engine(self.database.engine, level.upper())
                )
        session = router.session(mode, _route_label(scope), token, maker)
        if level is not None and mode == "read_only":
            sync = session.sync_session
            assert isinstance(sync, RoutingSession)
            sync.use_primary_for_reads()  # same promise as above; writes stay refused
        return session

    def read_routing(self, scope: Scope) -> tuple[RoutingMode, ReadYourWrites | None]:
        """Where the request's session-free reads (``Database.fetch_all``, ...) go: what its routing session does.

        Returns:
            ``("primary", None)`` for a ``primary`` route, a route isolation level or once the request's session
            wrote; else the route's mode and the client's verified read-your-writes token (or ``None``).
        """
        unit: RequestUnit | None = scope["state"].get(STATE_KEY)
        if unit is not None:
            sync = unit.session.sync_session
            if isinstance(sync, RoutingSession) and (sync.pinned or sync.routing_mode == "primary"):
                return "primary", None
        cached: tuple[RoutingMode, ReadYourWrites | None] | None = scope["state"].get(_ROUTE_KEY)
        if cached is not None:  # computed once per request: the mode and the verified token do not change
            return cached
        opt = scope["route_handler"].opt
        router = self.database.router
        route: tuple[RoutingMode, ReadYourWrites | None] = ("primary", None)  # also as its session reads the primary
        if router is not None and opt.get(OPT_ISOLATION_LEVEL) is None:
            route = self._route(router, scope, opt)
        scope["state"][_ROUTE_KEY] = route
        return route

    def provide_engine(self) -> AsyncEngine:
        """The primary engine (the same pool the sessions use).

        Returns:
            :class:`~sqlalchemy.ext.asyncio.AsyncEngine`.
        """
        return self.database.engine


def check_route_options(app: Litestar) -> None:
    """Validate every route's litestar_db ``opt`` keys when the app starts, instead of failing each request.

    Raises:
        ConfigurationError: naming the route and the key: an unknown ``db_isolation_level`` (every request of the
            route would answer 500), a ``db_autocommit`` that is not a bool (``"false"`` would commit), an unknown
            ``db_routing``.
    """
    for route in app.routes:
        handlers = getattr(route, "route_handlers", None) or [getattr(route, "route_handler", None)]
        for handler in handlers:
            opt = getattr(handler, "opt", None) or {}
            where = f"route {route.path} ({getattr(handler, 'handler_name', '?')}): opt"
            level = opt.get(OPT_ISOLATION_LEVEL)
            ok = level is None or (isinstance(level, str) and normal_level(level) in ISOLATION_LEVELS)
            check(ok, f"{where}[{OPT_ISOLATION_LEVEL!r}]", level, "unknown isolation level")
            autocommit = opt.get(OPT_AUTOCOMMIT)
            check(
                autocommit is None or isinstance(autocommit, bool), f"{where}[{OPT_AUTOCOMMIT!r}]", autocommit, "bool"
            )
            mode = opt.get(OPT_ROUTING)
            ok = mode is None or mode in ("replica", "read_only", "primary")
            check(ok, f"{where}[{OPT_ROUTING!r}]", mode, "must be replica, read_only or primary")
