"""Exception handlers: database errors become the right HTTP status, never a leak of SQL or parameters.

Installed by :class:`~litestar_db.litestar.plugin.DatabasePlugin` for :class:`~litestar_db.errors.DatabaseError`,
SQLAlchemy's and advanced-alchemy's exceptions, connection errors and timeouts (the driver's only); an app's own
handler for any of these classes (or for a status code) wins, because the plugin only fills in keys the app did not
set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from advanced_alchemy.exceptions import AdvancedAlchemyError
from litestar import MediaType, Request, Response
from litestar.exceptions.responses import create_exception_response
from sqlalchemy.exc import MissingGreenlet, SQLAlchemyError

from litestar_db.errors import DatabaseError, translate_error

if TYPE_CHECKING:
    from litestar_db.litestar.plugin import DatabasePlugin

__all__ = ("database_exception_handler", "exception_handlers")

logger = logging.getLogger("litestar_db")


def _body(err: DatabaseError) -> dict[str, Any]:
    body: dict[str, Any] = {"status_code": err.status_code, "detail": err.detail, "error": type(err).__name__}
    if err.constraint:
        body["constraint"] = err.constraint
    return body


def database_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Render ``exc`` (translated to a :class:`DatabaseError` when it is not one) as JSON.

    When the app registered a handler for the resulting status code (``exception_handlers={409: …}``), that handler
    receives the translated error instead. 5xx errors are logged with the original exception (SQL and parameters
    stay in the server log); the client sees only the class name and a client-safe ``detail``. ``Retry-After``
    (seconds) accompanies 503 and retryable 409s.

    Returns:
        The error response.
    """
    plugin = _plugin(request)
    retry_after = plugin.config.health.retry_after_seconds if plugin else 5
    if isinstance(exc, MissingGreenlet):
        err: DatabaseError | None = DatabaseError(
            "Lazy loading outside the session: load the relationship eagerly (selectinload/joinedload) "
            "or read it inside the handler"
        )
    else:
        err = translate_error(exc, retry_after=retry_after)
    if err is None:
        if not isinstance(exc, SQLAlchemyError | AdvancedAlchemyError):
            # e.g. a ConnectionError from an HTTP call of the handler: not ours to describe
            return create_exception_response(request, exc)
        err = DatabaseError()
    if plugin is not None:
        plugin.record_error(err)
    handlers = request.route_handler.resolve_exception_handlers()
    if err is not exc and (own := _handler_for_class(handlers, err)) is not None:
        return own(request, err)  # type: ignore[no-any-return]  # the app's handler for e.g. ConflictError wins
    override = handlers.get(err.status_code)
    if override is not None and override is not database_exception_handler:
        return override(request, err)  # the app's handler for this status wins (e.g. {409: my_conflict_page})
    if err.status_code >= 500:
        logger.error("database error on %s %s", request.method, request.url.path, exc_info=exc)
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return Response(_body(err), status_code=err.status_code, headers=headers, media_type=MediaType.JSON)


def _handler_for_class(handlers: Mapping[Any, Any], err: DatabaseError) -> Any:
    """The app's own handler for the translated class (e.g. ``ConflictError``), if it registered one."""
    for cls in type(err).__mro__:
        handler = handlers.get(cls)
        if handler is database_exception_handler:
            return None
        if handler is not None:
            return handler
    return None


def _plugin(request: Request[Any, Any, Any]) -> DatabasePlugin | None:
    from litestar_db.litestar.plugin import DatabasePlugin

    try:
        return request.app.plugins.get(DatabasePlugin)
    except KeyError:  # pragma: no cover - handler used without the plugin
        return None


def exception_handlers() -> dict[type[Exception], Any]:
    """The handlers the plugin installs, keyed by exception class.

    Returns:
        ``{DatabaseError: …, SQLAlchemyError: …, AdvancedAlchemyError: …, ConnectionError: …, TimeoutError: …}``.
    """
    # TimeoutError: asyncpg's per-call timeout (a server that stopped answering); any other one is passed to
    # Litestar's default handling unchanged, like a ConnectionError that is not the database's
    return dict.fromkeys(
        (DatabaseError, AdvancedAlchemyError, SQLAlchemyError, ConnectionError, TimeoutError),
        database_exception_handler,
    )
