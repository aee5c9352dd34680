"""The sample app: ``litestar --app sample_project.app:app run``.

Settings come from the environment (:meth:`DatabaseConfig.from_env`): SQLite file ``db.sqlite3`` in the current
directory by default, PostgreSQL with ``DATABASE_URL=postgresql://user:pass@host/db``. The schema is created by the
migrations in the top-level ``migrations/`` directory (``litestar --app sample_project.app:app database upgrade``),
never by ``create_all``; set ``DATABASE_MIGRATE_ON_STARTUP=1`` to upgrade (under the migration lock) at startup.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from litestar import Litestar
from litestar.openapi.config import OpenAPIConfig

from litestar_db import DatabaseConfig
from litestar_db.litestar import DatabasePlugin
from sample_project.controllers import (
    AccountController,
    ProductController,
    SalesController,
    TransferController,
    UserController,
)

__all__ = ("MIGRATIONS_DIR", "app", "create_app")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
"""The project's Alembic directory, found from this file so the app works from any working directory."""


def create_app(config: DatabaseConfig | None = None) -> Litestar:
    """Build the app for ``config`` (default: ``DatabaseConfig.from_env()``).

    Returns:
        The Litestar app; OpenAPI docs at ``/schema``.
    """
    config = config or DatabaseConfig.from_env()
    if config.migrations.script_location == "migrations":
        config = replace(config, migrations=replace(config.migrations, script_location=str(MIGRATIONS_DIR)))
    return Litestar(
        route_handlers=[UserController, AccountController, TransferController, ProductController, SalesController],
        plugins=[DatabasePlugin(config)],
        openapi_config=OpenAPIConfig(title="litestar_db sample project", version="0.1.0"),
    )


app = create_app()
