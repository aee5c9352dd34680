"""Errors: catching the translated classes, and overriding the HTTP rendering of one of them."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, MediaType, Request, Response

from litestar_db import ConflictError, DatabaseConfig, DatabasePlugin, DatabaseUnavailableError, transaction
from litestar_db.errors import StatementTimeoutError

from .models import User


# [catch]
async def add_user(email: str) -> str:
    try:
        async with transaction() as db:
            db.add(User(email=email, name="new"))
    except ConflictError as exc:
        return f"taken ({exc.sqlstate}, constraint {exc.constraint})"
    except DatabaseUnavailableError as exc:
        return f"try again in {exc.retry_after} s"
    except StatementTimeoutError:
        return "too slow"
    return "created"


# [/catch]


# [override]
def conflict_as_problem(request: Request[Any, Any, Any], exc: ConflictError) -> Response[dict[str, Any]]:
    """Your own handler for one class wins over the plugin's (the plugin only fills in what is missing)."""
    return Response(
        {"type": "about:blank", "title": "Conflict", "status": 409, "detail": exc.detail},
        status_code=409,
        media_type=MediaType.JSON,
    )


def create_app(config: DatabaseConfig) -> Litestar:
    return Litestar(
        route_handlers=[],
        plugins=[DatabasePlugin(config)],
        exception_handlers={ConflictError: conflict_as_problem},
    )


# [/override]
