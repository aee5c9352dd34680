"""Read-only requests run plain reads without BEGIN/COMMIT; the first write opens the request transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from litestar_db import Database, DatabaseConfig, DatabasePlugin, PoolConfig, RequestConfig, get_database
from tests.conftest import pg_execute

pytestmark = pytest.mark.postgres


async def in_transaction(session: AsyncSession) -> bool:
    """now() is the start time of the transaction: constant inside one, new for each autocommit statement."""
    first = (await session.execute(text("SELECT now()"))).scalar_one()
    await asyncio.sleep(0.005)
    return bool(first == (await session.execute(text("SELECT now()"))).scalar_one())


@get("/read")
async def read(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    return {"in_transaction": await in_transaction(db_session)}


@post("/read", status_code=200)
async def read_in_post(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    return {"in_transaction": await in_transaction(db_session)}


@get("/read-then-write")
async def read_then_write(
    db_session: NamedDependency[AsyncSession], fail: FromQuery[bool] = False
) -> Response[dict[str, int]]:
    before = (await db_session.execute(text("SELECT count(*) FROM hit"))).scalar_one()
    await db_session.execute(text("INSERT INTO hit DEFAULT VALUES"))
    after = (await db_session.execute(text("SELECT count(*) FROM hit"))).scalar_one()  # its own write, in the tx
    in_tx = await in_transaction(db_session)
    body = {"before": before, "after": after, "in_transaction": int(in_tx)}
    return Response(body, status_code=409 if fail else 200)


@get("/set-local")
async def set_local(db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    await db_session.execute(text("SET LOCAL statement_timeout = '1234ms'"))
    return {"timeout": str((await db_session.execute(text("SHOW statement_timeout"))).scalar_one())}


@get("/serializable", opt={"db_isolation_level": "SERIALIZABLE"})
async def serializable(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    return {"in_transaction": await in_transaction(db_session)}


class Base(DeclarativeBase):
    pass


class Hit(Base):
    __tablename__ = "hit"
    id: Mapped[int] = mapped_column(primary_key=True)


@get("/read-then-add")
async def read_then_add(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    """A read in autocommit, then an object added and never flushed: only the request's commit writes it."""
    await db_session.execute(text("SELECT 1"))
    db_session.add(Hit())
    return {"in_transaction": db_session.in_transaction()}


@get("/call-a-function")
async def call_a_function(db_session: NamedDependency[AsyncSession]) -> Response[dict[str, int]]:
    """A read calling a function of the application's that writes, then an error response."""
    hits = (await db_session.execute(text("SELECT record_hit() AS n"))).scalar_one()
    return Response({"hits": hits}, status_code=409)


HANDLERS = [read, read_in_post, read_then_write, read_then_add, set_local, serializable, call_a_function]


@pytest.fixture
async def client(pg_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    await pg_execute(pg_url, "CREATE TABLE hit (id serial PRIMARY KEY)")
    config = DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=1, timeout=2))
    async with AsyncTestClient(Litestar(HANDLERS, plugins=[DatabasePlugin(config)])) as test_client:
        yield test_client


