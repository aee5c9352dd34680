"""Error translation by SQLSTATE, produced by a real PostgreSQL, through the Litestar app (issue 8 §1, C01)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import pytest
from advanced_alchemy.base import BigIntBase
from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from litestar import Litestar, MediaType, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from sqlalchemy import String, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from litestar_db import DatabaseConfig, DatabasePlugin, PoolConfig, transaction
from litestar_db.errors import (
    ConflictError,
    ConnectionLostError,
    DatabaseUnavailableError,
    StatementTimeoutError,
    translate_error,
)
from tests.conftest import _plain, pg_execute

pytestmark = pytest.mark.postgres

DDL = """
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL CONSTRAINT child_parent_fk REFERENCES parent(id));
CREATE TABLE account (id int PRIMARY KEY, email text UNIQUE, balance int NOT NULL CHECK (balance >= 0));
INSERT INTO parent VALUES (1);
INSERT INTO account VALUES (1, 'a@example.com', 10);
CREATE TABLE gadget (id bigserial PRIMARY KEY, name varchar(20) NOT NULL);
"""


class Gadget(BigIntBase):
    __tablename__ = "gadget"
    name: Mapped[str] = mapped_column(String(20))


class GadgetRepository(SQLAlchemyAsyncRepository[Gadget]):
    model_type = Gadget


def _stmt(path: str, *statements: str) -> object:
    @post(path, status_code=201, name=path.strip("/"))
    async def handler(db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
        for sql in statements:
            await db_session.execute(text(sql))
        return {"status": "ok"}

    return handler


@get("/gadget/{gadget_id:int}")
async def get_gadget(gadget_id: FromPath[int], db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    gadget = await GadgetRepository(session=db_session).get(gadget_id)
    return {"name": gadget.name}


async def _terminate_backend(db_session: AsyncSession, pg: str) -> int:
    """Start the session's transaction, then have the server terminate its backend; returns the backend's pid."""
    pid: int = (await db_session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    killer = await asyncpg.connect(pg)
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    return pid


@get("/terminated")
async def terminated(db_session: NamedDependency[AsyncSession], pg: NamedDependency[str]) -> dict[str, int]:
    """C01: the backend is killed by the server while the handler is inside a transaction."""
    pid = await _terminate_backend(db_session, pg)
    await db_session.execute(text("SELECT 1"))
    return {"pid": pid}


@get("/terminated-caught")
async def terminated_caught(db_session: NamedDependency[AsyncSession], pg: NamedDependency[str]) -> dict[str, int]:
    """C01's neighbour: the handler catches the lost connection and carries on with another statement."""
    pid = await _terminate_backend(db_session, pg)
    with contextlib.suppress(Exception):
        await db_session.execute(text("SELECT 1"))
    await db_session.execute(text("SELECT 2"))
    return {"pid": pid}


