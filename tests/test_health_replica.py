"""Readiness, stats and metrics with the read/write split's replicas: the session's throwaway primary and streaming
standby (:mod:`litestar_db.testing`), a fresh database per test. Replica trouble (lag over the limit, ejection,
outage) is ``warn`` and readiness stays 200; a "primary" URL that reaches a standby fails readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from litestar_db import Database, DatabaseConfig, HealthConfig, ReadWriteConfig, ReplicaConfig
from litestar_db.health import HealthChecker
from litestar_db.metrics import DatabaseCollector
from litestar_db.testing.pytest_plugin import ReplicaDatabase
from tests._server_health import NO_MIGRATIONS
from tests.conftest import pg_execute

pytestmark = [pytest.mark.postgres, pytest.mark.replica]


def split_config(replica_db: ReplicaDatabase, **read_write: object) -> DatabaseConfig:
    rw = ReadWriteConfig(
        enable_read_write_split=True,
        replicas=(ReplicaConfig(url=replica_db.replica_urls[0], name="reader"),),
        monitor_interval_seconds=0.1,
        **read_write,  # type: ignore[arg-type]
    )
    health = HealthConfig(cache_seconds=0, probe_timeout_seconds=2.0)
    return DatabaseConfig(url=replica_db.primary_url, read_write=rw, health=health, migrations=NO_MIGRATIONS)


async def until(predicate: Callable[[], bool], attempts: int = 200) -> None:
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_split_replicas_are_probed_counted_and_exported(replica_db: ReplicaDatabase) -> None:
    db = Database(split_config(replica_db, failure_cooldown_seconds=30))
    checker = HealthChecker(db)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(lambda: {"main": db}))
    try:
        await db.start()
        assert [t.name for t in db.engine_targets()] == ["primary", "reader"]
        report = await checker.check()
        assert report.status == "pass", report
        assert set(report.checks) >= {"reader:responseTime", "reader:connections", "reader:replicationLag"}
        assert report.checks["reader:replicationLag"][0].ejected is False
        assert [e.name for e in (await db.get_stats()).engines] == ["primary", "reader"]
        assert 'db_pool_connections{database="main",engine="reader",state="idle"}' in generate_latest(registry).decode()

        await asyncio.to_thread(replica_db.cluster.stop_replica)
        try:
            await until(lambda: db.engine_targets()[1].ejected)  # the routing layer's lag monitor ejects it
            report = await checker.check()
            exported = generate_latest(registry).decode()
        finally:
            await asyncio.to_thread(replica_db.cluster.start_replica)
        lag = report.checks["reader:replicationLag"][0]
        assert (lag.status, lag.ejected) == ("warn", True)
        assert "ejected" in (lag.output or "")
        assert report.checks["reader:responseTime"][0].status == "fail"
        assert report.status == "warn"  # the primary serves: still ready
        assert report.checks["primary:responseTime"][0].status == "pass"
        assert 'db_replica_ejected{database="main",engine="reader"} 1.0' in exported
        assert (await db.get_stats()).engines[1].healthy is False
    finally:
        await db.dispose()


async def test_replica_lag_is_reported_and_only_warns(replica_db: ReplicaDatabase) -> None:
    primary_url, replica_url = replica_db.primary_url, replica_db.replica_urls[0]
    db = Database(split_config(replica_db, max_lag_bytes=1024, failure_cooldown_seconds=0.2))
    checker = HealthChecker(db)
    try:
        await db.start()
        await pg_execute(primary_url, "CREATE TABLE IF NOT EXISTS lag_probe (id serial PRIMARY KEY, body text)")
        reader = lambda: db.engine_targets()[1]  # noqa: E731
        await until(lambda: reader().lag_bytes == 0 and not reader().ejected)
        report = await checker.check()
        assert report.status == "pass", report
        lag = report.checks["reader:replicationLag"][0]
        assert (lag.status, lag.lag_bytes, lag.ejected) == ("pass", 0, False)

        await pg_execute(replica_url, "SELECT pg_wal_replay_pause()")
        try:
            await pg_execute(
                primary_url, "INSERT INTO lag_probe (body) SELECT repeat('x', 100) FROM generate_series(1, 200)"
            )
            await until(lambda: (reader().lag_bytes or 0) > 1024)
            report = await checker.check()
        finally:
            await pg_execute(replica_url, "SELECT pg_wal_replay_resume()")
        lag = report.checks["reader:replicationLag"][0]
        assert lag.status == "warn"
        assert lag.lag_bytes is not None
        assert lag.lag_bytes > 1024
        assert "max_lag_bytes" in (lag.output or "")
        assert report.status == "warn"  # replica trouble never fails readiness
        await until(lambda: reader().lag_bytes == 0 and not reader().ejected)
        assert (await checker.check()).status == "pass"
    finally:
        await db.dispose()


async def test_primary_url_reaching_a_standby_fails(replica_db: ReplicaDatabase) -> None:
    health = HealthConfig(cache_seconds=0, probe_timeout_seconds=2.0)
    db = Database(DatabaseConfig(url=replica_db.replica_urls[0], health=health, migrations=NO_MIGRATIONS))
    try:
        report = await HealthChecker(db).check()  # a failover that left the app pointing at the old primary
    finally:
        await db.dispose()
    assert report.status == "fail"
    assert "recovery" in (report.checks["primary:responseTime"][0].output or "")
