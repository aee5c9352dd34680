"""Test helpers for applications using litestar_db (and for litestar_db's own tests).

* :class:`ReplicatedCluster` - a throwaway PostgreSQL primary with streaming hot standbys (real replication).
* pytest fixtures in :mod:`litestar_db.testing.pytest_plugin`; enable them in your root ``conftest.py`` with
  ``pytest_plugins = ("litestar_db.testing.pytest_plugin",)``.
"""

from __future__ import annotations

from litestar_db.testing.cluster import PostgresServer, ReplicatedCluster, find_pg_bin, free_port

__all__ = ("PostgresServer", "ReplicatedCluster", "find_pg_bin", "free_port")
