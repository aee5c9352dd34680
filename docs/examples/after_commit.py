"""Side effects after the commit: a Litestar background task runs only once the request transaction committed."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Response, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import transaction

from .models import User

SENT: list[str] = []
"""Stands in for a mail server in this example."""


async def send_welcome_mail(email: str) -> None:
    SENT.append(email)


@dataclass
class SignUp:
    email: str
    name: str


# [background]
@post("/signup")
async def sign_up(db_session: NamedDependency[AsyncSession], data: JSONBody[SignUp]) -> Response[dict[str, str]]:
    """The background task runs after the response was sent, which is after the COMMIT; when the COMMIT
    fails the client gets the error response instead, and the task never runs."""
    db_session.add(User(email=data.email, name=data.name))
    return Response({"email": data.email}, status_code=201, background=BackgroundTask(send_welcome_mail, data.email))


# [/background]


# [outside]
async def sign_up_from_a_worker(email: str, name: str) -> None:
    """Outside a request: do the side effect after the ``transaction()`` block, which has committed by then."""
    async with transaction() as db:
        db.add(User(email=email, name=name))
    await send_welcome_mail(email)


# [/outside]
