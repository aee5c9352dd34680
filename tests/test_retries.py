"""C10: serialization failures and deadlocks are retried with a fresh session; ambiguous commits never are."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import asyncpg
import httpx
import msgspec
import pytest
from litestar import Litestar, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import Database, DatabaseConfig, DatabasePlugin, PoolConfig, get_database, transactional
from litestar_db.errors import AmbiguousCommitError, SerializationFailureError
from litestar_db.transactions import ATTEMPT_KEY
from tests.conftest import _plain, pg_execute
from tests.server import serve

pytestmark = pytest.mark.postgres
ACCOUNTS = 100


@pytest.fixture
async def accounts(pg_url: str) -> str:
    conn = await asyncpg.connect(_plain(pg_url))
    try:
        await conn.execute("CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))")
        await conn.executemany("INSERT INTO account VALUES ($1, 1000)", [(i,) for i in range(1, ACCOUNTS + 1)])
    finally:
        await conn.close()
    return pg_url


@pytest.fixture
async def db(accounts: str) -> AsyncIterator[Database]:
    database = Database(DatabaseConfig(url=accounts))
    yield database
    await database.dispose()


async def test_c10_serialization_failure_is_retried_with_a_fresh_session(db: Database, accounts: str) -> None:
    attempts: list[int] = []
    sessions: list[int] = []

    async def unit(session: AsyncSession) -> int:
        attempts.append(session.info[ATTEMPT_KEY])
        sessions.append(id(session))
        balance = (await session.execute(text("SELECT balance FROM account WHERE id = 1"))).scalar_one()
        if len(attempts) == 1:  # a concurrent transaction commits a change to the row we read
            await pg_execute(accounts, "UPDATE account SET balance = balance + 1 WHERE id = 1")
        await session.execute(text("UPDATE account SET balance = :b - 10 WHERE id = 1"), {"b": balance})
        return int(balance)

    result = await db.run_in_transaction(unit, retries=3, isolation_level="SERIALIZABLE")
    assert attempts == [1, 2]
    assert len(set(sessions)) == 2
    assert result == 1001
    assert (await pg_execute(accounts, "SELECT balance FROM account WHERE id = 1"))[0]["balance"] == 991
    assert (await db.get_stats()).transactions_retried == 1


async def test_c10_retries_exhausted_raise_conflict_with_retry_after(db: Database, accounts: str) -> None:
    async def always_conflicts(session: AsyncSession) -> None:
        await session.execute(text("SELECT balance FROM account WHERE id = 2"))
        await pg_execute(accounts, "UPDATE account SET balance = balance + 1 WHERE id = 2")
        await session.execute(text("UPDATE account SET balance = 0 WHERE id = 2"))

    with pytest.raises(SerializationFailureError) as info:
        await db.run_in_transaction(always_conflicts, retries=2, isolation_level="REPEATABLE READ")
    assert info.value.sqlstate == "40001"
    assert info.value.status_code == 409
    assert info.value.retry_after == 5
    assert (await db.get_stats()).transactions_retried == 2


async def test_c10_deadlock_loser_is_retried_and_both_succeed(db: Database, accounts: str) -> None:
    barrier = asyncio.Barrier(2)
    calls = {"a": 0, "b": 0}

    def transfer(name: str, first: int, second: int) -> object:
        async def unit(session: AsyncSession) -> None:
            calls[name] += 1
            await session.execute(text("SET LOCAL deadlock_timeout = '50ms'"))
            await session.execute(text("UPDATE account SET balance = balance - 1 WHERE id = :i"), {"i": first})
            if calls[name] == 1:
                await barrier.wait()  # both hold their first lock: opposite order guarantees a deadlock
            await session.execute(text("UPDATE account SET balance = balance + 1 WHERE id = :i"), {"i": second})

        return unit

    await asyncio.gather(
        db.run_in_transaction(transfer("a", 3, 4)),  # type: ignore[arg-type]
        db.run_in_transaction(transfer("b", 4, 3)),  # type: ignore[arg-type]
    )
    assert sorted(calls.values()) == [1, 2]  # exactly one loser, re-run once
    assert (await db.get_stats()).transactions_retried == 1
    rows = await pg_execute(accounts, "SELECT sum(balance) AS total FROM account WHERE id IN (3, 4)")
    assert rows[0]["total"] == 2000


async def test_a_unit_that_committed_part_of_its_work_is_not_re_run(db: Database, accounts: str) -> None:
    """Found by a breaker: a unit that committed, then hit a serialization failure, was re-run from the start, so
    what it had committed was written twice."""
    await pg_execute(accounts, "CREATE TABLE audit (id serial PRIMARY KEY, what text NOT NULL)")
    attempts: list[int] = []

    async def unit(session: AsyncSession) -> None:
        attempts.append(session.info[ATTEMPT_KEY])
        await session.execute(text("INSERT INTO audit (what) VALUES ('charge card')"))
        await session.commit()  # a service method committing its part
        await session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'write skew' USING ERRCODE = '40001'; END $$"))

    with pytest.raises(SerializationFailureError):
        await db.run_in_transaction(unit, retries=3)
    assert attempts == [1]
    assert [r["what"] for r in await pg_execute(accounts, "SELECT what FROM audit")] == ["charge card"]

    async def unit_with_a_connection(session: AsyncSession) -> None:
        """The same through another connection (second breaker round)."""
        attempts.append(session.info[ATTEMPT_KEY])
        async with db.connection() as conn:
            await conn.execute(text("INSERT INTO audit (what) VALUES ('send mail')"))
        await session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'write skew' USING ERRCODE = '40001'; END $$"))

    attempts.clear()
    with pytest.raises(SerializationFailureError):
        await db.run_in_transaction(unit_with_a_connection, retries=3)
    assert attempts == [1]

    async def unit_with_a_session(session: AsyncSession) -> None:
        """The same through a session of its own (third breaker round: the split was off, so it was not seen)."""
        attempts.append(session.info[ATTEMPT_KEY])
        async with db.session() as other:
            await other.execute(text("INSERT INTO audit (what) VALUES ('notify')"))
            await other.commit()
        await session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'write skew' USING ERRCODE = '40001'; END $$"))

    attempts.clear()
    with pytest.raises(SerializationFailureError):
        await db.run_in_transaction(unit_with_a_session, retries=3)
    assert attempts == [1]
    assert [r["what"] for r in await pg_execute(accounts, "SELECT what FROM audit ORDER BY id")] == [
        "charge card",
        "send mail",
        "notify",
    ]


async def test_connection_lost_during_commit_is_never_retried(db: Database, accounts: str) -> None:
    """A deferred trigger kills the backend inside COMMIT: the outcome is unknown, so no second attempt."""
    await pg_execute(
        accounts,
        """
        CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS
        $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$;
        """,
    )
    await pg_execute(
        accounts,
        "CREATE CONSTRAINT TRIGGER die_at_commit AFTER UPDATE ON account DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW EXECUTE FUNCTION die()",
    )
    calls = 0

    async def unit(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        await session.execute(text("UPDATE account SET balance = balance + 1 WHERE id = 5"))

    with pytest.raises(AmbiguousCommitError) as info:
        await db.run_in_transaction(unit, retries=5)
    assert calls == 1
    assert info.value.status_code == 503
    assert (await db.get_stats()).transactions_retried == 0


class Transfer(msgspec.Struct):
    source: int
    target: int
    amount: int


@post("/transfer", status_code=200)
@transactional(retries=12, isolation_level="SERIALIZABLE")
async def transfer_handler(data: JSONBody[Transfer], db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    balance = (
        await db_session.execute(text("SELECT balance FROM account WHERE id = :i"), {"i": data.source})
    ).scalar_one()
    if balance < data.amount:
        return {"moved": 0}
    await db_session.execute(
        text("UPDATE account SET balance = balance - :a WHERE id = :i"), {"a": data.amount, "i": data.source}
    )
    await db_session.execute(
        text("UPDATE account SET balance = balance + :a WHERE id = :i"), {"a": data.amount, "i": data.target}
    )
    return {"moved": data.amount}


@pytest.mark.timeout(300)
async def test_c10_concurrent_serializable_transfers_conserve_balance(accounts: str) -> None:
    """2,000 concurrent SERIALIZABLE transfers (write skew and deadlocks aplenty): total conserved, no 5xx."""
    config = DatabaseConfig(url=accounts, pool=PoolConfig(min_size=10, max_size=20, timeout=30))
    app = Litestar([transfer_handler], plugins=[DatabasePlugin(config)])
    rng = random.Random(7)
    jobs = [rng.sample(range(1, ACCOUNTS + 1), 2) for _ in range(2000)]
    limit = asyncio.Semaphore(32)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def one(source: int, target: int) -> int:
            async with limit:
                payload = {"source": source, "target": target, "amount": rng.randint(1, 50)}
                return (await client.post("/transfer", json=payload)).status_code

        statuses = await asyncio.gather(*(one(s, t) for s, t in jobs))
        retried = (await get_database().get_stats()).transactions_retried
    assert retried > 0  # conflicts really happened and were retried
    assert not [s for s in statuses if s >= 500]
    assert statuses.count(200) >= 1900  # the rest may be 409 after 12 retries, never a 5xx
    rows = await pg_execute(accounts, "SELECT sum(balance) AS total FROM account")  # CHECK keeps each >= 0
    assert rows[0]["total"] == ACCOUNTS * 1000
