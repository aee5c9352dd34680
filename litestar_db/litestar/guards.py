"""Route-level control of read/write routing: ``read_only`` and ``primary`` guards and ``opt`` markers.

Three ways to say the same thing, pick one per route:

* guards: ``@get("/report", guards=[read_only])``, ``@get("/receipt/{id:int}", guards=[primary])``;
* ``opt`` markers: ``@get("/report", opt=READ_ONLY)`` or ``opt={"db_routing": "primary"}``;
* nothing: methods in :attr:`~litestar_db.config.RequestConfig.read_only_methods` (GET, HEAD, OPTIONS) read from
  replicas and send writes to the primary; every other method uses the primary only (Rails' automatic role
  switching does the same).

Modes: ``replica`` (reads on a replica, writes on the primary, then the whole request stays there), ``read_only``
(reads on a replica; a write raises :class:`~litestar_db.errors.ReadOnlyError` naming the route, before any SQL
is sent) and ``primary`` (everything on the primary, e.g. a page shown right after a payment).

The guards record the mode in the connection's ``scope["state"]`` (never in the handler's shared ``opt``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from litestar_db.routing import RoutingMode

__all__ = (
    "OPT_ROUTING",
    "PRIMARY",
    "READ_ONLY",
    "primary",
    "read_only",
    "read_token",
    "routing_mode",
    "token_header",
)

OPT_ROUTING = "db_routing"
"""Route ``opt`` key: ``"read_only"``, ``"primary"`` or ``"replica"``."""
READ_ONLY: dict[str, Any] = {OPT_ROUTING: "read_only"}
"""``opt`` marker of a read-only route (copy it into your ``opt``; it is never mutated)."""
PRIMARY: dict[str, Any] = {OPT_ROUTING: "primary"}
"""``opt`` marker of a route that always uses the primary."""
_STATE_KEY = "litestar_db.routing"
_MODES = frozenset({"replica", "read_only", "primary"})


def read_only(connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler) -> None:
    """Guard: the route only reads; a write raises :class:`~litestar_db.errors.ReadOnlyError` (HTTP 500)."""
    connection.scope["state"][_STATE_KEY] = "read_only"


def primary(connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler) -> None:
    """Guard: every statement of the route goes to the primary (no replica, no lag)."""
    connection.scope["state"][_STATE_KEY] = "primary"


def routing_mode(scope: Scope, opt: Mapping[str, Any], read_only_methods: tuple[str, ...]) -> RoutingMode:
    """The mode of a request: a guard's choice, else the route's ``opt``, else by HTTP method.

    Raises:
        ValueError: an unknown ``db_routing`` value in ``opt``.
    """
    mode = scope["state"].get(_STATE_KEY) or opt.get(OPT_ROUTING)
    if mode is None:
        return "replica" if scope.get("method", "GET") in read_only_methods else "primary"
    if mode not in _MODES:
        msg = f"opt[{OPT_ROUTING!r}]={mode!r}: expected one of {sorted(_MODES)}"
        raise ValueError(msg)
    return mode  # type: ignore[no-any-return]


def read_token(scope: Scope, transport: str, name: str) -> str | None:
    """The raw read-your-writes token the client sent (cookie or header ``name``), unverified."""
    headers = scope.get("headers", ())
    if transport == "header":
        key = name.lower().encode("latin-1")
        return next((v.decode("latin-1") for k, v in headers if k == key), None)
    prefix = f"{name}="
    for key, value in headers:
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                part = part.strip()
                if part.startswith(prefix):
                    return part[len(prefix) :]
    return None


def token_header(scope: Scope, transport: str, name: str, token: str, lifetime: float) -> tuple[bytes, bytes]:
    """The response header carrying ``token``: ``Set-Cookie`` (HttpOnly, SameSite=Lax, Secure on HTTPS,
    ``Max-Age`` = lifetime) or a plain header ``name`` the client echoes back.

    Returns:
        ``(name, value)`` as bytes for an ASGI ``http.response.start`` message.
    """
    if transport == "header":
        return name.lower().encode("latin-1"), token.encode("latin-1")
    from litestar.datastructures import Cookie

    cookie = Cookie(
        key=name,
        value=token,
        max_age=max(1, int(lifetime + 0.999)),
        httponly=True,
        samesite="lax",
        secure=scope.get("scheme") == "https",
    )
    return cookie.to_encoded_header()
