"""``transaction()`` inside a handler (or a retried unit of work) joins the open unit as a SAVEPOINT.

Django's ``ATOMIC_REQUESTS``: the request's transaction is the outermost block, so a service's ``transaction()``
is committed or rolled back with the request instead of on its own connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar, Response, WebSocket, get, post, websocket
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException
from litestar.params import FromQuery
from litestar.response import Stream
from litestar.testing import AsyncTestClient, TestClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from litestar_db import ConflictError, Database, DatabaseConfig, DatabasePlugin, run_in_transaction, transaction


class Base(DeclarativeBase):
    pass


class Row(Base):
    __tablename__ = "row"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str]


async def add_in_service(label: str) -> None:
    """A service function: its own ``transaction()`` block, as the docs suggest."""
    async with transaction() as session:
        session.add(Row(label=label))


@post("/both", status_code=201)
async def both(db_session: NamedDependency[AsyncSession], status: FromQuery[int] = 201) -> None:
    db_session.add(Row(label="handler"))
    await db_session.flush()
    await add_in_service("service")
    if status != 201:
        raise HTTPException(status_code=status, detail="refused after both writes")


@post("/inner-fails", status_code=201)
async def inner_fails(db_session: NamedDependency[AsyncSession]) -> None:
    db_session.add(Row(label="kept"))
    await db_session.flush()
    try:
        async with transaction() as session:
            session.add(Row(label="rolled back alone"))
            await session.flush()
            raise ValueError("inner failure")
    except ValueError:
        pass


@post("/same-row")
async def same_row(db_session: NamedDependency[AsyncSession]) -> str:
    """The handler and a service update one row: on two connections the second would wait for the first forever."""
    await db_session.execute(update(Row).where(Row.id == 1).values(label="handler"))
    async with transaction() as session:
        await session.execute(update(Row).where(Row.id == 1).values(label="service"))
    return "done"


@get("/read-then-service")
async def read_then_service(db_session: NamedDependency[AsyncSession]) -> list[str]:
    """A GET (lazy begin on PostgreSQL) whose service writes: the write is in the request transaction."""
    before = list(await db_session.scalars(select(Row.label).order_by(Row.id)))
    await add_in_service("from a GET")
    return before


@post("/duplicate-handled", status_code=201)
async def duplicate_handled(db_session: NamedDependency[AsyncSession]) -> str:
    """The documented way to handle a conflict in a handler and carry on: the block raises ConflictError."""
    db_session.add(Row(label="before"))
    await db_session.flush()
    try:
        async with transaction() as session:
            session.add(Row(id=1, label="duplicate key"))
    except ConflictError as exc:
        return type(exc).__name__
    return "no conflict"


@websocket("/ws")
async def per_message(socket: WebSocket[Any, Any, Any]) -> None:
    """The documented websocket pattern: each message's work in its own transaction(), committed at once."""
    await socket.accept()
    label = await socket.receive_text()
    async with transaction() as session:
        session.add(Row(label=label))
    await socket.send_text("saved")
    await socket.receive_text()  # the socket stays open while the test looks at the table


@post("/then-in-background", status_code=201)
async def then_in_background(db_session: NamedDependency[AsyncSession]) -> Response[str]:
    """A background task runs after the response, in the request's task: the request transaction is over, so its
    transaction() is a transaction of its own (the documented rule for background tasks)."""
    db_session.add(Row(label="handler"))
    return Response("accepted", status_code=201, background=BackgroundTask(add_in_service, "background"))


@get("/streamed")
async def streamed() -> Stream:
    async def body() -> AsyncIterator[str]:
        await add_in_service("streamed")
        yield "done"

    return Stream(body())


@post("/block-first", status_code=201)
async def block_first(db_session: NamedDependency[AsyncSession]) -> None:
    """The block is the request's first statement (SQLite's driver has sent no BEGIN yet), then the request fails."""
    await add_in_service("block")
    db_session.add(Row(label="handler"))
    raise HTTPException(status_code=409, detail="refused")


