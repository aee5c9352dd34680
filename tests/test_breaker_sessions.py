"""Breaker findings on sessions and units of work: regression tests (each failed before its fix)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from litestar_db import Database, DatabaseConfig
from tests.conftest import pg_execute

pytestmark = pytest.mark.postgres


async def test_transactions_in_concurrent_child_tasks_are_independent(pg_url: str) -> None:
    await pg_execute(pg_url, "CREATE TABLE audit (id INTEGER PRIMARY KEY)")
    db = Database(DatabaseConfig(url=pg_url))

    async def record(i: int) -> None:
        async with db.transaction() as session:  # documented: commits on normal exit
            await session.execute(text("INSERT INTO audit (id) VALUES (:i)"), {"i": i})
            await asyncio.sleep(0.01)
            await session.execute(text("SELECT 1"))

    try:
        async with db.transaction() as outer:
            await outer.execute(text("SELECT 1"))
            await asyncio.gather(record(1), record(2))
    finally:
        await db.dispose()
    assert len(await pg_execute(pg_url, "SELECT id FROM audit")) == 2


async def test_fire_and_forget_task_started_in_a_transaction_can_open_its_own(pg_url: str) -> None:
    await pg_execute(pg_url, "CREATE TABLE audit (id INTEGER PRIMARY KEY)")
    db = Database(DatabaseConfig(url=pg_url))
    parent_done = asyncio.Event()

    async def send_audit_later() -> None:
        await parent_done.wait()
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO audit (id) VALUES (1)"))

    try:
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            task = asyncio.create_task(send_audit_later())
        parent_done.set()
        await task
    finally:
        await db.dispose()
    assert len(await pg_execute(pg_url, "SELECT id FROM audit")) == 1
