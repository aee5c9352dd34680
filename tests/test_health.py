"""Health controller through a real uvicorn server: liveness, readiness, outage/recovery, probe floods, pool
exhaustion, detail visibility, guards and the OpenAPI schema."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import ConfigurationError, Database, DatabaseConfig, HealthConfig, PoolConfig
from litestar_db.health import HealthChecker
from litestar_db.litestar.plugin import DatabasePlugin
from litestar_db.testing.cluster import ReplicatedCluster
from tests._server_health import NO_MIGRATIONS, closed_port
from tests.conftest import pg_execute
from tests.server import serve

PASSWORD = "pw-s3cret-9f2"


def _with_password(url: str) -> str:
    """The same URL carrying a password (the servers use trust auth, so any password is accepted)."""
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


@get("/use-db")
async def use_db(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    return {"one": (await db_session.execute(text("SELECT 1"))).scalar_one()}


def make_app(config: DatabaseConfig, **kwargs: Any) -> tuple[Litestar, DatabasePlugin]:
    plugin = DatabasePlugin(replace(config, migrations=NO_MIGRATIONS))  # migrations: tests/test_health_migrations.py
    return Litestar(route_handlers=[use_db], plugins=[plugin], **kwargs), plugin


def assert_no_secrets(body: str, url: str) -> None:
    parsed = make_url(url)
    assert PASSWORD not in body
    assert "postgresql://" not in body
    assert "asyncpg" not in body
    assert f"{parsed.username}@" not in body


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[ReplicatedCluster]:
    """A cluster of this module's own (stopped and restarted by a test; pg_stat_statements loaded)."""
    cluster = ReplicatedCluster(settings={"shared_preload_libraries": "'pg_stat_statements'"}).start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_live_passes_and_ready_fails_while_database_unreachable() -> None:
    url = _with_password(f"postgresql://app@127.0.0.1:{closed_port()}/app")
    app, _ = make_app(DatabaseConfig(url=url, health=HealthConfig(show_details="always")))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        live = await client.get("/health/live")
        ready = await client.get("/health/ready")
    assert live.status_code == 200
    assert live.json() == {"status": "pass"}
    assert live.headers["content-type"].startswith("application/health+json")
    assert ready.status_code == 503
    assert ready.headers["retry-after"] == "5"
    assert ready.headers["content-type"].startswith("application/health+json")
    body = ready.json()
    assert body["status"] == "fail"
    check = body["checks"]["primary:responseTime"][0]
    assert check["status"] == "fail"
    assert "unreachable" in check["output"]
    assert_no_secrets(ready.text, url)


@pytest.mark.postgres
async def test_ready_follows_primary_outage_and_recovery(own_cluster: ReplicatedCluster) -> None:
    assert own_cluster.primary is not None
    server = own_cluster.primary
    cache = 0.5
    health = HealthConfig(cache_seconds=cache, probe_timeout_seconds=1.0, retry_after_seconds=7)
    app, _ = make_app(DatabaseConfig(url=server.url(), health=health))
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.get("/health/ready")).status_code == 200
        await asyncio.to_thread(server.stop)
        try:
            await asyncio.sleep(cache)
            down = await client.get("/health/ready")
            assert down.status_code == 503
            assert down.headers["retry-after"] == "7"
            assert down.json()["status"] == "fail"
            assert (await client.get("/health/live")).status_code == 200
        finally:
            await asyncio.to_thread(server.start)
        # the server accepts connections again: one cache interval later readiness must pass
        await asyncio.sleep(cache)
        up = await client.get("/health/ready")
        assert up.status_code == 200, up.text
        assert up.json()["status"] == "pass"


