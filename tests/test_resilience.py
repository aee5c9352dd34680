"""Failure cases through a real uvicorn server (C02, C03, C05, pool exhaustion, cancellation)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from advanced_alchemy.extensions.litestar import SQLAlchemyDTO
from litestar import Litestar, get, post
from litestar.di import NamedDependency, Provide
from litestar.dto import DTOConfig
from litestar.params import FromPath
from litestar.response import Stream
from sqlalchemy import ForeignKey, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from litestar_db import ConnectionConfig, DatabaseConfig, DatabasePlugin, PoolConfig, get_database
from tests.conftest import _plain, pg_execute
from tests.server import serve

pytestmark = pytest.mark.postgres


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "author"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))
    created: Mapped[str] = mapped_column(server_default=func.now().cast(String))
    books: Mapped[list[Book]] = relationship(back_populates="author")


class Book(Base):
    __tablename__ = "book"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


@get("/stream")
async def slow_stream(db_session: NamedDependency[AsyncSession]) -> Stream:
    """C02: queries, then streams for a while without touching the database."""
    await db_session.execute(text("SELECT 1"))

    async def body() -> AsyncIterator[str]:
        for i in range(20):
            yield f"tick {i}\n"
            await asyncio.sleep(0.1)

    return Stream(body())


@get("/plain")
async def plain(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    return {"one": (await db_session.execute(text("SELECT 1"))).scalar_one()}


@get("/hold")
async def hold(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    await db_session.execute(text("SELECT pg_sleep(1.5)"))
    return {"held": True}


@get("/gather")
async def gather(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    """C03: one session used by two concurrent tasks."""
    await asyncio.gather(db_session.execute(text("SELECT pg_sleep(0.2)")), db_session.execute(text("SELECT 2")))
    return {"n": 2}


async def load_author(db_session: NamedDependency[AsyncSession]) -> int:
    """A dependency that queries (and inserts): its sibling below runs at the same time, in another task."""
    await db_session.execute(text("SELECT pg_sleep(0.2)"))
    author = Author(name="from a dependency")
    db_session.add(author)
    await db_session.flush()
    return author.id


async def count_authors(db_session: NamedDependency[AsyncSession]) -> int:
    return (await db_session.execute(text("SELECT count(*) FROM author"))).scalar_one()


async def audit(db_session: NamedDependency[AsyncSession]) -> AsyncIterator[None]:
    """Two generator dependencies whose clean-ups Litestar runs concurrently, each with a statement."""
    yield
    await db_session.execute(text("INSERT INTO author (name) VALUES ('audit') RETURNING pg_sleep(0.1)"))


async def audit_again(db_session: NamedDependency[AsyncSession]) -> AsyncIterator[None]:
    async for _ in audit(db_session):
        yield


@get(
    "/siblings",
    dependencies={
        "author_id": Provide(load_author),
        "count": Provide(count_authors),
        "audit_a": Provide(audit),
        "audit_b": Provide(audit_again),
    },
)
async def siblings(
    author_id: NamedDependency[int],
    count: NamedDependency[int],
    audit_a: NamedDependency[None],
    audit_b: NamedDependency[None],
) -> dict[str, int]:
    return {"author_id": author_id, "count": count}


async def stream_authors(db_session: NamedDependency[AsyncSession]) -> list[str]:
    """A dependency reading a streamed result one row per fetch (a server-side cursor that uses the connection
    between calls), while its sibling runs a slow query."""
    statement = select(Author.name).order_by(Author.id).execution_options(yield_per=1)
    result = await db_session.stream_scalars(statement)
    await asyncio.sleep(0.1)  # the sibling's query is running now
    return [name async for name in result]


async def slow_count(db_session: NamedDependency[AsyncSession]) -> int:
    await asyncio.sleep(0.05)  # after the stream opened
    return (await db_session.execute(text("SELECT count(*) FROM author, pg_sleep(0.3)"))).scalar_one()


@get("/siblings-streaming", dependencies={"names": Provide(stream_authors), "count": Provide(slow_count)})
async def siblings_streaming(names: NamedDependency[list[str]], count: NamedDependency[int]) -> dict[str, Any]:
    return {"names": names, "count": count}


FROZEN: list[int] = []


@get("/freeze-backend")
async def freeze_backend(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    """The server stops answering on this connection mid-request (SIGSTOP of its backend: a hung host or a network
    blackhole, where no server-side timeout ever fires)."""
    pid = (await db_session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    os.kill(pid, signal.SIGSTOP)
    FROZEN.append(pid)
    await db_session.execute(text("SELECT 1"))
    return {"answered": True}


@get("/cancelled")
async def cancelled(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    """A query abandoned mid-flight (timeout/cancellation inside the handler)."""
    async with asyncio.timeout(0.2):
        await db_session.execute(text("SELECT pg_sleep(3)"))
    return {"done": True}


class AuthorDTO(SQLAlchemyDTO[Author]):
    config = DTOConfig(exclude={"books"})


@post("/authors", status_code=201, return_dto=AuthorDTO)
async def create_author(db_session: NamedDependency[AsyncSession]) -> Author:
    """C05: the ORM object is returned and serialised by Litestar."""
    author = Author(name="Ursula")
    db_session.add(author)
    await db_session.flush()
    return author


@get("/authors/{author_id:int}/lazy")
async def lazy_books(author_id: FromPath[int], db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    author = await db_session.get_one(Author, author_id)
    return {"books": len(author.books)}  # lazy relationship touched outside an awaited call


@get("/authors/{author_id:int}", return_dto=SQLAlchemyDTO[Author])
async def author_with_books(author_id: FromPath[int], db_session: NamedDependency[AsyncSession]) -> Author:
    return await db_session.get_one(Author, author_id)  # books not loaded: the DTO touches them while serialising


HANDLERS = [slow_stream, plain, hold, gather, siblings, freeze_backend, cancelled]
HANDLERS += [create_author, lazy_books, author_with_books, siblings_streaming]


@pytest.fixture
async def schema(pg_url: str) -> str:
    conn = await asyncpg.connect(_plain(pg_url))
    try:
        await conn.execute(
            "CREATE TABLE author (id serial PRIMARY KEY, name varchar(40) NOT NULL,"
            " created varchar DEFAULT now()::text);"
            "CREATE TABLE book (id serial PRIMARY KEY, author_id int REFERENCES author(id));"
        )
    finally:
        await conn.close()
    return pg_url


def app_for(url: str, command_timeout: float | None = None, **pool: float) -> Litestar:
    config = DatabaseConfig(
        url=url,
        pool=PoolConfig(**pool) if pool else PoolConfig(),  # type: ignore[arg-type]
        connection=ConnectionConfig(command_timeout=command_timeout),
    )
    return Litestar(HANDLERS, plugins=[DatabasePlugin(config)])


async def app_connections(url: str, state_like: str) -> int:
    rows = await pg_execute(
        url,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'litestar_db' AND state LIKE $1",
        state_like,
    )
    return int(rows[0]["n"])


async def test_c02_streams_do_not_hold_pooled_connections(schema: str) -> None:
    async with serve(app_for(schema, min_size=2, max_size=2, timeout=5)) as base, httpx.AsyncClient(base_url=base) as c:

        async def read_stream() -> str:
            response = await c.get("/stream", timeout=10)
            return response.text

        streams = [asyncio.create_task(read_stream()) for _ in range(2)]
        await asyncio.sleep(0.4)  # both streams are open and mid-body
        started = time.monotonic()
        third = await c.get("/plain", timeout=1)
        assert third.status_code == 200
        assert time.monotonic() - started < 1
        assert await app_connections(schema, "idle in transaction%") == 0
        bodies = await asyncio.gather(*streams)
        assert all(body.endswith("tick 19\n") for body in bodies)


async def test_c03_concurrent_session_use_is_named_and_cleaned_up(schema: str) -> None:
    async with serve(app_for(schema, min_size=1, max_size=2)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.get("/gather")
        assert response.status_code == 500
        assert response.json()["error"] == "ConcurrentSessionUseError"
        assert "separate session" in response.json()["detail"]
        assert (await c.get("/plain")).status_code == 200
        stats = await c.get("/plain")
        assert stats.status_code == 200
        pool = (await get_database().get_stats()).engines[0].pool
        assert pool.checked_out == 0
        assert await app_connections(schema, "idle in transaction%") == 0


async def test_sibling_dependencies_sharing_the_session_take_turns(schema: str) -> None:
    """Litestar resolves sibling dependencies (and runs generator clean-ups) in concurrent tasks: their calls on the
    request session wait for each other instead of failing the request; everything commits as one transaction."""
    async with serve(app_for(schema, min_size=1, max_size=2)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.get("/siblings")
        assert response.status_code == 200, response.text
        assert response.json()["count"] in (0, 1)  # either order: the two dependencies ran one call at a time
        names = await pg_execute(schema, "SELECT name FROM author ORDER BY id")
        assert sorted(row["name"] for row in names) == ["audit", "audit", "from a dependency"]
        assert (await get_database().get_stats()).engines[0].pool.checked_out == 0
        assert await app_connections(schema, "idle in transaction%") == 0


async def test_a_server_that_stops_answering_gets_503_not_a_hang(schema: str) -> None:
    """Found by a breaker: with the backend frozen, the request waited forever (statement_timeout runs on the
    server). connection.command_timeout (asyncpg's per-call timeout) bounds it; the connection is discarded."""
    app = app_for(schema, command_timeout=1.0, min_size=1, max_size=2)
    try:
        async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as c:
            started = time.monotonic()
            response = await c.get("/freeze-backend")
            waited = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "ConnectionLostError"
            assert response.headers["retry-after"] == "5"
            assert waited < 10
            assert (await c.get("/plain")).status_code == 200
    finally:
        for pid in FROZEN:
            os.kill(pid, signal.SIGCONT)
        await pg_execute(schema, "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", FROZEN)
        FROZEN.clear()


async def test_a_streaming_dependency_takes_turns_fetch_by_fetch(schema: str) -> None:
    """Each fetch from a streamed result is a call on the session, so it waits for a sibling's running query instead
    of failing with asyncpg's "another operation is in progress" as a bare 500 (second and third breaker rounds)."""
    await pg_execute(schema, "INSERT INTO author (name) SELECT 'a' || g FROM generate_series(1, 3000) g")
    async with serve(app_for(schema, min_size=1, max_size=2)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.get("/siblings-streaming")
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["count"], len(body["names"]), body["names"][:2]) == (3000, 3000, ["a1", "a2"])
        assert await app_connections(schema, "idle in transaction%") == 0


async def test_pool_exhaustion_answers_503_at_the_deadline(schema: str) -> None:
    async with (
        serve(app_for(schema, min_size=1, max_size=1, timeout=0.5)) as base,
        httpx.AsyncClient(base_url=base) as c,
    ):
        holder = asyncio.create_task(c.get("/hold", timeout=10))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        response = await c.get("/plain", timeout=10)
        waited = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "PoolTimeoutError"
        assert 0.4 < waited < 1.2  # answered at pool.timeout, nothing hangs
        assert (await holder).status_code == 200
        assert (await get_database().get_stats()).checkout_timeouts == 1
        assert (await c.get("/plain")).status_code == 200


async def test_cancelled_query_does_not_leak_the_connection(schema: str) -> None:
    async with serve(app_for(schema, min_size=1, max_size=1, timeout=2)) as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.get("/cancelled")
        assert response.status_code == 500
        assert (await c.get("/plain")).status_code == 200  # the only pooled connection came back usable
        assert (await get_database().get_stats()).engines[0].pool.checked_out == 0
        await asyncio.sleep(0.2)
        assert await app_connections(schema, "active") == 0  # pg_sleep(3) was cancelled on the server
        assert await app_connections(schema, "idle in transaction%") == 0


async def test_client_disconnect_mid_query_does_not_leak(schema: str) -> None:
    async with serve(app_for(schema, min_size=1, max_size=1, timeout=3)) as base, httpx.AsyncClient(base_url=base) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get("/hold", timeout=0.3)
        await asyncio.sleep(1.6)
        assert (await c.get("/plain", timeout=3)).status_code == 200
        assert (await get_database().get_stats()).engines[0].pool.checked_out == 0
        assert await app_connections(schema, "idle in transaction%") == 0


async def test_c05_orm_object_serialised_after_flush_and_lazy_load_named(schema: str) -> None:
    async with serve(app_for(schema)) as base, httpx.AsyncClient(base_url=base) as c:
        created = await c.post("/authors")
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["name"] == "Ursula"
        assert body["id"] == 1
        assert body["created"]  # server default, fetched by RETURNING at flush
        rows = await pg_execute(schema, "SELECT name FROM author")
        assert [r["name"] for r in rows] == ["Ursula"]
        for path in ("/authors/1/lazy", "/authors/1"):
            lazy = await c.get(path)
            assert lazy.status_code == 500, lazy.text
            detail = lazy.json()["detail"]
            assert "Author.books" in detail
            assert "selectinload" in detail
