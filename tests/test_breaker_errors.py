"""Breaker findings on error translation: regression tests (each failed before its fix)."""

from __future__ import annotations

import asyncio

import pytest
from litestar import Litestar, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import Database, DatabaseConfig, DatabasePlugin
from tests.conftest import pg_execute
from tests.server import free_port

pytestmark = pytest.mark.postgres


async def test_run_in_transaction_does_not_retry_application_timeouts(pg_url: str) -> None:
    await pg_execute(pg_url, "CREATE TABLE payment (id SERIAL PRIMARY KEY)")
    db = Database(DatabaseConfig(url=pg_url))
    charges: list[int] = []

    async def pay(session: AsyncSession) -> None:
        await session.execute(text("INSERT INTO payment DEFAULT VALUES"))
        charges.append(1)  # e.g. a call to a payment provider...
        raise TimeoutError("payment provider did not answer")  # ...that timed out (asyncio.wait_for etc.)

    try:
        with pytest.raises(Exception) as info:
            await db.run_in_transaction(pay, retries=3)
    finally:
        await db.dispose()
    assert charges == [1]  # the provider must not be charged four times
    assert type(info.value) is TimeoutError  # not ConnectionLostError ("Database connection lost", 503)


async def test_transaction_keeps_application_oserrors(pg_url: str) -> None:
    db = Database(DatabaseConfig(url=pg_url))
    try:
        with pytest.raises(FileNotFoundError):
            async with db.transaction() as session:
                await session.execute(text("SELECT 1"))
                open("/nonexistent/template.html")  # noqa: SIM115 - an application error
    finally:
        await db.dispose()


async def test_application_exception_raised_while_handling_a_db_error_is_kept(pg_url: str) -> None:
    await pg_execute(pg_url, "CREATE TABLE users (email TEXT PRIMARY KEY)")
    await pg_execute(pg_url, "INSERT INTO users VALUES ('a@example.com')")
    db = Database(DatabaseConfig(url=pg_url))
    try:
        with pytest.raises(ValueError, match="email already registered"):
            async with db.transaction() as session:
                try:
                    await session.execute(text("INSERT INTO users (email) VALUES ('a@example.com')"))
                except IntegrityError:  # SQLAlchemy's documented pattern inside a transaction block
                    raise ValueError("email already registered") from None
    finally:
        await db.dispose()


@post("/notes", status_code=201)
async def create_note(db_session: NamedDependency[AsyncSession], data: JSONBody[dict[str, str]]) -> dict[str, str]:
    await db_session.execute(text("INSERT INTO note (title) VALUES (:t)"), {"t": data["title"]})
    await db_session.flush()
    return data


async def test_value_too_long_is_a_client_error(pg_url: str) -> None:
    await pg_execute(pg_url, "CREATE TABLE note (id SERIAL PRIMARY KEY, title VARCHAR(10) NOT NULL)")
    app = Litestar([create_note], plugins=[DatabasePlugin(DatabaseConfig(url=pg_url))])
    async with AsyncTestClient(app) as client:
        response = await client.post("/notes", json={"title": "x" * 11})
    assert response.status_code == 422  # like NOT NULL / CHECK violations (ConstraintViolationError)


@get("/profile")
async def profile() -> dict[str, str]:
    # the handler calls another service (a cache, an HTTP API over a raw socket, …) that is down
    _, writer = await asyncio.open_connection("127.0.0.1", free_port())
    writer.close()
    return {}


async def test_non_database_connection_errors_are_not_reported_as_database_errors(pg_url: str) -> None:
    plugin = DatabasePlugin(DatabaseConfig(url=pg_url))
    app = Litestar([profile], plugins=[plugin])
    async with AsyncTestClient(app) as client:
        response = await client.get("/profile")
    assert "Database" not in response.text, response.text  # operators would look at the wrong system