@get("/read-first-block")
async def read_first_block() -> list[str]:
    """A GET's service block that starts with a read (lazy begin: the request is still in autocommit)."""
    async with transaction() as session:
        labels = list(await session.scalars(select(Row.label).order_by(Row.id)))
        session.add(Row(label="after a read"))
    return labels


@post("/manual-commit", status_code=201, opt={"db_autocommit": False})
async def manual_commit() -> None:
    """A db_autocommit=False route commits its own units: its block is a transaction of its own, as before."""
    await add_in_service("manual")


@post("/own-isolation", status_code=201)
async def own_isolation() -> str:
    """A block asking for its own isolation level runs on its own, at that level."""
    async with transaction(isolation_level="SERIALIZABLE") as session:
        session.add(Row(label="serializable"))
        return str(await session.scalar(text("SELECT 1")))


@get("/stream-rows")
async def stream_rows(db_session: NamedDependency[AsyncSession]) -> list[str]:
    """A streamed result in a GET: PostgreSQL opens a server-side cursor only inside a transaction."""
    result = await db_session.stream_scalars(select(Row.label).order_by(Row.id))
    return [label async for label in result]


ROUTES = [both, inner_fails, same_row, read_then_service, duplicate_handled, per_message, then_in_background]


@post("/background-only", status_code=201)
async def background_only() -> Response[str]:
    """The handler never asks for db_session; only its background task writes (third breaker round)."""
    return Response("accepted", status_code=201, background=BackgroundTask(add_in_service, "background only"))


@post("/isolation-inside-a-block", status_code=201)
async def isolation_inside_a_block() -> None:
    """A block with its own isolation level nested in a request block: refused, as nested blocks are elsewhere."""
    async with transaction() as session:
        session.add(Row(label="outer block"))
        async with transaction(isolation_level="SERIALIZABLE") as inner:
            inner.add(Row(label="inner block"))


@post("/autocommit-route", status_code=201, opt={"db_isolation_level": "AUTOCOMMIT"})
async def autocommit_route() -> None:
    """An AUTOCOMMIT route has no transaction to join: its block is a transaction of its own."""
    await add_in_service("autocommit route")


ROUTES += [streamed, block_first, read_first_block, manual_commit, own_isolation, stream_rows]
ROUTES += [background_only, isolation_inside_a_block, autocommit_route]


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(DatabaseConfig(url=db_url))
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.execute(Row.__table__.insert().values(label="seed"))  # id 1
    yield db
    await db.dispose()


async def _labels(db: Database) -> list[str]:
    async with db.engine.connect() as conn:
        return list((await conn.execute(select(Row.label).order_by(Row.id))).scalars())


@pytest.mark.parametrize(("status", "saved"), [(201, ["seed", "handler", "service"]), (409, ["seed"]), (500, ["seed"])])
async def test_a_service_transaction_commits_and_rolls_back_with_the_request(
    database: Database, db_url: str, status: int, saved: list[str]
) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        response = await client.post("/both", params={"status": status})
    assert response.status_code == status
    assert await _labels(database) == saved


async def test_a_failing_inner_block_rolls_back_alone(database: Database, db_url: str) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        response = await client.post("/inner-fails")
    assert response.status_code == 201
    assert await _labels(database) == ["seed", "kept"]


async def test_the_handler_and_its_service_update_one_row_without_waiting_on_each_other(
    database: Database, db_url: str
) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url, statement_timeout=5))])
    async with AsyncTestClient(app) as client:
        response = await asyncio.wait_for(client.post("/same-row"), 20)
    assert response.status_code == 201
    assert await _labels(database) == ["service"]


async def test_a_get_whose_service_writes_commits_it_with_the_request(database: Database, db_url: str) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        response = await client.get("/read-then-service")
    assert response.status_code == 200
    assert response.json() == ["seed"]
    assert await _labels(database) == ["seed", "from a GET"]


