"""Testing read/write routing against a real primary and streaming standby (``litestar_db.testing``).

Enable the fixtures once, in the root ``conftest.py``::

    pytest_plugins = ("litestar_db.testing.pytest_plugin",)
"""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from litestar_db import Database, DatabaseConfig, ReadWriteConfig, ReplicaConfig
from litestar_db.testing.pytest_plugin import ReplicaDatabase

from .litestar_app import create_app
from .models import create_tables


# [replica_test]
@pytest.mark.replica
async def test_own_write_is_visible_despite_replica_lag(replica_db: ReplicaDatabase) -> None:
    """``replica_db``: a fresh database on a throwaway primary + hot standby (started once per session)."""
    setup = Database(DatabaseConfig(url=replica_db.primary_url))
    await create_tables(setup.engine)
    await setup.dispose()
    replica_db.cluster.wait_for_catchup()  # the standby has the tables
    replica_db.cluster.set_apply_delay(2.0)  # from now on it replays WAL two seconds late
    config = DatabaseConfig(
        url=replica_db.primary_url,
        read_write=ReadWriteConfig(
            enable_read_write_split=True,
            replicas=(ReplicaConfig(url=replica_db.replica_urls[0], name="standby"),),
        ),
    )
    async with AsyncTestClient(app=create_app(config)) as client:  # keeps cookies, like a browser
        created = await client.post("/users", json={"email": "ada@example.com", "name": "Ada"})
        assert created.status_code == 201
        # same client, immediately: the read-your-writes cookie sends this GET to the primary
        found = await client.get("/users/by-email", params={"email": "ada@example.com"})
        assert found.status_code == 200


# [/replica_test]
