"""Breaker findings on the request transaction: regression tests (each failed before its fix)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from litestar import Litestar, Response, WebSocket, get, post, websocket
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.response import Stream
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from litestar_db import DatabaseConfig, DatabasePlugin
from tests.conftest import pg_execute
from tests.server import serve

pytestmark = pytest.mark.postgres

DDL = [
    "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE child (id INTEGER PRIMARY KEY,"
    " parent_id INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)",
]
side_effects: list[str] = []


async def _setup(url: str) -> None:
    for stmt in DDL:
        await pg_execute(url, stmt)


async def _orphan(session: AsyncSession) -> None:
    # the deferred foreign key fails only at COMMIT
    await session.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 999)"))


async def _send_welcome_mail() -> None:
    side_effects.append("mail sent")


@post("/signup", status_code=201)
async def signup(db_session: NamedDependency[AsyncSession]) -> Response[dict[str, str]]:
    await _orphan(db_session)
    return Response({"status": "created"}, status_code=201, background=BackgroundTask(_send_welcome_mail))


@post("/export", status_code=201)
async def export(db_session: NamedDependency[AsyncSession]) -> Stream:
    await _orphan(db_session)

    async def body() -> AsyncIterator[bytes]:
        for i in range(3):
            side_effects.append(f"chunk {i}")  # e.g. pushing rows to an external system while streaming
            yield b"x"

    return Stream(body(), status_code=201)


async def test_background_task_does_not_run_when_commit_fails(pg_url: str) -> None:
    await _setup(pg_url)
    side_effects.clear()
    app = Litestar([signup], plugins=[DatabasePlugin(DatabaseConfig(url=pg_url))])
    async with AsyncTestClient(app) as client:
        response = await client.post("/signup")
    assert response.status_code == 409
    assert side_effects == []  # the welcome mail must not go out for a user that was not saved


async def test_stream_response_with_failed_commit_answers_409(pg_url: str) -> None:
    await _setup(pg_url)
    side_effects.clear()
    app = Litestar([export], plugins=[DatabasePlugin(DatabaseConfig(url=pg_url))])
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=5) as client:
        try:
            response = await client.post("/export")
        except httpx.ReadTimeout:  # the current code never answers
            pytest.fail(f"no response within 5 s; the stream body ran anyway: {side_effects}")
    assert response.status_code == 409
    assert side_effects == []  # the body of the replaced response must not be produced


@websocket("/ws")
async def ws_handler(socket: WebSocket, db_session: NamedDependency[AsyncSession]) -> None:
    await socket.accept()
    await db_session.execute(text("INSERT INTO parent (id) VALUES (1)"))
    await socket.send_json({"ok": True})
    await socket.close()


async def test_websocket_session_is_finished_and_released(pg_url: str) -> None:
    await _setup(pg_url)
    app = Litestar([ws_handler], plugins=[DatabasePlugin(DatabaseConfig(url=pg_url))])
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "scheme": "ws",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "state": {},
    }
    async with app.lifespan():
        await app(scope, receive, send)  # type: ignore[arg-type]
        assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
        await asyncio.sleep(0.2)
        rows = await pg_execute(
            pg_url,
            "SELECT state FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND state = 'idle in transaction'",
        )
        assert rows == []  # the session must be finished when the websocket handler returns


handler_calls: list[int] = []


@get("/daily-token", cache=60)
async def daily_token(db_session: NamedDependency[AsyncSession]) -> dict[str, bool]:
    handler_calls.append(1)
    await _orphan(db_session)  # e.g. get-or-create of a row, failing at COMMIT
    return {"saved": True}


async def test_response_of_failed_commit_is_not_cached(pg_url: str) -> None:
    await _setup(pg_url)
    handler_calls.clear()
    app = Litestar([daily_token], plugins=[DatabasePlugin(DatabaseConfig(url=pg_url))])
    async with AsyncTestClient(app) as client:
        first = await client.get("/daily-token")
        second = await client.get("/daily-token")
    assert first.status_code == 409
    assert second.status_code == 409, f"cached success for unsaved data: {second.text}, handler ran {handler_calls}"
