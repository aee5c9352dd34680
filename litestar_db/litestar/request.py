"""The request transaction: one session per request, committed before the response starts.

Rules (Django's ``ATOMIC_REQUESTS``, adapted to HTTP statuses):

* the session is created lazily, the first time a handler or dependency asks for ``db_session``;
* when the response starts (``http.response.start``) the session commits if the status is 2xx (3xx too with
  ``commit_on_redirect``) and rolls back otherwise; then it is closed, so the connection is back in the pool
  before any streaming body is produced;
* an exception that escapes without a response rolls back;
* a websocket handler's session commits when the handler returns and rolls back when it raises;
* a failing COMMIT (e.g. a deferred unique violation) replaces the response: the translated error is raised to
  Litestar's exception handling, so the client gets 409/503/… and never a 2xx for unsaved data.

The decision is taken at ``http.response.start`` rather than in a generator dependency's cleanup because only
there is the status known for every kind of response (returned ``Response`` objects, exception handlers,
streams), and because a generator cleanup failure is turned into a 500 when several generator dependencies run.

Per-route ``opt`` keys: ``db_autocommit`` (``False`` → the handler commits itself; leftovers are rolled back),
``db_isolation_level`` (e.g. ``"SERIALIZABLE"``), ``db_routing`` (see :mod:`litestar_db.litestar.guards`).

With the read/write split on, the session is a routing session (reads on a replica where the route allows it),
a request carrying a valid read-your-writes token reads from the primary until the replica has replayed the
token's WAL position, and a successful response of a request that wrote carries a fresh token.
"""

from __future__ import annotations

import functools
import logging
from contextvars import Token
from typing import Any

from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from litestar_db.config import RequestConfig
from litestar_db.database import Database
from litestar_db.engines import isolation_level_engine
from litestar_db.lazy_begin import LazyBeginSession
from litestar_db.litestar.guards import read_token, routing_mode, token_header
from litestar_db.read_only import ReadOnlySession, read_only_sessionmaker
from litestar_db.read_your_writes import ReadYourWrites
from litestar_db.replicas import ReadRouting, ReplicaRouter, read_routing
from litestar_db.routing import RoutingMode, RoutingSession
from litestar_db.session import AsyncSession
from litestar_db.transactions import commit, commit_observer

__all__ = (
    "OPT_AUTOCOMMIT",
    "OPT_ISOLATION_LEVEL",
    "RequestSessionProvider",
    "RequestTransactionMiddleware",
)

logger = logging.getLogger("litestar_db")
OPT_AUTOCOMMIT = "db_autocommit"
"""Route ``opt`` key: ``False`` disables the automatic commit for that route."""
OPT_ISOLATION_LEVEL = "db_isolation_level"
"""Route ``opt`` key: isolation level of the request transaction (``"SERIALIZABLE"``, …)."""
_STATE_KEY = "_litestar_db_unit"
_ROUTE_KEY = "_litestar_db_read_route"  # the route's read routing, computed once per request
_HTTP = "http"
_WEBSOCKET = "websocket"


class _RequestUnit:
    """Per-request state, kept in the connection's ``scope["state"]`` (not in a ContextVar: Litestar resolves
    sibling dependencies in separate tasks, which would lose a ContextVar set in one of them)."""

    __slots__ = ("autocommit", "done", "session")

    def __init__(self, session: AsyncSession, autocommit: bool) -> None:
        self.session = session
        self.autocommit = autocommit
        self.done = False


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

    def provide_session(self, scope: Scope) -> AsyncSession:
        """The request's session, created on first use.

        Returns:
            The same session for every dependency and the handler of one request.
        """
        state = scope["state"]
        unit: _RequestUnit | None = state.get(_STATE_KEY)
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
            unit = _RequestUnit(session, autocommit)
            state[_STATE_KEY] = unit
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
        unit: _RequestUnit | None = scope["state"].get(_STATE_KEY)
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


async def _finish(unit: _RequestUnit, status: int | None, commit_on_redirect: bool, retry_after: int) -> bool:
    """Commit or roll back, then close; ``status is None`` means no response (an exception escaped).

    Returns:
        Whether the request's routing session committed a write (with the read/write split on, a read-your-writes
        token is due).
    """
    unit.done = True
    session = unit.session
    try:
        success = status is not None and (200 <= status < 300 or (commit_on_redirect and 300 <= status < 400))
        sync = session.sync_session
        if isinstance(sync, LazyBeginSession) and sync.nothing_to_commit:
            pass  # only autocommit reads ran: closing the session is all there is to do
        elif unit.autocommit and success and session.in_transaction():
            await commit(session, retry_after)
        elif not unit.autocommit and (session.new or session.dirty or session.deleted):
            logger.warning("rolling back uncommitted changes left by a route with db_autocommit=False")
        return success and isinstance(sync, RoutingSession) and sync.wrote
    finally:
        try:
            await session.close()
        except Exception:
            logger.warning("closing the request session failed; invalidating its connection", exc_info=True)
            await session.invalidate()


async def _with_token(message: Message, scope: Scope, router: ReplicaRouter) -> Message:
    """``message`` plus the read-your-writes token header (the primary's WAL position after the commit)."""
    rw = router.config.read_write
    token, lifetime = await router.issue_token()
    header = token_header(scope, rw.token_transport, rw.token_name, token, lifetime)
    start: HTTPResponseStartEvent = message  # type: ignore[assignment]
    return {**start, "headers": [*start.get("headers", ()), header]}


