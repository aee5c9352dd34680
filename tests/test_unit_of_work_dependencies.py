"""A ``transaction()`` block in a generator dependency (a unit-of-work dependency) commits with the request's status.

Found by a fourth breaker round: Litestar cleans up two or more generator dependencies in concurrent anyio tasks, so
the block was resumed in another task, whose context could not reset the unit the block had set: 500, and the
write lost (a chain of dependencies) or committed under a 500 (next to a sibling).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from litestar_db import Database, DatabaseConfig, DatabasePlugin, transaction


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str]


async def uow() -> AsyncIterator[AsyncSession]:
    async with transaction() as session:
        yield session


async def audit(uow: NamedDependency[AsyncSession]) -> AsyncIterator[str]:
    yield "audit"


async def tracer() -> AsyncIterator[str]:
    yield "trace"


@post("/chain", dependencies={"uow": Provide(uow), "audit": Provide(audit)})
async def chain(uow: NamedDependency[AsyncSession], audit: NamedDependency[str]) -> None:
    uow.add(Entry(label="chain"))


@post("/chain-fails", dependencies={"uow": Provide(uow), "audit": Provide(audit)})
async def chain_fails(uow: NamedDependency[AsyncSession], audit: NamedDependency[str]) -> None:
    uow.add(Entry(label="chain fails"))
    await uow.flush()
    raise HTTPException(status_code=409, detail="refused")


@post("/siblings", dependencies={"uow": Provide(uow), "tracer": Provide(tracer)})
async def siblings(uow: NamedDependency[AsyncSession], tracer: NamedDependency[str]) -> None:
    uow.add(Entry(label="siblings"))


@post("/with-db-session", dependencies={"uow": Provide(uow)})
async def with_db_session(uow: NamedDependency[AsyncSession], db_session: NamedDependency[AsyncSession]) -> None:
    uow.add(Entry(label="with db_session"))


@pytest.mark.parametrize(
    ("path", "status", "saved"),
    [
        ("/chain", 201, ["chain"]),
        ("/chain-fails", 409, []),
        ("/siblings", 201, ["siblings"]),
        ("/with-db-session", 201, ["with db_session"]),
    ],
)
async def test_a_unit_of_work_dependency_commits_with_the_request(
    db_url: str, path: str, status: int, saved: list[str]
) -> None:
    db = Database(DatabaseConfig(url=db_url))
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app = Litestar(
            [chain, chain_fails, siblings, with_db_session], plugins=[DatabasePlugin(DatabaseConfig(url=db_url))]
        )
        async with AsyncTestClient(app) as client:
            response = await client.post(path)
        assert response.status_code == status, response.text
        async with db.engine.connect() as conn:
            assert list((await conn.execute(select(Entry.label))).scalars()) == saved
    finally:
        await db.dispose()
