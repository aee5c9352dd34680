"""Server-free CPU cost of one read request's database work, per variant (evidence for the README's findings).

    python -m benchmarks.overhead [--ops 1000] [--reps 6]

Each op is what the read endpoint does to the database: open a session, ``session.get(Item, id)``, commit,
close. Measured as process CPU time per op (``time.process_time``), sequentially on one connection, the variants
alternating (forward, then reversed order) over ``--reps`` repetitions; the median is printed. Variants:

* ``sqlalchemy``: a plain ``create_async_engine`` + ``async_sessionmaker`` (what the hand-written app uses);
* ``litestar_db``: :class:`litestar_db.Database` as the benchmark configures it (pre_ping off);
* ``litestar_db-no-stats``: the same with ``statement_stats=False`` (pool figures only);
* ``litestar_db-pre-ping``: litestar_db's default ``pool.pre_ping=True`` (one extra round trip per checkout);
* ``litestar_db-lazy-begin``: the session read-only requests get (plain reads in autocommit until a write);
* ``autocommit``: the plain engine with ``isolation_level="AUTOCOMMIT"`` (no BEGIN/COMMIT at all).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from benchmarks.common import Item
from benchmarks.harness import BenchDatabase
from litestar_db import Database, DatabaseConfig, PoolConfig

__all__ = ("main",)


async def _cpu_per_op(maker: Callable[[], AsyncSession], ops: int) -> float:
    async def op(i: int) -> None:
        async with maker() as session:
            await session.get(Item, 1 + i % 1000)
            await session.commit()

    for i in range(200):
        await op(i)
    started = time.process_time()
    for i in range(ops):
        await op(i)
    return 1e6 * (time.process_time() - started) / ops


async def _run(ops: int, reps: int) -> dict[str, float]:
    db = BenchDatabase(items=10000, accounts=1000)
    await db.create()
    databases: list[Database] = []
    plain = create_async_engine(db.url.replace("postgresql://", "postgresql+asyncpg://", 1), pool_size=2)
    try:

        def ldb(pre_ping: bool = False, statement_stats: bool = True) -> Database:
            pool = PoolConfig(min_size=2, max_size=2, pre_ping=pre_ping)
            databases.append(Database(DatabaseConfig(url=db.url, pool=pool, statement_stats=statement_stats)))
            return databases[-1]

        makers: dict[str, Callable[[], AsyncSession]] = {
            "sqlalchemy": async_sessionmaker(plain, expire_on_commit=False),
            "litestar_db": ldb().sessionmaker,
        }
        makers["litestar_db-no-stats"] = ldb(statement_stats=False).sessionmaker
        makers["litestar_db-pre-ping"] = ldb(pre_ping=True).sessionmaker
        lazy = ldb().lazy_sessionmaker
        assert lazy is not None
        makers["litestar_db-lazy-begin"] = lazy
        makers["autocommit"] = async_sessionmaker(
            plain.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        results: dict[str, list[float]] = {name: [] for name in makers}
        for rep in range(reps):
            order = list(makers) if rep % 2 == 0 else list(reversed(makers))
            for name in order:
                results[name].append(await _cpu_per_op(makers[name], ops))
        return {name: statistics.median(values) for name, values in results.items()}
    finally:
        for database in databases:
            await database.dispose()
        await plain.dispose()
        await db.drop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", type=int, default=1000)
    p.add_argument("--reps", type=int, default=6)
    args = p.parse_args(argv)
    medians = asyncio.run(_run(args.ops, args.reps))
    base = medians["sqlalchemy"]
    print(f"{'variant':<22} {'CPU us/op':>10} {'vs sqlalchemy':>14}")
    for name, value in medians.items():
        print(f"{name:<22} {value:>10.1f} {100 * (value - base) / base:>+13.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