class RequestTransactionMiddleware:
    """Commits or rolls back the request session at ``http.response.start``; see the module docstring.

    A middleware factory in Litestar's ``Callable[[ASGIApp], ASGIApp]`` form rather than an ``ASGIMiddleware``:
    it runs on every request, and Litestar's ``ASGIMiddleware`` wrapper builds a closure and checks its exclusion
    rules per request, which this middleware never uses.
    """

    __slots__ = ("_commit_on_redirect", "_provider", "_retry_after")

    def __init__(self, config: RequestConfig, retry_after: int, provider: RequestSessionProvider | None = None) -> None:
        self._commit_on_redirect = config.commit_on_redirect
        self._retry_after = retry_after
        self._provider = provider

    def __call__(self, app: ASGIApp) -> ASGIApp:
        """Wrap a route's ASGI app (called by Litestar when it builds the route's middleware stack).

        Returns:
            The wrapped ASGI app.
        """
        return _RequestTransactionApp(app, self)

    def _follow_routing(self, scope: Scope) -> Token[ReadRouting | None] | None:
        """Make the connection's session-free reads follow its routing (primary routes, read-your-writes tokens, a
        session that wrote) when the read/write split is on; the token to reset, or ``None``."""
        provider = self._provider
        db = provider.bound if provider is not None else None
        if provider is None or db is None or db.router is None:
            return None
        return read_routing.set(functools.partial(provider.read_routing, scope))

    async def _handle_websocket(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """A websocket handler's session commits when the handler returns and rolls back when it raises; either
        way it is closed, so its connection goes back to the pool. Its session-free reads follow its routing."""
        routing_token = self._follow_routing(scope)
        try:
            await next_app(scope, receive, send)
        except BaseException:
            unit: _RequestUnit | None = scope["state"].get(_STATE_KEY)
            if unit is not None and not unit.done:
                await _finish(unit, None, self._commit_on_redirect, self._retry_after)
            raise
        finally:
            if routing_token is not None:
                read_routing.reset(routing_token)
        unit = scope["state"].get(_STATE_KEY)
        if unit is not None and not unit.done:
            await _finish(unit, 200, self._commit_on_redirect, self._retry_after)


class _RequestTransactionApp:
    """One route's ASGI app wrapped by :class:`RequestTransactionMiddleware` (HTTP and websocket scopes only)."""

    __slots__ = ("_app", "_middleware")

    def __init__(self, app: ASGIApp, middleware: RequestTransactionMiddleware) -> None:
        self._app = app
        self._middleware = middleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the route, finishing the request transaction when its response starts.

        Raises:
            DatabaseError: the commit failed; Litestar's exception handlers turn it into the error response.
        """
        kind = scope["type"]
        if kind != _HTTP:
            if kind == _WEBSOCKET:
                await self._middleware._handle_websocket(scope, receive, send, self._app)
            else:
                await self._app(scope, receive, send)
            return
        mw = self._middleware
        provider = mw._provider
        db = provider.bound if provider is not None else None
        split = db.router if db is not None else None
        # With the read/write split, commits made outside the request session (transactional(), transaction())
        # also earn the client a read-your-writes token: observe them in this task.
        observed: list[bool] | None = [False] if split is not None else None
        observer_token = commit_observer.set(observed) if observed is not None else None
        routing_token = mw._follow_routing(scope) if split is not None else None
        try:
            await self._app(scope, receive, _ResponseStart(mw, scope, send, split, observed))
        finally:
            if observer_token is not None:
                commit_observer.reset(observer_token)
            if routing_token is not None:
                read_routing.reset(routing_token)
            unit: _RequestUnit | None = scope["state"].get(_STATE_KEY)
            if unit is not None and not unit.done:
                await _finish(unit, None, mw._commit_on_redirect, mw._retry_after)


class _ResponseStart:
    """The ``send`` the route sees: finishes the request transaction on ``http.response.start``, then forwards.

    A slotted object rather than a closure: one allocation per request instead of a function and its cells.
    """

    __slots__ = ("_middleware", "_observed", "_scope", "_send", "_split")

    def __init__(
        self,
        middleware: RequestTransactionMiddleware,
        scope: Scope,
        send: Send,
        split: ReplicaRouter | None,
        observed: list[bool] | None,
    ) -> None:
        self._middleware = middleware
        self._scope = scope
        self._send = send
        self._split = split
        self._observed = observed

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            scope = self._scope
            wrote = False
            observed = self._observed
            committed_elsewhere = observed is not None and observed[0]  # before the request session commits
            unit: _RequestUnit | None = scope["state"].get(_STATE_KEY)
            if unit is not None and not unit.done:
                mw = self._middleware
                try:
                    wrote = await _finish(unit, message["status"], mw._commit_on_redirect, mw._retry_after)
                except Exception:
                    # Nothing reached the client. Raising through the response's own ``send`` aborts it (its
                    # background tasks, meant to follow a commit, never run) and lets Litestar's exception
                    # handling render the translated error instead.
                    connection_state = ScopeState.from_scope(scope)
                    connection_state.response_started = False
                    # Litestar's response cache already recorded this response's start message; marking the
                    # connection as served-from-cache stops it storing that (or the error) for later requests.
                    connection_state.is_cached = True
                    raise
            split = self._split
            if split is not None and (wrote or (committed_elsewhere and message["status"] < 400)):
                message = await _with_token(message, scope, split)
        await self._send(message)
