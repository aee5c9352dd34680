"""Testing an application: a real database per test, the app started through its lifespan.

This module is a pytest module: ``tests/test_docs_examples.py`` imports its fixture and tests, so they run in
the project's suite exactly as written here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select

from litestar_db import Database, DatabaseConfig

from .litestar_app import create_app
from .models import Account, Transfer, create_tables


# [fixtures]
@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file per test."""
    return f"sqlite:///{tmp_path / 'app.sqlite3'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A brand-new PostgreSQL database per test, dropped afterwards (the server must allow CREATE DATABASE)."""
    admin_url = os.environ.get("TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def client(sqlite_url: str) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The app with its schema; engines are created by the plugin's lifespan, on the client's event loop."""
    setup = Database(DatabaseConfig(url=sqlite_url))  # schema first, from this test's loop
    await create_tables(setup.engine)  # a real project runs its migrations here: await setup.migrations.upgrade()
    await setup.dispose()
    async with AsyncTestClient(app=create_app(DatabaseConfig(url=sqlite_url))) as test_client:
        yield test_client


# [/fixtures]


# [tests]
async def test_duplicate_email_is_409(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    first = await client.post("/users", json={"email": "ada@example.com", "name": "Ada"})
    second = await client.post("/users", json={"email": "ada@example.com", "name": "Ada again"})
    assert (first.status_code, second.status_code) == (201, 409)
    assert second.json()["error"] == "ConflictError"


@pytest.mark.postgres
async def test_failed_transfer_leaves_nothing(postgres_url: str) -> None:
    """Check the database itself, through a separate connection, not only the app's answer."""
    setup = Database(DatabaseConfig(url=postgres_url))
    await create_tables(setup.engine)
    async with setup.transaction() as db:
        db.add_all([Account(id=1, balance=10), Account(id=2, balance=0)])
    async with AsyncTestClient(app=create_app(DatabaseConfig(url=postgres_url))) as client:
        response = await client.post("/transfers", json={"from_id": 1, "to_id": 2, "amount": 50})
        assert response.status_code == 422  # CHECK (balance >= 0)
    async with setup.session() as db:
        assert await db.scalar(select(func.count()).select_from(Transfer)) == 0
        assert (await db.get_one(Account, 1)).balance == 10
    await setup.dispose()


# [/tests]
