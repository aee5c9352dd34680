"""Routing overhead: the same read endpoint with the read/write split off and on, in one run.

Starts a throwaway primary + streaming standby (``litestar_db.testing.ReplicatedCluster``) and serves three apps
with uvicorn on this event loop, driven by httpx:

* ``off``        - split disabled, every read on the primary (today's path);
* ``on-self``    - split enabled with the *primary* configured as the only replica: same server, so the difference
  to ``off`` is the cost of routing itself (routing session, token check, replica choice, retry hook);
* ``on-standby`` - split enabled with the real standby.

``core`` opens ``Database.session()`` (off) or a routed read-only session (on) running one read each, without
HTTP, which isolates the routing session's own cost. The variants are measured in small interleaved batches
(off, on-self, on-standby, off, …) and the time per variant is summed, so load from other work on the machine
falls on every variant alike.

Run: ``.venv/bin/python benchmarks/routing_overhead.py [--batches 20] [--batch 50] [--concurrency 16]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import uvicorn
from litestar import Litestar, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy import text

from litestar_db import Database, DatabaseConfig, DatabasePlugin, PoolConfig, ReadWriteConfig, ReplicaConfig
from litestar_db.session import AsyncSession
from litestar_db.testing import ReplicatedCluster, free_port

QUERY = text("SELECT id, name FROM item WHERE id = :i")


@get("/item/{item_id:int}")
async def item(db_session: NamedDependency[AsyncSession], item_id: FromPath[int]) -> dict[str, Any]:
    row = (await db_session.execute(QUERY, {"i": item_id})).one()
    return {"id": row.id, "name": row.name}


def config(primary_url: str, replica_url: str | None) -> DatabaseConfig:
    read_write = ReadWriteConfig()
    if replica_url is not None:
        read_write = ReadWriteConfig(enable_read_write_split=True, replicas=(ReplicaConfig(url=replica_url),))
    return DatabaseConfig(url=primary_url, pool=PoolConfig(min_size=16, max_size=32), read_write=read_write)


@asynccontextmanager
async def served(cfg: DatabaseConfig) -> AsyncIterator[httpx.AsyncClient]:
    app = Litestar(route_handlers=[item], plugins=[DatabasePlugin(cfg)])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Litestar's default logging config enables INFO
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=120)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def timed(fn: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


async def run(cluster: ReplicatedCluster, name: str, args: argparse.Namespace) -> None:
    assert cluster.primary is not None
    primary_url = cluster.primary.url(name)
    variants = {"off": None, "on-self": primary_url, "on-standby": cluster.replica(0).url(name)}
    batch, gate = args.batch, asyncio.Semaphore(args.concurrency)
    async with AsyncExitStack() as stack:
        clients = {v: await stack.enter_async_context(served(config(primary_url, r))) for v, r in variants.items()}
        dbs = {v: Database(config(primary_url, r)) for v, r in variants.items()}
        for db in dbs.values():
            stack.push_async_callback(db.dispose)

        def sequential(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                for i in range(batch):
                    (await client.get(f"/item/{i % 100 + 1}")).raise_for_status()

            return go

        def concurrent(client: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
            async def one(i: int) -> None:
                async with gate:
                    (await client.get(f"/item/{i % 100 + 1}")).raise_for_status()

            async def go() -> None:
                await asyncio.gather(*(one(i) for i in range(batch * 4)))

            return go

        def core(db: Database) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                for i in range(batch):
                    opener = db.session if db.router is None else db.read_replica
                    async with opener() as session:
                        (await session.execute(QUERY, {"i": i % 100 + 1})).one()

            return go

        for variant in variants:  # warm-up: pools, statement caches, first monitor probe
            await sequential(clients[variant])()
            await core(dbs[variant])()
        calls = {}
        for variant in variants:  # deterministic cost: Python function calls per core read (noise-free)
            profiler = cProfile.Profile()
            profiler.enable()
            await core(dbs[variant])()
            profiler.disable()
            calls[variant] = pstats.Stats(profiler).total_calls / batch  # type: ignore[attr-defined]
        totals = {v: [0.0, 0.0, 0.0] for v in variants}
        for _ in range(args.batches):
            for variant in variants:
                totals[variant][0] += await timed(sequential(clients[variant]))
                totals[variant][1] += await timed(concurrent(clients[variant]))
                totals[variant][2] += await timed(core(dbs[variant]))
    counts = (args.batches * batch, args.batches * batch * 4, args.batches * batch)
    rates = {v: [n / t for n, t in zip(counts, spent, strict=True)] for v, spent in totals.items()}
    print(
        f"{'variant':<12} {'HTTP seq req/s':>15} {'HTTP conc req/s':>16} {'core reads/s':>13} {'calls/read':>11}"
        "   ratio vs off (seq / conc / core)"
    )
    for variant, values in rates.items():
        ratios = " / ".join(f"{v / b:.3f}" for v, b in zip(values, rates["off"], strict=True))
        print(
            f"{variant:<12} {values[0]:>15.0f} {values[1]:>16.0f} {values[2]:>13.0f} {calls[variant]:>11.0f}   {ratios}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--batches", type=int, default=20, help="interleaved batches per variant")
    parser.add_argument("--batch", type=int, default=50, help="sequential requests per batch (x4 concurrent)")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    name = f"bench_{uuid.uuid4().hex[:8]}"
    with ReplicatedCluster(replicas=1) as cluster:
        assert cluster.primary is not None
        cluster.create_database(name)
        cluster.primary.sql(
            "CREATE TABLE item (id int PRIMARY KEY, name text);"
            " INSERT INTO item SELECT g, 'item ' || g FROM generate_series(1, 100) g",
            name,
        )
        cluster.wait_for_catchup()
        print(
            f"{args.batches} interleaved batches per variant: {args.batch} sequential + {args.batch * 4} concurrent "
            f"(x{args.concurrency}) GETs, {args.batch} core reads"
        )
        asyncio.run(run(cluster, name, args))


if __name__ == "__main__":
    main()
