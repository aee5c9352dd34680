"""``Database.get_stats()`` against reality: pool figures vs connections held and ``pg_stat_activity``, waiting
checkouts and timeouts, slow statements (normalized, no parameter values), errors, transactions, retries,
invalidated connections, and no credentials in the output."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, event, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from litestar_db import Database, DatabaseConfig, PoolConfig, ReadWriteConfig, ReplicaConfig
from litestar_db.errors import DatabaseError, PoolTimeoutError
from litestar_db.stats import EngineStats
from litestar_db.transactions import ATTEMPT_KEY
from tests.conftest import pg_execute


async def checkout(db: Database) -> AsyncConnection:
    return await db.engine.connect()


def primary(db: Database) -> EngineStats:
    return db.stats_snapshot().engines[0]


async def backends(url: str) -> int:
    """Server connections to the test database other than the observer's own (``pg_stat_activity``)."""
    name = make_url(url).database
    sql = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
    return int((await pg_execute(url, sql, name))[0]["n"])


async def wait_for(predicate: object, *, attempts: int = 300) -> None:
    for _ in range(attempts):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.postgres
async def test_pool_figures_match_connections_held(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=2, max_size=4)))
    try:
        held = [await db.engine.connect() for _ in range(3)]
        for conn in held:
            await conn.execute(text("SELECT 1"))
        stats = (await db.get_stats()).engines[0]
        assert (stats.name, stats.role, stats.backend) == ("primary", "primary", "postgresql")
        assert stats.pool.checked_out == 3
        assert stats.pool.checked_in == 0
        assert stats.pool.overflow == 1
        assert (stats.pool.size, stats.pool.max_size) == (2, 4)
        assert stats.pool.connections_created == 3
        assert await backends(pg_url) == 3
        for conn in held:
            await conn.close()
        stats = primary(db)
        # the overflow connection is closed when returned; the two persistent ones stay idle in the pool
        assert (stats.pool.checked_out, stats.pool.checked_in, stats.pool.overflow) == (0, 2, 0)
        for _ in range(100):
            if await backends(pg_url) == 2:
                break
            await asyncio.sleep(0.02)
        assert await backends(pg_url) == 2
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_waiting_checkouts_and_checkout_timeouts(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=1, timeout=0.3)))
    try:
        holder = await db.engine.connect()
        await holder.execute(text("SELECT 1"))
        assert primary(db).pool.waiting == 0
        first = asyncio.create_task(checkout(db))
        await wait_for(lambda: primary(db).pool.waiting == 1)
        await holder.close()  # hands the connection to the waiting checkout
        second_holder = await first
        assert (primary(db).pool.waiting, primary(db).pool.checked_out) == (0, 1)

        async def use() -> None:
            async with db.connection() as conn:
                await conn.execute(text("SELECT 1"))

        with pytest.raises(PoolTimeoutError):
            await use()
        stats = await db.get_stats()
        assert stats.engines[0].pool.waiting == 0
        assert stats.engines[0].pool.checkout_timeouts == 1  # counted once, by the pool
        assert stats.checkout_timeouts == 1
        await second_holder.close()
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_slow_queries_are_counted_and_normalized(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, slow_query_seconds=0.2))
    try:
        async with db.connection() as conn:
            await conn.execute(text("SELECT 1"))
            assert primary(db).slow_queries == 0
            await conn.execute(text("SELECT pg_sleep(0.25), 'literal-secret-1' AS tag"))
            await conn.execute(text("SELECT pg_sleep(:s), CAST(:tag AS text)"), {"s": 0.3, "tag": "param-secret-2"})
        stats = primary(db)
        assert stats.queries == 3
        assert stats.slow_queries == 2
        assert [q.seconds >= 0.2 for q in stats.slowest] == [True, True]
        assert stats.slowest[0].seconds >= stats.slowest[1].seconds
        statements = " ".join(q.statement for q in stats.slowest)
        assert "pg_sleep(?)" in statements
        encoded = msgspec.json.encode(await db.get_stats()).decode()
        assert "literal-secret-1" not in encoded
        assert "param-secret-2" not in encoded
    finally:
        await db.dispose()


async def test_statement_errors_and_transaction_outcomes(db_url: str) -> None:
    db = Database(DatabaseConfig(url=db_url))
    try:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))

        async def failing_block() -> None:
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            await failing_block()
        with pytest.raises(DatabaseError):
            async with db.session() as session:
                await session.execute(text("SELECT * FROM no_such_table"))
        stats = primary(db)
        assert stats.queries == 3
        assert stats.errors == 1
        assert stats.commits == 1
        assert stats.rollbacks == 2  # the failed block and the session that hit the error
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_retried_units_of_work_are_counted(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url))

    async def work(session: AsyncSession) -> int:
        if session.info[ATTEMPT_KEY] == 1:  # a real serialization failure raised by the server
            await session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$"))
        return int((await session.execute(text("SELECT 7"))).scalar_one())

    try:
        assert await db.run_in_transaction(work) == 7
        stats = await db.get_stats()
        assert stats.transactions_retried == 1
        assert stats.engines[0].errors == 1
        assert stats.engines[0].commits == 1
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_terminated_connection_is_counted_as_invalidated(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(min_size=1, max_size=2, pre_ping=True)))
    try:
        async with db.connection() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        await pg_execute(pg_url, "SELECT pg_terminate_backend($1)", pid)
        async with db.connection() as conn:  # pre-ping finds the dead connection and replaces it
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
        pool = primary(db).pool
        assert pool.connections_invalidated == 1
        assert pool.connections_created == 2
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_stats_never_show_credentials_or_location(pg_url: str) -> None:
    url = make_url(pg_url).set(password="stats-pw-77").render_as_string(hide_password=False)
    db = Database(DatabaseConfig(url=url))
    try:
        async with db.connection() as conn:
            await conn.execute(text("SELECT 1"))
        encoded = msgspec.json.encode(await db.get_stats()).decode()
    finally:
        await db.dispose()
    assert "stats-pw-77" not in encoded
    assert "127.0.0.1" not in encoded
    assert make_url(pg_url).database not in encoded