async def test_get_reads_run_without_begin(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/read")).json() == {"in_transaction": False}


async def test_post_runs_in_a_transaction(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.post("/read")).json() == {"in_transaction": True}


async def test_the_autocommit_connection_is_reset_for_the_next_request(client: AsyncTestClient[Litestar]) -> None:
    """Pool of one: the connection a GET used in autocommit goes back to the pool reset, so the next POST runs in
    a transaction on it; the autocommit engine shares the pool and adds no per-connection events."""
    assert (await client.get("/read")).json() == {"in_transaction": False}
    assert (await client.post("/read")).json() == {"in_transaction": True}
    assert (await client.get("/read")).json() == {"in_transaction": False}
    db = get_database()
    assert db.lazy_sessionmaker is not None
    bind = db.lazy_sessionmaker.kw["sync_session_class"].autocommit_bind  # what the GETs above ran on
    assert bind.pool is db.engine.sync_engine.pool
    assert bind._has_events is False  # engine.execution_options(isolation_level=...) would switch them on


async def test_route_isolation_level_keeps_the_transaction(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/serializable")).json() == {"in_transaction": True}


async def test_first_write_opens_the_transaction_on_a_pool_of_one(
    client: AsyncTestClient[Litestar], pg_url: str
) -> None:
    """Reads before the write ran in autocommit; the write and what follows run in the request transaction,
    on the only pooled connection (the autocommit one was given back first)."""
    response = await client.get("/read-then-write")
    assert response.json() == {"before": 0, "after": 1, "in_transaction": 1}
    assert (await pg_execute(pg_url, "SELECT count(*) AS n FROM hit"))[0]["n"] == 1


async def test_write_in_a_get_still_rolls_back_on_4xx(client: AsyncTestClient[Litestar], pg_url: str) -> None:
    response = await client.get("/read-then-write", params={"fail": True})
    assert response.status_code == 409
    assert response.json()["after"] == 1
    assert (await pg_execute(pg_url, "SELECT count(*) AS n FROM hit"))[0]["n"] == 0


async def test_a_read_calling_an_unknown_function_runs_in_the_request_transaction(
    client: AsyncTestClient[Litestar], pg_url: str
) -> None:
    # a function not known to be free of side effects may write: in autocommit its write would survive the 409
    await pg_execute(
        pg_url,
        "CREATE FUNCTION record_hit() RETURNS bigint LANGUAGE sql AS"
        " 'INSERT INTO hit DEFAULT VALUES; SELECT count(*) FROM hit'",
    )
    response = await client.get("/call-a-function")
    assert response.status_code == 409
    assert response.json() == {"hits": 1}
    assert (await pg_execute(pg_url, "SELECT count(*) AS n FROM hit"))[0]["n"] == 0


async def test_pending_objects_of_a_read_only_request_are_committed(
    client: AsyncTestClient[Litestar], pg_url: str
) -> None:
    """A GET that only read has nothing to commit, unless it left objects pending: those are flushed and committed
    at the end like in any request."""
    assert (await client.get("/read-then-add")).status_code == 200
    assert (await pg_execute(pg_url, "SELECT count(*) AS n FROM hit"))[0]["n"] == 1


async def test_set_local_runs_in_the_transaction(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/set-local")).json() == {"timeout": "1234ms"}


async def test_lazy_begin_can_be_disabled(pg_url: str) -> None:
    config = DatabaseConfig(url=pg_url, request=RequestConfig(lazy_begin=False))
    async with AsyncTestClient(Litestar(HANDLERS, plugins=[DatabasePlugin(config)])) as client:
        assert (await client.get("/read")).json() == {"in_transaction": True}


@pytest.mark.parametrize("extra", [{"isolation_level": "REPEATABLE READ"}, {"query": "?pgbouncer=true"}])
async def test_not_used_with_stricter_isolation_or_pgbouncer(pg_url: str, extra: dict[str, str]) -> None:
    query = extra.pop("query", "")
    db = Database(DatabaseConfig(url=pg_url + query, **extra))  # type: ignore[arg-type]
    try:
        assert db.lazy_sessionmaker is None
    finally:
        await db.dispose()


def test_read_committed_in_any_spelling_keeps_lazy_begin() -> None:
    """Third breaker round: "read_committed" (SQLAlchemy's spelling) was accepted but turned lazy begin off."""
    for level in ("read_committed", "Read Committed", None):
        db = Database(DatabaseConfig(url="postgresql://u@127.0.0.1:1/d", isolation_level=level))
        assert db.lazy_sessionmaker is not None, level
    assert (
        Database(DatabaseConfig(url="postgresql://u@127.0.0.1:1/d", isolation_level="SERIALIZABLE")).lazy_sessionmaker
        is None
    )
