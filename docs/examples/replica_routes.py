"""Read replicas in Litestar routes: the guards and the ``primary()`` block."""

from __future__ import annotations

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import primary
from litestar_db.litestar.guards import READ_ONLY, read_only
from litestar_db.litestar.guards import primary as primary_only

from .models import Account, Product


# [guards]
@get("/products/count", guards=[read_only])
async def count_products(db_session: NamedDependency[AsyncSession]) -> dict[str, int]:
    """Read-only route: reads on a replica; a write would raise ReadOnlyError before reaching the database."""
    return {"products": len((await db_session.scalars(select(Product.id))).all())}


@get("/accounts/{account_id:int}/balance", guards=[primary_only])
async def fresh_balance(db_session: NamedDependency[AsyncSession], account_id: FromPath[int]) -> dict[str, int]:
    """Primary-only route: shown right after a payment, it must not lag."""
    account = await db_session.get_one(Account, account_id)
    return {"balance": account.balance}


@post("/reports/refresh", opt=dict(READ_ONLY))  # the opt marker does what the guard does
async def refresh_report(db_session: NamedDependency[AsyncSession]) -> dict[str, str]:
    server = await db_session.scalar(text("SELECT 'served by a read-only transaction'"))
    return {"result": str(server)}


# [/guards]


# [primary_block]
async def balance_after_payment(account_id: int) -> int:
    """Outside a request: always the primary, whatever the read/write split says."""
    async with primary() as db:
        return (await db.get_one(Account, account_id)).balance


# [/primary_block]
