"""Contender 3: a plain Litestar app with a hand-written ``AsyncSession`` per request.

A generator dependency opens the session, commits when the handler returned, rolls back when it raised. This is
the baseline "what you would write yourself" that a database layer should cost little more than.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from benchmarks.common import DATABASE_URL, POOL_SIZE, orm_router
from benchmarks.gcstats import freeze_if_asked, gc_stats

__all__ = ("app",)

_makers: list[async_sessionmaker[AsyncSession]] = []


@asynccontextmanager
async def lifespan(app: Litestar) -> AsyncIterator[None]:
    url = DATABASE_URL.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0)
    _makers.append(async_sessionmaker(engine, expire_on_commit=False))
    try:
        yield
    finally:
        _makers.clear()
        await engine.dispose()


async def provide_session() -> AsyncIterator[AsyncSession]:
    async with _makers[0]() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        await session.commit()


app = Litestar(
    route_handlers=[orm_router(), gc_stats],
    dependencies={"db_session": Provide(provide_session)},
    lifespan=[lifespan],
    on_startup=[freeze_if_asked],
)
