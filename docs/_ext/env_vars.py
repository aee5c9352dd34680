"""Config field → environment variable table shared by the docs extension and the tests (no docutils)."""

from __future__ import annotations

__all__ = ("ENV_VARS",)

ENV_VARS: dict[str, str] = {
    "DatabaseConfig.url": "DATABASE_URL",
    "DatabaseConfig.echo": "DATABASE_ECHO",
    "DatabaseConfig.statement_timeout": "DATABASE_STATEMENT_TIMEOUT",
    "DatabaseConfig.slow_query_seconds": "DATABASE_SLOW_QUERY_SECONDS",
    "PoolConfig.min_size": "DATABASE_POOL_SIZE",
    "PoolConfig.max_size": "DATABASE_POOL_MAX_SIZE",
    "PoolConfig.timeout": "DATABASE_POOL_TIMEOUT",
    "PoolConfig.recycle": "DATABASE_POOL_RECYCLE",
    "PoolConfig.pre_ping": "DATABASE_POOL_PRE_PING",
    "ConnectionConfig.application_name": "DATABASE_APPLICATION_NAME",
    "ConnectionConfig.command_timeout": "DATABASE_COMMAND_TIMEOUT",
    "ReadWriteConfig.replicas": "DATABASE_REPLICA_URLS",
    "ReadWriteConfig.token_secret": "DATABASE_TOKEN_SECRET",
    "MigrationConfig.migrate_on_startup": "DATABASE_MIGRATE_ON_STARTUP",
}
"""Config field → environment variable read by ``DatabaseConfig.from_env`` (checked by tests/test_docs_examples)."""
