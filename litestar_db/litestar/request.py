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

import asyncio
import functools
import logging
from contextvars import Token

from litestar.types import ASGIApp, HTTPResponseStartEvent, Message, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

from litestar_db.config import RequestConfig
from litestar_db.lazy_begin import LazyBeginSession
from litestar_db.litestar.guards import token_header
from litestar_db.litestar.provider import STATE_KEY, RequestSessionProvider, RequestUnit
from litestar_db.replicas import ReadRouting, ReplicaRouter, read_routing
from litestar_db.routing import RoutingSession
from litestar_db.session import AsyncSession
from litestar_db.transactions import commit, commit_observer, current_unit

__all__ = ("RequestTransactionMiddleware",)

logger = logging.getLogger("litestar_db")
_HTTP = "http"
_WEBSOCKET = "websocket"


async def _finish(unit: RequestUnit, status: int | None, commit_on_redirect: bool, retry_after: int) -> bool:
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
            unit: RequestUnit | None = scope["state"].get(STATE_KEY)
            if unit is not None and not unit.done:
                await _finish(unit, None, self._commit_on_redirect, self._retry_after)
            raise
        finally:
            if routing_token is not None:
                read_routing.reset(routing_token)
        unit = scope["state"].get(STATE_KEY)
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
        start = _ResponseStart(mw, scope, send, split, observed)
        # transaction() in the handler (its task only) joins the request transaction as a SAVEPOINT
        unit_token = current_unit.set((start.request_session, asyncio.current_task(), True)) if provider else None
        try:
            await self._app(scope, receive, start)
        finally:
            if unit_token is not None:
                current_unit.reset(unit_token)
            if observer_token is not None:
                commit_observer.reset(observer_token)
            if routing_token is not None:
                read_routing.reset(routing_token)
            unit: RequestUnit | None = scope["state"].get(STATE_KEY)
            if unit is not None and not unit.done:
                await _finish(unit, None, mw._commit_on_redirect, mw._retry_after)


class _ResponseStart:
    """The ``send`` the route sees: finishes the request transaction on ``http.response.start``, then forwards.

    A slotted object rather than a closure: one allocation per request instead of a function and its cells.
    """

    __slots__ = ("_middleware", "_observed", "_scope", "_send", "_split", "_started")

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
        self._started = False

    def request_session(self) -> AsyncSession | None:
        """The request's session (created on first use), for ``transaction()`` blocks joining it; ``None`` once the
        response started (its transaction is over: a background task or a streamed body runs on its own)."""
        if self._started:
            return None
        provider = self._middleware._provider
        assert provider is not None
        if not provider.joinable(self._scope):
            return None  # db_autocommit=False (the handler commits its own units) or an AUTOCOMMIT route
        return provider.provide_session(self._scope)

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._started = True
            scope = self._scope
            wrote = False
            observed = self._observed
            committed_elsewhere = observed is not None and observed[0]  # before the request session commits
            unit: RequestUnit | None = scope["state"].get(STATE_KEY)
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
