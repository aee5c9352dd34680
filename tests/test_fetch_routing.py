"""Session-free reads inside a request follow the request's routing, on a real primary and streaming standby.

Found by a breaker: ``fetch_*`` went to a replica whatever the route's ``primary`` guard or the client's
read-your-writes token said, so a page shown right after a write read stale data through it. Replay is paused on
the standby, so the replica is visibly behind; which server answered is what the statement itself reports.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import Litestar, WebSocket, get, post, websocket
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from litestar_db import DatabaseConfig, DatabasePlugin, PoolConfig, ReadWriteConfig, ReplicaConfig, get_database
from litestar_db.litestar.guards import primary
from litestar_db.session import AsyncSession
from litestar_db.testing.pytest_plugin import ReplicaDatabase
from tests.server import serve

pytestmark = [pytest.mark.postgres, pytest.mark.replica]

WHERE = text("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby, (SELECT count(*) FROM note) AS notes")


async def where() -> dict[str, Any]:
    row = await get_database().fetch_one(WHERE)
    assert row is not None
    return dict(row)


@post("/notes", status_code=201)
async def add_note(db_session: NamedDependency[AsyncSession], data: JSONBody[dict[str, str]]) -> None:
    await db_session.execute(text("INSERT INTO note (body) VALUES (:b)"), {"b": data["body"]})


@get("/fetch")
async def fetch_where() -> dict[str, Any]:
    return await where()


@get("/fetch-primary", guards=[primary])
async def fetch_where_primary() -> dict[str, Any]:
    return await where()


@get("/write-then-fetch")
async def write_then_fetch(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    await db_session.execute(text("INSERT INTO note (body) VALUES ('from a GET')"))
    await db_session.commit()  # the session wrote: the request's reads stay on the primary
    return await where()


@post("/notes/core", status_code=201)
async def add_note_core(data: JSONBody[dict[str, str]]) -> None:
    """A write through a Core connection, outside the request session."""
    async with get_database().connection() as conn:
        await conn.execute(text("INSERT INTO note (body) VALUES (:b)"), {"b": data["body"]})


@post("/notes/engine", status_code=201)
async def add_note_engine(db_engine: NamedDependency[AsyncEngine], data: JSONBody[dict[str, str]]) -> None:
    """A write through the ``db_engine`` dependency."""
    async with db_engine.begin() as conn:
        await conn.execute(text("INSERT INTO note (body) VALUES (:b)"), {"b": data["body"]})


@websocket("/ws-primary", guards=[primary])
async def ws_primary(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.send_json(await where())
    await socket.close()


def split_config(db: ReplicaDatabase) -> DatabaseConfig:
    split = ReadWriteConfig(
        enable_read_write_split=True,
        replicas=(ReplicaConfig(url=db.replica_urls[0], name="r0"),),
        max_lag_seconds=None,  # the paused standby stays in rotation: only the routing rules move reads
        monitor_interval_seconds=0.1,
    )
    return DatabaseConfig(url=db.primary_url, pool=PoolConfig(min_size=1, max_size=5), read_write=split)


def test_a_websocket_handlers_session_free_reads_follow_its_routing(notes_replica_db: ReplicaDatabase) -> None:
    db = notes_replica_db
    assert db.cluster.primary is not None
    app = Litestar([ws_primary], plugins=[DatabasePlugin(split_config(db))])
    db.cluster.pause_replay()
    try:
        db.cluster.primary.sql("INSERT INTO note (body) VALUES ('unseen by the replica')", db.name)
        with TestClient(app) as client, client.websocket_connect("/ws-primary") as socket:
            got = socket.receive_json()
    finally:
        db.cluster.resume_replay()
    assert got == {"port": db.cluster.primary.port, "standby": False, "notes": 1}


async def test_session_free_reads_follow_guards_tokens_and_earlier_writes(notes_replica_db: ReplicaDatabase) -> None:
    db = notes_replica_db
    assert db.cluster.primary is not None
    primary_port, replica_port = db.cluster.primary.port, db.cluster.replicas[0].port
    app = Litestar(
        [add_note, fetch_where, fetch_where_primary, write_then_fetch], plugins=[DatabasePlugin(split_config(db))]
    )
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        db.cluster.pause_replay()
        try:
            posted = await client.post("/notes", json={"body": "a"})  # earns a read-your-writes cookie
            with_token = [(await client.get("/fetch")).json() for _ in range(3)]  # Core, then the driver path
            client.cookies.clear()
            without_token = (await client.get("/fetch")).json()
            guarded = (await client.get("/fetch-primary")).json()
            after_write = (await client.get("/write-then-fetch")).json()
        finally:
            db.cluster.resume_replay()
    assert posted.status_code == 201
    assert with_token == [{"port": primary_port, "standby": False, "notes": 1}] * 3
    assert without_token == {"port": replica_port, "standby": True, "notes": 0}  # the stale replica: routing works
    assert guarded == {"port": primary_port, "standby": False, "notes": 1}
    assert after_write == {"port": primary_port, "standby": False, "notes": 2}


@pytest.mark.parametrize("path", ["/notes/core", "/notes/engine"])
async def test_a_write_outside_the_request_session_earns_a_read_your_writes_token(
    notes_replica_db: ReplicaDatabase, path: str
) -> None:
    """Found by a breaker: a write through ``Database.connection()`` or ``db_engine`` sent no token, so the client's
    next read went to the stale replica and its own write looked lost."""
    db = notes_replica_db
    assert db.cluster.primary is not None
    app = Litestar([add_note_core, add_note_engine, fetch_where], plugins=[DatabasePlugin(split_config(db))])
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        db.cluster.pause_replay()
        try:
            posted = await client.post(path, json={"body": "a"})
            seen = (await client.get("/fetch")).json()
        finally:
            db.cluster.resume_replay()
    assert posted.status_code == 201
    assert seen == {"port": db.cluster.primary.port, "standby": False, "notes": 1}
