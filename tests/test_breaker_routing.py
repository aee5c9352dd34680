"""Breaker findings on read/write routing: regression tests (each failed before its fix).

Real primary + streaming standby (``replica_db``); which server ran a statement is proven by the server itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar, get, post
from litestar.di import NamedDependency, Provide
from litestar.testing import AsyncTestClient
from sqlalchemy import Column, Integer, MetaData, Sequence, Table, func, select, text, update

from litestar_db import Database, DatabaseConfig, DatabasePlugin, ReadWriteConfig, ReplicaConfig, transactional
from litestar_db.litestar.guards import read_only
from litestar_db.session import AsyncSession
from litestar_db.testing.pytest_plugin import ReplicaDatabase
from tests.conftest import pg_execute

pytestmark = [pytest.mark.postgres, pytest.mark.replica]

counter = Table("counter", MetaData(), Column("id", Integer, primary_key=True), Column("n", Integer))
order_no = Sequence("order_no")


@get("/next-order-number")
async def next_order_number(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    # SQLAlchemy's documented way to draw a sequence value: SELECT nextval('order_no')
    return {"n": await db_session.scalar(select(order_no.next_value()))}


@get("/bump")
async def bump(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    # a data-modifying CTE built with Core: WITH u AS (UPDATE … RETURNING n) SELECT n FROM u
    u = update(counter).values(n=counter.c.n + 1).returning(counter.c.n).cte("u")
    return {"n": await db_session.scalar(select(u.c.n))}


@get("/lock")
async def lock(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    got = await db_session.scalar(select(func.pg_try_advisory_lock(42)))
    standby = await db_session.scalar(select(func.pg_is_in_recovery()))
    return {"got": got, "lock_taken_on_standby": standby}


def _config(db: ReplicaDatabase, **read_write: Any) -> DatabaseConfig:
    replicas = (ReplicaConfig(url=db.replica_urls[0], name="r0"),)
    return DatabaseConfig(
        url=db.primary_url,
        read_write=ReadWriteConfig(enable_read_write_split=True, replicas=replicas, **read_write),
    )


async def _prepare(db: ReplicaDatabase) -> None:
    await pg_execute(db.primary_url, "CREATE SEQUENCE order_no")
    await pg_execute(db.primary_url, "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
    await pg_execute(db.primary_url, "INSERT INTO counter VALUES (1, 0)")
    db.cluster.wait_for_catchup()


async def test_sequence_next_value_goes_to_primary(replica_db: ReplicaDatabase) -> None:
    await _prepare(replica_db)
    app = Litestar([next_order_number], plugins=[DatabasePlugin(_config(replica_db))])
    async with AsyncTestClient(app) as client:
        response = await client.get("/next-order-number")
    assert response.status_code == 200, response.text
    assert response.json() == {"n": 1}


async def test_select_from_data_modifying_cte_goes_to_primary(replica_db: ReplicaDatabase) -> None:
    await _prepare(replica_db)
    app = Litestar([bump], plugins=[DatabasePlugin(_config(replica_db))])
    async with AsyncTestClient(app) as client:
        response = await client.get("/bump")
    assert response.status_code == 200, response.text
    assert response.json() == {"n": 1}
    assert (await pg_execute(replica_db.primary_url, "SELECT n FROM counter"))[0]["n"] == 1


async def test_advisory_lock_is_taken_on_the_primary(replica_db: ReplicaDatabase) -> None:
    await _prepare(replica_db)
    app = Litestar([lock], plugins=[DatabasePlugin(_config(replica_db))])
    async with AsyncTestClient(app) as client:
        response = await client.get("/lock")
    assert response.status_code == 200, response.text
    assert response.json() == {"got": True, "lock_taken_on_standby": False}


async def test_read_your_writes_token_survives_another_worker_configured_from_env(replica_db: ReplicaDatabase) -> None:
    env = {"DATABASE_URL": replica_db.primary_url, "DATABASE_REPLICA_URLS": replica_db.replica_urls[0]}
    # two workers of one deployment (uvicorn --workers 2): same environment, separate processes/Database objects;
    # every documented or guessable variable for the secret is set, as an operator would do
    for name in ("DATABASE_TOKEN_SECRET", "DATABASE_READ_WRITE_TOKEN_SECRET", "DATABASE_RYW_SECRET"):
        env[name] = "shared-secret"
    worker_a = Database(DatabaseConfig.from_env(env))
    worker_b = Database(DatabaseConfig.from_env(env))
    try:
        assert worker_a.router is not None
        assert worker_b.router is not None
        token, _ = await worker_a.router.issue_token()  # POST answered by worker A
        assert worker_b.router.verify_token(token) is not None  # the next GET lands on worker B
    finally:
        await worker_a.dispose()
        await worker_b.dispose()


@get("/report", opt={"db_isolation_level": "REPEATABLE READ"})
async def report(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    # several reads that must share one snapshot (a consistent report): the route's level keeps it on one server
    level = await db_session.scalar(text("SHOW transaction_isolation"))
    standby = await db_session.scalar(select(func.pg_is_in_recovery()))
    return {"level": level, "standby": standby}


@get("/report-read-only", guards=[read_only], opt={"db_isolation_level": "REPEATABLE READ"})
async def report_read_only(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    level = await db_session.scalar(text("SHOW transaction_isolation"))
    standby = await db_session.scalar(select(func.pg_is_in_recovery()))
    ro = await db_session.scalar(text("SHOW transaction_read_only"))
    return {"level": level, "standby": standby, "read_only": ro}


async def test_route_isolation_level_in_read_only_mode_reads_the_primary_read_only(
    replica_db: ReplicaDatabase,
) -> None:
    """A ``read_only`` route with an isolation level: the level holds (on the primary), and writes stay refused."""
    app = Litestar([report_read_only], plugins=[DatabasePlugin(_config(replica_db))])
    async with AsyncTestClient(app) as client:
        response = await client.get("/report-read-only")
    assert response.status_code == 200, response.text
    assert response.json() == {"level": "repeatable read", "standby": False, "read_only": "on"}


async def test_route_isolation_level_runs_the_reads_on_the_primary(replica_db: ReplicaDatabase) -> None:
    app = Litestar([report], plugins=[DatabasePlugin(_config(replica_db))])
    async with AsyncTestClient(app) as client:
        response = await client.get("/report")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"level": "repeatable read", "standby": False}


@get("/plan")
async def plan(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    return {"plan": await db_session.scalar(text("SELECT name FROM plan"))}


async def test_replica_that_is_not_a_standby_is_taken_out_of_rotation(replica_db: ReplicaDatabase, pg_url: str) -> None:
    # the "replica" URL points at a server that is not in recovery (e.g. a standby promoted during an incident,
    # or a typo pointing at another cluster): it has the same schema but different data
    for url, name in ((replica_db.primary_url, "primary data"), (pg_url, "other database")):
        await pg_execute(url, "CREATE TABLE plan (name TEXT)")
        await pg_execute(url, f"INSERT INTO plan VALUES ('{name}')")
    config = DatabaseConfig(
        url=replica_db.primary_url,
        read_write=ReadWriteConfig(
            enable_read_write_split=True,
            replicas=(ReplicaConfig(url=pg_url, name="r0"),),
            monitor_interval_seconds=0.1,
        ),
    )
    app = Litestar([plan], plugins=[DatabasePlugin(config)])
    async with AsyncTestClient(app) as client:
        await asyncio.sleep(0.5)  # several probe rounds: the monitor has seen pg_is_in_recovery() = false
        response = await client.get("/plan")
        ready = await client.get("/health/ready")
    assert response.json() == {"plan": "primary data"}
    assert ready.json()["status"] != "pass", "readiness must flag a replica that is not a standby"


REPLICA_URL_KEY = "replica_url"


@get("/visit")
async def visit(db_session: NamedDependency[AsyncSession], replica_url: NamedDependency[str]) -> dict[str, Any]:
    # GET in the default "replica" mode: a read on the replica, then a write (primary); then the replica restarts
    # (here: its backend is terminated) before the response starts
    pid = await db_session.scalar(text("SELECT pg_backend_pid()"))
    await db_session.execute(text("INSERT INTO visit DEFAULT VALUES"))
    await pg_execute(replica_url, "SELECT pg_terminate_backend($1)", pid)
    await asyncio.sleep(0.1)
    return {"ok": True}


async def test_replica_lost_after_read_does_not_lose_the_primary_write(replica_db: ReplicaDatabase) -> None:
    await pg_execute(replica_db.primary_url, "CREATE TABLE visit (id SERIAL PRIMARY KEY)")
    replica_db.cluster.wait_for_catchup()
    replica_url = replica_db.replica_urls[0]
    app = Litestar(
        [visit],
        plugins=[DatabasePlugin(_config(replica_db))],
        dependencies={REPLICA_URL_KEY: Provide(lambda: replica_url, sync_to_thread=False)},
    )
    async with AsyncTestClient(app) as client:
        response = await client.get("/visit")
    rows = await pg_execute(replica_db.primary_url, "SELECT id FROM visit")
    assert (response.status_code, len(rows)) == (200, 1), response.text


@post("/orders", status_code=201)
@transactional()
async def create_order(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    await db_session.execute(text("INSERT INTO orders DEFAULT VALUES"))
    return {"ok": True}


@get("/orders")
async def list_orders(db_session: NamedDependency[AsyncSession]) -> dict[str, Any]:
    return {"count": await db_session.scalar(text("SELECT count(*) FROM orders"))}


async def test_read_your_writes_after_a_transactional_handler(replica_db: ReplicaDatabase) -> None:
    await pg_execute(replica_db.primary_url, "CREATE TABLE orders (id SERIAL PRIMARY KEY)")
    replica_db.cluster.wait_for_catchup()
    replica_db.cluster.set_apply_delay(2)
    app = Litestar([create_order, list_orders], plugins=[DatabasePlugin(_config(replica_db))])
    async with AsyncTestClient(app) as client:
        created = await client.post("/orders")
        listed = await client.get("/orders")  # same client (cookies kept), right after its write
    assert created.status_code == 201
    assert listed.json() == {"count": 1}
