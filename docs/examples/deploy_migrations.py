"""Migrations from code: a deploy step that reports and applies pending revisions."""

from __future__ import annotations

from litestar_db import Database, DatabaseConfig, MigrationConfig


# [deploy]
async def migrate(url: str, script_location: str) -> list[str]:
    """Apply pending revisions; several instances may run this at once (PostgreSQL advisory lock)."""
    db = Database(DatabaseConfig(url=url, migrations=MigrationConfig(script_location=script_location)))
    try:
        status = await db.migrations.status()
        if status.up_to_date:
            return []
        applied = await db.migrations.upgrade()  # "head" by default; returns what this call applied
        return [item.revision for item in applied]
    finally:
        await db.dispose()


# [/deploy]
