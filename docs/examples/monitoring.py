"""Monitoring: health check and statistics from code."""

from __future__ import annotations

from typing import Any

import msgspec

from litestar_db import get_database


# [stats]
async def database_report() -> dict[str, Any]:
    db = get_database()
    healthy = await db.health_check()  # True/False, never raises; own connection, outside the pool
    stats = await db.get_stats()  # a msgspec Struct
    primary = stats.engines[0]
    return {
        "healthy": healthy,
        "checked_out": primary.pool.checked_out,
        "waiting": primary.pool.waiting,
        "queries": primary.queries,
        "retried": stats.transactions_retried,
        "json": msgspec.json.encode(stats).decode(),
    }


# [/stats]
