"""Queries: the users' guide's examples with the ORM and with raw SQL."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import ConflictError, get_database, session, transaction

from .models import Product, Sale, User


# [user_by_email]
async def user_by_email(email: str) -> User | None:
    async with session() as db:
        return await db.scalar(select(User).where(User.email == email))


# [/user_by_email]


# [create_user]
class EmailTaken(Exception):
    """Domain error: the email belongs to another user."""


async def create_user(email: str, name: str) -> User:
    """Let the unique constraint decide; a check-then-insert races with a concurrent request."""
    try:
        async with transaction() as db:
            user = User(email=email, name=name)
            db.add(user)
        return user
    except ConflictError as exc:  # SQLSTATE 23505 (PostgreSQL) / SQLITE_CONSTRAINT_UNIQUE
        raise EmailTaken(email) from exc


# [/create_user]


# [search]
async def search_products(
    db: AsyncSession,
    *,
    category: str | None = None,
    min_price: int | None = None,
    max_price: int | None = None,
    name_contains: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> Sequence[Product]:
    """Optional filters, a stable order and paging - one statement, built step by step."""
    query = select(Product)
    if category is not None:
        query = query.where(Product.category == category)
    if min_price is not None:
        query = query.where(Product.price >= min_price)
    if max_price is not None:
        query = query.where(Product.price <= max_price)
    if name_contains:
        query = query.where(Product.name.icontains(name_contains, autoescape=True))
    query = query.order_by(Product.price, Product.id).limit(limit).offset(offset)
    return (await db.scalars(query)).all()


# [/search]


# [sales_stats]
SALES_STATS = text(
    """
    SELECT p.id AS product_id,
           p.name AS product_name,
           SUM(s.quantity) AS units,
           SUM(s.quantity * s.unit_price) AS revenue,
           COUNT(DISTINCT s.customer_id) AS customers
    FROM sales AS s
    JOIN products AS p ON p.id = s.product_id
    WHERE s.sold_at >= :since AND s.sold_at < :until
    GROUP BY p.id, p.name
    ORDER BY revenue DESC
    LIMIT :top
    """
)


async def sales_stats(since: datetime.datetime, until: datetime.datetime, top: int = 10) -> list[dict[str, Any]]:
    """Raw SQL without a session (a replica when the split is on), rows returned as dicts."""
    return await get_database().fetch_all(SALES_STATS, {"since": since, "until": until, "top": top})


# [/sales_stats]


# [bulk_insert]
async def bulk_insert_products(rows: list[dict[str, Any]]) -> int:
    """One INSERT executed for many parameter sets (executemany), no ORM objects built."""
    async with transaction() as db:
        await db.execute(insert(Product), rows)
    return len(rows)


async def bulk_insert_sales(rows: list[dict[str, Any]]) -> None:
    async with transaction() as db:
        await db.execute(insert(Sale), rows)


# [/bulk_insert]
