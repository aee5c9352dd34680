"""The core API without Litestar: session / transaction / connection, savepoints, isolation, registry, cleanup."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import String, create_engine, text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from litestar_db import (
    ConflictError,
    Database,
    DatabaseConfig,
    PoolConfig,
    cleanup_database,
    connection,
    get_database,
    initialize_database,
    read_replica,
    session,
    transaction,
)
from litestar_db.engines import isolation_level_engine
from litestar_db.session import LazyLoadError, SyncSession
from tests.conftest import pg_execute


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(DatabaseConfig(url=db_url))
    async with database.connection() as conn:
        await conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, name VARCHAR(50) UNIQUE NOT NULL)"))
    yield database
    await database.dispose()


async def names(db: Database) -> list[str]:
    async with db.session() as s:
        return list((await s.execute(text("SELECT name FROM item ORDER BY id"))).scalars())


async def test_transaction_commits_on_exit(db: Database) -> None:
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO item VALUES (1, 'a')"))
    assert await names(db) == ["a"]


async def test_transaction_rolls_back_on_exception(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO item VALUES (1, 'a')"))
            raise RuntimeError
    assert await names(db) == []


async def test_session_leaves_commit_to_caller_and_rolls_back_leftovers(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with db.session() as s:
        await s.execute(text("INSERT INTO item VALUES (1, 'kept')"))
        await s.commit()
        s.info["wrote"] = True  # a raw-SQL write the ORM cannot see
        await s.execute(text("INSERT INTO item VALUES (2, 'dropped')"))
    assert await names(db) == ["kept"]
    assert any("test_core.py" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


async def test_nested_transaction_is_a_savepoint(db: Database) -> None:
    async with db.transaction() as outer:
        await outer.execute(text("INSERT INTO item VALUES (1, 'outer')"))
        with pytest.raises(ValueError, match="inner"):
            async with db.transaction() as inner:
                assert inner is outer
                await inner.execute(text("INSERT INTO item VALUES (2, 'inner')"))
                raise ValueError("inner")
        await outer.execute(text("INSERT INTO item VALUES (3, 'after')"))
    assert await names(db) == ["outer", "after"]


async def test_unique_violation_becomes_conflict_error(db: Database) -> None:
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO item VALUES (1, 'a')"))
    with pytest.raises(ConflictError) as info:
        async with db.transaction() as s:
            await s.execute(text("INSERT INTO item VALUES (2, 'a')"))
    assert info.value.status_code == 409
    assert await names(db) == ["a"]


async def test_connection_commits_raw_sql(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute(text("INSERT INTO item VALUES (1, 'raw')"))
        rows = (await conn.execute(text("SELECT name FROM item"))).all()
    assert [r.name for r in rows] == ["raw"]
    assert await names(db) == ["raw"]


async def test_health_check_and_stats(db: Database) -> None:
    assert await db.health_check() is True
    stats = await db.get_stats()
    assert [e.name for e in stats.engines] == ["primary"]
    assert stats.engines[0].queries >= 1


@pytest.mark.postgres
async def test_isolation_level_is_really_applied(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url))
    try:
        for level in ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"):
            async with db.transaction(isolation_level=level) as s:
                shown = (await s.execute(text("SHOW transaction_isolation"))).scalar_one()
            assert shown == level.lower()
        async with db.transaction() as s:  # the pool did not keep the last level
            assert (await s.execute(text("SHOW transaction_isolation"))).scalar_one() == "read committed"
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_isolation_level_on_nested_block_is_refused(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url))
    try:
        async with db.transaction():
            with pytest.raises(ValueError, match="outermost"):
                async with db.transaction(isolation_level="SERIALIZABLE"):
                    pass
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_pool_figures_match_held_connections(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url))
    try:
        async with db.session() as a, db.session() as b:
            await a.execute(text("SELECT 1"))
            await b.execute(text("SELECT 1"))
            pool = (await db.get_stats()).engines[0].pool
            assert pool.checked_out == 2
        pool = (await db.get_stats()).engines[0].pool
        assert (pool.checked_out, pool.checked_in) == (0, 2)
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_plain_script_lifecycle_leaves_no_connection(pg_url: str) -> None:
    """A worker/script: initialize_database → module-level helpers → cleanup_database."""
    dbname = pg_url.rsplit("/", 1)[1]
    db = initialize_database(DatabaseConfig(url=pg_url))
    try:
        assert get_database() is db
        async with transaction() as s:
            await s.execute(text("CREATE TABLE t (v int)"))
            await s.execute(text("INSERT INTO t VALUES (1)"))
        async with session() as s:
            assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
        async with connection() as conn:
            await conn.execute(text("INSERT INTO t VALUES (2)"))
        async with read_replica() as s:  # no replicas: the primary, read-only
            assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 2
        during = await pg_execute(pg_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1", dbname)
        assert during[0]["n"] >= 2  # our pooled connection + the observer
    finally:
        await cleanup_database()
    with pytest.raises(RuntimeError, match="initialize_database"):
        get_database()
    after = await pg_execute(
        pg_url, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", dbname
    )
    assert after[0]["n"] == 0


@pytest.mark.postgres
async def test_read_replica_session_refuses_writes(pg_url: str) -> None:
    from litestar_db import ReadOnlyError

    db = Database(DatabaseConfig(url=pg_url))
    try:
        async with db.transaction() as s:
            await s.execute(text("CREATE TABLE t (v int)"))
        with pytest.raises(ReadOnlyError):
            async with db.read_replica() as s:
                await s.execute(text("INSERT INTO t VALUES (1)"))
        assert (await pg_execute(pg_url, "SELECT count(*) AS n FROM t"))[0]["n"] == 0
    finally:
        await db.dispose()


async def test_health_check_false_when_unreachable() -> None:
    db = Database(DatabaseConfig(url="postgresql://postgres@127.0.0.1:9/none"))
    try:
        assert await db.health_check(probe_timeout=2) is False
    finally:
        await db.dispose()


async def test_guarded_session_methods_that_call_each_other(db: Database) -> None:
    """scalars()/scalar()/get() call execute() internally: the concurrency guard must allow that re-entry."""
    async with db.transaction() as s:
        await s.execute(text("INSERT INTO item VALUES (1, 'a')"))
        assert list(await s.scalars(text("SELECT name FROM item"))) == ["a"]
        assert await s.scalar(text("SELECT count(*) FROM item")) == 1
        streamed = await s.stream_scalars(text("SELECT name FROM item"))
        assert [name async for name in streamed] == ["a"]


async def test_statement_stats_can_be_turned_off(sqlite_url: str) -> None:
    db = Database(DatabaseConfig(url=sqlite_url, statement_stats=False))
    try:
        async with db.transaction() as s:
            await s.execute(text("SELECT 1"))
            held = (await db.get_stats()).engines[0].pool.checked_out
        stats = (await db.get_stats()).engines[0]
        assert (stats.queries, stats.commits) == (0, 0)  # no per-statement events
        assert held == 1  # pool figures are kept
        assert stats.pool.connections_created == 1
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_isolation_level_engine_keeps_its_level_under_further_options(pg_url: str) -> None:
    """The per-connection isolation level survives ``execution_options()`` (the routing session's READ ONLY
    fallback to the primary derives such an engine), and the shared pool gets its connections back reset."""
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=1)))
    try:
        serializable = isolation_level_engine(db.engine, "SERIALIZABLE")
        read_only = AsyncEngine(serializable.sync_engine.execution_options(postgresql_readonly=True))
        async with read_only.connect() as conn:
            shown = (await conn.execute(text("SHOW transaction_isolation"))).scalar_one()
            read_only_shown = (await conn.execute(text("SHOW transaction_read_only"))).scalar_one()
        assert (shown, read_only_shown) == ("serializable", "on")
        async with db.engine.connect() as conn:  # the same (only) pooled connection, back at the defaults
            assert (await conn.execute(text("SHOW transaction_isolation"))).scalar_one() == "read committed"
    finally:
        await db.dispose()


async def test_expired_column_read_outside_an_awaited_call_raises_lazy_load_error(db: Database) -> None:
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "item"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))

    async with db.session() as s:
        s.add(Item(id=1, name="a"))
        await s.flush()
        item = await s.get(Item, 1)
        assert item is not None
        s.expire(item, ["name"])
        with pytest.raises(LazyLoadError, match=r"Item \(expired or deferred columns\)"):
            _ = item.name  # a read outside any awaited session call (as during response serialisation)
        await s.refresh(item, ["name"])  # inside an awaited call the same load runs
        assert item.name == "a"


@pytest.mark.parametrize("statement", ["SELECT 1", None])
def test_invalid_statement_outside_an_awaited_call_keeps_sqlalchemys_error(statement: object) -> None:
    with sessionmaker(create_engine("sqlite://"), class_=SyncSession)() as sync_session, pytest.raises(ArgumentError):
        sync_session.execute(statement)  # type: ignore[arg-type]
