"""Configuration: the same database described by parts, by URL, and from the environment."""

from __future__ import annotations

import os

from litestar_db import (
    ConfigurationError,
    ConnectionConfig,
    CredentialsConfig,
    DatabaseConfig,
    DatabaseType,
    PoolConfig,
    ReadWriteConfig,
)

# [parts]
config = DatabaseConfig(
    type=DatabaseType.POSTGRESQL,
    connection=ConnectionConfig(
        host="db.internal",
        port=5432,
        database="shop",
        application_name="shop-api",  # shows up in pg_stat_activity
    ),
    credentials=CredentialsConfig(username="shop", password=os.environ.get("SHOP_DB_PASSWORD", "s3cret")),
    pool=PoolConfig(min_size=5, max_size=20, timeout=10.0, recycle=1800.0),
    read_write=ReadWriteConfig(enable_read_write_split=False),
    statement_timeout=15.0,  # seconds; sent to PostgreSQL as statement_timeout
)
# [/parts]

# [url]
same_database = DatabaseConfig(
    url="postgresql://shop:s3cret@db.internal:5432/shop",
    pool=PoolConfig(min_size=5, max_size=20),
)
# [/url]

# [env]
environment = {
    "DATABASE_URL": "postgresql://shop:s3cret@db.internal/shop",
    "DATABASE_POOL_SIZE": "5",
    "DATABASE_POOL_MAX_SIZE": "20",
    "DATABASE_POOL_TIMEOUT": "10",
    "DATABASE_STATEMENT_TIMEOUT": "15",
}
from_env = DatabaseConfig.from_env(environment)  # without an argument: os.environ
# [/env]


# [invalid]
def show_validation() -> str:
    """A wrong value fails at construction, naming the field; the password never appears."""
    try:
        PoolConfig(min_size=30, max_size=20)
    except ConfigurationError as exc:
        return str(exc)  # "invalid pool.min_size=30: exceeds max_size=20"
    raise AssertionError("unreachable")


# [/invalid]
