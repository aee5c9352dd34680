"""The request transaction (C07): commit on 2xx (3xx when configured), roll back otherwise, failed commit → error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from litestar import Litestar, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromQuery
from litestar.response import Redirect, Stream
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from litestar_db import Database, DatabaseConfig, DatabasePlugin, RequestConfig, get_database

DDL = [
    "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
    # deferred: the violation is found only at COMMIT (PostgreSQL and SQLite both defer foreign keys)
    "CREATE TABLE child (id INTEGER PRIMARY KEY,"
    " parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TABLE note (id INTEGER PRIMARY KEY, body VARCHAR(50) NOT NULL)",
]


async def _insert(session: AsyncSession, note_id: int) -> None:
    await session.execute(text("INSERT INTO note (id, body) VALUES (:i, 'x')"), {"i": note_id})


@post("/created", status_code=201)
async def created(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    await _insert(db_session, 1)
    return {"id": 1}


@post("/redirect", status_code=303)
async def redirect(db_session: NamedDependency[AsyncSession]) -> Redirect:
    await _insert(db_session, 2)
    return Redirect("/elsewhere", status_code=303)


@post("/http-409")
async def http_409(db_session: NamedDependency[AsyncSession]) -> None:
    await _insert(db_session, 3)
    raise HTTPException(status_code=409, detail="already there")


@post("/crash")
async def crash(db_session: NamedDependency[AsyncSession]) -> None:
    await _insert(db_session, 4)
    raise RuntimeError("bug")


@post("/returned-400")
async def returned_400(db_session: NamedDependency[AsyncSession]) -> Response[dict[str, str]]:
    await _insert(db_session, 5)
    return Response({"error": "bad"}, status_code=400)


@post("/commit-fails", status_code=201)
async def commit_fails(db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    await _insert(db_session, 6)
    await db_session.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 999)"))
    return {"status": "saved?"}


@post("/manual", status_code=201, opt={"db_autocommit": False})
async def manual(db_session: NamedDependency[AsyncSession], commit: FromQuery[bool] = False) -> dict[str, bool]:
    await _insert(db_session, 7)
    if commit:
        await db_session.commit()
    return {"committed": commit}


@get("/isolation", opt={"db_isolation_level": "SERIALIZABLE"})
async def isolation(db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    return {"level": str((await db_session.execute(text("SHOW transaction_isolation"))).scalar_one())}


@get("/engine")
async def engine(db_engine: NamedDependency[AsyncEngine]) -> dict[str, bool]:
    return {"same_pool": db_engine is get_database().engine}


@get("/stream")
async def stream(db_session: NamedDependency[AsyncSession]) -> Stream:
    await db_session.execute(text("SELECT 1"))

    async def body() -> AsyncIterator[str]:
        stats = await get_database().get_stats()
        yield f"checked_out={stats.engines[0].pool.checked_out}\n"

    return Stream(body())


HANDLERS = [created, redirect, http_409, crash, returned_400, commit_fails, manual, isolation, engine, stream]


@pytest.fixture
async def observer(db_url: str) -> AsyncIterator[Database]:
    """A Database on the test's own loop (the test client runs the app on another loop)."""
    db = Database(DatabaseConfig(url=db_url))
    async with db.connection() as conn:
        for ddl in DDL:
            await conn.execute(text(ddl))
    yield db
    await db.dispose()


@pytest.fixture
async def make_client(db_url: str, observer: Database) -> Callable[..., Any]:

    def factory(**request: Any) -> AsyncTestClient[Litestar]:
        config = DatabaseConfig(url=db_url, request=RequestConfig(**request))
        return AsyncTestClient(Litestar(HANDLERS, plugins=[DatabasePlugin(config)]))

    return factory


async def note_ids(observer: Database) -> list[int]:
    async with observer.session() as s:
        return list((await s.execute(text("SELECT id FROM note ORDER BY id"))).scalars())


async def test_c07_2xx_commits(make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database) -> None:
    async with make_client() as client:
        assert (await client.post("/created")).status_code == 201
        assert await note_ids(observer) == [1]


@pytest.mark.parametrize(("commit_on_redirect", "expected"), [(False, []), (True, [2])])
async def test_c07_3xx_commits_only_when_configured(
    make_client: Callable[..., AsyncTestClient[Litestar]],
    observer: Database,
    commit_on_redirect: bool,
    expected: list[int],
) -> None:
    async with make_client(commit_on_redirect=commit_on_redirect) as client:
        response = await client.post("/redirect", follow_redirects=False)
        assert response.status_code == 303
        assert await note_ids(observer) == expected


async def test_c07_http_exception_rolls_back(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database
) -> None:
    async with make_client() as client:
        assert (await client.post("/http-409")).status_code == 409
        assert await note_ids(observer) == []


async def test_c07_uncaught_error_is_500_and_rolls_back(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database
) -> None:
    async with make_client() as client:
        assert (await client.post("/crash")).status_code == 500
        assert await note_ids(observer) == []


async def test_returned_4xx_response_rolls_back(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database
) -> None:
    async with make_client() as client:
        assert (await client.post("/returned-400")).status_code == 400
        assert await note_ids(observer) == []


async def test_c07_failed_commit_becomes_409_never_2xx(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database
) -> None:
    async with make_client() as client:
        response = await client.post("/commit-fails")
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "ConflictError"
        assert "saved?" not in response.text
        assert await note_ids(observer) == []
        assert (await client.post("/created")).status_code == 201  # the app is healthy afterwards
        assert await note_ids(observer) == [1]


@pytest.mark.parametrize(("commit", "expected"), [(False, []), (True, [7])])
async def test_route_opt_out_of_autocommit(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database, commit: bool, expected: list[int]
) -> None:
    async with make_client() as client:
        assert (await client.post("/manual", params={"commit": commit})).status_code == 201
        assert await note_ids(observer) == expected


async def test_db_engine_is_the_session_pool(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database
) -> None:
    async with make_client() as client:
        assert (await client.get("/engine")).json() == {"same_pool": True}


async def test_connection_released_before_stream_body(
    make_client: Callable[..., AsyncTestClient[Litestar]], observer: Database
) -> None:
    async with make_client() as client:
        response = await client.get("/stream")
        assert response.status_code == 200
        assert response.text == "checked_out=0\n"


@pytest.mark.postgres
async def test_route_isolation_level(pg_url: str) -> None:
    config = DatabaseConfig(url=pg_url)
    async with AsyncTestClient(Litestar([isolation], plugins=[DatabasePlugin(config)])) as client:
        assert (await client.get("/isolation")).json() == {"level": "serializable"}


@pytest.mark.postgres
async def test_shutdown_disposes_every_connection(pg_url: str) -> None:
    from tests.conftest import pg_execute

    dbname = pg_url.rsplit("/", 1)[1]
    config = DatabaseConfig(url=pg_url)
    async with AsyncTestClient(Litestar([isolation], plugins=[DatabasePlugin(config)])) as client:
        assert (await client.get("/isolation")).status_code == 200
    rows = await pg_execute(
        pg_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbname
    )
    assert rows[0]["n"] == 0
