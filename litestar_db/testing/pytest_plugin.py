"""pytest fixtures: a session-wide PostgreSQL primary + streaming standby, and a fresh database per test.

Enable in the root ``conftest.py``::

    pytest_plugins = ("litestar_db.testing.pytest_plugin",)

``replicated_cluster`` starts once per test session (``initdb`` once, a few seconds) and is shared; each test
that asks for ``replica_db`` gets its own database, created on the primary and visible on every standby before
the test starts. After each test the standbys are restored (started, replay resumed, no apply delay, caught up)
so a test that stops or pauses a standby cannot break the next one. Tests are skipped when the PostgreSQL
server binaries are not installed, and fail instead with ``LITESTAR_DB_REQUIRE_REPLICA=1`` (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from litestar_db.testing.cluster import ReplicatedCluster, find_pg_bin

__all__ = ("ReplicaDatabase", "replica_db", "replicated_cluster")


@dataclass(frozen=True)
class ReplicaDatabase:
    """One test database on the cluster."""

    name: str
    """Database name (the same on the primary and the standbys)."""
    cluster: ReplicatedCluster
    """The shared cluster (stop/start standbys, pause replay, set an apply delay, read server logs)."""

    @property
    def primary_url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<primary port>/<name>``."""
        assert self.cluster.primary is not None
        return self.cluster.primary.url(self.name)

    @property
    def replica_urls(self) -> list[str]:
        """URLs of the same database on each standby, in standby order."""
        return [server.url(self.name) for server in self.cluster.replicas]


@pytest.fixture(scope="session")
def replicated_cluster() -> Iterator[ReplicatedCluster]:
    """A running primary + one streaming standby for the whole session (more via ``add_replica()``)."""
    try:
        find_pg_bin()
    except RuntimeError as exc:
        if os.environ.get("LITESTAR_DB_REQUIRE_REPLICA") == "1":  # CI: a skipped replica suite is a failure
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    cluster = ReplicatedCluster(replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def replica_db(replicated_cluster: ReplicatedCluster) -> Iterator[ReplicaDatabase]:
    """A fresh database present on the primary and every standby; dropped (and the standbys restored) after."""
    name = f"ltdb_r_{uuid.uuid4().hex[:12]}"
    replicated_cluster.create_database(name)
    try:
        yield ReplicaDatabase(name, replicated_cluster)
    finally:
        replicated_cluster.restore()
        replicated_cluster.drop_database(name)
