"""CPU per request of each contender app called in-process: no HTTP server, no load generator, no network.

    python -m benchmarks.inprocess [--endpoints read,insert] [--concurrency 1,8,32] [--requests 1500]

Every contender's ASGI app runs in this one process (lifespan started once) and is called directly with an ASGI
``http`` scope, ``--concurrency`` requests at a time, alternating the contenders over five repetitions (median
printed). What is left is the stack's own work per request: Litestar, the session lifecycle, SQLAlchemy, asyncpg
and the round trips to PostgreSQL; uvicorn, HTTP parsing and the sockets to the client are gone, and so is most of
the garbage-collector cost of a long-running server (few objects stay alive between requests here). The
difference between these figures and ``make bench``'s CPU per request is what the HTTP layer and the collector
add (see ``benchmarks/gcstats.py`` and the README).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.common import DATABASE_URL
from benchmarks.harness import CONTENDERS, BenchDatabase

__all__ = ("main",)

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _request(endpoint: str, i: int) -> tuple[str, str, bytes, bytes]:
    """``(method, path, body, query)`` of the ``i``-th request to ``endpoint`` (ids spread over the seed)."""
    if endpoint == "read":
        return "GET", f"/items/{1 + i % 5000}", b"", b""
    if endpoint == "list":
        return "GET", "/items", b"", f"after={i % 5000}".encode()
    if endpoint == "insert":
        return "POST", "/items", json.dumps({"name": f"n{i}", "price_cents": i}).encode(), b""
    source = 1 + i % 500
    body = json.dumps({"source_id": source, "target_id": source + 1, "amount": 1}).encode()
    return "POST", "/transfers", body, b""


async def _call(app: ASGIApp, method: str, path: str, body: bytes, query: bytes) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


async def _lifespan(app: ASGIApp) -> Callable[[], Awaitable[None]]:
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, outbox.put))
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan startup failed: {message}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop


async def _cpu_per_request(app: ASGIApp, endpoint: str, requests: int, concurrency: int) -> float:
    for i in range(100):  # warm-up; also checks the app answers
        status = await _call(app, *_request(endpoint, i))
        if status not in (200, 201):
            raise RuntimeError(f"{endpoint} answered {status}")

    async def worker(first: int) -> None:
        for i in range(first, requests, concurrency):
            await _call(app, *_request(endpoint, i))

    started = time.process_time()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return 1e6 * (time.process_time() - started) / requests


async def _run(args: argparse.Namespace) -> None:
    # the apps connect to benchmarks.common.DATABASE_URL (BENCH_DATABASE_URL, else litestar_db_bench)
    db = BenchDatabase(items=10000, accounts=1000, name=DATABASE_URL.rpartition("/")[2])
    await db.create()
    names = args.contenders.split(",")
    apps = {name: importlib.import_module(CONTENDERS[name].partition(":")[0]).app for name in names}
    stops = [await _lifespan(app) for app in apps.values()]
    try:
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for endpoint in args.endpoints.split(","):
                results: dict[str, list[float]] = {name: [] for name in names}
                for rep in range(5):
                    for name in names if rep % 2 == 0 else list(reversed(names)):
                        cpu = await _cpu_per_request(apps[name], endpoint, args.requests, concurrency)
                        results[name].append(cpu)
                medians = {name: statistics.median(values) for name, values in results.items()}
                ours = medians.get("litestar_db")
                cells = "  ".join(
                    f"{name} {us:5.0f} us" + (f" ({us / ours:.2f}x)" if ours and name != "litestar_db" else "")
                    for name, us in medians.items()
                )
                print(f"concurrency {concurrency:>2} {endpoint:<8} {cells}", flush=True)
    finally:
        for stop in stops:
            await stop()
        await db.drop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoints", default="read,insert")
    p.add_argument("--contenders", default="litestar_db,aa,handwritten,raw")
    p.add_argument("--concurrency", default="1,8,32", help="requests in flight at a time (comma-separated runs)")
    p.add_argument("--requests", type=int, default=1500, help="measured requests per contender and repetition")
    asyncio.run(_run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