@get("/cancelled-then-continued")
async def cancelled_then_continued(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    """A query cancelled by the handler's own timeout, then another statement on the same session."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.2):
            await db_session.execute(text("SELECT pg_sleep(3)"))
    await db_session.execute(text("SELECT 1"))
    return {"done": True}


@get("/cancelled-in-a-block")
async def cancelled_in_a_block(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    """A query cancelled inside a block that joined the request transaction; the handler carries on."""
    await db_session.execute(text("SELECT 1"))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.2), transaction() as session:
            await session.execute(text("SELECT pg_sleep(3)"))
    return {"done": True}


@get("/healthy")
async def healthy(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    return {"one": (await db_session.execute(text("SELECT 1"))).scalar_one()}


HANDLERS = [
    _stmt("/unique", "INSERT INTO account VALUES (2, 'a@example.com', 1)"),
    _stmt("/fk", "INSERT INTO child VALUES (1, 42)"),
    _stmt("/not-null", "INSERT INTO account VALUES (3, 'n@example.com', NULL)"),
    _stmt("/check", "UPDATE account SET balance = -5 WHERE id = 1"),
    _stmt("/timeout", "SET LOCAL statement_timeout = '50ms'", "SELECT pg_sleep(2)"),
    _stmt("/syntax", "SELEC secret_column FROM account WHERE email = 'a@example.com'"),
    get_gadget,
    terminated,
    terminated_caught,
    cancelled_then_continued,
    cancelled_in_a_block,
    healthy,
]


@pytest.fixture
async def client(pg_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    conn = await asyncpg.connect(_plain(pg_url))
    try:
        await conn.execute(DDL)
    finally:
        await conn.close()
    plugin = DatabasePlugin(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=2)))
    app = Litestar(
        HANDLERS, plugins=[plugin], dependencies={"pg": Provide(lambda: _plain(pg_url), sync_to_thread=False)}
    )
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def assert_nothing_left(pg_url: str) -> None:
    """After a failure: no connection of the app is idle in transaction."""
    rows = await pg_execute(
        pg_url,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in%'",
    )
    assert rows[0]["n"] == 0


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/unique", 409, "ConflictError"),
        ("/fk", 409, "ConflictError"),
        ("/not-null", 422, "ConstraintViolationError"),
        ("/check", 422, "ConstraintViolationError"),
        ("/timeout", 504, "StatementTimeoutError"),
        ("/syntax", 500, "DatabaseError"),
    ],
)
async def test_sqlstate_maps_to_status(
    client: AsyncTestClient[Litestar], pg_url: str, path: str, status: int, error: str
) -> None:
    response = await client.post(path)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert "secret_column" not in response.text  # SQL never reaches the client
    assert "a@example.com" not in response.text  # nor parameters/values
    await assert_nothing_left(pg_url)
    assert (await client.get("/healthy")).status_code == 200


async def test_foreign_key_conflict_names_the_constraint(client: AsyncTestClient[Litestar]) -> None:
    body = (await client.post("/fk")).json()
    assert body["constraint"] == "child_parent_fk"


async def test_repository_not_found_is_404(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/gadget/12345")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFoundError"


async def test_c01_backend_terminated_mid_transaction(client: AsyncTestClient[Litestar], pg_url: str) -> None:
    response = await client.get("/terminated")
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "ConnectionLostError"
    for _ in range(3):  # the pool never hands out the dead connection again
        again = await client.get("/healthy")
        assert again.status_code == 200, again.text
        assert "invalid transaction" not in again.text
    await assert_nothing_left(pg_url)


@pytest.mark.parametrize("path", ["/terminated-caught", "/cancelled-then-continued", "/cancelled-in-a-block"])
async def test_a_statement_after_a_lost_connection_is_503_too(
    client: AsyncTestClient[Litestar], pg_url: str, path: str
) -> None:
    """Found by a breaker: the next statement raised SQLAlchemy's PendingRollbackError, answered as a bare 500."""
    response = await client.get(path)
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "ConnectionLostError"
    assert response.headers["retry-after"] == "5"
    assert (await client.get("/healthy")).status_code == 200
    await assert_nothing_left(pg_url)


async def test_connection_refused_is_503_with_retry_after() -> None:
    plugin = DatabasePlugin(DatabaseConfig(url="postgresql://postgres@127.0.0.1:9/none"))
    async with AsyncTestClient(Litestar([healthy], plugins=[plugin])) as client:
        response = await client.get("/healthy")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


async def test_translate_sqlstates_directly(pg_url: str) -> None:
    """The core translation (no Litestar): each asyncpg error by its SQLSTATE."""
    conn = await asyncpg.connect(_plain(pg_url))
    try:
        await conn.execute(DDL)
        with pytest.raises(asyncpg.PostgresError) as unique:
            await conn.execute("INSERT INTO account VALUES (2, 'a@example.com', 1)")
        with pytest.raises(asyncpg.PostgresError) as timeout:
            await conn.execute("SET statement_timeout = '10ms'; SELECT pg_sleep(1)")
        with pytest.raises(asyncpg.PostgresError) as shutdown:
            await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    finally:
        await conn.close()
    assert isinstance(translate_error(unique.value), ConflictError)
    assert isinstance(translate_error(timeout.value), StatementTimeoutError)
    lost = translate_error(shutdown.value, retry_after=7)
    assert isinstance(lost, ConnectionLostError)
    assert isinstance(lost, DatabaseUnavailableError)
    assert lost.retry_after == 7
    assert translate_error(ValueError("not a database error")) is None


async def test_app_handler_for_a_status_overrides_the_default(pg_url: str) -> None:
    conn = await asyncpg.connect(_plain(pg_url))
    try:
        await conn.execute(DDL)
    finally:
        await conn.close()

    def conflict_page(request: object, exc: Exception) -> Response[str]:
        assert isinstance(exc, ConflictError)
        return Response(f"custom conflict: {exc.constraint}", status_code=409, media_type=MediaType.TEXT)

    plugin = DatabasePlugin(DatabaseConfig(url=pg_url))
    app = Litestar(
        HANDLERS,
        plugins=[plugin],
        exception_handlers={409: conflict_page},
        dependencies={"pg": Provide(lambda: _plain(pg_url), sync_to_thread=False)},
    )
    async with AsyncTestClient(app) as client:
        response = await client.post("/unique")
        assert (response.status_code, response.text) == (409, "custom conflict: account_email_key")
        assert (await client.post("/not-null")).status_code == 422  # other statuses keep the default
