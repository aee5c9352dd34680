"""litestar_db: a pluggable database app for Litestar on PostgreSQL (and SQLite).

The core (this package minus :mod:`litestar_db.litestar`) runs without Litestar, in workers and scripts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_db.config import (
    ConfigurationError,
    ConnectionConfig,
    CredentialsConfig,
    DatabaseConfig,
    DatabaseType,
    HealthConfig,
    MigrationConfig,
    PoolConfig,
    ReadWriteConfig,
    ReplicaConfig,
    RequestConfig,
)
from litestar_db.database import Database
from litestar_db.errors import (
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    NotFoundError,
    ReadOnlyError,
)
from litestar_db.registry import (
    cleanup_database,
    connection,
    get_database,
    initialize_database,
    primary,
    read_replica,
    session,
    transaction,
)
from litestar_db.session import AsyncSession
from litestar_db.stats import DatabaseStats
from litestar_db.transactions import run_in_transaction, transactional

if TYPE_CHECKING:
    from litestar_db.litestar.plugin import DatabasePlugin

__all__ = (
    "AsyncSession",
    "ConfigurationError",
    "ConflictError",
    "ConnectionConfig",
    "CredentialsConfig",
    "Database",
    "DatabaseConfig",
    "DatabaseError",
    "DatabasePlugin",
    "DatabaseStats",
    "DatabaseType",
    "DatabaseUnavailableError",
    "HealthConfig",
    "MigrationConfig",
    "NotFoundError",
    "PoolConfig",
    "ReadOnlyError",
    "ReadWriteConfig",
    "ReplicaConfig",
    "RequestConfig",
    "cleanup_database",
    "connection",
    "get_database",
    "initialize_database",
    "primary",
    "read_replica",
    "run_in_transaction",
    "session",
    "transaction",
    "transactional",
)


def __getattr__(name: str) -> Any:
    """Import the Litestar layer lazily, so the core stays importable without Litestar."""
    if name == "DatabasePlugin":
        from litestar_db.litestar.plugin import DatabasePlugin

        return DatabasePlugin
    raise AttributeError(name)
