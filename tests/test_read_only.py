"""``read_only`` routes refuse writes without the read/write split too (SQLite, and PostgreSQL without replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from litestar_db import Database, DatabaseConfig, DatabasePlugin
from litestar_db.litestar.guards import READ_ONLY, read_only


class Base(DeclarativeBase):
    pass


class Entry(Base):
    __tablename__ = "entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]


@post("/guarded-insert", guards=[read_only])
async def guarded_insert(db_session: NamedDependency[AsyncSession]) -> None:
    db_session.add(Entry(title="sneaky"))
    await db_session.flush()


@get("/marked-update", opt=READ_ONLY)
async def marked_update(db_session: NamedDependency[AsyncSession]) -> None:
    await db_session.execute(update(Entry).values(title="changed"))


@get("/marked-read", opt=READ_ONLY)
async def marked_read(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    titles = list(await db_session.scalars(select(Entry.title).order_by(Entry.id)))
    return {"titles": titles}


@get("/pending-at-commit", guards=[read_only])
async def pending_at_commit(db_session: NamedDependency[AsyncSession]) -> None:
    """Added and never flushed: the request's commit would write it."""
    db_session.add(Entry(title="left pending"))


@get("/calls-a-writing-function", guards=[read_only], opt={"db_isolation_level": "REPEATABLE READ"})
async def calls_a_writing_function(db_session: NamedDependency[AsyncSession]) -> Any:
    return await db_session.scalar(select(func.add_entry("from a function")))


@get("/transaction-read-only", guards=[read_only])
async def transaction_read_only(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    return {"read_only": await db_session.scalar(text("SHOW transaction_read_only"))}


ROUTES = [guarded_insert, marked_update, marked_read, pending_at_commit, calls_a_writing_function]


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(DatabaseConfig(url=db_url))
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(Entry.__table__.insert().values(id=1, title="seed"))
    yield db
    await db.dispose()


async def _titles(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(select(Entry.title).order_by(Entry.id))).scalars())


@pytest.mark.parametrize(
    ("method", "path", "what"),
    [
        ("POST", "/guarded-insert", "flush of pending changes"),
        ("GET", "/marked-update", "Update"),
        ("GET", "/pending-at-commit", "flush of pending changes"),
    ],
)
async def test_a_write_on_a_read_only_route_is_refused_without_replicas(
    database: Database, db_url: str, method: str, path: str, what: str
) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        response = await client.request(method, path)
        read = await client.get("/marked-read")
    assert response.status_code == 500
    assert response.json()["error"] == "ReadOnlyError"
    assert f"{method} {path}" in response.json()["detail"]
    assert what in response.json()["detail"]
    assert read.status_code == 200
    assert read.json() == {"titles": ["seed"]}
    assert await _titles(database) == ["seed"]


@pytest.mark.postgres
async def test_postgresql_refuses_a_write_the_statement_check_cannot_see(pg_url: str) -> None:
    """A function of the application's own that writes: the route's READ ONLY transaction stops it (25006)."""
    db = Database(DatabaseConfig(url=pg_url))
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(
            text(
                "CREATE FUNCTION add_entry(t text) RETURNS int LANGUAGE sql AS "
                "$$ INSERT INTO entry (title) VALUES (t) RETURNING id $$"
            )
        )
    app = Litestar([*ROUTES, transaction_read_only], plugins=[DatabasePlugin(DatabaseConfig(url=pg_url))])
    try:
        async with AsyncTestClient(app) as client:
            response = await client.get("/calls-a-writing-function")
            shown = await client.get("/transaction-read-only")
        assert response.status_code == 500
        assert response.json()["error"] == "ReadOnlyError"
        assert shown.json() == {"read_only": "on"}
        assert await _titles(db) == []
    finally:
        await db.dispose()
