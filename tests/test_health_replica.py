"""Readiness with a real streaming replica (throwaway primary + ``pg_basebackup -R`` standby).

The replica is listed through :meth:`Database.engine_targets` (the public extension point the read/write split
fills); these tests add it with a subclass so the probe logic is checked on real servers: replay lag in bytes,
replica trouble is ``warn`` (still 200), and a "primary" that is really a standby fails readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from litestar_db import Database, DatabaseConfig, HealthConfig, ReadWriteConfig
from litestar_db.engines import create_engine_for
from litestar_db.health import HealthChecker
from litestar_db.stats import EngineCounters, EngineTarget, instrument_engine
from tests._server_health import NO_MIGRATIONS, ThrowawayPostgres
from tests.conftest import pg_execute

pytestmark = [pytest.mark.postgres, pytest.mark.replica]


class DatabaseWithReplica(Database):
    """A database whose engine list also holds one replica (what the read/write split contributes)."""

    def __init__(self, config: DatabaseConfig, replica_url: str) -> None:
        super().__init__(config)
        url = make_url(replica_url).set(drivername="postgresql+asyncpg")
        self.replica_engine = create_engine_for(config, url, config.pool)
        self.replica_probe = create_engine_for(config, url, config.pool, null_pool=True)
        self._counters["replica1"] = EngineCounters(config.slow_query_seconds)
        instrument_engine(self.replica_engine, self._counters["replica1"])

    def engine_targets(self) -> list[EngineTarget]:
        replica = EngineTarget(
            "replica1", "replica", self.replica_engine, self.replica_probe, self.config.pool.max_size
        )
        return [*super().engine_targets(), replica]

    async def dispose(self) -> None:
        await super().dispose()
        await self.replica_engine.dispose()
        await self.replica_probe.dispose()


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ThrowawayPostgres, ThrowawayPostgres]]:
    primary = ThrowawayPostgres()
    try:
        standby = ThrowawayPostgres(primary=primary)
    except BaseException:
        primary.destroy()
        raise
    try:
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def config_for(url: str, **read_write: object) -> DatabaseConfig:
    health = HealthConfig(cache_seconds=0, probe_timeout_seconds=2.0)
    rw = ReadWriteConfig(**read_write)  # type: ignore[arg-type]
    return DatabaseConfig(url=url, health=health, read_write=rw, migrations=NO_MIGRATIONS)


async def caught_up(primary: ThrowawayPostgres, standby: ThrowawayPostgres) -> None:
    lsn = (await pg_execute(primary.url, "SELECT pg_current_wal_lsn()::text AS lsn"))[0]["lsn"]
    for _ in range(500):
        rows = await pg_execute(standby.url, "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn AS ok", lsn)
        if rows[0]["ok"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the standby did not catch up")


async def test_replica_lag_is_reported_and_only_warns(cluster: tuple[ThrowawayPostgres, ThrowawayPostgres]) -> None:
    primary, standby = cluster
    db = DatabaseWithReplica(config_for(primary.url, max_lag_bytes=1024), standby.url)
    checker = HealthChecker(db)
    try:
        await pg_execute(primary.url, "CREATE TABLE IF NOT EXISTS lag_probe (id serial PRIMARY KEY, body text)")
        await caught_up(primary, standby)
        report = await checker.check()
        assert report.status == "pass", report
        lag = report.checks["replica1:replicationLag"][0]
        assert (lag.status, lag.lag_bytes, lag.observed_value, lag.ejected) == ("pass", 0, 0.0, False)
        assert report.checks["replica1:responseTime"][0].status == "pass"

        await pg_execute(standby.url, "SELECT pg_wal_replay_pause()")
        try:
            await pg_execute(
                primary.url, "INSERT INTO lag_probe (body) SELECT repeat('x', 100) FROM generate_series(1, 200)"
            )
            report = await checker.check()
        finally:
            await pg_execute(standby.url, "SELECT pg_wal_replay_resume()")
        lag = report.checks["replica1:replicationLag"][0]
        assert lag.status == "warn"
        assert lag.lag_bytes is not None
        assert lag.lag_bytes > 1024
        assert "max_lag_bytes" in (lag.output or "")
        assert report.status == "warn"  # replica trouble never fails readiness
        await caught_up(primary, standby)
        assert (await checker.check()).checks["replica1:replicationLag"][0].lag_bytes == 0
    finally:
        await db.dispose()


async def test_replica_down_warns_and_primary_standby_fails(
    cluster: tuple[ThrowawayPostgres, ThrowawayPostgres],
) -> None:
    primary, standby = cluster
    db = DatabaseWithReplica(config_for(primary.url), standby.url)
    on_standby = Database(config_for(standby.url))
    try:
        # a "primary" URL that reaches a standby (a failover that left the app behind): not ready
        wrong = await HealthChecker(on_standby).check()
        assert wrong.status == "fail"
        assert "recovery" in (wrong.checks["primary:responseTime"][0].output or "")

        await asyncio.to_thread(standby.stop)
        try:
            report = await HealthChecker(db).check()
        finally:
            await asyncio.to_thread(standby.start)
        assert report.status == "warn"
        assert report.checks["primary:responseTime"][0].status == "pass"
        assert report.checks["replica1:responseTime"][0].status == "fail"
        async with db.connection() as conn:  # the primary still serves
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await db.dispose()
        await on_standby.dispose()
