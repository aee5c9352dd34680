"""The session-free read path's plan cache, schema changes under it, and the connection settings its statement
classifier relies on, on PostgreSQL (found by breakers)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, text

from litestar_db import Database, DatabaseConfig, DatabaseError, PoolConfig
from litestar_db import fetch as fetch_module
from tests.conftest import pg_execute

pytestmark = pytest.mark.postgres


def one_connection(url: str) -> Database:
    return Database(DatabaseConfig(url=url, pool=PoolConfig(min_size=1, max_size=1, pre_ping=False)))


def log_driver_queries(db: Database) -> list[str]:
    """The SQL the driver path sends (asyncpg's query loggers do not see SQLAlchemy's prepared statements)."""
    sent: list[str] = []

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.driver_connection.add_query_logger(lambda record: sent.append(record.query))

    event.listen(db.engine.sync_engine.pool, "connect", on_connect)
    return sent


async def test_a_full_plan_cache_drops_its_least_recently_used_plan(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plan holds its compiled statement, so statements with plans never died: once the cache was full, a statement
    # defined later never got the driver path. Now the least recently used plan makes room.
    monkeypatch.setattr(fetch_module, "_MAX_PLANS", 4)
    db = one_connection(pg_url)
    sent = log_driver_queries(db)
    hot = text("SELECT 1 AS hot")
    crowd = [text(f"SELECT {n} AS crowd") for n in range(6)]
    try:
        for statement in [hot, *crowd]:
            for _ in range(2):  # each one compiled into a plan
                await db.scalar(statement)
        late = text("SELECT 2 AS late")
        answers = [await db.scalar(late) for _ in range(3)]
        assert len(db.reader._plans) <= 4
    finally:
        await db.dispose()
    assert answers == [2, 2, 2]
    assert sent.count("SELECT 2 AS late") == 2  # second and third read on the driver path


async def test_a_type_altered_under_a_cached_plan_is_a_statement_error_not_a_lost_connection(pg_url: str) -> None:
    # asyncpg's OutdatedSchemaCacheError (an InternalClientError) was reported as a lost connection: 503 with
    # Retry-After, and a healthy replica ejected
    await pg_execute(pg_url, "CREATE TYPE pair AS (a int, b int)")
    await pg_execute(pg_url, "CREATE TABLE pairs (p pair)")
    await pg_execute(pg_url, "INSERT INTO pairs VALUES (ROW(1, 2))")
    db = one_connection(pg_url)
    statement = text("SELECT p FROM pairs")
    try:
        for _ in range(3):  # Core, then the driver path with the composite's codec cached on the connection
            assert await db.scalar(statement) == (1, 2)
        await pg_execute(pg_url, "ALTER TYPE pair ADD ATTRIBUTE c int CASCADE")
        with pytest.raises(DatabaseError) as info:
            await db.scalar(statement)
        assert type(info.value) is DatabaseError
        assert await db.scalar(statement) == (1, 2, None)  # asyncpg dropped its stale codec; same connection
    finally:
        await db.dispose()


async def test_connections_read_string_literals_as_the_classifier_does(pg_url: str) -> None:
    # The classifier reads '...' without backslash escapes (standard_conforming_strings on): a server or database
    # configured otherwise must not read the same text differently on litestar_db's connections.
    name = pg_url.rsplit("/", 1)[1]
    await pg_execute(pg_url, f'ALTER DATABASE "{name}" SET standard_conforming_strings = off')
    db = one_connection(pg_url)
    try:
        assert await db.scalar(text("SHOW standard_conforming_strings")) == "on"
        assert await db.scalar(text("SELECT length('a\\b')")) == 3  # the backslash is a character
    finally:
        await db.dispose()
