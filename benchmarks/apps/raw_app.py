"""Contender 4: a raw asyncpg pool, the same SQL written by hand (the ceiling: no ORM, no session)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar, get, post
from litestar.exceptions import NotFoundException

from benchmarks.common import (
    DATABASE_URL,
    LIST_SIZE,
    POOL_SIZE,
    ItemIn,
    ItemOut,
    TransferIn,
    TransferOut,
    check_transfer,
)
from benchmarks.gcstats import freeze_if_asked, gc_stats

__all__ = ("app",)

_pools: list[asyncpg.Pool] = []


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=POOL_SIZE, max_size=POOL_SIZE)
    _pools.append(pool)
    try:
        yield
    finally:
        _pools.clear()
        await pool.close()


@get("/items/{item_id:int}")
async def read_item(item_id: int) -> ItemOut:
    row = await _pools[0].fetchrow("SELECT id, name, price_cents FROM items WHERE id = $1", item_id)
    if row is None:
        raise NotFoundException(f"item {item_id} not found")
    return ItemOut(id=row[0], name=row[1], price_cents=row[2])


@get("/items")
async def list_items(after: int = 0) -> list[ItemOut]:
    rows = await _pools[0].fetch(
        "SELECT id, name, price_cents FROM items WHERE id > $1 ORDER BY id LIMIT $2", after, LIST_SIZE
    )
    return [ItemOut(id=r[0], name=r[1], price_cents=r[2]) for r in rows]


@post("/items")
async def create_item(data: ItemIn) -> ItemOut:
    row = await _pools[0].fetchrow(
        "INSERT INTO items (name, price_cents) VALUES ($1, $2) RETURNING id", data.name, data.price_cents
    )
    assert row is not None
    return ItemOut(id=row[0], name=data.name, price_cents=data.price_cents)


@post("/transfers")
async def transfer(data: TransferIn) -> TransferOut:
    updates = check_transfer(data)
    async with _pools[0].acquire() as conn, conn.transaction():
        for account_id, delta in updates:
            status = await conn.execute("UPDATE accounts SET balance = balance + $1 WHERE id = $2", delta, account_id)
            if status != "UPDATE 1":
                raise NotFoundException(f"account {account_id} not found")
        new_id = await conn.fetchval(
            "INSERT INTO transfers (source_id, target_id, amount) VALUES ($1, $2, $3) RETURNING id",
            data.source_id,
            data.target_id,
            data.amount,
        )
    return TransferOut(id=new_id, source_id=data.source_id, target_id=data.target_id, amount=data.amount)


app = Litestar(
    route_handlers=[read_item, list_items, create_item, transfer, gc_stats],
    lifespan=[lifespan],
    on_startup=[freeze_if_asked],
)
