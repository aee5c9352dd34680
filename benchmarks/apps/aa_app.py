"""Contender 2: advanced-alchemy's ``SQLAlchemyPlugin`` with its ``autocommit`` before-send handler."""

from __future__ import annotations

from advanced_alchemy.extensions.litestar import EngineConfig, SQLAlchemyAsyncConfig, SQLAlchemyPlugin
from litestar import Litestar

from benchmarks.common import DATABASE_URL, POOL_SIZE, orm_router
from benchmarks.gcstats import freeze_if_asked, gc_stats

__all__ = ("app",)

alchemy = SQLAlchemyAsyncConfig(
    connection_string=DATABASE_URL.replace("postgresql://", "postgresql+asyncpg://", 1),
    before_send_handler="autocommit",
    engine_config=EngineConfig(pool_size=POOL_SIZE, max_overflow=0),
)
app = Litestar(
    route_handlers=[orm_router(), gc_stats], plugins=[SQLAlchemyPlugin(config=alchemy)], on_startup=[freeze_if_asked]
)
