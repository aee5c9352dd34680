"""The three levels of access - session, transaction, connection - outside any web framework."""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import select, text

from litestar_db import DatabaseConfig, cleanup_database, connection, initialize_database, session, transaction

from .models import Account, Transfer, User, create_tables


# [session]
async def find_user(email: str) -> User | None:
    """A session: read (and write) through the ORM; nothing is committed unless you commit."""
    async with session() as db:
        return await db.scalar(select(User).where(User.email == email))


async def rename_user(user_id: int, name: str) -> None:
    async with session() as db:
        user = await db.get_one(User, user_id)
        user.name = name
        await db.commit()  # without this line the change is rolled back when the block ends


# [/session]


# [transaction]
class InsufficientFunds(Exception):
    """Domain error of the transfer example."""


async def transfer(from_id: int, to_id: int, amount: int) -> None:
    """A transaction: committed when the block ends normally, rolled back when anything raises."""
    async with transaction() as db:
        # lock both rows, always in id order, so two transfers in opposite directions cannot deadlock
        query = select(Account).where(Account.id.in_((from_id, to_id))).order_by(Account.id).with_for_update()
        accounts = {account.id: account for account in await db.scalars(query)}
        if len(accounts) != 2:
            raise LookupError(f"unknown account in {from_id} -> {to_id}")
        source, target = accounts[from_id], accounts[to_id]
        if source.balance < amount:
            raise InsufficientFunds(f"account {from_id} holds {source.balance}, needs {amount}")
        source.balance -= amount
        target.balance += amount
        db.add(Transfer(from_account_id=from_id, to_account_id=to_id, amount=amount))


# [/transaction]


# [connection]
async def top_accounts(limit: int) -> list[dict[str, Any]]:
    """A connection: raw SQL on SQLAlchemy Core; read the rows inside the block."""
    async with connection() as conn:
        result = await conn.execute(
            text("SELECT id, balance FROM accounts ORDER BY balance DESC LIMIT :limit"), {"limit": limit}
        )
        return [dict(row) for row in result.mappings()]


# [/connection]


# [lifecycle]
async def main(url: str) -> dict[str, Any]:
    """Start the database, use it, stop it (the Litestar plugin does the first and last step for you)."""
    db = initialize_database(DatabaseConfig(url=url))
    try:
        await create_tables(db.engine)
        async with transaction() as tx:
            tx.add(User(id=1, email="ada@example.com", name="Ada"))
            await tx.flush()  # the user row first: the accounts reference it
            tx.add_all([Account(id=1, owner_id=1, balance=100), Account(id=2, owner_id=1, balance=0)])
        await rename_user(1, "Ada L.")
        await transfer(1, 2, 30)
        with contextlib.suppress(InsufficientFunds):
            await transfer(1, 2, 500)  # raises: rolled back, balances unchanged
        user = await find_user("ada@example.com")
        return {"user": user.name if user else None, "accounts": await top_accounts(10)}
    finally:
        await cleanup_database()


# [/lifecycle]