@pytest.mark.postgres
async def test_probe_flood_sends_at_most_one_statement_per_interval(own_cluster: ReplicatedCluster) -> None:
    assert own_cluster.primary is not None
    url = own_cluster.primary.url()
    await pg_execute(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    cache = 1.0
    app, plugin = make_app(DatabaseConfig(url=url, health=HealthConfig(cache_seconds=cache)))
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=500)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        statements: list[float] = []  # when each probe statement was sent
        probe_engine = plugin.database.probe_engine().sync_engine
        event.listen(probe_engine, "before_cursor_execute", lambda *args: statements.append(time.monotonic()))
        await pg_execute(url, "SELECT pg_stat_statements_reset()")
        started = time.monotonic()
        responses = await asyncio.gather(*(client.get("/health/ready") for _ in range(500)))
        elapsed = time.monotonic() - started
        probes_run = plugin.health.probes_run
    assert [r.status_code for r in responses] == [200] * 500
    sql = "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_statements WHERE query LIKE '%pg_is_in_recovery%'"
    rows = await pg_execute(url, sql)
    server_count = int(rows[0]["n"])
    allowed = math.ceil(elapsed / cache) + 1
    assert 1 <= len(statements) <= allowed, (len(statements), elapsed)
    assert server_count == len(statements)
    assert probes_run == len(statements)
    # one statement per cache interval at most: consecutive probes are at least cache_seconds apart
    assert all(later - earlier >= cache for earlier, later in itertools.pairwise(statements))
    print(f"500 readiness probes in {elapsed:.2f} s -> {len(statements)} probe statement(s)")


@pytest.mark.postgres
async def test_ready_answers_and_reports_exhaustion_when_pool_is_exhausted(pg_url: str) -> None:
    config = DatabaseConfig(
        url=pg_url,
        pool=PoolConfig(min_size=1, max_size=2, timeout=30),
        health=HealthConfig(show_details="always", probe_timeout_seconds=1.0),
    )
    app, plugin = make_app(config)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        db = plugin.database
        held = [await db.engine.connect() for _ in range(2)]
        for conn in held:
            await conn.execute(text("SELECT 1"))
        waiting = asyncio.create_task(client.get("/use-db"))
        for _ in range(200):
            if db.stats_snapshot().engines[0].pool.waiting == 1:
                break
            await asyncio.sleep(0.01)
        # the pool would make a pooled probe wait 30 s; the probe answers within its own 1 s budget (+ slack)
        ready = await client.get("/health/ready", timeout=4)
        for conn in held:
            await conn.close()
        assert (await waiting).status_code == 200
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "warn"
    assert body["checks"]["primary:responseTime"][0]["status"] == "pass"
    connections = body["checks"]["primary:connections"][0]
    assert connections["status"] == "warn"
    assert "exhausted" in connections["output"]
    assert connections["pool"]["checked_out"] == 2
    assert connections["pool"]["waiting"] == 1
    assert connections["observedValue"] == 2


class HeaderAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        if connection.headers.get("authorization") != "Bearer ops":
            return AuthenticationResult(user=None, auth=None)
        return AuthenticationResult(user="ops", auth="token")


@pytest.mark.postgres
async def test_details_are_shown_only_to_authenticated_callers(pg_url: str) -> None:
    url = _with_password(pg_url)
    app, _ = make_app(DatabaseConfig(url=url), middleware=[HeaderAuth])
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        anonymous = await client.get("/health/ready")
        authenticated = await client.get("/health/ready", headers={"Authorization": "Bearer ops"})
    assert anonymous.status_code == authenticated.status_code == 200
    public = anonymous.json()["checks"]
    assert set(public) == {"primary:responseTime", "primary:connections"}
    for check in (c for items in public.values() for c in items):
        assert set(check) <= {"status", "componentId", "componentType", "time", "output", "ejected", "pending"}
    detailed = authenticated.json()["checks"]
    database = make_url(pg_url).database
    assert detailed["primary:responseTime"][0]["location"] == f"127.0.0.1:5432/{database}"
    assert detailed["primary:responseTime"][0]["observedUnit"] == "ms"
    assert "checked_out" in detailed["primary:connections"][0]["pool"]
    assert "127.0.0.1" not in anonymous.text
    for response in (anonymous, authenticated):
        assert_no_secrets(response.text, url)


