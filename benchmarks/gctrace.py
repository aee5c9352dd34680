"""Where a contender's young garbage collections come from, under the benchmark's HTTP load.

    python -m benchmarks.gctrace --contender litestar_db --endpoint read [--seconds 8] [--connections 32]

Serves the contender as ``make bench`` does (one uvicorn worker, pool of 10) with ``BENCH_GC_TRACE=1``, loads one
endpoint for ``--seconds`` after a 3 s warm-up, and prints the young and full collections per request and the
Python frames whose allocation triggered the young collections (:mod:`benchmarks.gcstats`). CPython 3.11 starts a
young collection when the count of tracked allocations minus deallocations since the last one passes 700; a
deallocation while that count is 0 is not counted at all, so collections come from how many objects requests hold
at once, not from how many they allocate. Sites concentrated on one frame show the point of a request where the
live objects of the requests in flight peak (typically the first ``await`` on the database).
"""

from __future__ import annotations

import argparse

from benchmarks.harness import CONTENDERS, served
from benchmarks.load import ENDPOINTS, run_load, wrk_version

__all__ = ("main",)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contender", choices=sorted(CONTENDERS), default="litestar_db")
    p.add_argument("--endpoint", choices=sorted(ENDPOINTS), default="read")
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--pool-size", type=int, default=10)
    args = p.parse_args(argv)
    generator = "wrk" if wrk_version() else "python"
    env = {"BENCH_POOL_SIZE": str(args.pool_size), "BENCH_GC_TRACE": "1"}
    with served(args.contender, **env) as server:
        load = {"connections": args.connections, "items": 10000, "accounts": 1000, "generator": generator}
        run_load(server.base_url, ENDPOINTS[args.endpoint], seconds=3, **load)  # warm-up
        before = server.gc_stats()
        result = run_load(server.base_url, ENDPOINTS[args.endpoint], seconds=args.seconds, **load)
        after = server.gc_stats()
    young, full = (after["collections"][g] - before["collections"][g] for g in (0, 2))
    print(f"{args.contender} / {args.endpoint}, {args.connections} connections: {result.requests} requests")
    print(f"young collections per request {young / result.requests:.3f}, full {full / result.requests:.4f}")
    print("young-collection trigger sites since start (innermost frame first):")
    for site, count in after["sites"]:
        print(f"  {count:6d}  {site}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
