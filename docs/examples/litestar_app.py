"""Litestar integration: the plugin, ``db_session`` by dependency injection, request transactions, route options."""

from __future__ import annotations

from dataclasses import dataclass

from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.params import FromQuery, JSONBody
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import DatabaseConfig, DatabasePlugin, transactional
from litestar_db.litestar import OPT_AUTOCOMMIT, OPT_ISOLATION_LEVEL

from .models import Account, Transfer, User


@dataclass
class UserIn:
    email: str
    name: str


@dataclass
class UserOut:
    id: int
    email: str
    name: str


@dataclass
class TransferIn:
    from_id: int
    to_id: int
    amount: int


# [handlers]
@get("/users/by-email")
async def user_by_email(db_session: NamedDependency[AsyncSession], email: FromQuery[str]) -> UserOut:
    """Read through the request's session; a GET that only reads commits nothing."""
    user = await db_session.scalar(select(User).where(User.email == email))
    if user is None:
        raise NotFoundException(f"no user with email {email!r}")
    return UserOut(id=user.id, email=user.email, name=user.name)


@post("/users")
async def create_user(db_session: NamedDependency[AsyncSession], data: JSONBody[UserIn]) -> UserOut:
    """No commit() and no duplicate check: the request transaction commits on 201, and the unique
    constraint on ``email`` turns a duplicate into 409 Conflict (the flush raises SQLAlchemy's IntegrityError, which
    the plugin answers as ConflictError)."""
    user = User(email=data.email, name=data.name)
    db_session.add(user)
    await db_session.flush()  # sends the INSERT now, so the id is known
    return UserOut(id=user.id, email=user.email, name=user.name)


# [/handlers]


# [opt]
@post("/import", opt={OPT_AUTOCOMMIT: False})
async def import_users(db_session: NamedDependency[AsyncSession], data: JSONBody[list[UserIn]]) -> dict[str, int]:
    """``db_autocommit=False``: this route commits itself (here: every 100 rows)."""
    for index, item in enumerate(data, start=1):
        db_session.add(User(email=item.email, name=item.name))
        if index % 100 == 0:
            await db_session.commit()
    await db_session.commit()
    return {"imported": len(data)}


@get("/accounts/total", opt={OPT_ISOLATION_LEVEL: "SERIALIZABLE"})
async def total_balance(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    """``db_isolation_level``: the request transaction of this route runs at SERIALIZABLE."""
    balances = (await db_session.scalars(select(Account.balance))).all()
    return {"total": sum(balances)}


# [/opt]


# [transactional]
@post("/transfers")
@transactional(retries=5, isolation_level="SERIALIZABLE")
async def transfer(db_session: NamedDependency[AsyncSession], data: JSONBody[TransferIn]) -> dict[str, int]:
    """Each attempt gets a fresh session in its own SERIALIZABLE transaction; a serialization failure or a
    deadlock re-runs the function (full-jitter backoff), and the commit happens before the response."""
    source = await db_session.get_one(Account, data.from_id, with_for_update=True)
    target = await db_session.get_one(Account, data.to_id, with_for_update=True)
    source.balance -= data.amount  # the CHECK constraint turns an overdraft into 422
    target.balance += data.amount
    db_session.add(Transfer(from_account_id=data.from_id, to_account_id=data.to_id, amount=data.amount))
    return {"from_balance": source.balance, "to_balance": target.balance}


# [/transactional]


# [app]
def create_app(config: DatabaseConfig | None = None) -> Litestar:
    """The app: one plugin carries lifespan, DI, request transactions, error handlers and the CLI."""
    return Litestar(
        route_handlers=[user_by_email, create_user, import_users, total_balance, transfer],
        plugins=[DatabasePlugin(config or DatabaseConfig.from_env())],
    )


# [/app]
