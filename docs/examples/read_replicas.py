"""Read replicas: configuration and reads outside requests."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import func, select

from litestar_db import DatabaseConfig, PoolConfig, ReadWriteConfig, ReplicaConfig, read_replica

from .models import Sale

# [config]
config = DatabaseConfig(
    url="postgresql://shop@primary.internal:5432/shop",
    read_write=ReadWriteConfig(
        enable_read_write_split=True,
        replicas=(
            ReplicaConfig(url="postgresql://shop@replica-a.internal:5432/shop", name="a", weight=3),
            ReplicaConfig(
                url="postgresql://shop@replica-b.internal:5432/shop",
                name="b",
                weight=1,
                pool=PoolConfig(min_size=2, max_size=10),  # this replica's own pool
            ),
        ),
        strategy="round_robin",  # or "random", "least_lag"
        max_lag_seconds=5.0,  # replay lag above this ejects a replica...
        max_lag_bytes=64 * 1024 * 1024,  # ...and so does being 64 MiB of WAL behind
        failure_cooldown_seconds=30.0,  # an ejected replica is probed again after this
        sticky_seconds=5.0,  # read-your-writes window where no WAL position is available
        token_secret=os.environ.get("READ_TOKEN_SECRET"),  # the same on every instance of the app
    ),
)
# [/config]


# [read_replica]
async def units_sold() -> dict[str, Any]:
    """A read-only block: a replica when one is configured and healthy, else the primary.
    The transaction is READ ONLY on PostgreSQL, so a stray write fails instead of diverging."""
    async with read_replica() as db:
        total = await db.scalar(select(func.coalesce(func.sum(Sale.quantity), 0)))
        return {"units": int(total)}


# [/read_replica]
