"""The migrations Python API (``db.migrations``) on SQLite and PostgreSQL, from inside a running event loop."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import inspect

from litestar_db import ConnectionConfig, Database, DatabaseConfig, MigrationConfig, ReadWriteConfig, ReplicaConfig
from litestar_db.litestar import DatabasePlugin
from litestar_db.migrations import MIGRATION_LOCK_KEY, MigrationFailedError, Migrations
from sample_project.app import MIGRATIONS_DIR, create_app
from sample_project.controllers import UserController
from tests.conftest import _plain, pg_execute

SAMPLE_TABLES = {"users", "accounts", "transfers", "products", "sales"}
FAILING_REVISION = "f41100000001"


def sample_config(url: str, **migrations: object) -> DatabaseConfig:
    """A config for ``url`` using the project's migrations directory (or ``script_location=…``)."""
    options: dict[str, object] = {"script_location": str(MIGRATIONS_DIR), **migrations}
    return DatabaseConfig(url=url, migrations=MigrationConfig(**options))  # type: ignore[arg-type]


def head_revision() -> str:
    """The head of the project's migrations (read from the files, not hard-coded)."""
    heads = Migrations(sample_config("sqlite://")).script_directory().get_heads()
    assert len(heads) == 1
    return heads[0]


def copy_migrations(tmp_path: Path, *, failing: bool = False) -> Path:
    """A copy of the project's migrations in ``tmp_path``; with ``failing``, plus a revision that raises."""
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, target, ignore=shutil.ignore_patterns("__pycache__"))
    if failing:
        (target / "versions" / f"{FAILING_REVISION}_boom.py").write_text(
            f'''"""boom"""
import sqlalchemy as sa
from alembic import op

revision = "{FAILING_REVISION}"
down_revision = "{head_revision()}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    raise RuntimeError("boom: this migration fails on purpose")


def downgrade() -> None:
    op.drop_table("half_done")
'''
        )
    return target


async def table_names(url: str) -> set[str]:
    db = Database(DatabaseConfig(url=url))
    try:
        async with db.engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await db.dispose()


async def test_status_upgrade_downgrade_from_running_loop(db_url: str) -> None:
    head = head_revision()
    db = Database(sample_config(db_url))
    try:
        before = await db.migrations.status()
        assert (before.current, before.heads, before.up_to_date) == ([], [head], False)
        assert [p.revision for p in before.pending] == [head]

        applied = await db.migrations.upgrade()
        assert [p.revision for p in applied] == [head]
        after = await db.migrations.status()
        assert (after.current, after.pending, after.up_to_date) == ([head], [], True)
        assert await table_names(db_url) >= SAMPLE_TABLES
        assert await db.migrations.upgrade() == []  # nothing left to do

        reverted = await db.migrations.downgrade("-1")
        assert [p.revision for p in reverted] == [head]
        assert [p.revision for p in (await db.migrations.status()).pending] == [head]
        assert not SAMPLE_TABLES & await table_names(db_url)
    finally:
        await db.dispose()


