"""Transactions: isolation levels, savepoints, retries."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import ConflictError, Database, get_database, transaction, transactional

from .models import Account, User


# [isolation]
async def total_balance() -> int:
    """One consistent snapshot for every statement of the block (SQLite knows only SERIALIZABLE)."""
    async with transaction(isolation_level="SERIALIZABLE") as db:
        total = await db.scalar(select(func.sum(Account.balance)))
        return int(total or 0)


# [/isolation]


# [savepoint]
async def register_many(emails: list[str]) -> list[str]:
    """Each inner ``transaction()`` is a SAVEPOINT: a duplicate skips one user, not the whole batch."""
    skipped = []
    async with transaction() as db:
        for email in emails:
            try:
                async with transaction():  # nested: SAVEPOINT ... RELEASE / ROLLBACK TO SAVEPOINT
                    db.add(User(email=email, name=email.split("@")[0]))
                    await db.flush()
            except ConflictError:
                skipped.append(email)
    return skipped


# [/savepoint]


# [run_in_transaction]
async def pay_interest(rate_percent: int) -> int:
    """A unit of work re-run on serialization failure, deadlock or a connection lost before COMMIT."""

    async def unit(db: AsyncSession) -> int:
        result = await db.execute(
            update(Account).values(balance=Account.balance + Account.balance * rate_percent / 100)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    database: Database = get_database()
    return await database.run_in_transaction(unit, retries=5, isolation_level="SERIALIZABLE")


# [/run_in_transaction]


# [transactional]
@transactional(retries=5, isolation_level="SERIALIZABLE")
async def close_account(account_id: int, *, db_session: AsyncSession) -> int:
    """The decorator passes a fresh session as ``db_session`` to every attempt and commits at the end."""
    account = await db_session.get_one(Account, account_id)
    balance = account.balance
    await db_session.delete(account)
    return balance


# [/transactional]
