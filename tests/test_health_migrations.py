"""Readiness follows the schema: 503 while migrations are pending (``health.fail_on_pending_migrations``), 200 once
the database is at the head, ``warn`` when pending migrations are tolerated."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from litestar_db import DatabaseConfig, HealthConfig, MigrationConfig
from litestar_db.litestar.plugin import DatabasePlugin
from tests.server import serve

MIGRATIONS = str(Path(__file__).resolve().parent.parent / "migrations")

pytestmark = pytest.mark.postgres


def make_app(url: str, *, fail_on_pending: bool = True) -> tuple[Litestar, DatabasePlugin]:
    health = HealthConfig(
        cache_seconds=0, probe_timeout_seconds=10, show_details="always", fail_on_pending_migrations=fail_on_pending
    )
    config = DatabaseConfig(url=url, health=health, migrations=MigrationConfig(script_location=MIGRATIONS))
    plugin = DatabasePlugin(config)
    return Litestar(plugins=[plugin]), plugin


async def test_ready_fails_until_migrations_are_applied(pg_url: str) -> None:
    app, plugin = make_app(pg_url)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        behind = await client.get("/health/ready")
        status = await plugin.database.migrations.status()
        await plugin.database.migrations.upgrade()
        current = await client.get("/health/ready")
    assert status.pending, "the sample project's migrations directory has revisions"
    assert behind.status_code == 503
    assert behind.headers["retry-after"] == "5"
    check = behind.json()["checks"]["migrations:pending"][0]
    assert check["status"] == "fail"
    assert check["pending"] == len(status.pending)
    assert "current" not in check  # an empty database is at no revision
    assert check["head"] == ", ".join(status.heads)
    assert behind.json()["output"] == f"{len(status.pending)} migration(s) pending"
    assert current.status_code == 200, current.text
    check = current.json()["checks"]["migrations:pending"][0]
    assert (check["status"], check["pending"], check["current"]) == ("pass", 0, check["head"])


async def test_pending_migrations_only_warn_when_tolerated(pg_url: str) -> None:
    app, _ = make_app(pg_url, fail_on_pending=False)
    async with serve(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "warn"
    assert response.json()["checks"]["migrations:pending"][0]["status"] == "warn"


async def test_apps_without_migrations_directory_have_no_migration_check(pg_url: str, tmp_path: Path) -> None:
    config = DatabaseConfig(url=pg_url, migrations=MigrationConfig(script_location=str(tmp_path / "none")))
    app = Litestar(plugins=[DatabasePlugin(config)])
    async with serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "pass"
    assert "migrations:pending" not in response.json()["checks"]
