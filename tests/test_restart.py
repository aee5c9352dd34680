"""C06: PostgreSQL restarted under a running app (a throwaway server from litestar_db.testing)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from litestar import Litestar, get
from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import DatabaseConfig, DatabasePlugin, PoolConfig, get_database
from litestar_db.testing.pytest_plugin import ReplicaDatabase
from tests.server import serve

pytestmark = [pytest.mark.postgres, pytest.mark.replica]


@get("/now")
async def now(db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    return {"now": str((await db_session.execute(text("SELECT now()"))).scalar_one())}


async def test_c06_restart_while_running(replica_db: ReplicaDatabase) -> None:
    primary = replica_db.cluster.primary
    assert primary is not None
    config = DatabaseConfig(url=replica_db.primary_url, pool=PoolConfig(min_size=3, max_size=3, timeout=2))
    app = Litestar([now], plugins=[DatabasePlugin(config)])
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=10) as client:
        warm = await asyncio.gather(*(client.get("/now") for _ in range(3)))  # three pooled connections
        assert [r.status_code for r in warm] == [200, 200, 200]
        assert (await get_database().get_stats()).engines[0].pool.checked_in == 3

        await asyncio.to_thread(primary.stop, "fast")  # every pooled connection is now dead
        try:
            down = await client.get("/now")
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "5"
        finally:
            await asyncio.to_thread(primary.start)

        back = [await client.get("/now") for _ in range(4)]  # the first request after the restart already works
        assert [r.status_code for r in back] == [200] * 4
        stats = (await get_database().get_stats()).engines[0].pool
        assert stats.connections_invalidated >= 1
        assert stats.checked_out == 0