async def test_status_checks_do_not_log_alembics_context_lines(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a readiness probe reads the status every few seconds: Alembic's per-context INFO lines would flood the log
    db = Database(sample_config(sqlite_url))
    caplog.set_level(logging.INFO)
    try:
        await db.migrations.status()
        assert not [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]
        await db.migrations.upgrade()  # a migration run still says which implementation and DDL mode it uses
        assert "Context impl SQLiteImpl." in [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]
    finally:
        await db.dispose()


async def test_upgrade_inside_on_startup_hook(db_url: str) -> None:
    config = sample_config(db_url)

    async def migrate(app: Litestar) -> None:
        await Migrations(config).upgrade()

    app = Litestar(route_handlers=[UserController], plugins=[DatabasePlugin(config)], on_startup=[migrate])
    async with AsyncTestClient(app) as client:
        created = await client.post("/users", json={"email": "hook@example.com", "name": "Hook"})
        assert created.status_code == 201, created.text
    assert (await Migrations(config).status()).up_to_date


async def test_migrate_on_startup(db_url: str) -> None:
    async with AsyncTestClient(create_app(sample_config(db_url, migrate_on_startup=True))) as client:
        assert (await client.post("/users", json={"email": "a@example.com", "name": "A"})).status_code == 201
    assert (await Migrations(sample_config(db_url)).status()).current == [head_revision()]


async def test_migrate_on_startup_off_by_default(sqlite_url: str) -> None:
    async with AsyncTestClient(create_app(sample_config(sqlite_url))):
        pass
    assert (await Migrations(sample_config(sqlite_url)).status()).current == []


@pytest.mark.postgres
async def test_failing_migration_rolls_back_and_frees_the_lock(pg_url: str, tmp_path: Path) -> None:
    migrations = Migrations(sample_config(pg_url, script_location=str(copy_migrations(tmp_path, failing=True))))
    with pytest.raises(MigrationFailedError) as info:
        await migrations.upgrade()
    assert info.value.revision == FAILING_REVISION
    assert FAILING_REVISION in str(info.value)
    assert "boom" in str(info.value)
    assert info.value.current == [head_revision()]  # the good revision before it stays applied
    status = await migrations.status()
    assert status.current == [head_revision()]
    assert [p.revision for p in status.pending] == [FAILING_REVISION]
    assert "half_done" not in await table_names(pg_url)  # the failing revision's DDL was rolled back
    assert await pg_execute(pg_url, "SELECT * FROM pg_locks WHERE locktype = 'advisory'") == []
    rows = await pg_execute(pg_url, "SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY)
    assert rows[0][0] is True


@pytest.mark.postgres
@pytest.mark.parametrize("command_timeout", [None, 0.2])
async def test_upgrade_waits_for_the_migration_lock(pg_url: str, command_timeout: float | None) -> None:
    """With connection.command_timeout too: migrations wait for the lock and run DDL without the request bound
    (third breaker round: the second pod of a rolling deploy failed after command_timeout)."""
    holder = await asyncpg.connect(_plain(pg_url))
    config = replace(sample_config(pg_url), connection=ConnectionConfig(command_timeout=command_timeout))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        task = asyncio.create_task(Migrations(config).upgrade())
        await asyncio.sleep(0.5)
        assert not task.done()
        assert "alembic_version" not in await table_names(pg_url)  # nothing ran while the lock was held
        waiting = await pg_execute(pg_url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        assert waiting[0][0] == 1
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
        assert [p.revision for p in await asyncio.wait_for(task, 30)] == [head_revision()]
    finally:
        await holder.close()
    assert await pg_execute(pg_url, "SELECT * FROM pg_locks WHERE locktype = 'advisory'") == []


@pytest.mark.postgres
async def test_migrations_run_on_the_primary_not_a_replica(pg_url: str) -> None:
    dead_replica = ReplicaConfig(url="postgresql://postgres@127.0.0.1:1/replica", name="dead")
    config = replace(
        sample_config(pg_url), read_write=ReadWriteConfig(enable_read_write_split=True, replicas=(dead_replica,))
    )
    assert [p.revision for p in await Migrations(config).upgrade()] == [head_revision()]
    assert (await pg_execute(pg_url, "SELECT version_num FROM alembic_version"))[0][0] == head_revision()


async def test_status_reuses_the_loaded_revisions_until_the_directory_changes(sqlite_url: str, tmp_path: Path) -> None:
    """Found by a breaker: every readiness probe reloaded every revision file on the event loop (~90 ms with 400)."""
    loads: list[int] = []

    class CountingMigrations(Migrations):
        __slots__ = ()

        def script_directory(self) -> ScriptDirectory:
            loads.append(1)
            return super().script_directory()

    location = copy_migrations(tmp_path)
    migrations = CountingMigrations(sample_config(sqlite_url, script_location=str(location)))
    first = await migrations.status()
    again = await migrations.status()
    assert len(loads) == 1
    assert again.pending == first.pending
    await asyncio.sleep(0.01)  # a new revision file: the directory's modification time moves
    (location / "versions" / f"{FAILING_REVISION}_boom.py").write_text(
        f'"""later"""\nrevision = "{FAILING_REVISION}"\ndown_revision = "{head_revision()}"\n'
        "branch_labels = None\ndepends_on = None\n\n\ndef upgrade() -> None:\n    pass\n"
    )
    later = await migrations.status()
    assert len(loads) == 2
    assert [p.revision for p in later.pending][-1] == FAILING_REVISION
