"""Helpers of the health/stats/metrics tests (the real server is :mod:`tests.server`, throwaway PostgreSQL servers
come from :mod:`litestar_db.testing`)."""

from __future__ import annotations

from pathlib import Path

from litestar_db import MigrationConfig
from tests.server import free_port

__all__ = ("NO_MIGRATIONS", "closed_port")

NO_MIGRATIONS = MigrationConfig(script_location=str(Path(__file__).parent / "no-migrations-directory"))
"""For apps under test that do not use migrations: the repository's ``migrations/`` (found relative to the working
directory by default) would otherwise make readiness report the fresh test database as behind its schema."""


def closed_port() -> int:
    """A loopback TCP port nobody listens on (a database that is down)."""
    return free_port()
