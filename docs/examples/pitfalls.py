"""Troubleshooting: the users' guide's failure patterns, and what litestar_db does about each."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select, text

from litestar_db import get_database, session, transaction
from litestar_db.errors import ConcurrentSessionUseError, ResultClosedError

from .models import User


# [already_begun]
async def nested_blocks() -> int:
    """Opening a transaction inside another one never raises "A transaction is already begun":
    the inner block becomes a SAVEPOINT (and ``begin_nested()`` works as in SQLAlchemy)."""
    async with transaction() as db:
        db.add(User(email="outer@example.com", name="outer"))
        async with transaction() as inner:  # same session, SAVEPOINT
            inner.add(User(email="inner@example.com", name="inner"))
        return len((await db.scalars(select(User))).all())


# [/already_begun]


# [read_inside]
async def rows_read_inside() -> list[dict[str, Any]]:
    """Read rows inside the block; what leaves the block are plain values."""
    async with session() as db:
        result = await db.execute(text("SELECT id, email FROM users ORDER BY id"))
        return [dict(row) for row in result.mappings()]


async def buffered_helpers() -> list[dict[str, Any]]:
    """Or let the database copy the rows out for you."""
    return await get_database().fetch_all(text("SELECT id, email FROM users ORDER BY id"))


# [/read_inside]


# [read_after]
async def streamed_result_read_late() -> str:
    """A streamed (server-side cursor) result read after its session closed raises a clear error,
    instead of asyncpg's "cannot call PreparedStatement.fetch(): the underlying connection is closed"."""
    async with session() as db:
        result = await db.stream(select(User.email))
    try:
        await result.all()
    except ResultClosedError as exc:
        return exc.detail
    raise AssertionError("unreachable")


# [/read_after]


# [concurrent]
async def one_session_two_tasks() -> str:
    """Wrong: two tasks on one session. Right: one session per task."""
    async with session() as db:
        try:
            await asyncio.gather(db.execute(text("SELECT 1")), db.execute(text("SELECT 2")))
        except ConcurrentSessionUseError as exc:
            message = exc.detail

    async def count(sql: str) -> int:
        async with session() as own:
            return int(await own.scalar(text(sql)))

    await asyncio.gather(count("SELECT 1"), count("SELECT 2"))
    return message


# [/concurrent]


# [batches]
async def export_in_batches(batch_size: int) -> list[int]:
    """Large reads: stream with a server-side cursor and handle batches *inside* the block."""
    sizes = []
    async with session() as db:
        result = await db.stream(select(User.id, User.email).execution_options(yield_per=batch_size))
        async for batch in result.partitions():
            sizes.append(len(batch))  # write the batch to a file, a queue, ... while the cursor is open
    return sizes


# [/batches]