@pytest.mark.postgres
async def test_details_predicate_and_invalid_setting(pg_url: str) -> None:
    health = HealthConfig(show_details=lambda request: request.headers.get("x-ops") == "1")
    app, _ = make_app(DatabaseConfig(url=pg_url, health=health))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        shown = (await client.get("/health/ready", headers={"x-ops": "1"})).json()
        hidden = (await client.get("/health/ready")).json()
    assert "pool" in shown["checks"]["primary:connections"][0]
    assert "pool" not in hidden["checks"]["primary:connections"][0]
    with pytest.raises(ConfigurationError, match=r"health\.show_details"):
        HealthConfig(show_details="sometimes")  # type: ignore[arg-type]


def deny(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    raise NotAuthorizedException("internal only")


async def test_path_guards_and_disabling(sqlite_url: str) -> None:
    guarded, _ = make_app(DatabaseConfig(url=sqlite_url, health=HealthConfig(path="/status", guards=(deny,))))
    disabled, _ = make_app(DatabaseConfig(url=sqlite_url, health=HealthConfig(enabled=False)))
    async with serve(guarded) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/status/live")).status_code == 401
        assert (await client.get("/status/ready")).status_code == 401
        assert (await client.get("/health/live")).status_code == 404
    async with serve(disabled) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/health/live")).status_code == 404
        assert (await client.get("/health/ready")).status_code == 404
        assert (await client.get("/use-db")).status_code == 200


async def test_health_routes_never_use_the_request_pool(sqlite_url: str) -> None:
    app, plugin = make_app(DatabaseConfig(url=sqlite_url, health=HealthConfig(cache_seconds=0)))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        for _ in range(5):
            assert (await client.get("/health/live")).status_code == 200
            ready = await client.get("/health/ready")
            assert ready.status_code == 200
            assert ready.json()["status"] == "pass"
        before = plugin.database.stats_snapshot().engines[0]
        assert (await client.get("/use-db")).status_code == 200
        after = plugin.database.stats_snapshot().engines[0]
        assert plugin.health.probes_run == 5
    # readiness probed five times, yet the request pool never opened a connection nor ran a statement
    assert (before.pool.connections_created, before.queries, before.commits) == (0, 0, 0)
    assert after.pool.connections_created == 1
    assert after.queries == 1


async def test_openapi_documents_health_routes(sqlite_url: str) -> None:
    app, _ = make_app(DatabaseConfig(url=sqlite_url))
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        schema = (await client.get("/schema/openapi.json")).json()
    ready = schema["paths"]["/health/ready"]["get"]
    assert set(ready["responses"]) >= {"200", "503"}
    assert "application/health+json" in ready["responses"]["503"]["content"]
    assert "application/health+json" in ready["responses"]["200"]["content"]
    assert "HealthResponse" in schema["components"]["schemas"]
    assert "HealthCheck" in schema["components"]["schemas"]


@pytest.mark.postgres
async def test_concurrent_checks_share_one_probe_in_flight(pg_url: str) -> None:
    # no cache at all: only single-flight keeps 200 simultaneous callers to one probe round
    db = Database(DatabaseConfig(url=pg_url, health=HealthConfig(cache_seconds=0), migrations=NO_MIGRATIONS))
    checker = HealthChecker(db)
    statements: list[str] = []
    event.listen(db.probe_engine().sync_engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    try:
        reports = await asyncio.gather(*(checker.check() for _ in range(200)))
        assert {r.status for r in reports} == {"pass"}
        assert (len(statements), checker.probes_run) == (1, 1)
        await checker.check()  # the next call after the probe finished probes again (cache_seconds=0)
        assert (len(statements), checker.probes_run) == (2, 2)
    finally:
        await db.dispose()
