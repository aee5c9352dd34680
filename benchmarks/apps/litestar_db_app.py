"""Contender 1: litestar_db's ``DatabasePlugin`` (request transaction committed at ``http.response.start``)."""

from __future__ import annotations

import os

from litestar import Litestar

from benchmarks.common import DATABASE_URL, POOL_SIZE, orm_router
from benchmarks.gcstats import freeze_if_asked, gc_stats
from litestar_db import DatabaseConfig, PoolConfig, RequestConfig
from litestar_db.litestar import DatabasePlugin

__all__ = ("app",)

# Same pool as every contender: POOL_SIZE connections, no overflow, no pre-ping (SQLAlchemy's default, which the
# other contenders use). BENCH_PRE_PING=1 measures litestar_db's own default (pre_ping=True) instead.
# BENCH_STATEMENT_STATS=0 / BENCH_LAZY_BEGIN=0 measure those features' cost.
config = DatabaseConfig(
    url=DATABASE_URL,
    pool=PoolConfig(min_size=POOL_SIZE, max_size=POOL_SIZE, pre_ping=os.environ.get("BENCH_PRE_PING") == "1"),
    statement_stats=os.environ.get("BENCH_STATEMENT_STATS", "1") == "1",
    request=RequestConfig(lazy_begin=os.environ.get("BENCH_LAZY_BEGIN", "1") == "1"),
)
app = Litestar(route_handlers=[orm_router(), gc_stats], plugins=[DatabasePlugin(config)], on_startup=[freeze_if_asked])
