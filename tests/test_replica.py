"""Read-replica routing against a real PostgreSQL primary and real streaming standbys (issue 3, C08, C09).

Every request goes through a real uvicorn server; which server answered is proven by ``inet_server_port()`` and
``pg_is_in_recovery()`` evaluated by the statement itself. The cluster is shared by the session
(``replicated_cluster``); each test has its own database and the standbys are restored after each test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from sqlalchemy import text

from litestar_db import (
    Database,
    DatabaseConfig,
    DatabasePlugin,
    PoolConfig,
    ReadOnlyError,
    ReadWriteConfig,
    ReplicaConfig,
)
from litestar_db.litestar.guards import READ_ONLY, primary, read_only
from litestar_db.session import AsyncSession
from litestar_db.testing.pytest_plugin import ReplicaDatabase
from tests.server import serve

pytestmark = [pytest.mark.postgres, pytest.mark.replica]

_WHERE = text("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby")


async def _where(session: AsyncSession) -> dict[str, Any]:
    row = (await session.execute(_WHERE)).mappings().one()
    return dict(row)


@get("/where")
async def where(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    return await _where(db_session)


@get("/where-primary", guards=[primary])
async def where_primary(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    return await _where(db_session)


@get("/locked")
async def locked(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    await db_session.execute(text("SELECT id FROM note FOR UPDATE"))
    return await _where(db_session)


@get("/notes")
async def list_notes(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    bodies = (await db_session.execute(text("SELECT body FROM note ORDER BY id"))).scalars().all()
    return {**await _where(db_session), "bodies": list(bodies)}


@post("/notes", status_code=201)
async def add_note(db_session: NamedDependency[AsyncSession], data: JSONBody[dict[str, str]]) -> dict[str, Any]:
    await db_session.execute(text("INSERT INTO note (body) VALUES (:b)"), {"b": data["body"]})
    return await _where(db_session)


@get("/write-then-read/{note:str}")
async def write_then_read(db_session: NamedDependency[AsyncSession], note: FromPath[str]) -> dict[str, Any]:
    before = await _where(db_session)
    await db_session.execute(text("INSERT INTO note (body) VALUES (:b)"), {"b": note})
    bodies = (await db_session.execute(text("SELECT body FROM note"))).scalars().all()
    return {"before": before, "after": await _where(db_session), "bodies": list(bodies)}


@post("/read-only-insert", opt=dict(READ_ONLY))
async def read_only_insert(db_session: NamedDependency[AsyncSession]) -> None:
    await db_session.execute(text("INSERT INTO note (body) VALUES ('forbidden')"))


@get("/read-only-update", guards=[read_only])
async def read_only_update(db_session: NamedDependency[AsyncSession]) -> None:
    await db_session.execute(text("SELECT 1"))
    await db_session.execute(text("UPDATE note SET body = 'forbidden'"))


@get("/bad-sql/{marker:str}")
async def bad_sql(db_session: NamedDependency[AsyncSession], marker: FromPath[str]) -> None:
    await db_session.execute(text(f"SELECT 1 + /* {marker} */"))


@get("/lose-connection")
async def lose_connection(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    first = await _where(db_session)
    pid = (await db_session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    url = f"postgresql://postgres@127.0.0.1:{first['port']}/postgres"
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    return {"first": first, "second": await _where(db_session)}


ROUTES = [where, where_primary, locked, list_notes, add_note, write_then_read]
ROUTES += [read_only_insert, read_only_update, bad_sql, lose_connection]


def _app(db: ReplicaDatabase, weights: Sequence[int] = (1,), **read_write: Any) -> tuple[Litestar, DatabasePlugin]:
    replicas = tuple(
        ReplicaConfig(url=url, name=f"r{i}", weight=w)
        for i, (url, w) in enumerate(zip(db.replica_urls, weights, strict=False))
    )
    settings: dict[str, Any] = {"monitor_interval_seconds": 0.1, "failure_cooldown_seconds": 1.0, **read_write}
    config = DatabaseConfig(
        url=db.primary_url,
        pool=PoolConfig(min_size=1, max_size=10),
        read_write=ReadWriteConfig(enable_read_write_split=True, replicas=replicas, **settings),
    )
    plugin = DatabasePlugin(config)
    return Litestar(route_handlers=ROUTES, plugins=[plugin]), plugin


@pytest.fixture
def db(notes_replica_db: ReplicaDatabase) -> ReplicaDatabase:
    return notes_replica_db


def _ports(db: ReplicaDatabase) -> tuple[int, list[int]]:
    assert db.cluster.primary is not None
    return db.cluster.primary.port, [r.port for r in db.cluster.replicas]


async def _until(check: Any, timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_get_is_served_by_the_replica_and_post_by_the_primary(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    app, _ = _app(db)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        got = (await client.get("/where")).json()
        pinned = (await client.get("/where-primary")).json()
        lock = await client.get("/locked")
        posted = await client.post("/notes", json={"body": "a"})
    assert got == {"port": replica_port, "standby": True}
    assert pinned == {"port": primary_port, "standby": False}
    assert lock.json() == {"port": primary_port, "standby": False}  # FOR UPDATE went to the primary, then stayed
    assert posted.status_code == 201
    assert posted.json() == {"port": primary_port, "standby": False}


async def test_c08_read_your_writes_with_a_delayed_replica(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    db.cluster.set_apply_delay(2.0)
    app, _ = _app(db)
    async with (
        serve(app) as base,
        httpx.AsyncClient(base_url=base) as writer,
        httpx.AsyncClient(base_url=base) as other,
        httpx.AsyncClient(base_url=base) as forger,
    ):
        posted = await writer.post("/notes", json={"body": "mine"})
        token = posted.cookies.get("litestar-db-lsn")
        mine = (await writer.get("/notes")).json()
        theirs = (await other.get("/notes")).json()
        lsn, expires, signature = token.split(".")
        forger.cookies.set("litestar-db-lsn", f"{int(lsn, 16) - 1:x}.{expires}.{signature}")
        forged = (await forger.get("/notes")).json()
        in_handler = (await other.get("/write-then-read/own")).json()
        # Once the replica has replayed the write's LSN, the same client reads from the replica again.
        later = await _until(
            lambda: _json_if(writer.get("/notes"), lambda body: body["port"] == replica_port), timeout=10
        )
    assert posted.status_code == 201
    assert token
    assert mine == {"port": primary_port, "standby": False, "bodies": ["mine"]}
    assert theirs == {"port": replica_port, "standby": True, "bodies": []}
    assert forged == {"port": replica_port, "standby": True, "bodies": []}  # tampered token ignored
    assert in_handler["before"]["port"] == replica_port
    assert in_handler["after"]["port"] == primary_port
    assert "own" in in_handler["bodies"]
    assert later is not None
    assert later["bodies"][0] == "mine"


async def _json_if(request: Any, accept: Any) -> Any:
    response = await request
    body = response.json()
    return body if response.status_code == 200 and accept(body) else None


async def test_token_in_a_header_when_configured(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    app, _ = _app(db, token_transport="header", token_name="X-Read-After")
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        db.cluster.pause_replay()
        posted = await client.post("/notes", json={"body": "h"})
        token = posted.headers["x-read-after"]
        with_token = (await client.get("/notes", headers={"X-Read-After": token})).json()
        without = (await client.get("/notes")).json()
    assert "set-cookie" not in posted.headers
    assert with_token == {"port": primary_port, "standby": False, "bodies": ["h"]}
    assert without == {"port": replica_port, "standby": True, "bodies": []}


async def test_c09_replica_stopped_reads_fall_back_then_return(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    app, plugin = _app(db, failure_cooldown_seconds=1.0)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/where")).json()["port"] == replica_port  # pooled connection to the replica
        db.cluster.stop_replica()
        during = [await client.get("/where") for _ in range(3)]
        stats = {e.name: e for e in (await plugin.database.get_stats()).engines}
        db.cluster.start_replica()
        restarted = time.monotonic()
        back = await _until(lambda: _json_if(client.get("/where"), lambda body: body["port"] == replica_port))
        waited = time.monotonic() - restarted
    assert [r.status_code for r in during] == [200, 200, 200]
    assert {r.json()["port"] for r in during} == {primary_port}
    assert stats["r0"].healthy is False
    assert stats["r0"].ejected_until is not None
    assert stats["r0"].ejected_reason is not None
    assert stats["primary"].routed_reads >= 3
    assert back == {"port": replica_port, "standby": True}
    assert waited < 8


async def test_no_fallback_answers_503_while_no_replica_is_available(db: ReplicaDatabase) -> None:
    app, _ = _app(db, fallback_to_primary=False, failure_cooldown_seconds=5.0)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        db.cluster.stop_replica()
        first = await client.get("/where")  # connection refused: ejected, and no other host is allowed
        second = await client.get("/where")
    assert first.status_code == 503
    assert second.status_code == 503
    assert "Retry-After" in second.headers


async def test_c09_sql_error_on_a_replica_read_is_not_retried_on_the_primary(db: ReplicaDatabase) -> None:
    replica_port = _ports(db)[1][0]
    marker = f"marker_{uuid.uuid4().hex}"
    app, plugin = _app(db)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.get(f"/bad-sql/{marker}")
        after = (await client.get("/where")).json()
        replica = next(e for e in (await plugin.database.get_stats()).engines if e.name == "r0")
    assert db.cluster.primary is not None
    assert response.status_code == 500
    assert marker in db.cluster.replica(0).read_log()  # it ran on the replica (syntax error logged there) ...
    assert marker not in db.cluster.primary.read_log()  # ... and never on the primary
    assert replica.healthy is True  # a SQL error is not a replica failure
    assert after["port"] == replica_port


async def test_connection_lost_mid_request_retries_the_read_elsewhere(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    app, _ = _app(db)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/lose-connection")
        following = (await client.get("/notes")).status_code
    assert response.status_code == 200, response.text
    assert response.json() == {
        "first": {"port": replica_port, "standby": True},
        "second": {"port": primary_port, "standby": False},
    }
    assert following == 200


async def test_lag_over_the_limit_ejects_until_caught_up(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    app, plugin = _app(db, max_lag_seconds=0.5, failure_cooldown_seconds=0.3)

    async def replica_stats() -> Any:
        return next(e for e in (await plugin.database.get_stats()).engines if e.name == "r0")

    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        await asyncio.sleep(1.0)  # idle primary for longer than max_lag_seconds
        idle = await replica_stats()
        idle_read = (await client.get("/where")).json()
        db.cluster.pause_replay()
        assert (await client.post("/notes", json={"body": "behind"})).status_code == 201
        ejected = await _until(lambda: _stats_if(replica_stats(), lambda s: not s.healthy))
        during = (await client.get("/notes")).json()
        db.cluster.resume_replay()
        back = await _until(lambda: _json_if(client.get("/notes"), lambda body: body["port"] == replica_port))
        caught_up = await replica_stats()
    assert idle.lag_seconds == 0.0
    assert idle.lag_bytes == 0
    assert idle.healthy is True
    assert idle.round_trip_ms is not None
    assert idle_read["port"] == replica_port
    assert ejected is not None
    assert ejected.lag_bytes > 0
    assert ejected.lag_seconds > 0.5
    assert during == {"port": primary_port, "standby": False, "bodies": ["behind"]}
    assert back == {"port": replica_port, "standby": True, "bodies": ["behind"]}
    assert caught_up.lag_bytes == 0


async def _stats_if(stats: Any, accept: Any) -> Any:
    value = await stats
    return value if accept(value) else None


async def test_write_on_a_read_only_route_raises_and_changes_nothing(db: ReplicaDatabase) -> None:
    assert db.cluster.primary is not None
    app, _ = _app(db)
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        inserted = await client.post("/read-only-insert")
        updated = await client.get("/read-only-update")
    assert inserted.status_code == 500
    assert inserted.json()["error"] == "ReadOnlyError"
    assert "POST /read-only-insert" in inserted.json()["detail"]
    assert updated.status_code == 500
    assert "GET /read-only-update" in updated.json()["detail"]
    db.cluster.wait_for_catchup()
    assert db.cluster.primary.sql("SELECT count(*) FROM note", db.name) == "0"
    assert db.cluster.replica(0).sql("SELECT count(*) FROM note", db.name) == "0"
    assert "read-only transaction" not in db.cluster.replica(0).read_log()  # never reached the replica


@pytest.mark.parametrize("strategy", ["round_robin", "random"])
async def test_weights_3_to_1_split_reads(db: ReplicaDatabase, strategy: str) -> None:
    if len(db.cluster.replicas) < 2:
        db.cluster.add_replica()
    _, replica_ports = _ports(db)
    app, _ = _app(db, weights=(3, 1), strategy=strategy)
    limit = asyncio.Semaphore(8)

    async def one(client: httpx.AsyncClient) -> int:
        async with limit:
            response = await client.get("/where")
            assert response.status_code == 200
            return int(response.json()["port"])

    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        counts = Counter(await asyncio.gather(*(one(client) for _ in range(400))))
    heavy, light = counts[replica_ports[0]], counts[replica_ports[1]]
    assert heavy + light == 400
    assert 0.9 * 3 <= heavy / light <= 1.1 * 3 if strategy == "round_robin" else 0.675 <= heavy / 400 <= 0.825


async def test_read_replica_and_primary_blocks_outside_requests(db: ReplicaDatabase) -> None:
    primary_port, replica_port = _ports(db)[0], _ports(db)[1][0]
    config = DatabaseConfig(
        url=db.primary_url,
        read_write=ReadWriteConfig(
            enable_read_write_split=True, replicas=(ReplicaConfig(url=db.replica_urls[0], name="r0"),)
        ),
    )
    database = Database(config)
    try:
        async with database.read_replica() as session:
            on_replica = await _where(session)
            with pytest.raises(ReadOnlyError, match="read_replica"):
                await session.execute(text("INSERT INTO note (body) VALUES ('x')"))
        async with database.primary() as session:
            on_primary = await _where(session)
        stats = {e.name: e for e in (await database.get_stats()).engines}
    finally:
        await database.dispose()
    assert on_replica == {"port": replica_port, "standby": True}
    assert on_primary == {"port": primary_port, "standby": False}
    assert stats["r0"].routed_reads == 1
    assert stats["r0"].role == "replica"