async def test_a_conflict_in_a_block_is_caught_and_the_request_goes_on(database: Database, db_url: str) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        response = await client.post("/duplicate-handled")
    assert (response.status_code, response.text) == (201, "ConflictError")
    assert await _labels(database) == ["seed", "before"]


async def _labels_at(url: str) -> list[str]:
    db = Database(DatabaseConfig(url=url))
    try:
        return await _labels(db)
    finally:
        await db.dispose()


def test_a_websocket_message_commits_in_its_own_transaction(database: Database, db_url: str) -> None:
    """transaction() joins the request only over HTTP: in a websocket it commits when its block ends."""
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    with TestClient(app) as client, client.websocket_connect("/ws") as ws:
        ws.send_text("from a socket")
        assert ws.receive_text() == "saved"
        with client.portal() as portal:  # read on the app's loop, on a connection of its own
            labels = portal.call(_labels_at, db_url)  # before the socket closes
        ws.send_text("bye")
    assert labels == ["seed", "from a socket"]


async def test_after_the_response_a_transaction_is_its_own(database: Database, db_url: str) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        posted = await client.post("/then-in-background")
        body = await client.get("/streamed")
    assert (posted.status_code, body.text) == (201, "done")
    assert await _labels(database) == ["seed", "handler", "background", "streamed"]


async def test_second_breaker_round_cases(database: Database, db_url: str) -> None:
    """Found by a second breaker: a first block committed alone on SQLite, a read-first block failed in a GET
    (SAVEPOINT in autocommit), db_autocommit=False routes lost their blocks, an isolation level was a 500, and
    stream() failed in any GET on PostgreSQL."""
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        assert (await client.post("/block-first")).status_code == 409
        assert await _labels(database) == ["seed"]
        read_first = await client.get("/read-first-block")
        assert (read_first.status_code, read_first.json()) == (200, ["seed"])
        assert (await client.post("/manual-commit")).status_code == 201
        assert (await client.post("/own-isolation")).text == "1"
        streamed_rows = await client.get("/stream-rows")
    assert streamed_rows.json() == ["seed", "after a read", "manual", "serializable"]
    assert await _labels(database) == ["seed", "after a read", "manual", "serializable"]


async def test_third_breaker_round_cases(database: Database, db_url: str) -> None:
    app = Litestar(ROUTES, plugins=[DatabasePlugin(DatabaseConfig(url=db_url))])
    async with AsyncTestClient(app) as client:
        assert (await client.post("/background-only")).status_code == 201
        assert (await client.post("/isolation-inside-a-block")).status_code == 500  # ValueError, nothing committed
        assert (await client.post("/autocommit-route")).status_code == 201
    assert await _labels(database) == ["seed", "background only", "autocommit route"]


async def test_a_nested_block_rolls_back_with_its_outer_block(database: Database) -> None:
    """Outside requests too: on SQLite a nested block's RELEASE committed it alone when the outer block had not
    written yet (the driver had sent no BEGIN)."""
    with pytest.raises(RuntimeError):
        async with database.transaction():
            async with database.transaction() as inner:
                inner.add(Row(label="inner"))
            raise RuntimeError("the outer block fails")
    assert await _labels(database) == ["seed"]


async def test_a_transaction_inside_a_retried_unit_is_a_savepoint_of_it(database: Database) -> None:
    """Outside requests too: the unit's failure after the inner block rolls the inner block back."""

    async def unit(session: AsyncSession) -> None:
        session.add(Row(label="unit"))
        async with database.transaction() as inner:
            assert inner is session
            inner.add(Row(label="inner"))
        raise RuntimeError("the unit fails after its inner block")

    with pytest.raises(RuntimeError):
        await run_in_transaction(database, unit, retries=0)
    assert await _labels(database) == ["seed"]