@pytest.mark.postgres
@pytest.mark.parametrize("reset_on_return", ["rollback", "commit"])
async def test_counting_adds_no_connection_events_and_ignores_pool_resets(pg_url: str, reset_on_return: str) -> None:
    """Statement figures come from the dialect's hooks, not ``ConnectionEvents`` (with any such listener SQLAlchemy
    joins the engine's listeners into every ``Connection``: ~40-55 us per request). The pool's reset-on-return,
    which calls the same dialect ``do_rollback``/``do_commit``, is not counted as the application's."""
    db = Database(DatabaseConfig(url=pg_url, pool=PoolConfig(reset_on_return=reset_on_return)))  # type: ignore[arg-type]
    try:
        assert db.engine.sync_engine._has_events is False
        async with db.engine.connect() as conn:  # closed with its transaction open: the Connection rolls back
            await conn.execute(text("SELECT 1"))
        async with db.engine.begin() as conn:  # committed, then checked in: the pool resets it
            await conn.execute(text("SELECT 2"))
        async with db.session() as session:  # the dialect's first-connect queries are long done; one more read
            await session.execute(text("SELECT 3"))
        stats = primary(db)
        assert (stats.queries, stats.commits, stats.rollbacks) == (3, 1, 2)
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_bulk_insert_batches_count_as_statements(pg_url: str) -> None:
    """Statements are counted per cursor execution: 2,500 rows with RETURNING go out as three insertmanyvalues
    batches of 1,000, three statements (what ``before/after_cursor_execute`` counted)."""
    db = Database(DatabaseConfig(url=pg_url))
    try:
        async with db.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE bulk (id serial PRIMARY KEY, v text)"))
        bulk = Table("bulk", MetaData(), Column("id", Integer, primary_key=True), Column("v", String))
        before = primary(db).queries
        async with db.engine.begin() as conn:
            rows = await conn.execute(insert(bulk).returning(bulk.c.id), [{"v": str(i)} for i in range(2500)])
            assert len(rows.all()) == 2500
        assert primary(db).queries - before == 3
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_a_transaction_lost_with_its_connection_is_an_invalidation_not_a_rollback(pg_url: str) -> None:
    """``rollbacks`` counts ROLLBACKs sent; a connection invalidated mid-transaction sends none (SQLAlchemy skips
    the DBAPI rollback) and shows up in ``connections_invalidated`` instead."""
    db = Database(DatabaseConfig(url=pg_url))
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await conn.invalidate()
        stats = primary(db)
        assert (stats.commits, stats.rollbacks, stats.pool.connections_invalidated) == (0, 0, 1)
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_autocommit_reads_count_no_commit_or_rollback(pg_url: str) -> None:
    """The sessions of read-only requests read in DBAPI autocommit (lazy begin) and send neither COMMIT nor
    ROLLBACK; SQLAlchemy still calls the dialect's rollback when they close, which must not count."""
    db = Database(DatabaseConfig(url=pg_url))
    try:
        assert db.lazy_sessionmaker is not None
        async with db.session() as session:  # first connect done, so only the reads below are counted
            await session.execute(text("SELECT 0"))
        before = primary(db)
        for n in range(3):
            async with db.lazy_sessionmaker() as session:
                assert (await session.execute(text(f"SELECT {n}"))).scalar_one() == n
        after = primary(db)
        assert after.queries - before.queries == 3
        assert (after.commits - before.commits, after.rollbacks - before.rollbacks) == (0, 0)
    finally:
        await db.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("server", ["primary", "replica"])
async def test_pre_ping_is_one_simple_query(pg_url: str, server: str) -> None:
    ping_pool = PoolConfig(min_size=1, max_size=1, pre_ping=True)
    replica = ReplicaConfig(url=pg_url, name="r", pool=ping_pool)  # the primary itself, read only: enough here
    split = server == "replica"
    rw = ReadWriteConfig(enable_read_write_split=split, replicas=(replica,) if split else ())
    db = Database(DatabaseConfig(url=pg_url, pool=ping_pool, read_write=rw))
    engine = db.engine if db.router is None else db.router.replica_set.replicas[0].engine
    queries: list[str] = []

    def log_queries(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.driver_connection.add_query_logger(lambda record: queries.append(record.query))

    event.listen(engine.sync_engine.pool, "connect", log_queries)
    try:
        for _ in range(2):  # a fresh connection (SQLAlchemy does not ping it), then the pooled one, pinged
            queries.clear()
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 3"))
                await conn.commit()
        # the ping, then the block's own transaction (its SELECT 3 is a prepared statement, which asyncpg's query
        # loggers do not see); SQLAlchemy's own asyncpg ping would be BEGIN; ';' (prepared); ROLLBACK
        assert queries == ["SELECT 1", "BEGIN;", "COMMIT;"]
    finally:
        await db.dispose()
