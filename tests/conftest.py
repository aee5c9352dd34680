"""Shared fixtures: a fresh PostgreSQL database per test (real server) and a fresh SQLite file.

``LITESTAR_DB_TEST_PG_URL`` points at a PostgreSQL server whose user may create databases
(default ``postgresql://postgres@127.0.0.1:5432/test``). Each test that asks for ``pg_url`` gets its own
database, dropped afterwards, so tests can count connections in ``pg_stat_activity`` without interference.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from litestar_db.testing.pytest_plugin import ReplicaDatabase

pytest_plugins = ("litestar_db.testing.pytest_plugin",)
# replicated_cluster / replica_db: a throwaway primary + streaming standby (see litestar_db.testing).

ADMIN_URL = os.environ.get("LITESTAR_DB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _plain(url: str) -> str:
    """asyncpg wants ``postgresql://`` without a driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """URL of a brand-new, empty PostgreSQL database (dropped after the test)."""
    name = f"ltdb_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_plain(ADMIN_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(ADMIN_URL).set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    yield url
    admin = await asyncpg.connect(_plain(ADMIN_URL))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh SQLite file in the test's temp dir."""
    return f"sqlite:///{tmp_path / 'test.sqlite3'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


async def pg_execute(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on ``url`` over a separate asyncpg connection (an independent observer)."""
    conn = await asyncpg.connect(_plain(url))
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture
def notes_replica_db(replica_db: ReplicaDatabase) -> ReplicaDatabase:
    """``replica_db`` with a ``note (id, body)`` table, replayed on the standbys."""
    assert replica_db.cluster.primary is not None
    replica_db.cluster.primary.sql("CREATE TABLE note (id serial PRIMARY KEY, body text NOT NULL)", replica_db.name)
    replica_db.cluster.wait_for_catchup()
    return replica_db
