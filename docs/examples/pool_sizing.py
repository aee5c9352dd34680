"""Pool sizing: a configuration for a given connection budget."""

from __future__ import annotations

from litestar_db import ConnectionConfig, DatabaseConfig, PoolConfig


# [sizing]
def pool_for(max_connections: int, reserved: int, instances: int, workers_per_instance: int) -> PoolConfig:
    """Split PostgreSQL's connection budget between every process that opens a pool.

    ``reserved`` keeps room for migrations, health probes, psql sessions and superuser_reserved_connections.
    """
    per_process = (max_connections - reserved) // (instances * workers_per_instance)
    if per_process < 2:
        raise ValueError("not enough connections: add PgBouncer or raise max_connections")
    return PoolConfig(
        min_size=max(1, per_process // 3),  # kept open; the rest opens under load
        max_size=per_process,
        timeout=5.0,  # a request waits at most 5 s for a connection, then gets 503 + Retry-After
        recycle=1800.0,  # replace connections every 30 min (server-side memory, load balancer idle limits)
        pre_ping=True,  # one round trip per checkout; catches connections killed while idle
    )


# max_connections=100, 10 reserved, 3 instances x 2 workers -> 15 per process
config = DatabaseConfig(
    url="postgresql://shop@db.internal/shop",
    pool=pool_for(max_connections=100, reserved=10, instances=3, workers_per_instance=2),
    statement_timeout=10.0,
    slow_query_seconds=0.2,
)
# [/sizing]

# [pgbouncer]
behind_pgbouncer = DatabaseConfig(
    url="postgresql://shop@pgbouncer.internal:6432/shop?pgbouncer=true",  # transaction pooling mode
    connection=ConnectionConfig(application_name="shop-api"),
)
# [/pgbouncer]
